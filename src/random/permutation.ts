/**
 * TypeScript twin of `crate/core/src/permutation.rs`: Fisher-Yates from the back on the shared
 * generator, so the same seed gives the same order in both backends.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { expectU32Array, integerInRange } from '../validate';
import { MAX_SEED, Rng } from './rng';

/** Largest `n` a permutation may have: indices are 32-bit. */
export const MAX_PERMUTATION_LEN = 0xffffffff;

/** Anything indexable by number that holds numbers: `number[]`, `Uint32Array`. */
export interface NumberList {
  length: number;
  [index: number]: number;
}

/** Shuffles `values` in place with `rng`. */
export function shuffleInPlace(values: NumberList, rng: Rng): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const tmp = values[i];
    values[i] = values[j];
    values[j] = tmp;
  }
}

/** Twin of the native `permutation`. */
export function permutationTwin(n: number, seed: number): Uint32Array {
  integerInRange('n', n, MAX_PERMUTATION_LEN);
  integerInRange('seed', seed, MAX_SEED);
  let values: Uint32Array;
  try {
    values = new Uint32Array(n);
  } catch {
    throw outOfRange('n', `${n} values do not fit in memory`);
  }
  for (let i = 0; i < n; i++) values[i] = i;
  shuffleInPlace(values, new Rng(seed));
  return values;
}

/** Twin of the native `shuffleU32`: a shuffled copy. */
export function shuffleU32Twin(values: Uint32Array, seed: number): Uint32Array {
  const out = expectU32Array('values', values).slice();
  integerInRange('seed', seed, MAX_SEED);
  shuffleInPlace(out, new Rng(seed));
  return out;
}
