// Shared helpers of the ava suites.
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import type * as Native from '../bindings';
import { jsBackend, type Backend } from '../src/binding';

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
export const nativeTest: TestFn = jsOnly ? (anyTest.skip as unknown as TestFn) : anyTest;

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
