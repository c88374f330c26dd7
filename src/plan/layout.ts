/**
 * Layout search: which tensor/pipeline/data parallel split of the GPUs and which micro-batch
 * size, at a fixed global batch in SAMPLES, gives the fastest predicted epoch among the layouts
 * that fit in memory.
 *
 * Fast by sharing work: the balanced data plan depends on the layout only through how a step's
 * packs are dealt to ranks (the packing and the per-step text balance depend on the micro-batch
 * size and the micro-batches per step), so the data is planned once per micro-batch size and
 * micro-batches per step and re-dealt per data-parallel size exactly as the planner deals it;
 * the model is prepared once per (tp, dp); each candidate then only splits the stages (natively)
 * and simulates its steps. `exhaustive: true` plans every candidate from scratch instead (the
 * same result, for checking).
 *
 * @module
 */
import { ErrorCodes, omnibalError, type ErrorCode } from '../errors';
import { planBatches } from '../data/index';
import type { BatchPlan } from '../data/plan';
import type { Samples } from '../data/samples';
import { syntheticSamples } from '../data/synthetic';
import { costWeights } from '../data/cost';
import { meanMicroBatchLoad } from '../data/load';
import { anyEpochHeaviestLoad } from '../model/memory-load';
import { capsForTarget } from '../data/caps';
import { DEEPSPEED_INTERLEAVED } from '../model/chunk-target';
import { resolveGpu, resolveModel } from '../model/index';
import { checkKnownKeys, expectObject, integerBetween, optionKeys } from '../validate';
import { checkProgress } from '../progress';
import { runFigures } from './figures';
import { checkMemoryOptions, checkRunOptions, DEFAULT_RUN, PLAN_TRAINING_OPTION_KEYS, type Cluster, type PlanTrainingOptions } from './options';
import { planTraining } from './plan-training';
import { balanceCostB, prepareModel } from './prepare-model';
import { simulateConfig, type Resolved } from './simulate-config';

/** One evaluated layout. */
export interface LayoutCandidate {
  /** Tensor parallel size. */
  tp: number;
  /** Pipeline stages. */
  pp: number;
  /** Data parallel size. */
  dp: number;
  /**
   * Micro-batches per rank per step: a whole number next to the global batch in samples / the
   * packs' real mean samples / dp (see `accumFor` in src/plan/layout.ts, `packedSamplesPerPack`); 0 when the packs could not be planned.
   */
  accum: number;
  /** Mean samples per micro-batch asked for. */
  samplesPerPack: number;
  /** Mean samples per micro-batch the balanced packs really hold when asked for `samplesPerPack` (estimated; absent when the packs could not be planned). */
  packedSamplesPerPack?: number;
  /** Samples per step over all ranks asked for (the same for every candidate). */
  globalBatchSamples: number;
  /**
   * Samples per step the candidate's epoch really holds (its planned samples / its steps; the
   * last partial step of the epoch is dropped): within one pack per data-parallel rank of
   * `globalBatchSamples` (absent when it does not fit).
   */
  samplesPerStep?: number;
  /** Predicted step time of the full plan, ms (absent when it does not fit). */
  stepMs?: number;
  /** Predicted GPU-hours per epoch (absent when it does not fit): what the layouts are ranked by. */
  gpuHours?: number;
  /** Steps in the epoch (absent when it does not fit). */
  steps?: number;
  /** Epochs the `hours` and `totalGpuHours` are for (`epochs` asked; default 1). */
  epochs: number;
  /** Predicted wall-clock hours for `epochs` epochs: epochs x steps x step time (absent when it does not fit). */
  hours?: number;
  /** Predicted GPU-hours for `epochs` epochs: `hours` x GPUs (absent when it does not fit). */
  totalGpuHours?: number;
  /** Predicted LLM tokens per second (absent when it does not fit). */
  tokensPerS?: number;
  /** Predicted model FLOPs utilisation (absent when it does not fit). */
  mfu?: number;
  /** Why the layout was not planned (memory figures in GiB). */
  error?: string;
}

/**
 * Progress of a layout search: `done` of `total` candidate layouts evaluated, and what runs now.
 *
 * @param done - candidate layouts evaluated so far, `0..=total`
 * @param total - candidate layouts in the search (every tp x pp x dp of the GPUs, times the micro-batch sizes)
 * @param phase - what the search does until the next call, in words (`planning the data (4.5 samples/pack, 256 packs/step)`)
 */
export type LayoutProgressCallback = (done: number, total: number, phase: string) => void;

/** Options of {@link searchLayouts}. */
export interface LayoutSearchOptions extends Omit<PlanTrainingOptions, 'cluster' | 'accum' | 'globalBatch' | 'ablation' | 'inputs'> {
  /** GPUs; default 64. */
  gpus?: number;
  /**
   * Samples per step over all ranks, held across layouts (each rank takes a whole number of
   * packs next to its share: see `accumFor` in src/plan/layout.ts); default 1,152 (32 x 8 x 4.5).
   */
  globalBatchSamples?: number;
  /** Tensor parallel sizes to try; default 1, 2, 4, 8. */
  tps?: number[];
  /** Pipeline sizes to try; default 1, 2, 4, 8, 16. */
  pps?: number[];
  /** Micro-batch sizes (mean samples per pack) to try; default the one planned (4.5). */
  samplesPerPacks?: number[];
  /**
   * `(done, total, phase)`: `done` of the `total` candidate layouts evaluated (nothing else is
   * counted), called with 0 first and after each candidate; `phase` says what runs next (the
   * data plans made between candidates take most of the time).
   */
  onProgress?: LayoutProgressCallback;
  /** Plan every candidate from scratch with `planTraining` (slow; the same result). */
  exhaustive?: boolean;
}

/** Every key of {@link LayoutSearchOptions}: the plan options it shares, then its own. */
const LAYOUT_OWN_KEYS = optionKeys<Omit<LayoutSearchOptions, keyof PlanTrainingOptions>>({ gpus: true, globalBatchSamples: true, tps: true, pps: true, samplesPerPacks: true, onProgress: true, exhaustive: true });
const PLAN_ONLY_KEYS = optionKeys<Omit<PlanTrainingOptions, keyof LayoutSearchOptions>>({ cluster: true, accum: true, globalBatch: true, ablation: true, inputs: true });
const LAYOUT_SEARCH_OPTION_KEYS = [...PLAN_TRAINING_OPTION_KEYS.filter((k) => !PLAN_ONLY_KEYS.includes(k)), ...LAYOUT_OWN_KEYS];

/** Memory figures in an error message in GiB rather than raw bytes. */
function inGiB(message: string): string {
  // Rounded up (a "least memory that fits" rounded to nearest could still not fit); the core's
  // own GiB figure (already rounded up) is kept where it gives one.
  return message.replace(/(\d{7,}) bytes(?: \(([\d.]+) GiB, rounded up\))?/g, (_, n: string, gib?: string) => `${gib ?? (Math.ceil((Number(n) / 2 ** 30) * 100) / 100).toFixed(2)} GiB`);
}

/**
 * The balanced plan of `base` (planned with `dp = M`, `accum = 1`: one micro-batch per rank) re-dealt
 * to `dp` ranks of `accum` micro-batches each (`dp * accum = M`), exactly as the planner deals a
 * step: micro-batches by (vision, text cost) descending, in snake order over the ranks. Only the
 * steps listed in `only` are dealt (default all); the others keep `base`'s order, which changes no
 * figure but the dealing within those steps.
 */
export function redealPlan(base: BatchPlan, samples: Samples, weights: Float64Array, dp: number, accum: number, only?: number[]): BatchPlan {
  const m = base.dp * base.accum;
  if (base.accum !== 1 || dp * accum !== m || base.padding.some((x) => x !== 0)) {
    throw new Error('internal: re-dealing needs a one-micro-batch-per-rank plan of dp x accum ranks, without a tail');
  }
  if (dp === base.dp) return base;
  const steps = base.steps;
  const out = base.samples.slice();
  const mbOffsets = base.microBatchOffsets.slice();
  const rankOffsets = new Uint32Array(steps * dp + 1);
  for (let i = 1; i < rankOffsets.length; i++) rankOffsets[i] = i * accum;
  const vision = new Float64Array(m);
  const cost = new Float64Array(m);
  const order = Array.from({ length: m }, (_, j) => j);
  const byRank = Array.from({ length: dp }, () => [] as number[]);
  for (const s of only ?? Array.from({ length: steps }, (_, i) => i)) {
    const first = s * m;
    for (let j = 0; j < m; j++) {
      let v = 0;
      let c = 0;
      for (let q = base.microBatchOffsets[first + j]; q < base.microBatchOffsets[first + j + 1]; q++) {
        v += samples.vision[base.samples[q]];
        c += weights[base.samples[q]];
      }
      vision[j] = v;
      cost[j] = c;
      order[j] = j;
    }
    order.sort((a, b) => vision[b] - vision[a] || cost[b] - cost[a] || a - b);
    for (const r of byRank) r.length = 0;
    order.forEach((mb, j) => byRank[Math.floor(j / dp) % 2 === 0 ? j % dp : dp - 1 - (j % dp)].push(mb));
    let w = base.microBatchOffsets[first];
    let k = first;
    for (const mbs of byRank) {
      for (const j of mbs) {
        const from = base.microBatchOffsets[first + j];
        const to = base.microBatchOffsets[first + j + 1];
        out.set(base.samples.subarray(from, to), w);
        w += to - from;
        mbOffsets[++k] = w;
      }
    }
  }
  return { ...base, dp, accum, samples: out, microBatchOffsets: mbOffsets, rankOffsets };
}

/** Micro-batches per step the data planner takes (dp x accum, its bound on dp). */
const MAX_STEP_MICRO_BATCHES = 1 << 20;

/** Samples the pack-size estimate is planned on (every k-th sample beyond it). */
const ESTIMATE_SAMPLES = 150_000;

/**
 * The mean samples per micro-batch the balanced planner's packs hold when asked for `b`. Packs
 * close on whole tiles and tokens, so they hold more or fewer than asked (2.53 for 2.25, 4.68
 * for 4.5 on the default data), and how many they hold moves in steps no request can avoid;
 * the packing does not depend on the micro-batches per step, so one plan of every k-th sample
 * (one micro-batch per step) estimates it (to ~0.1% on the default data).
 */
export function packedSamplesPerPack(samples: Samples, b: number, seed: number, epoch: number, costB: number): number {
  const n = samples.text.length;
  const k = Math.max(1, Math.floor(n / ESTIMATE_SAMPLES));
  const pick = (xs: Uint32Array) => {
    if (k === 1) return xs;
    const out = new Uint32Array(Math.ceil(n / k));
    for (let i = 0; i < out.length; i++) out[i] = xs[i * k];
    return out;
  };
  const plan = planBatches({ vision: pick(samples.vision), text: pick(samples.text) }, { dp: 1, accum: 1, samplesPerPack: b, seed, epoch, costA: 1, costB, tail: 'drop' });
  return plan.samples.length / (plan.microBatchOffsets.length - 1);
}

/**
 * Micro-batches per rank per step holding `globalBatchSamples` over `dp` ranks of packs of
 * `packed` samples: the nearest whole number (at least 1), so a step holds the global batch to
 * within half a pack per rank; or the other whole number next to the exact share when that
 * gives micro-batches per step in `reuse` (a data plan already made) and still holds the global
 * batch to within one pack per rank.
 */
export function accumFor(globalBatchSamples: number, packed: number, dp: number, reuse: ReadonlySet<number> = new Set()): number {
  const exact = globalBatchSamples / (packed * dp);
  const nearest = Math.max(1, Math.round(exact));
  if (reuse.has(nearest * dp)) return nearest;
  const other = nearest > exact ? Math.floor(exact) : Math.ceil(exact);
  return other >= 1 && reuse.has(other * dp) && Math.abs(other * dp * packed - globalBatchSamples) < packed * dp ? other : nearest;
}

/** The steps the simulator reads (evenly spread over the epoch; as `simulateConfig` picks them). */
function simulatedStepIndices(steps: number, simulated: number): number[] {
  const count = Math.min(simulated, steps);
  return Array.from({ length: count }, (_, j) => Math.floor((j * steps) / count));
}

/**
 * The candidates a layout search evaluates, in its order: per micro-batch size, every tp x pp
 * that divides the GPUs (each size once: a repeated one would only repeat rows), with
 * `dp = gpus / (tp x pp)`. Its length is the `total` of the search's progress.
 *
 * @param options - the search's GPUs, tp and pp sizes and micro-batch sizes (defaults as {@link searchLayouts})
 * @returns the candidates: tp, pp, dp and `b`, the micro-batch size asked
 */
export function layoutCandidates(options: Pick<LayoutSearchOptions, 'gpus' | 'tps' | 'pps' | 'samplesPerPacks' | 'samplesPerPack'>): { tp: number; pp: number; dp: number; b: number }[] {
  const gpus = options.gpus ?? DEFAULT_RUN.cluster.gpus;
  const perPack = [...new Set(options.samplesPerPacks ?? [options.samplesPerPack ?? DEFAULT_RUN.samplesPerPack])];
  const layouts: { tp: number; pp: number; dp: number }[] = [];
  for (const tp of new Set(options.tps ?? [1, 2, 4, 8])) {
    for (const pp of new Set(options.pps ?? [1, 2, 4, 8, 16])) {
      integerBetween('tp', tp, 1, 1 << 20);
      integerBetween('pp', pp, 1, 1 << 20);
      if (gpus % (tp * pp) === 0) layouts.push({ tp, pp, dp: gpus / (tp * pp) });
    }
  }
  return perPack.flatMap((b) => layouts.map((l) => ({ ...l, b })));
}

/**
 * Plans every layout `tp x pp x dp = gpus` and micro-batch size at the same global batch in
 * samples (each rank takes a whole number of packs within one of its share, the nearest unless
 * the other reuses a data plan: see `accumFor` in src/plan/layout.ts), and ranks them by predicted GPU-hours per epoch (fastest first; layouts
 * that do not fit last, with why). Every candidate's epoch drops its last partial step. Predictions
 * of the cost model and simulator.
 *
 * @param options - GPUs, global batch in samples, candidate tp/pp/samples per pack, and the plan options
 * @returns every candidate, fastest first, with its predicted step time and GPU-hours or why it does not fit
 */
export function searchLayouts(options: LayoutSearchOptions = {}): LayoutCandidate[] {
  checkKnownKeys('options', expectObject('options', options), LAYOUT_SEARCH_OPTION_KEYS, { cluster: "gpus with tps and pps (the search tries each layout)", accum: "globalBatchSamples (held across layouts)" });
  const onProgress = checkProgress<LayoutProgressCallback>(options.onProgress);
  const gpus = integerBetween('gpus', options.gpus ?? DEFAULT_RUN.cluster.gpus, 1, 1 << 20);
  const perPack = [...new Set(options.samplesPerPacks ?? [options.samplesPerPack ?? DEFAULT_RUN.samplesPerPack])];
  const globalBatchSamples = options.globalBatchSamples ?? DEFAULT_RUN.accum * DEFAULT_RUN.cluster.dp * DEFAULT_RUN.samplesPerPack;
  // Micro-batch sizes first: the CLI derives the global batch from --samples-per-pack.
  for (const b of perPack) {
    if (typeof b !== 'number' || !Number.isFinite(b) || b < 1) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `samplesPerPack must be a number >= 1, got ${b}`);
  }
  if (!Number.isFinite(globalBatchSamples) || globalBatchSamples <= 0) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `globalBatchSamples must be a number > 0, got ${globalBatchSamples}`);
  }
  const run = checkRunOptions(options, undefined, undefined);
  const samples: Samples = options.samples ?? syntheticSamples(DEFAULT_RUN.samples, options.seed ?? 0);
  const seed = options.seed ?? 0;
  const epoch = options.epoch ?? 0;
  const jobs = layoutCandidates(options);
  // Progress counts the candidates only; the data plans between them are named as phases.
  const total = jobs.length;
  let done = 0;
  const report = (phase: string) => onProgress?.(done, total, phase);
  report('evaluating layouts');
  const spec = resolveModel(options.model ?? DEFAULT_RUN.model);
  const memory = checkMemoryOptions(options);
  // Conflicting options, not a layout that does not fit: refused before any layout is tried.
  if (run.schedule === 'interleaved' && memory.target === 'deepspeed') throw omnibalError(ErrorCodes.INVALID_OPTIONS, DEEPSPEED_INTERLEAVED);
  const presetGpu = resolveGpu(options.gpu ?? DEFAULT_RUN.gpu);
  const gpu = memory.memoryBytes === null ? presetGpu : { ...presetGpu, memoryBytes: memory.memoryBytes };
  const models = new Map<string, ReturnType<typeof prepareModel>>();
  const model = (c: Cluster) => {
    const key = `${c.tp},${c.dp}`;
    let m = models.get(key);
    if (!m) models.set(key, (m = prepareModel(spec, gpu, c, options.calibration, memory)));
    return m;
  };
  // A bad calibration is the caller's error, not one layout's: checked once here (on the tp 1,
  // dp = gpus model, which the tp 1 x pp 1 layout then reuses) and thrown with its code.
  if (options.calibration) model({ gpus, tp: 1, pp: 1, dp: gpus });
  // The packs' real mean size per micro-batch size (or why it could not be planned), and the
  // data plans per (micro-batch size, micro-batches per step).
  const packed = new Map<number, number | Error>();
  const packedFor = (b: number): number => {
    let r = packed.get(b);
    if (r === undefined) {
      report(`estimating the pack size (${b} samples/pack)`);
      try {
        r = packedSamplesPerPack(samples, b, seed, epoch, balanceCostB(spec, gpu));
      } catch (error) {
        r = error as Error;
      }
      packed.set(b, r);
    }
    if (r instanceof Error) throw r;
    return r;
  };
  // Micro-batches per step chosen so far per micro-batch size (a pure function of the jobs, in
  // order: the exhaustive search chooses the same), which later layouts reuse where they can.
  const chosen = new Map<number, Set<number>>();
  const stepSizes = (b: number) => {
    let set = chosen.get(b);
    if (!set) chosen.set(b, (set = new Set()));
    return set;
  };
  const bases = new Map<string, BatchPlan | Error>();
  let weights: Float64Array | undefined;
  const out: LayoutCandidate[] = [];
  for (const job of jobs) {
    const c: LayoutCandidate = { tp: job.tp, pp: job.pp, dp: job.dp, accum: 0, samplesPerPack: job.b, globalBatchSamples, epochs: run.epochs };
    const cluster = { gpus, tp: job.tp, pp: job.pp, dp: job.dp };
    try {
      c.packedSamplesPerPack = packedFor(job.b);
      c.accum = accumFor(globalBatchSamples, c.packedSamplesPerPack, job.dp, stepSizes(job.b));
      stepSizes(job.b).add(c.accum * job.dp);
      if (c.accum * job.dp > MAX_STEP_MICRO_BATCHES) {
        throw omnibalError(ErrorCodes.OUT_OF_RANGE, `the global batch needs dp ${job.dp} x accum ${c.accum} = ${c.accum * job.dp} micro-batches per step, more than ${MAX_STEP_MICRO_BATCHES}`);
      }
      if (options.exhaustive) {
        const planOptions = Object.fromEntries(Object.entries(options).filter(([k]) => PLAN_TRAINING_OPTION_KEYS.includes(k))) as PlanTrainingOptions;
        const plan = planTraining({ ...planOptions, samples, samplesPerPack: job.b, cluster, accum: c.accum, ablation: false, inputs: undefined });
        const full = plan.ablation[plan.ablation.length - 1];
        Object.assign(c, { stepMs: full.stepMs, gpuHours: full.gpuHours, steps: full.steps, hours: plan.figures.hours, totalGpuHours: plan.figures.gpuHours, samplesPerStep: plan.figures.samplesPerStep, tokensPerS: plan.figures.tokensPerS, mfu: plan.figures.mfu });
      } else {
        if (run.schedule === 'interleaved' && c.accum % job.pp !== 0) {
          throw omnibalError(ErrorCodes.INVALID_OPTIONS, `the interleaved schedule needs accum (${c.accum}) to be a multiple of pp (${job.pp})`);
        }
        const prepared = model(cluster);
        const m = c.accum * job.dp;
        const key = `${job.b},${m}`;
        let base = bases.get(key);
        if (base === undefined) {
          report(`planning the data (${job.b} samples/pack, ${m} packs/step)`);
          try {
            base = planBatches(samples, { dp: m, accum: 1, samplesPerPack: job.b, seed, epoch, costA: 1, costB: prepared.costB, tail: 'drop' });
          } catch (error) {
            base = error as Error;
          }
          bases.set(key, base);
        }
        if (base instanceof Error) {
          // The shared plan has one micro-batch per rank on dp x accum ranks: say it in this layout's terms.
          const e = base as Error & { code?: string };
          throw e.code === undefined ? e : omnibalError(e.code as ErrorCode, e.message.replace(`(dp ${m} x accum 1 = ${m})`, `(dp ${job.dp} x accum ${c.accum} = ${m})`));
        }
        weights ??= costWeights({ a: 1, b: prepared.costB }, samples.text);
        const plan = redealPlan(base, samples, weights, job.dp, c.accum, simulatedStepIndices(base.steps, run.simulatedSteps));
        // Re-dealing moves whole micro-batches between ranks: the plan's mean and heaviest
        // micro-batch are the shared plan's (integer sums and maxima, exact in any order), so
        // they are computed once per shared plan, not once per layout.
        const meanLoad = meanMicroBatchLoad(base, samples);
        const memoryLoad = anyEpochHeaviestLoad(base, samples, capsForTarget(samples.vision, samples.text, job.b));
        const resolved: Resolved = { spec, gpu: prepared.gpu, cluster, accum: c.accum, simulatedSteps: run.simulatedSteps, schedule: run.schedule, virtualStages: run.virtualStages, calibration: prepared.calibration, memory };
        const sim = simulateConfig({ name: 'layout', plan, split: 'optimal', recompute: 'block', meanLoad, memoryLoad }, samples, resolved, prepared.coef, undefined);
        const figures = runFigures({
          stepMs: sim.row.stepMs,
          plan,
          meanLoad,
          flops: prepared.flops,
          gpus,
          peakFlops: gpu.peakFlops,
          epochs: run.epochs,
        });
        Object.assign(c, { stepMs: sim.row.stepMs, gpuHours: sim.row.gpuHours, steps: plan.steps, hours: figures.hours, totalGpuHours: figures.gpuHours, samplesPerStep: figures.samplesPerStep, tokensPerS: figures.tokensPerS, mfu: figures.mfu });
      }
    } catch (error) {
      c.error = inGiB((error as Error).message);
    }
    out.push(c);
    done += 1;
    report('evaluating layouts');
  }
  out.sort((a, b) => (a.gpuHours ?? Infinity) - (b.gpuHours ?? Infinity) || a.tp - b.tp || a.pp - b.pp || a.samplesPerPack - b.samplesPerPack);
  return out;
}
