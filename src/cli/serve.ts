/**
 * `omnibal serve`: the JSON-RPC sidecar for Python data loaders (see docs/protocol.md).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { nativeModule } from '../binding';
import { ErrorCodes, omnibalError, type OmnibalError } from '../errors';
import { pinHeapShape } from '../sidecar/heap';
import type { ServeOptions } from '../sidecar/server';
import { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS } from '../sidecar/connections';
import { MAX_TIMEOUT_S } from '../sidecar/context';

/** A strict positive integer option (`abc`, `1e3`, `0`, `-1` are usage errors, exit 2). */
function positiveInt(value: string): number {
  if (!/^[1-9]\d{0,15}$/.test(value)) throw new InvalidArgumentError(`must be a positive integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`must be at most ${Number.MAX_SAFE_INTEGER}`);
  return n;
}

/** A timeout in seconds: a positive integer up to what Node's timers hold (about 24.8 days). */
function timeoutSeconds(value: string): number {
  const n = positiveInt(value);
  if (n > MAX_TIMEOUT_S) throw new InvalidArgumentError(`must be at most ${MAX_TIMEOUT_S} seconds (Node's longest timer), got ${value}`);
  return n;
}

/** A connection count: a positive integer up to {@link MAX_CONNECTIONS}. */
function connectionCount(value: string): number {
  const n = positiveInt(value);
  if (n > MAX_CONNECTIONS) throw new InvalidArgumentError(`must be at most ${MAX_CONNECTIONS}, got ${value}`);
  return n;
}

/**
 * A system error from listening on `--listen` (the port taken, a folder missing, no permission)
 * as one coded line (exit 2), never an internal error with a stack trace; anything else as it is.
 */
function listenError(listen: string, error: unknown): unknown {
  const e = error as NodeJS.ErrnoException | null;
  if (!e || typeof e.code !== 'string' || !e.code.startsWith('E') || (e.syscall !== 'listen' && e.syscall !== 'bind')) return error;
  const socketPath = listen.startsWith('unix:') ? listen.slice(5) : listen;
  const why: Record<string, string> = {
    EADDRINUSE: 'the address is in use: another process listens there',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'permission denied (a read-only file system)',
    ENOENT: `the folder ${path.dirname(socketPath)} does not exist`,
    ENOTDIR: 'a part of the path is not a folder',
    EADDRNOTAVAIL: 'the address is not one of this machine',
  };
  // A socket in a folder that does not exist can read as EACCES: say what is missing.
  const unix = listen.startsWith('unix:') || listen.includes('/');
  if (unix && e.code !== 'EADDRINUSE' && !existsSync(path.dirname(socketPath))) e.code = 'ENOENT';
  const code = e.code === 'EADDRINUSE' ? 'ERR_OMNIBAL_ADDRESS_IN_USE' : ErrorCodes.INVALID_OPTIONS;
  return omnibalError(code as never, `--listen ${listen}: cannot listen (${why[e.code] ?? e.code})`, e) as OmnibalError;
}

/** Adds `omnibal serve` to the program. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the JSON-RPC 2.0 sidecar (one JSON object per line) on stdio, or on a Unix socket / loopback port')
    .option('--listen <where>', 'unix:PATH or a path with "/" (Unix socket, mode 0600), or 127.0.0.1:PORT / [::1]:PORT / localhost:PORT (token required)')
    .option('--token-file <file>', 'write {"listen", "token", "pid"} here (mode 0600); the token guards TCP connections and shutdown')
    .option('--max-line-bytes <n>', 'longest request line (default 64 MiB)', positiveInt)
    .option('--max-samples <n>', 'most samples in one request (default 20,000,000)', positiveInt)
    .option('--max-file-bytes <n>', 'largest length file a request may name (default 2 GiB)', positiveInt)
    .option('--max-plan-bytes <n>', 'byte budget of the plan store, least recently used plans evicted (default 1 GiB)', positiveInt)
    .option('--workers <n>', 'long calls running at once (default min(2, CPUs))', positiveInt)
    .option('--max-queue <n>', 'long calls waiting, server-wide (default 256)', positiveInt)
    .option('--max-queued-bytes <n>', 'bytes of requests held (received, not yet answered), all connections together; over it, connections are not read (default 1 GiB)', positiveInt)
    .option('--stall-timeout <seconds>', 'a socket connection that sends nothing for this long in the middle of a request is answered -32001 and closed, freeing what it held (default 60)', timeoutSeconds)
    .option('--auth-timeout <seconds>', 'a TCP connection that has not sent auth with the token this long after connecting is answered -32002 and closed (default 10)', timeoutSeconds)
    .option('--max-connections <n>', `socket connections held at once; one more is answered -32005 (ERR_OMNIBAL_TOO_MANY_CONNECTIONS) and closed at once, unless a TCP connection not yet authenticated is evicted in its place (default 64, at most ${MAX_CONNECTIONS})`, connectionCount)
    .option('--max-unauthenticated <n>', 'of those, TCP connections not yet authenticated; one more evicts the one that has waited longest (answered -32005), so strangers cannot keep clients out (default a quarter of --max-connections, at least 1; at most --max-connections)', connectionCount)
    // Usage errors reach main() (exit 2) instead of commander's own exit(1).
    .exitOverride()
    .action(async (flags: ServeOptions & { listen?: string }) => {
      const { listen, ...options } = flags;
      const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
      if (options.maxUnauthenticated !== undefined && options.maxUnauthenticated > maxConnections) {
        throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--max-unauthenticated (${options.maxUnauthenticated}) must be at most --max-connections (${maxConnections}): they are among the connections held`);
      }
      // A dedicated process: its heap keeps the size it starts with (flat RSS, see heap.ts), and
      // natively freed memory stays for the next plan (crate/node/src/memory.rs).
      pinHeapShape();
      nativeModule()?.keepFreedMemory();
      // Loaded here, not at start-up: compiling the sidecar's schemas cost every other command ~0.3 s of CPU.
      const { serveSocket, serveStdio } = require('../sidecar/server') as typeof import('../sidecar/server');
      if (listen !== undefined) await serveSocket(listen, options).catch((error: unknown) => Promise.reject(listenError(listen, error)));
      else await serveStdio(options);
      process.exit(0);
    });
}
