// The CLI skeleton: version, help, doctor, and exit codes.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { version } from '../index';
import { cli, nativeTest } from './helpers';

function omnibal(args: string[], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    env: { ...process.env, OMNIBAL_BACKEND: undefined, ...env },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version prints the package version on stdout', (t) => {
  const r = omnibal(['--version']);
  t.is(r.status, 0);
  t.is(r.stdout.trim(), version);
});

test('--help lists the commands', (t) => {
  const r = omnibal(['--help']);
  t.is(r.status, 0);
  t.regex(r.stdout, /Usage: omnibal/);
  t.regex(r.stdout, /doctor/);
});

test('an unknown command exits with 2 and says so on stderr', (t) => {
  const r = omnibal(['bogus']);
  t.is(r.status, 2);
  t.is(r.stdout, '');
  t.regex(r.stderr, /unknown command 'bogus'/);
});

nativeTest('doctor reports native after install', (t) => {
  const r = omnibal(['doctor', '--json']);
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.backend, 'native');
  t.regex(report.binaryPath, /\.node$/);
  t.is(report.native.version, version);
  t.is(report.node, process.versions.node);
  t.is(report.napi, process.versions.napi);
  t.regex(report.platform, new RegExp(`^${process.platform}-${process.arch}`));
  const human = omnibal(['doctor']);
  t.regex(human.stdout, /^backend\s+native$/m);
});

test('doctor reports js with OMNIBAL_BACKEND=js', (t) => {
  const r = omnibal(['doctor', '--json'], { OMNIBAL_BACKEND: 'js' });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.backend, 'js');
  t.is(report.binaryPath, null);
  t.is(report.reason, 'OMNIBAL_BACKEND=js');
});

test('doctor with OMNIBAL_BACKEND=native and no binary exits with 2 and the code', (t) => {
  const r = omnibal(['doctor'], { OMNIBAL_BACKEND: 'native', NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent.node' });
  t.is(r.status, 2);
  t.regex(r.stderr, /ERR_OMNIBAL_NATIVE_UNAVAILABLE/);
});
