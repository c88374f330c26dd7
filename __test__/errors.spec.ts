// Bad input gets the same coded error from both backends; panics become exceptions.
import test from 'ava';
import { ErrorCodes, isOmnibalError, permutation, permutationAsync, shuffle } from '../index';
import { backends, native, nativeTest, thrown } from './helpers';

const badPermutationArgs: [string, number, number, string, string][] = [
  ['negative n', -1, 0, 'RangeError', 'n must be between 0 and 4294967295, got -1'],
  ['fractional n', 2.5, 0, 'RangeError', 'n must be an integer, got 2.5'],
  ['NaN n', NaN, 0, 'RangeError', 'n must be an integer, got NaN'],
  ['infinite n', Infinity, 0, 'RangeError', 'n must be an integer, got Infinity'],
  ['n over 2^32 - 1', 2 ** 32, 0, 'RangeError', 'n must be between 0 and 4294967295, got 4294967296'],
  ['negative seed', 3, -1, 'RangeError', 'seed must be between 0 and 9007199254740991, got -1'],
  ['unsafe seed', 3, 2 ** 53, 'RangeError', 'seed must be between 0 and 9007199254740991, got 9007199254740992'],
  ['fractional seed', 3, 0.5, 'RangeError', 'seed must be an integer, got 0.5'],
  ['NaN seed', 3, NaN, 'RangeError', 'seed must be an integer, got NaN'],
];

for (const [name, api] of backends) {
  for (const [label, n, seed, cls, message] of badPermutationArgs) {
    test(`${name}: permutation with ${label} is a coded ${cls}`, (t) => {
      t.deepEqual(thrown(() => api.permutation(n, seed)), {
        name: cls,
        code: ErrorCodes.OUT_OF_RANGE,
        message,
      });
    });
  }

  test(`${name}: shuffle of the wrong typed-array kind is a coded TypeError`, (t) => {
    for (const [value, what] of [
      [new Float64Array(3), 'Float64Array'],
      [new Int32Array(3), 'Int32Array'],
      [[1, 2, 3], 'an object'],
      ['123', 'string'],
    ] as [unknown, string][]) {
      t.deepEqual(thrown(() => api.shuffleU32(value as Uint32Array, 1)), {
        name: 'TypeError',
        code: ErrorCodes.INVALID_TYPE,
        message: `values must be a Uint32Array, got ${what}`,
      });
    }
  });

  test(`${name}: permutationAsync rejects bad input with the same coded error`, async (t) => {
    const error = await t.throwsAsync(api.permutationAsync(-3, 0, null));
    t.is(error?.constructor.name, 'RangeError');
    t.is((error as Error & { code: string }).code, ErrorCodes.OUT_OF_RANGE);
  });
}

test('the public API rejects non-numbers with a coded TypeError, whichever backend', async (t) => {
  for (const fn of [
    () => permutation('3' as unknown as number, 1),
    () => permutation(3, '1' as unknown as number),
    () => shuffle(new Uint32Array(2), undefined as unknown as number),
  ]) {
    const e = thrown(fn);
    t.is(e.name, 'TypeError');
    t.is(e.code, ErrorCodes.INVALID_TYPE);
  }
  const error = await t.throwsAsync(permutationAsync(null as unknown as number, 1));
  t.true(isOmnibalError(error));
});

nativeTest('a panic inside the binding is an exception and the process keeps running', async (t) => {
  const sync = thrown(() => native!.__panicForTest('deliberate sync panic'));
  t.is(sync.name, 'Error');
  t.is(sync.code, ErrorCodes.PANIC);
  t.regex(sync.message, /deliberate sync panic/);

  const asyncError = await t.throwsAsync(native!.__panicForTestAsync('deliberate async panic'));
  t.is((asyncError as Error & { code: string }).code, ErrorCodes.PANIC);
  t.regex(asyncError!.message, /deliberate async panic/);

  // Still alive and still correct.
  t.is(native!.permutation(5, 1).length, 5);
});
