// The streamed `pack --json` document: the same bytes as JSON.stringify of the whole object.
import test from 'ava';
import fc from 'fast-check';
import { batchMetrics, planBatches } from '../src/data/index';
import { meanMicroBatchLoad, microBatchLoad } from '../src/data/load';
import type { BatchPlan } from '../src/data/plan';
import type { PlanBatchesOptions } from '../src/data/strategy';
import { syntheticSamples } from '../src/data/synthetic';
import { planJsonChunks, planToJson } from '../src/cli/plan-json';

const samples = syntheticSamples(3_000, 5);
// 1% of the samples far over the derived caps: micro-batches of their own (balanced), or
// dropped over a cap (explicit caps).
for (let i = 0; i < samples.text.length; i += 100) {
  samples.vision[i] = 40;
  samples.text[i] = 17_000;
}

const cases: [string, PlanBatchesOptions][] = [
  ['balanced, own micro-batches, dropped tail', { dp: 8, accum: 2, samplesPerPack: 4.5, seed: 1 }],
  ['balanced, explicit caps: over-cap samples dropped', { dp: 4, maxVision: 20, maxText: 8_000, tail: 'keep-partial' }],
  ['isf, padded tail', { strategy: 'isf', dp: 4, samplesPerPack: 3, tail: 'pad' }],
  ['random, keep-partial', { strategy: 'random', dp: 3, accum: 3, samplesPerPack: 4, tail: 'keep-partial', seed: 9 }],
];

const plans: [string, BatchPlan][] = cases.map(([label, options]) => [label, planBatches(samples, options)]);

test('the cases hold what the document must carry: tail and over-cap drops, padding, own micro-batches', (t) => {
  const p = plans.map(([, plan]) => plan);
  t.true(p[0].droppedReason.includes(3) && p[0].oversizeIndex.length > 0);
  t.true(p[1].droppedReason.includes(1) || p[1].droppedReason.includes(2));
  t.true(p[2].padding.includes(1));
  t.false(p[3].packed);
});

function streamed(plan: BatchPlan, chunkBytes?: number): { text: string; chunks: Uint8Array[] } {
  const metrics = batchMetrics(plan, samples);
  const chunks = [...planJsonChunks(plan, metrics, { dp: plan.dp, note: 'x"y' }, meanMicroBatchLoad(plan, samples), ['a warning'], chunkBytes)];
  return { text: Buffer.concat(chunks).toString('utf8'), chunks };
}

for (const [label, plan] of plans) {
  test(`the streamed JSON equals JSON.stringify of the document: ${label}`, (t) => {
    const metrics = batchMetrics(plan, samples);
    const whole = `${JSON.stringify(planToJson(plan, metrics, { dp: plan.dp, note: 'x"y' }, meanMicroBatchLoad(plan, samples), ['a warning']))}\n`;
    t.is(streamed(plan).text, whole);
    // Any chunk size gives the same bytes, in chunks no larger than asked.
    fc.assert(
      fc.property(fc.integer({ min: 64, max: 5_000 }), (size) => {
        const { text, chunks } = streamed(plan, size);
        // The head and the metrics may come whole; every chunk between is within the size.
        return text === whole && chunks.length > 2 && chunks.slice(1, -1).every((c) => c.length <= size);
      }),
      { numRuns: 25 },
    );
  });
}

test('the streamed JSON writes sample indices up to 2^32 - 1 in decimal', (t) => {
  const [, plan] = plans[0];
  const big = { ...plan, samples: plan.samples.map((i, q) => (q % 3 === 0 ? 0xffffffff - i : q % 3 === 1 ? 10 ** (q % 10) : i)) };
  const metrics = batchMetrics(plan, samples);
  t.is(Buffer.concat([...planJsonChunks(big, metrics, {}, undefined, [], 100)]).toString(), `${JSON.stringify(planToJson(big, metrics, {}, undefined, []))}\n`);
});

test('meanMicroBatchLoad is the mean of microBatchLoad over the micro-batches', (t) => {
  for (const [label, plan] of plans) {
    const n = plan.microBatchOffsets.length - 1;
    const sum = { tiles: 0, tokens: 0, sumSqLen: 0 };
    for (let k = 0; k < n; k++) {
      const l = microBatchLoad(plan, samples, k);
      sum.tiles += l.tiles;
      sum.tokens += l.tokens;
      sum.sumSqLen += l.sumSqLen;
    }
    t.deepEqual(meanMicroBatchLoad(plan, samples), { tiles: sum.tiles / n, tokens: sum.tokens / n, sumSqLen: sum.sumSqLen / n }, label);
  }
});
