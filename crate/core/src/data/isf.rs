//! ISF, iterative sampling and filtering: the reference data balancer of the OmniBal paper,
//! with its exact semantics, minus its bug (the last open group is never lost) and with samples
//! over a cap reported instead of silently skipped.
//!
//! Sampling walks the shuffled pool with one open group; a sample that would push either
//! running sum over its cap closes the group and opens the next. Filtering keeps a group when
//! its vision sum equals `min_vision` or its text sum reaches `min_text`, and returns the
//! samples of the others to the pool. `iterations - 1` rounds of both, then one last sampling
//! without filtering. Round `r` shuffles with stream `r` of the seed's epoch.

use super::plan::Packs;
use super::samples::{Caps, DropReason, Samples};
use crate::error::Error;
use crate::permutation::shuffle;
use crate::progress::{checkpoint, Progress};
use crate::rng::Rng;

/// Parameters of [`pack_isf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsfParams {
    pub caps: Caps,
    /// Keep a group whose vision sum equals this (reference default: the vision cap).
    pub min_vision: u32,
    /// Keep a group whose text sum is at least this (reference default: text cap - 128).
    pub min_text: u32,
    /// Rounds of sampling, all but the last followed by filtering (reference default 50).
    pub iterations: u32,
    pub seed: u64,
    pub epoch: u64,
}

impl IsfParams {
    /// The reference defaults for `caps`: `min_vision` = vision cap, `min_text` = text cap -
    /// 128, 50 iterations.
    pub fn reference(caps: Caps, seed: u64, epoch: u64) -> Self {
        IsfParams {
            caps,
            min_vision: caps.max_vision,
            min_text: caps.max_text.saturating_sub(128),
            iterations: 50,
            seed,
            epoch,
        }
    }
}

/// The packs ISF made, in the order it accepted them, and the samples over a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsfPacks {
    pub packs: Packs,
    pub dropped: Vec<(u32, DropReason)>,
}

/// One sampling pass: walks `pool` with one open group, appending each closed group (and the
/// last one) to `out` with its vision and text sums.
fn sample_groups(
    pool: &[u32],
    samples: &Samples,
    caps: Caps,
    out: &mut Packs,
    sums: &mut Vec<(u64, u64)>,
) {
    let (mut v, mut t) = (0u64, 0u64);
    let mut start = out.items.len();
    for &i in pool {
        let (sv, st) = (
            samples.vision[i as usize] as u64,
            samples.text[i as usize] as u64,
        );
        if out.items.len() > start
            && (v + sv > caps.max_vision as u64 || t + st > caps.max_text as u64)
        {
            out.offsets.push(out.items.len() as u32);
            sums.push((v, t));
            start = out.items.len();
            v = 0;
            t = 0;
        }
        out.items.push(i);
        v += sv;
        t += st;
    }
    if out.items.len() > start {
        out.offsets.push(out.items.len() as u32);
        sums.push((v, t));
    }
}

/// Runs ISF over the samples that fit the caps.
pub fn pack_isf(
    samples: &Samples,
    params: &IsfParams,
    progress: &mut dyn Progress,
) -> Result<IsfPacks, Error> {
    if params.iterations == 0 {
        return Err(Error::out_of_range(
            "iterations",
            "must be at least 1, got 0",
        ));
    }
    let (mut pool, dropped) = samples.split_by_caps(params.caps)?;
    let total = pool.len() as u64;
    let mut kept = Packs::with_capacity(pool.len());
    let mut round_packs = Packs::new();
    let mut sums = Vec::new();
    for round in 0..params.iterations {
        checkpoint(progress)?;
        shuffle(
            &mut pool,
            &mut Rng::for_epoch(params.seed, params.epoch, round as u64),
        );
        round_packs.items.clear();
        round_packs.offsets.truncate(1);
        sums.clear();
        sample_groups(&pool, samples, params.caps, &mut round_packs, &mut sums);
        let last = round + 1 == params.iterations;
        pool.clear();
        for (g, &(v, t)) in sums.iter().enumerate() {
            let group = round_packs.get(g);
            if last || v == params.min_vision as u64 || t >= params.min_text as u64 {
                kept.push(group);
            } else {
                pool.extend_from_slice(group);
            }
        }
        progress.report(total - pool.len() as u64, total);
        if pool.is_empty() {
            break;
        }
    }
    Ok(IsfPacks {
        packs: kept,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let v = (0..n).map(|_| 1 + rng.below(5)).collect();
        let t = (0..n).map(|_| 200 + rng.below(1500)).collect();
        (v, t)
    }

    #[test]
    fn a_cancel_flag_stops_the_rounds() {
        let (v, t) = data(5000, 2);
        let s = Samples::new(&v, &t).unwrap();
        let caps = Caps {
            max_vision: 10,
            max_text: 4096,
        };
        let p = IsfParams::reference(caps, 1, 0);
        let cancel = crate::progress::Cancellable::default();
        // Never set: the packs of a run without a flag.
        let packs = pack_isf(&s, &p, &mut cancel.clone()).unwrap();
        assert_eq!(packs.packs, pack_isf(&s, &p, &mut ()).unwrap().packs);
        // Set after the first round's report: no second round.
        let mut rounds = 0;
        let flag = cancel.flag.clone();
        struct AfterFirst<'a>(&'a mut u32, crate::progress::Cancellable);
        impl Progress for AfterFirst<'_> {
            fn report(&mut self, _: u64, _: u64) {
                *self.0 += 1;
                self.1
                    .flag
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            fn cancel_flag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
                self.1.cancel_flag()
            }
        }
        let err = pack_isf(&s, &p, &mut AfterFirst(&mut rounds, cancel)).unwrap_err();
        assert_eq!(err, Error::Cancelled);
        assert_eq!(rounds, 1);
        assert!(flag.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn every_sample_lands_in_exactly_one_pack_or_is_dropped() {
        let (mut v, t) = data(5000, 1);
        v[17] = 40; // over the vision cap
        let s = Samples::new(&v, &t).unwrap();
        let caps = Caps {
            max_vision: 18,
            max_text: 6016,
        };
        let out = pack_isf(&s, &IsfParams::reference(caps, 7, 0), &mut ()).unwrap();
        let mut seen = vec![0u8; v.len()];
        for &i in &out.packs.items {
            seen[i as usize] += 1;
        }
        for &(i, reason) in &out.dropped {
            assert_eq!(reason, DropReason::VisionOverCap);
            seen[i as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1));
        for p in 0..out.packs.len() {
            let pack = out.packs.get(p);
            let pv: u32 = pack.iter().map(|&i| v[i as usize]).sum();
            let pt: u32 = pack.iter().map(|&i| t[i as usize]).sum();
            assert!(pv <= 18 && pt <= 6016, "pack {p} over a cap");
        }
    }

    #[test]
    fn filtering_makes_most_packs_exact_on_vision() {
        let (v, t) = data(20_000, 2);
        let s = Samples::new(&v, &t).unwrap();
        let caps = Caps {
            max_vision: 18,
            max_text: 8192,
        };
        let out = pack_isf(&s, &IsfParams::reference(caps, 3, 0), &mut ()).unwrap();
        let exact = (0..out.packs.len())
            .filter(|&p| out.packs.get(p).iter().map(|&i| v[i as usize]).sum::<u32>() == 18)
            .count();
        assert!(
            exact as f64 > 0.97 * out.packs.len() as f64,
            "{exact} of {}",
            out.packs.len()
        );
    }

    #[test]
    fn one_iteration_is_a_plain_sequential_pack_and_keeps_the_last_group() {
        let v = [3, 3, 3, 3, 3];
        let t = [10, 10, 10, 10, 10];
        let s = Samples::new(&v, &t).unwrap();
        let mut p = IsfParams::reference(
            Caps {
                max_vision: 6,
                max_text: 100,
            },
            0,
            0,
        );
        p.iterations = 1;
        let out = pack_isf(&s, &p, &mut ()).unwrap();
        // 5 samples of 3 tiles under a cap of 6: groups of 2, 2 and the last single one.
        assert_eq!(out.packs.len(), 3);
        assert_eq!(out.packs.items.len(), 5);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (v, t) = data(3000, 4);
        let s = Samples::new(&v, &t).unwrap();
        let p = IsfParams::reference(
            Caps {
                max_vision: 16,
                max_text: 5000,
            },
            11,
            2,
        );
        assert_eq!(
            pack_isf(&s, &p, &mut ()).unwrap(),
            pack_isf(&s, &p, &mut ()).unwrap()
        );
        let other = IsfParams { seed: 12, ..p };
        assert_ne!(
            pack_isf(&s, &p, &mut ()).unwrap(),
            pack_isf(&s, &other, &mut ()).unwrap()
        );
    }
}
