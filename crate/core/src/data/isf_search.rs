//! The reference search for ISF's caps, for a wanted mean number of samples per pack `B`, with
//! the reference code's exact walk.
//!
//! Start: `mean_text` is the mean over samples of each text length rounded up to its own
//! multiple of 256 (`ceil(t_i / 256) * 256`, then the mean), `mean_vision` the plain mean of
//! the vision loads; the step `a = ((mean_text // max(mean_vision, 1) + 1) // 16) * 16` (at
//! least 16, where the reference would divide by zero); the caps start at text 4096 and vision
//! `4096 // a`.
//!
//! Walk: at each caps run ISF (text threshold = cap - 128) and hand its packs out at random to
//! `dp` ranks; keep the largest samples-per-pack seen so far; record the caps as a candidate when
//! their samples per pack lie in the window `[B, B + 1]`. Then, if the largest seen exceeds
//! `B + 1`, stop once any candidate is recorded, else step DOWN (vision - 1, text - `a`);
//! otherwise step UP (vision + 1, text + `a`). One evaluation outside the window never stops
//! the walk. Choose the recorded candidate with the smallest pad + vision dist + text dist.
//!
//! Where the reference would loop for ever, the walk ends after `max_steps` steps or at caps that
//! cannot exist (vision < 1 or text <= 128); then the evaluation closest to the window is chosen
//! and a warning says so. A warning also reports a choice that drops more than 1% of the samples
//! for being over a cap. Caps that fit no sample count as an evaluation below the window.

use super::baselines::isf_batches;
use super::cost::TextCost;
use super::isf::IsfParams;
use super::metrics::batch_metrics;
use super::plan::Tail;
use super::samples::{round_half_up, Caps, Samples};
use crate::error::{js_number, number_at_least, Error};
use crate::progress::{checkpoint, Cancellable, Progress};

/// Parameters of [`search_isf_arguments`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsfSearchParams {
    pub samples_per_pack: f64,
    pub dp: u32,
    pub accum: u32,
    pub iterations: u32,
    /// Most steps of the walk after the start (default 32).
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
    /// What went wrong: the walk left its window without a candidate, or the choice drops
    /// more than 1% of the samples over a cap.
    pub warnings: Vec<String>,
}

/// The starting caps and the text step `a` (see the module notes).
pub fn search_start(samples: &Samples) -> (Caps, u32) {
    let n = samples.len() as f64;
    let binned: u64 = samples
        .text
        .iter()
        .map(|&t| (t as u64).div_ceil(256) * 256)
        .sum();
    let mean_t256 = binned as f64 / n;
    let (mean_v, _) = samples.means();
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

fn evaluate(
    samples: &Samples,
    caps: Caps,
    p: &IsfSearchParams,
    cancel: &mut Cancellable,
) -> Result<IsfCandidate, Error> {
    let mut isf = IsfParams::reference(caps, p.seed, 0);
    isf.iterations = p.iterations;
    let plan = isf_batches(samples, &isf, p.dp, p.accum, Tail::KeepPartial, cancel)?;
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

/// Share of the samples a candidate may drop over a cap before the search warns.
pub const DROP_WARN_SHARE: f64 = 0.01;

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
    let mut candidates: Vec<IsfCandidate> = Vec::new();
    // Evaluations by offset from the start, so a walk back over visited caps costs nothing.
    let mut seen: Vec<(i64, Option<usize>)> = Vec::new();
    let mut warnings = Vec::new();
    let total = p.max_steps as u64 + 1;
    let mut max_seen = f64::NEG_INFINITY;
    let mut recorded = false;
    let mut k = 0i64;
    let mut steps = 0u32;
    // Each candidate's ISF runs stop with the search's cancel flag (their progress is not the search's).
    let mut cancel = Cancellable {
        flag: progress.cancel_flag().unwrap_or_default(),
    };
    loop {
        checkpoint(progress)?;
        let Some(caps) = caps_at(k) else {
            warnings.push(format!(
                "the ISF search reached caps that cannot exist (vision {}, text {}) before finding {} to {} samples per pack",
                start.max_vision as i64 + k,
                start.max_text as i64 + k * a as i64,
                js_number(b),
                js_number(b + 1.0)
            ));
            break;
        };
        let at = match seen.iter().find(|(o, _)| *o == k) {
            Some(&(_, at)) => at,
            None => {
                let at = match evaluate(samples, caps, p, &mut cancel) {
                    Ok(c) => {
                        candidates.push(c);
                        Some(candidates.len() - 1)
                    }
                    Err(Error::CapTooSmall { .. }) => None,
                    Err(e) => return Err(e),
                };
                seen.push((k, at));
                at
            }
        };
        let per_pack = at.map_or(0.0, |i| candidates[i].samples_per_pack);
        max_seen = max_seen.max(per_pack);
        recorded |= at.is_some_and(|i| candidates[i].in_window);
        progress.report(steps as u64 + 1, total);
        if max_seen > b + 1.0 {
            if recorded {
                break;
            }
            k -= 1;
        } else {
            k += 1;
        }
        if steps == p.max_steps {
            if !recorded {
                warnings.push(format!(
                    "the ISF search took its {} steps without finding {} to {} samples per pack",
                    p.max_steps,
                    js_number(b),
                    js_number(b + 1.0)
                ));
            }
            break;
        }
        steps += 1;
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
    for (i, c) in candidates.iter().enumerate() {
        let best = &candidates[chosen];
        let better = if recorded {
            c.in_window && (!best.in_window || c.score < best.score)
        } else {
            window_gap(c) < window_gap(best)
                || (window_gap(c) == window_gap(best) && c.score < best.score)
        };
        if better {
            chosen = i;
        }
    }
    let c = candidates[chosen];
    if !c.in_window {
        warnings.push(format!(
            "the ISF search left its window: caps {} / {} give {} samples per pack, outside {} to {}",
            c.caps.max_vision,
            c.caps.max_text,
            js_number(round_half_up(c.samples_per_pack * 100.0) / 100.0),
            js_number(b),
            js_number(b + 1.0)
        ));
    }
    if c.dropped as f64 > DROP_WARN_SHARE * samples.len() as f64 {
        warnings.push(format!(
            "caps {} / {} drop {} of {} samples over a cap ({}%)",
            c.caps.max_vision,
            c.caps.max_text,
            c.dropped,
            samples.len(),
            js_number(round_half_up(1000.0 * c.dropped as f64 / samples.len() as f64) / 10.0)
        ));
    }
    progress.report(total, total);
    Ok(IsfSearch {
        chosen,
        candidates,
        text_step: a,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn a_cancelled_search_stops_with_the_error() {
        let mut rng = Rng::new(3);
        let v: Vec<u32> = (0..3000).map(|_| 1 + rng.below(5)).collect();
        let t: Vec<u32> = (0..3000).map(|_| 200 + rng.below(1500)).collect();
        let s = Samples::new(&v, &t).unwrap();
        let p = IsfSearchParams {
            samples_per_pack: 4.0,
            dp: 8,
            accum: 1,
            iterations: 5,
            max_steps: 32,
            seed: 0,
        };
        let cancel = crate::progress::Cancellable::default();
        let whole = search_isf_arguments(&s, &p, &mut cancel.clone()).unwrap();
        assert_eq!(whole, search_isf_arguments(&s, &p, &mut ()).unwrap());
        cancel
            .flag
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = search_isf_arguments(&s, &p, &mut cancel.clone()).unwrap_err();
        assert_eq!(err, Error::Cancelled);
    }

    #[test]
    fn start_bins_each_sample_before_the_mean() {
        // Bins 1024 and 1280 -> mean 1152 (the mean 1000 rounded up would be 1024); mean vision
        // 4 -> 1152 / 4 = 288, + 1 = 289 -> 288 -> Qv = 4096 // 288 = 14.
        let s = Samples::new(&[4, 4], &[900, 1100]).unwrap();
        let (caps, a) = search_start(&s);
        assert_eq!(a, 288);
        assert_eq!(
            caps,
            Caps {
                max_vision: 14,
                max_text: 4096
            }
        );
    }

    fn data(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let v: Vec<u32> = (0..n).map(|_| 1 + rng.below(5)).collect();
        let t = v.iter().map(|&x| 100 + 256 * x + rng.below(300)).collect();
        (v, t)
    }

    fn params(b: f64, max_steps: u32) -> IsfSearchParams {
        IsfSearchParams {
            samples_per_pack: b,
            dp: 8,
            accum: 1,
            iterations: 10,
            max_steps,
            seed: 1,
        }
    }

    /// Replays the reference rule over the evaluations in order: each next caps follow from the
    /// largest samples per pack seen and whether a candidate was recorded.
    fn assert_reference_walk(out: &IsfSearch, b: f64) {
        let start_v = out.candidates[0].caps.max_vision as i64;
        let mut max_seen = f64::NEG_INFINITY;
        let mut recorded = false;
        let mut visited = vec![0i64];
        for c in &out.candidates {
            let here = c.caps.max_vision as i64 - start_v;
            assert!(visited.contains(&here), "caps {:?} off the walk", c.caps);
            assert_eq!(
                c.caps.max_text as i64 - 4096,
                here * out.text_step as i64,
                "text cap moves with vision"
            );
            max_seen = max_seen.max(c.samples_per_pack);
            recorded |= c.in_window;
            let next = if max_seen > b + 1.0 {
                if recorded {
                    break;
                }
                here - 1
            } else {
                here + 1
            };
            visited.push(next);
        }
    }

    #[test]
    fn finds_caps_in_the_window_by_the_reference_walk() {
        let (v, t) = data(6000, 5);
        let s = Samples::new(&v, &t).unwrap();
        for b in [2.0, 4.5, 7.0] {
            let out = search_isf_arguments(&s, &params(b, 32), &mut ()).unwrap();
            let c = out.candidates[out.chosen];
            assert!(c.in_window, "B {b}: {:?}", out.candidates);
            assert!(out.warnings.is_empty(), "{:?}", out.warnings);
            for other in out.candidates.iter().filter(|o| o.in_window) {
                assert!(c.score <= other.score);
            }
            assert_reference_walk(&out, b);
        }
    }

    #[test]
    fn a_candidate_outside_the_window_does_not_stop_the_walk() {
        // The start (Qv 4096 // a) lands far below B = 12: the walk steps up past every
        // evaluation below the window until one is in it.
        let (v, t) = data(4000, 6);
        let s = Samples::new(&v, &t).unwrap();
        let out = search_isf_arguments(&s, &params(12.0, 64), &mut ()).unwrap();
        assert!(out.candidates.len() > 3);
        assert!(out.candidates[..out.candidates.len() - 1]
            .iter()
            .any(|c| !c.in_window));
        assert!(out.candidates[out.chosen].in_window);
        assert_reference_walk(&out, 12.0);
    }

    #[test]
    fn warns_when_it_leaves_the_window_or_drops_samples() {
        let (mut v, mut t) = data(3000, 7);
        for i in (0..v.len()).step_by(20) {
            v[i] = 12;
            t[i] = 100 + 256 * 12;
        }
        let s = Samples::new(&v, &t).unwrap();
        // One or two samples per pack: caps small enough drop the 5% of large samples.
        let out = search_isf_arguments(&s, &params(1.0, 32), &mut ()).unwrap();
        let c = out.candidates[out.chosen];
        assert!(c.dropped > 30, "{c:?}");
        assert!(
            out.warnings.iter().any(|w| w.contains("over a cap")),
            "{:?}",
            out.warnings
        );
        // Two steps cannot reach 30 samples per pack.
        let out = search_isf_arguments(&s, &params(30.0, 2), &mut ()).unwrap();
        assert!(!out.candidates[out.chosen].in_window);
        assert!(
            out.warnings.iter().any(|w| w.contains("without finding")),
            "{:?}",
            out.warnings
        );
        assert!(out.warnings.iter().any(|w| w.contains("left its window")));
    }
}
