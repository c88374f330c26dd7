//! Reading per-sample length files: [`samples`] streams whole files into arrays with limits,
//! [`record`] checks one record (a JSON object or a CSV record) strictly.

pub mod record;
pub mod samples;
