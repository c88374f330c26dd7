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
 * final `(total, total)` when given.
 */
export function deferred<T>(work: () => T, onProgress?: ProgressCallback | null, total = 1): Promise<T> {
  return new Promise((resolve, reject) => {
    setImmediate(() => {
      try {
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
 * Calls `start` with a guarded progress callback (or `null` when the caller gave none) and
 * returns its Promise, completed with the final report on success.
 */
export function withProgress<T>(
  onProgress: ProgressCallback | undefined,
  start: (progress: ProgressCallback | null) => Promise<T>,
): Promise<T> {
  if (!onProgress) return start(null);
  let open = true;
  let last: [number, number] | undefined;
  const guarded: ProgressCallback = (done, total) => {
    if (!open) return;
    last = [done, total];
    onProgress(done, total);
  };
  return start(guarded).then(
    // The native reports come through a non-blocking threadsafe function, so under load the
    // result can arrive before them: let the queued reports run first, then make sure the
    // listener's last call says done (1 of 1 when none arrived at all).
    (value) =>
      new Promise<T>((resolve) =>
        setImmediate(() => {
          if (!last) onProgress(1, 1);
          else if (last[0] < last[1]) onProgress(last[1], last[1]);
          open = false;
          resolve(value);
        }),
      ),
    (error: unknown) => {
      open = false;
      throw error;
    },
  );
}
