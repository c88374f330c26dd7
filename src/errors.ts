/**
 * Errors thrown by omnibal. Every error carries a stable `code` (`ERR_OMNIBAL_...`); the native
 * core and the TypeScript twins throw the same class (`TypeError`, `RangeError` or `Error`) with
 * the same code for the same bad input.
 *
 * @module
 */

/** Every error code omnibal throws, with what it means. */
export const ErrorCodes = {
  /** An argument is outside its allowed range: negative, fractional, NaN, too large (`RangeError`). */
  OUT_OF_RANGE: 'ERR_OMNIBAL_OUT_OF_RANGE',
  /** An argument has the wrong type, such as the wrong typed-array kind (`TypeError`). */
  INVALID_TYPE: 'ERR_OMNIBAL_INVALID_TYPE',
  /** A sample that cannot be planned: zero text tokens, or a bad value in a file (file and line named). */
  INVALID_SAMPLE: 'ERR_OMNIBAL_INVALID_SAMPLE',
  /** No samples at all. */
  EMPTY_INPUT: 'ERR_OMNIBAL_EMPTY_INPUT',
  /** Every sample is larger than a cap, so nothing can be packed (`RangeError`). */
  CAP_TOO_SMALL: 'ERR_OMNIBAL_CAP_TOO_SMALL',
  /** Not enough samples for one full step under the chosen tail policy. */
  TOO_FEW_SAMPLES: 'ERR_OMNIBAL_TOO_FEW_SAMPLES',
  /** A strategy, tail policy or other named choice that does not exist (`RangeError`). */
  UNKNOWN_OPTION: 'ERR_OMNIBAL_UNKNOWN_OPTION',
  /** Options that do not go together, or a required one missing (`TypeError`). */
  INVALID_OPTIONS: 'ERR_OMNIBAL_INVALID_OPTIONS',
  /** A file that cannot be read or parsed; the message names the file and line. */
  PARSE: 'ERR_OMNIBAL_PARSE',
  /** A result that cannot be written: a missing folder, a directory, no permission. */
  OUTPUT: 'ERR_OMNIBAL_OUTPUT',
  /** No plan fits in memory; the message gives the least memory per GPU that would. */
  INFEASIBLE: 'ERR_OMNIBAL_INFEASIBLE',
  /** An unknown model or GPU preset; the message lists the known ones (`RangeError`). */
  UNKNOWN_PRESET: 'ERR_OMNIBAL_UNKNOWN_PRESET',
  /** A panic inside the native core, caught at the boundary; the process keeps running. */
  PANIC: 'ERR_OMNIBAL_PANIC',
  /** `OMNIBAL_BACKEND=native` was asked for but no native binding loads; `cause` holds every load error. */
  NATIVE_UNAVAILABLE: 'ERR_OMNIBAL_NATIVE_UNAVAILABLE',
  /** `OMNIBAL_BACKEND` holds a value other than `native`, `js` or `auto`. */
  INVALID_BACKEND: 'ERR_OMNIBAL_INVALID_BACKEND',
  /** A Promise variant's `signal` aborted: the work stopped (`name` `AbortError`, `cause` the signal's reason). */
  CANCELLED: 'ERR_OMNIBAL_CANCELLED',
} as const;

/** One of the {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** An `Error`, `TypeError` or `RangeError` thrown by omnibal, with its stable code. */
export type OmnibalError = Error & {
  /** The stable code, one of {@link ErrorCodes}. */
  code: ErrorCode;
};

/**
 * Whether `error` was thrown by omnibal (it carries an `ERR_OMNIBAL_...` code).
 *
 * @param error - any thrown value
 * @returns whether it is an `Error` whose `code` starts with `ERR_OMNIBAL_`
 */
export function isOmnibalError(error: unknown): error is OmnibalError {
  const code: unknown = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('ERR_OMNIBAL_');
}

function withCode<E extends Error>(error: E, code: ErrorCode): E & { code: ErrorCode } {
  return Object.assign(error, { code });
}

/** A `RangeError` with code `ERR_OMNIBAL_OUT_OF_RANGE`; the message starts with the argument's name. */
export function outOfRange(name: string, message: string): RangeError & { code: ErrorCode } {
  return withCode(new RangeError(`${name} ${message}`), ErrorCodes.OUT_OF_RANGE);
}

/** A `TypeError` with code `ERR_OMNIBAL_INVALID_TYPE`; the message starts with the argument's name. */
export function invalidType(name: string, message: string): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(`${name} ${message}`), ErrorCodes.INVALID_TYPE);
}

/** A `TypeError` with code `ERR_OMNIBAL_INVALID_OPTIONS`. */
export function invalidOptions(message: string): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(message), ErrorCodes.INVALID_OPTIONS);
}

/** A `RangeError` with code `ERR_OMNIBAL_UNKNOWN_OPTION`, listing the known values. */
export function unknownOption(name: string, value: string, known: readonly string[]): RangeError & { code: ErrorCode } {
  return withCode(
    new RangeError(`${name} must be one of ${known.join(', ')}, got ${JSON.stringify(value)}`),
    ErrorCodes.UNKNOWN_OPTION,
  );
}

/** A `RangeError` with code `ERR_OMNIBAL_INVALID_SAMPLE` about sample `index`. */
export function invalidSample(index: number, message: string): RangeError & { code: ErrorCode } {
  return withCode(new RangeError(`sample ${index} ${message}`), ErrorCodes.INVALID_SAMPLE);
}

/** A `RangeError` with the given code. */
export function rangeError(code: ErrorCode, message: string): RangeError & { code: ErrorCode } {
  return withCode(new RangeError(message), code);
}

/** A plain `Error` with the given code, and an optional cause. */
export function omnibalError(code: ErrorCode, message: string, cause?: unknown): OmnibalError {
  return withCode(cause === undefined ? new Error(message) : new Error(message, { cause }), code);
}

/**
 * A `TypeError` with code `ERR_OMNIBAL_UNKNOWN_OPTION` for an options key that does not exist
 * (the sidecar's schemas answer the same code for an unknown parameter): names the key and, when
 * given, the known key it resembles, else lists the known keys.
 */
export function unknownKey(name: string, key: string, suggestion: string | undefined, known: readonly string[]): TypeError & { code: ErrorCode } {
  const hint = suggestion !== undefined ? `did you mean ${suggestion}?` : `known: ${known.join(', ')}`;
  return withCode(new TypeError(`${name}.${key} is not a known option; ${hint}`), ErrorCodes.UNKNOWN_OPTION);
}
