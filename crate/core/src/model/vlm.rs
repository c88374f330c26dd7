//! The cost and memory model of a vision-language model: the layer sequence (patch embedding,
//! ViT blocks, projector, LLM embedding, LLM blocks, final norm + head + loss), each layer's
//! forward and backward time for a micro-batch, its parameters, and its activation bytes with
//! and without recomputation, under tensor parallel `tp` and ZeRO stage 0/1 over `dp`.
//!
//! Assumptions (all predictions of this model carry them):
//! - FLOPs of a transformer layer, forward, for `n` tokens: dense `2 n (h^2 + 2 h kv d + h^2 +
//!   m h f)` (`m` = 3 for a gated MLP, 2 otherwise) plus attention `4 d a sum(l^2)` over each
//!   independent sequence (every ViT tile alone, bidirectional) or half that (causal LLM
//!   samples in a pack); backward is twice the forward.
//! - Time = FLOPs / `tp` / (peak bf16 FLOP/s x the GPU's efficiency for the layer kind).
//! - Activation bytes per transformer layer (bf16, sequence parallel, flash attention):
//!   `34 n h / tp` kept, `2 n h / tp` (the layer input) when recomputed; the head keeps its
//!   input and the logits (`6 n vocab / tp`: bf16 + fp32 for the loss), recomputed or not.
//! - Static bytes: 16 per parameter (mixed-precision Adam) under ZeRO 0; `4 + 12 / dp` under
//!   ZeRO 1; parameters split over `tp`.
//! - Cutting after a layer sends its output forward and the gradient back, once per
//!   micro-batch, at the GPU's network bandwidth (pipeline stages across nodes).
//! - Tensor parallelism (`tp > 1`, inside a node) adds, per transformer block and forward, two
//!   ring all-reduces of the block's output (`2 (tp - 1) / tp x 2 n h` bytes each) at the NVLink
//!   bandwidth; the backward, twice the forward, carries its share.

use super::stages::Layer;
use crate::error::{number_at_least, Error};

/// A transformer stack (ViT or LLM).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transformer {
    pub layers: u32,
    pub hidden: f64,
    pub heads: f64,
    pub kv_heads: f64,
    pub ffn: f64,
    /// Gated (SwiGLU) MLP: three matrices instead of two.
    pub gated: bool,
    /// Vocabulary (LLM only; 0 for a ViT).
    pub vocab: f64,
}

/// A VLM: ViT + MLP projector + LLM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VlmSpec {
    pub vit: Transformer,
    pub llm: Transformer,
    /// Tokens per tile inside the ViT (InternViT 448px, patch 14: 1,025).
    pub vit_tokens_per_tile: f64,
    /// Pixels per tile side (448).
    pub tile_pixels: f64,
    /// Patch size (14).
    pub patch: f64,
    /// Tokens per tile the projector hands to the LLM (256 after pixel shuffle 0.5).
    pub llm_tokens_per_tile: f64,
    /// Input width of the projector (4 x ViT hidden after pixel shuffle 0.5).
    pub projector_in: f64,
}

/// Efficiency (achieved / peak FLOP/s) per layer kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Efficiency {
    pub vit: f64,
    pub projector: f64,
    pub llm: f64,
    pub head: f64,
}

/// A GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSpec {
    pub peak_flops: f64,
    pub memory_bytes: f64,
    pub efficiency: Efficiency,
    /// Point-to-point bandwidth between pipeline stages (bytes/s).
    pub network_bytes_per_s: f64,
    /// Bandwidth inside a node (bytes/s), for tensor parallel and gradient reduction in a node.
    pub nvlink_bytes_per_s: f64,
}

/// Parallel layout that shapes per-GPU costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parallel {
    pub tp: u32,
    pub dp: u32,
    /// ZeRO stage: 0 or 1.
    pub zero: u32,
}

/// The load of one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicroBatchLoad {
    /// Image tiles.
    pub tiles: f64,
    /// LLM tokens (image tokens included).
    pub tokens: f64,
    /// Sum over the micro-batch's samples of their squared lengths.
    pub sum_sq_len: f64,
}

/// What kind of layer a row of the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    VitEmbed,
    Vit,
    Projector,
    Embed,
    Llm,
    Head,
}

impl LayerKind {
    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::VitEmbed => "vit-embed",
            LayerKind::Vit => "vit",
            LayerKind::Projector => "projector",
            LayerKind::Embed => "embed",
            LayerKind::Llm => "llm",
            LayerKind::Head => "head",
        }
    }
}

/// One row of the model's layer table.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLayer {
    pub kind: LayerKind,
    pub forward_flops: f64,
    pub params: f64,
    /// Bytes of the layer's output crossing a cut after it (per micro-batch, per direction).
    pub output_bytes: f64,
    pub layer: Layer,
}

fn dense_flops(t: &Transformer, n: f64) -> f64 {
    let d = t.hidden / t.heads;
    let m = if t.gated { 3.0 } else { 2.0 };
    2.0 * n
        * (t.hidden * t.hidden
            + 2.0 * t.hidden * t.kv_heads * d
            + t.hidden * t.hidden
            + m * t.hidden * t.ffn)
}

fn block_params(t: &Transformer) -> f64 {
    let d = t.hidden / t.heads;
    let m = if t.gated { 3.0 } else { 2.0 };
    t.hidden * t.hidden
        + 2.0 * t.hidden * t.kv_heads * d
        + t.hidden * t.hidden
        + m * t.hidden * t.ffn
        + 2.0 * t.hidden
}

impl VlmSpec {
    /// Checks every size is a finite positive number (vocab of the LLM too).
    pub fn check(&self) -> Result<(), Error> {
        for (name, t) in [("vit", &self.vit), ("llm", &self.llm)] {
            for (field, v) in [
                ("hidden", t.hidden),
                ("heads", t.heads),
                ("kvHeads", t.kv_heads),
                ("ffn", t.ffn),
            ] {
                number_at_least(&format!("{name}.{field}"), v, 1.0)?;
            }
        }
        number_at_least("llm.vocab", self.llm.vocab, 1.0)?;
        for (field, v) in [
            ("vitTokensPerTile", self.vit_tokens_per_tile),
            ("tilePixels", self.tile_pixels),
            ("patch", self.patch),
            ("llmTokensPerTile", self.llm_tokens_per_tile),
            ("projectorIn", self.projector_in),
        ] {
            number_at_least(field, v, 1.0)?;
        }
        Ok(())
    }

    /// Number of layers in the table: 1 + ViT blocks + 1 + 1 + LLM blocks + 1.
    pub fn layer_count(&self) -> usize {
        self.vit.layers as usize + self.llm.layers as usize + 4
    }
}

/// The layer table of `spec` on `gpu` for one micro-batch of `load`.
pub fn vlm_layers(
    spec: &VlmSpec,
    gpu: &GpuSpec,
    par: &Parallel,
    load: &MicroBatchLoad,
) -> Result<Vec<ModelLayer>, Error> {
    spec.check()?;
    number_at_least("gpu.peakFlops", gpu.peak_flops, 1.0)?;
    for (field, v) in [
        ("vit", gpu.efficiency.vit),
        ("projector", gpu.efficiency.projector),
        ("llm", gpu.efficiency.llm),
        ("head", gpu.efficiency.head),
    ] {
        number_at_least(&format!("gpu.efficiency.{field}"), v, 1e-6)?;
    }
    number_at_least("load.tiles", load.tiles, 0.0)?;
    number_at_least("load.tokens", load.tokens, 1.0)?;
    number_at_least("load.sumSqLen", load.sum_sq_len, 0.0)?;
    if par.tp == 0 || par.dp == 0 {
        return Err(Error::out_of_range("tp", "and dp must be at least 1"));
    }
    if par.zero > 1 {
        return Err(Error::out_of_range(
            "zero",
            format!("must be 0 or 1, got {}", par.zero),
        ));
    }
    let tp = par.tp as f64;
    let bytes_per_param = if par.zero == 0 {
        16.0
    } else {
        4.0 + 12.0 / par.dp as f64
    };
    let ms = |flops: f64, eff: f64| flops / tp / (gpu.peak_flops * eff) * 1e3;
    // Two ring all-reduces of a block's output per forward, when the block is split over tp.
    let tp_ms = |n: f64, hidden: f64| {
        if par.tp > 1 && gpu.nvlink_bytes_per_s > 0.0 {
            2.0 * (2.0 * (tp - 1.0) / tp * (2.0 * n * hidden)) / gpu.nvlink_bytes_per_s * 1e3
        } else {
            0.0
        }
    };
    let vit_comm = tp_ms(load.tiles * spec.vit_tokens_per_tile, spec.vit.hidden);
    let llm_comm = tp_ms(load.tokens, spec.llm.hidden);
    let mut out = Vec::with_capacity(spec.layer_count());
    let mut push =
        |kind: LayerKind, flops: f64, eff: f64, params: f64, act: f64, ckpt: f64, output: f64| {
            let comm = match kind {
                LayerKind::Vit => vit_comm,
                LayerKind::Llm => llm_comm,
                _ => 0.0,
            };
            let f = ms(flops, eff) + comm;
            out.push(ModelLayer {
                kind,
                forward_flops: flops,
                params,
                output_bytes: output,
                layer: Layer {
                    forward_ms: f,
                    backward_ms: 2.0 * f,
                    static_bytes: params / tp * bytes_per_param,
                    activation_bytes: act,
                    checkpoint_bytes: ckpt,
                },
            });
        };
    let (vit, llm) = (&spec.vit, &spec.llm);
    let n_vit = load.tiles * spec.vit_tokens_per_tile;
    let n_img = load.tiles * spec.llm_tokens_per_tile;
    let n = load.tokens;
    // Patch embedding: a conv of patch x patch x 3 to hidden, plus position embeddings.
    let patch_in = 3.0 * spec.patch * spec.patch;
    let pixels = 2.0 * load.tiles * 3.0 * spec.tile_pixels * spec.tile_pixels;
    push(
        LayerKind::VitEmbed,
        2.0 * n_vit * patch_in * vit.hidden,
        gpu.efficiency.vit,
        patch_in * vit.hidden + spec.vit_tokens_per_tile * vit.hidden,
        pixels + 2.0 * n_vit * vit.hidden / tp,
        pixels,
        2.0 * n_vit * vit.hidden / tp,
    );
    let vit_sq = load.tiles * spec.vit_tokens_per_tile * spec.vit_tokens_per_tile;
    for _ in 0..vit.layers {
        let attn = 4.0 * (vit.hidden / vit.heads) * vit.heads * vit_sq;
        push(
            LayerKind::Vit,
            dense_flops(vit, n_vit) + attn,
            gpu.efficiency.vit,
            block_params(vit),
            34.0 * n_vit * vit.hidden / tp,
            2.0 * n_vit * vit.hidden / tp,
            2.0 * n_vit * vit.hidden / tp,
        );
    }
    // Projector: LayerNorm, Linear(in -> llm), GELU, Linear(llm -> llm) on the shuffled tokens.
    push(
        LayerKind::Projector,
        2.0 * n_img * (spec.projector_in * llm.hidden + llm.hidden * llm.hidden),
        gpu.efficiency.projector,
        spec.projector_in * llm.hidden + llm.hidden * llm.hidden + 2.0 * spec.projector_in,
        2.0 * n_img * (2.0 * spec.projector_in + 2.0 * llm.hidden) / tp,
        2.0 * n_img * spec.projector_in / tp,
        2.0 * n * llm.hidden / tp,
    );
    // LLM embedding: a lookup, no FLOPs to speak of; its output is the sequence.
    let seq = 2.0 * n * llm.hidden / tp;
    push(
        LayerKind::Embed,
        0.0,
        gpu.efficiency.llm,
        llm.vocab * llm.hidden,
        seq,
        seq,
        seq,
    );
    for _ in 0..llm.layers {
        let attn = 2.0 * (llm.hidden / llm.heads) * llm.heads * load.sum_sq_len;
        push(
            LayerKind::Llm,
            dense_flops(llm, n) + attn,
            gpu.efficiency.llm,
            block_params(llm),
            34.0 * n * llm.hidden / tp,
            seq,
            seq,
        );
    }
    // Final norm + head + loss: the logits dominate memory (bf16 and fp32 for the loss).
    let head_act = seq + 6.0 * n * llm.vocab / tp;
    push(
        LayerKind::Head,
        2.0 * n * llm.hidden * llm.vocab,
        gpu.efficiency.head,
        llm.vocab * llm.hidden + llm.hidden,
        head_act,
        head_act,
        0.0,
    );
    Ok(out)
}

/// Communication time (ms) of a cut after each layer but the last: the output forward and the
/// gradient back, at the network bandwidth.
pub fn cut_times(layers: &[ModelLayer], gpu: &GpuSpec) -> Vec<f64> {
    if layers.len() < 2 || gpu.network_bytes_per_s <= 0.0 {
        return vec![0.0; layers.len().saturating_sub(1)];
    }
    layers[..layers.len() - 1]
        .iter()
        .map(|x| 2.0 * x.output_bytes / gpu.network_bytes_per_s * 1e3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internvl() -> VlmSpec {
        VlmSpec {
            vit: Transformer {
                layers: 45,
                hidden: 3200.0,
                heads: 25.0,
                kv_heads: 25.0,
                ffn: 12800.0,
                gated: false,
                vocab: 0.0,
            },
            llm: Transformer {
                layers: 48,
                hidden: 6144.0,
                heads: 48.0,
                kv_heads: 8.0,
                ffn: 16384.0,
                gated: true,
                vocab: 92544.0,
            },
            vit_tokens_per_tile: 1025.0,
            tile_pixels: 448.0,
            patch: 14.0,
            llm_tokens_per_tile: 256.0,
            projector_in: 12800.0,
        }
    }

    fn a100() -> GpuSpec {
        GpuSpec {
            peak_flops: 312e12,
            memory_bytes: 80.0 * (1u64 << 30) as f64,
            efficiency: Efficiency {
                vit: 0.5,
                projector: 0.5,
                llm: 0.5,
                head: 0.5,
            },
            network_bytes_per_s: 25e9,
            nvlink_bytes_per_s: 300e9,
        }
    }

    #[test]
    fn parameter_counts_match_the_published_sizes() {
        let layers = vlm_layers(
            &internvl(),
            &a100(),
            &Parallel {
                tp: 1,
                dp: 1,
                zero: 0,
            },
            &MicroBatchLoad {
                tiles: 10.0,
                tokens: 4096.0,
                sum_sq_len: 4096.0 * 4096.0,
            },
        )
        .unwrap();
        assert_eq!(layers.len(), 45 + 48 + 4);
        let vit: f64 = layers
            .iter()
            .filter(|x| matches!(x.kind, LayerKind::Vit | LayerKind::VitEmbed))
            .map(|x| x.params)
            .sum();
        let llm: f64 = layers
            .iter()
            .filter(|x| matches!(x.kind, LayerKind::Llm | LayerKind::Embed | LayerKind::Head))
            .map(|x| x.params)
            .sum();
        // InternViT-6B is about 5.9B parameters; InternLM2-20B about 19.9B.
        assert!((5.5e9..6.3e9).contains(&vit), "vit {vit:e}");
        assert!((19.0e9..20.5e9).contains(&llm), "llm {llm:e}");
    }

    #[test]
    fn flops_follow_the_formula_and_backward_is_twice_forward() {
        let spec = internvl();
        let load = MicroBatchLoad {
            tiles: 0.0,
            tokens: 1000.0,
            sum_sq_len: 1e6,
        };
        let layers = vlm_layers(
            &spec,
            &a100(),
            &Parallel {
                tp: 2,
                dp: 1,
                zero: 0,
            },
            &load,
        )
        .unwrap();
        let block = &layers[45 + 3]; // first LLM block
        assert_eq!(block.kind, LayerKind::Llm);
        let h = 6144.0;
        let dense = 2.0 * 1000.0 * (h * h + 2.0 * h * 8.0 * 128.0 + h * h + 3.0 * h * 16384.0);
        let attn = 2.0 * 128.0 * 48.0 * 1e6;
        assert_eq!(block.forward_flops, dense + attn);
        assert_eq!(block.layer.backward_ms, 2.0 * block.layer.forward_ms);
        // Compute, plus two ring all-reduces of the output over tp = 2 at 300 GB/s.
        let comm = 2.0 * (2.0 * (2.0 - 1.0) / 2.0 * (2.0 * 1000.0 * h)) / 300e9 * 1e3;
        assert_eq!(
            block.layer.forward_ms,
            (dense + attn) / 2.0 / (312e12 * 0.5) * 1e3 + comm
        );
        assert_eq!(block.layer.activation_bytes, 34.0 * 1000.0 * h / 2.0);
    }

    #[test]
    fn zero_one_shards_optimizer_state_over_dp() {
        let load = MicroBatchLoad {
            tiles: 1.0,
            tokens: 100.0,
            sum_sq_len: 1e4,
        };
        let z0 = vlm_layers(
            &internvl(),
            &a100(),
            &Parallel {
                tp: 1,
                dp: 8,
                zero: 0,
            },
            &load,
        )
        .unwrap();
        let z1 = vlm_layers(
            &internvl(),
            &a100(),
            &Parallel {
                tp: 1,
                dp: 8,
                zero: 1,
            },
            &load,
        )
        .unwrap();
        assert_eq!(z0[10].layer.static_bytes, 16.0 * z0[10].params);
        assert_eq!(z1[10].layer.static_bytes, 5.5 * z1[10].params);
    }
}
