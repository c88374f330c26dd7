// The step simulator: native equals the twin on random steps, and the closed forms hold.
import test from 'ava';
import fc from 'fast-check';
import { backend, jsBackend } from '../src/binding';
import { simulateStep } from '../src/simulate/index';
import { firstDifference, native, nativeTest, thrown } from './helpers';

const stepArb = fc
  .record({
    dp: fc.integer({ min: 1, max: 3 }),
    pp: fc.integer({ min: 1, max: 5 }),
    mult: fc.integer({ min: 1, max: 4 }),
    schedule: fc.constantFrom('gpipe', '1f1b', 'interleaved'),
    v: fc.integer({ min: 1, max: 3 }),
    seed: fc.integer({ min: 0, max: 1000 }),
  })
  .map(({ dp, pp, mult, schedule, v, seed }) => {
    const m = schedule === 'interleaved' ? pp * mult : mult + pp - 1;
    const n = dp * m * pp;
    const val = (i: number, k: number) => ((i * 7919 + seed * 104729 + k) % 97) / 10;
    return {
      dp,
      pp,
      microBatches: m,
      forwardMs: Float64Array.from({ length: n }, (_, i) => val(i, 1)),
      backwardMs: Float64Array.from({ length: n }, (_, i) => val(i, 2) * 2),
      transferMs: Float64Array.from({ length: pp - 1 }, (_, i) => val(i, 3) / 10),
      gradBytes: Float64Array.from({ length: pp }, (_, i) => 1e8 * (i + 1)),
      allreduceBytesPerS: seed % 2 === 0 ? 0 : 25e9,
      activationBytes: Float64Array.from({ length: pp }, () => 1e6),
      schedule,
      virtualStages: v,
    };
  });

nativeTest('simulateStep: native equals the twin, events included', (t) => {
  fc.assert(
    fc.property(stepArb, (input) => {
      const a = native!.simulateStep(input, true);
      const b = jsBackend.simulateStep(input, true);
      const d = firstDifference(a, b);
      if (d) throw new Error(d);
    }),
    { numRuns: 400 },
  );
  t.pass();
});

// Interleaved steps with each model chunk's own time (as a chunk plan gives them).
const chunkedArb = fc
  .record({ dp: fc.integer({ min: 1, max: 3 }), pp: fc.integer({ min: 1, max: 5 }), mult: fc.integer({ min: 1, max: 3 }), v: fc.integer({ min: 1, max: 3 }), seed: fc.integer({ min: 0, max: 1000 }) })
  .map(({ dp, pp, mult, v, seed }) => {
    const m = pp * mult;
    const n = dp * m * pp;
    const val = (i: number, k: number) => ((i * 7919 + seed * 104729 + k) % 97) / 10;
    const chunkForwardMs = Float64Array.from({ length: n * v }, (_, i) => val(i, 5));
    const chunkBackwardMs = Float64Array.from({ length: n * v }, (_, i) => val(i, 6) * 2);
    // The stage totals the chunks sum to (checked, not used, when chunk times are given).
    const total = (xs: Float64Array) => Float64Array.from({ length: n }, (_, i) => {
      const [rm, s] = [Math.floor(i / pp), i % pp];
      let t = 0;
      for (let j = 0; j < v; j++) t += xs[(rm * v + j) * pp + s];
      return t;
    });
    return {
      dp,
      pp,
      microBatches: m,
      forwardMs: total(chunkForwardMs),
      backwardMs: total(chunkBackwardMs),
      transferMs: Float64Array.from({ length: pp - 1 }, (_, i) => val(i, 3) / 10),
      gradBytes: Float64Array.from({ length: pp }, (_, i) => 1e8 * (i + 1)),
      allreduceBytesPerS: seed % 2 === 0 ? 0 : 25e9,
      activationBytes: Float64Array.from({ length: pp }, () => 1e6),
      schedule: 'interleaved',
      virtualStages: v,
      chunkForwardMs,
      chunkBackwardMs,
    };
  });

nativeTest('simulateStep with per-chunk times: native equals the twin, and every chunk event lasts its own time', (t) => {
  fc.assert(
    fc.property(chunkedArb, (input) => {
      const a = native!.simulateStep(input, true);
      const b = jsBackend.simulateStep(input, true);
      const d = firstDifference(a, b);
      if (d) throw new Error(d);
      const { pp, microBatches: m, virtualStages: v } = input;
      for (let e = 0; e < b.eventRank.length; e++) {
        const at = ((b.eventRank[e] * m + b.eventMicroBatch[e]) * v + b.eventChunk[e]) * pp + b.eventStage[e];
        const want = (b.eventBackward[e] ? input.chunkBackwardMs : input.chunkForwardMs)[at];
        if (Math.abs(b.eventEndMs[e] - b.eventStartMs[e] - want) > 1e-9) throw new Error(`event ${e}: ${b.eventEndMs[e] - b.eventStartMs[e]} vs ${want}`);
      }
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('per-chunk times equal to 1/v of the stage give the old interleaved step; they are checked on every backend', (t) => {
  const pp = 3;
  const v = 2;
  const m = 6;
  const n = m * pp;
  const forwardMs = Float64Array.from({ length: n }, (_, i) => 1 + (i % 4));
  const backwardMs = Float64Array.from(forwardMs, (x) => 2 * x);
  const split = (xs: Float64Array) => Float64Array.from({ length: n * v }, (_, i) => xs[Math.floor(i / (v * pp)) * pp + (i % pp)] / v);
  const base = { dp: 1, pp, microBatches: m, forwardMs, backwardMs, transferMs: new Float64Array([0.3, 0.2]), gradBytes: new Float64Array(pp), allreduceBytesPerS: 0, activationBytes: new Float64Array(pp).fill(1), schedule: 'interleaved' as const, virtualStages: v };
  const plain = simulateStep(base);
  const even = simulateStep({ ...base, chunkForwardMs: split(forwardMs), chunkBackwardMs: split(backwardMs) });
  t.true(Math.abs(plain.stepMs - even.stepMs) < 1e-9);
  // The second chunk twice as slow as the first: a different (longer) step.
  const skew = (xs: Float64Array) => Float64Array.from({ length: n * v }, (_, i) => (xs[Math.floor(i / (v * pp)) * pp + (i % pp)] * (Math.floor(i / pp) % v === 0 ? 1 : 2)) / 3);
  t.not(simulateStep({ ...base, chunkForwardMs: skew(forwardMs), chunkBackwardMs: skew(backwardMs) }).stepMs, plain.stepMs);
  t.is(thrown(() => simulateStep({ ...base, chunkForwardMs: split(forwardMs) })).code, 'ERR_OMNIBAL_INVALID_TYPE');
  for (const b of native ? [native, jsBackend] : [jsBackend]) {
    t.is(thrown(() => b.simulateStep({ ...base, chunkForwardMs: split(forwardMs), chunkBackwardMs: new Float64Array(3) }, false)).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
    t.is(thrown(() => b.simulateStep({ ...base, schedule: '1f1b', chunkForwardMs: split(forwardMs), chunkBackwardMs: split(backwardMs) }, false)).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
    const nan = split(forwardMs);
    nan[2] = NaN;
    t.is(thrown(() => b.simulateStep({ ...base, chunkForwardMs: nan, chunkBackwardMs: split(backwardMs) }, false)).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  }
});

test('closed forms: GPipe and 1F1B take (M + P - 1)(f + b); interleaving divides the bubble by v', (t) => {
  const make = (pp: number, m: number, schedule: string, v = 1) => ({
    dp: 2,
    pp,
    microBatches: m,
    forwardMs: new Float64Array(2 * pp * m).fill(2),
    backwardMs: new Float64Array(2 * pp * m).fill(4),
    transferMs: new Float64Array(pp - 1),
    gradBytes: new Float64Array(pp),
    allreduceBytesPerS: 0,
    activationBytes: new Float64Array(pp).fill(1),
    schedule,
    virtualStages: v,
  });
  for (const schedule of ['gpipe', '1f1b']) {
    const r = jsBackend.simulateStep(make(4, 8, schedule), false);
    t.is(r.stepMs, (8 + 4 - 1) * 6, schedule);
    t.true(Math.abs(r.bubbleFraction - 3 / 11) < 1e-12);
  }
  const i = jsBackend.simulateStep(make(4, 8, 'interleaved', 2), false);
  t.true(Math.abs(i.stepMs - (8 * 6 + (3 * 6) / 2)) < 1e-9);
  t.deepEqual(Array.from(jsBackend.simulateStep(make(4, 8, '1f1b'), false).peakInFlight), [4, 3, 2, 1]);
  t.is(thrown(() => jsBackend.simulateStep(make(4, 6, 'interleaved', 2), false)).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(thrown(() => jsBackend.simulateStep(make(4, 6, 'zero-bubble'), false)).code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
});

test('simulateStep rejects NaN, negative or infinite figures and plain arrays with the same coded error on every backend', (t) => {
  const good = {
    dp: 1,
    pp: 2,
    microBatches: 2,
    forwardMs: new Float64Array(4).fill(1),
    backwardMs: new Float64Array(4).fill(2),
    transferMs: new Float64Array(1),
    gradBytes: new Float64Array(2),
    allreduceBytesPerS: 0,
    activationBytes: new Float64Array(2),
    schedule: '1f1b' as const,
  };
  t.is(simulateStep(good).stepMs, 9);
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['NaN bandwidth', { allreduceBytesPerS: Number.NaN }, 'ERR_OMNIBAL_OUT_OF_RANGE', /allreduceBytesPerS/],
    ['negative bandwidth', { allreduceBytesPerS: -1 }, 'ERR_OMNIBAL_OUT_OF_RANGE', /allreduceBytesPerS/],
    ['NaN time', { forwardMs: Float64Array.from([1, Number.NaN, 1, 1]) }, 'ERR_OMNIBAL_OUT_OF_RANGE', /forwardMs\[1\]/],
    ['negative time', { backwardMs: Float64Array.from([1, 1, -2, 1]) }, 'ERR_OMNIBAL_OUT_OF_RANGE', /backwardMs\[2\]/],
    ['infinite bytes', { gradBytes: Float64Array.from([1, Infinity]) }, 'ERR_OMNIBAL_OUT_OF_RANGE', /gradBytes\[1\]/],
    ['plain array', { forwardMs: [1, 1, 1, 1] }, 'ERR_OMNIBAL_INVALID_TYPE', /forwardMs must be a Float64Array/],
    ['short array', { transferMs: new Float64Array(0) }, 'ERR_OMNIBAL_OUT_OF_RANGE', /transferMs must have 1 entries/],
    ['fractional dp', { dp: 1.5 }, 'ERR_OMNIBAL_OUT_OF_RANGE', /dp/],
    ['unknown schedule', { schedule: 'zb' }, 'ERR_OMNIBAL_UNKNOWN_OPTION', /schedule/],
    ['overflowing all-reduce', { dp: 2, forwardMs: new Float64Array(8).fill(1), backwardMs: new Float64Array(8).fill(2), gradBytes: Float64Array.from([1e9, 1e9]), allreduceBytesPerS: 1e-300 }, 'ERR_OMNIBAL_OUT_OF_RANGE', /input gives a step of Infinity ms/],
    ['overflowing times', { forwardMs: new Float64Array(4).fill(1e308) }, 'ERR_OMNIBAL_OUT_OF_RANGE', /input gives a step of Infinity ms/],
  ];
  // The suite runs once per backend (npm test runs it again with OMNIBAL_BACKEND=js): the same codes and messages.
  for (const [name, change, code, message] of cases) {
    const e = thrown(() => simulateStep({ ...good, ...change } as never));
    t.is(e.code, code, `${backend().kind}: ${name}`);
    t.regex(e.message, message, `${backend().kind}: ${name}`);
  }
});
