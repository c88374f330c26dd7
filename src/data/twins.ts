/**
 * The data twins shaped as the native binding's functions (same arguments, same results), for
 * the TypeScript backend.
 *
 * @module
 */
import type * as Native from '../../bindings';
import type { CancelFlag } from '../abort';
import { deferred } from '../progress';
import { integerBetween, integerInRange, numberAtLeast } from '../validate';
import { MAX_SEED } from '../random/rng';
import { textCost } from './cost';
import { packIsfTwin, referenceIsfParams } from './isf';
import { searchIsfArgumentsTwin } from './isf-search';
import { batchMetricsTwin } from './metrics';
import { planLoadsTwin } from './load';
import { syntheticSamplesTwin } from './synthetic';
import { planBatchesTwin, type PlanBatchesOptions } from './strategy';
import { checkSamples, type Caps } from './samples';

const MAX_U32 = 0xffffffff;
type Progress = ((done: number, total: number) => void) | undefined | null;

function opt(name: string, v: number | undefined | null, min: number, max: number, fallback: number): number {
  return v === undefined || v === null ? fallback : integerBetween(name, v, min, max);
}

function packIsf(vision: Uint32Array, text: Uint32Array, o: Native.PackIsfOptions): Native.NativeIsfPacks {
  checkSamples(vision, text);
  const caps: Caps = {
    maxVision: integerInRange('maxVision', o.maxVision, MAX_U32),
    maxText: integerBetween('maxText', o.maxText, 1, MAX_U32),
  };
  const p = referenceIsfParams(caps, opt('seed', o.seed, 0, MAX_SEED, 0), opt('epoch', o.epoch, 0, MAX_U32, 0));
  p.minVision = opt('minVision', o.minVision, 0, MAX_U32, p.minVision);
  p.minText = opt('minText', o.minText, 0, MAX_U32, p.minText);
  p.iterations = opt('iterations', o.iterations, 1, 10000, p.iterations);
  const out = packIsfTwin(vision, text, p);
  return {
    packSamples: Uint32Array.from(out.packs.items),
    packOffsets: Uint32Array.from(out.packs.offsets),
    droppedIndex: Uint32Array.from(out.dropped, (d) => d[0]),
    droppedReason: Uint8Array.from(out.dropped, (d) => d[1]),
  };
}

function searchIsfArguments(vision: Uint32Array, text: Uint32Array, o: Native.SearchIsfOptions): Native.NativeIsfSearch {
  checkSamples(vision, text);
  return searchIsfArgumentsTwin(vision, text, {
    samplesPerPack: numberAtLeast('samplesPerPack', o.samplesPerPack, 1),
    dp: opt('dp', o.dp, 1, 1 << 20, 8),
    accum: opt('accum', o.accum, 1, 1 << 20, 1),
    iterations: opt('iterations', o.iterations, 1, 10000, 50),
    maxSteps: opt('maxSteps', o.maxSteps, 1, 4096, 32),
    seed: opt('seed', o.seed, 0, MAX_SEED, 0),
  });
}

function batchMetrics(
  plan: Native.PlanArrays,
  vision: Uint32Array,
  text: Uint32Array,
  costA?: number | null,
  costB?: number | null,
): Native.NativeBatchMetrics {
  checkSamples(vision, text);
  const cost = textCost(costA ?? 1, costB ?? 0);
  integerBetween('dp', plan.dp, 1, 1 << 20);
  const metrics = batchMetricsTwin(plan, vision, text, cost);
  return { ...metrics, loads: planLoadsTwin(plan.packed, plan.samples, plan.microBatchOffsets, vision, text) };
}

/** The data functions of the TypeScript backend. */
export const dataTwins = {
  // Strategy and tail names are checked inside (unknown ones are coded errors), as natively.
  planBatches: (vision: Uint32Array, text: Uint32Array, options: Native.PlanBatchesOptions) =>
    planBatchesTwin(vision, text, options as PlanBatchesOptions),
  planBatchesAsync: (vision: Uint32Array, text: Uint32Array, options: Native.PlanBatchesOptions, onProgress?: Progress, cancel?: CancelFlag | null) =>
    deferred(() => planBatchesTwin(vision, text, options as PlanBatchesOptions), onProgress, 1, cancel),
  packIsf,
  packIsfAsync: (vision: Uint32Array, text: Uint32Array, options: Native.PackIsfOptions, onProgress?: Progress, cancel?: CancelFlag | null) =>
    deferred(() => packIsf(vision, text, options), onProgress, 1, cancel),
  searchIsfArguments,
  searchIsfArgumentsAsync: (vision: Uint32Array, text: Uint32Array, options: Native.SearchIsfOptions, onProgress?: Progress, cancel?: CancelFlag | null) =>
    deferred(() => searchIsfArguments(vision, text, options), onProgress, 1, cancel),
  batchMetrics,
  // Called through an arrow: load.ts imports the backend, which imports these twins.
  planLoads: (packed: boolean, index: Uint32Array, offsets: Uint32Array, vision: Uint32Array, text: Uint32Array) =>
    planLoadsTwin(packed, index, offsets, vision, text),
  syntheticSamples: (n: number, seed?: number | null) => syntheticSamplesTwin(n, seed ?? 0),
};
