/**
 * The paper's pad and dist ratios of a plan. TypeScript twin of
 * `crate/core/src/data/metrics.rs`; see there for the definitions.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { sampleCost, type TextCost } from './cost';

/** Metrics of one plan (all dist ratios are means over steps). */
export interface BatchMetrics {
  /** Padding over padded tokens, in padded micro-batches (0 for packed plans). */
  padRatio: number;
  /** Mean over steps of `sum_r (max - V_r) / (max * dp)` on vision tiles. */
  visionDist: number;
  /** The same on real text tokens. */
  textDist: number;
  /** The same on the text cost `a * tokens + b * sum(len^2)` of what runs (padding included). */
  costDist: number;
  /** Mean samples per micro-batch. */
  samplesPerPack: number;
  /** Micro-batches in the plan. */
  packs: number;
/** Steps in the plan. */
  steps: number;
/** Samples left out of the plan (those carried into the next epoch included). */
  dropped: number;
  /** Samples of the previous epoch's tail this plan holds besides its own (`carry`; filled by `batchMetrics` from the plan). */
  carriedIn: number;
  /** Samples of this plan's tail carried into the next epoch (reason `carried`, tail `carry`; filled by `batchMetrics`). */
  carriedOut: number;
  /** Vision dist of each step, for plots. */
  stepVisionDist: Float64Array;
/** Text dist of each step. */
  stepTextDist: Float64Array;
/** Cost dist of each step. */
  stepCostDist: Float64Array;
  /** Median over steps of the slowest rank's excess cost over the step's mean (`max / mean - 1`). */
  costExcessMedian: number;
  /** 99th percentile (nearest rank) of the same. */
  costExcessP99: number;
  /** The slowest rank's excess cost of each step. */
  stepCostExcess: Float64Array;
}

function excess(loads: number[]): number {
  let max = 0;
  let sum = 0;
  for (const l of loads) {
    max = Math.max(max, l);
    sum += l;
  }
  return sum <= 0 ? 0 : (max * loads.length) / sum - 1;
}

/** The `q`-quantile of `xs` by nearest rank (twin of `nearest_rank`). */
export function nearestRank(xs: Float64Array, q: number): number {
  if (xs.length === 0) return 0;
  const sorted = Float64Array.from(xs).sort();
  const rank = Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

/** The parts of a plan that metrics read. */
export interface PlanArrays {
  dp: number;
  packed: boolean;
  samples: Uint32Array;
  microBatchOffsets: Uint32Array;
  rankOffsets: Uint32Array;
  padding: Uint8Array;
  droppedIndex: Uint32Array;
}

function dist(loads: number[]): number {
  let max = 0;
  for (const l of loads) max = Math.max(max, l);
  if (max <= 0) return 0;
  let wait = 0;
  for (const l of loads) wait += max - l;
  return wait / (max * loads.length);
}

/** Twin of `BatchPlan::from_parts`'s checks. */
export function checkPlanArrays(plan: PlanArrays): void {
  const bad = (what: string) => outOfRange('plan', what);
  if (plan.dp === 0) throw bad('dp must be at least 1');
  const monotone = (o: Uint32Array, end: number) => {
    if (o.length === 0 || o[0] !== 0 || o[o.length - 1] !== end) return false;
    for (let i = 1; i < o.length; i++) if (o[i] < o[i - 1]) return false;
    return true;
  };
  if (!monotone(plan.microBatchOffsets, plan.samples.length)) {
    throw bad('microBatchOffsets must start at 0, never decrease, and end at samples.length');
  }
  const mbs = plan.microBatchOffsets.length - 1;
  if (!monotone(plan.rankOffsets, mbs) || (plan.rankOffsets.length - 1) % plan.dp !== 0) {
    throw bad('rankOffsets must start at 0, never decrease, end at the micro-batch count, and hold whole steps of dp ranks');
  }
  if (plan.padding.length !== mbs) throw bad('padding must have one flag per micro-batch');
}

/** Twin of `batch_metrics`. */
export function batchMetricsTwin(plan: PlanArrays, vision: Uint32Array, text: Uint32Array, cost: TextCost): Omit<BatchMetrics, 'carriedIn' | 'carriedOut'> {
  checkPlanArrays(plan);
  for (const i of plan.samples) {
    if (i >= text.length) throw outOfRange('plan', `refers to sample ${i}, but there are only ${text.length} samples`);
  }
  const dp = plan.dp;
  const steps = (plan.rankOffsets.length - 1) / dp;
  const mbs = plan.microBatchOffsets.length - 1;
  let pad = 0;
  let padded = 0;
  const sv = new Float64Array(steps);
  const st = new Float64Array(steps);
  const sc = new Float64Array(steps);
  const se = new Float64Array(steps);
  const lv = new Array<number>(dp).fill(0);
  const lt = new Array<number>(dp).fill(0);
  const lc = new Array<number>(dp).fill(0);
  for (let s = 0; s < steps; s++) {
    for (let r = 0; r < dp; r++) {
      let v = 0;
      let t = 0;
      let c = 0;
      for (let k = plan.rankOffsets[s * dp + r]; k < plan.rankOffsets[s * dp + r + 1]; k++) {
        const a = plan.microBatchOffsets[k];
        const b = plan.microBatchOffsets[k + 1];
        let tmax = 0;
        for (let q = a; q < b; q++) tmax = Math.max(tmax, text[plan.samples[q]]);
        for (let q = a; q < b; q++) {
          const i = plan.samples[q];
          v += vision[i];
          t += text[i];
          c += sampleCost(cost, plan.packed ? text[i] : tmax);
          if (!plan.packed) pad += tmax - text[i];
        }
        if (!plan.packed) padded += tmax * (b - a);
      }
      lv[r] = v;
      lt[r] = t;
      lc[r] = c;
    }
    sv[s] = dist(lv);
    st[s] = dist(lt);
    sc[s] = dist(lc);
    se[s] = excess(lc);
  }
  const mean = (xs: Float64Array) => {
    if (xs.length === 0) return 0;
    let sum = 0;
    for (const x of xs) sum += x;
    return sum / xs.length;
  };
  return {
    padRatio: padded === 0 ? 0 : pad / padded,
    visionDist: mean(sv),
    textDist: mean(st),
    costDist: mean(sc),
    samplesPerPack: mbs === 0 ? 0 : plan.samples.length / mbs,
    packs: mbs,
    steps,
    dropped: plan.droppedIndex.length,
    stepVisionDist: sv,
    stepTextDist: st,
    stepCostDist: sc,
    costExcessMedian: nearestRank(se, 0.5),
    costExcessP99: nearestRank(se, 0.99),
    stepCostExcess: se,
  };
}
