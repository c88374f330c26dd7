// A cancelled `balance` (or `pack`) stops its native planner: the pool slot is free again within a
// fraction of a second, so the next request on a one-slot pool is answered promptly instead of
// waiting for the cancelled plan to run to its end. Native only: the twins cannot stop mid-run.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { backend, syntheticSamples } from '../index';
import { encodeU32 } from '../src/sidecar/codec';
import { Harness, type Msg } from './sidecar-harness';

const nativeOnly = backend().kind === 'native' ? test.serial : test.skip;

/** Resolves once `check` holds (polled every 5 ms), or fails after `ms`. */
async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

nativeOnly('a cancelled balance of 4M samples frees its one-slot pool within a fraction of a second', async (t) => {
  const big = syntheticSamples(4_000_000, 2);
  const samples = { vision: encodeU32(big.vision), text: encodeU32(big.text) };
  const small = { vision: [1, 2, 3, 4, 5, 6, 7, 8], text: [100, 200, 300, 400, 500, 600, 700, 800], dp: 2, samplesPerPack: 2 };
  const h = Harness.create({ workers: 1, maxLineBytes: 256 * 2 ** 20 }, 'unix');
  // A whole run (another seed: its stored plan is not the one cancelled below).
  let t0 = performance.now();
  const whole = await h.call('balance', { ...samples, dp: 8, samplesPerPack: 4.5, seed: 1 });
  const wholeMs = performance.now() - t0;
  t.truthy(whole.result?.planId, JSON.stringify(whole.error));

  h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 'long', method: 'balance', params: { ...samples, dp: 8, samplesPerPack: 4.5, seed: 2 } })}\n`);
  await until(() => h.ctx.pool.active === 1);
  await sleep(Math.min(100, wholeMs / 5));
  t0 = performance.now();
  t.deepEqual((await h.call('$/cancelRequest', { id: 'long' })).result, { cancelled: true });
  t.is((await h.lines.answer('long')).error?.code, -32800);
  // The one slot: the next request waits for the cancelled plan to stop, then runs.
  const next: Msg = await h.call('balance', small);
  const nextMs = performance.now() - t0;
  t.truthy(next.result?.planId, JSON.stringify(next.error));
  await until(() => h.ctx.pool.active === 0);
  t.log(`whole run ${wholeMs.toFixed(0)} ms; the request after the cancel answered ${nextMs.toFixed(0)} ms after it`);
  t.true(nextMs < Math.max(300, wholeMs * 0.4), `answered ${nextMs.toFixed(0)} ms after the cancel; a whole run takes ${wholeMs.toFixed(0)} ms`);
});

nativeOnly('a pack whose connection closes mid-run frees the pool too', async (t) => {
  const big = syntheticSamples(4_000_000, 3);
  const samples = { vision: encodeU32(big.vision), text: encodeU32(big.text) };
  const a = Harness.create({ workers: 1, maxLineBytes: 256 * 2 ** 20 }, 'unix');
  const t0 = performance.now();
  a.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'pack', params: { ...samples, dp: 8, samplesPerPack: 4.5 } })}\n`);
  await until(() => a.ctx.pool.active === 1);
  await sleep(100);
  const closed = performance.now();
  a.session.close();
  await until(() => a.ctx.pool.active === 0);
  const freedMs = performance.now() - closed;
  t.log(`slot free ${freedMs.toFixed(0)} ms after the close (${(closed - t0).toFixed(0)} ms into the run)`);
  t.true(freedMs < 400, `slot freed ${freedMs.toFixed(0)} ms after the close`);
});
