//! The balanced planner's quality figures of issue 12's targets, for speed work to check a change
//! keeps them: `cargo run --release -p omnibal-core --example balance_quality -- [LENGTHS_DIR]`.
//! Prints, for synthetic 1.2M (dp 8, 16384), skewed and heavy-tailed 200k sets and the shared real
//! data (dp 8, 64, 1024): plan time, the slowest-rank excess of the default step-time cost per step
//! (p50 / p99), the token dists (vision / text) and the dataset-share SD over that of i.i.d. steps.
//! `npm run bench -- pack` stays the benchmark of record (its share SD draws other i.i.d. steps).

use omnibal_core::data::cost::TextCost;
use omnibal_core::data::metrics::batch_metrics;
use omnibal_core::data::plan::{BatchPlan, Tail};
use omnibal_core::data::samples::Samples;
use omnibal_core::data::strategy::{plan_batches, PlanOptions, Size, Strategy};
use omnibal_core::data::synthetic::synthetic_samples;
use omnibal_core::io::samples::{read_samples, Format, ReadLimits};
use omnibal_core::permutation::shuffle;
use omnibal_core::rng::Rng;
use std::time::Instant;

/// The default step-time cost (the default plan's LLM, hidden size 6,144).
fn model_cost() -> TextCost {
    TextCost::new(1.0, 1.0 / (12.0 * 6144.0)).expect("cost")
}

fn options(dp: u32, cost: TextCost) -> PlanOptions {
    PlanOptions {
        strategy: Strategy::Balanced,
        dp,
        accum: 1,
        size: Size::SamplesPerPack(4.5),
        seed: 1,
        epoch: 0,
        cost,
        tail: Tail::Drop,
        iterations: None,
        min_text: None,
        min_vision: None,
    }
}

/// Largest over labels of (SD over steps of the label's share of a step's samples) / (the same
/// for i.i.d. steps of the same sizes).
fn share_sd(plan: &BatchPlan, label: &[u8], labels: usize) -> f64 {
    let m = (plan.dp * plan.accum) as usize;
    let steps: Vec<Vec<u32>> = (0..plan.steps())
        .map(|st| {
            let (a, b) = (
                plan.micro_batch_offsets[st * m] as usize,
                plan.micro_batch_offsets[(st + 1) * m] as usize,
            );
            plan.samples[a..b].to_vec()
        })
        .collect();
    let mut order: Vec<u32> = (0..label.len() as u32).collect();
    shuffle(&mut order, &mut Rng::new(7));
    let pool: Vec<u32> = order.iter().chain(order.iter()).copied().collect();
    let mut at = 0;
    let iid: Vec<Vec<u32>> = steps
        .iter()
        .map(|s| {
            at += s.len();
            pool[at - s.len()..at].to_vec()
        })
        .collect();
    let sd = |groups: &[Vec<u32>], d: u8| {
        let shares: Vec<f64> = groups
            .iter()
            .map(|g| g.iter().filter(|&&i| label[i as usize] == d).count() as f64 / g.len() as f64)
            .collect();
        let mean = shares.iter().sum::<f64>() / shares.len() as f64;
        (shares.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / shares.len() as f64).sqrt()
    };
    (0..labels as u8)
        .map(|d| sd(&steps, d) / sd(&iid, d))
        .fold(0.0, f64::max)
}

fn row(name: &str, s: &Samples, dp: u32, label: Option<(&[u8], usize)>) {
    let cost = model_cost();
    let t0 = Instant::now();
    let (plan, _) = plan_batches(s, &options(dp, cost), &mut ()).expect("a plan");
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let m = batch_metrics(&plan, s, &cost).expect("metrics");
    let (plan_t, _) = plan_batches(s, &options(dp, TextCost::default()), &mut ()).expect("a plan");
    let mt = batch_metrics(&plan_t, s, &TextCost::default()).expect("metrics");
    let share = label.map_or(String::new(), |(l, k)| {
        format!("{:.2}", share_sd(&plan, l, k))
    });
    println!(
        "{name:<22} dp {dp:>5}: {ms:>7.1} ms  slowest + {:.3}% / {:.3}%  tokens dist v {:.5} t {:.5}  share SD {share}  dropped {}",
        100.0 * m.cost_excess_median,
        100.0 * m.cost_excess_p99,
        mt.vision_dist,
        mt.text_dist,
        plan.dropped.len()
    );
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/lengths".into());
    let syn = synthetic_samples(1_200_000, 1).expect("synthetic samples");
    let groups = syn.group.iter().map(|&g| g as u8).collect::<Vec<u8>>();
    let labels = *groups.iter().max().unwrap() as usize + 1;
    let s = Samples::new(&syn.vision, &syn.text).expect("samples");
    for dp in [8, 16384] {
        row("synthetic 1.2M", &s, dp, Some((&groups, labels)));
    }
    let small = synthetic_samples(200_000, 1).expect("synthetic samples");
    let mut rng = Rng::new(99);
    let (mut v, mut t) = (small.vision.clone(), small.text.clone());
    for i in (0..t.len()).step_by(100) {
        v[i] = 40;
        t[i] = 16000 + rng.below(2001);
    }
    row("skewed 200k", &Samples::new(&v, &t).unwrap(), 8, None);
    let (v, mut t) = (small.vision.clone(), small.text.clone());
    let mut rng = Rng::new(99);
    for x in t.iter_mut() {
        if rng.below(100) < 3 {
            *x *= 4 + rng.below(13);
        }
    }
    row("heavy-tailed 200k", &Samples::new(&v, &t).unwrap(), 8, None);
    let files: Vec<(String, Format)> = ["ai2d_train_12k", "chartqa_train_18k", "synthdog_en"]
        .iter()
        .map(|f| (format!("{dir}/{f}.json"), Format::Json))
        .collect();
    match read_samples(&files, ReadLimits::default()) {
        Ok(real) => {
            let mut label = Vec::new();
            for (d, &c) in real.counts.iter().enumerate() {
                label.extend(std::iter::repeat_n(d as u8, c as usize));
            }
            let s = Samples::new(&real.vision, &real.text).unwrap();
            for dp in [8, 64, 1024] {
                row("real", &s, dp, Some((&label, 3)));
            }
        }
        Err(e) => println!("real data not read from {dir}: {e}"),
    }
}
