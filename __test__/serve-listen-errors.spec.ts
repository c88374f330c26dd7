// `omnibal serve --listen` where it cannot listen (a loopback port in use, a folder that does
// not exist, a place without permission): one coded line and exit 2, never an internal error
// with a stack trace.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { cli } from './helpers';

function serve(listen: string) {
  const r = spawnSync(process.execPath, [cli, 'serve', '--listen', listen], { encoding: 'utf8', input: '', timeout: 30_000, env: { ...process.env, OMNIBAL_TOKEN: 'a-test-token-of-32-characters-ok' } });
  return { status: r.status, stderr: r.stderr };
}

test('a loopback port in use: ERR_OMNIBAL_ADDRESS_IN_USE, exit 2, one line', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as net.AddressInfo).port;
  try {
    const r = serve(`127.0.0.1:${port}`);
    t.is(r.status, 2, r.stderr);
    t.is(r.stderr, `omnibal: --listen 127.0.0.1:${port}: cannot listen (the address is in use: another process listens there) [ERR_OMNIBAL_ADDRESS_IN_USE]\n`);
  } finally {
    holder.close();
  }
});

(process.platform === 'linux' ? test : test.skip)('a socket in a missing folder or a place without permission: exit 2, one coded line', (t) => {
  const missing = serve('/nonexist/dir/s.sock');
  t.is(missing.status, 2, missing.stderr);
  t.is(missing.stderr, 'omnibal: --listen /nonexist/dir/s.sock: cannot listen (the folder /nonexist/dir does not exist) [ERR_OMNIBAL_INVALID_OPTIONS]\n');
  const proc = serve('/proc/x.sock');
  t.is(proc.status, 2, proc.stderr);
  t.regex(proc.stderr, /^omnibal: --listen \/proc\/x\.sock: cannot listen \([^\n]+\) \[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
  t.notRegex(proc.stderr, /internal error|    at /);
});
