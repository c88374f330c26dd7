//! Per-stage recomputation: for a stage holding layers `l..=r` with `n` micro-batches in
//! flight, the cheapest recomputation that fits in memory.
//!
//! Recomputing layer `i` adds `f_i` to the stage time and keeps `c_i` instead of `a_i` bytes
//! per micro-batch. Time only grows with what is recomputed, so each stage independently takes
//! the cheapest feasible choice:
//! - `none`: nothing (feasible or not);
//! - `full`: everything;
//! - `block`: the smallest `k` such that recomputing the first `k` layers fits (exact);
//! - `any`: a subset chosen greedily by `f_i / (a_i - c_i)`, the time per byte saved, kept only
//!   when it beats `block` (approximate: never worse than `block`, not always optimal);
//! - `selective`: the first `k` layers fully recomputed and the others either kept or all
//!   selectively recomputed (Megatron's `--recompute-granularity selective`: keeps `s_i`, adds
//!   `e_i`); the cheapest of both families (exact: in each family time grows with `k`, since
//!   `e_i <= f_i`, so the smallest `k` that fits is the family's best);
//! - `uniform(k)`: Megatron-LM's one count for all stages (see below).
//!
//! What Megatron-LM's `--recompute-granularity full --recompute-method block
//! --recompute-num-layers k` recomputes, from its code (megatron-core 0.16.1 from the Python
//! package index; Megatron-LM's examples/multimodal at commit 00c2c0ad):
//! - `megatron/core/transformer/transformer_block.py`, `TransformerBlock._checkpointed_forward`
//!   (lines 544-563): `block` checkpoints layer `layer_idx` of the block iff
//!   `layer_idx < recompute_num_layers` (plus layers skipped under fp8/fp4 without input
//!   grads), for `layer_idx` in `range(self.num_layers_per_pipeline_rank)`, and
//!   `self.num_layers_per_pipeline_rank = len(self.layers)` (line 326): the layers this block
//!   built on this rank, one model chunk under interleaving (`get_num_layers_to_build`, lines
//!   160-185). So each stage (each chunk) recomputes its first `min(k, local decoder layers)`.
//!   (`uniform`, lines 532-542, instead checkpoints every chunk of `k` layers: all layers
//!   recomputed, only each chunk's input kept; not modelled, `full` is its `k = 1` case.)
//! - The LLaVA model (`megatron/core/models/multimodal/llava_model.py`, line 254) builds the
//!   vision encoder as `CLIPViTModel(vision_transformer_config, ...)`, whose own
//!   `TransformerBlock` (`megatron/core/models/vision/clip_vit_model.py`, line 147) applies
//!   the vision config's recompute settings to the ViT layers, whole on the first stage.
//!   `examples/multimodal/model.py` builds that config as a copy of the command-line config,
//!   sets its pipeline size to 1 ("Make sure vision model pipeline parallel size is not
//!   inherited") and then, under "Toggle --recompute* for the vision and language model
//!   separately": with `--recompute-vision` sets `recompute_num_layers = num_layers` (every
//!   ViT layer recomputed), without it clears the vision recomputation (none); the projector's
//!   recomputation is always cleared. The count `k` therefore applies to the decoder only.
//!
//! Hence the roles of [`super::stages::StageProblem::recompute_groups`]: decoder layers are
//! counted (role 1), the ViT is all (role 2, `--recompute-vision`) or nothing (role 0), and
//! patch embedding, projector, embedding and head are never recomputed (role 0).
//!
//! All sums use prefix arrays, in the same order as the TypeScript twin.

use super::stages::{Layer, Recompute};

/// Prefix sums over the layers.
#[derive(Debug, Clone)]
pub struct Segments {
    /// `pf[i]` = sum of `f` over layers `< i`; likewise `pb`, `pw`, `pa`, `pc`.
    pub(super) pf: Vec<f64>,
    pub(super) pb: Vec<f64>,
    pub(super) pw: Vec<f64>,
    pub(super) pa: Vec<f64>,
    pub(super) pc: Vec<f64>,
    /// Selective bytes and added time.
    pub(super) ps: Vec<f64>,
    pub(super) pe: Vec<f64>,
    /// Every `c_i <= a_i`: block memory never grows with `k`, so `k` can be bisected.
    monotone: bool,
    /// Every `c_i <= s_i`: likewise for the selective family.
    monotone_sel: bool,
    layers: Vec<Layer>,
    capacity: f64,
    overhead: f64,
    mode: Recompute,
    /// `group[i]`: the role of layer `i` under `uniform` (0 never, 1 counted, 2 always); see
    /// [`super::stages::StageProblem::recompute_groups`].
    group: Vec<u32>,
    /// `run_end[i]`: one past the last layer of the run of equal `group` values holding `i`.
    run_end: Vec<usize>,
}

/// What a stage recomputes.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// The first `k` layers.
    Block(u32),
    /// The first `k` layers fully, the stage's other layers selectively.
    BlockSelective(u32),
    /// These layers (absolute indices, ascending).
    Set(Vec<u32>),
}

fn prefix(layers: &[Layer], f: impl Fn(&Layer) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(layers.len() + 1);
    let mut acc = 0.0;
    out.push(0.0);
    for x in layers {
        acc += f(x);
        out.push(acc);
    }
    out
}

impl Segments {
    /// Prepares the sums for a problem's layers, memory and mode.
    pub fn new(layers: &[Layer], capacity: f64, overhead: f64, mode: Recompute) -> Self {
        Segments {
            pf: prefix(layers, |x| x.forward_ms),
            pb: prefix(layers, |x| x.backward_ms),
            pw: prefix(layers, |x| x.static_bytes),
            pa: prefix(layers, |x| x.activation_bytes),
            pc: prefix(layers, |x| x.checkpoint_bytes),
            ps: prefix(layers, |x| x.selective_bytes),
            pe: prefix(layers, |x| x.selective_ms),
            monotone: layers
                .iter()
                .all(|x| x.checkpoint_bytes <= x.activation_bytes),
            monotone_sel: layers
                .iter()
                .all(|x| x.checkpoint_bytes <= x.selective_bytes),
            layers: layers.to_vec(),
            capacity,
            overhead,
            mode,
            group: vec![1; layers.len()],
            run_end: vec![layers.len(); layers.len()],
        }
    }

    /// Sets each layer's role under `uniform` (empty: every layer counted).
    pub fn with_groups(mut self, groups: &[u32]) -> Self {
        if groups.is_empty() {
            return self;
        }
        self.group = groups.to_vec();
        let l = groups.len();
        for i in (0..l).rev() {
            self.run_end[i] = if i + 1 < l && groups[i + 1] == groups[i] {
                self.run_end[i + 1]
            } else {
                i + 1
            };
        }
        self
    }

    /// The layers `uniform(k)` recomputes in `l..=r`, as half-open ranges: in each run of
    /// equal roles inside the stage, none (role 0), the first `min(k, run length)` (role 1) or
    /// all (role 2).
    pub(super) fn uniform_ranges(
        &self,
        l: usize,
        r: usize,
        k: usize,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut i = l;
        std::iter::from_fn(move || {
            while i <= r {
                let start = i;
                let end = self.run_end[i].min(r + 1);
                i = end;
                let stop = match self.group[start] {
                    0 => start,
                    1 => (start + k).min(end),
                    _ => end,
                };
                if stop > start {
                    return Some((start, stop));
                }
            }
            None
        })
    }

    /// Time (without the cut) and memory of `l..=r` under `uniform(k)`.
    fn uniform_cost(&self, n: f64, l: usize, r: usize, k: usize) -> (f64, f64) {
        let mut extra = 0.0;
        let mut kept = self.pa[r + 1] - self.pa[l];
        for (a, b) in self.uniform_ranges(l, r, k) {
            extra += self.pf[b] - self.pf[a];
            kept += (self.pc[b] - self.pc[a]) - (self.pa[b] - self.pa[a]);
        }
        let w = self.pw[r + 1] - self.pw[l];
        (self.base_time(l, r) + extra, w + n * kept + self.overhead)
    }

    /// Forward + backward time of layers `l..=r`, without recomputation.
    pub fn base_time(&self, l: usize, r: usize) -> f64 {
        (self.pf[r + 1] - self.pf[l]) + (self.pb[r + 1] - self.pb[l])
    }

    /// Memory of layers `l..=r` with the first `k` recomputed and `n` micro-batches in flight.
    pub fn block_memory(&self, n: f64, l: usize, r: usize, k: usize) -> f64 {
        let w = self.pw[r + 1] - self.pw[l];
        let kept = (self.pc[l + k] - self.pc[l]) + (self.pa[r + 1] - self.pa[l + k]);
        w + n * kept + self.overhead
    }

    /// Memory of layers `l..=r` with the first `k` fully and the rest selectively recomputed.
    pub fn selective_memory(&self, n: f64, l: usize, r: usize, k: usize) -> f64 {
        let w = self.pw[r + 1] - self.pw[l];
        let kept = (self.pc[l + k] - self.pc[l]) + (self.ps[r + 1] - self.ps[l + k]);
        w + n * kept + self.overhead
    }

    /// Time of layers `l..=r` with the first `k` fully and the rest selectively recomputed.
    fn selective_time(&self, l: usize, r: usize, k: usize) -> f64 {
        self.base_time(l, r) + (self.pf[l + k] - self.pf[l]) + (self.pe[r + 1] - self.pe[l + k])
    }

    fn block_k(&self, n: f64, l: usize, r: usize) -> Option<usize> {
        self.least_k(l, r, self.monotone, |k| {
            self.block_memory(n, l, r, k) <= self.capacity
        })
    }

    fn selective_k(&self, n: f64, l: usize, r: usize) -> Option<usize> {
        self.least_k(l, r, self.monotone_sel, |k| {
            self.selective_memory(n, l, r, k) <= self.capacity
        })
    }

    /// The least `k` in `0..=len` with `fits(k)` (bisected when `fits` is monotone).
    fn least_k(
        &self,
        l: usize,
        r: usize,
        monotone: bool,
        fits: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = r - l + 1;
        if fits(0) {
            return Some(0);
        }
        if monotone {
            if !fits(len) {
                return None;
            }
            let (mut lo, mut hi) = (0, len); // fits(lo) false, fits(hi) true
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if fits(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Some(hi);
        }
        (1..=len).find(|&k| fits(k))
    }

    fn greedy_set(&self, n: f64, l: usize, r: usize) -> Option<(f64, Vec<u32>)> {
        let mut need = self.block_memory(n, l, r, 0) - self.capacity;
        let mut order: Vec<usize> = (l..=r)
            .filter(|&i| self.layers[i].activation_bytes > self.layers[i].checkpoint_bytes)
            .collect();
        let ratio = |i: usize| {
            let x = &self.layers[i];
            x.forward_ms / (n * (x.activation_bytes - x.checkpoint_bytes))
        };
        order.sort_by(|&i, &j| ratio(i).total_cmp(&ratio(j)).then(i.cmp(&j)));
        let mut set = Vec::new();
        let mut extra = 0.0;
        for i in order {
            if need <= 0.0 {
                break;
            }
            let x = &self.layers[i];
            need -= n * (x.activation_bytes - x.checkpoint_bytes);
            extra += x.forward_ms;
            set.push(i as u32);
        }
        if need > 0.0 {
            return None;
        }
        set.sort_unstable();
        Some((extra, set))
    }

    /// The stage's cheapest feasible recomputation and its time (without the cut), if any.
    pub fn choose(&self, n: f64, l: usize, r: usize) -> Option<(f64, Choice)> {
        let base = self.base_time(l, r);
        let len = r - l + 1;
        match self.mode {
            Recompute::None => {
                (self.block_memory(n, l, r, 0) <= self.capacity).then_some((base, Choice::Block(0)))
            }
            Recompute::Full => (self.block_memory(n, l, r, len) <= self.capacity).then(|| {
                (
                    base + (self.pf[r + 1] - self.pf[l]),
                    Choice::Block(len as u32),
                )
            }),
            Recompute::Block => self.block_k(n, l, r).map(|k| {
                (
                    base + (self.pf[l + k] - self.pf[l]),
                    Choice::Block(k as u32),
                )
            }),
            Recompute::Uniform(k) => {
                let (time, memory) = self.uniform_cost(n, l, r, k as usize);
                (memory <= self.capacity).then(|| {
                    let set = self
                        .uniform_ranges(l, r, k as usize)
                        .flat_map(|(a, b)| a as u32..b as u32)
                        .collect();
                    (time, Choice::Set(set))
                })
            }
            Recompute::SelectiveAll => (self.selective_memory(n, l, r, 0) <= self.capacity)
                .then(|| (self.selective_time(l, r, 0), Choice::BlockSelective(0))),
            Recompute::Selective => {
                let block = self.block_k(n, l, r).map(|k| {
                    (
                        base + (self.pf[l + k] - self.pf[l]),
                        Choice::Block(k as u32),
                    )
                });
                let sel = self.selective_k(n, l, r).map(|k| {
                    (
                        self.selective_time(l, r, k),
                        Choice::BlockSelective(k as u32),
                    )
                });
                match (block, sel) {
                    (Some(b), Some(s)) => Some(if s.0 < b.0 { s } else { b }),
                    (b, s) => b.or(s),
                }
            }
            Recompute::Any => {
                let block = self.block_k(n, l, r).map(|k| {
                    (
                        base + (self.pf[l + k] - self.pf[l]),
                        Choice::Block(k as u32),
                    )
                });
                if matches!(block, Some((_, Choice::Block(0)))) {
                    return block;
                }
                let set = self
                    .greedy_set(n, l, r)
                    .map(|(extra, set)| (base + extra, Choice::Set(set)));
                match (block, set) {
                    (Some(b), Some(s)) => Some(if s.0 < b.0 { s } else { b }),
                    (b, s) => b.or(s),
                }
            }
        }
    }

    /// The least memory the stage can have under the mode (for "needs at least" errors).
    pub fn min_memory(&self, n: f64, l: usize, r: usize) -> f64 {
        let len = r - l + 1;
        match self.mode {
            Recompute::None => self.block_memory(n, l, r, 0),
            Recompute::Full => self.block_memory(n, l, r, len),
            Recompute::Block => (0..=len)
                .map(|k| self.block_memory(n, l, r, k))
                .fold(f64::INFINITY, f64::min),
            Recompute::Uniform(k) => self.uniform_cost(n, l, r, k as usize).1,
            Recompute::SelectiveAll => self.selective_memory(n, l, r, 0),
            Recompute::Selective => (0..=len)
                .map(|k| {
                    self.block_memory(n, l, r, k)
                        .min(self.selective_memory(n, l, r, k))
                })
                .fold(f64::INFINITY, f64::min),
            Recompute::Any => {
                let w = self.pw[r + 1] - self.pw[l];
                let mut kept = 0.0;
                for x in &self.layers[l..=r] {
                    kept += x.activation_bytes.min(x.checkpoint_bytes);
                }
                w + n * kept + self.overhead
            }
        }
    }

    /// The recomputed layers of a choice, as absolute indices.
    pub fn recomputed(&self, l: usize, choice: &Choice) -> Vec<u32> {
        match choice {
            Choice::Block(k) | Choice::BlockSelective(k) => (l as u32..l as u32 + k).collect(),
            Choice::Set(set) => set.clone(),
        }
    }

    /// The selectively recomputed layers of a choice for the stage `l..=r`.
    pub fn selective(&self, l: usize, r: usize, choice: &Choice) -> Vec<u32> {
        match choice {
            Choice::BlockSelective(k) => (l as u32 + k..=r as u32).collect(),
            _ => Vec::new(),
        }
    }
}
