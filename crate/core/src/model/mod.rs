//! Model and memory balance: split the layer stack into pipeline stages and choose
//! recomputation per stage, on measured or modelled layer costs.
//!
//! - [`stages`]: the canonical stage problem (layers, stages, micro-batches, memory) and the
//!   evaluation of a given plan (1F1B time and memory per stage);
//! - [`recompute`]: per-stage recomputation choice (`none`, `full`, `block`, `any`);
//! - [`partition`]: the exact optimum, the stage DP (`partition_stages`);
//! - [`chunks`]: interleaved plans as `v x P` model chunks (`partition_chunks`);
//! - [`baselines`]: uniform, by parameters, DeepSpeed-balanced and profile-anchor splits;
//! - [`vlm`]: the cost and memory model of a VLM (ViT, projector, LLM) that writes the problem;
//! - [`calibrate`]: fitting the model's efficiency factors and activation bytes to measurements.

pub mod baselines;
pub mod calibrate;
pub mod chunks;
pub mod partition;
pub mod recompute;
pub mod stages;
pub mod vlm;
