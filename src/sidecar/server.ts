/**
 * `omnibal serve`: a JSON-RPC 2.0 sidecar, one JSON object per line, on stdin/stdout (logs on
 * stderr) or on a Unix socket / loopback TCP port. See `docs/protocol.md` for every method.
 *
 * Structure: `LineReader` (framing.ts) frames bytes into lines in linear time; every request is checked
 * against its method's JSON Schema (`validateParams`, schemas.ts) before any handler runs; long calls go
 * through one bounded `TaskPool` (task-pool.ts); plans live in a shared, refcounted, byte-bounded
 * `PlanStore` (plan-store.ts) under random handles owned by their connection. A connection whose client does
 * not read stops being read (backpressure); a closed connection cancels its queued work and
 * releases its plans; on stdio the sidecar exits when its client is gone.
 *
 * Files: `context.ts` (options, limits, the state connections share), `session.ts` (one
 * connection: reading, framing, budget, backpressure, auth, cancel, answers), `methods.ts` (what
 * each method does), `transports.ts` (stdio and socket serving). This module re-exports what the
 * rest of the package and the tests use.
 *
 * @module
 */
export { RpcErrors } from './errors';
export { parseListen } from './listen';
export { newContext, type ServeOptions, type ServerContext } from './context';
export { CAPABILITIES } from './methods';
export { Session, type ConnectionKind, type Transport } from './session';
export { serveSocket, serveStdio } from './transports';
