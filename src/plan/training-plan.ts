/**
 * The shape of a planned training run (`omnibal plan --json`): the ablation rows, the data
 * comparison, the replay settings, the report detail, and the assumptions behind every figure.
 *
 * @module
 */
import type { BatchMetrics } from '../data/index';
import type { DeepSpeedExport, MegatronExport } from '../export/index';
import type { Calibration, ChunkInfo, StagePlan } from '../model/index';
import type { RunFigures } from './figures';
import type { Cluster, PlanInputs, PlanMemory } from './options';

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
  /**
   * The chosen stages and recomputation (the full plan). For an interleaved plan, one entry per
   * device with its figures over all its chunks (see `chunks`): its `firstLayer` / `lastLayer`
   * are its first chunk's first and its last chunk's last layer, its layers only its chunks'.
   */
  stages: StagePlan;
  /** The `v x P` model chunks of an interleaved plan (absent for GPipe and 1F1B). */
  chunks?: PlanChunks;
  /**
   * Megatron-LM and DeepSpeed arguments for the chosen stages, as `omnibal partition` emits them
   * (GPipe and 1F1B plans; an interleaved plan's Megatron export is in `chunks`).
   */
  exports?: {
    /** Megatron-LM arguments and layout (`exportMegatron`). */
    megatron: MegatronExport;
    /** DeepSpeed `PipelineModule` parts and checkpointed layers (`exportDeepSpeed`). */
    deepspeed: DeepSpeedExport;
  };
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
  /** Warnings about the calibration's measurements (see `checkMeasurements`), then about the balanced batch plan (`planWarnings`: over 1% of the samples left out, as tail or over a cap); absent when none. */
  warnings?: string[];
  /** Run-level predictions of the full plan: throughput, MFU, time to train. */
  figures: RunFigures;
  /** Figures for reports: per-step rank loads and one simulated timeline each of the baseline and the plan. */
  detail: PlanDetail;
}

/** The model chunks of an interleaved plan (`partitionChunks`), with the Megatron-LM export. */
export interface PlanChunks {
  /** Model chunks per device `v`. */
  virtualStages: number;
  /** The `v x P` chunks in layer order; chunk `c` runs on device `c mod P` as virtual stage `c div P`. */
  chunks: ChunkInfo[];
  /** True when the chunk search finished (optimal under the model); otherwise `lowerBoundMs` bounds the optimum. */
  optimal: boolean;
  /** A lower bound on the optimum's predicted iteration time, ms (the plan's own when `optimal`). */
  lowerBoundMs: number;
  /** The framework target's changes (first-chunk layers, one recompute setting), in words. */
  targetNotes: string[];
  /** Megatron-LM arguments for these chunks, as `omnibal partition --schedule interleaved` emits them. */
  megatron: MegatronExport;
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
  /** Which baseline (absent in plans saved before it was given). */
  name?: string;
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
  "memory of the balanced rows for the heaviest micro-batch of any epoch (per component, the most of this epoch's heaviest, the caps every pack keeps to, and every over-cap sample's own micro-batch); the random baseline's for this epoch's batches",
];

/**
 * What an interleaved training plan assumes besides {@link PLAN_ASSUMPTIONS}: the `v x P` chunk
 * planner's layout and memory, each chunk simulated with its own time.
 */
export const INTERLEAVED_PLAN_ASSUMPTION =
  "interleaved: the layers cut into v x P contiguous model chunks, chunk c on device c mod P (Megatron-LM's interleaved layout, planned by partitionChunks to minimise the simulated step of one rank at the mean micro-batch, the planner's iteration time); device memory = its chunks' static bytes + the most, over the schedule's replay, of sum over its chunks of (micro-batches of that chunk held) x (its kept bytes for the heaviest micro-batch) + fixed overhead; each chunk simulated with its own time, one transfer time per device boundary (the mean of its chunks' cuts); the ablation's contiguous baselines (parameter and uniform splits) run each device's layers as v equal chunks";
