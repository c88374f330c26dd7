/**
 * Seeded permutations and shuffles: the generator every omnibal plan draws from, exposed so
 * that a data loader can reproduce the same orders.
 *
 * @module
 */
import { activeBackend } from '../binding';
import { progressOption, withProgress, type ProgressCallback } from '../progress';
import { expectNumber } from '../validate';

export { MAX_SEED } from './rng';
export { MAX_PERMUTATION_LEN } from './permutation';

/** Options of {@link permutationAsync}. */
export interface PermutationAsyncOptions {
  /**
   * Called with `(done, total)` a few times a second at most; the last call, `(n, n)`, comes
   * before the Promise resolves. Not a function: `ERR_OMNIBAL_INVALID_TYPE`. A callback that
   * throws is not called again, and the Promise rejects with its error.
   */
  onProgress?: ProgressCallback;
}

/**
 * A uniformly random permutation of `0..n` for `seed` (Fisher-Yates on xoshiro128**), the same
 * on both backends.
 *
 * @param n - length, an integer in `0..=2^32 - 1`
 * @param seed - an integer in `0..=Number.MAX_SAFE_INTEGER`
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) for a non-number, `RangeError`
 *   (`ERR_OMNIBAL_OUT_OF_RANGE`) for NaN, fractional, negative or too large values.
 *
 * @returns the `n` indices `0..n`, each once, in seeded random order
 */
export function permutation(n: number, seed: number): Uint32Array {
  expectNumber('n', n);
  expectNumber('seed', seed);
  return activeBackend().permutation(n, seed);
}

/**
 * {@link permutation} off the main thread (on the libuv pool with the native backend), with
 * optional progress.
 *
 * @param n - length, as for {@link permutation}
 * @param seed - as for {@link permutation}
 * @param options - `onProgress(done, total)`, optional
 * @returns a Promise of the permutation {@link permutation} returns for the same arguments
 */
export function permutationAsync(
  n: number,
  seed: number,
  options: PermutationAsyncOptions = {},
): Promise<Uint32Array> {
  try {
    expectNumber('n', n);
    expectNumber('seed', seed);
    const api = activeBackend();
    return withProgress(progressOption(options), (progress) => api.permutationAsync(n, seed, progress));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * A shuffled copy of `values`, drawn exactly as {@link permutation} draws for the same seed:
 * `shuffle(values, s)[i] === values[permutation(values.length, s)[i]]`.
 *
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) when `values` is not a `Uint32Array`.
 * @param values - the values to shuffle (left unchanged)
 * @param seed - an integer in `0..=Number.MAX_SAFE_INTEGER`
 * @returns a new `Uint32Array` holding `values` in seeded random order
 */
export function shuffle(values: Uint32Array, seed: number): Uint32Array {
  expectNumber('seed', seed);
  return activeBackend().shuffleU32(values, seed);
}
