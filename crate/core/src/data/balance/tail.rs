//! Step 1c and the carry: the tail that cannot fill a step dealt into smaller packs instead of
//! being dropped ([`spread_tail`]), and the previous epoch's carried samples kept out of this
//! epoch's tail where it allows ([`check_carry`], [`take_tail`]).

use super::{BalanceParams, Rec};
use crate::data::plan::{Packs, Tail};
use crate::error::Error;
use crate::permutation::shuffle;
use crate::rng::Rng;
use std::cmp::Reverse;

/// Step 1c: no lost tail, no part-filled leftovers. With tail policy `drop`, the
/// `(packs + oversize) mod (dp * accum)` packs that cannot fill a step (`r`, chosen at random;
/// `oversize` counts the over-cap samples' own micro-batches, which never join the tail when
/// the epoch has packs enough) are not
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
/// `is_part[k]`: pack `k` is part-filled (see [`super::pack_sums`]).
/// Returns the packs (the dealt ones left in place, unused; the new ones appended, step by
/// step), the ids of the old ones still in use and the samples dropped; unchanged when `packs < m`, when there are too few full packs, or (not
/// `drop`) when a sample fits nowhere. With `drop`, packs holding a carried sample (`c`) are
/// never dealt, so no carried copy is dropped here.
pub(super) fn spread_tail(
    packs: Packs<Rec>,
    is_part: &[bool],
    p: &BalanceParams,
    m: usize,
    oversize: usize,
    c: &CarryIds,
) -> (Packs<Rec>, Vec<u32>, Vec<u32>) {
    let n = packs.len();
    // Every pack, unchanged (the plain outcome).
    let all = |packs: Packs<Rec>| (packs, (0..n as u32).collect(), Vec::new());
    if n < m {
        return all(packs);
    }
    let (cap_v, cap_t) = (p.caps.max_vision as u64, p.caps.max_text as u64);
    let mut order: Vec<u32> = (0..n as u32).collect();
    shuffle(
        &mut order,
        &mut Rng::for_epoch(p.seed, p.epoch, SPREAD_PURPOSE),
    );
    let r = if p.tail == Tail::Drop {
        (n + oversize) % m
    } else {
        0
    };
    // With `drop` the dealing can leave samples out: never a carried sample's copy (its packs
    // are kept as they are).
    if r > 0 && !c.carry.is_empty() {
        order.retain(|&k| !packs.get(k as usize).iter().any(|x| c.is_carried(x.id)));
        if order.len() < r {
            return all(packs);
        }
    }
    let (head, tail) = order.split_at(order.len() - r);
    let part: Vec<u32> = head
        .iter()
        .copied()
        .filter(|&k| is_part[k as usize])
        .collect();
    if r == 0 && part.is_empty() {
        return all(packs);
    }
    let need = (if r > 0 {
        (3 * m).saturating_sub(4 * r)
    } else {
        0
    })
    .max(part.len())
    .max(1);
    let pe = need.div_ceil(m) * m;
    // The first full packs of the random order, as many as the new packs need.
    let full: Vec<u32> = head
        .iter()
        .copied()
        .filter(|&k| !is_part[k as usize])
        .take(pe - part.len())
        .collect();
    if pe - part.len() > full.len() {
        return all(packs);
    }
    let mut dealt: Vec<u32> = tail.to_vec();
    dealt.extend_from_slice(&part);
    dealt.extend_from_slice(&full);
    let bins = pe + if r > 0 { m } else { 0 };
    // Only where the new steps are a small share of the epoch: their make-up differs a little
    // (samples short of a target are the smallest), which a handful of steps would show.
    if (n - r - pe + bins) / m < SPREAD_MIN_SHARE * (bins / m) {
        return all(packs);
    }
    let mut items: Vec<Rec> = dealt
        .iter()
        .flat_map(|&k| packs.get(k as usize).iter().copied())
        .collect();
    if items.len() < bins {
        return all(packs);
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
                return all(packs);
            }
            lost.push(i.id);
        }
    }
    // Never lose more than dropping the tail would have (text-heavy data can leave more
    // samples short of a target than the tail held).
    let tail_samples: usize = tail.iter().map(|&k| packs.get(k as usize).len()).sum();
    if members.iter().any(|b| b.is_empty()) || lost.len() > tail_samples {
        return all(packs);
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
pub(super) struct CarryIds<'a> {
    pub(super) n_own: usize,
    pub(super) carry: &'a [u32],
}

impl CarryIds<'_> {
    pub(super) fn is_carried(&self, id: u32) -> bool {
        !self.carry.is_empty() && id as usize >= self.n_own
    }
}

/// Takes `r` packs of `list` as the tail: the last `r` that hold no carried sample, then (only
/// when too few are free of them) the last that do, first skipping a pack that would put a
/// sample's two copies in the tail (the other copy in the tail already, or in the pack itself),
/// then, still short, any (such a sample is carried once and its other copy dropped as tail by
/// [`balance_batches_with_carry`]); the rest keep their order. `ids(k, buf)` fills `buf` with
/// pack `k`'s sample ids. Without carried samples it is the last `r`, as `split_off` takes them.
pub(super) fn take_tail(
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
