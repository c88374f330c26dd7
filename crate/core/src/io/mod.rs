//! Reading per-sample length files: [`samples`] streams whole files into arrays with limits,
//! [`record`] checks one record (a JSON object or a CSV record) strictly; [`base64`] decodes the
//! sidecar's binary arrays; writing a plan's steps as JSON text: [`plan_json`].

pub mod base64;
pub mod plan_json;
pub mod record;
pub mod samples;
