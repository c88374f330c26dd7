//! The reference search for ISF's caps, for a wanted mean number of samples per pack `B`.
//!
//! Start at text cap 4096 and vision cap `4096 / a`, where `a` estimates tokens per vision unit:
//! the mean text length rounded up to a multiple of 256, divided (integer) by the mean vision
//! load (at least 1), plus one, rounded down to a multiple of 16 (at least 16). Step the vision
//! cap by 1 and the text cap by `a` together, up while packs hold fewer than `B` samples on
//! average, down while they hold more than `B + 1` (both ways when the start is inside). At each
//! step run ISF (text threshold = cap - 128) and record the candidate; stop a direction once it
//! has left the window `[B, B + 1]` after being in it, or ran out of steps. Choose, among the
//! candidates in the window that drop no sample, the one with the smallest pad + vision dist +
//! text dist (ISF packs handed out at random to `dp` ranks); if none is in the window, the one
//! closest to it.

use super::baselines::isf_batches;
use super::cost::TextCost;
use super::isf::IsfParams;
use super::metrics::batch_metrics;
use super::plan::Tail;
use super::samples::{Caps, Samples};
use crate::error::{number_at_least, Error};
use crate::progress::Progress;

/// Parameters of [`search_isf_arguments`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsfSearchParams {
    pub samples_per_pack: f64,
    pub dp: u32,
    pub accum: u32,
    pub iterations: u32,
    /// Most steps in each direction (default 32).
    pub max_steps: u32,
    pub seed: u64,
}

/// One evaluated pair of caps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsfCandidate {
    pub caps: Caps,
    pub samples_per_pack: f64,
    pub pad_ratio: f64,
    pub vision_dist: f64,
    pub text_dist: f64,
    /// pad + vision dist + text dist.
    pub score: f64,
    pub dropped: usize,
    pub in_window: bool,
}

/// The search's choice and every candidate, in the order evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct IsfSearch {
    pub chosen: usize,
    pub candidates: Vec<IsfCandidate>,
    /// Text-cap step (tokens per vision unit).
    pub text_step: u32,
}

/// The starting caps and the text step `a`.
pub fn search_start(samples: &Samples) -> (Caps, u32) {
    let (mean_v, mean_t) = samples.means();
    let mean_t256 = (mean_t / 256.0).ceil() * 256.0;
    let a =
        ((((mean_t256 / mean_v.max(1.0)).floor() + 1.0) / 16.0).floor() * 16.0).max(16.0) as u32;
    (
        Caps {
            max_vision: (4096 / a).max(1),
            max_text: 4096,
        },
        a,
    )
}

fn evaluate(samples: &Samples, caps: Caps, p: &IsfSearchParams) -> Result<IsfCandidate, Error> {
    let mut isf = IsfParams::reference(caps, p.seed, 0);
    isf.iterations = p.iterations;
    let plan = isf_batches(samples, &isf, p.dp, p.accum, Tail::KeepPartial, &mut ())?;
    let m = batch_metrics(&plan, samples, &TextCost::default())?;
    let b = p.samples_per_pack;
    Ok(IsfCandidate {
        caps,
        samples_per_pack: m.samples_per_pack,
        pad_ratio: m.pad_ratio,
        vision_dist: m.vision_dist,
        text_dist: m.text_dist,
        score: m.pad_ratio + m.vision_dist + m.text_dist,
        dropped: plan.dropped.len(),
        in_window: m.samples_per_pack >= b && m.samples_per_pack <= b + 1.0,
    })
}

/// Runs the search.
pub fn search_isf_arguments(
    samples: &Samples,
    p: &IsfSearchParams,
    progress: &mut dyn Progress,
) -> Result<IsfSearch, Error> {
    let b = p.samples_per_pack;
    number_at_least("samplesPerPack", b, 1.0)?;
    let (start, a) = search_start(samples);
    let caps_at = |k: i64| -> Option<Caps> {
        let v = start.max_vision as i64 + k;
        let t = start.max_text as i64 + k * a as i64;
        (v >= 1 && t > 128 && v <= u32::MAX as i64 && t <= u32::MAX as i64).then_some(Caps {
            max_vision: v as u32,
            max_text: t as u32,
        })
    };
    let mut candidates = Vec::new();
    let total = 2 * p.max_steps as u64 + 1;
    // A start whose caps fit no sample at all is skipped, not fatal: the walk moves on.
    let first = evaluate(samples, start, p).ok();
    let dirs: &[i64] = match first {
        Some(c) if c.samples_per_pack < b => &[1],
        Some(c) if c.samples_per_pack > b + 1.0 => &[-1],
        Some(_) => &[1, -1],
        None => &[1],
    };
    candidates.extend(first);
    for &dir in dirs {
        let mut entered = first.is_some_and(|c| c.in_window);
        for step in 1..=p.max_steps as i64 {
            let Some(caps) = caps_at(dir * step) else {
                break;
            };
            let Ok(c) = evaluate(samples, caps, p) else {
                continue;
            };
            candidates.push(c);
            progress.report(candidates.len() as u64, total);
            if c.in_window {
                entered = true;
            } else if entered
                || (dir > 0 && c.samples_per_pack > b + 1.0)
                || (dir < 0 && c.samples_per_pack < b)
            {
                break;
            }
        }
    }
    if candidates.is_empty() {
        return Err(Error::CapTooSmall {
            message: "no caps on the search path fit any sample".into(),
        });
    }
    let window_gap = |c: &IsfCandidate| {
        if c.in_window {
            0.0
        } else if c.samples_per_pack < b {
            b - c.samples_per_pack
        } else {
            c.samples_per_pack - b - 1.0
        }
    };
    let mut chosen = 0;
    for (k, c) in candidates.iter().enumerate() {
        let best = &candidates[chosen];
        let key = |c: &IsfCandidate| (!c.in_window, c.dropped > 0, window_gap(c), c.score);
        let (x, y) = (key(c), key(best));
        if (x.0, x.1) < (y.0, y.1)
            || ((x.0, x.1) == (y.0, y.1) && (x.2 < y.2 || (x.2 == y.2 && x.3 < y.3)))
        {
            chosen = k;
        }
    }
    progress.report(total, total);
    Ok(IsfSearch {
        chosen,
        candidates,
        text_step: a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn start_follows_the_reference_formula() {
        // mean text 1000 -> 1024; mean vision 4 -> 1024 / 4 = 256, + 1 = 257 -> 256 -> Qv 16.
        let s = Samples::new(&[4, 4], &[900, 1100]).unwrap();
        let (caps, a) = search_start(&s);
        assert_eq!(a, 256);
        assert_eq!(
            caps,
            Caps {
                max_vision: 16,
                max_text: 4096
            }
        );
    }

    #[test]
    fn finds_caps_in_the_window() {
        let mut rng = Rng::new(5);
        let v: Vec<u32> = (0..6000).map(|_| 1 + rng.below(5)).collect();
        let t: Vec<u32> = v.iter().map(|&x| 100 + 256 * x + rng.below(300)).collect();
        let s = Samples::new(&v, &t).unwrap();
        let p = IsfSearchParams {
            samples_per_pack: 4.5,
            dp: 8,
            accum: 1,
            iterations: 20,
            max_steps: 32,
            seed: 1,
        };
        let out = search_isf_arguments(&s, &p, &mut ()).unwrap();
        let c = out.candidates[out.chosen];
        assert!(c.in_window, "{:?}", out.candidates);
        assert!(c.samples_per_pack >= 4.5 && c.samples_per_pack <= 5.5);
        assert_eq!(c.dropped, 0);
        for other in out
            .candidates
            .iter()
            .filter(|o| o.in_window && o.dropped == 0)
        {
            assert!(c.score <= other.score);
        }
    }
}
