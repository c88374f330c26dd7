// Tail policy `carry`: each epoch's tail is reported as `carried` and planned in the next epoch
// besides that epoch's own samples, so over E epochs every sample is planned E times but the
// last epoch's carried ones (once less); native and twin plan the same chain bit for bit.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { batchMetrics, planBatches, type BatchPlan, type PlanBatchesOptions, type Samples } from '../index';
import { DROP_CODE } from '../src/data/samples';
import { cli, firstDifference, nativeTest, realLike, sameOnBothBackends, thrown } from './helpers';

/** The samples a plan carries out (reason `carried`), ascending. */
function carriedOut(plan: Pick<BatchPlan, 'droppedIndex' | 'droppedReason'>): Uint32Array {
  return plan.droppedIndex.filter((_, k) => plan.droppedReason[k] === DROP_CODE.carried);
}

/** Plans epochs `0..epochs` under tail `carry`, each given the previous one's carried tail. */
function chain(plan: (o: PlanBatchesOptions) => BatchPlan, options: PlanBatchesOptions, epochs: number): BatchPlan[] {
  const plans: BatchPlan[] = [];
  let carry: Uint32Array = new Uint32Array(0);
  for (let e = 0; e < epochs; e++) {
    const p = plan({ ...options, tail: 'carry', epoch: e, carry });
    plans.push(p);
    carry = carriedOut(p);
  }
  return plans;
}

/**
 * Checks the chain's coverage: every sample planned `epochs` times, less the last carry, over-cap
 * drops aside. With `tinyEpochs`, an epoch too small to keep carried samples out of its tail may
 * carry one out again, and drop one copy as tail of a sample with both copies in it (counted).
 */
function checkCoverage(s: Samples, plans: BatchPlan[], tinyEpochs = false): string | null {
  const count = new Uint32Array(s.text.length);
  const tailCopies = new Uint32Array(s.text.length);
  let carry: Uint32Array = new Uint32Array(0);
  for (const [e, p] of plans.entries()) {
    if (firstDifference(p.carriedIndex, carry)) return `epoch ${e}: carriedIndex is not the carry given`;
    const out = carriedOut(p);
    if (new Set(out).size !== out.length) return `epoch ${e}: a sample carried out twice`;
    for (const i of carry) if (!p.samples.includes(i) && !(tinyEpochs && out.includes(i))) return `epoch ${e}: carried sample ${i} not planned`;
    if (!tinyEpochs && p.droppedReason.some((r) => r === DROP_CODE.tail)) return `epoch ${e}: a sample dropped as tail`;
    p.droppedIndex.forEach((i, k) => p.droppedReason[k] === DROP_CODE.tail && tailCopies[i]++);
    for (const i of p.samples) count[i]++;
    carry = out;
  }
  const last = new Set(carry);
  const over = new Set(plans[0].droppedIndex.filter((_, k) => plans[0].droppedReason[k] <= 2));
  for (let i = 0; i < count.length; i++) {
    const want = over.has(i) ? 0 : plans.length - (last.has(i) ? 1 : 0) - tailCopies[i];
    if (count[i] !== want) return `sample ${i} planned ${count[i]} times, want ${want}`;
  }
  return null;
}

test('carry: over 4 epochs every sample is planned 4 times but the last carried tail, nothing lost', (t) => {
  const s = realLike(6000, 11);
  for (const [dp, accum] of [
    [64, 1],
    [16, 3],
  ]) {
    const plans = chain((o) => planBatches(s, o), { dp, accum, samplesPerPack: 4.5, seed: 3 }, 4);
    t.true(carriedOut(plans[3]).length > 0, 'a tail to carry');
    t.true(plans[1].carriedIndex.length > 0);
    t.is(checkCoverage(s, plans), null, `dp ${dp} accum ${accum}`);
    // Drop loses its tail every epoch; carry loses none.
    const drop = planBatches(s, { dp, accum, samplesPerPack: 4.5, seed: 3, epoch: 1 });
    t.true(drop.droppedIndex.length > 0);
  }
});

test('over-cap samples short of a whole step are trained every epoch, in a whole step, under every tail (they used to fill the tail: dropped, or carried out forever)', (t) => {
  const s = realLike(6000, 31);
  // Three outliers, fewer than a step: one long text, one many-tile, one both.
  for (const [i, v, x] of [
    [100, 1, 60000],
    [200, 30, 2000],
    [300, 40, 17000],
  ]) {
    s.vision[i] = v;
    s.text[i] = x;
  }
  const outliers = [100, 200, 300];
  for (const [dp, accum] of [
    [2, 8],
    [4, 4],
    [3, 5],
  ]) {
    const m = dp * accum;
    for (const tail of ['drop', 'carry', 'pad', 'keep-partial'] as const) {
      let carry: Uint32Array = new Uint32Array(0);
      for (let epoch = 0; epoch < 3; epoch++) {
        const p = planBatches(s, { dp, accum, samplesPerPack: 4.5, seed: 3, epoch, tail, ...(tail === 'carry' ? { carry } : {}) });
        const where = `dp ${dp} accum ${accum} ${tail} epoch ${epoch}`;
        t.deepEqual([...p.oversizeIndex].sort((a, b) => a - b), outliers, where);
        for (const i of outliers) {
          t.false(p.droppedIndex.includes(i), `${where}: sample ${i} dropped`);
          const k = p.samples.indexOf(i);
          t.true(k >= 0, `${where}: sample ${i} not planned`);
          // Its micro-batch holds it alone, in a whole step of m unpadded micro-batches.
          const mb = p.microBatchOffsets.findIndex((o, j) => o <= k && k < p.microBatchOffsets[j + 1]);
          t.is(p.microBatchOffsets[mb + 1] - p.microBatchOffsets[mb], 1, where);
          const step = Math.floor(p.rankOffsets.findIndex((o, r) => o <= mb && mb < p.rankOffsets[r + 1]) / dp);
          const [a, b] = [p.rankOffsets[step * dp], p.rankOffsets[(step + 1) * dp]];
          t.is(b - a, m, `${where}: sample ${i} in a short step`);
          t.true(p.padding.subarray(a, b).every((x) => x === 0), `${where}: sample ${i} in a padded step`);
        }
        carry = carriedOut(p);
      }
    }
  }
});

test('carry: explicit caps drop over-cap samples every epoch and carry the rest', (t) => {
  const s = realLike(3000, 12, 7);
  const plans = chain((o) => planBatches(s, o), { dp: 32, maxVision: 14, maxText: 2400, seed: 1 }, 3);
  t.true(plans[0].droppedReason.some((r) => r === DROP_CODE['text-over-cap'] || r === DROP_CODE['vision-over-cap']));
  t.is(checkCoverage(s, plans), null);
});

test('carry: the plan is a pure function of samples, options, seed, epoch and carry', (t) => {
  const s = realLike(4000, 13);
  const o: PlanBatchesOptions = { dp: 48, samplesPerPack: 4.5, seed: 9, tail: 'carry' };
  const first = planBatches(s, { ...o, epoch: 0 });
  const carry = carriedOut(first);
  const a = planBatches(s, { ...o, epoch: 1, carry });
  t.is(firstDifference(a, planBatches(s, { ...o, epoch: 1, carry: Uint32Array.from(carry) })), null);
  // Another carry, another plan; no carry: the plan of tail drop but for the reason.
  t.not(firstDifference(a, planBatches(s, { ...o, epoch: 1 })), null);
  const drop = planBatches(s, { ...o, epoch: 0, tail: 'drop' });
  t.is(firstDifference(first.samples, drop.samples), null);
  t.deepEqual(Array.from(first.droppedReason), Array.from(drop.droppedReason, (r) => (r === DROP_CODE.tail ? DROP_CODE.carried : r)));
});

test('carry: metrics count the samples carried in and out', (t) => {
  const s = realLike(3000, 14);
  const [p0, p1] = chain((o) => planBatches(s, o), { dp: 40, samplesPerPack: 4.5, seed: 2 }, 2);
  const m0 = batchMetrics(p0, s);
  const m1 = batchMetrics(p1, s);
  t.is(m0.carriedIn, 0);
  t.is(m0.carriedOut, carriedOut(p0).length);
  t.is(m1.carriedIn, m0.carriedOut);
  t.true(m1.carriedIn > 0);
  t.is(m1.dropped, m1.carriedOut);
});

test('carry: a bad carry list or another strategy is a clear coded error', (t) => {
  const s = realLike(500, 15);
  const o: PlanBatchesOptions = { dp: 4, samplesPerPack: 4.5, tail: 'carry' };
  const cases: [PlanBatchesOptions, string, string][] = [
    [{ ...o, carry: Uint32Array.of(3, 500) }, 'ERR_OMNIBAL_OUT_OF_RANGE', 'carry entry 1 must be a sample index below 500, got 500'],
    [{ ...o, carry: Uint32Array.of(7, 2, 7) }, 'ERR_OMNIBAL_OUT_OF_RANGE', 'carry entry 2 repeats sample 7; each sample may be carried once'],
    [{ ...o, carry: [1, 2] as unknown as Uint32Array }, 'ERR_OMNIBAL_INVALID_TYPE', 'carry must be a Uint32Array'],
    [{ ...o, strategy: 'random' }, 'ERR_OMNIBAL_INVALID_OPTIONS', "tail 'carry' (and a carry list) needs strategy balanced, got random"],
    [{ ...o, tail: 'drop', strategy: 'isf', carry: Uint32Array.of(1) }, 'ERR_OMNIBAL_INVALID_OPTIONS', "tail 'carry' (and a carry list) needs strategy balanced, got isf"],
    [{ dp: 4, maxVision: 12, maxText: 4000, carry: Uint32Array.of(0) }, 'ERR_OMNIBAL_OUT_OF_RANGE', ''],
  ];
  // Sample 0 over explicit caps of 1 tile: carrying it is refused (over-cap samples are dropped).
  s.vision[0] = 40;
  for (const [options, code, message] of cases) {
    const e = thrown(() => planBatches(s, options));
    t.is(e.code, code, JSON.stringify(options));
    t.true(e.message.includes(message), e.message);
    t.false(e.message.includes('\n'));
  }
});

nativeTest('carry: native equals the twin over carried chains (real-like and skewed data, any dp and accum)', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 300, max: 2500 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.integer({ min: 2, max: 160 }),
      fc.integer({ min: 1, max: 3 }),
      fc.double({ min: 2, max: 7, noNaN: true }),
      fc.constantFrom(0, 1 / 2048),
      fc.boolean(),
      (n, seed, dp, accum, samplesPerPack, costB, skewed) => {
        const s = realLike(n, seed);
        if (skewed) for (let i = 5; i < n; i += 97) (s.vision[i] = 40), (s.text[i] = 16000 + i);
        const options = { dp, accum, samplesPerPack, costB, seed: seed % 1000 };
        const diff = sameOnBothBackends((api) => chain((o) => api.planBatches(s.vision, s.text, o) as BatchPlan, options, 3));
        if (diff) throw new Error(`${diff}\noptions ${JSON.stringify(options)} n ${n} skewed ${skewed}`);
        const plans = thrown(() => chain((o) => planBatches(s, o), options, 3));
        if (plans.name !== 'nothing thrown') {
          // Only an epoch of fewer packs than one step is refused (same error both sides).
          if (plans.code !== 'ERR_OMNIBAL_TOO_FEW_SAMPLES' || !plans.message.includes('fewer than one step needs')) throw new Error(`${plans.message}\noptions ${JSON.stringify(options)}`);
          return;
        }
        const coverage = checkCoverage(s, chain((o) => planBatches(s, o), options, 3), true);
        if (coverage) throw new Error(`${coverage}\noptions ${JSON.stringify(options)}`);
      },
    ),
    { numRuns: 120 },
  );
  t.pass();
});

test('carry: an epoch of about one step, whose tail needs packs holding carried samples, carries them again (was a TOO_FEW_SAMPLES error mid-run)', (t) => {
  const s = realLike(6000, 11);
  for (const [dp, accum] of [
    [800, 1],
    [200, 4],
  ]) {
    const plans = chain((o) => planBatches(s, o), { dp, accum, samplesPerPack: 4.5, seed: 1 }, 10);
    t.true(plans.some((p, e) => e > 0 && p.carriedIndex.some((i) => carriedOut(p).includes(i))), 'a sample carried again');
    t.is(checkCoverage(s, plans, true), null, `dp ${dp} accum ${accum}`);
    t.false(plans.some((p) => p.droppedReason.includes(DROP_CODE.tail)), 'nothing dropped');
  }
  // A tiny epoch (400 samples, a step of 64 packs): both copies of a sample in the tail are
  // carried once, the other copy dropped as tail (reported), never carried twice.
  const tiny = realLike(400, 12);
  const plans = chain((o) => planBatches(tiny, o), { dp: 64, samplesPerPack: 4.5, seed: 1 }, 8);
  t.true(plans.some((p) => p.droppedReason.includes(DROP_CODE.tail)));
  t.is(checkCoverage(tiny, plans, true), null);
});

nativeTest('carry: a carry list under tail drop in a long epoch is planned, no carried copy dealt away; native equals the twin', (t) => {
  const s = realLike(20000, 16);
  const carry = Uint32Array.from({ length: 10000 }, (_, i) => 2 * i);
  for (const seed of [1, 2, 3]) {
    const options = { dp: 8, samplesPerPack: 4.5, seed, epoch: 1, carry };
    t.is(sameOnBothBackends((api) => api.planBatches(s.vision, s.text, options) as BatchPlan), null);
    const p = planBatches(s, options);
    // Each sample planned or dropped (as tail) as often as it has copies.
    const seen = new Uint32Array(20000);
    for (const i of p.samples) seen[i]++;
    for (const i of p.droppedIndex) seen[i]++;
    t.true(p.droppedReason.every((r) => r === DROP_CODE.tail));
    t.true(seen.every((c, i) => c === 1 + (i % 2 === 0 ? 1 : 0)), `seed ${seed}`);
  }
});

test('carry: the CLI reports the samples carried in and out, labelled; a baseline with --tail carry exits 2', (t) => {
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'pack', '--synthetic', '3000', '--dp', '100', '--samples-per-pack', '4.5', ...args], { encoding: 'utf8' });
  const json = run('--tail', 'carry', '--json');
  t.is(json.status, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as { metrics: { carriedIn: number; carriedOut: number }; dropped: { reason: string }[]; params: { tail: string } };
  t.is(doc.params.tail, 'carry');
  t.is(doc.metrics.carriedIn, 0);
  t.true(doc.metrics.carriedOut > 0);
  t.is(doc.dropped.filter((d) => d.reason === 'carried').length, doc.metrics.carriedOut);
  const table = run('--tail', 'carry');
  t.is(table.status, 0, table.stderr);
  t.regex(table.stdout, new RegExp(`balanced: 0 carried in, ${doc.metrics.carriedOut} carried out`));
  const random = run('--tail', 'carry', '--strategy', 'random');
  t.is(random.status, 2);
  t.is(random.stderr.trim().split('\n').length, 1);
  t.regex(random.stderr, /needs strategy balanced, got random \[ERR_OMNIBAL_INVALID_OPTIONS\]/);
});
