/**
 * The VLM cost and memory model. TypeScript twin of `crate/core/src/model/vlm.rs`; see there
 * for the assumptions every prediction carries.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { numberAtLeast } from '../validate';

/** A transformer stack (ViT or LLM). */
export interface Transformer {
  /** Blocks. */
  layers: number;
  /** Hidden size. */
  hidden: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (grouped-query attention). */
  kvHeads: number;
  /** MLP inner size. */
  ffn: number;
  /** Gated (SwiGLU) MLP. */
  gated: boolean;
  /** Vocabulary (LLM only). */
  vocab?: number;
}

/** A VLM: ViT + MLP projector + LLM. */
export interface VlmSpec {
  /** The vision encoder. */
  vit: Transformer;
  /** The language model. */
  llm: Transformer;
  /** Tokens per tile inside the ViT (InternViT 448px: 1,025). */
  vitTokensPerTile: number;
  /** Pixels per tile side. */
  tilePixels: number;
  /** Patch size. */
  patch: number;
  /** Tokens per tile the projector hands to the LLM (256 after pixel shuffle 0.5). */
  llmTokensPerTile: number;
  /** Projector input width (4 x ViT hidden after pixel shuffle 0.5). */
  projectorIn: number;
}

/** Achieved / peak FLOP/s per layer kind (vit-embed and vit share `vit`; embed and llm share `llm`). */
export interface Efficiency {
  /** ViT blocks and patch embedding. */
  vit: number;
  /** The MLP projector. */
  projector: number;
  /** LLM blocks. */
  llm: number;
  /** Final norm, head and loss. */
  head: number;
}

/** A GPU. */
export interface GpuSpec {
  /** Peak dense bf16 FLOP/s. */
  peakFlops: number;
  /** Memory per GPU, bytes. */
  memoryBytes: number;
  /** Achieved / peak FLOP/s per layer kind. */
  efficiency: Efficiency;
  /** Point-to-point bandwidth between pipeline stages, bytes/s. */
  networkBytesPerS: number;
  /** Bandwidth inside a node, bytes/s. */
  nvlinkBytesPerS: number;
}

/** Layer kinds, in the order of their numeric codes. */
export const LAYER_KINDS = ['vit-embed', 'vit', 'projector', 'embed', 'llm', 'head'] as const;

/** A layer kind. */
export type LayerKind = (typeof LAYER_KINDS)[number];

/** The layer table (struct of arrays) and the cut times. */
export interface LayerTable {
  /** Index into {@link LAYER_KINDS}. */
  kind: Uint8Array;
  /** Forward FLOPs per layer for the micro-batch. */
  forwardFlops: Float64Array;
  /** Parameters per layer. */
  params: Float64Array;
  /** Predicted forward time, ms. */
  forwardMs: Float64Array;
  /** Predicted backward time (2 x forward), ms. */
  backwardMs: Float64Array;
  /** Weights, gradients and optimizer share per GPU, bytes. */
  staticBytes: Float64Array;
  /** Activation bytes kept per in-flight micro-batch. */
  activationBytes: Float64Array;
  /** Bytes kept when the layer is recomputed. */
  checkpointBytes: Float64Array;
  /** Communication time of a cut after each layer but the last, ms. */
  commMs: Float64Array;
}

function denseFlops(t: Transformer, n: number): number {
  const d = t.hidden / t.heads;
  const m = t.gated ? 3 : 2;
  return 2 * n * (t.hidden * t.hidden + 2 * t.hidden * t.kvHeads * d + t.hidden * t.hidden + m * t.hidden * t.ffn);
}

function blockParams(t: Transformer): number {
  const d = t.hidden / t.heads;
  const m = t.gated ? 3 : 2;
  return t.hidden * t.hidden + 2 * t.hidden * t.kvHeads * d + t.hidden * t.hidden + m * t.hidden * t.ffn + 2 * t.hidden;
}

/** Twin of `vlm_layers` + `cut_times`. */
export function vlmLayerTableTwin(
  spec: VlmSpec,
  gpu: GpuSpec,
  tp: number,
  dp: number,
  zero: number,
  tiles: number,
  tokens: number,
  sumSqLen: number,
): LayerTable {
  for (const [name, t] of [['vit', spec.vit], ['llm', spec.llm]] as const) {
    numberAtLeast(`${name}.hidden`, t.hidden, 1);
    numberAtLeast(`${name}.heads`, t.heads, 1);
    numberAtLeast(`${name}.kvHeads`, t.kvHeads, 1);
    numberAtLeast(`${name}.ffn`, t.ffn, 1);
  }
  numberAtLeast('llm.vocab', spec.llm.vocab ?? 0, 1);
  numberAtLeast('vitTokensPerTile', spec.vitTokensPerTile, 1);
  numberAtLeast('tilePixels', spec.tilePixels, 1);
  numberAtLeast('patch', spec.patch, 1);
  numberAtLeast('llmTokensPerTile', spec.llmTokensPerTile, 1);
  numberAtLeast('projectorIn', spec.projectorIn, 1);
  numberAtLeast('gpu.peakFlops', gpu.peakFlops, 1);
  for (const k of ['vit', 'projector', 'llm', 'head'] as const) numberAtLeast(`gpu.efficiency.${k}`, gpu.efficiency[k], 1e-6);
  numberAtLeast('load.tiles', tiles, 0);
  numberAtLeast('load.tokens', tokens, 1);
  numberAtLeast('load.sumSqLen', sumSqLen, 0);
  if (zero > 1) throw outOfRange('zero', `must be 0 or 1, got ${zero}`);
  const bytesPerParam = zero === 0 ? 16 : 4 + 12 / dp;
  const ms = (flops: number, eff: number) => (flops / tp / (gpu.peakFlops * eff)) * 1e3;
  const tpMs = (n: number, hidden: number) => (tp > 1 && gpu.nvlinkBytesPerS > 0 ? ((2 * (((2 * (tp - 1)) / tp) * (2 * n * hidden))) / gpu.nvlinkBytesPerS) * 1e3 : 0);
  const vitComm = tpMs(tiles * spec.vitTokensPerTile, spec.vit.hidden);
  const llmComm = tpMs(tokens, spec.llm.hidden);
  const rows: { kind: number; flops: number; eff: number; params: number; act: number; ckpt: number; out: number }[] = [];
  const push = (kind: LayerKind, flops: number, eff: number, params: number, act: number, ckpt: number, out: number) =>
    rows.push({ kind: LAYER_KINDS.indexOf(kind), flops, eff, params, act, ckpt, out });
  const { vit, llm } = spec;
  const vocab = llm.vocab ?? 0;
  const nVit = tiles * spec.vitTokensPerTile;
  const nImg = tiles * spec.llmTokensPerTile;
  const n = tokens;
  const patchIn = 3 * spec.patch * spec.patch;
  const pixels = 2 * tiles * 3 * spec.tilePixels * spec.tilePixels;
  push('vit-embed', 2 * nVit * patchIn * vit.hidden, gpu.efficiency.vit, patchIn * vit.hidden + spec.vitTokensPerTile * vit.hidden, pixels + (2 * nVit * vit.hidden) / tp, pixels, (2 * nVit * vit.hidden) / tp);
  const vitSq = tiles * spec.vitTokensPerTile * spec.vitTokensPerTile;
  for (let i = 0; i < vit.layers; i++) {
    const attn = 4 * (vit.hidden / vit.heads) * vit.heads * vitSq;
    push('vit', denseFlops(vit, nVit) + attn, gpu.efficiency.vit, blockParams(vit), (34 * nVit * vit.hidden) / tp, (2 * nVit * vit.hidden) / tp, (2 * nVit * vit.hidden) / tp);
  }
  push(
    'projector',
    2 * nImg * (spec.projectorIn * llm.hidden + llm.hidden * llm.hidden),
    gpu.efficiency.projector,
    spec.projectorIn * llm.hidden + llm.hidden * llm.hidden + 2 * spec.projectorIn,
    (2 * nImg * (2 * spec.projectorIn + 2 * llm.hidden)) / tp,
    (2 * nImg * spec.projectorIn) / tp,
    (2 * n * llm.hidden) / tp,
  );
  const seq = (2 * n * llm.hidden) / tp;
  push('embed', 0, gpu.efficiency.llm, vocab * llm.hidden, seq, seq, seq);
  for (let i = 0; i < llm.layers; i++) {
    const attn = 2 * (llm.hidden / llm.heads) * llm.heads * sumSqLen;
    push('llm', denseFlops(llm, n) + attn, gpu.efficiency.llm, blockParams(llm), (34 * n * llm.hidden) / tp, seq, seq);
  }
  const headAct = seq + (6 * n * vocab) / tp;
  push('head', 2 * n * llm.hidden * vocab, gpu.efficiency.head, vocab * llm.hidden + llm.hidden, headAct, headAct, 0);
  const col = (f: (r: (typeof rows)[number]) => number) => Float64Array.from(rows, f);
  const comm = (kind: number) => (kind === 1 ? vitComm : kind === 4 ? llmComm : 0);
  const forwardMs = col((r) => ms(r.flops, r.eff) + comm(r.kind));
  const commMs =
    rows.length < 2 || gpu.networkBytesPerS <= 0
      ? new Float64Array(Math.max(rows.length - 1, 0))
      : Float64Array.from(rows.slice(0, -1), (r) => ((2 * r.out) / gpu.networkBytesPerS) * 1e3);
  return {
    kind: Uint8Array.from(rows, (r) => r.kind),
    forwardFlops: col((r) => r.flops),
    params: col((r) => r.params),
    forwardMs,
    backwardMs: forwardMs.map((f) => 2 * f),
    staticBytes: col((r) => (r.params / tp) * bytesPerParam),
    activationBytes: col((r) => r.act),
    checkpointBytes: col((r) => r.ckpt),
    commMs,
  };
}
