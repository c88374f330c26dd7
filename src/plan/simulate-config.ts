/**
 * One configuration of a plan (its batches, split and recomputation) planned into stages and
 * simulated over evenly spread steps of the epoch.
 *
 * @module
 */
import { activeBackend } from '../binding';
import type { BatchPlan, Samples } from '../data/index';
import { meanMicroBatchLoad, microBatchLoad, type MicroBatchLoadFigures } from '../data/load';
import { heaviestMicroBatchLoad } from '../model/memory-load';
import { planWithFitHint } from '../model/fit-hint';
import {
  applyCalibration,
  baselineStages,
  evaluateStages,
  partitionStages,
  vlmStageProblem,
  type CalibrationResult,
  type MicroBatchLoad,
  type StagePlan,
  type StageProblem,
} from '../model/index';
import { megatronFirstStageLayers, partitionForTarget } from '../model/target';
import { chunkDevices, deviceTransferMs, evaluateChunks } from '../model/chunk-evaluate';
import { partitionChunksForTarget, type ChunkTargetPlan } from '../model/chunk-target';
import type { GpuSpec, VlmSpec } from '../model/vlm';
import type { Cluster, PlanMemory } from './options';
import type { Coefficients } from './prepare-model';
import type { AblationRow, StageMemory, Timeline } from './training-plan';

/** @internal One configuration to simulate. */
export interface Config {
  name: string;
  plan: BatchPlan;
  split: 'optimal' | 'parameters' | 'uniform' | 'given';
  recompute: 'full' | 'block';
  /** For `given`: the stages' last layers and recomputed layers (and, for an interleaved plan, its chunks' last layers). */
  given?: { lastLayers: number[]; recomputeLayers: number[]; chunkLastLayers?: number[] };
  /** The plan's mean micro-batch load, when already known. */
  meanLoad?: MicroBatchLoadFigures;
  /** The plan's heaviest micro-batch load (`heaviestMicroBatchLoad`), when already known. */
  memoryLoad?: MicroBatchLoad;
}

/** @internal A simulated configuration. */
export interface Simulated {
  row: AblationRow;
  stages: StagePlan;
  rankTokens: number[][];
  rankTiles: number[][];
  stageMemory: StageMemory[];
  timeline: Timeline;
  /** The chunk plan (interleaved plans of the planner, or saved with their chunks), with the problem it solves. */
  chunks?: ChunkTargetPlan;
  /** The stage problem `stages` solve (the framework target's, when one is set), for a plan without chunks. */
  problem?: StageProblem;
}

/** The load of an empty micro-batch slot (a rank with fewer micro-batches than the step's accumulation). */
const EMPTY_SLOT: MicroBatchLoadFigures = { tiles: 0, tokens: 0, sumSqLen: 0 };

/** @internal Plans the stages of one configuration and simulates its steps. */
export function simulateConfig(cfg: Config, s: Samples, o: Resolved, coef: Coefficients, baselineGpuHours: number | undefined): Simulated {
  const { spec, gpu, cluster } = o;
  const load = cfg.meanLoad ?? meanMicroBatchLoad(cfg.plan, s);
  const problem: StageProblem = vlmStageProblem({
    model: spec,
    gpu,
    pp: cluster.pp,
    tp: cluster.tp,
    dp: cluster.dp,
    zero: o.memory.zero,
    training: o.memory.training,
    headroom: o.memory.headroom,
    microBatches: o.accum,
    load,
    recompute: cfg.recompute,
    // Memory for the schedule's in-flight counts and the plan's heaviest micro-batch.
    memoryLoad: cfg.memoryLoad ?? heaviestMicroBatchLoad(cfg.plan, s),
    schedule: o.schedule,
    virtualStages: o.virtualStages,
  });
  const calibrated = o.calibration ? applyCalibration(problem, o.calibration) : problem;
  const pp = cluster.pp;
  // Interleaved plans of the planner (and saved ones with their chunks) are v x P chunk plans;
  // the baselines' contiguous splits still run as v equal chunks per device.
  const chunked = o.schedule === 'interleaved' && (cfg.split === 'optimal' || (cfg.split === 'given' && cfg.given?.chunkLastLayers !== undefined));
  let chunks: ChunkTargetPlan | undefined;
  let target: ReturnType<typeof partitionForTarget> | undefined;
  let stages: StagePlan;
  if (chunked) {
    chunks =
      cfg.split === 'optimal'
        ? partitionChunksForTarget(calibrated, o.memory.target)
        : { plan: evaluateChunks(calibrated, cfg.given!.chunkLastLayers!, cfg.given!.recomputeLayers), problem: calibrated, notes: [] };
    stages = chunkDevices(chunks.plan, chunks.problem);
  } else {
    stages =
      cfg.split === 'optimal'
        ? planWithFitHint(calibrated, (q) => (o.memory.target === 'none' ? partitionStages(q) : ((target = partitionForTarget(q, o.memory.target)), target.plan)))
        : cfg.split === 'given'
          ? evaluateStages(calibrated, cfg.given!.lastLayers, cfg.given!.recomputeLayers)
          : baselineStages(baselineProblem(calibrated, o.memory.target), cfg.split, cfg.recompute === 'full' ? 'full' : 'uniform');
  }
  // Units the simulator times: the v x P chunks of a chunk plan (chunk u on device u mod P), else the P stages.
  const v = chunks ? chunks.plan.virtualStages : 1;
  const units = chunks ? chunks.plan.chunks : stages.stages;
  const layerUnit = new Uint32Array(problem.forwardMs.length);
  const recomputed = new Uint8Array(problem.forwardMs.length);
  units.forEach((st, u) => {
    for (let l = st.firstLayer; l <= st.lastLayer; l++) layerUnit[l] = u;
    for (const l of st.recomputeLayers) recomputed[l] = 1;
  });
  const deviceOf = (u: number) => u % pp;
  // Per unit: forward ms coefficients, and the recomputed share added to the backward.
  const unitCoef = Array.from({ length: units.length }, () => ({ t: 0, k: 0, q: 0, f: 0, bt: 0, bk: 0, bq: 0, bf: 0, rt: 0, rk: 0, rq: 0, rf: 0 }));
  for (let l = 0; l < problem.forwardMs.length; l++) {
    const c = unitCoef[layerUnit[l]];
    c.t += coef.perTile[l];
    c.k += coef.perToken[l];
    c.q += coef.perSq[l];
    c.f += coef.fixed[l];
    c.bt += coef.backward.perTile[l];
    c.bk += coef.backward.perToken[l];
    c.bq += coef.backward.perSq[l];
    c.bf += coef.backward.fixed[l];
    if (recomputed[l]) {
      c.rt += coef.perTile[l];
      c.rk += coef.perToken[l];
      c.rq += coef.perSq[l];
      c.rf += coef.fixed[l];
    }
  }
  // The cut after each device: for a chunk plan, the mean of its chunks' cuts (the simulator has
  // one transfer time per device boundary).
  let transferMs: Float64Array = new Float64Array(Math.max(pp - 1, 0));
  if (chunks) transferMs = deviceTransferMs(pp, v, (u) => problem.commMs?.[units[u].lastLayer] ?? 0);
  else for (let si = 0; si + 1 < pp; si++) transferMs[si] = problem.commMs?.[stages.stages[si].lastLayer] ?? 0;
  const gradBytes = new Float64Array(pp);
  const activationBytes = new Float64Array(pp);
  for (let l = 0; l < problem.forwardMs.length; l++) {
    const d = deviceOf(layerUnit[l]);
    gradBytes[d] += (2 * problem.params![l]) / cluster.tp;
    activationBytes[d] += recomputed[l] ? calibrated.checkpointBytes[l] : calibrated.activationBytes[l];
  }
  // The stage DP's own breakdown (one source of truth), grouped for the report.
  const stageMemory = stages.stages.map(({ memory: b }) => ({
    staticBytes: b.weights + b.gradients + b.optimizer,
    activationBytes: b.activations + b.checkpoints,
    otherBytes: b.fixed,
  }));
  const plan = cfg.plan;
  const steps = plan.steps;
  const count = Math.min(o.simulatedSteps, steps);
  let total = 0;
  let bubble = 0;
  const rankTokens: number[][] = [];
  const rankTiles: number[][] = [];
  let timeline: Timeline | undefined;
  for (let j = 0; j < count; j++) {
    const step = Math.floor((j * steps) / count);
    const m = o.accum;
    const fwd = new Float64Array(cluster.dp * m * pp);
    const bwd = new Float64Array(cluster.dp * m * pp);
    const chunkFwd = chunks ? new Float64Array(cluster.dp * m * pp * v) : undefined;
    const chunkBwd = chunks ? new Float64Array(cluster.dp * m * pp * v) : undefined;
    const tokensPerRank: number[] = [];
    const tilesPerRank: number[] = [];
    for (let r = 0; r < cluster.dp; r++) {
      const i = step * cluster.dp + r;
      let tok = 0;
      let tiles = 0;
      for (let a = 0; a < m; a++) {
        const k = plan.rankOffsets[i] + a;
        const real = k < plan.rankOffsets[i + 1];
        const l = real ? microBatchLoad(plan, s, k) : EMPTY_SLOT;
        tok += l.tokens;
        tiles += l.tiles;
        const at = (r * m + a) * pp;
        for (let u = 0; u < units.length; u++) {
          const c = unitCoef[u];
          // An empty slot costs nothing; a micro-batch adds the unit's fixed cost (no
          // per-slot arrays: this runs steps x dp x accum x units times per configuration).
          const f = Math.max(c.t * l.tiles + c.k * l.tokens + c.q * l.sumSqLen + (real ? c.f : 0), 0);
          const rf = c.rt * l.tiles + c.rk * l.tokens + c.rq * l.sumSqLen + (real ? c.rf : 0);
          const b = Math.max(c.bt * l.tiles + c.bk * l.tokens + c.bq * l.sumSqLen + (real ? c.bf : 0) + rf, 0);
          fwd[at + deviceOf(u)] += f;
          bwd[at + deviceOf(u)] += b;
          if (chunkFwd && chunkBwd) {
            // Layout [((r M + a) v + j) P + s] for chunk u = j P + s.
            chunkFwd[(r * m + a) * v * pp + u] = f;
            chunkBwd[(r * m + a) * v * pp + u] = b;
          }
        }
      }
      tokensPerRank.push(tok);
      tilesPerRank.push(tiles);
    }
    rankTokens.push(tokensPerRank);
    rankTiles.push(tilesPerRank);
    const res = activeBackend().simulateStep(
      {
        dp: cluster.dp,
        pp,
        microBatches: m,
        forwardMs: fwd,
        backwardMs: bwd,
        transferMs,
        gradBytes,
        allreduceBytesPerS: gpu.networkBytesPerS,
        activationBytes,
        schedule: o.schedule,
        virtualStages: o.virtualStages,
        ...(chunkFwd && chunkBwd && { chunkForwardMs: chunkFwd, chunkBackwardMs: chunkBwd }),
      },
      j === 0,
    );
    total += res.stepMs;
    bubble += res.bubbleFraction;
    if (j === 0) {
      let slow = 0;
      res.rankMs.forEach((x, r) => {
        if (x > res.rankMs[slow]) slow = r;
      });
      const events: Timeline['events'] = [];
      for (let e = 0; e < res.eventRank.length; e++) {
        if (res.eventRank[e] !== slow) continue;
        events.push({ stage: res.eventStage[e], microBatch: res.eventMicroBatch[e], backward: res.eventBackward[e] === 1, startMs: res.eventStartMs[e], endMs: res.eventEndMs[e] });
      }
      timeline = { name: cfg.name, stepMs: res.stepMs, events };
    }
  }
  const stepMs = total / count;
  const gpuHours = ((stepMs * steps) / 3.6e6) * cluster.gpus;
  return {
    row: { name: cfg.name, stepMs, gpuHours, steps, speedup: baselineGpuHours === undefined ? 1 : baselineGpuHours / gpuHours, bubbleFraction: bubble / count },
    stages,
    rankTokens,
    rankTiles,
    stageMemory,
    timeline: timeline!,
    ...(chunks && { chunks }),
    ...(!chunks && { problem: target?.problem ?? calibrated }),
  };
}

/**
 * @internal The problem a baseline split solves: under `--target megatron`, with Megatron-LM's
 * first-stage layers (vision encoder, projector, LLM embedding) pinned to stage 0, as the planned
 * rows have them, so every row of the ablation is a split Megatron-LM can run; otherwise as it is.
 */
export function baselineProblem(problem: StageProblem, target: PlanMemory['target']): StageProblem {
  if (target !== 'megatron') return problem;
  const first = megatronFirstStageLayers(problem);
  return first !== undefined && (problem.firstStageMinLayers ?? 0) < first ? { ...problem, firstStageMinLayers: first } : problem;
}

/** @internal Everything a configuration is simulated under. */
export interface Resolved {
  calibration?: CalibrationResult;
  spec: VlmSpec;
  gpu: GpuSpec;
  cluster: Cluster;
  accum: number;
  simulatedSteps: number;
  schedule: 'gpipe' | '1f1b' | 'interleaved';
  virtualStages: number;
  memory: PlanMemory;
}
