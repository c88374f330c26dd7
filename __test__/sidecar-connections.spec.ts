// How many connections a socket sidecar holds (`--max-connections`, `--max-unauthenticated`):
// one more is answered -32005 and closed at once, a closed connection frees its slot, strangers
// cannot take the slots of authenticated clients (a new connection evicts the stranger that has
// waited longest), and the server serves on throughout.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import test from 'ava';
import { ConnectionSlots } from '../src/sidecar/connections';
import { cli } from './helpers';
import { connect, exited, LineClient, spawnServe, tempDir, waitFor, type Msg } from './sidecar-harness';

/** A connection's client, and the promise of everything it received once it closes. */
async function open(where: string): Promise<{ socket: net.Socket; client: LineClient; closed: Promise<Msg[]> }> {
  const socket = await connect(where);
  const client = new LineClient(socket, socket);
  const closed = new Promise<Msg[]>((resolve) => socket.once('close', () => resolve(client.lines.messages as Msg[])));
  return { socket, client, closed };
}

/**
 * A connection whose first request (`method`, `params`) is answered, tried again while it is
 * refused: a slot freed by a close is free once the server has seen the close.
 */
async function served(where: string, method: string, params?: unknown): Promise<Awaited<ReturnType<typeof open>>> {
  for (const end = Date.now() + 10_000; Date.now() < end; ) {
    const c = await open(where);
    const first = await Promise.race([c.client.call(method, params, 2_000).catch(() => undefined), c.closed.then(() => undefined)]);
    if (first?.result) return c;
    c.socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no connection served within 10 s`);
}

/** What a refused connection received: one -32005 line with id null, then the close. */
async function refusedWith(where: string): Promise<Msg> {
  const c = await open(where);
  let timer: NodeJS.Timeout | undefined;
  const got = await Promise.race([c.closed, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the refused connection stayed open')), 10_000)))]).finally(() => clearTimeout(timer));
  if (got.length !== 1) throw new Error(`expected one line, got ${JSON.stringify(got)}`);
  return got[0];
}

/** A TCP sidecar with `args` on a free port: the process, its address and its token. */
async function tcpServe(args: string[]): Promise<{ server: ReturnType<typeof spawnServe>; listen: string; token: string }> {
  const tokenFile = path.join(tempDir(), 'token.json');
  const server = spawnServe(['--listen', '127.0.0.1:0', '--token-file', tokenFile, ...args]);
  await waitFor(tokenFile);
  const { listen, token } = JSON.parse(fs.readFileSync(tokenFile, 'utf8')) as { listen: string; token: string };
  return { server, listen, token };
}

test('--max-connections on a Unix socket: one more is answered -32005 and closed at once; a closed one frees its slot; the others serve on', async (t) => {
  t.timeout(60_000);
  const sock = path.join(tempDir(), 's.sock');
  const server = spawnServe(['--listen', sock, '--max-connections', '3']);
  await waitFor(sock);
  const held = await Promise.all([open(sock), open(sock), open(sock)]);
  for (const c of held) t.is((await c.client.call('version')).result.protocol, 'omnibal-rpc/1');
  for (let i = 0; i < 3; i++) {
    const m = await refusedWith(sock);
    t.is(m.id, null);
    t.is(m.error?.code, -32005, JSON.stringify(m));
    t.is(m.error?.data?.code, 'ERR_OMNIBAL_TOO_MANY_CONNECTIONS');
    t.regex(m.error!.message, /at most 3 at once \(--max-connections\)/);
  }
  for (const c of held) t.is((await c.client.call('version')).result.protocol, 'omnibal-rpc/1', 'the connections held serve on');
  held[0].socket.destroy();
  await held[0].closed;
  // The slot is free once the server has seen the close: a new connection is served.
  const again = await served(sock, 'version');
  t.is((await refusedWith(sock)).error?.code, -32005, 'and the bound holds again');
  for (const c of [again, ...held.slice(1)]) c.socket.destroy();
  server.kill('SIGTERM');
  t.is(await exited(server), 0, server.stderrText());
  t.false(/error/i.test(server.stderrText()), server.stderrText());
});

test('--max-unauthenticated on TCP: a new connection evicts the stranger that waited longest, so idle strangers cannot keep a client from authenticating; an authenticated client no longer counts as one', async (t) => {
  t.timeout(60_000);
  const { server, listen, token } = await tcpServe(['--max-connections', '4', '--max-unauthenticated', '2']);
  const a = await open(listen);
  t.deepEqual((await a.client.call('auth', { token })).result, { ok: true });
  // Two strangers that never authenticate take the two places before auth.
  const strangers = [await open(listen), await open(listen)];
  // A client that authenticates gets in all the same: the stranger that waited longest is evicted.
  const b = await open(listen);
  t.deepEqual((await b.client.call('auth', { token }, 10_000)).result, { ok: true }, 'b authenticated while strangers held every place before auth');
  const gone = await strangers[0].closed;
  const evicted = gone.find((m) => m.id === null);
  t.is(evicted?.error?.code, -32005, JSON.stringify(gone));
  t.is(evicted?.error?.data?.code, 'ERR_OMNIBAL_TOO_MANY_CONNECTIONS');
  t.regex(evicted!.error!.message, /at most 2 at once \(--max-unauthenticated\), and this one waited longest/);
  t.is((await a.client.call('version')).result.protocol, 'omnibal-rpc/1', 'the authenticated clients are served');
  // Four held (a, b, strangers[1], one more stranger): a client that comes now evicts
  // strangers[1] (the stranger that waited longest) too, and authenticates.
  const newcomer = await open(listen);
  const c = await open(listen);
  t.deepEqual((await c.client.call('auth', { token }, 10_000)).result, { ok: true }, 'c authenticated while strangers held the last places of --max-connections');
  const gone1 = await strangers[1].closed;
  t.regex(gone1.find((m) => m.id === null)?.error?.message ?? '', /at most 4 at once \(--max-connections\), and this one waited longest/);
  // Four held, one stranger (newcomer): the next authenticates in its place; then all four are
  // clients and one more is refused by --max-connections.
  const d = await open(listen);
  t.deepEqual((await d.client.call('auth', { token }, 10_000)).result, { ok: true });
  await newcomer.closed;
  const full = await refusedWith(listen);
  t.regex(full.error!.message, /at most 4 at once \(--max-connections\); this one is closed/);
  for (const x of [a, b, c, d]) t.is((await x.client.call('version')).result.protocol, 'omnibal-rpc/1');
  for (const x of [a, b, c, d]) x.socket.destroy();
  server.kill('SIGTERM');
  t.is(await exited(server), 0, server.stderrText());
});

test('--max-unauthenticated on TCP: strangers that sent nothing are evicted before one whose auth is on its way, however long it waited', async (t) => {
  t.timeout(60_000);
  const { server, listen, token } = await tcpServe(['--max-connections', '8', '--max-unauthenticated', '2']);
  // A client that waited longest, its auth line half sent.
  const slow = await open(listen);
  const line = `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'auth', params: { token } })}\n`;
  slow.socket.write(line.slice(0, 20));
  await new Promise((r) => setTimeout(r, 200));
  // Silent strangers come: each evicts the silent one that waited longest, never the client.
  const silent = [await open(listen), await open(listen), await open(listen)];
  const closedWithin = (c: { closed: Promise<Msg[]> }) => Promise.race([c.closed, new Promise<Msg[]>((resolve) => setTimeout(() => resolve([]), 10_000).unref())]);
  const gone = await closedWithin(silent[0]);
  t.is(gone.find((m) => m.id === null)?.error?.code, -32005, JSON.stringify(gone));
  const gone1 = await closedWithin(silent[1]);
  t.is(gone1.find((m) => m.id === null)?.error?.code, -32005, `the second silent stranger evicted, not the client: ${JSON.stringify(gone1)}`);
  slow.socket.write(line.slice(20));
  const answer = await slow.client.lines.answer(1, 10_000);
  t.deepEqual(answer.result, { ok: true }, JSON.stringify(answer));
  for (const x of [slow, silent[2]]) x.socket.destroy();
  server.kill('SIGTERM');
  t.is(await exited(server), 0, server.stderrText());
});

test('ConnectionSlots: a stranger that spoke is evicted only when none is silent', (t) => {
  const slots = new ConnectionSlots(8, 2);
  const gone: string[] = [];
  const a = slots.take(true, () => gone.push('a'));
  const b = slots.take(true, () => gone.push('b'));
  if (!('spoke' in a) || !('spoke' in b)) return t.fail('refused');
  a.spoke();
  slots.take(true, () => gone.push('c')); // evicts b, the silent one, though a waited longer
  t.deepEqual(gone, ['b']);
  b.spoke(); // evicted: no effect
  const d = slots.take(true, () => gone.push('d')); // c is silent: c goes
  t.deepEqual(gone, ['b', 'c']);
  if ('spoke' in d) d.spoke();
  slots.take(true, () => gone.push('e')); // none silent: the longest waiting, a
  t.deepEqual(gone, ['b', 'c', 'a']);
  t.is(slots.unauthenticated, 2);
});

test('ConnectionSlots: both bounds; the stranger that waited longest is evicted; authenticated and release act once each', (t) => {
  const slots = new ConnectionSlots(3, 1);
  const evictedWith: string[] = [];
  const w = slots.take(true, (e) => evictedWith.push(`w: ${e.message}`));
  if (!('release' in w)) return t.fail('refused the first connection');
  // A second stranger over --max-unauthenticated evicts the first (its slot freed at once).
  const x = slots.take(true, (e) => evictedWith.push(`x: ${e.message}`));
  if (!('release' in x)) return t.fail('refused the second stranger');
  t.is(evictedWith.length, 1);
  t.regex(evictedWith[0], /^w: too many connections waiting to authenticate: at most 1 at once/);
  t.is(slots.held, 1);
  t.is(slots.unauthenticated, 1);
  w.release();
  w.authenticated();
  t.is(slots.held, 1, 'an evicted slot released again changes nothing');
  const y = slots.take(false);
  t.false(y instanceof Error);
  x.authenticated();
  x.authenticated();
  t.is(slots.unauthenticated, 0);
  const z = slots.take(true);
  t.false(z instanceof Error);
  t.is(slots.held, 3);
  t.is(slots.take(false) instanceof Error, true, 'over --max-connections');
  x.release();
  x.release();
  t.is(slots.held, 2);
  if ('release' in z) z.release();
  t.is(slots.unauthenticated, 0, 'a stranger that closes frees its place before auth');
  t.is(slots.held, 1);
  // At --max-connections a new stranger takes the slot of the stranger that waited longest (not
  // only at --max-unauthenticated): strangers that fill the last slots cannot keep clients out.
  const full = new ConnectionSlots(2, 2);
  const evicted: string[] = [];
  const s1 = full.take(true, (e) => evicted.push(`s1: ${e.message}`));
  full.take(true, (e) => evicted.push(`s2: ${e.message}`));
  const s3 = full.take(true, (e) => evicted.push(`s3: ${e.message}`));
  t.false(s3 instanceof Error, 'a new TCP connection at --max-connections evicts a stranger');
  t.deepEqual(evicted.map((e) => e.slice(0, 4)), ['s1: ']);
  t.regex(evicted[0], /at most 2 at once \(--max-connections\), and this one waited longest/);
  t.is(full.held, 2);
  if ('release' in s1) s1.release();
  t.is(full.held, 2, 'the evicted slot was freed once');
  for (const s of [s3]) if ('release' in s) s.authenticated();
  const s4 = full.take(true);
  t.false(s4 instanceof Error);
  if ('release' in s4) s4.authenticated();
  t.is(full.take(true) instanceof Error, true, 'every slot held by a client that authenticated: refused');
  t.is(full.take(false) instanceof Error, true);
});

test('serve --max-connections and --max-unauthenticated are checked strictly (exit 2, one line) and listed in --help', (t) => {
  for (const flag of ['--max-connections', '--max-unauthenticated']) {
    for (const bad of ['abc', '0', '-1', '1e3', '0.5', '', '65537']) {
      const r = spawnSync(process.execPath, [cli, 'serve', flag, bad], { encoding: 'utf8', input: '' });
      t.is(r.status, 2, `${flag} ${JSON.stringify(bad)}: ${r.stderr}`);
      t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
      t.regex(r.stderr, new RegExp(`${flag}.*ERR_OMNIBAL_`));
    }
  }
  const over = spawnSync(process.execPath, [cli, 'serve', '--max-connections', '8', '--max-unauthenticated', '9'], { encoding: 'utf8', input: '' });
  t.is(over.status, 2, over.stderr);
  t.regex(over.stderr, /--max-unauthenticated \(9\) must be at most --max-connections \(8\)/);
  t.is(spawnSync(process.execPath, [cli, 'serve', '--max-connections', '65536', '--max-unauthenticated', '65536'], { encoding: 'utf8', input: '' }).status, 0);
  const help = spawnSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' });
  t.regex(help.stdout, /--max-connections <n>/);
  t.regex(help.stdout, /--max-unauthenticated <n>/);
  t.regex(help.stdout, /default 64/);
});
