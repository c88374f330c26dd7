//! Node-API binding for `omnibal-core`: thin `#[napi]` functions that take typed arrays and
//! JavaScript numbers, check them, call the core, and hand back typed arrays.
//!
//! - [`args`]: reading typed-array arguments, with coded `TypeError`s for the wrong kind;
//! - [`error`]: core errors to JS exceptions with a `code`, panics caught at the boundary;
//! - [`progress`]: a JS progress callback behind a time-throttled threadsafe function;
//! - [`cancel`]: the flag that stops an async solver (an `AbortSignal` aborted);
//! - [`data`]: batch plans (every strategy), ISF, its argument search, plan metrics;
//! - [`model`]: the stage DP, plan evaluation, baselines, the VLM layer table, calibration;
//! - [`permutation`]: seeded permutations and shuffles, sync and async;
//! - [`simulate`]: the pipeline step simulator;
//! - [`io`]: length files streamed into typed arrays on the libuv pool;
//! - [`memory`]: the sidecar's allocation policy (freed memory kept for the next plan);
//! - [`info`]: what `omnibal doctor` reports about the binary;
//! - [`diagnostics`]: functions that exist to prove the error paths (a deliberate panic).
#![deny(clippy::all)]

pub mod args;
pub mod cancel;
pub mod data;
pub mod diagnostics;
pub mod error;
pub mod info;
pub mod io;
pub mod memory;
pub mod model;
pub mod permutation;
pub mod progress;
pub mod simulate;
