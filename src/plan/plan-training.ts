/**
 * Plans a training run: the balanced and random data plans, the ablation chain and the
 * baselines, each simulated, and the run figures of the full plan.
 *
 * @module
 */
import { ErrorCodes, omnibalError } from '../errors';
import { batchMetrics, planBatches, type BatchMetrics } from '../data/index';
import { syntheticSamples } from '../data/synthetic';
import { meanMicroBatchLoad } from '../data/load';
import { capsForTarget } from '../data/caps';
import { planWarnings } from '../data/plan-warnings';
import { anyEpochHeaviestLoad } from '../model/memory-load';
import { withOverCapCause } from './over-cap';
import { resolveGpu, resolveModel } from '../model/index';
import { checkKnownKeys, expectObject, integerBetween } from '../validate';
import { runFigures } from './figures';
import { checkMemoryOptions, checkRunOptions, CLUSTER_KEYS, DEFAULT_RUN, PLAN_INPUTS_KEYS, PLAN_TRAINING_HINTS, PLAN_TRAINING_OPTION_KEYS, type PlanTrainingOptions } from './options';
import { prepareModel } from './prepare-model';
import { simulateConfig, type Config, type Resolved, type Simulated } from './simulate-config';
import { exportMegatronChunks } from '../export/megatron-chunks';
import { exportDeepSpeed, exportMegatron } from '../export/index';
import type { ChunkTargetPlan } from '../model/chunk-target';
import { INTERLEAVED_PLAN_ASSUMPTION, PLAN_ASSUMPTIONS, type AblationRow, type PlanChunks, type TrainingPlan } from './training-plan';

const MEGATRON_DEFAULT = 'Megatron default (random batches, uniform split, full recompute)';

/** Printed under `--target megatron` with the ablation: every row is a split Megatron-LM can run. */
const MEGATRON_ABLATION_ASSUMPTION =
  "ablation: every row obeys Megatron-LM's layout rules (the vision encoder, projector and LLM embedding on the first stage, one recomputation setting for every stage): the baseline, data-balance and Megatron-default rows split the layers after those first-stage layers (the uniform split in equal counts, stage 0 holding them too) and recompute every layer";

/**
 * Why an ablation row or baseline was not planned, for the table, the JSON and the report: the
 * memory figures of an out-of-memory error (the library's own message counts bytes) in GiB,
 * rounded up to 0.01 (a need rounded down could look as if it fitted).
 */
function rowError(error: unknown): string {
  const message = (error as Error).message;
  if ((error as { code?: string }).code !== ErrorCodes.INFEASIBLE) return message;
  return message.replace(/\b(\d{7,})(?: bytes)?(?: \(([\d.]+) GiB, rounded up\))?/g, (_, n: string, gib?: string) => `${gib ?? (Math.ceil((Number(n) / 2 ** 30) * 100) / 100).toFixed(2)} GiB`);
}

/** The chunks of an interleaved plan as the plan carries them, with their Megatron-LM export. */
export function planChunks(c: ChunkTargetPlan): PlanChunks {
  return {
    virtualStages: c.plan.virtualStages,
    chunks: c.plan.chunks,
    optimal: c.plan.optimal,
    lowerBoundMs: c.plan.lowerBoundMs,
    targetNotes: c.notes,
    megatron: exportMegatronChunks(c.problem, c.plan),
  };
}

/**
 * Plans a training run and predicts its ablation (a prediction of the model and simulator).
 *
 * @param options - model, GPU, cluster layout, samples (files or synthetic) and planning options; all optional
 * @returns the plan (data, stages, simulated steps) and the predicted ablation
 */
export function planTraining(options: PlanTrainingOptions = {}): TrainingPlan {
  checkKnownKeys('options', expectObject('options', options), PLAN_TRAINING_OPTION_KEYS, PLAN_TRAINING_HINTS);
  checkKnownKeys('cluster', options.cluster, CLUSTER_KEYS);
  checkKnownKeys('inputs', options.inputs, PLAN_INPUTS_KEYS);
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
  // Metrics first: their pass over each plan also gives its micro-batch loads, which the
  // configurations below read (no second pass over the samples).
  const data = { balanced: pick(batchMetrics(balanced, samples, cost)), random: pick(batchMetrics(random, samples, cost)) };
  // The calibration's warnings, then the balanced plan's (over 1% of the samples left out: the
  // dropped tail of a large dp x accum, say).
  const warnings = [...(calibration?.warnings ?? []), ...planWarnings(balanced, samples.text.length, undefined, 'the figures are for the planned samples; the sampler\'s tail=\'carry\' trains them in the next epoch, or use fewer ranks or micro-batches per step')];
  // The balanced rows' memory is sized for the heaviest micro-batch of any epoch (each epoch
  // packs afresh within the same caps), not only this one's.
  const caps = capsForTarget(samples.vision, samples.text, b);
  const memoryLoad = anyEpochHeaviestLoad(balanced, samples, caps);
  const configs: Config[] = [
    { name: 'baseline (random batches, parameter split, full recompute)', plan: random, split: 'parameters', recompute: 'full' },
    { name: '+ data balance', plan: balanced, split: 'parameters', recompute: 'full', memoryLoad },
    { name: '+ model balance', plan: balanced, split: 'optimal', recompute: 'full', memoryLoad },
    { name: '+ memory balance', plan: balanced, split: 'optimal', recompute: 'block', memoryLoad },
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
      // The full plan must fit; when samples over the caps raise its memory bound, say so.
      if (last) throw cfg.memoryLoad ? withOverCapCause(error, samples, caps, b, g.memoryBytes, (load) => simulateConfig({ ...cfg, memoryLoad: load }, samples, resolved, coef, undefined).stages) : error;
      rows.push({ name: cfg.name, stepMs: NaN, gpuHours: NaN, steps: cfg.plan.steps, speedup: NaN, bubbleFraction: NaN, error: rowError(error) });
    }
  });
  const baselines: TrainingPlan['baselines'] = {};
  if (options.ablation !== false) {
    try {
      const megatron = simulateConfig({ name: MEGATRON_DEFAULT, plan: random, split: 'uniform', recompute: 'full' }, samples, resolved, coef, base?.row.gpuHours);
      if (base === undefined) megatron.row.speedup = NaN;
      baselines.megatronUniform = megatron.row;
    } catch (error) {
      baselines.megatronUniform = { name: MEGATRON_DEFAULT, error: rowError(error) };
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
    assumptions: [
      ...PLAN_ASSUMPTIONS,
      ...(schedule === 'interleaved' ? [INTERLEAVED_PLAN_ASSUMPTION] : []),
      // The baselines' splits keep Megatron-LM's first-stage layers on stage 0 too (simulate-config.ts).
      ...(memory.target === 'megatron' && options.ablation !== false ? [MEGATRON_ABLATION_ASSUMPTION] : []),
    ],
    model: modelName,
    gpu: gpuName,
    cluster,
    accum,
    samples: samples.text.length,
    steps: balanced.steps,
    stages: full.stages,
    ...(full.chunks && { chunks: planChunks(full.chunks) }),
    ...(!full.chunks && full.problem && { exports: { megatron: exportMegatron(full.problem, full.stages), deepspeed: exportDeepSpeed(full.stages) } }),
    data,
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
    ...(warnings.length > 0 && { warnings }),
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
