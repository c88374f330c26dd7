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
  const n = Math.max(plan.microBatchOffsets.length - 1, 1);
  // One tight pass (no per-micro-batch objects), summing what `microBatchLoad` gives each micro-batch.
  const { microBatchOffsets: offsets, samples: index, packed } = plan;
  const sum = { tiles: 0, tokens: 0, sumSqLen: 0 };
  for (let k = 0; k + 1 < offsets.length; k++) {
    const a = offsets[k];
    const b = offsets[k + 1];
    let tiles = 0;
    let tokens = 0;
    let sumSqLen = 0;
    let tmax = 0;
    for (let q = a; q < b; q++) {
      const i = index[q];
      const t = s.text[i];
      tiles += s.vision[i];
      tokens += t;
      sumSqLen += t * t;
      if (t > tmax) tmax = t;
    }
    sum.tiles += tiles;
    sum.tokens += packed ? tokens : tmax * (b - a);
    sum.sumSqLen += packed ? sumSqLen : tmax * tmax * (b - a);
  }
  const mean = { tiles: sum.tiles / n, tokens: sum.tokens / n, sumSqLen: sum.sumSqLen / n };
  means.set(plan, mean);
  return mean;
}
