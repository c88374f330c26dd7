// The plan's per-plan load passes (mean and heaviest micro-batch, one native pass for the default
// plan's speed, with its TypeScript twin) against the per-micro-batch definition, on packed and
// padded plans; native equals the twin bit for bit, and bad plans are the same coded errors.
import test from 'ava';
import fc from 'fast-check';
import { jsBackend } from '../src/binding';
import { batchMetrics, planBatches } from '../src/data/index';
import { STRATEGIES } from '../src/data/strategy';
import { TAILS } from '../src/data/plan';
import { meanMicroBatchLoad, microBatchLoad } from '../src/data/load';
import { heaviestMicroBatchLoad } from '../src/model/memory-load';
import { backends, nativeTest, sameOnBothBackends, thrown } from './helpers';

const samplesArb = fc.integer({ min: 8, max: 300 }).chain((n) =>
  fc.record({
    vision: fc.uint32Array({ minLength: n, maxLength: n, min: 0, max: 6 }),
    text: fc.uint32Array({ minLength: n, maxLength: n, min: 1, max: 3000 }),
  }),
);

test('meanMicroBatchLoad and heaviestMicroBatchLoad equal the per-micro-batch loads, packed and padded', (t) => {
  const checked = new Set<boolean>();
  fc.assert(
    fc.property(samplesArb, fc.constantFrom('balanced', 'random', 'length-grouped'), fc.integer({ min: 0, max: 1000 }), (s, strategy, seed) => {
      let plan;
      try {
        plan = planBatches(s, { dp: 2, accum: 2, samplesPerPack: 2, seed, strategy: strategy as 'balanced' });
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_OMNIBAL_TOO_FEW_SAMPLES') return; // nothing to measure
        throw error;
      }
      checked.add(plan.packed);
      const n = plan.microBatchOffsets.length - 1;
      const sum = { tiles: 0, tokens: 0, sumSqLen: 0 };
      let tiles = 0;
      let tokens = 1;
      for (let k = 0; k < n; k++) {
        const l = microBatchLoad(plan, s, k);
        sum.tiles += l.tiles;
        sum.tokens += l.tokens;
        sum.sumSqLen += l.sumSqLen;
        tiles = Math.max(tiles, l.tiles);
        tokens = Math.max(tokens, l.tokens);
      }
      const m = Math.max(n, 1);
      t.deepEqual(meanMicroBatchLoad(plan, s), { tiles: sum.tiles / m, tokens: sum.tokens / m, sumSqLen: sum.sumSqLen / m });
      t.deepEqual(heaviestMicroBatchLoad(plan, s), { tiles, tokens, sumSqLen: tokens * tokens });
    }),
    { numRuns: 150 },
  );
  t.deepEqual([...checked].sort(), [false, true], 'both packed and padded plans were checked');
});

nativeTest('planLoads: native equals the twin bit for bit on every strategy and tail (packed and padded plans)', (t) => {
  const checked = new Set<boolean>();
  fc.assert(
    fc.property(
      samplesArb,
      fc.constantFrom(...STRATEGIES),
      fc.constantFrom(...TAILS),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 3 }),
      fc.double({ min: 1, max: 9, noNaN: true }),
      fc.integer({ min: 0, max: 1000 }),
      (s, strategy, tail, dp, accum, samplesPerPack, seed) => {
        let plan;
        try {
          plan = jsBackend.planBatches(s.vision, s.text, { strategy, tail, dp, accum, samplesPerPack, seed });
        } catch (error) {
          if ((error as { code?: string }).code === 'ERR_OMNIBAL_TOO_FEW_SAMPLES') return;
          // Tail 'carry' is the balanced strategy's only.
          if ((error as { code?: string }).code === 'ERR_OMNIBAL_INVALID_OPTIONS' && tail === 'carry' && strategy !== 'balanced') return;
          throw error;
        }
        checked.add(plan.packed);
        const diff = sameOnBothBackends((api) => api.planLoads(plan.packed, plan.samples, plan.microBatchOffsets, s.vision, s.text));
        if (diff) throw new Error(`${diff} (${strategy}, ${tail}, dp ${dp}, accum ${accum})`);
      },
    ),
    { numRuns: 300 },
  );
  t.deepEqual([...checked].sort(), [false, true], 'both packed and padded plans were checked');
});

nativeTest('planLoads: native equals the twin where the sums leave the exact integers (lengths near 2^32)', (t) => {
  fc.assert(
    fc.property(fc.uint32Array({ minLength: 1, maxLength: 40, min: 1 }), fc.boolean(), (text, packed) => {
      const vision = text.map((x) => x >>> 3);
      const index = Uint32Array.from(text.keys()).reverse();
      const offsets = Uint32Array.from([0, index.length >> 1, index.length]);
      const diff = sameOnBothBackends((api) => api.planLoads(packed, index, offsets, vision, text));
      if (diff) throw new Error(diff);
    }),
    { numRuns: 200 },
  );
  t.pass();
});

test('planLoads: bad plans and samples are the same coded errors on every backend', (t) => {
  const vision = Uint32Array.of(1, 2);
  const text = Uint32Array.of(5, 6);
  const cases: [Uint32Array, Uint32Array, Uint32Array, Uint32Array, string][] = [
    [Uint32Array.of(0, 1), Uint32Array.of(0, 1), vision, text, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [Uint32Array.of(0, 1), Uint32Array.of(0, 2, 1), vision, text, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [Uint32Array.of(0, 2), Uint32Array.of(0, 2), vision, text, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [Uint32Array.of(0, 1), Uint32Array.of(), vision, text, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [Uint32Array.of(0, 1), Uint32Array.of(0, 2), vision, Uint32Array.of(5, 0), 'ERR_OMNIBAL_INVALID_SAMPLE'],
    [Uint32Array.of(0, 1), Uint32Array.of(0, 2), vision, Uint32Array.of(5), 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [[0, 1] as unknown as Uint32Array, Uint32Array.of(0, 2), vision, text, 'ERR_OMNIBAL_INVALID_TYPE'],
  ];
  for (const [name, api] of backends) {
    for (const [index, offsets, v, x, code] of cases) {
      const e = thrown(() => api.planLoads(true, index, offsets, v, x));
      t.is(e.code, code, `${name}: ${JSON.stringify([Array.from(index), Array.from(offsets)])} ${e.message}`);
    }
  }
  const messages = backends.map(([, api]) => thrown(() => api.planLoads(false, Uint32Array.of(0, 2), Uint32Array.of(0, 2), vision, text)).message);
  t.is(new Set(messages).size, 1, messages.join(' | '));
});

test('batchMetrics takes the loads in its own pass: the same figures as planLoads, kept for the plan and these samples only', (t) => {
  fc.assert(
    fc.property(samplesArb, fc.constantFrom(...STRATEGIES), fc.integer({ min: 0, max: 1000 }), (s, strategy, seed) => {
      let plan;
      try {
        plan = planBatches(s, { dp: 2, accum: 2, samplesPerPack: 2, seed, strategy });
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_OMNIBAL_TOO_FEW_SAMPLES') return;
        throw error;
      }
      const metrics = batchMetrics(plan, s, { a: 1, b: 1 / 4096 });
      t.false('loads' in metrics, 'the public metrics keep their shape');
      const direct = jsBackend.planLoads(plan.packed, plan.samples, plan.microBatchOffsets, s.vision, s.text);
      const mean = meanMicroBatchLoad(plan, s);
      t.deepEqual([mean.tiles, mean.tokens, mean.sumSqLen], [direct.meanTiles, direct.meanTokens, direct.meanSumSqLen]);
      t.is(heaviestMicroBatchLoad(plan, s).tiles, direct.mostTiles);
      // Other samples (same length, other values): loads over them, not the remembered ones.
      const other = { vision: s.vision.map((v) => v + 1), text: s.text.map((x) => x + 7) };
      const again = jsBackend.planLoads(plan.packed, plan.samples, plan.microBatchOffsets, other.vision, other.text);
      t.is(meanMicroBatchLoad(plan, other).tokens, again.meanTokens);
      t.not(again.meanTokens, direct.meanTokens);
    }),
    { numRuns: 60 },
  );
});

test('a plan given new arrays or another packing since its loads were taken is measured again, not answered from the kept loads', (t) => {
  const s = { vision: new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]), text: new Uint32Array([10, 20, 30, 40, 50, 60, 70, 80]) };
  const plan = planBatches(s, { dp: 2, accum: 2, samplesPerPack: 2, seed: 1 });
  // The per-micro-batch definition over the plan as it is now.
  const expected = () => {
    const all = Array.from({ length: plan.microBatchOffsets.length - 1 }, (_, k) => microBatchLoad(plan, s, k));
    return { mean: all.reduce((x, l) => x + l.tokens, 0) / all.length, most: Math.max(...all.map((l) => l.tokens)) };
  };
  batchMetrics(plan, s);
  t.is(heaviestMicroBatchLoad(plan, s).tokens, expected().most);
  // What-ifs by hand on the same object: every sample in the first micro-batch (new offsets), then
  // padded, then other sample indices.
  plan.microBatchOffsets = new Uint32Array([0, 8, 8, 8, 8]);
  t.deepEqual(heaviestMicroBatchLoad(plan, s), { tiles: 36, tokens: 360, sumSqLen: 360 * 360 });
  t.is(meanMicroBatchLoad(plan, s).tokens, expected().mean);
  plan.packed = !plan.packed;
  t.is(meanMicroBatchLoad(plan, s).tokens, expected().mean);
  plan.samples = plan.samples.map(() => 7);
  t.is(meanMicroBatchLoad(plan, s).tokens, expected().mean);
  t.is(heaviestMicroBatchLoad(plan, s).tokens, expected().most);
});
