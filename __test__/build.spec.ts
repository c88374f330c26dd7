// The install-time build without a Rust toolchain: it succeeds and says so in one line.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { root } from './helpers';

test('without cargo the build succeeds with one clear line', (t) => {
  const bin = mkdtempSync(path.join(tmpdir(), 'omnibal-nocargo-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, path.join(bin, 'node'));
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.mjs'), '--native-only'], {
    cwd: root,
    env: { PATH: bin, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1);
  t.regex(lines[0], /^omnibal: no Rust toolchain \(cargo\) found, skipped the native build; the package runs on its TypeScript twins$/);
});
