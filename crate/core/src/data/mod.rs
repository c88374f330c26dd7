//! Data balance: packing samples into micro-batches and handing them to data-parallel ranks so
//! that every rank in every step carries the same vision load and the same text load.
//!
//! - [`samples`]: the samples (struct of arrays), their checks, caps and drop reasons;
//! - [`caps`]: caps from a wanted samples per pack, chosen from the typical sample;
//! - [`cost`]: the load of a micro-batch (vision = tiles, text = `a * tokens + b * len^2`);
//! - [`isf`]: the reference ISF (iterative sampling and filtering), bug-fixed;
//! - [`isf_search`]: the reference search for ISF's caps;
//! - [`balance`]: the balanced planner, this package's default;
//! - [`baselines`]: random, length-grouped (LLaVA) and ISF hand-out, for comparison;
//! - [`plan`]: the batch plan (steps x ranks x micro-batches x samples) and tail policies;
//! - [`strategy`]: one entry point for every strategy;
//! - [`load`]: a plan's mean and largest micro-batch loads (the cost model's input);
//! - [`synthetic`]: seeded samples with the statistics of the real length data;
//! - [`metrics`]: the paper's pad and dist ratios, and the same dist on the cost.

pub mod balance;
pub mod baselines;
pub mod caps;
pub mod cost;
pub mod isf;
pub mod isf_search;
pub mod load;
pub mod metrics;
pub mod plan;
pub mod samples;
pub mod strategy;
pub mod synthetic;
