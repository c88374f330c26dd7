//! Reading per-sample length files: [`samples`] streams whole files into arrays with limits,
//! [`record`] checks one record (a JSON object or a CSV record) strictly; [`base64`] decodes the
//! sidecar's binary arrays.

pub mod base64;
pub mod record;
pub mod samples;
