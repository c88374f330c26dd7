/**
 * Errors on the sidecar wire: JSON-RPC codes, omnibal's sidecar-only codes, and the one
 * conversion from a thrown error to an answer (no stack, no internals, no file content).
 *
 * @module
 */
import { isOmnibalError } from '../errors';

/** JSON-RPC and omnibal error codes on the wire (see docs/protocol.md). */
export const RpcErrors = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** An omnibal error that is not about the parameters' shape (infeasible, too few samples...). */
  SERVER: -32000,
  /** Limits: a line, a sample count, a file size, the queue, the plan store. */
  LIMIT: -32001,
  /** A connection that has not authenticated, or a method it may not call (`shutdown`). */
  UNAUTHORIZED: -32002,
  /** A plan or search handle this connection does not hold (unknown, released or evicted). */
  UNKNOWN_HANDLE: -32003,
  /** The server is stopping (SIGTERM/SIGINT, or `shutdown`): a request in flight was not finished. */
  SHUTTING_DOWN: -32004,
  /** A socket connection over `--max-connections` (or `--max-unauthenticated`): refused and closed at once. */
  TOO_MANY_CONNECTIONS: -32005,
  /** The request was cancelled. */
  CANCELLED: -32800,
} as const;

/** The `error.data.code` values only the sidecar gives (the rest are omnibal's `ErrorCodes`). */
export const SidecarCodes = {
  /** Over a configured limit (`--max-line-bytes`, `--max-samples`, `--max-file-bytes`, queue, plan store). */
  LIMIT: 'ERR_OMNIBAL_LIMIT',
  /** No such plan or search on this connection. */
  UNKNOWN_HANDLE: 'ERR_OMNIBAL_UNKNOWN_HANDLE',
  /** The plan was evicted from the plan store (LRU, `--max-plan-bytes`): ask `balance` again. */
  EVICTED: 'ERR_OMNIBAL_EVICTED',
  /** Missing or wrong token. */
  UNAUTHORIZED: 'ERR_OMNIBAL_UNAUTHORIZED',
  /** `--listen` names a socket another sidecar is serving. */
  ADDRESS_IN_USE: 'ERR_OMNIBAL_ADDRESS_IN_USE',
  /** The server stopped before this request was finished. */
  SHUTTING_DOWN: 'ERR_OMNIBAL_SHUTTING_DOWN',
  /** The sidecar holds as many connections as it takes (`--max-connections`, `--max-unauthenticated`). */
  TOO_MANY_CONNECTIONS: 'ERR_OMNIBAL_TOO_MANY_CONNECTIONS',
} as const;

/** An error answered as `{code, message, data}`. */
export class RpcError extends Error {
  constructor(
    readonly rpcCode: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** A -32001 limit error. */
export function limitError(message: string): RpcError {
  return new RpcError(RpcErrors.LIMIT, message, { code: SidecarCodes.LIMIT });
}

/** A -32602 error naming the field. */
export function paramsError(field: string, message: string, code = 'ERR_OMNIBAL_INVALID_TYPE'): RpcError {
  return new RpcError(RpcErrors.INVALID_PARAMS, `invalid params: ${field} ${message}`, { code, field });
}

const INVALID_PARAM_CODES = new Set([
  'ERR_OMNIBAL_OUT_OF_RANGE',
  'ERR_OMNIBAL_INVALID_TYPE',
  'ERR_OMNIBAL_INVALID_OPTIONS',
  'ERR_OMNIBAL_UNKNOWN_OPTION',
  'ERR_OMNIBAL_UNKNOWN_PRESET',
  'ERR_OMNIBAL_INVALID_SAMPLE',
  'ERR_OMNIBAL_EMPTY_INPUT',
]);

/** Converts anything thrown by a handler into an answerable error; never exposes a stack. */
export function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (isOmnibalError(error)) {
    const code = INVALID_PARAM_CODES.has(error.code) ? RpcErrors.INVALID_PARAMS : (error.code as string) === SidecarCodes.LIMIT ? RpcErrors.LIMIT : RpcErrors.SERVER;
    return new RpcError(code, error.message, { code: error.code });
  }
  const name = error instanceof Error ? error.constructor.name : typeof error;
  return new RpcError(RpcErrors.INTERNAL, `internal error (${name}); the sidecar keeps running`);
}

/**
 * A -32602 error found past the schema check (by the planner, the model or a reader) names its
 * field as the schema's errors do: the param path its message starts with (`carry`,
 * `training.grads`) when that param was given, else `params` (the request as a whole).
 *
 * @param error - the error to answer
 * @param params - the request's params
 * @returns the error, with `data.field` when it is a -32602 without one
 */
export function withField(error: RpcError, params: Record<string, unknown>): RpcError {
  if (error.rpcCode !== RpcErrors.INVALID_PARAMS || error.data?.field !== undefined) return error;
  const path = /^(?:options\.)?([A-Za-z_$][\w$]*)((?:\.[A-Za-z_$][\w$]*|\[\d+\])*)/.exec(error.message);
  return new RpcError(error.rpcCode, error.message, { ...error.data, field: path ? fieldOf(params, path[1], path[2]) : 'params' });
}

/**
 * Where param `head` (then `rest`, `.x[3]`) is in `params`: at the top, or inside an object param
 * (search.ask's `problem.memoryLoad.tokens`, say); `params` when it is in neither.
 */
function fieldOf(params: Record<string, unknown>, head: string, rest: string): string {
  if (Object.hasOwn(params, head)) return head + rest;
  const owner = Object.keys(params).find((k) => isObject(params[k]) && Object.hasOwn(params[k], head));
  return owner === undefined ? 'params' : `${owner}.${head}${rest}`;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** What a length-file error says when its own words cannot be shown. */
const FILE_ERROR_WORDS: Record<string, string> = {
  ERR_OMNIBAL_PARSE: 'malformed content',
  ERR_OMNIBAL_INVALID_SAMPLE: 'invalid sample value',
  ERR_OMNIBAL_EMPTY_INPUT: 'no samples',
};

/**
 * A length-file error as the sidecar answers it: `FILE:LINE: what was wrong`, never the file's
 * content. The reader's reason is kept only up to a `, got ...` (where values are quoted) and only
 * when it holds no quotes and is short; otherwise a generic reason for its code is given.
 */
export function sanitizeFileError(error: unknown, files: readonly string[]): unknown {
  if (!isOmnibalError(error)) return error;
  const message = error.message;
  const file = files.find((f) => message.startsWith(`${f}:`));
  if (file === undefined) {
    return Object.assign(new Error(`${files.join(', ')}: ${FILE_ERROR_WORDS[error.code] ?? 'cannot be read'}`), { code: error.code });
  }
  const rest = message.slice(file.length + 1);
  const m = /^(\d+):\s*(.*)$/s.exec(rest);
  const line = m ? m[1] : undefined;
  let reason = (m ? m[2] : rest.replace(/^\s+/, '')).split(', got')[0].trim();
  if (reason.length === 0 || reason.length > 120 || /["'`\n\r]/.test(reason) || /[^\x20-\x7e]/.test(reason)) {
    reason = FILE_ERROR_WORDS[error.code] ?? 'cannot be read';
  }
  return Object.assign(new Error(`${file}${line ? `:${line}` : ''}: ${reason}`), { code: error.code });
}
