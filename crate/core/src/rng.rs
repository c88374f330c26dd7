//! The deterministic generator every solver draws from: xoshiro128** (Blackman and Vigna),
//! with its 128-bit state seeded from a 53-bit seed through SplitMix64.
//!
//! Everything here is 32-bit arithmetic (bar the four SplitMix64 steps at seeding), so the
//! TypeScript twin (`src/random/rng.ts`) produces the same stream bit for bit. The shared file
//! `vectors/rng.json` pins the stream; both test suites check it.

/// Largest seed accepted: JavaScript's `Number.MAX_SAFE_INTEGER`, so every seed round-trips
/// through a JS number exactly.
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// xoshiro128** generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u32; 4],
}

/// One SplitMix64 step: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The smallest all-ones mask covering `x` (0 for 0): what [`Rng::below`]`(x + 1)` masks its
/// draws with.
pub(crate) fn mask_covering(x: u32) -> u32 {
    u32::MAX.checked_shr(x.leading_zeros()).unwrap_or(0)
}

impl Rng {
    /// Seeds the generator: two SplitMix64 outputs fill the four state words, low half first.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let a = splitmix64(&mut sm);
        let b = splitmix64(&mut sm);
        let mut s = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if s == [0; 4] {
            // The all-zero state is the one xoshiro cannot leave; SplitMix64 never yields two
            // zero outputs in a row, but guard it all the same.
            s[0] = 1;
        }
        Rng { s }
    }

    /// A generator in the given raw state (for reproducing reference streams); the all-zero
    /// state, which xoshiro cannot leave, is replaced by `[1, 0, 0, 0]`.
    pub fn from_state(state: [u32; 4]) -> Self {
        if state == [0; 4] {
            Rng { s: [1, 0, 0, 0] }
        } else {
            Rng { s: state }
        }
    }

    /// Seeds a generator for one of several independent streams of the same seed (for example
    /// one per epoch or per round): `stream` is mixed into the seed through SplitMix64.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let mut sm = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng::new(splitmix64(&mut sm))
    }

    /// The generator for one purpose (a round, the step order, ...) in one epoch of a seed:
    /// stream `epoch * 2^20 + purpose` of [`Rng::for_stream`].
    pub fn for_epoch(seed: u64, epoch: u64, purpose: u64) -> Self {
        Rng::for_stream(seed, epoch.wrapping_mul(1 << 20).wrapping_add(purpose))
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// A uniform integer in `0..bound` (`bound >= 1`), by masking and rejection: exact, unbiased,
    /// and expressible in 32-bit JavaScript arithmetic.
    pub fn below(&mut self, bound: u32) -> u32 {
        assert!(bound > 0, "Rng::below needs a positive bound");
        let mask = mask_covering(bound - 1);
        loop {
            let r = self.next_u32() & mask;
            if r < bound {
                return r;
            }
        }
    }

    /// Makes `draws` draws of [`Rng::below`]`(bound)` (`1 <= bound <= counts.len()`) and adds
    /// one to `counts[x]` for each draw `x`: the same draws as a loop of `below`, without a
    /// branch on each (a rejected value adds zero to `counts[bound - 1]` and is drawn again),
    /// which is what costs when the outcome is a coin toss (up to half the values are
    /// rejected).
    pub fn count_below(&mut self, bound: u32, draws: usize, counts: &mut [u32]) {
        assert!(
            bound > 0 && bound as usize <= counts.len(),
            "Rng::count_below needs a positive bound within the counts"
        );
        let mask = mask_covering(bound - 1);
        let mut left = draws;
        while left > 0 {
            let x = self.next_u32() & mask;
            let ok = x < bound;
            counts[x.min(bound - 1) as usize] += ok as u32;
            left -= ok as usize;
        }
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        let hi = (self.next_u32() >> 5) as f64; // 27 bits
        let lo = (self.next_u32() >> 6) as f64; // 26 bits
        (hi * 67_108_864.0 + lo) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_bounds_and_covers_them() {
        let mut rng = Rng::new(7);
        for bound in [1u32, 2, 3, 7, 8, 9, 1000, u32::MAX] {
            for _ in 0..200 {
                assert!(rng.below(bound) < bound);
            }
        }
        let mut seen = [false; 7];
        for _ in 0..500 {
            seen[rng.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 6];
        let draws = 60_000;
        for _ in 0..draws {
            counts[rng.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "counts {counts:?}");
        }
    }

    #[test]
    fn count_below_counts_the_draws_of_below() {
        for (seed, bound) in [1u32, 2, 3, 19, 32, 33, 1000].into_iter().enumerate() {
            for draws in [0usize, 1, 5, 10_000] {
                let mut want = vec![0u32; bound as usize + 1];
                let mut want_rng = Rng::new(seed as u64);
                for _ in 0..draws {
                    want[want_rng.below(bound) as usize] += 1;
                }
                let mut got = vec![0u32; bound as usize + 1];
                let mut got_rng = Rng::new(seed as u64);
                got_rng.count_below(bound, draws, &mut got);
                assert_eq!(got, want, "bound {bound}, {draws} draws");
                assert_eq!(got_rng, want_rng, "bound {bound}, {draws} draws");
            }
        }
    }

    #[test]
    fn floats_are_in_the_unit_interval() {
        let mut rng = Rng::new(3);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn streams_differ_from_each_other_and_from_the_plain_seed() {
        let a: Vec<u32> = (0..4)
            .map({
                let mut r = Rng::new(5);
                move |_| r.next_u32()
            })
            .collect();
        let b: Vec<u32> = (0..4)
            .map({
                let mut r = Rng::for_stream(5, 1);
                move |_| r.next_u32()
            })
            .collect();
        let c: Vec<u32> = (0..4)
            .map({
                let mut r = Rng::for_stream(5, 2);
                move |_| r.next_u32()
            })
            .collect();
        assert_ne!(a, b);
        assert_ne!(b, c);
    }
}
