// Soak: thousands of sequential `balance` calls against one `omnibal serve`, released by the
// client or evicted by the plan store's byte budget; the sidecar's RSS stays flat: its peak over
// the second half stays within 15% of its peak over the second quarter (the first is warm-up).
// Measured peak to peak: 0.5-2% with the heap shape pinned (src/sidecar/heap.ts). The unpinned
// heap's growth (V8's young generation doubling) comes in steps whose timing varies, so 4,000
// calls do not always catch it: the 10,000-call case of `npm run bench -- sidecar` measures the
// target. Sized for a 2-core machine; bounded in count and time.
import test from 'ava';
import { exited, LineClient, rssOf, spawnServe } from './sidecar-harness';

const N = 4000;
const MARGIN = 1.15;
const MIN_CALLS = 400;
const samples = 2000;
const vision = Array.from({ length: samples }, (_, i) => 1 + ((i * 7) % 13));
const text = Array.from({ length: samples }, (_, i) => 64 + ((i * 131) % 2000));

async function soak(t: import('ava').ExecutionContext, release: boolean) {
  // Budget: room for a few dozen of these plans, so the run without release must evict.
  const server = spawnServe(['--max-plan-bytes', String(2 ** 20)]);
  t.teardown(() => server.kill('SIGKILL'));
  const c = new LineClient(server.stdin!, server.stdout!);
  const started = Date.now();
  const rss: number[] = [];
  let first = '';
  let i = 0;
  for (; i < N && Date.now() - started < 120_000; i++) {
    const r = await c.call('balance', { vision, text, dp: 4, samplesPerPack: 3, seed: i });
    t.truthy(r.result?.planId, JSON.stringify(r.error));
    if (i === 0) first = r.result.planId;
    if (release) t.deepEqual((await c.call('release', { planId: r.result.planId })).result, { released: true });
    // Drop the answers kept by the test client, so only the server's memory is measured.
    c.lines.messages.length = 0;
    rss.push(rssOf(server.pid!));
  }
  // Peak against peak (a GC sawtooth's low point is no baseline): the second quarter of the calls
  // made, then the second half (a slow backend or a loaded machine makes fewer calls in the bound).
  t.true(i >= MIN_CALLS, `only ${i} calls in the time bound (at least ${MIN_CALLS} needed)`);
  const warm = Math.max(...rss.slice(Math.floor(i / 4), Math.floor(i / 2)));
  const peak = Math.max(...rss.slice(Math.floor(i / 2)));
  t.true(peak <= warm * MARGIN, `RSS peak grew from ${(warm / 2 ** 20).toFixed(1)} MB to ${(peak / 2 ** 20).toFixed(1)} MB over ${i} calls`);
  t.log(`${i} calls (${release ? 'release' : 'LRU eviction'}): RSS peak ${(warm / 2 ** 20).toFixed(1)} MB in the second quarter, then ${(peak / 2 ** 20).toFixed(1)} MB, ${((Date.now() - started) / i).toFixed(2)} ms per call`);
  const old = await c.call('planStep', { planId: first, step: 0 });
  t.is(old.error?.code, -32003);
  t.is(old.error?.data?.code, release ? 'ERR_OMNIBAL_UNKNOWN_HANDLE' : 'ERR_OMNIBAL_EVICTED');
  server.stdin!.end();
  t.is(await exited(server), 0);
}

test.serial('soak: sequential balance + release keeps RSS flat', (t) => soak(t, true));
test.serial('soak: sequential balance without release is bounded by LRU eviction', (t) => soak(t, false));
