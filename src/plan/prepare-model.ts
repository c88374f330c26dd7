/**
 * Everything the planner derives from the model and GPU once per layout: the calibrated GPU,
 * the per-layer time coefficients by load, the model FLOPs and the text cost for balancing.
 *
 * @module
 */
import { activeBackend } from '../binding';
import { calibrate, gpuInput, tableShape, type Calibration, type GpuChoice, type ModelChoice } from '../model/index';
import type { GpuSpec, VlmSpec } from '../model/vlm';
import type { FlopsModel } from './figures';
import { checkMemoryOptions, type Cluster, type PlanMemory } from './options';

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
 * The model's forward FLOPs per micro-batch by load (with the backward FLOPs frozen modules skip),
 * and the text cost the data is balanced on: the LLM's compute per squared sample length relative
 * to its compute per token, at tp 1 (a property of the model, the same for every layout, so a
 * layout search plans the data once per micro-batch size).
 */
function modelFlops(spec: VlmSpec, gpu: GpuSpec, memory: PlanMemory = checkMemoryOptions({})): { flops: FlopsModel; costB: number } {
  const fl = differences((tiles, tokens, sumSqLen) => activeBackend().vlmLayerTable(spec, gpuInput(gpu), { tp: 1, dp: 1, zero: 1, tiles, tokens, sumSqLen }).forwardFlops);
  const ms = differences((tiles, tokens, sumSqLen) => activeBackend().vlmLayerTable(spec, gpuInput(gpu), { tp: 1, dp: 1, zero: 1, tiles, tokens, sumSqLen }).forwardMs);
  // The backward a frozen module does not run, in forward FLOPs: 2 x (a frozen ViT: none), 1 x (a
  // frozen LLM: input gradients only), exactly 0 for a trained layer (its backward is 2 x forward).
  const sk = differences((tiles, tokens, sumSqLen) => {
    const t = activeBackend().vlmLayerTable(spec, gpuInput(gpu), tableShape({ tp: 1, dp: 1, zero: 1, training: memory.training, load: { tiles, tokens, sumSqLen } }));
    return t.forwardFlops.map((f, i) => (t.forwardMs[i] > 0 ? f * (2 - t.backwardMs[i] / t.forwardMs[i]) : 0));
  });
  const [perTile, perToken, perSq] = [total(fl.perTile), total(fl.perToken), total(fl.perSq)];
  const skipped = { perTile: total(sk.perTile), perToken: total(sk.perToken), perSq: total(sk.perSq) };
  const perTokenMs = total(ms.perToken);
  return {
    flops: { base: total(fl.base) - perTile - perToken, perTile, perToken, perSq, skippedBackward: { base: total(sk.base) - skipped.perTile - skipped.perToken, ...skipped } },
    costB: perTokenMs > 0 ? total(ms.perSq) / perTokenMs : 0,
  };
}

/** The text cost the data is balanced on (`costB`: see `modelFlops`); the same for every layout. */
export function balanceCostB(spec: VlmSpec, gpu: GpuSpec): number {
  return modelFlops(spec, gpu).costB;
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
  const { flops, costB } = modelFlops(spec, gpu, memory);
  return { calibration, gpu: g, coef, costB, flops };
}

/**
 * The warnings a calibration's measurements raise, fitted as {@link prepareModel} fits them (for
 * a caller that prints them once, before planning many layouts); throws as `calibrate` does.
 */
export function calibrationWarnings(model: ModelChoice, gpu: GpuChoice, measurements: Calibration): string[] {
  return calibrate(model, gpu, { tp: 1, load: CALIBRATION_LOAD }, measurements).warnings;
}
