/**
 * Model and memory balance: the VLM cost model, the optimal split into pipeline stages with
 * per-stage recomputation, baselines, calibration, and the measured search around the optimum.
 *
 * Every time and memory figure here is a prediction of the cost model (or of the layer costs
 * you supply), under its stated assumptions: the chosen schedule (1F1B by default), no overlap of communication,
 * FLOPs-based layer times scaled by per-kind efficiency factors (see `crate/core/src/model/vlm.rs`).
 *
 * @module
 */
import type * as Native from '../../bindings';
import { activeBackend } from '../binding';
import { invalidOptions, invalidType } from '../errors';
import { checkKnownKeys, describeValue, expectNumber, expectNumberList, expectObject, numberAtLeast } from '../validate';
import { LAYER_TABLE_OPTION_KEYS, MICRO_BATCH_LOAD_KEYS, STAGE_PROBLEM_HINTS, STAGE_PROBLEM_KEYS, TRAINING_OPTION_KEYS, VLM_STAGE_OPTION_KEYS } from './option-keys';
import { checkCalibration, checkFittedCosts, checkMeasurements, type LayerWork } from './calibration-file';
import { gpuPreset, modelPreset } from './presets';
import { checkGpuSpec, checkVlmSpec, LAYER_KINDS, type GpuSpec, type LayerCost, type LayerKind, type LayerTable, type VlmSpec } from './vlm';
import type { Recompute } from './stages';
import type { Split } from './baselines';
import { bareLayerMs } from './chunk-evaluate';

export { gpuPresets, modelPresets, gpuPreset, modelPreset } from './presets';
export { LAYER_KINDS, type Efficiency, type GpuSpec, type LayerCost, type LayerKind, type LayerTable, type Transformer, type VlmSpec } from './vlm';
export { RECOMPUTE_MODES, type Recompute } from './stages';
export { SPLITS, type Split, type BaselineRecompute } from './baselines';

/**
 * The canonical stage problem: per-layer costs (typed arrays, one entry per layer), the
 * pipeline shape and the memory per GPU. Feed measured numbers here directly, or build it from
 * a model with {@link vlmStageProblem}.
 */
export interface StageProblem {
  /** Forward time of each layer for one micro-batch, ms. */
  forwardMs: Float64Array;
  /** Backward time, ms. */
  backwardMs: Float64Array;
  /** Weights, gradients and optimizer share, bytes. */
  staticBytes: Float64Array;
  /** Activation bytes kept per in-flight micro-batch when not recomputed. */
  activationBytes: Float64Array;
  /** Bytes kept per in-flight micro-batch when recomputed (the layer input). */
  checkpointBytes: Float64Array;
  /** Bytes kept under selective recomputation (default: `activationBytes`, i.e. none). */
  selectiveBytes?: Float64Array;
  /** Forward time selective recomputation adds, ms, at most `forwardMs` (default 0). */
  selectiveMs?: Float64Array;
  /** The parts of `staticBytes`, for the per-stage memory breakdown (optional). */
  weightBytes?: Float64Array;
  /** Gradients per layer, bytes (part of `staticBytes`). */
  gradientBytes?: Float64Array;
  /** Optimizer state per layer, bytes (part of `staticBytes`). */
  optimizerBytes?: Float64Array;
  /** Pipeline schedule, which sets the micro-batches in flight per stage; default `1f1b`. */
  schedule?: Schedule;
  /** Model chunks per device for `interleaved`; default 2. */
  virtualStages?: number;
  /** Megatron `--recompute-modules` that `selectiveBytes` / `selectiveMs` model (for exports). */
  selectiveModules?: string[];
  /** Pipeline stages `P` (Megatron's pipeline-model-parallel size). */
  stages: number;
  /** Micro-batches per iteration `M`. */
  microBatches: number;
  /** Memory per GPU `C`, bytes. */
  memoryBytes: number;
  /** Fixed bytes on every stage (CUDA context, communication buffers); default 0. */
  stageOverheadBytes?: number;
  /** Time of a cut after each layer but the last (activation forward + gradient back), ms. */
  commMs?: Float64Array;
  /** How recomputation may be chosen per stage; default `block`. */
  recompute?: Recompute;
  /**
   * For `uniform` recomputation: the count `k` of Megatron-LM's `--recompute-num-layers` (each
   * stage recomputes its first `min(k, its decoder layers)` decoder layers); default 0.
   */
  uniformLayers?: number;
  /**
   * For `uniform` recomputation with layer kinds: also recompute every ViT layer (Megatron-LM's
   * `examples/multimodal` `--recompute-vision`); default false (the ViT keeps its activations).
   */
  recomputeVision?: boolean;
  /**
   * Each layer's role under `uniform` recomputation: 0 never recomputed, 1 counted (the first
   * `uniformLayers` of each run of role-1 layers in a stage), 2 always recomputed. Default: from
   * `layerKinds` (decoder layers 1, ViT layers 2 with `recomputeVision` else 0, others 0), or all
   * 1 without kinds.
   */
  recomputeGroups?: Uint32Array;
  /** The first stage must hold at least this many layers (the vision encoder); default 0. */
  firstStageMinLayers?: number;
  /** Layer names, for reports and exports. */
  layerNames?: string[];
  /** Layer kinds (see {@link LAYER_KINDS}), for exports. */
  layerKinds?: LayerKind[];
  /** Parameters per layer, for the parameter-count baseline. */
  params?: Float64Array;
}

/** One stage of a plan. */
export interface StageInfo {
  /** First layer (index). */
  firstLayer: number;
  /** Last layer (inclusive). */
  lastLayer: number;
  /** Names of its layers, when the problem has names. */
  layerNames: string[];
  /** Fully recomputed layers (absolute indices). */
  recomputeLayers: number[];
  /** Selectively recomputed layers (absolute indices). */
  selectiveLayers: number[];
  /** Predicted time per micro-batch (forward + backward + recomputation + the cut after it), ms. */
  timeMs: number;
  /** Predicted peak memory, bytes (the sum of {@link StageInfo.memory}). */
  memoryBytes: number;
  /** Predicted peak memory by part, bytes. */
  memory: MemoryBreakdown;
  /** Micro-batches in flight under the schedule (chunk-weighted for interleaved). */
  inFlight: number;
}

/**
 * A stage's predicted peak memory by part, bytes. `weights + gradients + optimizer` is the
 * static part (all in `weights` when the problem does not split it); `activations` are the
 * kept (not recomputed, or selectively recomputed) layers' bytes x in-flight micro-batches;
 * `checkpoints` the fully recomputed layers' inputs x in-flight; `fixed` the stage overhead.
 */
export interface MemoryBreakdown {
  /** Weights. */
  weights: number;
  /** Gradients. */
  gradients: number;
  /** Optimizer state. */
  optimizer: number;
  /** Activations of the in-flight micro-batches. */
  activations: number;
  /** Checkpoints (recomputed layers' inputs) of the in-flight micro-batches. */
  checkpoints: number;
  /** Fixed bytes (CUDA context, buffers). */
  fixed: number;
}

/** Pipeline schedules. */
export type Schedule = 'gpipe' | '1f1b' | 'interleaved';

/** A stage plan with its predicted figures. */
export interface StagePlan {
  /** The stages, first to last. */
  stages: StageInfo[];
  /** Predicted 1F1B iteration time `sum_s t_s + (M - 1) max_s t_s`, ms. */
  objectiveMs: number;
  /** Predicted slowest stage time per micro-batch, ms. */
  bottleneckMs: number;
  /** A lower bound on the bottleneck: max(bare total / P, largest layer), ms. */
  lowerBoundMs: number;
}

/**
 * `p` if it is shaped as a {@link StageProblem} (an object, its per-layer `Float64Array`s, its
 * numbers), else a coded `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) naming the field.
 *
 * @param p - the problem as given
 * @returns `p`
 */
export function checkStageProblem(p: StageProblem): StageProblem {
  if (typeof p !== 'object' || p === null) throw invalidType('problem', `must be an object, got ${describeValue(p)}`);
  checkKnownKeys('problem', p, STAGE_PROBLEM_KEYS, STAGE_PROBLEM_HINTS);
  for (const key of ['forwardMs', 'backwardMs', 'staticBytes', 'activationBytes', 'checkpointBytes'] as const) {
    if (!(p[key] instanceof Float64Array)) throw invalidType(key, `must be a Float64Array, got ${describeValue(p[key])}`);
  }
  if (p.commMs !== undefined && !(p.commMs instanceof Float64Array)) throw invalidType('commMs', `must be a Float64Array, got ${describeValue(p.commMs)}`);
  for (const key of ['stages', 'microBatches', 'memoryBytes'] as const) expectNumber(key, p[key]);
  // The optional fields, typed before either backend reads them (the binding's own conversion
  // errors are not ERR_OMNIBAL_* codes); null is absent, as on the TypeScript backend.
  for (const key of ['virtualStages', 'stageOverheadBytes', 'uniformLayers', 'firstStageMinLayers'] as const) {
    if (p[key] !== undefined && p[key] !== null) expectNumber(key, p[key]);
  }
  for (const key of ['schedule', 'recompute'] as const) {
    if (p[key] !== undefined && p[key] !== null && typeof p[key] !== 'string') throw invalidType(key, `must be a string, got ${describeValue(p[key])}`);
  }
  for (const key of ['selectiveBytes', 'selectiveMs'] as const) {
    if (p[key] !== undefined && p[key] !== null && !(p[key] instanceof Float64Array)) throw invalidType(key, `must be a Float64Array, got ${describeValue(p[key])}`);
  }
  return p;
}

/** An optional field as the binding takes it: null is absent. */
function absentIfNull<T>(x: T | null | undefined): T | undefined {
  return x === null ? undefined : x;
}

function toInput(p: StageProblem): Native.StageProblemInput {
  checkStageProblem(p);
  return {
    forwardMs: p.forwardMs,
    backwardMs: p.backwardMs,
    staticBytes: p.staticBytes,
    activationBytes: p.activationBytes,
    checkpointBytes: p.checkpointBytes,
    stages: p.stages,
    microBatches: p.microBatches,
    memoryBytes: p.memoryBytes,
    stageOverheadBytes: absentIfNull(p.stageOverheadBytes),
    commMs: p.commMs,
    recompute: absentIfNull(p.recompute),
    firstStageMinLayers: absentIfNull(p.firstStageMinLayers),
    selectiveBytes: absentIfNull(p.selectiveBytes),
    selectiveMs: absentIfNull(p.selectiveMs),
    schedule: absentIfNull(p.schedule),
    virtualStages: absentIfNull(p.virtualStages),
    uniformLayers: absentIfNull(p.uniformLayers),
    recomputeGroups: recomputeGroups(p),
  };
}

/** The roles of `uniform` recomputation (see {@link StageProblem.recomputeGroups}). */
function recomputeGroups(p: StageProblem): Uint32Array | undefined {
  if (p.recomputeGroups !== undefined) {
    if (!(p.recomputeGroups instanceof Uint32Array)) throw invalidType('recomputeGroups', `must be a Uint32Array, got ${describeValue(p.recomputeGroups)}`);
    return p.recomputeGroups;
  }
  if (!p.layerKinds) return undefined;
  const vision = p.recomputeVision === true ? 2 : 0;
  return Uint32Array.from(p.layerKinds, (k) => (k === 'llm' ? 1 : k === 'vit' ? vision : 0));
}

function breakdown(p: StageProblem, first: number, last: number, flags: Uint8Array, inFlight: number): MemoryBreakdown {
  const out: MemoryBreakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0, checkpoints: 0, fixed: p.stageOverheadBytes ?? 0 };
  const split = p.weightBytes && p.gradientBytes && p.optimizerBytes;
  let act = 0;
  let ckpt = 0;
  for (let i = first; i <= last; i++) {
    if (split) {
      out.weights += p.weightBytes![i];
      out.gradients += p.gradientBytes![i];
      out.optimizer += p.optimizerBytes![i];
    } else out.weights += p.staticBytes[i];
    if (flags[i] === 1) ckpt += p.checkpointBytes[i];
    else if (flags[i] === 2) act += (p.selectiveBytes ?? p.activationBytes)[i];
    else act += p.activationBytes[i];
  }
  out.activations = inFlight * act;
  out.checkpoints = inFlight * ckpt;
  return out;
}

function lowerBound(p: StageProblem): number {
  const { total, largest } = bareLayerMs(p);
  return Math.max(total / p.stages, largest);
}

/** The recomputed and the selectively recomputed layers of `first..=last`, from the binding's flags. */
function recomputedIn(flags: Uint8Array, first: number, last: number): [number[], number[]] {
  const rec: number[] = [];
  const sel: number[] = [];
  for (let i = first; i <= last; i++) {
    if (flags[i] === 1) rec.push(i);
    else if (flags[i] === 2) sel.push(i);
  }
  return [rec, sel];
}

function shape(p: StageProblem, n: Native.NativeStagePlan): StagePlan {
  const stages: StageInfo[] = Array.from(n.firstLayer, (first, s) => {
    const last = n.lastLayer[s];
    const [rec, sel] = recomputedIn(n.recomputed, first, last);
    return {
      firstLayer: first,
      lastLayer: last,
      layerNames: p.layerNames ? p.layerNames.slice(first, last + 1) : [],
      recomputeLayers: rec,
      selectiveLayers: sel,
      timeMs: n.timeMs[s],
      memoryBytes: n.memoryBytes[s],
      memory: breakdown(p, first, last, n.recomputed, n.inFlight[s]),
      inFlight: n.inFlight[s],
    };
  });
  return { stages, objectiveMs: n.iterationMs, bottleneckMs: n.bottleneckMs, lowerBoundMs: lowerBound(p) };
}

/**
 * The provably optimal split into `P` contiguous stages with each stage's cheapest feasible
 * recomputation, minimising the predicted 1F1B iteration time. Exact for `none`, `full` and
 * `block` recomputation; `any` picks recomputed layers greedily per stage (approximate, never
 * worse than `block`).
 *
 * @throws `ERR_OMNIBAL_INFEASIBLE` (with the least memory per GPU that would fit) when no plan
 *   fits; coded range and type errors for bad input.
 *
 * @param problem - the layers (times, memory), stages, micro-batches and memory limit
 * @returns the stages (last layer, recomputed layers, predicted time and memory) and the predicted iteration time
 */
export function partitionStages(problem: StageProblem): StagePlan {
  return shape(problem, activeBackend().partitionStages(toInput(problem)));
}

/** One model chunk of an interleaved plan. */
export interface ChunkInfo {
  /** First layer (index). */
  firstLayer: number;
  /** Last layer (inclusive). */
  lastLayer: number;
  /** The device that runs it: chunk index mod P (Megatron's virtual pipeline rank is index div P). */
  stage: number;
  /** Names of its layers, when the problem has names. */
  layerNames: string[];
  /** Fully recomputed layers (absolute indices: Megatron's block method per chunk). */
  recomputeLayers: number[];
  /** Selectively recomputed layers (absolute indices). */
  selectiveLayers: number[];
  /** Predicted time per micro-batch (forward + backward + recomputation + the cut after it), ms. */
  timeMs: number;
  /** Micro-batches of this chunk held at its stage's activation peak (from the schedule's replay). */
  held: number;
}

/** One device of an interleaved plan. */
export interface ChunkStageInfo {
  /** Indices into {@link ChunkPlan.chunks} of its `v` chunks, in order. */
  chunks: number[];
  /** Predicted time per micro-batch: the sum of its chunks' times, ms. */
  timeMs: number;
  /** Predicted peak memory, bytes (the sum of {@link ChunkStageInfo.memory}). */
  memoryBytes: number;
  /** Predicted peak memory by part, bytes (activations and checkpoints at the per-chunk held counts). */
  memory: MemoryBreakdown;
  /** Micro-batches held at the peak, chunk-weighted (sum of the chunks' `held` / v). */
  inFlight: number;
}

/**
 * A plan for the interleaved schedule: the layers cut into `v x P` contiguous chunks, chunk `c`
 * on device `c mod P`, with each chunk's recomputation and the predicted figures.
 */
export interface ChunkPlan {
  /** Model chunks per device `v`. */
  virtualStages: number;
  /** The `v x P` chunks in layer order. */
  chunks: ChunkInfo[];
  /** The `P` devices. */
  stages: ChunkStageInfo[];
  /**
   * Predicted iteration time, ms: the pipeline simulator's step for one rank whose micro-batches
   * all take the problem's times, each chunk with its own forward and backward (+ recomputation)
   * time, one transfer per device boundary (the mean of its chunks' cuts), no all-reduce.
   */
  objectiveMs: number;
  /** Predicted slowest device time per micro-batch, ms. */
  bottleneckMs: number;
  /** True when the search finished: no chunking has a smaller predicted iteration time under the model. */
  optimal: boolean;
  /** A lower bound on the optimum's iteration time (the objective itself when `optimal`), ms. */
  lowerBoundMs: number;
}

function shapeChunks(p: StageProblem, n: Native.NativeChunkPlan): ChunkPlan {
  const P = n.timeMs.length;
  const v = n.chunkFirstLayer.length / P;
  const chunks: ChunkInfo[] = Array.from(n.chunkFirstLayer, (first, c) => {
    const last = n.chunkLastLayer[c];
    const [rec, sel] = recomputedIn(n.recomputed, first, last);
    return {
      firstLayer: first,
      lastLayer: last,
      stage: c % P,
      layerNames: p.layerNames ? p.layerNames.slice(first, last + 1) : [],
      recomputeLayers: rec,
      selectiveLayers: sel,
      timeMs: n.chunkTimeMs[c],
      held: n.chunkHeld[c],
    };
  });
  const stages: ChunkStageInfo[] = Array.from(n.timeMs, (timeMs, s) => {
    const mine = Array.from({ length: v }, (_, j) => j * P + s);
    const memory: MemoryBreakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0, checkpoints: 0, fixed: p.stageOverheadBytes ?? 0 };
    for (const c of mine) {
      const b = breakdown(p, chunks[c].firstLayer, chunks[c].lastLayer, n.recomputed, chunks[c].held);
      memory.weights += b.weights;
      memory.gradients += b.gradients;
      memory.optimizer += b.optimizer;
      memory.activations += b.activations;
      memory.checkpoints += b.checkpoints;
    }
    return { chunks: mine, timeMs, memoryBytes: n.memoryBytes[s], memory, inFlight: n.inFlight[s] };
  });
  return { virtualStages: v, chunks, stages, objectiveMs: n.iterationMs, bottleneckMs: n.bottleneckMs, optimal: n.optimal, lowerBoundMs: n.lowerBoundMs };
}

/**
 * The plan Megatron-LM's interleaved schedule runs: the layers cut into `v x P` contiguous model
 * chunks (`v` = `problem.virtualStages`, default 2), chunk `c` on device `c mod P`; each device's
 * time is the sum of its chunks', its memory its chunks' static bytes plus, at the schedule's
 * activation peak, each chunk's held micro-batches (the replay `chunkInFlight` runs) times that
 * chunk's kept bytes; recomputation is chosen per chunk (block: its first `k` layers, as Megatron
 * applies it per model chunk), per device the least added time that fits (a heuristic under the
 * simulated objective, where the step also depends on which chunk carries the time).
 *
 * Objective: the step the pipeline simulator predicts for the chunks (`objectiveMs`; see
 * {@link ChunkPlan.objectiveMs}), the figure a replay of the plan shows, not a closed form.
 *
 * Method and guarantee: a branch and bound over the chunk boundaries from a local-search
 * incumbent, pruned by lower bounds on the simulated step (each device waits for the first
 * micro-batch, is busy `M` times its chunks' time, and that micro-batch still has to go back).
 * When it finishes within its fixed node budget the plan is optimal for the model and the
 * per-device recomputation rule (`optimal: true`; tested against brute force on small random
 * instances, and never slower than the {@link partitionStages} split at `v = 1`); otherwise it is
 * the best plan found and `lowerBoundMs` (the least bound over the branches the search left)
 * bounds the optimum, so `objectiveMs / lowerBoundMs - 1` is a proven bound on the gap.
 * Deterministic (the budget counts nodes and simulations, not time).
 *
 * @throws `ERR_OMNIBAL_INFEASIBLE` when no chunking fits (found or proven; the message says
 *   which); `ERR_OMNIBAL_OUT_OF_RANGE` when the schedule is not interleaved, there are fewer
 *   layers than `v x P` chunks, or `microBatches` is not a multiple of `P`.
 * @param problem - the stage problem with `schedule: 'interleaved'`
 * @returns the chunks, the devices and the predicted iteration time
 */
export function partitionChunks(problem: StageProblem): ChunkPlan {
  return shapeChunks(problem, activeBackend().partitionChunks(toInput(problem)));
}

/**
 * {@link partitionStages} off the main thread.
 *
 * @param problem - as for {@link partitionStages}
 * @returns a Promise of the plan {@link partitionStages} returns
 */
export function partitionStagesAsync(problem: StageProblem): Promise<StagePlan> {
  try {
    const input = toInput(problem);
    return activeBackend().partitionStagesAsync(input).then((n) => shape(problem, n));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Predicted figures of a given split, each stage with its cheapest feasible recomputation.
 *
 * @param problem - the stage problem
 * @param lastLayers - the last layer index of each stage, ascending, ending at the last layer
 * @returns the predicted plan of that split
 */
export function evaluateSplit(problem: StageProblem, lastLayers: number[]): StagePlan {
  expectNumberList('lastLayers', lastLayers);
  return shape(problem, activeBackend().evaluateSplit(toInput(problem), Uint32Array.from(lastLayers)));
}

/**
 * Predicted figures of a fully given plan: stage ends, fully and selectively recomputed layers (memory not enforced).
 *
 * @param problem - the stage problem
 * @param lastLayers - the last layer index of each stage, ascending
 * @param recomputeLayers - the fully recomputed layers (absolute indices)
 * @param selectiveLayers - the selectively recomputed layers (absolute indices)
 * @returns the predicted plan, memory over the limit included
 */
export function evaluateStages(problem: StageProblem, lastLayers: number[], recomputeLayers: number[], selectiveLayers: number[] = []): StagePlan {
  checkStageProblem(problem);
  expectNumberList('lastLayers', lastLayers);
  expectNumberList('recomputeLayers', recomputeLayers);
  expectNumberList('selectiveLayers', selectiveLayers);
  const flags = new Uint8Array(problem.forwardMs.length);
  for (const i of selectiveLayers) flags[i] = 2;
  for (const i of recomputeLayers) flags[i] = 1;
  return shape(problem, activeBackend().evaluateStages(toInput(problem), Uint32Array.from(lastLayers), flags));
}

/**
 * A baseline: a split method (`uniform` by layer count as Megatron, `parameters` as
 * DeepSpeed's default, `balanced` as DeepSpeed's min max-min, `anchor` as the paper's profile
 * anchor) with `none`, `full` or one `uniform` recomputation count for all stages. Every split
 * keeps the problem's first `firstStageMinLayers` layers on stage 0 (`uniform` then counts the
 * layers after them, as Megatron-LM adds its vision encoder to the first stage).
 *
 * @throws `ERR_OMNIBAL_INFEASIBLE` when that baseline does not fit in memory.
 * @param problem - the stage problem
 * @param method - the split method
 * @param recompute - `none`, `full`, or the least `uniform` recomputation count that fits
 * @returns the baseline's predicted plan
 */
export function baselineStages(problem: StageProblem, method: Split, recompute: 'none' | 'full' | 'uniform'): StagePlan {
  checkStageProblem(problem);
  if (typeof method !== 'string') throw invalidType('method', `must be a string, got ${describeValue(method)}`);
  if (typeof recompute !== 'string') throw invalidType('recompute', `must be a string, got ${describeValue(recompute)}`);
  const params = problem.params ?? problem.staticBytes;
  return shape(problem, activeBackend().baselineStages(toInput(problem), params, method, recompute));
}

/** A model, given by preset name or spelled out. */
export type ModelChoice = string | VlmSpec;
/** A GPU, given by preset name or spelled out. */
export type GpuChoice = string | GpuSpec;

/** The load of one micro-batch. */
export interface MicroBatchLoad {
  /** Image tiles. */
  tiles: number;
  /** LLM tokens, image tokens included. */
  tokens: number;
  /** Sum of the squared sample lengths in the micro-batch (attention); default `tokens^2` (one sample). */
  sumSqLen?: number;
}

/** Options of {@link vlmStageProblem}. */
export interface VlmStageOptions {
  /** Model preset name or spec. */
  model: ModelChoice;
  /** GPU preset name or spec. */
  gpu: GpuChoice;
  /** Pipeline stages. */
  pp: number;
  /** Tensor parallel size; default 1. */
  tp?: number;
  /** Data parallel size (for ZeRO sharding); default 1. */
  dp?: number;
  /** ZeRO stage 0-3 (1 = Megatron's distributed optimizer); default 1. */
  zero?: number;
  /** Precision and frozen modules (defaults: fp32 gradients, nothing frozen, flash attention). */
  training?: TrainingOptions;
  /** Micro-batches per iteration. */
  microBatches: number;
  /** The load of one micro-batch (sets the layer times). */
  load: MicroBatchLoad;
  /**
   * The micro-batch activations are sized for (default `load`): the heaviest micro-batch a
   * stage can hold, e.g. the data plan's largest tiles and tokens, or its caps. With `n` in
   * flight the model counts `n` x this, a bound on every window of `n` consecutive micro-batches.
   */
  memoryLoad?: MicroBatchLoad;
  /** Extra fraction on `memoryLoad`'s activations (0.1 = 10% headroom); default 0. */
  headroom?: number;
  /** Pipeline schedule (sets the micro-batches in flight per stage); default `1f1b`. */
  schedule?: Schedule;
  /** Model chunks per device for `interleaved`; default 2. */
  virtualStages?: number;
  /** Recomputation mode; default `block`. */
  recompute?: Recompute;
  /** Keep the vision encoder and projector on stage 0; default false. */
  visionOnFirstStage?: boolean;
  /** Keep the vision encoder, projector and LLM embedding on stage 0 (as Megatron-LM builds them); default false. */
  embeddingOnFirstStage?: boolean;
  /** Fixed bytes per stage; default 3 GiB (CUDA context, NCCL buffers, fragmentation). */
  stageOverheadBytes?: number;
  /** Include cut communication at the GPU's network bandwidth; default true. */
  communication?: boolean;
}

/** Resolves a model choice. */
export function resolveModel(model: ModelChoice): VlmSpec {
  return typeof model === 'string' ? modelPreset(model) : checkVlmSpec(model);
}

/** Resolves a GPU choice. */
export function resolveGpu(gpu: GpuChoice): GpuSpec {
  return typeof gpu === 'string' ? gpuPreset(gpu) : checkGpuSpec(gpu);
}

/** The GPU as the binding takes it. */
export function gpuInput(g: GpuSpec): Native.GpuInput {
  return {
    peakFlops: g.peakFlops,
    memoryBytes: g.memoryBytes,
    efficiencyVit: g.efficiency.vit,
    efficiencyProjector: g.efficiency.projector,
    efficiencyLlm: g.efficiency.llm,
    efficiencyHead: g.efficiency.head,
    networkBytesPerS: g.networkBytesPerS,
    nvlinkBytesPerS: g.nvlinkBytesPerS,
    ...(g.layerCost && {
      layerOverheadMs: Float64Array.from(LAYER_KINDS, (k) => g.layerCost![k]?.overheadMs ?? NaN),
      layerEfficiency: Float64Array.from(LAYER_KINDS, (k) => g.layerCost![k]?.efficiency ?? NaN),
    }),
  };
}

/** Parallel layout and load for a layer table. */
export interface LayerTableOptions {
  /** Tensor parallel size; default 1. */
  tp?: number;
  /** Data parallel size; default 1. */
  dp?: number;
  /** ZeRO stage (0-3); default 1. */
  zero?: number;
  /** Precision and frozen modules. */
  training?: TrainingOptions;
  /** The micro-batch. */
  load: MicroBatchLoad;
}

/** Precision and training set-up of the memory model. */
export interface TrainingOptions {
  /** Gradient precision: `fp32` (Megatron's default main gradients, 18 bytes/param unsharded) or `bf16` (16); default `fp32`. */
  grads?: 'fp32' | 'bf16';
  /** The ViT is frozen: no gradients, optimizer state, backward or activations. */
  frozenVit?: boolean;
  /** The LLM is frozen: no gradients or optimizer state; backward for input gradients only. */
  frozenLlm?: boolean;
  /** Flash attention (no quadratic activation term); default true. */
  flashAttention?: boolean;
}

/** A layer table with names and kinds. */
export interface NamedLayerTable extends LayerTable {
  /** Layer names (`vit.block.3`, `llm.head`, ...). */
  names: string[];
  /** Layer kinds. */
  kinds: LayerKind[];
}

/** The layout and load as the binding takes them (defaults: tp 1, dp 1, ZeRO 1, one sample). */
export function tableShape(options: LayerTableOptions): Native.TableShape {
  const { load } = options;
  if (typeof load !== 'object' || load === null) throw invalidOptions('load must be { tiles, tokens, sumSqLen? }');
  const t = options.training ?? {};
  checkKnownKeys('training', t, TRAINING_OPTION_KEYS);
  if (t.grads !== undefined && t.grads !== 'fp32' && t.grads !== 'bf16') throw invalidOptions(`training.grads must be fp32 or bf16, got ${JSON.stringify(t.grads)}`);
  return {
    tp: options.tp ?? 1,
    dp: options.dp ?? 1,
    zero: options.zero ?? 1,
    tiles: load.tiles,
    tokens: load.tokens,
    sumSqLen: load.sumSqLen ?? load.tokens * load.tokens,
    gradBytes: t.grads === 'bf16' ? 2 : 4,
    frozenVit: t.frozenVit ?? false,
    frozenLlm: t.frozenLlm ?? false,
    flashAttention: t.flashAttention ?? true,
  };
}

/**
 * The model's layer table for one micro-batch: per-layer FLOPs, parameters, times and bytes.
 *
 * @param model - a preset name or a model spec
 * @param gpu - a preset name or a GPU spec
 * @param options - layout (tp, dp, ZeRO) and the micro-batch's load
 * @returns the named per-layer table
 */
export function vlmLayers(model: ModelChoice, gpu: GpuChoice, options: LayerTableOptions): NamedLayerTable {
  checkKnownKeys('options', expectObject('options', options), LAYER_TABLE_OPTION_KEYS);
  const spec = resolveModel(model);
  const g = resolveGpu(gpu);
  const table = activeBackend().vlmLayerTable(spec, gpuInput(g), tableShape(options));
  const kinds = Array.from(table.kind, (k) => LAYER_KINDS[k]);
  let vit = 0;
  let llm = 0;
  const names = kinds.map((k) => {
    if (k === 'vit-embed') return 'vit.patch_embed';
    if (k === 'vit') return `vit.block.${vit++}`;
    if (k === 'projector') return 'projector';
    if (k === 'embed') return 'llm.embed';
    if (k === 'llm') return `llm.block.${llm++}`;
    return 'llm.head';
  });
  return { ...table, names, kinds };
}

/**
 * The stage problem of a VLM on a GPU (a prediction of the cost model).
 *
 * @param o - model, GPU, stages, layout, micro-batch load and memory options
 * @returns the stage problem for {@link partitionStages}
 */
export function vlmStageProblem(o: VlmStageOptions): StageProblem {
  checkKnownKeys('options', expectObject('options', o), VLM_STAGE_OPTION_KEYS);
  // Here, not in tableShape: a calibration file's load may carry its sample count too.
  checkKnownKeys('load', o.load, MICRO_BATCH_LOAD_KEYS);
  if (o.memoryLoad) {
    // Checked here under its own name (the layer table would name its fields load.*).
    checkKnownKeys('memoryLoad', o.memoryLoad, MICRO_BATCH_LOAD_KEYS);
    numberAtLeast('memoryLoad.tiles', o.memoryLoad.tiles, 0);
    numberAtLeast('memoryLoad.tokens', o.memoryLoad.tokens, 1);
    if (o.memoryLoad.sumSqLen !== undefined) numberAtLeast('memoryLoad.sumSqLen', o.memoryLoad.sumSqLen, 0);
  }
  const spec = resolveModel(o.model);
  const g = resolveGpu(o.gpu);
  const t = vlmLayers(spec, g, { tp: o.tp, dp: o.dp, zero: o.zero, training: o.training, load: o.load });
  const headroom = o.headroom ?? 0;
  if (typeof headroom !== 'number' || !Number.isFinite(headroom) || headroom < 0) throw invalidOptions(`headroom must be a number >= 0, got ${describeValue(headroom)}`);
  // Activations sized for the memory load (the heaviest micro-batch), times for the load.
  const m = o.memoryLoad ? vlmLayers(spec, g, { tp: o.tp, dp: o.dp, zero: o.zero, training: o.training, load: o.memoryLoad }) : t;
  const scale = (a: Float64Array) => (headroom === 0 ? a : a.map((x) => x * (1 + headroom)));
  return {
    forwardMs: t.forwardMs,
    backwardMs: t.backwardMs,
    staticBytes: t.staticBytes,
    activationBytes: scale(m.activationBytes),
    checkpointBytes: scale(m.checkpointBytes),
    selectiveBytes: scale(m.selectiveBytes),
    selectiveMs: t.selectiveMs,
    weightBytes: t.weightBytes,
    gradientBytes: t.gradientBytes,
    optimizerBytes: t.optimizerBytes,
    schedule: o.schedule,
    virtualStages: o.virtualStages,
    selectiveModules: o.training?.flashAttention === false ? ['core_attn', 'mlp'] : ['mlp'],
    stages: o.pp,
    microBatches: o.microBatches,
    memoryBytes: g.memoryBytes,
    stageOverheadBytes: o.stageOverheadBytes ?? 3 * 2 ** 30,
    commMs: o.communication === false ? undefined : t.commMs,
    recompute: o.recompute ?? 'block',
    // ViT patch embedding + blocks + projector (+ the LLM embedding).
    firstStageMinLayers: o.embeddingOnFirstStage ? spec.vit.layers + 3 : o.visionOnFirstStage ? spec.vit.layers + 2 : 0,
    layerNames: t.names,
    layerKinds: t.kinds,
    params: t.params,
  };
}

/** Measurements for {@link calibrate} (the calibration file `python -m omnibal.profile` writes). */
export interface Calibration {
  /**
   * Format: `omnibal.calibration/1` (every layer time at `load`; the default) or
   * `omnibal.calibration/2` (a layer time may carry its own `load`).
   */
  schema?: 'omnibal.calibration/1' | 'omnibal.calibration/2';
  /** Measured forward times of some layers (at `load`, or at their own load in format 2). */
  layers?: LayerTiming[];
  /** Measured peak memory per stage with full recomputation and without. */
  stageMemory?: StageMemoryMeasurement[];
  /** The micro-batch load the layers were measured at (`omnibal.profile` writes it); default: the caller's load. */
  load?: MicroBatchLoad;
}

/** A measured layer time. */
export interface LayerTiming {
  /** Index into the layer table. */
  index: number;
  /** Measured forward time, ms (the profiler writes a third of forward + backward: the model prices backward at 2 x forward). */
  forwardMs: number;
  /** The load it was measured at (format 2); default: the calibration's `load`. */
  load?: MicroBatchLoad;
}

/** A stage's measured peak memory with full recomputation and with none. */
export interface StageMemoryMeasurement {
  /** First layer of the stage. */
  firstLayer: number;
  /** Last layer (inclusive). */
  lastLayer: number;
  /** Micro-batches in flight on the stage. */
  inFlight: number;
  /** Peak bytes with every layer recomputed. */
  fullRecomputeBytes: number;
  /** Peak bytes with nothing recomputed. */
  noRecomputeBytes: number;
}

/** Fitted corrections: time per layer kind, and a scale on activation bytes per kind. */
export interface CalibrationResult {
  /**
   * The GPU with the fitted cost of every measured kind in `layerCost` (fixed ms and
   * efficiency) and the fitted efficiencies in `efficiency` (kinds without measurements keep
   * theirs).
   */
  gpu: GpuSpec;
  /** Scale on the model's activation bytes, per layer kind (1 where not measured). */
  activationScale: Record<LayerKind, number>;
  /** What the measurements hold that a user should look at (see `checkMeasurements`); empty when nothing. */
  warnings: string[];
}

/**
 * Fits the cost model to measurements (the paper's procedure): per layer kind, a fixed cost and
 * an efficiency from layer times measured at two loads or more (an efficiency alone from one
 * load), activation bytes per kind from stage memory measured with full and with no
 * recomputation. Apply the result with {@link applyCalibration}.
 *
 * @param model - a preset name or a model spec
 * @param gpu - a preset name or a GPU spec
 * @param options - the layout and load the measurements were taken at
 * @param m - the measured layer times and stage memory
 * @returns the GPU with fitted layer costs, and the activation-byte scale per layer kind
 * @throws `ERR_OMNIBAL_INVALID_TYPE` when `options` or `m` is not an object (`null`, an array);
 *   `ERR_OMNIBAL_INVALID_OPTIONS` for a malformed calibration or one that cannot be a
 *   measurement, naming the file's field (see `checkCalibration`, `checkMeasurements`)
 */
export function calibrate(model: ModelChoice, gpu: GpuChoice, options: LayerTableOptions, m: Calibration): CalibrationResult {
  // A non-object argument is a wrong type, as for every other public function; a malformed object is a bad calibration.
  checkKnownKeys('options', expectObject('options', options), LAYER_TABLE_OPTION_KEYS);
  expectObject('calibration', m);
  checkCalibration(m);
  const spec = resolveModel(model);
  const g = resolveGpu(gpu);
  const layers = m.layers ?? [];
  const base = m.load ?? options.load;
  const work = new Map<string, LayerWork>();
  const { warnings, kinds: measuredKinds } = checkMeasurements(m, options.load, (l) => {
    const key = `${l.tiles},${l.tokens},${l.sumSqLen}`;
    let w = work.get(key);
    if (!w) {
      const t = vlmLayers(spec, g, { ...options, load: l });
      const perMs = (options.tp ?? 1) * g.peakFlops;
      work.set(key, (w = { kinds: t.kinds, msAtPeak: t.forwardFlops.map((f) => (f / perMs) * 1e3) }));
    }
    return w;
  });
  const perLayer = layers.some((x) => x.load !== undefined);
  const stages = m.stageMemory ?? [];
  const out = activeBackend().calibrateModel(spec, gpuInput(g), tableShape(m.load ? { ...options, load: m.load } : options), {
    measuredLayers: Uint32Array.from(layers, (x) => x.index),
    measuredForwardMs: Float64Array.from(layers, (x) => x.forwardMs),
    ...(perLayer && {
      measuredLoads: Float64Array.from(
        layers.flatMap((x) => {
          const l = x.load ?? base;
          return [l.tiles, l.tokens, l.sumSqLen ?? l.tokens * l.tokens];
        }),
      ),
    }),
    stageBounds: Uint32Array.from(stages.flatMap((s) => [s.firstLayer, s.lastLayer, s.inFlight])),
    stageMemory: Float64Array.from(stages.flatMap((s) => [s.fullRecomputeBytes, s.noRecomputeBytes])),
  });
  const e = out.efficiency;
  checkFittedCosts(measuredKinds, LAYER_KINDS, e, out.overheadMs);
  const pick = (k: number, old: number) => (Number.isNaN(e[k]) ? old : e[k]);
  const layerCost: Partial<Record<LayerKind, LayerCost>> = { ...g.layerCost };
  LAYER_KINDS.forEach((k, i) => {
    if (!Number.isNaN(e[i])) layerCost[k] = { overheadMs: out.overheadMs[i], efficiency: e[i] };
  });
  const fitted: GpuSpec = {
    ...g,
    efficiency: {
      // The kinds' own costs are in layerCost; these are what a reader of efficiency sees.
      vit: pick(1, pick(0, g.efficiency.vit)),
      projector: pick(2, g.efficiency.projector),
      llm: pick(4, g.efficiency.llm),
      head: pick(5, g.efficiency.head),
    },
    layerCost,
  };
  const activationScale = Object.fromEntries(LAYER_KINDS.map((k, i) => [k, out.activationScale[i]])) as Record<LayerKind, number>;
  return { gpu: fitted, activationScale, warnings };
}

/**
 * A stage problem with calibrated activation bytes (times come from the calibrated GPU).
 *
 * @param problem - a stage problem from {@link vlmStageProblem}
 * @param result - the result of {@link calibrate}
 * @returns a new stage problem with calibrated activation bytes
 */
export function applyCalibration(problem: StageProblem, result: CalibrationResult): StageProblem {
  checkStageProblem(problem);
  expectObject('result.activationScale', expectObject('result', result).activationScale);
  if (!problem.layerKinds) throw invalidOptions('the problem needs layerKinds (build it with vlmStageProblem) to apply a calibration');
  const scale = (xs: Float64Array) => xs.map((a, i) => a * result.activationScale[problem.layerKinds![i]]);
  return { ...problem, activationBytes: scale(problem.activationBytes), selectiveBytes: problem.selectiveBytes ? scale(problem.selectiveBytes) : undefined };
}
