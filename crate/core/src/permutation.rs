//! Fisher-Yates shuffles and seeded permutations, drawn from [`crate::rng::Rng`].

use crate::error::Error;
use crate::progress::Progress;
use crate::rng::Rng;

/// Largest `n` accepted by [`permutation`]: indices are `u32`.
pub const MAX_PERMUTATION_LEN: u64 = u32::MAX as u64;

/// Shuffles `values` in place (Fisher-Yates, from the back): for `i` from `len - 1` down to 1,
/// swap `values[i]` with `values[rng.below(i + 1)]`.
pub fn shuffle<T>(values: &mut [T], rng: &mut Rng) {
    shuffle_with_progress(values, rng, &mut ());
}

/// Picks [`shuffle_with_progress`] draws before making their swaps.
const PICKS: usize = 256;

/// [`shuffle`], reporting progress to `progress` every 2^16 swaps.
///
/// The draws are [`Rng::below`]'s, made without a branch on the random bits (a rejected draw,
/// about one in four, would be a mispredicted branch): each draw is masked; an accepted one swaps
/// `values[i]` with its pick and moves on to `i - 1`; a rejected one swaps `values[i]` with
/// itself and draws again for the same `i`. The same draws, the same swaps, the same result.
pub fn shuffle_with_progress<T>(values: &mut [T], rng: &mut Rng, progress: &mut dyn Progress) {
    let len = values.len();
    let total = len as u64;
    let mut i = len.saturating_sub(1);
    while i >= 1 {
        // Down to the next multiple of 2^16 (where progress is reported), or to 1.
        let low = (i & !0xFFFF).max(1);
        while i >= low {
            let want = (i - low + 1).min(PICKS);
            let mut picks = [0u32; PICKS];
            let (mut got, mut k) = (0, i);
            while got < want {
                // `below(k + 1)`'s mask: the smallest all-ones mask covering `k`.
                let mask = u32::MAX >> (k as u32).leading_zeros();
                let j = rng.next_u32() & mask;
                picks[got] = j;
                let accepted = (j as usize <= k) as usize;
                got += accepted;
                k -= accepted;
            }
            for (c, &j) in picks[..want].iter().enumerate() {
                values.swap(i - c, j as usize);
            }
            i -= want;
        }
        if low & 0xFFFF == 0 {
            progress.report(total - low as u64, total);
        }
    }
    progress.report(total, total);
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
    fn shuffles_draw_and_swap_as_the_plain_fisher_yates_does() {
        // The plain loop: `below(i + 1)` for i from the back, one swap each, progress after
        // every multiple of 2^16.
        fn plain(values: &mut [u32], rng: &mut Rng, reports: &mut Vec<u64>) {
            for i in (1..values.len()).rev() {
                let j = rng.below((i + 1) as u32) as usize;
                values.swap(i, j);
                if i & 0xFFFF == 0 {
                    reports.push(values.len() as u64 - i as u64);
                }
            }
            reports.push(values.len() as u64);
        }
        for n in [
            0, 1, 2, 3, 255, 256, 257, 1000, 65_536, 65_537, 131_073, 200_000,
        ] {
            for seed in [0, 7] {
                let mut want: Vec<u32> = (0..n).collect();
                let mut got = want.clone();
                let (mut rw, mut rg) = (Rng::new(seed), Rng::new(seed));
                let (mut reports_w, mut reports_g) = (Vec::new(), Vec::new());
                plain(&mut want, &mut rw, &mut reports_w);
                let mut sink = |done: u64, _: u64| reports_g.push(done);
                shuffle_with_progress(&mut got, &mut rg, &mut sink);
                assert!(got == want, "n {n}, seed {seed}");
                assert_eq!(reports_g, reports_w, "n {n}");
                // The generator is left where the plain loop leaves it.
                assert_eq!(rg.next_u32(), rw.next_u32());
            }
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
