//! Prints a hash of the balanced planner's plan for a matrix of configurations (sizes across the
//! packing block, dp, accum, every tail policy, caps from a target or explicit, over-cap
//! samples, a carried tail), so a change meant to keep plans can be compared with the build
//! before it: `cargo run --release -p omnibal-core --example balance_matrix > after.txt`, the
//! same on the earlier commit, then `diff` (run under `OMNIBAL_THREADS=1`, `2` and `3` too).

use omnibal_core::data::cost::TextCost;
use omnibal_core::data::plan::{BatchPlan, Tail};
use omnibal_core::data::samples::{Caps, Samples};
use omnibal_core::data::strategy::{plan_batches_with_carry, PlanOptions, Size, Strategy};
use omnibal_core::data::synthetic::synthetic_samples;
use omnibal_core::rng::Rng;

/// FNV-1a over every array of the plan.
fn hash(plan: &BatchPlan) -> u64 {
    let words = plan
        .samples
        .iter()
        .chain(&plan.micro_batch_offsets)
        .chain(&plan.rank_offsets)
        .chain(&plan.oversize)
        .chain(&plan.carried)
        .copied()
        .chain(plan.padding.iter().map(|&x| x as u32))
        .chain(plan.dropped.iter().flat_map(|&(i, r)| [i, r as u32]));
    words.fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() {
    let tails = [Tail::Drop, Tail::Pad, Tail::KeepPartial, Tail::Carry];
    for (n, seed) in [(3_000usize, 1u64), (70_000, 2), (140_001, 3), (400_000, 4)] {
        let syn = synthetic_samples(n, seed).expect("samples");
        let (mut v, mut t) = (syn.vision.clone(), syn.text.clone());
        let mut rng = Rng::new(seed);
        // Skewed: 1% at 40 tiles and 16-18k tokens (over the caps a target gives).
        for i in (0..n).step_by(100) {
            v[i] = 40;
            t[i] = 16_000 + rng.below(2_001);
        }
        let s = Samples::new(&v, &t).expect("samples");
        for (dp, accum) in [(1, 1), (8, 1), (7, 3), (64, 2), (1024, 1)] {
            for (ti, &tail) in tails.iter().enumerate() {
                for size in [
                    Size::SamplesPerPack(4.5),
                    Size::Caps(Caps {
                        max_vision: 24,
                        max_text: 9_000,
                    }),
                ] {
                    let o = PlanOptions {
                        strategy: Strategy::Balanced,
                        dp,
                        accum,
                        size,
                        seed: seed * 7 + ti as u64,
                        epoch: ti as u64,
                        cost: TextCost::new(1.0, [0.0, 1.0 / 73_728.0][ti % 2]).expect("cost"),
                        tail,
                        iterations: None,
                        min_text: None,
                        min_vision: None,
                    };
                    let carry: Vec<u32> = if tail == Tail::Carry {
                        (0..n as u32).step_by(997).collect()
                    } else {
                        Vec::new()
                    };
                    let out = match plan_batches_with_carry(&s, &o, &carry, &mut ()) {
                        Ok((plan, _)) => format!("{:016x}", hash(&plan)),
                        Err(e) => format!("error {}", e.code()),
                    };
                    println!("n {n} dp {dp} accum {accum} tail {tail:?} {size:?}: {out}");
                }
            }
        }
    }
}
