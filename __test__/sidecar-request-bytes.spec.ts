// The server-wide budget of request bytes (`--max-queued-bytes`, docs/protocol.md "Resources and
// limits"): a client pipelining many large requests (JSON lines or binary attachments, one
// connection or several) never makes the sidecar hold more than the budget, every request is
// answered, and a request larger than the whole budget is still served (alone). Runs on both
// backends (OMNIBAL_BACKEND=js too).
import test from 'ava';
import * as net from 'node:net';
import { cli, jsOnly } from './helpers';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { connect, exited, Harness, LineClient, newContextHarnesses, spawnServe, tempDir, waitFor, type Msg } from './sidecar-harness';
import { TaskPool } from '../src/sidecar/task-pool';

const n = 20_000;
const vision = Uint32Array.from({ length: n }, (_, i) => 1 + ((i * 7) % 6));
const text = Uint32Array.from({ length: n }, (_, i) => 150 + ((i * 7919) % 2400));
const planParams = { dp: 2, accum: 2, samplesPerPack: 3 };
const le = (a: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A JSON `pack` line of about 230 KB (the arrays as lists). */
const jsonLine = (id: number, seed: number) => `${JSON.stringify({ jsonrpc: '2.0', id, method: 'pack', params: { vision: Array.from(vision), text: Array.from(text), ...planParams, seed } })}\n`;
/** A `pack` request with its arrays as binary attachments (160 KB). */
const binaryFrame = (id: number, seed: number) =>
  Buffer.concat([Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id, method: 'pack', params: { vision: { $binary: 0, dtype: 'u32' }, text: { $binary: 1, dtype: 'u32' }, ...planParams, seed }, $attachments: [4 * n, 4 * n] })}\n`), le(vision), le(text), Buffer.from('\n')]);

async function allAnswered(h: Harness, ids: number[]): Promise<Msg[]> {
  return Promise.all(ids.map((id) => h.lines.answer(id, 120_000)));
}

test('pipelined large JSON requests: the held bytes stay within --max-queued-bytes, and every request is answered', async (t) => {
  const budget = 1_000_000;
  const h = Harness.create({ maxQueuedBytes: budget, workers: 1 });
  const ids = Array.from({ length: 24 }, (_, i) => i + 1);
  const bytes = Buffer.from(ids.map((id) => jsonLine(id, id)).join(''));
  t.true(bytes.length > 3 * budget, 'the requests together are well over the budget');
  // One chunk: all of it is in memory already, so only what is framed and in flight counts.
  h.raw(bytes);
  const answers = await allAnswered(h, ids);
  for (const a of answers) t.is(a.error, undefined, JSON.stringify(a.error));
  const acc = h.ctx.requestBytes;
  t.true(acc.peak <= budget, `peak ${acc.peak} over the budget ${budget}`);
  t.true(acc.peak > budget / 2, `peak ${acc.peak}: the budget was used`);
  t.is(acc.held, 0);
  t.is(acc.framed, 0);
});

test('pipelined binary attachments on several connections: one budget for all, every request answered', async (t) => {
  const budget = 700_000;
  const [a, b, c] = newContextHarnesses({ maxQueuedBytes: budget, workers: 1 }, 3);
  const ids = Array.from({ length: 10 }, (_, i) => i + 1);
  for (const h of [a, b, c]) {
    // Cut into 64 KiB pieces, as a socket delivers them.
    const all = Buffer.concat(ids.map((id) => binaryFrame(id, id % 3)));
    for (let at = 0; at < all.length; at += 65_536) h.raw(all.subarray(at, at + 65_536));
  }
  for (const h of [a, b, c]) for (const m of await allAnswered(h, ids)) t.is(m.error, undefined, JSON.stringify(m.error));
  const acc = a.ctx.requestBytes;
  t.true(acc.peak <= budget, `peak ${acc.peak} over the budget ${budget}`);
  t.true(acc.peak > 2 * 160_000, `peak ${acc.peak}: several requests were held at once`);
  t.is(acc.held, 0);
});

test('a request larger than the whole budget is still served, alone; those after it wait and are answered', async (t) => {
  const h = Harness.create({ maxQueuedBytes: 50_000, workers: 2 });
  const g = new Harness(h.ctx);
  h.raw(jsonLine(1, 1) + jsonLine(2, 2));
  h.raw(binaryFrame(3, 3));
  g.raw(binaryFrame(4, 4));
  g.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'version' })}\n`);
  for (const m of await allAnswered(h, [1, 2, 3])) t.is(m.error, undefined, JSON.stringify(m.error));
  for (const m of await allAnswered(g, [4, 5])) t.is(m.error, undefined, JSON.stringify(m.error));
  // Over budget by one request at most, never two of them at once.
  t.true(h.ctx.requestBytes.peak < 2 * 160_000, `peak ${h.ctx.requestBytes.peak}`);
  t.is(h.ctx.requestBytes.held, 0);
});

test('a closed connection releases what it held, and the connections waiting on it are read again', async (t) => {
  const h = Harness.create({ maxQueuedBytes: 300_000, workers: 1 });
  const g = new Harness(h.ctx);
  // Half a request: its line is held (within the budget) while the client is gone.
  const half = jsonLine(1, 1);
  h.raw(half.slice(0, 200_000));
  g.raw(jsonLine(7, 7) + jsonLine(8, 8));
  h.session.close();
  for (const m of await allAnswered(g, [7, 8])) t.is(m.error, undefined, JSON.stringify(m.error));
  t.is(h.ctx.requestBytes.held, 0);
});

test('serve --max-queued-bytes and --stall-timeout are checked strictly (exit 2) and listed in --help', (t) => {
  for (const flag of ['--max-queued-bytes', '--stall-timeout']) {
    for (const bad of ['abc', '0', '-1', '1e9', '0.5', '']) {
      const r = spawnSync(process.execPath, [cli, 'serve', flag, bad], { encoding: 'utf8', input: '' });
      t.is(r.status, 2, `${flag} ${JSON.stringify(bad)}: ${r.stderr}`);
    }
  }
  // Past Node's longest timer (2^31 - 1 ms) a timeout would fire at once: refused, not overflowed.
  for (const flag of ['--stall-timeout', '--auth-timeout']) {
    const r = spawnSync(process.execPath, [cli, 'serve', flag, '3000000'], { encoding: 'utf8', input: '' });
    t.is(r.status, 2, `${flag}: ${r.stderr}`);
    t.regex(r.stderr, /must be at most 2147483 seconds/);
    t.is(spawnSync(process.execPath, [cli, 'serve', flag, '2147483'], { encoding: 'utf8', input: '' }).status, 0, flag);
  }
  const help = spawnSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' });
  t.regex(help.stdout, /--max-queued-bytes <n>/);
  t.regex(help.stdout, /--stall-timeout <seconds>/);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (at most `ms`) until `cond()` holds; returns whether it does. */
async function until(cond: () => boolean, ms = 5_000): Promise<boolean> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await sleep(5);
  return cond();
}

test('a trusted socket client stalled mid-line is answered -32001 and closed after --stall-timeout, freeing the budget; a connection paused mid-line for the budget is not timed out', async (t) => {
  const budget = 100_000;
  const a = Harness.create({ maxQueuedBytes: budget, stallTimeout: 0.3, workers: 1 }, 'unix');
  const [b, c] = [new Harness(a.ctx, 'unix'), new Harness(a.ctx, 'unix')];
  const acc = a.ctx.requestBytes;
  // The pool's one worker is busy, so C's small request stays queued (its bytes framed: no overdraft for anyone).
  let finish!: () => void;
  const blocker = a.ctx.pool.submit(() => new Promise<void>((resolve) => (finish = resolve)));
  c.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'pack', params: { vision: [1, 2, 3], text: [100, 200, 300], dp: 1, samplesPerPack: 1 } })}\n`);
  // A sends 60 KB of a request and stops; B sends a 133 KB one, read until the budget is full, then paused mid-line.
  a.raw(jsonLine(1, 1).slice(0, 60_000));
  b.raw(jsonLine(2, 2));
  t.is(acc.held, budget, 'A, B and C hold the whole budget');
  await sleep(100);
  t.is(a.lines.messages.length, 0, 'not before the timeout');
  const stalled = await a.lines.answer(1, 5_000);
  t.is(stalled.error?.code, -32001);
  t.is(stalled.error?.data?.code, 'ERR_OMNIBAL_LIMIT');
  t.regex(stalled.error!.message, /^request incomplete: no bytes for 0\.3 s in the middle of a request \(--stall-timeout\); what it sent of it is dropped and the connection is closed$/);
  t.true(await until(() => a.closed));
  t.false(acc.inOverdraft(a.session));
  // B took A's bytes and is paused mid-line again (C still queued): waiting for the budget is not a stall.
  t.true(await until(() => acc.held === budget), `held ${acc.held}`);
  await sleep(700);
  t.is(b.lines.messages.length, 0);
  t.false(b.closed);
  finish();
  await blocker.promise;
  t.is((await c.lines.answer(3, 60_000)).error, undefined);
  const served = await b.lines.answer(2, 60_000);
  t.is(served.error, undefined, JSON.stringify(served.error));
  t.false(b.closed);
  t.true(await until(() => acc.held === 0), `held ${acc.held}`);
});

test('a socket client stalled inside its binary attachments is answered with its id after --stall-timeout; the attachments reserved are freed; stdio is never timed', async (t) => {
  const h = Harness.create({ maxQueuedBytes: 1_000_000, stallTimeout: 0.2, workers: 1 }, 'unix');
  const frame = binaryFrame(7, 7);
  h.raw(frame.subarray(0, frame.length - 50_000));
  t.true(h.ctx.requestBytes.held >= 160_000, 'the line and its attachments are reserved');
  const stalled = await h.lines.answer(7, 5_000);
  t.is(stalled.error?.code, -32001);
  t.regex(stalled.error!.message, /^request incomplete/);
  t.true(await until(() => h.closed));
  t.is(h.ctx.requestBytes.held, 0);
  t.false(h.ctx.requestBytes.inOverdraft(h.session));
  // Stdio: its owner is its only client; a pause mid-line is waited out.
  const stdio = Harness.create({ stallTimeout: 0.2 }, 'stdio');
  const line = jsonLine(8, 8);
  stdio.raw(line.slice(0, 1_000));
  await sleep(500);
  t.is(stdio.lines.messages.length, 0);
  t.false(stdio.closed);
  stdio.raw(line.slice(1_000));
  t.is((await stdio.lines.answer(8, 60_000)).error, undefined);
});

test('serve --stall-timeout 1 on a Unix socket: a client that sends half a line and stops gets -32001 and the connection ends; another client is served meanwhile', async (t) => {
  const dir = tempDir();
  const sock = path.join(dir, 's.sock');
  const server = spawnServe(['--listen', sock, '--stall-timeout', '1']);
  t.teardown(() => server.kill('SIGKILL'));
  await waitFor(sock);
  const s = await connect(sock);
  const stalled = new LineClient(s, s);
  const ended = new Promise((resolve) => s.once('end', resolve));
  const started = Date.now();
  s.write('{"jsonrpc":"2.0","id":"half","method":"version","par');
  const other = await connect(sock);
  t.is((await new LineClient(other, other).call('version', undefined, 10_000)).result?.protocol, 'omnibal-rpc/1');
  const answer = await stalled.lines.answer('half', 10_000);
  t.is(answer.error?.code, -32001);
  t.regex(answer.error!.message, /no bytes for 1 s in the middle of a request \(--stall-timeout\)/);
  await ended;
  const took = Date.now() - started;
  t.true(took >= 1_000 && took < 8_000, `${took} ms`);
  // The stalled client keeps its own side open (as a hung client would): the server cuts the
  // connection anyway, so it cannot hold it half-open, nor a stopping server.
  const clients: net.Socket[] = [];
  for (const k of [1, 2, 3]) {
    const c = net.createConnection({ path: sock, allowHalfOpen: true }, () => c.write(`{"jsonrpc":"2.0","id":${k},"method":"ver`));
    c.on('error', () => undefined);
    c.on('data', () => undefined);
    clients.push(c);
  }
  // Their stall is answered (1 s) and their connections cut (2 s grace) although each keeps its side open.
  await new Promise((r) => setTimeout(r, 4_000));
  other.destroy();
  server.kill('SIGTERM');
  const stopped = Date.now();
  t.is(await exited(server), 0);
  t.true(Date.now() - stopped < 5_000, `stopped in ${Date.now() - stopped} ms with 3 stalled clients holding their side open`);
  for (const c of clients) c.destroy();
});

test('an unauthenticated TCP connection may not hold a long partial line (it would hold the shared budget): it is refused and closed', async (t) => {
  const token = 'y'.repeat(32);
  const h = Harness.create({ maxQueuedBytes: 100_000 }, 'tcp', token);
  h.raw(`{"jsonrpc":"2.0","id":1,"method":"auth","params":{"token":"${'z'.repeat(5000)}`);
  t.is((await h.lines.next(() => true, 5000)) && h.lines.messages.length, 1);
  t.is((h.lines.messages[0] as Msg).error?.code, -32002);
  t.true(h.closed);
  t.is(h.ctx.requestBytes.held, 0);
  // An authenticated one may (within --max-line-bytes).
  const ok = new Harness(h.ctx, 'tcp');
  t.deepEqual((await ok.call('auth', { token })).result, { ok: true });
  ok.raw(jsonLine(2, 2).slice(0, 50_000));
  t.true(h.ctx.requestBytes.held >= 50_000);
  ok.raw(jsonLine(2, 2).slice(50_000));
  t.is((await ok.lines.answer(2, 60_000)).error, undefined);
});

test('unauthenticated TCP partial lines stay off the shared budget: strangers stalled mid-line cannot block the token holder', async (t) => {
  const token = 'y'.repeat(32);
  const first = Harness.create({ maxQueuedBytes: 1_000 }, 'tcp', token);
  const strangers = [first, ...Array.from({ length: 5 }, () => new Harness(first.ctx, 'tcp'))];
  // Each stalls with ~3.9 KB of an auth line (under the 4 KiB allowed before auth).
  for (const s of strangers) s.raw(`{"jsonrpc":"2.0","id":1,"method":"auth","params":{"token":"${'z'.repeat(3_900)}`);
  t.is(first.ctx.requestBytes.held, 0);
  const ok = new Harness(first.ctx, 'tcp');
  t.deepEqual((await ok.call('auth', { token })).result, { ok: true });
  ok.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'version' })}\n`);
  t.is((await ok.lines.answer(2, 5_000)).error, undefined);
  t.false(strangers.some((s) => s.ctx.requestBytes.inOverdraft(s.session)));
});

test('a line skipped as over-long holds nothing of the budget: it never takes the overdraft, and the others are served', async (t) => {
  const budget = 1_000;
  const [c, a, g] = newContextHarnesses({ maxQueuedBytes: budget, maxLineBytes: 100_000, workers: 1 }, 3);
  const acc = c.ctx.requestBytes;
  // C holds the budget with a partial line.
  const pad = 'x'.repeat(1_200);
  const cLine = `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'version', params: {}, pad })}\n`;
  c.raw(cLine.slice(0, budget));
  // A sends a line over --max-line-bytes in socket-sized pieces: answered -32001 and skipped.
  const long = `${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'version', pad: 'y'.repeat(300_000) })}\n`;
  for (let at = 0; at < long.length; at += 65_536) a.raw(long.slice(at, at + 65_536));
  const refused = await a.lines.answer(2, 10_000);
  t.is(refused.error?.code, -32001);
  // Skipping took no overdraft (it was kept by A, idle after its answer, and C's line waited).
  await new Promise((resolve) => setImmediate(resolve));
  t.false(acc.inOverdraft(a.session), 'the skipping connection holds the overdraft');
  c.raw(cLine.slice(budget));
  t.is((await c.lines.answer(1, 10_000)).error, undefined);
  g.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'version' })}\n`);
  t.is((await g.lines.answer(3, 10_000)).error, undefined);
  // The last request's bytes are released once its answer is written.
  await new Promise((resolve) => setImmediate(resolve));
  t.is(acc.held, 0);
});

test('input that ends without a newline: the last request is still answered (stdio and a socket half-close)', async (t) => {
  for (const kind of ['stdio', 'unix'] as const) {
    const h = Harness.create({}, kind);
    h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'version' })}\n${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'version' })}`);
    h.session.inputEnded();
    for (const id of [1, 2]) t.is((await h.lines.answer(id, 5_000)).error, undefined, `${kind} ${id}`);
  }
});

test('a pool task cancelled while it runs settles only when its run ends (its request bytes are held till then)', async (t) => {
  const pool = new TaskPool(1, 4);
  let finish!: () => void;
  const running = pool.submit(() => new Promise<void>((resolve) => (finish = resolve)));
  const queued = pool.submit(async () => 1);
  let settled = false;
  void running.settled.then(() => (settled = true));
  running.cancel();
  await t.throwsAsync(running.promise, { message: 'request cancelled' });
  // A queued task cancelled before it started settles at once.
  queued.cancel();
  await t.throwsAsync(queued.promise, { message: 'request cancelled' });
  await queued.settled;
  await new Promise((r) => setImmediate(r));
  t.false(settled, 'the run is still going: not settled');
  finish();
  await running.settled;
  t.true(settled);
  t.is(pool.active, 0);
});

(jsOnly ? test.skip : test)('a cancelled request is answered at once; its native work stops, and its bytes stay in the budget until it has', async (t) => {
  const big = 2_000_000;
  const bv = Uint32Array.from({ length: big }, (_, i) => 1 + ((i * 7) % 6));
  const bt = Uint32Array.from({ length: big }, (_, i) => 150 + ((i * 7919) % 2400));
  const h = Harness.create({ workers: 1 });
  const acc = h.ctx.requestBytes;
  const frame = Buffer.concat([Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 'big', method: 'pack', params: { vision: { $binary: 0, dtype: 'u32' }, text: { $binary: 1, dtype: 'u32' }, dp: 8, samplesPerPack: 4.5 }, $attachments: [4 * big, 4 * big] })}\n`), le(bv), le(bt), Buffer.from('\n')]);
  h.raw(frame);
  // Started: its first progress notification.
  await h.lines.next((m) => !Array.isArray(m) && m.method === 'progress' && (m.params as { id?: unknown })?.id === 'big');
  h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 'c', method: '$/cancelRequest', params: { id: 'big' } })}\n`);
  const answer = await h.lines.answer('big');
  t.is(answer.error?.code, -32800, JSON.stringify(answer));
  // The cancel stops the native plan at its next check (AsyncOptions.signal); while it still
  // runs, on the request's arrays, their bytes stay in the budget.
  const until = Date.now() + 60_000;
  while (h.ctx.pool.active > 0 && Date.now() < until) {
    t.true(acc.held >= 8 * big, `held ${acc.held} while the planner still runs on its arrays`);
    await new Promise((r) => setTimeout(r, 5));
  }
  t.is(h.ctx.pool.active, 0, 'the native work stopped');
  while (acc.held > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.is(acc.held, 0, 'released once the work ended');
  t.is((await h.call('version')).error, undefined);
});
