/**
 * The model twins shaped as the native binding's functions, for the TypeScript backend, with
 * the same argument checks in the same order.
 *
 * @module
 */
import type * as Native from '../../bindings';
import { outOfRange, unknownOption } from '../errors';
import { deferred } from '../progress';
import { integerBetween, numberAtLeast } from '../validate';
import { baselinePlan, checkSplitWork, parseSplit, splitEnds } from './baselines';
import { checkTimingTwin, fitActivationScaleTwin, fitLayerCostTwin } from './calibrate';
import { partitionChunksTwin } from './chunks';
import { partitionStagesTwin, planForSplitTwin } from './partition';
import { checkProblem, evaluatePlan, parseRecompute, type PlanOut, type Problem, type ScheduleSpec } from './stages';
import { LAYER_KINDS, vlmLayerTableTwin, type GpuSpec, type LayerCost, type LayerKind, type VlmSpec } from './vlm';

/** Twin of the binding's `problem()`: typed arrays to a resolved problem. */
export function toProblem(p: Native.StageProblemInput): Problem {
  const l = p.forwardMs.length;
  for (const [name, a] of [
    ['backwardMs', p.backwardMs],
    ['staticBytes', p.staticBytes],
    ['activationBytes', p.activationBytes],
    ['checkpointBytes', p.checkpointBytes],
    ['selectiveBytes', p.selectiveBytes],
    ['selectiveMs', p.selectiveMs],
  ] as const) {
    if (a === undefined || a === null) continue;
    if (a.length !== l) throw outOfRange(name, `must have one entry per layer (${l}), got ${a.length}`);
  }
  const layers = Array.from({ length: l }, (_, i) => ({
    forwardMs: p.forwardMs[i],
    backwardMs: p.backwardMs[i],
    staticBytes: p.staticBytes[i],
    activationBytes: p.activationBytes[i],
    checkpointBytes: p.checkpointBytes[i],
    selectiveBytes: p.selectiveBytes ? p.selectiveBytes[i] : p.activationBytes[i],
    selectiveMs: p.selectiveMs ? p.selectiveMs[i] : 0,
  }));
  const v = integerBetween('virtualStages', p.virtualStages ?? 2, 1, 1 << 10);
  return {
    layers,
    stages: integerBetween('stages', p.stages, 0, 1 << 16),
    microBatches: integerBetween('microBatches', p.microBatches, 0, 1 << 20),
    memoryBytes: numberAtLeast('memoryBytes', p.memoryBytes, 0),
    stageOverheadBytes: p.stageOverheadBytes ?? 0,
    commMs: p.commMs ? Array.from(p.commMs) : [],
    recompute: parseRecompute(p.recompute ?? 'block'),
    uniformLayers: p.recompute === 'uniform' ? integerBetween('uniformLayers', p.uniformLayers ?? 0, 0, 1 << 20) : 0,
    firstStageMinLayers: p.firstStageMinLayers === undefined || p.firstStageMinLayers === null ? 0 : integerBetween('firstStageMinLayers', p.firstStageMinLayers, 0, 1 << 20),
    schedule: parseSchedule(p.schedule ?? '1f1b', v),
    recomputeGroups: p.recomputeGroups ? Array.from(p.recomputeGroups) : [],
  };
}

/** Twin of `Schedule::parse`. */
function parseSchedule(name: string, v: number): ScheduleSpec {
  if (name === 'gpipe' || name === '1f1b') return { name, v: 1 };
  if (name === 'interleaved') {
    if (v < 1) throw outOfRange('virtualStages', 'must be at least 1');
    return { name, v };
  }
  throw unknownOption('schedule', name, ['gpipe', '1f1b', 'interleaved']);
}

/** Twin of the binding's `recompute_flags`: 1 per recomputed layer, 2 per selective one. */
function recomputeFlags(layers: number, parts: readonly { selective: readonly number[]; recomputed: readonly number[] }[]): Uint8Array {
  const flags = new Uint8Array(layers);
  for (const s of parts) for (const i of s.selective) flags[i] = 2;
  for (const s of parts) for (const i of s.recomputed) flags[i] = 1;
  return flags;
}

/** Twin of the binding's `to_js`. */
export function toNativePlan(plan: PlanOut, layers: number): Native.NativeStagePlan {
  const flags = recomputeFlags(layers, plan.stages);
  return {
    firstLayer: Uint32Array.from(plan.stages, (s) => s.firstLayer),
    lastLayer: Uint32Array.from(plan.stages, (s) => s.lastLayer),
    timeMs: Float64Array.from(plan.stages, (s) => s.timeMs),
    memoryBytes: Float64Array.from(plan.stages, (s) => s.memoryBytes),
    inFlight: Float64Array.from(plan.stages, (s) => s.inFlight),
    recomputed: flags,
    iterationMs: plan.iterationMs,
    bottleneckMs: plan.bottleneckMs,
  };
}

function partitionStages(input: Native.StageProblemInput): Native.NativeStagePlan {
  const p = toProblem(input);
  return toNativePlan(partitionStagesTwin(p), p.layers.length);
}

function recomputedLists(ends: ArrayLike<number>, flags: ArrayLike<number>, flag: number): number[][] {
  let first = 0;
  return Array.from(ends, (last) => {
    const out: number[] = [];
    for (let i = first; i <= Math.min(last, flags.length - 1); i++) if (flags[i] === flag) out.push(i);
    first = last + 1;
    return out;
  });
}

function evaluateStages(input: Native.StageProblemInput, lastLayers: Uint32Array, recomputed: Uint8Array): Native.NativeStagePlan {
  const p = toProblem(input);
  checkProblem(p);
  if (recomputed.length !== p.layers.length) throw outOfRange('recomputed', `must have one flag per layer (${p.layers.length})`);
  return toNativePlan(evaluatePlan(p, lastLayers, recomputedLists(lastLayers, recomputed, 1), recomputedLists(lastLayers, recomputed, 2)), p.layers.length);
}

function evaluateSplit(input: Native.StageProblemInput, lastLayers: Uint32Array): Native.NativeStagePlan {
  const p = toProblem(input);
  return toNativePlan(planForSplitTwin(p, lastLayers), p.layers.length);
}

function baselineStages(input: Native.StageProblemInput, params: Float64Array, method: string, recompute: 'none' | 'full' | 'uniform'): Native.NativeStagePlan {
  const p = toProblem(input);
  checkProblem(p);
  if (params.length !== p.layers.length) throw outOfRange('params', `must have one entry per layer (${p.layers.length})`);
  if (!['none', 'full', 'uniform'].includes(recompute)) {
    throw Object.assign(new RangeError(`recompute must be one of none, full, uniform, got ${JSON.stringify(recompute)}`), { code: 'ERR_OMNIBAL_UNKNOWN_OPTION' });
  }
  const split = parseSplit(method);
  checkSplitWork(split, p);
  const ends = splitEnds(split, p, params);
  return toNativePlan(baselinePlan(p, ends, recompute), p.layers.length);
}

function toSpec(m: Native.VlmInput): VlmSpec {
  integerBetween('vit.layers', m.vit.layers, 0, 100000);
  integerBetween('llm.layers', m.llm.layers, 0, 100000);
  return m as VlmSpec;
}

function toGpu(g: Native.GpuInput): GpuSpec {
  const out: GpuSpec = {
    peakFlops: g.peakFlops,
    memoryBytes: g.memoryBytes,
    efficiency: { vit: g.efficiencyVit, projector: g.efficiencyProjector, llm: g.efficiencyLlm, head: g.efficiencyHead },
    networkBytesPerS: g.networkBytesPerS,
    nvlinkBytesPerS: g.nvlinkBytesPerS,
  };
  const [o, e] = [g.layerOverheadMs, g.layerEfficiency];
  if (o && e) {
    if (o.length !== 6 || e.length !== 6) throw outOfRange('gpu.layerCost', 'needs 6 overheads and 6 efficiencies (one per layer kind)');
    const cost: Partial<Record<LayerKind, LayerCost>> = {};
    LAYER_KINDS.forEach((k, i) => {
      if (!(Number.isNaN(o[i]) && Number.isNaN(e[i]))) cost[k] = { overheadMs: o[i], efficiency: e[i] };
    });
    out.layerCost = cost;
  }
  return out;
}

function table(model: Native.VlmInput, gpu: Native.GpuInput, shape: Native.TableShape) {
  integerBetween('tp', shape.tp, 1, 1 << 12);
  integerBetween('dp', shape.dp, 1, 1 << 20);
  integerBetween('zero', shape.zero, 0, 3);
  return vlmLayerTableTwin(toSpec(model), toGpu(gpu), shape.tp, shape.dp, shape.zero, shape.tiles, shape.tokens, shape.sumSqLen, {
    gradBytes: shape.gradBytes ?? 4,
    frozenVit: shape.frozenVit ?? false,
    frozenLlm: shape.frozenLlm ?? false,
    flashAttention: shape.flashAttention ?? true,
  });
}

function calibrateModel(model: Native.VlmInput, gpu: Native.GpuInput, shape: Native.TableShape, m: Native.CalibrationInput): Native.NativeCalibration {
  const t = table(model, gpu, shape);
  if (m.measuredLayers.length !== m.measuredForwardMs.length) throw outOfRange('measuredForwardMs', 'must have one entry per measured layer');
  const loads = m.measuredLoads;
  if (loads && loads.length !== 3 * m.measuredLayers.length) throw outOfRange('measuredLoads', 'needs (tiles, tokens, sumSqLen) per measured layer');
  const tp = integerBetween('tp', shape.tp, 1, 1 << 12);
  // Each layer's time at 100% efficiency at the load it was measured at (one table per load).
  const tables = new Map<string, Float64Array>();
  const kind = new Uint8Array(m.measuredLayers.length);
  const atPeak = new Float64Array(m.measuredLayers.length);
  for (let j = 0; j < m.measuredLayers.length; j++) {
    const i = m.measuredLayers[j];
    kind[j] = checkTimingTwin(t.kind, i, m.measuredForwardMs[j]);
    let flops = t.forwardFlops;
    if (loads) {
      const key = [loads[3 * j], loads[3 * j + 1], loads[3 * j + 2]];
      const id = key.join(',');
      if (!tables.has(id)) tables.set(id, table(model, gpu, { ...shape, tiles: key[0], tokens: key[1], sumSqLen: key[2] }).forwardFlops);
      flops = tables.get(id)!;
    }
    atPeak[j] = (flops[i] / tp / gpu.peakFlops) * 1e3;
  }
  const eff = [gpu.efficiencyVit, gpu.efficiencyVit, gpu.efficiencyProjector, gpu.efficiencyLlm, gpu.efficiencyLlm, gpu.efficiencyHead];
  const fitted = fitLayerCostTwin(kind, atPeak, m.measuredForwardMs, eff);
  if (m.stageBounds.length % 3 !== 0 || m.stageMemory.length * 3 !== m.stageBounds.length * 2) {
    throw outOfRange('stageMemory', 'needs (first, last, inFlight) bounds and (full, none) bytes per stage');
  }
  return {
    efficiency: Float64Array.from(fitted, (c) => (c ? c[1] : NaN)),
    overheadMs: Float64Array.from(fitted, (c) => (c ? c[0] : NaN)),
    activationScale: fitActivationScaleTwin(t.kind, t.activationBytes, t.checkpointBytes, m.stageBounds, m.stageMemory),
  };
}

/** Twin of the binding's `partitionChunks` (`chunks_to_js`). */
function partitionChunks(input: Native.StageProblemInput): Native.NativeChunkPlan {
  const p = toProblem(input);
  const plan = partitionChunksTwin(p);
  const flags = recomputeFlags(p.layers.length, plan.chunks);
  return {
    chunkFirstLayer: Uint32Array.from(plan.chunks, (c) => c.firstLayer),
    chunkLastLayer: Uint32Array.from(plan.chunks, (c) => c.lastLayer),
    chunkTimeMs: Float64Array.from(plan.chunks, (c) => c.timeMs),
    chunkHeld: Uint32Array.from(plan.chunks, (c) => c.held),
    timeMs: Float64Array.from(plan.stages, (s) => s.timeMs),
    memoryBytes: Float64Array.from(plan.stages, (s) => s.memoryBytes),
    inFlight: Float64Array.from(plan.stages, (s) => s.inFlight),
    recomputed: flags,
    iterationMs: plan.iterationMs,
    bottleneckMs: plan.bottleneckMs,
    optimal: plan.optimal,
    lowerBoundMs: plan.lowerBoundMs,
  };
}

/** The model functions of the TypeScript backend. */
export const modelTwins = {
  partitionStages,
  partitionStagesAsync: (input: Native.StageProblemInput) => deferred(() => partitionStages(input)),
  partitionChunks,
  evaluateStages,
  evaluateSplit,
  baselineStages,
  vlmLayerTable: table,
  calibrateModel,
};
