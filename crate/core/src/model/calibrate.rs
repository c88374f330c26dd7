//! Calibration: replace the model's guesses with measurements.
//!
//! - Efficiency: for each layer kind, the factor `e` that best fits measured forward times of
//!   layers of that kind in the least-squares sense: with `x_i` the time at 100% efficiency,
//!   `t_i ~ x_i / e`, so `1 / e = sum(t_i x_i) / sum(x_i^2)`.
//! - Activation bytes (the paper's procedure): run a few steps with full recomputation and
//!   without, read each stage's peak memory; the difference on stage `s` is
//!   `n_s * sum over its layers (a_i - c_i)`. One scale for ViT blocks and one for LLM blocks
//!   on the modelled `a_i` is fitted by least squares over the stages (the paper's two
//!   per-layer activation figures); the other layers keep the model's bytes (scale 1), and a
//!   kind the stages cannot tell apart keeps scale 1 too.

use super::vlm::{LayerKind, ModelLayer};
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
    KINDS.iter().position(|&x| x == k).expect("listed")
}

/// Fits one efficiency per kind from `(layer index, measured forward ms)` pairs; `None` for a
/// kind without measurements. `ms_at_peak[i]` is layer `i`'s forward time at 100% efficiency.
pub fn fit_efficiency(
    layers: &[ModelLayer],
    ms_at_peak: &[f64],
    measured: &[(u32, f64)],
) -> Result<[Option<f64>; 6], Error> {
    let mut num = [0.0; 6];
    let mut den = [0.0; 6];
    for &(i, t) in measured {
        let Some(layer) = layers.get(i as usize) else {
            return Err(Error::out_of_range(
                "measured layer",
                format!("{i} is not a layer (there are {})", layers.len()),
            ));
        };
        number_at_least("measured forwardMs", t, 0.0)?;
        if t == 0.0 {
            return Err(Error::out_of_range(
                "measured forwardMs",
                format!("of layer {i} must be > 0 (a measured layer takes time), got 0"),
            ));
        }
        let x = ms_at_peak[i as usize];
        let k = kind_index(layer.kind);
        num[k] += t * x;
        den[k] += x * x;
    }
    let mut out = [None; 6];
    for k in 0..6 {
        if den[k] > 0.0 && num[k] > 0.0 {
            out[k] = Some(den[k] / num[k]);
        }
    }
    Ok(out)
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

    #[test]
    fn recovers_the_efficiency_that_made_the_measurements() {
        let layers = vec![
            layer(LayerKind::Vit, 1.0, 0.0),
            layer(LayerKind::Vit, 1.0, 0.0),
            layer(LayerKind::Llm, 1.0, 0.0),
        ];
        let at_peak = [2.0, 4.0, 10.0];
        let measured = [(0, 2.0 / 0.4), (1, 4.0 / 0.4), (2, 10.0 / 0.6)];
        let e = fit_efficiency(&layers, &at_peak, &measured).unwrap();
        assert!((e[kind_index(LayerKind::Vit)].unwrap() - 0.4).abs() < 1e-12);
        assert!((e[kind_index(LayerKind::Llm)].unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(e[kind_index(LayerKind::Head)], None);
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
