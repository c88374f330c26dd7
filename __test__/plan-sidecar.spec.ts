// The sidecar's `searchLayout` (the built `omnibal serve`: it runs on the pool's worker threads):
// the same ranking as `searchLayouts` in-process, progress, coded errors from the schema and the
// planner, bounded by the task pool, and cancellable.
import test from 'ava';
import { syntheticSamples } from '../src/data/synthetic';
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
  t.deepEqual(progress[0], [0, 1]);
  const last = progress.at(-1)!;
  t.is(last[0], last[1]);
  t.true(progress.slice(1).every(([d], i) => i === 0 || d >= progress[i][0]), 'done never goes back');
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
