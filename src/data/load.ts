/**
 * The load of a micro-batch, as the cost model takes it: image tiles, LLM tokens and the sum of
 * squared sample lengths (attention). A padded micro-batch (random, length-grouped) counts its
 * padding: every sample as long as the longest.
 *
 * @module
 */
import type { BatchPlan } from './plan';
import type { Samples } from './samples';

/** Tiles, tokens and the sum of squared sample lengths of one micro-batch. */
export interface MicroBatchLoadFigures {
  /** Image tiles. */
  tiles: number;
  /** LLM tokens (padding included for padded micro-batches). */
  tokens: number;
  /** Sum of squared sample lengths. */
  sumSqLen: number;
}

/** The load of micro-batch `k` of `plan`. */
export function microBatchLoad(plan: BatchPlan, s: Samples, k: number): MicroBatchLoadFigures {
  let tiles = 0;
  let tokens = 0;
  let sumSqLen = 0;
  let tmax = 0;
  const a = plan.microBatchOffsets[k];
  const b = plan.microBatchOffsets[k + 1];
  for (let q = a; q < b; q++) {
    const t = s.text[plan.samples[q]];
    tiles += s.vision[plan.samples[q]];
    tokens += t;
    sumSqLen += t * t;
    tmax = Math.max(tmax, t);
  }
  return plan.packed ? { tiles, tokens, sumSqLen } : { tiles, tokens: tmax * (b - a), sumSqLen: tmax * tmax * (b - a) };
}

const means = new WeakMap<BatchPlan, MicroBatchLoadFigures>();

/** The mean load of the plan's micro-batches (computed once per plan). */
export function meanMicroBatchLoad(plan: BatchPlan, s: Samples): MicroBatchLoadFigures {
  const known = means.get(plan);
  if (known) return known;
  const offsets = plan.microBatchOffsets;
  const n = Math.max(offsets.length - 1, 1);
  const packed = plan.packed ? packedTotals(plan, s) : undefined;
  if (packed) {
    const mean = { tiles: packed.tiles / n, tokens: packed.tokens / n, sumSqLen: packed.sumSqLen / n };
    means.set(plan, mean);
    return mean;
  }
  // microBatchLoad summed, inlined (no object per micro-batch: 2M of them at 10M samples).
  const { samples } = plan;
  const { vision, text } = s;
  let tiles = 0;
  let tokens = 0;
  let sumSqLen = 0;
  for (let k = 0; k < offsets.length - 1; k++) {
    const a = offsets[k];
    const b = offsets[k + 1];
    let tk = 0;
    let sq = 0;
    let tmax = 0;
    for (let q = a; q < b; q++) {
      const i = samples[q];
      const t = text[i];
      tiles += vision[i];
      tk += t;
      sq += t * t;
      if (t > tmax) tmax = t;
    }
    if (plan.packed) {
      tokens += tk;
      sumSqLen += sq;
    } else {
      tokens += tmax * (b - a);
      sumSqLen += tmax * tmax * (b - a);
    }
  }
  const mean = { tiles: tiles / n, tokens: tokens / n, sumSqLen: sumSqLen / n };
  means.set(plan, mean);
  return mean;
}

/**
 * The summed load of a packed plan's micro-batches, read in sample order: a packed plan holds
 * every sample that is not dropped once, plus the samples its padding micro-batches repeat, so
 * no sample is looked up through the plan's (random) order. `undefined` when the plan's size
 * does not match that (then the caller sums micro-batch by micro-batch).
 */
function packedTotals(plan: BatchPlan, s: Samples): MicroBatchLoadFigures | undefined {
  const { vision, text } = s;
  const offsets = plan.microBatchOffsets;
  let repeated = 0;
  for (let k = 0; k < plan.padding.length; k++) if (plan.padding[k] === 1) repeated += offsets[k + 1] - offsets[k];
  if (plan.samples.length !== text.length - plan.droppedIndex.length + repeated) return undefined;
  let tiles = 0;
  let tokens = 0;
  let sumSqLen = 0;
  const add = (i: number, sign: number) => {
    const t = text[i];
    tiles += sign * vision[i];
    tokens += sign * t;
    sumSqLen += sign * t * t;
  };
  for (let i = 0; i < text.length; i++) {
    const t = text[i];
    tiles += vision[i];
    tokens += t;
    sumSqLen += t * t;
  }
  for (const i of plan.droppedIndex) add(i, -1);
  for (let k = 0; k < plan.padding.length; k++) {
    if (plan.padding[k] === 1) for (let q = offsets[k]; q < offsets[k + 1]; q++) add(plan.samples[q], 1);
  }
  return { tiles, tokens, sumSqLen };
}
