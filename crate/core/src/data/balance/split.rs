//! Before step 1 of the balanced planner: the pool, the samples within the caps as records (in
//! index order), split from the others on worker threads ([`split_pool`]).

use super::layout::loads_capacity;
use super::pack::on_threads;
use super::Rec;
use crate::data::samples::{Caps, Samples};

/// Fewest samples per thread [`split_pool`] shares out (fewer are split on the calling
/// thread): tunes speed only.
pub const SPLIT_MIN_PER_THREAD: usize = 1 << 16;

/// The samples within `caps` as records in index order, with capacity for `room` more (the
/// carried ones, pushed after it without a copy) and for the loads the layout later makes of the
/// buffer ([`loads_capacity`] of every sample: pages never touched cost nothing), and the indices
/// of the others in order.
/// With `threads > 1` (and [`SPLIT_MIN_PER_THREAD`] samples a thread) the samples are cut into
/// that many runs; each run's fitting samples are counted (so each knows where its records
/// begin), then written by a thread of its own into a zeroed buffer, whose pages the first
/// write to each touches: the first touch of the pool (~14 MB at 1.2M samples, ~0.35 ms per
/// MiB on a 2-core VM) is shared among the threads. The result does not depend on `threads`.
pub(super) fn split_pool(
    samples: &Samples,
    caps: Caps,
    room: usize,
    threads: usize,
) -> (Vec<Rec>, Vec<u32>) {
    let n = samples.len();
    let runs = threads.min(n / SPLIT_MIN_PER_THREAD).max(1);
    let bounds: Vec<usize> = (0..=runs).map(|j| j * n / runs).collect();
    // Samples `[a, b)` with their loads side by side.
    // (The index range last: a zip advances its first iterator once past the last pair, which
    // for a range ending at `u32::MAX` would overflow.)
    let loads = |a: usize, b: usize| {
        samples.vision[a..b]
            .iter()
            .zip(&samples.text[a..b])
            .zip(a as u32..)
            .map(|(vt, id)| (id, vt))
    };
    if runs == 1 {
        let mut pool = Vec::with_capacity(loads_capacity(n + room));
        let mut over = Vec::new();
        for (id, (&v, &t)) in loads(0, n) {
            if caps.fits(v, t) {
                pool.push(Rec { id, v, t });
            } else {
                over.push(id);
            }
        }
        return (pool, over);
    }
    // Each run's count of fitting samples, and the others' indices.
    let counted = on_threads((0..runs).collect(), |j| {
        let mut count = 0usize;
        let mut over = Vec::new();
        for (id, (&v, &t)) in loads(bounds[j], bounds[j + 1]) {
            if caps.fits(v, t) {
                count += 1;
            } else {
                over.push(id);
            }
        }
        (count, over)
    });
    let total: usize = counted.iter().map(|(count, _)| count).sum();
    let mut pool: Vec<Rec> = bytemuck::allocation::zeroed_vec(loads_capacity(n + room));
    let mut parts = Vec::with_capacity(runs);
    let mut rest = &mut pool[..total];
    for (j, (count, _)) in counted.iter().enumerate() {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(*count);
        rest = tail;
        parts.push((j, part));
    }
    // Each run's records written to its part.
    on_threads(parts, |(j, part)| {
        let mut at = 0;
        for (id, (&v, &t)) in loads(bounds[j], bounds[j + 1]) {
            if caps.fits(v, t) {
                part[at] = Rec { id, v, t };
                at += 1;
            }
        }
    });
    pool.truncate(total);
    let over = counted.into_iter().flat_map(|(_, over)| over).collect();
    (pool, over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_pool_is_the_fitting_samples_in_order_on_any_thread_count() {
        let n = 3 * SPLIT_MIN_PER_THREAD + 1_001;
        let mut rng = Rng::new(3);
        let vision: Vec<u32> = (0..n).map(|_| rng.below(40)).collect();
        let text: Vec<u32> = (0..n).map(|_| 1 + rng.below(400)).collect();
        let samples = Samples::new(&vision, &text).unwrap();
        let caps = Caps {
            max_vision: 36,
            max_text: 390,
        };
        let fits = |i: usize| caps.fits(vision[i], text[i]);
        let want: Vec<Rec> = (0..n)
            .filter(|&i| fits(i))
            .map(|i| Rec::of(&samples, i as u32))
            .collect();
        let want_over: Vec<u32> = (0..n as u32).filter(|&i| !fits(i as usize)).collect();
        assert!(want_over.len() > 1_000, "{} over the caps", want_over.len());
        for threads in [1, 2, 3, 8] {
            let (pool, over) = split_pool(&samples, caps, 7, threads);
            assert!(pool == want, "{threads} threads");
            assert_eq!(over, want_over, "{threads} threads");
            assert!(pool.capacity() >= pool.len() + 7, "{threads} threads");
        }
    }
}
