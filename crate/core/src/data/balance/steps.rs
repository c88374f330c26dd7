//! Step 5 of the balanced planner: steps cut from the layout, with the packs that stay far from
//! their class's median cost matched in steps of their own ([`match_costly_packs`]), then each
//! step tuned until its costliest pack is within 1/[`STEP_TOLERANCE`] of its mean or no swap
//! helps ([`tune_steps`]).

use super::swaps::{for_each_range, Loads, PackLoad, SampleLoad, SwapRules, GREEDY_SWAPS};
use super::PARALLEL_MIN_STEPS;
use crate::data::plan::Packs;
use crate::progress::is_set;
use std::sync::atomic::AtomicBool;

/// Pairing passes inside each step (step 5).
pub const STEP_PASSES: u32 = 2;
/// A step whose costliest pack is within 1/this of the step's mean is not tuned further.
pub const STEP_TOLERANCE: u64 = 2048;

/// Costly and cheap packs matched in steps of their own: a pack that holds a sample long (or
/// short) for its size cannot be brought to its class's typical cost by swaps (its other
/// samples are already the shortest, or longest, of theirs), and a random step holding it runs
/// that much longer than its mean (or pulls the mean down). In each vision class (a run of
/// `drawn`), the packs costlier than the class median by more than 1/[`COSTLY_PACK_DIV`] are
/// taken out, costliest first, in whole steps of `m` (when there are at least `m`), then those
/// cheaper than it by more than 1/[`CHEAP_PACK_DIV`], cheapest first; these steps go first (the step order is shuffled
/// later), the rest keeps its random order. Few packs qualify on ordinary data, so steps still
/// look i.i.d. One pass over a class finds both kinds; the packs taken are marked in `drawn`
/// itself, which then holds the result (no other buffer of its length but the classes' costs).
pub(super) fn match_costly_packs(mut drawn: Vec<u32>, loads: &Loads<'_>, m: usize) -> Vec<u32> {
    // A taken pack's mark: no pack has this index (a plan holds fewer than `u32::MAX` packs).
    const TAKEN: u32 = u32::MAX;
    debug_assert!(drawn.iter().all(|&k| k != TAKEN));
    let mut costly: Vec<u32> = Vec::new();
    let mut costs: Vec<u64> = Vec::new();
    let mut start = 0;
    while start < drawn.len() {
        let v = loads[drawn[start] as usize].v;
        let mut end = start;
        while end < drawn.len() && loads[drawn[end] as usize].v == v {
            end += 1;
        }
        // The median cost, then only the packs far from it sorted (the same packs, in the same
        // order, as sorting the whole class).
        costs.clear();
        costs.extend(drawn[start..end].iter().map(|&k| loads[k as usize].w));
        let mid = costs.len() / 2;
        let median = *costs.select_nth_unstable(mid).1;
        // Over `high`, or under `low` (`w + median / CHEAP_PACK_DIV < median`).
        let (high, low) = (
            median + median / COSTLY_PACK_DIV,
            median - median / CHEAP_PACK_DIV,
        );
        // (cost, pack, position) of each far pack.
        let (mut over, mut under) = (Vec::new(), Vec::new());
        for (j, &k) in drawn.iter().enumerate().take(end).skip(start) {
            let w = loads[k as usize].w;
            if w > high {
                over.push((w, k, j));
            } else if w < low {
                under.push((w, k, j));
            }
        }
        over.sort_unstable();
        let whole = over.len() - over.len() % m;
        for &(_, k, j) in over.iter().rev().take(whole) {
            costly.push(k);
            drawn[j] = TAKEN;
        }
        under.sort_unstable();
        let whole = under.len() - under.len() % m;
        for &(_, k, j) in under.iter().take(whole) {
            costly.push(k);
            drawn[j] = TAKEN;
        }
        start = end;
    }
    if !costly.is_empty() {
        drawn.retain(|&k| k != TAKEN);
        // Into the room the taken packs left: `drawn` keeps its buffer.
        drawn.splice(0..0, costly);
    }
    drawn
}

/// See [`match_costly_packs`]: packs over the class median by more than 1/this are matched.
pub const COSTLY_PACK_DIV: u64 = 200;
/// See [`match_costly_packs`]: packs under the class median by more than 1/this are matched (a
/// cheap pack moves a step's mean, and so its slowest rank's excess, by 1/m of its deficit).
pub const CHEAP_PACK_DIV: u64 = 100;

/// Tunes each step of `drawn` (`m` packs each), small steps first re-cut in blocks of
/// [`step_block`] steps by cost: vision sums evened where its packs differ (none
/// of them over-cap, below `normal`), then, unless its costliest pack is within
/// 1/[`STEP_TOLERANCE`] of its mean, [`STEP_PASSES`] pairing passes and greedy swaps; each step
/// is left in cost order. `caps` are the vision and text caps. Once `stop` is set the remaining
/// steps are left as they are (the caller discards them).
#[allow(clippy::too_many_arguments)]
pub(super) fn tune_steps(
    packs: &Packs,
    sample_loads: &mut [SampleLoad],
    pack_loads: &mut [PackLoad],
    drawn: &mut [u32],
    m: usize,
    normal: usize,
    caps: (u64, u64),
    threads: usize,
    stop: Option<&AtomicBool>,
) {
    let (cap_v, cap_t) = caps;
    let steps = drawn.len() / m;
    let tune = |rules: &mut SwapRules<'_>, loads: &mut Loads<'_>, step: &mut [u32]| {
        let v0 = loads[step[0] as usize].v;
        if step.iter().any(|&k| loads[k as usize].v != v0)
            && step.iter().all(|&k| (k as usize) < normal)
        {
            rules.even_vision(packs, loads, step, cap_v);
        }
        // A step whose costliest pack is within 1/STEP_TOLERANCE of the mean is left as is.
        let mean = step.iter().map(|&k| loads[k as usize].w).sum::<u64>() / m as u64;
        let stop_at = mean + mean / STEP_TOLERANCE;
        if step.iter().any(|&k| loads[k as usize].w > stop_at) {
            rules.pair_passes(packs, loads, step, STEP_PASSES);
            rules.greedy(
                packs,
                loads,
                step,
                (8 * m + 32).min(GREEDY_SWAPS),
                false,
                stop_at,
            );
        }
        // Cost order, ties by pack (as a re-deal of the step by position breaks them).
        rules.sort_by_cost(loads, step);
    };
    // Steps whose packs run in increasing order (the unmatched ones, cut from the layout) are
    // independent and disjoint in memory: threads take runs of them. The others (matched
    // steps, which gather packs from anywhere) are tuned first, one by one. Steps holding an
    // over-cap pack (from `normal` on: the over-cap steps, matched by (vision, cost), the step
    // completing them, tail steps with over-cap leftovers) form runs of their own, whose steps
    // are tuned as cut: re-cut in a block with other steps, their over-cap micro-batches would
    // share steps with packs of other vision sums and a fraction of their cost.
    let span = |st: usize| {
        let step = &drawn[st * m..(st + 1) * m];
        (
            *step.iter().min().unwrap() as usize,
            *step.iter().max().unwrap() as usize + 1,
        )
    };
    let mut runs: Vec<Vec<(usize, usize)>> = Vec::new(); // per run: each step's pack span
    for st in 0..steps {
        let (lo, hi) = span(st);
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|&(_, end)| end <= lo && (end > normal || hi <= normal)) =>
            {
                run.push((lo, hi))
            }
            _ => runs.push(vec![(lo, hi)]),
        }
    }
    // Each run in blocks of `per` steps (the last may hold fewer), each block's packs re-cut into
    // steps in cost order (see `step_block`).
    let per_normal = step_block(m);
    let block =
        |rules: &mut SwapRules<'_>, loads: &mut Loads<'_>, packs_of: &mut [u32], recut: bool| {
            if recut {
                rules.sort_by_vision_then_cost(loads, packs_of);
            }
            for step in packs_of.chunks_mut(m) {
                tune(rules, loads, step);
            }
        };
    // A block's pack span: from its first step's least pack to its last step's end.
    let span_of = |steps: &[(usize, usize)]| (steps[0].0, steps[steps.len() - 1].1);
    let mut first = 0;
    for run in &runs {
        if is_set(stop) {
            return;
        }
        // A run of steps holding over-cap packs: steps as cut.
        let per = if run[run.len() - 1].1 <= normal {
            per_normal
        } else {
            1
        };
        // Steps as cut (`per` 1): the run's own spans, no list built (runs of one step are
        // common: matched steps, over-cap ones; packs of one sample make hundreds of thousands).
        let blocks: Vec<(usize, usize)> = if per > 1 {
            run.chunks(per).map(span_of).collect()
        } else {
            Vec::new()
        };
        for_each_range(
            sample_loads,
            pack_loads,
            packs,
            if per > 1 { &blocks } else { run },
            &mut drawn[first * m..(first + run.len()) * m],
            per * m,
            if run.len() >= PARALLEL_MIN_STEPS {
                threads
            } else {
                1
            },
            cap_t,
            stop,
            &|rules, loads, _, packs_of| block(rules, loads, packs_of, per > 1),
        );
        first += run.len();
    }
}

/// Steps per block in [`tune_steps`]: with steps of 2 to [`STEP_BLOCK_MAX_PACKS`] packs,
/// [`STEP_BLOCK_PACKS`] / `m`; else 1 (steps as cut: a step of one pack has nothing to balance,
/// and re-cut in blocks its steps would only be reordered, before the step order is shuffled,
/// for up to a third more planning time with packs of one sample). A block's packs
/// (consecutive steps of the layout, so a random draw of their class) are re-cut into steps in
/// (vision descending, cost, index) order, so each step holds packs of about one cost and needs
/// few swaps or none (runs of steps holding over-cap packs are tuned as cut). On
/// 1.2M synthetic samples at dp 8 this took the slowest-rank excess from 0.047% / 0.239% (p50 /
/// p99) to 0.005% / 0.046% and the plan from 118-125 ms to 70-80 ms. A cost stratum of a block is
/// not quite a random draw (a pack's cost left after equalizing goes with its make-up): on the
/// shared real data at dp 8 the dataset-share SD over that of i.i.d. steps went from 1.10-1.17 to
/// 1.14-1.20 (20 seeds; it depends on `dp x accum` alone: at 4 and 6 up 0.01-0.02 on average, at
/// 2 unchanged), but at dp 16 to 1.19-1.25 and at dp 64 to 1.4-1.5, where a step's share is less
/// noisy by itself; so only steps of up to 8 packs are re-cut. Where a block spans vision classes
/// of a few packs each (tiny epochs, many vision sums) the step that straddles two classes holds
/// the ends of both and may run slower than a random one (400 samples at dp 2: worst step 0.99%
/// -> 4.3% over its mean), though over shapes and seeds the worst step is about as before.
pub(super) fn step_block(m: usize) -> usize {
    if (2..=STEP_BLOCK_MAX_PACKS).contains(&m) {
        (STEP_BLOCK_PACKS / m).max(1)
    } else {
        1
    }
}

/// Packs per block of steps in [`tune_steps`] (see [`step_block`]).
pub const STEP_BLOCK_PACKS: usize = 512;
/// Largest step (packs, `dp x accum`) whose steps [`tune_steps`] re-cuts in blocks by cost.
pub const STEP_BLOCK_MAX_PACKS: usize = 8;
