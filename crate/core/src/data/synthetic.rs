//! Synthetic samples drawn (seeded) to match the statistics of the real VLM SFT length data
//! (AI2D, ChartQA, SynthDoG-en from the InternVL-1.2M mix): a mixture of the three sets in their
//! proportions; per set, the tile counts' frequencies, and the text tokens beyond the image
//! tokens (256 per tile) drawn by linear interpolation between the measured quantiles (0, 10, 25,
//! 50, 75, 90, 99, 100%). Only these summary figures live here; the data itself is never copied.
//!
//! Native twin of `src/data/synthetic.ts`: the same draws from the same generator and the same
//! floating-point operations in the same order, so both give the same samples bit for bit.

use crate::error::Error;
use crate::rng::Rng;

/// One source set: its weight in the mix, its `(tiles, frequency)` pairs, and the quantiles of
/// its text tokens beyond the image tokens.
struct Profile {
    weight: f64,
    tiles: &'static [(u32, f64)],
    residual_quantiles: [f64; 8],
}

/// Measured on the shared files (samples, tile counts, quantiles of tokens - 256 x tiles).
const PROFILES: [Profile; 3] = [
    Profile {
        weight: 12413.0,
        tiles: &[(1, 5793.0), (3, 3710.0), (4, 603.0), (5, 2307.0)],
        residual_quantiles: [37.0, 43.0, 47.0, 52.0, 58.0, 67.0, 99.0, 347.0],
    },
    Profile {
        weight: 18317.0,
        tiles: &[(1, 579.0), (3, 1096.0), (4, 14.0), (5, 16628.0)],
        residual_quantiles: [33.0, 40.0, 43.0, 66.0, 119.0, 170.0, 321.0, 552.0],
    },
    Profile {
        weight: 29765.0,
        tiles: &[(3, 17276.0), (5, 12489.0)],
        residual_quantiles: [36.0, 68.0, 84.0, 110.0, 146.0, 187.0, 278.0, 503.0],
    },
];

const QUANTILE_POINTS: [f64; 8] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

/// Tokens per image tile in the LLM (InternVL: 1,024 patches pixel-shuffled to 256 tokens).
pub const TOKENS_PER_TILE: u32 = 256;

/// Synthetic samples: tiles and text tokens per sample, and the set each imitates (0 AI2D,
/// 1 ChartQA, 2 SynthDoG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticSamples {
    pub vision: Vec<u32>,
    pub text: Vec<u32>,
    pub group: Vec<u32>,
}

fn pick_weighted<T: Copy>(rng: &mut Rng, items: &[(T, f64)], total: f64) -> T {
    let mut r = rng.next_f64() * total;
    for &(item, weight) in items {
        if r < weight {
            return item;
        }
        r -= weight;
    }
    items[items.len() - 1].0
}

fn interpolate(quantiles: &[f64; 8], u: f64) -> f64 {
    for k in 1..QUANTILE_POINTS.len() {
        if u <= QUANTILE_POINTS[k] {
            let f = (u - QUANTILE_POINTS[k - 1]) / (QUANTILE_POINTS[k] - QUANTILE_POINTS[k - 1]);
            // Every value is positive: rounding half away from zero is JavaScript's Math.round.
            return (quantiles[k - 1] + f * (quantiles[k] - quantiles[k - 1])).round();
        }
    }
    quantiles[quantiles.len() - 1]
}

fn vec_for(n: usize) -> Result<Vec<u32>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::out_of_range("n", format!("{n} samples do not fit in memory")))?;
    Ok(v)
}

/// `n` synthetic samples with the real data's statistics, a pure function of `n` and `seed`.
/// `n` must be at least 1; memory that cannot be had is an error, not an abort.
pub fn synthetic_samples(n: usize, seed: u64) -> Result<SyntheticSamples, Error> {
    let mut rng = Rng::new(seed);
    let (mut vision, mut text, mut group) = (vec_for(n)?, vec_for(n)?, vec_for(n)?);
    let sets: Vec<(usize, f64)> = PROFILES
        .iter()
        .enumerate()
        .map(|(k, p)| (k, p.weight))
        .collect();
    let set_total = PROFILES.iter().fold(0.0, |s, p| s + p.weight);
    let tile_totals: Vec<f64> = PROFILES
        .iter()
        .map(|p| p.tiles.iter().fold(0.0, |s, &(_, w)| s + w))
        .collect();
    for _ in 0..n {
        let k = pick_weighted(&mut rng, &sets, set_total);
        let p = &PROFILES[k];
        let tiles = pick_weighted(&mut rng, p.tiles, tile_totals[k]);
        let residual = interpolate(&p.residual_quantiles, rng.next_f64());
        vision.push(tiles);
        text.push(tiles * TOKENS_PER_TILE + residual as u32);
        group.push(k as u32);
    }
    Ok(SyntheticSamples {
        vision,
        text,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_profiles_and_the_seed() {
        let a = synthetic_samples(20_000, 3).unwrap();
        assert_eq!(a, synthetic_samples(20_000, 3).unwrap());
        assert_ne!(a, synthetic_samples(20_000, 4).unwrap());
        for i in 0..a.text.len() {
            let p = &PROFILES[a.group[i] as usize];
            assert!(p.tiles.iter().any(|&(t, _)| t == a.vision[i]));
            let residual = (a.text[i] - a.vision[i] * TOKENS_PER_TILE) as f64;
            assert!(residual >= p.residual_quantiles[0] && residual <= p.residual_quantiles[7]);
        }
        // SynthDoG is the largest set: about 29765 / 60495 of the samples.
        let share = a.group.iter().filter(|&&g| g == 2).count() as f64 / 20_000.0;
        assert!((share - 29765.0 / 60495.0).abs() < 0.02, "{share}");
    }
}
