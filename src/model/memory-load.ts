/**
 * The micro-batch load activation memory is sized for: the heaviest micro-batch of a data plan.
 *
 * A stage with `n` micro-batches in flight holds the activations of `n` consecutive
 * micro-batches. Every layer's activation bytes grow linearly in either the micro-batch's tiles
 * (ViT, projector) or its tokens (LLM), so `n` times the micro-batch with the most tiles and the
 * most tokens (componentwise, not necessarily one real micro-batch) bounds every in-flight
 * window of every stage: sizing for it, the plan fits for the whole epoch.
 *
 * @module
 */
import type { BatchPlan } from '../data/plan';
import type { Samples } from '../data/samples';
import type { MicroBatchLoad } from './index';

/**
 * The componentwise heaviest micro-batch of `plan`: most tiles, most tokens (attention from the tokens as one sequence).
 *
 * @param plan - a batch plan
 * @param s - the samples the plan indexes
 * @returns a load at least as heavy as every micro-batch of the plan, in each component
 */
export function heaviestMicroBatchLoad(plan: BatchPlan, s: Samples): MicroBatchLoad {
  // One tight pass (no per-micro-batch objects): the same figures as `microBatchLoad` per micro-batch.
  const { microBatchOffsets: offsets, samples: index, packed } = plan;
  const { vision, text } = s;
  let tiles = 0;
  let tokens = 1;
  for (let k = 0; k + 1 < offsets.length; k++) {
    const a = offsets[k];
    const b = offsets[k + 1];
    let v = 0;
    let t = 0;
    let tmax = 0;
    for (let q = a; q < b; q++) {
      const i = index[q];
      const x = text[i];
      v += vision[i];
      t += x;
      if (x > tmax) tmax = x;
    }
    tiles = Math.max(tiles, v);
    tokens = Math.max(tokens, packed ? t : tmax * (b - a));
  }
  return { tiles, tokens, sumSqLen: tokens * tokens };
}
