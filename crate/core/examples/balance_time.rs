//! Times the balanced planner on synthetic samples, as the library plans by default (4.5 samples
//! per pack, the default model's step-time cost `t + t^2 / (12 h)` with h = 6,144, drop tail),
//! and prints a hash of the plan, so a change meant to keep plans can be checked to keep them:
//! `cargo run --release -p omnibal-core --example balance_time -- [SAMPLES [DP [REPEATS]]]`
//! (`OMNIBAL_THREADS=1` for one thread; under `valgrind --tool=cachegrind` with one repeat for
//! instruction counts on a busy machine). `npm run bench -- pack` is the benchmark of record.

use omnibal_core::data::cost::TextCost;
use omnibal_core::data::plan::Tail;
use omnibal_core::data::samples::Samples;
use omnibal_core::data::strategy::{plan_batches, PlanOptions, Size, Strategy};
use omnibal_core::data::synthetic::synthetic_samples;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let (n, dp, repeats) = (
        arg(0, 1_200_000) as usize,
        arg(1, 8) as u32,
        arg(2, 5).max(1) as usize,
    );
    let syn = synthetic_samples(n, 1).expect("synthetic samples");
    let s = Samples::new(&syn.vision, &syn.text).expect("samples");
    let o = PlanOptions {
        strategy: Strategy::Balanced,
        dp,
        accum: 1,
        size: Size::SamplesPerPack(4.5),
        seed: 1,
        epoch: 0,
        cost: TextCost::new(1.0, 1.0 / (12.0 * 6144.0)).expect("cost"),
        tail: Tail::Drop,
        iterations: None,
        min_text: None,
        min_vision: None,
    };
    let mut ms = Vec::with_capacity(repeats);
    let mut hash = 0u64;
    let mut faults = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let f0 = minor_faults();
        let t0 = Instant::now();
        let (plan, _) = plan_batches(&s, &o, &mut ()).expect("a plan");
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        faults.push(minor_faults().zip(f0).map(|(b, a)| b - a));
        // FNV-1a over the plan's samples and micro-batch offsets.
        hash = plan
            .samples
            .iter()
            .chain(plan.micro_batch_offsets.iter())
            .fold(0xcbf2_9ce4_8422_2325, |h, &x| {
                (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
            });
    }
    ms.sort_by(f64::total_cmp);
    // The first plan's page faults (a fresh process's), where the system reports them.
    let faults = faults[0].map_or(String::new(), |f| format!(", {f} minor faults first"));
    println!(
        "{n} samples, dp {dp}: best {:.1} ms, median {:.1} ms over {repeats}{faults}; plan hash {hash:016x}",
        ms[0],
        ms[repeats / 2]
    );
}

/// The process's minor page faults so far (Linux: field 10 of `/proc/self/stat`), else `None`.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(7)?.parse().ok()
}
