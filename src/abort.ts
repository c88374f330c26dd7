/**
 * Cancelling a Promise variant with an `AbortSignal` (the convention of `fetch` and
 * `fs.promises`).
 *
 * The native backend runs the solver on the libuv pool; {@link withSignal} hands it a cancel
 * flag (the binding's `CancelFlag`) and sets the flag when the signal aborts, so the solver stops
 * at its next check (between phases, packing blocks, windows of a few thousand packs, ISF rounds,
 * search candidates: a fraction of a second) and the Promise rejects with
 * `ERR_OMNIBAL_CANCELLED`. The TypeScript twins cannot yield while they run: they check the flag
 * before starting, and the result of a run the signal aborted meanwhile is discarded.
 *
 * @module
 */
import type * as Native from '../bindings';
import { ErrorCodes, invalidType, isOmnibalError, omnibalError, type OmnibalError } from './errors';
import { describeValue } from './validate';

/** What a cancelled run's error says, from either backend (the native core words it alike). */
export const CANCELLED_MESSAGE = 'cancelled: the operation was aborted';

/** The native binding's cancel flag, as both backends provide it. */
export type CancelFlag = Native.CancelFlag;

/** The TypeScript twins' cancel flag (the same members as the binding's `CancelFlag`). */
export class CancelFlagTwin implements CancelFlag {
  private set = false;

  /** Sets the flag. */
  cancel(): void {
    this.set = true;
  }

  /** Whether the flag is set. */
  get cancelled(): boolean {
    return this.set;
  }
}

/** The twins' error for a run stopped by its flag: `ERR_OMNIBAL_CANCELLED`, as natively. */
export function cancelledError(): OmnibalError {
  return omnibalError(ErrorCodes.CANCELLED, CANCELLED_MESSAGE);
}

/**
 * The error an aborted Promise variant rejects with: an `Error` named `AbortError` (as Node's
 * aborted calls), with code `ERR_OMNIBAL_CANCELLED` and the signal's `reason` as its `cause`.
 */
export function abortError(signal: AbortSignal): OmnibalError {
  const error = omnibalError(ErrorCodes.CANCELLED, CANCELLED_MESSAGE, signal.reason);
  error.name = 'AbortError';
  return error;
}

/**
 * `signal` as given, checked: `undefined` or `null` for none, else it must be an `AbortSignal`.
 *
 * @throws `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`) for anything else.
 */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined || signal === null) return undefined;
  if (!(signal instanceof AbortSignal)) {
    throw invalidType('signal', `must be an AbortSignal, got ${describeValue(signal)}`);
  }
  return signal;
}

/** The flags of the calls running with each signal, and the one abort listener that sets them. */
const watched = new WeakMap<AbortSignal, { flags: Set<CancelFlag>; onAbort: () => void }>();

/**
 * Sets `flag` when `signal` aborts; returns what stops that. One listener per signal however many
 * calls share it (a listener each made Node warn of a leak past 10 concurrent calls:
 * MaxListenersExceededWarning); it is removed with the last call's flag.
 */
function watch(signal: AbortSignal, flag: CancelFlag): () => void {
  let entry = watched.get(signal);
  if (!entry) {
    const flags = new Set<CancelFlag>();
    const onAbort = () => {
      for (const f of flags) f.cancel();
    };
    entry = { flags, onAbort };
    watched.set(signal, entry);
    signal.addEventListener('abort', onAbort, { once: true });
  }
  const { flags, onAbort } = entry;
  flags.add(flag);
  return () => {
    if (!flags.delete(flag) || flags.size > 0) return;
    signal.removeEventListener('abort', onAbort);
    if (watched.get(signal)?.flags === flags) watched.delete(signal);
  };
}

/**
 * Runs `start` with a cancel flag that is set when `signal` aborts (`null` without a signal,
 * unless `always`: then a flag the work's own code may set). Already aborted: rejects at once
 * with {@link abortError}, without starting. Aborted while running: the Promise settles once the
 * work has stopped (so nothing runs on after it), with {@link abortError} whether the work
 * stopped early or had just finished; any other error the work threw is passed on as it is.
 *
 * @param signal - a checked signal ({@link checkSignal}), or none
 * @param Flag - the backend's cancel flag class
 * @param start - starts the work with the flag
 * @param always - make a flag even without a signal
 */
export function withSignal<T>(
  signal: AbortSignal | undefined,
  Flag: new () => CancelFlag,
  start: (cancel: CancelFlag | null) => Promise<T>,
  always = false,
): Promise<T> {
  if (!signal) return start(always ? new Flag() : null);
  if (signal.aborted) return Promise.reject(abortError(signal));
  const flag = new Flag();
  const done = watch(signal, flag);
  let run: Promise<T>;
  try {
    run = start(flag);
  } catch (error) {
    // Refused before it started (a bad option, say): no listener is left on the signal.
    done();
    throw error;
  }
  return run.then(
    (value) => {
      done();
      if (signal.aborted) throw abortError(signal);
      return value;
    },
    (error: unknown) => {
      done();
      throw signal.aborted && isOmnibalError(error) && error.code === ErrorCodes.CANCELLED ? abortError(signal) : error;
    },
  );
}
