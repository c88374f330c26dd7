//! The balanced planner, this package's default: within every step, every micro-batch (and so
//! every rank) carries the same vision load and the same text cost, without padding, while each
//! step's packs are drawn at random (steps of 2 to 8 packs: cost strata of random blocks of 512
//! packs), so steps look like i.i.d. draws of the data (on the shared real data a dataset's share
//! of a step varies 1.05-1.2x as much as in i.i.d. steps, `dp x accum` 1 to 16).
//!
//! 1. Packing (ISF-like): walk the shuffled pool with `open_packs` open packs; a sample joins
//!    the first open pack it fits (both caps); a pack is accepted once its vision sum is within
//!    `vision_slack` of the vision cap, or its text reaches `min_text`. When no open pack takes a
//!    sample, the oldest open pack is evicted and its samples go back to the pool. Up to
//!    `rounds` rounds, each reshuffling the pool; the last round accepts everything. Packs are
//!    made from randomly ordered samples, so each mixes datasets and lengths.
//!    Then the packs that closed neither by vision nor by text (the last round's leftovers)
//!    are re-packed best fit (`repack_part_filled`), and the tail that cannot fill a step is
//!    dealt, with those still part-filled and a few random full packs, into slightly smaller
//!    packs forming whole steps instead of being dropped (`spread_tail`).
//! 2. Over-cap samples (caps chosen from the target, [`Oversize::OwnMicroBatch`]): each gets a
//!    micro-batch of its own; these form their own steps, sorted by (vision, cost) so the ranks
//!    of a step get matched ones; the smallest ones short of a whole step share one step with
//!    random packs, so none is left in the tail (only an epoch of too few packs puts them
//!    there). With [`Oversize::Drop`] (explicit caps) they are dropped and reported.
//! 3. Layout: `(packs + over-cap samples) mod (dp * accum)` packs, chosen at random among the
//!    packs within the caps, form the tail (under `drop`,
//!    dealt into smaller packs instead where the epoch is long enough, step 1); the others, in a
//!    random order grouped by vision sum, then the dealt packs, the tail and the over-cap ones.
//!    Packs are renumbered in this order (each sample's loads stored beside it), so a vision
//!    class is a run of consecutive packs and every phase below reads memory in order.
//! 4. Equalization: each vision class, in windows of [`EQUALIZE_WINDOW`] consecutive packs (a
//!    random sample of the class, small enough to stay in cache), gets [`EQUALIZE_PASSES`]
//!    passes that pair the costliest pack with the cheapest, the second with the second, ...,
//!    and make in each pair the one swap of equal-vision samples that brings the two closest to
//!    their mean (under the text cap). Vision sums never change; every pack's cost moves towards
//!    the mean, so packs become interchangeable. Exchanges of two samples for two of the same
//!    vision sum are tried where no single swap helps, and in steps of at least
//!    [`EQUALIZE_GREEDY_MIN_STEP`] micro-batches a greedy phase takes the costliest packs left
//!    against partners across the window.
//! 5. Steps: cut from the layout in order (so each step's packs are a random draw of its class);
//!    packs that stay off their class's median cost by over 0.5% either way (a sample long or
//!    short for its size) are matched in steps of their own (`match_costly_packs`). Steps of 2
//!    to [`STEP_BLOCK_MAX_PACKS`] packs are re-cut in blocks of [`STEP_BLOCK_PACKS`] packs
//!    (consecutive steps) in cost order, so each holds packs of about one cost (`step_block`).
//!    Each step is then fine-tuned unless its costliest pack is within 1/[`STEP_TOLERANCE`] of its mean:
//!    vision sums evened where they differ, then [`STEP_PASSES`] pairing passes and greedy swaps.
//!    Every pass costs O(m log m) for m packs, so planning costs O(n log n) whatever
//!    `dp x accum` is. Windows, and the steps cut in layout order, are independent and disjoint
//!    in memory, so worker threads take runs of them; the plan does not depend on how many.
//! 6. Ranks: with `accum > 1`, a step's micro-batches are dealt to ranks in snake order of
//!    (vision, cost) descending, so rank sums even out further.
//! 7. Order: the full steps in a random order (seed, epoch); the tail step last, under the tail
//!    policy (so a dropped tail is a random set of packs, not the smallest ones).

mod equalize;
mod layout;
mod pack;
mod split;
mod steps;
mod swaps;
mod tail;
#[cfg(test)]
mod tests;

pub use equalize::{
    EQUALIZE_GREEDY_MIN_STEP, EQUALIZE_GREEDY_SHARE, EQUALIZE_PASSES, EQUALIZE_WINDOW,
};
pub use layout::COUNTING_SORT_MAX;
pub(super) use pack::block_runs;
pub use pack::{PACK_BLOCK, REPAIR_MAX_VISION, SHUFFLE_CHUNKS};
pub use steps::{
    CHEAP_PACK_DIV, COSTLY_PACK_DIV, STEP_BLOCK_MAX_PACKS, STEP_BLOCK_PACKS, STEP_PASSES,
    STEP_TOLERANCE,
};
pub use swaps::{
    GREEDY_PARTNERS, GREEDY_SCAN, GREEDY_SWAPS, GROUPS_PER_THREAD, PAIR_PARTNERS, PAIR_SCAN_MAX,
    PAIR_SWAP_MAX_SAMPLES, RADIX_DIGIT_BITS, RADIX_SORT_MIN, SCAN_GAP_MAX, SMALL_SORT_MAX,
    STOP_CHECK_PACKS, SWAP_SCAN_MAX, VISION_SWAPS,
};
pub use tail::{check_carry, SPREAD_MIN_SHARE, SPREAD_PURPOSE};

use super::cost::TextCost;
use super::plan::{assemble, BatchPlan, Packs, Tail};
use super::samples::{Caps, DropReason, Samples};
use crate::error::Error;
use crate::permutation::shuffle;
use crate::progress::{checkpoint, Progress};
use crate::rng::Rng;
use equalize::equalize;
use layout::{ids_in_place, lay_out, sort_by_key_descending};
use pack::{pack, repack_part_filled};
use split::split_pool;
use steps::{match_costly_packs, tune_steps};
use swaps::Loads;
use tail::{spread_tail, take_tail, CarryIds};

/// Stream purpose of the step order (rounds use purposes `0..rounds`).
pub const STEP_ORDER_PURPOSE: u64 = (1 << 20) - 1;
/// Stream purpose of the choice of the tail's packs.
pub const TAIL_PURPOSE: u64 = (1 << 20) - 2;
/// Stream purpose of the random draw of packs into steps.
pub const DRAW_PURPOSE: u64 = (1 << 20) - 3;

/// What happens to a sample over a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// It gets a micro-batch of its own, in steps of such micro-batches matched across ranks
    /// (the default when the caps come from a wanted samples per pack).
    OwnMicroBatch,
    /// It is left out with its reason (the default for explicit caps: they are hard limits).
    Drop,
}

/// Parameters of [`balance_batches`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceParams {
    pub dp: u32,
    pub accum: u32,
    pub caps: Caps,
    /// A pack whose text reaches this is accepted even below the vision cap.
    pub min_text: u32,
    /// Packing rounds (default 4).
    pub rounds: u32,
    /// Packs open at once while packing (default 4).
    pub open_packs: u32,
    /// A pack within this many vision units of the cap is full (default 0: packs close at the
    /// vision cap exactly, so packs of one vision sum can be drawn into steps at random).
    pub vision_slack: u32,
    pub seed: u64,
    pub epoch: u64,
    pub cost: TextCost,
    pub tail: Tail,
    /// What happens to samples over a cap (default [`Oversize::Drop`]).
    pub oversize: Oversize,
    /// Worker threads (default 0: `OMNIBAL_THREADS`, else the machine's parallelism, at most
    /// [`MAX_THREADS`]). The plan is the same for any count.
    pub threads: usize,
}

impl BalanceParams {
    /// Defaults for everything but the shape, the caps and the seed.
    pub fn new(dp: u32, accum: u32, caps: Caps, seed: u64, epoch: u64) -> Self {
        BalanceParams {
            dp,
            accum,
            caps,
            min_text: caps.max_text.saturating_sub(128),
            rounds: 4,
            open_packs: 4,
            vision_slack: 0,
            seed,
            epoch,
            cost: TextCost::default(),
            tail: Tail::Drop,
            oversize: Oversize::Drop,
            threads: 0,
        }
    }
}

impl BalanceParams {
    /// Whether a pack of vision sum `v` and text `t` is full (closed): its vision within
    /// `vision_slack` of the vision cap (a cap of 0 closes nothing by vision), or its text at
    /// `min_text`.
    #[inline]
    fn closes(&self, v: u64, t: u64) -> bool {
        let cap_v = self.caps.max_vision as u64;
        (cap_v > 0 && v + self.vision_slack as u64 >= cap_v) || t >= self.min_text as u64
    }
}

/// A sample with its loads, as the packing phases carry it (so they read memory in order).
/// Plain words (`Pod`), so its buffers can be reused as buffers of other words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Rec {
    id: u32,
    v: u32,
    t: u32,
}

impl Rec {
    fn of(samples: &Samples, i: u32) -> Rec {
        Rec {
            id: i,
            v: samples.vision[i as usize],
            t: samples.text[i as usize],
        }
    }
}

/// The vision and text sums of a pack of records.
fn sums(pack: &[Rec]) -> (u64, u64) {
    pack.iter()
        .fold((0, 0), |(v, t), r| (v + r.v as u64, t + r.t as u64))
}

/// Each pack's vision sum, and whether it is part-filled (closed neither by vision, within the
/// slack of the cap, nor by text: what [`spread_tail`] deals), in pack order, in one pass over
/// the packs; threads take runs of packs (the same result). A pack's vision sum is within the
/// vision cap, a `u32` ([`pack_vision`]).
fn pack_sums(packs: &Packs<Rec>, p: &BalanceParams, threads: usize) -> (Vec<u32>, Vec<bool>) {
    let n = packs.len();
    let cap_v = p.caps.max_vision as u64;
    let mut vision = vec![0u32; n];
    let mut part = vec![false; n];
    let fill = |start: usize, vision: &mut [u32], part: &mut [bool]| {
        for (j, (vj, pj)) in vision.iter_mut().zip(part.iter_mut()).enumerate() {
            let (v, t) = sums(packs.get(start + j));
            *vj = pack_vision(v);
            *pj = cap_v > 0 && !p.closes(v, t);
        }
    };
    if threads <= 1 || n < PARALLEL_SUMS_MIN {
        fill(0, &mut vision, &mut part);
    } else {
        let per = n.div_ceil(threads);
        std::thread::scope(|scope| {
            for (g, (v, q)) in vision.chunks_mut(per).zip(part.chunks_mut(per)).enumerate() {
                let fill = &fill;
                scope.spawn(move || fill(g * per, v, q));
            }
        });
    }
    (vision, part)
}

/// A pack's vision sum as a `u32`: packs hold samples within the caps and never exceed the
/// vision cap (a `u32`), so this never saturates.
fn pack_vision(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Packs from which [`pack_sums`] runs on threads.
const PARALLEL_SUMS_MIN: usize = 1 << 14;

/// Worker threads of the equalizing and step phases: `OMNIBAL_THREADS` when set (1 turns
/// threading off), else the machine's parallelism, at most [`MAX_THREADS`]; read at the first
/// call (the binding makes it on the JavaScript thread). The plan does not
/// depend on it: threads take runs of independent windows or steps.
pub fn worker_threads() -> usize {
    // Read once: the environment is not read again from a worker thread, where a host process
    // changing its environment at the same time (Node's `process.env`) could race with it.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("OMNIBAL_THREADS")
            .ok()
            .and_then(|x| x.trim().parse::<usize>().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, MAX_THREADS)
    })
}

/// Most worker threads a plan uses.
pub const MAX_THREADS: usize = 8;
/// Fewest steps in a run that threads share (shorter runs are tuned on the calling thread).
pub const PARALLEL_MIN_STEPS: usize = 64;

/// Plans one epoch with the balanced strategy.
pub fn balance_batches(
    samples: &Samples,
    p: &BalanceParams,
    progress: &mut dyn Progress,
) -> Result<BatchPlan, Error> {
    balance_batches_with_carry(samples, p, &[], progress)
}

/// [`balance_batches`] with the previous epoch's carried tail (`carry`, sample indices, each at
/// most once; see [`check_carry`]): those samples are planned in addition to the epoch's own
/// (so they appear twice in the plan) and are kept out of this epoch's tail where the epoch
/// allows: the tail's packs are chosen among those holding no carried sample, and only when too
/// few are free of them among the others, never both copies of a sample (a carried copy in the
/// tail is carried again, or dropped under `drop`; see `take_tail`). Only an epoch with too few
/// packs for that (a tiny one, or over-cap samples short of a step) puts both copies of a sample
/// in its tail: it is carried once, and the other copy dropped with reason `tail`. Inside,
/// carried sample `j` is `n + j`; the plan gets their own indices back, and lists `carry` in
/// [`BatchPlan::carried`]. With an empty `carry` the plan is [`balance_batches`]'s.
pub fn balance_batches_with_carry(
    samples: &Samples,
    p: &BalanceParams,
    carry: &[u32],
    progress: &mut dyn Progress,
) -> Result<BatchPlan, Error> {
    if p.dp == 0 {
        return Err(Error::out_of_range("dp", "must be at least 1, got 0"));
    }
    if p.accum == 0 {
        return Err(Error::out_of_range("accum", "must be at least 1, got 0"));
    }
    if p.rounds == 0 {
        return Err(Error::out_of_range("rounds", "must be at least 1, got 0"));
    }
    if p.open_packs == 0 {
        return Err(Error::out_of_range(
            "openPacks",
            "must be at least 1, got 0",
        ));
    }
    let m = p.dp as u64 * p.accum as u64;
    if m > super::strategy::MAX_STEP_MICRO_BATCHES {
        return Err(super::strategy::step_too_large(p.dp, p.accum));
    }
    let m = m as usize;
    let n_own = samples.len();
    check_carry(carry, n_own)?;
    let carry_ids = CarryIds { n_own, carry };
    // Sample `i` with its loads; carried sample `j` is `n_own + j`.
    let rec = |i: u32| match (i as usize).checked_sub(n_own) {
        None => Rec::of(samples, i),
        Some(j) => Rec {
            id: i,
            ..Rec::of(samples, carry[j])
        },
    };
    let fits = |r: &Rec| p.caps.fits(r.v, r.t);
    let threads = if p.threads > 0 {
        p.threads.min(MAX_THREADS)
    } else {
        worker_threads()
    };
    // Over-cap samples: micro-batches of their own (even when none fits), or dropped.
    let (mut pool, over) = split_pool(samples, p.caps, carry.len(), threads);
    let (mut dropped, mut oversize) = if p.oversize == Oversize::OwnMicroBatch {
        (Vec::new(), over)
    } else {
        if pool.is_empty() {
            return Err(samples.none_fits(p.caps));
        }
        // An over-cap sample is over one cap or the other.
        let reason = |i: u32| {
            let i = i as usize;
            p.caps
                .over(samples.vision[i], samples.text[i])
                .unwrap_or(DropReason::TextOverCap)
        };
        (
            over.into_iter().map(|i| (i, reason(i))).collect(),
            Vec::new(),
        )
    };
    for (j, &i) in carry.iter().enumerate() {
        let r = rec((n_own + j) as u32);
        if fits(&r) {
            pool.push(r);
        } else if p.oversize == Oversize::OwnMicroBatch {
            oversize.push(r.id);
        } else {
            return Err(Error::out_of_range(
                "carry",
                format!(
                    "entry {j} is sample {i}, over the caps: an over-cap sample is dropped, never carried"
                ),
            ));
        }
    }
    let total = pool.len() as u64;
    // Cancellation: the threads check `stop` between blocks, windows and steps; this thread
    // checks it between phases (before a phase's report, so a stopped phase reports nothing,
    // and after it, for a listener that cancels as it is told).
    let cancel = progress.cancel_flag();
    let stop = cancel.as_deref();
    checkpoint(progress)?;
    let (mut packs, spare, accepted) = pack(pool, p, progress, total, threads, stop);
    checkpoint(progress)?;
    packs = repack_part_filled(packs, accepted, p);
    let before = packs.len();
    // Each pack's vision sum once, in order (the sorts below look them up at random).
    let (mut vision, part) = pack_sums(&packs, p, threads);
    let (packs, kept, lost) = spread_tail(packs, &part, p, m, oversize.len(), &carry_ids);
    drop(part);
    vision.extend((before..packs.len()).map(|k| pack_vision(sums(packs.get(k)).0)));
    dropped.extend(lost.into_iter().map(|i| (i, DropReason::Tail)));

    // Step 3 (layout): a random tail of `kept mod m` packs; the other kept packs in a random
    // order grouped by vision sum (descending); then the dealt packs (built step by step) by
    // vision sum; then the tail; then the over-cap samples, one per pack. The packs are renumbered
    // in this order, so each vision class is a run of consecutive packs and the steps cut from
    // it are runs too (every phase below reads memory in order).
    let mut drawn: Vec<u32> = kept;
    shuffle(
        &mut drawn,
        &mut Rng::for_epoch(p.seed, p.epoch, TAIL_PURPOSE),
    );
    // Over-cap samples short of a whole step (`over_left`) share a step with `m - over_left`
    // random packs (`mixed`), so the tail is made of packs within the caps: an over-cap sample
    // is trained every epoch, not dropped or carried out again and again. Only an epoch with
    // too few packs puts them in the tail.
    let over_left = oversize.len() % m;
    let tail_len = (drawn.len() + oversize.len()) % m;
    let (tail_len, mixed_len) = if over_left > 0 && drawn.len() >= tail_len + m - over_left {
        (tail_len, m - over_left)
    } else {
        (drawn.len() % m, 0)
    };
    let tail_old: Vec<u32> = if carry.is_empty() {
        drawn.split_off(drawn.len() - tail_len)
    } else {
        take_tail(&mut drawn, tail_len, &carry_ids, |k, out| {
            out.extend(packs.get(k as usize).iter().map(|x| x.id))
        })
    };
    let mixed = drawn.split_off(drawn.len() - mixed_len);
    shuffle(
        &mut drawn,
        &mut Rng::for_epoch(p.seed, p.epoch, DRAW_PURPOSE),
    );
    sort_by_key_descending(&mut drawn, &vision);
    let mut fresh: Vec<u32> = (before as u32..packs.len() as u32).collect();
    sort_by_key_descending(&mut fresh, &vision);
    drop(vision);
    let kept_end = drawn.len();
    let fresh_end = kept_end + fresh.len();
    let mixed_end = fresh_end + mixed.len();
    let normal = mixed_end + tail_old.len();
    // The longest text, and its cost (`max_sample` of the texts: theirs is the longest's).
    let max_text = samples.text.iter().copied().max();
    let max_cost = p.cost.max_sample(max_text.as_slice());
    let mut order_old = drawn;
    order_old.extend_from_slice(&fresh);
    order_old.extend_from_slice(&mixed);
    order_old.extend_from_slice(&tail_old);
    drop((fresh, mixed, tail_old));
    let oversize_recs: Vec<Rec> = oversize.iter().map(|&i| rec(i)).collect();
    checkpoint(progress)?;
    let (packs, mut sample_loads, mut pack_loads) = lay_out(
        packs,
        order_old,
        oversize_recs,
        spare,
        &p.cost,
        (max_text.unwrap_or(0), max_cost),
        threads,
    );
    let cap_t = p.caps.max_text as u64;
    checkpoint(progress)?;

    // Step 4: equalize each vision class.
    equalize(
        &packs,
        &mut sample_loads,
        &mut pack_loads,
        &[(0, kept_end), (kept_end, fresh_end)],
        m,
        cap_t,
        threads,
        stop,
    );
    checkpoint(progress)?;
    progress.report(total + total / 4, total * 2);
    checkpoint(progress)?;

    // Step 5: steps cut from the layout; costly and cheap packs matched in steps of their own.
    let full = Loads {
        p: &mut pack_loads,
        base: 0,
    };
    // Room for every pack the steps take, so the lists appended below never move it.
    let mut drawn = Vec::with_capacity(packs.len());
    drawn.extend(0..kept_end as u32);
    let mut drawn = match_costly_packs(drawn, &full, m);
    drawn.extend(kept_end as u32..fresh_end as u32);
    let mut tail: Vec<u32> = (mixed_end as u32..normal as u32).collect();
    // Pack `k`'s samples (the packs that can join the tail here were left as laid out: no swap
    // touched them).
    let ids = |k: u32, out: &mut Vec<u32>| {
        out.extend(sample_loads[packs.range(k as usize)].iter().map(|x| x.id))
    };
    // Over-cap samples: steps of their own, matched across ranks; the rest join the tail.
    let mut over: Vec<u32> = (normal as u32..packs.len() as u32).collect();
    over.sort_by_cached_key(|&k| full.key(k));
    if mixed_end > fresh_end {
        // The smallest over-cap ones short of a step, with the `mixed` packs.
        let left = over.split_off(over.len() - over_left);
        drawn.extend_from_slice(&over);
        drawn.extend(fresh_end as u32..mixed_end as u32);
        drawn.extend_from_slice(&left);
    } else {
        let r = over.len() % m;
        tail.extend(take_tail(&mut over, r, &carry_ids, ids));
        drawn.extend_from_slice(&over);
    }
    // A tail of a step or more (over-cap leftovers): whole steps of similar packs.
    if tail.len() >= m {
        tail.sort_by_cached_key(|&k| full.key(k));
        let r = tail.len() % m;
        let rest = take_tail(&mut tail, r, &carry_ids, ids);
        drawn.extend_from_slice(&tail);
        tail = rest;
    }
    let steps = drawn.len() / m;
    tune_steps(
        &packs,
        &mut sample_loads,
        &mut pack_loads,
        &mut drawn,
        m,
        normal,
        (p.caps.max_vision as u64, cap_t),
        threads,
        stop,
    );
    checkpoint(progress)?;
    progress.report(total + total / 4 + total * 3 / 4, total * 2);
    checkpoint(progress)?;

    // The packs' items, as the swaps left them.
    let mut packs = packs;
    packs.items = ids_in_place(sample_loads);
    let loads = Loads {
        p: &mut pack_loads,
        base: 0,
    };
    // Step 6: deal each step's packs to ranks; step 7: order the steps.
    let mut step_order: Vec<u32> = (0..steps as u32).collect();
    shuffle(
        &mut step_order,
        &mut Rng::for_epoch(p.seed, p.epoch, STEP_ORDER_PURPOSE),
    );
    let mut order = Vec::with_capacity(drawn.len() + tail.len());
    let mut dealt: Vec<u32> = Vec::with_capacity(m);
    let dp = p.dp as usize;
    // Snake order: position j (in (vision, cost) descending order) goes to rank j mod dp,
    // reversed on odd rounds; the positions rank by rank, the same for every step.
    let mut by_rank: Vec<(usize, usize)> = Vec::new();
    if p.accum > 1 {
        let rank_of = |j: usize| {
            if (j / dp).is_multiple_of(2) {
                j % dp
            } else {
                dp - 1 - j % dp
            }
        };
        by_rank = (0..m).map(|j| (rank_of(j), j)).collect();
        by_rank.sort_unstable();
    }
    for &s in &step_order {
        let step = &drawn[s as usize * m..(s as usize + 1) * m];
        if p.accum == 1 {
            order.extend_from_slice(step);
            continue;
        }
        dealt.clear();
        dealt.extend_from_slice(step);
        dealt.sort_unstable_by_key(|&k| loads.key(k));
        order.extend(by_rank.iter().map(|&(_, j)| dealt[j]));
    }
    order.extend_from_slice(&tail);
    drop((loads, drawn, tail, dealt));
    progress.report(total * 2, total * 2);
    let mut plan = assemble(
        &packs,
        &order,
        p.dp,
        p.accum,
        p.tail,
        true,
        Some(p.caps),
        dropped,
    )?;
    if !oversize.is_empty() {
        let mut gone = vec![false; n_own + carry.len()];
        for &(i, r) in &plan.dropped {
            if matches!(r, DropReason::Tail | DropReason::Carried) {
                gone[i as usize] = true;
            }
        }
        plan.oversize = oversize
            .into_iter()
            .filter(|&i| !gone[i as usize])
            .collect();
    }
    if !carry.is_empty() {
        // A sample with both copies in the tail (a tiny epoch): carried once, the carried-in
        // copy dropped as tail.
        let mut gone = vec![false; n_own];
        for &(i, r) in &plan.dropped {
            if (i as usize) < n_own && r == DropReason::Carried {
                gone[i as usize] = true;
            }
        }
        for (i, r) in plan.dropped.iter_mut() {
            if let Some(j) = (*i as usize).checked_sub(n_own) {
                if *r == DropReason::Carried && gone[carry[j] as usize] {
                    *r = DropReason::Tail;
                }
            }
        }
        // Carried samples get their own indices back.
        let own = |i: &mut u32| {
            if let Some(j) = (*i as usize).checked_sub(n_own) {
                *i = carry[j];
            }
        };
        plan.samples.iter_mut().for_each(own);
        plan.oversize.iter_mut().for_each(own);
        plan.oversize.sort_unstable();
        plan.dropped.iter_mut().for_each(|(i, _)| own(i));
        plan.dropped.sort_unstable();
        plan.carried = carry.to_vec();
    }
    Ok(plan)
}
