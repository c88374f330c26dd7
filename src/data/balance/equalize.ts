/**
 * Equalization: each vision class, in windows of {@link EQUALIZE_WINDOW} consecutive packs, gets
 * {@link EQUALIZE_PASSES} pairing passes, and in steps of at least
 * {@link EQUALIZE_GREEDY_MIN_STEP} micro-batches greedy swaps, so that a class's packs become
 * interchangeable before steps are cut from it. Twin of `equalize` in the core's
 * `crate/core/src/data/balance`.
 *
 * @module
 */
import type { Packs } from '../plan';
import type { Loads, SwapRules } from './swaps';

/** Pairing passes over each equalizing window of a vision class. */
export const EQUALIZE_PASSES = 4;
/** Packs per equalizing window (a random sample of a vision class that stays in cache). */
export const EQUALIZE_WINDOW = 8192;
/** Greedy swaps over each equalizing window after its pairing passes: one per this many packs (+32). */
export const EQUALIZE_GREEDY_SHARE = 8;
/** Micro-batches per step from which equalizing windows get their greedy swaps (smaller steps are tuned step by step). */
export const EQUALIZE_GREEDY_MIN_STEP = 2048;

/** Twin of `equalize`: each vision class (a run of equal vision sums) of each `[from, to)` range of packs, window by window. */
export function equalize(packs: Packs, rules: SwapRules, loads: Loads, ranges: number[][], m: number): void {
  for (const [from, to] of ranges) {
    for (let start = from; start < to; ) {
      let end = start;
      while (end < to && loads.v[end] === loads.v[start]) end++;
      for (let a = start; a < end; a += EQUALIZE_WINDOW) {
        const b = Math.min(a + EQUALIZE_WINDOW, end);
        const win = Array.from({ length: b - a }, (_, j) => a + j);
        rules.pairPasses(packs, loads, win, 0, win.length, EQUALIZE_PASSES);
        if (m >= EQUALIZE_GREEDY_MIN_STEP) rules.greedy(packs, loads, win, Math.floor(win.length / EQUALIZE_GREEDY_SHARE) + 32, true, 0);
      }
      start = end;
    }
  }
}
