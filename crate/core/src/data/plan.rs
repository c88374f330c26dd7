//! The batch plan: steps x ranks x micro-batches x sample indices, as flat arrays, and the
//! policies for the tail that cannot fill a whole step.
//!
//! Layout (struct of arrays, what crosses to JavaScript unchanged):
//! - `samples`: every micro-batch's sample indices, one after another;
//! - `micro_batch_offsets[k]..micro_batch_offsets[k + 1]`: micro-batch `k` in `samples`;
//! - `rank_offsets[s * dp + r]..rank_offsets[s * dp + r + 1]`: the micro-batches of rank `r` in
//!   step `s` (normally `accum` of them; fewer in a `keep-partial` last step);
//! - `padding[k] == 1`: micro-batch `k` repeats earlier samples to complete the last step
//!   (`tail: pad`);
//! - `dropped`: every input sample not in the plan, with its reason, by index.

use super::samples::{Caps, DropReason};
use crate::error::Error;

/// What to do with micro-batches that cannot fill a whole step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Leave them out; their samples are reported as dropped (`tail`). The default, as
    /// Megatron drops an incomplete last global batch.
    Drop,
    /// Complete the last step with copies of the epoch's first micro-batches, flagged as
    /// padding, so every rank runs the same number of micro-batches.
    Pad,
    /// Keep a last, smaller step: its micro-batches go round-robin to ranks, some of which get
    /// fewer (possibly none).
    KeepPartial,
    /// Leave them out as `Drop` does, reported as `carried`: the caller plans them in the next
    /// epoch (the balanced planner's `carry`), so an epoch boundary loses nothing, as Megatron's
    /// samplers treat epochs as one continuous stream.
    Carry,
}

impl Tail {
    /// Every policy name, as the API and CLI spell them.
    pub const NAMES: &'static [&'static str] = &["drop", "pad", "keep-partial", "carry"];

    /// Parses a policy name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "drop" => Ok(Tail::Drop),
            "pad" => Ok(Tail::Pad),
            "keep-partial" => Ok(Tail::KeepPartial),
            "carry" => Ok(Tail::Carry),
            _ => Err(Error::UnknownOption {
                name: "tail".into(),
                value: name.into(),
                known: Tail::NAMES,
            }),
        }
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Tail::Drop => "drop",
            Tail::Pad => "pad",
            Tail::KeepPartial => "keep-partial",
            Tail::Carry => "carry",
        }
    }
}

/// Packs (micro-batches) as one flat list of sample indices (or, inside a planner, of sample
/// records carrying their loads) with offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packs<T = u32> {
    pub items: Vec<T>,
    pub offsets: Vec<u32>,
}

impl<T: Copy> Packs<T> {
    /// No packs.
    pub fn new() -> Self {
        Packs {
            items: Vec::new(),
            offsets: vec![0],
        }
    }

    /// Room for `items` sample indices.
    pub fn with_capacity(items: usize) -> Self {
        let mut offsets = Vec::with_capacity(items / 2 + 1);
        offsets.push(0);
        Packs {
            items: Vec::with_capacity(items),
            offsets,
        }
    }

    /// Appends one pack.
    pub fn push(&mut self, pack: &[T]) {
        self.items.extend_from_slice(pack);
        self.offsets.push(self.items.len() as u32);
    }

    /// Number of packs.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no packs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pack `i`'s sample indices.
    pub fn get(&self, i: usize) -> &[T] {
        &self.items[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Copies pack `i` into `out` from `at` on, for a caller that fills `out` in order (what
    /// lies past the pack is written after it), and returns its length. A pack of at most
    /// [`SHORT_PACK`] items is copied as [`SHORT_PACK`] items, a fixed-size copy without a call,
    /// where `items` and `out` both hold that many from there (the items past it land where the
    /// next packs go).
    pub fn copy_into(&self, i: usize, out: &mut [T], at: usize) -> usize {
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        let len = to - from;
        if len <= SHORT_PACK
            && from + SHORT_PACK <= self.items.len()
            && at + SHORT_PACK <= out.len()
        {
            out[at..at + SHORT_PACK].copy_from_slice(&self.items[from..from + SHORT_PACK]);
        } else {
            out[at..at + len].copy_from_slice(&self.items[from..to]);
        }
        len
    }

    /// The index range of pack `i` in `items`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }
}

/// A batch plan for one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    pub dp: u32,
    pub accum: u32,
    /// Micro-batches are packed sequences (no padding) rather than padded batches.
    pub packed: bool,
    /// The micro-batch caps the plan respects, when it has caps.
    pub caps: Option<Caps>,
    pub tail: Tail,
    pub samples: Vec<u32>,
    pub micro_batch_offsets: Vec<u32>,
    pub rank_offsets: Vec<u32>,
    pub padding: Vec<u8>,
    pub dropped: Vec<(u32, DropReason)>,
    /// Samples over a cap that the plan holds in micro-batches of their own (ascending).
    pub oversize: Vec<u32>,
    /// The previous epoch's carried tail planned in this epoch besides its own samples (the
    /// `carry` given, in its order; empty without one).
    pub carried: Vec<u32>,
}

impl BatchPlan {
    /// A plan from its arrays (as they come back from JavaScript), checked for consistency:
    /// offsets start at 0, never decrease and end at the array they index; `rank_offsets`
    /// covers whole steps of `dp` ranks; `padding` has one flag per micro-batch.
    pub fn from_parts(
        dp: u32,
        packed: bool,
        samples: Vec<u32>,
        micro_batch_offsets: Vec<u32>,
        rank_offsets: Vec<u32>,
        padding: Vec<u8>,
    ) -> Result<BatchPlan, Error> {
        let bad = |what: &str| Err(Error::out_of_range("plan", what.to_owned()));
        if dp == 0 {
            return bad("dp must be at least 1");
        }
        let monotone = |o: &[u32], end: usize| {
            o.first() == Some(&0)
                && o.windows(2).all(|w| w[0] <= w[1])
                && *o.last().unwrap() as usize == end
        };
        if !monotone(&micro_batch_offsets, samples.len()) {
            return bad(
                "microBatchOffsets must start at 0, never decrease, and end at samples.length",
            );
        }
        let mbs = micro_batch_offsets.len() - 1;
        if !monotone(&rank_offsets, mbs) || !(rank_offsets.len() - 1).is_multiple_of(dp as usize) {
            return bad("rankOffsets must start at 0, never decrease, end at the micro-batch count, and hold whole steps of dp ranks");
        }
        if padding.len() != mbs {
            return bad("padding must have one flag per micro-batch");
        }
        Ok(BatchPlan {
            dp,
            accum: 1,
            packed,
            caps: None,
            tail: Tail::Drop,
            samples,
            micro_batch_offsets,
            rank_offsets,
            padding,
            dropped: Vec::new(),
            oversize: Vec::new(),
            carried: Vec::new(),
        })
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        (self.rank_offsets.len() - 1) / self.dp as usize
    }

    /// Number of micro-batches.
    pub fn micro_batches(&self) -> usize {
        self.micro_batch_offsets.len() - 1
    }

    /// Micro-batch `k`'s sample indices.
    pub fn micro_batch(&self, k: usize) -> &[u32] {
        &self.samples
            [self.micro_batch_offsets[k] as usize..self.micro_batch_offsets[k + 1] as usize]
    }

    /// The micro-batch indices of rank `r` in step `s`.
    pub fn rank_micro_batches(&self, s: usize, r: usize) -> std::ops::Range<usize> {
        let i = s * self.dp as usize + r;
        self.rank_offsets[i] as usize..self.rank_offsets[i + 1] as usize
    }
}

/// Samples from which [`assemble`] copies them on worker threads.
const PARALLEL_GATHER_MIN: usize = 1 << 18;
/// Packs whose first items a gather in random pack order reads before copying any of them, so
/// that their cache misses overlap instead of waiting one after another ([`assemble`]'s, and the
/// balanced planner's layout).
pub(crate) const GATHER_BATCH: usize = 16;
/// Items of a pack that [`Packs::copy_into`] copies as a block of this many (most packs are
/// shorter: one fixed-size copy instead of a call for each).
pub const SHORT_PACK: usize = 8;

/// Builds a plan from packs dealt in `order`: consecutive groups of `dp * accum` packs form the
/// steps, and within a step pack `j` goes to rank `j / accum`. What is left after the last
/// full step follows `tail`. `dropped` holds the samples already left out (over a cap).
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    packs: &Packs,
    order: &[u32],
    dp: u32,
    accum: u32,
    tail: Tail,
    packed: bool,
    caps: Option<Caps>,
    mut dropped: Vec<(u32, DropReason)>,
) -> Result<BatchPlan, Error> {
    let m = (dp * accum) as usize;
    let full = order.len() / m;
    let rest = &order[full * m..];
    if order.is_empty() || (full == 0 && matches!(tail, Tail::Drop | Tail::Carry)) {
        return Err(Error::TooFewSamples {
            message: format!(
                "the samples fill {} micro-batches, fewer than one step needs (dp {} x accum {} = {}); use tail 'pad' or 'keep-partial', or fewer ranks",
                order.len(),
                dp,
                accum,
                m
            ),
        });
    }
    // The micro-batches' packs in plan order (with their padding flags and the ranks' ends)
    // first; the samples are then copied pack by pack into their final places.
    // With no micro-batch after the full steps, they are the order's packs, `accum` per rank:
    // no copy.
    let plain = rest.is_empty() || matches!(tail, Tail::Drop | Tail::Carry);
    let mut mb_packs: Vec<u32> = Vec::new();
    let mut padding: Vec<u8>;
    let mut rank_offsets: Vec<u32>;
    if plain {
        rank_offsets = (0..=(full * dp as usize) as u32)
            .map(|r| r * accum)
            .collect();
        padding = vec![0; full * m];
    } else {
        mb_packs.reserve(order.len() + m);
        rank_offsets = vec![0];
        for step in order[..full * m].chunks(m) {
            for rank in step.chunks(accum as usize) {
                mb_packs.extend_from_slice(rank);
                rank_offsets.push(mb_packs.len() as u32);
            }
        }
        padding = Vec::with_capacity(order.len() + m);
        padding.resize(mb_packs.len(), 0);
    }
    if !rest.is_empty() {
        match tail {
            Tail::Drop | Tail::Carry => {
                let reason = if tail == Tail::Carry {
                    DropReason::Carried
                } else {
                    DropReason::Tail
                };
                for &p in rest {
                    dropped.extend(packs.get(p as usize).iter().map(|&i| (i, reason)));
                }
            }
            Tail::Pad => {
                let mut last: Vec<(u32, bool)> = rest.iter().map(|&p| (p, false)).collect();
                let mut k = 0;
                while last.len() < m {
                    last.push((order[k % order.len()], true));
                    k += 1;
                }
                for rank in last.chunks(accum as usize) {
                    for &(p, pad) in rank {
                        mb_packs.push(p);
                        padding.push(pad as u8);
                    }
                    rank_offsets.push(mb_packs.len() as u32);
                }
            }
            Tail::KeepPartial => {
                for r in 0..dp as usize {
                    for &p in rest.iter().skip(r).step_by(dp as usize) {
                        mb_packs.push(p);
                        padding.push(0);
                    }
                    rank_offsets.push(mb_packs.len() as u32);
                }
            }
        }
    }
    let mb_packs: &[u32] = if plain { &order[..full * m] } else { &mb_packs };
    let mut micro_batch_offsets: Vec<u32> = Vec::with_capacity(mb_packs.len() + 1);
    let mut at = 0u32;
    micro_batch_offsets.push(0);
    for &k in mb_packs {
        at += packs.get(k as usize).len() as u32;
        micro_batch_offsets.push(at);
    }
    let mut samples = vec![0u32; at as usize];
    // Micro-batches `[a, b)` into `out` (their samples, from `micro_batch_offsets[a]` on). The
    // packs lie at random: the first samples of a batch of them are read before any is copied,
    // so that their cache misses overlap instead of waiting one after another.
    let gather = |a: usize, b: usize, out: &mut [u32]| {
        let base = micro_batch_offsets[a] as usize;
        let mut touched = 0u32;
        for first in (a..b).step_by(GATHER_BATCH) {
            let last = (first + GATHER_BATCH).min(b);
            for &k in &mb_packs[first..last] {
                touched ^= packs.get(k as usize).first().copied().unwrap_or(0);
            }
            for j in first..last {
                packs.copy_into(
                    mb_packs[j] as usize,
                    out,
                    micro_batch_offsets[j] as usize - base,
                );
            }
        }
        std::hint::black_box(touched);
    };
    let threads = super::balance::worker_threads();
    if threads <= 1 || samples.len() < PARALLEL_GATHER_MIN {
        gather(0, mb_packs.len(), &mut samples);
    } else {
        // Threads take runs of micro-batches: disjoint runs of samples, the same result.
        std::thread::scope(|scope| {
            for (a, b, mine) in
                super::balance::block_runs(&mut samples, &micro_batch_offsets, threads)
            {
                let gather = &gather;
                scope.spawn(move || gather(a, b, mine));
            }
        });
    }
    dropped.sort_unstable();
    Ok(BatchPlan {
        dp,
        accum,
        packed,
        caps,
        tail,
        samples,
        micro_batch_offsets,
        rank_offsets,
        padding,
        dropped,
        oversize: Vec::new(),
        carried: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(n: u32) -> Packs {
        let mut p = Packs::new();
        for i in 0..n {
            p.push(&[2 * i, 2 * i + 1]);
        }
        p
    }

    #[test]
    fn packs_copied_in_order_short_or_long_are_their_items() {
        // Packs of 0 to 2 * SHORT_PACK items, in every order of lengths, copied one after
        // another into a buffer of exactly their items (the last ones near both ends).
        let mut rng = crate::rng::Rng::new(8);
        for round in 0..50 {
            let mut p = Packs::new();
            let mut next = 0u32;
            for _ in 0..1 + round {
                let len = rng.below(2 * SHORT_PACK as u32 + 1);
                p.push(&(next..next + len).collect::<Vec<_>>());
                next += len;
            }
            let mut order: Vec<usize> = (0..p.len()).collect();
            crate::permutation::shuffle(&mut order, &mut rng);
            let want: Vec<u32> = order.iter().flat_map(|&k| p.get(k).to_vec()).collect();
            let mut out = vec![u32::MAX; want.len()];
            let mut at = 0;
            for &k in &order {
                at += p.copy_into(k, &mut out, at);
            }
            assert_eq!(at, want.len());
            assert_eq!(out, want, "round {round}");
        }
    }

    #[test]
    fn large_plans_gathered_on_threads_equal_the_plain_loop() {
        // Over PARALLEL_GATHER_MIN samples: the threaded copy against a plain one.
        let mut p = Packs::new();
        let mut next = 0u32;
        for k in 0..120_000u32 {
            let len = 1 + k % 4;
            p.push(&(next..next + len).collect::<Vec<_>>());
            next += len;
        }
        let mut order: Vec<u32> = (0..p.len() as u32).collect();
        crate::permutation::shuffle(&mut order, &mut crate::rng::Rng::new(5));
        order.truncate(order.len() - 7);
        for tail in [Tail::Drop, Tail::Pad, Tail::KeepPartial] {
            let plan = assemble(&p, &order, 16, 2, tail, true, None, vec![]).unwrap();
            assert!(plan.samples.len() >= PARALLEL_GATHER_MIN);
            for k in 0..plan.micro_batches() {
                let from = plan.micro_batch_offsets[k] as usize;
                let pack = plan.micro_batch(k);
                // Each micro-batch is one whole pack: consecutive ids from its first.
                assert_eq!(
                    pack,
                    &(pack[0]..pack[0] + pack.len() as u32).collect::<Vec<_>>()[..],
                    "{tail:?} mb {k} at {from}"
                );
            }
            let full = order.len() / 32 * 32;
            let want: Vec<u32> = order[..full]
                .iter()
                .flat_map(|&k| p.get(k as usize).to_vec())
                .collect();
            assert_eq!(&plan.samples[..want.len()], &want[..], "{tail:?}");
        }
    }

    #[test]
    fn full_steps_deal_accum_packs_per_rank() {
        let p = packs(8);
        let order: Vec<u32> = (0..8).collect();
        let plan = assemble(&p, &order, 2, 2, Tail::Drop, true, None, vec![]).unwrap();
        assert_eq!(plan.steps(), 2);
        assert_eq!(plan.rank_micro_batches(1, 1), 6..8);
        assert_eq!(plan.micro_batch(7), &[14, 15]);
        assert!(plan.dropped.is_empty());
    }

    #[test]
    fn tail_policies() {
        let p = packs(7);
        let order: Vec<u32> = (0..7).collect();
        let drop = assemble(
            &p,
            &order,
            2,
            2,
            Tail::Drop,
            true,
            None,
            vec![(99, DropReason::TextOverCap)],
        )
        .unwrap();
        assert_eq!(drop.steps(), 1);
        assert_eq!(
            drop.dropped,
            vec![
                (8, DropReason::Tail),
                (9, DropReason::Tail),
                (10, DropReason::Tail),
                (11, DropReason::Tail),
                (12, DropReason::Tail),
                (13, DropReason::Tail),
                (99, DropReason::TextOverCap)
            ]
        );
        let pad = assemble(&p, &order, 2, 2, Tail::Pad, true, None, vec![]).unwrap();
        assert_eq!(pad.steps(), 2);
        assert_eq!(pad.padding, vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(pad.micro_batch(7), &[0, 1]);
        let keep = assemble(&p, &order, 2, 2, Tail::KeepPartial, true, None, vec![]).unwrap();
        assert_eq!(keep.steps(), 2);
        assert_eq!(keep.rank_micro_batches(1, 0).len(), 2);
        assert_eq!(keep.rank_micro_batches(1, 1).len(), 1);
        assert_eq!(keep.micro_batch(6), &[10, 11]);
    }

    #[test]
    fn one_micro_batch_per_rank_under_every_tail() {
        let p = packs(8);
        let order: Vec<u32> = vec![7, 0, 6, 1, 5, 2, 4, 3];
        for tail in [Tail::Drop, Tail::Carry, Tail::Pad, Tail::KeepPartial] {
            let plan = assemble(&p, &order, 3, 1, tail, true, None, vec![]).unwrap();
            let kept = if matches!(tail, Tail::Drop | Tail::Carry) {
                6
            } else {
                8
            };
            for (k, &pack) in order[..kept].iter().enumerate() {
                assert_eq!(plan.micro_batch(k), p.get(pack as usize), "{tail:?} mb {k}");
            }
            assert_eq!(
                plan.micro_batches(),
                if tail == Tail::Pad { 9 } else { kept }
            );
            assert_eq!(plan.steps(), if kept == 6 { 2 } else { 3 }, "{tail:?}");
            assert_eq!(plan.rank_offsets[..7], [0, 1, 2, 3, 4, 5, 6], "{tail:?}");
            let pads = plan.padding.iter().filter(|&&x| x == 1).count();
            assert_eq!(pads, (tail == Tail::Pad) as usize, "{tail:?}");
            assert_eq!(
                plan.dropped.len(),
                if kept == 6 { 4 } else { 0 },
                "{tail:?}"
            );
        }
        let keep = assemble(&p, &order, 3, 1, Tail::KeepPartial, true, None, vec![]).unwrap();
        assert_eq!(keep.rank_offsets, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 8]);
    }

    #[test]
    fn too_few_for_a_step_is_an_error_under_drop() {
        let p = packs(3);
        let err = assemble(&p, &[0, 1, 2], 4, 1, Tail::Drop, true, None, vec![]).unwrap_err();
        assert_eq!(err.code(), "ERR_OMNIBAL_TOO_FEW_SAMPLES");
        assert!(assemble(&p, &[0, 1, 2], 4, 1, Tail::KeepPartial, true, None, vec![]).is_ok());
    }
}
