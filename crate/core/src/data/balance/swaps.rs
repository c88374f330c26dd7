//! Steps 4 and 5 of the balanced planner: the swap rules that even packs' costs (and a step's
//! vision sums) without changing what a pack may hold: each packed sample's loads stored beside
//! it ([`SampleLoad`]), each pack's sums ([`PackLoad`]), pairing passes, greedy swaps and the
//! swap searches ([`SwapRules`]), and [`for_each_range`], which runs them over disjoint ranges
//! of packs on worker threads.

use crate::data::plan::Packs;
use crate::progress::is_set;
use std::cmp::Reverse;
use std::sync::atomic::AtomicBool;

/// Per-pack sums, side by side: a view of packs `base..base + p.len()` (a thread's share).
pub(super) struct Loads<'a> {
    pub(super) p: &'a mut [PackLoad],
    pub(super) base: usize,
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

/// One pack's sums: vision, cost weight, text. `Zeroable`, so the layout allocates them zeroed.
#[derive(Clone, Copy, bytemuck::Zeroable)]
pub(super) struct PackLoad {
    pub(super) v: u64,
    pub(super) w: u64,
    pub(super) t: u64,
}

impl Loads<'_> {
    /// Order of matched packs: vision, then cost, descending; then index.
    pub(super) fn key(&self, k: u32) -> (Reverse<u64>, Reverse<u64>, u32) {
        let x = self[k as usize];
        (Reverse(x.v), Reverse(x.w), k)
    }
}

/// The swap rules, with each packed sample's loads stored alongside `packs.items` (same
/// positions, swapped together) so swaps read memory in order.
pub(super) struct SwapRules<'a> {
    /// Vision, cost weight and text of the sample at each position of `packs.items` from
    /// `base` on, side by side (a thread's share: the items of its packs).
    pub(super) s: &'a mut [SampleLoad],
    pub(super) base: usize,
    pub(super) cap_t: u64,
    /// Scratch: the pairs of a pack (see [`SwapRules::swap_pairs`]).
    pub(super) pairs: Vec<PairLoad>,
    /// Scratch: (cost, pack) keys being sorted (costs past 32 bits).
    pub(super) keys: Vec<(u64, u32)>,
    /// Scratch: a large pack's samples as (vision, cost, text, position), sorted.
    pub(super) sorted: Vec<(u32, u32, u32, u32)>,
    /// Scratch: one-word sort keys ([`SwapRules::sort_by_cost`], [`radix_sort`], the sorted
    /// pair search's (cost sum, pair) keys).
    pub(super) words: Vec<u64>,
    /// Scratch: the second buffer of [`radix_sort`].
    pub(super) radix: Vec<u64>,
    /// Scratch: the greedy phase's max-heap entries (kept between calls).
    pub(super) heap: Vec<(u64, u32)>,
}

/// Two samples of one pack, summed, with their positions.
#[derive(Clone, Copy)]
pub(super) struct PairLoad {
    pub(super) v: u32,
    pub(super) w: u64,
    pub(super) t: u64,
    pub(super) at: [u32; 2],
}

/// One packed sample's loads (see [`SwapRules`]). Plain words (`Pod`, in field order), so the
/// layout builds them in a reused buffer of words.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub(super) struct SampleLoad {
    pub(super) w: u32,
    pub(super) v: u32,
    pub(super) t: u32,
    /// The sample's index (the packs' items are written from these at the end).
    pub(super) id: u32,
}

impl SwapRules<'_> {
    /// Sorts `group` (pack indices) by (cost, index), on keys gathered once (the same order as
    /// sorting by looking the costs up: the keys are unique); up to [`SMALL_SORT_MAX`] packs by
    /// insertion, from [`RADIX_SORT_MIN`] by radix.
    pub(super) fn sort_by_cost(&mut self, loads: &Loads<'_>, group: &mut [u32]) {
        if group.len() <= SMALL_SORT_MAX {
            // A step's packs (m = 8 at dp 8): an insertion sort on one word per key, on the
            // stack, when every cost fits in 32 bits.
            let mut words = [0u64; SMALL_SORT_MAX];
            let words = &mut words[..group.len()];
            let mut high = 0;
            for (x, &k) in words.iter_mut().zip(group.iter()) {
                let w = loads[k as usize].w;
                high |= w >> 32;
                *x = w << 32 | k as u64;
            }
            if high == 0 {
                insertion_sort(words);
                for (g, &x) in group.iter_mut().zip(words.iter()) {
                    *g = x as u32;
                }
                return;
            }
        }
        if group.len() >= RADIX_SORT_MIN {
            // A window's packs: (cost - least cost, pack - least pack) as one word (the same
            // order), sorted by radix on the bits they span (a window's costs lie close).
            let (mut w_min, mut w_max, mut k_min, mut k_max) = (u64::MAX, 0, u32::MAX, 0);
            for &k in group.iter() {
                let w = loads[k as usize].w;
                (w_min, w_max) = (w_min.min(w), w_max.max(w));
                (k_min, k_max) = (k_min.min(k), k_max.max(k));
            }
            let k_bits = u32::BITS - (k_max - k_min).leading_zeros();
            let w_bits = u64::BITS - (w_max - w_min).leading_zeros();
            if k_bits + w_bits <= u64::BITS {
                let words = &mut self.words;
                words.clear();
                let key = |k: u32| (loads[k as usize].w - w_min) << k_bits | (k - k_min) as u64;
                if group.len() == (k_max - k_min) as usize + 1 {
                    // Every pack of `k_min..=k_max` (a window; packs are distinct): the keys in
                    // pack order, so only the cost bits are left to sort.
                    words.extend((k_min..=k_max).map(key));
                    radix_sort(words, &mut self.radix, k_bits..k_bits + w_bits);
                } else {
                    words.extend(group.iter().map(|&k| key(k)));
                    radix_sort(words, &mut self.radix, 0..k_bits + w_bits);
                }
                let k_mask = (1u64 << k_bits) - 1;
                for (g, &x) in group.iter_mut().zip(words.iter()) {
                    *g = (x & k_mask) as u32 + k_min;
                }
                return;
            }
        }
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

    /// Sorts `group` by (vision descending, cost, index): [`SwapRules::sort_by_cost`] when its
    /// packs share one vision sum (the usual case), else by the whole key.
    pub(super) fn sort_by_vision_then_cost(&mut self, loads: &Loads<'_>, group: &mut [u32]) {
        let Some(&first) = group.first() else {
            return;
        };
        let v = loads[first as usize].v;
        if group.iter().all(|&k| loads[k as usize].v == v) {
            return self.sort_by_cost(loads, group);
        }
        group.sort_unstable_by_key(|&k| {
            let x = loads[k as usize];
            (Reverse(x.v), x.w, k)
        });
    }

    /// Pack `k`'s positions in this view's `s`.
    pub(super) fn at(&self, packs: &Packs, k: usize) -> std::ops::Range<usize> {
        let r = packs.range(k);
        r.start - self.base..r.end - self.base
    }

    /// The one swap of equal-vision samples between packs `hi` and `lo` (`hi` costlier) that
    /// brings their costs closest to each other, keeping `lo` under the text cap; made, if any.
    /// Ties: the first in (position in `hi`, position in `lo`) order.
    pub(super) fn swap(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        hi: usize,
        lo: usize,
    ) -> bool {
        let (h, l) = (loads[hi], loads[lo]);
        let gap = h.w - l.w;
        if gap <= 1 {
            return false; // a swap moves a whole unit or more (d > 0) and must stay under the gap
        }
        let room = self.cap_t - l.t.min(self.cap_t);
        let (rh, rl) = (self.at(packs, hi), self.at(packs, lo));
        let best = if rh.len() * rl.len() <= SWAP_SCAN_MAX && gap < SCAN_GAP_MAX {
            self.best_swap_scan(rh.clone(), rl.clone(), gap, room)
        } else {
            self.best_swap_sorted(rh.clone(), rl.clone(), gap, room)
        };
        let Some((_, xi, yi)) = best else {
            return self.swap_pairs(loads, (hi, rh), (lo, rl));
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

    /// [`SwapRules::swap`]'s search, every pair compared: the best (score, x, y) positions
    /// (`1 <= gap < 2^48`, at most 256 samples a pack).
    pub(super) fn best_swap_scan(
        &self,
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        gap: u64,
        room: u64,
    ) -> Option<(u64, usize, usize)> {
        // Past the vision test (a branch: it saves more work than its mispredictions cost),
        // without branches on the data (the other tests pass about as often as not, and
        // mispredicted branches cost more than computing every candidate: 5-10% of the planner
        // at 1.2M-4M samples): each candidate is one word (score << 16 | x << 8 | y, x and y
        // counted in their packs), all ones when not allowed, and the least word is the best
        // score, ties the first in (x, y) order.
        debug_assert!((1..1 << 48).contains(&gap) && rh.len() <= 256 && rl.len() <= 256);
        let mut best = u64::MAX;
        let ys = &self.s[rl.clone()];
        for (i, x) in self.s[rh.clone()].iter().enumerate() {
            let (vx, wx) = (x.v, x.w as u64);
            // Allowed: same vision, 0 < d < gap, and lo's text after the swap
            // (t_lo - t_y + t_x) under the cap: t_y >= t_x - room.
            let t_min = (x.t as u64).saturating_sub(room);
            let at = (i as u64) << 8;
            for (j, y) in ys.iter().enumerate() {
                if y.v != vx {
                    continue;
                }
                let d = wx.wrapping_sub(y.w as u64);
                let allowed = (d.wrapping_sub(1) < gap - 1) & (y.t as u64 >= t_min);
                let word = gap.abs_diff(d.wrapping_mul(2)) << 16 | at | j as u64;
                best = best.min(word | (allowed as u64).wrapping_sub(1));
            }
        }
        (best != u64::MAX).then_some((
            best >> 16,
            rh.start + (best >> 8 & 0xff) as usize,
            rl.start + (best & 0xff) as usize,
        ))
    }

    /// [`SwapRules::swap`]'s search for large packs, with the same result in O((|hi| + |lo|)
    /// log |lo|) (plus ties): `lo`'s samples sorted by (vision, cost, text, position). A
    /// sample's cost never falls as its text grows, so for each `x` of `hi` the partners allowed
    /// (same vision, cost in `(w_x - gap, w_x)`, text at least `t_x - room`) are one run of that
    /// order; the best are the costs nearest `w_x - gap / 2` on either side, and among equal
    /// costs the first position.
    pub(super) fn best_swap_sorted(
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
    /// both packs' text cap; only for packs of at most [`PAIR_SWAP_MAX_SAMPLES`] samples. Such
    /// exchanges change a pack's mix of sizes ({5, 1} for {3, 3}), which single swaps never do.
    /// Ties: the first in (x1, x2, y1, y2) position order. Made, if any. Each pack comes with
    /// its positions in `s`.
    pub(super) fn swap_pairs(
        &mut self,
        loads: &mut Loads<'_>,
        (hi, rh): (usize, std::ops::Range<usize>),
        (lo, rl): (usize, std::ops::Range<usize>),
    ) -> bool {
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
        let Some((_, [x1, x2], [y1, y2])) = self.best_pair_swap(rh, rl, gap, room, room_hi) else {
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

    /// [`SwapRules::swap_pairs`]'s search (`gap >= 1`, `room` and `room_hi` the text left under
    /// the cap in `lo` and `hi`): the best (score, [x1, x2], [y1, y2]) positions. `lo`'s pairs
    /// are listed in position order (their pair number); with few pairs to compare
    /// ([`PAIR_SCAN_MAX`]) each pair of `hi` scans them all, else they are sorted by (cost sum,
    /// pair number) and each pair of `hi` reads only the run of costs it may be exchanged for
    /// (`w_x - gap < w_y < w_x`), keeping the first pair number among equal scores; a pair of
    /// `hi` whose vision sum no pair of `lo` has (a 64-bit set of hashed sums says so) is
    /// skipped. Either way the result is the lexicographic least (score, x pair, y pair) of the
    /// allowed exchanges.
    // Pairs walked by index: the iterator forms (`enumerate().skip()`, or of a subslice) cost
    // 40-60M more instructions at 1.2M samples.
    #[allow(clippy::needless_range_loop)]
    pub(super) fn best_pair_swap(
        &mut self,
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        gap: u64,
        room: u64,
        room_hi: u64,
    ) -> Option<(u64, [usize; 2], [usize; 2])> {
        debug_assert!(gap >= 1 && rl.len() <= PAIR_SWAP_MAX_SAMPLES);
        let ys = &mut self.pairs;
        ys.clear();
        let mut seen = 0; // the vision sums of `lo`'s pairs (see `vision_bit`)
        let ls = &self.s[rl.clone()];
        for i1 in 0..ls.len() {
            let a = &ls[i1];
            for i2 in i1 + 1..ls.len() {
                let b = &ls[i2];
                let (y1, y2) = (rl.start + i1, rl.start + i2);
                seen |= vision_bit(a.v + b.v);
                ys.push(PairLoad {
                    v: a.v + b.v,
                    w: a.w as u64 + b.w as u64,
                    t: a.t as u64 + b.t as u64,
                    at: [y1 as u32, y2 as u32],
                });
            }
        }
        let x_pairs = rh.len() * (rh.len() - 1) / 2;
        let sorted = ys.len() * x_pairs > PAIR_SCAN_MAX;
        // (cost sum << 8 | pair number): unique, in (cost, pair number) order. A cost sum of
        // two u32 fits in 33 bits, a pair number in 8 (PAIR_SWAP_MAX_SAMPLES).
        let keys = &mut self.words;
        keys.clear();
        if sorted {
            keys.extend(ys.iter().enumerate().map(|(j, y)| y.w << 8 | j as u64));
            insertion_sort(keys);
        }
        let (mut best, mut bx, mut by) = (u64::MAX, [0usize; 2], 0usize);
        let xs = &self.s[rh.clone()];
        for i1 in 0..xs.len() {
            let x1 = &xs[i1];
            for i2 in i1 + 1..xs.len() {
                let x2 = &xs[i2];
                let vx = x1.v + x2.v;
                if seen & vision_bit(vx) == 0 {
                    continue; // no pair of `lo` has this vision sum
                }
                let wx = x1.w as u64 + x2.w as u64;
                let tx = x1.t as u64 + x2.t as u64;
                // Both packs stay under the text cap (a convex cost can fall while the text
                // grows): t_x - room <= t_y <= t_x + room_hi.
                let (t_min, t_max) = (tx.saturating_sub(room), tx.saturating_add(room_hi));
                if sorted {
                    // The allowed costs: wx - gap < w_y < wx.
                    let w_min = (wx + 1).saturating_sub(gap);
                    if w_min >= wx {
                        continue;
                    }
                    let from = keys.partition_point(|&k| k >> 8 < w_min);
                    let (mut found, mut fj) = (u64::MAX, 0);
                    for &k in &keys[from..] {
                        if k >> 8 >= wx {
                            break;
                        }
                        let j = (k & 0xff) as usize;
                        let y = &ys[j];
                        if y.v != vx || y.t < t_min || y.t > t_max {
                            continue;
                        }
                        let score = gap.abs_diff(2 * (wx - y.w));
                        if (score, j) < (found, fj) {
                            (found, fj) = (score, j);
                        }
                    }
                    if found < best {
                        (best, bx, by) = (found, [i1, i2], fj);
                    }
                    continue;
                }
                // Past the vision test, a candidate not allowed scores `u64::MAX`, and one
                // replaces the best only when strictly better (ties: the first in order).
                for (j, y) in ys.iter().enumerate() {
                    if y.v != vx {
                        continue;
                    }
                    let d = wx.wrapping_sub(y.w);
                    let allowed = (d.wrapping_sub(1) < gap - 1) & (y.t >= t_min) & (y.t <= t_max);
                    let score = if allowed {
                        gap.abs_diff(2 * d)
                    } else {
                        u64::MAX
                    };
                    let better = score < best;
                    best = if better { score } else { best };
                    bx = if better { [i1, i2] } else { bx };
                    by = if better { j } else { by };
                }
            }
        }
        (best != u64::MAX).then(|| {
            let at = ys[by].at;
            (
                best,
                [rh.start + bx[0], rh.start + bx[1]],
                [at[0] as usize, at[1] as usize],
            )
        })
    }

    /// Up to `passes` pairing passes over `group` (pack indices; reordered): sorted by cost,
    /// even passes pair the `j`-th cheapest pack with the `j`-th costliest, odd passes with the
    /// `j`-th above the middle (so excess cost spreads out instead of bouncing between packs of
    /// unlike make-up), and make each pair's best swap. A pair without a swap tries the next
    /// [`PAIR_PARTNERS`] partners on either side. Stops early when a pass makes no swap.
    pub(super) fn pair_passes(
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
    pub(super) fn even_vision(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        step: &[u32],
        cap_v: u64,
    ) {
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
    /// that pack aside and goes on. Costs O(log m) per swap (a step of at most
    /// [`SMALL_SORT_MAX`] packs, without `spread`: O(m), a scan instead of the heap).
    pub(super) fn greedy(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        group: &[u32],
        iterations: usize,
        spread: bool,
        stop_at: u64,
    ) {
        if group.len() <= SMALL_SORT_MAX && !spread {
            return self.greedy_small(packs, loads, group, iterations, stop_at);
        }
        self.greedy_heap(packs, loads, group, iterations, spread, stop_at);
    }

    /// [`SwapRules::greedy`] with a max-heap of (cost, pack) entries.
    fn greedy_heap(
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
            let Some(lo) = self.greedy_swap(packs, loads, hi, &asc) else {
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

    /// [`SwapRules::greedy`] without `spread` on a group of at most [`SMALL_SORT_MAX`] packs (a
    /// step), the same swaps: the partners' order on the stack, and instead of a heap each swap
    /// takes the pack of highest (cost, index) by a scan of the group (the heap's top current
    /// entry, as every pack has one).
    fn greedy_small(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        group: &[u32],
        iterations: usize,
        stop_at: u64,
    ) {
        let mut order = [0u32; SMALL_SORT_MAX];
        let asc = &mut order[..group.len()];
        asc.copy_from_slice(group);
        self.sort_by_cost(loads, asc);
        for _ in 0..iterations {
            let (mut wk, mut hi) = (0, 0);
            for &k in group {
                let w = loads[k as usize].w;
                if (w, k) > (wk, hi) {
                    (wk, hi) = (w, k);
                }
            }
            if wk <= stop_at || self.greedy_swap(packs, loads, hi as usize, asc).is_none() {
                return;
            }
        }
    }

    /// One greedy swap for `hi`: its best swap with the first of up to [`GREEDY_PARTNERS`] packs
    /// cheaper than it among the first [`GREEDY_SCAN`] of `asc` that admits one; that pack.
    fn greedy_swap(
        &mut self,
        packs: &Packs,
        loads: &mut Loads<'_>,
        hi: usize,
        asc: &[u32],
    ) -> Option<usize> {
        let mut tried = 0;
        for &lo in asc.iter().take(GREEDY_SCAN) {
            let lo = lo as usize;
            if loads[lo].w >= loads[hi].w {
                continue;
            }
            if self.swap(packs, loads, hi, lo) {
                return Some(lo);
            }
            tried += 1;
            if tried == GREEDY_PARTNERS {
                break;
            }
        }
        None
    }
}

/// A vision value's bit in a 64-bit set (a hash: distinct values may share a bit, so a clear
/// bit proves a value absent, a set one proves nothing).
fn vision_bit(v: u32) -> u64 {
    1 << (v.wrapping_mul(0x9e37_79b9) >> 26)
}

/// Sorts a few words in place by insertion (fewer instructions than the general sort below a
/// few dozen).
fn insertion_sort(words: &mut [u64]) {
    for i in 1..words.len() {
        let x = words[i];
        let mut j = i;
        while j > 0 && words[j - 1] > x {
            words[j] = words[j - 1];
            j -= 1;
        }
        words[j] = x;
    }
}

/// Sorts `words` (each below `2^bits.end`, already in order of their bits below `bits.start`)
/// in place: a least-significant-digit radix sort of bits `bits` in passes of at most
/// [`RADIX_DIGIT_BITS`] bits (a pass whose digit is the same in every word is skipped), `tmp`
/// the second buffer.
fn radix_sort(words: &mut Vec<u64>, tmp: &mut Vec<u64>, bits: std::ops::Range<u32>) {
    let passes = bits.len().div_ceil(RADIX_DIGIT_BITS as usize).max(1) as u32;
    let digit = (bits.len() as u32).div_ceil(passes);
    let mask = (1u64 << digit) - 1;
    let mut count = [0u32; 1 << RADIX_DIGIT_BITS];
    let count = &mut count[..=mask as usize];
    tmp.clear();
    tmp.resize(words.len(), 0);
    for pass in 0..passes {
        let shift = bits.start + pass * digit;
        count.fill(0);
        for &x in words.iter() {
            count[(x >> shift & mask) as usize] += 1;
        }
        if words
            .first()
            .is_none_or(|&x| count[(x >> shift & mask) as usize] as usize == words.len())
        {
            continue;
        }
        let mut at = 0;
        for c in count.iter_mut() {
            (*c, at) = (at, at + *c);
        }
        for &x in words.iter() {
            let d = (x >> shift & mask) as usize;
            tmp[count[d] as usize] = x;
            count[d] += 1;
        }
        std::mem::swap(words, tmp);
    }
}

/// Groups (packs) from which [`SwapRules::sort_by_cost`] sorts by radix (an equalizing window:
/// fewer instructions than a comparison sort; the same order).
pub const RADIX_SORT_MIN: usize = 1024;
/// Widest digit of [`SwapRules::sort_by_cost`]'s radix sort (2,048 counters: two passes cover
/// the 18-20 bits a window's costs span at 1.2M samples).
pub const RADIX_DIGIT_BITS: u32 = 11;

/// Groups (packs) up to which [`SwapRules::sort_by_cost`] sorts by insertion on the stack (the
/// same order as the general sort, found faster: a step is 8 packs at dp 8), and up to which the
/// step greedy finds its costliest pack by a scan instead of a heap (`greedy_small`).
pub const SMALL_SORT_MAX: usize = 32;
/// Vision-evening swaps per step with packs of unlike vision sums.
pub const VISION_SWAPS: usize = 128;
/// Largest pack (in samples) [`SwapRules::swap_pairs`] searches (its cost grows as the fourth
/// power).
pub const PAIR_SWAP_MAX_SAMPLES: usize = 12;
/// Sample comparisons (samples of `hi` x samples of `lo`) up to which [`SwapRules::swap`] compares
/// every pair; larger packs are searched in sorted order (the same result, in O(n log n)).
pub const SWAP_SCAN_MAX: usize = 256;
/// Cost gaps up to which [`SwapRules::swap`] may compare every pair (its scan packs a score
/// with two positions in one word); larger gaps are searched in sorted order. A guard: packs
/// small enough to scan (at most 256 samples of weight at most 2^20) never differ by this much.
pub const SCAN_GAP_MAX: u64 = 1 << 48;
/// Pair comparisons (pairs of `hi` x pairs of `lo`) up to which [`SwapRules::swap_pairs`] scans
/// every pair instead of sorting `lo`'s pairs by cost sum and reading only the costs allowed
/// (the same result; at 1.2M samples a scan is cheaper for 6 x 6 and 6 x 15 pairs, the sorted
/// search for 15 x 15).
pub const PAIR_SCAN_MAX: usize = 160;
/// Cheap packs the greedy phase looks at for each swap (in its stale cost order).
pub const GREEDY_SCAN: usize = 64;
/// Partners a pairing pass tries, on either side, for a pair that admits no swap.
pub const PAIR_PARTNERS: usize = 4;
/// Cheaper packs a greedy swap tries for the costliest one.
pub const GREEDY_PARTNERS: usize = 16;
/// Greedy swaps per step: `min(8 m + 32, this)` for `m` packs (in effect `8 m + 32`).
pub const GREEDY_SWAPS: usize = 1 << 30;

/// Packs between two checks of the cancel flag in [`for_each_range`] (a few tens of thousands of
/// samples: a fraction of a millisecond of swaps).
pub const STOP_CHECK_PACKS: usize = 4096;

/// Calls `f(rules, loads, range, aux)` for each of `ranges` (pack ranges `[a, b)`, increasing
/// and disjoint), `aux` being the range's `stride` entries of `aux` (the last range's may be
/// fewer: those left). With `threads > 1` the ranges are cut into groups of consecutive ranges of
/// about equal packs ([`GROUPS_PER_THREAD`] per thread), each holding only its own packs' loads
/// and samples (so no two threads touch the same memory), and the threads, the calling one among
/// them, take the groups one at a time; the result is the same as on one thread, as each call
/// only reads and writes its own range. Once `stop` is set (checked every [`STOP_CHECK_PACKS`]
/// packs or so), the remaining ranges are skipped.
#[allow(clippy::too_many_arguments)]
pub(super) fn for_each_range<F>(
    sample_loads: &mut [SampleLoad],
    pack_loads: &mut [PackLoad],
    packs: &Packs,
    ranges: &[(usize, usize)],
    aux: &mut [u32],
    stride: usize,
    threads: usize,
    cap_t: u64,
    stop: Option<&AtomicBool>,
    f: &F,
) where
    F: Fn(&mut SwapRules<'_>, &mut Loads<'_>, (usize, usize), &mut [u32]) + Sync,
{
    // Every range has its `aux` entries, the last possibly fewer (none when `stride` is 0).
    debug_assert!(stride == 0 || aux.len().div_ceil(stride) == ranges.len());
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
            radix: Vec::new(),
            heap: Vec::new(),
        };
        let mut loads = Loads { p: pl, base };
        let mut since_check = 0;
        for (j, &r) in ranges.iter().enumerate() {
            if since_check >= STOP_CHECK_PACKS {
                since_check = 0;
                if is_set(stop) {
                    return;
                }
            }
            since_check += r.1 - r.0;
            let end = ((j + 1) * stride).min(aux.len());
            f(&mut rules, &mut loads, r, &mut aux[j * stride..end]);
        }
    };
    if threads <= 1 || ranges.len() < 2 {
        run(sample_loads, pack_loads, 0, ranges, aux);
        return;
    }
    // Groups of consecutive ranges holding about equal numbers of packs, GROUPS_PER_THREAD per
    // thread, each with its own packs' loads and samples; the threads (the calling one too) take
    // the next group left until none is (windows and steps differ in cost, so fixed shares
    // would leave a thread waiting).
    let total: usize = ranges.iter().map(|r| r.1 - r.0).sum();
    let target = total.div_ceil(threads * GROUPS_PER_THREAD).max(1);
    let mut cuts = vec![0];
    let mut held = 0;
    for (j, r) in ranges.iter().enumerate() {
        if held >= target {
            cuts.push(j);
            held = 0;
        }
        held += r.1 - r.0;
    }
    cuts.push(ranges.len());
    type Work<'w> = (
        &'w mut [SampleLoad],
        &'w mut [PackLoad],
        usize,
        &'w [(usize, usize)],
        &'w mut [u32],
    );
    let mut work: Vec<Work<'_>> = Vec::with_capacity(cuts.len() - 1);
    let (mut sl, mut pl, mut aux) = (sample_loads, pack_loads, aux);
    let mut at = 0; // first pack of `pl`
    for w in cuts.windows(2) {
        let group = &ranges[w[0]..w[1]];
        let start = group[0].0;
        let end = match ranges.get(w[1]) {
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
        let aux_len = (group.len() * stride).min(aux.len());
        let (mine_aux, rest_aux) = std::mem::take(&mut aux).split_at_mut(aux_len);
        aux = rest_aux;
        at = end;
        work.push((mine_s, mine, start, group, mine_aux));
    }
    // One queue, first group on top; taking one cannot panic, so the lock is never poisoned.
    let spawned = threads.min(work.len()) - 1;
    work.reverse();
    let queue = std::sync::Mutex::new(work);
    let take = || loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some((mine_s, mine, start, group, mine_aux)) = next else {
            return;
        };
        run(mine_s, mine, start, group, mine_aux);
    };
    std::thread::scope(|scope| {
        for _ in 0..spawned {
            scope.spawn(take);
        }
        take();
    });
}

/// Groups of ranges per worker thread that [`for_each_range`] hands out (more even out the
/// threads' shares of work; each costs a turn of the queue's lock and fresh scratch buffers).
pub const GROUPS_PER_THREAD: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cost::TextCost;
    use crate::rng::Rng;

    fn rules_over(s: &mut [SampleLoad], cap_t: u64) -> SwapRules<'_> {
        SwapRules {
            s,
            base: 0,
            cap_t,
            pairs: Vec::new(),
            keys: Vec::new(),
            sorted: Vec::new(),
            words: Vec::new(),
            radix: Vec::new(),
            heap: Vec::new(),
        }
    }

    /// Random packs `hi` (`nh` samples) then `lo` (`nl`): `classes` vision values, text in
    /// `200..=200 + spread`, costs from the default-like convex model.
    fn random_samples(
        rng: &mut Rng,
        nh: usize,
        nl: usize,
        classes: u32,
        spread: u32,
    ) -> Vec<SampleLoad> {
        let cost = TextCost::new(1.0, 1.0 / 3000.0).unwrap();
        let max = cost.sample(200 + spread);
        (0..nh + nl)
            .map(|i| {
                let t = 200 + rng.below(spread + 1);
                SampleLoad {
                    w: cost.weight(t, max) as u32,
                    v: 1 + rng.below(classes),
                    t,
                    id: i as u32,
                }
            })
            .collect()
    }

    /// The single-swap search as first written: every pair, every test in full.
    fn best_swap_reference(
        s: &[SampleLoad],
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        gap: u64,
        room: u64,
    ) -> Option<(u64, usize, usize)> {
        let mut best: Option<(u64, usize, usize)> = None;
        for xi in rh {
            for yi in rl.clone() {
                let (x, y) = (&s[xi], &s[yi]);
                let d = (x.w as u64).wrapping_sub(y.w as u64);
                if x.v == y.v && d > 0 && d < gap && x.t as u64 <= room + y.t as u64 {
                    let score = gap.abs_diff(2 * d);
                    if best.is_none_or(|(b, _, _)| score < b) {
                        best = Some((score, xi, yi));
                    }
                }
            }
        }
        best
    }

    /// Harder cases for the search tests: in odd cases few distinct costs (many swaps and
    /// exchanges tie, or sit at the gap's edge); in every fifth, vision in tokens.
    fn harden(s: &mut [SampleLoad], rng: &mut Rng, case: usize) {
        if case % 2 == 1 {
            for x in s.iter_mut() {
                x.w = rng.below(16);
            }
        }
        if case % 5 == 4 {
            for x in s.iter_mut() {
                x.v *= 256;
            }
        }
    }

    #[test]
    fn the_swap_scan_equals_the_reference_search() {
        let mut rng = Rng::new(23);
        let mut found = 0;
        for case in 0..20000 {
            let (nh, nl) = (1 + rng.below(16) as usize, 1 + rng.below(16) as usize);
            let spread = [5, 60, 3000][case % 3];
            let classes = 1 + rng.below(4);
            let mut s = random_samples(&mut rng, nh, nl, classes, spread);
            harden(&mut s, &mut rng, case);
            let rules = rules_over(&mut s, u64::MAX);
            let gap = 1 + rng.below([4, 64, 1 << 14, 1 << 21][case / 3 % 4]) as u64;
            let room = [0, 50, 400, 1 << 40][case % 4] + rng.below(100) as u64;
            let (rh, rl) = (0..nh, nh..nh + nl);
            let want = best_swap_reference(rules.s, rh.clone(), rl.clone(), gap, room);
            found += want.is_some() as usize;
            assert_eq!(rules.best_swap_scan(rh, rl, gap, room), want, "case {case}");
        }
        assert!(found > 5000, "{found} of 20000 cases admit a swap");
    }

    /// The pair search as first written: every pair of `hi` against every pair of `lo`, in
    /// position order, every test in full.
    fn best_pair_reference(
        s: &[SampleLoad],
        rh: std::ops::Range<usize>,
        rl: std::ops::Range<usize>,
        (gap, room, room_hi): (u64, u64, u64),
    ) -> Option<(u64, [usize; 2], [usize; 2])> {
        let mut best: Option<(u64, [usize; 2], [usize; 2])> = None;
        let sum = |a: usize, b: usize| {
            let (a, b) = (&s[a], &s[b]);
            (a.v + b.v, a.w as u64 + b.w as u64, a.t as u64 + b.t as u64)
        };
        for x1 in rh.clone() {
            for x2 in x1 + 1..rh.end {
                for y1 in rl.clone() {
                    for y2 in y1 + 1..rl.end {
                        let ((vx, wx, tx), (vy, wy, ty)) = (sum(x1, x2), sum(y1, y2));
                        let d = wx.wrapping_sub(wy);
                        if vx == vy && d > 0 && d < gap && tx <= room + ty && ty <= room_hi + tx {
                            let score = gap.abs_diff(2 * d);
                            if best.is_none_or(|(b, _, _)| score < b) {
                                best = Some((score, [x1, x2], [y1, y2]));
                            }
                        }
                    }
                }
            }
        }
        best
    }

    #[test]
    fn the_pair_search_equals_the_reference_search() {
        let mut rng = Rng::new(31);
        let mut found = 0;
        for case in 0..6000 {
            let max = PAIR_SWAP_MAX_SAMPLES as u32 - 1;
            let (nh, nl) = (2 + rng.below(max) as usize, 2 + rng.below(max) as usize);
            let classes = 1 + rng.below(4);
            let spread = [5, 60, 3000][case % 3];
            let mut s = random_samples(&mut rng, nh, nl, classes, spread);
            harden(&mut s, &mut rng, case);
            let mut rules = rules_over(&mut s, 1 << 32);
            let gap = 1 + rng.below([4, 64, 1 << 14, 1 << 21][case / 3 % 4]) as u64;
            let room = [0, 50, 400, 1 << 30][case % 4] + rng.below(100) as u64;
            let room_hi = [0, 50, 400, 1 << 30][case / 4 % 4] + rng.below(100) as u64;
            let (rh, rl) = (0..nh, nh..nh + nl);
            let want = best_pair_reference(rules.s, rh.clone(), rl.clone(), (gap, room, room_hi));
            found += want.is_some() as usize;
            let got = rules.best_pair_swap(rh, rl, gap, room, room_hi);
            assert_eq!(got, want, "case {case}");
        }
        assert!(found > 1500, "{found} of 6000 cases admit an exchange");
    }

    #[test]
    fn the_small_greedy_makes_the_heaps_swaps() {
        let mut rng = Rng::new(37);
        let mut swapped = 0;
        for case in 0..600 {
            let m = 2 + rng.below(SMALL_SORT_MAX as u32 - 1) as usize;
            let sizes: Vec<usize> = (0..m).map(|_| 1 + rng.below(8) as usize).collect();
            let mut offsets = vec![0u32];
            for &n in &sizes {
                offsets.push(offsets.last().unwrap() + n as u32);
            }
            let total = *offsets.last().unwrap() as usize;
            let packs = Packs {
                items: (0..total as u32).collect(),
                offsets,
            };
            let classes = 1 + rng.below(3);
            let mut s = random_samples(&mut rng, total, 0, classes, [60, 3000][case % 2]);
            let mut p: Vec<PackLoad> = (0..m)
                .map(|k| {
                    let r = packs.range(k);
                    let sum = |f: &dyn Fn(&SampleLoad) -> u32| {
                        s[r.clone()].iter().map(|x| f(x) as u64).sum::<u64>()
                    };
                    PackLoad {
                        v: sum(&|x| x.v),
                        w: sum(&|x| x.w),
                        t: sum(&|x| x.t),
                    }
                })
                .collect();
            let mut group: Vec<u32> = (0..m as u32).collect();
            crate::permutation::shuffle(&mut group, &mut rng);
            let iterations = 1 + rng.below(40) as usize;
            let mean = p.iter().map(|x| x.w).sum::<u64>() / m as u64;
            // Stops at a pack's cost too: the costliest's, or a random one's.
            let top = p.iter().map(|x| x.w).max().unwrap();
            let stop_at = [0, mean, top, p[rng.below(m as u32) as usize].w][case % 4];
            let cap_t = [u64::MAX, 2000][case % 2];
            let (mut s2, mut p2) = (s.clone(), p.clone());
            let ids = |s: &[SampleLoad]| s.iter().map(|x| x.id).collect::<Vec<_>>();
            let before = ids(&s);
            let mut loads = Loads { p: &mut p, base: 0 };
            rules_over(&mut s, cap_t)
                .greedy(&packs, &mut loads, &group, iterations, false, stop_at);
            let mut loads = Loads {
                p: &mut p2,
                base: 0,
            };
            rules_over(&mut s2, cap_t)
                .greedy_heap(&packs, &mut loads, &group, iterations, false, stop_at);
            // The same samples swapped in the same order leave every sample where the heap's did.
            assert_eq!(ids(&s), ids(&s2), "case {case}");
            swapped += (ids(&s) != before) as usize;
        }
        assert!(swapped > 300, "{swapped} of 600 cases swap");
    }

    #[test]
    fn sort_by_cost_orders_by_cost_then_pack() {
        let mut rng = Rng::new(29);
        for case in 0..3000 {
            let n = if case % 100 == 0 {
                300
            } else if case % 100 < 5 {
                RADIX_SORT_MIN + rng.below(3000) as usize // by radix
            } else {
                1 + rng.below(40) as usize
            };
            // Some costs past 32 bits: the general sort, and the radix sort on wide keys.
            let wide = case % 5 == 0 || case % 100 == 3;
            let mut p: Vec<PackLoad> = (0..n + 7)
                .map(|_| PackLoad {
                    v: 0,
                    w: rng.below(if case % 3 == 0 { 50 } else { 1 << 30 }) as u64
                        + if wide && rng.below(3) == 0 {
                            1 << 33
                        } else {
                            0
                        },
                    t: 0,
                })
                .collect();
            let loads = Loads { p: &mut p, base: 5 };
            // Every pack of a range (as an equalizing window), or some.
            let extra = [0, 7][case % 2];
            let mut group: Vec<u32> = (5..(n + 5 + extra) as u32).collect();
            crate::permutation::shuffle(&mut group, &mut rng);
            group.truncate(n);
            let mut want = group.clone();
            want.sort_by_key(|&k| (loads[k as usize].w, k));
            let mut s: Vec<SampleLoad> = Vec::new();
            rules_over(&mut s, 0).sort_by_cost(&loads, &mut group);
            assert_eq!(group, want, "case {case}");
        }
    }

    #[test]
    fn the_sorted_swap_search_equals_the_full_one() {
        let mut rng = Rng::new(17);
        let mut found = 0;
        for case in 0..3000 {
            let (nh, nl) = (1 + rng.below(70) as usize, 1 + rng.below(70) as usize);
            let classes = 1 + rng.below(4);
            let spread = [5, 60, 3000][case % 3];
            let mut s = random_samples(&mut rng, nh, nl, classes, spread);
            let mut rules = rules_over(&mut s, u64::MAX);
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
}
