/**
 * The text cost `a * tokens + b * sum(len_i^2)` and its integer weights. TypeScript twin of
 * `crate/core/src/data/cost.rs`.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { numberAtLeast } from '../validate';

/** Coefficients of the text cost of a packed sequence: `a * tokens + b * sum(len_i^2)`. */
export interface TextCost {
  /** Cost per token (linear layers); default 1. */
  a: number;
  /** Cost per squared sample length (attention); default 0. */
  b: number;
}

/** The costliest sample weighs this much in integer weights. */
export const WEIGHT_SCALE = 1048576;

/** Checks the coefficients (twin of `TextCost::new`). */
export function textCost(a = 1, b = 0): TextCost {
  numberAtLeast('costA', a, 0);
  numberAtLeast('costB', b, 0);
  if (a === 0 && b === 0) {
    throw outOfRange('costA', 'and costB cannot both be 0');
  }
  // Only ratios of costs matter; larger coefficients would overflow a step's cost to infinity.
  for (const [name, v] of [['costA', a], ['costB', b]] as const) {
    if (v > 1e100) throw outOfRange(name, 'must be at most 1e100 (only ratios of costs matter)');
  }
  return { a, b };
}

/** The text cost of one sample of `t` tokens. */
export function sampleCost(cost: TextCost, t: number): number {
  return cost.a * t + cost.b * t * t;
}

/** Integer weights of `text`, the largest {@link WEIGHT_SCALE} (twin of `TextCost::weights`). */
export function costWeights(cost: TextCost, text: Uint32Array): Float64Array {
  let max = 0;
  for (let i = 0; i < text.length; i++) max = Math.max(max, sampleCost(cost, text[i]));
  const w = new Float64Array(text.length);
  if (max <= 0) return w.fill(1);
  for (let i = 0; i < text.length; i++) {
    w[i] = Math.max(Math.floor((sampleCost(cost, text[i]) * WEIGHT_SCALE) / max + 0.5), 1);
  }
  return w;
}
