// `signal` on the async data functions: an aborted signal stops the work and rejects with
// ERR_OMNIBAL_CANCELLED (an AbortError whose cause is the signal's reason), on both backends;
// natively a run stops mid-way, well before it would end. Run with OMNIBAL_BACKEND=js too.
import { getEventListeners } from 'node:events';
import test from 'ava';
import { backend, balanceBatchesAsync, ErrorCodes, packIsfAsync, planBatchesAsync, searchIsfArgumentsAsync, syntheticSamples, type Samples } from '../index';
import { CANCELLED_MESSAGE } from '../src/abort';
import { backends } from './helpers';

const samples = syntheticSamples(20_000, 5);

/** Every data function that takes `{ onProgress, signal }`, as a function of that options object. */
const asyncCalls: [string, (s: Samples, options: unknown) => Promise<unknown>][] = [
  ['planBatchesAsync', (s, o) => planBatchesAsync(s, { dp: 8, samplesPerPack: 4.5 }, o as never)],
  ['planBatchesAsync (isf, searched caps)', (s, o) => planBatchesAsync(s, { dp: 8, samplesPerPack: 4.5, strategy: 'isf', iterations: 3 }, o as never)],
  ['balanceBatchesAsync', (s, o) => balanceBatchesAsync(s, { dp: 4, accum: 2, samplesPerPack: 4 }, o as never)],
  ['packIsfAsync', (s, o) => packIsfAsync(s, { maxVision: 40, maxText: 4096, iterations: 5 }, o as never)],
  ['searchIsfArgumentsAsync', (s, o) => searchIsfArgumentsAsync(s, { samplesPerPack: 4, iterations: 3, maxSteps: 4 }, o as never)],
];

type Coded = Error & { code?: string };

/** Checks the error of an aborted call: an AbortError with the code, the message and the reason as cause. */
function isAbort(t: { is: (a: unknown, b: unknown, m?: string) => void }, error: unknown, reason: unknown): void {
  const e = error as Coded;
  t.is(e?.code, ErrorCodes.CANCELLED);
  t.is(e?.name, 'AbortError');
  t.is(e?.message, CANCELLED_MESSAGE);
  t.is(e?.cause, reason);
}

for (const [name, run] of asyncCalls) {
  test(`${name}: a signal that is not an AbortSignal rejects with a coded TypeError`, async (t) => {
    for (const [bad, what] of [[5, 'number'], [{ aborted: true }, 'an object'], ['x', 'string']] as const) {
      const error = (await t.throwsAsync(run(samples, { signal: bad }))) as Coded;
      t.is(error.constructor, TypeError);
      t.is(error.code, ErrorCodes.INVALID_TYPE);
      t.is(error.message, `signal must be an AbortSignal, got ${what}`);
    }
  });

  test(`${name}: an already aborted signal rejects at once, nothing started`, async (t) => {
    const reason = new Error('not needed any more');
    const calls: number[][] = [];
    const error = await t.throwsAsync(run(samples, { signal: AbortSignal.abort(reason), onProgress: (d: number, n: number) => calls.push([d, n]) }));
    isAbort(t, error, reason);
    t.deepEqual(calls, [], 'no progress: the work never started');
  });

  test(`${name}: aborted right after the call (before the work starts) rejects`, async (t) => {
    const controller = new AbortController();
    const promise = run(samples, { signal: controller.signal });
    controller.abort();
    isAbort(t, await t.throwsAsync(promise), controller.signal.reason);
  });

  test(`${name}: aborted from its own progress callback: the result is discarded`, async (t) => {
    const controller = new AbortController();
    const error = await t.throwsAsync(run(samples, { signal: controller.signal, onProgress: () => controller.abort('enough') }));
    isAbort(t, error, 'enough');
  });

  test(`${name}: a signal never aborted gives the result of a call without one`, async (t) => {
    const controller = new AbortController();
    t.deepEqual(await run(samples, { signal: controller.signal }), await run(samples, {}));
    t.deepEqual(await run(samples, { signal: null }), await run(samples, undefined));
  });
}

for (const [name, api] of backends) {
  test(`${name}: a cancel flag set before the work starts: ERR_OMNIBAL_CANCELLED, worded alike`, async (t) => {
    const flag = new api.CancelFlag();
    t.false(flag.cancelled);
    flag.cancel();
    t.true(flag.cancelled);
    for (const start of [
      () => api.planBatchesAsync(samples.vision, samples.text, { dp: 8, samplesPerPack: 4.5 }, null, flag),
      () => api.packIsfAsync(samples.vision, samples.text, { maxVision: 40, maxText: 4096 }, null, flag),
      () => api.searchIsfArgumentsAsync(samples.vision, samples.text, { samplesPerPack: 4, maxSteps: 2 }, null, flag),
    ]) {
      const error = (await t.throwsAsync(start())) as Coded;
      t.is(error.constructor, Error);
      t.is(error.code, ErrorCodes.CANCELLED);
      t.is(error.message, CANCELLED_MESSAGE);
    }
  });
}

// Natively the solver stops mid-run: measured on 4M samples, the Promise rejects well before a
// whole run would end (the twins cannot stop once started, so this is native only).
const nativeOnly = backend().kind === 'native' ? test.serial : test.skip;

nativeOnly('a plan of 4M samples aborted mid-run rejects well before the run would end', async (t) => {
  const big = syntheticSamples(4_000_000, 1);
  const options = { dp: 8, samplesPerPack: 4.5 };
  let t0 = performance.now();
  const whole = await planBatchesAsync(big, options, { signal: new AbortController().signal });
  const wholeMs = performance.now() - t0;
  // Early and mid-run (not late: under load a run can end before a late abort lands).
  for (const share of [0.1, 0.4]) {
    const controller = new AbortController();
    const at = wholeMs * share;
    const timer = setTimeout(() => controller.abort(), at);
    t0 = performance.now();
    const error = await t.throwsAsync(planBatchesAsync(big, options, { signal: controller.signal }));
    const ms = performance.now() - t0;
    clearTimeout(timer);
    isAbort(t, error, controller.signal.reason);
    t.log(`whole run ${wholeMs.toFixed(0)} ms; aborted at ${at.toFixed(0)} ms, rejected at ${ms.toFixed(0)} ms (${(ms - at).toFixed(0)} ms after the abort)`);
    // Stopped within a fraction of a second of the abort, and before the run would have ended.
    t.true(ms - at < 500, `rejected ${(ms - at).toFixed(0)} ms after the abort`);
    t.true(ms < wholeMs * 0.9, `rejected at ${ms.toFixed(0)} ms of a ${wholeMs.toFixed(0)} ms run`);
  }
  // The same plan without a signal (and the never-aborted run above gave it).
  const plain = await planBatchesAsync(big, options);
  t.deepEqual(whole.samples, plain.samples);
  t.deepEqual(whole.microBatchOffsets, plain.microBatchOffsets);
});

nativeOnly('a progress callback that throws stops the native plan too, and its error is the rejection', async (t) => {
  const big = syntheticSamples(4_000_000, 2);
  const options = { dp: 8, samplesPerPack: 4.5 };
  let t0 = performance.now();
  await planBatchesAsync(big, options);
  const wholeMs = performance.now() - t0;
  const boom = new Error('the listener gave up');
  let thrownAt = 0;
  t0 = performance.now();
  const error = await t.throwsAsync(
    planBatchesAsync(big, options, {
      onProgress: () => {
        thrownAt = performance.now() - t0;
        throw boom;
      },
    }),
  );
  const ms = performance.now() - t0;
  t.is(error, boom);
  t.log(`whole run ${wholeMs.toFixed(0)} ms; the callback threw at ${thrownAt.toFixed(0)} ms, rejected at ${ms.toFixed(0)} ms`);
  t.true(thrownAt > 0 && ms - thrownAt < 500, `rejected ${(ms - thrownAt).toFixed(0)} ms after the throw`);
  t.true(ms < wholeMs * 0.9, `rejected at ${ms.toFixed(0)} ms of a ${wholeMs.toFixed(0)} ms run`);
});

test('one signal shared by many calls, finished or refused, is left with no listener', async (t) => {
  const controller = new AbortController();
  const small = syntheticSamples(2_000, 9);
  for (let i = 0; i < 12; i++) {
    await planBatchesAsync(small, { dp: 2, samplesPerPack: 4 }, { signal: controller.signal });
    // Refused before any work (a bad option), whether it throws or rejects.
    await t.throwsAsync(async () => planBatchesAsync(small, { dp: 0, samplesPerPack: 4 }, { signal: controller.signal }));
  }
  t.is(getEventListeners(controller.signal, 'abort').length, 0);
});

test('one signal shared by 24 concurrent calls: one abort listener (no MaxListenersExceededWarning), all stop on abort, none left after', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => void warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    const controller = new AbortController();
    const calls = Array.from({ length: 24 }, () => planBatchesAsync(samples, { dp: 8, samplesPerPack: 4.5 }, { signal: controller.signal }));
    t.is(getEventListeners(controller.signal, 'abort').length, 1, 'one listener for all the calls sharing the signal');
    controller.abort('enough');
    for (const outcome of await Promise.allSettled(calls)) {
      // A call whose work had ended before the abort could be seen still rejects: the signal aborted before it settled.
      t.is(outcome.status, 'rejected');
      if (outcome.status === 'rejected') isAbort(t, outcome.reason, 'enough');
    }
    t.is(getEventListeners(controller.signal, 'abort').length, 0);
    // Node emits its warning on a later tick.
    await new Promise((r) => setImmediate(r));
    t.false(warnings.includes('MaxListenersExceededWarning'), warnings.join(', '));
  } finally {
    process.off('warning', onWarning);
  }
});
