//! Metrics of a batch plan, as the OmniBal paper defines them.
//!
//! - Pad ratio, inside a micro-batch of `B` sequences padded to the longest:
//!   `sum_i (t_max - t_i) / (t_max * B)`, accumulated over all micro-batches (total padding over
//!   total padded tokens). Packed micro-batches are one sequence each and have none.
//! - Dist ratio across the `N` ranks of one step, for one load: `sum_i (L_max - L_i) / (L_max * N)`,
//!   the fraction of rank time spent waiting for the slowest rank; averaged over steps. Vision
//!   load is tiles, text load is real tokens (padding excluded, as the paper counts tokens), and
//!   cost load is the text cost of what runs (`a * tokens + b * sum(len^2)`, padding included
//!   for padded micro-batches, each sample then costing as much as the longest).
//! - Slowest-rank excess of one step on the cost load: `max_r C_r / mean_r C_r - 1`, how much
//!   longer the step takes than a perfectly balanced one would (when the cost is the step-time
//!   cost); reported as the median and the 99th percentile over steps (nearest rank).

use super::cost::TextCost;
use super::load::{plan_loads, LoadSums, PlanLoads};
use super::plan::BatchPlan;
use super::samples::Samples;
use crate::error::Error;

/// Metrics of one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMetrics {
    pub pad_ratio: f64,
    pub vision_dist: f64,
    pub text_dist: f64,
    pub cost_dist: f64,
    /// Mean samples per micro-batch (padding micro-batches included).
    pub samples_per_pack: f64,
    /// Micro-batches (packs) in the plan.
    pub packs: usize,
    pub steps: usize,
    pub dropped: usize,
    pub step_vision_dist: Vec<f64>,
    pub step_text_dist: Vec<f64>,
    pub step_cost_dist: Vec<f64>,
    /// Median over steps of the slowest rank's excess cost over the step's mean.
    pub cost_excess_median: f64,
    /// 99th percentile (nearest rank) of the same.
    pub cost_excess_p99: f64,
    pub step_cost_excess: Vec<f64>,
    /// The plan's mean and largest micro-batch loads ([`plan_loads`]'s figures, from this pass).
    pub loads: PlanLoads,
}

/// Fewest steps per thread before [`batch_metrics`] splits its work.
pub const METRICS_MIN_STEPS_PER_THREAD: usize = 4096;

/// `max / mean - 1` of the loads, or 0 when every load is 0.
fn excess(loads: &[f64]) -> f64 {
    let max = loads.iter().copied().fold(0.0, f64::max);
    let sum: f64 = loads.iter().sum();
    if sum <= 0.0 {
        return 0.0;
    }
    max * loads.len() as f64 / sum - 1.0
}

/// The `q`-quantile of `xs` by nearest rank (`sorted[ceil(q n) - 1]`), 0 for none.
pub fn nearest_rank(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `sum_i (max - L_i) / (max * N)`, or 0 when every load is 0.
fn dist(loads: &[f64]) -> f64 {
    let max = loads.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return 0.0;
    }
    let mut wait = 0.0;
    for &l in loads {
        wait += max - l;
    }
    wait / (max * loads.len() as f64)
}

/// Computes the metrics of `plan` over `samples` with the text `cost` (on the planner's worker
/// threads; the figures do not depend on their number).
pub fn batch_metrics(
    plan: &BatchPlan,
    samples: &Samples,
    cost: &TextCost,
) -> Result<BatchMetrics, Error> {
    batch_metrics_on(plan, samples, cost, super::balance::worker_threads())
}

/// [`batch_metrics`] on `threads` threads.
fn batch_metrics_on(
    plan: &BatchPlan,
    samples: &Samples,
    cost: &TextCost,
    threads: usize,
) -> Result<BatchMetrics, Error> {
    if let Some(&bad) = plan.samples.iter().find(|&&i| i as usize >= samples.len()) {
        return Err(Error::out_of_range(
            "plan",
            format!(
                "refers to sample {bad}, but there are only {} samples",
                samples.len()
            ),
        ));
    }
    let dp = plan.dp as usize;
    let steps = plan.steps();
    let mut m = BatchMetrics {
        pad_ratio: 0.0,
        vision_dist: 0.0,
        text_dist: 0.0,
        cost_dist: 0.0,
        samples_per_pack: if plan.micro_batches() == 0 {
            0.0
        } else {
            plan.samples.len() as f64 / plan.micro_batches() as f64
        },
        packs: plan.micro_batches(),
        steps,
        dropped: plan.dropped.len(),
        step_vision_dist: Vec::with_capacity(steps),
        step_text_dist: Vec::with_capacity(steps),
        step_cost_dist: Vec::with_capacity(steps),
        cost_excess_median: 0.0,
        cost_excess_p99: 0.0,
        step_cost_excess: Vec::with_capacity(steps),
        loads: LoadSums::default().finish(0),
    };
    // Per step: vision, text and cost dists and the cost excess; threads take runs of steps
    // (each writes its own entries; the sums below run in step order, so the figures do not
    // depend on the thread count).
    let mut per_step = vec![[0.0f64; 4]; steps];
    let run = |first: usize, out: &mut [[f64; 4]]| -> (u64, u64, LoadSums) {
        let (mut pad, mut padded) = (0u64, 0u64);
        let mut sums = LoadSums::default();
        let (mut lv, mut lt, mut lc) = (vec![0.0; dp], vec![0.0; dp], vec![0.0; dp]);
        for (j, row) in out.iter_mut().enumerate() {
            let s = first + j;
            for r in 0..dp {
                let (mut v, mut t, mut c) = (0u64, 0u64, 0.0f64);
                for k in plan.rank_micro_batches(s, r) {
                    let mb = plan.micro_batch(k);
                    let tmax = mb
                        .iter()
                        .map(|&i| samples.text[i as usize])
                        .max()
                        .unwrap_or(0);
                    // The micro-batch's load sums, as LoadSums::add takes them.
                    let (mut tiles, mut tokens, mut sq) = (0.0f64, 0.0f64, 0.0f64);
                    for &i in mb {
                        let ti = samples.text[i as usize];
                        let vi = samples.vision[i as usize];
                        v += vi as u64;
                        t += ti as u64;
                        c += cost.sample(if plan.packed { ti } else { tmax });
                        if !plan.packed {
                            pad += (tmax - ti) as u64;
                        }
                        let tf = ti as f64;
                        tiles += vi as f64;
                        tokens += tf;
                        sq += tf * tf;
                    }
                    sums.push(plan.packed, [tiles, tokens, sq, tmax as f64], mb.len());
                    if !plan.packed {
                        padded += tmax as u64 * mb.len() as u64;
                    }
                }
                lv[r] = v as f64;
                lt[r] = t as f64;
                lc[r] = c;
            }
            *row = [dist(&lv), dist(&lt), dist(&lc), excess(&lc)];
        }
        (pad, padded, sums)
    };
    let (mut pad, mut padded) = (0u64, 0u64);
    // Micro-batches run in plan order (steps, then ranks), so one thread's sums are the loads'.
    let mut sums = Some(LoadSums::default());
    if threads <= 1 || steps < 2 * METRICS_MIN_STEPS_PER_THREAD {
        let (a, b, s) = run(0, &mut per_step);
        (pad, padded, sums) = (a, b, Some(s));
    } else {
        let per = steps.div_ceil(threads);
        let parts: Vec<(u64, u64, LoadSums)> = std::thread::scope(|scope| {
            let handles: Vec<_> = per_step
                .chunks_mut(per)
                .enumerate()
                .map(|(g, out)| {
                    let run = &run;
                    scope.spawn(move || run(g * per, out))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for (a, b, s) in parts {
            pad += a;
            padded += b;
            sums = sums.and_then(|sum| sum.then(&s));
        }
    }
    m.loads = match sums {
        Some(sums) => sums.finish(plan.micro_batches()),
        // Totals past 2^53, where the order of the additions shows: one pass in plan order.
        None => plan_loads(
            plan.packed,
            &plan.samples,
            &plan.micro_batch_offsets,
            samples,
        )?,
    };
    for row in &per_step {
        m.step_vision_dist.push(row[0]);
        m.step_text_dist.push(row[1]);
        m.step_cost_dist.push(row[2]);
        m.step_cost_excess.push(row[3]);
    }
    m.cost_excess_median = nearest_rank(&m.step_cost_excess, 0.5);
    m.cost_excess_p99 = nearest_rank(&m.step_cost_excess, 0.99);
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    m.vision_dist = mean(&m.step_vision_dist);
    m.text_dist = mean(&m.step_text_dist);
    m.cost_dist = mean(&m.step_cost_dist);
    m.pad_ratio = if padded == 0 {
        0.0
    } else {
        pad as f64 / padded as f64
    };
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::plan::{assemble, Packs, Tail};

    #[test]
    fn dist_matches_the_definition() {
        assert_eq!(dist(&[10.0, 10.0]), 0.0);
        assert_eq!(dist(&[10.0, 5.0]), 0.25); // (0 + 5) / (10 * 2)
        assert_eq!(dist(&[0.0, 0.0]), 0.0);
        assert_eq!(excess(&[10.0, 5.0, 15.0]), 0.5); // 15 / 10 - 1
        assert_eq!(excess(&[0.0, 0.0]), 0.0);
        let xs: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(nearest_rank(&xs, 0.5), 100.0);
        assert_eq!(nearest_rank(&xs, 0.99), 198.0);
        assert_eq!(nearest_rank(&[], 0.5), 0.0);
    }

    #[test]
    fn figures_do_not_depend_on_the_thread_count() {
        use crate::data::baselines::{random_batches, PaddedParams};
        use crate::rng::Rng;
        let mut rng = Rng::new(5);
        let n = 2 * 3 * 2 * 4 * METRICS_MIN_STEPS_PER_THREAD + 17; // two runs of steps at least
        let v: Vec<u32> = (0..n).map(|_| 1 + rng.below(5)).collect();
        let t: Vec<u32> = (0..n).map(|_| 100 + rng.below(3000)).collect();
        let s = Samples::new(&v, &t).unwrap();
        let p = PaddedParams {
            dp: 3,
            accum: 2,
            batch: 4,
            seed: 1,
            epoch: 0,
            tail: Tail::Pad,
        };
        let plan = random_batches(&s, &p).unwrap();
        let cost = TextCost::new(1.0, 1.0 / 4096.0).unwrap();
        let one = batch_metrics_on(&plan, &s, &cost, 1).unwrap();
        assert!(one.steps >= 2 * METRICS_MIN_STEPS_PER_THREAD);
        assert!(one.pad_ratio > 0.0);
        for threads in [2, 3, 8] {
            assert_eq!(batch_metrics_on(&plan, &s, &cost, threads).unwrap(), one);
        }
        let loads = plan_loads(plan.packed, &plan.samples, &plan.micro_batch_offsets, &s).unwrap();
        assert_eq!(one.loads, loads);
    }

    #[test]
    fn loads_past_2_pow_53_are_the_one_pass_figures_on_any_thread_count() {
        use crate::data::baselines::{random_batches, PaddedParams};
        use crate::rng::Rng;
        let mut rng = Rng::new(9);
        let n = 2 * 2 * 2 * METRICS_MIN_STEPS_PER_THREAD + 101; // threads at batch 2 too
        let v: Vec<u32> = (0..n).map(|_| rng.next_u32()).collect();
        let t: Vec<u32> = (0..n).map(|_| 1 + (rng.next_u32() >> 1)).collect();
        let s = Samples::new(&v, &t).unwrap();
        for packed in [false, true] {
            let p = PaddedParams {
                dp: 2,
                accum: 1,
                batch: 1 + packed as u32,
                seed: 3,
                epoch: 0,
                tail: Tail::Drop,
            };
            let plan = BatchPlan {
                packed,
                ..random_batches(&s, &p).unwrap()
            };
            let loads =
                plan_loads(plan.packed, &plan.samples, &plan.micro_batch_offsets, &s).unwrap();
            assert!(loads.mean_sum_sq_len * plan.micro_batches() as f64 > 9.1e15);
            assert!(plan.steps() >= 2 * METRICS_MIN_STEPS_PER_THREAD);
            for threads in [1, 2, 3, 8] {
                let m = batch_metrics_on(&plan, &s, &TextCost::default(), threads).unwrap();
                assert_eq!(m.loads, loads, "{threads} threads");
            }
        }
    }

    #[test]
    fn padded_and_packed_plans() {
        let v = [1, 2, 3, 4];
        let t = [10, 20, 30, 40];
        let s = Samples::new(&v, &t).unwrap();
        let mut packs = Packs::new();
        packs.push(&[0, 3]);
        packs.push(&[1, 2]);
        let padded = assemble(&packs, &[0, 1], 2, 1, Tail::Drop, false, None, vec![]).unwrap();
        let m = batch_metrics(&padded, &s, &TextCost::default()).unwrap();
        // pads: (40 - 10) and (30 - 20) over 2 * 40 + 2 * 30 padded tokens.
        assert!((m.pad_ratio - 40.0 / 140.0).abs() < 1e-15);
        assert_eq!(m.vision_dist, 0.0); // 5 and 5 tiles
        assert_eq!(m.text_dist, 0.0); // 50 and 50 tokens
        assert!((m.cost_dist - (80.0 - 60.0) / (80.0 * 2.0)).abs() < 1e-15);
        let packed = BatchPlan {
            packed: true,
            ..padded
        };
        let m = batch_metrics(&packed, &s, &TextCost::default()).unwrap();
        assert_eq!(m.pad_ratio, 0.0);
        assert_eq!(m.cost_dist, 0.0);
        assert_eq!(m.samples_per_pack, 2.0);
    }
}
