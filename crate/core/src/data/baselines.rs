//! Baselines the metrics table compares against.
//!
//! - `random`: shuffle, fixed micro-batch size, padded (what a plain DistributedSampler does);
//! - `length_grouped`: LLaVA's `get_length_grouped_indices`: shuffle, cut mega-batches of
//!   `dp * batch` samples, sort each by text length, deal each sample to the rank whose chunk has
//!   the fewest tokens so far (chunks capped at `batch`); padded;
//! - `isf`: the reference ISF packs handed out at random, `dp * accum` per step, as the
//!   reference sampler does.

use super::isf::{pack_isf, IsfParams};
use super::plan::{assemble, BatchPlan, Packs, Tail};
use super::samples::Samples;
use crate::error::Error;
use crate::permutation::shuffle;
use crate::progress::Progress;
use crate::rng::Rng;

/// Shape shared by the padded baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaddedParams {
    pub dp: u32,
    pub accum: u32,
    /// Samples per micro-batch.
    pub batch: u32,
    pub seed: u64,
    pub epoch: u64,
    pub tail: Tail,
}

fn check_shape(dp: u32, accum: u32) -> Result<(), Error> {
    if dp == 0 {
        return Err(Error::out_of_range("dp", "must be at least 1, got 0"));
    }
    if accum == 0 {
        return Err(Error::out_of_range("accum", "must be at least 1, got 0"));
    }
    Ok(())
}

fn shuffled(samples: &Samples, p: &PaddedParams) -> Result<Vec<u32>, Error> {
    check_shape(p.dp, p.accum)?;
    if p.batch == 0 {
        return Err(Error::out_of_range(
            "batchSize",
            "must be at least 1, got 0",
        ));
    }
    let mut order: Vec<u32> = (0..samples.len() as u32).collect();
    shuffle(&mut order, &mut Rng::for_epoch(p.seed, p.epoch, 0));
    Ok(order)
}

/// Random fixed-size padded micro-batches.
pub fn random_batches(samples: &Samples, p: &PaddedParams) -> Result<BatchPlan, Error> {
    let order = shuffled(samples, p)?;
    let mut packs = Packs::with_capacity(order.len());
    for chunk in order.chunks(p.batch as usize) {
        packs.push(chunk);
    }
    let deal: Vec<u32> = (0..packs.len() as u32).collect();
    assemble(
        &packs,
        &deal,
        p.dp,
        p.accum,
        p.tail,
        false,
        None,
        Vec::new(),
    )
}

/// LLaVA / HF length-grouped padded micro-batches.
pub fn length_grouped_batches(samples: &Samples, p: &PaddedParams) -> Result<BatchPlan, Error> {
    let order = shuffled(samples, p)?;
    let (dp, b) = (p.dp as usize, p.batch as usize);
    let mut packs = Packs::with_capacity(order.len());
    // Room for the samples there are: `dp * batch` comes from the caller and can be far more
    // than memory holds (an abort, not an error), while no block is longer than `order`.
    let mut mega: Vec<u32> = Vec::with_capacity(dp.saturating_mul(b).min(order.len()));
    let mut chunks: Vec<Vec<u32>> = vec![Vec::with_capacity(b.min(order.len())); dp];
    let mut lens = vec![0u64; dp];
    for block in order.chunks(dp * b) {
        mega.clear();
        mega.extend_from_slice(block);
        // Longest first; equal lengths keep their shuffled order.
        mega.sort_by(|&x, &y| samples.text[y as usize].cmp(&samples.text[x as usize]));
        let per = block.len().div_ceil(dp);
        for c in chunks.iter_mut() {
            c.clear();
        }
        lens.fill(0);
        for &i in &mega {
            let mut best = usize::MAX;
            for r in 0..dp {
                if chunks[r].len() < per && (best == usize::MAX || lens[r] < lens[best]) {
                    best = r;
                }
            }
            chunks[best].push(i);
            lens[best] += samples.text[i as usize] as u64;
        }
        for c in &chunks {
            if !c.is_empty() {
                packs.push(c);
            }
        }
    }
    // Each mega-batch gave one micro-batch per rank: mega-batch g's chunk r is micro-batch
    // g * dp + r. Deal so that rank r gets chunk r of `accum` consecutive mega-batches.
    let groups = packs.len() / dp;
    let mut deal = Vec::with_capacity(packs.len());
    let accum = p.accum as usize;
    let mut g = 0;
    while g + accum <= groups {
        for r in 0..dp {
            for a in 0..accum {
                deal.push(((g + a) * dp + r) as u32);
            }
        }
        g += accum;
    }
    deal.extend((g * dp..packs.len()).map(|k| k as u32));
    assemble(
        &packs,
        &deal,
        p.dp,
        p.accum,
        p.tail,
        false,
        None,
        Vec::new(),
    )
}

/// Reference ISF packs, handed out at random.
pub fn isf_batches(
    samples: &Samples,
    params: &IsfParams,
    dp: u32,
    accum: u32,
    tail: Tail,
    progress: &mut dyn Progress,
) -> Result<BatchPlan, Error> {
    check_shape(dp, accum)?;
    let out = pack_isf(samples, params, progress)?;
    let mut deal: Vec<u32> = (0..out.packs.len() as u32).collect();
    shuffle(
        &mut deal,
        &mut Rng::for_epoch(
            params.seed,
            params.epoch,
            super::balance::STEP_ORDER_PURPOSE,
        ),
    );
    assemble(
        &out.packs,
        &deal,
        dp,
        accum,
        tail,
        true,
        Some(params.caps),
        out.dropped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dp: u32, accum: u32, batch: u32) -> PaddedParams {
        PaddedParams {
            dp,
            accum,
            batch,
            seed: 1,
            epoch: 0,
            tail: Tail::KeepPartial,
        }
    }

    fn covers_once(plan: &BatchPlan, n: usize) -> bool {
        let mut seen = vec![0; n];
        for &i in &plan.samples {
            seen[i as usize] += 1;
        }
        for &(i, _) in &plan.dropped {
            seen[i as usize] += 1;
        }
        seen.iter().all(|&c| c == 1)
    }

    #[test]
    fn random_covers_everything() {
        let v: Vec<u32> = (0..103).map(|i| i % 5).collect();
        let t: Vec<u32> = (0..103).map(|i| 100 + i).collect();
        let s = Samples::new(&v, &t).unwrap();
        let plan = random_batches(&s, &params(4, 2, 3)).unwrap();
        assert!(covers_once(&plan, 103));
        assert_eq!(plan.rank_micro_batches(0, 0).len(), 2);
    }

    #[test]
    fn length_grouped_sorts_mega_batches_and_evens_chunks() {
        let v: Vec<u32> = vec![1; 64];
        let t: Vec<u32> = (0..64).map(|i| 100 + 37 * i % 900).collect();
        let s = Samples::new(&v, &t).unwrap();
        let plan = length_grouped_batches(&s, &params(4, 1, 4)).unwrap();
        assert!(covers_once(&plan, 64));
        assert_eq!(plan.steps(), 4);
        for k in 0..plan.micro_batches() {
            assert_eq!(plan.micro_batch(k).len(), 4);
            // sorted within a chunk: dealt longest first
            let lens: Vec<u32> = plan.micro_batch(k).iter().map(|&i| t[i as usize]).collect();
            assert!(lens.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}
