//! Step 3 of the balanced planner: the layout ([`lay_out`]) and its helpers: pack orders by
//! vision sum ([`sort_by_key_descending`]), the buffers reused as flat words ([`loads_buffer`],
//! [`ids_in_place`]).

use super::swaps::{PackLoad, SampleLoad};
use super::{Rec, PARALLEL_MIN_STEPS};
use crate::data::cost::TextCost;
use crate::data::plan::{Packs, GATHER_BATCH};
use bytemuck::Zeroable;
use std::cmp::Reverse;

/// Largest key [`sort_by_key_descending`] counts (larger ones are compared).
pub const COUNTING_SORT_MAX: u64 = 1 << 20;

/// Sorts `list` (indices into `key`) by key, descending, keeping the order of equal keys: by
/// counting when the keys are small (pack vision sums are at most the vision cap: one pass counts
/// each key, one places each index), else by comparison (the same order).
pub(super) fn sort_by_key_descending(list: &mut Vec<u32>, key: &[u32]) {
    let mut count: Vec<usize> = Vec::new();
    for &k in list.iter() {
        let x = key[k as usize] as usize;
        if x as u64 > COUNTING_SORT_MAX {
            list.sort_by_cached_key(|&k| Reverse(key[k as usize]));
            return;
        }
        if x >= count.len() {
            count.resize(x + 1, 0);
        }
        count[x] += 1;
    }
    // Where each key's run starts, the largest key's first.
    let mut at = 0;
    for c in count.iter_mut().rev() {
        let n = *c;
        *c = at;
        at += n;
    }
    let mut out = vec![0u32; list.len()];
    for &k in list.iter() {
        let x = key[k as usize] as usize;
        out[count[x]] = k;
        count[x] += 1;
    }
    *list = out;
}

/// The samples' ids in order, written in place in `loads`' own buffer (whose pages are touched
/// already) read as words: id `j`, word `4 j + 3`, moves down to word `j`, never past a word
/// still to be read; the rest of the buffer is then freed.
pub(super) fn ids_in_place(loads: Vec<SampleLoad>) -> Vec<u32> {
    const _: () = assert!(std::mem::offset_of!(SampleLoad, id) == 12);
    let n = loads.len();
    let mut words: Vec<u32> = bytemuck::allocation::cast_vec(loads);
    for j in 0..n {
        words[j] = words[4 * j + 3];
    }
    words.truncate(n);
    words.shrink_to_fit();
    words
}

/// Packs from which the layout reads their lengths on threads.
pub(super) const PARALLEL_LENGTHS_MIN: usize = 1 << 14;

/// Text lengths below which the layout looks up each sample's weight in a table of every
/// length's (when that is under a quarter of the samples), instead of computing it.
pub(super) const WEIGHT_TABLE_MAX: usize = 1 << 16;

/// Samples from which the layout widens its records into loads on threads.
pub(super) const PARALLEL_WIDEN_MIN: usize = 1 << 16;

/// Records' room for `n` samples' loads (four words a sample, where a record is three), so that
/// the pool's buffer, made this large while new, need not move when [`loads_buffer`] widens it.
pub(super) fn loads_capacity(n: usize) -> usize {
    (n + 2) * 4 / 3 + 1
}

/// A buffer for `n` samples' loads made of `spare`'s (its capacity grown or cut to exactly four
/// words a sample), holding the whole entries that three words a sample fill; entries it already
/// had keep their (stale) contents: the gather overwrites them.
fn loads_buffer(spare: Vec<Rec>, n: usize) -> Vec<SampleLoad> {
    let len = (3 * n).div_ceil(4);
    // Records are three words: any buffer of them is one of words.
    let mut words: Vec<u32> =
        bytemuck::allocation::try_cast_vec(spare).unwrap_or_else(|(_, spare)| {
            debug_assert!(spare.is_empty(), "records cast to words");
            Vec::new()
        });
    words.truncate(4 * len);
    if words.capacity() < 4 * n {
        words.reserve_exact(4 * n - words.len());
    }
    words.shrink_to(4 * n);
    words.resize(4 * len, 0);
    bytemuck::allocation::try_cast_vec(words).unwrap_or_else(|_| {
        let mut fresh = Vec::with_capacity(n);
        fresh.resize(len, SampleLoad::zeroed());
        fresh
    })
}

/// Step 3: the packs renumbered in `order` (old pack indices), then the over-cap samples one per
/// pack, with each sample's loads stored beside it ([`SampleLoad`], in the new order) and each
/// pack's sums ([`PackLoad`]); every phase after this reads memory in order. The records are
/// gathered in the new order, three words each, into the first three quarters of the loads' own
/// buffer; the old packs are then freed and each record widened in place to its loads. Peak: the
/// records twice, not the records and the loads. The loads' buffer is `spare` (a freed buffer of
/// records, whose pages are touched already) grown to four words a sample; only its growth is
/// fresh memory, touched as it is written. Threads take runs of packs (the result does not
/// depend on how many).
pub(super) fn lay_out(
    packs: Packs<Rec>,
    order: Vec<u32>,
    oversize: Vec<Rec>,
    spare: Vec<Rec>,
    cost: &TextCost,
    (max_text, max_cost): (u32, f64),
    threads: usize,
) -> (Packs, Vec<SampleLoad>, Vec<PackLoad>) {
    let order_old = order;
    let oversize_recs = oversize;
    let source = |j: usize| -> &[Rec] {
        match order_old.get(j) {
            Some(&k) => packs.get(k as usize),
            None => std::slice::from_ref(&oversize_recs[j - order_old.len()]),
        }
    };
    let count = order_old.len() + oversize_recs.len();
    // The new packs' ends: their lengths (threads take runs of packs: the old packs' offsets are
    // read at random), then summed in order.
    let mut ends = vec![0u32; count + 1];
    let lengths = |a: usize, out: &mut [u32]| {
        for (j, x) in out.iter_mut().enumerate() {
            *x = source(a + j).len() as u32;
        }
    };
    if threads <= 1 || count < PARALLEL_LENGTHS_MIN {
        lengths(0, &mut ends[1..]);
    } else {
        let per = count.div_ceil(threads);
        std::thread::scope(|scope| {
            for (g, out) in ends[1..].chunks_mut(per).enumerate() {
                let lengths = &lengths;
                scope.spawn(move || lengths(g * per, out));
            }
        });
    }
    for j in 1..=count {
        ends[j] += ends[j - 1];
    }
    let n = ends[count] as usize;
    let new_packs: Packs = Packs {
        items: Vec::new(),
        offsets: ends,
    };
    // Records widened last first: a record's loads never cover an earlier record.
    let zero = SampleLoad {
        w: 0,
        v: 0,
        t: 0,
        id: 0,
    };
    let mut sample_loads = loads_buffer(spare, n);
    let offsets = &new_packs.offsets;
    // Packs `[a, b)` into `out`, the entries from word `3 * offsets[a]` on: each pack's records
    // copied as they are (three words each, `Rec`'s fields in order).
    let gather = |a: usize, b: usize, out: &mut [SampleLoad]| {
        let out: &mut [u32] = bytemuck::cast_slice_mut(out);
        let mut q = 0;
        let mut touched = 0u32;
        for from in (a..b).step_by(GATHER_BATCH) {
            let to = (from + GATHER_BATCH).min(b);
            for j in from..to {
                touched ^= source(j).first().map_or(0, |r| r.id);
            }
            for j in from..to {
                let words: &[u32] = bytemuck::cast_slice(source(j));
                out[q..q + words.len()].copy_from_slice(words);
                q += words.len();
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
    drop((packs, order_old, oversize_recs));
    sample_loads.resize(n, zero);
    // Each text length's weight, looked up (where there are few lengths for the samples) instead
    // of computed per sample (a division each): the same weights.
    let table: Vec<u32> = if (max_text as usize) < WEIGHT_TABLE_MAX && (max_text as usize) < n / 4 {
        (0..=max_text)
            .map(|t| cost.weight(t, max_cost) as u32)
            .collect()
    } else {
        Vec::new()
    };
    let weight = |t: u32| match table.get(t as usize) {
        Some(&w) => w,
        None => cost.weight(t, max_cost) as u32,
    };
    // Record `[id, v, t]` widened to its loads.
    let widened = |r: &[u32]| SampleLoad {
        w: weight(r[2]),
        v: r[1],
        t: r[2],
        id: r[0],
    };
    // Entries `[lo, hi)` with `3 hi <= 4 lo` read words `[3 lo, 3 hi)`, all in entries below `lo`,
    // which no entry of `[lo, hi)` overwrites: such a wave is widened on threads, each from the
    // untouched entries below it; waves go downward, and the last small part is done in place,
    // last first.
    let mut hi = n;
    while threads > 1 && hi >= PARALLEL_WIDEN_MIN {
        let lo = (3 * hi).div_ceil(4);
        let (below, wave) = sample_loads.split_at_mut(lo);
        let below: &[u32] = bytemuck::cast_slice(below);
        let per = (hi - lo).div_ceil(threads);
        std::thread::scope(|scope| {
            for (g, out) in wave[..hi - lo].chunks_mut(per).enumerate() {
                let widened = &widened;
                let q = 3 * (lo + g * per);
                let records = below[q..q + 3 * out.len()].chunks_exact(3);
                scope.spawn(move || {
                    for (x, r) in out.iter_mut().zip(records) {
                        *x = widened(r);
                    }
                });
            }
        });
        hi = lo;
    }
    let words: &mut [u32] = bytemuck::cast_slice_mut(&mut sample_loads[..hi]);
    for i in (0..hi).rev() {
        let x = widened(&words[3 * i..3 * i + 3]);
        words[4 * i..4 * i + 4].copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&x)));
    }
    // Zeroed pages, touched by the threads that fill them.
    let mut pack_loads: Vec<PackLoad> = bytemuck::allocation::zeroed_vec(count);
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
    (new_packs, sample_loads, pack_loads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The layout's outputs as plain numbers.
    type Laid = (Packs, Vec<[u32; 4]>, Vec<[u64; 3]>);

    /// Laid out from `spare`, on `threads`; `max_text` the longest text (9,000, or more: then no
    /// table of weights).
    fn laid_out(spare: Vec<Rec>, threads: usize, max_text: u32) -> Laid {
        let mut rng = Rng::new(3);
        let mut packs: Packs<Rec> = Packs::new();
        let mut id = 0;
        while id < 100_000 {
            let len = 1 + rng.below(8);
            let pack: Vec<Rec> = (id..id + len)
                .map(|id| Rec {
                    id,
                    v: 1 + id % 7,
                    t: 50 + id % 3_000,
                })
                .collect();
            packs.push(&pack);
            id += len;
        }
        let mut order: Vec<u32> = (0..packs.len() as u32).collect();
        crate::permutation::shuffle(&mut order, &mut rng);
        order.truncate(order.len() - 5);
        let oversize: Vec<Rec> = (0..9)
            .map(|j| Rec {
                id: id + j,
                v: 40,
                t: 9_000,
            })
            .collect();
        let cost = TextCost::new(1.0, 1.0 / 73_728.0).unwrap();
        let most = (max_text, 9_000.0);
        let (packs, loads, sums) = lay_out(packs, order, oversize, spare, &cost, most, threads);
        let loads = loads.iter().map(|x| [x.w, x.v, x.t, x.id]).collect();
        let sums = sums.iter().map(|x| [x.v, x.w, x.t]).collect();
        (packs, loads, sums)
    }

    #[test]
    fn sorting_by_key_descending_is_a_stable_sort_by_key_descending() {
        let mut rng = Rng::new(9);
        for (n, top) in [(0, 1), (1, 1), (500, 1), (5_000, 40), (5_000, 1 << 22)] {
            let key: Vec<u32> = (0..n).map(|_| rng.below(top)).collect();
            let mut list: Vec<u32> = (0..n).collect();
            crate::permutation::shuffle(&mut list, &mut rng);
            list.truncate(n as usize * 3 / 4);
            let mut want = list.clone();
            want.sort_by_key(|&k| Reverse(key[k as usize]));
            sort_by_key_descending(&mut list, &key);
            assert_eq!(list, want, "{n} keys below {top}");
        }
    }

    #[test]
    fn loads_laid_out_in_a_reused_buffer_equal_those_in_a_fresh_one() {
        let want = laid_out(Vec::new(), 1, 9_000);
        let n = want.1.len();
        assert!(n > PARALLEL_WIDEN_MIN);
        let junk = Rec { id: 7, v: 7, t: 7 };
        for threads in [1, 2, 3] {
            // Stale contents, short or long of the records, of any capacity.
            for len in [0, n / 3, n - 1, n, n + 5, 2 * n] {
                let mut spare = vec![junk; len];
                spare.reserve_exact(len % 5);
                let got = laid_out(spare, threads, 9_000);
                assert!(got == want, "{threads} threads, a spare of {len}");
            }
        }
    }

    #[test]
    fn weights_looked_up_in_a_table_are_those_computed() {
        let cost = TextCost::new(1.0, 1.0 / 73_728.0).unwrap();
        let looked_up = laid_out(Vec::new(), 2, 9_000);
        for x in &looked_up.1 {
            assert_eq!(x[0], cost.weight(x[2], 9_000.0) as u32, "text {}", x[2]);
        }
        // Texts said to reach the table's end: computed one by one.
        let computed = laid_out(Vec::new(), 2, WEIGHT_TABLE_MAX as u32);
        assert!(looked_up == computed);
    }

    #[test]
    fn ids_written_in_place_are_the_loads_ids_in_order() {
        for n in [0, 1, 5, 1_000] {
            let loads: Vec<SampleLoad> = (0..n)
                .map(|i| SampleLoad {
                    w: i * 3,
                    v: i % 5,
                    t: i + 1,
                    id: n * 2 - i,
                })
                .collect();
            let want: Vec<u32> = loads.iter().map(|x| x.id).collect();
            assert_eq!(ids_in_place(loads), want);
        }
    }
}
