//! The pipeline step simulator: a discrete-event simulation of one training step over `dp`
//! ranks x `pp` stages, each rank running its own micro-batches (with their own per-stage
//! forward and backward times) through a GPipe, 1F1B or interleaved 1F1B schedule, with
//! point-to-point transfer time at stage boundaries and the data-parallel gradient all-reduce
//! (ring) at the end of the step.
//!
//! Each device (one pipeline stage of one rank) runs its operations in the schedule's fixed
//! order; an operation starts when the device is free and its inputs have arrived (the
//! previous virtual stage's forward, or the next one's backward, plus the transfer time).
//! With `v` virtual stages per device (interleaved), Megatron's interleaved order is used and
//! each model chunk takes its own time when `chunk_forward_ms` / `chunk_backward_ms` give it (a
//! chunk plan's chunks differ in size); without them a device's layers form `v` equal chunks,
//! each taking `1 / v` of the stage's time (an assumption). The hop from the last device back
//! to the first is priced like the last cut.

use crate::error::Error;

/// A pipeline schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// All forwards, then all backwards.
    GPipe,
    /// One forward, one backward, after a warm-up of `P - s - 1` forwards.
    OneFOneB,
    /// Megatron's interleaved 1F1B with `v` model chunks per device.
    Interleaved(u32),
}

impl Schedule {
    /// Parses `gpipe`, `1f1b` or `interleaved` (with `v`).
    pub fn parse(name: &str, v: u32) -> Result<Self, Error> {
        match name {
            "gpipe" => Ok(Schedule::GPipe),
            "1f1b" => Ok(Schedule::OneFOneB),
            "interleaved" if v >= 1 => Ok(Schedule::Interleaved(v)),
            "interleaved" => Err(Error::out_of_range("virtualStages", "must be at least 1")),
            _ => Err(Error::UnknownOption {
                name: "schedule".into(),
                value: name.into(),
                known: &["gpipe", "1f1b", "interleaved"],
            }),
        }
    }
}

/// One step to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInput {
    pub dp: u32,
    pub pp: u32,
    /// Micro-batches per rank.
    pub micro_batches: u32,
    /// `forward_ms[(r * M + m) * P + s]`: forward time of micro-batch `m` of rank `r` on stage `s`.
    pub forward_ms: Vec<f64>,
    /// Backward time, same layout (recomputation included).
    pub backward_ms: Vec<f64>,
    /// Transfer time of one micro-batch's activation (and, back, its gradient) across the cut
    /// after stage `s` (length `P - 1`).
    pub p2p_ms: Vec<f64>,
    /// Gradient bytes held by each stage (length `P`), for the all-reduce.
    pub grad_bytes: Vec<f64>,
    /// All-reduce bandwidth across data-parallel ranks, bytes/s (0: no all-reduce).
    pub allreduce_bytes_per_s: f64,
    /// Activation bytes of one in-flight micro-batch on each stage (length `P`), for peak memory.
    pub activation_bytes: Vec<f64>,
    pub schedule: Schedule,
    /// Interleaved only, optional (empty: each chunk takes `1 / v` of its stage's time):
    /// `chunk_forward_ms[((r * M + m) * v + j) * P + s]`, the forward time of micro-batch `m` of
    /// rank `r` on model chunk `j` of stage `s` (layer-order chunk `j P + s`). When given,
    /// `forward_ms` is only checked, not used.
    pub chunk_forward_ms: Vec<f64>,
    /// Backward times of the chunks, same layout (recomputation included); given with
    /// `chunk_forward_ms` or not at all.
    pub chunk_backward_ms: Vec<f64>,
}

/// One executed operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub rank: u32,
    pub stage: u32,
    pub micro_batch: u32,
    /// Model chunk (0 unless interleaved).
    pub chunk: u32,
    pub backward: bool,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// What the simulation predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// The step: the slowest rank, all-reduce included.
    pub step_ms: f64,
    /// Each rank's step time.
    pub rank_ms: Vec<f64>,
    /// `busy_ms[r * P + s]`: compute time of rank `r`'s stage `s`.
    pub busy_ms: Vec<f64>,
    /// Idle time within the step (step - busy), same layout.
    pub idle_ms: Vec<f64>,
    /// Idle over total device time, all devices.
    pub bubble_fraction: f64,
    /// Most micro-batches (chunk-weighted) in flight on each stage, over ranks.
    pub peak_in_flight: Vec<f64>,
    /// Peak activation memory of each stage (in flight x activation bytes).
    pub peak_activation_bytes: Vec<f64>,
    pub events: Vec<Event>,
}

#[derive(Clone, Copy)]
struct Op {
    mb: u32,
    chunk: u32,
    backward: bool,
}

/// Forward operations stage `s` of a `p`-stage pipeline runs before its first backward (the
/// warm-up), in the schedule's units (model chunks for interleaved, `m x v` of them in all).
/// [`order`] builds the schedules from it, and [`in_flight`] counts memory from it.
pub fn warmup(schedule: Schedule, p: u32, s: u32, m: u32) -> u32 {
    match schedule {
        Schedule::GPipe => m,
        Schedule::OneFOneB => (p - s - 1).min(m),
        // Megatron-LM's interleaved schedule (schedules.py,
        // forward_backward_pipelining_with_interleaving): (P - s - 1) * 2 + (v - 1) * P.
        Schedule::Interleaved(v) => ((p - s - 1) * 2 + (v - 1) * p).min(m * v),
    }
}

/// Peak micro-batches whose activations stage `s` holds at once (chunk-weighted: a model chunk
/// of an interleaved schedule holds `1 / v` of the stage's activations). The one source of
/// truth for the memory model and the simulator (whose `peak_in_flight` equals it):
/// GPipe `m`; 1F1B `min(P - s, m)`; interleaved `min(warmup + 1, m v) / v`, which on the first
/// stage is `P + (P - 1) / v` = `P (1 + (P - 1) / (P v))`, Megatron-LM's interleaved memory
/// penalty (megatron/training/theoretical_memory_usage.py).
pub fn in_flight(schedule: Schedule, p: u32, s: u32, m: u32) -> f64 {
    let w = warmup(schedule, p, s, m);
    match schedule {
        Schedule::GPipe => m as f64,
        Schedule::OneFOneB => (w + 1).min(m) as f64,
        Schedule::Interleaved(v) => (w + 1).min(m * v) as f64 / v as f64,
    }
}

/// Where stage `s`'s held activations peak when its model chunks differ (interleaved plans
/// cut into `v x P` chunks of their own sizes): the micro-batches of each chunk in flight at
/// that moment and the bytes held, `max over time of sum_c held_c x chunk_bytes[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkPeak {
    /// Micro-batches of each model chunk held at the peak (length `v`).
    pub counts: Vec<u32>,
    /// `sum_c counts[c] x chunk_bytes[c]`: the peak activation bytes.
    pub bytes: f64,
}

/// Per-chunk in-flight counts at stage `s`'s activation peak, replaying the same operation
/// order the simulator runs ([`order`]): a forward of chunk `c` adds one micro-batch to chunk
/// `c`, its backward frees it; the peak is the first moment the held bytes are largest.
/// `chunk_bytes[c]` is the activation bytes of one micro-batch of chunk `c` of this stage
/// (length `v` for interleaved, 1 otherwise).
///
/// Megatron-LM (NVIDIA/Megatron-LM, megatron/core/pipeline_parallel/schedules.py at commit
/// 00611e6): `get_pp_rank_microbatches` gives rank `s` a warm-up of `(P - s - 1) * 2 +
/// (v - 1) * P` virtual micro-batches (`microbatch_group_size_per_vp_stage` defaults to `P`),
/// capped at `m v`; `get_schedule_table` runs forward `k` on model chunk `(k // P) mod v`
/// (micro-batches in groups of `P`, each group through every chunk in turn), and
/// `forward_backward_pipelining_with_interleaving` takes backward `k` on chunk
/// `v - 1 - (k // P) mod v`. With equal chunks this reduces to [`in_flight`] (tested), whose
/// first-stage value is `P (1 + (P - 1) / (P v))`, megatron/training/theoretical_memory_usage.py's
/// interleaved penalty; with unequal chunks the peak is this weighted sum, not the average.
pub fn chunk_in_flight(
    schedule: Schedule,
    p: u32,
    s: u32,
    m: u32,
    chunk_bytes: &[f64],
) -> Result<ChunkPeak, Error> {
    let v = chunks_per_device(schedule, p, s, m)?;
    if chunk_bytes.len() != v as usize {
        return Err(Error::out_of_range(
            "chunkBytes",
            format!("must have one entry per model chunk ({v})"),
        ));
    }
    finite_non_negative(&[("chunkBytes", chunk_bytes)])?;
    whole_rounds(v, p, m)?;
    let mut best = ChunkPeak {
        counts: vec![0u32; v as usize],
        bytes: 0.0,
    };
    let mut best_total = 0u32;
    after_each_forward(schedule, p, s, m, v, |held| {
        let bytes: f64 = held
            .iter()
            .zip(chunk_bytes)
            .map(|(&n, &b)| n as f64 * b)
            .sum();
        let total: u32 = held.iter().sum();
        // Largest bytes first; among equal bytes (zero-byte chunks), most micro-batches.
        if bytes > best.bytes || (bytes == best.bytes && total > best_total) {
            best.counts.clone_from_slice(held);
            best.bytes = bytes;
            best_total = total;
        }
    });
    Ok(best)
}

/// Every distinct set of per-chunk held micro-batches stage `s` passes through right after a
/// forward (where held activations can peak), keeping only those no other state covers in every
/// chunk, in the order they were reached: for any chunk bytes `b >= 0`, [`chunk_in_flight`]'s
/// peak is `max over these states of sum_c held_c x b_c`. The interleaved chunk planner
/// ([`crate::model::chunks`]) prices a stage's memory on them, from the same replay.
pub fn chunk_states(schedule: Schedule, p: u32, s: u32, m: u32) -> Result<Vec<Vec<u32>>, Error> {
    let v = chunks_per_device(schedule, p, s, m)?;
    whole_rounds(v, p, m)?;
    let mut states: Vec<Vec<u32>> = Vec::new();
    after_each_forward(schedule, p, s, m, v, |held| {
        let covers = |a: &[u32], b: &[u32]| a.iter().zip(b).all(|(x, y)| x >= y);
        if states.iter().any(|st| covers(st, held)) {
            return;
        }
        states.retain(|st| !covers(held, st));
        states.push(held.to_vec());
    });
    Ok(states)
}

/// The operation order of stage `s` of a `p`-stage pipeline with `m` micro-batches.
fn order(schedule: Schedule, p: u32, s: u32, m: u32) -> Vec<Op> {
    let f = |mb, chunk| Op {
        mb,
        chunk,
        backward: false,
    };
    let b = |mb, chunk| Op {
        mb,
        chunk,
        backward: true,
    };
    match schedule {
        Schedule::GPipe => (0..m)
            .map(|i| f(i, 0))
            .chain((0..m).rev().map(|i| b(i, 0)))
            .collect(),
        Schedule::OneFOneB => {
            let warm = warmup(schedule, p, s, m);
            let mut ops: Vec<Op> = (0..warm).map(|i| f(i, 0)).collect();
            for i in 0..m - warm {
                ops.push(f(warm + i, 0));
                ops.push(b(i, 0));
            }
            ops.extend((m - warm..m).map(|i| b(i, 0)));
            ops
        }
        Schedule::Interleaved(v) => {
            // Megatron: virtual micro-batch k runs chunk (k / P) % v of micro-batch
            // (k / (P v)) P + k % P; backwards take the chunks in reverse.
            let total = m * v;
            let fwd = |k: u32| f((k / (p * v)) * p + k % p, (k / p) % v);
            let bwd = |k: u32| b((k / (p * v)) * p + k % p, v - 1 - (k / p) % v);
            let warm = warmup(schedule, p, s, m);
            let mut ops: Vec<Op> = (0..warm).map(fwd).collect();
            for i in 0..total - warm {
                ops.push(fwd(warm + i));
                ops.push(bwd(i));
            }
            ops.extend((total - warm..total).map(bwd));
            ops
        }
    }
}

/// The model chunks per device of a replay of stage `s`, after checking its shape.
fn chunks_per_device(schedule: Schedule, p: u32, s: u32, m: u32) -> Result<u32, Error> {
    let v = match schedule {
        Schedule::Interleaved(v) => v,
        _ => 1,
    };
    if p == 0 || m == 0 || s >= p || v == 0 {
        return Err(Error::out_of_range(
            "pp",
            "pp and microBatches must be at least 1 and the stage below pp",
        ));
    }
    Ok(v)
}

/// The interleaved schedule runs micro-batches in rounds of `p`: `m` must be a multiple.
fn whole_rounds(v: u32, p: u32, m: u32) -> Result<(), Error> {
    if v > 1 && !m.is_multiple_of(p) {
        return Err(Error::out_of_range(
            "microBatches",
            format!("must be a multiple of pp ({p}) for the interleaved schedule"),
        ));
    }
    Ok(())
}

/// Replays stage `s`'s order, calling `f` with the micro-batches each chunk holds right after
/// every forward (where held activations can peak): the one replay [`chunk_in_flight`] and
/// [`chunk_states`] read.
fn after_each_forward(
    schedule: Schedule,
    p: u32,
    s: u32,
    m: u32,
    v: u32,
    mut f: impl FnMut(&[u32]),
) {
    let mut held = vec![0u32; v as usize];
    for op in order(schedule, p, s, m) {
        let c = op.chunk as usize;
        if op.backward {
            held[c] -= 1;
        } else {
            held[c] += 1;
            f(&held);
        }
    }
}

/// The first entry of the named arrays that is not a finite number >= 0, as an error naming
/// its array.
fn finite_non_negative(arrays: &[(&str, &[f64])]) -> Result<(), Error> {
    for &(name, xs) in arrays {
        if let Some(x) = xs.iter().find(|x| !x.is_finite() || **x < 0.0) {
            return Err(Error::out_of_range(
                name,
                format!(
                    "must hold finite numbers >= 0, got {}",
                    crate::error::js_number(*x)
                ),
            ));
        }
    }
    Ok(())
}

/// Transfer time between neighbouring devices; the interleaved wrap from the last device to
/// the first is priced like the last cut.
struct Hops<'a> {
    pp: usize,
    p2p: &'a [f64],
}

impl Hops<'_> {
    fn between(&self, from: usize, to: usize) -> f64 {
        if self.pp == 1 || from == to {
            0.0
        } else if to == from + 1 {
            self.p2p[from]
        } else if from == to + 1 {
            self.p2p[to]
        } else {
            self.p2p[self.pp - 2]
        }
    }
}

/// Buffers one rank's replay reuses.
#[derive(Default)]
struct RankScratch {
    /// `done_f[vs * m + mb]` / `done_b`: end times per virtual stage and micro-batch (NaN: not yet).
    done_f: Vec<f64>,
    done_b: Vec<f64>,
    next: Vec<usize>,
    free: Vec<f64>,
    live: Vec<f64>,
}

/// Runs one rank's devices through their operation orders (`orders[s]`, from [`order`]): an
/// operation starts when its device is free and its input has arrived (the previous virtual
/// stage's forward, or the next one's backward, plus the hop), and takes `dur(s, op)`.
/// `on_op(s, op, dur, start, end, live)` sees each executed operation (`live`: the device's
/// chunk-weighted micro-batches held after it). Returns each device's finish time. The one
/// replay [`simulate_step`] and [`ChunkReplay::step_ms`] run.
fn replay_rank<'s>(
    orders: &[Vec<Op>],
    v: usize,
    m: usize,
    hop: &Hops,
    scratch: &'s mut RankScratch,
    dur: impl Fn(usize, Op) -> f64,
    mut on_op: impl FnMut(usize, Op, f64, f64, f64, f64),
) -> Result<&'s [f64], Error> {
    let pp = orders.len();
    let vs_count = pp * v;
    let vf = v as f64;
    let sc = scratch;
    sc.done_f.clear();
    sc.done_f.resize(vs_count * m, f64::NAN);
    sc.done_b.clear();
    sc.done_b.resize(vs_count * m, f64::NAN);
    sc.next.clear();
    sc.next.resize(pp, 0);
    sc.free.clear();
    sc.free.resize(pp, 0.0);
    sc.live.clear();
    sc.live.resize(pp, 0.0);
    let total_ops: usize = orders.iter().map(|o| o.len()).sum();
    let mut executed = 0;
    while executed < total_ops {
        let mut progressed = false;
        for s in 0..pp {
            while sc.next[s] < orders[s].len() {
                let op = orders[s][sc.next[s]];
                let vs = op.chunk as usize * pp + s;
                let mb = op.mb as usize;
                let ready = if !op.backward {
                    if vs == 0 {
                        Some(0.0)
                    } else {
                        let prev = sc.done_f[(vs - 1) * m + mb];
                        (!prev.is_nan()).then(|| prev + hop.between((vs - 1) % pp, s))
                    }
                } else if vs == vs_count - 1 {
                    let own = sc.done_f[vs * m + mb];
                    (!own.is_nan()).then_some(own)
                } else {
                    let later = sc.done_b[(vs + 1) * m + mb];
                    (!later.is_nan()).then(|| later + hop.between((vs + 1) % pp, s))
                };
                let Some(ready) = ready else { break };
                let d = dur(s, op);
                let start = sc.free[s].max(ready);
                let end = start + d;
                sc.free[s] = end;
                if op.backward {
                    sc.done_b[vs * m + mb] = end;
                    sc.live[s] -= 1.0 / vf;
                } else {
                    sc.done_f[vs * m + mb] = end;
                    sc.live[s] += 1.0 / vf;
                }
                on_op(s, op, d, start, end, sc.live[s]);
                sc.next[s] += 1;
                executed += 1;
                progressed = true;
            }
        }
        if !progressed {
            return Err(Error::out_of_range(
                "schedule",
                "deadlocked: the operation order cannot run (internal error)",
            ));
        }
    }
    Ok(&sc.free)
}

/// The operation orders of a `p`-stage pipeline's devices with `m` micro-batches, and the
/// buffers of their replay: the simulator for one rank whose micro-batches all take the same
/// time per model chunk, run many times over (the interleaved chunk planner scores its plans
/// with it).
pub struct ChunkReplay {
    orders: Vec<Vec<Op>>,
    v: usize,
    m: usize,
    scratch: RankScratch,
}

impl ChunkReplay {
    /// The replay of `schedule` over `p` devices and `m` micro-batches (checked as
    /// [`simulate_step`] checks them).
    pub fn new(schedule: Schedule, p: u32, m: u32) -> Result<Self, Error> {
        let v = chunks_per_device(schedule, p, 0, m)?;
        whole_rounds(v, p, m)?;
        Ok(ChunkReplay {
            orders: (0..p).map(|s| order(schedule, p, s, m)).collect(),
            v: v as usize,
            m: m as usize,
            scratch: RankScratch::default(),
        })
    }

    /// [`simulate_step`]'s step for one rank (no all-reduce) whose every micro-batch takes
    /// `forward_ms[u]` / `backward_ms[u]` on model chunk `u` (layer order: chunk `j P + s` is
    /// chunk `j` of device `s`, `v x P` entries), with `p2p_ms` the transfer time across the
    /// cut after each device (`P - 1` entries). Sizes are the caller's to get right.
    pub fn step_ms(&mut self, forward_ms: &[f64], backward_ms: &[f64], p2p_ms: &[f64]) -> f64 {
        let pp = self.orders.len();
        let hop = Hops { pp, p2p: p2p_ms };
        let free = replay_rank(
            &self.orders,
            self.v,
            self.m,
            &hop,
            &mut self.scratch,
            |s, op| {
                let u = op.chunk as usize * pp + s;
                if op.backward {
                    backward_ms[u]
                } else {
                    forward_ms[u]
                }
            },
            |_, _, _, _, _, _| {},
        )
        .expect("the schedule's order runs");
        free.iter().copied().fold(0.0, f64::max)
    }
}

/// Simulates one step.
pub fn simulate_step(input: &StepInput) -> Result<StepResult, Error> {
    let (dp, pp, m) = (
        input.dp as usize,
        input.pp as usize,
        input.micro_batches as usize,
    );
    if dp == 0 || pp == 0 || m == 0 {
        return Err(Error::out_of_range(
            "dp",
            "pp and microBatches must be at least 1",
        ));
    }
    let n = dp * m * pp;
    if input.forward_ms.len() != n || input.backward_ms.len() != n {
        return Err(Error::out_of_range(
            "forwardMs",
            format!("and backwardMs must have dp x microBatches x pp = {n} entries"),
        ));
    }
    if input.p2p_ms.len() != pp - 1
        || input.grad_bytes.len() != pp
        || input.activation_bytes.len() != pp
    {
        return Err(Error::out_of_range(
            "transferMs",
            "must have pp - 1 entries; gradBytes and activationBytes pp entries",
        ));
    }
    finite_non_negative(&[
        ("forwardMs", &input.forward_ms),
        ("backwardMs", &input.backward_ms),
        ("transferMs", &input.p2p_ms),
        ("gradBytes", &input.grad_bytes),
        ("activationBytes", &input.activation_bytes),
    ])?;
    let v = match input.schedule {
        Schedule::Interleaved(v) => v as usize,
        _ => 1,
    };
    whole_rounds(v as u32, pp as u32, m as u32)?;
    let chunked = !input.chunk_forward_ms.is_empty() || !input.chunk_backward_ms.is_empty();
    if chunked {
        let nc = n * v;
        if !matches!(input.schedule, Schedule::Interleaved(_)) {
            return Err(Error::out_of_range(
                "chunkForwardMs",
                "is for the interleaved schedule only",
            ));
        }
        if input.chunk_forward_ms.len() != nc || input.chunk_backward_ms.len() != nc {
            return Err(Error::out_of_range(
                "chunkForwardMs",
                format!(
                    "and chunkBackwardMs must have dp x microBatches x virtualStages x pp = {nc} entries"
                ),
            ));
        }
        finite_non_negative(&[
            ("chunkForwardMs", &input.chunk_forward_ms),
            ("chunkBackwardMs", &input.chunk_backward_ms),
        ])?;
    }
    let vf = v as f64;
    let mut result = StepResult {
        step_ms: 0.0,
        rank_ms: vec![0.0; dp],
        busy_ms: vec![0.0; dp * pp],
        idle_ms: vec![0.0; dp * pp],
        bubble_fraction: 0.0,
        peak_in_flight: vec![0.0; pp],
        peak_activation_bytes: vec![0.0; pp],
        events: Vec::with_capacity(n * 2 * v),
    };
    let allreduce = |s: usize| {
        if dp > 1 && input.allreduce_bytes_per_s > 0.0 {
            2.0 * (dp as f64 - 1.0) / dp as f64 * input.grad_bytes[s] / input.allreduce_bytes_per_s
                * 1e3
        } else {
            0.0
        }
    };
    let hop = Hops {
        pp,
        p2p: &input.p2p_ms,
    };
    let orders: Vec<Vec<Op>> = (0..pp)
        .map(|s| order(input.schedule, input.pp, s as u32, input.micro_batches))
        .collect();
    let mut scratch = RankScratch::default();
    for r in 0..dp {
        let free = replay_rank(
            &orders,
            v,
            m,
            &hop,
            &mut scratch,
            |s, op| {
                let mb = op.mb as usize;
                if chunked {
                    let at = ((r * m + mb) * v + op.chunk as usize) * pp + s;
                    if op.backward {
                        input.chunk_backward_ms[at]
                    } else {
                        input.chunk_forward_ms[at]
                    }
                } else {
                    let idx = (r * m + mb) * pp + s;
                    if op.backward {
                        input.backward_ms[idx] / vf
                    } else {
                        input.forward_ms[idx] / vf
                    }
                }
            },
            |s, op, dur, start, end, live| {
                result.busy_ms[r * pp + s] += dur;
                if !op.backward {
                    result.peak_in_flight[s] = result.peak_in_flight[s].max(live);
                }
                result.events.push(Event {
                    rank: r as u32,
                    stage: s as u32,
                    micro_batch: op.mb,
                    chunk: op.chunk,
                    backward: op.backward,
                    start_ms: start,
                    end_ms: end,
                });
            },
        )?;
        let mut rank_end = 0.0f64;
        for (s, &f) in free.iter().enumerate() {
            rank_end = rank_end.max(f + allreduce(s));
        }
        result.rank_ms[r] = rank_end;
    }
    result.step_ms = result.rank_ms.iter().copied().fold(0.0, f64::max);
    let mut idle = 0.0;
    for i in 0..dp * pp {
        result.idle_ms[i] = result.step_ms - result.busy_ms[i];
        idle += result.idle_ms[i];
    }
    result.bubble_fraction = if result.step_ms > 0.0 {
        idle / (result.step_ms * (dp * pp) as f64)
    } else {
        0.0
    };
    for s in 0..pp {
        result.peak_activation_bytes[s] = result.peak_in_flight[s] * input.activation_bytes[s];
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(dp: u32, pp: u32, m: u32, f: f64, b: f64, schedule: Schedule) -> StepInput {
        let n = (dp * pp * m) as usize;
        StepInput {
            dp,
            pp,
            micro_batches: m,
            forward_ms: vec![f; n],
            backward_ms: vec![b; n],
            p2p_ms: vec![0.0; pp as usize - 1],
            grad_bytes: vec![0.0; pp as usize],
            allreduce_bytes_per_s: 0.0,
            activation_bytes: vec![1.0; pp as usize],
            schedule,
            chunk_forward_ms: Vec::new(),
            chunk_backward_ms: Vec::new(),
        }
    }

    #[test]
    fn gpipe_and_1f1b_match_the_closed_form() {
        for (p, m) in [(1, 1), (2, 3), (4, 8), (8, 8), (4, 1), (6, 13)] {
            for sched in [Schedule::GPipe, Schedule::OneFOneB] {
                let r = simulate_step(&uniform(1, p, m, 2.0, 4.0, sched)).unwrap();
                assert_eq!(r.step_ms, (m + p - 1) as f64 * 6.0, "{sched:?} p {p} m {m}");
            }
        }
    }

    #[test]
    fn in_flight_is_m_for_gpipe_and_p_minus_s_for_1f1b() {
        let g = simulate_step(&uniform(1, 4, 8, 1.0, 2.0, Schedule::GPipe)).unwrap();
        assert_eq!(g.peak_in_flight, vec![8.0; 4]);
        let o = simulate_step(&uniform(1, 4, 8, 1.0, 2.0, Schedule::OneFOneB)).unwrap();
        assert_eq!(o.peak_in_flight, vec![4.0, 3.0, 2.0, 1.0]);
    }

    #[test]
    fn the_closed_form_in_flight_count_is_what_the_simulator_holds() {
        let mut rng = crate::rng::Rng::new(11);
        for _ in 0..300 {
            let p = 1 + rng.below(8);
            let v = 1 + rng.below(4);
            let m = p * (1 + rng.below(4));
            for sched in [
                Schedule::GPipe,
                Schedule::OneFOneB,
                Schedule::Interleaved(v),
            ] {
                let mut input = uniform(1, p, m, 1.0, 2.0, sched);
                for (i, x) in input.forward_ms.iter_mut().enumerate() {
                    *x = 0.5 + (i % 7) as f64; // uneven stages
                }
                let r = simulate_step(&input).unwrap();
                let closed: Vec<f64> = (0..p).map(|s| in_flight(sched, p, s, m)).collect();
                for (a, b) in r.peak_in_flight.iter().zip(&closed) {
                    assert!(
                        (a - b).abs() < 1e-9,
                        "{sched:?} p {p} m {m}: {r:?} vs {closed:?}",
                        r = r.peak_in_flight
                    );
                }
            }
        }
        // Megatron-LM's interleaved penalty on the first stage: P (1 + (P - 1) / (P v)).
        assert_eq!(
            in_flight(Schedule::Interleaved(2), 8, 0, 32),
            8.0 * (1.0 + 7.0 / 16.0)
        );
    }

    #[test]
    fn chunk_peaks_reduce_to_the_closed_form_for_equal_chunks() {
        let mut rng = crate::rng::Rng::new(23);
        for _ in 0..300 {
            let p = 1 + rng.below(8);
            let v = 1 + rng.below(4);
            let m = p * (1 + rng.below(4));
            for sched in [
                Schedule::GPipe,
                Schedule::OneFOneB,
                Schedule::Interleaved(v),
            ] {
                let k = if let Schedule::Interleaved(v) = sched {
                    v
                } else {
                    1
                };
                for s in 0..p {
                    let peak =
                        chunk_in_flight(sched, p, s, m, &vec![1.0 / k as f64; k as usize]).unwrap();
                    let closed = in_flight(sched, p, s, m);
                    assert!(
                        (peak.bytes - closed).abs() < 1e-9,
                        "{sched:?} p {p} s {s} m {m}"
                    );
                    assert_eq!(peak.counts.iter().sum::<u32>() as f64, closed * k as f64);
                }
            }
        }
    }

    #[test]
    fn unequal_chunks_peak_where_the_heavy_chunk_holds_most() {
        // P 4, v 2, m 8, first stage: warm-up 3 * 2 + 4 = 10 forwards; equal chunks hold 11
        // (7 of chunk 0 and 4 of chunk 1, Megatron's 4 (1 + 3 / 8) x 2), but chunk 0 reaches
        // all 8 micro-batches (with 3 of chunk 1) before its first backward.
        let s = Schedule::Interleaved(2);
        let heavy0 = chunk_in_flight(s, 4, 0, 8, &[1.0, 0.0]).unwrap();
        assert_eq!(heavy0.counts, vec![8, 3]);
        assert_eq!(heavy0.bytes, 8.0);
        let equal = chunk_in_flight(s, 4, 0, 8, &[1.0, 1.0]).unwrap();
        assert_eq!(equal.bytes, 11.0);
        let mixed = chunk_in_flight(s, 4, 0, 8, &[3.0, 1.0]).unwrap();
        assert_eq!(mixed.bytes, 27.0); // 8 x 3 + 3 x 1 > 7 x 3 + 4 x 1
                                       // The average model would say 5.5 x (3 + 1) = 22 bytes: 19% short.
        assert!(chunk_in_flight(s, 4, 0, 6, &[1.0, 1.0]).is_err());
        assert!(chunk_in_flight(s, 4, 0, 8, &[1.0]).is_err());
        assert!(chunk_in_flight(s, 4, 0, 8, &[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn chunk_states_give_the_replayed_peak_for_any_chunk_bytes() {
        let mut rng = crate::rng::Rng::new(29);
        for _ in 0..400 {
            let p = 1 + rng.below(6);
            let v = 1 + rng.below(4);
            let m = p * (1 + rng.below(4));
            let sched = [
                Schedule::GPipe,
                Schedule::OneFOneB,
                Schedule::Interleaved(v),
            ][rng.below(3) as usize];
            let k = if let Schedule::Interleaved(v) = sched {
                v
            } else {
                1
            };
            let s = rng.below(p);
            let bytes: Vec<f64> = (0..k).map(|_| rng.below(20) as f64).collect();
            let states = chunk_states(sched, p, s, m).unwrap();
            let best = states
                .iter()
                .map(|st| {
                    st.iter()
                        .zip(&bytes)
                        .map(|(&n, &b)| n as f64 * b)
                        .sum::<f64>()
                })
                .fold(0.0, f64::max);
            let peak = chunk_in_flight(sched, p, s, m, &bytes).unwrap();
            assert_eq!(best, peak.bytes, "{sched:?} p {p} s {s} m {m}");
            // No state covers another.
            for (i, a) in states.iter().enumerate() {
                for (j, b) in states.iter().enumerate() {
                    assert!(i == j || !a.iter().zip(b).all(|(x, y)| x >= y));
                }
            }
        }
    }

    #[test]
    fn interleaving_shrinks_the_bubble_by_v() {
        let (p, m, f, b) = (4u32, 8u32, 2.0, 4.0);
        for v in [2u32, 4] {
            let r = simulate_step(&uniform(1, p, m, f, b, Schedule::Interleaved(v))).unwrap();
            let expected = m as f64 * (f + b) + (p - 1) as f64 * (f + b) / v as f64;
            assert!(
                (r.step_ms - expected).abs() < 1e-9,
                "v {v}: {} vs {expected}",
                r.step_ms
            );
        }
    }

    /// `uniform`'s step with each chunk's time given: chunk `j` of every stage takes
    /// `share[j]` of the stage's forward and backward.
    fn with_chunk_shares(mut input: StepInput, share: &[f64]) -> StepInput {
        let v = share.len();
        let pp = input.pp as usize;
        let n = input.forward_ms.len();
        input.chunk_forward_ms = vec![0.0; n * v];
        input.chunk_backward_ms = vec![0.0; n * v];
        for i in 0..n / pp {
            for (j, w) in share.iter().enumerate() {
                for s in 0..pp {
                    input.chunk_forward_ms[(i * v + j) * pp + s] = w * input.forward_ms[i * pp + s];
                    input.chunk_backward_ms[(i * v + j) * pp + s] =
                        w * input.backward_ms[i * pp + s];
                }
            }
        }
        input
    }

    #[test]
    fn equal_chunk_times_give_the_one_over_v_step_and_unequal_ones_their_own() {
        let mut rng = crate::rng::Rng::new(5);
        for _ in 0..200 {
            let p = 1 + rng.below(5);
            let v = 1 + rng.below(3);
            let m = p * (1 + rng.below(3));
            let dp = 1 + rng.below(2);
            let mut input = uniform(dp, p, m, 1.0, 2.0, Schedule::Interleaved(v));
            for (i, x) in input.forward_ms.iter_mut().enumerate() {
                *x = 0.5 + (i % 5) as f64;
            }
            input.p2p_ms = (0..p - 1).map(|i| 0.1 * i as f64).collect();
            let plain = simulate_step(&input).unwrap();
            let equal = simulate_step(&with_chunk_shares(
                input.clone(),
                &vec![1.0 / v as f64; v as usize],
            ))
            .unwrap();
            assert!((plain.step_ms - equal.step_ms).abs() < 1e-9 * plain.step_ms.max(1.0));
            assert_eq!(plain.peak_in_flight, equal.peak_in_flight);
            // Every chunk's events last exactly its given time.
            let share: Vec<f64> = (0..v).map(|j| (j + 1) as f64).collect();
            let total: f64 = share.iter().sum();
            let share: Vec<f64> = share.iter().map(|w| w / total).collect();
            let own = simulate_step(&with_chunk_shares(input.clone(), &share)).unwrap();
            for e in &own.events {
                let at = (e.rank as usize * m as usize + e.micro_batch as usize) * p as usize
                    + e.stage as usize;
                let whole = if e.backward {
                    input.backward_ms[at]
                } else {
                    input.forward_ms[at]
                };
                let want = share[e.chunk as usize] * whole;
                assert!(
                    (e.end_ms - e.start_ms - want).abs() < 1e-9,
                    "{e:?} vs {want}"
                );
            }
            // Busy time is unchanged: the shares sum to 1.
            for (a, b) in own.busy_ms.iter().zip(&plain.busy_ms) {
                assert!((a - b).abs() < 1e-9 * b.max(1.0));
            }
        }
    }

    #[test]
    fn chunk_times_are_checked() {
        let base = uniform(1, 2, 2, 1.0, 1.0, Schedule::Interleaved(2));
        let mut short = with_chunk_shares(base.clone(), &[0.5, 0.5]);
        short.chunk_backward_ms.pop();
        assert_eq!(
            simulate_step(&short).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        let mut nan = with_chunk_shares(base.clone(), &[0.5, 0.5]);
        nan.chunk_forward_ms[3] = f64::NAN;
        assert_eq!(
            simulate_step(&nan).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        let mut plain = with_chunk_shares(base, &[0.5, 0.5]);
        plain.schedule = Schedule::OneFOneB;
        assert_eq!(
            simulate_step(&plain).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
    }

    #[test]
    fn the_slowest_rank_sets_the_step_and_all_reduce_adds_its_ring_time() {
        let mut input = uniform(2, 2, 4, 1.0, 2.0, Schedule::OneFOneB);
        for x in input.forward_ms[8..].iter_mut() {
            *x = 3.0; // rank 1 is slower
        }
        let r = simulate_step(&input).unwrap();
        assert!(r.rank_ms[1] > r.rank_ms[0]);
        assert_eq!(r.step_ms, r.rank_ms[1]);
        input.grad_bytes = vec![1e9, 1e9];
        input.allreduce_bytes_per_s = 1e11;
        let with = simulate_step(&input).unwrap();
        // ring: 2 (dp - 1) / dp x 1 GB / 100 GB/s = 10 ms
        assert!((with.step_ms - r.step_ms - 10.0).abs() < 1e-9);
    }

    #[test]
    fn transfers_delay_dependent_work() {
        let mut input = uniform(1, 2, 1, 1.0, 1.0, Schedule::OneFOneB);
        input.p2p_ms = vec![0.5];
        let r = simulate_step(&input).unwrap();
        assert_eq!(r.step_ms, 1.0 + 0.5 + 1.0 + 1.0 + 0.5 + 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut input = uniform(1, 2, 2, 1.0, 1.0, Schedule::OneFOneB);
        input.forward_ms[0] = f64::NAN;
        assert_eq!(
            simulate_step(&input).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert!(simulate_step(&uniform(1, 4, 6, 1.0, 1.0, Schedule::Interleaved(2))).is_err());
    }
}
