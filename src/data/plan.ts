/**
 * The batch plan: steps x ranks x micro-batches x sample indices, as flat typed arrays, and the
 * tail policies. TypeScript twin of `crate/core/src/data/plan.rs`, plus the accessors
 * ({@link planStep}, {@link planForRank}) that read a plan without recomputing it.
 *
 * @module
 */
import { ErrorCodes, omnibalError, unknownOption } from '../errors';
import { invalidType, outOfRange } from '../errors';
import { describeValue, expectNumber, expectObject, expectU32Array, integerBetween } from '../validate';
import { checkPlanArrays } from './metrics';
import { DROP_CODE, type Caps } from './samples';

/**
 * What to do with micro-batches that cannot fill a whole step: `drop` them (reason `tail`),
 * `pad` the last step with copies, keep a `keep-partial` last step, or `carry` them: left out
 * like `drop` but reported as `carried`, for the caller to plan in the next epoch (`balanced`'s
 * `carry` option), so an epoch boundary loses nothing.
 */
export type Tail = 'drop' | 'pad' | 'keep-partial' | 'carry';

/** Every tail policy. */
export const TAILS: readonly Tail[] = ['drop', 'pad', 'keep-partial', 'carry'];

/** Checks a tail policy name. */
export function parseTail(name: string): Tail {
  if ((TAILS as readonly string[]).includes(name)) return name as Tail;
  throw unknownOption('tail', name, TAILS);
}

/**
 * One epoch's batches for `dp` data-parallel ranks (struct of arrays).
 *
 * Micro-batch `k` holds `samples[microBatchOffsets[k] .. microBatchOffsets[k + 1]]`; rank `r`
 * in step `s` runs micro-batches `rankOffsets[s * dp + r] .. rankOffsets[s * dp + r + 1]`
 * (`accum` of them, fewer in a `keep-partial` last step). `padding[k] === 1` marks a micro-batch
 * that repeats earlier samples to complete the last step (`tail: 'pad'`). Every input sample is
 * in the plan or in `droppedIndex` (ascending) with its `droppedReason` code (see
 * `DROP_REASONS`, 1-based).
 */
export interface BatchPlan {
/** The strategy that made the plan. */
  strategy: 'balanced' | 'isf' | 'random' | 'length-grouped';
/** Data-parallel ranks. */
  dp: number;
/** Micro-batches per rank per full step. */
  accum: number;
  /** Micro-batches are packed sequences (no padding), not padded batches. */
  packed: boolean;
/** The tail policy applied. */
  tail: Tail;
/** Steps in the epoch. */
  steps: number;
  /** Vision cap of a packed micro-batch (`balanced`, `isf`). */
  maxVision?: number;
/** Text cap of a packed micro-batch. */
  maxText?: number;
  /** Samples per padded micro-batch (`random`, `length-grouped`). */
  batchSize?: number;
/** Every micro-batch's sample indices, one after another. */
  samples: Uint32Array;
/** Micro-batch `k` is `samples[microBatchOffsets[k] .. microBatchOffsets[k + 1]]`. */
  microBatchOffsets: Uint32Array;
/** Rank `r` of step `s` runs micro-batches `rankOffsets[s * dp + r] .. rankOffsets[s * dp + r + 1]`. */
  rankOffsets: Uint32Array;
/** 1 where a micro-batch repeats earlier samples to complete the last step (`tail: 'pad'`). */
  padding: Uint8Array;
/** Samples not in the plan, ascending. */
  droppedIndex: Uint32Array;
/** Why each was left out: a 1-based index into `DROP_REASONS`. */
  droppedReason: Uint8Array;
  /**
   * Samples over a cap that the plan holds in micro-batches of their own, ascending (`balanced`
   * with caps derived from `samplesPerPack`); such a micro-batch exceeds `maxVision` or `maxText`.
   */
  oversizeIndex: Uint32Array;
  /**
   * The previous epoch's carried tail that this plan holds besides its own samples (the `carry`
   * option, in its order; empty without one): these samples appear twice in the plan.
   */
  carriedIndex: Uint32Array;
}

/** Packs as one flat list with offsets (twin of `Packs`). */
export class Packs {
  items: number[] = [];
  offsets: number[] = [0];

  push(pack: ArrayLike<number>): void {
    for (let i = 0; i < pack.length; i++) this.items.push(pack[i]);
    this.offsets.push(this.items.length);
  }

  get length(): number {
    return this.offsets.length - 1;
  }

  get(i: number): number[] {
    return this.items.slice(this.offsets[i], this.offsets[i + 1]);
  }
}

/** The fields of a plan that {@link assemble} fills. */
export type AssembledPlan = Omit<BatchPlan, 'strategy' | 'maxVision' | 'maxText' | 'batchSize'>;

/** Twin of `assemble`: deals packs in `order` into steps and applies the tail policy. */
export function assemble(
  packs: Packs,
  order: number[],
  dp: number,
  accum: number,
  tail: Tail,
  packed: boolean,
  caps: Caps | undefined,
  dropped: [number, number][],
): AssembledPlan {
  void caps;
  const m = dp * accum;
  const full = Math.floor(order.length / m);
  const rest = order.slice(full * m);
  if (order.length === 0 || (full === 0 && (tail === 'drop' || tail === 'carry'))) {
    throw omnibalError(
      ErrorCodes.TOO_FEW_SAMPLES,
      `the samples fill ${order.length} micro-batches, fewer than one step needs (dp ${dp} x accum ${accum} = ${m}); use tail 'pad' or 'keep-partial', or fewer ranks`,
    );
  }
  const samples: number[] = [];
  const mbOffsets: number[] = [0];
  const rankOffsets: number[] = [0];
  const padding: number[] = [];
  const pushMb = (p: number, pad: boolean) => {
    for (let i = packs.offsets[p]; i < packs.offsets[p + 1]; i++) samples.push(packs.items[i]);
    mbOffsets.push(samples.length);
    padding.push(pad ? 1 : 0);
  };
  const closeRank = () => rankOffsets.push(mbOffsets.length - 1);
  for (let s = 0; s < full; s++) {
    for (let r = 0; r < dp; r++) {
      for (let a = 0; a < accum; a++) pushMb(order[s * m + r * accum + a], false);
      closeRank();
    }
  }
  if (rest.length > 0) {
    if (tail === 'drop' || tail === 'carry') {
      const reason = tail === 'carry' ? DROP_CODE.carried : DROP_CODE.tail;
      for (const p of rest) for (const i of packs.get(p)) dropped.push([i, reason]);
    } else if (tail === 'pad') {
      const last: [number, boolean][] = rest.map((p) => [p, false]);
      for (let k = 0; last.length < m; k++) last.push([order[k % order.length], true]);
      for (let r = 0; r < dp; r++) {
        for (let a = 0; a < accum; a++) pushMb(last[r * accum + a][0], last[r * accum + a][1]);
        closeRank();
      }
    } else {
      for (let r = 0; r < dp; r++) {
        for (let j = r; j < rest.length; j += dp) pushMb(rest[j], false);
        closeRank();
      }
    }
  }
  dropped.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  return {
    dp,
    accum,
    packed,
    tail,
    steps: (rankOffsets.length - 1) / dp,
    samples: Uint32Array.from(samples),
    microBatchOffsets: Uint32Array.from(mbOffsets),
    rankOffsets: Uint32Array.from(rankOffsets),
    padding: Uint8Array.from(padding),
    droppedIndex: Uint32Array.from(dropped, (d) => d[0]),
    droppedReason: Uint8Array.from(dropped, (d) => d[1]),
    oversizeIndex: new Uint32Array(0),
    carriedIndex: new Uint32Array(0),
  };
}

/**
 * The micro-batches of one step, by rank: `[rank][microBatch]` = sample indices (views, no copies).
 *
 * @param plan - a plan from `planBatches`
 * @param step - the step, `0..plan.steps`
 * @returns the sample indices of each micro-batch of each rank in that step
 */
export function planStep(plan: BatchPlan, step: number): Uint32Array[][] {
  checkPlanShape(plan);
  integerBetween('step', step, 0, Math.max(plan.steps - 1, 0));
  const out: Uint32Array[][] = [];
  for (let r = 0; r < plan.dp; r++) out.push(rankMicroBatches(plan, step, r));
  return out;
}

/**
 * The micro-batches of one rank, by step: `[step][microBatch]` = sample indices (views).
 *
 * @param plan - a plan from `planBatches`
 * @param rank - the data-parallel rank, `0..dp`
 * @returns the sample indices of each micro-batch of that rank in each step
 */
export function planForRank(plan: BatchPlan, rank: number): Uint32Array[][] {
  checkPlanShape(plan);
  integerBetween('rank', rank, 0, plan.dp - 1);
  const out: Uint32Array[][] = [];
  for (let s = 0; s < plan.steps; s++) out.push(rankMicroBatches(plan, s, rank));
  return out;
}

const checkedPlans = new WeakMap<BatchPlan, [Uint32Array, Uint32Array, Uint32Array, number, number]>();

/**
 * `plan` if it is shaped as a {@link BatchPlan}: `dp` and `steps` numbers, its index arrays
 * `Uint32Array`s and `padding` a `Uint8Array`, the offsets consistent (as the metrics check
 * them) and `steps` equal to the rank slots over `dp`. Else a coded `TypeError`
 * (`ERR_OMNIBAL_INVALID_TYPE`) or `RangeError` (`ERR_OMNIBAL_OUT_OF_RANGE`).
 */
export function checkPlanShape(plan: BatchPlan): BatchPlan {
  expectObject('plan', plan, 'a BatchPlan');
  // Checked once per plan and set of arrays: a caller walking every step must not pay a pass
  // over the whole plan per step.
  const seen = checkedPlans.get(plan);
  if (seen && seen[0] === plan.samples && seen[1] === plan.microBatchOffsets && seen[2] === plan.rankOffsets && seen[3] === plan.steps && seen[4] === plan.dp) {
    return plan;
  }
  expectNumber('plan.dp', plan.dp);
  integerBetween('plan.dp', plan.dp, 1, 1 << 20);
  expectNumber('plan.steps', plan.steps);
  for (const k of ['samples', 'microBatchOffsets', 'rankOffsets'] as const) expectU32Array(`plan.${k}`, plan[k]);
  if (!(plan.padding instanceof Uint8Array)) throw invalidType('plan.padding', `must be a Uint8Array, got ${describeValue(plan.padding)}`);
  checkPlanArrays(plan);
  const steps = (plan.rankOffsets.length - 1) / plan.dp;
  if (plan.steps !== steps) throw outOfRange('plan', `steps must be rankOffsets.length - 1 over dp = ${steps}, got ${plan.steps}`);
  checkedPlans.set(plan, [plan.samples, plan.microBatchOffsets, plan.rankOffsets, plan.steps, plan.dp]);
  return plan;
}

function rankMicroBatches(plan: BatchPlan, step: number, rank: number): Uint32Array[] {
  const i = step * plan.dp + rank;
  const out: Uint32Array[] = [];
  for (let k = plan.rankOffsets[i]; k < plan.rankOffsets[i + 1]; k++) {
    out.push(plan.samples.subarray(plan.microBatchOffsets[k], plan.microBatchOffsets[k + 1]));
  }
  return out;
}
