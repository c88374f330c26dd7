/**
 * The options of a planned run and their checks: the layout, the memory settings, the schedule
 * and steps, and the default run.
 *
 * @module
 */
import { ErrorCodes, omnibalError } from '../errors';
import type { Samples } from '../data/index';
import type { Calibration, GpuChoice, ModelChoice, TrainingOptions } from '../model/index';
import { TARGETS, type Target } from '../model/target';
import { checkKnownKeys, integerBetween, optionKeys } from '../validate';
import { TRAINING_OPTION_KEYS } from '../model/option-keys';

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

/** Every key of {@link PlanTrainingOptions} (tsc checks the list against the interface). */
export const PLAN_TRAINING_OPTION_KEYS = optionKeys<PlanTrainingOptions>({
  model: true, gpu: true, cluster: true, samples: true, accum: true, globalBatch: true, samplesPerPack: true, seed: true, epoch: true,
  simulatedSteps: true, schedule: true, virtualStages: true, calibration: true, ablation: true, inputs: true, epochs: true, zero: true,
  training: true, memoryBytes: true, headroom: true, target: true,
});

/** Every key of {@link Cluster}. */
export const CLUSTER_KEYS = optionKeys<Cluster>({ gpus: true, tp: true, pp: true, dp: true });

/** Every key of {@link PlanInputs} (either form). */
export const PLAN_INPUTS_KEYS = optionKeys<SyntheticInputs & FileInputs>({ synthetic: true, seed: true, files: true });

/** Keys users reach for that {@link PlanTrainingOptions} spells otherwise. */
export const PLAN_TRAINING_HINTS: Readonly<Record<string, string>> = {
  ...Object.fromEntries(CLUSTER_KEYS.map((k) => [k, `cluster.${k} (cluster: { gpus, tp, pp, dp })`])),
  synthetic: 'samples: syntheticSamples(n, seed)',
};

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
  checkKnownKeys('training', t, TRAINING_OPTION_KEYS);
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
    // Megatron-LM runs one chunk per device as plain 1F1B; its interleaved warm-up (which would
    // hold up to 2 (P - 1) micro-batches) only applies from two chunks on.
    if (schedule === 'interleaved' && options.virtualStages === 1) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'the interleaved schedule needs at least 2 virtual stages; one chunk per device is the 1f1b schedule (Megatron-LM runs it as such)');
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
