/**
 * `omnibal serve`: the JSON-RPC sidecar for Python data loaders (see docs/protocol.md).
 *
 * @module
 */
import { InvalidArgumentError, type Command } from 'commander';
import { nativeModule } from '../binding';
import { pinHeapShape } from '../sidecar/heap';
import type { ServeOptions } from '../sidecar/server';

/** A strict positive integer option (`abc`, `1e3`, `0`, `-1` are usage errors, exit 2). */
function positiveInt(value: string): number {
  if (!/^[1-9]\d{0,15}$/.test(value)) throw new InvalidArgumentError(`must be a positive integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`must be at most ${Number.MAX_SAFE_INTEGER}`);
  return n;
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
    // Usage errors reach main() (exit 2) instead of commander's own exit(1).
    .exitOverride()
    .action(async (flags: ServeOptions & { listen?: string }) => {
      const { listen, ...options } = flags;
      // A dedicated process: its heap keeps the size it starts with (flat RSS, see heap.ts), and
      // natively freed memory stays for the next plan (crate/node/src/memory.rs).
      pinHeapShape();
      nativeModule()?.keepFreedMemory();
      // Loaded here, not at start-up: compiling the sidecar's schemas cost every other command ~0.3 s of CPU.
      const { serveSocket, serveStdio } = require('../sidecar/server') as typeof import('../sidecar/server');
      if (listen !== undefined) await serveSocket(listen, options);
      else await serveStdio(options);
      process.exit(0);
    });
}
