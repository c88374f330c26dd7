//! Times the stage DP on a synthetic 200-layer, 32-stage problem:
//! `cargo run --release -p omnibal-core --example stage_dp`.
use omnibal_core::model::partition::partition_stages;
use omnibal_core::model::stages::{Layer, Recompute, StageProblem};
use omnibal_core::rng::Rng;
use std::time::Instant;

fn main() {
    let mut rng = Rng::new(1);
    let layers: Vec<Layer> = (0..200)
        .map(|i| {
            let vit = i < 45;
            let f = if vit { 2.0 } else { 5.0 } * (0.9 + 0.2 * rng.next_f64());
            let a = if vit { 0.6e9 } else { 0.9e9 };
            Layer {
                selective_bytes: 0.6 * a,
                selective_ms: 0.3 * f,
                ..Layer::new(
                    f,
                    2.0 * f,
                    if vit { 0.3e9 } else { 1.0e9 },
                    a,
                    if vit { 0.04e9 } else { 0.05e9 },
                )
            }
        })
        .collect();
    for mode in [
        Recompute::Block,
        Recompute::Selective,
        Recompute::None,
        Recompute::Full,
    ] {
        let p = StageProblem {
            layers: layers.clone(),
            stages: 32,
            micro_batches: 64,
            memory_bytes: 40e9,
            stage_overhead_bytes: 2e9,
            comm_ms: vec![0.1; 199],
            recompute: mode,
            first_stage_min_layers: 0,
            schedule: omnibal_core::simulate::Schedule::OneFOneB,
            recompute_groups: Vec::new(),
        };
        let t0 = Instant::now();
        let r = partition_stages(&p);
        println!(
            "{mode:?}: {:.1} ms -> {:?}",
            t0.elapsed().as_secs_f64() * 1e3,
            r.map(|x| (x.iteration_ms, x.bottleneck_ms))
                .map_err(|e| e.to_string())
        );
    }
}
