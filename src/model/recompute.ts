/**
 * Per-stage recomputation. TypeScript twin of `crate/core/src/model/recompute.rs`.
 *
 * @module
 */
import type { Layer, Recompute } from './stages';

/** What a stage recomputes: the first `k` layers, or a set. */
export type Choice = { block: number } | { set: number[] };

function prefix(layers: Layer[], f: (x: Layer) => number): Float64Array {
  const out = new Float64Array(layers.length + 1);
  let acc = 0;
  for (let i = 0; i < layers.length; i++) {
    acc += f(layers[i]);
    out[i + 1] = acc;
  }
  return out;
}

/** Twin of `Segments`. */
export class Segments {
  private readonly pf: Float64Array;
  private readonly pb: Float64Array;
  private readonly pw: Float64Array;
  private readonly pa: Float64Array;
  private readonly pc: Float64Array;
  private readonly monotone: boolean;

  constructor(
    private readonly layers: Layer[],
    private readonly capacity: number,
    private readonly overhead: number,
    private readonly mode: Recompute,
  ) {
    this.pf = prefix(layers, (x) => x.forwardMs);
    this.pb = prefix(layers, (x) => x.backwardMs);
    this.pw = prefix(layers, (x) => x.staticBytes);
    this.pa = prefix(layers, (x) => x.activationBytes);
    this.pc = prefix(layers, (x) => x.checkpointBytes);
    this.monotone = layers.every((x) => x.checkpointBytes <= x.activationBytes);
  }

  baseTime(l: number, r: number): number {
    return this.pf[r + 1] - this.pf[l] + (this.pb[r + 1] - this.pb[l]);
  }

  blockMemory(n: number, l: number, r: number, k: number): number {
    const w = this.pw[r + 1] - this.pw[l];
    const kept = this.pc[l + k] - this.pc[l] + (this.pa[r + 1] - this.pa[l + k]);
    return w + n * kept + this.overhead;
  }

  private blockK(n: number, l: number, r: number): number | undefined {
    const len = r - l + 1;
    const fits = (k: number) => this.blockMemory(n, l, r, k) <= this.capacity;
    if (fits(0)) return 0;
    if (this.monotone) {
      if (!fits(len)) return undefined;
      let lo = 0;
      let hi = len;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (fits(mid)) hi = mid;
        else lo = mid;
      }
      return hi;
    }
    for (let k = 1; k <= len; k++) if (fits(k)) return k;
    return undefined;
  }

  private greedySet(n: number, l: number, r: number): [number, number[]] | undefined {
    let need = this.blockMemory(n, l, r, 0) - this.capacity;
    const order: number[] = [];
    for (let i = l; i <= r; i++) if (this.layers[i].activationBytes > this.layers[i].checkpointBytes) order.push(i);
    const ratio = (i: number) => {
      const x = this.layers[i];
      return x.forwardMs / (n * (x.activationBytes - x.checkpointBytes));
    };
    order.sort((i, j) => ratio(i) - ratio(j) || i - j);
    const set: number[] = [];
    let extra = 0;
    for (const i of order) {
      if (need <= 0) break;
      const x = this.layers[i];
      need -= n * (x.activationBytes - x.checkpointBytes);
      extra += x.forwardMs;
      set.push(i);
    }
    if (need > 0) return undefined;
    set.sort((a, b) => a - b);
    return [extra, set];
  }

  /** Twin of `Segments::choose`. */
  choose(n: number, l: number, r: number): [number, Choice] | undefined {
    const base = this.baseTime(l, r);
    const len = r - l + 1;
    switch (this.mode) {
      case 'none':
        return this.blockMemory(n, l, r, 0) <= this.capacity ? [base, { block: 0 }] : undefined;
      case 'full':
        return this.blockMemory(n, l, r, len) <= this.capacity ? [base + (this.pf[r + 1] - this.pf[l]), { block: len }] : undefined;
      case 'block': {
        const k = this.blockK(n, l, r);
        return k === undefined ? undefined : [base + (this.pf[l + k] - this.pf[l]), { block: k }];
      }
      case 'any': {
        const k = this.blockK(n, l, r);
        const block: [number, Choice] | undefined = k === undefined ? undefined : [base + (this.pf[l + k] - this.pf[l]), { block: k }];
        if (k === 0) return block;
        const g = this.greedySet(n, l, r);
        const set: [number, Choice] | undefined = g === undefined ? undefined : [base + g[0], { set: g[1] }];
        if (block && set) return set[0] < block[0] ? set : block;
        return block ?? set;
      }
    }
  }

  /** Twin of `Segments::min_memory`. */
  minMemory(n: number, l: number, r: number): number {
    const len = r - l + 1;
    switch (this.mode) {
      case 'none':
        return this.blockMemory(n, l, r, 0);
      case 'full':
        return this.blockMemory(n, l, r, len);
      case 'block': {
        let m = Infinity;
        for (let k = 0; k <= len; k++) m = Math.min(m, this.blockMemory(n, l, r, k));
        return m;
      }
      case 'any': {
        const w = this.pw[r + 1] - this.pw[l];
        let kept = 0;
        for (let i = l; i <= r; i++) kept += Math.min(this.layers[i].activationBytes, this.layers[i].checkpointBytes);
        return w + n * kept + this.overhead;
      }
    }
  }

  /** The recomputed layers of a choice. */
  recomputed(l: number, choice: Choice): number[] {
    if ('block' in choice) return Array.from({ length: choice.block }, (_, j) => l + j);
    return choice.set.slice();
  }
}
