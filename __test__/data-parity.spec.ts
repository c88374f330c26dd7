// Native and TypeScript twins give the same plans, packs, searches and metrics (or the same
// errors) on thousands of random datasets.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { jsBackend } from '../src/binding';
import { PACK_BLOCK, RoomSet, STEP_BLOCK_MAX_PACKS, STEP_BLOCK_PACKS } from '../src/data/balance';
import { stepBlock } from '../src/data/balance/steps';
import { STRATEGIES } from '../src/data/strategy';
import { capsForTarget } from '../src/data/caps';
import { syntheticSamples } from '../src/data/synthetic';
import { TAILS } from '../src/data/plan';
import { firstDifference, native, nativeTest, realLike, sameOnBothBackends, thrown } from './helpers';

const samplesArb = fc.integer({ min: 1, max: 160 }).chain((n) =>
  fc.record({
    vision: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: n, maxLength: n }).map((a) => Uint32Array.from(a)),
    text: fc.array(fc.integer({ min: 1, max: 2500 }), { minLength: n, maxLength: n }).map((a) => Uint32Array.from(a)),
  }),
);

const optionsArb = fc.record(
  {
    strategy: fc.constantFrom(...STRATEGIES),
    dp: fc.integer({ min: 1, max: 8 }),
    accum: fc.integer({ min: 1, max: 3 }),
    samplesPerPack: fc.double({ min: 1, max: 8, noNaN: true }),
    seed: fc.integer({ min: 0, max: 2 ** 40 }),
    epoch: fc.integer({ min: 0, max: 5 }),
    tail: fc.constantFrom(...TAILS),
    costB: fc.constantFrom(0, 1 / 4096, 0.01),
    iterations: fc.integer({ min: 1, max: 20 }),
  },
  { requiredKeys: ['strategy', 'dp'] },
);

const capsArb = fc.record({ maxVision: fc.integer({ min: 0, max: 30 }), maxText: fc.integer({ min: 1, max: 9000 }) });

/** Runs `f` on both backends; both must throw the same error, or return equal results. */

nativeTest('planBatches: native equals the twin (plans and metrics) on random datasets', (t) => {
  fc.assert(
    fc.property(samplesArb, optionsArb, fc.option(capsArb), (s, o, caps) => {
      const options = caps ? { ...o, samplesPerPack: undefined, ...caps } : o;
      const diff = sameOnBothBackends((api) => {
        const plan = api.planBatches(s.vision, s.text, options);
        return { plan, metrics: api.batchMetrics(plan, s.vision, s.text, 1, o.costB ?? 0) };
      });
      if (diff) throw new Error(`${diff}\noptions ${JSON.stringify(options)}`);
    }),
    { numRuns: 2500 },
  );
  t.pass();
});

/**
 * Real-like samples (1, 3, 4 or 5 tiles of 256 tokens plus a heavy-tailed residual), large
 * enough for every step of the balanced planner to act: re-packing of part-filled packs, the
 * tail dealt into smaller packs, two-for-two exchanges, costly packs matched, vision evening.
 */
const realLikeArb = fc.record({
  n: fc.integer({ min: 200, max: 3000 }),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
  longEvery: fc.integer({ min: 20, max: 200 }),
}).map(({ n, seed, longEvery }) => realLike(n, seed, longEvery));

nativeTest('planBatches: native equals the twin on real-like data, any dp, accum and tail', (t) => {
  fc.assert(
    fc.property(
      realLikeArb,
      fc.integer({ min: 1, max: 48 }),
      fc.integer({ min: 1, max: 3 }),
      fc.constantFrom('drop', 'pad', 'keep-partial'),
      fc.constantFrom(0, 1 / 73728, 1 / 2048),
      fc.double({ min: 2, max: 7, noNaN: true }),
      (s, dp, accum, tail, costB, samplesPerPack) => {
        const options = { dp, accum, samplesPerPack, tail, costB, seed: dp + 3 * accum };
        const diff = sameOnBothBackends((api) => {
          const plan = api.planBatches(s.vision, s.text, options);
          return { plan, metrics: api.batchMetrics(plan, s.vision, s.text, 1, costB) };
        });
        if (diff) throw new Error(`${diff}\noptions ${JSON.stringify(options)}`);
      },
    ),
    { numRuns: 150 },
  );
  t.pass();
});

/** Samples with outliers (40 tiles, 16-20k tokens) at random places, as skewed real sets have. */
const skewedArb = fc.tuple(samplesArb, fc.array(fc.nat(), { maxLength: 12 })).map(([s, at]) => {
  for (const k of at) {
    const i = k % s.text.length;
    s.vision[i] = 40;
    s.text[i] = 16000 + (k % 4000);
  }
  return s;
});

nativeTest('planBatches: native equals the twin on skewed data (over-cap samples in micro-batches of their own), any dp x accum', (t) => {
  fc.assert(
    fc.property(
      skewedArb,
      fc.integer({ min: 1, max: 24 }),
      fc.integer({ min: 1, max: 5 }),
      fc.double({ min: 1, max: 8, noNaN: true }),
      fc.constantFrom('drop', 'pad', 'keep-partial'),
      fc.constantFrom(0, 1 / 73728, 1 / 1024),
      (s, dp, accum, samplesPerPack, tail, costB) => {
        const options = { dp, accum, samplesPerPack, tail, costB, seed: dp * 7 + accum };
        const diff = sameOnBothBackends((api) => {
          const plan = api.planBatches(s.vision, s.text, options);
          return { plan, metrics: api.batchMetrics(plan, s.vision, s.text, 1, costB) };
        });
        if (diff) throw new Error(`${diff}\noptions ${JSON.stringify(options)}`);
      },
    ),
    { numRuns: 800 },
  );
  t.pass();
});

nativeTest('packIsf: native equals the twin on random datasets', (t) => {
  fc.assert(
    fc.property(samplesArb, capsArb, fc.integer({ min: 1, max: 60 }), fc.integer({ min: 0, max: 1000 }), (s, caps, iterations, seed) => {
      const diff = sameOnBothBackends((api) => api.packIsf(s.vision, s.text, { ...caps, iterations, seed }));
      if (diff) throw new Error(diff);
    }),
    { numRuns: 1500 },
  );
  t.pass();
});

nativeTest('searchIsfArguments: native equals the twin on random datasets', (t) => {
  fc.assert(
    fc.property(samplesArb, fc.double({ min: 1, max: 6, noNaN: true }), fc.integer({ min: 1, max: 8 }), (s, b, dp) => {
      const diff = sameOnBothBackends((api) => api.searchIsfArguments(s.vision, s.text, { samplesPerPack: b, dp, iterations: 5, maxSteps: 6 }));
      if (diff) throw new Error(diff);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

nativeTest('bad options and samples give the same coded errors from both backends', (t) => {
  const v = Uint32Array.from([1, 2, 3, 4]);
  const tx = Uint32Array.from([100, 200, 300, 400]);
  const cases: [string, () => [Uint32Array, Uint32Array, object]][] = [
    ['empty input', () => [new Uint32Array(0), new Uint32Array(0), { dp: 1, samplesPerPack: 2 }]],
    ['zero text tokens', () => [v, Uint32Array.from([1, 0, 3, 4]), { dp: 1, samplesPerPack: 2 }]],
    ['length mismatch', () => [v, tx.subarray(0, 3), { dp: 1, samplesPerPack: 2 }]],
    ['dp 0', () => [v, tx, { dp: 0, samplesPerPack: 2 }]],
    ['accum 0', () => [v, tx, { dp: 1, accum: 0, samplesPerPack: 2 }]],
    ['fractional dp', () => [v, tx, { dp: 1.5, samplesPerPack: 2 }]],
    ['NaN samples per pack', () => [v, tx, { dp: 1, samplesPerPack: NaN }]],
    ['caps below every sample', () => [v, tx, { dp: 1, maxVision: 0, maxText: 50 }]],
    ['one cap only', () => [v, tx, { dp: 1, maxVision: 4 }]],
    ['both size options', () => [v, tx, { dp: 1, maxVision: 4, maxText: 500, samplesPerPack: 2 }]],
    ['no size option', () => [v, tx, { dp: 1 }]],
    ['too few for one step', () => [v, tx, { dp: 8, samplesPerPack: 2 }]],
    ['unknown strategy', () => [v, tx, { dp: 1, samplesPerPack: 2, strategy: 'greedy' }]],
    ['unknown tail', () => [v, tx, { dp: 1, samplesPerPack: 2, tail: 'wrap' }]],
    ['negative cost', () => [v, tx, { dp: 1, samplesPerPack: 2, costA: -1 }]],
    ['unsafe seed', () => [v, tx, { dp: 1, samplesPerPack: 2, seed: 2 ** 60 }]],
  ];
  for (const [label, make] of cases) {
    const [vision, text, options] = make();
    const a = thrown(() => native!.planBatches(vision, text, options as never));
    const b = thrown(() => jsBackend.planBatches(vision, text, options as never));
    t.not(a.name, 'nothing thrown', label);
    t.deepEqual(a, b, label);
    t.regex(String(a.code), /^ERR_OMNIBAL_/, label);
  }
  const wrongKind = thrown(() => native!.planBatches(new Float64Array(4) as never, tx, { dp: 1, samplesPerPack: 2 }));
  t.deepEqual(wrongKind, thrown(() => jsBackend.planBatches(new Float64Array(4) as never, tx, { dp: 1, samplesPerPack: 2 })));
  t.is(wrongKind.code, 'ERR_OMNIBAL_INVALID_TYPE');
});

nativeTest('error messages print numbers alike for any double', (t) => {
  const v = Uint32Array.from([1, 2]);
  const tx = Uint32Array.from([10, 20]);
  fc.assert(
    fc.property(fc.double(), fc.double(), (seed, b) => {
      for (const options of [{ dp: 1, samplesPerPack: 2, seed }, { dp: 1, samplesPerPack: b }, { dp: seed, samplesPerPack: 2 }]) {
        const a = thrown(() => native!.planBatches(v, tx, options));
        const c = thrown(() => jsBackend.planBatches(v, tx, options));
        if (firstDifference(a, c)) throw new Error(`${JSON.stringify(a)} vs ${JSON.stringify(c)}`);
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

/**
 * Vision counted in tokens (576 per image, or any unit) under caps up to 70,000: sums that often
 * cannot fill the cap exactly, so best fit re-packs most samples, its rooms spread over many
 * words of its room set; a few samples over a cap.
 */
const tokenVisionArb = fc.record({
  n: fc.integer({ min: 1, max: 600 }),
  unit: fc.constantFrom(1, 7, 64, 576, 1000),
  maxVision: fc.oneof(fc.integer({ min: 1, max: 70000 }), fc.constantFrom(1023, 1024, 1025, 16384, 65535, 65536, 65537)),
  maxText: fc.oneof(fc.integer({ min: 1, max: 20000 }), fc.constant(2 ** 31)),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
});

nativeTest('planBatches: native equals the twin with vision in tokens under large caps (best-fit re-packing)', (t) => {
  fc.assert(
    fc.property(
      tokenVisionArb,
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 3 }),
      fc.constantFrom('drop', 'pad', 'keep-partial'),
      ({ n, unit, maxVision, maxText, seed }, dp, accum, tail) => {
        let x = seed >>> 0;
        const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
        const vision = Uint32Array.from({ length: n }, () => unit * (1 + (next() % 3)));
        const text = Uint32Array.from({ length: n }, () => 1 + (next() % 3000));
        const options = { dp, accum, maxVision, maxText, tail, seed };
        const diff = sameOnBothBackends((api) => api.planBatches(vision, text, options));
        if (diff) throw new Error(`${diff}\noptions ${JSON.stringify(options)} unit ${unit} n ${n}`);
      },
    ),
    { numRuns: 400 },
  );
  t.pass();
});

/**
 * 2.6M samples of 4e9 tiles (half 4,000,000,001, half 4,000,000,002, in pairs moved one apart):
 * the vision sum passes 2^53, where a double sum drifts (174,098 short here); the exact mean is
 * 4,000,000,001.5, so the cap is 4,000,000,002 + 1.
 */
function pastTwoTo53(): { vision: Uint32Array; text: Uint32Array } {
  const n = 2_600_000;
  const vision = new Uint32Array(n);
  for (let i = 0; i < n; i++) vision[i] = 4_000_000_001 + (i % 2) + (i % 4 === 0 ? 1 : i % 4 === 1 ? -1 : 0);
  return { vision, text: new Uint32Array(n).fill(1) };
}

test('capsForTarget: sums past 2^53 are exact, as the core\'s u64 sums (the cap is not one under)', (t) => {
  const { vision, text } = pastTwoTo53();
  t.is(capsForTarget(vision, text, 1).maxVision, 4_000_000_003);
});

nativeTest('planBatches: the caps derived from samplesPerPack are the core\'s when the sums pass 2^53', (t) => {
  const { vision, text } = pastTwoTo53();
  const plan = native!.planBatches(vision, text, { strategy: 'balanced', dp: 1, samplesPerPack: 1, seed: 0, tail: 'keep-partial' });
  const caps = capsForTarget(vision, text, 1);
  t.deepEqual({ maxVision: caps.maxVision, maxText: caps.maxText }, { maxVision: plan.maxVision, maxText: plan.maxText });
  t.is(plan.maxVision, 4_000_000_003);
});

nativeTest('planBatches: the vision unit of caps derived from samplesPerPack is the core\'s, stray values and all', (t) => {
  // Multiples of 256 (or 576) with 0 to 30 stray values among 20,000 samples (207 of them
  // text-only), and tiles: the unit survives up to 1/1,000 of the nonzero values off it (19 here),
  // then falls to the common divisor.
  const base = syntheticSamples(20000, 8);
  for (const unit of [1, 256, 576]) {
    for (const strays of [0, 1, 19, 21, 30]) {
      const vision = base.vision.map((x) => x * unit);
      for (let j = 0; j < strays; j++) vision[(j * 7919) % vision.length] = unit === 1 ? 7 : 255 + j;
      for (let i = 3; i < vision.length; i += 97) vision[i] = 0;
      const plan = native!.planBatches(vision, base.text, { strategy: 'balanced', dp: 8, samplesPerPack: 4.5, seed: 0 });
      const caps = capsForTarget(vision, base.text, 4.5);
      t.deepEqual({ maxVision: caps.maxVision, maxText: caps.maxText }, { maxVision: plan.maxVision, maxText: plan.maxText }, `unit ${unit}, ${strays} strays`);
      if (unit > 1) t.is(plan.maxVision! % unit === 0, strays <= 19, `unit ${unit}, ${strays} strays: cap ${plan.maxVision}`);
    }
  }
});

test('only steps of 2 to 8 packs are re-cut in blocks, as in the core', (t) => {
  // A step of one pack has nothing to balance: re-cut, its steps were only reordered before the
  // step order is shuffled.
  t.is(stepBlock(1), 1);
  t.is(stepBlock(2), STEP_BLOCK_PACKS / 2);
  t.is(stepBlock(3), Math.floor(STEP_BLOCK_PACKS / 3));
  t.is(stepBlock(STEP_BLOCK_MAX_PACKS), STEP_BLOCK_PACKS / 8);
  t.is(stepBlock(STEP_BLOCK_MAX_PACKS + 1), 1);
});

test('the twin\'s room set finds the next member as a scan does', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 70000 }), fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 300 }), (bound, ops) => {
      const set = new RoomSet(bound);
      const naive = new Uint8Array(bound);
      for (const [a, b] of ops) {
        const r = a % bound;
        if (naive[r]) set.remove(r);
        else set.insert(r);
        naive[r] ^= 1;
        const q = b % (bound + 1);
        let want = -1;
        for (let k = q; k < bound; k++) {
          if (naive[k]) {
            want = k;
            break;
          }
        }
        if (set.nextAtOrAfter(q) !== want) throw new Error(`bound ${bound} from ${q}: ${set.nextAtOrAfter(q)} vs ${want}`);
      }
    }),
    { numRuns: 300 },
  );
  t.pass();
});

/** Hundreds of vision classes (hundreds of equalizing windows) and dp 1 or 2 (runs of 64+ steps): both threaded phases split. */
const manyClassesArb = fc.record({
  n: fc.integer({ min: 300, max: 2500 }),
  classes: fc.constantFrom(1, 3, 40, 300),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
});

/** sha256 of a plan's arrays (the same fields `firstDifference` compares). */
const PLAN_HASH = `(p) => { const h = require('node:crypto').createHash('sha256'); for (const k of ['samples', 'microBatchOffsets', 'rankOffsets', 'padding', 'droppedIndex', 'droppedReason', 'oversizeIndex', 'carriedIndex']) { const a = p[k]; h.update(k); if (a) h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)); } h.update(String(p.steps)); return h.digest('hex'); }`;

nativeTest.serial('planBatches (sync and async): the plan does not depend on OMNIBAL_THREADS, odd values included, and equals the twin', async (t) => {
  // The thread count is read once per process (on the JavaScript thread), so each value gets a
  // process of its own, planning the same cases.
  const cases = fc.sample(fc.tuple(manyClassesArb, fc.integer({ min: 1, max: 2 }), fc.constantFrom('drop', 'pad', 'keep-partial', 'carry')), { seed: 7, numRuns: 25 }).map(([{ n, classes, seed }, dp, tail]) => {
    let x = seed >>> 0;
    const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
    const vision = Array.from({ length: n }, () => next() % (classes + 1));
    const text = Array.from({ length: n }, (_, i) => 1 + (next() % 2000) + (i % 37 === 0 ? 3000 : 0));
    return { vision, text, options: { dp, samplesPerPack: 1 + (seed % 5), tail, seed } };
  });
  // One case over two packing blocks (PACK_BLOCK samples each): blocks are packed on threads too.
  {
    let x = 12345;
    const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
    const n = 2 * PACK_BLOCK + 12_345;
    const vision = Array.from({ length: n }, () => 1 + (next() % 6));
    const text = Array.from({ length: n }, () => 100 + (next() % 2400));
    cases.push({ vision, text, options: { dp: 8, samplesPerPack: 4.5, tail: 'drop', seed: 5 } });
    // Tail carry with a carried tail (every 97th sample) from the last epoch, over two blocks.
    const carry = Array.from({ length: 1400 }, (_, k) => 97 * k);
    cases.push({ vision, text, options: { dp: 64, samplesPerPack: 4.5, tail: 'carry', seed: 5, epoch: 1, carry } as never });
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'omnibal-threads-'));
  const file = path.join(dir, 'cases.json');
  writeFileSync(file, JSON.stringify(cases));
  const script = `const b = require(${JSON.stringify(path.resolve(__dirname, '..', 'bindings.js'))}); const hash = ${PLAN_HASH};
    const cases = JSON.parse(require('node:fs').readFileSync(${JSON.stringify(file)}, 'utf8'));
    (async () => { const out = []; for (const c of cases) { const v = Uint32Array.from(c.vision), x = Uint32Array.from(c.text);
      const o = c.options.carry ? { ...c.options, carry: Uint32Array.from(c.options.carry) } : c.options;
      out.push([hash(b.planBatches(v, x, o)), hash(await b.planBatchesAsync(v, x, o))]); }
      process.stdout.write(JSON.stringify(out)); })();`;
  const run = (threads: string) => {
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, OMNIBAL_THREADS: threads }, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`OMNIBAL_THREADS=${threads}: exit ${r.status} ${r.stderr}`);
    return JSON.parse(r.stdout) as [string, string][];
  };
  try {
    const hash = new Function('require', `return ${PLAN_HASH}`)(require) as (p: unknown) => string;
    const one = run('1');
    t.true(new Set(one.map(([h]) => h)).size === cases.length, 'every case plans differently (the hash reads the plan)');
    cases.forEach((c, i) => {
      const o = c.options as { carry?: number[] };
      const options = o.carry ? { ...o, carry: Uint32Array.from(o.carry) } : o;
      const twin = hash(jsBackend.planBatches(Uint32Array.from(c.vision), Uint32Array.from(c.text), options as never));
      t.is(one[i][0], twin, `case ${i}: native (1 thread) vs twin`);
      t.is(one[i][1], twin, `case ${i}: async vs twin`);
    });
    for (const threads of ['2', '3', '8', '16', '0', 'abc', '-1', '999', '']) t.deepEqual(run(threads), one, `OMNIBAL_THREADS=${threads}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
