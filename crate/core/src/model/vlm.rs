//! The cost and memory model of a vision-language model: the layer sequence (patch embedding,
//! ViT blocks, projector, LLM embedding, LLM blocks, final norm + head + loss), each layer's
//! forward and backward time for a micro-batch, its parameters, and its activation bytes with
//! and without recomputation, under tensor parallel `tp` and ZeRO stage 0-3 over `dp`.
//!
//! Assumptions (all predictions of this model carry them):
//! - FLOPs of a transformer layer, forward, for `n` tokens: dense `2 n (h^2 + 2 h kv d + h^2 +
//!   m h f)` (`m` = 3 for a gated MLP, 2 otherwise) plus attention `4 d a sum(l^2)` over each
//!   independent sequence (every ViT tile alone, bidirectional) or half that (causal LLM
//!   samples in a pack); backward is twice the forward.
//! - Time = FLOPs / `tp` / (peak bf16 FLOP/s x the GPU's efficiency for the layer kind); a
//!   calibrated kind ([`GpuSpec::layer_cost`]) adds a fixed forward cost per layer and
//!   micro-batch (kernel launches, per-operator work, not split over `tp`) and has its own
//!   efficiency.
//! - Activation bytes per transformer layer, re-derived per block type from the tensors autograd
//!   saves (bf16, sequence parallel so every term splits over `tp`, no dropout), after Korthikanti
//!   et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", section 4.1,
//!   which gives `34 s b h + 5 a s^2 b` for a GPT block (4h GELU MLP, dropout). Per token, with
//!   `k d` the key/value width (grouped-query: `kv_heads x head dim`) and `f` the MLP width:
//!   norm 1 input `2h`, QKV input `2h`, Q `2h`, K and V `4 k d`, attention output (o-proj
//!   input) `2h`, norm 2 input `2h`, MLP input `2h`; a plain GELU MLP saves its two
//!   intermediates `4f`; a SwiGLU MLP (unfused, as in Hugging Face code) saves gate, SiLU(gate),
//!   up and their product, `8f`. Total `12h + 4 k d + 4f` (plain) or `+ 8f` (SwiGLU): 32 n h
//!   for a GPT block without dropout (Korthikanti's 34 less its two dropout masks), 41 n h for
//!   InternLM2-7B / Llama-3-8B, 55 n h for Qwen2-7B. Flash attention saves only Q, K, V, the
//!   output and a log-sum-exp (no `s^2` term); without it, Korthikanti's `5 a s^2` per sequence
//!   is added (`5 heads sum(l^2)`). Full recomputation keeps the layer input, `2 n h`.
//!   Selective recomputation (Megatron's `--recompute-granularity selective`) recomputes the
//!   MLP (`--recompute-modules mlp`; keeps its input only) and, without flash attention, the
//!   core attention (`core_attn`: drops the `s^2` term); it adds their forward time.
//!   The head keeps its input and the logits (`6 n vocab / tp`: bf16 + fp32 for the loss).
//! - Static bytes per parameter (split over `tp`): bf16 weights 2, gradients 4 (fp32 main
//!   gradients, Megatron's default) or 2 (bf16), Adam's fp32 master weights and two moments 12:
//!   18 (or 16) bytes under ZeRO 0; ZeRO 1 (Megatron's distributed optimizer) shards the 12 over
//!   `dp` (`6 + 12 / dp`); ZeRO 2 the gradients too; ZeRO 3 the weights too. A frozen module
//!   keeps only its weights (no gradients, no optimizer state).
//! - A frozen ViT (before any trainable layer) runs no backward and keeps no activations; a
//!   frozen LLM still back-propagates to the trainable layers before it (backward = forward:
//!   input gradients only) and keeps its activations.
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
    /// Measured cost per layer kind (indexed by [`LayerKind::index`]); `None`: the kind's
    /// efficiency above and no fixed cost.
    pub layer_cost: [Option<LayerCost>; 6],
}

/// A calibrated layer kind: forward time = `overhead_ms` + FLOPs / `tp` / (peak x `efficiency`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerCost {
    /// Fixed forward time per layer and micro-batch (ms), whatever its load.
    pub overhead_ms: f64,
    /// Achieved / peak FLOP/s on the FLOPs.
    pub efficiency: f64,
}

/// Parallel layout, precision and training set-up that shape per-GPU costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parallel {
    pub tp: u32,
    pub dp: u32,
    /// ZeRO stage 0-3 (1 = Megatron's distributed optimizer).
    pub zero: u32,
    /// Bytes per gradient: 4 (fp32 main gradients, Megatron's default) or 2 (bf16).
    pub grad_bytes: f64,
    /// The ViT (patch embedding and blocks) is frozen.
    pub frozen_vit: bool,
    /// The LLM (embedding, blocks, head) is frozen.
    pub frozen_llm: bool,
    /// Flash attention (no `s^2` activation term).
    pub flash_attention: bool,
}

impl Parallel {
    /// `tp`, `dp`, `zero` with the defaults: fp32 gradients, nothing frozen, flash attention.
    pub fn new(tp: u32, dp: u32, zero: u32) -> Self {
        Parallel {
            tp,
            dp,
            zero,
            grad_bytes: 4.0,
            frozen_vit: false,
            frozen_llm: false,
            flash_attention: true,
        }
    }
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

    /// The kind's numeric code (its position in `['vit-embed', 'vit', 'projector', 'embed',
    /// 'llm', 'head']`).
    pub fn index(self) -> usize {
        self as usize
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
    /// Per GPU: weights, gradients and optimizer state (their sum is `layer.static_bytes`).
    pub weight_bytes: f64,
    pub gradient_bytes: f64,
    pub optimizer_bytes: f64,
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

/// Forward FLOPs of a block's MLP alone (what selective recomputation of the MLP redoes).
fn mlp_flops(t: &Transformer, n: f64) -> f64 {
    let m = if t.gated { 3.0 } else { 2.0 };
    2.0 * n * m * t.hidden * t.ffn
}

/// Activation bytes of one transformer block for `n` tokens (see the module notes), before `tp`.
fn block_activation(t: &Transformer, n: f64) -> f64 {
    let kd = t.kv_heads * t.hidden / t.heads;
    n * (12.0 * t.hidden + 4.0 * kd + mlp_saved(t))
}

/// Bytes per token a block's MLP saves between its input and output.
fn mlp_saved(t: &Transformer) -> f64 {
    if t.gated {
        8.0 * t.ffn
    } else {
        4.0 * t.ffn
    }
}

/// Checks `tp` divides every size it splits.
fn check_tp(spec: &VlmSpec, tp: u32) -> Result<(), Error> {
    if tp <= 1 {
        return Ok(());
    }
    let mut sizes = Vec::new();
    for (name, t) in [("vit", &spec.vit), ("llm", &spec.llm)] {
        for (field, v) in [("heads", t.heads), ("kvHeads", t.kv_heads), ("ffn", t.ffn)] {
            sizes.push((format!("{name}.{field}"), v));
        }
    }
    let divides = |t: u32| sizes.iter().all(|(_, v)| v % t as f64 == 0.0);
    if let Some((name, v)) = sizes.iter().find(|(_, v)| v % tp as f64 != 0.0) {
        let ok: Vec<String> = (1..=16)
            .filter(|&t| divides(t))
            .map(|t| t.to_string())
            .collect();
        return Err(Error::out_of_range(
            "tp",
            format!(
                "{tp} must divide {name} ({}) and every head, key/value head and FFN count it splits; values up to 16 that do: {}",
                crate::error::js_number(*v),
                ok.join(", ")
            ),
        ));
    }
    Ok(())
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
    for (k, c) in gpu.layer_cost.iter().enumerate() {
        if let Some(c) = c {
            let kind = super::calibrate::KINDS[k].name();
            number_at_least(
                &format!("gpu.layerCost.{kind}.overheadMs"),
                c.overhead_ms,
                0.0,
            )?;
            number_at_least(
                &format!("gpu.layerCost.{kind}.efficiency"),
                c.efficiency,
                1e-6,
            )?;
        }
    }
    number_at_least("load.tiles", load.tiles, 0.0)?;
    number_at_least("load.tokens", load.tokens, 1.0)?;
    number_at_least("load.sumSqLen", load.sum_sq_len, 0.0)?;
    if par.tp == 0 || par.dp == 0 {
        return Err(Error::out_of_range("tp", "and dp must be at least 1"));
    }
    if par.zero > 3 {
        return Err(Error::out_of_range(
            "zero",
            format!("must be 0, 1, 2 or 3, got {}", par.zero),
        ));
    }
    if par.grad_bytes != 2.0 && par.grad_bytes != 4.0 {
        return Err(Error::out_of_range(
            "gradBytes",
            format!(
                "must be 4 (fp32 gradients) or 2 (bf16), got {}",
                crate::error::js_number(par.grad_bytes)
            ),
        ));
    }
    check_tp(spec, par.tp)?;
    let tp = par.tp as f64;
    let dp = par.dp as f64;
    // Per parameter on this GPU: weights, gradients, optimizer state (ZeRO shards them in turn).
    let shard = |stage: u32| if par.zero >= stage { dp } else { 1.0 };
    let state = |trainable: bool| {
        let w = 2.0 / shard(3);
        if trainable {
            (w, par.grad_bytes / shard(2), 12.0 / shard(1))
        } else {
            (w, 0.0, 0.0)
        }
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
    // A row: kind, FLOPs, efficiency, parameters, bytes kept (none / full / selective
    // recomputation), FLOPs selective recomputation redoes, output bytes.
    struct Row {
        kind: LayerKind,
        flops: f64,
        eff: f64,
        params: f64,
        act: f64,
        ckpt: f64,
        sel: f64,
        sel_flops: f64,
        output: f64,
    }
    let mut push = |r: Row| {
        let comm = match r.kind {
            LayerKind::Vit => vit_comm,
            LayerKind::Llm => llm_comm,
            _ => 0.0,
        };
        let vision = matches!(r.kind, LayerKind::VitEmbed | LayerKind::Vit);
        let llm_part = matches!(r.kind, LayerKind::Embed | LayerKind::Llm | LayerKind::Head);
        let frozen = (vision && par.frozen_vit) || (llm_part && par.frozen_llm);
        let (w, g, o) = state(!frozen);
        let per_gpu = r.params / tp;
        let (eff, overhead) = match gpu.layer_cost[r.kind.index()] {
            Some(c) => (c.efficiency, c.overhead_ms),
            None => (r.eff, 0.0),
        };
        let f = overhead + ms(r.flops, eff) + comm;
        // A frozen ViT needs no backward and keeps nothing; a frozen LLM back-propagates input
        // gradients only (about one forward).
        let (backward, act, ckpt, sel) = if vision && par.frozen_vit {
            (0.0, 0.0, 0.0, 0.0)
        } else if llm_part && par.frozen_llm {
            (f, r.act, r.ckpt, r.sel)
        } else {
            (2.0 * f, r.act, r.ckpt, r.sel)
        };
        let sel_ms = if vision && par.frozen_vit {
            0.0
        } else {
            ms(r.sel_flops, eff).min(f)
        };
        out.push(ModelLayer {
            kind: r.kind,
            forward_flops: r.flops,
            params: r.params,
            output_bytes: r.output,
            weight_bytes: per_gpu * w,
            gradient_bytes: per_gpu * g,
            optimizer_bytes: per_gpu * o,
            layer: Layer {
                forward_ms: f,
                backward_ms: backward,
                static_bytes: per_gpu * (w + g + o),
                activation_bytes: act,
                checkpoint_bytes: ckpt,
                selective_bytes: sel,
                selective_ms: sel_ms,
            },
        });
    };
    let simple = |kind, flops, eff, params, act: f64, ckpt, output| Row {
        kind,
        flops,
        eff,
        params,
        act,
        ckpt,
        sel: act,
        sel_flops: 0.0,
        output,
    };
    let (vit, llm) = (&spec.vit, &spec.llm);
    let n_vit = load.tiles * spec.vit_tokens_per_tile;
    let n_img = load.tiles * spec.llm_tokens_per_tile;
    let n = load.tokens;
    // Patch embedding: a conv of patch x patch x 3 to hidden, plus position embeddings.
    let patch_in = 3.0 * spec.patch * spec.patch;
    let pixels = 2.0 * load.tiles * 3.0 * spec.tile_pixels * spec.tile_pixels;
    push(simple(
        LayerKind::VitEmbed,
        2.0 * n_vit * patch_in * vit.hidden,
        gpu.efficiency.vit,
        patch_in * vit.hidden + spec.vit_tokens_per_tile * vit.hidden,
        pixels + 2.0 * n_vit * vit.hidden / tp,
        pixels,
        2.0 * n_vit * vit.hidden / tp,
    ));
    let vit_sq = load.tiles * spec.vit_tokens_per_tile * spec.vit_tokens_per_tile;
    // Without flash attention, Korthikanti's 5 a s^2 bytes per sequence (softmax input, output,
    // dropout mask), which selective recomputation of the core attention drops.
    let quadratic = |t: &Transformer, sum_sq: f64| {
        if par.flash_attention {
            0.0
        } else {
            5.0 * t.heads * sum_sq
        }
    };
    for _ in 0..vit.layers {
        let attn = 4.0 * (vit.hidden / vit.heads) * vit.heads * vit_sq;
        let sq = quadratic(vit, vit_sq);
        let act = (block_activation(vit, n_vit) + sq) / tp;
        push(Row {
            kind: LayerKind::Vit,
            flops: dense_flops(vit, n_vit) + attn,
            eff: gpu.efficiency.vit,
            params: block_params(vit),
            act,
            ckpt: 2.0 * n_vit * vit.hidden / tp,
            sel: act - (n_vit * mlp_saved(vit) + sq) / tp,
            sel_flops: mlp_flops(vit, n_vit) + if par.flash_attention { 0.0 } else { attn },
            output: 2.0 * n_vit * vit.hidden / tp,
        });
    }
    // Projector: LayerNorm, Linear(in -> llm), GELU, Linear(llm -> llm) on the shuffled tokens.
    push(simple(
        LayerKind::Projector,
        2.0 * n_img * (spec.projector_in * llm.hidden + llm.hidden * llm.hidden),
        gpu.efficiency.projector,
        spec.projector_in * llm.hidden + llm.hidden * llm.hidden + 2.0 * spec.projector_in,
        2.0 * n_img * (2.0 * spec.projector_in + 2.0 * llm.hidden) / tp,
        2.0 * n_img * spec.projector_in / tp,
        2.0 * n * llm.hidden / tp,
    ));
    // LLM embedding: a lookup, no FLOPs to speak of; its output is the sequence.
    let seq = 2.0 * n * llm.hidden / tp;
    push(simple(
        LayerKind::Embed,
        0.0,
        gpu.efficiency.llm,
        llm.vocab * llm.hidden,
        seq,
        seq,
        seq,
    ));
    for _ in 0..llm.layers {
        let attn = 2.0 * (llm.hidden / llm.heads) * llm.heads * load.sum_sq_len;
        let sq = quadratic(llm, load.sum_sq_len);
        let act = (block_activation(llm, n) + sq) / tp;
        push(Row {
            kind: LayerKind::Llm,
            flops: dense_flops(llm, n) + attn,
            eff: gpu.efficiency.llm,
            params: block_params(llm),
            act,
            ckpt: seq,
            sel: act - (n * mlp_saved(llm) + sq) / tp,
            sel_flops: mlp_flops(llm, n) + if par.flash_attention { 0.0 } else { attn },
            output: seq,
        });
    }
    // Final norm + head + loss: the logits dominate memory (bf16 and fp32 for the loss).
    let head_act = seq + 6.0 * n * llm.vocab / tp;
    push(simple(
        LayerKind::Head,
        2.0 * n * llm.hidden * llm.vocab,
        gpu.efficiency.head,
        llm.vocab * llm.hidden + llm.hidden,
        head_act,
        head_act,
        0.0,
    ));
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
            layer_cost: [None; 6],
        }
    }

    #[test]
    fn parameter_counts_match_the_published_sizes() {
        let layers = vlm_layers(
            &internvl(),
            &a100(),
            &Parallel::new(1, 1, 0),
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
        let mut spec = internvl();
        // 25 ViT heads do not split over tp = 2; this test is about the LLM block.
        spec.vit.heads = 32.0;
        spec.vit.kv_heads = 32.0;
        let load = MicroBatchLoad {
            tiles: 0.0,
            tokens: 1000.0,
            sum_sq_len: 1e6,
        };
        let layers = vlm_layers(&spec, &a100(), &Parallel::new(2, 1, 0), &load).unwrap();
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
        // 12h + 4 k d + 8f per token (SwiGLU, GQA with 8 x 128 key/value width), over tp = 2.
        assert_eq!(
            block.layer.activation_bytes,
            1000.0 * (12.0 * h + 4.0 * 1024.0 + 8.0 * 16384.0) / 2.0
        );
        // Selective recomputation of the MLP keeps everything but its 8f intermediates and
        // redoes its forward.
        assert_eq!(
            block.layer.selective_bytes,
            1000.0 * (12.0 * h + 4.0 * 1024.0) / 2.0
        );
        let mlp_ms = 2.0 * 1000.0 * 3.0 * h * 16384.0 / 2.0 / (312e12 * 0.5) * 1e3;
        assert!((block.layer.selective_ms - mlp_ms).abs() < 1e-12);
    }

    #[test]
    fn a_calibrated_kind_adds_its_fixed_cost_and_uses_its_efficiency() {
        let load = MicroBatchLoad {
            tiles: 4.0,
            tokens: 2000.0,
            sum_sq_len: 1e6,
        };
        let mut gpu = a100();
        let plain = vlm_layers(&internvl(), &gpu, &Parallel::new(1, 1, 0), &load).unwrap();
        gpu.layer_cost[LayerKind::Llm.index()] = Some(LayerCost {
            overhead_ms: 0.7,
            efficiency: 0.25,
        });
        let cal = vlm_layers(&internvl(), &gpu, &Parallel::new(1, 1, 0), &load).unwrap();
        for (p, c) in plain.iter().zip(&cal) {
            if c.kind == LayerKind::Llm {
                // Efficiency 0.25 instead of 0.5: twice the compute time, plus the fixed cost.
                assert!((c.layer.forward_ms - (0.7 + 2.0 * p.layer.forward_ms)).abs() < 1e-9);
                assert_eq!(c.layer.backward_ms, 2.0 * c.layer.forward_ms);
            } else {
                assert_eq!(c.layer, p.layer);
            }
        }
        gpu.layer_cost[LayerKind::Head.index()] = Some(LayerCost {
            overhead_ms: -1.0,
            efficiency: 0.5,
        });
        let e = vlm_layers(&internvl(), &gpu, &Parallel::new(1, 1, 0), &load).unwrap_err();
        assert!(
            e.to_string().contains("gpu.layerCost.head.overheadMs"),
            "{e}"
        );
    }

    #[test]
    fn zero_one_shards_optimizer_state_over_dp() {
        let load = MicroBatchLoad {
            tiles: 1.0,
            tokens: 100.0,
            sum_sq_len: 1e4,
        };
        let z0 = vlm_layers(&internvl(), &a100(), &Parallel::new(1, 8, 0), &load).unwrap();
        let z1 = vlm_layers(&internvl(), &a100(), &Parallel::new(1, 8, 1), &load).unwrap();
        // Megatron's default: bf16 weights, fp32 main gradients, Adam (12): 18 bytes, or
        // 6 + 12 / dp with the distributed optimizer.
        assert_eq!(z0[10].layer.static_bytes, 18.0 * z0[10].params);
        assert_eq!(z1[10].layer.static_bytes, 7.5 * z1[10].params);
        let with = |f: &dyn Fn(&mut Parallel)| {
            let mut par = Parallel::new(1, 8, 1);
            f(&mut par);
            vlm_layers(&internvl(), &a100(), &par, &load).unwrap()
        };
        let bf16 = with(&|p| p.grad_bytes = 2.0);
        assert_eq!(bf16[10].layer.static_bytes, 5.5 * bf16[10].params);
        let z2 = with(&|p| p.zero = 2);
        assert_eq!(
            z2[10].layer.static_bytes,
            (2.0 + 4.0 / 8.0 + 1.5) * z2[10].params
        );
        let z3 = with(&|p| p.zero = 3);
        assert_eq!(z3[10].layer.static_bytes, 18.0 / 8.0 * z3[10].params);
        // A frozen ViT: weights only, no backward, no activations; the LLM is untouched.
        let frozen = with(&|p| p.frozen_vit = true);
        assert_eq!(frozen[10].kind, LayerKind::Vit);
        assert_eq!(frozen[10].layer.static_bytes, 2.0 * frozen[10].params);
        assert_eq!(frozen[10].gradient_bytes + frozen[10].optimizer_bytes, 0.0);
        assert_eq!(frozen[10].layer.backward_ms, 0.0);
        assert_eq!(frozen[10].layer.activation_bytes, 0.0);
        assert_eq!(frozen[60].layer, z1[60].layer);
        // A frozen LLM back-propagates input gradients only.
        let frozen_llm = with(&|p| p.frozen_llm = true);
        assert_eq!(
            frozen_llm[60].layer.backward_ms,
            frozen_llm[60].layer.forward_ms
        );
        assert_eq!(
            frozen_llm[60].layer.static_bytes,
            2.0 * frozen_llm[60].params
        );
    }

    #[test]
    fn tensor_parallel_must_divide_heads_kv_heads_and_ffn() {
        let load = MicroBatchLoad {
            tiles: 1.0,
            tokens: 100.0,
            sum_sq_len: 1e4,
        };
        let e = vlm_layers(&internvl(), &a100(), &Parallel::new(3, 1, 1), &load).unwrap_err();
        assert_eq!(e.code(), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert!(
            e.to_string().starts_with("tp 3 must divide vit.heads"),
            "{e}"
        );
        assert!(e.to_string().contains("vit.heads (25)"), "{e}");
        // 25 ViT heads and 8 key/value heads: only 1 divides both.
        assert!(e.to_string().ends_with("do: 1"), "{e}");
        assert!(vlm_layers(&internvl(), &a100(), &Parallel::new(1, 1, 1), &load).is_ok());
    }

    #[test]
    fn without_flash_attention_the_quadratic_term_counts_and_selective_drops_it() {
        let load = MicroBatchLoad {
            tiles: 0.0,
            tokens: 1000.0,
            sum_sq_len: 2e5,
        };
        let mut par = Parallel::new(1, 1, 1);
        let flash = vlm_layers(&internvl(), &a100(), &par, &load).unwrap();
        par.flash_attention = false;
        let plain = vlm_layers(&internvl(), &a100(), &par, &load).unwrap();
        let i = 45 + 3;
        assert_eq!(
            plain[i].layer.activation_bytes - flash[i].layer.activation_bytes,
            5.0 * 48.0 * 2e5
        );
        assert_eq!(
            plain[i].layer.selective_bytes,
            flash[i].layer.selective_bytes
        );
    }
}
