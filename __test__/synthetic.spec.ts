// Synthetic samples: drawn natively with the TypeScript generator as the twin; both give the
// same samples bit for bit (random sizes and seeds, and the default plan's 1.2 million), and bad
// sizes or seeds are the same coded errors on every backend.
import test from 'ava';
import fc from 'fast-check';
import { MAX_SEED } from '../src/random/rng';
import { syntheticSamples, TOKENS_PER_TILE } from '../src/data/synthetic';
import { backends, nativeTest, sameOnBothBackends, thrown } from './helpers';

nativeTest('syntheticSamples: native equals the twin bit for bit on random sizes and seeds', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4000 }), fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_SEED })), (n, seed) => {
      const diff = sameOnBothBackends((api) => api.syntheticSamples(n, seed));
      if (diff) throw new Error(`${diff} (n ${n}, seed ${seed})`);
    }),
    { numRuns: 200 },
  );
  t.pass();
});

nativeTest("syntheticSamples: the default plan's 1.2 million samples are the same on both backends", (t) => {
  t.is(sameOnBothBackends((api) => api.syntheticSamples(1_200_000, 0)), null);
});

test('syntheticSamples: every sample is a profile draw (tiles 1-5, text 256 per tile plus 33-552)', (t) => {
  const s = syntheticSamples(50_000, 7);
  t.is(s.text.length, 50_000);
  for (let i = 0; i < s.text.length; i++) {
    const residual = s.text[i] - s.vision[i] * TOKENS_PER_TILE;
    if (![1, 3, 4, 5].includes(s.vision[i]) || residual < 33 || residual > 552 || s.group[i] > 2) {
      t.fail(`sample ${i}: ${s.vision[i]} tiles, ${s.text[i]} tokens, group ${s.group[i]}`);
      return;
    }
  }
  t.notDeepEqual(syntheticSamples(1000, 7).text, syntheticSamples(1000, 8).text);
  t.deepEqual(syntheticSamples(1000, 7), syntheticSamples(1000, 7));
});

test('syntheticSamples: bad sizes and seeds are the same coded errors on every backend', (t) => {
  for (const [n, seed] of [[0, 0], [1.5, 0], [-1, 0], [2 ** 32, 0], [NaN, 0], [10, -1], [10, 0.5], [10, MAX_SEED + 2]]) {
    const errors = backends.map(([backend, api]) => ({ backend, ...thrown(() => api.syntheticSamples(n, seed)) }));
    for (const e of errors) t.regex(String(e.code), /^ERR_OMNIBAL_/, `${e.backend} (${n}, ${seed}): ${e.message}`);
    t.is(new Set(errors.map((e) => `${e.code} ${e.message}`)).size, 1, JSON.stringify(errors));
    t.is(thrown(() => syntheticSamples(n, seed)).code, errors[0].code);
  }
});
