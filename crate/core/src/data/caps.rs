//! Caps from a wanted mean number of samples per micro-batch, chosen from the target alone.
//!
//! Outliers must not inflate every pack: a few 40-tile or 131k-token samples would otherwise
//! force the caps up to their size and every pack would hold far more samples than asked. So
//! the caps follow the typical sample: the vision cap is `b` times the mean vision load, rounded,
//! plus one unit (balanced packs close within one unit of it), counted in units of the vision
//! values' greatest common divisor (1 for tiles whose counts share no factor, as soon as one
//! sample has 1 tile; 2 when every count is even; 256 for vision in tokens at 256 tokens a tile),
//! so that vision in tokens gets the cap of vision in tiles, and plans as good (a cap between
//! multiples of 256 left packs at many vision sums and steps grouped by dataset: share SD 3.0 of
//! i.i.d. steps' on the shared data at dp 8; now 1.17, as in tiles). A few values off the unit
//! (at most 1/1,000 of the nonzero ones: a 255, or an over-cap 10,241, among multiples of 256)
//! do not bring it down (see [`vision_unit`]); more do, to 1 at worst. The text cap leaves 25% headroom
//! over `b` times the mean text length, rounded up to a multiple of 128, so that vision, not
//! text, closes most packs. The means are taken over the samples that fit the caps, refined a
//! few times (the caps of all samples, then of those that fit, ...) so that outliers do not pull
//! them up either. Samples over the caps are not lost: the balanced planner gives each its own
//! micro-batch (see `balance/`).

use super::samples::{round_half_up, Caps, Samples};

/// How many times the means are refined over the samples that fit.
pub const CAP_REFINEMENTS: u32 = 4;

fn caps_from_sums(b: f64, v: u64, t: u64, n: u64, unit: u32) -> Caps {
    let (mean_v, mean_t) = (v as f64 / n as f64, t as f64 / n as f64);
    let unit = unit.max(1) as f64;
    let cap_v = if mean_v > 0.0 {
        (round_half_up(b * mean_v / unit) + 1.0) * unit
    } else {
        0.0
    };
    let cap_t = ((b * mean_t * 1.25) / 128.0).ceil() * 128.0;
    Caps {
        max_vision: cap_v.min(u32::MAX as f64) as u32,
        max_text: (cap_t.min(u32::MAX as f64) as u32).max(1),
    }
}

/// The vision unit: the greatest common divisor of the nonzero vision values (0 when every one is
/// 0), or, where a larger number divides all but at most 1/1,000 of them (a few stray values
/// among multiples of 256 tokens a tile: a 255 brings the common divisor to 1, or to 3 among
/// multiples of 576), the largest such number. Candidates are the divisors of the most common
/// value among up to [`VISION_UNIT_PROBES`] samples spread evenly over the list that are
/// multiples of the common divisor (the unit that divides 99.9% of the values divides that value
/// unless the probes hit a stray value most often); each is checked against every value,
/// stopping as soon as more than 1/1,000 of the samples fail: a few thousand remainders where
/// none passes (tiles, clean tokens), a pass over the samples for the one that does.
pub fn vision_unit(vision: &[u32]) -> u32 {
    let mut unit = 0u32;
    for &x in vision {
        if x != 0 && (unit == 0 || x % unit != 0) {
            unit = gcd(unit, x);
            if unit == 1 {
                break;
            }
        }
    }
    if unit == 0 {
        return 0;
    }
    let n = vision.len();
    let probes = n.min(VISION_UNIT_PROBES);
    let mut seen: Vec<u32> = (0..probes)
        .map(|j| vision[(j as u64 * n as u64 / probes as u64) as usize])
        .filter(|&x| x != 0)
        .collect();
    seen.sort_unstable();
    // The most common probed value, the least among equally common ones.
    let (mut mode, mut best, mut run) = (0u32, 0usize, 0usize);
    for (j, &x) in seen.iter().enumerate() {
        run = if j > 0 && seen[j - 1] == x {
            run + 1
        } else {
            1
        };
        if run > best {
            (mode, best) = (x, run);
        }
    }
    let mut divisors: Vec<u32> = Vec::new();
    let mut d = 1u32;
    while (d as u64) * (d as u64) <= mode as u64 {
        if mode % d == 0 {
            divisors.push(d);
            divisors.push(mode / d);
        }
        d += 1;
    }
    divisors.sort_unstable_by(|a, b| b.cmp(a));
    divisors.dedup();
    // Strays allowed, out of every sample (a bound on the nonzero ones).
    let allowed = n / 1000;
    // Larger than the common divisor and a multiple of it (a unit dividing 99.9% of the values,
    // times the one dividing all, still does).
    for &d in divisors.iter().filter(|&&d| d > unit && d % unit == 0) {
        let (mut off, mut nonzero) = (0usize, 0usize);
        for &x in vision {
            if x != 0 {
                nonzero += 1;
                if x % d != 0 {
                    off += 1;
                    if off > allowed {
                        break;
                    }
                }
            }
        }
        if off * 1000 <= nonzero {
            return d;
        }
    }
    unit
}

/// Samples [`vision_unit`] looks at for its candidate units.
pub const VISION_UNIT_PROBES: usize = 4096;

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Caps for a wanted mean of `b` samples per micro-batch, from the typical sample (see the
/// module documentation). Sums are integers, so the means are exact; the vision unit's candidates
/// come from probes spread over the list (see [`vision_unit`]).
pub fn caps_for_target(samples: &Samples, b: f64) -> Caps {
    let n = samples.len() as u64;
    let v: u64 = samples.vision.iter().map(|&x| x as u64).sum();
    let t: u64 = samples.text.iter().map(|&x| x as u64).sum();
    let unit = vision_unit(samples.vision);
    let mut caps = caps_from_sums(b, v, t, n, unit);
    for _ in 0..CAP_REFINEMENTS {
        let (mut v, mut t, mut n) = (0u64, 0u64, 0u64);
        for (&sv, &st) in samples.vision.iter().zip(samples.text) {
            if caps.fits(sv, st) {
                v += sv as u64;
                t += st as u64;
                n += 1;
            }
        }
        if n == 0 {
            break;
        }
        let next = caps_from_sums(b, v, t, n, unit);
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
        // Every vision value is even, so the unit is 2: 4 x 2 / 2 = 4 units, plus one (as samples
        // of one tile each get 4 + 1 tiles).
        assert_eq!(caps.max_vision, 10);
        assert_eq!(caps.max_text, 2560);
    }

    #[test]
    fn the_vision_cap_is_a_multiple_of_the_vision_unit() {
        assert_eq!(vision_unit(&[512, 0, 768, 256]), 256);
        assert_eq!(vision_unit(&[576, 1152]), 576);
        assert_eq!(vision_unit(&[2, 4, 3]), 1);
        assert_eq!(vision_unit(&[0, 0]), 0);
        assert_eq!(vision_unit(&[u32::MAX, u32::MAX]), u32::MAX);
        // A stray value in 1,000 keeps the unit; two in 1,000 bring it to the common divisor.
        let mut tokens: Vec<u32> = (0..1000u32).map(|i| 256 * (1 + i % 7)).collect();
        tokens[500] = 255;
        assert_eq!(vision_unit(&tokens), 256);
        tokens[900] = 10_241;
        assert_eq!(vision_unit(&tokens), 1);
        // Among multiples of 576 a 255 leaves a common divisor of 3, not 1: still 576.
        let mut images: Vec<u32> = (0..1000u32).map(|i| 576 * (1 + i % 5)).collect();
        images[10] = 255;
        assert_eq!(vision_unit(&images), 576);
        // Tiles of coprime counts: 1, whatever the most common count.
        let tiles: Vec<u32> = (0..5000u32)
            .map(|i| [2, 2, 2, 4, 3][i as usize % 5])
            .collect();
        assert_eq!(vision_unit(&tiles), 1);
        // The same samples with vision in tiles and in tokens (256 a tile): 4.5 x 3.2 = 14.4
        // tiles, 14 + 1 = 15, in tokens too (without the unit: 3,686 + 1 tokens, which no sum of
        // tiles reaches).
        let tiles = [2u32, 4, 3, 3, 5, 2, 3, 4, 1, 5];
        let text = [500u32, 700, 600, 600, 800, 400, 650, 700, 300, 900];
        let tokens: Vec<u32> = tiles.iter().map(|&x| x * 256).collect();
        let in_tiles = caps_for_target(&Samples::new(&tiles, &text).unwrap(), 4.5);
        let in_tokens = caps_for_target(&Samples::new(&tokens, &text).unwrap(), 4.5);
        assert_eq!(in_tiles.max_vision, 15);
        assert_eq!(in_tokens.max_vision, 15 * 256);
        assert_eq!(in_tokens.max_text, in_tiles.max_text);
    }
}
