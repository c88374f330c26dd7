// Per-chunk in-flight counts at a stage's activation peak: native equals the twin, equal chunks
// give the simulator's own peak, and the counts match a replay of the simulator's events.
import test from 'ava';
import fc from 'fast-check';
import { jsBackend } from '../src/binding';
import { chunkInFlight, simulateStep } from '../src/simulate/index';
import { nativeTest, sameOnBothBackends, thrown } from './helpers';

const layoutArb = fc
  .record({
    pp: fc.integer({ min: 1, max: 6 }),
    mult: fc.integer({ min: 1, max: 4 }),
    schedule: fc.constantFrom('gpipe', '1f1b', 'interleaved'),
    v: fc.integer({ min: 1, max: 4 }),
    stage: fc.nat(),
    bytes: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 4, maxLength: 4 }),
  })
  .map(({ pp, mult, schedule, v, stage, bytes }) => {
    const k = schedule === 'interleaved' ? v : 1;
    return {
      schedule: schedule as 'gpipe' | '1f1b' | 'interleaved',
      virtualStages: v,
      pp,
      stage: stage % pp,
      microBatches: schedule === 'interleaved' ? pp * mult : mult,
      chunkBytes: Float64Array.from(bytes.slice(0, k), (b) => b * 1e6),
    };
  });

nativeTest('chunkInFlight: native equals the twin, bad input included', (t) => {
  fc.assert(
    fc.property(layoutArb, fc.integer({ min: 0, max: 5 }), (input, spoil) => {
      const i = { ...input };
      if (spoil === 1) i.chunkBytes = Float64Array.from([...i.chunkBytes, 1]); // wrong length
      if (spoil === 2) i.chunkBytes = Float64Array.from(i.chunkBytes, (x, c) => (c === 0 ? Number.NaN : x));
      if (spoil === 3) i.stage = i.pp; // out of range
      if (spoil === 4) i.microBatches = i.pp * 2 + 1; // not a multiple of pp
      const d = sameOnBothBackends((api) => api.chunkInFlight(i.schedule, i.virtualStages, i.pp, i.stage, i.microBatches, i.chunkBytes));
      if (d) throw new Error(d);
    }),
    { numRuns: 600 },
  );
  t.pass();
});

test('equal chunks peak at the simulator\'s own held activations (closed form)', (t) => {
  fc.assert(
    fc.property(layoutArb, (input) => {
      const { pp, microBatches: m, schedule, virtualStages: v } = input;
      const k = schedule === 'interleaved' ? v : 1;
      const sim = simulateStep({
        dp: 1,
        pp,
        microBatches: m,
        forwardMs: Float64Array.from({ length: m * pp }, (_, i) => 1 + (i % 5)),
        backwardMs: Float64Array.from({ length: m * pp }, (_, i) => 2 + (i % 3)),
        transferMs: new Float64Array(pp - 1),
        gradBytes: new Float64Array(pp),
        allreduceBytesPerS: 0,
        activationBytes: new Float64Array(pp).fill(k * 1e6),
        schedule,
        virtualStages: v,
      });
      for (let s = 0; s < pp; s++) {
        const peak = chunkInFlight({ ...input, stage: s, chunkBytes: new Float64Array(k).fill(1e6) });
        if (Math.abs(peak.bytes - sim.peakActivationBytes[s]) > 1e-3) throw new Error(`stage ${s}: ${peak.bytes} vs ${sim.peakActivationBytes[s]}`);
      }
    }),
    { numRuns: 200 },
  );
  t.pass();
});

test('unequal chunks: the counts are those of the simulator\'s event timeline at its weighted peak', (t) => {
  fc.assert(
    fc.property(layoutArb, (input) => {
      const { pp, microBatches: m, schedule, virtualStages: v, stage, chunkBytes } = input;
      const k = chunkBytes.length;
      const sim = simulateStep(
        {
          dp: 1,
          pp,
          microBatches: m,
          forwardMs: Float64Array.from({ length: m * pp }, (_, i) => 1 + (i % 5)),
          backwardMs: Float64Array.from({ length: m * pp }, (_, i) => 2 + (i % 3)),
          transferMs: new Float64Array(pp - 1).fill(0.25),
          gradBytes: new Float64Array(pp),
          allreduceBytesPerS: 0,
          activationBytes: new Float64Array(pp).fill(1),
          schedule,
          virtualStages: v,
        },
        true,
      );
      // Independent replay: this device's events in time order, forwards hold, backwards free.
      const e = sim.events!;
      const mine = Array.from(e.stage.keys()).filter((i) => e.stage[i] === stage && e.rank[i] === 0);
      mine.sort((a, b) => e.startMs[a] - e.startMs[b]);
      const held = new Array<number>(k).fill(0);
      let best = -1;
      for (const i of mine) {
        held[e.chunk[i]] += e.backward[i] ? -1 : 1;
        const bytes = held.reduce((a, n, c) => a + n * chunkBytes[c], 0);
        best = Math.max(best, bytes);
      }
      const peak = chunkInFlight(input);
      if (peak.bytes !== best) throw new Error(`${peak.bytes} vs replay ${best}`);
      if (peak.counts.reduce((a, n, c) => a + n * chunkBytes[c], 0) !== peak.bytes) throw new Error('counts do not give the bytes');
    }),
    { numRuns: 200 },
  );
  t.pass();
});

test('P 4, v 2, m 8, first stage: a heavy first chunk holds all 8 of its micro-batches, more than the average says', (t) => {
  const base = { schedule: 'interleaved' as const, virtualStages: 2, pp: 4, stage: 0, microBatches: 8 };
  const heavy = jsBackend.chunkInFlight('interleaved', 2, 4, 0, 8, Float64Array.from([1, 0]));
  t.deepEqual(Array.from(heavy.counts), [8, 3]);
  const equal = chunkInFlight({ ...base, chunkBytes: Float64Array.from([1, 1]) });
  t.is(equal.bytes, 11); // Megatron: 4 (1 + 3 / 8) = 5.5 stages' worth, 11 chunks
  const mixed = chunkInFlight({ ...base, chunkBytes: Float64Array.from([3, 1]) });
  t.is(mixed.bytes, 27); // the average model: 5.5 x (3 + 1) = 22
  t.is(thrown(() => chunkInFlight({ ...base, chunkBytes: [1, 1] as never })).code, 'ERR_OMNIBAL_INVALID_TYPE');
  t.is(thrown(() => chunkInFlight({ ...base, schedule: 'zb' as never, chunkBytes: Float64Array.from([1, 1]) })).code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
  t.regex(thrown(() => chunkInFlight({ ...base, microBatches: 6, chunkBytes: Float64Array.from([1, 1]) })).message, /microBatches must be a multiple of pp \(4\)/);
  t.regex(thrown(() => chunkInFlight({ ...base, chunkBytes: Float64Array.from([1]) })).message, /chunkBytes must have one entry per model chunk \(2\)/);
});
