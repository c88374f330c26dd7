/**
 * The interleaved chunk planner. TypeScript twin of `crate/core/src/model/chunks.rs`; see there
 * for the method and its guarantee (the objective is the simulated step, scored with
 * {@link ChunkReplayTwin}, the twin simulator's replay). Same steps, same order, same
 * floating-point operations.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { ChunkReplayTwin, chunkStatesTwin } from '../simulate/simulate';
import { infeasible } from './partition';
import { checkProblem, cutMs, type Problem } from './stages';
import { Segments } from './recompute';

/** Twin of `chunks::NODE_BUDGET`. */
export const NODE_BUDGET = 200_000;

/** Twin of `chunks::SIM_OPS_PER_NODE`. */
const SIM_OPS_PER_NODE = 16;

/** Twin of `chunks::CACHE_LIMIT`. */
const CACHE_LIMIT = 1 << 18;

/** One model chunk (twin of `chunks::Chunk`). */
export interface ChunkOut {
  firstLayer: number;
  lastLayer: number;
  stage: number;
  recomputed: number[];
  selective: number[];
  timeMs: number;
  held: number;
}

/** One device (twin of `chunks::ChunkStage`). */
export interface ChunkStageOut {
  timeMs: number;
  memoryBytes: number;
  inFlight: number;
}

/** An interleaved plan (twin of `chunks::ChunkPlan`). */
export interface ChunkPlanOut {
  chunks: ChunkOut[];
  stages: ChunkStageOut[];
  iterationMs: number;
  bottleneckMs: number;
  optimal: boolean;
  lowerBoundMs: number;
}

interface Opt {
  extra: number;
  kept: number;
  kind: number;
  k: number;
}

type Score = { ok: true; t: number; sq: number } | { ok: false; overflow: number };


class Ctx {
  readonly stages: number;
  readonly kCount: number;
  /** The layers' prefix sums and recompute roles, as the contiguous planner has them. */
  readonly seg: Segments;
  readonly states: number[][][];
  /** Memos of `options` and `stage` (twin of the Rust memos; results never depend on them). */
  private readonly optionsMemo = new Map<number, Opt[]>();
  private readonly stageMemo = new Map<string, [number, Opt[]] | undefined>();
  /** The simulator's replay of this schedule, scoring full chunkings. */
  private readonly replay: ChunkReplayTwin;
  /** Simulations run so far. */
  sims = 0;

  constructor(
    readonly p: Problem,
    readonly v: number,
  ) {
    this.stages = p.stages;
    this.kCount = v * p.stages;
    this.seg = new Segments(p.layers, p.memoryBytes, p.stageOverheadBytes, p.recompute, 0, p.recomputeGroups);
    this.states = [];
    for (let s = 0; s < p.stages; s++) this.states.push(chunkStatesTwin('interleaved', v, p.stages, s, p.microBatches));
    this.replay = new ChunkReplayTwin(v, p.stages, p.microBatches);
  }

  base(l: number, r: number): number {
    return this.seg.pf[r + 1] - this.seg.pf[l] + (this.seg.pb[r + 1] - this.seg.pb[l]);
  }

  cut(r: number): number {
    return this.stages > 1 ? cutMs(this.p, r) : 0;
  }

  block(l: number, r: number, k: number): Opt {
    return { extra: this.seg.pf[l + k] - this.seg.pf[l], kept: this.seg.pc[l + k] - this.seg.pc[l] + (this.seg.pa[r + 1] - this.seg.pa[l + k]), kind: 0, k };
  }

  selective(l: number, r: number, k: number): Opt {
    return {
      extra: this.seg.pf[l + k] - this.seg.pf[l] + (this.seg.pe[r + 1] - this.seg.pe[l + k]),
      kept: this.seg.pc[l + k] - this.seg.pc[l] + (this.seg.ps[r + 1] - this.seg.ps[l + k]),
      kind: 1,
      k,
    };
  }

  options(l: number, r: number): Opt[] {
    const key = l * this.p.layers.length + r;
    const hit = this.optionsMemo.get(key);
    if (hit !== undefined) return hit;
    const o = this.optionsUncached(l, r);
    if (this.optionsMemo.size >= CACHE_LIMIT) this.optionsMemo.clear();
    this.optionsMemo.set(key, o);
    return o;
  }

  optionsUncached(l: number, r: number): Opt[] {
    const len = r - l + 1;
    let all: Opt[];
    const mode = this.p.recompute;
    if (mode === 'none') all = [this.block(l, r, 0)];
    else if (mode === 'full') all = [this.block(l, r, len)];
    else if (mode === 'block' || mode === 'any') all = Array.from({ length: len + 1 }, (_, k) => this.block(l, r, k));
    else if (mode === 'selective') all = Array.from({ length: len + 1 }, (_, k) => [this.block(l, r, k), this.selective(l, r, k)]).flat();
    else if (mode === 'selective-all') all = [this.selective(l, r, 0)];
    else {
      const k = this.p.uniformLayers;
      let extra = 0;
      let kept = this.seg.pa[r + 1] - this.seg.pa[l];
      for (const [a, b] of this.seg.uniformRanges(l, r, k)) {
        extra += this.seg.pf[b] - this.seg.pf[a];
        kept += this.seg.pc[b] - this.seg.pc[a] - (this.seg.pa[b] - this.seg.pa[a]);
      }
      all = [{ extra, kept, kind: 2, k }];
    }
    all.sort((a, b) => a.extra - b.extra || a.kept - b.kept || a.kind - b.kind || a.k - b.k);
    const out: Opt[] = [];
    for (const o of all) if (out.length === 0 || o.kept < out[out.length - 1].kept) out.push(o);
    return out;
  }

  peak(s: number, kept: number[]): [number, number] {
    let best = -Infinity;
    let at = 0;
    const states = this.states[s];
    for (let i = 0; i < states.length; i++) {
      const st = states[i];
      let bytes = 0;
      for (let c = 0; c < st.length; c++) bytes += st[c] * kept[c];
      if (bytes > best) {
        best = bytes;
        at = i;
      }
    }
    return [best, at];
  }

  stage(s: number, ranges: [number, number][]): [number, Opt[]] | undefined {
    const key = `${s}:${ranges.join(',')}`;
    if (this.stageMemo.has(key)) return this.stageMemo.get(key);
    const out = this.stageUncached(s, ranges);
    if (this.stageMemo.size >= CACHE_LIMIT) this.stageMemo.clear();
    this.stageMemo.set(key, out);
    return out;
  }

  stageUncached(s: number, ranges: [number, number][]): [number, Opt[]] | undefined {
    let w = 0;
    for (const [l, r] of ranges) w += this.seg.pw[r + 1] - this.seg.pw[l];
    const budget = this.p.memoryBytes - this.p.stageOverheadBytes - w;
    const opts = ranges.map(([l, r]) => this.options(l, r));
    const pick = new Array<number>(this.v).fill(0);
    const kept = new Array<number>(this.v).fill(0);
    const best: { extra: number; idx: number[] | undefined } = { extra: Infinity, idx: undefined };
    this.search(s, opts, budget, 0, 0, pick, kept, best);
    if (best.idx === undefined) return undefined;
    const choice = best.idx.map((i, c) => opts[c][i]);
    let time = 0;
    ranges.forEach(([l, r], c) => (time += this.chunkTime(l, r, choice[c])));
    return [time, choice];
  }

  chunkTime(l: number, r: number, o: Opt): number {
    return this.base(l, r) + o.extra + this.cut(r);
  }

  search(s: number, opts: Opt[][], budget: number, c: number, extra: number, pick: number[], kept: number[], best: { extra: number; idx: number[] | undefined }): void {
    const last = c + 1 === this.v;
    for (let d = c + 1; d < opts.length; d++) kept[d] = opts[d][opts[d].length - 1].kept;
    if (last) {
      const list = opts[c];
      const fits = (i: number) => {
        kept[c] = list[i].kept;
        return this.peak(s, kept)[0] <= budget;
      };
      if (!fits(list.length - 1)) return;
      let lo = 0;
      let hi = list.length - 1;
      if (fits(0)) hi = 0;
      else {
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (fits(mid)) hi = mid;
          else lo = mid;
        }
      }
      const total = extra + list[hi].extra;
      if (best.idx === undefined || total < best.extra) {
        pick[c] = hi;
        best.extra = total;
        best.idx = pick.slice();
      }
      return;
    }
    for (let i = 0; i < opts[c].length; i++) {
      const o = opts[c][i];
      const total = extra + o.extra;
      if (best.idx !== undefined && total >= best.extra) break;
      kept[c] = o.kept;
      if (this.peak(s, kept)[0] > budget) continue;
      pick[c] = i;
      this.search(s, opts, budget, c + 1, total, pick, kept, best);
      for (let d = c + 1; d < opts.length; d++) kept[d] = opts[d][opts[d].length - 1].kept;
    }
  }

  /** Twin of `Ctx::min_memory`: a lower bound on stage `s`'s memory given its chunks among `0..=c`. */
  minMemory(ends: number[], s: number, c: number): number {
    let w = 0;
    const kept: number[] = new Array(this.v).fill(0);
    for (let u = s; u <= c; u += this.stages) {
      const first = u === 0 ? 0 : ends[u - 1] + 1;
      w += this.seg.pw[ends[u] + 1] - this.seg.pw[first];
      const o = this.options(first, ends[u]);
      kept[Math.floor(u / this.stages)] = o[o.length - 1].kept;
    }
    return w + this.peak(s, kept)[0] + this.p.stageOverheadBytes;
  }

  rangesOf(ends: number[], s: number): [number, number][] {
    return Array.from({ length: this.v }, (_, j) => {
      const c = j * this.stages + s;
      return [c === 0 ? 0 : ends[c - 1] + 1, ends[c]] as [number, number];
    });
  }

  /** Twin of `Ctx::score`: with a bound above `cap` standing in for the step. */
  score(ends: number[], cap: number): Score {
    let sq = 0;
    let overflow = 0;
    for (let s = 0; s < this.stages; s++) {
      const ranges = this.rangesOf(ends, s);
      const st = this.stage(s, ranges);
      if (st !== undefined) sq += st[0] * st[0];
      else overflow += Math.max(this.minMemory(ends, s, this.kCount - 1) - this.p.memoryBytes, 0);
    }
    if (overflow > 0) return { ok: false, overflow };
    return { ok: true, t: this.stepMs(ends, cap), sq };
  }

  /** Twin of `Ctx::step_input`. */
  stepInput(ends: number[]): [Float64Array, Float64Array, Float64Array] {
    const fwd = new Float64Array(this.kCount);
    const bwd = new Float64Array(this.kCount);
    const p2p = new Float64Array(Math.max(this.stages - 1, 0));
    for (let s = 0; s < this.stages; s++) {
      const ranges = this.rangesOf(ends, s);
      this.stageInput(s, ranges, this.stage(s, ranges)![1], fwd, bwd, p2p);
    }
    return [fwd, bwd, p2p];
  }

  /** Twin of `Ctx::stage_input`. */
  stageInput(s: number, ranges: [number, number][], choice: Opt[], fwd: Float64Array, bwd: Float64Array, p2p: Float64Array): void {
    let cuts = 0;
    ranges.forEach(([l, r], j) => {
      const u = j * this.stages + s;
      fwd[u] = this.seg.pf[r + 1] - this.seg.pf[l];
      bwd[u] = this.seg.pb[r + 1] - this.seg.pb[l] + choice[j].extra;
      cuts += this.cut(r);
    });
    if (s + 1 < this.stages) p2p[s] = cuts / this.v;
  }

  /** Twin of `Ctx::step_bound`. */
  stepBound(fwd: Float64Array, bwd: Float64Array): number {
    const m = this.p.microBatches;
    let before = 0;
    let best = 0;
    for (let s = 0; s < this.stages; s++) {
      let busy = 0;
      for (let j = 0; j < this.v; j++) {
        const u = j * this.stages + s;
        busy += fwd[u] + bwd[u];
      }
      best = Math.max(best, before + m * busy);
      before += fwd[s] + bwd[s];
    }
    let path = 0;
    for (let u = 0; u < this.kCount; u++) path += fwd[u] + bwd[u];
    return Math.max(best, path);
  }

  /** Twin of `Ctx::step_ms`. */
  stepMs(ends: number[], cap: number): number {
    const [fwd, bwd, p2p] = this.stepInput(ends);
    return this.stepOf(fwd, bwd, p2p, cap);
  }

  /** Twin of `Ctx::step_of`. */
  stepOf(fwd: Float64Array, bwd: Float64Array, p2p: Float64Array, cap: number): number {
    const bound = this.stepBound(fwd, bwd);
    if (bound > cap) return bound;
    this.sims++;
    return this.replay.stepMs(fwd, bwd, p2p);
  }

  minMaxChunks(firstMin: number): number[] {
    const L = this.p.layers.length;
    const K = this.kCount;
    const best = Array.from({ length: K }, () => new Float64Array(L).fill(Infinity));
    const from = Array.from({ length: K }, () => new Array<number>(L).fill(0));
    for (let r = firstMin - 1; r <= L - K; r++) best[0][r] = this.base(0, r) + this.cut(r);
    for (let c = 1; c < K; c++) {
      for (let r = c; r <= L - (K - c); r++) {
        for (let l = c; l <= r; l++) {
          const prev = best[c - 1][l - 1];
          if (prev === Infinity) continue;
          const t = Math.max(prev, this.base(l, r) + this.cut(r));
          if (t < best[c][r]) {
            best[c][r] = t;
            from[c][r] = l;
          }
        }
      }
    }
    const ends = new Array<number>(K).fill(0);
    let r = L - 1;
    for (let c = K - 1; c >= 0; c--) {
      ends[c] = r;
      if (c > 0) r = from[c][r] - 1;
    }
    return ends;
  }

  /** Twin of `Ctx::fill`. */
  fill(cap: number, firstMin: number): number[] | undefined {
    const L = this.p.layers.length;
    const K = this.kCount;
    const { stages, v } = this;
    const ends = new Array<number>(K).fill(0);
    const bare = new Float64Array(stages);
    let start = 0;
    for (let c = 0; c < K; c++) {
      const s = c % stages;
      const round = Math.floor(c / stages);
      const limit = ((round + 1) * cap) / v;
      const rLo = c === 0 ? firstMin - 1 : start;
      const rHi = L - (K - c);
      if (rLo > rHi) return undefined;
      const finishing = round + 1 === v;
      const fits = (r: number) => {
        if (finishing) {
          ends[c] = r;
          const st = this.stage(s, this.rangesOf(ends, s));
          return st !== undefined && st[0] <= limit;
        }
        return bare[s] + this.base(start, r) + this.cut(r) <= limit;
      };
      let end: number | undefined;
      if (c + 1 === K) {
        if (fits(L - 1)) end = L - 1;
      } else {
        for (let r = rLo; r <= rHi; r++) {
          if (fits(r)) end = r;
          else if (end !== undefined) break;
        }
      }
      if (end === undefined) return undefined;
      ends[c] = end;
      bare[s] += this.base(start, end) + this.cut(end);
      start = end + 1;
    }
    return ends;
  }

  /** Twin of `Ctx::scan_fill`. */
  scanFill(firstMin: number, total: number): number[] | undefined {
    const lb = total / this.stages;
    let best: [number, number[]] | undefined;
    let left: number | undefined;
    for (let i = 0; i <= 256; i++) {
      if (left === 0) break;
      const cap = lb * (1 + i / 256);
      const ends = this.fill(cap, firstMin);
      if (ends !== undefined) {
        const sc = this.score(ends, best === undefined ? Infinity : best[0]);
        if (sc.ok) {
          if (best === undefined || sc.t < best[0]) best = [sc.t, ends];
          left = left ?? 9;
        }
      }
      if (left !== undefined) left--;
    }
    return best?.[1];
  }

  /** Twin of `Ctx::local_search`. */
  localSearch(ends: number[], firstMin: number): Score {
    let cur = this.score(ends, Infinity);
    const better = (a: Score, b: Score) => {
      if (a.ok && b.ok) return a.t < b.t || (a.t === b.t && a.sq < b.sq);
      if (a.ok !== b.ok) return a.ok;
      return !a.ok && !b.ok && a.overflow < b.overflow;
    };
    const L = this.p.layers.length;
    const K = this.kCount;
    const trial = ends.slice();
    for (let round = 0; round < 256; round++) {
      let improved = false;
      for (let a = 0; a < K - 1; a++) {
        for (let b = a; b < K - 1; b++) {
          for (const delta of [-1, 1, -2, 2]) {
            for (let i = 0; i < K; i++) trial[i] = ends[i];
            let ok = true;
            for (let i = a; i <= b; i++) {
              const x = trial[i] + delta;
              if (x < 0) {
                ok = false;
                break;
              }
              trial[i] = x;
            }
            if (ok) ok = trial[0] + 1 >= firstMin && trial[K - 2] + 1 < L;
            for (let i = 1; ok && i < K; i++) if (trial[i - 1] >= trial[i]) ok = false;
            if (!ok) continue;
            // Only a step at most the current one can be better.
            const next = this.score(trial, cur.ok ? cur.t : Infinity);
            if (better(next, cur)) {
              cur = next;
              for (let i = 0; i < K; i++) ends[i] = trial[i];
              improved = true;
            }
          }
        }
      }
      if (!improved) break;
    }
    return cur;
  }
}

class Search {
  readonly ends: number[];
  /** Busy time per micro-batch of each finished stage (twin of `Search::exact`). */
  readonly exact: Float64Array;
  /** Twin of `Search::placed`: the bare time of stage `c mod P`'s chunks up to chunk `c`. */
  readonly placed: Float64Array;
  /** Twin of `Search::fwd` / `bwd` / `p2p`. */
  readonly fwd: Float64Array;
  readonly bwd: Float64Array;
  readonly p2p: Float64Array;
  best = Infinity;
  bestEnds: number[] | undefined = undefined;
  nodes = 0;
  exhausted = false;
  cutHere = false;
  frontier = Infinity;

  constructor(
    readonly ctx: Ctx,
    readonly rest: Float64Array,
    readonly firstMin: number,
  ) {
    this.ends = new Array<number>(ctx.kCount).fill(0);
    this.exact = new Float64Array(ctx.stages);
    this.placed = new Float64Array(ctx.kCount);
    this.fwd = new Float64Array(ctx.kCount);
    this.bwd = new Float64Array(ctx.kCount);
    this.p2p = new Float64Array(Math.max(ctx.stages - 1, 0));
  }

  run(c: number, start: number): void {
    const ctx = this.ctx;
    this.nodes++;
    if (this.nodes > NODE_BUDGET) {
      this.exhausted = true;
      this.cutHere = true;
      return;
    }
    const L = ctx.p.layers.length;
    const K = ctx.kCount;
    const stages = ctx.stages;
    if (c === K) {
      const before = ctx.sims;
      const t = ctx.stepOf(this.fwd, this.bwd, this.p2p, this.best);
      if (ctx.sims > before) this.nodes += Math.max(Math.floor((2 * ctx.p.microBatches * K) / SIM_OPS_PER_NODE), 1) - 1;
      if (t < this.best) {
        this.best = t;
        this.bestEnds = this.ends.slice();
      }
      return;
    }
    const s = c % stages;
    const rLo = c + 1 === K ? L - 1 : c === 0 ? Math.max(start, this.firstMin - 1) : start;
    const rHi = L - (K - c);
    const m = ctx.p.microBatches;
    const placed = this.placedBare(s, c);
    for (let r = rLo; r <= rHi; r++) {
      const bare = ctx.base(start, r);
      if (m * (placed + bare) >= this.best) break;
      const bound = this.place(c, r);
      if (bound < this.best) this.run(c + 1, r + 1);
      if (this.exhausted) {
        if (this.cutHere) {
          this.frontier = Math.min(this.frontier, bound);
          this.cutHere = false;
        }
        for (let r2 = r + 1; r2 <= rHi; r2++) {
          if (m * (placed + ctx.base(start, r2)) >= this.best) break;
          this.frontier = Math.min(this.frontier, this.place(c, r2));
        }
        return;
      }
    }
  }

  /** Twin of `Search::place`. */
  place(c: number, r: number): number {
    const ctx = this.ctx;
    const s = c % ctx.stages;
    this.ends[c] = r;
    this.placed[c] = (c >= ctx.stages ? this.placed[c - ctx.stages] : 0) + ctx.base(c === 0 ? 0 : this.ends[c - 1] + 1, r);
    if (c >= (ctx.v - 1) * ctx.stages) {
      const ranges = ctx.rangesOf(this.ends, s);
      const st = ctx.stage(s, ranges);
      if (st === undefined) return Infinity;
      let busy = 0;
      ranges.forEach(([l, rr], j) => (busy += ctx.base(l, rr) + st[1][j].extra));
      this.exact[s] = busy;
      ctx.stageInput(s, ranges, st[1], this.fwd, this.bwd, this.p2p);
      return this.bound(c, r);
    }
    // The bound first (see `Search::place`): the memory check only where the bound beats the incumbent.
    const bound = this.bound(c, r);
    // The stage's chunks placed so far, at their least memory, already overflow.
    if (bound < this.best && ctx.minMemory(this.ends, s, c) > ctx.p.memoryBytes) return Infinity;
    return bound;
  }

  /** Twin of `Search::placed_bare`. */
  placedBare(s: number, c: number): number {
    if (c <= s) return 0;
    const stages = this.ctx.stages;
    return this.placed[s + Math.floor((c - 1 - s) / stages) * stages];
  }

  /** Twin of `Search::bound`. */
  bound(c: number, r: number): number {
    const ctx = this.ctx;
    const stages = ctx.stages;
    const m = ctx.p.microBatches;
    let best = this.rest[0];
    let openBusy = 0;
    let openCount = 0;
    let openBefore = Infinity;
    for (let s = 0; s < stages; s++) {
      const finished = c >= (ctx.v - 1) * stages + s;
      const busy = finished ? this.exact[s] : this.placedBare(s, c + 1);
      const before = s === 0 ? 0 : c + 1 >= s ? ctx.base(0, this.ends[s - 1]) : ctx.base(0, r);
      best = Math.max(best, before + m * busy);
      if (!finished) {
        openBusy += busy;
        openCount++;
        openBefore = Math.min(openBefore, before);
      }
    }
    if (openCount > 0) best = Math.max(best, openBefore + m * ((openBusy + this.rest[r + 1]) / openCount));
    return best;
  }
}

/** Twin of `MAX_CHUNK_WORK`: most work units the chunk planner may face (2^24), `K x (L (L + 1) / 2 + 2 M K)`. */
export const MAX_CHUNK_WORK = 2 ** 24;

/**
 * Work units of one chunk planner run (see {@link MAX_CHUNK_WORK}): `K x (L (L + 1) / 2 + 2 M K)`
 * for `L` layers, `K` model chunks and `M` micro-batches (exact up to 2^53).
 */
export function chunkWorkUnits(layers: number, modelChunks: number, microBatches: number): number {
  return modelChunks * ((layers * (layers + 1)) / 2 + 2 * microBatches * modelChunks);
}

/** Twin of `check_chunk_work`: refuses a problem of more than {@link MAX_CHUNK_WORK} work units, before anything is allocated. */
function checkChunkWork(p: Problem, v: number): void {
  const L = p.layers.length;
  const k = v * p.stages;
  const m = p.microBatches;
  const units = chunkWorkUnits(L, k, m);
  if (units > MAX_CHUNK_WORK) {
    throw outOfRange(
      'layers',
      `must be few enough for the interleaved chunk planner (at most 2^24 work units, model chunks x (layer ranges + 2 x micro-batches x model chunks); ${L} layers in ${k} model chunks (${p.stages} stages x ${v} virtual stages) with ${m} micro-batches need ${units <= Number.MAX_SAFE_INTEGER ? units : 'more'}): merge layers into blocks, or use fewer stages, virtual stages or micro-batches`,
    );
  }
}

/** Twin of `chunks::partition_chunks`. */
export function partitionChunksTwin(p: Problem): ChunkPlanOut {
  checkProblem(p);
  if (p.schedule.name !== 'interleaved') throw outOfRange('schedule', 'must be interleaved for the chunk planner');
  const v = p.schedule.v;
  const stages = p.stages;
  const L = p.layers.length;
  if (L < v * stages) throw outOfRange('layers', `must be at least as many as the model chunks (virtualStages x stages = ${v * stages}), got ${L}`);
  checkChunkWork(p, v);
  const ctx = new Ctx(p, v);
  const firstMin = Math.max(p.firstStageMinLayers, 1);
  if (firstMin > L - (ctx.kCount - 1)) throw outOfRange('firstStageMinLayers', `leaves fewer layers than the other ${ctx.kCount - 1} model chunks need`);
  const rest = new Float64Array(L + 1);
  for (let r = L - 1; r >= 0; r--) rest[r] = rest[r + 1] + p.layers[r].forwardMs + p.layers[r].backwardMs;
  let ends = ctx.minMaxChunks(firstMin);
  let start = ctx.localSearch(ends, firstMin);
  const filled = ctx.scanFill(firstMin, rest[0]);
  if (filled !== undefined) {
    const other = ctx.localSearch(filled, firstMin);
    if (other.ok && (!start.ok || other.t < start.t)) {
      start = other;
      ends = filled;
    }
  }
  const search = new Search(ctx, rest, firstMin);
  if (start.ok) {
    search.best = start.t;
    search.bestEnds = ends.slice();
  }
  search.run(0, 0);
  if (search.bestEnds === undefined) {
    const proven = !search.exhausted;
    throw infeasible(
      `${proven ? 'no' : 'the search found no'} interleaved plan (${v} x ${stages} chunks) fits in ${p.memoryBytes} bytes per GPU with the recomputation the mode allows${proven ? '' : ' (the search stopped at its node budget)'}`,
    );
  }
  const optimal = !search.exhausted;
  // The winner's step is already known (see `partition_chunks`).
  const plan = build(ctx, search.bestEnds, search.best);
  plan.optimal = optimal;
  plan.lowerBoundMs = optimal ? plan.iterationMs : Math.min(search.frontier, plan.iterationMs);
  return plan;
}

function build(ctx: Ctx, ends: number[], iterationMs: number): ChunkPlanOut {
  const { v, stages } = ctx;
  const chunks: ChunkOut[] = new Array(ctx.kCount);
  const out: ChunkStageOut[] = [];
  let max = 0;
  for (let s = 0; s < stages; s++) {
    const ranges = ctx.rangesOf(ends, s);
    const [time, choice] = ctx.stage(s, ranges)!;
    let w = 0;
    const kept = choice.map((o) => o.kept);
    for (const [l, r] of ranges) w += ctx.seg.pw[r + 1] - ctx.seg.pw[l];
    const [act, at] = ctx.peak(s, kept);
    const held = ctx.states[s][at];
    ranges.forEach(([l, r], j) => {
      const o = choice[j];
      const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
      let full: number[] = [];
      let sel: number[] = [];
      if (o.kind === 0) full = range(l, l + o.k);
      else if (o.kind === 1) {
        full = range(l, l + o.k);
        sel = range(l + o.k, r + 1);
      } else full = ctx.seg.uniformRanges(l, r, o.k).flatMap(([a, b]) => range(a, b));
      chunks[j * stages + s] = { firstLayer: l, lastLayer: r, stage: s, recomputed: full, selective: sel, timeMs: ctx.chunkTime(l, r, o), held: held[j] };
    });
    max = Math.max(max, time);
    let total = 0;
    for (const n of held) total += n;
    out.push({ timeMs: time, memoryBytes: w + act + ctx.p.stageOverheadBytes, inFlight: total / v });
  }
  return { chunks, stages: out, iterationMs, bottleneckMs: max, optimal: false, lowerBoundMs: NaN };
}
