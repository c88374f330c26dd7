/**
 * Synthetic samples drawn (seeded) to match the statistics of the real VLM SFT length data in
 * `shared/data/lengths` (AI2D, ChartQA, SynthDoG-en from the InternVL-1.2M mix): a mixture of
 * the three sets in their proportions; per set, the tile counts' frequencies, and the text
 * tokens beyond the image tokens (256 per tile) drawn by linear interpolation between the
 * measured quantiles (0, 10, 25, 50, 75, 90, 99, 100%). Only these summary figures live here;
 * the data itself is never copied.
 *
 * @module
 */
import { activeBackend } from '../binding';
import { outOfRange } from '../errors';
import { integerBetween } from '../validate';
import { MAX_SEED, Rng } from '../random/rng';
import type { Samples } from './samples';

interface Profile {
  name: string;
  weight: number;
  tiles: [number, number][];
  residualQuantiles: number[];
}

/** Measured on the shared files (samples, tile counts, quantiles of tokens - 256 x tiles). */
const PROFILES: Profile[] = [
  { name: 'ai2d', weight: 12413, tiles: [[1, 5793], [3, 3710], [4, 603], [5, 2307]], residualQuantiles: [37, 43, 47, 52, 58, 67, 99, 347] },
  { name: 'chartqa', weight: 18317, tiles: [[1, 579], [3, 1096], [4, 14], [5, 16628]], residualQuantiles: [33, 40, 43, 66, 119, 170, 321, 552] },
  { name: 'synthdog', weight: 29765, tiles: [[3, 17276], [5, 12489]], residualQuantiles: [36, 68, 84, 110, 146, 187, 278, 503] },
];
const QUANTILE_POINTS = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1];

/** Tokens per image tile in the LLM (InternVL: 1,024 patches pixel-shuffled to 256 tokens). */
export const TOKENS_PER_TILE = 256;

function pickWeighted<T>(rng: Rng, items: [T, number][], total: number): T {
  let r = rng.nextF64() * total;
  // Indexed, not `for...of` with destructuring: this runs twice per sample (~0.3 s of 1.2M).
  for (let j = 0; j < items.length; j++) {
    if (r < items[j][1]) return items[j][0];
    r -= items[j][1];
  }
  return items[items.length - 1][0];
}

function interpolate(quantiles: number[], u: number): number {
  for (let k = 1; k < QUANTILE_POINTS.length; k++) {
    if (u <= QUANTILE_POINTS[k]) {
      const f = (u - QUANTILE_POINTS[k - 1]) / (QUANTILE_POINTS[k] - QUANTILE_POINTS[k - 1]);
      return Math.round(quantiles[k - 1] + f * (quantiles[k] - quantiles[k - 1]));
    }
  }
  return quantiles[quantiles.length - 1];
}

/**
 * `n` synthetic samples with the real data's statistics (a pure function of `n` and `seed`);
 * `group` is the index of the set each sample imitates (0 AI2D, 1 ChartQA, 2 SynthDoG). Drawn
 * natively (`crate/core/src/data/synthetic.rs`), or by its TypeScript twin on the TypeScript
 * backend: the same samples bit for bit.
 *
 * @param n - how many samples, an integer >= 1
 * @param seed - the generator seed (default 0)
 * @returns the samples, with `group` filled
 */
export function syntheticSamples(n: number, seed = 0): Required<Samples> {
  integerBetween('n', n, 1, 0xffffffff);
  integerBetween('seed', seed, 0, MAX_SEED);
  return activeBackend().syntheticSamples(n, seed);
}

/**
 * The TypeScript twin of the native `syntheticSamples`: the same draws from the same generator,
 * the same floating-point operations in the same order.
 *
 * @param n - how many samples, an integer >= 1
 * @param seed - the generator seed (default 0)
 * @returns the samples, with `group` filled
 */
export function syntheticSamplesTwin(n: number, seed = 0): Required<Samples> {
  integerBetween('n', n, 1, 0xffffffff);
  integerBetween('seed', seed ?? 0, 0, MAX_SEED);
  const rng = new Rng(seed ?? 0);
  let vision: Uint32Array, text: Uint32Array, group: Uint32Array;
  try {
    vision = new Uint32Array(n);
    text = new Uint32Array(n);
    group = new Uint32Array(n);
  } catch {
    throw outOfRange('n', `${n} samples do not fit in memory`);
  }
  const sets = PROFILES.map((p, k): [number, number] => [k, p.weight]);
  const setTotal = PROFILES.reduce((s, p) => s + p.weight, 0);
  const tileTotals = PROFILES.map((p) => p.tiles.reduce((s, [, w]) => s + w, 0));
  for (let i = 0; i < n; i++) {
    const k = pickWeighted(rng, sets, setTotal);
    const p = PROFILES[k];
    const tiles = pickWeighted(rng, p.tiles, tileTotals[k]);
    vision[i] = tiles;
    text[i] = tiles * TOKENS_PER_TILE + interpolate(p.residualQuantiles, rng.nextF64());
    group[i] = k;
  }
  return { vision, text, group };
}
