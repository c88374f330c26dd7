//! Calibration: replace the model's guesses with measurements.
//!
//! - Layer time, per layer kind: `t = o + x / e` with `x` a layer's forward time at 100%
//!   efficiency (its FLOPs over the peak) at the load it was measured at, `o` a fixed cost per
//!   layer and micro-batch (operator launches, small kernels: a large share of a small layer's
//!   time) and `e` the efficiency on the FLOPs. Both are fitted by least squares over the kind's
//!   measurements when they span two loads or more (the profiler measures at two); a negative
//!   intercept (noise, or a kind with no fixed cost to speak of) is clamped to `o = 0` and `e`
//!   refitted through the origin, `1 / e = sum(t_i x_i) / sum(x_i^2)`, which is also the fit of
//!   a kind measured at one load (calibration files of format 1). A kind with no FLOPs (the
//!   token embedding) gets its mean measured time as its fixed cost.
//! - Activation bytes (the paper's procedure): run a few steps with full recomputation and
//!   without, read each stage's peak memory; the difference on stage `s` is
//!   `n_s * sum over its layers (a_i - c_i)`. One scale for ViT blocks and one for LLM blocks
//!   on the modelled `a_i` is fitted by least squares over the stages (the paper's two
//!   per-layer activation figures); the other layers keep the model's bytes (scale 1), and a
//!   kind the stages cannot tell apart keeps scale 1 too.

use super::vlm::{LayerCost, LayerKind, ModelLayer};
use crate::error::{number_at_least, Error};

/// Every layer kind, in table order.
pub const KINDS: [LayerKind; 6] = [
    LayerKind::VitEmbed,
    LayerKind::Vit,
    LayerKind::Projector,
    LayerKind::Embed,
    LayerKind::Llm,
    LayerKind::Head,
];

fn kind_index(k: LayerKind) -> usize {
    k.index()
}

/// One measured layer time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTiming {
    /// The layer's kind.
    pub kind: LayerKind,
    /// Its forward time at 100% efficiency (ms) at the load it was measured at.
    pub ms_at_peak: f64,
    /// The measured forward time (ms).
    pub forward_ms: f64,
}

/// Checks one measurement of layer `i`: the layer exists and the time is a positive number.
pub fn check_timing(layers: &[ModelLayer], i: u32, forward_ms: f64) -> Result<LayerKind, Error> {
    let Some(layer) = layers.get(i as usize) else {
        return Err(Error::out_of_range(
            "measured layer",
            format!("{i} is not a layer (there are {})", layers.len()),
        ));
    };
    number_at_least("measured forwardMs", forward_ms, 0.0)?;
    if forward_ms == 0.0 {
        return Err(Error::out_of_range(
            "measured forwardMs",
            format!("of layer {i} must be > 0 (a measured layer takes time), got 0"),
        ));
    }
    Ok(layer.kind)
}

/// Fits one [`LayerCost`] per kind (see the module doc); `None` for a kind without
/// measurements. `efficiency[k]` is the kind's current efficiency, kept by a kind without FLOPs.
pub fn fit_layer_cost(measured: &[LayerTiming], efficiency: &[f64; 6]) -> [Option<LayerCost>; 6] {
    let mut out = [None; 6];
    for (k, slot) in out.iter_mut().enumerate() {
        let pts: Vec<(f64, f64)> = measured
            .iter()
            .filter(|m| kind_index(m.kind) == k)
            .map(|m| (m.ms_at_peak, m.forward_ms))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let n = pts.len() as f64;
        let (sx, sy) = pts
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let sxx: f64 = pts.iter().map(|&(x, _)| (x - mx) * (x - mx)).sum();
        let sxy: f64 = pts.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
        let xmax = pts.iter().fold(0.0, |a: f64, &(x, _)| a.max(x));
        if xmax <= 0.0 {
            // No FLOPs: the time is all fixed cost.
            *slot = Some(LayerCost {
                overhead_ms: my,
                efficiency: efficiency[k],
            });
            continue;
        }
        // Two loads or more (x spread beyond rounding): intercept and slope.
        if sxx > 1e-12 * mx * mx * n {
            let slope = sxy / sxx;
            let o = my - slope * mx;
            if slope > 0.0 && o >= 0.0 {
                *slot = Some(LayerCost {
                    overhead_ms: o,
                    efficiency: 1.0 / slope,
                });
                continue;
            }
        }
        let (num, den) = pts
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x * y, b + x * x));
        *slot = Some(LayerCost {
            overhead_ms: 0.0,
            efficiency: den / num,
        });
    }
    out
}

/// One stage's measured peak memory with full recomputation and with none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageMemory {
    pub first_layer: u32,
    pub last_layer: u32,
    pub in_flight: u32,
    pub full_recompute_bytes: f64,
    pub no_recompute_bytes: f64,
}

/// Kinds whose activation bytes are fitted: ViT blocks and LLM blocks.
const FITTED: [usize; 2] = [1, 4];

/// Fits the ViT-block and LLM-block scales on the modelled activation bytes; every other kind,
/// and a fitted kind absent from every stage or not separable, keeps 1.
pub fn fit_activation_scale(
    layers: &[ModelLayer],
    stages: &[StageMemory],
) -> Result<[f64; 6], Error> {
    // Rows: stages; columns: kinds. y_s = diff / n_s + sum c_i (over the stage) = sum_k scale_k * A_sk.
    let mut rows: Vec<([f64; 6], f64)> = Vec::new();
    for (s, st) in stages.iter().enumerate() {
        if st.last_layer < st.first_layer
            || st.last_layer as usize >= layers.len()
            || st.in_flight == 0
        {
            return Err(Error::out_of_range(
                "stageMemory",
                format!("stage {s} has bad layer bounds or in-flight count"),
            ));
        }
        number_at_least("fullRecomputeBytes", st.full_recompute_bytes, 0.0)?;
        number_at_least("noRecomputeBytes", st.no_recompute_bytes, 0.0)?;
        let mut a = [0.0; 6];
        let mut known = 0.0;
        for x in &layers[st.first_layer as usize..=st.last_layer as usize] {
            let k = kind_index(x.kind);
            if FITTED.contains(&k) {
                a[k] += x.layer.activation_bytes;
            } else {
                known += x.layer.activation_bytes;
            }
            known -= x.layer.checkpoint_bytes;
        }
        let diff = st.no_recompute_bytes - st.full_recompute_bytes;
        rows.push((a, diff / st.in_flight as f64 - known));
    }
    // Normal equations over the kinds that appear; solved by Gaussian elimination.
    let used: Vec<usize> = FITTED
        .iter()
        .copied()
        .filter(|&k| rows.iter().any(|r| r.0[k] > 0.0))
        .collect();
    let m = used.len();
    let mut scale = [1.0; 6];
    if m == 0 {
        return Ok(scale);
    }
    let mut a = vec![vec![0.0; m + 1]; m];
    for (row, y) in &rows {
        for (i, &ki) in used.iter().enumerate() {
            for (j, &kj) in used.iter().enumerate() {
                a[i][j] += row[ki] * row[kj];
            }
            a[i][m] += row[ki] * y;
        }
    }
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .expect("non-empty");
        let size = a
            .iter()
            .enumerate()
            .map(|(i, r)| r[i].abs())
            .fold(0.0, f64::max);
        if a[pivot][col].abs() <= 1e-12 * size {
            return Ok(scale); // not separable: keep the model's bytes
        }
        a.swap(col, pivot);
        for r in 0..m {
            if r != col {
                let f = a[r][col] / a[col][col];
                let pivot_row = a[col].clone();
                for (x, p) in a[r].iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    for (i, &k) in used.iter().enumerate() {
        scale[k] = a[i][m] / a[i][i];
    }
    Ok(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stages::Layer;

    fn layer(kind: LayerKind, a: f64, c: f64) -> ModelLayer {
        ModelLayer {
            kind,
            forward_flops: 0.0,
            params: 0.0,
            output_bytes: 0.0,
            weight_bytes: 0.0,
            gradient_bytes: 0.0,
            optimizer_bytes: 0.0,
            layer: Layer::new(0.0, 0.0, 0.0, a, c),
        }
    }

    fn timing(kind: LayerKind, x: f64, t: f64) -> LayerTiming {
        LayerTiming {
            kind,
            ms_at_peak: x,
            forward_ms: t,
        }
    }

    #[test]
    fn recovers_the_efficiency_that_made_the_measurements() {
        // One load per kind (format 1): time through the origin.
        let measured = [
            timing(LayerKind::Vit, 2.0, 2.0 / 0.4),
            timing(LayerKind::Vit, 4.0, 4.0 / 0.4),
            timing(LayerKind::Llm, 10.0, 10.0 / 0.6),
        ];
        let c = fit_layer_cost(&measured, &[0.5; 6]);
        let vit = c[kind_index(LayerKind::Vit)].unwrap();
        assert!((vit.efficiency - 0.4).abs() < 1e-12 && vit.overhead_ms.abs() < 1e-12);
        let llm = c[kind_index(LayerKind::Llm)].unwrap();
        assert!((llm.efficiency - 0.6).abs() < 1e-12 && llm.overhead_ms == 0.0);
        assert_eq!(c[kind_index(LayerKind::Head)], None);
    }

    #[test]
    fn recovers_overhead_and_efficiency_from_two_loads_or_more() {
        let t = |x: f64| 0.3 + x / 0.25;
        let measured = [
            timing(LayerKind::Projector, 1.0, t(1.0)),
            timing(LayerKind::Projector, 4.0, t(4.0)),
            timing(LayerKind::Projector, 9.0, t(9.0)),
            timing(LayerKind::Embed, 0.0, 0.2),
            timing(LayerKind::Embed, 0.0, 0.4),
        ];
        let c = fit_layer_cost(&measured, &[0.5, 0.5, 0.5, 0.7, 0.5, 0.5]);
        let p = c[kind_index(LayerKind::Projector)].unwrap();
        assert!((p.overhead_ms - 0.3).abs() < 1e-9, "{p:?}");
        assert!((p.efficiency - 0.25).abs() < 1e-9, "{p:?}");
        // No FLOPs: the mean time is the fixed cost; the efficiency stays.
        let e = c[kind_index(LayerKind::Embed)].unwrap();
        assert!((e.overhead_ms - 0.3).abs() < 1e-12 && e.efficiency == 0.7);
    }

    #[test]
    fn a_negative_intercept_is_clamped_to_a_fit_through_the_origin() {
        // Superlinear times: the line through them crosses below zero.
        let measured = [
            timing(LayerKind::Head, 1.0, 1.0),
            timing(LayerKind::Head, 2.0, 3.0),
        ];
        let h = fit_layer_cost(&measured, &[0.5; 6])[kind_index(LayerKind::Head)].unwrap();
        assert_eq!(h.overhead_ms, 0.0);
        assert!((1.0 / h.efficiency - 7.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn recovers_activation_scales_from_stage_memory() {
        // True activations are 1.5x (vit) and 0.8x (llm) the model's.
        let layers = vec![
            layer(LayerKind::Vit, 100.0, 10.0),
            layer(LayerKind::Vit, 100.0, 10.0),
            layer(LayerKind::Llm, 200.0, 20.0),
            layer(LayerKind::Llm, 200.0, 20.0),
        ];
        let truth = |i: usize| if i < 2 { 150.0 } else { 160.0 };
        let stage = |a: u32, b: u32, n: u32| {
            let diff: f64 = (a..=b)
                .map(|i| truth(i as usize) - layers[i as usize].layer.checkpoint_bytes)
                .sum();
            StageMemory {
                first_layer: a,
                last_layer: b,
                in_flight: n,
                full_recompute_bytes: 1000.0,
                no_recompute_bytes: 1000.0 + n as f64 * diff,
            }
        };
        let scale =
            fit_activation_scale(&layers, &[stage(0, 2, 3), stage(3, 3, 1), stage(0, 1, 2)])
                .unwrap();
        assert!(
            (scale[kind_index(LayerKind::Vit)] - 1.5).abs() < 1e-9,
            "{scale:?}"
        );
        assert!(
            (scale[kind_index(LayerKind::Llm)] - 0.8).abs() < 1e-9,
            "{scale:?}"
        );
        assert_eq!(scale[kind_index(LayerKind::Head)], 1.0);
    }
}
