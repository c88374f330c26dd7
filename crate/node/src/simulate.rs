//! The pipeline step simulator for JavaScript: per-micro-batch stage times in, step time,
//! busy/idle per device, bubble, peak in-flight memory and the event timeline out (typed arrays).

use crate::error::run_sync;
use napi::bindgen_prelude::{Float64Array, Uint32Array, Uint8Array};
use napi::Env;
use napi_derive::napi;
use omnibal_core::error::integer_between;
use omnibal_core::simulate::{chunk_in_flight, simulate_step, Schedule, StepInput};

/// One step to simulate (see `crate/core/src/simulate.rs` for the layout).
#[napi(object)]
pub struct SimulateStepInput {
    pub dp: f64,
    pub pp: f64,
    pub micro_batches: f64,
    pub forward_ms: Float64Array,
    pub backward_ms: Float64Array,
    pub transfer_ms: Float64Array,
    pub grad_bytes: Float64Array,
    pub allreduce_bytes_per_s: f64,
    pub activation_bytes: Float64Array,
    pub schedule: String,
    pub virtual_stages: Option<f64>,
    /// Interleaved only: each model chunk's forward time, `[((r * M + m) * v + j) * P + s]`.
    pub chunk_forward_ms: Option<Float64Array>,
    /// Each model chunk's backward time, same layout.
    pub chunk_backward_ms: Option<Float64Array>,
}

/// The simulation's figures; events as a struct of arrays (empty unless asked for).
#[napi(object)]
pub struct NativeStepResult {
    pub step_ms: f64,
    pub rank_ms: Float64Array,
    pub busy_ms: Float64Array,
    pub idle_ms: Float64Array,
    pub bubble_fraction: f64,
    pub peak_in_flight: Float64Array,
    pub peak_activation_bytes: Float64Array,
    pub event_rank: Uint32Array,
    pub event_stage: Uint32Array,
    pub event_micro_batch: Uint32Array,
    pub event_chunk: Uint32Array,
    pub event_backward: Uint8Array,
    pub event_start_ms: Float64Array,
    pub event_end_ms: Float64Array,
}

/// Simulates one training step.
#[napi(js_name = "simulateStep")]
pub fn simulate_step_sync(
    env: Env,
    input: SimulateStepInput,
    with_events: bool,
) -> napi::Result<NativeStepResult> {
    run_sync(&env, || {
        let v = input
            .virtual_stages
            .map(|x| integer_between("virtualStages", x, 1, 64))
            .transpose()?
            .unwrap_or(1) as u32;
        let step = StepInput {
            dp: integer_between("dp", input.dp, 1, 1 << 20)? as u32,
            pp: integer_between("pp", input.pp, 1, 1 << 12)? as u32,
            micro_batches: integer_between("microBatches", input.micro_batches, 1, 1 << 20)? as u32,
            forward_ms: input.forward_ms.to_vec(),
            backward_ms: input.backward_ms.to_vec(),
            p2p_ms: input.transfer_ms.to_vec(),
            grad_bytes: input.grad_bytes.to_vec(),
            allreduce_bytes_per_s: input.allreduce_bytes_per_s,
            activation_bytes: input.activation_bytes.to_vec(),
            schedule: Schedule::parse(&input.schedule, v)?,
            chunk_forward_ms: input
                .chunk_forward_ms
                .map(|a| a.to_vec())
                .unwrap_or_default(),
            chunk_backward_ms: input
                .chunk_backward_ms
                .map(|a| a.to_vec())
                .unwrap_or_default(),
        };
        let r = simulate_step(&step)?;
        let events = if with_events { r.events } else { Vec::new() };
        Ok(NativeStepResult {
            step_ms: r.step_ms,
            rank_ms: r.rank_ms.into(),
            busy_ms: r.busy_ms.into(),
            idle_ms: r.idle_ms.into(),
            bubble_fraction: r.bubble_fraction,
            peak_in_flight: r.peak_in_flight.into(),
            peak_activation_bytes: r.peak_activation_bytes.into(),
            event_rank: Uint32Array::new(events.iter().map(|e| e.rank).collect()),
            event_stage: Uint32Array::new(events.iter().map(|e| e.stage).collect()),
            event_micro_batch: Uint32Array::new(events.iter().map(|e| e.micro_batch).collect()),
            event_chunk: Uint32Array::new(events.iter().map(|e| e.chunk).collect()),
            event_backward: Uint8Array::new(events.iter().map(|e| e.backward as u8).collect()),
            event_start_ms: Float64Array::new(events.iter().map(|e| e.start_ms).collect()),
            event_end_ms: Float64Array::new(events.iter().map(|e| e.end_ms).collect()),
        })
    })
}

/// Per-chunk in-flight counts at a stage's activation peak (see `simulate::chunk_in_flight`).
#[napi(object)]
pub struct NativeChunkPeak {
    /// Micro-batches of each model chunk held at the peak.
    pub counts: Uint32Array,
    /// The peak activation bytes, `sum counts[c] x chunkBytes[c]`.
    pub bytes: f64,
}

/// Where stage `stage`'s held activations peak, per model chunk.
#[napi(js_name = "chunkInFlight")]
pub fn chunk_in_flight_sync(
    env: Env,
    schedule: String,
    virtual_stages: f64,
    pp: f64,
    stage: f64,
    micro_batches: f64,
    chunk_bytes: Float64Array,
) -> napi::Result<NativeChunkPeak> {
    run_sync(&env, || {
        let v = integer_between("virtualStages", virtual_stages, 1, 64)? as u32;
        let p = integer_between("pp", pp, 1, 1 << 12)? as u32;
        let s = integer_between("stage", stage, 0, p as u64 - 1)? as u32;
        let m = integer_between("microBatches", micro_batches, 1, 1 << 20)? as u32;
        let peak = chunk_in_flight(Schedule::parse(&schedule, v)?, p, s, m, &chunk_bytes)?;
        Ok(NativeChunkPeak {
            counts: peak.counts.into(),
            bytes: peak.bytes,
        })
    })
}
