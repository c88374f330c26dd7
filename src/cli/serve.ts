/**
 * `omnibal serve`: the JSON-RPC sidecar for Python data loaders (see docs/protocol.md).
 *
 * @module
 */
import type { Command } from 'commander';
import { serveSocket, serveStdio } from '../sidecar/server';

/** Adds `omnibal serve` to the program. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the JSON-RPC 2.0 sidecar (one JSON object per line) on stdio, or on a Unix socket / loopback port')
    .option('--listen <where>', 'a Unix socket path, or 127.0.0.1:PORT (loopback only)')
    .option('--max-line-bytes <n>', 'longest request line (default 64 MiB)', Number)
    .option('--max-samples <n>', 'most samples in one request (default 20,000,000)', Number)
    .action(async (flags: { listen?: string; maxLineBytes?: number; maxSamples?: number }) => {
      const limits = { maxLineBytes: flags.maxLineBytes, maxSamples: flags.maxSamples };
      if (flags.listen) await serveSocket(flags.listen, limits);
      else await serveStdio(limits);
      process.exit(0);
    });
}
