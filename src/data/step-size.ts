/**
 * The bound on one step's size (`dp x accum` micro-batches). TypeScript twin of
 * `MAX_STEP_MICRO_BATCHES` in `crate/core/src/data/strategy.rs`: plans, padding and per-step
 * work are sized by it, so it holds whatever the two factors are.
 *
 * @module
 */
import { outOfRange } from '../errors';

/** Most micro-batches one step may hold (`dp x accum`). */
export const MAX_STEP_MICRO_BATCHES = 1 << 20;

/** Throws `ERR_OMNIBAL_OUT_OF_RANGE` when `dp x accum` exceeds {@link MAX_STEP_MICRO_BATCHES}. */
export function checkStepSize(dp: number, accum: number): void {
  if (dp * accum > MAX_STEP_MICRO_BATCHES) {
    throw outOfRange(
      'accum',
      `times dp must be at most ${MAX_STEP_MICRO_BATCHES} micro-batches per step, got dp ${dp} x accum ${accum} = ${dp * accum}`,
    );
  }
}
