/**
 * Steps: the packs far over or under their vision class's median cost matched in steps of their
 * own, then each step tuned until its costliest pack is within 1/{@link STEP_TOLERANCE} of its
 * mean or no swap helps. Twin of `match_costly_packs` and `tune_steps` in the core's
 * `crate/core/src/data/balance`.
 *
 * @module
 */
import type { Packs } from '../plan';
import { byCost, GREEDY_SWAPS, type Loads, type SwapRules } from './swaps';

/** Pairing passes inside each step. */
export const STEP_PASSES = 2;
/** A step whose costliest pack is within 1/this of the step's mean is not tuned further. */
export const STEP_TOLERANCE = 2048;
/** Packs over their class's median cost by more than 1/this are matched in steps of their own. */
export const COSTLY_PACK_DIV = 200;
/** Packs under their class's median cost by more than 1/this are matched in steps of their own. */
export const CHEAP_PACK_DIV = 100;

/** Twin of `match_costly_packs`. */
export function matchCostlyPacks(drawn: number[], loads: Loads, m: number): number[] {
  const costly: number[] = [];
  const taken = new Uint8Array(drawn.length);
  for (let start = 0; start < drawn.length; ) {
    let end = start;
    while (end < drawn.length && loads.v[drawn[end]] === loads.v[drawn[start]]) end++;
    const byCost: number[] = [];
    for (let j = start; j < end; j++) byCost.push(j);
    byCost.sort((a, b) => loads.w[drawn[a]] - loads.w[drawn[b]] || drawn[a] - drawn[b]);
    const median = loads.w[drawn[byCost[byCost.length >> 1]]];
    const limit = median + Math.floor(median / COSTLY_PACK_DIV);
    let over = 0;
    for (const j of byCost) if (loads.w[drawn[j]] > limit) over++;
    const whole = over - (over % m);
    for (let q = 0; q < whole; q++) {
      const j = byCost[byCost.length - 1 - q];
      costly.push(drawn[j]);
      taken[j] = 1;
    }
    const floor = median - Math.floor(median / CHEAP_PACK_DIV);
    let under = 0;
    for (const j of byCost) if (loads.w[drawn[j]] < floor) under++;
    const wholeUnder = under - (under % m);
    for (let q = 0; q < wholeUnder; q++) {
      costly.push(drawn[byCost[q]]);
      taken[byCost[q]] = 1;
    }
    start = end;
  }
  if (costly.length === 0) return drawn;
  for (let j = 0; j < drawn.length; j++) if (!taken[j]) costly.push(drawn[j]);
  return costly;
}

/** Packs per block of steps in {@link tuneSteps} (see {@link stepBlock}). */
export const STEP_BLOCK_PACKS = 512;
/** Largest step (packs, `dp x accum`) whose steps {@link tuneSteps} re-cuts in blocks by cost. */
export const STEP_BLOCK_MAX_PACKS = 8;

/**
 * Twin of `step_block`: steps per block in {@link tuneSteps}, {@link STEP_BLOCK_PACKS} / `m` for
 * steps of 2 to {@link STEP_BLOCK_MAX_PACKS} packs, else 1 (steps as cut: a step of one pack has
 * nothing to balance; re-cut, its steps would only be reordered before the order is shuffled).
 */
export function stepBlock(m: number): number {
  return m >= 2 && m <= STEP_BLOCK_MAX_PACKS ? Math.max(1, Math.floor(STEP_BLOCK_PACKS / m)) : 1;
}

/**
 * Twin of `tune_steps`: runs of steps whose packs come in increasing order (each step's least
 * pack after the previous step's last) are cut into blocks of {@link stepBlock} steps (the last
 * may hold fewer), whose packs are re-cut into steps in (vision descending, cost, index) order
 * where blocks hold more than one step (runs of steps holding over-cap packs, from `normal` on,
 * are tuned as cut). Each step then gets its vision sums evened where its
 * packs differ (none of them over-cap, below `normal`), then, unless its costliest pack is
 * within 1/{@link STEP_TOLERANCE} of its mean, {@link STEP_PASSES} pairing passes and greedy
 * swaps; each step is left in cost order.
 */
export function tuneSteps(packs: Packs, rules: SwapRules, loads: Loads, drawn: number[], m: number, normal: number, capV: number): void {
  const steps = drawn.length / m;
  const per = stepBlock(m);
  // Each step's pack span, as cut (before any re-cut).
  const lo: number[] = [];
  const hi: number[] = [];
  for (let s = 0; s < steps; s++) {
    let a = Infinity;
    let b = -Infinity;
    for (let j = s * m; j < (s + 1) * m; j++) {
      a = Math.min(a, drawn[j]);
      b = Math.max(b, drawn[j] + 1);
    }
    lo.push(a);
    hi.push(b);
  }
  const byVisionThenCost = (a: number, b: number): number => loads.v[b] - loads.v[a] || loads.w[a] - loads.w[b] || a - b;
  for (let first = 0; first < steps; ) {
    let end = first + 1;
    // Steps holding an over-cap pack (from `normal` on) form runs of their own, tuned as cut
    // (see `tune_steps`).
    while (end < steps && hi[end - 1] <= lo[end] && (hi[end - 1] > normal || hi[end] <= normal)) end++;
    const runPer = hi[end - 1] <= normal ? per : 1;
    for (let b = first; b < end; b += runPer) {
      const blockEnd = Math.min(b + runPer, end);
      if (runPer > 1) {
        const sorted = drawn.slice(b * m, blockEnd * m).sort(byVisionThenCost);
        for (let j = 0; j < sorted.length; j++) drawn[b * m + j] = sorted[j];
      }
      for (let s = b; s < blockEnd; s++) tuneStep(packs, rules, loads, drawn, s, m, normal, capV);
    }
    first = end;
  }
}

/** Step `s` of {@link tuneSteps}. */
function tuneStep(packs: Packs, rules: SwapRules, loads: Loads, drawn: number[], s: number, m: number, normal: number, capV: number): void {
  const step = drawn.slice(s * m, (s + 1) * m);
  if (step.some((k) => loads.v[k] !== loads.v[step[0]]) && step.every((k) => k < normal)) {
    rules.evenVision(packs, loads, step, capV);
  }
  // A step whose costliest pack is within 1/STEP_TOLERANCE of the mean is left as is.
  let sum = 0;
  for (const k of step) sum += loads.w[k];
  const mean = Math.floor(sum / m);
  const stopAt = mean + Math.floor(mean / STEP_TOLERANCE);
  if (step.some((k) => loads.w[k] > stopAt)) {
    rules.pairPasses(packs, loads, drawn, s * m, (s + 1) * m, STEP_PASSES);
    rules.greedy(packs, loads, drawn.slice(s * m, (s + 1) * m), Math.min(8 * m + 32, GREEDY_SWAPS), false, stopAt);
  }
  // Cost order, ties by pack (as a re-deal of the step by position breaks them).
  const sorted = drawn.slice(s * m, (s + 1) * m).sort(byCost(loads));
  for (let j = 0; j < m; j++) drawn[s * m + j] = sorted[j];
}
