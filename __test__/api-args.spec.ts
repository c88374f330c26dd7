// Bad arguments to the public API get coded errors on the active backend (run this file plain
// and with OMNIBAL_BACKEND=js): a bad or throwing onProgress, missing required options, null or
// wrong-typed arguments, fake plans.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Readable } from 'node:stream';
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
  applyCalibration,
  baselineStages,
  calibrate,
  batchMetrics,
  droppedSamples,
  evaluateChunks,
  evaluateSplit,
  evaluateStages,
  exportDeepSpeed,
  exportMegatron,
  exportMegatronChunks,
  heaviestMicroBatchLoad,
  isOmnibalError,
  partitionStages,
  planForRank,
  planStep,
  readSamples,
  renderReport,
  searchStages,
  shellLine,
  shellQuote,
  vlmLayers,
  vlmStageProblem,
} from '../index';
import { threadsWarning } from '../src/threads';
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

// Every exported function given null, undefined or a wrong-typed argument throws (or rejects
// with) a coded error, never a bare TypeError from reading a property of null.
const plan = planBatches(samples, { dp: 2, samplesPerPack: 4 });
const problem = vlmStageProblem({ model: 'tiny-vlm', gpu: 'A100-80G', pp: 2, dp: 1, microBatches: 4, load: { tiles: 2, tokens: 1024 } });
const stagePlan = partitionStages(problem);
const nullish: [string, () => unknown][] = [
  ['batchMetrics(plan, samples, null)', () => batchMetrics(plan, samples, null as never)],
  ['droppedSamples(null)', () => droppedSamples(null as never)],
  ['planForRank(null, 0)', () => planForRank(null as never, 0)],
  ['planStep(undefined, 0)', () => planStep(undefined as never, 0)],
  ['applyCalibration(null, {})', () => applyCalibration(null as never, {} as never)],
  ['applyCalibration(problem, null)', () => applyCalibration(problem, null as never)],
  ['baselineStages(null)', () => baselineStages(null as never, 'uniform' as never, 'none')],
  ['evaluateStages(null)', () => evaluateStages(null as never, [], [])],
  ['baselineStages(problem, null, null)', () => baselineStages(problem, null as never, null as never)],
  ['evaluateSplit(problem, null)', () => evaluateSplit(problem, null as never)],
  ['evaluateStages(problem, null)', () => evaluateStages(problem, null as never, [])],
  ['vlmLayers(tiny, A100, undefined)', () => vlmLayers('tiny-vlm', 'A100-80G', undefined as never)],
  ['vlmLayers(tiny, {})', () => vlmLayers('tiny-vlm', {} as never, {} as never)],
  ['vlmStageProblem(null)', () => vlmStageProblem(null as never)],
  ['evaluateChunks(null)', () => evaluateChunks(null as never, [], [])],
  ['heaviestMicroBatchLoad(null, samples)', () => heaviestMicroBatchLoad(null as never, samples)],
  ['heaviestMicroBatchLoad(plan, null)', () => heaviestMicroBatchLoad(plan, null as never)],
  ['searchStages(problem, null)', () => searchStages(problem, null as never)],
  ['exportDeepSpeed(null)', () => exportDeepSpeed(null as never)],
  ['exportDeepSpeed({})', () => exportDeepSpeed({} as never)],
  ['exportMegatron(null, plan)', () => exportMegatron(null as never, stagePlan)],
  ['exportMegatron(problem, null)', () => exportMegatron(problem, null as never)],
  ['shellLine(null)', () => shellLine(null as never)],
  ['shellQuote({})', () => shellQuote({} as never)],
  ['shellLine([5])', () => shellLine([5] as never)],
  ['exportMegatronChunks(problem, undefined)', () => exportMegatronChunks(problem, undefined as never)],
  ['planTraining(null)', () => planTraining(null as never)],
  ['searchLayouts(null)', () => searchLayouts(null as never)],
  ['renderReport(null)', () => renderReport(null as never)],
  ['renderReport({})', () => renderReport({} as never)],
];
for (const [label, run] of nullish) {
  test(`${label} is a coded error`, (t) => {
    const error = t.throws(run) as Error & { code?: string };
    t.true(isOmnibalError(error), `${error?.constructor?.name} ${error?.code}: ${error?.message}`);
  });
}

test('calibrate with a calibration or options that is not an object: ERR_OMNIBAL_INVALID_TYPE, as vlmLayers gives (a malformed object stays INVALID_OPTIONS)', (t) => {
  const load = { tiles: 2, tokens: 1024 };
  const measured = { layers: [{ index: 1, forwardMs: 1 }] };
  const cases: [string, () => unknown, RegExp][] = [
    ['calibration null', () => calibrate('tiny-vlm', 'A100-80G', { load }, null as never), /^calibration must be an object, got null$/],
    ['calibration a list', () => calibrate('tiny-vlm', 'A100-80G', { load }, [] as never), /^calibration must be an object, got an array$/],
    ['calibration a number', () => calibrate('tiny-vlm', 'A100-80G', { load }, 5 as never), /^calibration must be an object, got number$/],
    ['options null', () => calibrate('tiny-vlm', 'A100-80G', null as never, measured), /^options must be an object, got null$/],
  ];
  for (const [what, run, message] of cases) {
    const error = t.throws(run) as Error & { code?: string };
    t.is(error.code, ErrorCodes.INVALID_TYPE, what);
    t.regex(error.message, message, what);
    // The same argument to vlmLayers gives the same code.
    if (what === 'options null') t.is((t.throws(() => vlmLayers('tiny-vlm', 'A100-80G', null as never)) as Error & { code?: string }).code, error.code);
  }
  t.is((t.throws(() => calibrate('tiny-vlm', 'A100-80G', { load }, { layers: 'x' } as never)) as Error & { code?: string }).code, ErrorCodes.INVALID_OPTIONS);
});

test('readSamples refuses a Buffer, a URL, a number or a bare stream, saying what an input must be', async (t) => {
  for (const [input, what] of [
    [Buffer.from('[]'), 'a Buffer'],
    [new URL('file:///tmp/x.json'), 'a URL (pass url.fileURLToPath(url))'],
    [5, 'number'],
    [Readable.from(['[]']), 'a bare stream (wrap it as { name, stream })'],
    [null, 'null'],
  ] as [unknown, string][]) {
    const error = (await t.throwsAsync(readSamples([input as string]))) as Error & { code?: string };
    t.is(error.code, ErrorCodes.INVALID_TYPE);
    t.is(error.message, `inputs[0] must be a file path (a string) or { name, stream, format? } with an async-iterable stream, got ${what}`);
  }
  const error = (await t.throwsAsync(readSamples('x.json', null as never))) as Error & { code?: string };
  t.is(error.code, ErrorCodes.INVALID_TYPE);
});

test('planStep and planForRank refuse a fake plan instead of returning []', (t) => {
  for (const fake of [
    { steps: 3, dp: 2 },
    { ...plan, steps: plan.steps + 1 },
    { ...plan, rankOffsets: Uint32Array.of(0, 5) },
    { ...plan, samples: Array.from(plan.samples) },
  ]) {
    for (const run of [() => planStep(fake as never, 0), () => planForRank(fake as never, 0)]) {
      const error = t.throws(run) as Error & { code?: string };
      t.true(error.code === ErrorCodes.INVALID_TYPE || error.code === ErrorCodes.OUT_OF_RANGE, error.message);
    }
  }
  // A real plan still works, every step and rank.
  t.is(planStep(plan, 0).length, 2);
  t.is(planForRank(plan, 1).length, plan.steps);
});

test('an infeasible 1e300-byte need prints its GiB figure as JavaScript does (exponent form)', (t) => {
  const f = (v: number) => new Float64Array(4).fill(v);
  const error = t.throws(() =>
    partitionStages({ forwardMs: f(1), backwardMs: f(2), staticBytes: f(1e300), activationBytes: f(1), checkpointBytes: f(1), stages: 2, microBatches: 4, memoryBytes: 1e9 } as never),
  ) as Error & { code?: string };
  t.is(error.code, ErrorCodes.INFEASIBLE);
  t.is(error.message, 'no plan fits in 1000000000 bytes per GPU; the least memory that fits is 2e+300 bytes (1.862645149230957e+291 GiB, rounded up)');
});

test('a stage problem whose DP tables could not fit in memory is a coded error, not an aborted process', (t) => {
  const f = (n: number, v: number) => new Float64Array(n).fill(v);
  const big = (layers: number, stages: number) => ({ forwardMs: f(layers, 1), backwardMs: f(layers, 2), staticBytes: f(layers, 1), activationBytes: f(layers, 1), checkpointBytes: f(layers, 1), stages, microBatches: 4, memoryBytes: 1e15 });
  const error = t.throws(() => partitionStages(big(100_000, 65_536) as never)) as Error & { code?: string };
  t.is(error.code, ErrorCodes.OUT_OF_RANGE);
  t.is(error.message, "layers must be few enough for the stage DP's time tables (at most 2^28 entries; 100000 layers over 65536 stages need 20000200000): merge layers into blocks, or use fewer stages");
  // At the limit's side a problem is still solved (tables of 4 in-flight counts x 2,000 layers).
  t.is(partitionStages(big(2_000, 8) as never).stages.length, 8);
});

test('a bad OMNIBAL_THREADS value is named once on stderr (native), the count used given', (t) => {
  t.is(threadsWarning(undefined), undefined);
  t.is(threadsWarning('4'), undefined);
  t.is(threadsWarning(' 8 '), undefined);
  t.is(threadsWarning('abc', 6), 'omnibal: OMNIBAL_THREADS="abc" is not a whole number from 1 to 8; ignored, the default: 6 worker threads\n');
  t.is(threadsWarning('999', 6), 'omnibal: OMNIBAL_THREADS="999" is not a whole number from 1 to 8; clamped: 8 worker threads\n');
  t.is(threadsWarning('0', 6), 'omnibal: OMNIBAL_THREADS="0" is not a whole number from 1 to 8; clamped: 1 worker thread\n');
  const script = `const m = require(${JSON.stringify(path.join(root, 'dist', 'index.js'))}); m.permutation(3, 0); m.permutation(3, 1);`;
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, OMNIBAL_THREADS: 'lots' }, encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0);
  const native = process.env.OMNIBAL_BACKEND !== 'js';
  t.is(r.stderr.split('OMNIBAL_THREADS="lots"').length - 1, native ? 1 : 0, r.stderr);
});

test('a StageProblem with a mistyped optional field is a coded INVALID_TYPE on both backends (the native binding used to answer StringExpected / NumberExpected); null is absent', (t) => {
  for (const [key, value] of [
    ['schedule', { name: 'interleaved' }],
    ['recompute', 7],
    ['virtualStages', '2'],
    ['firstStageMinLayers', '3'],
    ['stageOverheadBytes', '1'],
    ['uniformLayers', true],
    ['selectiveMs', [1, 2]],
  ] as [string, unknown][]) {
    const e = t.throws(() => partitionStages({ ...problem, [key]: value } as never), undefined, key) as Error & { code?: string };
    t.is(e.code, 'ERR_OMNIBAL_INVALID_TYPE', `${key}: ${e.message}`);
    t.true(e.message.includes(key), e.message);
  }
  const plain = partitionStages(problem);
  const nulls = partitionStages({ ...problem, schedule: null, recompute: null, virtualStages: null, firstStageMinLayers: null } as never);
  t.deepEqual(nulls.stages.map((s) => s.lastLayer), plain.stages.map((s) => s.lastLayer));
});
