/**
 * The VLM cost and memory model. TypeScript twin of `crate/core/src/model/vlm.rs`; see there
 * for the assumptions every prediction carries.
 *
 * @module
 */
import { invalidType, outOfRange } from '../errors';
import { checkKnownKeys, describeValue, expectNumber, expectObject, numberAtLeast } from '../validate';
import { EFFICIENCY_KEYS, GPU_SPEC_KEYS, LAYER_COST_KEYS, TRANSFORMER_KEYS, VLM_SPEC_KEYS } from './option-keys';

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
  /**
   * Measured cost per layer kind (what {@link calibrate} fits); a kind listed here takes its
   * own efficiency and fixed cost instead of `efficiency` above.
   */
  layerCost?: Partial<Record<LayerKind, LayerCost>>;
}

/** A calibrated layer kind: forward time = `overheadMs` + FLOPs / tp / (peak x `efficiency`); backward twice that. */
export interface LayerCost {
  /** Fixed forward time per layer and micro-batch, ms (operator launches; not split over tp). */
  overheadMs: number;
  /** Achieved / peak FLOP/s on the layer's FLOPs. */
  efficiency: number;
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
  /** Bytes kept under selective recomputation (Megatron's `--recompute-modules`: the MLP, and the core attention without flash attention). */
  selectiveBytes: Float64Array;
  /** Forward time selective recomputation adds, ms. */
  selectiveMs: Float64Array;
  /** Weights per GPU, bytes (part of `staticBytes`). */
  weightBytes: Float64Array;
  /** Gradients per GPU, bytes (part of `staticBytes`). */
  gradientBytes: Float64Array;
  /** Optimizer state per GPU, bytes (part of `staticBytes`). */
  optimizerBytes: Float64Array;
  /** Communication time of a cut after each layer but the last, ms. */
  commMs: Float64Array;
}

function denseFlops(t: Transformer, n: number): number {
  const d = t.hidden / t.heads;
  const m = t.gated ? 3 : 2;
  return 2 * n * (t.hidden * t.hidden + 2 * t.hidden * t.kvHeads * d + t.hidden * t.hidden + m * t.hidden * t.ffn);
}

function mlpFlops(t: Transformer, n: number): number {
  return 2 * n * (t.gated ? 3 : 2) * t.hidden * t.ffn;
}

function mlpSaved(t: Transformer): number {
  return t.gated ? 8 * t.ffn : 4 * t.ffn;
}

/** Twin of `block_activation` (see the derivation in `crate/core/src/model/vlm.rs`). */
function blockActivation(t: Transformer, n: number): number {
  const kd = (t.kvHeads * t.hidden) / t.heads;
  return n * (12 * t.hidden + 4 * kd + mlpSaved(t));
}

/** Twin of `check_tp`. */
function checkTp(spec: VlmSpec, tp: number): void {
  if (tp <= 1) return;
  const sizes: [string, number][] = [];
  for (const [name, t] of [['vit', spec.vit], ['llm', spec.llm]] as const) {
    sizes.push([`${name}.heads`, t.heads], [`${name}.kvHeads`, t.kvHeads], [`${name}.ffn`, t.ffn]);
  }
  const bad = sizes.find(([, v]) => v % tp !== 0);
  if (bad) {
    const ok: number[] = [];
    for (let t = 1; t <= 16; t++) if (sizes.every(([, v]) => v % t === 0)) ok.push(t);
    throw outOfRange('tp', `${tp} must divide ${bad[0]} (${bad[1]}) and every head, key/value head and FFN count it splits; values up to 16 that do: ${ok.join(', ')}`);
  }
}

/** Precision and training set-up of a layer table (twin of the extra fields of `Parallel`). */
export interface TrainingSetup {
  /** Bytes per gradient: 4 (fp32 main gradients, Megatron's default) or 2 (bf16). */
  gradBytes: number;
  /** The ViT is frozen (no gradients, optimizer state, backward or activations). */
  frozenVit: boolean;
  /** The LLM is frozen (no gradients or optimizer state; backward = forward for input gradients). */
  frozenLlm: boolean;
  /** Flash attention (no quadratic activation term). */
  flashAttention: boolean;
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
  setup: TrainingSetup = { gradBytes: 4, frozenVit: false, frozenLlm: false, flashAttention: true },
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
  const costs = LAYER_KINDS.map((k) => gpu.layerCost?.[k]);
  costs.forEach((c, k) => {
    if (!c) return;
    numberAtLeast(`gpu.layerCost.${LAYER_KINDS[k]}.overheadMs`, c.overheadMs, 0);
    numberAtLeast(`gpu.layerCost.${LAYER_KINDS[k]}.efficiency`, c.efficiency, 1e-6);
  });
  numberAtLeast('load.tiles', tiles, 0);
  numberAtLeast('load.tokens', tokens, 1);
  numberAtLeast('load.sumSqLen', sumSqLen, 0);
  if (zero > 3) throw outOfRange('zero', `must be 0, 1, 2 or 3, got ${zero}`);
  if (setup.gradBytes !== 2 && setup.gradBytes !== 4) throw outOfRange('gradBytes', `must be 4 (fp32 gradients) or 2 (bf16), got ${setup.gradBytes}`);
  checkTp(spec, tp);
  const shard = (stage: number) => (zero >= stage ? dp : 1);
  const state = (trainable: boolean): [number, number, number] => {
    const w = 2 / shard(3);
    return trainable ? [w, setup.gradBytes / shard(2), 12 / shard(1)] : [w, 0, 0];
  };
  const ms = (flops: number, eff: number) => (flops / tp / (gpu.peakFlops * eff)) * 1e3;
  const tpMs = (n: number, hidden: number) => (tp > 1 && gpu.nvlinkBytesPerS > 0 ? ((2 * (((2 * (tp - 1)) / tp) * (2 * n * hidden))) / gpu.nvlinkBytesPerS) * 1e3 : 0);
  const vitComm = tpMs(tiles * spec.vitTokensPerTile, spec.vit.hidden);
  const llmComm = tpMs(tokens, spec.llm.hidden);
  const rows: { kind: number; flops: number; eff: number; overhead: number; params: number; act: number; ckpt: number; sel: number; selFlops: number; out: number }[] = [];
  const row = (kind: LayerKind, flops: number, eff: number, params: number, act: number, ckpt: number, sel: number, selFlops: number, out: number) => {
    const c = costs[LAYER_KINDS.indexOf(kind)];
    rows.push({ kind: LAYER_KINDS.indexOf(kind), flops, eff: c ? c.efficiency : eff, overhead: c ? c.overheadMs : 0, params, act, ckpt, sel, selFlops, out });
  };
  const push = (kind: LayerKind, flops: number, eff: number, params: number, act: number, ckpt: number, out: number) => row(kind, flops, eff, params, act, ckpt, act, 0, out);
  const quadratic = (t: Transformer, sumSq: number) => (setup.flashAttention ? 0 : 5 * t.heads * sumSq);
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
    const sq = quadratic(vit, vitSq);
    const act = (blockActivation(vit, nVit) + sq) / tp;
    row(
      'vit',
      denseFlops(vit, nVit) + attn,
      gpu.efficiency.vit,
      blockParams(vit),
      act,
      (2 * nVit * vit.hidden) / tp,
      act - (nVit * mlpSaved(vit) + sq) / tp,
      mlpFlops(vit, nVit) + (setup.flashAttention ? 0 : attn),
      (2 * nVit * vit.hidden) / tp,
    );
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
    const sq = quadratic(llm, sumSqLen);
    const act = (blockActivation(llm, n) + sq) / tp;
    row('llm', denseFlops(llm, n) + attn, gpu.efficiency.llm, blockParams(llm), act, seq, act - (n * mlpSaved(llm) + sq) / tp, mlpFlops(llm, n) + (setup.flashAttention ? 0 : attn), seq);
  }
  const headAct = seq + (6 * n * vocab) / tp;
  push('head', 2 * n * llm.hidden * vocab, gpu.efficiency.head, vocab * llm.hidden + llm.hidden, headAct, headAct, 0);
  const col = (f: (r: (typeof rows)[number]) => number) => Float64Array.from(rows, f);
  const comm = (kind: number) => (kind === 1 ? vitComm : kind === 4 ? llmComm : 0);
  const forwardMs = col((r) => r.overhead + ms(r.flops, r.eff) + comm(r.kind));
  // kinds 0, 1: ViT; 3, 4, 5: LLM.
  const vision = (k: number) => k === 0 || k === 1;
  const llmPart = (k: number) => k >= 3;
  const frozen = (k: number) => (vision(k) && setup.frozenVit) || (llmPart(k) && setup.frozenLlm);
  const frozenVit = (k: number) => vision(k) && setup.frozenVit;
  const per = (f: (r: (typeof rows)[number], s: [number, number, number]) => number) => col((r) => f(r, state(!frozen(r.kind))));
  const commMs =
    rows.length < 2 || gpu.networkBytesPerS <= 0
      ? new Float64Array(Math.max(rows.length - 1, 0))
      : Float64Array.from(rows.slice(0, -1), (r) => ((2 * r.out) / gpu.networkBytesPerS) * 1e3);
  return {
    kind: Uint8Array.from(rows, (r) => r.kind),
    forwardFlops: col((r) => r.flops),
    params: col((r) => r.params),
    forwardMs,
    backwardMs: forwardMs.map((f, i) => (frozenVit(rows[i].kind) ? 0 : llmPart(rows[i].kind) && setup.frozenLlm ? f : 2 * f)),
    staticBytes: per((r, [w, g, o]) => (r.params / tp) * (w + g + o)),
    activationBytes: col((r) => (frozenVit(r.kind) ? 0 : r.act)),
    checkpointBytes: col((r) => (frozenVit(r.kind) ? 0 : r.ckpt)),
    selectiveBytes: col((r) => (frozenVit(r.kind) ? 0 : r.sel)),
    selectiveMs: Float64Array.from(rows, (r, i) => (frozenVit(r.kind) ? 0 : Math.min(ms(r.selFlops, r.eff), forwardMs[i]))),
    weightBytes: per((r, [w]) => (r.params / tp) * w),
    gradientBytes: per((r, [, g]) => (r.params / tp) * g),
    optimizerBytes: per((r, [, , o]) => (r.params / tp) * o),
    commMs,
  };
}

const TRANSFORMER_NUMBERS = ['layers', 'hidden', 'heads', 'kvHeads', 'ffn'] as const;
const VLM_NUMBERS = ['vitTokensPerTile', 'tilePixels', 'patch', 'llmTokensPerTile', 'projectorIn'] as const;
const GPU_NUMBERS = ['peakFlops', 'memoryBytes', 'networkBytesPerS', 'nvlinkBytesPerS'] as const;
const EFFICIENCY_NUMBERS = ['vit', 'projector', 'llm', 'head'] as const;

function checkNumbers(name: string, o: object, keys: readonly string[]): void {
  for (const k of keys) expectNumber(`${name}.${k}`, (o as Record<string, unknown>)[k]);
}

/**
 * `spec` if it has every field of a {@link VlmSpec} with its type (the ranges are the core's
 * to check), else a coded `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) naming the field, such as
 * `model.llm must be an object, got undefined`: the same on both backends.
 *
 * @param spec - the model as given
 * @param name - what the message calls it
 * @returns `spec`
 */
export function checkVlmSpec(spec: unknown, name = 'model'): VlmSpec {
  const o = expectObject(name, spec as object | null, 'a preset name or an object');
  checkKnownKeys(name, o, VLM_SPEC_KEYS);
  for (const part of ['vit', 'llm'] as const) {
    const t = expectObject(`${name}.${part}`, (o as Record<string, object>)[part]);
    checkKnownKeys(`${name}.${part}`, t, TRANSFORMER_KEYS);
    checkNumbers(`${name}.${part}`, t, TRANSFORMER_NUMBERS);
    const { gated, vocab } = t as Record<string, unknown>;
    if (typeof gated !== 'boolean') throw invalidType(`${name}.${part}.gated`, `must be a boolean, got ${describeValue(gated)}`);
    if (vocab !== undefined && vocab !== null) expectNumber(`${name}.${part}.vocab`, vocab);
  }
  checkNumbers(name, o, VLM_NUMBERS);
  return o as VlmSpec;
}

/**
 * `gpu` if it has every field of a {@link GpuSpec} with its type, else a coded `TypeError`
 * (`ERR_OMNIBAL_INVALID_TYPE`) naming the field.
 *
 * @param gpu - the GPU as given
 * @param name - what the message calls it
 * @returns `gpu`
 */
export function checkGpuSpec(gpu: unknown, name = 'gpu'): GpuSpec {
  const o = expectObject(name, gpu as object | null, 'a preset name or an object');
  checkKnownKeys(name, o, GPU_SPEC_KEYS);
  checkNumbers(name, o, GPU_NUMBERS);
  checkNumbers(`${name}.efficiency`, expectObject(`${name}.efficiency`, (o as Record<string, object>).efficiency), EFFICIENCY_NUMBERS);
  checkKnownKeys(`${name}.efficiency`, (o as Record<string, object>).efficiency, EFFICIENCY_KEYS);
  const layerCost = (o as Record<string, unknown>).layerCost;
  if (layerCost !== undefined && layerCost !== null) {
    checkKnownKeys(`${name}.layerCost`, expectObject(`${name}.layerCost`, layerCost as object), LAYER_KINDS);
    for (const [kind, cost] of Object.entries(layerCost)) checkKnownKeys(`${name}.layerCost.${kind}`, cost, LAYER_COST_KEYS);
  }
  return o as GpuSpec;
}
