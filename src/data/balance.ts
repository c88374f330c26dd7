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
import { DROP_CODE, splitByCaps, type Caps } from './samples';
import { checkStepSize } from './step-size';

/** Stream purpose of the step order. */
export const STEP_ORDER_PURPOSE = 1048575;
/** Stream purpose of the choice of the tail's packs. */
export const TAIL_PURPOSE = 1048574;
/** Stream purpose of the random draw of packs into steps. */
export const DRAW_PURPOSE = 1048573;
/** Pairing passes over each equalizing window of a vision class. */
export const EQUALIZE_PASSES = 4;
/** Packs per equalizing window (a random sample of a vision class that stays in cache). */
export const EQUALIZE_WINDOW = 8192;
/** Pairing passes inside each step. */
export const STEP_PASSES = 2;
/** A step whose costliest pack is within 1/this of the step's mean is not tuned further. */
export const STEP_TOLERANCE = 2048;
/** Partners a pairing pass tries, on either side, for a pair that admits no swap. */
export const PAIR_PARTNERS = 4;
/** Cheaper packs a greedy swap tries for the costliest one. */
export const GREEDY_PARTNERS = 16;
/** Cheap packs the greedy phase looks at for each swap. */
export const GREEDY_SCAN = 64;
/** Greedy swaps per step: `min(8 m + 32, this)`. */
export const GREEDY_SWAPS = 1 << 30;
/** Greedy swaps over each equalizing window after its pairing passes: one per this many packs (+32). */
export const EQUALIZE_GREEDY_SHARE = 8;
/** Micro-batches per step from which equalizing windows get their greedy swaps (smaller steps are tuned step by step). */
export const EQUALIZE_GREEDY_MIN_STEP = 2048;
/** Vision-evening swaps per step with packs of unlike vision sums. */
export const VISION_SWAPS = 128;
/** Largest pack (in samples) a two-for-two exchange searches. */
export const PAIR_SWAP_MAX_SAMPLES = 12;
/** Samples per packing block (each round shuffles and packs its pool in blocks of about this many). */
export const PACK_BLOCK = 1 << 16;
/** Largest vision cap the re-packing of part-filled packs runs at. */
export const REPAIR_MAX_VISION = 1 << 16;
/** Packs over their class's median cost by more than 1/this are matched in steps of their own. */
export const COSTLY_PACK_DIV = 200;
/** Packs under their class's median cost by more than 1/this are matched in steps of their own. */
export const CHEAP_PACK_DIV = 100;

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

interface OpenPack {
  items: number[];
  v: number;
  t: number;
}

/** Twin of `pack`: rounds of a block-wise shuffle, then each block packed on its own. */
function pack(vision: Uint32Array, text: Uint32Array, pool: number[], p: BalanceParams): Packs {
  const out = new Packs();
  for (let round = 0; round < p.rounds; round++) {
    const bounds = shuffleInBlocks(pool, Rng.forEpoch(p.seed, p.epoch, round));
    const last = round + 1 === p.rounds;
    const rest: number[] = [];
    for (let b = 0; b + 1 < bounds.length; b++) packBlock(vision, text, pool.slice(bounds[b], bounds[b + 1]), last, p, out, rest);
    pool.length = 0;
    for (const x of rest) pool.push(x);
    if (pool.length === 0) break;
  }
  return out;
}

/** Twin of `SHUFFLE_CHUNKS`: most input chunks {@link shuffleInBlocks} cuts a pool into. */
export const SHUFFLE_CHUNKS = 64;

/** Twin of `shuffle_in_blocks` (the blocks' bounds): chunks shuffled and counted, blocks gathered and shuffled. */
function shuffleInBlocks(pool: number[], rng: Rng): number[] {
  const n = pool.length;
  const k = Math.ceil(n / PACK_BLOCK);
  if (k <= 1) {
    shuffleInPlace(pool, rng);
    return [0, n];
  }
  const base = rng.nextU32() + (rng.nextU32() >>> 11) * 2 ** 32;
  const c = Math.min(k, SHUFFLE_CHUNKS);
  const chunkStart = (j: number) => Math.floor((j * n) / c);
  const counts = new Uint32Array(c * k);
  const starts = new Array<number>(c * k);
  for (let j = 0; j < c; j++) {
    const r = Rng.forStream(base, j);
    const from = chunkStart(j);
    const items = pool.slice(from, chunkStart(j + 1));
    shuffleInPlace(items, r);
    for (let q = 0; q < items.length; q++) pool[from + q] = items[q];
    for (let q = 0; q < items.length; q++) counts[j * k + r.below(k)]++;
    let at = from;
    for (let b = 0; b < k; b++) {
      starts[j * k + b] = at;
      at += counts[j * k + b];
    }
  }
  const bounds = [0];
  const out: number[] = [];
  for (let b = 0; b < k; b++) {
    const block: number[] = [];
    for (let j = 0; j < c; j++) for (let q = 0; q < counts[j * k + b]; q++) block.push(pool[starts[j * k + b] + q]);
    shuffleInPlace(block, Rng.forStream(base, c + b));
    for (const x of block) out.push(x);
    bounds.push(out.length);
  }
  for (let q = 0; q < n; q++) pool[q] = out[q];
  return bounds;
}

/** Twin of `pack_block`: `block`'s packs pushed to `out`, its leftovers to `rest`. */
function packBlock(vision: Uint32Array, text: Uint32Array, block: number[], last: boolean, p: BalanceParams, out: Packs, rest: number[]): void {
  const capV = p.caps.maxVision;
  const capT = p.caps.maxText;
  const accept = (v: number, t: number) => (capV > 0 && v + p.visionSlack >= capV) || t >= p.minText;
  const open: OpenPack[] = [];
  for (const i of block) {
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
}

/** Twin of `repack_part_filled`. */
function repackPartFilled(vision: Uint32Array, text: Uint32Array, packs: Packs, p: BalanceParams): Packs {
  const capV = p.caps.maxVision;
  if (capV === 0 || capV > REPAIR_MAX_VISION) return packs;
  const accept = (v: number, t: number) => v + p.visionSlack >= capV || t >= p.minText;
  const out = new Packs();
  const loose: number[] = [];
  for (let k = 0; k < packs.length; k++) {
    let v = 0;
    let t = 0;
    for (let q = packs.offsets[k]; q < packs.offsets[k + 1]; q++) {
      v += vision[packs.items[q]];
      t += text[packs.items[q]];
    }
    if (accept(v, t)) out.push(packs.items.slice(packs.offsets[k], packs.offsets[k + 1]));
    else for (let q = packs.offsets[k]; q < packs.offsets[k + 1]; q++) loose.push(packs.items[q]);
  }
  if (loose.length === 0) return out;
  const rest: number[] = [];
  bestFit(vision, text, loose, p, out, rest);
  rest.sort((a, b) => vision[b] - vision[a] || text[b] - text[a] || a - b);
  bestFit(vision, text, rest, p, out, undefined);
  return out;
}

/** Twin of the core's `RoomSet`: integers below a bound, as a two-level bitset (32-bit words). */
export class RoomSet {
  private readonly words: Uint32Array;
  private readonly summary: Uint32Array;

  /** An empty set of integers in `[0, bound)`. */
  constructor(bound: number) {
    const words = Math.ceil(bound / 32);
    this.words = new Uint32Array(words);
    this.summary = new Uint32Array(Math.ceil(words / 32));
  }

  /** Adds `r`. */
  insert(r: number): void {
    this.words[r >>> 5] |= 1 << (r & 31);
    this.summary[r >>> 10] |= 1 << ((r >>> 5) & 31);
  }

  /** Removes `r`. */
  remove(r: number): void {
    this.words[r >>> 5] &= ~(1 << (r & 31));
    if (this.words[r >>> 5] === 0) this.summary[r >>> 10] &= ~(1 << ((r >>> 5) & 31));
  }

  /** The least member `>= r`, or -1. */
  nextAtOrAfter(r: number): number {
    let w = r >>> 5;
    if (w >= this.words.length) return -1;
    const bits = this.words[w] & (-1 << (r & 31));
    if (bits !== 0) return w * 32 + lowestBit(bits);
    w++;
    let s = w >>> 5;
    if (s >= this.summary.length) return -1;
    let sb = this.summary[s] & (-1 << (w & 31));
    while (sb === 0) {
      if (++s >= this.summary.length) return -1;
      sb = this.summary[s];
    }
    w = s * 32 + lowestBit(sb);
    return w * 32 + lowestBit(this.words[w]);
  }
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Twin of `best_fit`. */
function bestFit(vision: Uint32Array, text: Uint32Array, items: number[], p: BalanceParams, out: Packs, rest: number[] | undefined): void {
  const capV = p.caps.maxVision;
  const capT = p.caps.maxText;
  const accept = (v: number, t: number) => v + p.visionSlack >= capV || t >= p.minText;
  const bins: OpenPack[] = [];
  const closed: boolean[] = [];
  const byRoom: number[][] = Array.from({ length: capV + 1 }, () => []);
  const rooms = new RoomSet(capV + 1);
  for (const i of items) {
    const sv = vision[i];
    const st = text[i];
    let b = -1;
    for (let room = rooms.nextAtOrAfter(sv); room >= 0; room = rooms.nextAtOrAfter(room + 1)) {
      const bucket = byRoom[room];
      if (bins[bucket[bucket.length - 1]].t + st <= capT) {
        b = bucket.pop()!;
        if (bucket.length === 0) rooms.remove(room);
        break;
      }
    }
    if (b >= 0) {
      bins[b].items.push(i);
      bins[b].v += sv;
      bins[b].t += st;
    } else {
      bins.push({ items: [i], v: sv, t: st });
      closed.push(false);
      b = bins.length - 1;
    }
    if (accept(bins[b].v, bins[b].t)) {
      closed[b] = true;
      out.push(bins[b].items);
    } else {
      const room = capV - Math.min(bins[b].v, capV);
      byRoom[room].push(b);
      rooms.insert(room);
    }
  }
  for (let b = 0; b < bins.length; b++) {
    if (closed[b]) continue;
    if (rest) for (const x of bins[b].items) rest.push(x);
    else out.push(bins[b].items);
  }
}

/** `spreadTail` runs when the epoch has at least this many steps per new step. */
export const SPREAD_MIN_SHARE = 128;
/** Stream purpose of the random choice of the packs `spreadTail` deals. */
export const SPREAD_PURPOSE = 1048572;

/** A binary min-heap of unique (vision, text, pack) entries (pops in key order, as the core's). */
class MinHeap3 {
  private e: [number, number, number][] = [];

  private less(a: [number, number, number], b: [number, number, number]): boolean {
    return a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && a[2] < b[2])));
  }

  push(x: [number, number, number]): void {
    const e = this.e;
    e.push(x);
    let i = e.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(e[i], e[parent])) break;
      [e[i], e[parent]] = [e[parent], e[i]];
      i = parent;
    }
  }

  pop(): [number, number, number] | undefined {
    const e = this.e;
    if (e.length === 0) return undefined;
    const top = e[0];
    const last = e.pop()!;
    if (e.length === 0) return top;
    e[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let small = i;
      if (l < e.length && this.less(e[l], e[small])) small = l;
      if (r < e.length && this.less(e[r], e[small])) small = r;
      if (small === i) break;
      [e[i], e[small]] = [e[small], e[i]];
      i = small;
    }
    return top;
  }
}

/** Twin of `spread_tail`: the packs, the ids of those in use, and the samples dropped. */
function spreadTail(vision: Uint32Array, text: Uint32Array, packs: Packs, p: BalanceParams, m: number, holdsCarried: (k: number) => boolean): [Packs, number[], number[]] {
  const n = packs.length;
  const all = Array.from({ length: n }, (_, k) => k);
  if (n < m) return [packs, all, []];
  const capV = p.caps.maxVision;
  const capT = p.caps.maxText;
  const partFilled = (k: number) => {
    let v = 0;
    let t = 0;
    for (let q = packs.offsets[k]; q < packs.offsets[k + 1]; q++) {
      v += vision[packs.items[q]];
      t += text[packs.items[q]];
    }
    return capV > 0 && v + p.visionSlack < capV && t < p.minText;
  };
  let order = all.slice();
  shuffleInPlace(order, Rng.forEpoch(p.seed, p.epoch, SPREAD_PURPOSE));
  const r = p.tail === 'drop' ? n % m : 0;
  // With `drop` the dealing can leave samples out: never a carried sample's copy.
  if (r > 0) {
    order = order.filter((k) => !holdsCarried(k));
    if (order.length < r) return [packs, all, []];
  }
  const head = order.slice(0, order.length - r);
  const tail = order.slice(order.length - r);
  const isPart = head.map(partFilled);
  const part = head.filter((_, j) => isPart[j]);
  if (r === 0 && part.length === 0) return [packs, all, []];
  const need = Math.max(r > 0 ? Math.max(3 * m - 4 * r, 0) : 0, part.length, 1);
  const pe = Math.ceil(need / m) * m;
  const full = head.filter((_, j) => !isPart[j]);
  if (pe - part.length > full.length) return [packs, all, []];
  const dealt = [...tail, ...part, ...full.slice(0, pe - part.length)];
  const bins = pe + (r > 0 ? m : 0);
  if (Math.floor((n - r - pe + bins) / m) < SPREAD_MIN_SHARE * (bins / m)) return [packs, all, []];
  const items: number[] = [];
  for (const k of dealt) for (let q = packs.offsets[k]; q < packs.offsets[k + 1]; q++) items.push(packs.items[q]);
  if (items.length < bins) return [packs, all, []];
  items.sort((a, b) => vision[b] - vision[a]);
  const exact = p.tail === 'drop';
  let totalV = 0;
  for (const i of items) totalV += vision[i];
  const steps = bins / m;
  const perStep = Math.floor(totalV / m);
  const target = Array.from({ length: bins }, (_, b) => {
    if (!exact) return capV;
    const st = Math.floor(b / m);
    return Math.min(Math.floor(perStep / steps) + (st < perStep % steps ? 1 : 0), capV);
  });
  const heap = new MinHeap3();
  for (let b = 0; b < bins; b++) heap.push([-target[b], 0, b]);
  const members: number[][] = Array.from({ length: bins }, () => []);
  const lost: number[] = [];
  const skipped: [number, number, number][] = [];
  for (const i of items) {
    const sv = vision[i];
    const st = text[i];
    let placed = false;
    for (let top = heap.pop(); top !== undefined; top = heap.pop()) {
      skipped.push(top);
      const [over, t, b] = top;
      if (over + sv > 0) break;
      if (t + st <= capT) {
        skipped.pop();
        members[b].push(i);
        heap.push([over + sv, t + st, b]);
        placed = true;
        break;
      }
    }
    for (const x of skipped) heap.push(x);
    skipped.length = 0;
    if (!placed) {
      if (!exact) return [packs, all, []];
      lost.push(i);
    }
  }
  let tailSamples = 0;
  for (const k of tail) tailSamples += packs.offsets[k + 1] - packs.offsets[k];
  if (members.some((b) => b.length === 0) || lost.length > tailSamples) return [packs, all, []];
  const gone = new Uint8Array(n);
  for (const k of dealt) gone[k] = 1;
  const kept = all.filter((k) => !gone[k]);
  for (const b of members) packs.push(b);
  lost.sort((a, b) => a - b);
  return [packs, kept, lost];
}

/** Twin of `match_costly_packs`. */
function matchCostlyPacks(drawn: number[], loads: Loads, m: number): number[] {
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

/** Per-pack sums (vision, cost weight, text). */
interface Loads {
  v: Float64Array;
  w: Float64Array;
  t: Float64Array;
}

/** Order of matched packs: vision, then cost, descending; then index. */
function byKey(loads: Loads): (a: number, b: number) => number {
  return (a, b) => loads.v[b] - loads.v[a] || loads.w[b] - loads.w[a] || a - b;
}

/** Ascending (cost, index). */
function byCost(loads: Loads): (a: number, b: number) => number {
  return (a, b) => loads.w[a] - loads.w[b] || a - b;
}

/** Twin of `SwapRules`: each packed sample's loads stored alongside `packs.items`. */
class SwapRules {
  constructor(
    readonly v: Float64Array,
    readonly w: Float64Array,
    readonly t: Float64Array,
    readonly capT: number,
  ) {}

  swap(packs: Packs, loads: Loads, hi: number, lo: number): boolean {
    const gap = loads.w[hi] - loads.w[lo];
    if (gap <= 1) return false; // a swap moves a whole unit or more (d > 0) and must stay under the gap
    const room = this.capT - Math.min(loads.t[lo], this.capT);
    let bestScore = -1;
    let bx = -1;
    let by = -1;
    for (let xi = packs.offsets[hi]; xi < packs.offsets[hi + 1]; xi++) {
      const vx = this.v[xi];
      const wx = this.w[xi];
      const tx = this.t[xi];
      for (let yi = packs.offsets[lo]; yi < packs.offsets[lo + 1]; yi++) {
        if (this.v[yi] !== vx || wx <= this.w[yi]) continue;
        const d = wx - this.w[yi];
        if (d >= gap || tx > room + this.t[yi]) continue;
        const score = Math.abs(gap - 2 * d);
        if (bx < 0 || score < bestScore) {
          bestScore = score;
          bx = xi;
          by = yi;
        }
      }
    }
    if (bx < 0) return this.swapPairs(packs, loads, hi, lo);
    const dw = this.w[bx] - this.w[by];
    const dt = this.t[bx] - this.t[by];
    loads.w[hi] -= dw;
    loads.w[lo] += dw;
    loads.t[hi] -= dt;
    loads.t[lo] += dt;
    for (const a of [packs.items, this.v, this.w, this.t] as { [i: number]: number }[]) {
      const tmp = a[bx];
      a[bx] = a[by];
      a[by] = tmp;
    }
    return true;
  }

  /** Twin of `SwapRules::swap_pairs`. */
  swapPairs(packs: Packs, loads: Loads, hi: number, lo: number): boolean {
    const h0 = packs.offsets[hi];
    const h1 = packs.offsets[hi + 1];
    const l0 = packs.offsets[lo];
    const l1 = packs.offsets[lo + 1];
    if (h1 - h0 < 2 || l1 - l0 < 2 || h1 - h0 > PAIR_SWAP_MAX_SAMPLES || l1 - l0 > PAIR_SWAP_MAX_SAMPLES) return false;
    const gap = loads.w[hi] - loads.w[lo];
    const room = this.capT - Math.min(loads.t[lo], this.capT);
    const roomHi = this.capT - Math.min(loads.t[hi], this.capT);
    let bestScore = -1;
    let best: number[] | undefined;
    for (let x1 = h0; x1 < h1; x1++) {
      for (let x2 = x1 + 1; x2 < h1; x2++) {
        const vx = this.v[x1] + this.v[x2];
        const wx = this.w[x1] + this.w[x2];
        const tx = this.t[x1] + this.t[x2];
        for (let y1 = l0; y1 < l1; y1++) {
          for (let y2 = y1 + 1; y2 < l1; y2++) {
            const wy = this.w[y1] + this.w[y2];
            if (this.v[y1] + this.v[y2] !== vx || wx <= wy) continue;
            const d = wx - wy;
            const ty = this.t[y1] + this.t[y2];
            if (d >= gap || tx > room + ty || ty > roomHi + tx) continue;
            const score = Math.abs(gap - 2 * d);
            if (best === undefined || score < bestScore) {
              bestScore = score;
              best = [x1, x2, y1, y2];
            }
          }
        }
      }
    }
    if (best === undefined) return false;
    const [x1, x2, y1, y2] = best;
    const dw = this.w[x1] + this.w[x2] - this.w[y1] - this.w[y2];
    const dt = this.t[x1] + this.t[x2] - this.t[y1] - this.t[y2];
    loads.w[hi] -= dw;
    loads.w[lo] += dw;
    loads.t[hi] -= dt;
    loads.t[lo] += dt;
    for (const [a, b] of [[x1, y1], [x2, y2]]) this.swapPositions(packs, a, b);
    return true;
  }

  private swapPositions(packs: Packs, a: number, b: number): void {
    for (const arr of [packs.items, this.v, this.w, this.t] as { [i: number]: number }[]) {
      const tmp = arr[a];
      arr[a] = arr[b];
      arr[b] = tmp;
    }
  }

  /** Twin of `SwapRules::even_vision`. */
  evenVision(packs: Packs, loads: Loads, step: number[], capV: number): void {
    const above = (a: number, b: number) => loads.v[a] - loads.v[b] || loads.w[a] - loads.w[b] || a - b;
    for (let it = 0; it < VISION_SWAPS; it++) {
      let hi = step[0];
      let lo = step[0];
      for (let q = 1; q < step.length; q++) {
        const k = step[q];
        if (above(k, hi) > 0) hi = k;
        if (above(k, lo) < 0) lo = k;
      }
      const gap = loads.v[hi] - loads.v[lo];
      if (gap <= 1) return;
      const roomT = this.capT - Math.min(loads.t[lo], this.capT);
      const roomV = capV - Math.min(loads.v[lo], capV);
      const roomHi = this.capT - Math.min(loads.t[hi], this.capT);
      let bs = -1;
      let bc = -1;
      let bx = -1;
      let by = -1;
      for (let xi = packs.offsets[hi]; xi < packs.offsets[hi + 1]; xi++) {
        const vx = this.v[xi];
        const wx = this.w[xi];
        const tx = this.t[xi];
        for (let yi = packs.offsets[lo]; yi < packs.offsets[lo + 1]; yi++) {
          const vy = this.v[yi];
          if (vx <= vy || vx - vy >= gap || vx - vy > roomV) continue;
          if (tx > roomT + this.t[yi] || this.t[yi] > roomHi + tx) continue;
          const score = Math.abs(gap - 2 * (vx - vy));
          const cost = Math.abs(loads.w[hi] - wx + this.w[yi] - (loads.w[lo] + wx - this.w[yi]));
          if (bx < 0 || score < bs || (score === bs && cost < bc)) {
            bs = score;
            bc = cost;
            bx = xi;
            by = yi;
          }
        }
      }
      if (bx < 0) return;
      const dv = this.v[bx] - this.v[by];
      loads.v[hi] -= dv;
      loads.v[lo] += dv;
      loads.w[hi] = loads.w[hi] - this.w[bx] + this.w[by];
      loads.w[lo] = loads.w[lo] + this.w[bx] - this.w[by];
      loads.t[hi] = loads.t[hi] - this.t[bx] + this.t[by];
      loads.t[lo] = loads.t[lo] + this.t[bx] - this.t[by];
      this.swapPositions(packs, bx, by);
    }
  }

  /** Twin of `SwapRules::pair_passes` (sorts `group[start..end)` in place). */
  pairPasses(packs: Packs, loads: Loads, group: number[], start: number, end: number, passes: number): void {
    const g = end - start;
    const half = Math.floor(g / 2);
    const cmp = byCost(loads);
    for (let pass = 0; pass < passes; pass++) {
      const sorted = group.slice(start, end).sort(cmp);
      for (let j = 0; j < g; j++) group[start + j] = sorted[j];
      const mirror = pass % 2 === 0;
      const hiAt = (j: number) => start + (mirror ? g - 1 - j : half + j);
      let swapped = false;
      for (let j = 0; j < half; j++) {
        const lo = group[start + j];
        const hi = group[hiAt(j)];
        if (loads.w[hi] <= loads.w[lo]) {
          if (mirror) break;
          continue;
        }
        if (this.swap(packs, loads, hi, lo)) {
          swapped = true;
          continue;
        }
        if (!mirror) continue;
        for (let t = 1; t < Math.min(PAIR_PARTNERS, half - j); t++) {
          const lo2 = group[start + j + t];
          const hi2 = group[hiAt(j + t)];
          if (loads.w[hi] > loads.w[lo2] && this.swap(packs, loads, hi, lo2)) {
            swapped = true;
            break;
          }
          if (loads.w[hi2] > loads.w[lo] && this.swap(packs, loads, hi2, lo)) {
            swapped = true;
            break;
          }
        }
      }
      if (!swapped && mirror) break;
    }
  }

  /** Twin of `SwapRules::greedy`. */
  greedy(packs: Packs, loads: Loads, group: number[], iterations: number, spread: boolean, stopAt: number): void {
    let asc = group.slice().sort(byCost(loads));
    if (spread) {
      const half = Math.ceil(asc.length / 2);
      const stride = Math.max(Math.floor(half / GREEDY_PARTNERS), 1);
      const picked: number[] = [];
      for (let q = 0; q < half; q += stride) picked.push(asc[q]);
      asc = picked;
    }
    const heap = new MaxHeap();
    for (const k of group) heap.push(loads.w[k], k);
    let done = 0;
    for (;;) {
      const top = heap.pop();
      if (top === undefined) break;
      const [wk, hi] = top;
      if (wk !== loads.w[hi]) continue;
      if (done === iterations || wk <= stopAt) break;
      done++;
      let tried = 0;
      let swappedWith = -1;
      for (let q = 0; q < Math.min(asc.length, GREEDY_SCAN); q++) {
        const lo = asc[q];
        if (loads.w[lo] >= loads.w[hi]) continue;
        if (this.swap(packs, loads, hi, lo)) {
          swappedWith = lo;
          break;
        }
        if (++tried === GREEDY_PARTNERS) break;
      }
      if (swappedWith < 0) {
        if (spread) continue;
        break;
      }
      heap.push(loads.w[hi], hi);
      heap.push(loads.w[swappedWith], swappedWith);
    }
  }
}

/** A max-heap of (cost, pack) entries: pops them in the order the core's `BinaryHeap` does (the entries are values, so any max-heap pops the same sequence). */
class MaxHeap {
  private w: number[] = [];
  private k: number[] = [];

  private greater(a: number, b: number): boolean {
    return this.w[a] > this.w[b] || (this.w[a] === this.w[b] && this.k[a] > this.k[b]);
  }

  private swapAt(a: number, b: number): void {
    [this.w[a], this.w[b]] = [this.w[b], this.w[a]];
    [this.k[a], this.k[b]] = [this.k[b], this.k[a]];
  }

  push(w: number, k: number): void {
    this.w.push(w);
    this.k.push(k);
    let i = this.w.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.greater(i, parent)) break;
      this.swapAt(parent, i);
      i = parent;
    }
  }

  pop(): [number, number] | undefined {
    if (this.w.length === 0) return undefined;
    const top: [number, number] = [this.w[0], this.k[0]];
    const lw = this.w.pop()!;
    const lk = this.k.pop()!;
    const n = this.w.length;
    if (n === 0) return top;
    this.w[0] = lw;
    this.k[0] = lk;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let big = i;
      if (l < n && this.greater(l, big)) big = l;
      if (r < n && this.greater(r, big)) big = r;
      if (big === i) break;
      this.swapAt(i, big);
      i = big;
    }
    return top;
  }
}

/** Twin of `check_carry`: indices of the `n` samples, each at most once. */
export function checkCarry(carry: Uint32Array, n: number): void {
  if (n + carry.length > 0xffffffff) throw outOfRange('carry', 'and the samples together must be fewer than 2^32');
  const seen = new Uint8Array(n);
  for (let j = 0; j < carry.length; j++) {
    const i = carry[j];
    if (i >= n) throw outOfRange('carry', `entry ${j} must be a sample index below ${n}, got ${i}`);
    if (seen[i]) throw outOfRange('carry', `entry ${j} repeats sample ${i}; each sample may be carried once`);
    seen[i] = 1;
  }
}

/**
 * Twin of `take_tail`: `[rest, tail]`, the tail the last `r` packs holding no carried sample (id
 * `>= nOwn`), then, only when too few are free of them, the last that do, skipping a pack that
 * would put both copies of a sample (own `carry[j]` and carried `nOwn + j`) in the tail (one
 * there already, or both in the pack), then, still short, any.
 */
function takeTail(list: number[], r: number, nOwn: number, carry: Uint32Array, ids: (k: number) => number[]): [number[], number[]] {
  const carries = (k: number) => {
    if (carry.length === 0) return false;
    const x = ids(k);
    for (let q = 0; q < x.length; q++) if (x[q] >= nOwn) return true;
    return false;
  };
  const pick = new Uint8Array(list.length);
  let left = r;
  for (let j = list.length - 1; j >= 0 && left > 0; j--) {
    if (!carries(list[j])) {
      pick[j] = 1;
      left--;
    }
  }
  if (left > 0) {
    const copy = new Uint32Array(nOwn).fill(0xffffffff);
    for (let j = 0; j < carry.length; j++) copy[carry[j]] = nOwn + j;
    const partner = (i: number) => (i >= nOwn ? carry[i - nOwn] : copy[i]);
    const inTail = new Uint8Array(nOwn + carry.length);
    for (let j = 0; j < list.length; j++) if (pick[j]) for (const i of ids(list[j])) inTail[i] = 1;
    for (let j = list.length - 1; j >= 0 && left > 0; j--) {
      if (pick[j]) continue;
      const x = ids(list[j]);
      // A partner already in the tail, or in this pack (packing mixes the copies).
      if (x.some((i) => partner(i) !== 0xffffffff && (inTail[partner(i)] || x.includes(partner(i))))) continue;
      for (const i of x) inTail[i] = 1;
      pick[j] = 1;
      left--;
    }
    // Still short (a tiny epoch, or over-cap samples short of a step): any pack; a sample with
    // both copies in the tail is carried once, its other copy dropped as tail.
    for (let j = list.length - 1; j >= 0 && left > 0; j--) {
      if (!pick[j]) {
        pick[j] = 1;
        left--;
      }
    }
  }
  return [list.filter((_, j) => !pick[j]), list.filter((_, j) => pick[j])];
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
  const [old, kept, lost] = spreadTail(vision, text, repacked, p, m, (k) => carry.length > 0 && holdsCarried(repacked.items, repacked.offsets[k], repacked.offsets[k + 1]));
  for (const i of lost) split.dropped.push([i, DROP_CODE.tail]);

  // Layout: a random tail; the other kept packs at random grouped by vision sum; the dealt
  // packs by vision sum; the tail; the over-cap samples. Packs are renumbered in this order.
  const visionOf = new Float64Array(old.length);
  for (let k = 0; k < old.length; k++) for (let q = old.offsets[k]; q < old.offsets[k + 1]; q++) visionOf[k] += vision[old.items[q]];
  let drawn = kept;
  shuffleInPlace(drawn, Rng.forEpoch(p.seed, p.epoch, TAIL_PURPOSE));
  let tailOld: number[];
  [drawn, tailOld] = takeTail(drawn, drawn.length % m, nOwn, carry, (k) => old.get(k));
  shuffleInPlace(drawn, Rng.forEpoch(p.seed, p.epoch, DRAW_PURPOSE));
  drawn.sort((a, b) => visionOf[b] - visionOf[a]);
  const fresh = Array.from({ length: old.length - before }, (_, k) => before + k).sort((a, b) => visionOf[b] - visionOf[a]);
  const keptEnd = drawn.length;
  const freshEnd = keptEnd + fresh.length;
  const normal = freshEnd + tailOld.length;
  const packs = new Packs();
  for (const k of [...drawn, ...fresh, ...tailOld]) packs.push(old.get(k));
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
  for (const [from, to] of [
    [0, keptEnd],
    [keptEnd, freshEnd],
  ]) {
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

  // Steps cut from the layout; costly and cheap packs matched in steps of their own.
  drawn = matchCostlyPacks(
    Array.from({ length: keptEnd }, (_, k) => k),
    loads,
    m,
  );
  for (let k = keptEnd; k < freshEnd; k++) drawn.push(k);
  let tail = Array.from({ length: normal - freshEnd }, (_, k) => freshEnd + k);
  const key = byKey(loads);
  // Pack `k`'s samples (the packs that can join the tail were not swapped).
  const ids = (k: number) => packs.get(k);
  const [over, overTail] = takeTail(Array.from({ length: n - normal }, (_, k) => normal + k).sort(key), (n - normal) % m, nOwn, carry, ids);
  for (const k of overTail) tail.push(k);
  for (const k of over) drawn.push(k);
  if (tail.length >= m) {
    tail.sort(key);
    const [whole, rest] = takeTail(tail, tail.length % m, nOwn, carry, ids);
    for (const k of whole) drawn.push(k);
    tail = rest;
  }
  const steps = drawn.length / m;
  for (let s = 0; s < steps; s++) {
    const step = drawn.slice(s * m, (s + 1) * m);
    if (step.some((k) => loads.v[k] !== loads.v[step[0]]) && step.every((k) => k < normal)) {
      rules.evenVision(packs, loads, step, p.caps.maxVision);
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
