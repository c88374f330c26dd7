//! Pure solvers behind `omnibal`: data, model and memory balance for vision-language model
//! training. No `unsafe`, no Node-API: the binding crate (`crate/node`) wraps these functions,
//! and the TypeScript twins in `src/` mirror them line for line so both backends give the same
//! answers for the same inputs and seed.
//!
//! Where things live:
//! - [`rng`]: the one deterministic generator (xoshiro128** seeded by SplitMix64) every solver
//!   draws from;
//! - [`permutation`]: Fisher-Yates shuffles and seeded permutations on top of it;
//! - [`data`]: data balance (ISF, the balanced planner, baselines, metrics);
//! - [`model`]: model and memory balance (the stage DP, per-stage recomputation, the VLM cost model);
//! - [`simulate`]: the pipeline step simulator (GPipe, 1F1B, interleaved);
//! - [`io`]: per-sample length files (JSON list, JSON Lines, CSV) streamed into arrays, with limits;
//! - [`progress`]: how long-running solvers report progress without knowing who listens;
//! - [`error`]: solver errors with stable codes.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod data;
pub mod error;
pub mod io;
pub mod model;
pub mod permutation;
pub mod progress;
pub mod rng;
pub mod simulate;

pub use error::{Error, ErrorClass};

/// Version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
