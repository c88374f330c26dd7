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
import type { Caps, Samples } from '../data/samples';
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

/**
 * The componentwise heaviest micro-batch that ANY epoch of a capped plan can hold, what a run of
 * several epochs must be sized for: each epoch packs afresh, so its heaviest micro-batch differs,
 * but every pack of every epoch stays within `caps`, and each sample over them gets a
 * micro-batch of its own in whichever epoch trains it. Per component: the most of this plan's
 * heaviest micro-batch, the caps, and every over-cap sample.
 *
 * @param plan - a plan of the balanced strategy (any epoch)
 * @param s - the samples the plan indexes
 * @param caps - the caps the plan was made with (`capsForTarget` for a `samplesPerPack`)
 * @returns a load at least as heavy as every micro-batch of every epoch's plan, in each component
 */
export function anyEpochHeaviestLoad(plan: BatchPlan, s: Samples, caps: Caps): MicroBatchLoad {
  const here = heaviestMicroBatchLoad(plan, s);
  let tiles = Math.max(here.tiles, caps.maxVision);
  let tokens = Math.max(here.tokens, caps.maxText);
  const { vision, text } = s;
  for (let i = 0; i < text.length; i++) {
    if (vision[i] > caps.maxVision || text[i] > caps.maxText) {
      tiles = Math.max(tiles, vision[i]);
      tokens = Math.max(tokens, text[i]);
    }
  }
  return { tiles, tokens, sumSqLen: tokens * tokens };
}
