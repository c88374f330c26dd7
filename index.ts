/**
 * omnibal: balance vision-language model training across data-parallel ranks, pipeline stages
 * and memory, on a Rust core behind Node-API with TypeScript twins as fallback.
 *
 * @packageDocumentation
 */
export { backend, type BackendInfo } from './src/binding';
export {
  ErrorCodes,
  isOmnibalError,
  type ErrorCode,
  type OmnibalError,
} from './src/errors';
export {
  MAX_PERMUTATION_LEN,
  MAX_SEED,
  permutation,
  permutationAsync,
  shuffle,
  type PermutationAsyncOptions,
} from './src/random/index';
export { version } from './src/package';
export type { ProgressCallback } from './src/progress';
