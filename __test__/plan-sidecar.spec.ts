// The sidecar's `searchLayout` (the built `omnibal serve`: it runs on the pool's worker threads):
// the same ranking as `searchLayouts` in-process, progress, coded errors from the schema and the
// planner, bounded by the task pool, and cancellable.
import test from 'ava';
import { syntheticSamples } from '../src/data/synthetic';
import { planTraining, type PlanTrainingOptions } from '../src/plan/index';
import { searchLayouts } from '../src/plan/layout';
import { exited, LineClient, spawnServe, type Msg } from './sidecar-harness';

/** A spawned `omnibal serve` on stdio, ended when the test ends. */
function serve(t: { teardown: (f: () => Promise<unknown>) => void }, args: string[] = []) {
  const child = spawnServe(args);
  const client = new LineClient(child.stdin!, child.stdout!);
  t.teardown(() => {
    child.stdin!.end();
    return exited(child);
  });
  return client;
}

const SMALL = { gpus: 8, globalBatchSamples: 144, synthetic: 20000, seed: 3, tps: [1, 2], pps: [2, 4, 8], samplesPerPacks: [2.25, 4.5], simulatedSteps: 1 };

const progressOf = (h: LineClient, id: string | number) => (h.lines.messages.filter((m) => !Array.isArray(m) && m.method === 'progress' && m.params.id === id) as Msg[]).map((m) => [m.params.done, m.params.total]);

test('searchLayout answers what searchLayouts ranks, with progress ending done == total', async (t) => {
  const h = serve(t);
  const r = await h.call('searchLayout', SMALL, 120_000);
  t.falsy(r.error, JSON.stringify(r.error));
  const { synthetic, ...options } = SMALL;
  const local = searchLayouts({ ...options, samples: syntheticSamples(synthetic, SMALL.seed) });
  t.deepEqual(r.result.layouts, JSON.parse(JSON.stringify(local)));
  t.true(r.result.prediction);
  t.is(r.result.globalBatchSamples, 144);
  t.true(r.result.assumptions.length > 0);
  const progress = progressOf(h, r.id!);
  t.true(progress.length >= 2, JSON.stringify(progress));
  // Progress counts the candidate layouts, from the first notification (sent before the worker
  // starts) to the last: nothing else is counted, so the total is the answer's layouts.
  t.deepEqual(progress[0], [0, r.result.layouts.length]);
  t.true(progress.every(([, n]) => n === r.result.layouts.length), JSON.stringify(progress));
  t.deepEqual(progress.at(-1), [r.result.layouts.length, r.result.layouts.length]);
  t.true(progress.every(([d], i) => i === 0 || d >= progress[i - 1][0]), 'done never goes back');
  t.is(r.result.epochs, 1);
});

test('searchLayout honours epochs: hours and GPU-hours for that many epochs, the ranking per epoch unchanged', async (t) => {
  const h = serve(t);
  const one = await h.call('searchLayout', SMALL, 120_000);
  const three = await h.call('searchLayout', { ...SMALL, epochs: 3 }, 120_000);
  t.falsy(three.error, JSON.stringify(three.error));
  t.is(three.result.epochs, 3);
  const { synthetic, ...options } = SMALL;
  t.deepEqual(three.result.layouts, JSON.parse(JSON.stringify(searchLayouts({ ...options, epochs: 3, samples: syntheticSamples(synthetic, SMALL.seed) }))));
  const fits = three.result.layouts.filter((c: { error?: string }) => c.error === undefined);
  t.true(fits.length > 0);
  fits.forEach((c: { gpuHours: number; totalGpuHours: number; hours: number; epochs: number }, i: number) => {
    const same = one.result.layouts[i];
    t.is(c.gpuHours, same.gpuHours);
    t.is(c.epochs, 3);
    t.true(Math.abs(c.totalGpuHours - 3 * same.totalGpuHours) < 1e-9 * c.totalGpuHours);
    t.true(Math.abs(c.hours - 3 * same.hours) < 1e-9 * c.hours);
  });
  const bad = await h.call('searchLayout', { ...SMALL, epochs: 0 }, 120_000);
  t.is(bad.error?.data?.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.true(bad.error!.message.includes('epochs'), bad.error!.message);
});

test('searchLayout: schema errors name the field; planner errors keep their code', async (t) => {
  const h = serve(t);
  for (const [params, field, code] of [
    [{ pps: [128] }, 'pps[0]', 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ globalBatchSamples: 1e6 }, 'globalBatchSamples', 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ samplesPerPacks: [] }, 'samplesPerPacks', 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ tps: [1], shuffle: true }, 'shuffle', 'ERR_OMNIBAL_UNKNOWN_OPTION'],
    [{ gpu: 'nope' }, 'gpu', 'ERR_OMNIBAL_UNKNOWN_PRESET'],
  ] as [object, string, string][]) {
    const r = await h.call('searchLayout', params, 120_000);
    t.is(r.error?.code, -32602, JSON.stringify(params));
    t.is(r.error?.data?.code, code, JSON.stringify(params));
    t.true(r.error!.message.includes(field), r.error!.message);
  }
  const planner = await h.call('searchLayout', { ...SMALL, virtualStages: 2 }, 120_000);
  t.is(planner.error?.data?.code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  t.regex(planner.error!.message, /virtual stages \(2\) need the interleaved schedule/);
  const calibration = await h.call('searchLayout', { ...SMALL, calibration: { layers: [{ index: 999, forwardMs: 1 }] } }, 120_000);
  t.is(calibration.error?.data?.code, 'ERR_OMNIBAL_OUT_OF_RANGE', 'a bad calibration is an error, not every row');
  // No tp x pp divides the GPUs: a coded error, not an empty ranking without its global batch.
  const none = await h.call('searchLayout', { ...SMALL, gpus: 3, tps: [2], pps: [2] }, 120_000);
  t.is(none.error?.code, -32602, JSON.stringify(none.result ?? none.error).slice(0, 200));
  t.is(none.error?.data?.code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  t.regex(none.error!.message, /no layout.*gpus \(3\)/);
});

test('searchLayout goes through the pool (a full queue is -32001) and a cancelled one frees its worker', async (t) => {
  const h = serve(t, ['--workers', '1', '--max-queue', '1']);
  const send = (id: string, params: object) => h.raw(`${JSON.stringify({ jsonrpc: '2.0', id, method: 'searchLayout', params })}\n`);
  send('long', {}); // the default search on 1.2 million samples: seconds
  send('queued', SMALL);
  t.is((await h.call('searchLayout', SMALL)).error?.code, -32001);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual((await h.call('$/cancelRequest', { id: 'long' })).result, { cancelled: true });
  t.is((await h.lines.answer('long')).error?.code, -32800);
  const started = Date.now();
  const queued = await h.lines.answer('queued', 120_000);
  t.truthy(queued.result?.layouts, JSON.stringify(queued.error));
  t.true(Date.now() - started < 120_000);
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
});

/** A calibration as `python -m omnibal.profile --model tiny-vlm` writes it (format 2, two loads, fields the fit does not read). */
function profiledTinyVlm() {
  const big = { tiles: 8, tokens: 40, sumSqLen: 1600 };
  const small = { tiles: 2, tokens: 10, sumSqLen: 100 };
  const rows: [number, string, number, number][] = [
    [1, 'vit.block.0', 10.1, 3.2],
    [5, 'projector', 0.9, 0.4],
    [7, 'llm.block.0', 9.4, 1.0],
    [13, 'llm.head', 10.9, 1.7],
  ];
  return {
    schema: 'omnibal.calibration/2',
    model: 'tiny-vlm',
    device: 'cpu (1 threads)',
    torch: '1.13.0',
    load: big,
    loads: [{ ...big, samples: 1 }, { ...small, samples: 1 }],
    layers: rows.flatMap(([index, name, atBig, atSmall]) => [
      { index, name, load: big, samples: 1, forwardMs: atBig, backwardMs: 2 * atBig, savedBytes: 1000 },
      { index, name, load: small, samples: 1, forwardMs: atSmall, backwardMs: 2 * atSmall, savedBytes: 300 },
    ]),
    stageMemory: [{ firstLayer: 1, lastLayer: 1, inFlight: 1, fullRecomputeBytes: 34816, noRecomputeBytes: 596232 }],
  };
}

test('plan takes a format-2 calibration file as the profiler writes it, and predicts what planTraining does', async (t) => {
  const h = serve(t);
  const calibration = profiledTinyVlm();
  const params = { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, calibration };
  const r = await h.call('plan', params, 120_000);
  t.falsy(r.error, JSON.stringify(r.error));
  const { detail: _detail, ...local } = planTraining(params as PlanTrainingOptions);
  void _detail;
  t.deepEqual(r.result, JSON.parse(JSON.stringify(local)));
  const uncalibrated = await h.call('plan', { ...params, calibration: undefined }, 120_000);
  t.notDeepEqual(r.result.figures, uncalibrated.result.figures, 'the calibration changes the prediction');
  // A per-layer load needs format 2; a calibration load with no tokens names its field.
  const format1 = await h.call('plan', { ...params, calibration: { ...calibration, schema: 'omnibal.calibration/1' } }, 120_000);
  t.is(format1.error?.data?.code, 'ERR_OMNIBAL_INVALID_OPTIONS', JSON.stringify(format1));
  t.regex(format1.error!.message, /layers\[0\]\.load needs "schema": "omnibal.calibration\/2"/);
  for (const [bad, field] of [
    [{ ...calibration, schema: 'omnibal.calibration/3' }, 'calibration.schema'],
    [{ ...calibration, load: { tiles: 8, tokens: 0 } }, 'calibration.load.tokens'],
    [{ ...calibration, layers: [{ index: 1, forwardMs: 1, load: { tiles: 1 } }] }, 'calibration.layers[0].load.tokens'],
  ] as [object, string][]) {
    const e = await h.call('plan', { ...params, calibration: bad }, 120_000);
    t.is(e.error?.code, -32602, JSON.stringify(e));
    t.is(e.error?.data?.field, field);
  }
});

test('plan with the interleaved schedule answers the v x P chunk plan planTraining makes, its Megatron-LM export included', async (t) => {
  const h = serve(t);
  // The default samples (synthetic, as the sidecar's plan makes them without inputs).
  const params = { seed: 3, simulatedSteps: 1, schedule: 'interleaved', virtualStages: 2, ablation: false };
  const r = await h.call('plan', params, 120_000);
  t.falsy(r.error, JSON.stringify(r.error));
  const { detail: _detail, ...local } = planTraining(params as PlanTrainingOptions);
  void _detail;
  t.is(r.result.chunks.chunks.length, 16);
  t.deepEqual(r.result.chunks, JSON.parse(JSON.stringify(local.chunks)));
  t.deepEqual(r.result.stages, JSON.parse(JSON.stringify(local.stages)));
});

test('plan and searchLayout take omnibal plan\'s memory options (zero, training, memoryBytes, headroom, target) and epochs, as planTraining does', async (t) => {
  const h = serve(t);
  // tiny-vlm on the nominal cpu device: small and fast, and the options all change the memory.
  const memory = { zero: 3, training: { grads: 'bf16', frozenVit: true, flashAttention: false }, memoryBytes: 2 ** 33, headroom: 0.25, target: 'deepspeed' };
  const params = { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, ablation: false, epochs: 2, ...memory };
  const r = await h.call('plan', params, 120_000);
  t.falsy(r.error, JSON.stringify(r.error));
  const { detail: _detail, ...local } = planTraining(params as PlanTrainingOptions);
  void _detail;
  t.deepEqual(r.result, JSON.parse(JSON.stringify(local)));
  t.deepEqual(r.result.replay.memory, { ...memory, training: { ...memory.training } });
  t.is(r.result.figures.epochs, 2);
  const plain = await h.call('plan', { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, ablation: false }, 120_000);
  t.notDeepEqual(r.result.stages, plain.result.stages, 'the memory options change the plan');
  // The search honours them too: each layout is sized for that memory.
  const search = { ...SMALL, tps: [1], pps: [2, 4], samplesPerPacks: [4.5] };
  const small = await h.call('searchLayout', { ...search, memoryBytes: 2 ** 30 }, 120_000);
  t.falsy(small.error, JSON.stringify(small.error));
  t.true(small.result.layouts.every((c: { error?: string }) => /1\.00 GiB per GPU/.test(c.error ?? '')), JSON.stringify(small.result.layouts));
  const { synthetic, ...options } = search;
  const zero3 = await h.call('searchLayout', { ...search, zero: 3, headroom: 0.5 }, 120_000);
  t.deepEqual(zero3.result.layouts, JSON.parse(JSON.stringify(searchLayouts({ ...options, zero: 3, headroom: 0.5, samples: syntheticSamples(synthetic, search.seed) }))));
  for (const [bad, field] of [[{ zero: 4 }, 'zero'], [{ training: { grads: 'fp8' } }, 'training.grads'], [{ target: 'fsdp' }, 'target'], [{ memoryBytes: 0 }, 'memoryBytes']] as [object, string][]) {
    const e = await h.call('plan', { ...params, ...bad }, 120_000);
    t.is(e.error?.code, -32602, JSON.stringify(e));
    t.is(e.error?.data?.field, field);
  }
});
