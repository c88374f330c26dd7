//! The mean and largest micro-batch loads of a plan, as the cost model takes them: image tiles,
//! LLM tokens and the sum of squared sample lengths (attention). A padded micro-batch (random,
//! length-grouped) counts its padding: every sample as long as the longest.
//!
//! One pass over the plan's samples. The sums run in `f64`, micro-batch by micro-batch in plan
//! order, exactly as the TypeScript twin (`src/data/load.ts`) adds them, so both backends give
//! the same figures bit for bit.

use super::samples::Samples;
use crate::error::Error;

/// Mean loads over a plan's micro-batches, and the componentwise largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanLoads {
    /// Mean image tiles per micro-batch.
    pub mean_tiles: f64,
    /// Mean LLM tokens per micro-batch (padding included for padded plans).
    pub mean_tokens: f64,
    /// Mean sum of squared sample lengths per micro-batch.
    pub mean_sum_sq_len: f64,
    /// Most tiles of any micro-batch.
    pub most_tiles: f64,
    /// Most tokens of any micro-batch (padding included for padded plans).
    pub most_tokens: f64,
}

/// The loads of the plan whose micro-batch `k` is `plan_samples[offsets[k] .. offsets[k + 1]]`
/// (`packed`: packed sequences; else padded batches). The means divide by the micro-batch count,
/// or by 1 for a plan without micro-batches.
///
/// Errors: offsets that do not start at 0, decrease, or do not end at `plan_samples.len()`; a
/// sample index outside `samples`.
pub fn plan_loads(
    packed: bool,
    plan_samples: &[u32],
    offsets: &[u32],
    samples: &Samples,
) -> Result<PlanLoads, Error> {
    if offsets.first() != Some(&0)
        || offsets.windows(2).any(|w| w[0] > w[1])
        || *offsets.last().unwrap_or(&0) as usize != plan_samples.len()
    {
        return Err(Error::out_of_range(
            "plan",
            "microBatchOffsets must start at 0, never decrease, and end at samples.length",
        ));
    }
    if let Some(&bad) = plan_samples
        .iter()
        .find(|&&i| i as usize >= samples.text.len())
    {
        return Err(Error::out_of_range(
            "plan",
            format!(
                "refers to sample {bad}, but there are only {} samples",
                samples.text.len()
            ),
        ));
    }
    let mut sums = LoadSums::default();
    for w in offsets.windows(2) {
        sums.add(packed, &plan_samples[w[0] as usize..w[1] as usize], samples);
    }
    Ok(sums.finish(offsets.len().saturating_sub(1)))
}

/// Running sums of micro-batch loads, added micro-batch by micro-batch in plan order (what
/// [`plan_loads`] does; [`crate::data::metrics::batch_metrics`] keeps one per thread in its own
/// pass over the plan).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSums {
    pub tiles: f64,
    pub tokens: f64,
    pub sum_sq_len: f64,
    pub most_tiles: f64,
    pub most_tokens: f64,
}

/// 2^53: below it every sum of integers in `f64` is exact, whatever the order of the additions.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl LoadSums {
    /// Adds the micro-batch `mb` (sample indices, all in range).
    #[inline]
    pub fn add(&mut self, packed: bool, mb: &[u32], samples: &Samples) {
        let (mut tiles, mut tokens, mut sq, mut tmax) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for &i in mb {
            let t = samples.text[i as usize] as f64;
            tiles += samples.vision[i as usize] as f64;
            tokens += t;
            sq += t * t;
            if t > tmax {
                tmax = t;
            }
        }
        self.push(packed, [tiles, tokens, sq, tmax], mb.len());
    }

    /// Adds one micro-batch of `count` samples from its own sums, `[tiles, tokens, sum of
    /// squared lengths, longest]`, each added in `f64` sample by sample in micro-batch order (as
    /// [`LoadSums::add`] does; a pass that reads the samples anyway sums them itself).
    #[inline]
    pub fn push(&mut self, packed: bool, [tiles, tokens, sq, tmax]: [f64; 4], count: usize) {
        let count = count as f64;
        let mb_tokens = if packed { tokens } else { tmax * count };
        self.tiles += tiles;
        self.tokens += mb_tokens;
        self.sum_sq_len += if packed { sq } else { tmax * tmax * count };
        self.most_tiles = self.most_tiles.max(tiles);
        self.most_tokens = self.most_tokens.max(mb_tokens);
    }

    /// The sums of consecutive runs of micro-batches, `self` then `later`, when they equal the
    /// sums of one pass over both bit for bit: always when every total stays below 2^53 (each
    /// partial sum is then an exact integer); `None` otherwise (the caller adds in one pass).
    pub fn then(&self, later: &LoadSums) -> Option<LoadSums> {
        let joined = LoadSums {
            tiles: self.tiles + later.tiles,
            tokens: self.tokens + later.tokens,
            sum_sq_len: self.sum_sq_len + later.sum_sq_len,
            most_tiles: self.most_tiles.max(later.most_tiles),
            most_tokens: self.most_tokens.max(later.most_tokens),
        };
        (joined.tiles < EXACT && joined.tokens < EXACT && joined.sum_sq_len < EXACT)
            .then_some(joined)
    }

    /// The loads of `micro_batches` micro-batches with these sums (means over 1 for none).
    pub fn finish(&self, micro_batches: usize) -> PlanLoads {
        let n = micro_batches.max(1) as f64;
        PlanLoads {
            mean_tiles: self.tiles / n,
            mean_tokens: self.tokens / n,
            mean_sum_sq_len: self.sum_sq_len / n,
            most_tiles: self.most_tiles,
            most_tokens: self.most_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_padded_loads() {
        let v = [1, 2, 3, 4];
        let t = [10, 20, 30, 40];
        let s = Samples::new(&v, &t).unwrap();
        let packed = plan_loads(true, &[0, 3, 1, 2], &[0, 2, 4], &s).unwrap();
        assert_eq!(packed.mean_tiles, 5.0);
        assert_eq!(packed.mean_tokens, 50.0);
        assert_eq!(
            packed.mean_sum_sq_len,
            (100.0 + 1600.0 + 400.0 + 900.0) / 2.0
        );
        assert_eq!((packed.most_tiles, packed.most_tokens), (5.0, 50.0));
        // Padded: (40 x 2) and (30 x 2) tokens; 1600 x 2 and 900 x 2 squared lengths.
        let padded = plan_loads(false, &[0, 3, 1, 2], &[0, 2, 4], &s).unwrap();
        assert_eq!(padded.mean_tokens, 70.0);
        assert_eq!(padded.mean_sum_sq_len, 2500.0);
        assert_eq!(padded.most_tokens, 80.0);
        assert_eq!(padded.most_tiles, 5.0);
    }

    #[test]
    fn an_empty_plan_has_zero_loads() {
        let s = Samples::new(&[1], &[5]).unwrap();
        let l = plan_loads(true, &[], &[0], &s).unwrap();
        assert_eq!(l.mean_tokens, 0.0);
        assert_eq!(l.most_tiles, 0.0);
    }

    #[test]
    fn bad_plans_are_errors_not_panics() {
        let s = Samples::new(&[1, 1], &[5, 6]).unwrap();
        for (samples, offsets) in [
            (&[0u32, 1][..], &[][..]),
            (&[0, 1], &[1, 2]),
            (&[0, 1], &[0, 2, 1]),
            (&[0, 1], &[0, 3]),
            (&[0, 2], &[0, 2]),
        ] {
            let e = plan_loads(true, samples, offsets, &s).unwrap_err();
            assert_eq!(
                e.code(),
                "ERR_OMNIBAL_OUT_OF_RANGE",
                "{samples:?} {offsets:?}"
            );
        }
    }
}
