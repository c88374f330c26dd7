//! Plans the shared real length files with every strategy and prints the metrics:
//! `cargo run --release -p omnibal-core --example real_data -- ../shared/data/lengths/*.json`
//! (a quick look while tuning; `npm run bench -- pack` is the benchmark of record).

use omnibal_core::data::balance::{balance_batches, BalanceParams};
use omnibal_core::data::baselines::{
    isf_batches, length_grouped_batches, random_batches, PaddedParams,
};
use omnibal_core::data::cost::TextCost;
use omnibal_core::data::isf::IsfParams;
use omnibal_core::data::isf_search::{search_isf_arguments, IsfSearchParams};
use omnibal_core::data::metrics::batch_metrics;
use omnibal_core::data::plan::{BatchPlan, Tail};
use omnibal_core::data::samples::{caps_for_samples_per_pack, Samples};
use std::time::Instant;

fn main() {
    let (mut v, mut t) = (Vec::new(), Vec::new());
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).expect("readable");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
        for r in rows {
            v.push(r["vit_num"].as_u64().unwrap() as u32);
            t.push(r["token_num"].as_u64().unwrap() as u32);
        }
    }
    let s = Samples::new(&v, &t).unwrap();
    let (dp, b) = (8, 4.5);
    let cost_b = TextCost::new(1.0, 1.0 / 4096.0).unwrap();
    let show = |name: &str, plan: &BatchPlan, ms: f64| {
        let m = batch_metrics(plan, &s, &TextCost::default()).unwrap();
        let mb = batch_metrics(plan, &s, &cost_b).unwrap();
        println!(
            "{name:16} {ms:8.1} ms  pad {:.4}  vdist {:.5}  tdist {:.5}  cdist(b>0) {:.5}  spp {:.2}  packs {}  steps {}  dropped {}",
            m.pad_ratio, m.vision_dist, m.text_dist, mb.cost_dist, m.samples_per_pack, m.packs, m.steps, m.dropped
        );
    };
    println!("{} samples, dp {dp}, samples per pack {b}", s.len());
    let caps = caps_for_samples_per_pack(&s, b);
    println!("balanced caps: {caps:?}");
    for accum in [1, 4] {
        let t0 = Instant::now();
        let plan =
            balance_batches(&s, &BalanceParams::new(dp, accum, caps, 1, 0), &mut ()).unwrap();
        show(
            &format!("balanced a{accum}"),
            &plan,
            t0.elapsed().as_secs_f64() * 1e3,
        );
    }
    let t0 = Instant::now();
    let mut p = BalanceParams::new(dp, 1, caps, 1, 0);
    p.cost = cost_b;
    let plan = balance_batches(&s, &p, &mut ()).unwrap();
    show("balanced cost", &plan, t0.elapsed().as_secs_f64() * 1e3);
    let t0 = Instant::now();
    let sp = IsfSearchParams {
        samples_per_pack: b,
        dp,
        accum: 1,
        iterations: 50,
        max_steps: 32,
        seed: 1,
    };
    let found = search_isf_arguments(&s, &sp, &mut ()).unwrap();
    let c = found.candidates[found.chosen];
    println!(
        "isf search: {:.1} ms, {} candidates, chosen {:?}",
        t0.elapsed().as_secs_f64() * 1e3,
        found.candidates.len(),
        c.caps
    );
    let t0 = Instant::now();
    let plan = isf_batches(
        &s,
        &IsfParams::reference(c.caps, 1, 0),
        dp,
        1,
        Tail::Drop,
        &mut (),
    )
    .unwrap();
    show("isf", &plan, t0.elapsed().as_secs_f64() * 1e3);
    let pp = PaddedParams {
        dp,
        accum: 1,
        batch: 4,
        seed: 1,
        epoch: 0,
        tail: Tail::Drop,
    };
    let t0 = Instant::now();
    show(
        "random",
        &random_batches(&s, &pp).unwrap(),
        t0.elapsed().as_secs_f64() * 1e3,
    );
    let t0 = Instant::now();
    show(
        "length-grouped",
        &length_grouped_batches(&s, &pp).unwrap(),
        t0.elapsed().as_secs_f64() * 1e3,
    );
}
