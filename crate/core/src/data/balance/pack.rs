//! Step 1 of the balanced planner: packing. Rounds of first-fit packing over open packs, each
//! round's pool shuffled in cache-sized blocks that threads pack independently, each as soon as
//! it is shuffled ([`shuffle_blocks_then`], [`pack_block`], [`pack`]); then the packs left part-filled are
//! re-packed best fit ([`repack_part_filled`], over a [`RoomSet`] of vision rooms).

use super::{sums, BalanceParams, Rec};
use crate::data::plan::Packs;
use crate::permutation::shuffle;
use crate::progress::{is_set, Progress};
use crate::rng::Rng;
use std::cmp::Reverse;
use std::sync::atomic::AtomicBool;

pub(super) struct OpenPack {
    pub(super) items: Vec<Rec>,
    pub(super) v: u64,
    pub(super) t: u64,
}

/// Samples per packing block: each round shuffles its pool in blocks of about this many and
/// packs each block on its own (a block stays in cache, and blocks run on worker threads).
pub const PACK_BLOCK: usize = 1 << 16;

/// The packs' buffer has room for `1 / SPREAD_ROOM_DIV` more records than the pool (its
/// untouched pages cost nothing).
pub(super) const SPREAD_ROOM_DIV: usize = 64;

/// Most input chunks [`shuffle_blocks_then`] cuts a pool into.
pub const SHUFFLE_CHUNKS: usize = 64;

/// Shuffles `pool` uniformly at random for `rng` into `out` (as long as `pool`; its old contents
/// do not matter), in blocks of about [`PACK_BLOCK`] samples, and runs `then` on each block of
/// `out` once it is shuffled (on the thread that shuffled it, while the block is in that core's
/// cache). `then` may rewrite its block and says how many of its first entries to keep: those are
/// moved down at once (still in cache), after those kept of the blocks before it in the same run
/// of blocks. Returns the blocks' bounds (`k + 1` positions, `k = ceil(n / PACK_BLOCK)`) and, in
/// block order, `then`'s results with where in `out` each block's kept entries now begin. One
/// block: `pool` copied to `out`, then a plain Fisher-Yates shuffle with `rng`. Otherwise the
/// pool is cut into `c = min(k, SHUFFLE_CHUNKS)` chunks (chunk `j` is `[j n / c, (j + 1) n /
/// c)`), and with `base` two words of `rng` (the low 32 bits, then 21 more), each chunk, on
/// stream `j` of `base` ([`Rng::for_stream`]), is Fisher-Yates shuffled and then draws, for each
/// of its samples in turn, a block (`below(k)`): only the counts are kept, and the chunk's
/// shuffled samples go to the blocks in runs (the first `count[j][0]` to block 0, and so on).
/// Block `b` takes its runs chunk by chunk and is then Fisher-Yates shuffled on stream `c + b`.
/// Each sample lands in a uniformly random block, in a uniformly random order within it: a
/// uniformly random order, as a one-block shuffle gives. Chunks and blocks are independent:
/// threads take runs of them (the shuffle does not depend on how many). Once `stop` is set, the
/// chunks and blocks left are skipped (`out` is then unfinished, for the caller to discard, with
/// the results, which then miss the blocks skipped). `pool` is left with its chunks shuffled.
/// The threads gather their own blocks, so they share the first touch of a fresh `out`.
pub(super) fn shuffle_blocks_then<R: Send>(
    pool: &mut [Rec],
    out: &mut [Rec],
    rng: &mut Rng,
    threads: usize,
    stop: Option<&AtomicBool>,
    then: impl Fn(&mut [Rec]) -> (R, usize) + Sync,
) -> (Vec<usize>, Vec<(R, usize)>) {
    let n = pool.len();
    let k = n.div_ceil(PACK_BLOCK);
    assert_eq!(
        out.len(),
        n,
        "shuffle_blocks_then shuffles into a buffer of the pool's length"
    );
    if k <= 1 {
        out.copy_from_slice(pool);
        shuffle(out, rng);
        let done = if is_set(stop) {
            Vec::new()
        } else {
            vec![(then(out).0, 0)]
        };
        return (vec![0, n], done);
    }
    let base = rng.next_u32() as u64 | ((rng.next_u32() >> 11) as u64) << 32;
    let c = k.min(SHUFFLE_CHUNKS);
    let chunks: Vec<usize> = (0..=c).map(|j| j * n / c).collect();
    // Each chunk shuffled in place, and its samples' block counts (`counts[j * k + b]`).
    let mut counts = vec![0u32; c * k];
    let rows: Vec<usize> = (0..=c).map(|j| j * k).collect();
    let shuffle_chunks = |first: usize, last: usize, items: &mut [Rec], count: &mut [u32]| {
        for j in first..last {
            if is_set(stop) {
                return;
            }
            let mut r = Rng::for_stream(base, j as u64);
            let items = &mut items[chunks[j] - chunks[first]..chunks[j + 1] - chunks[first]];
            warm(items);
            shuffle(items, &mut r);
            let count = &mut count[(j - first) * k..(j - first + 1) * k];
            r.count_below(k as u32, items.len(), count);
        }
    };
    let parallel = threads > 1;
    if parallel {
        let runs = block_runs(pool, &chunks, threads);
        let runs = runs
            .into_iter()
            .zip(block_runs(&mut counts, &rows, threads));
        on_threads(runs.collect(), |((first, last, items), (_, _, count))| {
            shuffle_chunks(first, last, items, count)
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
    if is_set(stop) {
        return (bounds, Vec::new());
    }
    // Blocks `[first, last)` gathered into `out` (from `bounds[first]` on), each shuffled and
    // handed to `then`, and what it keeps moved down, before the next is gathered.
    let source = &pool[..];
    let fill = |first: usize, last: usize, out: &mut [Rec]| {
        let mut at = 0;
        // The entries kept so far: `out[..kept]`.
        let mut kept = 0;
        let mut done = Vec::with_capacity(last - first);
        for b in first..last {
            if is_set(stop) {
                break;
            }
            let begin = at;
            for j in 0..c {
                let (s, len) = (starts[j * k + b], counts[j * k + b] as usize);
                out[at..at + len].copy_from_slice(&source[s..s + len]);
                at += len;
            }
            let block = &mut out[begin..at];
            shuffle(block, &mut Rng::for_stream(base, (c + b) as u64));
            let (result, keep) = then(block);
            if kept < begin {
                out.copy_within(begin..begin + keep, kept);
            }
            done.push((result, bounds[first] + kept));
            kept += keep;
        }
        done
    };
    let done = if parallel {
        on_threads(block_runs(out, &bounds, threads), |(first, last, mine)| {
            fill(first, last, mine)
        })
        .into_iter()
        .flatten()
        .collect()
    } else {
        fill(0, k, out)
    };
    (bounds, done)
}

/// Reads one record per 64-byte cache line of `items` (every fifth: 60 bytes apart), in order,
/// before a shuffle of them: a pool's chunk (under a MiB) is then in cache before the shuffle
/// reads it at random, instead of being fetched a line per random read (a chunk the split
/// wrote long before shuffles in half the time).
fn warm(items: &[Rec]) {
    let lines = items.iter().step_by(5).fold(0, |x, r| x ^ r.id);
    std::hint::black_box(lines);
}

/// A block bound for [`block_runs`]: an offset into the items (plans store them as `u32`).
pub(in crate::data) trait Bound: Copy {
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
pub(in crate::data) fn block_runs<'a, T, B: Bound>(
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

/// `f` on each of `runs`, the first on the calling thread and each other on a scoped thread
/// of its own, and the results in order (starting a thread costs ~30 us on a 2-core VM: the
/// caller works instead of waiting for one more).
pub(in crate::data) fn on_threads<T: Send, R: Send>(
    runs: Vec<T>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let mut runs = runs.into_iter();
    let Some(first) = runs.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let f = &f;
        let others: Vec<_> = runs.map(|run| scope.spawn(move || f(run))).collect();
        let mut done = Vec::with_capacity(others.len() + 1);
        done.push(f(first));
        done.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a worker thread panicked")),
        );
        done
    })
}

/// What [`pack_block`] leaves: samples packed, each pack's end, samples for the next round.
pub(super) type PackedBlock = (usize, Vec<u32>, Vec<Rec>);

/// One block of a packing round, packed first fit over up to `open_packs` open packs, in place:
/// the block's packed samples are moved to its front, pack after pack in acceptance order
/// (a closed pack's samples were all read before it is written, so writing never passes
/// reading). Returns how many samples were packed, each pack's end (from the block's start), and
/// the samples left for the next round (none in the last round: its open packs are packs too).
pub(super) fn pack_block(block: &mut [Rec], last: bool, p: &BalanceParams) -> PackedBlock {
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
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
                if p.closes(b.v, b.t) {
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
                if p.closes(sv, st) {
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

/// Step 1: packs, in acceptance order. Each of up to `rounds` rounds shuffles what is left in
/// blocks and packs each block as it is shuffled ([`shuffle_blocks_then`], [`pack_block`], on
/// the same thread while the block is in cache): the blocks' packs in block order, their
/// leftovers (in block order) the next round's pool. Blocks are independent: threads take runs of
/// them (the packs do not depend on how many). Once `stop` is set it returns early (between
/// blocks) with unfinished packs, which the caller discards.
///
/// Two buffers of `n` records serve every round: the packs' (fresh, with room for
/// `n / SPREAD_ROOM_DIV` more records, for the packs `spread_tail` appends), whose first `packed`
/// entries are the packs so far and whose other `n - packed` entries receive the round's
/// shuffle, the blocks' packs then moved down after the packs in place; and `pool`'s, whose first
/// `n - packed` entries are the pool (the round's leftovers are written back into it). Returns
/// the packs; `pool`'s buffer, at its full length (its pages touched, for the caller's next big
/// buffer, whose entries it need not zero); and the number of packs made before the last round
/// (all of them when it never ran): a round but the last keeps only packs it accepted, so only
/// the last round's can be part-filled ([`repack_part_filled`]).
pub(super) fn pack(
    pool: Vec<Rec>,
    p: &BalanceParams,
    progress: &mut dyn Progress,
    total: u64,
    threads: usize,
    stop: Option<&AtomicBool>,
) -> (Packs<Rec>, Vec<Rec>, usize) {
    let n = pool.len();
    let mut pool = pool;
    let mut out: Packs<Rec> = Packs::new();
    // Every entry is written by a shuffle before it is read; the pages are first touched by the
    // threads that gather into them.
    let mut items: Vec<Rec> = bytemuck::allocation::zeroed_vec(n + n / SPREAD_ROOM_DIV);
    items.truncate(n);
    // `items[..packed]`: the packs so far; `pool[..n - packed]`: the pool.
    let mut packed = 0usize;
    // Packs made before the last round.
    let mut accepted = None;
    for round in 0..p.rounds {
        let last = round + 1 == p.rounds;
        // Each block packed as soon as it is shuffled, by the thread that shuffled it.
        let (_, done) = shuffle_blocks_then(
            &mut pool[..n - packed],
            &mut items[packed..],
            &mut Rng::for_epoch(p.seed, p.epoch, round as u64),
            threads,
            stop,
            |block| {
                let packed = pack_block(block, last, p);
                let written = packed.0;
                (packed, written)
            },
        );
        // Cancelled: some blocks were never packed.
        if is_set(stop) {
            return (out, pool, 0);
        }
        if last {
            accepted = Some(out.len());
        }
        out.offsets
            .reserve(done.iter().map(|((_, ends, _), _)| ends.len()).sum());
        // The blocks' packs (moved down within each thread's run of blocks already) moved down
        // after the packs so far, in block order; their leftovers to the front of the pool's
        // buffer (which the shuffle has read).
        let (mut at, mut left) = (packed, 0usize);
        for ((written, ends, rest), from) in done {
            let start = packed + from;
            if start > at {
                items.copy_within(start..start + written, at);
            }
            out.offsets.extend(ends.iter().map(|&e| at as u32 + e));
            at += written;
            pool[left..left + rest.len()].copy_from_slice(&rest);
            left += rest.len();
        }
        packed = at;
        debug_assert_eq!(packed + left, n, "every sample packed or left");
        progress.report(total - left as u64, total * 2);
        if left == 0 {
            break;
        }
    }
    items.truncate(packed);
    out.items = items;
    let accepted = accepted.unwrap_or(out.len());
    (out, pool, accepted)
}

/// Step 1b: re-packs the samples of the packs that closed neither by vision nor by text (the
/// last round's leftovers) best-fit decreasing, so that they fill the vision cap exactly where
/// the data allows instead of forming classes of part-filled packs that mix into steps. Samples
/// in (vision, text) descending order, index ascending; each joins the open pack of least vision
/// room that takes it (only the most recent pack of each room is tried), else opens one. Full
/// packs keep their order; re-packed ones follow. Runs when `0 < cap_v <= REPAIR_MAX_VISION`.
/// The first `accepted` packs are full (closed by vision or by text: [`pack`]'s packs before its
/// last round) and are left where they are, unread.
pub(super) fn repack_part_filled(
    packs: Packs<Rec>,
    accepted: usize,
    p: &BalanceParams,
) -> Packs<Rec> {
    let cap_v = p.caps.max_vision as u64;
    if cap_v == 0 || cap_v > REPAIR_MAX_VISION {
        return packs;
    }
    // The accepted packs moved down in place, in order (no copy of the pool): pack `k`'s range
    // is read before any write reaches offset `k`, and writes never pass the reads.
    let mut out = packs;
    debug_assert!((0..accepted).all(|k| {
        let (v, t) = sums(&out.items[out.range(k)]);
        p.closes(v, t)
    }));
    let mut loose: Vec<Rec> = Vec::new();
    let (mut kept, mut end) = (accepted, out.offsets[accepted] as usize);
    for k in accepted..out.len() {
        let r = out.range(k);
        let (v, t) = sums(&out.items[r.clone()]);
        if p.closes(v, t) {
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
    // Unstable: the keys are unique (so is each sample's id), so the order is the stable one.
    rest.sort_unstable_by_key(|r| (Reverse(r.v), Reverse(r.t), r.id));
    best_fit(&rest, p, &mut out, None);
    out
}

/// Packs `items` in order, best fit by vision room (see [`repack_part_filled`]); full packs go
/// to `out` as they fill; the packs left part-filled go to `rest` as loose samples when given,
/// else to `out` too.
pub(super) fn best_fit(
    items: &[Rec],
    p: &BalanceParams,
    out: &mut Packs<Rec>,
    mut rest: Option<&mut Vec<Rec>>,
) {
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let mut bins: Vec<OpenPack> = Vec::new();
    let mut closed: Vec<bool> = Vec::new();
    // Closed bins' item buffers, reused by the bins opened later (a closed bin is never read
    // again): no allocation, and no regrowth, per bin.
    let mut spare: Vec<Vec<Rec>> = Vec::new();
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
                let mut items = spare.pop().unwrap_or_else(|| Vec::with_capacity(BIN_ROOM));
                items.clear();
                items.push(i);
                bins.push(OpenPack {
                    items,
                    v: sv,
                    t: st,
                });
                closed.push(false);
                bins.len() - 1
            }
        };
        if p.closes(bins[b].v, bins[b].t) {
            closed[b] = true;
            out.push(&bins[b].items);
            spare.push(std::mem::take(&mut bins[b].items));
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

/// Samples a new [`best_fit`] bin has room for before its buffer grows (packs hold ~4.5
/// samples at the default size): tunes speed only.
const BIN_ROOM: usize = 8;

/// A set of integers below a bound, as a two-level bitset: [`RoomSet::next_at_or_after`] reads
/// at most one word per 4,096 integers (the TypeScript twin has the same set).
pub(super) struct RoomSet {
    /// Bit `r % 64` of word `r / 64`: `r` is in the set.
    pub(super) words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64`: word `w` of `words` is not zero.
    pub(super) summary: Vec<u64>,
}

impl RoomSet {
    pub(super) fn new(bound: usize) -> Self {
        let words = bound.div_ceil(64);
        RoomSet {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }

    pub(super) fn insert(&mut self, r: usize) {
        self.words[r / 64] |= 1 << (r % 64);
        self.summary[r / 4096] |= 1 << ((r / 64) % 64);
    }

    pub(super) fn remove(&mut self, r: usize) {
        self.words[r / 64] &= !(1 << (r % 64));
        if self.words[r / 64] == 0 {
            self.summary[r / 4096] &= !(1 << ((r / 64) % 64));
        }
    }

    /// The least member `>= r`, if any.
    pub(super) fn next_at_or_after(&self, r: usize) -> Option<usize> {
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

/// Largest vision cap [`repack_part_filled`] runs at (its memory, and the cost of finding a
/// pack with room, about one word per 4,096 units, grow with the cap).
pub const REPAIR_MAX_VISION: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

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
            let mut one = vec![Rec { id: 0, v: 0, t: 0 }; n];
            // `then` gets each block as shuffled, in block order (all of it kept, in place).
            let copy = |block: &mut [Rec]| (block.to_vec(), block.len());
            let (bounds, seen_blocks) = shuffle_blocks_then(
                &mut pool.clone(),
                &mut one,
                &mut Rng::new(seed),
                1,
                None,
                copy,
            );
            assert_eq!(bounds.len(), 4);
            let blocks: Vec<Vec<Rec>> = seen_blocks.iter().map(|(x, _)| x.clone()).collect();
            assert!(blocks.concat() == one, "seed {seed}: blocks handed to then");
            let at: Vec<usize> = seen_blocks.iter().map(|&(_, at)| at).collect();
            assert_eq!(at, bounds[..3]);
            assert_eq!(*bounds.last().unwrap(), n);
            let mut seen = vec![false; n];
            for r in &one {
                assert!(!seen[r.id as usize], "sample {} twice", r.id);
                seen[r.id as usize] = true;
            }
            for threads in [2, 3] {
                // A buffer's old contents do not change the shuffle.
                let mut other = vec![Rec { id: 7, v: 7, t: 7 }; n];
                let mut rng = Rng::new(seed);
                let got = shuffle_blocks_then(
                    &mut pool.clone(),
                    &mut other,
                    &mut rng,
                    threads,
                    None,
                    copy,
                );
                assert_eq!(got.0, bounds);
                assert!(other == one, "seed {seed}: {threads} threads");
                assert!(
                    got.1 == seen_blocks,
                    "seed {seed}: {threads} threads' blocks"
                );
                // What `then` keeps (here the first half of a block, reversed) is moved down
                // after what it kept of the run's blocks before, wherever a run starts.
                let half = |block: &mut [Rec]| {
                    let h = block.len() / 2;
                    block[..h].reverse();
                    (block[..h].to_vec(), h)
                };
                let mut out = vec![Rec { id: 7, v: 7, t: 7 }; n];
                let mut rng = Rng::new(seed);
                let (_, kept) =
                    shuffle_blocks_then(&mut pool.clone(), &mut out, &mut rng, threads, None, half);
                assert_eq!(kept.len(), 3);
                for (b, (want, at)) in kept.iter().enumerate() {
                    let mut block = blocks[b].clone();
                    block[..want.len()].reverse();
                    assert!(*want == block[..want.len()], "seed {seed}: block {b}");
                    assert!(
                        out[*at..at + want.len()] == want[..],
                        "seed {seed}: block {b}"
                    );
                    let run_start = threads == 2 && b == 2 || threads == 3 || b == 0;
                    let after = if b == 0 {
                        0
                    } else {
                        kept[b - 1].1 + kept[b - 1].0.len()
                    };
                    let want_at = if run_start { bounds[b] } else { after };
                    assert_eq!(*at, want_at, "seed {seed}: {threads} threads, block {b}");
                }
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
    fn pack_hands_back_the_pool_s_buffer_whatever_round_it_ends_in() {
        // Over a block of leftovers after round 0 (about a fifth of the samples), so the later
        // rounds shuffle in blocks too, from a pool shorter than its buffer.
        let n = 6 * PACK_BLOCK;
        let caps = crate::data::samples::Caps {
            max_vision: 16,
            max_text: 2048,
        };
        for (rounds, threads) in [(2, 1), (2, 2), (3, 2), (4, 1), (4, 2)] {
            let mut rng = Rng::new(5);
            let mut pool: Vec<Rec> = Vec::with_capacity(n + 100);
            pool.extend((0..n as u32).map(|id| Rec {
                id,
                v: rng.below(9),
                t: 1 + rng.below(600),
            }));
            let at = pool.as_ptr();
            let mut p = BalanceParams::new(8, 1, caps, 1, 0);
            p.rounds = rounds;
            let (packs, spare, _) = pack(pool, &p, &mut (), n as u64, threads, None);
            assert_eq!(packs.items.len(), n, "{rounds} rounds");
            // The split's buffer, with the room the layout reserved in it, at its full length
            // (the layout need not zero its entries).
            assert_eq!(spare.as_ptr(), at, "{rounds} rounds, {threads} threads");
            assert!(spare.capacity() >= n + 100);
            assert_eq!(spare.len(), n, "{rounds} rounds, {threads} threads");
        }
    }

    #[test]
    fn only_the_last_round_s_packs_are_re_packed() {
        let n = 3 * PACK_BLOCK;
        let mut rng = Rng::new(9);
        let pool: Vec<Rec> = (0..n as u32)
            .map(|id| Rec {
                id,
                v: rng.below(9),
                t: 1 + rng.below(600),
            })
            .collect();
        let caps = crate::data::samples::Caps {
            max_vision: 16,
            max_text: 2048,
        };
        let p = BalanceParams::new(8, 1, caps, 3, 0);
        let (packs, _, accepted) = pack(pool, &p, &mut (), n as u64, 2, None);
        // Most packs are made before the last round, and all of those are full.
        assert!(
            accepted > packs.len() * 3 / 4 && accepted < packs.len(),
            "{accepted}"
        );
        let full = |k: usize| {
            let (v, t) = sums(&packs.items[packs.range(k)]);
            v >= caps.max_vision as u64 || t >= p.min_text as u64
        };
        assert!((0..accepted).all(full));
        assert!(
            !(accepted..packs.len()).all(full),
            "no part-filled pack to re-pack"
        );
        let skipped = repack_part_filled(packs.clone(), accepted, &p);
        assert!(skipped == repack_part_filled(packs, 0, &p));
    }

    #[test]
    fn on_threads_returns_every_run_s_result_in_order() {
        for runs in [0usize, 1, 2, 5] {
            let caller = std::thread::current().id();
            let got = on_threads((0..runs).collect(), |r| {
                (r * 10, std::thread::current().id() == caller)
            });
            let want: Vec<(usize, bool)> = (0..runs).map(|r| (r * 10, r == 0)).collect();
            assert_eq!(got, want, "{runs} runs");
        }
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
}
