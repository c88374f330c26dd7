/**
 * The load of a micro-batch, as the cost model takes it: image tiles, LLM tokens and the sum of
 * squared sample lengths (attention). A padded micro-batch (random, length-grouped) counts its
 * padding: every sample as long as the longest.
 *
 * @module
 */
import type { NativePlanLoads } from '../../bindings';
import { activeBackend } from '../binding';
import { outOfRange } from '../errors';
import { expectU32Array } from '../validate';
import type { BatchPlan } from './plan';
import { checkSamples, type Samples } from './samples';

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

/**
 * Each plan's loads, with the arrays they were taken over: a plan given new arrays (or another
 * `packed`) since is measured again (contents changed in place are not seen).
 */
const loads = new WeakMap<BatchPlan, { vision: Uint32Array; text: Uint32Array; samples: Uint32Array; offsets: Uint32Array; packed: boolean; figures: PlanLoadFigures }>();

/**
 * The mean and largest micro-batch loads of a plan, in one tight pass over its samples (no
 * per-micro-batch objects; the same figures as {@link microBatchLoad} per micro-batch): the
 * TypeScript twin of the native `planLoads` (`crate/core/src/data/load.rs`), with the same sums
 * in the same order, so both give the same figures bit for bit.
 *
 * @param packed - micro-batches are packed sequences (else padded batches)
 * @param index - every micro-batch's sample indices, one after another
 * @param offsets - micro-batch `k` is `index[offsets[k] .. offsets[k + 1]]`
 * @param vision - image tiles per sample
 * @param text - text tokens per sample
 * @returns the means over the micro-batches (over 1 for none) and the componentwise largest
 */
export function planLoadsTwin(packed: boolean, index: Uint32Array, offsets: Uint32Array, vision: Uint32Array, text: Uint32Array): NativePlanLoads {
  expectU32Array('samples', index);
  expectU32Array('microBatchOffsets', offsets);
  checkSamples(vision, text);
  let monotone = offsets.length > 0 && offsets[0] === 0 && offsets[offsets.length - 1] === index.length;
  for (let k = 1; monotone && k < offsets.length; k++) monotone = offsets[k] >= offsets[k - 1];
  if (!monotone) throw outOfRange('plan', 'microBatchOffsets must start at 0, never decrease, and end at samples.length');
  for (let q = 0; q < index.length; q++) {
    if (index[q] >= text.length) throw outOfRange('plan', `refers to sample ${index[q]}, but there are only ${text.length} samples`);
  }
  const n = Math.max(offsets.length - 1, 1);
  let sumTiles = 0;
  let sumTokens = 0;
  let sumSq = 0;
  let mostTiles = 0;
  let mostTokens = 0;
  for (let k = 0; k + 1 < offsets.length; k++) {
    const a = offsets[k];
    const b = offsets[k + 1];
    let tiles = 0;
    let tokens = 0;
    let sumSqLen = 0;
    let tmax = 0;
    for (let q = a; q < b; q++) {
      const i = index[q];
      const t = text[i];
      tiles += vision[i];
      tokens += t;
      sumSqLen += t * t;
      if (t > tmax) tmax = t;
    }
    const mbTokens = packed ? tokens : tmax * (b - a);
    sumTiles += tiles;
    sumTokens += mbTokens;
    sumSq += packed ? sumSqLen : tmax * tmax * (b - a);
    mostTiles = Math.max(mostTiles, tiles);
    mostTokens = Math.max(mostTokens, mbTokens);
  }
  return { meanTiles: sumTiles / n, meanTokens: sumTokens / n, meanSumSqLen: sumSq / n, mostTiles, mostTokens };
}

/**
 * The mean and largest micro-batch loads of `plan`, computed once per plan (natively, or by
 * {@link planLoadsTwin} on the TypeScript backend).
 *
 * @param plan - a batch plan
 * @param s - the samples the plan indexes
 * @returns the mean load and the most tiles and tokens of any micro-batch
 */
export function planLoads(plan: BatchPlan, s: Samples): PlanLoadFigures {
  const known = loads.get(plan);
  if (known && known.vision === s.vision && known.text === s.text && known.samples === plan.samples && known.offsets === plan.microBatchOffsets && known.packed === Boolean(plan.packed)) return known.figures;
  return rememberPlanLoads(plan, s, activeBackend().planLoads(Boolean(plan.packed), plan.samples, plan.microBatchOffsets, s.vision, s.text));
}

/**
 * Keeps `l`, the loads of `plan` over `s` that another pass over them computed (`batchMetrics`
 * does), for {@link planLoads}.
 *
 * @internal
 */
export function rememberPlanLoads(plan: BatchPlan, s: Samples, l: NativePlanLoads): PlanLoadFigures {
  const figures = { mean: { tiles: l.meanTiles, tokens: l.meanTokens, sumSqLen: l.meanSumSqLen }, most: { tiles: l.mostTiles, tokens: l.mostTokens } };
  loads.set(plan, { vision: s.vision, text: s.text, samples: plan.samples, offsets: plan.microBatchOffsets, packed: Boolean(plan.packed), figures });
  return figures;
}

/** The mean load of the plan's micro-batches (computed once per plan, with {@link planLoads}). */
export function meanMicroBatchLoad(plan: BatchPlan, s: Samples): MicroBatchLoadFigures {
  return planLoads(plan, s).mean;
}
