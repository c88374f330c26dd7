//! The balanced planner, this package's default: within every step, every micro-batch (and so
//! every rank) carries the same vision load and the same text cost, without padding.
//!
//! 1. Packing (ISF-like): walk the shuffled pool with `open_packs` open packs; a sample joins
//!    the first open pack it fits (both caps); a pack is accepted once its vision sum is within
//!    `vision_slack` of the vision cap, or its text reaches `min_text`. When no open pack takes a
//!    sample, the oldest open pack is evicted and its samples go back to the pool. Up to
//!    `rounds` rounds, each reshuffling the pool; the last round accepts everything. Packs are
//!    made from randomly ordered samples, so each mixes datasets and lengths.
//! 2. Steps: packs sorted by vision sum, then text cost, descending; consecutive groups of
//!    `dp * accum` packs form the steps. Packs in a step thus have equal vision and nearly
//!    equal text before any balancing.
//! 3. Text balance: within each step, repeatedly take the micro-batch of highest text cost and
//!    swap one of its samples for a sample of equal vision in a cheaper micro-batch, choosing
//!    the swap that brings the two closest to their mean, under the text cap. Vision sums never
//!    change; each swap strictly lowers the sum of squared costs, so it ends.
//! 4. Ranks: with `accum > 1`, a step's micro-batches are dealt to ranks in snake order of
//!    (vision, cost) descending, so rank sums even out further.
//! 5. Order: the full steps in a random order (seed, epoch), so the epoch is neither sorted by
//!    length nor clumped by dataset; the tail step last, under the tail policy.

use super::cost::TextCost;
use super::plan::{assemble, BatchPlan, Packs, Tail};
use super::samples::{Caps, Samples};
use crate::error::Error;
use crate::permutation::shuffle;
use crate::progress::Progress;
use crate::rng::Rng;

/// Stream purpose of the step order (rounds use purposes `0..rounds`).
pub const STEP_ORDER_PURPOSE: u64 = (1 << 20) - 1;

/// Parameters of [`balance_batches`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceParams {
    pub dp: u32,
    pub accum: u32,
    pub caps: Caps,
    /// A pack whose text reaches this is accepted even below the vision cap.
    pub min_text: u32,
    /// Packing rounds (default 4).
    pub rounds: u32,
    /// Packs open at once while packing (default 4).
    pub open_packs: u32,
    /// A pack within this many vision units of the cap is full (default 1).
    pub vision_slack: u32,
    pub seed: u64,
    pub epoch: u64,
    pub cost: TextCost,
    pub tail: Tail,
}

impl BalanceParams {
    /// Defaults for everything but the shape, the caps and the seed.
    pub fn new(dp: u32, accum: u32, caps: Caps, seed: u64, epoch: u64) -> Self {
        BalanceParams {
            dp,
            accum,
            caps,
            min_text: caps.max_text.saturating_sub(128),
            rounds: 4,
            open_packs: 4,
            vision_slack: 1,
            seed,
            epoch,
            cost: TextCost::default(),
            tail: Tail::Drop,
        }
    }
}

struct OpenPack {
    items: Vec<u32>,
    v: u64,
    t: u64,
}

/// Step 1: packs, in acceptance order.
fn pack(
    samples: &Samples,
    pool: &mut Vec<u32>,
    p: &BalanceParams,
    progress: &mut dyn Progress,
    total: u64,
) -> Packs {
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let slack = p.vision_slack as u64;
    let accept = |v: u64, t: u64| (cap_v > 0 && v + slack >= cap_v) || t >= p.min_text as u64;
    let mut out = Packs::with_capacity(pool.len());
    let mut open: Vec<OpenPack> = Vec::with_capacity(p.open_packs as usize);
    let mut rest = Vec::new();
    for round in 0..p.rounds {
        shuffle(pool, &mut Rng::for_epoch(p.seed, p.epoch, round as u64));
        let last = round + 1 == p.rounds;
        rest.clear();
        for &i in pool.iter() {
            let (sv, st) = (
                samples.vision[i as usize] as u64,
                samples.text[i as usize] as u64,
            );
            match open
                .iter()
                .position(|b| b.v + sv <= cap_v && b.t + st <= cap_t)
            {
                Some(k) => {
                    let b = &mut open[k];
                    b.items.push(i);
                    b.v += sv;
                    b.t += st;
                    if accept(b.v, b.t) {
                        out.push(&open.remove(k).items);
                    }
                }
                None => {
                    if open.len() == p.open_packs as usize {
                        let evicted = open.remove(0);
                        if last {
                            out.push(&evicted.items);
                        } else {
                            rest.extend_from_slice(&evicted.items);
                        }
                    }
                    if accept(sv, st) {
                        out.push(&[i]);
                    } else {
                        open.push(OpenPack {
                            items: vec![i],
                            v: sv,
                            t: st,
                        });
                    }
                }
            }
        }
        for b in open.drain(..) {
            if last {
                out.push(&b.items);
            } else {
                rest.extend_from_slice(&b.items);
            }
        }
        std::mem::swap(pool, &mut rest);
        progress.report(total - pool.len() as u64, total * 2);
        if pool.is_empty() {
            break;
        }
    }
    out
}

/// Step 3 for one step: same-vision swaps between its packs (`step` indexes `packs`).
fn balance_step(
    packs: &mut Packs,
    step: std::ops::Range<usize>,
    vision: &[u32],
    text: &[u32],
    w: &[u64],
    cap_t: u64,
) {
    let load = |packs: &Packs, p: usize| -> (u64, u64) {
        packs.get(p).iter().fold((0, 0), |(a, b), &i| {
            (a + w[i as usize], b + text[i as usize] as u64)
        })
    };
    let mut wsum: Vec<u64> = Vec::with_capacity(step.len());
    let mut tsum: Vec<u64> = Vec::with_capacity(step.len());
    for p in step.clone() {
        let (a, b) = load(packs, p);
        wsum.push(a);
        tsum.push(b);
    }
    let m = step.len();
    let mut by_load: Vec<usize> = (0..m).collect();
    for _ in 0..8 * m + 32 {
        let mut hi = 0;
        for k in 1..m {
            if wsum[k] > wsum[hi] {
                hi = k;
            }
        }
        by_load.sort_by_key(|&k| (wsum[k], k));
        let mut swapped = false;
        for &lo in &by_load {
            if wsum[lo] >= wsum[hi] {
                break;
            }
            let gap = wsum[hi] - wsum[lo];
            let mut best: Option<(u64, usize, usize)> = None;
            let (rh, rl) = (packs.range(step.start + hi), packs.range(step.start + lo));
            for xi in rh.clone() {
                let x = packs.items[xi] as usize;
                for yi in rl.clone() {
                    let y = packs.items[yi] as usize;
                    if vision[x] != vision[y] || w[x] <= w[y] {
                        continue;
                    }
                    let d = w[x] - w[y];
                    if d >= gap || tsum[lo] - text[y] as u64 + text[x] as u64 > cap_t {
                        continue;
                    }
                    let score = gap.abs_diff(2 * d);
                    if best.is_none_or(|(s, _, _)| score < s) {
                        best = Some((score, xi, yi));
                    }
                }
            }
            if let Some((_, xi, yi)) = best {
                let (x, y) = (packs.items[xi] as usize, packs.items[yi] as usize);
                wsum[hi] = wsum[hi] - w[x] + w[y];
                wsum[lo] = wsum[lo] - w[y] + w[x];
                tsum[hi] = tsum[hi] - text[x] as u64 + text[y] as u64;
                tsum[lo] = tsum[lo] - text[y] as u64 + text[x] as u64;
                packs.items.swap(xi, yi);
                swapped = true;
                break;
            }
        }
        if !swapped {
            break;
        }
    }
}

/// Plans one epoch with the balanced strategy.
pub fn balance_batches(
    samples: &Samples,
    p: &BalanceParams,
    progress: &mut dyn Progress,
) -> Result<BatchPlan, Error> {
    if p.dp == 0 {
        return Err(Error::out_of_range("dp", "must be at least 1, got 0"));
    }
    if p.accum == 0 {
        return Err(Error::out_of_range("accum", "must be at least 1, got 0"));
    }
    if p.rounds == 0 {
        return Err(Error::out_of_range("rounds", "must be at least 1, got 0"));
    }
    if p.open_packs == 0 {
        return Err(Error::out_of_range(
            "openPacks",
            "must be at least 1, got 0",
        ));
    }
    let (mut pool, dropped) = samples.split_by_caps(p.caps)?;
    let total = pool.len() as u64;
    let accepted = pack(samples, &mut pool, p, progress, total);

    // Step 2: packs by vision sum, then text cost, descending (ties: acceptance order).
    let w = p.cost.weights(samples.text);
    let mut by_load: Vec<(u64, u64, usize)> = (0..accepted.len())
        .map(|k| {
            let pack = accepted.get(k);
            let v = pack
                .iter()
                .map(|&i| samples.vision[i as usize] as u64)
                .sum();
            (v, pack.iter().map(|&i| w[i as usize]).sum(), k)
        })
        .collect();
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut ordered = Packs::with_capacity(accepted.items.len());
    for &(_, _, k) in &by_load {
        ordered.push(accepted.get(k));
    }
    drop(accepted);
    // Step 3: text balance inside every step (the tail step too).
    let m = (p.dp * p.accum) as usize;
    let n = ordered.len();
    let steps = n.div_ceil(m);
    for s in 0..steps {
        let range = s * m..((s + 1) * m).min(n);
        balance_step(
            &mut ordered,
            range,
            samples.vision,
            samples.text,
            &w,
            p.caps.max_text as u64,
        );
        if s % 1024 == 1023 {
            progress.report(total + total * s as u64 / steps as u64, total * 2);
        }
    }
    // Step 4: deal each full step's packs to ranks; step 5: order the steps.
    let full = n / m;
    let mut step_order: Vec<u32> = (0..full as u32).collect();
    shuffle(
        &mut step_order,
        &mut Rng::for_epoch(p.seed, p.epoch, STEP_ORDER_PURPOSE),
    );
    let mut order = Vec::with_capacity(n);
    let mut dealt: Vec<(u64, u64, usize)> = Vec::with_capacity(m);
    for &s in &step_order {
        let base = s as usize * m;
        if p.accum == 1 {
            order.extend((base..base + m).map(|k| k as u32));
            continue;
        }
        dealt.clear();
        for k in base..base + m {
            let wsum: u64 = ordered.get(k).iter().map(|&i| w[i as usize]).sum();
            let vsum: u64 = ordered
                .get(k)
                .iter()
                .map(|&i| samples.vision[i as usize] as u64)
                .sum();
            dealt.push((vsum, wsum, k));
        }
        dealt.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let dp = p.dp as usize;
        let rank_of = |j: usize| {
            if (j / dp).is_multiple_of(2) {
                j % dp
            } else {
                dp - 1 - j % dp
            }
        };
        for r in 0..dp {
            order.extend(
                (0..m)
                    .filter(|&j| rank_of(j) == r)
                    .map(|j| dealt[j].2 as u32),
            );
        }
    }
    order.extend((full * m..n).map(|k| k as u32));
    progress.report(total * 2, total * 2);
    assemble(
        &ordered,
        &order,
        p.dp,
        p.accum,
        p.tail,
        true,
        Some(p.caps),
        dropped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::metrics::batch_metrics;
    use crate::data::samples::caps_for_samples_per_pack;

    fn data(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let v: Vec<u32> = (0..n)
            .map(|_| [1, 3, 4, 5][rng.below(4) as usize])
            .collect();
        let t = v.iter().map(|&x| 256 * x + 30 + rng.below(400)).collect();
        (v, t)
    }

    #[test]
    fn covers_every_sample_once_and_respects_caps() {
        let (v, t) = data(20_000, 1);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for tail in [Tail::Drop, Tail::KeepPartial] {
            let mut p = BalanceParams::new(8, 2, caps, 3, 0);
            p.tail = tail;
            let plan = balance_batches(&s, &p, &mut ()).unwrap();
            let mut seen = vec![0u8; v.len()];
            for &i in &plan.samples {
                seen[i as usize] += 1;
            }
            for &(i, _) in &plan.dropped {
                seen[i as usize] += 1;
            }
            assert!(seen.iter().all(|&c| c == 1));
            for k in 0..plan.micro_batches() {
                let mb = plan.micro_batch(k);
                assert!(mb.iter().map(|&i| v[i as usize]).sum::<u32>() <= caps.max_vision);
                assert!(mb.iter().map(|&i| t[i as usize]).sum::<u32>() <= caps.max_text);
            }
        }
    }

    #[test]
    fn ranks_carry_equal_loads() {
        let (v, t) = data(50_000, 2);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let plan = balance_batches(&s, &BalanceParams::new(8, 1, caps, 1, 0), &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
        assert!(m.vision_dist < 1e-3, "{m:?}");
        assert!(m.text_dist < 1e-3, "{m:?}");
        assert_eq!(m.pad_ratio, 0.0);
    }

    #[test]
    fn balances_the_cost_it_is_given() {
        let (v, t) = data(30_000, 3);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.0);
        let cost = TextCost::new(1.0, 1.0 / 1024.0).unwrap();
        let mut p = BalanceParams::new(8, 1, caps, 1, 0);
        p.cost = cost;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &cost).unwrap();
        assert!(m.cost_dist < 2e-3, "{m:?}");
    }

    #[test]
    fn steps_come_in_a_random_order_per_epoch() {
        let (v, t) = data(8_000, 4);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.0);
        let a = balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 0), &mut ()).unwrap();
        let b = balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 1), &mut ()).unwrap();
        assert_eq!(
            a,
            balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 0), &mut ()).unwrap()
        );
        assert_ne!(a.samples, b.samples);
        // Step loads are not sorted: about half the neighbours rise.
        let load = |plan: &BatchPlan, st: usize| -> u64 {
            (0..4)
                .flat_map(|r| plan.rank_micro_batches(st, r))
                .flat_map(|k| plan.micro_batch(k).to_vec())
                .map(|i| t[i as usize] as u64)
                .sum()
        };
        let rises = (1..a.steps())
            .filter(|&st| load(&a, st) > load(&a, st - 1))
            .count();
        let share = rises as f64 / (a.steps() - 1) as f64;
        assert!((0.35..0.65).contains(&share), "{share}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let s = Samples::new(&[1, 2], &[10, 20]).unwrap();
        let caps = Caps {
            max_vision: 4,
            max_text: 100,
        };
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(0, 1, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(1, 0, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(4, 1, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_TOO_FEW_SAMPLES"
        );
    }
}
