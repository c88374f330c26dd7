/**
 * The balanced planner (this package's default). TypeScript twin of
 * `crate/core/src/data/balance.rs`; see there for the algorithm.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { shuffleInPlace } from '../random/permutation';
import { Rng } from '../random/rng';
import { costWeights, type TextCost } from './cost';
import { assemble, Packs, type AssembledPlan, type Tail } from './plan';
import { splitByCaps, type Caps } from './samples';

/** Stream purpose of the step order. */
export const STEP_ORDER_PURPOSE = 1048575;

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
}

interface OpenPack {
  items: number[];
  v: number;
  t: number;
}

function pack(vision: Uint32Array, text: Uint32Array, pool: number[], p: BalanceParams): Packs {
  const capV = p.caps.maxVision;
  const capT = p.caps.maxText;
  const accept = (v: number, t: number) => (capV > 0 && v + p.visionSlack >= capV) || t >= p.minText;
  const out = new Packs();
  let open: OpenPack[] = [];
  for (let round = 0; round < p.rounds; round++) {
    shuffleInPlace(pool, Rng.forEpoch(p.seed, p.epoch, round));
    const last = round + 1 === p.rounds;
    const rest: number[] = [];
    for (const i of pool) {
      const sv = vision[i];
      const st = text[i];
      const k = open.findIndex((b) => b.v + sv <= capV && b.t + st <= capT);
      if (k >= 0) {
        const b = open[k];
        b.items.push(i);
        b.v += sv;
        b.t += st;
        if (accept(b.v, b.t)) out.push(open.splice(k, 1)[0].items);
      } else {
        if (open.length === p.openPacks) {
          const evicted = open.shift()!;
          if (last) out.push(evicted.items);
          else for (const x of evicted.items) rest.push(x);
        }
        if (accept(sv, st)) out.push([i]);
        else open.push({ items: [i], v: sv, t: st });
      }
    }
    for (const b of open) {
      if (last) out.push(b.items);
      else for (const x of b.items) rest.push(x);
    }
    open = [];
    pool.length = 0;
    for (const x of rest) pool.push(x);
    if (pool.length === 0) break;
  }
  return out;
}

function balanceStep(packs: Packs, start: number, end: number, vision: Uint32Array, text: Uint32Array, w: Float64Array, capT: number): void {
  const m = end - start;
  const wsum = new Array<number>(m).fill(0);
  const tsum = new Array<number>(m).fill(0);
  for (let k = 0; k < m; k++) {
    for (let q = packs.offsets[start + k]; q < packs.offsets[start + k + 1]; q++) {
      wsum[k] += w[packs.items[q]];
      tsum[k] += text[packs.items[q]];
    }
  }
  const byLoad = Array.from({ length: m }, (_, k) => k);
  for (let iter = 0; iter < 8 * m + 32; iter++) {
    let hi = 0;
    for (let k = 1; k < m; k++) if (wsum[k] > wsum[hi]) hi = k;
    byLoad.sort((x, y) => wsum[x] - wsum[y] || x - y);
    let swapped = false;
    for (const lo of byLoad) {
      if (wsum[lo] >= wsum[hi]) break;
      const gap = wsum[hi] - wsum[lo];
      let best: [number, number, number] | undefined;
      for (let xi = packs.offsets[start + hi]; xi < packs.offsets[start + hi + 1]; xi++) {
        const x = packs.items[xi];
        for (let yi = packs.offsets[start + lo]; yi < packs.offsets[start + lo + 1]; yi++) {
          const y = packs.items[yi];
          if (vision[x] !== vision[y] || w[x] <= w[y]) continue;
          const d = w[x] - w[y];
          if (d >= gap || tsum[lo] - text[y] + text[x] > capT) continue;
          const score = Math.abs(gap - 2 * d);
          if (best === undefined || score < best[0]) best = [score, xi, yi];
        }
      }
      if (best !== undefined) {
        const [, xi, yi] = best;
        const x = packs.items[xi];
        const y = packs.items[yi];
        wsum[hi] = wsum[hi] - w[x] + w[y];
        wsum[lo] = wsum[lo] - w[y] + w[x];
        tsum[hi] = tsum[hi] - text[x] + text[y];
        tsum[lo] = tsum[lo] - text[y] + text[x];
        packs.items[xi] = y;
        packs.items[yi] = x;
        swapped = true;
        break;
      }
    }
    if (!swapped) break;
  }
}

/** Twin of `balance_batches`. */
export function balanceBatchesTwin(vision: Uint32Array, text: Uint32Array, p: BalanceParams): AssembledPlan {
  if (p.dp === 0) throw outOfRange('dp', 'must be at least 1, got 0');
  if (p.accum === 0) throw outOfRange('accum', 'must be at least 1, got 0');
  if (p.rounds === 0) throw outOfRange('rounds', 'must be at least 1, got 0');
  if (p.openPacks === 0) throw outOfRange('openPacks', 'must be at least 1, got 0');
  const split = splitByCaps(vision, text, p.caps);
  const accepted = pack(vision, text, split.fit, p);

  const w = costWeights(p.cost, text);
  const byLoad: [number, number, number][] = [];
  for (let k = 0; k < accepted.length; k++) {
    let v = 0;
    let ws = 0;
    for (let q = accepted.offsets[k]; q < accepted.offsets[k + 1]; q++) {
      v += vision[accepted.items[q]];
      ws += w[accepted.items[q]];
    }
    byLoad.push([v, ws, k]);
  }
  byLoad.sort((a, b) => b[0] - a[0] || b[1] - a[1] || a[2] - b[2]);
  const ordered = new Packs();
  for (const [, , k] of byLoad) ordered.push(accepted.get(k));

  const m = p.dp * p.accum;
  const n = ordered.length;
  for (let s = 0; s * m < n; s++) {
    balanceStep(ordered, s * m, Math.min((s + 1) * m, n), vision, text, w, p.caps.maxText);
  }

  const full = Math.floor(n / m);
  const stepOrder = Array.from({ length: full }, (_, s) => s);
  shuffleInPlace(stepOrder, Rng.forEpoch(p.seed, p.epoch, STEP_ORDER_PURPOSE));
  const order: number[] = [];
  for (const s of stepOrder) {
    const base = s * m;
    if (p.accum === 1) {
      for (let k = base; k < base + m; k++) order.push(k);
      continue;
    }
    const dealt: [number, number, number][] = [];
    for (let k = base; k < base + m; k++) {
      let ws = 0;
      let vs = 0;
      for (let q = ordered.offsets[k]; q < ordered.offsets[k + 1]; q++) {
        ws += w[ordered.items[q]];
        vs += vision[ordered.items[q]];
      }
      dealt.push([vs, ws, k]);
    }
    dealt.sort((a, b) => b[0] - a[0] || b[1] - a[1] || a[2] - b[2]);
    const dp = p.dp;
    const rankOf = (j: number) => (Math.floor(j / dp) % 2 === 0 ? j % dp : dp - 1 - (j % dp));
    for (let r = 0; r < dp; r++) for (let j = 0; j < m; j++) if (rankOf(j) === r) order.push(dealt[j][2]);
  }
  for (let k = full * m; k < n; k++) order.push(k);
  return assemble(ordered, order, p.dp, p.accum, p.tail, true, p.caps, split.dropped);
}
