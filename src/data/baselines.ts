/**
 * Baselines for comparison: random, length-grouped (LLaVA) and ISF hand-out. TypeScript twins
 * of `crate/core/src/data/baselines.rs`.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { shuffleInPlace } from '../random/permutation';
import { Rng } from '../random/rng';
import { STEP_ORDER_PURPOSE } from './balance';
import { packIsfTwin, type IsfParams } from './isf';
import { assemble, Packs, type AssembledPlan, type Tail } from './plan';

/** Shape of the padded baselines. */
export interface PaddedParams {
  dp: number;
  accum: number;
  batch: number;
  seed: number;
  epoch: number;
  tail: Tail;
}

function checkShape(dp: number, accum: number): void {
  if (dp === 0) throw outOfRange('dp', 'must be at least 1, got 0');
  if (accum === 0) throw outOfRange('accum', 'must be at least 1, got 0');
}

function shuffled(n: number, p: PaddedParams): number[] {
  checkShape(p.dp, p.accum);
  if (p.batch === 0) throw outOfRange('batchSize', 'must be at least 1, got 0');
  const order = Array.from({ length: n }, (_, i) => i);
  shuffleInPlace(order, Rng.forEpoch(p.seed, p.epoch, 0));
  return order;
}

/** Twin of `random_batches`. */
export function randomBatchesTwin(text: Uint32Array, p: PaddedParams): AssembledPlan {
  const order = shuffled(text.length, p);
  const packs = new Packs();
  for (let i = 0; i < order.length; i += p.batch) packs.push(order.slice(i, i + p.batch));
  const deal = Array.from({ length: packs.length }, (_, k) => k);
  return assemble(packs, deal, p.dp, p.accum, p.tail, false, undefined, []);
}

/** Twin of `length_grouped_batches`. */
export function lengthGroupedBatchesTwin(text: Uint32Array, p: PaddedParams): AssembledPlan {
  const order = shuffled(text.length, p);
  const { dp, batch: b } = p;
  const packs = new Packs();
  for (let start = 0; start < order.length; start += dp * b) {
    const block = order.slice(start, start + dp * b);
    // Stable sort, longest first (Array.prototype.sort is stable, as Rust's sort_by).
    const mega = block.slice().sort((x, y) => text[y] - text[x]);
    const per = Math.ceil(block.length / dp);
    const chunks: number[][] = Array.from({ length: dp }, () => []);
    const lens = new Array<number>(dp).fill(0);
    for (const i of mega) {
      let best = -1;
      for (let r = 0; r < dp; r++) {
        if (chunks[r].length < per && (best === -1 || lens[r] < lens[best])) best = r;
      }
      chunks[best].push(i);
      lens[best] += text[i];
    }
    for (const c of chunks) if (c.length > 0) packs.push(c);
  }
  const groups = Math.floor(packs.length / dp);
  const deal: number[] = [];
  let g = 0;
  for (; g + p.accum <= groups; g += p.accum) {
    for (let r = 0; r < dp; r++) for (let a = 0; a < p.accum; a++) deal.push((g + a) * dp + r);
  }
  for (let k = g * dp; k < packs.length; k++) deal.push(k);
  return assemble(packs, deal, p.dp, p.accum, p.tail, false, undefined, []);
}

/** Twin of `isf_batches`. */
export function isfBatchesTwin(
  vision: Uint32Array,
  text: Uint32Array,
  params: IsfParams,
  dp: number,
  accum: number,
  tail: Tail,
): AssembledPlan {
  checkShape(dp, accum);
  const out = packIsfTwin(vision, text, params);
  const deal = Array.from({ length: out.packs.length }, (_, k) => k);
  shuffleInPlace(deal, Rng.forEpoch(params.seed, params.epoch, STEP_ORDER_PURPOSE));
  return assemble(out.packs, deal, dp, accum, tail, true, params.caps, out.dropped);
}
