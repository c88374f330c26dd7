/**
 * Data balance: pack samples into micro-batches and hand them to data-parallel ranks so that
 * every rank in every step carries the same vision and text load.
 *
 * @module
 */
import type * as Native from '../../bindings';
import { checkSignal, withSignal, type CancelFlag } from '../abort';
import { activeBackend, type Backend } from '../binding';
import { invalidType } from '../errors';
import { progressOption, withProgress, type ProgressCallback } from '../progress';
import { checkKnownKeys, describeValue, expectObject, expectU32Array, integerBetween, numberAtLeast, optionKeys } from '../validate';
import { rememberPlanLoads } from './load';
import { type BatchMetrics } from './metrics';
import { type BatchPlan } from './plan';
import { DROP_CODE, DROP_REASONS, type DropReason, type Samples } from './samples';
import { PLAN_BATCHES_OPTION_KEYS, type PlanBatchesOptions } from './strategy';
import { type TextCost } from './cost';
import { type IsfSearch } from './isf-search';
import { defaultTextCost } from './model-cost';

export { planForRank, planStep, TAILS, type BatchPlan, type Tail } from './plan';
export { DROP_REASONS, type Caps, type DropReason, type Samples } from './samples';
export { STRATEGIES, type PlanBatchesOptions, type Strategy } from './strategy';
export type { BatchMetrics } from './metrics';
export type { TextCost } from './cost';
export type { IsfCandidate, IsfSearch } from './isf-search';

/** Options of the Promise variants. */
export interface AsyncOptions {
  /**
   * Called with `(done, total)` a few times a second at most; the last call comes before the
   * Promise resolves. Not a function: `ERR_OMNIBAL_INVALID_TYPE`. A callback that throws is not
   * called again, the work stops as for an aborted {@link AsyncOptions.signal | signal}, and the
   * Promise rejects with the callback's error (the result is discarded).
   */
  onProgress?: ProgressCallback;
  /**
   * Stops the work when it aborts: the Promise rejects with an `Error` named `AbortError`, code
   * `ERR_OMNIBAL_CANCELLED`, whose `cause` is the signal's `reason`. Already aborted: it rejects
   * at once, and nothing starts. With the native backend a run stops within a fraction of a
   * second (the solver checks between its phases and every few thousand packs), and the Promise
   * settles once it has stopped, so nothing runs on after it; the TypeScript twins (which run at
   * once on the main thread) check before they start, and a result the signal aborted meanwhile
   * is discarded. Not an `AbortSignal`: `ERR_OMNIBAL_INVALID_TYPE`.
   */
  signal?: AbortSignal;
}

/** The keys of {@link AsyncOptions}. */
const ASYNC_OPTION_KEYS = optionKeys<AsyncOptions>({ onProgress: true, signal: true });

/** Options of {@link packIsf}: the reference ISF's caps and thresholds. */
export interface PackIsfOptions {
  /** Vision cap `Qv` of a pack. */
  maxVision: number;
  /** Text cap `Qt` of a pack. */
  maxText: number;
  /** Keep a group whose vision sum equals this; default `maxVision`. */
  minVision?: number;
  /** Keep a group whose text sum reaches this; default `maxText - 128`. */
  minText?: number;
  /** Rounds of sampling (all but the last followed by filtering); default 50. */
  iterations?: number;
/** Seed of the shuffles; default 0. */
  seed?: number;
/** Epoch (each has its own shuffles); default 0. */
  epoch?: number;
}

/** Packs made by {@link packIsf}: pack `k` is `packSamples[packOffsets[k] .. packOffsets[k + 1]]`. */
export interface IsfPacks {
/** Every pack's samples, one after another. */
  packSamples: Uint32Array;
/** Pack `k` is `packSamples[packOffsets[k] .. packOffsets[k + 1]]`. */
  packOffsets: Uint32Array;
  /** Samples over a cap (ascending), with their reason codes (see {@link DROP_REASONS}). */
  droppedIndex: Uint32Array;
/** Reason codes (1-based into {@link DROP_REASONS}). */
  droppedReason: Uint8Array;
}

/** Options of {@link searchIsfArguments}. */
export interface SearchIsfOptions {
  /** Wanted mean samples per pack `B`: candidates must land in `[B, B + 1]`. */
  samplesPerPack: number;
  /** Ranks the dist ratios are measured over; default 8. */
  dp?: number;
/** Micro-batches per rank per step; default 1. */
  accum?: number;
  /** ISF iterations per candidate; default 50. */
  iterations?: number;
  /** Most steps of the reference walk after the start; default 32. */
  maxSteps?: number;
/** Seed of ISF's shuffles; default 0. */
  seed?: number;
}

const PACK_ISF_OPTION_KEYS = optionKeys<PackIsfOptions>({ maxVision: true, maxText: true, minVision: true, minText: true, iterations: true, seed: true, epoch: true });
const SEARCH_ISF_OPTION_KEYS = optionKeys<SearchIsfOptions>({ samplesPerPack: true, dp: true, accum: true, iterations: true, maxSteps: true, seed: true });
const BALANCE_OPTION_KEYS = PLAN_BATCHES_OPTION_KEYS.filter((k) => k !== 'strategy');
const TEXT_COST_KEYS = optionKeys<TextCost>({ a: true, b: true });
const BALANCE_HINTS = { strategy: 'planBatches (balanceBatches is always balanced)' };
const TEXT_COST_HINTS = { costA: "'a'", costB: "'b'" };

function checkSamplesShape(samples: Samples): void {
  if (typeof samples !== 'object' || samples === null) {
    throw invalidType('samples', `must be an object with vision and text Uint32Arrays, got ${describeValue(samples)}`);
  }
  expectU32Array('vision', samples.vision);
  expectU32Array('text', samples.text);
}

const NUMBER_OPTIONS = [
  'dp', 'accum', 'samplesPerPack', 'maxVision', 'maxText', 'seed', 'epoch', 'costA', 'costB',
  'iterations', 'minText', 'minVision', 'maxSteps',
] as const;

function checkOptionTypes(options: object): void {
  if (typeof options !== 'object' || options === null) {
    throw invalidType('options', `must be an object, got ${describeValue(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of NUMBER_OPTIONS) {
    if (o[key] !== undefined && o[key] !== null && typeof o[key] !== 'number') {
      throw invalidType(key, `must be a number, got ${describeValue(o[key])}`);
    }
  }
  if (o.carry !== undefined && o.carry !== null) expectU32Array('carry', o.carry);
  for (const key of ['strategy', 'tail']) {
    if (o[key] !== undefined && o[key] !== null && typeof o[key] !== 'string') {
      throw invalidType(key, `must be a string, got ${describeValue(o[key])}`);
    }
  }
}

/**
 * A required option and the check the twins run on it: called here only when the option is
 * missing, so the native backend (whose binding would say `Missing field`) throws the twins'
 * coded error with their words.
 */
type RequiredOption = readonly [key: string, check: (name: string, value: number) => unknown];
const anInteger = (name: string, value: number) => integerBetween(name, value, 0, 0);
const PLAN_REQUIRED: readonly RequiredOption[] = [['dp', anInteger]];
const ISF_REQUIRED: readonly RequiredOption[] = [['maxVision', anInteger], ['maxText', anInteger]];
const SEARCH_REQUIRED: readonly RequiredOption[] = [['samplesPerPack', (name, value) => numberAtLeast(name, value, 1)]];

function checkRequired(options: object, required: readonly RequiredOption[]): void {
  const o = options as Record<string, unknown>;
  for (const [key, check] of required) {
    if (o[key] === undefined || o[key] === null) check(key, o[key] as unknown as number);
  }
}

function asPlan(native: Native.NativeBatchPlan): BatchPlan {
  return native as BatchPlan;
}

/** Checks the samples and option types, then calls the backend. */
function call<R>(samples: Samples, options: object, run: (api: Backend) => R, required: readonly RequiredOption[] = [], known?: readonly string[]): R {
  checkSamplesShape(samples);
  checkOptionTypes(options);
  if (known) checkKnownKeys('options', options, known);
  checkRequired(options, required);
  return run(activeBackend());
}

/**
 * {@link call} for a Promise variant: bad input rejects; progress arrives in order; the signal
 * (if any) sets the backend's cancel flag.
 */
function callAsync<R>(
  samples: Samples,
  options: object,
  asyncOptions: AsyncOptions,
  start: (api: Backend, progress: ProgressCallback | null, cancel: CancelFlag | null) => Promise<R>,
  required: readonly RequiredOption[],
  known: readonly string[],
): Promise<R> {
  try {
    return call(
      samples,
      options,
      (api) => {
        const onProgress = progressOption(asyncOptions, 'asyncOptions', ASYNC_OPTION_KEYS);
        const signal = checkSignal((asyncOptions as { signal?: unknown } | null | undefined)?.signal);
        // A progress callback that throws stops the work too (its error is what the Promise rejects with).
        return withSignal(signal, api.CancelFlag, (cancel) => withProgress(onProgress, (progress) => start(api, progress, cancel), () => cancel?.cancel()), onProgress !== undefined);
      },
      required,
      known,
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `options` with the library's default text cost filled in where not given: `costA` 1, `costB`
 * the default model's `1 / (12 h)` (step-time cost, as the CLI's `pack`; see `model-cost.ts`).
 */
function withDefaultCost(options: PlanBatchesOptions): PlanBatchesOptions {
  const { a, b } = defaultTextCost();
  return { ...options, costA: options.costA ?? a, costB: options.costB ?? b };
}

/**
 * Plans one epoch of batches with any strategy (`balanced` by default): steps x ranks x
 * micro-batches x samples, plus every sample left out and why. A pure function of the samples,
 * the options, the seed and the epoch.
 *
 * @throws coded errors for bad samples (`ERR_OMNIBAL_INVALID_SAMPLE`, `ERR_OMNIBAL_EMPTY_INPUT`),
 *   bad options (`ERR_OMNIBAL_OUT_OF_RANGE`, `ERR_OMNIBAL_INVALID_OPTIONS`,
 *   `ERR_OMNIBAL_UNKNOWN_OPTION`), caps smaller than every sample (`ERR_OMNIBAL_CAP_TOO_SMALL`)
 *   and too few samples for a step (`ERR_OMNIBAL_TOO_FEW_SAMPLES`).
 *
 * @param samples - per-sample vision tiles and text tokens (optional set/group ids)
 * The balanced planner evens out the text cost `costA * tokens + costB * sum(len^2)`; unless
 * given, it is the step-time cost of the default model's LLM (`costA` 1, `costB` `1 / (12 h)`
 * for its hidden size `h`: linear layers plus causal attention, as `omnibal pack` uses). Give
 * `costB: 0` to balance plain token counts.
 *
 * @param options - ranks (`dp`), micro-batches per rank per step (`accum`), caps or samples per pack, strategy, seed, epoch, tail policy, text cost (`costA`, `costB`)
 * @returns the plan: flat sample indices with offsets by pack, packs by step and rank, the dropped samples with their reasons
 */
export function planBatches(samples: Samples, options: PlanBatchesOptions): BatchPlan {
  return call(samples, options, (api) => asPlan(api.planBatches(samples.vision, samples.text, withDefaultCost(options))), PLAN_REQUIRED, PLAN_BATCHES_OPTION_KEYS);
}

/**
 * {@link planBatches} off the main thread (the libuv pool, with the native backend).
 *
 * @param samples - as for {@link planBatches}
 * @param options - as for {@link planBatches}
 * @param asyncOptions - `onProgress(done, total)` and `signal` (see {@link AsyncOptions}), optional
 * @returns a Promise of the plan {@link planBatches} returns for the same arguments
 */
export function planBatchesAsync(samples: Samples, options: PlanBatchesOptions, asyncOptions: AsyncOptions = {}): Promise<BatchPlan> {
  return callAsync(samples, options, asyncOptions, (api, progress, cancel) => api.planBatchesAsync(samples.vision, samples.text, withDefaultCost(options), progress, cancel), PLAN_REQUIRED, PLAN_BATCHES_OPTION_KEYS).then(asPlan);
}

/**
 * The balanced plan (the default strategy): every micro-batch's vision load is exactly the
 * vision cap where the data allows, and within each step every micro-batch (so every rank)
 * carries the same text cost, without padding.
 *
 * @param samples - as for {@link planBatches}
 * @param options - as for {@link planBatches}, without `strategy`
 * @returns the balanced plan
 */
export function balanceBatches(samples: Samples, options: Omit<PlanBatchesOptions, 'strategy'>): BatchPlan {
  checkKnownKeys('options', options, BALANCE_OPTION_KEYS, BALANCE_HINTS);
  return planBatches(samples, { ...options, strategy: 'balanced' });
}

/**
 * {@link balanceBatches} off the main thread.
 *
 * @param samples - as for {@link planBatches}
 * @param options - as for {@link balanceBatches}
 * @param asyncOptions - `onProgress(done, total)` and `signal` (see {@link AsyncOptions}), optional
 * @returns a Promise of the plan {@link balanceBatches} returns
 */
export function balanceBatchesAsync(
  samples: Samples,
  options: Omit<PlanBatchesOptions, 'strategy'>,
  asyncOptions: AsyncOptions = {},
): Promise<BatchPlan> {
  try {
    checkKnownKeys('options', options, BALANCE_OPTION_KEYS, BALANCE_HINTS);
  } catch (error) {
    return Promise.reject(error);
  }
  return planBatchesAsync(samples, { ...options, strategy: 'balanced' }, asyncOptions);
}

/**
 * The reference ISF (iterative sampling and filtering) of the OmniBal paper, with its exact
 * semantics and defaults, minus its bug: the last group is never lost, and samples over a cap
 * are returned in `droppedIndex` rather than silently skipped.
 *
 * @param samples - per-sample vision tiles and text tokens
 * @param options - the reference ISF's caps and thresholds
 * @returns the packs (sample indices with offsets) and the samples over a cap in `droppedIndex`
 */
export function packIsf(samples: Samples, options: PackIsfOptions): IsfPacks {
  return call(samples, options, (api) => api.packIsf(samples.vision, samples.text, options), ISF_REQUIRED, PACK_ISF_OPTION_KEYS);
}

/**
 * {@link packIsf} off the main thread.
 *
 * @param samples - as for {@link packIsf}
 * @param options - as for {@link packIsf}
 * @param asyncOptions - `onProgress(done, total)` and `signal` (see {@link AsyncOptions}), optional
 * @returns a Promise of the packs {@link packIsf} returns
 */
export function packIsfAsync(samples: Samples, options: PackIsfOptions, asyncOptions: AsyncOptions = {}): Promise<IsfPacks> {
  return callAsync(samples, options, asyncOptions, (api, progress, cancel) => api.packIsfAsync(samples.vision, samples.text, options, progress, cancel), ISF_REQUIRED, PACK_ISF_OPTION_KEYS);
}

/**
 * The reference search for ISF's caps for a wanted number of samples per pack: the candidate
 * table, in evaluation order, and the index of the chosen one.
 *
 * @param samples - per-sample vision tiles and text tokens
 * @param options - the wanted samples per pack, and the ranks, accumulation and iterations the candidates are scored with
 * @returns every candidate evaluated, in order, and the index of the chosen one
 */
export function searchIsfArguments(samples: Samples, options: SearchIsfOptions): IsfSearch {
  return call(samples, options, (api) => api.searchIsfArguments(samples.vision, samples.text, options), SEARCH_REQUIRED, SEARCH_ISF_OPTION_KEYS);
}

/**
 * {@link searchIsfArguments} off the main thread.
 *
 * @param samples - as for {@link searchIsfArguments}
 * @param options - as for {@link searchIsfArguments}
 * @param asyncOptions - `onProgress(done, total)` and `signal` (see {@link AsyncOptions}), optional
 * @returns a Promise of the search {@link searchIsfArguments} returns
 */
export function searchIsfArgumentsAsync(samples: Samples, options: SearchIsfOptions, asyncOptions: AsyncOptions = {}): Promise<IsfSearch> {
  return callAsync(samples, options, asyncOptions, (api, progress, cancel) => api.searchIsfArgumentsAsync(samples.vision, samples.text, options, progress, cancel), SEARCH_REQUIRED, SEARCH_ISF_OPTION_KEYS);
}

/**
 * The paper's metrics of a plan: pad ratio, vision and text dist ratios, the same dist on the
 * text cost (`cost`, by default the one {@link planBatches} balances by default), samples per
 * pack, packs, steps, dropped, the samples carried in and out (tail `carry`), and the per-step
 * values.
 *
 * @param plan - a plan from {@link planBatches} (or any strategy)
 * @param samples - the samples the plan was made from
 * @param cost - text cost per token (`a`) and per squared sample length (`b`); each defaults to
 *   the planner's default (`a` 1, `b` the default model's `1 / (12 h)`); `{ b: 0 }` is plain tokens
 * @returns the metrics, overall and per step
 */
export function batchMetrics(plan: BatchPlan, samples: Samples, cost: Partial<TextCost> = {}): BatchMetrics {
  checkKnownKeys('cost', expectObject('cost', cost), TEXT_COST_KEYS, TEXT_COST_HINTS);
  // The same default as the planner's (withDefaultCost), so costDist and the slowest rank's
  // excess measure by default what a default plan balanced.
  const byDefault = defaultTextCost();
  const a = cost.a ?? byDefault.a;
  const b = cost.b ?? byDefault.b;
  const { loads, ...metrics } = call(samples, { costA: a, costB: b }, (api) => api.batchMetrics(plan, samples.vision, samples.text, a, b));
  // The same pass gave the plan's micro-batch loads: kept for meanMicroBatchLoad and the rest.
  rememberPlanLoads(plan, samples, loads);
  let carriedOut = 0;
  for (const r of plan.droppedReason ?? []) if (r === DROP_CODE.carried) carriedOut++;
  return { ...metrics, carriedIn: plan.carriedIndex?.length ?? 0, carriedOut };
}

/** A sample left out of a plan. */
export interface DroppedSample {
  /** The sample's index in the input. */
  index: number;
  /** Why it was left out. */
  reason: DropReason;
}

/**
 * The samples a plan left out, as `{ index, reason }` objects (for reports and JSON).
 *
 * @param plan - a plan (its `droppedIndex` and `droppedReason`)
 * @returns one `{ index, reason }` per dropped sample, by ascending index
 */
export function droppedSamples(plan: Pick<BatchPlan, 'droppedIndex' | 'droppedReason'>): DroppedSample[] {
  expectU32Array('plan.droppedIndex', expectObject('plan', plan, 'a BatchPlan').droppedIndex);
  if (!(plan.droppedReason instanceof Uint8Array) || plan.droppedReason.length !== plan.droppedIndex.length) {
    throw invalidType('plan.droppedReason', `must be a Uint8Array as long as droppedIndex, got ${describeValue(plan.droppedReason)}`);
  }
  return Array.from(plan.droppedIndex, (index, k) => ({ index, reason: DROP_REASONS[plan.droppedReason[k] - 1] }));
}
