/**
 * The sidecar's options, the limits they resolve to, and the state every connection of one server
 * shares (limits, plan store, task pool, `plan` workers, request-byte budget, token).
 *
 * @module
 */
import { constants as bufferConstants } from 'node:buffer';
import * as os from 'node:os';
import { outOfRange } from '../errors';
import { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS } from './connections';
import { PlanStore } from './plan-store';
import { RequestBytes } from './request-bytes';
import { PlanWorkers, TaskPool } from './task-pool';

/** Sidecar limits and settings. */
/** Longest `--stall-timeout` / `--auth-timeout`, seconds: Node's timers hold at most 2^31 - 1 ms. */
export const MAX_TIMEOUT_S = 2_147_483;

export interface ServeOptions {
  /** Longest request line (with its attachments), bytes; default 64 MiB, at most `buffer.constants.MAX_STRING_LENGTH` (~512 MiB). */
  maxLineBytes?: number;
  /** Most samples in one request; default 20 million. */
  maxSamples?: number;
  /** Largest length file `path`/`paths` may name, bytes each; default 2 GiB (a 20-million-line JSON Lines file is under 1 GiB). */
  maxFileBytes?: number;
  /** Byte budget of the plan store (plans and their samples); default 1 GiB. */
  maxPlanBytes?: number;
  /** Long calls running at once (and `plan` worker threads); default min(2, CPUs). */
  workers?: number;
  /** Long calls waiting, server-wide; default 256. */
  maxQueue?: number;
  /** A connection is not read while more than this many answer bytes wait to be sent; default 64 MiB. */
  maxPendingOutputBytes?: number;
  /** A connection is not read while this many of its requests are unanswered; default 1024. */
  maxInFlight?: number;
  /**
   * Byte budget of requests held in memory, all connections together: received and not yet
   * answered (queued or running), lines being received, declared attachments; default 1 GiB.
   * Connections that want more are not read until bytes are released (see {@link RequestBytes}).
   */
  maxQueuedBytes?: number;
  /**
   * Seconds a socket connection may send nothing in the middle of a request (a line begun, or
   * its attachments) while the sidecar waits for it; then it is answered -32001 and closed, and
   * what it held of the shared byte budget is freed. Default 60 (stdio is not timed: its owner is
   * the only client).
   */
  stallTimeout?: number;
  /**
   * Seconds a TCP connection has to authenticate (`auth` with the token) from when it is
   * accepted; then it is answered -32002 and closed. Default 10 (Unix sockets and stdio need no auth).
   */
  authTimeout?: number;
  /**
   * Socket connections held at once; one more is answered -32005
   * (`ERR_OMNIBAL_TOO_MANY_CONNECTIONS`) and closed at once. Default 64, at most 65,536.
   */
  maxConnections?: number;
  /**
   * Of those, TCP connections that have not authenticated yet (more are refused as above), so
   * strangers cannot hold every slot. Default a quarter of `maxConnections` (16), at least 1, at
   * most `maxConnections`.
   */
  maxUnauthenticated?: number;
  /** Where a socket sidecar writes `{"listen", "token", "pid"}` (mode 0600). */
  tokenFile?: string;
}

export type Limits = Required<Omit<ServeOptions, 'tokenFile'>>;

/** Longest string Node.js can make: the most `--max-line-bytes` may be. */
const MAX_STRING_LENGTH = bufferConstants.MAX_STRING_LENGTH;

function resolveLimits(o: ServeOptions): Limits {
  // A line is made a string, and an attachment a Buffer: a limit above the longest string Node.js
  // can make (~512 MiB) let one request crash the sidecar (`$attachments: [5e9]` and one byte).
  if (o.maxLineBytes !== undefined && o.maxLineBytes > MAX_STRING_LENGTH) {
    throw outOfRange('maxLineBytes', `must be at most ${MAX_STRING_LENGTH} bytes (the longest string Node.js can make of a line), got ${o.maxLineBytes}`);
  }
  const maxConnections = o.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (maxConnections > MAX_CONNECTIONS) throw outOfRange('maxConnections', `must be at most ${MAX_CONNECTIONS}, got ${maxConnections}`);
  const maxUnauthenticated = o.maxUnauthenticated ?? Math.max(1, Math.floor(maxConnections / 4));
  if (maxUnauthenticated > maxConnections) {
    throw outOfRange('maxUnauthenticated', `must be at most maxConnections (${maxConnections}): they are among the connections held, got ${maxUnauthenticated}`);
  }
  return {
    maxLineBytes: o.maxLineBytes ?? 64 * 2 ** 20,
    maxSamples: o.maxSamples ?? 20_000_000,
    maxFileBytes: o.maxFileBytes ?? 2 * 2 ** 30,
    maxPlanBytes: o.maxPlanBytes ?? 2 ** 30,
    workers: o.workers ?? Math.max(1, Math.min(2, os.availableParallelism())),
    maxQueue: o.maxQueue ?? 256,
    maxPendingOutputBytes: o.maxPendingOutputBytes ?? 64 * 2 ** 20,
    maxInFlight: o.maxInFlight ?? 1024,
    maxQueuedBytes: o.maxQueuedBytes ?? 2 ** 30,
    // Node's timers hold at most 2^31 - 1 ms: a longer wait would fire at once.
    stallTimeout: Math.min(o.stallTimeout ?? 60, MAX_TIMEOUT_S),
    authTimeout: Math.min(o.authTimeout ?? 10, MAX_TIMEOUT_S),
    maxConnections,
    maxUnauthenticated,
  };
}

/** What every connection of one server shares. */
export interface ServerContext {
  limits: Limits;
  store: PlanStore;
  pool: TaskPool;
  workers: PlanWorkers;
  /** Bytes of requests held, all connections together, within `--max-queued-bytes`. */
  requestBytes: RequestBytes;
  /** The token of a socket server (absent on stdio, or on a Unix socket without one). */
  token?: string;
  shutdown: () => void;
}

/** The shared state of one server: limits, plan store, task pool, `plan` workers, token. */
export function newContext(options: ServeOptions, shutdown: () => void, token?: string): ServerContext {
  const limits = resolveLimits(options);
  return { limits, store: new PlanStore(limits.maxPlanBytes), pool: new TaskPool(limits.workers, limits.maxQueue), workers: new PlanWorkers(), requestBytes: new RequestBytes(limits.maxQueuedBytes), token, shutdown };
}
