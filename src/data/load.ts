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

/** The mean and the componentwise largest load of a plan's micro-batches. */
export interface PlanLoadFigures {
  /** Mean over the micro-batches. */
  mean: MicroBatchLoadFigures;
  /** Most tiles and most tokens of any micro-batch (each its own maximum). */
  most: { tiles: number; tokens: number };
}

const loads = new WeakMap<BatchPlan, PlanLoadFigures>();

/**
 * The mean and largest micro-batch loads of `plan`, in one tight pass over its samples (no
 * per-micro-batch objects; the same figures as `microBatchLoad` per micro-batch), computed once
 * per plan.
 */
export function planLoads(plan: BatchPlan, s: Samples): PlanLoadFigures {
  const known = loads.get(plan);
  if (known) return known;
  const n = Math.max(plan.microBatchOffsets.length - 1, 1);
  const { microBatchOffsets: offsets, samples: index, packed } = plan;
  const sum = { tiles: 0, tokens: 0, sumSqLen: 0 };
  const most = { tiles: 0, tokens: 0 };
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
    const mbTokens = packed ? tokens : tmax * (b - a);
    sum.tiles += tiles;
    sum.tokens += mbTokens;
    sum.sumSqLen += packed ? sumSqLen : tmax * tmax * (b - a);
    most.tiles = Math.max(most.tiles, tiles);
    most.tokens = Math.max(most.tokens, mbTokens);
  }
  const figures = { mean: { tiles: sum.tiles / n, tokens: sum.tokens / n, sumSqLen: sum.sumSqLen / n }, most };
  loads.set(plan, figures);
  return figures;
}

/** The mean load of the plan's micro-batches (computed once per plan, with {@link planLoads}). */
export function meanMicroBatchLoad(plan: BatchPlan, s: Samples): MicroBatchLoadFigures {
  return planLoads(plan, s).mean;
}
