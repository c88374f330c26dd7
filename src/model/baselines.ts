/**
 * Baseline splits and recomputation. TypeScript twin of `crate/core/src/model/baselines.rs`.
 *
 * @module
 */
import { outOfRange, unknownOption } from '../errors';
import { infeasible } from './partition';
import { evaluatePlan, type PlanOut, type Problem } from './stages';

/** How a baseline splits the stack. */
export type Split = 'uniform' | 'parameters' | 'balanced' | 'anchor';

/** Every baseline split. */
export const SPLITS: readonly Split[] = ['uniform', 'parameters', 'balanced', 'anchor'];

/** How a baseline recomputes. */
export type BaselineRecompute = 'none' | 'full' | 'uniform';

/** Parses a split name. */
export function parseSplit(name: string): Split {
  if ((SPLITS as readonly string[]).includes(name)) return name as Split;
  throw unknownOption('method', name, SPLITS);
}

function prefix(w: ArrayLike<number>): number[] {
  const pre = [0];
  for (let i = 0; i < w.length; i++) pre.push(pre[i] + w[i]);
  return pre;
}

function minMaxSplit(w: ArrayLike<number>, s: number, firstMin: number): number[] {
  const l = w.length;
  const pre = prefix(w);
  const best = Array.from({ length: s }, () => new Array<number>(l).fill(Infinity));
  const from = Array.from({ length: s }, () => new Array<number>(l).fill(0));
  for (let r = 0; r < l; r++) best[0][r] = r + 1 < firstMin ? Infinity : pre[r + 1];
  for (let k = 1; k < s; k++) {
    for (let r = k; r < l; r++) {
      for (let first = k; first <= r; first++) {
        const v = Math.max(best[k - 1][first - 1], pre[r + 1] - pre[first]);
        if (v < best[k][r]) {
          best[k][r] = v;
          from[k][r] = first;
        }
      }
    }
  }
  const ends = new Array<number>(s).fill(0);
  let r = l - 1;
  for (let k = s - 1; k >= 0; k--) {
    ends[k] = r;
    if (k > 0) r = from[k][r] - 1;
  }
  return ends;
}

function minSpreadSplit(w: number[], s: number, firstMin: number): number[] {
  interface E {
    max: number;
    min: number;
    first: number;
    prev: number;
  }
  const l = w.length;
  const pre = prefix(w);
  const keep = (c: E[]): E[] => {
    c.sort((a, b) => a.max - b.max || b.min - a.min || a.first - b.first || a.prev - b.prev);
    const out: E[] = [];
    for (const e of c) if (out.length === 0 || e.min > out[out.length - 1].min) out.push(e);
    return out;
  };
  const fronts: E[][][] = [Array.from({ length: l }, (_, r) => (r + 1 < firstMin ? [] : [{ max: pre[r + 1], min: pre[r + 1], first: 0, prev: 0 }]))];
  for (let k = 1; k < s; k++) {
    const layer: E[][] = Array.from({ length: l }, () => []);
    for (let r = k; r < l; r++) {
      const cands: E[] = [];
      for (let first = k; first <= r; first++) {
        const t = pre[r + 1] - pre[first];
        fronts[k - 1][first - 1].forEach((e, j) => cands.push({ max: Math.max(e.max, t), min: Math.min(e.min, t), first, prev: j }));
      }
      layer[r] = keep(cands);
    }
    fronts.push(layer);
  }
  const end = fronts[s - 1][l - 1];
  let idx = 0;
  end.forEach((e, j) => {
    const b = end[idx];
    if (e.max - e.min < b.max - b.min || (e.max - e.min === b.max - b.min && e.max < b.max)) idx = j;
  });
  const ends = new Array<number>(s).fill(0);
  let r = l - 1;
  for (let k = s - 1; k >= 0; k--) {
    const e = fronts[k][r][idx];
    ends[k] = r;
    idx = e.prev;
    r = e.first - 1;
  }
  return ends;
}

/** Twin of `MAX_SPLIT_ENTRIES`: most (stage, layer range) entries the exact splits may search (2^26). */
export const MAX_SPLIT_ENTRIES = 2 ** 26;

/** Twin of `check_split_work`: refuses an exact split (`parameters`, `balanced`) of more than {@link MAX_SPLIT_ENTRIES} entries. */
export function checkSplitWork(method: Split, p: Problem): void {
  if (method !== 'parameters' && method !== 'balanced') return;
  const l = p.layers.length;
  const entries = p.stages * ((l * (l + 1)) / 2);
  if (entries > MAX_SPLIT_ENTRIES) {
    throw outOfRange(
      'layers',
      `must be few enough for the ${method} split's search (at most 2^26 entries, stages x layer ranges; ${l} layers over ${p.stages} stages need ${entries <= Number.MAX_SAFE_INTEGER ? entries : 'more'}): merge layers into blocks, use fewer stages, or the uniform or anchor split`,
    );
  }
}

/** Twin of `split_ends`: the first stage holds at least `p.firstStageMinLayers` layers. */
export function splitEnds(method: Split, p: Problem, params: ArrayLike<number>): number[] {
  const l = p.layers.length;
  const s = p.stages;
  const pinned = Math.min(p.firstStageMinLayers, l);
  const time = p.layers.map((x) => x.forwardMs + x.backwardMs);
  switch (method) {
    case 'uniform': {
      // Equal counts of the layers after the pinned prefix, which stage 0 holds too.
      const rest = l - pinned;
      if (rest < s) return Array.from({ length: s }, (_, k) => pinned - 1 + k);
      const base = Math.floor(rest / s);
      const extra = rest % s;
      const ends: number[] = [];
      let end = pinned;
      for (let k = 0; k < s; k++) {
        end += base + (k < extra ? 1 : 0);
        ends.push(end - 1);
      }
      return ends;
    }
    case 'parameters':
      return minMaxSplit(params, s, pinned);
    case 'balanced':
      return minSpreadSplit(time, s, pinned);
    case 'anchor': {
      let total = 0;
      for (const t of time) total += t;
      const cum: number[] = [];
      let acc = 0;
      for (const t of time) {
        acc += t;
        cum.push(acc);
      }
      const ends: number[] = [];
      let lo = Math.max(pinned - 1, 0); // the first cut keeps the prefix
      for (let k = 1; k < s; k++) {
        const target = (total * k) / s;
        const hi = l - 1 - (s - k);
        let best = lo;
        for (let i = lo; i <= hi; i++) if (Math.abs(cum[i] - target) < Math.abs(cum[best] - target)) best = i;
        ends.push(best);
        lo = best + 1;
      }
      ends.push(l - 1);
      return ends;
    }
  }
}

/** Twin of `baseline_plan`. */
export function baselinePlan(p: Problem, ends: number[], rec: BaselineRecompute): PlanOut {
  const starts = [0, ...ends.slice(0, -1).map((e) => e + 1)];
  const recomputed = (k: number) => starts.map((a, s) => Array.from({ length: Math.min(k, ends[s] - a + 1) }, (_, j) => a + j));
  const longest = Math.max(...starts.map((a, s) => ends[s] - a + 1));
  const fits = (plan: PlanOut) => plan.stages.every((s) => s.memoryBytes <= p.memoryBytes);
  let plan: PlanOut;
  if (rec === 'none') plan = evaluatePlan(p, ends, recomputed(0));
  else if (rec === 'full') plan = evaluatePlan(p, ends, recomputed(longest));
  else {
    let chosen: PlanOut | undefined;
    for (let k = 0; k <= longest; k++) {
      const candidate = evaluatePlan(p, ends, recomputed(k));
      if (fits(candidate)) {
        chosen = candidate;
        break;
      }
    }
    plan = chosen ?? evaluatePlan(p, ends, recomputed(longest));
  }
  if (!fits(plan)) {
    let worst = 0;
    plan.stages.forEach((s, i) => {
      if (s.memoryBytes > plan.stages[worst].memoryBytes) worst = i;
    });
    const peak = plan.stages[worst].memoryBytes;
    throw infeasible(`this baseline does not fit: stage ${worst} needs ${Math.ceil(peak)} bytes, ${Math.ceil(peak - p.memoryBytes)} more than the ${p.memoryBytes} per GPU`);
  }
  return plan;
}
