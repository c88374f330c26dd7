// Permutations: native and TypeScript twin agree on many random cases, and the public API
// (sync, async with progress, shuffle) behaves as documented.
import test from 'ava';
import fc from 'fast-check';
import { backend, MAX_SEED, permutation, permutationAsync, shuffle } from '../index';
import { jsBackend } from '../src/binding';
import { native, nativeTest } from './helpers';

const seedArb = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_SEED }));

function isPermutation(values: Uint32Array): boolean {
  const seen = new Uint8Array(values.length);
  for (const v of values) {
    if (v >= values.length || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
}

test('prints the backend under test', (t) => {
  const info = backend();
  t.log(`backend under test: ${info.kind}${info.path ? ` (${info.path})` : ''}`);
  console.log(`omnibal tests: public API backend is ${info.kind}${info.path ? ` at ${info.path}` : ''}`);
  t.true(info.kind === 'native' || info.kind === 'js');
});

nativeTest('native permutation equals the TypeScript twin on thousands of random cases', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 3000 }), seedArb, (n, seed) => {
      const a = native!.permutation(n, seed);
      const b = jsBackend.permutation(n, seed);
      return a.length === n && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

nativeTest('native shuffle equals the twin, and both equal indexing by the permutation', (t) => {
  fc.assert(
    fc.property(fc.uint32Array({ maxLength: 500 }), seedArb, (values, seed) => {
      const a = native!.shuffleU32(values, seed);
      const b = jsBackend.shuffleU32(values, seed);
      const p = jsBackend.permutation(values.length, seed);
      return a.every((v, i) => v === b[i] && v === values[p[i]]);
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

nativeTest('large permutations agree too', (t) => {
  const a = native!.permutation(1_000_003, 77);
  const b = jsBackend.permutation(1_000_003, 77);
  t.deepEqual(a, b);
  t.true(isPermutation(a));
});

test('the public permutation is a deterministic permutation', (t) => {
  for (const n of [0, 1, 2, 17, 4096]) {
    const p = permutation(n, 5);
    t.true(p instanceof Uint32Array);
    t.is(p.length, n);
    t.true(isPermutation(p));
    t.deepEqual(p, permutation(n, 5));
  }
  t.notDeepEqual(permutation(64, 1), permutation(64, 2));
});

test('shuffle leaves its input alone and returns the same multiset', (t) => {
  const input = Uint32Array.from([5, 5, 1, 9, 0, 3, 3, 3]);
  const copy = input.slice();
  const out = shuffle(input, 11);
  t.deepEqual(input, copy);
  t.deepEqual(Array.from(out).sort(), Array.from(input).sort());
});

test('permutationAsync resolves to the sync result, reports progress in order, ends at (n, n)', async (t) => {
  const n = 2_000_000;
  const calls: [number, number][] = [];
  const result = await permutationAsync(n, 9, { onProgress: (done, total) => calls.push([done, total]) });
  t.deepEqual(result, permutation(n, 9));
  t.true(calls.length >= 1);
  t.deepEqual(calls[calls.length - 1], [n, n]);
  for (let i = 1; i < calls.length; i++) t.true(calls[i][0] >= calls[i - 1][0]);
  const count = calls.length;
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(calls.length, count, 'no progress arrives after the Promise resolved');
});

nativeTest.serial('native permutationAsync runs off the main thread: timers fire while it works', async (t) => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = process.hrtime.bigint();
  const result = await native!.permutationAsync(30_000_000, 3, null);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  clearInterval(timer);
  t.is(result.length, 30_000_000);
  t.log(`30M permutation took ${ms.toFixed(0)} ms; event loop ticked ${ticks} times meanwhile`);
  // A blocked loop would tick at most once; a free one ticks many times over the call.
  t.true(ticks >= 5, `ticks ${ticks} over ${ms.toFixed(0)} ms`);
});
