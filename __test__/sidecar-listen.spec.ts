// `omnibal serve` as a process: strict --listen and option parsing, 0600 Unix sockets (stale ones
// replaced, live ones refused), TCP tokens, HTTP refused, shutdown only with the token, and a
// stdio sidecar that does not outlive its client.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { parseListen } from '../src/sidecar/listen';
import { cli } from './helpers';
import { connect, exited, LineClient, spawnServe, tempDir, waitFor } from './sidecar-harness';

test('parseListen: the documented forms only', (t) => {
  t.deepEqual(parseListen('unix:/tmp/a.sock'), { kind: 'unix', path: '/tmp/a.sock' });
  t.deepEqual(parseListen('./a.sock'), { kind: 'unix', path: './a.sock' });
  t.deepEqual(parseListen('127.0.0.1:0'), { kind: 'tcp', host: '127.0.0.1', port: 0 });
  t.deepEqual(parseListen('[::1]:47013'), { kind: 'tcp', host: '::1', port: 47013 });
  t.deepEqual(parseListen('localhost:65535'), { kind: 'tcp', host: 'localhost', port: 65535 });
  for (const bad of ['47013', '0', '4.7014e4', '0.0.0.0:1', '127.0.0.2:1', 'example.com:80', '127.0.0.1:65536', '127.0.0.1:', 'localhost', 'a.sock', 'unix:', 'http://127.0.0.1:1', `/${'x'.repeat(120)}`]) {
    const e = t.throws(() => parseListen(bad), undefined, bad) as Error & { code?: string };
    t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE', bad);
  }
});

test('bad --listen and option values exit 2 with one line, no stack', (t) => {
  const cases = [['--listen', '47013'], ['--listen', '0.0.0.0:1'], ['--listen', `/tmp/${'y'.repeat(110)}`], ['--listen', '127.0.0.1:0'], ['--max-line-bytes', 'abc'], ['--max-samples', '1e3'], ['--workers', '0']];
  for (const args of cases) {
    const r = spawnSync(process.execPath, [cli, 'serve', ...args], { encoding: 'utf8', input: '', env: { ...process.env, OMNIBAL_TOKEN: '' }, timeout: 30_000 });
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.false(/\n\s+at /.test(r.stderr), r.stderr);
  }
});

test('Unix socket: mode 0600 under umask 000; a live socket is refused, a stale one replaced', async (t) => {
  const dir = tempDir();
  const sock = path.join(dir, 's.sock');
  const first = spawn('sh', ['-c', `umask 000; exec "${process.execPath}" "${cli}" serve --listen unix:${sock}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitFor(sock);
  t.is(fs.statSync(sock).mode & 0o777, 0o600);
  const second = spawnSync(process.execPath, [cli, 'serve', '--listen', sock], { encoding: 'utf8', timeout: 30_000 });
  t.is(second.status, 2);
  t.regex(second.stderr, /ERR_OMNIBAL_ADDRESS_IN_USE/);
  t.false(/\n\s+at /.test(second.stderr));
  // An unauthenticated Unix connection works (the permissions are the guard), but shutdown needs a token.
  const s = await connect(sock);
  const c = new LineClient(s, s);
  t.is((await c.call('version')).result.protocol, 'omnibal-rpc/1');
  t.is((await c.call('shutdown')).error?.code, -32002);
  s.destroy();
  first.kill('SIGKILL');
  await exited(first);
  t.true(fs.existsSync(sock), 'a killed sidecar leaves its socket file');
  const third = spawnServe(['--listen', sock]);
  const end = Date.now() + 30_000;
  let ok = false;
  while (!ok && Date.now() < end) {
    try {
      const s3 = await connect(sock);
      const c3 = new LineClient(s3, s3);
      ok = (await c3.call('version')).result?.protocol === 'omnibal-rpc/1';
      s3.destroy();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  t.true(ok, third.stderrText());
  third.kill('SIGTERM');
  t.is(await exited(third), 0);
  t.false(fs.existsSync(sock));
  const notSocket = path.join(dir, 'file');
  fs.writeFileSync(notSocket, 'keep me');
  t.is(spawnSync(process.execPath, [cli, 'serve', '--listen', notSocket], { timeout: 30_000 }).status, 2);
  t.is(fs.readFileSync(notSocket, 'utf8'), 'keep me');
});

test('TCP: token file 0600; no auth, wrong token or HTTP closes; shutdown needs the token', async (t) => {
  const dir = tempDir();
  const tokenFile = path.join(dir, 'token.json');
  const server = spawnServe(['--listen', '127.0.0.1:0', '--token-file', tokenFile]);
  await waitFor(tokenFile);
  t.is(fs.statSync(tokenFile).mode & 0o777, 0o600);
  const { listen, token } = JSON.parse(fs.readFileSync(tokenFile, 'utf8')) as { listen: string; token: string };
  t.regex(listen, /^127\.0\.0\.1:\d+$/);
  t.regex(token, /^[0-9a-f]{64}$/);

  const closedAfter = async (text: string) => {
    const s = await connect(listen);
    const c = new LineClient(s, s);
    s.write(text);
    await new Promise((r) => s.once('close', r));
    return c.lines.messages;
  };
  const noAuth = await closedAfter('{"jsonrpc":"2.0","id":1,"method":"shutdown","params":{}}\n');
  t.is((noAuth[0] as { error: { code: number } }).error.code, -32002);
  const wrong = await closedAfter('{"jsonrpc":"2.0","id":1,"method":"auth","params":{"token":"nope"}}\n{"jsonrpc":"2.0","id":2,"method":"version"}\n');
  t.is(wrong.length, 1);
  const http = await closedAfter(`POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\r\n{"jsonrpc":"2.0","id":1,"method":"auth","params":{"token":"${token}"}}\n{"jsonrpc":"2.0","id":2,"method":"shutdown","params":{"token":"${token}"}}\n`);
  t.is(http.length, 0);
  t.is(server.exitCode, null, 'HTTP did not stop the server');

  const s = await connect(listen);
  const c = new LineClient(s, s);
  t.deepEqual((await c.call('auth', { token })).result, { ok: true });
  t.is((await c.call('shutdown', {})).error?.code, -32002);
  t.deepEqual((await c.call('shutdown', { token })).result, { ok: true });
  t.is(await exited(server), 0);
  t.false(fs.existsSync(tokenFile));
});

test('stdio: a sidecar whose client is gone exits', async (t) => {
  const server = spawnServe([]);
  const c = new LineClient(server.stdin!, server.stdout!);
  t.is((await c.call('version')).result.protocol, 'omnibal-rpc/1');
  server.stdout!.destroy();
  server.stdin!.destroy();
  t.is(await exited(server), 0);
});

test('a later HTTP-looking line: the requests before it are answered, nothing after it runs, then the connection closes', async (t) => {
  const dir = tempDir();
  const sock = path.join(dir, 'h.sock');
  const server = spawnServe(['--listen', sock]);
  t.teardown(() => server.kill('SIGKILL'));
  await waitFor(sock);
  const s = await connect(sock);
  const c = new LineClient(s, s);
  const vision = Array.from({ length: 20_000 }, (_, i) => i % 7);
  const text = Array.from({ length: 20_000 }, (_, i) => 100 + ((i * 37) % 3000));
  const line = (id: number, method: string, params?: unknown) => `${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`;
  // One write: a long call still running when the HTTP line is framed, a short one, the HTTP line, one more.
  s.write(line(1, 'balance', { vision, text, dp: 4, samplesPerPack: 4 }) + line(2, 'version') + 'POST / HTTP/1.1\r\nHost: x\r\n\r\n' + line(3, 'version'));
  await new Promise((r) => s.once('close', r));
  const answers = c.lines.messages.filter((m) => !Array.isArray(m) && m.method === undefined) as { id: number; result?: any; error?: unknown }[];
  t.deepEqual(answers.map((a) => a.id).sort(), [1, 2], JSON.stringify(answers).slice(0, 300));
  t.truthy(answers.find((a) => a.id === 1)?.result?.planId);
  t.is(answers.find((a) => a.id === 2)?.result?.protocol, 'omnibal-rpc/1');
  t.is(server.exitCode, null, 'the server keeps serving others');
  server.kill('SIGTERM');
  t.is(await exited(server), 0);
  t.false(fs.existsSync(sock));
});

test('an HTTP line within the first bytes after a short request: that request is answered; a JSON first line naming HTTP/1. is run', async (t) => {
  const dir = tempDir();
  const sock = path.join(dir, 'h2.sock');
  const server = spawnServe(['--listen', sock]);
  t.teardown(() => server.kill('SIGKILL'));
  await waitFor(sock);
  const answersOf = async (payload: string) => {
    const s = await connect(sock);
    const c = new LineClient(s, s);
    s.write(payload);
    await new Promise((r) => s.once('close', r));
    return c.lines.messages.filter((m) => !Array.isArray(m) && m.method === undefined) as { id: number; result?: any; error?: any }[];
  };
  // The version line and the start of the HTTP line arrive in the first 64 bytes of one chunk.
  const short = await answersOf('{"jsonrpc":"2.0","id":1,"method":"version"}\nPOST / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.deepEqual(short.map((a) => a.id), [1]);
  t.is(short[0].result?.protocol, 'omnibal-rpc/1');
  // A first request whose path holds "HTTP/1." is JSON-RPC, not HTTP: answered (no such file), then the later HTTP line ends the connection.
  const named = await answersOf(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'pack', params: { path: path.join(dir, 'HTTP/1.csv'), dp: 1, samplesPerPack: 1 } })}\nGET / HTTP/1.1\r\n\r\n`);
  t.deepEqual(named.map((a) => a.id), [2]);
  t.is(named[0].error?.code, -32602);
  server.kill('SIGTERM');
  t.is(await exited(server), 0);
});

// A signal while `serve --listen` is still starting (after the socket file exists, before start-up
// returns) still removes the socket and token files and exits 0. The child delays its own listen
// callback and signals itself in that window.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} during start-up removes the socket file and exits 0`, async (t) => {
    const dir = tempDir();
    const sock = path.join(dir, 'start.sock');
    const tokenFile = path.join(dir, 'token.json');
    const serverJs = path.join(path.dirname(cli), '..', 'sidecar', 'server.js');
    const script = `
      const net = require('node:net');
      const listen = net.Server.prototype.listen;
      net.Server.prototype.listen = function (...args) {
        // The socket path's lock (an abstract socket, socket-lock.ts) listens as it would.
        if (typeof args[0] === 'string' && args[0].startsWith('\\0')) return listen.apply(this, args);
        const cb = args.pop();
        return listen.call(this, ...args, () => {
          if (!require('node:fs').existsSync(${JSON.stringify(sock)})) process.exit(3);
          process.kill(process.pid, ${JSON.stringify(signal)});
          setTimeout(cb, 300);
        });
      };
      require(${JSON.stringify(serverJs)}).serveSocket(${JSON.stringify(sock)}, { tokenFile: ${JSON.stringify(tokenFile)} }).then(() => process.exit(0), () => process.exit(4));
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.is(await exited(child), 0);
    t.false(fs.existsSync(sock), 'socket file left behind');
    t.false(fs.existsSync(tokenFile), 'token file left behind');
  });
}

// A second signal while the orderly stop is still running: the real CLI, with a preloaded module
// that holds `server.close` open for 60 s (a stop that takes a while) and says on stderr when the
// stop began. The second signal removes the socket and token files and exits at once with the
// shell's status for that signal (128 + its number), one line on stderr, no stack.
for (const [signal, status] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  test(`a second ${signal} while stopping exits at once with status ${status}, files removed`, async (t) => {
    const dir = tempDir();
    const sock = path.join(dir, 'stop.sock');
    const tokenFile = path.join(dir, 'token.json');
    const preload = path.join(dir, 'slow-close.js');
    fs.writeFileSync(
      preload,
      `const net = require('node:net');
       const close = net.Server.prototype.close;
       net.Server.prototype.close = function (cb) {
         process.stderr.write('test: stop began\\n');
         setTimeout(() => close.call(this, cb), 60000).unref();
         return this;
       };`,
    );
    const child = spawn(process.execPath, ['--require', preload, cli, 'serve', '--listen', sock, '--token-file', tokenFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.teardown(() => child.kill('SIGKILL'));
    let err = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => (err += c));
    await waitFor(tokenFile);
    child.kill(signal);
    const began = Date.now();
    while (!err.includes('test: stop began')) {
      if (Date.now() - began > 30_000) throw new Error(`the stop did not begin: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.is(child.exitCode, null, 'still stopping');
    child.kill(signal);
    t.is(await exited(child), status, err);
    t.false(fs.existsSync(sock), 'socket file left behind');
    t.false(fs.existsSync(tokenFile), 'token file left behind');
    t.regex(err, new RegExp(`^omnibal serve: ${signal} while stopping: exiting now \\(status ${status}\\)$`, 'm'));
    t.false(/\n\s+at /.test(err), err);
  });
}

test('a client that shuts down its write side (TCP and Unix socket) gets the answers to what it sent, then the connection closes, as on stdio', async (t) => {
  const dir = tempDir();
  const sock = path.join(dir, 'half.sock');
  const tokenFile = path.join(dir, 'token.json');
  const unix = spawnServe(['--listen', sock]);
  const tcp = spawnServe(['--listen', '127.0.0.1:0', '--token-file', tokenFile]);
  t.teardown(() => {
    unix.kill('SIGKILL');
    tcp.kill('SIGKILL');
  });
  await waitFor(sock);
  await waitFor(tokenFile);
  const { listen, token } = JSON.parse(fs.readFileSync(tokenFile, 'utf8')) as { listen: string; token: string };
  const vision = Array.from({ length: 40_000 }, (_, i) => i % 7);
  const text = Array.from({ length: 40_000 }, (_, i) => 100 + ((i * 37) % 3000));
  const line = (id: number, method: string, params?: unknown) => `${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`;
  for (const [where, first] of [[sock, ''], [listen, line(0, 'auth', { token })]] as const) {
    const s = await connect(where);
    const c = new LineClient(s, s);
    // Long calls in flight when the client's write side closes (the write and the FIN go together).
    s.end(first + line(1, 'balance', { vision, text, dp: 4, samplesPerPack: 4 }) + line(2, 'pack', { vision, text, dp: 2, samplesPerPack: 3, seed: 3 }) + line(3, 'version'));
    await new Promise((r) => s.once('close', r));
    const answers = c.lines.messages.filter((m) => !Array.isArray(m) && m.method === undefined && m.id !== 0) as { id: number; result?: any; error?: unknown }[];
    t.deepEqual(answers.map((a) => a.id).sort(), [1, 2, 3], `${where}: ${JSON.stringify(answers).slice(0, 300)}`);
    for (const a of answers) t.is(a.error, undefined, `${where}: ${JSON.stringify(a.error)}`);
    t.truthy(answers.find((a) => a.id === 1)?.result?.planId);
  }
  t.is(unix.exitCode, null);
  t.is(tcp.exitCode, null);
});
