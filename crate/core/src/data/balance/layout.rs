//! Step 3 of the balanced planner: the layout's helpers. Pack orders by vision sum
//! ([`sort_by_key_descending`]) and the records read and widened in place as flat words
//! ([`word`], [`word_of`]).

use super::swaps::SampleLoad;
use std::cmp::Reverse;

/// Largest key [`sort_by_key_descending`] counts (larger ones are compared).
pub const COUNTING_SORT_MAX: u64 = 1 << 20;

/// Sorts `list` (indices into `key`) by key, descending, keeping the order of equal keys: by
/// counting when the keys are small (pack vision sums are at most the vision cap), else by
/// comparison (the same order).
pub(super) fn sort_by_key_descending(list: &mut [u32], key: &[u64]) {
    let max = list.iter().map(|&k| key[k as usize]).max().unwrap_or(0);
    if max > COUNTING_SORT_MAX {
        list.sort_by_cached_key(|&k| Reverse(key[k as usize]));
        return;
    }
    let rank = |k: u32| (max - key[k as usize]) as usize;
    let mut start = vec![0usize; max as usize + 2];
    for &k in list.iter() {
        start[rank(k) + 1] += 1;
    }
    for r in 0..=max as usize {
        start[r + 1] += start[r];
    }
    let mut out = vec![0u32; list.len()];
    for &k in list.iter() {
        let r = rank(k);
        out[start[r]] = k;
        start[r] += 1;
    }
    list.copy_from_slice(&out);
}

/// Word `q` of `loads` read as a flat sequence of words (four per entry, in field order).
pub(super) fn word(loads: &mut [SampleLoad], q: usize) -> &mut u32 {
    let x = &mut loads[q / 4];
    match q % 4 {
        0 => &mut x.w,
        1 => &mut x.v,
        2 => &mut x.t,
        _ => &mut x.id,
    }
}

/// Word `q` of `loads` (as [`word`] numbers them), read.
pub(super) fn word_of(loads: &[SampleLoad], q: usize) -> u32 {
    let x = &loads[q / 4];
    [x.w, x.v, x.t, x.id][q % 4]
}

/// Packs whose first records the layout's gather reads before copying any of them, so that
/// their cache misses overlap instead of waiting one after another.
pub(super) const GATHER_BATCH: usize = 16;

/// Samples from which the layout widens its records into loads on threads.
pub(super) const PARALLEL_WIDEN_MIN: usize = 1 << 16;
