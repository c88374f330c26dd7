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
import { planLoads } from '../data/load';
import type { BatchPlan } from '../data/plan';
import { expectObject, expectU32Array } from '../validate';
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
  // The arrays it reads, by type only: a what-if plan edited by hand is measured as it is.
  expectU32Array('plan.samples', expectObject('plan', plan, 'a BatchPlan').samples);
  expectU32Array('plan.microBatchOffsets', plan.microBatchOffsets);
  expectU32Array('samples.vision', expectObject('samples', s).vision);
  expectU32Array('samples.text', s.text);
  // From the plan's one pass over its samples (shared with its mean load, computed once per plan).
  const { tiles, tokens: most } = planLoads(plan, s).most;
  const tokens = Math.max(1, most);
  return { tiles, tokens, sumSqLen: tokens * tokens };
}
