/**
 * The tail and the carry: the part-filled packs and the epoch's remainder dealt over new steps
 * (`spreadTail`), the carried samples checked (`checkCarry`), and the packs that make up the tail
 * taken (`takeTail`). Twin of the same in the core's `crate/core/src/data/balance`.
 *
 * @module
 */
import { outOfRange } from '../../errors';
import { shuffleInPlace } from '../../random/permutation';
import { Rng } from '../../random/rng';
import type { Packs } from '../plan';
import type { BalanceParams } from './index';

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

/** Twin of `spread_tail`: the packs, the ids of those in use, and the samples dropped (`oversize`: the over-cap samples' own micro-batches, counted in what a step must hold). */
export function spreadTail(vision: Uint32Array, text: Uint32Array, packs: Packs, p: BalanceParams, m: number, oversize: number, holdsCarried: (k: number) => boolean): [Packs, number[], number[]] {
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
  const r = p.tail === 'drop' ? (n + oversize) % m : 0;
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
export function takeTail(list: number[], r: number, nOwn: number, carry: Uint32Array, ids: (k: number) => number[]): [number[], number[]] {
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
