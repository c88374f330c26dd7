/**
 * One entry point for every strategy: options checked and resolved, then the plan. TypeScript
 * twin of `crate/core/src/data/strategy.rs` and of the option checks in
 * `crate/node/src/data.rs`, with the same codes and messages.
 *
 * @module
 */
import { invalidOptions, unknownOption } from '../errors';
import { MAX_SEED } from '../random/rng';
import { integerBetween, integerInRange, numberAtLeast, optionKeys } from '../validate';
import { balanceBatchesTwin } from './balance';
import { isfBatchesTwin, lengthGroupedBatchesTwin, randomBatchesTwin } from './baselines';
import { textCost, type TextCost } from './cost';
import { referenceIsfParams } from './isf';
import { searchIsfArgumentsTwin } from './isf-search';
import { parseTail, type BatchPlan, type Tail } from './plan';
import { capsForTarget } from './caps';
import { checkSamples, means, roundHalfUp, splitByCaps, type Caps } from './samples';
import { checkStepSize } from './step-size';

/** A batching strategy: `balanced` (the default), or a baseline to compare with. */
export type Strategy = BatchPlan['strategy'];

/** Every strategy. */
export const STRATEGIES: readonly Strategy[] = ['balanced', 'isf', 'random', 'length-grouped'];

const MAX_U32 = 0xffffffff;
const MAX_RANKS = 1 << 20;

/**
 * Options of a batch plan. Give either `samplesPerPack` or both caps.
 */
export interface PlanBatchesOptions {
  /** `balanced` (default), `isf`, `random` or `length-grouped`. */
  strategy?: Strategy;
  /** Data-parallel ranks (Megatron's data-parallel size). */
  dp: number;
  /** Micro-batches per rank per step (gradient accumulation); default 1. */
  accum?: number;
  /**
   * Wanted mean samples per micro-batch. `balanced` derives caps from it and the typical sample
   * (vision cap = `B` x mean vision rounded, plus one, in units of the vision values' greatest
   * common divisor, so vision in tokens at 256 a tile gets the cap of tiles; a larger number that
   * divides all but 1/1,000 of the nonzero values, such as 256 with a stray 255, is taken instead;
   * text cap = 1.25 x `B` x mean text rounded up
   * to 128; means over the samples that fit), and gives each sample over them a micro-batch of its
   * own (listed in `oversizeIndex`), so outliers neither inflate every pack nor get lost; `isf` runs the reference
   * argument search; the padded baselines use it, rounded, as their batch size.
   */
  samplesPerPack?: number;
  /** Vision cap of one micro-batch, in the samples' vision unit. */
  maxVision?: number;
  /** Text cap of one micro-batch (a packed sequence's token budget). */
  maxText?: number;
  /** Seed of every random choice; default 0. */
  seed?: number;
  /** Epoch: each epoch of a seed has its own order; default 0. */
  epoch?: number;
  /** Text cost `a * tokens + b * sum(len^2)`: `a` (default 1). */
  costA?: number;
  /**
   * Text cost: `b`. Default in `planBatches` / `balanceBatches`: `1 / (12 h)` for the hidden size
   * `h` of the default model's LLM (the step-time cost, `data/model-cost.ts`); `0` balances plain
   * token counts. (The backends' raw `planBatches` default to 0.)
   */
  costB?: number;
  /**
   * What to do with the micro-batches that cannot fill a last step; default `drop`. `carry`
   * (`balanced` only) leaves them out like `drop`, reported as `carried`: pass those samples
   * as the next epoch's `carry`, so no epoch boundary loses a sample.
   */
  tail?: Tail;
  /**
   * `balanced` only: the previous epoch's carried tail (the samples its plan reported as
   * `carried`; sample indices, each at most once). They are planned in addition to this epoch's
   * own samples (so they appear twice) and never put in this epoch's tail.
   */
  carry?: Uint32Array;
  /** Rounds: packing rounds for `balanced` (default 4), ISF iterations for `isf` (default 50). */
  iterations?: number;
  /** Text acceptance threshold of a pack; default text cap - 128. */
  minText?: number;
  /** ISF's vision acceptance value; default the vision cap. */
  minVision?: number;
}

/** Every key of {@link PlanBatchesOptions} (tsc checks the list against the interface). */
export const PLAN_BATCHES_OPTION_KEYS = optionKeys<PlanBatchesOptions>({
  strategy: true, dp: true, accum: true, samplesPerPack: true, maxVision: true, maxText: true, seed: true, epoch: true,
  costA: true, costB: true, tail: true, carry: true, iterations: true, minText: true, minVision: true,
});

/** Resolved options (twin of the core's `PlanOptions`). */
export interface ResolvedPlanOptions {
  strategy: Strategy;
  dp: number;
  accum: number;
  size: { caps: Caps } | { samplesPerPack: number };
  seed: number;
  epoch: number;
  cost: TextCost;
  tail: Tail;
  iterations?: number;
  minText?: number;
  minVision?: number;
}

function optInt(name: string, v: number | undefined, min: number, max: number, fallback: number): number {
  return v === undefined || v === null ? fallback : integerBetween(name, v, min, max);
}

function capsOf(maxVision: number | undefined, maxText: number | undefined): Caps | undefined {
  const hasV = maxVision !== undefined && maxVision !== null;
  const hasT = maxText !== undefined && maxText !== null;
  if (hasV && hasT) {
    return {
      maxVision: integerInRange('maxVision', maxVision, MAX_U32),
      maxText: integerBetween('maxText', maxText, 1, MAX_U32),
    };
  }
  if (!hasV && !hasT) return undefined;
  throw invalidOptions('maxVision and maxText go together: give both, or samplesPerPack');
}

function parseStrategy(name: string): Strategy {
  if ((STRATEGIES as readonly string[]).includes(name)) return name as Strategy;
  throw unknownOption('strategy', name, STRATEGIES);
}

/** Checks and resolves options (twin of the binding's `plan_options`). */
export function resolvePlanOptions(o: PlanBatchesOptions): ResolvedPlanOptions {
  const strategy = parseStrategy(o.strategy ?? 'balanced');
  const dp = integerBetween('dp', o.dp, 1, MAX_RANKS);
  const accum = optInt('accum', o.accum, 1, MAX_RANKS, 1);
  const caps = capsOf(o.maxVision, o.maxText);
  const hasB = o.samplesPerPack !== undefined && o.samplesPerPack !== null;
  let size: ResolvedPlanOptions['size'];
  if (hasB && caps) throw invalidOptions('give samplesPerPack or maxVision/maxText, not both');
  else if (hasB) size = { samplesPerPack: numberAtLeast('samplesPerPack', o.samplesPerPack!, 1) };
  else if (caps) size = { caps };
  else throw invalidOptions('give samplesPerPack, or maxVision and maxText');
  const resolved: ResolvedPlanOptions = {
    strategy,
    dp,
    accum,
    size,
    seed: optInt('seed', o.seed, 0, MAX_SEED, 0),
    epoch: optInt('epoch', o.epoch, 0, MAX_U32, 0),
    cost: textCost(o.costA ?? 1, o.costB ?? 0),
    tail: parseTail(o.tail ?? 'drop'),
  };
  if (o.iterations !== undefined && o.iterations !== null) resolved.iterations = integerBetween('iterations', o.iterations, 1, 10000);
  if (o.minText !== undefined && o.minText !== null) resolved.minText = integerInRange('minText', o.minText, MAX_U32);
  if (o.minVision !== undefined && o.minVision !== null) resolved.minVision = integerInRange('minVision', o.minVision, MAX_U32);
  return resolved;
}

/** Twin of the native `planBatches`: checks samples and options, then plans. */
export function planBatchesTwin(vision: Uint32Array, text: Uint32Array, options: PlanBatchesOptions): BatchPlan {
  checkSamples(vision, text);
  const o = resolvePlanOptions(options);
  checkStepSize(o.dp, o.accum);
  const carry = options.carry ?? new Uint32Array(0);
  if (o.strategy !== 'balanced' && (o.tail === 'carry' || carry.length > 0)) {
    throw invalidOptions(`tail 'carry' (and a carry list) needs strategy balanced, got ${o.strategy}`);
  }
  switch (o.strategy) {
    case 'balanced': {
      const caps = 'caps' in o.size ? o.size.caps : capsForTarget(vision, text, o.size.samplesPerPack);
      const plan = balanceBatchesTwin(vision, text, {
        dp: o.dp,
        accum: o.accum,
        caps,
        minText: o.minText ?? Math.max(caps.maxText - 128, 0),
        rounds: o.iterations ?? 4,
        openPacks: 4,
        visionSlack: 0,
        seed: o.seed,
        epoch: o.epoch,
        cost: o.cost,
        tail: o.tail,
        oversize: 'caps' in o.size ? 'drop' : 'own-micro-batch',
      }, carry);
      return { strategy: o.strategy, ...plan, maxVision: caps.maxVision, maxText: caps.maxText };
    }
    case 'isf': {
      let caps: Caps;
      if ('caps' in o.size) caps = o.size.caps;
      else {
        const found = searchIsfArgumentsTwin(vision, text, {
          samplesPerPack: o.size.samplesPerPack,
          dp: o.dp,
          accum: o.accum,
          iterations: o.iterations ?? 50,
          maxSteps: 32,
          seed: o.seed,
        });
        const c = found.candidates[found.chosen];
        caps = { maxVision: c.maxVision, maxText: c.maxText };
      }
      const p = referenceIsfParams(caps, o.seed, o.epoch);
      if (o.iterations !== undefined) p.iterations = o.iterations;
      if (o.minText !== undefined) p.minText = o.minText;
      if (o.minVision !== undefined) p.minVision = o.minVision;
      const plan = isfBatchesTwin(vision, text, p, o.dp, o.accum, o.tail);
      return { strategy: o.strategy, ...plan, maxVision: caps.maxVision, maxText: caps.maxText };
    }
    default: {
      let b: number;
      if ('samplesPerPack' in o.size) b = o.size.samplesPerPack;
      else {
        // Caps no sample fits are an error, as for the packed strategies (not batch 1).
        splitByCaps(vision, text, o.size.caps);
        const [mv, mt] = means(vision, text);
        const byV = mv > 0 ? o.size.caps.maxVision / mv : Infinity;
        b = Math.max(Math.min(byV, o.size.caps.maxText / mt), 1);
      }
      const batch = Math.min(roundHalfUp(b), MAX_U32);
      const p = { dp: o.dp, accum: o.accum, batch, seed: o.seed, epoch: o.epoch, tail: o.tail };
      const plan = o.strategy === 'random' ? randomBatchesTwin(text, p) : lengthGroupedBatchesTwin(text, p);
      return { strategy: o.strategy, ...plan, batchSize: batch };
    }
  }
}
