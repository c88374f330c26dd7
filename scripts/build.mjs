#!/usr/bin/env node
// Builds omnibal from a clone: the native addon (when a Rust toolchain is present) and the
// TypeScript to dist/. Runs as the `prepare` script, so `npm ci` / `npm install` build it all.
//
// Without cargo the install still succeeds: one line says so, and the package runs on its
// TypeScript twins. OMNIBAL_SKIP_NATIVE=1 skips the native build on purpose; --native-only
// skips the TypeScript compile.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function hasCargo() {
  const probe = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  return !probe.error && probe.status === 0;
}

if (process.env.OMNIBAL_SKIP_NATIVE === '1') {
  console.error('omnibal: OMNIBAL_SKIP_NATIVE=1, skipped the native build; the package runs on its TypeScript twins');
} else if (!hasCargo()) {
  console.error('omnibal: no Rust toolchain (cargo) found, skipped the native build; the package runs on its TypeScript twins');
} else if (!existsSync(bin('napi'))) {
  console.error('omnibal: @napi-rs/cli is not installed (dev dependencies missing?), skipped the native build');
} else {
  run(bin('napi'), [
    'build', '--platform', '--release',
    '--manifest-path', 'crate/node/Cargo.toml',
    '--package-json-path', 'package.json',
    '--output-dir', '.',
    '--js', 'bindings.js',
    '--dts', 'bindings.d.ts',
  ]);
}
if (!process.argv.includes('--native-only')) run(bin('tsc'), ['-p', 'tsconfig.build.json']);
