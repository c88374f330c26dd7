//! The canonical stage problem, and the evaluation of a stage plan.
//!
//! Layers `i = 0..L` have forward and backward time `f_i`, `b_i` (ms), static bytes `w_i`
//! (weights, gradients, optimizer share), activation bytes `a_i` kept per in-flight micro-batch
//! when not recomputed, and checkpoint bytes `c_i` kept when recomputed. A plan splits them into
//! `P` contiguous non-empty stages and chooses which layers of each stage are recomputed
//! (fully: keeps `c_i`, adds `f_i`; or selectively, Megatron's `--recompute-granularity
//! selective`: keeps `s_i`, adds `e_i <= f_i`).
//! Stage `s` (0-based) holds `n_s` micro-batches in flight, from the schedule
//! ([`crate::simulate::in_flight`], shared with the simulator: 1F1B `min(P - s, M)`, GPipe `M`,
//! interleaved Megatron's count); its memory is
//! `sum w + n_s * (sum over kept c, s or a) + overhead`, at most `C`; its time per micro-batch is
//! `sum (f + b) + recomputation`, plus the communication time of the cut after it. The
//! iteration time is `T = sum_s t_s + (M - 1) * max_s t_s`.

use crate::error::{number_at_least, Error};
use crate::simulate::{in_flight, Schedule};

/// One layer of the stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer {
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub static_bytes: f64,
    pub activation_bytes: f64,
    pub checkpoint_bytes: f64,
    /// Bytes kept per in-flight micro-batch under selective recomputation (equal to
    /// `activation_bytes` for a layer without it).
    pub selective_bytes: f64,
    /// Forward time selective recomputation adds (at most `forward_ms`).
    pub selective_ms: f64,
}

impl Layer {
    /// A layer without selective recomputation (it keeps `a` bytes and adds no time).
    pub fn new(f: f64, b: f64, w: f64, a: f64, c: f64) -> Self {
        Layer {
            forward_ms: f,
            backward_ms: b,
            static_bytes: w,
            activation_bytes: a,
            checkpoint_bytes: c,
            selective_bytes: a,
            selective_ms: 0.0,
        }
    }
}

/// How recomputation may be chosen per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompute {
    /// Nothing is recomputed.
    None,
    /// Every layer is recomputed.
    Full,
    /// The first `k_s` layers of stage `s` are recomputed (Megatron's "block" method, per stage).
    Block,
    /// Any subset of each stage's layers (chosen greedily: approximate, never worse than block).
    Any,
    /// Per stage, the first `k_s` layers fully recomputed and the rest either kept or all
    /// selectively recomputed (exact over that choice).
    Selective,
    /// One count `k` for all stages, as Megatron-LM's `--recompute-granularity full
    /// --recompute-method block --recompute-num-layers k`: in every stage, each run of
    /// consecutive layers with the same role ([`StageProblem::recompute_groups`]) recomputes
    /// none of its layers (role 0), its first `min(k, run length)` (role 1: the LLM decoder's
    /// layers on that stage) or all of them (role 2: the ViT under `--recompute-vision`). See
    /// [`super::recompute`] for the Megatron-LM source this follows.
    Uniform(u32),
    /// Every layer selectively recomputed, as Megatron-LM's `--recompute-granularity selective`.
    SelectiveAll,
}

impl Recompute {
    /// Every mode's name.
    pub const NAMES: &'static [&'static str] = &[
        "none",
        "full",
        "block",
        "any",
        "selective",
        "uniform",
        "selective-all",
    ];

    /// Parses a mode name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "none" => Ok(Recompute::None),
            "full" => Ok(Recompute::Full),
            "block" => Ok(Recompute::Block),
            "any" => Ok(Recompute::Any),
            "selective" => Ok(Recompute::Selective),
            "uniform" => Ok(Recompute::Uniform(0)),
            "selective-all" => Ok(Recompute::SelectiveAll),
            _ => Err(Error::UnknownOption {
                name: "recompute".into(),
                value: name.into(),
                known: Recompute::NAMES,
            }),
        }
    }
}

/// The whole problem.
#[derive(Debug, Clone, PartialEq)]
pub struct StageProblem {
    pub layers: Vec<Layer>,
    /// Pipeline stages `P`.
    pub stages: u32,
    /// Micro-batches per iteration `M`.
    pub micro_batches: u32,
    /// Memory per GPU `C`, bytes.
    pub memory_bytes: f64,
    /// Fixed bytes on every stage (CUDA context, buffers, fragmentation).
    pub stage_overhead_bytes: f64,
    /// `comm_ms[i]`: time to send one micro-batch's activation forward and its gradient back
    /// across a cut after layer `i` (length `L - 1`, or empty for none).
    pub comm_ms: Vec<f64>,
    pub recompute: Recompute,
    /// The first stage must hold at least the first `first_stage_min_layers` layers (the vision
    /// encoder, for frameworks that need it on stage 0); 0 for no constraint.
    pub first_stage_min_layers: u32,
    /// The pipeline schedule, which sets the micro-batches in flight per stage.
    pub schedule: Schedule,
    /// Each layer's role under [`Recompute::Uniform`]: 0 never recomputed (patch embedding,
    /// projector, embedding, head; the ViT without `--recompute-vision`), 1 counted (the first
    /// `k` of each run in a stage: the decoder layers), 2 always recomputed (the ViT with
    /// `--recompute-vision`). Empty: every layer counted.
    pub recompute_groups: Vec<u32>,
}

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub first_layer: u32,
    /// Inclusive.
    pub last_layer: u32,
    /// Recomputed layers, ascending (absolute indices).
    pub recomputed: Vec<u32>,
    /// Selectively recomputed layers, ascending (absolute indices).
    pub selective: Vec<u32>,
    /// Time per micro-batch (forward + backward + recomputation + the cut after it), ms.
    pub time_ms: f64,
    /// Peak memory, bytes.
    pub memory_bytes: f64,
    /// Micro-batches in flight under the schedule (chunk-weighted for interleaved).
    pub in_flight: f64,
}

/// A stage plan and its predicted figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub stages: Vec<Stage>,
    /// `sum_s t_s + (M - 1) * max_s t_s`, ms.
    pub iteration_ms: f64,
    /// `max_s t_s`, ms.
    pub bottleneck_ms: f64,
}

impl StageProblem {
    /// Checks sizes and values: at least as many layers as stages, positive `P`, `M`, `C`,
    /// finite non-negative times and bytes.
    pub fn check(&self) -> Result<(), Error> {
        let l = self.layers.len();
        if self.stages == 0 {
            return Err(Error::out_of_range("stages", "must be at least 1, got 0"));
        }
        if self.micro_batches == 0 {
            return Err(Error::out_of_range(
                "microBatches",
                "must be at least 1, got 0",
            ));
        }
        if l < self.stages as usize {
            return Err(Error::out_of_range(
                "layers",
                format!(
                    "must be at least as many as the stages ({}), got {l}",
                    self.stages
                ),
            ));
        }
        number_at_least("memoryBytes", self.memory_bytes, 0.0)?;
        if self.memory_bytes == 0.0 {
            return Err(Error::out_of_range("memoryBytes", "must be > 0, got 0"));
        }
        number_at_least("stageOverheadBytes", self.stage_overhead_bytes, 0.0)?;
        for (i, x) in self.layers.iter().enumerate() {
            for (name, v) in [
                ("forwardMs", x.forward_ms),
                ("backwardMs", x.backward_ms),
                ("staticBytes", x.static_bytes),
                ("activationBytes", x.activation_bytes),
                ("checkpointBytes", x.checkpoint_bytes),
                ("selectiveBytes", x.selective_bytes),
                ("selectiveMs", x.selective_ms),
            ] {
                number_at_least(&format!("layers[{i}].{name}"), v, 0.0)?;
            }
            if x.selective_ms > x.forward_ms {
                return Err(Error::out_of_range(
                    &format!("layers[{i}].selectiveMs"),
                    "must be at most the layer's forwardMs (selective recomputation redoes part of the forward)",
                ));
            }
        }
        if !self.recompute_groups.is_empty() && self.recompute_groups.len() != l {
            return Err(Error::out_of_range(
                "recomputeGroups",
                format!(
                    "must have one entry per layer ({l}), got {}",
                    self.recompute_groups.len()
                ),
            ));
        }
        if let Some(i) = self.recompute_groups.iter().position(|&g| g > 2) {
            return Err(Error::out_of_range(
                &format!("recomputeGroups[{i}]"),
                format!(
                    "must be 0 (never), 1 (counted) or 2 (always), got {}",
                    self.recompute_groups[i]
                ),
            ));
        }
        if !self.comm_ms.is_empty() && self.comm_ms.len() != l - 1 {
            return Err(Error::out_of_range(
                "commMs",
                format!(
                    "must have one entry per cut (layers - 1 = {}), got {}",
                    l - 1,
                    self.comm_ms.len()
                ),
            ));
        }
        for (i, &c) in self.comm_ms.iter().enumerate() {
            number_at_least(&format!("commMs[{i}]"), c, 0.0)?;
        }
        // Every time the DP adds up (forward, backward, a recomputed forward, cuts) times the
        // micro-batches must stay finite, or the objective overflows to infinity.
        let mut total = 0.0;
        for x in &self.layers {
            total += 2.0 * x.forward_ms + x.backward_ms;
        }
        for &c in &self.comm_ms {
            total += c;
        }
        if !(total * self.micro_batches as f64).is_finite() {
            return Err(Error::out_of_range(
                "layers",
                "times are too large: the iteration time overflows (use milliseconds)",
            ));
        }
        if self.first_stage_min_layers as usize > l - (self.stages as usize - 1) {
            return Err(Error::out_of_range(
                "firstStageMinLayers",
                format!(
                    "leaves fewer layers than the other {} stages need",
                    self.stages - 1
                ),
            ));
        }
        Ok(())
    }

    /// Micro-batches in flight on stage `s` under the problem's schedule.
    pub fn in_flight(&self, s: usize) -> f64 {
        in_flight(self.schedule, self.stages, s as u32, self.micro_batches)
    }

    /// Communication time of a cut after layer `r` (0 at the last layer).
    pub fn cut_ms(&self, r: usize) -> f64 {
        if r + 1 < self.layers.len() && !self.comm_ms.is_empty() {
            self.comm_ms[r]
        } else {
            0.0
        }
    }

    /// Evaluates a plan given by its stage boundaries (`ends[s]` = last layer of stage `s`) and
    /// recomputed layers per stage: times, memory, iteration time. Memory is not checked.
    pub fn evaluate(&self, ends: &[u32], recomputed: &[Vec<u32>]) -> Result<StagePlan, Error> {
        let none = vec![Vec::new(); recomputed.len()];
        self.evaluate_with(ends, recomputed, &none)
    }

    /// [`Self::evaluate`] with selectively recomputed layers as well (a layer in both lists is
    /// fully recomputed).
    pub fn evaluate_with(
        &self,
        ends: &[u32],
        recomputed: &[Vec<u32>],
        selective: &[Vec<u32>],
    ) -> Result<StagePlan, Error> {
        if ends.len() != self.stages as usize
            || recomputed.len() != ends.len()
            || selective.len() != ends.len()
        {
            return Err(Error::out_of_range(
                "plan",
                format!("must have {} stages", self.stages),
            ));
        }
        let mut stages = Vec::with_capacity(ends.len());
        let mut first = 0u32;
        for (s, ((&last, rec), sel)) in ends.iter().zip(recomputed).zip(selective).enumerate() {
            if last < first || last as usize >= self.layers.len() {
                return Err(Error::out_of_range(
                    "plan",
                    format!("stage {s} must end after it starts and inside the stack"),
                ));
            }
            if rec.iter().chain(sel).any(|&i| i < first || i > last) {
                return Err(Error::out_of_range(
                    "plan",
                    format!("stage {s} recomputes a layer it does not hold"),
                ));
            }
            let n = self.in_flight(s);
            let (mut time, mut w, mut act) = (0.0, 0.0, 0.0);
            let mut selected = Vec::new();
            for i in first..=last {
                let x = &self.layers[i as usize];
                let r = rec.contains(&i);
                let q = !r && sel.contains(&i);
                time += x.forward_ms + x.backward_ms;
                w += x.static_bytes;
                if r {
                    time += x.forward_ms;
                    act += x.checkpoint_bytes;
                } else if q {
                    time += x.selective_ms;
                    act += x.selective_bytes;
                    selected.push(i);
                } else {
                    act += x.activation_bytes;
                }
            }
            if s + 1 < ends.len() {
                time += self.cut_ms(last as usize);
            }
            stages.push(Stage {
                first_layer: first,
                last_layer: last,
                recomputed: rec.clone(),
                selective: selected,
                time_ms: time,
                memory_bytes: w + n * act + self.stage_overhead_bytes,
                in_flight: n,
            });
            first = last + 1;
        }
        if first as usize != self.layers.len() {
            return Err(Error::out_of_range("plan", "must cover every layer"));
        }
        Ok(plan_from(stages, self.micro_batches))
    }
}

/// Totals a list of stages into a plan.
pub fn plan_from(stages: Vec<Stage>, micro_batches: u32) -> StagePlan {
    let mut sum = 0.0;
    let mut max: f64 = 0.0;
    for s in &stages {
        sum += s.time_ms;
        max = max.max(s.time_ms);
    }
    StagePlan {
        stages,
        iteration_ms: sum + (micro_batches as f64 - 1.0) * max,
        bottleneck_ms: max,
    }
}
