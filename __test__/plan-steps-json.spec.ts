// A plan's steps as JSON text, natively with the TypeScript writer as the twin: the same bytes
// on random plans of every strategy and tail, in runs that join to JSON.stringify of the steps,
// and the same coded errors for bad offsets.
import test from 'ava';
import fc from 'fast-check';
import { jsBackend } from '../src/binding';
import { planStep, TAILS, type BatchPlan } from '../src/data/plan';
import { STRATEGIES } from '../src/data/strategy';
import { backends, nativeTest, sameOnBothBackends, thrown } from './helpers';

const samplesArb = fc.integer({ min: 8, max: 200 }).chain((n) =>
  fc.record({
    vision: fc.uint32Array({ minLength: n, maxLength: n, min: 0, max: 6 }),
    text: fc.uint32Array({ minLength: n, maxLength: n, min: 1, max: 3000 }),
  }),
);

const planArb = fc
  .tuple(samplesArb, fc.constantFrom(...STRATEGIES), fc.constantFrom(...TAILS), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 99 }))
  .map(([s, strategy, tail, dp, accum, seed]) => {
    try {
      return jsBackend.planBatches(s.vision, s.text, { strategy, tail, dp, accum, samplesPerPack: 2.5, seed });
    } catch {
      return undefined; // too few samples for a step: nothing to write
    }
  });

test('planStepsJson: runs of whole steps join to JSON.stringify of the steps on every backend', (t) => {
  fc.assert(
    fc.property(planArb, fc.integer({ min: 0, max: 400 }), (plan, minBytes) => {
      if (!plan) return;
      // Sample indices up to 2^32 - 1 (every digit count), not only the plan's own.
      const samples = plan.samples.map((i, q) => (q % 4 === 1 ? 0xffffffff - i : q % 4 === 2 ? 10 ** (q % 10) : i));
      const whole = JSON.stringify(Array.from({ length: plan.steps }, (_, s) => planStep({ ...(plan as BatchPlan), samples }, s).map((rank) => rank.map((mb) => Array.from(mb)))));
      for (const [name, api] of backends) {
        const runs: Uint8Array[] = [];
        for (let s = 0; s < plan.steps; ) {
          const run = api.planStepsJson(samples, plan.microBatchOffsets, plan.rankOffsets, plan.dp, s, minBytes);
          if (run.nextStep <= s) throw new Error(`${name}: no progress at step ${s}`);
          runs.push(run.bytes);
          s = run.nextStep;
        }
        const text = `[${Buffer.concat(runs).toString('latin1')}]`;
        if (text !== whole) throw new Error(`${name}: ${text.slice(0, 200)} vs ${whole.slice(0, 200)}`);
      }
    }),
    { numRuns: 200 },
  );
  t.pass();
});

nativeTest('planStepsJson: native equals the twin byte for byte, bad offsets included', (t) => {
  fc.assert(
    fc.property(
      fc.uint32Array({ maxLength: 30 }),
      fc.uint32Array({ maxLength: 12, max: 40 }),
      fc.uint32Array({ maxLength: 12, max: 14 }),
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 100 }),
      (samples, mbo, ranks, dp, from, minBytes) => {
        const diff = sameOnBothBackends((api) => api.planStepsJson(samples, mbo, ranks, dp, from, minBytes));
        if (diff) throw new Error(diff);
      },
    ),
    { numRuns: 1000 },
  );
  t.pass();
});

test('planStepsJson: wrong argument kinds are the same coded errors on every backend', (t) => {
  const ok = Uint32Array.of(0, 1);
  const cases: [unknown[], string][] = [
    [[[0, 1], ok, ok, 1, 0, 10], 'ERR_OMNIBAL_INVALID_TYPE'],
    [[ok, ok, ok, 0, 0, 10], 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [[ok, ok, ok, 1, -1, 10], 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [[ok, ok, ok, 1, 0, NaN], 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [[ok, Uint32Array.of(0, 5), Uint32Array.of(0, 1), 1, 0, 10], 'ERR_OMNIBAL_OUT_OF_RANGE'],
  ];
  for (const [args, code] of cases) {
    const errors = backends.map(([, api]) => thrown(() => (api.planStepsJson as (...a: unknown[]) => unknown)(...args)));
    for (const e of errors) t.is(e.code, code, e.message);
    t.is(new Set(errors.map((e) => e.message)).size, 1, errors.map((e) => e.message).join(' | '));
  }
});
