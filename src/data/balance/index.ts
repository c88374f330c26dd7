/**
 * The balanced planner (this package's default). TypeScript twin of
 * `crate/core/src/data/balance`; see there for the algorithm. This file is the orchestration
 * (`balanceBatchesTwin`) and its parameters; packing, the tail and the carry, the swap rules,
 * equalization, and the steps (matching costly packs, tuning) have a file each beside it.
 *
 * @module
 */
import { outOfRange } from '../../errors';
import { shuffleInPlace } from '../../random/permutation';
import { Rng } from '../../random/rng';
import { costWeights, type TextCost } from '../cost';
import { assemble, Packs, type AssembledPlan, type Tail } from '../plan';
import { DROP_CODE, splitByCaps, type Caps } from '../samples';
import { checkStepSize } from '../step-size';
import { equalize } from './equalize';
import { pack, repackPartFilled } from './pack';
import { matchCostlyPacks, tuneSteps } from './steps';
import { byKey, SwapRules, type Loads } from './swaps';
import { checkCarry, spreadTail, takeTail } from './tail';

export { EQUALIZE_GREEDY_MIN_STEP, EQUALIZE_GREEDY_SHARE, EQUALIZE_PASSES, EQUALIZE_WINDOW } from './equalize';
export { PACK_BLOCK, REPAIR_MAX_VISION, RoomSet, SHUFFLE_CHUNKS } from './pack';
export { CHEAP_PACK_DIV, COSTLY_PACK_DIV, STEP_BLOCK_MAX_PACKS, STEP_BLOCK_PACKS, STEP_PASSES, STEP_TOLERANCE } from './steps';
export { GREEDY_PARTNERS, GREEDY_SCAN, GREEDY_SWAPS, PAIR_PARTNERS, PAIR_SWAP_MAX_SAMPLES, VISION_SWAPS } from './swaps';
export { checkCarry, SPREAD_MIN_SHARE, SPREAD_PURPOSE } from './tail';

/** Stream purpose of the step order. */
export const STEP_ORDER_PURPOSE = 1048575;
/** Stream purpose of the choice of the tail's packs. */
export const TAIL_PURPOSE = 1048574;
/** Stream purpose of the random draw of packs into steps. */
export const DRAW_PURPOSE = 1048573;

/** What happens to a sample over a cap: a micro-batch of its own, or left out. */
export type Oversize = 'own-micro-batch' | 'drop';

/** Parameters of the balanced planner, all set. */
export interface BalanceParams {
  dp: number;
  accum: number;
  caps: Caps;
  minText: number;
  rounds: number;
  openPacks: number;
  visionSlack: number;
  seed: number;
  epoch: number;
  cost: TextCost;
  tail: Tail;
  oversize: Oversize;
}

/** Twin of `balance_batches` (and of `balance_batches_with_carry`, given a `carry`). */
export function balanceBatchesTwin(ownVision: Uint32Array, ownText: Uint32Array, p: BalanceParams, carry: Uint32Array = new Uint32Array(0)): AssembledPlan {
  if (p.dp === 0) throw outOfRange('dp', 'must be at least 1, got 0');
  if (p.accum === 0) throw outOfRange('accum', 'must be at least 1, got 0');
  if (p.rounds === 0) throw outOfRange('rounds', 'must be at least 1, got 0');
  if (p.openPacks === 0) throw outOfRange('openPacks', 'must be at least 1, got 0');
  checkStepSize(p.dp, p.accum);
  const m = p.dp * p.accum;
  const nOwn = ownText.length;
  checkCarry(carry, nOwn);
  // Carried sample `j` is sample `nOwn + j`, with the loads of `carry[j]`.
  let vision = ownVision;
  let text = ownText;
  if (carry.length > 0) {
    vision = new Uint32Array(nOwn + carry.length);
    text = new Uint32Array(nOwn + carry.length);
    vision.set(ownVision);
    text.set(ownText);
    for (let j = 0; j < carry.length; j++) {
      vision[nOwn + j] = ownVision[carry[j]];
      text[nOwn + j] = ownText[carry[j]];
      if (p.oversize === 'drop' && (vision[nOwn + j] > p.caps.maxVision || text[nOwn + j] > p.caps.maxText)) {
        throw outOfRange('carry', `entry ${j} is sample ${carry[j]}, over the caps: an over-cap sample is dropped, never carried`);
      }
    }
  }
  const holdsCarried = (items: ArrayLike<number>, from: number, to: number) => {
    for (let q = from; q < to; q++) if (items[q] >= nOwn) return true;
    return false;
  };
  // Over-cap samples: micro-batches of their own (even when none fits), or dropped.
  let split: { fit: number[]; dropped: [number, number][] };
  const oversize: number[] = [];
  if (p.oversize === 'own-micro-batch') {
    split = { fit: [], dropped: [] };
    for (let i = 0; i < text.length; i++) {
      if (vision[i] <= p.caps.maxVision && text[i] <= p.caps.maxText) split.fit.push(i);
      else oversize.push(i);
    }
  } else split = splitByCaps(vision, text, p.caps);
  const repacked = repackPartFilled(vision, text, pack(vision, text, split.fit, p), p);
  const before = repacked.length;
  const [old, kept, lost] = spreadTail(vision, text, repacked, p, m, oversize.length, (k) => carry.length > 0 && holdsCarried(repacked.items, repacked.offsets[k], repacked.offsets[k + 1]));
  for (const i of lost) split.dropped.push([i, DROP_CODE.tail]);

  // Layout: a random tail; the other kept packs at random grouped by vision sum; the dealt
  // packs by vision sum; the tail; the over-cap samples. Packs are renumbered in this order.
  const visionOf = new Float64Array(old.length);
  for (let k = 0; k < old.length; k++) for (let q = old.offsets[k]; q < old.offsets[k + 1]; q++) visionOf[k] += vision[old.items[q]];
  let drawn = kept;
  shuffleInPlace(drawn, Rng.forEpoch(p.seed, p.epoch, TAIL_PURPOSE));
  // Over-cap samples short of a whole step share a step with random packs (`mixed`), so the
  // tail holds packs within the caps (only an epoch of too few packs puts them there).
  const overLeft = oversize.length % m;
  let tailLen = (drawn.length + oversize.length) % m;
  let mixedLen = m - overLeft;
  if (overLeft === 0 || drawn.length < tailLen + m - overLeft) {
    tailLen = drawn.length % m;
    mixedLen = 0;
  }
  let tailOld: number[];
  [drawn, tailOld] = takeTail(drawn, tailLen, nOwn, carry, (k) => old.get(k));
  const mixed = drawn.splice(drawn.length - mixedLen, mixedLen);
  shuffleInPlace(drawn, Rng.forEpoch(p.seed, p.epoch, DRAW_PURPOSE));
  drawn.sort((a, b) => visionOf[b] - visionOf[a]);
  const fresh = Array.from({ length: old.length - before }, (_, k) => before + k).sort((a, b) => visionOf[b] - visionOf[a]);
  const keptEnd = drawn.length;
  const freshEnd = keptEnd + fresh.length;
  const mixedEnd = freshEnd + mixed.length;
  const normal = mixedEnd + tailOld.length;
  const packs = new Packs();
  for (const k of [...drawn, ...fresh, ...mixed, ...tailOld]) packs.push(old.get(k));
  for (const i of oversize) packs.push([i]);

  const w = costWeights(p.cost, text);
  const n = packs.length;
  const loads: Loads = { v: new Float64Array(n), w: new Float64Array(n), t: new Float64Array(n) };
  for (let k = 0; k < n; k++) {
    for (let q = packs.offsets[k]; q < packs.offsets[k + 1]; q++) {
      const i = packs.items[q];
      loads.v[k] += vision[i];
      loads.w[k] += w[i];
      loads.t[k] += text[i];
    }
  }
  const items = packs.items;
  const rules = new SwapRules(
    Float64Array.from(items, (i) => vision[i]),
    Float64Array.from(items, (i) => w[i]),
    Float64Array.from(items, (i) => text[i]),
    p.caps.maxText,
  );

  // Equalize each vision class in windows of consecutive packs.
  equalize(
    packs,
    rules,
    loads,
    [
      [0, keptEnd],
      [keptEnd, freshEnd],
    ],
    m,
  );

  // Steps cut from the layout; costly and cheap packs matched in steps of their own.
  drawn = matchCostlyPacks(
    Array.from({ length: keptEnd }, (_, k) => k),
    loads,
    m,
  );
  for (let k = keptEnd; k < freshEnd; k++) drawn.push(k);
  let tail = Array.from({ length: normal - mixedEnd }, (_, k) => mixedEnd + k);
  const key = byKey(loads);
  // Pack `k`'s samples (the packs that can join the tail were not swapped).
  const ids = (k: number) => packs.get(k);
  const overAll = Array.from({ length: n - normal }, (_, k) => normal + k).sort(key);
  if (mixedEnd > freshEnd) {
    // The smallest over-cap ones short of a step, with the `mixed` packs.
    const left = overAll.splice(overAll.length - overLeft, overLeft);
    for (const k of overAll) drawn.push(k);
    for (let k = freshEnd; k < mixedEnd; k++) drawn.push(k);
    for (const k of left) drawn.push(k);
  } else {
    const [over, overTail] = takeTail(overAll, (n - normal) % m, nOwn, carry, ids);
    for (const k of overTail) tail.push(k);
    for (const k of over) drawn.push(k);
  }
  if (tail.length >= m) {
    tail.sort(key);
    const [whole, rest] = takeTail(tail, tail.length % m, nOwn, carry, ids);
    for (const k of whole) drawn.push(k);
    tail = rest;
  }
  const steps = drawn.length / m;
  tuneSteps(packs, rules, loads, drawn, m, normal, p.caps.maxVision);

  // Deal each step's packs to ranks; order the steps.
  const stepOrder = Array.from({ length: steps }, (_, s) => s);
  shuffleInPlace(stepOrder, Rng.forEpoch(p.seed, p.epoch, STEP_ORDER_PURPOSE));
  const order: number[] = [];
  const dp = p.dp;
  const rankOf = (j: number) => (Math.floor(j / dp) % 2 === 0 ? j % dp : dp - 1 - (j % dp));
  for (const s of stepOrder) {
    const step = drawn.slice(s * m, (s + 1) * m);
    if (p.accum === 1) {
      for (const k of step) order.push(k);
      continue;
    }
    const dealt = step.sort(key);
    const byRank = Array.from({ length: m }, (_, j) => j).sort((a, b) => rankOf(a) - rankOf(b) || a - b);
    for (const j of byRank) order.push(dealt[j]);
  }
  for (const k of tail) order.push(k);
  const plan = assemble(packs, order, p.dp, p.accum, p.tail, true, p.caps, split.dropped);
  if (oversize.length > 0) {
    const gone = new Set<number>();
    for (let q = 0; q < plan.droppedIndex.length; q++) {
      if (plan.droppedReason[q] === DROP_CODE.tail || plan.droppedReason[q] === DROP_CODE.carried) gone.add(plan.droppedIndex[q]);
    }
    plan.oversizeIndex = Uint32Array.from(oversize.filter((i) => !gone.has(i)));
  }
  if (carry.length > 0) {
    // A sample with both copies in the tail (a tiny epoch): carried once, the carried-in copy
    // dropped as tail.
    const gone = new Uint8Array(nOwn);
    for (let q = 0; q < plan.droppedIndex.length; q++) {
      if (plan.droppedIndex[q] < nOwn && plan.droppedReason[q] === DROP_CODE.carried) gone[plan.droppedIndex[q]] = 1;
    }
    for (let q = 0; q < plan.droppedIndex.length; q++) {
      const i = plan.droppedIndex[q];
      if (i >= nOwn && plan.droppedReason[q] === DROP_CODE.carried && gone[carry[i - nOwn]]) plan.droppedReason[q] = DROP_CODE.tail;
    }
    // Carried samples get their own indices back.
    const own = (i: number) => (i >= nOwn ? carry[i - nOwn] : i);
    plan.samples = plan.samples.map(own);
    plan.oversizeIndex = plan.oversizeIndex.map(own).sort();
    const dropped = Array.from(plan.droppedIndex, (i, q) => [own(i), plan.droppedReason[q]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    plan.droppedIndex = Uint32Array.from(dropped, (d) => d[0]);
    plan.droppedReason = Uint8Array.from(dropped, (d) => d[1]);
    plan.carriedIndex = Uint32Array.from(carry);
  }
  return plan;
}
