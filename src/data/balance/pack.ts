/**
 * Packing: the pool shuffled in blocks and packed block by block over rounds, then the
 * part-filled packs re-packed best-fit. Twin of the packing in the core's
 * `crate/core/src/data/balance`.
 *
 * @module
 */
import { shuffleInPlace } from '../../random/permutation';
import { Rng } from '../../random/rng';
import { Packs } from '../plan';
import type { BalanceParams } from './index';

/** Samples per packing block (each round shuffles and packs its pool in blocks of about this many). */
export const PACK_BLOCK = 1 << 16;
/** Largest vision cap the re-packing of part-filled packs runs at. */
export const REPAIR_MAX_VISION = 1 << 16;

interface OpenPack {
  items: number[];
  v: number;
  t: number;
}

/** Twin of `pack`: rounds of a block-wise shuffle, then each block packed on its own. */
export function pack(vision: Uint32Array, text: Uint32Array, pool: number[], p: BalanceParams): Packs {
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
export function repackPartFilled(vision: Uint32Array, text: Uint32Array, packs: Packs, p: BalanceParams): Packs {
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
