/**
 * Steps: the packs far over or under their vision class's median cost matched in steps of their
 * own. Twin of `match_costly_packs` in the core's `crate/core/src/data/balance`.
 *
 * @module
 */
import type { Loads } from './swaps';

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
