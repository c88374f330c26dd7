//! Fisher-Yates shuffles and seeded permutations, drawn from [`crate::rng::Rng`].

use crate::error::Error;
use crate::progress::Progress;
use crate::rng::{mask_covering, Rng};

/// Largest `n` accepted by [`permutation`]: indices are `u32`.
pub const MAX_PERMUTATION_LEN: u64 = u32::MAX as u64;

/// Shuffles `values` in place (Fisher-Yates, from the back): for `i` from `len - 1` down to 1,
/// swap `values[i]` with `values[rng.below(i + 1)]`.
pub fn shuffle<T>(values: &mut [T], rng: &mut Rng) {
    shuffle_with_progress(values, rng, &mut ());
}

/// [`shuffle`], reporting progress to `progress` every 2^16 swaps.
pub fn shuffle_with_progress<T>(values: &mut [T], rng: &mut Rng, progress: &mut dyn Progress) {
    let len = values.len();
    let total = len as u64;
    let mut i = len.saturating_sub(1);
    while i >= 1 {
        // Down to the next multiple of 2^16 (a report), else to 1.
        let end = (i & !0xFFFF).max(1);
        swaps_down(values, rng, i, end);
        if end & 0xFFFF == 0 {
            progress.report(total - end as u64, total);
        }
        i = end - 1;
    }
    progress.report(total, total);
}

/// Most draws [`shuffle`] makes ahead of its swaps (a stack buffer of this many `u32`s): tunes
/// speed only.
pub const SHUFFLE_BATCH: usize = 256;

/// The Fisher-Yates swaps at `i`, `i - 1`, ..., `end` (`1 <= end <= i < values.len()`), each
/// with `rng.below(i + 1)`, drawn as [`Rng::below`] draws it (mask, then reject) but in batches
/// ahead of the swaps: a batch is up to [`SHUFFLE_BATCH`] positions of one mask (one bit
/// length), its draws are made first, a rejected one overwritten by the next (no branch on a
/// draw, whose outcome cannot be predicted), and then its swaps, whose memory accesses do not
/// wait for the generator. Same draws, same swaps, about twice as fast as a draw per swap.
fn swaps_down<T>(values: &mut [T], rng: &mut Rng, mut i: usize, end: usize) {
    let mut draws = [0u32; SHUFFLE_BATCH];
    loop {
        // `below(i + 1)`'s mask (`i >= 1`); it covers every position down to `(mask >> 1) + 1`.
        let mask = mask_covering(i as u32);
        let low = end
            .max((mask >> 1) as usize + 1)
            .max(i.saturating_sub(SHUFFLE_BATCH - 1));
        let count = i - low + 1;
        let mut w = 0;
        while w < count {
            let x = rng.next_u32() & mask;
            draws[w] = x;
            w += (x as usize <= i - w) as usize;
        }
        for (w, &j) in draws[..count].iter().enumerate() {
            values.swap(i - w, j as usize);
        }
        if low == end {
            return;
        }
        i = low - 1;
    }
}

/// A uniformly random permutation of `0..n` for `seed`.
pub fn permutation(n: u64, seed: u64) -> Result<Vec<u32>, Error> {
    permutation_with_progress(n, seed, &mut ())
}

/// [`permutation`], reporting progress as it shuffles.
pub fn permutation_with_progress(
    n: u64,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<Vec<u32>, Error> {
    if n > MAX_PERMUTATION_LEN {
        return Err(Error::out_of_range(
            "n",
            format!("must be between 0 and {MAX_PERMUTATION_LEN}, got {n}"),
        ));
    }
    if seed > crate::rng::MAX_SEED {
        return Err(Error::out_of_range(
            "seed",
            format!("must be between 0 and {}, got {seed}", crate::rng::MAX_SEED),
        ));
    }
    let mut values: Vec<u32> = crate::alloc::vec_with_room("n", n as usize, "values")?;
    values.extend(0..n as u32);
    shuffle_with_progress(&mut values, &mut Rng::new(seed), progress);
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_permutation(values: &[u32]) -> bool {
        let mut seen = vec![false; values.len()];
        for &v in values {
            let v = v as usize;
            if v >= seen.len() || seen[v] {
                return false;
            }
            seen[v] = true;
        }
        true
    }

    #[test]
    fn permutations_are_permutations_and_deterministic() {
        for n in [0u64, 1, 2, 3, 10, 1000, 70_001] {
            for seed in [0u64, 1, 99, crate::rng::MAX_SEED] {
                let p = permutation(n, seed).unwrap();
                assert_eq!(p.len() as u64, n);
                assert!(is_permutation(&p));
                assert_eq!(p, permutation(n, seed).unwrap());
            }
        }
    }

    #[test]
    fn the_batched_shuffle_is_the_textbook_one() {
        // Fisher-Yates from the back with `Rng::below`, reporting every 2^16 swaps.
        fn textbook(values: &mut [u32], rng: &mut Rng, reports: &mut Vec<(u64, u64)>) {
            let total = values.len() as u64;
            for i in (1..values.len()).rev() {
                let j = rng.below((i + 1) as u32) as usize;
                values.swap(i, j);
                if i & 0xFFFF == 0 {
                    reports.push((total - i as u64, total));
                }
            }
            reports.push((total, total));
        }
        let lens = (0..70).chain([255, 256, 257, 65_535, 65_536, 65_537, 131_073, 200_000]);
        for (seed, len) in lens.enumerate() {
            let mut want: Vec<u32> = (0..len).collect();
            let mut want_rng = Rng::new(seed as u64);
            let mut want_reports = Vec::new();
            textbook(&mut want, &mut want_rng, &mut want_reports);
            let mut got: Vec<u32> = (0..len).collect();
            let mut got_rng = Rng::new(seed as u64);
            let mut got_reports = Vec::new();
            let mut sink = |done: u64, total: u64| got_reports.push((done, total));
            shuffle_with_progress(&mut got, &mut got_rng, &mut sink);
            assert_eq!(got, want, "length {len}");
            assert_eq!(got_reports, want_reports, "length {len}");
            // The generator is left where the textbook shuffle leaves it.
            assert_eq!(got_rng, want_rng, "length {len}");
        }
    }

    #[test]
    fn different_seeds_give_different_orders() {
        assert_ne!(permutation(100, 1).unwrap(), permutation(100, 2).unwrap());
    }

    #[test]
    fn every_position_is_reachable_for_small_n() {
        // All 6 orders of 3 items appear over a few hundred seeds.
        let mut seen = std::collections::HashSet::new();
        for seed in 0..300 {
            seen.insert(permutation(3, seed).unwrap());
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn progress_reaches_the_total() {
        let mut last = (0, 0);
        let mut calls = 0;
        let mut sink = |done: u64, total: u64| {
            assert!(done <= total);
            last = (done, total);
            calls += 1;
        };
        permutation_with_progress(300_000, 1, &mut sink).unwrap();
        assert_eq!(last, (300_000, 300_000));
        assert!((4..20).contains(&calls), "calls {calls}");
    }

    #[test]
    fn out_of_range_arguments_are_errors() {
        assert_eq!(
            permutation(1, crate::rng::MAX_SEED + 1).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(
            permutation(MAX_PERMUTATION_LEN + 1, 0).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
    }
}
