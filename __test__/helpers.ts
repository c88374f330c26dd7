// Shared helpers of the ava suites.
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import type * as Native from '../bindings';
import { jsBackend, type Backend } from '../src/binding';
import type { StageProblem } from '../src/model/index';

export const root = path.resolve(__dirname, '..');
export const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');

/**
 * The native binding, loaded straight from the generated loader. The suite needs it unless
 * OMNIBAL_BACKEND=js says this run is about the twins alone; then native tests are skipped.
 */
export const jsOnly = process.env.OMNIBAL_BACKEND === 'js';
export const native: typeof Native | undefined = jsOnly
  ? undefined
  : (require(path.join(root, 'bindings.js')) as typeof Native);

/** `test` where the native binding is part of the run, `test.skip` where it is not. */
export const nativeTest: TestFn = jsOnly
  ? (Object.assign(anyTest.skip, { serial: anyTest.serial.skip, skip: anyTest.skip }) as unknown as TestFn)
  : anyTest;

/** Both backends, by name, for tests that must hold for each. */
export const backends: [string, Backend][] = native
  ? [
      ['native', native],
      ['js', jsBackend],
    ]
  : [['js', jsBackend]];

/** The error thrown by `fn`, or a failure marker when nothing was thrown. */
export function thrown(fn: () => unknown): { name: string; code: unknown; message: string } {
  try {
    fn();
  } catch (error) {
    const e = error as Error & { code?: unknown };
    return { name: e.constructor.name, code: e.code, message: e.message };
  }
  return { name: 'nothing thrown', code: undefined, message: '' };
}

/** Where the shared real length files live (CI lays `shared/` beside the clone). */
export const sharedLengths = process.env.OMNIBAL_SHARED_LENGTHS ?? path.resolve(root, '..', 'shared', 'data', 'lengths');
export const realFiles = ['ai2d_train_12k.json', 'chartqa_train_18k.json', 'synthdog_en.json'].map((f) => path.join(sharedLengths, f));

/** Compares two values deeply, typed arrays by content; returns the first difference or null. */
export function firstDifference(a: unknown, b: unknown, at = ''): string | null {
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    const x = Array.from(a as ArrayLike<number>);
    const y = Array.from(b as ArrayLike<number>);
    if (x.length !== y.length) return `${at}: length ${x.length} vs ${y.length}`;
    const i = x.findIndex((v, k) => !Object.is(v, y[k]));
    return i < 0 ? null : `${at}[${i}]: ${x[i]} vs ${y[i]}`;
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const va = (a as Record<string, unknown>)[k];
      const vb = (b as Record<string, unknown>)[k];
      if ((va === undefined || va === null) && (vb === undefined || vb === null)) continue;
      const d = firstDifference(va, vb, `${at}.${k}`);
      if (d) return d;
    }
    return null;
  }
  return Object.is(a, b) ? null : `${at}: ${String(a)} vs ${String(b)}`;
}

/**
 * Runs `f` on the native binding and on the TypeScript twins: both must throw the same error
 * (class, code, message) or return equal results. Returns the first difference, or null.
 */
export function sameOnBothBackends<T>(f: (api: Backend) => T): string | null {
  let a: T | undefined;
  let b: T | undefined;
  const ea = thrown(() => (a = f(native!)));
  const eb = thrown(() => (b = f(jsBackend)));
  if (ea.name !== 'nothing thrown' || eb.name !== 'nothing thrown') {
    return firstDifference(ea, eb) ? `errors differ: ${JSON.stringify(ea)} vs ${JSON.stringify(eb)}` : null;
  }
  return firstDifference(a, b);
}

/**
 * Real-like samples: 1, 3, 4 or 5 tiles of 256 tokens, a residual, and a long text every
 * `longEvery` samples (a heavy tail), from an LCG seeded with `seed`.
 */
export function realLike(n: number, seed: number, longEvery = 50): { vision: Uint32Array; text: Uint32Array } {
  const tiles = [1, 3, 4, 5];
  const vision = new Uint32Array(n);
  const text = new Uint32Array(n);
  let x = seed >>> 0;
  const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  for (let i = 0; i < n; i++) {
    vision[i] = tiles[next() % 4];
    text[i] = 256 * vision[i] + 30 + (next() % 300) + (i % longEvery === 0 ? 400 + (next() % 800) : 0);
  }
  return { vision, text };
}

/** Megatron-LM's uniform chunking: `layers` spread evenly over `chunks` chunks (the first `layers % chunks` one layer longer); each chunk's last layer. */
export function evenChunkEnds(layers: number, chunks: number): number[] {
  const ends: number[] = [];
  let end = 0;
  for (let c = 0; c < chunks; c++) {
    end += Math.floor(layers / chunks) + (c < layers % chunks ? 1 : 0);
    ends.push(end - 1);
  }
  return ends;
}

/** An interleaved problem (8 layers, 4 x 2 chunks, M 8) far over its 1 GiB: over 200 GiB needed. */
export function farOverMemory(): StageProblem {
  const GIB = 2 ** 30;
  return {
    forwardMs: Float64Array.from({ length: 8 }, (_, i) => 1 + i),
    backwardMs: Float64Array.from({ length: 8 }, (_, i) => 2 + i),
    staticBytes: new Float64Array(8).fill(100 * GIB),
    activationBytes: new Float64Array(8).fill(GIB),
    checkpointBytes: new Float64Array(8).fill(0.25 * GIB),
    stages: 4,
    microBatches: 8,
    memoryBytes: GIB,
    schedule: 'interleaved',
    virtualStages: 2,
  };
}
