//! Step composition of the balanced plan on the shared real files (each file = one dataset):
//! per-step dataset-share SD against i.i.d. steps of the same sizes, dists and plan time.
//! `cargo run --release -p omnibal-core --example step_mix -- DP ACCUM FILE...`
//! (a quick look while tuning; `npm run bench -- pack` is the benchmark of record).

use omnibal_core::data::cost::TextCost;
use omnibal_core::data::metrics::batch_metrics;
use omnibal_core::data::plan::{BatchPlan, Tail};
use omnibal_core::data::samples::Samples;
use omnibal_core::data::strategy::{plan_batches, PlanOptions, Size, Strategy};
use omnibal_core::permutation::shuffle;
use omnibal_core::rng::Rng;
use std::time::Instant;

/// Per-dataset SD over steps of the dataset's share of a step's samples.
fn share_sd(steps: &[Vec<u32>], label: &[u8], sets: usize) -> Vec<f64> {
    (0..sets)
        .map(|d| {
            let shares: Vec<f64> = steps
                .iter()
                .map(|s| {
                    s.iter()
                        .filter(|&&i| label[i as usize] as usize == d)
                        .count() as f64
                        / s.len() as f64
                })
                .collect();
            let mean = shares.iter().sum::<f64>() / shares.len() as f64;
            (shares.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / shares.len() as f64)
                .sqrt()
        })
        .collect()
}

fn plan_steps(plan: &BatchPlan) -> Vec<Vec<u32>> {
    (0..plan.steps())
        .map(|s| {
            (0..plan.dp as usize)
                .flat_map(|r| plan.rank_micro_batches(s, r))
                .flat_map(|k| plan.micro_batch(k).to_vec())
                .collect()
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dp: u32 = args[0].parse().unwrap();
    let accum: u32 = args[1].parse().unwrap();
    let (mut v, mut t, mut label) = (Vec::new(), Vec::new(), Vec::new());
    for (d, path) in args[2..].iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("readable");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
        for r in rows {
            v.push(r["vit_num"].as_u64().unwrap() as u32);
            t.push(r["token_num"].as_u64().unwrap() as u32);
            label.push(d as u8);
        }
    }
    let sets = args.len() - 2;
    let repeat: usize = std::env::var("REPEAT")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1);
    let n0 = v.len();
    for r in 1..repeat {
        for i in 0..n0 {
            v.push(v[i]);
            t.push(t[i] + (r as u32 * 7 + i as u32) % 13);
            label.push(label[i]);
        }
    }
    let s = Samples::new(&v, &t).unwrap();
    let o = PlanOptions {
        strategy: Strategy::Balanced,
        dp,
        accum,
        size: Size::SamplesPerPack(4.5),
        seed: 1,
        epoch: 0,
        cost: TextCost::default(),
        tail: Tail::Drop,
        iterations: None,
        min_text: None,
        min_vision: None,
    };
    let t0 = Instant::now();
    let (plan, size) = plan_batches(&s, &o, &mut ()).unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let m = batch_metrics(&plan, &s, &TextCost::default()).unwrap();
    let steps = plan_steps(&plan);
    let mut idx: Vec<u32> = (0..s.len() as u32).collect();
    shuffle(&mut idx, &mut Rng::new(7));
    let mut iid = Vec::new();
    let mut at = 0;
    for st in &steps {
        iid.push(idx[at..at + st.len()].to_vec());
        at += st.len();
    }
    let (a, b) = (share_sd(&steps, &label, sets), share_sd(&iid, &label, sets));
    let ratios: Vec<String> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| format!("{:.2}", x / y))
        .collect();
    println!(
        "dp {dp} accum {accum}: {ms:.1} ms, caps {:?}, vdist {:.5} tdist {:.5} spp {:.2} steps {} dropped {} oversize {}, share SD / iid {}",
        size.caps.unwrap(),
        m.vision_dist,
        m.text_dist,
        m.samples_per_pack,
        m.steps,
        m.dropped,
        plan.oversize.len(),
        ratios.join(" ")
    );
}
