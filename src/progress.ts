/**
 * Progress callbacks for the Promise variants.
 *
 * The native side reports from a libuv worker through a threadsafe function, so a report can
 * land on the event loop after the Promise settles. {@link withProgress} restores the order a
 * caller expects: every report arrives before the Promise resolves, the last one is
 * `(total, total)`, and nothing arrives afterwards.
 *
 * @module
 */
import { cancelledError } from './abort';
import { invalidType } from './errors';
import { checkKnownKeys, describeValue } from './validate';

/** The one key of `PermutationAsyncOptions` (the data functions' `AsyncOptions` add `signal`). */
const PROGRESS_OPTION_KEYS = ['onProgress'] as const;

/**
 * `(done, total)`: how much of a long call is finished, in units the call chooses.
 *
 * @param done - units finished so far, `0..=total`
 * @param total - units in the whole call
 */
export type ProgressCallback = (done: number, total: number) => void;

/**
 * Runs a TypeScript twin on the next turn of the event loop, so the fallback backend's Promise
 * variants are real Promises too (they still run on the main thread); `onProgress` gets one
 * final `(total, total)` when given. A `cancel` flag set by then stops it before it starts
 * (`ERR_OMNIBAL_CANCELLED`, as the native core); once started it runs to its end.
 */
export function deferred<T>(work: () => T, onProgress?: ProgressCallback | null, total = 1, cancel?: { readonly cancelled: boolean } | null): Promise<T> {
  return new Promise((resolve, reject) => {
    setImmediate(() => {
      try {
        if (cancel?.cancelled) throw cancelledError();
        const value = work();
        onProgress?.(total, total);
        resolve(value);
      } catch (error) {
        reject(error);
      }
    });
  });
}

/**
 * `onProgress` as given, checked: `undefined` or `null` for none, else it must be a function.
 *
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) for anything else.
 */
export function checkProgress<F extends (...args: never[]) => void>(onProgress: unknown): F | undefined {
  if (onProgress === undefined || onProgress === null) return undefined;
  if (typeof onProgress !== 'function') {
    throw invalidType('onProgress', `must be a function, got ${describeValue(onProgress)}`);
  }
  return onProgress as F;
}

/**
 * The `onProgress` of a Promise variant's options object (`undefined`, `null` or an object);
 * `name` is what an unknown key's message calls the object, `known` its keys.
 *
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) when the options are not an object or
 *   `onProgress` is not a function; `ERR_OMNIBAL_UNKNOWN_OPTION` for any other key.
 */
export function progressOption(options: unknown, name = 'options', known: readonly string[] = PROGRESS_OPTION_KEYS): ProgressCallback | undefined {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object') throw invalidType('options', `must be an object, got ${describeValue(options)}`);
  checkKnownKeys(name, options, known);
  return checkProgress<ProgressCallback>((options as { onProgress?: unknown }).onProgress);
}

/**
 * Calls `start` with a guarded progress callback (or `null` when the caller gave none) and
 * returns its Promise, completed with the final report on success.
 *
 * A callback that throws never reaches the event loop (where, called from a native threadsafe
 * function, it would end the process): the first error it throws is kept, later reports are
 * dropped, `onFailure` is called (to stop the work, where it can be stopped), and the Promise
 * rejects with that error once the work ends (its result discarded).
 *
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) when `onProgress` is given but not a function.
 */
export function withProgress<T>(
  onProgress: ProgressCallback | undefined | null,
  start: (progress: ProgressCallback | null) => Promise<T>,
  onFailure?: () => void,
): Promise<T> {
  const listener = checkProgress<ProgressCallback>(onProgress);
  if (!listener) return start(null);
  let open = true;
  let last: [number, number] | undefined;
  let failure: { error: unknown } | undefined;
  const report = (done: number, total: number): void => {
    try {
      listener(done, total);
    } catch (error) {
      failure = { error };
      open = false;
      onFailure?.();
    }
  };
  const guarded: ProgressCallback = (done, total) => {
    if (!open) return;
    last = [done, total];
    report(done, total);
  };
  return start(guarded).then(
    // The native reports come through a non-blocking threadsafe function, so under load the
    // result can arrive before them: let the queued reports run first, then make sure the
    // listener's last call says done (1 of 1 when none arrived at all).
    (value) =>
      new Promise<T>((resolve, reject) =>
        setImmediate(() => {
          if (open) {
            if (!last) report(1, 1);
            else if (last[0] < last[1]) report(last[1], last[1]);
          }
          open = false;
          if (failure) reject(failure.error);
          else resolve(value);
        }),
      ),
    (error: unknown) => {
      open = false;
      throw failure ? failure.error : error;
    },
  );
}
