/**
 * Per-stage recomputation. TypeScript twin of `crate/core/src/model/recompute.rs`.
 *
 * @module
 */
import type { Layer, Recompute } from './stages';

/** What a stage recomputes: the first `k` layers, or a set. */
export type Choice = { block: number } | { blockSelective: number } | { set: number[] };

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
  readonly pf: Float64Array;
  readonly pb: Float64Array;
  readonly pw: Float64Array;
  readonly pa: Float64Array;
  readonly pc: Float64Array;
  readonly ps: Float64Array;
  readonly pe: Float64Array;
  private readonly monotone: boolean;
  private readonly monotoneSel: boolean;
  private readonly group: number[];
  private readonly runEnd: number[];

  constructor(
    private readonly layers: Layer[],
    private readonly capacity: number,
    private readonly overhead: number,
    private readonly mode: Recompute,
    private readonly uniformLayers = 0,
    groups: number[] = [],
  ) {
    this.pf = prefix(layers, (x) => x.forwardMs);
    this.pb = prefix(layers, (x) => x.backwardMs);
    this.pw = prefix(layers, (x) => x.staticBytes);
    this.pa = prefix(layers, (x) => x.activationBytes);
    this.pc = prefix(layers, (x) => x.checkpointBytes);
    this.ps = prefix(layers, (x) => x.selectiveBytes);
    this.pe = prefix(layers, (x) => x.selectiveMs);
    this.monotone = layers.every((x) => x.checkpointBytes <= x.activationBytes);
    this.monotoneSel = layers.every((x) => x.checkpointBytes <= x.selectiveBytes);
    const l = layers.length;
    this.group = groups.length === 0 ? new Array<number>(l).fill(1) : groups.slice();
    this.runEnd = new Array<number>(l).fill(l);
    if (groups.length !== 0) for (let i = l - 1; i >= 0; i--) this.runEnd[i] = i + 1 < l && groups[i + 1] === groups[i] ? this.runEnd[i + 1] : i + 1;
  }

  /** Twin of `Segments::uniform_ranges`. */
  uniformRanges(l: number, r: number, k: number): [number, number][] {
    const out: [number, number][] = [];
    let i = l;
    while (i <= r) {
      const start = i;
      const end = Math.min(this.runEnd[i], r + 1);
      i = end;
      const g = this.group[start];
      const stop = g === 0 ? start : g === 1 ? Math.min(start + k, end) : end;
      if (stop > start) out.push([start, stop]);
    }
    return out;
  }

  /** Twin of `Segments::uniform_cost`. */
  private uniformCost(n: number, l: number, r: number, k: number): [number, number] {
    let extra = 0;
    let kept = this.pa[r + 1] - this.pa[l];
    for (const [a, b] of this.uniformRanges(l, r, k)) {
      extra += this.pf[b] - this.pf[a];
      kept += this.pc[b] - this.pc[a] - (this.pa[b] - this.pa[a]);
    }
    const w = this.pw[r + 1] - this.pw[l];
    return [this.baseTime(l, r) + extra, w + n * kept + this.overhead];
  }

  baseTime(l: number, r: number): number {
    return this.pf[r + 1] - this.pf[l] + (this.pb[r + 1] - this.pb[l]);
  }

  blockMemory(n: number, l: number, r: number, k: number): number {
    const w = this.pw[r + 1] - this.pw[l];
    const kept = this.pc[l + k] - this.pc[l] + (this.pa[r + 1] - this.pa[l + k]);
    return w + n * kept + this.overhead;
  }

  /** Twin of `Segments::selective_memory`. */
  selectiveMemory(n: number, l: number, r: number, k: number): number {
    const w = this.pw[r + 1] - this.pw[l];
    const kept = this.pc[l + k] - this.pc[l] + (this.ps[r + 1] - this.ps[l + k]);
    return w + n * kept + this.overhead;
  }

  private selectiveTime(l: number, r: number, k: number): number {
    return this.baseTime(l, r) + (this.pf[l + k] - this.pf[l]) + (this.pe[r + 1] - this.pe[l + k]);
  }

  private blockK(n: number, l: number, r: number): number | undefined {
    return this.leastK(l, r, this.monotone, (k) => this.blockMemory(n, l, r, k) <= this.capacity);
  }

  private selectiveK(n: number, l: number, r: number): number | undefined {
    return this.leastK(l, r, this.monotoneSel, (k) => this.selectiveMemory(n, l, r, k) <= this.capacity);
  }

  private leastK(l: number, r: number, monotone: boolean, fits: (k: number) => boolean): number | undefined {
    const len = r - l + 1;
    if (fits(0)) return 0;
    if (monotone) {
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
      case 'uniform': {
        const [time, memory] = this.uniformCost(n, l, r, this.uniformLayers);
        if (!(memory <= this.capacity)) return undefined;
        const set: number[] = [];
        for (const [a, b] of this.uniformRanges(l, r, this.uniformLayers)) for (let i = a; i < b; i++) set.push(i);
        return [time, { set }];
      }
      case 'selective-all':
        return this.selectiveMemory(n, l, r, 0) <= this.capacity ? [this.selectiveTime(l, r, 0), { blockSelective: 0 }] : undefined;
      case 'selective': {
        const k = this.blockK(n, l, r);
        const block: [number, Choice] | undefined = k === undefined ? undefined : [base + (this.pf[l + k] - this.pf[l]), { block: k }];
        const j = this.selectiveK(n, l, r);
        const sel: [number, Choice] | undefined = j === undefined ? undefined : [this.selectiveTime(l, r, j), { blockSelective: j }];
        if (block && sel) return sel[0] < block[0] ? sel : block;
        return block ?? sel;
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
      case 'uniform':
        return this.uniformCost(n, l, r, this.uniformLayers)[1];
      case 'selective-all':
        return this.selectiveMemory(n, l, r, 0);
      case 'selective': {
        let m = Infinity;
        for (let k = 0; k <= len; k++) m = Math.min(m, Math.min(this.blockMemory(n, l, r, k), this.selectiveMemory(n, l, r, k)));
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
    if ('blockSelective' in choice) return Array.from({ length: choice.blockSelective }, (_, j) => l + j);
    return choice.set.slice();
  }

  /** Twin of `Segments::selective`. */
  selective(l: number, r: number, choice: Choice): number[] {
    if (!('blockSelective' in choice)) return [];
    return Array.from({ length: r - l + 1 - choice.blockSelective }, (_, j) => l + choice.blockSelective + j);
  }
}
