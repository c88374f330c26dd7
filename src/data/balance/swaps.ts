/**
 * The swap rules: per-pack loads, and the sample swaps (one for one, two for two, vision-evening,
 * pairing passes, greedy) that even the packs' costs. Twin of `SwapRules` in the core's
 * `crate/core/src/data/balance`.
 *
 * @module
 */
import type { Packs } from '../plan';

/** Partners a pairing pass tries, on either side, for a pair that admits no swap. */
export const PAIR_PARTNERS = 4;
/** Cheaper packs a greedy swap tries for the costliest one. */
export const GREEDY_PARTNERS = 16;
/** Cheap packs the greedy phase looks at for each swap. */
export const GREEDY_SCAN = 64;
/** Greedy swaps per step: `min(8 m + 32, this)`. */
export const GREEDY_SWAPS = 1 << 30;
/** Vision-evening swaps per step with packs of unlike vision sums. */
export const VISION_SWAPS = 128;
/** Largest pack (in samples) a two-for-two exchange searches. */
export const PAIR_SWAP_MAX_SAMPLES = 12;

/** Per-pack sums (vision, cost weight, text). */
export interface Loads {
  v: Float64Array;
  w: Float64Array;
  t: Float64Array;
}

/** Order of matched packs: vision, then cost, descending; then index. */
export function byKey(loads: Loads): (a: number, b: number) => number {
  return (a, b) => loads.v[b] - loads.v[a] || loads.w[b] - loads.w[a] || a - b;
}

/** Ascending (cost, index). */
export function byCost(loads: Loads): (a: number, b: number) => number {
  return (a, b) => loads.w[a] - loads.w[b] || a - b;
}

/** Twin of `SwapRules`: each packed sample's loads stored alongside `packs.items`. */
export class SwapRules {
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
