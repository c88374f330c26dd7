//! Reading per-sample length files: [`samples`] streams whole files into arrays with limits,
//! [`record`] checks one record (a JSON object or a CSV record) strictly; writing a plan's steps
//! as JSON text: [`plan_json`].

pub mod plan_json;
pub mod record;
pub mod samples;
