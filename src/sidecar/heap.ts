/**
 * The sidecar's JavaScript heap, sized once at start so its RSS stays flat.
 *
 * Measured cause of the RSS growth over 10,000 sequential `balance` calls (bench `sidecar`;
 * `process.memoryUsage()`, `v8.getHeapSpaceStatistics()` and GC events inside the sidecar): the
 * JavaScript heap's sizing, not a leak and not the native side. RSS minus `heapTotal` (native code,
 * Rust plans, buffers, allocator arenas) stayed within 5 MB over the run, and `heapUsed` after a full
 * GC stayed at 7.5 MB; but (1) V8 doubled the young generation mid-run (new space 8 -> 16 -> 32 MB),
 * as it does whenever enough bytes survived scavenges since its last growth, and (2) the old
 * generation filled with promoted short-lived request objects (9 -> 24 MB) because its first
 * allocation limit is far above the sidecar's small live heap: 10,000 calls ran 120 scavenges and
 * no full GC. A sidecar's requests are short-lived small objects or large arrays that V8 allocates
 * outside the young generation, so a larger young generation buys it nothing (a 4M-sample request
 * took the same time either way).
 *
 * @module
 */
import * as v8 from 'node:v8';

/**
 * Keeps the heap at its start-up shape for the rest of the process: the young generation stops
 * growing (semi-space growth factor 1) and the old generation is collected near its live size
 * (V8's memory-saving heap limits, `--optimize-for-size`: growth factor at most 2, 2 MB steps). Both
 * flags are read by V8 at each resize, so setting them after start-up takes effect; the sidecar soak
 * test asserts it. Call it only in a dedicated sidecar process (`omnibal serve`), never inside a
 * library user's process. Its price falls on the pure-JS twins (`OMNIBAL_BACKEND=js`), whose
 * planner allocates on this heap: about 2.3x the CPU of an unpinned sidecar on a batch of
 * `balance` calls (`npm run bench -- sidecar --only heap`); natively the cost is within noise.
 */
export function pinHeapShape(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  v8.setFlagsFromString('--optimize-for-size');
}
