/**
 * Run-level figures of a plan, the ones a training run is judged by: tokens and samples per
 * second, model FLOPs utilisation, TFLOP/s per GPU, and the wall-clock time of N epochs. All
 * are predictions: they follow from the cost model's step time.
 *
 * @module
 */
import type { MicroBatchLoadFigures } from '../data/load';
import type { BatchPlan } from '../data/plan';

/** Forward FLOPs of one micro-batch as a linear function of its load (the whole model, all layers). */
export interface FlopsModel {
  /** FLOPs of a micro-batch independent of its load. */
  base: number;
  /** FLOPs per image tile. */
  perTile: number;
  /** FLOPs per LLM token. */
  perToken: number;
  /** FLOPs per squared sample length (attention). */
  perSq: number;
  /**
   * The backward FLOPs frozen modules do not run, by load in the same terms (a frozen ViT skips
   * its whole backward, 2 x forward; a frozen LLM its weight gradients, 1 x); all 0 when nothing
   * is frozen.
   */
  skippedBackward?: Omit<FlopsModel, 'skippedBackward'>;
}

/** Run-level predictions of a plan (all PREDICTIONS of the cost model and simulator). */
export interface RunFigures {
  /** What these figures assume. */
  assumption: string;
  /** Predicted mean step time, ms. */
  stepMs: number;
  /** Samples per step (global batch in samples, mean over the epoch's steps). */
  samplesPerStep: number;
  /** LLM tokens per step (image tokens included; mean over the epoch's steps). */
  tokensPerStep: number;
  /** Image tiles per step (mean). */
  tilesPerStep: number;
  /** Predicted LLM tokens per second, whole cluster. */
  tokensPerS: number;
  /** Predicted samples per second, whole cluster. */
  samplesPerS: number;
  /** Model FLOPs of one step: 3 x forward FLOPs (forward + backward; less the backward frozen modules skip; recomputation not counted). */
  modelFlopsPerStep: number;
  /** Predicted model TFLOP/s per GPU. */
  tflopsPerGpu: number;
  /** Predicted model FLOPs utilisation: model FLOPs / (step time x GPUs x peak bf16 FLOP/s). */
  mfu: number;
  /** Epochs the time below is for. */
  epochs: number;
  /** Predicted wall-clock hours for `epochs` epochs. */
  hours: number;
  /** Predicted GPU-hours for `epochs` epochs. */
  gpuHours: number;
}

/** What the figures need from a plan. */
export interface RunFigureInputs {
  /** Predicted mean step time, ms. */
  stepMs: number;
  /** The epoch's data plan: its steps, micro-batches and samples. */
  plan: Pick<BatchPlan, 'steps' | 'microBatchOffsets' | 'samples'>;
  /** Mean load of one micro-batch. */
  meanLoad: MicroBatchLoadFigures;
  /** FLOPs of a micro-batch by load. */
  flops: FlopsModel;
  /** GPUs in all. */
  gpus: number;
  /** Peak bf16 FLOP/s of one GPU. */
  peakFlops: number;
  /** Epochs; default 1. */
  epochs: number;
}

/** Computes the run-level figures. */
export function runFigures(i: RunFigureInputs): RunFigures {
  const stepS = i.stepMs / 1000;
  const steps = i.plan.steps;
  const perStep = (i.plan.microBatchOffsets.length - 1) / steps;
  const l = i.meanLoad;
  const at = (m: Omit<FlopsModel, 'skippedBackward'>) => m.base + m.perTile * l.tiles + m.perToken * l.tokens + m.perSq * l.sumSqLen;
  const forward = at(i.flops);
  const skipped = i.flops.skippedBackward ? at(i.flops.skippedBackward) : 0;
  const modelFlopsPerStep = (3 * forward - skipped) * perStep;
  const hours = (i.epochs * steps * i.stepMs) / 3.6e6;
  return {
    assumption: 'predictions: step time from the cost model and simulator; model FLOPs = 3 x forward FLOPs of the packed samples (less the backward a frozen module skips; no padding, no recomputation); MFU against the GPU preset\'s dense bf16 peak',
    stepMs: i.stepMs,
    samplesPerStep: i.plan.samples.length / steps,
    tokensPerStep: l.tokens * perStep,
    tilesPerStep: l.tiles * perStep,
    tokensPerS: (l.tokens * perStep) / stepS,
    samplesPerS: i.plan.samples.length / steps / stepS,
    modelFlopsPerStep,
    tflopsPerGpu: modelFlopsPerStep / stepS / i.gpus / 1e12,
    mfu: modelFlopsPerStep / stepS / (i.gpus * i.peakFlops),
    epochs: i.epochs,
    hours,
    gpuHours: hours * i.gpus,
  };
}
