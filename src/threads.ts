/**
 * `OMNIBAL_THREADS`: how many worker threads the native balanced planner uses (1 to 8; default
 * the machine's cores, at most 8). The native core reads it once and takes what it cannot use
 * as its default or clamps it; {@link threadsWarning} says so, once, on stderr, when the native
 * backend loads (the TypeScript twins run on the main thread and never read it).
 *
 * @module
 */
import * as os from 'node:os';

/** Most worker threads the native planner uses (`MAX_THREADS` in `crate/core/src/data/balance/mod.rs`). */
export const MAX_THREADS = 8;

/**
 * The warning for an `OMNIBAL_THREADS` value the native core will not take as given (not a
 * whole number from 1 to {@link MAX_THREADS}), naming the count it uses instead; `undefined`
 * when the variable is unset or good.
 *
 * @param value - the variable's value (`process.env.OMNIBAL_THREADS`)
 * @param cores - the machine's parallelism, as the core's default counts it
 */
export function threadsWarning(value: string | undefined, cores = os.availableParallelism()): string | undefined {
  if (value === undefined) return undefined;
  // The core's rule: a trimmed unsigned integer, clamped to 1..=8; anything else is the default.
  const trimmed = value.trim();
  const parsed = /^\+?\d+$/.test(trimmed) ? Number(trimmed) : undefined;
  if (parsed !== undefined && parsed >= 1 && parsed <= MAX_THREADS) return undefined;
  const used = parsed !== undefined ? Math.min(Math.max(parsed, 1), MAX_THREADS) : Math.min(Math.max(cores, 1), MAX_THREADS);
  const why = parsed !== undefined ? 'clamped' : 'ignored, the default';
  return `omnibal: OMNIBAL_THREADS=${JSON.stringify(value)} is not a whole number from 1 to ${MAX_THREADS}; ${why}: ${used} worker thread${used === 1 ? '' : 's'}\n`;
}
