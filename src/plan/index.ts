/**
 * One plan for the whole run: balance the data with the cost model's real per-micro-batch
 * costs, split the model into stages with per-stage recomputation on the resulting loads,
 * simulate steps over the epoch, and predict step time, epoch time and GPU-hours, with the
 * ablation (baseline, + data, + model, + memory balance).
 *
 * Every figure is a prediction of the cost model and the simulator, under their assumptions.
 *
 * @module
 */
import { activeBackend } from '../binding';
import { ErrorCodes, omnibalError } from '../errors';
import { batchMetrics, planBatches, type BatchMetrics, type BatchPlan, type Samples } from '../data/index';
import { syntheticSamples } from '../data/synthetic';
import { meanMicroBatchLoad, microBatchLoad, type MicroBatchLoadFigures } from '../data/load';
import { heaviestMicroBatchLoad } from '../model/memory-load';
import {
  applyCalibration,
  baselineStages,
  calibrate,
  evaluateStages,
  gpuInput,
  partitionStages,
  resolveGpu,
  resolveModel,
  tableShape,
  vlmStageProblem,
  type Calibration,
  type CalibrationResult,
  type GpuChoice,
  type ModelChoice,
  type StagePlan,
  type StageProblem,
  type TrainingOptions,
} from '../model/index';
import { partitionForTarget, TARGETS, type Target } from '../model/target';
import type { GpuSpec, VlmSpec } from '../model/vlm';
import { integerBetween } from '../validate';
import { runFigures, type FlopsModel, type RunFigures } from './figures';
import { checkSavedPlan, checkSavedStages } from './validate';

/** The parallel layout: `tp * pp * dp` must equal `gpus`. */
export interface Cluster {
  /** GPUs in all. */
  gpus: number;
  /** Tensor parallel size. */
  tp: number;
  /** Pipeline stages. */
  pp: number;
  /** Data parallel size. */
  dp: number;
}

/** Options of {@link planTraining}. */
export interface PlanTrainingOptions {
  /** Default `internvl-chat-1.5`. */
  model?: ModelChoice;
  /** Default `A100-80G`. */
  gpu?: GpuChoice;
  /** Default 64 GPUs: tp 1, pp 8, dp 8. */
  cluster?: Cluster;
  /** Default: 1.2 million synthetic samples with the real SFT data's statistics (seeded). */
  samples?: Samples;
  /** Micro-batches per rank per step; default 32 (or `globalBatch / dp`). */
  accum?: number;
  /** Micro-batches per step over all ranks; must divide by dp. */
  globalBatch?: number;
  /** Mean samples per packed micro-batch; default 4.5. */
  samplesPerPack?: number;
  /** Seed of every random choice; default 0. */
  seed?: number;
  /** Epoch; default 0. */
  epoch?: number;
  /** Steps simulated per configuration, evenly spread over the epoch; default 16. */
  simulatedSteps?: number;
  /** Pipeline schedule; default `1f1b`. */
  schedule?: 'gpipe' | '1f1b' | 'interleaved';
  /** Virtual stages per device for the interleaved schedule; default 2. */
  virtualStages?: number;
  /** Measurements to calibrate the cost model with before planning. */
  calibration?: Calibration;
  /** Evaluate the ablation chain and baselines (default); false plans only the full configuration. */
  ablation?: boolean;
  /** Where the samples came from, recorded in the plan so `omnibal simulate` can rebuild them. */
  inputs?: PlanInputs;
  /** Epochs to predict the training time of ({@link RunFigures.hours}); default 1. */
  epochs?: number;
  /** ZeRO stage 0-3 (1 = Megatron's distributed optimizer); default 1. */
  zero?: number;
  /** Precision and frozen modules (defaults: fp32 gradients, nothing frozen, flash attention). */
  training?: TrainingOptions;
  /** Memory per GPU, bytes; default the GPU preset's. */
  memoryBytes?: number;
  /** Extra fraction on the activations (0.1 = 10% headroom); default 0. */
  headroom?: number;
  /** Restrict the planned (optimal) split to what a framework runs; default `none`. */
  target?: Target;
}

/** The memory settings a plan was made under (recorded in its replay). */
export interface PlanMemory {
  /** ZeRO stage 0-3. */
  zero: number;
  /** Precision and frozen modules. */
  training: TrainingOptions;
  /** Memory per GPU, bytes (null: the GPU preset's). */
  memoryBytes: number | null;
  /** Extra fraction on the activations. */
  headroom: number;
  /** The framework target of the planned split. */
  target: Target;
}

/**
 * @internal Checks the memory options of a run (coded errors naming the API option).
 */
export function checkMemoryOptions(o: Pick<PlanTrainingOptions, 'zero' | 'training' | 'memoryBytes' | 'headroom' | 'target'>): PlanMemory {
  const zero = integerBetween('zero', o.zero ?? 1, 0, 3);
  const t = o.training ?? {};
  if (typeof t !== 'object' || t === null) throw omnibalError(ErrorCodes.INVALID_OPTIONS, `training must be { grads?, frozenVit?, frozenLlm?, flashAttention? }, got ${String(t)}`);
  if (t.grads !== undefined && t.grads !== 'fp32' && t.grads !== 'bf16') throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `training.grads must be fp32 or bf16, got ${JSON.stringify(t.grads)}`);
  for (const k of ['frozenVit', 'frozenLlm', 'flashAttention'] as const) {
    if (t[k] !== undefined && typeof t[k] !== 'boolean') throw omnibalError(ErrorCodes.INVALID_OPTIONS, `training.${k} must be a boolean, got ${JSON.stringify(t[k])}`);
  }
  const memoryBytes = o.memoryBytes ?? null;
  if (memoryBytes !== null && !(typeof memoryBytes === 'number' && Number.isFinite(memoryBytes) && memoryBytes > 0)) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `memoryBytes must be a number > 0, got ${String(memoryBytes)}`);
  }
  const headroom = o.headroom ?? 0;
  if (!(typeof headroom === 'number' && Number.isFinite(headroom) && headroom >= 0)) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `headroom must be a number >= 0, got ${String(headroom)}`);
  const target = o.target ?? 'none';
  if (!(TARGETS as readonly string[]).includes(target)) throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `target must be one of ${TARGETS.join(', ')}, got ${JSON.stringify(target)}`);
  return { zero, training: { ...t }, memoryBytes, headroom, target };
}

/** Where a plan's samples came from. */
export type PlanInputs = SyntheticInputs | FileInputs;

/** Synthetic samples: how many, and their seed. */
export interface SyntheticInputs {
  /** Number of synthetic samples. */
  synthetic: number;
  /** Their seed. */
  seed: number;
}

/** Samples read from files. */
export interface FileInputs {
  /** The length files, in order. */
  files: string[];
}

/** One row of the ablation. */
export interface AblationRow {
  /** The configuration. */
  name: string;
  /** Predicted mean step time, ms. */
  stepMs: number;
  /** Predicted GPU-hours for one epoch (this row's batches: steps x step time x GPUs). */
  gpuHours: number;
  /** Steps in the epoch of this row's batches (random batches run a different number of steps than balanced ones). */
  steps: number;
  /** Baseline GPU-hours / these GPU-hours, for one epoch over the same samples (NaN without a baseline). */
  speedup: number;
  /** Predicted bubble fraction (idle share of device time). */
  bubbleFraction: number;
  /** Why this configuration could not be planned (its figures are then NaN, null in JSON). */
  error?: string;
}

/** A planned training run. */
export interface TrainingPlan {
  /** The version of this JSON shape. */
  schema: 'omnibal.training-plan/1';
  /** Assumptions behind every predicted figure. */
  assumptions: string[];
  /** Model preset (or `custom`). */
  model: string;
  /** GPU preset (or `custom`). */
  gpu: string;
  /** The parallel layout. */
  cluster: Cluster;
  /** Micro-batches per rank per step. */
  accum: number;
  /** Samples planned. */
  samples: number;
  /** Steps in the epoch of the balanced batches. */
  steps: number;
  /** The chosen stages and recomputation (the full plan). */
  stages: StagePlan;
  /** Data balance of the chosen batches vs the random baseline. */
  data: DataComparison;
  /** baseline, + data balance, + model balance, + memory balance. */
  ablation: AblationRow[];
  /** Other reference points outside the chain. */
  baselines: Record<string, AblationRow | FailedBaseline>;
  /** Predicted epoch time of the full plan, hours. */
  epochHours: number;
  /** Memory per GPU, bytes. */
  memoryBytes: number;
  /** What `omnibal simulate` needs to rebuild and re-simulate this plan. */
  replay: PlanReplay;
  /** Run-level predictions of the full plan: throughput, MFU, time to train. */
  figures: RunFigures;
  /** Figures for reports: per-step rank loads and one simulated timeline each of the baseline and the plan. */
  detail: PlanDetail;
}

/** Data balance of the balanced batches and of the random baseline. */
export interface DataComparison {
  /** The balanced batches. */
  balanced: DataSummary;
  /** Random fixed-size padded batches. */
  random: DataSummary;
}

/** Data balance figures of a batch plan (see `BatchMetrics`). */
export type DataSummary = Pick<BatchMetrics, 'padRatio' | 'visionDist' | 'textDist' | 'costDist' | 'samplesPerPack'>;

/** A baseline that could not be evaluated (for example, it does not fit in memory). */
export interface FailedBaseline {
  /** Why. */
  error: string;
}

/** The inputs of a plan, kept so it can be re-simulated (with hand-edited stages). */
export interface PlanReplay {
  /** Where the samples came from (null when given in memory). */
  inputs: PlanInputs | null;
  /** Mean samples per pack. */
  samplesPerPack: number;
  /** Seed. */
  seed: number;
  /** Epoch. */
  epoch: number;
  /** Pipeline schedule. */
  schedule: 'gpipe' | '1f1b' | 'interleaved';
  /** Model chunks per device. */
  virtualStages: number;
  /** Steps simulated per configuration. */
  simulatedSteps: number;
  /** The calibration applied, if any. */
  calibration: Calibration | null;
  /** The memory settings (absent in plans written before they existed: the defaults). */
  memory?: PlanMemory;
}

/** Per-step and timeline detail for reports. */
export interface PlanDetail {
  /** Text tokens per rank in each simulated step, balanced plan: `[step][rank]`. */
  balancedRankTokens: number[][];
  /** The same for the random baseline (padding included). */
  randomRankTokens: number[][];
  /** Image tiles per rank in each simulated step, balanced plan: `[step][rank]`. */
  balancedRankTiles: number[][];
  /** The same for the random baseline. */
  randomRankTiles: number[][];
  /** Where each stage's predicted memory goes (full plan). */
  stageMemory: StageMemory[];
  /** Events of the slowest rank of one simulated step: baseline, then the plan. */
  timelines: Timeline[];
}

/** A stage's predicted peak memory, split by what holds it (sums to the stage's `memoryBytes`). */
export interface StageMemory {
  /** Weights, gradients and optimizer state of the stage's layers, bytes. */
  staticBytes: number;
  /** Activations (or checkpoints, for recomputed layers) of the micro-batches in flight, bytes. */
  activationBytes: number;
  /** The rest: the stage overhead (buffers, workspace), bytes. */
  otherBytes: number;
}

/** The slowest rank's operations in one simulated step. */
export interface Timeline {
  /** The configuration. */
  name: string;
  /** The step time, ms. */
  stepMs: number;
  /** Its operations. */
  events: TimelineEvent[];
}

/** One operation on the timeline. */
export interface TimelineEvent {
  /** Pipeline stage. */
  stage: number;
  /** Micro-batch. */
  microBatch: number;
  /** Backward (else forward). */
  backward: boolean;
  /** Start, ms. */
  startMs: number;
  /** End, ms. */
  endMs: number;
}

/** What every figure of a training plan assumes. */
export const PLAN_ASSUMPTIONS = [
  'predictions of the omnibal cost model and pipeline simulator, not measurements',
  'layer time = FLOPs / (peak bf16 x per-kind efficiency) (+ a fixed cost per layer and micro-batch for a kind calibrated at two loads or more), backward = 2 x forward, recomputation adds a forward',
  'per micro-batch load: its tiles, tokens and sum of squared sample lengths (padding counted for padded batches)',
  'schedule as chosen (default 1F1B); transfers at stage cuts at the network bandwidth; gradient ring all-reduce over dp at the step end, not overlapped',
  'step time = mean of the simulated steps (evenly spread over the epoch); epoch = steps x step time',
];

/** @internal Per-layer forward time per unit of load, ms, and per micro-batch (a calibrated fixed cost). */
export interface Coefficients {
  perTile: Float64Array;
  perToken: Float64Array;
  perSq: Float64Array;
  /** Per micro-batch whatever its load (a calibration's fixed cost; 0 otherwise), ms. */
  fixed: Float64Array;
  /** Backward time per unit of load (2 x forward, less for frozen modules), ms. */
  backward: { perTile: Float64Array; perToken: Float64Array; perSq: Float64Array; fixed: Float64Array };
}

function differences(table: (tiles: number, tokens: number, sumSqLen: number) => Float64Array) {
  const base = table(1, 1, 0);
  const a = table(2, 1, 0);
  const b = table(1, 2, 0);
  const q = table(1, 1, 1);
  return { base, perTile: a.map((x, i) => x - base[i]), perToken: b.map((x, i) => x - base[i]), perSq: q.map((x, i) => x - base[i]) };
}

function coefficients(spec: VlmSpec, gpu: GpuSpec, c: Cluster, memory: PlanMemory): Coefficients {
  const table = (tiles: number, tokens: number, sumSqLen: number) => activeBackend().vlmLayerTable(spec, gpuInput(gpu), tableShape({ tp: c.tp, dp: c.dp, zero: memory.zero, training: memory.training, load: { tiles, tokens, sumSqLen } }));
  // Times are affine in the load; the constant is a calibrated fixed cost (exactly 0 without one).
  const fixedOf = (d: ReturnType<typeof differences>) => (gpu.layerCost ? d.base.map((x, i) => x - d.perTile[i] - d.perToken[i]) : new Float64Array(d.base.length));
  const f = differences((a, b, q) => table(a, b, q).forwardMs);
  const b = differences((a, b, q) => table(a, b, q).backwardMs);
  return { perTile: f.perTile, perToken: f.perToken, perSq: f.perSq, fixed: fixedOf(f), backward: { perTile: b.perTile, perToken: b.perToken, perSq: b.perSq, fixed: fixedOf(b) } };
}

const total = (xs: Float64Array) => xs.reduce((x, y) => x + y, 0);

/**
 * The model's forward FLOPs per micro-batch by load, and the text cost the data is balanced on:
 * the LLM's compute per squared sample length relative to its compute per token, at tp 1 (a
 * property of the model, the same for every layout, so a layout search plans the data once per
 * micro-batch size).
 */
function modelFlops(spec: VlmSpec, gpu: GpuSpec): { flops: FlopsModel; costB: number } {
  const fl = differences((tiles, tokens, sumSqLen) => activeBackend().vlmLayerTable(spec, gpuInput(gpu), { tp: 1, dp: 1, zero: 1, tiles, tokens, sumSqLen }).forwardFlops);
  const ms = differences((tiles, tokens, sumSqLen) => activeBackend().vlmLayerTable(spec, gpuInput(gpu), { tp: 1, dp: 1, zero: 1, tiles, tokens, sumSqLen }).forwardMs);
  const [perTile, perToken, perSq] = [total(fl.perTile), total(fl.perToken), total(fl.perSq)];
  const perTokenMs = total(ms.perToken);
  return {
    flops: { base: total(fl.base) - perTile - perToken, perTile, perToken, perSq },
    costB: perTokenMs > 0 ? total(ms.perSq) / perTokenMs : 0,
  };
}

/** The load at which a calibration's layer times were measured (InternVL-style 18 tiles, 5,000 tokens). */
const CALIBRATION_LOAD = { tiles: 18, tokens: 5000 };

/**
 * Everything the planner derives from the model and GPU: the calibrated GPU (if measurements
 * are given), the per-layer time coefficients, and the text cost for balancing (the LLM's time
 * per squared sample length relative to its time per token).
 */
export function prepareModel(spec: VlmSpec, gpu: GpuSpec, cluster: Cluster, measurements: Calibration | undefined, memory: PlanMemory = checkMemoryOptions({})) {
  // A calibration measures whole layers on one device (tp 1); the fitted costs then scale to the cluster's tp.
  const calibration = measurements ? calibrate(spec, gpu, { tp: 1, dp: cluster.dp, zero: memory.zero, training: memory.training, load: CALIBRATION_LOAD }, measurements) : undefined;
  const g = calibration?.gpu ?? gpu;
  const coef = coefficients(spec, g, cluster, memory);
  const { flops, costB } = modelFlops(spec, gpu);
  return { calibration, gpu: g, coef, costB, flops };
}

/** @internal One configuration to simulate. */
export interface Config {
  name: string;
  plan: BatchPlan;
  split: 'optimal' | 'parameters' | 'uniform' | 'given';
  recompute: 'full' | 'block';
  /** For `given`: the stages' last layers and recomputed layers. */
  given?: { lastLayers: number[]; recomputeLayers: number[] };
  /** The plan's mean micro-batch load, when already known. */
  meanLoad?: MicroBatchLoadFigures;
}

/** @internal A simulated configuration. */
export interface Simulated {
  row: AblationRow;
  stages: StagePlan;
  rankTokens: number[][];
  rankTiles: number[][];
  stageMemory: StageMemory[];
  timeline: Timeline;
}

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
    memoryLoad: heaviestMicroBatchLoad(cfg.plan, s),
    schedule: o.schedule,
    virtualStages: o.virtualStages,
  });
  const calibrated = o.calibration ? applyCalibration(problem, o.calibration) : problem;
  const stages =
    cfg.split === 'optimal'
      ? o.memory.target === 'none'
        ? partitionStages(calibrated)
        : partitionForTarget(calibrated, o.memory.target).plan
      : cfg.split === 'given'
        ? evaluateStages(calibrated, cfg.given!.lastLayers, cfg.given!.recomputeLayers)
        : baselineStages(calibrated, cfg.split, cfg.recompute === 'full' ? 'full' : 'uniform');
  const pp = cluster.pp;
  const layerStage = new Uint32Array(problem.forwardMs.length);
  const recomputed = new Uint8Array(problem.forwardMs.length);
  stages.stages.forEach((st, si) => {
    for (let l = st.firstLayer; l <= st.lastLayer; l++) layerStage[l] = si;
    for (const l of st.recomputeLayers) recomputed[l] = 1;
  });
  // Per stage: forward ms coefficients, and the recomputed share added to the backward.
  const stageCoef = Array.from({ length: pp }, () => ({ t: 0, k: 0, q: 0, f: 0, bt: 0, bk: 0, bq: 0, bf: 0, rt: 0, rk: 0, rq: 0, rf: 0 }));
  for (let l = 0; l < problem.forwardMs.length; l++) {
    const c = stageCoef[layerStage[l]];
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
  const transferMs = Float64Array.from({ length: pp - 1 }, (_, si) => problem.commMs?.[stages.stages[si].lastLayer] ?? 0);
  const gradBytes = Float64Array.from(stages.stages, (st) => {
    let p = 0;
    for (let l = st.firstLayer; l <= st.lastLayer; l++) p += problem.params![l];
    return (2 * p) / cluster.tp;
  });
  const activationBytes = Float64Array.from(stages.stages, (st) => {
    let a = 0;
    for (let l = st.firstLayer; l <= st.lastLayer; l++) a += recomputed[l] ? calibrated.checkpointBytes[l] : calibrated.activationBytes[l];
    return a;
  });
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
    const tokensPerRank: number[] = [];
    const tilesPerRank: number[] = [];
    for (let r = 0; r < cluster.dp; r++) {
      const i = step * cluster.dp + r;
      let tok = 0;
      let tiles = 0;
      for (let a = 0; a < m; a++) {
        const k = plan.rankOffsets[i] + a;
        const real = k < plan.rankOffsets[i + 1];
        const l = real ? microBatchLoad(plan, s, k) : { tiles: 0, tokens: 0, sumSqLen: 0 };
        tok += l.tokens;
        tiles += l.tiles;
        for (let si = 0; si < pp; si++) {
          const c = stageCoef[si];
          // An empty slot costs nothing; a micro-batch adds the stage's fixed cost.
          const [ff, fb, fr] = real ? [c.f, c.bf, c.rf] : [0, 0, 0];
          const f = c.t * l.tiles + c.k * l.tokens + c.q * l.sumSqLen + ff;
          const rf = c.rt * l.tiles + c.rk * l.tokens + c.rq * l.sumSqLen + fr;
          const b = c.bt * l.tiles + c.bk * l.tokens + c.bq * l.sumSqLen + fb;
          fwd[(r * m + a) * pp + si] = Math.max(f, 0);
          bwd[(r * m + a) * pp + si] = Math.max(b + rf, 0);
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
  };
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

/** The default run: InternVL-Chat-1.5 on 64 A100-80G over 1.2 million synthetic samples. */
export const DEFAULT_RUN: DefaultRun = { model: 'internvl-chat-1.5', gpu: 'A100-80G', cluster: { gpus: 64, tp: 1, pp: 8, dp: 8 }, samples: 1_200_000, accum: 32, samplesPerPack: 4.5 };

/** The shape of {@link DEFAULT_RUN}. */
export interface DefaultRun {
  /** Model preset. */
  model: string;
  /** GPU preset. */
  gpu: string;
  /** Layout. */
  cluster: Cluster;
  /** Synthetic samples. */
  samples: number;
  /** Micro-batches per rank per step. */
  accum: number;
  /** Mean samples per pack. */
  samplesPerPack: number;
}

/**
 * @internal Checks the schedule, virtual stages, simulated steps and epochs of a run (coded
 * errors: a bad value is never silently replaced).
 */
export function checkRunOptions(options: Pick<PlanTrainingOptions, 'schedule' | 'virtualStages' | 'simulatedSteps' | 'epochs'>, accum: number | undefined, pp: number | undefined) {
  const schedule = options.schedule ?? '1f1b';
  if (!['gpipe', '1f1b', 'interleaved'].includes(schedule)) {
    throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `unknown schedule ${JSON.stringify(schedule)}; known: gpipe, 1f1b, interleaved`);
  }
  if (options.virtualStages !== undefined) {
    integerBetween('virtualStages', options.virtualStages, 1, 64);
    if (schedule !== 'interleaved' && options.virtualStages !== 1) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, `virtual stages (${options.virtualStages}) need the interleaved schedule, not ${schedule}`);
    }
  }
  const virtualStages = options.virtualStages ?? (schedule === 'interleaved' ? 2 : 1);
  if (schedule === 'interleaved' && accum !== undefined && pp !== undefined && accum % pp !== 0) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `the interleaved schedule needs accum (${accum}) to be a multiple of pp (${pp})`);
  }
  const simulatedSteps = integerBetween('simulatedSteps', options.simulatedSteps ?? 16, 1, 1 << 20);
  const epochs = options.epochs ?? 1;
  // Capped so that hours and GPU-days stay finite (1e308 epochs gave Infinity, null in JSON).
  if (typeof epochs !== 'number' || !Number.isFinite(epochs) || epochs <= 0 || epochs > 1e6) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `epochs must be a number > 0 and at most 1e6, got ${String(epochs)}`);
  }
  return { schedule, virtualStages, simulatedSteps, epochs };
}

/**
 * Plans a training run and predicts its ablation (a prediction of the model and simulator).
 *
 * @param options - model, GPU, cluster layout, samples (files or synthetic) and planning options; all optional
 * @returns the plan (data, stages, simulated steps) and the predicted ablation
 */
export function planTraining(options: PlanTrainingOptions = {}): TrainingPlan {
  const modelName = typeof options.model === 'string' ? options.model : options.model ? 'custom' : DEFAULT_RUN.model;
  const gpuName = typeof options.gpu === 'string' ? options.gpu : options.gpu ? 'custom' : DEFAULT_RUN.gpu;
  const spec = resolveModel(options.model ?? DEFAULT_RUN.model);
  const memory = checkMemoryOptions(options);
  const presetGpu = resolveGpu(options.gpu ?? DEFAULT_RUN.gpu);
  const gpu = memory.memoryBytes === null ? presetGpu : { ...presetGpu, memoryBytes: memory.memoryBytes };
  const cluster = options.cluster ?? DEFAULT_RUN.cluster;
  for (const k of ['gpus', 'tp', 'pp', 'dp'] as const) integerBetween(`cluster.${k}`, cluster[k], 1, 1 << 20);
  if (cluster.tp * cluster.pp * cluster.dp !== cluster.gpus) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `tp x pp x dp (${cluster.tp} x ${cluster.pp} x ${cluster.dp} = ${cluster.tp * cluster.pp * cluster.dp}) must equal the GPU count (${cluster.gpus})`);
  }
  let accum = options.accum ?? DEFAULT_RUN.accum;
  if (options.globalBatch !== undefined) {
    integerBetween('globalBatch', options.globalBatch, 1, 1 << 30);
    if (options.globalBatch % cluster.dp !== 0) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, `the global batch (${options.globalBatch} micro-batches) must divide by dp (${cluster.dp})`);
    }
    accum = options.globalBatch / cluster.dp;
  }
  integerBetween('accum', accum, 1, 1 << 20);
  const { schedule, virtualStages, simulatedSteps, epochs } = checkRunOptions(options, accum, cluster.pp);
  const samples = options.samples ?? syntheticSamples(DEFAULT_RUN.samples, options.seed ?? 0);
  const b = options.samplesPerPack ?? DEFAULT_RUN.samplesPerPack;
  const seed = options.seed ?? 0;
  const epoch = options.epoch ?? 0;
  const { calibration, gpu: g, coef, costB, flops } = prepareModel(spec, gpu, cluster, options.calibration, memory);
  if (cluster.pp > coef.perTile.length) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `pp must be at most the ${coef.perTile.length} layers of ${modelName}, got ${cluster.pp}`);
  const resolved: Resolved = { spec, gpu: g, cluster, accum, simulatedSteps, schedule, virtualStages, calibration, memory };
  const shape = { dp: cluster.dp, accum, samplesPerPack: b, seed, epoch, tail: 'drop' as const };
  const balanced = planBatches(samples, { ...shape, costA: 1, costB });
  const random = planBatches(samples, { ...shape, strategy: 'random' });
  const cost = { a: 1, b: costB };
  const pick = (m: BatchMetrics) => ({ padRatio: m.padRatio, visionDist: m.visionDist, textDist: m.textDist, costDist: m.costDist, samplesPerPack: m.samplesPerPack });
  const configs: Config[] = [
    { name: 'baseline (random batches, parameter split, full recompute)', plan: random, split: 'parameters', recompute: 'full' },
    { name: '+ data balance', plan: balanced, split: 'parameters', recompute: 'full' },
    { name: '+ model balance', plan: balanced, split: 'optimal', recompute: 'full' },
    { name: '+ memory balance', plan: balanced, split: 'optimal', recompute: 'block' },
  ];
  // Each row on its own batches (GPU-hours use each plan's steps). A row that does not fit (the
  // baseline's split, say) is reported with its error; the full plan must fit.
  const chain = options.ablation === false ? configs.slice(-1) : configs;
  const rows: AblationRow[] = [];
  let base: Simulated | undefined;
  let full: Simulated | undefined;
  chain.forEach((cfg, i) => {
    const last = i === chain.length - 1;
    try {
      const sim = simulateConfig(cfg, samples, resolved, coef, base?.row.gpuHours);
      if (i === 0 && !last) base = sim;
      if (i > 0 && base === undefined) sim.row.speedup = NaN;
      rows.push(sim.row);
      if (last) full = sim;
    } catch (error) {
      if (last) throw error;
      rows.push({ name: cfg.name, stepMs: NaN, gpuHours: NaN, steps: cfg.plan.steps, speedup: NaN, bubbleFraction: NaN, error: (error as Error).message });
    }
  });
  const baselines: TrainingPlan['baselines'] = {};
  if (options.ablation !== false) {
    try {
      const megatron = simulateConfig({ name: 'Megatron default (random batches, uniform split, full recompute)', plan: random, split: 'uniform', recompute: 'full' }, samples, resolved, coef, base?.row.gpuHours);
      if (base === undefined) megatron.row.speedup = NaN;
      baselines.megatronUniform = megatron.row;
    } catch (error) {
      baselines.megatronUniform = { error: (error as Error).message };
    }
  }
  if (full === undefined) throw new Error('internal: the full configuration was not planned');
  const figures = runFigures({
    stepMs: full.row.stepMs,
    plan: balanced,
    meanLoad: meanMicroBatchLoad(balanced, samples),
    flops,
    gpus: cluster.gpus,
    peakFlops: gpu.peakFlops,
    epochs,
  });
  return {
    schema: 'omnibal.training-plan/1',
    assumptions: PLAN_ASSUMPTIONS,
    model: modelName,
    gpu: gpuName,
    cluster,
    accum,
    samples: samples.text.length,
    steps: balanced.steps,
    stages: full.stages,
    data: { balanced: pick(batchMetrics(balanced, samples, cost)), random: pick(batchMetrics(random, samples, cost)) },
    ablation: rows,
    baselines,
    epochHours: (full.row.stepMs * balanced.steps) / 3.6e6,
    memoryBytes: gpu.memoryBytes,
    figures,
    replay: {
      inputs: options.inputs ?? null,
      samplesPerPack: b,
      seed,
      epoch,
      schedule,
      virtualStages,
      simulatedSteps: resolved.simulatedSteps,
      calibration: options.calibration ?? null,
      memory,
    },
    detail: {
      balancedRankTokens: full.rankTokens,
      randomRankTokens: base?.rankTokens ?? [],
      balancedRankTiles: full.rankTiles,
      randomRankTiles: base?.rankTiles ?? [],
      stageMemory: full.stageMemory,
      timelines: base ? [base.timeline, full.timeline] : [full.timeline],
    },
  };
}

/** The result of re-simulating a saved plan. */
export interface ReplayResult {
  /** Predicted mean step time of the plan as given (its stages and recomputation), ms. */
  stepMs: number;
  /** Predicted GPU-hours per epoch. */
  gpuHours: number;
  /** Predicted bubble fraction. */
  bubbleFraction: number;
  /** The stages as evaluated by the cost model. */
  stages: StagePlan;
  /** Run-level predictions of the plan as given (one epoch). */
  figures: RunFigures;
}

/**
 * Re-simulates a plan written by `omnibal plan --json` (possibly edited by hand: its stages'
 * `firstLayer`/`lastLayer`s and `recomputeLayers`, its cluster or accum), on the given samples.
 *
 * @param savedPlan - the JSON plan of `omnibal plan --json`, parsed
 * @param samples - the samples to replay it on
 * @returns the replayed prediction
 * @throws `ERR_OMNIBAL_PARSE` for another schema, `ERR_OMNIBAL_INVALID_OPTIONS` for a field out
 *   of place (cluster arithmetic, layer ranges, recomputed layers), `ERR_OMNIBAL_INFEASIBLE`
 *   when a stage does not fit in memory.
 */
export function simulateSavedPlan(savedPlan: TrainingPlan, samples: Samples): ReplayResult {
  const saved = checkSavedPlan(savedPlan);
  const r = saved.replay;
  const spec = resolveModel(saved.model);
  const memory = checkMemoryOptions({ ...r.memory, memoryBytes: r.memory?.memoryBytes ?? undefined });
  const presetGpu = resolveGpu(saved.gpu);
  const gpu = memory.memoryBytes === null ? presetGpu : { ...presetGpu, memoryBytes: memory.memoryBytes };
  const cluster = saved.cluster;
  const { schedule, virtualStages, simulatedSteps } = checkRunOptions(r, saved.accum, cluster.pp);
  const { calibration, gpu: g, coef, costB, flops } = prepareModel(spec, gpu, cluster, r.calibration ?? undefined, memory);
  const given = checkSavedStages(saved, coef.perTile.length);
  const resolved: Resolved = { spec, gpu: g, cluster, accum: saved.accum, simulatedSteps, schedule, virtualStages, calibration, memory };
  const plan = planBatches(samples, { dp: cluster.dp, accum: saved.accum, samplesPerPack: r.samplesPerPack, seed: r.seed, epoch: r.epoch, costA: 1, costB, tail: 'drop' });
  const sim = simulateConfig({ name: 'saved plan', plan, split: 'given', recompute: 'block', given }, samples, resolved, coef, undefined);
  sim.stages.stages.forEach((st, i) => {
    if (st.memoryBytes > g.memoryBytes) {
      const gib = (x: number) => (x / 2 ** 30).toFixed(1);
      throw omnibalError(
        ErrorCodes.INFEASIBLE,
        `stage ${i} needs ${gib(st.memoryBytes)} GiB, ${gib(st.memoryBytes - g.memoryBytes)} GiB more than the ${gib(g.memoryBytes)} GiB per GPU`,
      );
    }
  });
  const figures = runFigures({
    stepMs: sim.row.stepMs,
    plan,
    meanLoad: meanMicroBatchLoad(plan, samples),
    flops,
    gpus: cluster.gpus,
    peakFlops: gpu.peakFlops,
    epochs: 1,
  });
  return { stepMs: sim.row.stepMs, gpuHours: sim.row.gpuHours, bubbleFraction: sim.row.bubbleFraction, stages: sim.stages, figures };
}
