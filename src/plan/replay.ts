/**
 * Re-simulates a saved (possibly hand-edited) plan on its samples.
 *
 * @module
 */
import { capsForTarget } from '../data/caps';
import { anyEpochHeaviestLoad } from '../model/memory-load';
import { ErrorCodes, omnibalError } from '../errors';
import { planBatches, type Samples } from '../data/index';
import { meanMicroBatchLoad } from '../data/load';
import { resolveGpu, resolveModel, type ChunkPlan, type StagePlan } from '../model/index';
import { runFigures, type RunFigures } from './figures';
import { checkMemoryOptions, checkRunOptions } from './options';
import { prepareModel } from './prepare-model';
import { simulateConfig, type Resolved } from './simulate-config';
import type { TrainingPlan } from './training-plan';
import { checkSavedChunks, checkSavedPlan, checkSavedStages } from './validate';

/** The result of re-simulating a saved plan. */
export interface ReplayResult {
  /** Predicted mean step time of the plan as given (its stages and recomputation), ms. */
  stepMs: number;
  /** Predicted GPU-hours per epoch. */
  gpuHours: number;
  /** Predicted bubble fraction. */
  bubbleFraction: number;
  /** The stages as evaluated by the cost model (for an interleaved plan, per device over its chunks). */
  stages: StagePlan;
  /** An interleaved plan's chunks as evaluated (their times and held counts). */
  chunks?: ChunkPlan;
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
  const given =
    schedule === 'interleaved'
      ? { lastLayers: [], ...checkSavedChunks(saved, coef.perTile.length) }
      : checkSavedStages(saved, coef.perTile.length);
  const resolved: Resolved = { spec, gpu: g, cluster, accum: saved.accum, simulatedSteps, schedule, virtualStages, calibration, memory };
  const plan = planBatches(samples, { dp: cluster.dp, accum: saved.accum, samplesPerPack: r.samplesPerPack, seed: r.seed, epoch: r.epoch, costA: 1, costB, tail: 'drop' });
  // Sized as the plan was: for the heaviest micro-batch of any epoch.
  const memoryLoad = anyEpochHeaviestLoad(plan, samples, capsForTarget(samples.vision, samples.text, r.samplesPerPack));
  const sim = simulateConfig({ name: 'saved plan', plan, split: 'given', recompute: 'block', given, memoryLoad }, samples, resolved, coef, undefined);
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
  return { stepMs: sim.row.stepMs, gpuHours: sim.row.gpuHours, bubbleFraction: sim.row.bubbleFraction, stages: sim.stages, ...(sim.chunks && { chunks: sim.chunks.plan }), figures };
}
