//! Step 4 of the balanced planner: equalization. Each vision class, in windows of
//! [`EQUALIZE_WINDOW`] consecutive packs (a random sample of the class, small enough to stay in
//! cache), gets [`EQUALIZE_PASSES`] pairing passes, and in steps of at least
//! [`EQUALIZE_GREEDY_MIN_STEP`] micro-batches greedy swaps on its costliest packs, so that the
//! packs of a class become interchangeable before steps are cut from it.

use super::swaps::{for_each_range, PackLoad, SampleLoad};
use crate::data::plan::Packs;
use std::sync::atomic::AtomicBool;

/// Pairing passes over each equalizing window (step 4).
pub const EQUALIZE_PASSES: u32 = 4;
/// Packs per equalizing window (a random sample of a vision class that stays in cache).
pub const EQUALIZE_WINDOW: usize = 8192;
/// Greedy swaps over each equalizing window after its pairing passes: one per this many packs (+32).
pub const EQUALIZE_GREEDY_SHARE: usize = 8;
/// Micro-batches per step from which equalizing windows get their greedy swaps (in smaller steps
/// the step tuning does that work: on 1.2M samples the greedy left p50 and p99 as they were up
/// to 1,024 and cut p99 from 3.7% to 2.3% at 4,096, at 13% of the planner's work).
pub const EQUALIZE_GREEDY_MIN_STEP: usize = 2048;

/// Equalizes the packs of each class run `[from, to)` of `classes` (runs of equal vision sums
/// inside it), window by window, for steps of `m` micro-batches under text cap `cap_t`. Windows
/// are independent: threads take runs of them (the plan does not depend on how many). Once
/// `stop` is set the remaining windows are skipped.
#[allow(clippy::too_many_arguments)]
pub(super) fn equalize(
    packs: &Packs,
    sample_loads: &mut [SampleLoad],
    pack_loads: &mut [PackLoad],
    classes: &[(usize, usize)],
    m: usize,
    cap_t: u64,
    threads: usize,
    stop: Option<&AtomicBool>,
) {
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for &(from, to) in classes {
        let mut start = from;
        while start < to {
            let v = pack_loads[start].v;
            let mut end = start;
            while end < to && pack_loads[end].v == v {
                end += 1;
            }
            let mut a = start;
            while a < end {
                let b = (a + EQUALIZE_WINDOW).min(end);
                windows.push((a, b));
                a = b;
            }
            start = end;
        }
    }
    for_each_range(
        sample_loads,
        pack_loads,
        packs,
        &windows,
        &mut [],
        0,
        threads,
        cap_t,
        stop,
        &|rules, loads, (a, b), _| {
            let mut w: Vec<u32> = (a as u32..b as u32).collect();
            rules.pair_passes(packs, loads, &mut w, EQUALIZE_PASSES);
            // The costliest packs left, each against cheap ones across the window (it matters in
            // large steps, whose slowest rank is the costliest of many packs).
            if m < EQUALIZE_GREEDY_MIN_STEP {
                return;
            }
            rules.greedy(
                packs,
                loads,
                &w,
                w.len() / EQUALIZE_GREEDY_SHARE + 32,
                true,
                0,
            );
        },
    );
}
