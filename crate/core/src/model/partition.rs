//! The stage DP: the provably optimal split of the layer stack into pipeline stages, with the
//! cheapest feasible recomputation per stage.
//!
//! The objective `T = sum_s t_s + (M - 1) * max_s t_s` mixes a sum and a maximum, so a plain
//! DP on either is not exact. This one keeps, for every (stage `s`, last layer `r`), the Pareto
//! frontier of (sum of stage times, max stage time) over all ways to cover layers `0..=r` with
//! `s + 1` stages: a prefix that is worse on both can never end better. A prefix whose lower
//! bound (its sum + the remaining layers' bare time + `(M - 1) * its max`) cannot beat the best
//! plan found so far is dropped. Each stage's time comes from [`Segments::choose`], the
//! cheapest recomputation that fits; since time only grows with recomputation, choosing it per
//! stage is optimal for a given split. Ties go to the smaller bottleneck, then the earlier cuts.
//!
//! A second pass breaks the remaining ties toward balanced stages: among plans whose every stage
//! takes at most the optimum's bottleneck `B`, it picks the least sum of stage times, then the
//! least sum of squared stage times (an exact DP on that lexicographic, additive cost). Its plan
//! has `sum <= S` and `max <= B`, so its iteration time is the optimum's (up to rounding: sums
//! within 1e-12 relative count as equal): the same objective, with the non-bottleneck stages as
//! even as the optimum allows.

use super::recompute::{Choice, Segments};
use super::stages::{plan_from, Stage, StagePlan, StageProblem};
use crate::error::Error;

#[derive(Debug, Clone, Copy)]
struct Entry {
    sum: f64,
    max: f64,
    /// First layer of this stage.
    first: u32,
    /// Index of the predecessor in the frontier of (s - 1, first - 1).
    prev: u32,
}

/// Stage times for every segment, per distinct in-flight count: `time[l][r - l]` (NaN when
/// infeasible).
struct Times {
    by_n: Vec<(f64, Vec<Vec<f64>>)>,
}

impl Times {
    fn new(p: &StageProblem, seg: &Segments) -> Self {
        let l_count = p.layers.len();
        let mut ns: Vec<f64> = (0..p.stages as usize).map(|s| p.in_flight(s)).collect();
        ns.dedup_by(|a, b| a.to_bits() == b.to_bits());
        let by_n = ns
            .into_iter()
            .map(|n| {
                let table = (0..l_count)
                    .map(|l| {
                        (l..l_count)
                            .map(|r| {
                                seg.choose(n, l, r)
                                    .map_or(f64::NAN, |(t, _)| t + p.cut_ms(r))
                            })
                            .collect()
                    })
                    .collect();
                (n, table)
            })
            .collect();
        Times { by_n }
    }

    fn table(&self, n: f64) -> &Vec<Vec<f64>> {
        &self
            .by_n
            .iter()
            .find(|(m, _)| m.to_bits() == n.to_bits())
            .expect("every in-flight count has a table")
            .1
    }
}

/// Keeps the Pareto-minimal entries (lower sum and lower max are better), sorted by max.
fn frontier(mut cands: Vec<Entry>) -> Vec<Entry> {
    cands.sort_by(|a, b| {
        a.max
            .total_cmp(&b.max)
            .then(a.sum.total_cmp(&b.sum))
            .then(a.first.cmp(&b.first))
            .then(a.prev.cmp(&b.prev))
    });
    let mut out: Vec<Entry> = Vec::with_capacity(cands.len().min(16));
    for c in cands {
        if out.last().is_none_or(|last| c.sum < last.sum) {
            out.push(c);
        }
    }
    out
}

/// The smallest memory per GPU that would make the problem feasible.
fn min_feasible_memory(p: &StageProblem, seg: &Segments) -> f64 {
    let (l_count, stages) = (p.layers.len(), p.stages as usize);
    let mut prev = vec![f64::INFINITY; l_count];
    let first_min = (p.first_stage_min_layers as usize).max(1);
    for (r, slot) in prev.iter_mut().enumerate().skip(first_min - 1) {
        *slot = seg.min_memory(p.in_flight(0), 0, r);
    }
    for s in 1..stages {
        let n = p.in_flight(s);
        let mut cur = vec![f64::INFINITY; l_count];
        for (r, slot) in cur.iter_mut().enumerate().skip(s) {
            for l in s..=r {
                let v = prev[l - 1].max(seg.min_memory(n, l, r));
                if v < *slot {
                    *slot = v;
                }
            }
        }
        prev = cur;
    }
    prev[l_count - 1]
}

/// The iteration time of the plan that keeps, per (stage, last layer), only the prefix with the
/// least `sum + (M - 1) * max` (ties: the earliest start); infinite when nothing fits.
fn upper_bound(p: &StageProblem, times: &Times, first_min: usize) -> f64 {
    let (l_count, stages, m1) = (
        p.layers.len(),
        p.stages as usize,
        p.micro_batches as f64 - 1.0,
    );
    let t0 = times.table(p.in_flight(0));
    let mut prev: Vec<Option<(f64, f64)>> = (0..l_count)
        .map(|r| {
            let t = if r + 1 >= first_min && r <= l_count - stages {
                t0[0][r]
            } else {
                f64::NAN
            };
            (!t.is_nan()).then_some((t, t))
        })
        .collect();
    for s in 1..stages {
        let table = times.table(p.in_flight(s));
        let mut cur = vec![None; l_count];
        for (r, slot) in cur
            .iter_mut()
            .enumerate()
            .take(l_count - (stages - s) + 1)
            .skip(s)
        {
            for l in s..=r {
                let t = table[l][r - l];
                let Some((sum, max)) = prev[l - 1] else {
                    continue;
                };
                if t.is_nan() {
                    continue;
                }
                let cand = (sum + t, max.max(t));
                if slot.is_none_or(|(a, b): (f64, f64)| cand.0 + m1 * cand.1 < a + m1 * b) {
                    *slot = Some(cand);
                }
            }
        }
        prev = cur;
    }
    prev[l_count - 1].map_or(f64::INFINITY, |(sum, max)| sum + m1 * max)
}

/// Most entries the stage DP's time tables may hold (one per (in-flight count, first layer, last
/// layer)): 2^28, 2 GiB of `f64`. Real models (hundreds of layers, tens of stages) hold far
/// fewer; past it the tables would not fit in memory (an allocation failure aborts the process).
pub const MAX_TABLE_ENTRIES: u64 = 1 << 28;

/// Refuses a problem whose time tables would hold more than [`MAX_TABLE_ENTRIES`] entries.
fn check_table_size(p: &StageProblem) -> Result<(), Error> {
    let mut ns: Vec<u64> = (0..p.stages as usize)
        .map(|s| p.in_flight(s).to_bits())
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let l = p.layers.len() as u64;
    let entries = (ns.len() as u64).saturating_mul(l.saturating_mul(l + 1) / 2);
    if entries > MAX_TABLE_ENTRIES {
        return Err(Error::too_much_work(
            "the stage DP's time tables",
            "at most 2^28 entries",
            &format!("{l} layers over {} stages", p.stages),
            entries,
            "merge layers into blocks, or use fewer stages",
        ));
    }
    Ok(())
}

/// Solves the problem exactly: the plan with the least iteration time.
pub fn partition_stages(p: &StageProblem) -> Result<StagePlan, Error> {
    p.check()?;
    check_table_size(p)?;
    let seg = Segments::new(
        &p.layers,
        p.memory_bytes,
        p.stage_overhead_bytes,
        p.recompute,
    )
    .with_groups(&p.recompute_groups);
    let times = Times::new(p, &seg);
    let (l_count, stages, m1) = (
        p.layers.len(),
        p.stages as usize,
        p.micro_batches as f64 - 1.0,
    );
    // rest[r]: bare time of layers after r, a lower bound on what the later stages add.
    let mut rest = vec![0.0; l_count + 1];
    for r in (0..l_count).rev() {
        rest[r] = rest[r + 1] + p.layers[r].forward_ms + p.layers[r].backward_ms;
    }
    let first_min = (p.first_stage_min_layers as usize).max(1);
    // An upper bound from a one-entry-per-state pass (a real plan, so the exact pass below never
    // prunes the entries that lead to it); the exact pass prunes what cannot beat it.
    let best = upper_bound(p, &times, first_min);
    let limit = best * (1.0 + 1e-12) + 1e-9;
    // fronts[s][r]: frontier of stage s ending at layer r.
    let mut fronts: Vec<Vec<Vec<Entry>>> = Vec::with_capacity(stages);
    let t0 = times.table(p.in_flight(0));
    let last_start = l_count - stages; // stage 0 can end at most here
    fronts.push(
        (0..l_count)
            .map(|r| {
                let t = if r + 1 >= first_min && r <= last_start {
                    t0[0][r]
                } else {
                    f64::NAN
                };
                if t.is_nan() {
                    Vec::new()
                } else {
                    vec![Entry {
                        sum: t,
                        max: t,
                        first: 0,
                        prev: 0,
                    }]
                }
            })
            .collect(),
    );
    for s in 1..stages {
        let table = times.table(p.in_flight(s));
        let last = s == stages - 1;
        let mut layer_fronts = vec![Vec::new(); l_count];
        let r_lo = if last { l_count - 1 } else { s };
        let r_hi = l_count - (stages - s); // leave a layer for each later stage
        for (r, slot) in layer_fronts
            .iter_mut()
            .enumerate()
            .take(r_hi + 1)
            .skip(r_lo)
        {
            let mut cands = Vec::new();
            for l in s..=r {
                let t = table[l][r - l];
                if t.is_nan() {
                    continue;
                }
                for (k, e) in fronts[s - 1][l - 1].iter().enumerate() {
                    let sum = e.sum + t;
                    let max = e.max.max(t);
                    if sum + rest[r + 1] + m1 * max > limit {
                        continue;
                    }
                    cands.push(Entry {
                        sum,
                        max,
                        first: l as u32,
                        prev: k as u32,
                    });
                }
            }
            *slot = frontier(cands);
        }
        fronts.push(layer_fronts);
    }
    let end = &fronts[stages - 1][l_count - 1];
    let pick = end.iter().enumerate().min_by(|(i, a), (j, b)| {
        (a.sum + m1 * a.max)
            .total_cmp(&(b.sum + m1 * b.max))
            .then(a.max.total_cmp(&b.max))
            .then(i.cmp(j))
    });
    let Some((mut idx, _)) = pick else {
        let need = min_feasible_memory(p, &seg);
        return Err(Error::Infeasible {
            message: if need.is_finite() {
                format!(
                    "no plan fits in {} bytes per GPU; the least memory that fits is {} bytes ({} GiB, rounded up)",
                    crate::error::js_number(p.memory_bytes),
                    crate::error::js_number(need.ceil()),
                    crate::error::js_fixed((need / (1u64 << 30) as f64 * 100.0).ceil() / 100.0, 2)
                )
            } else {
                "no plan satisfies the constraints".to_owned()
            },
            min_memory_bytes: need,
        });
    };
    let bottleneck = end[idx].max;
    // Walk back through the frontiers to the cuts, then rebuild each stage's choice.
    let mut bounds = vec![(0usize, 0usize); stages];
    let mut r = l_count - 1;
    for s in (0..stages).rev() {
        let e = fronts[s][r][idx];
        bounds[s] = (e.first as usize, r);
        idx = e.prev as usize;
        r = (e.first as usize).wrapping_sub(1);
    }
    let optimum = build_stages(p, &seg, &bounds).expect("the DP only keeps feasible stages");
    if let Some(even) = balance(p, &times, first_min, bottleneck) {
        if even != bounds {
            let plan =
                build_stages(p, &seg, &even).expect("the balance pass only keeps feasible stages");
            if plan.iteration_ms <= optimum.iteration_ms * (1.0 + 1e-12) {
                return Ok(plan);
            }
        }
    }
    Ok(optimum)
}

/// The split with every stage at most `cap` and the least (sum of stage times, sum of their
/// squares), lexicographically; `None` when no split keeps every stage under `cap`.
fn balance(
    p: &StageProblem,
    times: &Times,
    first_min: usize,
    cap: f64,
) -> Option<Vec<(usize, usize)>> {
    let (l_count, stages) = (p.layers.len(), p.stages as usize);
    // best[s][r]: (sum, sum of squares, first layer of stage s) over covers of 0..=r.
    let mut best: Vec<Vec<Option<(f64, f64, usize)>>> = Vec::with_capacity(stages);
    let t0 = times.table(p.in_flight(0));
    best.push(
        (0..l_count)
            .map(|r| {
                let t = if r + 1 >= first_min && r <= l_count - stages {
                    t0[0][r]
                } else {
                    f64::NAN
                };
                (!t.is_nan() && t <= cap).then_some((t, t * t, 0))
            })
            .collect(),
    );
    for s in 1..stages {
        let table = times.table(p.in_flight(s));
        let mut cur: Vec<Option<(f64, f64, usize)>> = vec![None; l_count];
        let r_lo = if s == stages - 1 { l_count - 1 } else { s };
        for (r, slot) in cur
            .iter_mut()
            .enumerate()
            .take(l_count - (stages - s) + 1)
            .skip(r_lo)
        {
            for l in s..=r {
                let t = table[l][r - l];
                if t.is_nan() || t > cap {
                    continue;
                }
                let Some((sum, sq, _)) = best[s - 1][l - 1] else {
                    continue;
                };
                let cand = (sum + t, sq + t * t, l);
                // Sums within rounding (1e-12 relative) count as equal, so the squares decide.
                let better = match *slot {
                    None => true,
                    Some((a, b, _)) => {
                        let tol = 1e-12 * a.abs();
                        cand.0 < a - tol || (cand.0 <= a + tol && cand.1 < b)
                    }
                };
                if better {
                    *slot = Some(cand);
                }
            }
        }
        best.push(cur);
    }
    best[stages - 1][l_count - 1]?;
    let mut bounds = vec![(0usize, 0usize); stages];
    let mut r = l_count - 1;
    for s in (0..stages).rev() {
        let (_, _, first) = best[s][r].expect("a chosen state has a predecessor");
        bounds[s] = (first, r);
        r = first.wrapping_sub(1);
    }
    Some(bounds)
}

/// The plan for a given split with each stage's cheapest feasible recomputation (used by the
/// measured search to price candidates near the optimum).
pub fn plan_for_split(p: &StageProblem, ends: &[u32]) -> Result<StagePlan, Error> {
    p.check()?;
    let l_count = p.layers.len();
    if ends.len() != p.stages as usize
        || ends.windows(2).any(|w| w[0] >= w[1])
        || ends.last().is_none_or(|&e| e as usize != l_count - 1)
    {
        return Err(Error::out_of_range(
            "lastLayers",
            format!(
                "must be {} increasing layer indices ending at the last layer",
                p.stages
            ),
        ));
    }
    let seg = Segments::new(
        &p.layers,
        p.memory_bytes,
        p.stage_overhead_bytes,
        p.recompute,
    )
    .with_groups(&p.recompute_groups);
    let mut bounds = Vec::with_capacity(ends.len());
    let mut first = 0usize;
    for &e in ends {
        bounds.push((first, e as usize));
        first = e as usize + 1;
    }
    build_stages(p, &seg, &bounds).ok_or_else(|| Error::Infeasible {
        message: "this split does not fit in memory with any recomputation".into(),
        min_memory_bytes: f64::NAN,
    })
}

fn build_stages(p: &StageProblem, seg: &Segments, bounds: &[(usize, usize)]) -> Option<StagePlan> {
    let stages = bounds.len();
    let mut out = Vec::with_capacity(stages);
    for (s, &(l, r)) in bounds.iter().enumerate() {
        let n = p.in_flight(s);
        let (time, choice) = seg.choose(n, l, r)?;
        let recomputed = seg.recomputed(l, &choice);
        let selective = seg.selective(l, r, &choice);
        let memory = match &choice {
            Choice::Block(k) => seg.block_memory(n, l, r, *k as usize),
            Choice::BlockSelective(k) => seg.selective_memory(n, l, r, *k as usize),
            Choice::Set(set) => {
                let mut kept = 0.0;
                let mut w = 0.0;
                for i in l..=r {
                    let x = &p.layers[i];
                    w += x.static_bytes;
                    kept += if set.contains(&(i as u32)) {
                        x.checkpoint_bytes
                    } else {
                        x.activation_bytes
                    };
                }
                w + n * kept + p.stage_overhead_bytes
            }
        };
        out.push(Stage {
            first_layer: l as u32,
            last_layer: r as u32,
            recomputed,
            selective,
            time_ms: time + if s + 1 < stages { p.cut_ms(r) } else { 0.0 },
            memory_bytes: memory,
            in_flight: n,
        });
    }
    Some(plan_from(out, p.micro_batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stages::{Layer, Recompute};
    use crate::rng::Rng;
    use crate::simulate::Schedule;

    fn random_problem(rng: &mut Rng, max_layers: u32, mode: Recompute) -> StageProblem {
        let stages = 1 + rng.below(4);
        let l = stages + rng.below(max_layers - stages + 1);
        let layers: Vec<Layer> = (0..l)
            .map(|_| {
                let a = rng.below(50) as f64;
                let f = (1 + rng.below(20)) as f64;
                let c = if rng.below(5) == 0 {
                    (a + rng.below(5) as f64).max(0.0)
                } else {
                    (a / 4.0).floor()
                };
                Layer {
                    forward_ms: f,
                    backward_ms: (1 + rng.below(40)) as f64,
                    static_bytes: rng.below(30) as f64,
                    activation_bytes: a,
                    checkpoint_bytes: c,
                    // Mostly between c and a, sometimes below c (not monotone).
                    selective_bytes: if rng.below(6) == 0 {
                        (c - 1.0).max(0.0)
                    } else {
                        c + ((a - c).max(0.0) * rng.below(5) as f64 / 4.0).floor()
                    },
                    selective_ms: (f * rng.below(4) as f64 / 4.0).floor(),
                }
            })
            .collect();
        let comm_ms = if rng.below(2) == 0 {
            Vec::new()
        } else {
            (0..l - 1).map(|_| rng.below(6) as f64).collect()
        };
        let micro_batches = 1 + rng.below(8);
        let schedule = match rng.below(4) {
            0 => Schedule::GPipe,
            1 => Schedule::Interleaved(1 + rng.below(3)),
            _ => Schedule::OneFOneB,
        };
        StageProblem {
            layers,
            stages,
            micro_batches,
            schedule,
            memory_bytes: (40 + rng.below(300)) as f64,
            stage_overhead_bytes: rng.below(10) as f64,
            comm_ms,
            recompute: mode,
            first_stage_min_layers: if rng.below(4) == 0 {
                (1 + rng.below(3)).min(l - stages + 1)
            } else {
                0
            },
            // Roles as a VLM has them (runs of ViT and decoder layers between layers outside
            // any block), sometimes none given (all counted), sometimes random per layer.
            recompute_groups: match rng.below(3) {
                0 => Vec::new(),
                1 => {
                    let mut g = 0;
                    (0..l)
                        .map(|_| {
                            if rng.below(4) == 0 {
                                g = rng.below(3);
                            }
                            g
                        })
                        .collect()
                }
                _ => (0..l).map(|_| rng.below(3)).collect(),
            },
        }
    }

    /// Every split, every recomputation the mode allows: the least feasible iteration time and
    /// the least memory any plan needs.
    fn brute_force(p: &StageProblem) -> (f64, f64) {
        let l = p.layers.len();
        let stages = p.stages as usize;
        let mut best = f64::INFINITY;
        let mut least_memory = f64::INFINITY;
        let mut ends = vec![0u32; stages];
        fn splits(
            l: usize,
            stages: usize,
            s: usize,
            start: usize,
            ends: &mut Vec<u32>,
            visit: &mut dyn FnMut(&[u32]),
        ) {
            if s == stages - 1 {
                ends[s] = (l - 1) as u32;
                visit(ends);
                return;
            }
            for end in start..=l - (stages - s) {
                ends[s] = end as u32;
                splits(l, stages, s + 1, end + 1, ends, visit);
            }
        }
        let mut visit = |ends: &[u32]| {
            if (ends[0] as usize + 1) < p.first_stage_min_layers as usize {
                return;
            }
            // Recomputation options of each stage: (full, selective) layer lists.
            let mut options: Vec<Vec<(Vec<u32>, Vec<u32>)>> = Vec::new();
            let mut first = 0u32;
            for &last in ends {
                let len = (last - first + 1) as usize;
                let full = |x: Vec<u32>| (x, Vec::new());
                let opts: Vec<(Vec<u32>, Vec<u32>)> = match p.recompute {
                    Recompute::None => vec![full(vec![])],
                    Recompute::Full => vec![full((first..=last).collect())],
                    Recompute::Block => (0..=len)
                        .map(|k| full((first..first + k as u32).collect()))
                        .collect(),
                    Recompute::Uniform(k) => {
                        // Written out per layer: a run of role 1 recomputes its first k
                        // layers in the stage, role 2 all, role 0 none.
                        let role =
                            |i: u32| p.recompute_groups.get(i as usize).copied().unwrap_or(1);
                        let mut set = Vec::new();
                        let mut taken = 0;
                        for i in first..=last {
                            if i == first || role(i) != role(i - 1) {
                                taken = 0;
                            }
                            if role(i) == 2 || (role(i) == 1 && taken < k) {
                                set.push(i);
                                taken += 1;
                            }
                        }
                        vec![full(set)]
                    }
                    Recompute::SelectiveAll => vec![(vec![], (first..=last).collect())],
                    Recompute::Selective => (0..=len)
                        .flat_map(|k| {
                            let f: Vec<u32> = (first..first + k as u32).collect();
                            [
                                (f.clone(), Vec::new()),
                                (f, (first + k as u32..=last).collect()),
                            ]
                        })
                        .collect(),
                    Recompute::Any => (0..1u32 << len)
                        .map(|mask| {
                            full(
                                (0..len as u32)
                                    .filter(|b| mask >> b & 1 == 1)
                                    .map(|b| first + b)
                                    .collect(),
                            )
                        })
                        .collect(),
                };
                options.push(opts);
                first = last + 1;
            }
            let mut pick = vec![0usize; stages];
            loop {
                let rec: Vec<Vec<u32>> =
                    (0..stages).map(|s| options[s][pick[s]].0.clone()).collect();
                let sel: Vec<Vec<u32>> =
                    (0..stages).map(|s| options[s][pick[s]].1.clone()).collect();
                let plan = p.evaluate_with(ends, &rec, &sel).unwrap();
                let peak = plan
                    .stages
                    .iter()
                    .map(|s| s.memory_bytes)
                    .fold(0.0, f64::max);
                least_memory = least_memory.min(peak);
                if peak <= p.memory_bytes {
                    best = best.min(plan.iteration_ms);
                }
                let mut s = 0;
                while s < stages {
                    pick[s] += 1;
                    if pick[s] < options[s].len() {
                        break;
                    }
                    pick[s] = 0;
                    s += 1;
                }
                if s == stages {
                    break;
                }
            }
        };
        splits(l, stages, 0, 0, &mut ends, &mut visit);
        (best, least_memory)
    }

    fn check_against_brute_force(mode: Recompute, max_layers: u32, runs: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        for run in 0..runs {
            let p = random_problem(&mut rng, max_layers, mode);
            let (best, least_memory) = brute_force(&p);
            match partition_stages(&p) {
                Ok(plan) => {
                    // The plan is what it says, and fits.
                    let ends: Vec<u32> = plan.stages.iter().map(|s| s.last_layer).collect();
                    let rec: Vec<Vec<u32>> =
                        plan.stages.iter().map(|s| s.recomputed.clone()).collect();
                    let sel: Vec<Vec<u32>> =
                        plan.stages.iter().map(|s| s.selective.clone()).collect();
                    let again = p.evaluate_with(&ends, &rec, &sel).unwrap();
                    assert_eq!(again.iteration_ms, plan.iteration_ms, "run {run}");
                    for (a, b) in again.stages.iter().zip(&plan.stages) {
                        assert_eq!(a.memory_bytes, b.memory_bytes, "run {run}");
                    }
                    assert!(
                        plan.stages.iter().all(|s| s.memory_bytes <= p.memory_bytes),
                        "run {run}"
                    );
                    if mode == Recompute::Any {
                        assert!(plan.iteration_ms >= best, "run {run}: beat brute force?");
                        let mut block = p.clone();
                        block.recompute = Recompute::Block;
                        if let Ok(b) = partition_stages(&block) {
                            assert!(
                                plan.iteration_ms <= b.iteration_ms,
                                "run {run}: any worse than block"
                            );
                        }
                    } else {
                        assert_eq!(plan.iteration_ms, best, "run {run}: {p:?}");
                    }
                }
                Err(Error::Infeasible {
                    min_memory_bytes, ..
                }) => {
                    assert!(
                        best.is_infinite() || mode == Recompute::Any,
                        "run {run}: brute force found {best}"
                    );
                    let mut block = p.clone();
                    block.recompute = Recompute::Block;
                    assert!(
                        mode != Recompute::Any || partition_stages(&block).is_err(),
                        "run {run}: block fits, any not"
                    );
                    if mode != Recompute::Any {
                        assert_eq!(min_memory_bytes, least_memory, "run {run}");
                    }
                }
                Err(e) => panic!("run {run}: {e}"),
            }
        }
    }

    #[test]
    fn block_matches_brute_force() {
        check_against_brute_force(Recompute::Block, 12, 1500, 1);
    }

    #[test]
    fn none_and_full_match_brute_force() {
        check_against_brute_force(Recompute::None, 12, 700, 2);
        check_against_brute_force(Recompute::Full, 12, 700, 3);
    }

    #[test]
    fn ties_go_to_the_least_sum_then_the_most_even_stages() {
        let mut rng = Rng::new(21);
        for run in 0..600 {
            let mode = [Recompute::Block, Recompute::Selective, Recompute::None][run % 3];
            let p = random_problem(&mut rng, 10, mode);
            let Ok(plan) = partition_stages(&p) else {
                continue;
            };
            let sq = |pl: &StagePlan| pl.stages.iter().map(|s| s.time_ms * s.time_ms).sum::<f64>();
            let sum = |pl: &StagePlan| pl.stages.iter().map(|s| s.time_ms).sum::<f64>();
            let (l, stages) = (p.layers.len(), p.stages as usize);
            // Every split whose stages all fit and take at most the plan's bottleneck.
            let mut ends = vec![0u32; stages];
            fn each(
                l: usize,
                st: usize,
                s: usize,
                start: usize,
                ends: &mut Vec<u32>,
                f: &mut dyn FnMut(&[u32]),
            ) {
                if s == st - 1 {
                    ends[s] = (l - 1) as u32;
                    f(ends);
                    return;
                }
                for e in start..=l - (st - s) {
                    ends[s] = e as u32;
                    each(l, st, s + 1, e + 1, ends, f);
                }
            }
            each(l, stages, 0, 0, &mut ends, &mut |ends: &[u32]| {
                if (ends[0] as usize + 1) < p.first_stage_min_layers as usize {
                    return;
                }
                let Ok(q) = plan_for_split(&p, ends) else {
                    return;
                };
                if q.bottleneck_ms > plan.bottleneck_ms {
                    return;
                }
                assert!(
                    q.iteration_ms >= plan.iteration_ms,
                    "run {run}: not optimal"
                );
                assert!(
                    sum(&q) >= sum(&plan),
                    "run {run}: a split with less total time"
                );
                if sum(&q) == sum(&plan) {
                    assert!(sq(&q) >= sq(&plan), "run {run}: a more even split {ends:?}");
                }
            });
        }
    }

    #[test]
    fn selective_matches_brute_force() {
        check_against_brute_force(Recompute::Selective, 10, 1200, 5);
    }

    #[test]
    fn one_setting_for_all_stages_matches_brute_force() {
        check_against_brute_force(Recompute::SelectiveAll, 12, 500, 6);
        for k in 0..4 {
            check_against_brute_force(Recompute::Uniform(k), 12, 300, 7 + k as u64);
        }
    }

    #[test]
    fn any_is_feasible_and_never_worse_than_block() {
        check_against_brute_force(Recompute::Any, 8, 600, 4);
    }

    #[test]
    fn fewer_layers_than_stages_and_zero_sizes_are_errors() {
        let layer = Layer::new(1.0, 2.0, 1.0, 1.0, 0.0);
        let p = StageProblem {
            layers: vec![layer; 3],
            stages: 4,
            micro_batches: 4,
            memory_bytes: 100.0,
            stage_overhead_bytes: 0.0,
            comm_ms: vec![],
            recompute: Recompute::Block,
            first_stage_min_layers: 0,
            schedule: Schedule::OneFOneB,
            recompute_groups: Vec::new(),
        };
        assert_eq!(
            partition_stages(&p).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        for q in [
            StageProblem {
                stages: 0,
                ..p.clone()
            },
            StageProblem {
                micro_batches: 0,
                ..p.clone()
            },
            StageProblem {
                memory_bytes: 0.0,
                ..p.clone()
            },
        ] {
            assert_eq!(
                partition_stages(&q).unwrap_err().code(),
                "ERR_OMNIBAL_OUT_OF_RANGE"
            );
        }
        let mut bad = p.clone();
        bad.stages = 2;
        bad.layers[1].forward_ms = f64::NAN;
        assert_eq!(
            partition_stages(&bad).unwrap_err().to_string(),
            "layers[1].forwardMs must be a finite number >= 0, got NaN"
        );
    }
}
