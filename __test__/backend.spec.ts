// Backend selection, run in child processes so each sees its own environment.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { nativeTest, root } from './helpers';

const entry = path.join(root, 'dist', 'index.js');

/** Runs a snippet against the built package with extra environment variables. */
function probe(env: Record<string, string | undefined>, snippet: string) {
  const result = spawnSync(process.execPath, ['-e', `const o = require(${JSON.stringify(entry)}); ${snippet}`], {
    env: { ...process.env, OMNIBAL_BACKEND: undefined, NAPI_RS_NATIVE_LIBRARY_PATH: undefined, ...env },
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
}

const report = 'process.stdout.write(JSON.stringify({ info: o.backend(), p: Array.from(o.permutation(6, 4)) }))';

nativeTest('default: the native binding loads, silently', (t) => {
  const r = probe({}, report);
  t.is(r.status, 0, r.stderr);
  const { info } = JSON.parse(r.stdout);
  t.is(info.kind, 'native');
  t.regex(info.path, /omnibal\.[\w-]+\.node$/);
  t.is(r.stderr, '');
});

test('OMNIBAL_BACKEND=js uses the twins, silently, with the same results', (t) => {
  const js = probe({ OMNIBAL_BACKEND: 'js' }, report);
  t.is(js.status, 0, js.stderr);
  const parsed = JSON.parse(js.stdout);
  t.deepEqual(parsed.info, { kind: 'js', reason: 'OMNIBAL_BACKEND=js' });
  t.is(js.stderr, '');
  const auto = probe({}, report);
  t.deepEqual(JSON.parse(auto.stdout).p, parsed.p);
});

test('OMNIBAL_BACKEND=native without a loadable binary fails with every load error', (t) => {
  const r = probe(
    { OMNIBAL_BACKEND: 'native', NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/omnibal.node' },
    `try { o.backend(); } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: e.message, cause: String(e.cause && e.cause.message) })); }`,
  );
  t.is(r.status, 0, r.stderr);
  const e = JSON.parse(r.stdout);
  t.is(e.code, 'ERR_OMNIBAL_NATIVE_UNAVAILABLE');
  t.regex(e.message, /\/nonexistent\/omnibal\.node/);
  t.regex(e.cause, /Cannot find native binding/);
});

test('auto without a loadable binary falls back to the twins with one warning', (t) => {
  const r = probe(
    { NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/omnibal.node' },
    `${report}; o.permutation(3, 1); o.backend();`,
  );
  t.is(r.status, 0, r.stderr);
  const { info } = JSON.parse(r.stdout);
  t.is(info.kind, 'js');
  t.regex(info.reason, /native binding not loaded/);
  const warnings = r.stderr.split('\n').filter((line) => line.startsWith('omnibal:'));
  t.is(warnings.length, 1, r.stderr);
  t.regex(warnings[0], /using the TypeScript twins/);
});

test('an unknown OMNIBAL_BACKEND value is a coded error', (t) => {
  const r = probe(
    { OMNIBAL_BACKEND: 'gpu' },
    `try { o.backend(); } catch (e) { process.stdout.write(e.code + ' ' + e.message); }`,
  );
  t.regex(r.stdout, /^ERR_OMNIBAL_INVALID_BACKEND OMNIBAL_BACKEND must be native, js or auto, got "gpu"/);
});
