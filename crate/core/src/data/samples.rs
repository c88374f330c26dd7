//! Samples as a struct of arrays, their checks, and the caps of a micro-batch.
//!
//! `vision[i]` is sample `i`'s vision load in whatever unit the caps use (image tiles, or vision
//! tokens); `text[i]` is its LLM sequence length in tokens, image tokens included.

use crate::error::Error;

/// Borrowed samples: equal-length arrays of vision and text loads.
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a> {
    pub vision: &'a [u32],
    pub text: &'a [u32],
}

/// Why a sample is not in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Its vision load exceeds the micro-batch's vision cap.
    VisionOverCap = 1,
    /// Its text length exceeds the micro-batch's text cap.
    TextOverCap = 2,
    /// It was in the tail that could not fill a whole step (`tail: drop`).
    Tail = 3,
    /// It was in the tail that could not fill a whole step, carried into the next epoch's plan
    /// (`tail: carry`): not lost, the caller passes it as the next epoch's `carry`.
    Carried = 4,
}

impl DropReason {
    /// The reason's name, as plans and the CLI print it.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::VisionOverCap => "vision-over-cap",
            DropReason::TextOverCap => "text-over-cap",
            DropReason::Tail => "tail",
            DropReason::Carried => "carried",
        }
    }
}

/// Samples that were left out of a plan, with the reason, by index.
pub type Dropped = Vec<(u32, DropReason)>;

/// Caps of one micro-batch (one packed sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_vision: u32,
    pub max_text: u32,
}

impl Caps {
    /// Why a sample of vision `v` and text `t` is over the caps (vision checked first), if it is.
    #[inline]
    pub fn over(&self, v: u32, t: u32) -> Option<DropReason> {
        if v > self.max_vision {
            Some(DropReason::VisionOverCap)
        } else if t > self.max_text {
            Some(DropReason::TextOverCap)
        } else {
            None
        }
    }

    /// Whether a sample of vision `v` and text `t` fits the caps.
    #[inline]
    pub fn fits(&self, v: u32, t: u32) -> bool {
        v <= self.max_vision && t <= self.max_text
    }
}

impl<'a> Samples<'a> {
    /// Checks the arrays: same length, not empty, every sample with at least one text token.
    pub fn new(vision: &'a [u32], text: &'a [u32]) -> Result<Self, Error> {
        if vision.len() != text.len() {
            return Err(Error::out_of_range(
                "vision",
                format!(
                    "and text must have the same length, got {} and {}",
                    vision.len(),
                    text.len()
                ),
            ));
        }
        if text.is_empty() {
            return Err(Error::EmptyInput);
        }
        if vision.len() > u32::MAX as usize {
            return Err(Error::out_of_range(
                "vision",
                "must hold fewer than 2^32 samples",
            ));
        }
        if let Some(index) = text.iter().position(|&t| t == 0) {
            return Err(Error::InvalidSample {
                index,
                message: "has 0 text tokens; every sample needs at least one".to_owned(),
            });
        }
        Ok(Samples { vision, text })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there are no samples (never true for checked samples).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Mean vision and text load, as `f64` (summed in index order).
    pub fn means(&self) -> (f64, f64) {
        let n = self.len() as f64;
        let v: u64 = self.vision.iter().map(|&x| x as u64).sum();
        let t: u64 = self.text.iter().map(|&x| x as u64).sum();
        (v as f64 / n, t as f64 / n)
    }

    /// Splits indices into those that fit `caps` (in index order) and those that do not, with
    /// the reason (vision checked first). Errors when nothing fits.
    pub fn split_by_caps(&self, caps: Caps) -> Result<(Vec<u32>, Dropped), Error> {
        let mut fit = Vec::with_capacity(self.len());
        let mut dropped = Vec::new();
        for i in 0..self.len() {
            match caps.over(self.vision[i], self.text[i]) {
                Some(reason) => dropped.push((i as u32, reason)),
                None => fit.push(i as u32),
            }
        }
        if fit.is_empty() {
            return Err(self.none_fits(caps));
        }
        Ok((fit, dropped))
    }

    /// The error when no sample fits `caps` ([`Error::CapTooSmall`], with the smallest loads).
    pub fn none_fits(&self, caps: Caps) -> Error {
        let min_v = self.vision.iter().min().copied().unwrap_or(0);
        let min_t = self.text.iter().min().copied().unwrap_or(0);
        Error::CapTooSmall {
            message: format!(
                "no sample fits the caps (max vision {}, max text {}); the smallest sample needs vision {} and text {}",
                caps.max_vision, caps.max_text, min_v, min_t
            ),
        }
    }
}

/// Rounds a non-negative float to the nearest integer, halves up, the same way the TypeScript
/// twin does (`Math.floor(x + 0.5)`).
pub fn round_half_up(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// Caps for a wanted mean number of samples per micro-batch `b`: the vision cap is `b` times
/// the mean vision load, rounded, plus one unit (balanced packs close within one unit of
/// it), at least the largest sample; the text cap leaves 25% headroom over `b` times the mean
/// text length, rounded up to a multiple of 128 (at least the longest sample), so that vision,
/// not text, closes most packs.
pub fn caps_for_samples_per_pack(samples: &Samples, b: f64) -> Caps {
    let (mean_v, mean_t) = samples.means();
    let max_v = samples.vision.iter().copied().max().unwrap_or(0);
    let max_t = samples.text.iter().copied().max().unwrap_or(1);
    let v = if mean_v > 0.0 {
        round_half_up(b * mean_v) + 1.0
    } else {
        0.0
    };
    let v = v.min(u32::MAX as f64) as u32;
    let t = ((b * mean_t * 1.25) / 128.0).ceil() * 128.0;
    Caps {
        max_vision: v.max(max_v),
        max_text: (t.min(u32::MAX as f64) as u32).max(max_t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_lengths_emptiness_and_zero_text() {
        assert_eq!(
            Samples::new(&[1], &[1, 2]).unwrap_err().code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(Samples::new(&[], &[]).unwrap_err(), Error::EmptyInput);
        let err = Samples::new(&[1, 2], &[5, 0]).unwrap_err();
        assert_eq!(err.code(), "ERR_OMNIBAL_INVALID_SAMPLE");
        assert_eq!(
            err.to_string(),
            "sample 1 has 0 text tokens; every sample needs at least one"
        );
    }

    #[test]
    fn split_reports_every_sample_once() {
        let s = Samples::new(&[1, 9, 2, 1], &[10, 10, 99, 5]).unwrap();
        let (fit, dropped) = s
            .split_by_caps(Caps {
                max_vision: 4,
                max_text: 50,
            })
            .unwrap();
        assert_eq!(fit, vec![0, 3]);
        assert_eq!(
            dropped,
            vec![(1, DropReason::VisionOverCap), (2, DropReason::TextOverCap)]
        );
        let err = s
            .split_by_caps(Caps {
                max_vision: 0,
                max_text: 1,
            })
            .unwrap_err();
        assert_eq!(err.code(), "ERR_OMNIBAL_CAP_TOO_SMALL");
    }

    #[test]
    fn caps_follow_the_wanted_samples_per_pack() {
        let s = Samples::new(&[2, 4, 3, 3], &[500, 700, 600, 600]).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.0);
        assert_eq!(caps.max_vision, 13); // 4 x 3 = 12, plus one unit
        assert_eq!(caps.max_text, 3072); // 4 * 600 * 1.25 = 3000, up to 3072
    }
}
