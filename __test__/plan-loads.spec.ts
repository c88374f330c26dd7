// The plan's per-plan load passes (mean and heaviest micro-batch, written as one tight loop for
// the default plan's speed) against the per-micro-batch definition, on packed and padded plans.
import test from 'ava';
import fc from 'fast-check';
import { planBatches } from '../src/data/index';
import { meanMicroBatchLoad, microBatchLoad } from '../src/data/load';
import { heaviestMicroBatchLoad } from '../src/model/memory-load';

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
