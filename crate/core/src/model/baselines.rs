//! Baseline splits and recomputation settings, to compare the optimum with what frameworks do
//! by default.
//!
//! Splits:
//! - `uniform`: equal layer counts (Megatron's default); the first `L mod P` stages take one more;
//! - `parameters`: the split minimising the largest stage's parameter count (DeepSpeed's
//!   `partition_method="parameters"`), exact;
//! - `balanced`: the split minimising (largest - smallest) stage time, as DeepSpeed's
//!   `partition_balanced` now does, exact (a Pareto DP over (max, min));
//! - `anchor`: the paper's profile anchor: each cut at the layer boundary closest to an equal
//!   share of the cumulative time.
//!
//! Recomputation for a given split: `none`, `full`, or `uniform` (one `k` for every stage, the
//! smallest that fits everywhere: Megatron's `--recompute-num-layers`).
//!
//! Every split keeps the problem's `first_stage_min_layers` on the first stage (Megatron-LM's
//! vision encoder, projector and embedding under `--target megatron`): `uniform` counts the
//! layers after that prefix (stage 0 holds the prefix and its share, as Megatron-LM adds the
//! vision encoder to its first stage), the others search only splits whose first stage holds it.
//! With no such prefix (0) they are the plain splits above.

use super::stages::{StagePlan, StageProblem};
use crate::error::Error;

/// How a baseline splits the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Uniform,
    Parameters,
    Balanced,
    Anchor,
}

impl Split {
    /// Every split's name.
    pub const NAMES: &'static [&'static str] = &["uniform", "parameters", "balanced", "anchor"];

    /// Parses a split name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "uniform" => Ok(Split::Uniform),
            "parameters" => Ok(Split::Parameters),
            "balanced" => Ok(Split::Balanced),
            "anchor" => Ok(Split::Anchor),
            _ => Err(Error::UnknownOption {
                name: "method".into(),
                value: name.into(),
                known: Split::NAMES,
            }),
        }
    }
}

/// How a baseline recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineRecompute {
    None,
    Full,
    /// The same `k` on every stage.
    Uniform,
}

/// Most (stage, layer range) entries the exact splits (`parameters`, `balanced`) may search:
/// 2^26. Their DPs visit `stages x L (L + 1) / 2` of them (the `balanced` one a Pareto list at
/// each); real models (hundreds of layers, tens of stages) need a few million, while 20,000
/// layers over 32 stages (6.4 billion) held the thread for 51 s.
pub const MAX_SPLIT_ENTRIES: u64 = 1 << 26;

/// Refuses an exact split (`parameters`, `balanced`) of more than [`MAX_SPLIT_ENTRIES`]
/// entries, before anything is allocated; `uniform` and `anchor` are linear and always run.
pub fn check_split_work(method: Split, p: &StageProblem) -> Result<(), Error> {
    if !matches!(method, Split::Parameters | Split::Balanced) {
        return Ok(());
    }
    let l = p.layers.len() as u64;
    let entries = (p.stages as u64).saturating_mul(l.saturating_mul(l + 1) / 2);
    if entries > MAX_SPLIT_ENTRIES {
        let name = if method == Split::Parameters {
            "parameters"
        } else {
            "balanced"
        };
        return Err(Error::too_much_work(
            &format!("the {name} split's search"),
            "at most 2^26 entries, stages x layer ranges",
            &format!("{l} layers over {} stages", p.stages),
            entries,
            "merge layers into blocks, use fewer stages, or the uniform or anchor split",
        ));
    }
    Ok(())
}

/// Last layer of each stage for a split; `params` are the per-layer parameter counts. The first
/// stage holds at least the problem's `first_stage_min_layers` (a checked problem leaves a layer
/// for every later stage).
pub fn split_ends(method: Split, p: &StageProblem, params: &[f64]) -> Vec<u32> {
    let (l, s) = (p.layers.len(), p.stages as usize);
    let pinned = (p.first_stage_min_layers as usize).min(l);
    let time: Vec<f64> = p
        .layers
        .iter()
        .map(|x| x.forward_ms + x.backward_ms)
        .collect();
    match method {
        Split::Uniform => {
            // Equal counts of the layers after the pinned prefix, which stage 0 holds too.
            let rest = l - pinned;
            if rest < s {
                // The prefix leaves one layer for each later stage (a checked problem).
                return (0..s).map(|k| (pinned - 1 + k) as u32).collect();
            }
            let (base, extra) = (rest / s, rest % s);
            let mut ends = Vec::with_capacity(s);
            let mut end = pinned;
            for k in 0..s {
                end += base + usize::from(k < extra);
                ends.push((end - 1) as u32);
            }
            ends
        }
        Split::Parameters => min_max_split(params, s, pinned),
        Split::Balanced => min_spread_split(&time, s, pinned),
        Split::Anchor => {
            let total: f64 = time.iter().sum();
            let mut cum = Vec::with_capacity(l);
            let mut acc = 0.0;
            for &t in &time {
                acc += t;
                cum.push(acc);
            }
            let mut ends = Vec::with_capacity(s);
            let mut lo = pinned.saturating_sub(1); // the first cut keeps the prefix
            for k in 1..s {
                let target = total * k as f64 / s as f64;
                let hi = l - 1 - (s - k); // leave a layer for each later stage
                let mut best = lo;
                for i in lo..=hi {
                    if (cum[i] - target).abs() < (cum[best] - target).abs() {
                        best = i;
                    }
                }
                ends.push(best as u32);
                lo = best + 1;
            }
            ends.push((l - 1) as u32);
            ends
        }
    }
}

/// The split minimising the largest stage sum (ties: earliest cuts), its first stage holding at
/// least `first_min` layers.
fn min_max_split(w: &[f64], s: usize, first_min: usize) -> Vec<u32> {
    let l = w.len();
    let mut pre = vec![0.0; l + 1];
    for i in 0..l {
        pre[i + 1] = pre[i] + w[i];
    }
    // best[k][r]: least max over splits of 0..=r into k + 1 stages; from[k][r]: first layer of the last.
    let mut best = vec![vec![f64::INFINITY; l]; s];
    let mut from = vec![vec![0usize; l]; s];
    best[0].copy_from_slice(&pre[1..]);
    for slot in best[0].iter_mut().take(first_min.saturating_sub(1)) {
        *slot = f64::INFINITY;
    }
    for k in 1..s {
        for r in k..l {
            for first in k..=r {
                let v = best[k - 1][first - 1].max(pre[r + 1] - pre[first]);
                if v < best[k][r] {
                    best[k][r] = v;
                    from[k][r] = first;
                }
            }
        }
    }
    walk_back(&from, l, s)
}

fn walk_back(from: &[Vec<usize>], l: usize, s: usize) -> Vec<u32> {
    let mut ends = vec![0u32; s];
    let mut r = l - 1;
    for k in (0..s).rev() {
        ends[k] = r as u32;
        if k > 0 {
            r = from[k][r] - 1;
        }
    }
    ends
}

/// The split minimising (largest - smallest) stage sum, exactly: Pareto frontiers of
/// (max, min) per (stage, last layer). Ties: smaller spread, then smaller max, then earlier cuts.
/// The first stage holds at least `first_min` layers.
fn min_spread_split(w: &[f64], s: usize, first_min: usize) -> Vec<u32> {
    #[derive(Clone, Copy)]
    struct E {
        max: f64,
        min: f64,
        first: usize,
        prev: usize,
    }
    let l = w.len();
    let mut pre = vec![0.0; l + 1];
    for i in 0..l {
        pre[i + 1] = pre[i] + w[i];
    }
    let keep = |mut c: Vec<E>| -> Vec<E> {
        // Lower max and higher min are better: sort by max asc, min desc; keep rising mins.
        c.sort_by(|a, b| {
            a.max
                .total_cmp(&b.max)
                .then(b.min.total_cmp(&a.min))
                .then(a.first.cmp(&b.first))
                .then(a.prev.cmp(&b.prev))
        });
        let mut out: Vec<E> = Vec::new();
        for e in c {
            if out.last().is_none_or(|last: &E| e.min > last.min) {
                out.push(e);
            }
        }
        out
    };
    let mut fronts: Vec<Vec<Vec<E>>> = vec![(0..l)
        .map(|r| {
            if r + 1 < first_min {
                return Vec::new();
            }
            vec![E {
                max: pre[r + 1],
                min: pre[r + 1],
                first: 0,
                prev: 0,
            }]
        })
        .collect()];
    for k in 1..s {
        let mut layer = vec![Vec::new(); l];
        for (r, slot) in layer.iter_mut().enumerate().skip(k) {
            let mut cands = Vec::new();
            for first in k..=r {
                let t = pre[r + 1] - pre[first];
                for (j, e) in fronts[k - 1][first - 1].iter().enumerate() {
                    cands.push(E {
                        max: e.max.max(t),
                        min: e.min.min(t),
                        first,
                        prev: j,
                    });
                }
            }
            *slot = keep(cands);
        }
        fronts.push(layer);
    }
    let end = &fronts[s - 1][l - 1];
    let mut idx = 0;
    for (j, e) in end.iter().enumerate() {
        let b = &end[idx];
        if (e.max - e.min) < (b.max - b.min)
            || ((e.max - e.min) == (b.max - b.min) && e.max < b.max)
        {
            idx = j;
        }
    }
    let mut ends = vec![0u32; s];
    let mut r = l - 1;
    for k in (0..s).rev() {
        let e = fronts[k][r][idx];
        ends[k] = r as u32;
        idx = e.prev;
        r = e.first.wrapping_sub(1);
    }
    ends
}

/// Evaluates a split with a baseline recomputation; an `Infeasible` error when it does not fit.
pub fn baseline_plan(
    p: &StageProblem,
    ends: &[u32],
    rec: BaselineRecompute,
) -> Result<StagePlan, Error> {
    let mut starts = vec![0u32];
    starts.extend(ends[..ends.len() - 1].iter().map(|&e| e + 1));
    let recomputed = |k: u32| -> Vec<Vec<u32>> {
        starts
            .iter()
            .zip(ends)
            .map(|(&a, &b)| (a..=b).take(k as usize).collect())
            .collect()
    };
    let longest = starts
        .iter()
        .zip(ends)
        .map(|(&a, &b)| b - a + 1)
        .max()
        .unwrap_or(0);
    let fits = |plan: &StagePlan| plan.stages.iter().all(|s| s.memory_bytes <= p.memory_bytes);
    let plan = match rec {
        BaselineRecompute::None => p.evaluate(ends, &recomputed(0))?,
        BaselineRecompute::Full => p.evaluate(ends, &recomputed(longest))?,
        BaselineRecompute::Uniform => {
            let mut chosen = None;
            for k in 0..=longest {
                let plan = p.evaluate(ends, &recomputed(k))?;
                if fits(&plan) {
                    chosen = Some(plan);
                    break;
                }
            }
            match chosen {
                Some(plan) => plan,
                None => p.evaluate(ends, &recomputed(longest))?,
            }
        }
    };
    if !fits(&plan) {
        // The fullest stage (the first of equals), and by how much it is over.
        let mut worst = 0;
        for (i, s) in plan.stages.iter().enumerate() {
            if s.memory_bytes > plan.stages[worst].memory_bytes {
                worst = i;
            }
        }
        let peak = plan.stages[worst].memory_bytes;
        return Err(Error::Infeasible {
            message: format!(
                "this baseline does not fit: stage {worst} needs {} bytes, {} more than the {} per GPU",
                crate::error::js_number(peak.ceil()),
                crate::error::js_number((peak - p.memory_bytes).ceil()),
                crate::error::js_number(p.memory_bytes)
            ),
            min_memory_bytes: peak,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::partition::partition_stages;
    use crate::model::stages::{Layer, Recompute};
    use crate::rng::Rng;

    fn problem(rng: &mut Rng, l: u32, stages: u32) -> (StageProblem, Vec<f64>) {
        let layers: Vec<Layer> = (0..l)
            .map(|_| {
                Layer::new(
                    (1 + rng.below(10)) as f64,
                    (2 + rng.below(20)) as f64,
                    rng.below(20) as f64,
                    rng.below(30) as f64,
                    rng.below(3) as f64,
                )
            })
            .collect();
        let params = (0..l).map(|_| rng.below(100) as f64).collect();
        let p = StageProblem {
            layers,
            stages,
            micro_batches: 8,
            memory_bytes: 1e9,
            stage_overhead_bytes: 0.0,
            comm_ms: vec![],
            recompute: Recompute::Block,
            first_stage_min_layers: 0,
            schedule: crate::simulate::Schedule::OneFOneB,
            recompute_groups: Vec::new(),
        };
        (p, params)
    }

    fn valid(ends: &[u32], l: usize, s: usize) -> bool {
        ends.len() == s && ends.windows(2).all(|w| w[0] < w[1]) && ends[s - 1] as usize == l - 1
    }

    #[test]
    fn every_split_is_valid_and_the_optimum_beats_them_all() {
        let mut rng = Rng::new(9);
        for i in 0..600 {
            let stages = 1 + rng.below(5);
            let l = stages + rng.below(12);
            let (mut p, params) = problem(&mut rng, l, stages);
            // Half the problems pin a prefix to the first stage (up to all it can hold).
            if i % 2 == 1 {
                p.first_stage_min_layers = rng.below(l - stages + 2);
            }
            let best = partition_stages(&p).unwrap();
            for &name in Split::NAMES {
                let ends = split_ends(Split::parse(name).unwrap(), &p, &params);
                assert!(
                    valid(&ends, l as usize, stages as usize),
                    "{name}: {ends:?}"
                );
                assert!(
                    ends[0] + 1 >= p.first_stage_min_layers,
                    "{name}: {ends:?} leaves part of the first {} layers off stage 0",
                    p.first_stage_min_layers
                );
                for rec in [
                    BaselineRecompute::None,
                    BaselineRecompute::Full,
                    BaselineRecompute::Uniform,
                ] {
                    if let Ok(plan) = baseline_plan(&p, &ends, rec) {
                        assert!(best.iteration_ms <= plan.iteration_ms, "{name} {rec:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn uniform_and_parameter_splits() {
        let mut rng = Rng::new(1);
        let (p, _) = problem(&mut rng, 10, 3);
        assert_eq!(split_ends(Split::Uniform, &p, &[1.0; 10]), vec![3, 6, 9]);
        let params = [5.0, 5.0, 5.0, 5.0, 20.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        // Largest stage params: {5,5,5,5}=20 | {20} | {1 x 5} -> max 20.
        assert_eq!(split_ends(Split::Parameters, &p, &params), vec![3, 4, 9]);
    }

    #[test]
    fn the_exact_splits_are_bounded() {
        let mut rng = Rng::new(4);
        // 2,047 layers over 32 stages (67,076,096 entries) run; 2,048 (67,141,632 > 2^26) do not.
        let (p, _) = problem(&mut rng, 2047, 32);
        assert!(check_split_work(Split::Parameters, &p).is_ok());
        let (p, _) = problem(&mut rng, 2048, 32);
        for split in [Split::Parameters, Split::Balanced] {
            let e = check_split_work(split, &p).unwrap_err().to_string();
            assert!(
                e.contains("2048 layers over 32 stages need 67141632"),
                "{e}"
            );
        }
        assert!(check_split_work(Split::Uniform, &p).is_ok());
        assert!(check_split_work(Split::Anchor, &p).is_ok());
    }

    #[test]
    fn a_pinned_prefix_stays_on_the_first_stage() {
        let mut rng = Rng::new(3);
        let (mut p, _) = problem(&mut rng, 10, 3);
        p.first_stage_min_layers = 4;
        // Megatron-LM's default: the 6 layers after the prefix in equal counts, stage 0 adding
        // the prefix.
        assert_eq!(split_ends(Split::Uniform, &p, &[1.0; 10]), vec![5, 7, 9]);
        // The prefix leaves one layer per later stage.
        p.first_stage_min_layers = 8;
        assert_eq!(split_ends(Split::Uniform, &p, &[1.0; 10]), vec![7, 8, 9]);
        // Without the prefix the parameter split cuts at 3 (see above); with it, the first stage
        // takes the 20 too (40, the largest whatever the rest; ties to the earliest cuts).
        p.first_stage_min_layers = 5;
        let params = [5.0, 5.0, 5.0, 5.0, 20.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(split_ends(Split::Parameters, &p, &params), vec![4, 5, 9]);
        for split in [Split::Balanced, Split::Anchor] {
            assert!(split_ends(split, &p, &params)[0] >= 4, "{split:?}");
        }
    }

    #[test]
    fn balanced_minimises_the_spread() {
        let mut rng = Rng::new(2);
        let (mut p, _) = problem(&mut rng, 6, 2);
        for (i, t) in [1.0, 1.0, 1.0, 1.0, 1.0, 7.0].iter().enumerate() {
            p.layers[i].forward_ms = 0.0;
            p.layers[i].backward_ms = *t;
        }
        // 5 | 7 has spread 2; every other split is wider.
        assert_eq!(split_ends(Split::Balanced, &p, &[0.0; 6]), vec![4, 5]);
    }
}
