/**
 * Layout search: which tensor/pipeline/data parallel split of the GPUs (at a fixed global
 * batch) gives the fastest predicted epoch, among the layouts that fit in memory.
 *
 * @module
 */
import type { Samples } from '../data/samples';
import { syntheticSamples } from '../data/synthetic';
import { DEFAULT_RUN, planTraining, type PlanTrainingOptions } from './index';

/** One evaluated layout. */
export interface LayoutCandidate {
  /** Tensor parallel size. */
  tp: number;
  /** Pipeline stages. */
  pp: number;
  /** Data parallel size. */
  dp: number;
  /** Micro-batches per rank per step (global batch / dp). */
  accum: number;
  /** Mean samples per micro-batch. */
  samplesPerPack: number;
  /** Predicted step time of the full plan, ms (absent when it does not fit). */
  stepMs?: number;
  /** Predicted GPU-hours per epoch (absent when it does not fit). */
  gpuHours?: number;
  /** Why the layout was not planned. */
  error?: string;
}

/** Options of {@link searchLayouts}. */
export interface LayoutSearchOptions extends Omit<PlanTrainingOptions, 'cluster' | 'accum'> {
  /** GPUs; default 64. */
  gpus?: number;
  /** Micro-batches per step over all ranks, kept fixed across layouts; default 256. */
  globalBatch?: number;
  /** Tensor parallel sizes to try; default 1, 2, 4, 8. */
  tps?: number[];
  /** Pipeline sizes to try; default 1, 2, 4, 8, 16. */
  pps?: number[];
  /** Micro-batch sizes (mean samples per pack) to try; default the one planned (4.5). */
  samplesPerPacks?: number[];
}

/**
 * Plans every layout `tp x pp x dp = gpus` with `dp` dividing the global batch (and each
 * micro-batch size asked for), and ranks them
 * by predicted GPU-hours per epoch (fastest first; layouts that do not fit last, with why).
 *
 * @param options - GPU count, global batch, the tp/pp/samples-per-pack values to try, and the planTraining options; all optional
 * @returns every layout, ranked by predicted GPU-hours per epoch
 */
export function searchLayouts(options: LayoutSearchOptions = {}): LayoutCandidate[] {
  const gpus = options.gpus ?? DEFAULT_RUN.cluster.gpus;
  const globalBatch = options.globalBatch ?? DEFAULT_RUN.accum * DEFAULT_RUN.cluster.dp;
  const samples: Samples = options.samples ?? syntheticSamples(DEFAULT_RUN.samples, options.seed ?? 0);
  const out: LayoutCandidate[] = [];
  for (const tp of options.tps ?? [1, 2, 4, 8]) {
    for (const pp of options.pps ?? [1, 2, 4, 8, 16]) {
      if (gpus % (tp * pp) !== 0) continue;
      const dp = gpus / (tp * pp);
      if (globalBatch % dp !== 0) continue;
      const accum = globalBatch / dp;
      for (const samplesPerPack of options.samplesPerPacks ?? [options.samplesPerPack ?? DEFAULT_RUN.samplesPerPack]) {
        const c: LayoutCandidate = { tp, pp, dp, accum, samplesPerPack };
        try {
          const plan = planTraining({ ...options, samples, samplesPerPack, cluster: { gpus, tp, pp, dp }, accum, globalBatch: undefined, simulatedSteps: options.simulatedSteps ?? 4, ablation: false });
          const full = plan.ablation[plan.ablation.length - 1];
          c.stepMs = full.stepMs;
          c.gpuHours = full.gpuHours;
        } catch (error) {
          c.error = (error as Error).message;
        }
        out.push(c);
      }
    }
  }
  out.sort((a, b) => (a.gpuHours ?? Infinity) - (b.gpuHours ?? Infinity) || a.tp - b.tp || a.pp - b.pp || a.samplesPerPack - b.samplesPerPack);
  return out;
}
