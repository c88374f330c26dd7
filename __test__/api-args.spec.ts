// Bad arguments to the public API get coded errors on the active backend (run this file plain
// and with OMNIBAL_BACKEND=js): a bad or throwing onProgress, missing required options, null or
// wrong-typed arguments, fake plans.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import test from 'ava';
import {
  ErrorCodes,
  balanceBatches,
  balanceBatchesAsync,
  gpuPreset,
  modelPreset,
  packIsf,
  packIsfAsync,
  permutationAsync,
  planBatches,
  planBatchesAsync,
  planTraining,
  searchIsfArguments,
  searchIsfArgumentsAsync,
  searchLayouts,
  syntheticSamples,
} from '../index';
import { root } from './helpers';

const samples = syntheticSamples(600, 3);

/** Every Promise variant that takes `{ onProgress }`, as a function of that options object. */
const asyncCalls: [string, (options: unknown) => Promise<unknown>][] = [
  ['planBatchesAsync', (o) => planBatchesAsync(samples, { dp: 2, samplesPerPack: 4.5 }, o as never)],
  ['balanceBatchesAsync', (o) => balanceBatchesAsync(samples, { dp: 2, samplesPerPack: 4.5 }, o as never)],
  ['packIsfAsync', (o) => packIsfAsync(samples, { maxVision: 40, maxText: 4096, iterations: 3 }, o as never)],
  ['searchIsfArgumentsAsync', (o) => searchIsfArgumentsAsync(samples, { samplesPerPack: 4, iterations: 2, maxSteps: 2 }, o as never)],
  ['permutationAsync', (o) => permutationAsync(100_000, 0, o as never)],
];

for (const [name, run] of asyncCalls) {
  for (const bad of [5, 'x', {}, [] as unknown]) {
    test(`${name} with onProgress ${JSON.stringify(bad)} rejects with a coded TypeError`, async (t) => {
      const error = await t.throwsAsync(run({ onProgress: bad }));
      t.is(error?.constructor, TypeError);
      t.is((error as Error & { code?: string }).code, ErrorCodes.INVALID_TYPE);
      t.regex(error!.message, /^onProgress must be a function, got /);
    });
  }

  test(`${name} with options that are not an object rejects with a coded TypeError`, async (t) => {
    const error = await t.throwsAsync(run(7));
    t.is((error as Error & { code?: string }).code, ErrorCodes.INVALID_TYPE);
    t.is(error!.message, 'options must be an object, got number');
  });

  test(`${name}: a callback that throws on its last report rejects with that error, the process lives`, async (t) => {
    const boom = new Error('listener failed at the end');
    const error = await t.throwsAsync(run({ onProgress: (done: number, total: number) => { if (done === total) throw boom; } }));
    t.is(error, boom);
  });

  test(`${name}: a callback that always throws rejects with its first error and is not called again`, async (t) => {
    let calls = 0;
    const error = await t.throwsAsync(
      run({ onProgress: () => { calls++; throw new Error(`call ${calls}`); } }),
    );
    t.is(error?.message, 'call 1');
    t.is(calls, 1);
    // Nothing arrives after the rejection either.
    await new Promise((resolve) => setTimeout(resolve, 50));
    t.is(calls, 1);
  });

  test(`${name}: a good callback still ends on (total, total)`, async (t) => {
    const seen: [number, number][] = [];
    await run({ onProgress: (d: number, n: number) => seen.push([d, n]) });
    t.true(seen.length > 0);
    const [d, n] = seen[seen.length - 1];
    t.is(d, n);
  });
}

test('searchLayouts with a non-function onProgress is a coded TypeError before any work', (t) => {
  const error = t.throws(() => searchLayouts({ onProgress: 5 as never }));
  t.is((error as Error & { code?: string }).code, ErrorCodes.INVALID_TYPE);
  t.is(error!.message, 'onProgress must be a function, got number');
});

// Memory that cannot be had is a coded error, not an abort of the process (exit 134) as Rust's
// default allocation failure was. A child process under a 6 GB address-space limit asks for a
// 16 GiB permutation.
test('permutation(2^32 - 1) under a 6 GB memory limit is a coded error, the process lives', (t) => {
  const script = `try { require(${JSON.stringify(path.join(root, 'dist', 'index.js'))}).permutation(2 ** 32 - 1, 0); console.log('no error'); } catch (e) { console.log(e.code + ': ' + e.message); }`;
  const r = spawnSync('sh', ['-c', `ulimit -v 6000000 && exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'ERR_OMNIBAL_OUT_OF_RANGE: n 4294967295 values do not fit in memory');
});

test('length-grouped with dp x samplesPerPack far past memory plans (room sized by the samples)', (t) => {
  const few = syntheticSamples(1000, 1);
  const plan = planBatches(few, { dp: 1024, samplesPerPack: 1e9, strategy: 'length-grouped', tail: 'pad' });
  // Every sample placed (padding repeats some to fill 1024 micro-batches of one step).
  const placed = [...new Set([...plan.samples, ...plan.droppedIndex])].sort((a, b) => a - b);
  t.deepEqual(placed, Array.from({ length: 1000 }, (_, i) => i));
  t.is(plan.steps, 1);
  t.is(plan.dp, 1024);
});

// A missing required option gets the twins' coded error on the native backend too (its binding
// said `InvalidArg: Missing field 'dp'`).
const missing: [string, () => unknown, string, string][] = [
  ['planBatches without dp', () => planBatches(samples, { samplesPerPack: 4 } as never), ErrorCodes.OUT_OF_RANGE, 'dp must be an integer, got undefined'],
  ['balanceBatches without dp', () => balanceBatches(samples, { samplesPerPack: 4 } as never), ErrorCodes.OUT_OF_RANGE, 'dp must be an integer, got undefined'],
  ['packIsf without maxVision', () => packIsf(samples, { maxText: 4096 } as never), ErrorCodes.OUT_OF_RANGE, 'maxVision must be an integer, got undefined'],
  ['packIsf without maxText', () => packIsf(samples, { maxVision: 40 } as never), ErrorCodes.OUT_OF_RANGE, 'maxText must be an integer, got undefined'],
  ['searchIsfArguments without samplesPerPack', () => searchIsfArguments(samples, {} as never), ErrorCodes.OUT_OF_RANGE, 'samplesPerPack must be a finite number >= 1, got undefined'],
  ['planTraining with a model without llm', () => planTraining({ model: { ...modelPreset('internvl-chat-1.5'), llm: undefined } as never }), ErrorCodes.INVALID_TYPE, 'model.llm must be an object, got undefined'],
  ['planTraining with a model without vit.kvHeads', () => planTraining({ model: { ...modelPreset('internvl-chat-1.5'), vit: { ...modelPreset('internvl-chat-1.5').vit, kvHeads: undefined } } as never }), ErrorCodes.INVALID_TYPE, 'model.vit.kvHeads must be a number, got undefined'],
  ['planTraining with a gpu without efficiency', () => planTraining({ gpu: { ...gpuPreset('A100-80G'), efficiency: undefined } as never }), ErrorCodes.INVALID_TYPE, 'gpu.efficiency must be an object, got undefined'],
];
for (const [label, run, code, message] of missing) {
  test(`${label} is a coded error`, (t) => {
    const error = t.throws(run) as Error & { code?: string };
    t.is(error.code, code);
    t.is(error.message, message);
  });
}

for (const [label, run, message] of [
  ['planBatchesAsync', () => planBatchesAsync(samples, {} as never), 'dp must be an integer, got undefined'],
  ['balanceBatchesAsync', () => balanceBatchesAsync(samples, {} as never), 'dp must be an integer, got undefined'],
  ['packIsfAsync', () => packIsfAsync(samples, {} as never), 'maxVision must be an integer, got undefined'],
  ['searchIsfArgumentsAsync', () => searchIsfArgumentsAsync(samples, {} as never), 'samplesPerPack must be a finite number >= 1, got undefined'],
] as [string, () => Promise<unknown>, string][]) {
  test(`${label} without its required option rejects with a coded error`, async (t) => {
    const error = (await t.throwsAsync(run())) as Error & { code?: string };
    t.is(error.code, ErrorCodes.OUT_OF_RANGE);
    t.is(error.message, message);
  });
}
