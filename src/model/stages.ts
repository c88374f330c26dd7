/**
 * The canonical stage problem and plan evaluation. TypeScript twin of
 * `crate/core/src/model/stages.rs`; see there for the definitions.
 *
 * @module
 */
import { outOfRange, unknownOption } from '../errors';
import { numberAtLeast } from '../validate';

/**
 * How recomputation may be chosen per stage: `none`, `full`, `block` (the first `k_s` layers of
 * each stage), `any` (a greedy subset), `selective` (block, with the stage's other layers either
 * kept or all under Megatron's selective recomputation).
 */
export type Recompute = 'none' | 'full' | 'block' | 'any' | 'selective' | 'uniform' | 'selective-all';

/**
 * Every recomputation mode; `uniform` (every stage recomputes its first `uniformLayers` layers,
 * Megatron's `--recompute-num-layers`) and `selective-all` (every layer selectively, Megatron's
 * `--recompute-granularity selective`) are one setting for all stages.
 */
export const RECOMPUTE_MODES: readonly Recompute[] = ['none', 'full', 'block', 'any', 'selective', 'uniform', 'selective-all'];

/** A pipeline schedule: its name and, for `interleaved`, the model chunks per device. */
export interface ScheduleSpec {
  /** `gpipe`, `1f1b` or `interleaved`. */
  name: 'gpipe' | '1f1b' | 'interleaved';
  /** Model chunks per device (1 unless interleaved). */
  v: number;
}

/** Twin of `simulate::warmup`: forwards stage `s` runs before its first backward. */
export function warmup(schedule: ScheduleSpec, p: number, s: number, m: number): number {
  if (schedule.name === 'gpipe') return m;
  if (schedule.name === '1f1b') return Math.min(p - s - 1, m);
  return Math.min((p - s - 1) * 2 + (schedule.v - 1) * p, m * schedule.v);
}

/**
 * Twin of `simulate::in_flight`: the peak micro-batches (chunk-weighted) stage `s` holds; GPipe
 * `m`, 1F1B `min(P - s, m)`, interleaved `min(warmup + 1, m v) / v` (Megatron's
 * `P (1 + (P - 1) / (P v))` on the first stage).
 */
export function inFlightCount(schedule: ScheduleSpec, p: number, s: number, m: number): number {
  const w = warmup(schedule, p, s, m);
  if (schedule.name === 'gpipe') return m;
  if (schedule.name === '1f1b') return Math.min(w + 1, m);
  return Math.min(w + 1, m * schedule.v) / schedule.v;
}

/** One layer. */
export interface Layer {
  forwardMs: number;
  backwardMs: number;
  staticBytes: number;
  activationBytes: number;
  checkpointBytes: number;
  selectiveBytes: number;
  selectiveMs: number;
}

/** The problem, resolved. */
export interface Problem {
  layers: Layer[];
  stages: number;
  microBatches: number;
  memoryBytes: number;
  stageOverheadBytes: number;
  commMs: number[];
  recompute: Recompute;
  /** For `uniform`: the layers every stage recomputes. */
  uniformLayers: number;
  firstStageMinLayers: number;
  schedule: ScheduleSpec;
  /** Twin of `StageProblem::recompute_groups`: each layer's role under `uniform` (0 never, 1 counted, 2 always); empty: all counted. */
  recomputeGroups: number[];
}

/** One stage of a plan. */
export interface StageOut {
  firstLayer: number;
  lastLayer: number;
  recomputed: number[];
  selective: number[];
  timeMs: number;
  memoryBytes: number;
  inFlight: number;
}

/** A plan. */
export interface PlanOut {
  stages: StageOut[];
  iterationMs: number;
  bottleneckMs: number;
}

/** Parses a recomputation mode. */
export function parseRecompute(name: string): Recompute {
  if ((RECOMPUTE_MODES as readonly string[]).includes(name)) return name as Recompute;
  throw unknownOption('recompute', name, RECOMPUTE_MODES);
}

/** Twin of `StageProblem::check`. */
export function checkProblem(p: Problem): void {
  const l = p.layers.length;
  if (p.stages === 0) throw outOfRange('stages', 'must be at least 1, got 0');
  if (p.microBatches === 0) throw outOfRange('microBatches', 'must be at least 1, got 0');
  if (l < p.stages) throw outOfRange('layers', `must be at least as many as the stages (${p.stages}), got ${l}`);
  numberAtLeast('memoryBytes', p.memoryBytes, 0);
  if (p.memoryBytes === 0) throw outOfRange('memoryBytes', 'must be > 0, got 0');
  numberAtLeast('stageOverheadBytes', p.stageOverheadBytes, 0);
  p.layers.forEach((x, i) => {
    numberAtLeast(`layers[${i}].forwardMs`, x.forwardMs, 0);
    numberAtLeast(`layers[${i}].backwardMs`, x.backwardMs, 0);
    numberAtLeast(`layers[${i}].staticBytes`, x.staticBytes, 0);
    numberAtLeast(`layers[${i}].activationBytes`, x.activationBytes, 0);
    numberAtLeast(`layers[${i}].checkpointBytes`, x.checkpointBytes, 0);
    numberAtLeast(`layers[${i}].selectiveBytes`, x.selectiveBytes, 0);
    numberAtLeast(`layers[${i}].selectiveMs`, x.selectiveMs, 0);
    if (x.selectiveMs > x.forwardMs) throw outOfRange(`layers[${i}].selectiveMs`, "must be at most the layer's forwardMs (selective recomputation redoes part of the forward)");
  });
  if (p.recomputeGroups.length !== 0 && p.recomputeGroups.length !== l) {
    throw outOfRange('recomputeGroups', `must have one entry per layer (${l}), got ${p.recomputeGroups.length}`);
  }
  const bad = p.recomputeGroups.findIndex((g) => g > 2);
  if (bad >= 0) throw outOfRange(`recomputeGroups[${bad}]`, `must be 0 (never), 1 (counted) or 2 (always), got ${p.recomputeGroups[bad]}`);
  if (p.commMs.length !== 0 && p.commMs.length !== l - 1) {
    throw outOfRange('commMs', `must have one entry per cut (layers - 1 = ${l - 1}), got ${p.commMs.length}`);
  }
  p.commMs.forEach((c, i) => numberAtLeast(`commMs[${i}]`, c, 0));
  let total = 0;
  for (const x of p.layers) total += 2 * x.forwardMs + x.backwardMs;
  for (const c of p.commMs) total += c;
  if (!Number.isFinite(total * p.microBatches)) throw outOfRange('layers', 'times are too large: the iteration time overflows (use milliseconds)');
  if (p.firstStageMinLayers > l - (p.stages - 1)) {
    throw outOfRange('firstStageMinLayers', `leaves fewer layers than the other ${p.stages - 1} stages need`);
  }
}

/** Micro-batches in flight on stage `s` under the problem's schedule. */
export function inFlight(p: Problem, s: number): number {
  return inFlightCount(p.schedule, p.stages, s, p.microBatches);
}

/** Communication time of a cut after layer `r`. */
export function cutMs(p: Problem, r: number): number {
  return r + 1 < p.layers.length && p.commMs.length !== 0 ? p.commMs[r] : 0;
}

/** Twin of `plan_from`. */
export function planFrom(stages: StageOut[], microBatches: number): PlanOut {
  let sum = 0;
  let max = 0;
  for (const s of stages) {
    sum += s.timeMs;
    max = Math.max(max, s.timeMs);
  }
  return { stages, iterationMs: sum + (microBatches - 1) * max, bottleneckMs: max };
}

/** Twin of `StageProblem::evaluate`. */
export function evaluatePlan(p: Problem, ends: ArrayLike<number>, recomputed: number[][], selective: number[][] = recomputed.map(() => [])): PlanOut {
  if (ends.length !== p.stages || recomputed.length !== ends.length || selective.length !== ends.length) throw outOfRange('plan', `must have ${p.stages} stages`);
  const stages: StageOut[] = [];
  let first = 0;
  for (let s = 0; s < ends.length; s++) {
    const last = ends[s];
    const rec = recomputed[s];
    const sel = selective[s];
    if (last < first || last >= p.layers.length) throw outOfRange('plan', `stage ${s} must end after it starts and inside the stack`);
    if (rec.some((i) => i < first || i > last) || sel.some((i) => i < first || i > last)) throw outOfRange('plan', `stage ${s} recomputes a layer it does not hold`);
    const n = inFlight(p, s);
    let time = 0;
    let w = 0;
    let act = 0;
    const selected: number[] = [];
    for (let i = first; i <= last; i++) {
      const x = p.layers[i];
      const r = rec.includes(i);
      const q = !r && sel.includes(i);
      time += x.forwardMs + x.backwardMs;
      w += x.staticBytes;
      if (r) {
        time += x.forwardMs;
        act += x.checkpointBytes;
      } else if (q) {
        time += x.selectiveMs;
        act += x.selectiveBytes;
        selected.push(i);
      } else {
        act += x.activationBytes;
      }
    }
    if (s + 1 < ends.length) time += cutMs(p, last);
    stages.push({ firstLayer: first, lastLayer: last, recomputed: rec.slice(), selective: selected, timeMs: time, memoryBytes: w + n * act + p.stageOverheadBytes, inFlight: n });
    first = last + 1;
  }
  if (first !== p.layers.length) throw outOfRange('plan', 'must cover every layer');
  return planFrom(stages, p.microBatches);
}
