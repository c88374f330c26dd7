//! The load of a micro-batch, for balancing.
//!
//! Vision load is the vision units (tiles) it holds: a ViT's cost is linear in tiles, each tile
//! attended separately. Text load of one packed sequence is `a * tokens + b * sum(len_i^2)`:
//! linear layers scale with tokens, attention with each sample's own length squared. Both parts
//! add up over samples, so a sample's text cost is `a * t + b * t^2` and a pack's is the sum.
//! `a = 1, b = 0` (the default) balances plain token counts.
//!
//! Balancing works on integer weights: each sample's cost scaled so the largest is 2^20 and
//! rounded. Integer sums are exact in any order, which keeps the Rust core and the TypeScript
//! twin bit-identical.

use crate::error::{number_at_least, Error};

/// Coefficients of the text cost `a * tokens + b * sum(len_i^2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextCost {
    pub a: f64,
    pub b: f64,
}

impl Default for TextCost {
    fn default() -> Self {
        TextCost { a: 1.0, b: 0.0 }
    }
}

/// Scale of the integer weights: the costliest sample weighs this much.
pub const WEIGHT_SCALE: f64 = 1_048_576.0;

/// Largest `a` or `b`: a micro-batch's cost (at most 2^64 squared tokens) stays finite.
const MAX_COEFFICIENT: f64 = 1e100;

impl TextCost {
    /// Checks the coefficients: finite, non-negative, not both zero.
    pub fn new(a: f64, b: f64) -> Result<Self, Error> {
        number_at_least("costA", a, 0.0)?;
        number_at_least("costB", b, 0.0)?;
        if a == 0.0 && b == 0.0 {
            return Err(Error::out_of_range("costA", "and costB cannot both be 0"));
        }
        // Only ratios of costs matter; larger coefficients would overflow a step's cost to infinity.
        for (name, v) in [("costA", a), ("costB", b)] {
            if v > MAX_COEFFICIENT {
                return Err(Error::out_of_range(
                    name,
                    "must be at most 1e100 (only ratios of costs matter)",
                ));
            }
        }
        Ok(TextCost { a, b })
    }

    /// The text cost of one sample of `t` tokens.
    pub fn sample(&self, t: u32) -> f64 {
        let t = t as f64;
        self.a * t + self.b * t * t
    }

    /// Integer weights of `text`, proportional to [`TextCost::sample`], the largest
    /// [`WEIGHT_SCALE`] (rounded half up; at least 1 for a non-empty sample).
    pub fn weights(&self, text: &[u32]) -> Vec<u64> {
        let max = self.max_sample(text);
        text.iter().map(|&t| self.weight(t, max)).collect()
    }

    /// The largest [`TextCost::sample`] over `text` (0 for none), the scale of [`TextCost::weight`]:
    /// the cost of the longest text, as the coefficients are non-negative and rounding is
    /// monotone (`sample` never decreases as `t` grows, in floating point too).
    pub fn max_sample(&self, text: &[u32]) -> f64 {
        text.iter().max().map_or(0.0, |&t| self.sample(t).max(0.0))
    }

    /// The integer weight of one sample of `t` tokens, as [`TextCost::weights`] gives it for
    /// text whose [`TextCost::max_sample`] is `max`.
    pub fn weight(&self, t: u32, max: f64) -> u64 {
        if max <= 0.0 {
            return 1;
        }
        // Non-negative, so the cast (truncation) is the floor, without a call to `floor`.
        ((self.sample(t) * WEIGHT_SCALE / max + 0.5) as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_sample_cost_is_the_longest_texts() {
        let mut rng = crate::rng::Rng::new(4);
        let text: Vec<u32> = (0..5_000)
            .map(|_| rng.next_u32() >> rng.below(32))
            .collect();
        for (a, b) in [
            (1.0, 0.0),
            (0.0, 1.0),
            (1.0, 1.0 / 73_728.0),
            (3e-7, 1e100),
            (1e100, 0.5),
        ] {
            let c = TextCost::new(a, b).unwrap();
            for part in [&text[..0], &text[..1], &text[..]] {
                let folded = part.iter().map(|&t| c.sample(t)).fold(0.0_f64, f64::max);
                assert_eq!(
                    c.max_sample(part).to_bits(),
                    folded.to_bits(),
                    "a {a}, b {b}"
                );
            }
        }
    }

    #[test]
    fn weights_are_proportional_and_integer() {
        let c = TextCost::default();
        assert_eq!(
            c.weights(&[512, 1024, 256]),
            vec![524_288, 1_048_576, 262_144]
        );
        let q = TextCost::new(1.0, 1.0 / 1024.0).unwrap();
        // 1024: 1024 + 1024 = 2048 (max); 512: 512 + 256 = 768 -> 768/2048 of the scale.
        assert_eq!(q.weights(&[1024, 512]), vec![1_048_576, 393_216]);
    }

    #[test]
    fn bad_coefficients_are_errors() {
        assert!(TextCost::new(f64::NAN, 0.0).is_err());
        assert!(TextCost::new(-1.0, 0.0).is_err());
        assert!(TextCost::new(0.0, 0.0).is_err());
        assert!(TextCost::new(0.0, 1.0).is_ok());
    }
}
