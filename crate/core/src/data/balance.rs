//! The balanced planner, this package's default: within every step, every micro-batch (and so
//! every rank) carries the same vision load and the same text cost, without padding, while each
//! step's packs are drawn at random, so steps look like i.i.d. draws of the data.
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
//!    of a step get matched ones. With [`Oversize::Drop`] (explicit caps) they are dropped and
//!    reported.
//! 3. Layout: `packs mod (dp * accum)` packs, chosen at random, form the tail (under `drop`,
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
//!    short for its size) are matched in steps of their own (`match_costly_packs`). Each step is
//!    then fine-tuned unless its costliest pack is within 1/[`STEP_TOLERANCE`] of its mean:
//!    vision sums evened where they differ, then [`STEP_PASSES`] pairing passes and greedy swaps.
//!    Every pass costs O(m log m) for m packs, so planning costs O(n log n) whatever
//!    `dp x accum` is. Windows, and the steps cut in layout order, are independent and disjoint
//!    in memory, so worker threads take runs of them; the plan does not depend on how many.
//! 6. Ranks: with `accum > 1`, a step's micro-batches are dealt to ranks in snake order of
//!    (vision, cost) descending, so rank sums even out further.
//! 7. Order: the full steps in a random order (seed, epoch); the tail step last, under the tail
//!    policy (so a dropped tail is a random set of packs, not the smallest ones).

use super::cost::TextCost;
use super::plan::{assemble, BatchPlan, Packs, Tail};
use super::samples::{Caps, DropReason, Samples};
use crate::error::Error;
use crate::permutation::shuffle;
use crate::progress::Progress;
use crate::rng::Rng;
use std::cmp::Reverse;

/// Stream purpose of the step order (rounds use purposes `0..rounds`).
pub const STEP_ORDER_PURPOSE: u64 = (1 << 20) - 1;
/// Stream purpose of the choice of the tail's packs.
pub const TAIL_PURPOSE: u64 = (1 << 20) - 2;
/// Stream purpose of the random draw of packs into steps.
pub const DRAW_PURPOSE: u64 = (1 << 20) - 3;
/// Pairing passes over each equalizing window (step 4).
pub const EQUALIZE_PASSES: u32 = 4;
/// Packs per equalizing window (a random sample of a vision class that stays in cache).
pub const EQUALIZE_WINDOW: usize = 8192;
/// Greedy swaps over each equalizing window after its pairing passes: one per this many packs (+32).
pub const EQUALIZE_GREEDY_SHARE: usize = 8;
/// Micro-batches per step from which equalizing windows get their greedy swaps (in smaller steps
/// the step tuning does that work: on 1.2M samples the greedy left p50 and p99 as they were up
/// to 1,024 and cut p99 from 3.7% to 2.3% at 4,096, at 13% of the planner's work).
pub const EQUALIZE_GREEDY_MIN_STEP: usize = 2048;
/// Pairing passes inside each step (step 5).
pub const STEP_PASSES: u32 = 2;
/// A step whose costliest pack is within 1/this of the step's mean is not tuned further.
pub const STEP_TOLERANCE: u64 = 2048;

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

/// A sample with its loads, as the packing phases carry it (so they read memory in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

struct OpenPack {
    items: Vec<Rec>,
    v: u64,
    t: u64,
}

/// Samples per packing block: each round shuffles its pool in blocks of about this many and
/// packs each block on its own (a block stays in cache, and blocks run on worker threads).
pub const PACK_BLOCK: usize = 1 << 16;

/// Most input chunks [`shuffle_in_blocks`] cuts a pool into.
pub const SHUFFLE_CHUNKS: usize = 64;

/// Shuffles `pool` uniformly at random for `rng`, in blocks of about [`PACK_BLOCK`] samples,
/// and returns the blocks' bounds (`k + 1` positions, `k = ceil(n / PACK_BLOCK)`). One block: a
/// plain Fisher-Yates shuffle with `rng`. Otherwise the pool is cut into `c = min(k,
/// SHUFFLE_CHUNKS)` chunks (chunk `j` is `[j n / c, (j + 1) n / c)`), and with `base` two words
/// of `rng` (the low 32 bits, then 21 more), each chunk, on stream `j` of `base`
/// ([`Rng::for_stream`]), is Fisher-Yates shuffled and then draws, for each of its samples in
/// turn, a block (`below(k)`): only the counts are kept, and the chunk's shuffled samples go to
/// the blocks in runs (the first `count[j][0]` to block 0, and so on). Block `b` takes its runs
/// chunk by chunk and is then Fisher-Yates shuffled on stream `c + b`. Each sample lands in a
/// uniformly random block, in a uniformly random order within it: a uniformly random order, as
/// a one-block shuffle gives. Chunks and blocks are independent: threads take runs of them (the
/// result does not depend on how many).
fn shuffle_in_blocks(pool: &mut Vec<Rec>, rng: &mut Rng, threads: usize) -> Vec<usize> {
    let n = pool.len();
    let k = n.div_ceil(PACK_BLOCK);
    if k <= 1 {
        shuffle(pool, rng);
        return vec![0, n];
    }
    let base = rng.next_u32() as u64 | ((rng.next_u32() >> 11) as u64) << 32;
    let c = k.min(SHUFFLE_CHUNKS);
    let chunks: Vec<usize> = (0..=c).map(|j| j * n / c).collect();
    // Each chunk shuffled in place, and its samples' block counts (`counts[j * k + b]`).
    let mut counts = vec![0u32; c * k];
    let rows: Vec<usize> = (0..=c).map(|j| j * k).collect();
    let shuffle_chunks = |first: usize, last: usize, items: &mut [Rec], count: &mut [u32]| {
        for j in first..last {
            let mut r = Rng::for_stream(base, j as u64);
            let items = &mut items[chunks[j] - chunks[first]..chunks[j + 1] - chunks[first]];
            shuffle(items, &mut r);
            let count = &mut count[(j - first) * k..(j - first + 1) * k];
            for _ in 0..items.len() {
                count[r.below(k as u32) as usize] += 1;
            }
        }
    };
    let parallel = threads > 1;
    if parallel {
        let runs = block_runs(pool, &chunks, threads);
        std::thread::scope(|scope| {
            for ((first, last, items), (_, _, count)) in
                runs.into_iter()
                    .zip(block_runs(&mut counts, &rows, threads))
            {
                let shuffle_chunks = &shuffle_chunks;
                scope.spawn(move || shuffle_chunks(first, last, items, count));
            }
        });
    } else {
        shuffle_chunks(0, c, pool, &mut counts);
    }
    // Where each chunk's run for each block starts (in the chunk), and the blocks' bounds.
    let mut starts = vec![0usize; c * k];
    for j in 0..c {
        let mut at = chunks[j];
        for b in 0..k {
            starts[j * k + b] = at;
            at += counts[j * k + b] as usize;
        }
    }
    let mut bounds = vec![0usize; k + 1];
    for b in 0..k {
        bounds[b + 1] = bounds[b] + (0..c).map(|j| counts[j * k + b] as usize).sum::<usize>();
    }
    // Blocks `[first, last)` gathered into `out` (from `bounds[first]` on) and shuffled.
    let source = &pool[..];
    let fill = |first: usize, last: usize, out: &mut [Rec]| {
        let mut at = 0;
        for b in first..last {
            let begin = at;
            for j in 0..c {
                let (s, len) = (starts[j * k + b], counts[j * k + b] as usize);
                out[at..at + len].copy_from_slice(&source[s..s + len]);
                at += len;
            }
            shuffle(
                &mut out[begin..at],
                &mut Rng::for_stream(base, (c + b) as u64),
            );
        }
    };
    let mut out = vec![Rec { id: 0, v: 0, t: 0 }; n];
    if parallel {
        std::thread::scope(|scope| {
            for (first, last, mine) in block_runs(&mut out, &bounds, threads) {
                let fill = &fill;
                scope.spawn(move || fill(first, last, mine));
            }
        });
    } else {
        fill(0, k, &mut out);
    }
    *pool = out;
    bounds
}

/// A block bound for [`block_runs`]: an offset into the items (plans store them as `u32`).
pub(super) trait Bound: Copy {
    fn at(self) -> usize;
}

impl Bound for usize {
    fn at(self) -> usize {
        self
    }
}

impl Bound for u32 {
    fn at(self) -> usize {
        self as usize
    }
}

/// `items` cut at `bounds` (`bounds[0] = 0`, the last is `items.len()`) into blocks, and the
/// blocks into up to `threads` runs of consecutive ones: each run's blocks `first..last` and
/// items, for worker threads.
pub(super) fn block_runs<'a, T, B: Bound>(
    items: &'a mut [T],
    bounds: &[B],
    threads: usize,
) -> Vec<(usize, usize, &'a mut [T])> {
    let k = bounds.len() - 1;
    let per = k.div_ceil(threads.max(1)).max(1);
    let mut runs = Vec::new();
    let mut rest = items;
    for first in (0..k).step_by(per) {
        let last = (first + per).min(k);
        let len = bounds[last].at() - bounds[first].at();
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        runs.push((first, last, mine));
    }
    runs
}

/// What [`pack_block`] leaves: samples packed, each pack's end, samples for the next round.
type PackedBlock = (usize, Vec<u32>, Vec<Rec>);

/// One block of a packing round, packed first fit over up to `open_packs` open packs, in place:
/// the block's packed samples are moved to its front, pack after pack in acceptance order
/// (a closed pack's samples were all read before it is written, so writing never passes
/// reading). Returns how many samples were packed, each pack's end (from the block's start), and
/// the samples left for the next round (none in the last round: its open packs are packs too).
fn pack_block(block: &mut [Rec], last: bool, p: &BalanceParams) -> PackedBlock {
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let slack = p.vision_slack as u64;
    let accept = |v: u64, t: u64| (cap_v > 0 && v + slack >= cap_v) || t >= p.min_text as u64;
    let mut written = 0usize;
    let mut ends: Vec<u32> = Vec::with_capacity(block.len() / 4 + 1);
    let put = |block: &mut [Rec], written: &mut usize, ends: &mut Vec<u32>, items: &[Rec]| {
        block[*written..*written + items.len()].copy_from_slice(items);
        *written += items.len();
        ends.push(*written as u32);
    };
    let mut open: Vec<OpenPack> = Vec::with_capacity(p.open_packs as usize);
    // Closed packs' item buffers, reused by the packs opened later (no allocation per pack).
    let mut spare: Vec<Vec<Rec>> = Vec::new();
    let mut rest = Vec::new();
    for r in 0..block.len() {
        let i = block[r];
        let (sv, st) = (i.v as u64, i.t as u64);
        match open
            .iter()
            .position(|b| b.v + sv <= cap_v && b.t + st <= cap_t)
        {
            Some(k) => {
                let b = &mut open[k];
                b.items.push(i);
                b.v += sv;
                b.t += st;
                if accept(b.v, b.t) {
                    let closed = open.remove(k).items;
                    put(block, &mut written, &mut ends, &closed);
                    spare.push(closed);
                }
            }
            None => {
                if open.len() == p.open_packs as usize {
                    let evicted = open.remove(0).items;
                    if last {
                        put(block, &mut written, &mut ends, &evicted);
                    } else {
                        rest.extend_from_slice(&evicted);
                    }
                    spare.push(evicted);
                }
                if accept(sv, st) {
                    put(block, &mut written, &mut ends, &[i]);
                } else {
                    let mut items = spare.pop().unwrap_or_default();
                    items.clear();
                    items.push(i);
                    open.push(OpenPack {
                        items,
                        v: sv,
                        t: st,
                    });
                }
            }
        }
    }
    for b in open.drain(..) {
        if last {
            put(block, &mut written, &mut ends, &b.items);
        } else {
            rest.extend_from_slice(&b.items);
        }
    }
    (written, ends, rest)
}

/// Step 1: packs, in acceptance order. Each of up to `rounds` rounds shuffles what is left
/// ([`shuffle_in_blocks`]) and packs it block by block ([`pack_block`]): the blocks' packs in
/// block order, their leftovers (in block order) the next round's pool. Blocks are independent:
/// threads take runs of them (the packs do not depend on how many).
fn pack(
    pool: Vec<Rec>,
    p: &BalanceParams,
    progress: &mut dyn Progress,
    total: u64,
    threads: usize,
) -> Packs<Rec> {
    let mut out: Packs<Rec> = Packs::new();
    let mut pool = pool;
    for round in 0..p.rounds {
        let bounds = shuffle_in_blocks(
            &mut pool,
            &mut Rng::for_epoch(p.seed, p.epoch, round as u64),
            threads,
        );
        let last = round + 1 == p.rounds;
        let blocks = bounds.len() - 1;
        let mut done: Vec<PackedBlock> = Vec::with_capacity(blocks);
        if threads <= 1 || blocks < 2 {
            for b in 0..blocks {
                done.push(pack_block(&mut pool[bounds[b]..bounds[b + 1]], last, p));
            }
        } else {
            let runs: Vec<Vec<PackedBlock>> = std::thread::scope(|scope| {
                let mut handles = Vec::new();
                for (first, end, mine) in block_runs(&mut pool, &bounds, threads) {
                    let bounds = &bounds;
                    handles.push(scope.spawn(move || {
                        (first..end)
                            .map(|b| {
                                let range =
                                    bounds[b] - bounds[first]..bounds[b + 1] - bounds[first];
                                pack_block(&mut mine[range], last, p)
                            })
                            .collect::<Vec<_>>()
                    }));
                }
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a packing thread panicked"))
                    .collect()
            });
            done.extend(runs.into_iter().flatten());
        }
        // The blocks' packs, in block order: moved down in place in the first round (whose pool
        // becomes the packs' buffer), appended in later rounds.
        let mut next = Vec::new();
        let reuse = out.items.is_empty();
        let mut at = 0usize;
        for (b, (written, ends, rest)) in done.into_iter().enumerate() {
            let base = if reuse { at } else { out.items.len() } as u32;
            if reuse {
                pool.copy_within(bounds[b]..bounds[b] + written, at);
            } else {
                out.items
                    .extend_from_slice(&pool[bounds[b]..bounds[b] + written]);
            }
            at += written;
            out.offsets.extend(ends.iter().map(|&e| base + e));
            next.extend_from_slice(&rest);
        }
        if reuse {
            pool.truncate(at);
            out.items = std::mem::replace(&mut pool, next);
        } else {
            pool = next;
        }
        progress.report(total - pool.len() as u64, total * 2);
        if pool.is_empty() {
            break;
        }
    }
    out
}

/// Step 1b: re-packs the samples of the packs that closed neither by vision nor by text (the
/// last round's leftovers) best-fit decreasing, so that they fill the vision cap exactly where
/// the data allows instead of forming classes of part-filled packs that mix into steps. Samples
/// in (vision, text) descending order, index ascending; each joins the open pack of least vision
/// room that takes it (only the most recent pack of each room is tried), else opens one. Full
/// packs keep their order; re-packed ones follow. Runs when `0 < cap_v <= REPAIR_MAX_VISION`.
fn repack_part_filled(packs: Packs<Rec>, p: &BalanceParams) -> Packs<Rec> {
    let cap_v = p.caps.max_vision as u64;
    if cap_v == 0 || cap_v > REPAIR_MAX_VISION {
        return packs;
    }
    let slack = p.vision_slack as u64;
    let accept = |v: u64, t: u64| v + slack >= cap_v || t >= p.min_text as u64;
    // The accepted packs moved down in place, in order (no copy of the pool): pack `k`'s range
    // is read before any write reaches offset `k`, and writes never pass the reads.
    let mut out = packs;
    let mut loose: Vec<Rec> = Vec::new();
    let (mut kept, mut end) = (0, 0);
    for k in 0..out.len() {
        let r = out.range(k);
        let (v, t) = sums(&out.items[r.clone()]);
        if accept(v, t) {
            out.items.copy_within(r.clone(), end);
            end += r.len();
            kept += 1;
            out.offsets[kept] = end as u32;
        } else {
            loose.extend_from_slice(&out.items[r]);
        }
    }
    out.items.truncate(end);
    out.offsets.truncate(kept + 1);
    if loose.is_empty() {
        return out;
    }
    // First in the packs' (random) order, so re-packed packs mix sizes; what stays part-filled
    // is re-packed once more in decreasing order, which fills the cap wherever the sizes allow.
    let mut rest = Vec::new();
    best_fit(&loose, p, &mut out, Some(&mut rest));
    rest.sort_by_key(|r| (Reverse(r.v), Reverse(r.t), r.id));
    best_fit(&rest, p, &mut out, None);
    out
}

/// Packs `items` in order, best fit by vision room (see [`repack_part_filled`]); full packs go
/// to `out` as they fill; the packs left part-filled go to `rest` as loose samples when given,
/// else to `out` too.
fn best_fit(
    items: &[Rec],
    p: &BalanceParams,
    out: &mut Packs<Rec>,
    mut rest: Option<&mut Vec<Rec>>,
) {
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let slack = p.vision_slack as u64;
    let accept = |v: u64, t: u64| v + slack >= cap_v || t >= p.min_text as u64;
    let mut bins: Vec<OpenPack> = Vec::new();
    let mut closed: Vec<bool> = Vec::new();
    // by_room[r]: open packs with vision room r, most recent last; `rooms`: the r that have one,
    // so a sample visits only rooms that hold a pack (a scan of every room from its size up
    // cost O(cap) per sample: minutes on a million samples whose sizes cannot fill the cap).
    let mut by_room: Vec<Vec<u32>> = vec![Vec::new(); cap_v as usize + 1];
    let mut rooms = RoomSet::new(cap_v as usize + 1);
    for &i in items {
        let (sv, st) = (i.v as u64, i.t as u64);
        let mut into = None;
        let mut at = rooms.next_at_or_after(sv as usize);
        while let Some(room) = at {
            let b = *by_room[room]
                .last()
                .expect("a room in the set holds a pack");
            if bins[b as usize].t + st <= cap_t {
                by_room[room].pop();
                if by_room[room].is_empty() {
                    rooms.remove(room);
                }
                into = Some(b as usize);
                break;
            }
            at = rooms.next_at_or_after(room + 1);
        }
        let b = match into {
            Some(b) => {
                let bin = &mut bins[b];
                bin.items.push(i);
                bin.v += sv;
                bin.t += st;
                b
            }
            None => {
                bins.push(OpenPack {
                    items: vec![i],
                    v: sv,
                    t: st,
                });
                closed.push(false);
                bins.len() - 1
            }
        };
        if accept(bins[b].v, bins[b].t) {
            closed[b] = true;
            out.push(&bins[b].items);
        } else {
            let room = (cap_v - bins[b].v.min(cap_v)) as usize;
            by_room[room].push(b as u32);
            rooms.insert(room);
        }
    }
    for (b, bin) in bins.iter().enumerate() {
        if !closed[b] {
            match rest.as_deref_mut() {
                Some(r) => r.extend_from_slice(&bin.items),
                None => out.push(&bin.items),
            }
        }
    }
}

/// A set of integers below a bound, as a two-level bitset: [`RoomSet::next_at_or_after`] reads
/// at most one word per 4,096 integers (the TypeScript twin has the same set).
struct RoomSet {
    /// Bit `r % 64` of word `r / 64`: `r` is in the set.
    words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64`: word `w` of `words` is not zero.
    summary: Vec<u64>,
}

impl RoomSet {
    fn new(bound: usize) -> Self {
        let words = bound.div_ceil(64);
        RoomSet {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }

    fn insert(&mut self, r: usize) {
        self.words[r / 64] |= 1 << (r % 64);
        self.summary[r / 4096] |= 1 << ((r / 64) % 64);
    }

    fn remove(&mut self, r: usize) {
        self.words[r / 64] &= !(1 << (r % 64));
        if self.words[r / 64] == 0 {
            self.summary[r / 4096] &= !(1 << ((r / 64) % 64));
        }
    }

    /// The least member `>= r`, if any.
    fn next_at_or_after(&self, r: usize) -> Option<usize> {
        let w = r / 64;
        let bits = self.words.get(w)? & (u64::MAX << (r % 64));
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        // The first non-zero word after `w`.
        let w = w + 1;
        let mut s = w / 64;
        let mut bits = self.summary.get(s)? & (u64::MAX << (w % 64));
        while bits == 0 {
            s += 1;
            bits = *self.summary.get(s)?;
        }
        let w = s * 64 + bits.trailing_zeros() as usize;
        Some(w * 64 + self.words[w].trailing_zeros() as usize)
    }
}

/// Step 1c: no lost tail, no part-filled leftovers. With tail policy `drop`, the
/// `packs mod (dp * accum)` packs that cannot fill a step (`r`, chosen at random) are not
/// dropped: their samples, those of the packs still part-filled after [`repack_part_filled`]
/// (`p`) and of `e` random full packs are dealt into `p + e + m` packs (`p + e` a multiple of
/// `m`, at least `3 m - 4 r`, so the new packs are at least about 3/4 full): one more step, and
/// a few steps of smaller packs that the step order spreads over the epoch. With another tail
/// policy (or none to place) only the part-filled packs and `e` full ones are dealt, into
/// `p + e` packs. Dealing: samples in (vision, text) descending order, each to the pack of most
/// room under its target, then least text, that takes it under the text cap (longest processing
/// time first). With `drop` every new step's packs share one vision target (the steps' targets
/// as even as whole units allow), so ranks stay matched; the few samples that reach no target
/// (under `m` vision units in all) are dropped as tail. Otherwise the target is the vision cap.
/// Returns the packs (the dealt ones left in place, unused; the new ones appended, step by
/// step), the ids of the old ones still in use and the samples dropped; unchanged when `packs < m`, when there are too few full packs, or (not
/// `drop`) when a sample fits nowhere. With `drop`, packs holding a carried sample (`c`) are
/// never dealt, so no carried copy is dropped here.
fn spread_tail(
    packs: Packs<Rec>,
    p: &BalanceParams,
    m: usize,
    c: &CarryIds,
) -> (Packs<Rec>, Vec<u32>, Vec<u32>) {
    let n = packs.len();
    let all: Vec<u32> = (0..n as u32).collect();
    if n < m {
        return (packs, all, Vec::new());
    }
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let slack = p.vision_slack as u64;
    let part_filled = |k: u32| {
        let (v, t) = sums(packs.get(k as usize));
        cap_v > 0 && v + slack < cap_v && t < p.min_text as u64
    };
    let mut order = all.clone();
    shuffle(
        &mut order,
        &mut Rng::for_epoch(p.seed, p.epoch, SPREAD_PURPOSE),
    );
    let r = if p.tail == Tail::Drop { n % m } else { 0 };
    // With `drop` the dealing can leave samples out: never a carried sample's copy (its packs
    // are kept as they are).
    if r > 0 && !c.carry.is_empty() {
        order.retain(|&k| !packs.get(k as usize).iter().any(|x| c.is_carried(x.id)));
        if order.len() < r {
            return (packs, all, Vec::new());
        }
    }
    let (head, tail) = order.split_at(order.len() - r);
    // Each pack's sums once, in pack order.
    let is_part: Vec<bool> = (0..n as u32).map(part_filled).collect();
    let part: Vec<u32> = head
        .iter()
        .copied()
        .filter(|&k| is_part[k as usize])
        .collect();
    if r == 0 && part.is_empty() {
        return (packs, all, Vec::new());
    }
    let need = (if r > 0 {
        (3 * m).saturating_sub(4 * r)
    } else {
        0
    })
    .max(part.len())
    .max(1);
    let pe = need.div_ceil(m) * m;
    let full: Vec<u32> = head
        .iter()
        .copied()
        .filter(|&k| !is_part[k as usize])
        .collect();
    if pe - part.len() > full.len() {
        return (packs, all, Vec::new());
    }
    let mut dealt: Vec<u32> = tail.to_vec();
    dealt.extend_from_slice(&part);
    dealt.extend_from_slice(&full[..pe - part.len()]);
    let bins = pe + if r > 0 { m } else { 0 };
    // Only where the new steps are a small share of the epoch: their make-up differs a little
    // (samples short of a target are the smallest), which a handful of steps would show.
    if (n - r - pe + bins) / m < SPREAD_MIN_SHARE * (bins / m) {
        return (packs, all, Vec::new());
    }
    let mut items: Vec<Rec> = dealt
        .iter()
        .flat_map(|&k| packs.get(k as usize).iter().copied())
        .collect();
    if items.len() < bins {
        return (packs, all, Vec::new());
    }
    // By vision, descending; within a size in the packs' random order, so that each new pack
    // draws a random mix of lengths and datasets.
    items.sort_by_key(|r| Reverse(r.v));
    // Targets: with `drop`, each new step's packs get one vision sum, the steps' sums as even
    // as whole units allow (what cannot reach a target, under `m` units in all, is dropped);
    // otherwise only the vision cap.
    let exact = p.tail == Tail::Drop;
    let total_v: u64 = items.iter().map(|r| r.v as u64).sum();
    let steps = (bins / m) as u64;
    let per_step = total_v / m as u64;
    let target: Vec<i64> = (0..bins)
        .map(|b| {
            if !exact {
                return cap_v as i64;
            }
            let s = (b / m) as u64;
            (per_step / steps + u64::from(s < per_step % steps)).min(cap_v) as i64
        })
        .collect();
    // Most room first (vision sum minus target), then least text.
    let mut heap: std::collections::BinaryHeap<Reverse<(i64, u64, u32)>> = (0..bins as u32)
        .map(|b| Reverse((-target[b as usize], 0, b)))
        .collect();
    let mut members: Vec<Vec<Rec>> = vec![Vec::new(); bins];
    let mut lost = Vec::new();
    let mut skipped = Vec::new();
    for &i in &items {
        let (sv, st) = (i.v as i64, i.t as u64);
        let mut placed = false;
        while let Some(Reverse((over, t, b))) = heap.pop() {
            skipped.push(Reverse((over, t, b)));
            if over + sv > 0 {
                break; // no pack has more room
            }
            if t + st <= cap_t {
                skipped.pop();
                members[b as usize].push(i);
                heap.push(Reverse((over + sv, t + st, b)));
                placed = true;
                break;
            }
        }
        heap.extend(skipped.drain(..));
        if !placed {
            if !exact {
                return (packs, all, Vec::new());
            }
            lost.push(i.id);
        }
    }
    // Never lose more than dropping the tail would have (text-heavy data can leave more
    // samples short of a target than the tail held).
    let tail_samples: usize = tail.iter().map(|&k| packs.get(k as usize).len()).sum();
    if members.iter().any(|b| b.is_empty()) || lost.len() > tail_samples {
        return (packs, all, Vec::new());
    }
    let mut gone = vec![false; n];
    for &k in &dealt {
        gone[k as usize] = true;
    }
    let kept: Vec<u32> = (0..n as u32).filter(|&k| !gone[k as usize]).collect();
    let mut packs = packs;
    for b in &members {
        packs.push(b);
    }
    lost.sort_unstable();
    (packs, kept, lost)
}

/// [`spread_tail`] runs when the epoch has at least this many steps per new step.
pub const SPREAD_MIN_SHARE: usize = 128;
/// Stream purpose of the random choice of the packs [`spread_tail`] deals.
pub const SPREAD_PURPOSE: u64 = (1 << 20) - 4;
/// Stream purpose of the random order of packs within a vision class.
pub const LAYOUT_PURPOSE: u64 = (1 << 20) - 5;

/// Largest vision cap [`repack_part_filled`] runs at (its memory, and the cost of finding a
/// pack with room, about one word per 4,096 units, grow with the cap).
pub const REPAIR_MAX_VISION: u64 = 1 << 16;

/// Per-pack sums, side by side: a view of packs `base..base + p.len()` (a thread's share).
struct Loads<'a> {
    p: &'a mut [PackLoad],
    base: usize,
}

impl std::ops::Index<usize> for Loads<'_> {
    type Output = PackLoad;
    fn index(&self, k: usize) -> &PackLoad {
        &self.p[k - self.base]
    }
}

impl std::ops::IndexMut<usize> for Loads<'_> {
    fn index_mut(&mut self, k: usize) -> &mut PackLoad {
        &mut self.p[k - self.base]
    }
}

/// One pack's sums: vision, cost weight, text.
#[derive(Clone, Copy)]
struct PackLoad {
    v: u64,
    w: u64,
    t: u64,
}

impl Loads<'_> {
    /// Order of matched packs: vision, then cost, descending; then index.
    fn key(&self, k: u32) -> (Reverse<u64>, Reverse<u64>, u32) {
        let x = self[k as usize];
        (Reverse(x.v), Reverse(x.w), k)
    }
}

/// The swap rules, with each packed sample's loads stored alongside `packs.items` (same
/// positions, swapped together) so swaps read memory in order.
struct SwapRules<'a> {
    /// Vision, cost weight and text of the sample at each position of `packs.items` from
    /// `base` on, side by side (a thread's share: the items of its packs).
    s: &'a mut [SampleLoad],
    base: usize,
    cap_t: u64,
    /// Scratch: the pairs of a pack (see [`SwapRules::swap_pairs`]).
    pairs: Vec<PairLoad>,
    /// Scratch: (cost, pack) keys being sorted, and a heap's entries (kept between calls).
    keys: Vec<(u64, u32)>,
    /// Scratch: a large pack's samples as (vision, cost, text, position), sorted.
    sorted: Vec<(u32, u32, u32, u32)>,
    words: Vec<u64>,
    heap: Vec<(u64, u32)>,
}

/// Two samples of one pack, summed, with their positions.
#[derive(Clone, Copy)]
struct PairLoad {
    v: u32,
    w: u64,
    t: u64,
    at: [u32; 2],
}

/// Largest key [`sort_by_key_descending`] counts (larger ones are compared).
pub const COUNTING_SORT_MAX: u64 = 1 << 20;

/// Sorts `list` (indices into `key`) by key, descending, keeping the order of equal keys: by
/// counting when the keys are small (pack vision sums are at most the vision cap), else by
/// comparison (the same order).
fn sort_by_key_descending(list: &mut [u32], key: &[u64]) {
    let max = list.iter().map(|&k| key[k as usize]).max().unwrap_or(0);
    if max > COUNTING_SORT_MAX {
        list.sort_by_cached_key(|&k| Reverse(key[k as usize]));
        return;
    }
    let rank = |k: u32| (max - key[k as usize]) as usize;
    let mut start = vec![0usize; max as usize + 2];
    for &k in list.iter() {
        start[rank(k) + 1] += 1;
    }
    for r in 0..=max as usize {
        start[r + 1] += start[r];
    }
    let mut out = vec![0u32; list.len()];
    for &k in list.iter() {
        let r = rank(k);
        out[start[r]] = k;
        start[r] += 1;
    }
    list.copy_from_slice(&out);
}

/// Word `q` of `loads` read as a flat sequence of words (four per entry, in field order).
fn word(loads: &mut [SampleLoad], q: usize) -> &mut u32 {
    let x = &mut loads[q / 4];
    match q % 4 {
        0 => &mut x.w,
        1 => &mut x.v,
        2 => &mut x.t,
        _ => &mut x.id,
    }
}

/// Word `q` of `loads` (as [`word`] numbers them), read.
fn word_of(loads: &[SampleLoad], q: usize) -> u32 {
    let x = &loads[q / 4];
    [x.w, x.v, x.t, x.id][q % 4]
}

/// Packs whose first records the layout's gather reads before copying any of them, so that
/// their cache misses overlap instead of waiting one after another.
const GATHER_BATCH: usize = 16;

/// Samples from which the layout widens its records into loads on threads.
const PARALLEL_WIDEN_MIN: usize = 1 << 16;

/// One packed sample's loads (see [`SwapRules`]).
#[derive(Clone, Copy)]
struct SampleLoad {
    w: u32,
    v: u32,
    t: u32,
    /// The sample's index (the packs' items are written from these at the end).
    id: u32,
}

impl SwapRules<'_> {
    /// Sorts `group` (pack indices) by (cost, index), on keys gathered once (the same order as
    /// sorting by looking the costs up: the keys are unique).
    fn sort_by_cost(&mut self, loads: &Loads<'_>, group: &mut [u32]) {
        if group.iter().all(|&k| loads[k as usize].w >> 32 == 0) {
            // One word per key (cost above the index): compares faster, the same order.
            let words = &mut self.words;
            words.clear();
            words.extend(group.iter().map(|&k| loads[k as usize].w << 32 | k as u64));
            words.sort_unstable();
            for (g, &x) in group.iter_mut().zip(words.iter()) {
                *g = x as u32;
            }
            return;
        }
        let keys = &mut self.keys;
        keys.clear();
        keys.extend(group.iter().map(|&k| (loads[k as usize].w, k)));
        keys.sort_unstable();
        for (g, &(_, k)) in group.iter_mut().zip(keys.iter()) {
            *g = k;
        }
    }

    /// Pack `k`'s positions in this view's `s`.
    fn at(&self, packs: &Packs, k: usize) -> std::ops::Range<usize> {
        let r = packs.range(k);
        r.start - self.base..r.end - self.base
    }

    /// The one swap of equal-vision samples between packs `hi` and `lo` (`hi` costlier) that
    /// brings their costs closest to each other, keeping `lo` under the text cap; made, if any.
    /// Ties: the first in (position in `hi`, position in `lo`) order.
    fn swap(&mut self, packs: &Packs, loads: &mut Loads<'_>, hi: usize, lo: usize) -> bool {
        let gap = loads[hi].w - loads[lo].w;
        if gap <= 1 {
            return false; // a swap moves a whole unit or more (d > 0) and must stay under the gap
        }
        let room = self.cap_t - loads[lo].t.min(self.cap_t);
        let (rh, rl) = (self.at(packs, hi), self.at(packs, lo));
        let best = if rh.len() * rl.len() <= SWAP_SCAN_MAX {
            self.best_swap_scan(rh, rl, gap, room)
        } else {
            self.best_swap_sorted(rh, rl, gap, room)
        };
        let Some((_, xi, yi)) = best else {
            return self.swap_pairs(packs, loads, hi, lo);
        };
        let (dw, dt) = (
            (self.s[xi].w - self.s[yi].w) as u64,
            self.s[xi].t as u64 - self.s[yi].t as u64,
        );
        loads[hi].w -= dw;
        loads[lo].w += dw;
        loads[hi].t -= dt;
        loads[lo].t += dt;
        self.s.swap(xi, yi);
        true
    }

    /// [`SwapRules::swap`]'s search, every pair compared: the best (score, x, y) positions.
    fn best_swap_scan(
        &self,
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        gap: u64,
        room: u64,
    ) -> Option<(u64, usize, usize)> {
        let mut best: Option<(u64, usize, usize)> = None;
        let ys = &self.s[rl.clone()];
        for (xi, x) in rh.clone().zip(&self.s[rh]) {
            let (vx, wx, tx) = (x.v, x.w as u64, x.t as u64);
            for (yi, y) in rl.clone().zip(ys) {
                if y.v != vx || wx <= y.w as u64 {
                    continue;
                }
                let d = wx - y.w as u64;
                // lo's text after the swap: t_lo - t_y + t_x <= cap.
                if d >= gap || tx > room + y.t as u64 {
                    continue;
                }
                let score = gap.abs_diff(2 * d);
                if best.is_none_or(|(s, _, _)| score < s) {
                    best = Some((score, xi, yi));
                }
            }
        }
        best
    }

    /// [`SwapRules::swap`]'s search for large packs, with the same result in O((|hi| + |lo|)
    /// log |lo|) (plus ties): `lo`'s samples sorted by (vision, cost, text, position). A
    /// sample's cost never falls as its text grows, so for each `x` of `hi` the partners allowed
    /// (same vision, cost in `(w_x - gap, w_x)`, text at least `t_x - room`) are one run of that
    /// order; the best are the costs nearest `w_x - gap / 2` on either side, and among equal
    /// costs the first position.
    fn best_swap_sorted(
        &mut self,
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        gap: u64,
        room: u64,
    ) -> Option<(u64, usize, usize)> {
        let ys = &mut self.sorted;
        ys.clear();
        ys.extend(rl.map(|yi| {
            let y = &self.s[yi];
            (y.v, y.w, y.t, yi as u32)
        }));
        ys.sort_unstable();
        let mut best: Option<(u64, usize, usize)> = None;
        for xi in rh {
            let x = &self.s[xi];
            let (vx, wx, tx) = (x.v, x.w as u64, x.t as u64);
            if wx == 0 {
                continue;
            }
            // Same vision, wx - gap < w < wx, text >= tx - room.
            let w_min = (wx + 1).saturating_sub(gap);
            let a = ys.partition_point(|y| (y.0, (y.1 as u64)) < (vx, w_min));
            let b = ys.partition_point(|y| (y.0, (y.1 as u64)) < (vx, wx));
            let t_min = tx.saturating_sub(room);
            let a = a + ys[a..b].partition_point(|y| (y.2 as u64) < t_min);
            if a >= b {
                continue;
            }
            // The first cost at or above the middle, and the last below it.
            let p = a + ys[a..b].partition_point(|y| 2 * (y.1 as u64) + gap < 2 * wx);
            let score = |w: u32| gap.abs_diff(2 * (wx - w as u64));
            let mut found: Option<(u64, usize)> = None;
            for w in [p.checked_sub(1).filter(|&q| q >= a), (p < b).then_some(p)]
                .into_iter()
                .flatten()
                .map(|q| ys[q].1)
            {
                let s = score(w);
                // Every allowed sample of this cost: the first position.
                let from = a + ys[a..b].partition_point(|y| y.1 < w);
                let to = a + ys[a..b].partition_point(|y| y.1 <= w);
                let yi = ys[from..to].iter().map(|y| y.3 as usize).min().unwrap();
                if found.is_none_or(|(fs, fy)| (s, yi) < (fs, fy)) {
                    found = Some((s, yi));
                }
            }
            if let Some((s, yi)) = found {
                if best.is_none_or(|(bs, _, _)| s < bs) {
                    best = Some((s, xi, yi));
                }
            }
        }
        best
    }

    /// When no single swap helps: the one exchange of two samples of `hi` for two of `lo` with
    /// the same vision sum (so vision sums never change) that brings the costs closest, under
    /// `lo`'s text cap; only for packs of at most [`PAIR_SWAP_MAX_SAMPLES`] samples. Such
    /// exchanges change a pack's mix of sizes ({5, 1} for {3, 3}), which single swaps never do.
    /// Ties: the first in (x1, x2, y1, y2) position order (`lo`'s pairs are grouped by vision sum
    /// first, which keeps that order among the pairs compared).
    fn swap_pairs(&mut self, packs: &Packs, loads: &mut Loads<'_>, hi: usize, lo: usize) -> bool {
        let (rh, rl) = (self.at(packs, hi), self.at(packs, lo));
        if rh.len() < 2
            || rl.len() < 2
            || rh.len() > PAIR_SWAP_MAX_SAMPLES
            || rl.len() > PAIR_SWAP_MAX_SAMPLES
        {
            return false;
        }
        let gap = loads[hi].w - loads[lo].w;
        let room = self.cap_t - loads[lo].t.min(self.cap_t);
        let room_hi = self.cap_t - loads[hi].t.min(self.cap_t);
        // `lo`'s pairs grouped by vision sum (position order within a sum), so each pair of
        // `hi` meets only the pairs it may be exchanged for, in the order of the full search.
        let ys = &mut self.pairs;
        ys.clear();
        for y1 in rl.clone() {
            for y2 in y1 + 1..rl.end {
                let (a, b) = (&self.s[y1], &self.s[y2]);
                ys.push(PairLoad {
                    v: a.v + b.v,
                    w: a.w as u64 + b.w as u64,
                    t: a.t as u64 + b.t as u64,
                    at: [y1 as u32, y2 as u32],
                });
            }
        }
        // Few pairs: each pair of `hi` scans them all (in position order). More: sorted by
        // vision sum, then position (the order they were pushed in), and searched.
        let sorted = ys.len() * (rh.len() * (rh.len() - 1) / 2) > PAIR_SCAN_MAX;
        if sorted {
            ys.sort_unstable_by_key(|y| (y.v, y.at));
        }
        let mut best: Option<(u64, [usize; 4])> = None;
        for x1 in rh.clone() {
            for x2 in x1 + 1..rh.end {
                let vx = self.s[x1].v + self.s[x2].v;
                let wx = self.s[x1].w as u64 + self.s[x2].w as u64;
                let tx = self.s[x1].t as u64 + self.s[x2].t as u64;
                let same: &[PairLoad] = if sorted {
                    let from = ys.partition_point(|y| y.v < vx);
                    let to = from + ys[from..].partition_point(|y| y.v == vx);
                    &ys[from..to]
                } else {
                    ys
                };
                for y in same {
                    if y.v != vx || wx <= y.w {
                        continue;
                    }
                    let d = wx - y.w;
                    // Both packs stay under the text cap (a convex cost can fall while the
                    // text grows).
                    if d >= gap || tx > room + y.t || y.t > room_hi + tx {
                        continue;
                    }
                    let score = gap.abs_diff(2 * d);
                    if best.is_none_or(|(s, _)| score < s) {
                        best = Some((score, [x1, x2, y.at[0] as usize, y.at[1] as usize]));
                    }
                }
            }
        }
        let Some((_, [x1, x2, y1, y2])) = best else {
            return false;
        };
        let dw =
            self.s[x1].w as u64 + self.s[x2].w as u64 - self.s[y1].w as u64 - self.s[y2].w as u64;
        let (tx, ty) = (
            self.s[x1].t as u64 + self.s[x2].t as u64,
            self.s[y1].t as u64 + self.s[y2].t as u64,
        );
        loads[hi].w -= dw;
        loads[lo].w += dw;
        loads[hi].t = loads[hi].t + ty - tx;
        loads[lo].t = loads[lo].t + tx - ty;
        for (a, b) in [(x1, y1), (x2, y2)] {
            self.s.swap(a, b);
        }
        true
    }

    /// Up to `passes` pairing passes over `group` (pack indices; reordered): sorted by cost,
    /// even passes pair the `j`-th cheapest pack with the `j`-th costliest, odd passes with the
    /// `j`-th above the middle (so excess cost spreads out instead of bouncing between packs of
    /// unlike make-up), and make each pair's best swap. A pair without a swap tries the next
    /// [`PAIR_PARTNERS`] partners on either side. Stops early when a pass makes no swap.
    fn pair_passes(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        group: &mut [u32],
        passes: u32,
    ) {
        let g = group.len();
        let half = g / 2;
        for pass in 0..passes {
            self.sort_by_cost(loads, group);
            let mirror = pass % 2 == 0;
            let hi_at = |j: usize| if mirror { g - 1 - j } else { half + j };
            let mut swapped = false;
            for j in 0..half {
                let (lo, hi) = (group[j] as usize, group[hi_at(j)] as usize);
                if loads[hi].w <= loads[lo].w {
                    if mirror {
                        break;
                    }
                    continue;
                }
                if self.swap(packs, loads, hi, lo) {
                    swapped = true;
                    continue;
                }
                if !mirror {
                    continue;
                }
                for t in 1..PAIR_PARTNERS.min(half - j) {
                    let (lo2, hi2) = (group[j + t] as usize, group[hi_at(j + t)] as usize);
                    if loads[hi].w > loads[lo2].w && self.swap(packs, loads, hi, lo2) {
                        swapped = true;
                        break;
                    }
                    if loads[hi2].w > loads[lo].w && self.swap(packs, loads, hi2, lo) {
                        swapped = true;
                        break;
                    }
                }
            }
            if !swapped && mirror {
                break;
            }
        }
    }
}

impl SwapRules<'_> {
    /// Evens out the vision sums of a step whose packs differ in vision (a class boundary, or a
    /// pack the re-packing could not fill): up to [`VISION_SWAPS`] times, the pack of highest
    /// (vision, cost, index) and that of lowest (vision, cost, index) make the one swap of a
    /// larger sample for a smaller one that brings their vision sums closest, ties broken by
    /// the cost sums closest, then position order; stops when the sums differ by one or less or
    /// no swap helps. `lo` stays under both caps. Only packs below `normal` (no over-cap ones).
    fn even_vision(&mut self, packs: &Packs, loads: &mut Loads<'_>, step: &[u32], cap_v: u64) {
        for _ in 0..VISION_SWAPS {
            let (mut hi, mut lo) = (step[0] as usize, step[0] as usize);
            for &k in &step[1..] {
                let k = k as usize;
                if (loads[k].v, loads[k].w, k) > (loads[hi].v, loads[hi].w, hi) {
                    hi = k;
                }
                if (loads[k].v, loads[k].w, k) < (loads[lo].v, loads[lo].w, lo) {
                    lo = k;
                }
            }
            let gap = loads[hi].v - loads[lo].v;
            if gap <= 1 {
                return;
            }
            let room_t = self.cap_t - loads[lo].t.min(self.cap_t);
            let room_v = cap_v - loads[lo].v.min(cap_v);
            let room_hi = self.cap_t - loads[hi].t.min(self.cap_t);
            let mut best: Option<(u64, u64, usize, usize)> = None;
            for xi in self.at(packs, hi) {
                let (vx, wx, tx) = (
                    self.s[xi].v as u64,
                    self.s[xi].w as u64,
                    self.s[xi].t as u64,
                );
                for yi in self.at(packs, lo) {
                    let vy = self.s[yi].v as u64;
                    if vx <= vy || vx - vy >= gap || vx - vy > room_v {
                        continue;
                    }
                    let ty = self.s[yi].t as u64;
                    if tx > room_t + ty || ty > room_hi + tx {
                        continue;
                    }
                    let score = gap.abs_diff(2 * (vx - vy));
                    // Cost gap after the swap.
                    let (wh, wl) = (
                        loads[hi].w - wx + self.s[yi].w as u64,
                        loads[lo].w + wx - self.s[yi].w as u64,
                    );
                    let cost = wh.abs_diff(wl);
                    if best.is_none_or(|(s, c, _, _)| (score, cost) < (s, c)) {
                        best = Some((score, cost, xi, yi));
                    }
                }
            }
            let Some((_, _, xi, yi)) = best else {
                return;
            };
            let dv = self.s[xi].v as u64 - self.s[yi].v as u64;
            loads[hi].v -= dv;
            loads[lo].v += dv;
            // Cost and text may move either way.
            loads[hi].w = loads[hi].w - self.s[xi].w as u64 + self.s[yi].w as u64;
            loads[lo].w = loads[lo].w + self.s[xi].w as u64 - self.s[yi].w as u64;
            loads[hi].t = loads[hi].t - self.s[xi].t as u64 + self.s[yi].t as u64;
            loads[lo].t = loads[lo].t + self.s[xi].t as u64 - self.s[yi].t as u64;
            self.s.swap(xi, yi);
        }
    }

    /// Up to `iterations` greedy swaps on the costliest pack of `group`: each takes the pack of
    /// highest (cost, index) (from a max-heap) and makes its best swap with the first of up to
    /// [`GREEDY_PARTNERS`] cheaper packs among `group` in the cost order it had when the phase
    /// began: the first [`GREEDY_SCAN`] of them, or with `spread` every `h / GREEDY_PARTNERS`-th
    /// of the cheaper half `h` (a pack made costly by one long sample needs a partner holding a
    /// sample of the same size a little shorter, which the cheapest packs rarely have). Stops
    /// when the costliest pack is at or under `stop_at` or admits none, or with `spread` sets
    /// that pack aside and goes on. Costs O(log m) per swap.
    fn greedy(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        group: &[u32],
        iterations: usize,
        spread: bool,
        stop_at: u64,
    ) {
        let mut asc = group.to_vec();
        self.sort_by_cost(loads, &mut asc);
        if spread {
            let half = asc.len().div_ceil(2);
            let stride = (half / GREEDY_PARTNERS).max(1);
            asc = asc[..half].iter().step_by(stride).copied().collect();
        }
        // The entries are (cost, pack) values: any max-heap pops them in the same order.
        let mut entries = std::mem::take(&mut self.heap);
        entries.clear();
        entries.extend(group.iter().map(|&k| (loads[k as usize].w, k)));
        let mut heap = std::collections::BinaryHeap::from(entries);
        let mut done = 0;
        while let Some((wk, k)) = heap.pop() {
            let hi = k as usize;
            if wk != loads[hi].w {
                continue; // stale entry
            }
            if done == iterations || wk <= stop_at {
                break;
            }
            done += 1;
            let mut tried = 0;
            let mut swapped = None;
            for &lo in asc.iter().take(GREEDY_SCAN) {
                let lo = lo as usize;
                if loads[lo].w >= loads[hi].w {
                    continue;
                }
                if self.swap(packs, loads, hi, lo) {
                    swapped = Some(lo);
                    break;
                }
                tried += 1;
                if tried == GREEDY_PARTNERS {
                    break;
                }
            }
            let Some(lo) = swapped else {
                if spread {
                    continue;
                }
                break;
            };
            heap.push((loads[hi].w, hi as u32));
            heap.push((loads[lo].w, lo as u32));
        }
        self.heap = heap.into_vec();
    }
}

/// Vision-evening swaps per step with packs of unlike vision sums.
pub const VISION_SWAPS: usize = 128;
/// Largest pack (in samples) [`SwapRules::swap_pairs`] searches (its cost grows as the fourth
/// power).
pub const PAIR_SWAP_MAX_SAMPLES: usize = 12;
/// Sample comparisons (samples of `hi` x samples of `lo`) up to which [`SwapRules::swap`] compares
/// every pair; larger packs are searched in sorted order (the same result, in O(n log n)).
pub const SWAP_SCAN_MAX: usize = 256;
/// Pair comparisons (pairs of `hi` x pairs of `lo`) up to which [`SwapRules::swap_pairs`] scans
/// every pair instead of sorting `lo`'s pairs by vision sum (the same result, found faster).
pub const PAIR_SCAN_MAX: usize = 160;
/// Cheap packs the greedy phase looks at for each swap (in its stale cost order).
pub const GREEDY_SCAN: usize = 64;
/// Partners a pairing pass tries, on either side, for a pair that admits no swap.
pub const PAIR_PARTNERS: usize = 4;
/// Cheaper packs a greedy swap tries for the costliest one.
pub const GREEDY_PARTNERS: usize = 16;
/// Greedy swaps per step: `min(8 m + 32, this)` for `m` packs (in effect `8 m + 32`).
pub const GREEDY_SWAPS: usize = 1 << 30;

/// Costly and cheap packs matched in steps of their own: a pack that holds a sample long (or
/// short) for its size cannot be brought to its class's typical cost by swaps (its other
/// samples are already the shortest, or longest, of theirs), and a random step holding it runs
/// that much longer than its mean (or pulls the mean down). In each vision class (a run of
/// `drawn`), the packs costlier than the class median by more than 1/[`COSTLY_PACK_DIV`] are
/// taken out, costliest first, in whole steps of `m` (when there are at least `m`), then those
/// cheaper than it by more than 1/[`CHEAP_PACK_DIV`], cheapest first; these steps go first (the step order is shuffled
/// later), the rest keeps its random order. Few packs qualify on ordinary data, so steps still
/// look i.i.d.
fn match_costly_packs(drawn: Vec<u32>, loads: &Loads<'_>, m: usize) -> Vec<u32> {
    let mut costly: Vec<u32> = Vec::new();
    let mut taken = vec![false; drawn.len()];
    let mut start = 0;
    while start < drawn.len() {
        let v = loads[drawn[start] as usize].v;
        let mut end = start;
        while end < drawn.len() && loads[drawn[end] as usize].v == v {
            end += 1;
        }
        // The median cost, then only the packs far from it sorted (the same packs, in the same
        // order, as sorting the whole class).
        let mut costs: Vec<u64> = drawn[start..end]
            .iter()
            .map(|&k| loads[k as usize].w)
            .collect();
        let mid = costs.len() / 2;
        let median = *costs.select_nth_unstable(mid).1;
        drop(costs);
        let far = |keep: &dyn Fn(u64) -> bool| -> Vec<(u64, u32, usize)> {
            (start..end)
                .map(|j| (loads[drawn[j] as usize].w, drawn[j], j))
                .filter(|e| keep(e.0))
                .collect()
        };
        let mut over = far(&|w| w > median + median / COSTLY_PACK_DIV);
        over.sort_unstable();
        let whole = over.len() - over.len() % m;
        for &(_, k, j) in over.iter().rev().take(whole) {
            costly.push(k);
            taken[j] = true;
        }
        let mut under = far(&|w| w + median / CHEAP_PACK_DIV < median);
        under.sort_unstable();
        let whole = under.len() - under.len() % m;
        for &(_, k, j) in under.iter().take(whole) {
            costly.push(k);
            taken[j] = true;
        }
        start = end;
    }
    if costly.is_empty() {
        return drawn;
    }
    costly.extend(
        drawn
            .iter()
            .enumerate()
            .filter(|&(j, _)| !taken[j])
            .map(|(_, &k)| k),
    );
    costly
}

/// See [`match_costly_packs`]: packs over the class median by more than 1/this are matched.
pub const COSTLY_PACK_DIV: u64 = 200;
/// See [`match_costly_packs`]: packs under the class median by more than 1/this are matched (a
/// cheap pack moves a step's mean, and so its slowest rank's excess, by 1/m of its deficit).
pub const CHEAP_PACK_DIV: u64 = 100;

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

/// Calls `f(rules, loads, range, aux)` for each of `ranges` (pack ranges `[a, b)`, increasing
/// and disjoint), `aux` being the range's `stride` entries of `aux`. With `threads > 1` the
/// ranges are cut into that many contiguous runs, each on a scoped thread that sees only its
/// own packs' loads and samples (so no two threads touch the same memory); the result is the
/// same as on one thread, as each call only reads and writes its own range.
#[allow(clippy::too_many_arguments)]
fn for_each_range<F>(
    sample_loads: &mut [SampleLoad],
    pack_loads: &mut [PackLoad],
    packs: &Packs,
    ranges: &[(usize, usize)],
    aux: &mut [u32],
    stride: usize,
    threads: usize,
    cap_t: u64,
    f: &F,
) where
    F: Fn(&mut SwapRules<'_>, &mut Loads<'_>, (usize, usize), &mut [u32]) + Sync,
{
    let run = |sl: &mut [SampleLoad],
               pl: &mut [PackLoad],
               base: usize,
               ranges: &[(usize, usize)],
               aux: &mut [u32]| {
        let mut rules = SwapRules {
            s: sl,
            base: packs.offsets[base] as usize,
            cap_t,
            pairs: Vec::new(),
            keys: Vec::new(),
            sorted: Vec::new(),
            words: Vec::new(),
            heap: Vec::new(),
        };
        let mut loads = Loads { p: pl, base };
        for (j, &r) in ranges.iter().enumerate() {
            f(
                &mut rules,
                &mut loads,
                r,
                &mut aux[j * stride..(j + 1) * stride],
            );
        }
    };
    if threads <= 1 || ranges.len() < 2 {
        run(sample_loads, pack_loads, 0, ranges, aux);
        return;
    }
    let per = ranges.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let (mut sl, mut pl, mut aux) = (sample_loads, pack_loads, aux);
        let mut at = 0; // first pack of `pl`
        for (g, group) in ranges.chunks(per).enumerate() {
            let start = group[0].0;
            let end = match ranges.get((g + 1) * per) {
                Some(&(next, _)) => next,
                None => at + pl.len(),
            };
            // Skip the packs before this group, then take its own.
            let (_, rest) = std::mem::take(&mut pl).split_at_mut(start - at);
            let (mine, rest) = rest.split_at_mut(end - start);
            pl = rest;
            let item = |k: usize| packs.offsets[k] as usize;
            let (_, rest_s) = std::mem::take(&mut sl).split_at_mut(item(start) - item(at));
            let (mine_s, rest_s) = rest_s.split_at_mut(item(end) - item(start));
            sl = rest_s;
            let (mine_aux, rest_aux) = std::mem::take(&mut aux).split_at_mut(group.len() * stride);
            aux = rest_aux;
            at = end;
            scope.spawn(move || run(mine_s, mine, start, group, mine_aux));
        }
    });
}

/// Plans one epoch with the balanced strategy.
pub fn balance_batches(
    samples: &Samples,
    p: &BalanceParams,
    progress: &mut dyn Progress,
) -> Result<BatchPlan, Error> {
    balance_batches_with_carry(samples, p, &[], progress)
}

/// Checks a `carry` list: indices of the `n` samples, each at most once.
pub fn check_carry(carry: &[u32], n: usize) -> Result<(), Error> {
    if n + carry.len() > u32::MAX as usize {
        return Err(Error::out_of_range(
            "carry",
            "and the samples together must be fewer than 2^32",
        ));
    }
    let mut seen = vec![false; n];
    for (j, &i) in carry.iter().enumerate() {
        if i as usize >= n {
            return Err(Error::out_of_range(
                "carry",
                format!("entry {j} must be a sample index below {n}, got {i}"),
            ));
        }
        if std::mem::replace(&mut seen[i as usize], true) {
            return Err(Error::out_of_range(
                "carry",
                format!("entry {j} repeats sample {i}; each sample may be carried once"),
            ));
        }
    }
    Ok(())
}

/// A carry's samples inside the planner: own sample `i < n_own`, carried copy `n_own + j` of
/// sample `carry[j]`. A sample's two copies are partners.
struct CarryIds<'a> {
    n_own: usize,
    carry: &'a [u32],
}

impl CarryIds<'_> {
    fn is_carried(&self, id: u32) -> bool {
        !self.carry.is_empty() && id as usize >= self.n_own
    }
}

/// Takes `r` packs of `list` as the tail: the last `r` that hold no carried sample, then (only
/// when too few are free of them) the last that do, first skipping a pack that would put a
/// sample's two copies in the tail (the other copy in the tail already, or in the pack itself),
/// then, still short, any (such a sample is carried once and its other copy dropped as tail by
/// [`balance_batches_with_carry`]); the rest keep their order. `ids(k, buf)` fills `buf` with
/// pack `k`'s sample ids. Without carried samples it is the last `r`, as `split_off` takes them.
fn take_tail(
    list: &mut Vec<u32>,
    r: usize,
    c: &CarryIds,
    ids: impl Fn(u32, &mut Vec<u32>),
) -> Vec<u32> {
    let mut buf = Vec::new();
    let mut carries = |k: u32| {
        buf.clear();
        ids(k, &mut buf);
        buf.iter().any(|&i| c.is_carried(i))
    };
    let mut pick = vec![false; list.len()];
    let mut left = r;
    for j in (0..list.len()).rev() {
        if left == 0 {
            break;
        }
        if !carries(list[j]) {
            pick[j] = true;
            left -= 1;
        }
    }
    if left > 0 {
        // Each own sample's carried copy, and which samples the tail holds so far.
        let mut copy = vec![u32::MAX; c.n_own];
        for (j, &i) in c.carry.iter().enumerate() {
            copy[i as usize] = (c.n_own + j) as u32;
        }
        let partner = |i: u32| match (i as usize).checked_sub(c.n_own) {
            None => copy[i as usize],
            Some(j) => c.carry[j],
        };
        let mut in_tail = vec![false; c.n_own + c.carry.len()];
        let mut buf = Vec::new();
        for j in 0..list.len() {
            if pick[j] {
                buf.clear();
                ids(list[j], &mut buf);
                buf.iter().for_each(|&i| in_tail[i as usize] = true);
            }
        }
        for j in (0..list.len()).rev() {
            if left == 0 {
                break;
            }
            if pick[j] {
                continue;
            }
            buf.clear();
            ids(list[j], &mut buf);
            // A partner already in the tail, or in this pack (packing mixes the copies).
            let pair = |i: u32| {
                let q = partner(i);
                q != u32::MAX && (in_tail[q as usize] || buf.contains(&q))
            };
            if buf.iter().any(|&i| pair(i)) {
                continue;
            }
            buf.iter().for_each(|&i| in_tail[i as usize] = true);
            pick[j] = true;
            left -= 1;
        }
        // Still short (a tiny epoch, or over-cap samples short of a step): any pack; a sample
        // with both copies in the tail is carried once, its other copy dropped as tail.
        for j in (0..list.len()).rev() {
            if left == 0 {
                break;
            }
            if !pick[j] {
                pick[j] = true;
                left -= 1;
            }
        }
    }
    let mut tail = Vec::with_capacity(r);
    let mut kept = Vec::with_capacity(list.len() - r);
    for (j, &k) in list.iter().enumerate() {
        if pick[j] {
            tail.push(k);
        } else {
            kept.push(k);
        }
    }
    *list = kept;
    tail
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
    let fits = |r: &Rec| r.v <= p.caps.max_vision && r.t <= p.caps.max_text;
    // Over-cap samples: micro-batches of their own (even when none fits), or dropped.
    let (mut pool, mut dropped, mut oversize) = if p.oversize == Oversize::OwnMicroBatch {
        let mut fit = Vec::with_capacity(samples.len());
        let mut over = Vec::new();
        for i in 0..samples.len() as u32 {
            let r = Rec::of(samples, i);
            if fits(&r) {
                fit.push(r);
            } else {
                over.push(i);
            }
        }
        (fit, Vec::new(), over)
    } else {
        let (fit, dropped) = samples.split_by_caps(p.caps)?;
        let fit: Vec<Rec> = fit.into_iter().map(|i| Rec::of(samples, i)).collect();
        (fit, dropped, Vec::new())
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
    let threads = if p.threads > 0 {
        p.threads.min(MAX_THREADS)
    } else {
        worker_threads()
    };
    let mut packs = pack(pool, p, progress, total, threads);
    packs = repack_part_filled(packs, p);
    let before = packs.len();
    let (packs, kept, lost) = spread_tail(packs, p, m, &carry_ids);
    dropped.extend(lost.into_iter().map(|i| (i, DropReason::Tail)));

    // Step 3 (layout): a random tail of `kept mod m` packs; the other kept packs in a random
    // order grouped by vision sum (descending); then the dealt packs (built step by step) by
    // vision sum; then the tail; then the over-cap samples, one per pack. The packs are renumbered
    // in this order, so each vision class is a run of consecutive packs and the steps cut from
    // it are runs too (every phase below reads memory in order).
    // Each pack's vision sum once, in order (the sorts below look them up at random).
    let vision: Vec<u64> = (0..packs.len()).map(|k| sums(packs.get(k)).0).collect();
    let mut drawn: Vec<u32> = kept;
    shuffle(
        &mut drawn,
        &mut Rng::for_epoch(p.seed, p.epoch, TAIL_PURPOSE),
    );
    let tail_old: Vec<u32> = if carry.is_empty() {
        drawn.split_off(drawn.len() - drawn.len() % m)
    } else {
        let r = drawn.len() % m;
        take_tail(&mut drawn, r, &carry_ids, |k, out| {
            out.extend(packs.get(k as usize).iter().map(|x| x.id))
        })
    };
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
    let normal = fresh_end + tail_old.len();
    let max_cost = p.cost.max_sample(samples.text);
    let mut order_old = drawn;
    order_old.extend_from_slice(&fresh);
    order_old.extend_from_slice(&tail_old);
    let oversize_recs: Vec<Rec> = oversize.iter().map(|&i| rec(i)).collect();
    let source = |j: usize| -> &[Rec] {
        match order_old.get(j) {
            Some(&k) => packs.get(k as usize),
            None => std::slice::from_ref(&oversize_recs[j - order_old.len()]),
        }
    };
    let count = order_old.len() + oversize_recs.len();
    let mut new_packs: Packs = Packs::with_capacity(0);
    new_packs.offsets.reserve(count);
    let mut at = 0u32;
    for j in 0..count {
        at += source(j).len() as u32;
        new_packs.offsets.push(at);
    }
    let n = at as usize;
    // The records in the new order, three words each, in the first three quarters of the loads'
    // own buffer (its pages are touched only as they are written); the old packs are then freed
    // and each record widened in place to its loads, last first (a record's loads never cover an
    // earlier record). Peak: the records twice, not the records and the loads.
    let zero = SampleLoad {
        w: 0,
        v: 0,
        t: 0,
        id: 0,
    };
    let mut sample_loads: Vec<SampleLoad> = Vec::with_capacity(n);
    sample_loads.resize((3 * n).div_ceil(4), zero);
    let offsets = &new_packs.offsets;
    // Packs `[a, b)` into `out`, the entries from word `3 * offsets[a]` on.
    let gather = |a: usize, b: usize, out: &mut [SampleLoad]| {
        let mut q = 0;
        let mut touched = 0u32;
        for from in (a..b).step_by(GATHER_BATCH) {
            let to = (from + GATHER_BATCH).min(b);
            for j in from..to {
                touched ^= source(j).first().map_or(0, |r| r.id);
            }
            for j in from..to {
                for r in source(j) {
                    for x in [r.id, r.v, r.t] {
                        *word(out, q) = x;
                        q += 1;
                    }
                }
            }
        }
        std::hint::black_box(touched);
    };
    // Threads take runs of packs that start on a whole entry (a multiple of 4 samples).
    let mut cuts = vec![0];
    for g in 1..threads {
        let mut j = (count * g / threads).max(*cuts.last().unwrap());
        while j < count && offsets[j] % 4 != 0 {
            j += 1;
        }
        cuts.push(j);
    }
    cuts.push(count);
    if threads <= 1 || count < PARALLEL_MIN_STEPS {
        gather(0, count, &mut sample_loads);
    } else {
        std::thread::scope(|scope| {
            let mut rest = &mut sample_loads[..];
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                // Whole entries: 3 words per sample, from and to a multiple of 4 samples.
                let len = if b == count {
                    rest.len()
                } else {
                    3 * (offsets[b] - offsets[a]) as usize / 4
                };
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(len);
                rest = tail;
                let gather = &gather;
                scope.spawn(move || gather(a, b, mine));
            }
        });
    }
    drop((packs, order_old, fresh, tail_old, oversize_recs));
    sample_loads.resize(n, zero);
    let widened = |id: u32, v: u32, t: u32| SampleLoad {
        w: p.cost.weight(t, max_cost) as u32,
        v,
        t,
        id,
    };
    // Entries `[lo, hi)` with `3 hi <= 4 lo` read words `[3 lo, 3 hi)`, all in entries below `lo`,
    // which no entry of `[lo, hi)` overwrites: such a wave is widened on threads, each from the
    // untouched entries below it; waves go downward, and the last small part is done in place,
    // last first.
    let mut hi = n;
    while threads > 1 && hi >= PARALLEL_WIDEN_MIN {
        let lo = (3 * hi).div_ceil(4);
        let (below, wave) = sample_loads.split_at_mut(lo);
        let below: &[SampleLoad] = below;
        let per = (hi - lo).div_ceil(threads);
        std::thread::scope(|scope| {
            for (g, out) in wave[..hi - lo].chunks_mut(per).enumerate() {
                let widened = &widened;
                scope.spawn(move || {
                    for (j, x) in out.iter_mut().enumerate() {
                        let q = 3 * (lo + g * per + j);
                        *x = widened(
                            word_of(below, q),
                            word_of(below, q + 1),
                            word_of(below, q + 2),
                        );
                    }
                });
            }
        });
        hi = lo;
    }
    for i in (0..hi).rev() {
        let (id, v, t) = (
            *word(&mut sample_loads, 3 * i),
            *word(&mut sample_loads, 3 * i + 1),
            *word(&mut sample_loads, 3 * i + 2),
        );
        sample_loads[i] = widened(id, v, t);
    }
    let mut pack_loads = vec![PackLoad { v: 0, w: 0, t: 0 }; count];
    // Packs `[start, end)` of the new order: their sums (threads take runs of packs).
    let fill = |start: usize, end: usize, sl: &[SampleLoad], pl: &mut [PackLoad]| {
        let base = offsets[start] as usize;
        for j in start..end {
            let (mut v, mut c, mut t) = (0u64, 0u64, 0u64);
            for x in &sl[offsets[j] as usize - base..offsets[j + 1] as usize - base] {
                v += x.v as u64;
                c += x.w as u64;
                t += x.t as u64;
            }
            pl[j - start] = PackLoad { v, w: c, t };
        }
    };
    if threads <= 1 {
        fill(0, count, &sample_loads, &mut pack_loads);
    } else {
        let per = count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let (mut sl, mut pl) = (&sample_loads[..], &mut pack_loads[..]);
            for start in (0..count).step_by(per) {
                let end = (start + per).min(count);
                let items = (offsets[end] - offsets[start]) as usize;
                let (mine_s, rest) = sl.split_at(items);
                sl = rest;
                let (mine_p, rest) = std::mem::take(&mut pl).split_at_mut(end - start);
                pl = rest;
                let fill = &fill;
                scope.spawn(move || fill(start, end, mine_s, mine_p));
            }
        });
    }
    let packs = new_packs;
    let cap_t = p.caps.max_text as u64;

    // Step 4: equalize each vision class, in windows of consecutive packs (a random sample of
    // the class each, small enough to stay in cache). Windows are independent: threads take
    // runs of them (the plan does not depend on how many).
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for (from, to) in [(0, kept_end), (kept_end, fresh_end)] {
        let mut start = from;
        while start < to {
            let v = pack_loads[start].v;
            let mut end = start;
            while end < to && pack_loads[end].v == v {
                end += 1;
            }
            let mut a = start;
            while a < end {
                let b = (a + EQUALIZE_WINDOW).min(end);
                windows.push((a, b));
                a = b;
            }
            start = end;
        }
    }
    for_each_range(
        &mut sample_loads,
        &mut pack_loads,
        &packs,
        &windows,
        &mut [],
        0,
        threads,
        cap_t,
        &|rules, loads, (a, b), _| {
            let mut w: Vec<u32> = (a as u32..b as u32).collect();
            rules.pair_passes(&packs, loads, &mut w, EQUALIZE_PASSES);
            // The costliest packs left, each against cheap ones across the window (it matters in
            // large steps, whose slowest rank is the costliest of many packs).
            if m < EQUALIZE_GREEDY_MIN_STEP {
                return;
            }
            rules.greedy(
                &packs,
                loads,
                &w,
                w.len() / EQUALIZE_GREEDY_SHARE + 32,
                true,
                0,
            );
        },
    );
    progress.report(total + total / 4, total * 2);

    // Step 5: steps cut from the layout; costly and cheap packs matched in steps of their own.
    let full = Loads {
        p: &mut pack_loads,
        base: 0,
    };
    let mut drawn = match_costly_packs((0..kept_end as u32).collect(), &full, m);
    drawn.extend(kept_end as u32..fresh_end as u32);
    let mut tail: Vec<u32> = (fresh_end as u32..normal as u32).collect();
    // Pack `k`'s samples (the packs that can join the tail here were left as laid out: no swap
    // touched them).
    let ids = |k: u32, out: &mut Vec<u32>| {
        out.extend(sample_loads[packs.range(k as usize)].iter().map(|x| x.id))
    };
    // Over-cap samples: steps of their own, matched across ranks; the rest join the tail.
    let mut over: Vec<u32> = (normal as u32..packs.len() as u32).collect();
    over.sort_by_cached_key(|&k| full.key(k));
    let r = over.len() % m;
    tail.extend(take_tail(&mut over, r, &carry_ids, ids));
    drawn.extend_from_slice(&over);
    // A tail of a step or more (over-cap leftovers): whole steps of similar packs.
    if tail.len() >= m {
        tail.sort_by_cached_key(|&k| full.key(k));
        let r = tail.len() % m;
        let rest = take_tail(&mut tail, r, &carry_ids, ids);
        drawn.extend_from_slice(&tail);
        tail = rest;
    }
    let steps = drawn.len() / m;
    let cap_v = p.caps.max_vision as u64;
    let tune = |rules: &mut SwapRules<'_>, loads: &mut Loads<'_>, step: &mut [u32]| {
        let v0 = loads[step[0] as usize].v;
        if step.iter().any(|&k| loads[k as usize].v != v0)
            && step.iter().all(|&k| (k as usize) < normal)
        {
            rules.even_vision(&packs, loads, step, cap_v);
        }
        // A step whose costliest pack is within 1/STEP_TOLERANCE of the mean is left as is.
        let mean = step.iter().map(|&k| loads[k as usize].w).sum::<u64>() / m as u64;
        let stop_at = mean + mean / STEP_TOLERANCE;
        if step.iter().any(|&k| loads[k as usize].w > stop_at) {
            rules.pair_passes(&packs, loads, step, STEP_PASSES);
            rules.greedy(
                &packs,
                loads,
                step,
                (8 * m + 32).min(GREEDY_SWAPS),
                false,
                stop_at,
            );
        }
        // Cost order, ties by pack (as a re-deal of the step by position breaks them).
        rules.sort_by_cost(loads, step);
    };
    // Steps whose packs run in increasing order (the unmatched ones, cut from the layout) are
    // independent and disjoint in memory: threads take runs of them. The others (matched
    // steps, which gather packs from anywhere) are tuned first, one by one.
    let span = |st: usize| {
        let step = &drawn[st * m..(st + 1) * m];
        (
            *step.iter().min().unwrap() as usize,
            *step.iter().max().unwrap() as usize + 1,
        )
    };
    let mut runs: Vec<Vec<(usize, usize)>> = Vec::new(); // per run: each step's pack span
    for st in 0..steps {
        let (lo, hi) = span(st);
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|&(_, end)| end <= lo) => run.push((lo, hi)),
            _ => runs.push(vec![(lo, hi)]),
        }
    }
    let mut first = 0;
    for run in &runs {
        for_each_range(
            &mut sample_loads,
            &mut pack_loads,
            &packs,
            run,
            &mut drawn[first * m..(first + run.len()) * m],
            m,
            if run.len() >= PARALLEL_MIN_STEPS {
                threads
            } else {
                1
            },
            cap_t,
            &|rules, loads, _, step| tune(rules, loads, step),
        );
        first += run.len();
    }
    progress.report(total + total / 4 + total * 3 / 4, total * 2);

    // The packs' items, as the swaps left them.
    let mut packs = packs;
    packs.items = sample_loads.iter().map(|x| x.id).collect();
    drop(sample_loads);
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
    for &s in &step_order {
        let step = &drawn[s as usize * m..(s as usize + 1) * m];
        if p.accum == 1 {
            order.extend_from_slice(step);
            continue;
        }
        dealt.clear();
        dealt.extend_from_slice(step);
        dealt.sort_unstable_by_key(|&k| loads.key(k));
        // Snake order: position j goes to rank j mod dp, reversed on odd rounds.
        let rank_of = |j: usize| {
            if (j / dp).is_multiple_of(2) {
                j % dp
            } else {
                dp - 1 - j % dp
            }
        };
        let mut by_rank: Vec<(usize, usize)> = (0..m).map(|j| (rank_of(j), j)).collect();
        by_rank.sort_unstable();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::metrics::batch_metrics;
    use crate::data::samples::caps_for_samples_per_pack;

    fn data(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let v: Vec<u32> = (0..n)
            .map(|_| [1, 3, 4, 5][rng.below(4) as usize])
            .collect();
        let t = v.iter().map(|&x| 256 * x + 30 + rng.below(400)).collect();
        (v, t)
    }

    #[test]
    fn the_sorted_swap_search_equals_the_full_one() {
        let mut rng = Rng::new(17);
        let cost = TextCost::new(1.0, 1.0 / 3000.0).unwrap();
        let mut found = 0;
        for case in 0..3000 {
            let (nh, nl) = (1 + rng.below(70) as usize, 1 + rng.below(70) as usize);
            let classes = 1 + rng.below(4);
            let spread = [5, 60, 3000][case % 3];
            let max = cost.sample(200 + spread);
            let s: Vec<SampleLoad> = (0..nh + nl)
                .map(|i| {
                    let t = 200 + rng.below(spread + 1);
                    SampleLoad {
                        w: cost.weight(t, max) as u32,
                        v: 1 + rng.below(classes),
                        t,
                        id: i as u32,
                    }
                })
                .collect();
            let mut s = s;
            let mut rules = SwapRules {
                s: &mut s,
                base: 0,
                cap_t: u64::MAX,
                pairs: Vec::new(),
                keys: Vec::new(),
                sorted: Vec::new(),
                words: Vec::new(),
                heap: Vec::new(),
            };
            let gap = 2 + rng.below([64, 1 << 14, 1 << 21][case / 3 % 3]) as u64;
            let room = [0, 50, 400, 1 << 40][case % 4] + rng.below(100) as u64;
            let (rh, rl) = (0..nh, nh..nh + nl);
            let best = rules.best_swap_scan(rh.clone(), rl.clone(), gap, room);
            found += best.is_some() as usize;
            assert_eq!(
                rules.best_swap_sorted(rh, rl, gap, room),
                best,
                "case {case}"
            );
        }
        assert!(found > 1000, "{found} of 3000 cases admit a swap");
    }

    #[test]
    fn covers_every_sample_once_and_respects_caps() {
        let (v, t) = data(20_000, 1);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for tail in [Tail::Drop, Tail::KeepPartial] {
            let mut p = BalanceParams::new(8, 2, caps, 3, 0);
            p.tail = tail;
            let plan = balance_batches(&s, &p, &mut ()).unwrap();
            let mut seen = vec![0u8; v.len()];
            for &i in &plan.samples {
                seen[i as usize] += 1;
            }
            for &(i, _) in &plan.dropped {
                seen[i as usize] += 1;
            }
            assert!(seen.iter().all(|&c| c == 1));
            for k in 0..plan.micro_batches() {
                let mb = plan.micro_batch(k);
                assert!(mb.iter().map(|&i| v[i as usize]).sum::<u32>() <= caps.max_vision);
                assert!(mb.iter().map(|&i| t[i as usize]).sum::<u32>() <= caps.max_text);
            }
        }
    }

    #[test]
    fn ranks_carry_equal_loads() {
        let (v, t) = data(50_000, 2);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let plan = balance_batches(&s, &BalanceParams::new(8, 1, caps, 1, 0), &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
        assert!(m.vision_dist < 3e-4, "{}", m.vision_dist);
        assert!(m.text_dist < 2e-3, "{}", m.text_dist);
        assert!(m.cost_excess_p99 < 0.01, "{}", m.cost_excess_p99);
        assert_eq!(m.pad_ratio, 0.0);
    }

    #[test]
    fn the_tail_is_dealt_into_smaller_packs_not_dropped() {
        let (v, t) = data(20_000, 6);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for dp in [4, 8] {
            let plan =
                balance_batches(&s, &BalanceParams::new(dp, 1, caps, 1, 0), &mut ()).unwrap();
            // Before: `packs mod dp` whole packs (up to dp - 1, ~4.5 samples each) were dropped;
            // now only the few samples short of a vision target.
            assert!(
                plan.dropped.len() <= 2 * dp as usize,
                "dp {dp}: {}",
                plan.dropped.len()
            );
            assert!(plan.dropped.iter().all(|&(_, r)| r == DropReason::Tail));
            assert_eq!(plan.samples.len() + plan.dropped.len(), v.len());
        }
    }

    /// Plans `epochs` epochs under tail `carry`, each fed the previous one's carried tail, and
    /// checks each plan; returns how often each sample was planned and the last carry.
    fn carry_chain(
        s: &Samples,
        p: &BalanceParams,
        epochs: u64,
        own_micro_batch: bool,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut count = vec![0u32; s.len()];
        let mut carry: Vec<u32> = Vec::new();
        for e in 0..epochs {
            let mut q = *p;
            q.epoch = e;
            q.tail = Tail::Carry;
            if own_micro_batch {
                q.oversize = Oversize::OwnMicroBatch;
            }
            let plan = balance_batches_with_carry(s, &q, &carry, &mut ()).unwrap();
            assert_eq!(plan.carried, carry, "epoch {e}");
            for &i in &plan.samples {
                count[i as usize] += 1;
            }
            let out: Vec<u32> = plan
                .dropped
                .iter()
                .filter(|d| d.1 == DropReason::Carried)
                .map(|d| d.0)
                .collect();
            // Nothing lost: only over-cap drops (explicit caps) and the carried tail.
            assert!(plan
                .dropped
                .iter()
                .all(|&(_, r)| r != DropReason::Tail
                    && (r == DropReason::Carried || !own_micro_batch)));
            // Every carried-in sample planned, or (an epoch with too few packs free of carried
            // samples) carried out again.
            assert!(
                carry
                    .iter()
                    .all(|i| plan.samples.contains(i) || out.contains(i)),
                "epoch {e}"
            );
            check_carry(&out, s.len()).unwrap();
            // Every pack still within the caps, the tail a whole number of packs short of a step.
            for k in 0..plan.micro_batches() {
                let mb = plan.micro_batch(k);
                if mb.len() > 1 {
                    let v: u32 = mb.iter().map(|&i| s.vision[i as usize]).sum();
                    let t: u32 = mb.iter().map(|&i| s.text[i as usize]).sum();
                    assert!(v <= p.caps.max_vision && t <= p.caps.max_text);
                }
            }
            carry = out;
        }
        (count, carry)
    }

    #[test]
    fn carried_tails_lose_no_sample_over_epochs() {
        let (v, t) = data(6_000, 21);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for (dp, accum) in [(64, 1), (16, 3), (7, 2)] {
            let p = BalanceParams::new(dp, accum, caps, 5, 0);
            let (count, last) = carry_chain(&s, &p, 4, true);
            assert!(!last.is_empty(), "dp {dp}: a tail to carry");
            // Every sample planned once per epoch, but the last epoch's carried ones once less.
            for (i, &c) in count.iter().enumerate() {
                let want = 4 - last.contains(&(i as u32)) as u32;
                assert_eq!(c, want, "dp {dp} accum {accum} sample {i}");
            }
        }
        // Explicit caps: over-cap samples are dropped (not carried) every epoch.
        let (count, last) = carry_chain(&s, &BalanceParams::new(32, 1, caps, 2, 0), 3, false);
        for (i, &c) in count.iter().enumerate() {
            let over = v[i] > caps.max_vision || t[i] > caps.max_text;
            let want = if over {
                0
            } else {
                3 - last.contains(&(i as u32)) as u32
            };
            assert_eq!(c, want, "sample {i}");
        }
    }

    #[test]
    fn carry_is_deterministic_and_like_drop_without_one() {
        let (v, t) = data(5_000, 22);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let mut p = BalanceParams::new(64, 1, caps, 3, 1);
        let drop = balance_batches(&s, &p, &mut ()).unwrap();
        p.tail = Tail::Carry;
        let first = balance_batches(&s, &p, &mut ()).unwrap();
        // A short epoch: the same plan as drop, its tail reported as carried.
        assert_eq!(first.samples, drop.samples);
        let renamed: Vec<(u32, DropReason)> = drop
            .dropped
            .iter()
            .map(|&(i, r)| {
                (
                    i,
                    if r == DropReason::Tail {
                        DropReason::Carried
                    } else {
                        r
                    },
                )
            })
            .collect();
        assert_eq!(first.dropped, renamed);
        assert!(!renamed.is_empty());
        let carry: Vec<u32> = first.dropped.iter().map(|d| d.0).collect();
        let a = balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap();
        let b = balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap();
        assert_eq!(a, b);
        for threads in [1, 2, 3] {
            p.threads = threads;
            assert_eq!(
                balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap(),
                a
            );
        }
        // The carried samples appear twice, every other sample once (or carried out).
        assert_eq!(a.samples.len() + a.dropped.len(), v.len() + carry.len());
        // Still balanced: every micro-batch of a step at the step's vision sum.
        let m = batch_metrics(&a, &s, &TextCost::default()).unwrap();
        let m0 = batch_metrics(&first, &s, &TextCost::default()).unwrap();
        assert!(
            m.vision_dist <= m0.vision_dist + 1e-3,
            "{} {}",
            m.vision_dist,
            m0.vision_dist
        );
    }

    #[test]
    fn bad_carry_lists_are_errors_naming_carry() {
        let (v, t) = data(500, 23);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let p = BalanceParams::new(4, 1, caps, 3, 1);
        for (carry, says) in [
            (
                vec![3, 500],
                "carry entry 1 must be a sample index below 500, got 500",
            ),
            (
                vec![7, 2, 7],
                "carry entry 2 repeats sample 7; each sample may be carried once",
            ),
        ] {
            let err = balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap_err();
            assert_eq!(err.code(), "ERR_OMNIBAL_OUT_OF_RANGE");
            assert_eq!(err.to_string(), says);
        }
    }

    #[test]
    fn an_epoch_with_few_packs_free_of_carried_samples_carries_them_again() {
        // About one step per epoch: the carry is a large share of each epoch, so the tail soon
        // needs packs holding carried samples (this chain was a TOO_FEW_SAMPLES error at epoch 5).
        let (v, t) = data(6_000, 21);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for (dp, accum) in [(800, 1), (200, 4)] {
            let p = BalanceParams::new(dp, accum, caps, 1, 0);
            let (count, last) = carry_chain(&s, &p, 10, true);
            for (i, &c) in count.iter().enumerate() {
                let want = 10 - last.contains(&(i as u32)) as u32;
                assert_eq!(c, want, "dp {dp} accum {accum} sample {i}");
            }
        }
        // A tiny epoch (one step of 64 packs, 400 samples): some samples land in the tail with
        // both copies, carried once and the other copy dropped as tail, never both carried.
        let (v, t) = data(400, 23);
        let s = Samples::new(&v, &t).unwrap();
        let mut p = BalanceParams::new(64, 1, caps, 1, 0);
        p.tail = Tail::Carry;
        let (mut planned, mut tail_drops) = (vec![0u32; 400], vec![0u32; 400]);
        let mut carry: Vec<u32> = Vec::new();
        for e in 0..8 {
            p.epoch = e;
            let plan = balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap();
            plan.samples.iter().for_each(|&i| planned[i as usize] += 1);
            let mut out = Vec::new();
            for &(i, r) in &plan.dropped {
                match r {
                    DropReason::Carried => out.push(i),
                    DropReason::Tail => tail_drops[i as usize] += 1,
                    _ => panic!("epoch {e}: dropped {i} as {r:?}"),
                }
            }
            check_carry(&out, 400).unwrap();
            carry = out;
        }
        assert!(tail_drops.iter().any(|&d| d > 0), "a copy dropped as tail");
        for i in 0..400 {
            let want = 8 - carry.contains(&(i as u32)) as u32 - tail_drops[i];
            assert_eq!(planned[i], want, "sample {i}");
        }
    }

    #[test]
    fn a_carry_list_under_tail_drop_in_a_long_epoch_loses_no_carried_copy_to_the_dealing() {
        // Tail drop deals its tail into smaller packs in a long epoch; packs holding carried
        // samples are never dealt (this was a misleading TOO_FEW_SAMPLES error).
        let (v, t) = data(20_000, 24);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let carry: Vec<u32> = (0..20_000).step_by(2).collect();
        for seed in 1..=6 {
            let p = BalanceParams::new(8, 1, caps, seed, 1);
            let plan = balance_batches_with_carry(&s, &p, &carry, &mut ()).unwrap();
            assert_eq!(plan.carried, carry);
            // Each sample planned or dropped as often as it has copies (2 if carried).
            let mut seen = vec![0u32; 20_000];
            plan.samples.iter().for_each(|&i| seen[i as usize] += 1);
            for &(i, r) in &plan.dropped {
                assert_eq!(r, DropReason::Tail);
                seen[i as usize] += 1;
            }
            for (i, &c) in seen.iter().enumerate() {
                assert_eq!(c, 1 + (i % 2 == 0) as u32, "seed {seed} sample {i}");
            }
        }
    }

    #[test]
    fn packs_made_costly_by_one_long_sample_share_steps() {
        // 1% of samples far longer than others of their size: no swap brings their packs down.
        let (v, mut t) = data(60_000, 7);
        for i in (0..t.len()).step_by(100) {
            t[i] += 700;
        }
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        let plan = balance_batches(&s, &BalanceParams::new(8, 1, caps, 1, 0), &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
        assert!(m.cost_excess_p99 < 0.01, "{}", m.cost_excess_p99);
        assert!(m.vision_dist < 3e-4, "{}", m.vision_dist);
    }

    #[test]
    fn heavy_tailed_text_keeps_the_slowest_rank_within_one_percent() {
        // 3% of texts stretched 4-16x, balanced on the default model's step-time cost: packs
        // holding a long (or only short) sample for their size are matched in steps of their
        // own, on both sides of the class median.
        let (v, mut t) = data(200_000, 8);
        let mut rng = Rng::new(99);
        for x in t.iter_mut() {
            if rng.below(100) < 3 {
                *x *= 4 + rng.below(13);
            }
        }
        let s = Samples::new(&v, &t).unwrap();
        let caps = crate::data::caps::caps_for_target(&s, 4.5);
        let cost = TextCost::new(1.0, 1.0 / (12.0 * 6144.0)).unwrap();
        let mut p = BalanceParams::new(8, 1, caps, 1, 0);
        p.cost = cost;
        p.oversize = Oversize::OwnMicroBatch;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &cost).unwrap();
        assert!(m.cost_excess_p99 < 0.01, "{}", m.cost_excess_p99);
        assert_eq!(
            plan.samples.len() + plan.dropped.len(),
            v.len(),
            "every sample placed or reported"
        );
    }

    #[test]
    fn shuffling_in_blocks_is_a_uniform_permutation_on_any_thread_count() {
        let n = 2 * PACK_BLOCK + 1_000; // three blocks, three chunks
        let pool: Vec<Rec> = (0..n as u32).map(|id| Rec { id, v: 1, t: id }).collect();
        let watched = [0, n / 2, n - 1];
        let mut lands = [[0usize; 3]; 3]; // [watched sample][block]
        let mut rising = 0usize;
        let mut pairs = 0usize;
        let mut first_chunk = (0.0, 0.0);
        for seed in 0..24u64 {
            let mut one = pool.clone();
            let bounds = shuffle_in_blocks(&mut one, &mut Rng::new(seed), 1);
            assert_eq!(bounds.len(), 4);
            assert_eq!(*bounds.last().unwrap(), n);
            let mut seen = vec![false; n];
            for r in &one {
                assert!(!seen[r.id as usize], "sample {} twice", r.id);
                seen[r.id as usize] = true;
            }
            for threads in [2, 3] {
                let mut other = pool.clone();
                assert_eq!(
                    shuffle_in_blocks(&mut other, &mut Rng::new(seed), threads),
                    bounds
                );
                assert!(other == one, "seed {seed}: {threads} threads");
            }
            for (w, &id) in watched.iter().enumerate() {
                let at = one.iter().position(|r| r.id as usize == id).unwrap();
                lands[w][bounds.iter().filter(|&&b| b <= at).count() - 1] += 1;
            }
            for pair in one[..bounds[1]].windows(2) {
                rising += (pair[0].id < pair[1].id) as usize;
                pairs += 1;
            }
            // Where block 0 holds the first chunk's samples: all over it, not first.
            for (at, r) in one[..bounds[1]].iter().enumerate() {
                if (r.id as usize) < n / 3 {
                    first_chunk.0 += at as f64 / bounds[1] as f64;
                    first_chunk.1 += 1.0;
                }
            }
        }
        let middle = first_chunk.0 / first_chunk.1;
        assert!((0.48..0.52).contains(&middle), "{middle}");
        // Each watched sample in each block about 24 / 3 times (binomial SD 2.3), and no order
        // kept within a block (ascending neighbours about half the time).
        for row in lands {
            assert!(row.iter().all(|&c| (2..=16).contains(&c)), "{row:?}");
        }
        let share = rising as f64 / pairs as f64;
        assert!((0.49..0.51).contains(&share), "{share}");
    }

    #[test]
    fn the_plan_does_not_depend_on_the_thread_count() {
        // Over two packing blocks: the blocks are packed on threads too.
        let (v, mut t) = data(2 * PACK_BLOCK + 5_000, 9);
        for i in (0..t.len()).step_by(50) {
            t[i] += 900; // costly packs: matched steps between the parallel runs
        }
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.5);
        for (dp, accum) in [(8, 1), (4, 3), (64, 1)] {
            let mut p = BalanceParams::new(dp, accum, caps, 2, 0);
            p.threads = 1;
            let one = balance_batches(&s, &p, &mut ()).unwrap();
            for threads in [2, 3, 8] {
                p.threads = threads;
                assert_eq!(
                    balance_batches(&s, &p, &mut ()).unwrap(),
                    one,
                    "dp {dp} accum {accum}: {threads} threads"
                );
            }
        }
    }

    #[test]
    fn balances_the_cost_it_is_given() {
        let (v, t) = data(30_000, 3);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.0);
        let cost = TextCost::new(1.0, 1.0 / 1024.0).unwrap();
        let mut p = BalanceParams::new(8, 1, caps, 1, 0);
        p.cost = cost;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        let m = batch_metrics(&plan, &s, &cost).unwrap();
        assert!(m.cost_dist < 1e-2, "{}", m.cost_dist);
        let tokens = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
        let plain = balance_batches(&s, &BalanceParams::new(8, 1, caps, 1, 0), &mut ()).unwrap();
        let plain_cost = batch_metrics(&plain, &s, &cost).unwrap();
        assert!(
            m.cost_excess_p99 < plain_cost.cost_excess_p99,
            "{} {}",
            m.cost_excess_p99,
            plain_cost.cost_excess_p99
        );
        assert!(tokens.text_dist > 0.0);
    }

    #[test]
    fn steps_come_in_a_random_order_per_epoch() {
        let (v, t) = data(8_000, 4);
        let s = Samples::new(&v, &t).unwrap();
        let caps = caps_for_samples_per_pack(&s, 4.0);
        let a = balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 0), &mut ()).unwrap();
        let b = balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 1), &mut ()).unwrap();
        assert_eq!(
            a,
            balance_batches(&s, &BalanceParams::new(4, 1, caps, 1, 0), &mut ()).unwrap()
        );
        assert_ne!(a.samples, b.samples);
        // Step loads are not sorted: about half the neighbours rise.
        let load = |plan: &BatchPlan, st: usize| -> u64 {
            (0..4)
                .flat_map(|r| plan.rank_micro_batches(st, r))
                .flat_map(|k| plan.micro_batch(k).to_vec())
                .map(|i| t[i as usize] as u64)
                .sum()
        };
        let rises = (1..a.steps())
            .filter(|&st| load(&a, st) > load(&a, st - 1))
            .count();
        let share = rises as f64 / (a.steps() - 1) as f64;
        assert!((0.35..0.65).contains(&share), "{share}");
    }

    #[test]
    fn over_cap_samples_get_matched_micro_batches_of_their_own() {
        let (mut v, mut t) = data(20_000, 5);
        // 1% of samples at 40 tiles and 16-18k tokens.
        for i in (0..v.len()).step_by(100) {
            v[i] = 40;
            t[i] = 16_000 + (i as u32 * 7) % 2_000;
        }
        let s = Samples::new(&v, &t).unwrap();
        let caps = crate::data::caps::caps_for_target(&s, 4.5);
        assert!(caps.max_vision < 40 && caps.max_text < 16_000, "{caps:?}");
        let mut p = BalanceParams::new(8, 1, caps, 1, 0);
        p.oversize = Oversize::OwnMicroBatch;
        p.tail = Tail::KeepPartial;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        assert!(plan.dropped.is_empty());
        assert_eq!(plan.oversize.len(), 200);
        let mut seen = vec![0u8; v.len()];
        for &i in &plan.samples {
            seen[i as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1));
        let m = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
        assert!(
            (m.samples_per_pack - 4.5).abs() < 0.45,
            "{}",
            m.samples_per_pack
        );
        // Over-cap micro-batches fill whole steps, one per rank.
        for st in 0..plan.steps() - 1 {
            let big = (0..8)
                .flat_map(|r| plan.rank_micro_batches(st, r))
                .filter(|&k| plan.micro_batch(k).iter().any(|&i| v[i as usize] == 40))
                .count();
            assert!(big == 0 || big == 8, "step {st}: {big}");
        }
        // Under explicit caps they are dropped and reported instead.
        let mut p = BalanceParams::new(8, 1, caps, 1, 0);
        p.tail = Tail::KeepPartial;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        assert_eq!(plan.dropped.len(), 200);
        assert!(plan.oversize.is_empty());
    }

    #[test]
    fn room_set_finds_the_next_member_as_a_scan_does() {
        let mut rng = Rng::new(11);
        for bound in [1, 63, 64, 65, 4095, 4096, 4097, 9000, 65537] {
            let mut set = RoomSet::new(bound);
            let mut naive = vec![false; bound];
            for _ in 0..2000 {
                let r = rng.below(bound as u32) as usize;
                if naive[r] {
                    set.remove(r);
                } else {
                    set.insert(r);
                }
                naive[r] = !naive[r];
                let q = rng.below(bound as u32 + 1) as usize;
                let want = (q..bound).find(|&x| naive[x]);
                assert_eq!(set.next_at_or_after(q), want, "bound {bound} from {q}");
            }
        }
    }

    #[test]
    fn part_filled_packs_of_sizes_that_cannot_fill_the_cap_are_repacked_alike() {
        // Every vision sum a multiple of 576 under a cap of 16384: no pack closes by vision, so
        // every sample is re-packed best fit (once a scan of every room above its size).
        let n = 3000;
        let mut rng = Rng::new(3);
        let v: Vec<u32> = (0..n).map(|_| 576 * (1 + rng.below(3))).collect();
        let t: Vec<u32> = (0..n).map(|_| 50 + rng.below(1000)).collect();
        let s = Samples::new(&v, &t).unwrap();
        let caps = Caps {
            max_vision: 16_384,
            max_text: 1 << 30,
        };
        let mut p = BalanceParams::new(4, 1, caps, 1, 0);
        p.tail = Tail::KeepPartial;
        let plan = balance_batches(&s, &p, &mut ()).unwrap();
        let mut seen = vec![0u8; n];
        for &i in &plan.samples {
            seen[i as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1));
        // Best fit fills 28 x 576 = 16128 wherever the sizes allow: nearly every pack.
        let full = (0..plan.micro_batches())
            .filter(|&k| {
                plan.micro_batch(k)
                    .iter()
                    .map(|&i| v[i as usize])
                    .sum::<u32>()
                    == 16_128
            })
            .count();
        assert!(
            full * 10 >= plan.micro_batches() * 9,
            "{full} of {}",
            plan.micro_batches()
        );
    }

    #[test]
    fn huge_steps_are_an_error_not_an_overflow() {
        let s = Samples::new(&[1, 2], &[10, 20]).unwrap();
        let caps = Caps {
            max_vision: 4,
            max_text: 100,
        };
        let mut p = BalanceParams::new(65_536, 65_537, caps, 0, 0);
        p.tail = Tail::Pad;
        let err = balance_batches(&s, &p, &mut ()).unwrap_err();
        assert_eq!(err.code(), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert!(err.to_string().contains("4295032832"), "{err}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let s = Samples::new(&[1, 2], &[10, 20]).unwrap();
        let caps = Caps {
            max_vision: 4,
            max_text: 100,
        };
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(0, 1, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(1, 0, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_OUT_OF_RANGE"
        );
        assert_eq!(
            balance_batches(&s, &BalanceParams::new(4, 1, caps, 0, 0), &mut ())
                .unwrap_err()
                .code(),
            "ERR_OMNIBAL_TOO_FEW_SAMPLES"
        );
    }
}
