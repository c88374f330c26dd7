/**
 * The stage DP (exact optimum). TypeScript twin of `crate/core/src/model/partition.rs`; see
 * there for the method.
 *
 * @module
 */
import { ErrorCodes, omnibalError, outOfRange } from '../errors';
import { Segments, type Choice } from './recompute';
import { checkProblem, cutMs, inFlight, planFrom, type PlanOut, type Problem, type StageOut } from './stages';

interface Entry {
  sum: number;
  max: number;
  first: number;
  prev: number;
}

function frontier(cands: Entry[]): Entry[] {
  cands.sort((a, b) => a.max - b.max || a.sum - b.sum || a.first - b.first || a.prev - b.prev);
  const out: Entry[] = [];
  for (const c of cands) if (out.length === 0 || c.sum < out[out.length - 1].sum) out.push(c);
  return out;
}

function minFeasibleMemory(p: Problem, seg: Segments): number {
  const l = p.layers.length;
  let prev = new Array<number>(l).fill(Infinity);
  const firstMin = Math.max(p.firstStageMinLayers, 1);
  for (let r = firstMin - 1; r < l; r++) prev[r] = seg.minMemory(inFlight(p, 0), 0, r);
  for (let s = 1; s < p.stages; s++) {
    const n = inFlight(p, s);
    const cur = new Array<number>(l).fill(Infinity);
    for (let r = s; r < l; r++) {
      for (let first = s; first <= r; first++) {
        const v = Math.max(prev[first - 1], seg.minMemory(n, first, r));
        if (v < cur[r]) cur[r] = v;
      }
    }
    prev = cur;
  }
  return prev[l - 1];
}

/** The infeasibility error, as the core words it (the message states the least memory that fits). */
export function infeasible(message: string): Error {
  return omnibalError(ErrorCodes.INFEASIBLE, message);
}

/** Twin of `upper_bound`. */
function upperBound(p: Problem, tables: Map<number, Float64Array[]>, firstMin: number): number {
  const L = p.layers.length;
  const S = p.stages;
  const m1 = p.microBatches - 1;
  const t0 = tables.get(inFlight(p, 0))!;
  let prev: ([number, number] | undefined)[] = Array.from({ length: L }, (_, r) => {
    const t = r + 1 >= firstMin && r <= L - S ? t0[0][r] : NaN;
    return Number.isNaN(t) ? undefined : [t, t];
  });
  for (let s = 1; s < S; s++) {
    const table = tables.get(inFlight(p, s))!;
    const cur: ([number, number] | undefined)[] = new Array(L).fill(undefined);
    for (let r = s; r <= L - (S - s); r++) {
      for (let l = s; l <= r; l++) {
        const t = table[l][r - l];
        const e = prev[l - 1];
        if (e === undefined || Number.isNaN(t)) continue;
        const cand: [number, number] = [e[0] + t, Math.max(e[1], t)];
        const slot = cur[r];
        if (slot === undefined || cand[0] + m1 * cand[1] < slot[0] + m1 * slot[1]) cur[r] = cand;
      }
    }
    prev = cur;
  }
  const end = prev[L - 1];
  return end === undefined ? Infinity : end[0] + m1 * end[1];
}

/** Twin of `MAX_TABLE_ENTRIES`: most entries the stage DP's time tables may hold (2^28). */
export const MAX_TABLE_ENTRIES = 2 ** 28;

/** Twin of `check_table_size`: refuses a problem whose time tables would hold more than {@link MAX_TABLE_ENTRIES} entries. */
function checkTableSize(p: Problem): void {
  const ns = new Set<number>();
  for (let s = 0; s < p.stages; s++) ns.add(inFlight(p, s));
  const l = p.layers.length;
  const entries = ns.size * ((l * (l + 1)) / 2);
  if (entries > MAX_TABLE_ENTRIES) {
    throw outOfRange('layers', `must be few enough for the stage DP's time tables (at most 2^28 entries; ${l} layers over ${p.stages} stages need ${entries <= Number.MAX_SAFE_INTEGER ? entries : 'more'}): merge layers into blocks, or use fewer stages`);
  }
}

/** Twin of `partition_stages`. */
export function partitionStagesTwin(p: Problem): PlanOut {
  checkProblem(p);
  checkTableSize(p);
  const seg = new Segments(p.layers, p.memoryBytes, p.stageOverheadBytes, p.recompute, p.uniformLayers, p.recomputeGroups);
  const L = p.layers.length;
  const S = p.stages;
  const m1 = p.microBatches - 1;
  const tables = new Map<number, Float64Array[]>();
  for (let s = 0; s < S; s++) {
    const n = inFlight(p, s);
    if (tables.has(n)) continue;
    const table: Float64Array[] = [];
    for (let l = 0; l < L; l++) {
      const row = new Float64Array(L - l);
      for (let r = l; r < L; r++) {
        const c = seg.choose(n, l, r);
        row[r - l] = c === undefined ? NaN : c[0] + cutMs(p, r);
      }
      table.push(row);
    }
    tables.set(n, table);
  }
  const rest = new Float64Array(L + 1);
  for (let r = L - 1; r >= 0; r--) rest[r] = rest[r + 1] + p.layers[r].forwardMs + p.layers[r].backwardMs;
  const firstMin = Math.max(p.firstStageMinLayers, 1);
  const best = upperBound(p, tables, firstMin);
  const limit = best * (1 + 1e-12) + 1e-9;
  const fronts: Entry[][][] = [];
  const t0 = tables.get(inFlight(p, 0))!;
  const lastStart = L - S;
  fronts.push(
    Array.from({ length: L }, (_, r) => {
      const t = r + 1 >= firstMin && r <= lastStart ? t0[0][r] : NaN;
      return Number.isNaN(t) ? [] : [{ sum: t, max: t, first: 0, prev: 0 }];
    }),
  );
  for (let s = 1; s < S; s++) {
    const table = tables.get(inFlight(p, s))!;
    const last = s === S - 1;
    const layerFronts: Entry[][] = Array.from({ length: L }, () => []);
    const rLo = last ? L - 1 : s;
    const rHi = L - (S - s);
    for (let r = rLo; r <= rHi; r++) {
      const cands: Entry[] = [];
      for (let l = s; l <= r; l++) {
        const t = table[l][r - l];
        if (Number.isNaN(t)) continue;
        const prevFront = fronts[s - 1][l - 1];
        for (let k = 0; k < prevFront.length; k++) {
          const e = prevFront[k];
          const sum = e.sum + t;
          const max = Math.max(e.max, t);
          if (sum + rest[r + 1] + m1 * max > limit) continue;
          cands.push({ sum, max, first: l, prev: k });
        }
      }
      layerFronts[r] = frontier(cands);
    }
    fronts.push(layerFronts);
  }
  const end = fronts[S - 1][L - 1];
  let idx = -1;
  for (let i = 0; i < end.length; i++) {
    if (idx < 0) {
      idx = i;
      continue;
    }
    const a = end[i];
    const b = end[idx];
    const ga = a.sum + m1 * a.max;
    const gb = b.sum + m1 * b.max;
    if (ga < gb || (ga === gb && a.max < b.max)) idx = i;
  }
  if (idx < 0) {
    const need = minFeasibleMemory(p, seg);
    throw infeasible(
      Number.isFinite(need)
        ? `no plan fits in ${p.memoryBytes} bytes per GPU; the least memory that fits is ${Math.ceil(need)} bytes (${(Math.ceil((need / 2 ** 30) * 100) / 100).toFixed(2)} GiB, rounded up)`
        : 'no plan satisfies the constraints',
    );
  }
  const bottleneck = end[idx].max;
  const bounds: [number, number][] = new Array(S);
  let r = L - 1;
  for (let s = S - 1; s >= 0; s--) {
    const e = fronts[s][r][idx];
    bounds[s] = [e.first, r];
    idx = e.prev;
    r = e.first - 1;
  }
  const optimum = buildStages(p, seg, bounds)!;
  const even = balance(p, tables, firstMin, bottleneck);
  if (even && even.some((b, s) => b[0] !== bounds[s][0] || b[1] !== bounds[s][1])) {
    const plan = buildStages(p, seg, even)!;
    if (plan.iterationMs <= optimum.iterationMs * (1 + 1e-12)) return plan;
  }
  return optimum;
}

/** Twin of `balance`: every stage at most `cap`, least (sum, sum of squares) lexicographically. */
function balance(p: Problem, tables: Map<number, Float64Array[]>, firstMin: number, cap: number): [number, number][] | undefined {
  const L = p.layers.length;
  const S = p.stages;
  const best: ([number, number, number] | undefined)[][] = [];
  const t0 = tables.get(inFlight(p, 0))!;
  best.push(
    Array.from({ length: L }, (_, r) => {
      const t = r + 1 >= firstMin && r <= L - S ? t0[0][r] : NaN;
      return !Number.isNaN(t) && t <= cap ? [t, t * t, 0] : undefined;
    }),
  );
  for (let s = 1; s < S; s++) {
    const table = tables.get(inFlight(p, s))!;
    const cur: ([number, number, number] | undefined)[] = new Array(L).fill(undefined);
    const rLo = s === S - 1 ? L - 1 : s;
    for (let r = rLo; r <= L - (S - s); r++) {
      for (let l = s; l <= r; l++) {
        const t = table[l][r - l];
        if (Number.isNaN(t) || t > cap) continue;
        const prev = best[s - 1][l - 1];
        if (prev === undefined) continue;
        const cand: [number, number, number] = [prev[0] + t, prev[1] + t * t, l];
        const slot = cur[r];
        let better = slot === undefined;
        if (slot !== undefined) {
          const tol = 1e-12 * Math.abs(slot[0]);
          better = cand[0] < slot[0] - tol || (cand[0] <= slot[0] + tol && cand[1] < slot[1]);
        }
        if (better) cur[r] = cand;
      }
    }
    best.push(cur);
  }
  if (best[S - 1][L - 1] === undefined) return undefined;
  const bounds: [number, number][] = new Array(S);
  let r = L - 1;
  for (let s = S - 1; s >= 0; s--) {
    const first = best[s][r]![2];
    bounds[s] = [first, r];
    r = first - 1;
  }
  return bounds;
}

/** Twin of `plan_for_split`. */
export function planForSplitTwin(p: Problem, ends: ArrayLike<number>): PlanOut {
  checkProblem(p);
  const L = p.layers.length;
  let increasing = true;
  for (let i = 1; i < ends.length; i++) if (ends[i - 1] >= ends[i]) increasing = false;
  if (ends.length !== p.stages || !increasing || ends.length === 0 || ends[ends.length - 1] !== L - 1) {
    throw outOfRange('lastLayers', `must be ${p.stages} increasing layer indices ending at the last layer`);
  }
  const seg = new Segments(p.layers, p.memoryBytes, p.stageOverheadBytes, p.recompute, p.uniformLayers, p.recomputeGroups);
  const bounds: [number, number][] = [];
  let first = 0;
  for (let i = 0; i < ends.length; i++) {
    bounds.push([first, ends[i]]);
    first = ends[i] + 1;
  }
  const plan = buildStages(p, seg, bounds);
  if (!plan) throw infeasible('this split does not fit in memory with any recomputation');
  return plan;
}

function buildStages(p: Problem, seg: Segments, bounds: [number, number][]): PlanOut | undefined {
  const S = bounds.length;
  const out: StageOut[] = [];
  for (let s = 0; s < S; s++) {
    const [l, rr] = bounds[s];
    const n = inFlight(p, s);
    const chosen = seg.choose(n, l, rr);
    if (!chosen) return undefined;
    const [time, choice] = chosen as [number, Choice];
    let memory: number;
    if ('block' in choice) memory = seg.blockMemory(n, l, rr, choice.block);
    else if ('blockSelective' in choice) memory = seg.selectiveMemory(n, l, rr, choice.blockSelective);
    else {
      let kept = 0;
      let w = 0;
      for (let i = l; i <= rr; i++) {
        const x = p.layers[i];
        w += x.staticBytes;
        kept += choice.set.includes(i) ? x.checkpointBytes : x.activationBytes;
      }
      memory = w + n * kept + p.stageOverheadBytes;
    }
    out.push({
      firstLayer: l,
      lastLayer: rr,
      recomputed: seg.recomputed(l, choice),
      selective: seg.selective(l, rr, choice),
      timeMs: time + (s + 1 < S ? cutMs(p, rr) : 0),
      memoryBytes: memory,
      inFlight: n,
    });
  }
  return planFrom(out, p.microBatches);
}
