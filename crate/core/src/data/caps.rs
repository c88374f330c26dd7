//! Caps from a wanted mean number of samples per micro-batch, chosen from the target alone.
//!
//! Outliers must not inflate every pack: a few 40-tile or 131k-token samples would otherwise
//! force the caps up to their size and every pack would hold far more samples than asked. So
//! the caps follow the typical sample: the vision cap is `b` times the mean vision load, rounded,
//! plus one unit (balanced packs close within one unit of it); the text cap leaves 25% headroom
//! over `b` times the mean text length, rounded up to a multiple of 128, so that vision, not
//! text, closes most packs. The means are taken over the samples that fit the caps, refined a
//! few times (the caps of all samples, then of those that fit, ...) so that outliers do not pull
//! them up either. Samples over the caps are not lost: the balanced planner gives each its own
//! micro-batch (see `balance/`).

use super::samples::{round_half_up, Caps, Samples};

/// How many times the means are refined over the samples that fit.
pub const CAP_REFINEMENTS: u32 = 4;

fn caps_from_sums(b: f64, v: u64, t: u64, n: u64) -> Caps {
    let (mean_v, mean_t) = (v as f64 / n as f64, t as f64 / n as f64);
    let cap_v = if mean_v > 0.0 {
        round_half_up(b * mean_v) + 1.0
    } else {
        0.0
    };
    let cap_t = ((b * mean_t * 1.25) / 128.0).ceil() * 128.0;
    Caps {
        max_vision: cap_v.min(u32::MAX as f64) as u32,
        max_text: (cap_t.min(u32::MAX as f64) as u32).max(1),
    }
}

/// Caps for a wanted mean of `b` samples per micro-batch, from the typical sample (see the
/// module documentation). Sums are integers, so the result is exact and order-free.
pub fn caps_for_target(samples: &Samples, b: f64) -> Caps {
    let n = samples.len() as u64;
    let v: u64 = samples.vision.iter().map(|&x| x as u64).sum();
    let t: u64 = samples.text.iter().map(|&x| x as u64).sum();
    let mut caps = caps_from_sums(b, v, t, n);
    for _ in 0..CAP_REFINEMENTS {
        let (mut v, mut t, mut n) = (0u64, 0u64, 0u64);
        for (&sv, &st) in samples.vision.iter().zip(samples.text) {
            if sv <= caps.max_vision && st <= caps.max_text {
                v += sv as u64;
                t += st as u64;
                n += 1;
            }
        }
        if n == 0 {
            break;
        }
        let next = caps_from_sums(b, v, t, n);
        if next == caps {
            break;
        }
        caps = next;
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_target_on_ordinary_data() {
        let s = Samples::new(&[2, 4, 3, 3], &[500, 700, 600, 600]).unwrap();
        let caps = caps_for_target(&s, 4.0);
        assert_eq!(caps.max_vision, 13); // 4 x 3 = 12, plus one unit
        assert_eq!(caps.max_text, 3072); // 4 * 600 * 1.25 = 3000, up to 3072
    }

    #[test]
    fn outliers_do_not_raise_the_caps() {
        // 99 samples of 2 tiles / 500 tokens and one of 40 tiles / 131,000 tokens.
        let mut v = vec![2u32; 99];
        let mut t = vec![500u32; 99];
        v.push(40);
        t.push(131_000);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_target(&s, 4.0);
        assert_eq!(caps.max_vision, 9);
        assert_eq!(caps.max_text, 2560);
    }
}
