#!/usr/bin/env node
// Builds omnibal from a clone: the native addon (when a Rust toolchain is present) and the
// TypeScript to dist/. Runs as the `prepare` script, so `npm ci` / `npm install` build it all.
//
// Without cargo the install still succeeds: one line says so, and the package runs on its
// TypeScript twins. OMNIBAL_SKIP_NATIVE=1 skips the native build on purpose; --native-only
// skips the TypeScript compile, --ts-only the native build; --target TRIPLE builds for another
// target (the release workflow).
//
// On a linux x64 glibc host the addon is linked against glibc 2.17 (the napi-rs convention, so
// the binary loads on RHEL/CentOS 7+, Ubuntu 14.04+, Debian 8+): `napi build --use-napi-cross`
// with the gcc + glibc 2.17 sysroot of @napi-rs/cross-toolchain-x64-target-x86_64, fetched once
// with `npm pack` into napi's own toolchain folder (~/.napi-rs/cross-toolchain). It is not a
// devDependency: that package is x64-only, so `npm ci` would refuse it on an arm64 machine, and
// on Node 20 napi cannot unpack it itself (its @napi-rs/lzma needs Node 22). When the toolchain
// cannot be had (offline, no xz) the build links against the host glibc and says so in one
// line; OMNIBAL_HOST_GLIBC=1 asks for that on purpose.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const windows = process.platform === 'win32';
const bin = (name) => join(root, 'node_modules', '.bin', windows ? `${name}.cmd` : name);

function run(command, args) {
  // Windows runs the .cmd shims of node_modules/.bin only through a shell.
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', shell: windows });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function succeeds(command, args, options = {}) {
  const probe = spawnSync(command, args, { stdio: 'ignore', ...options });
  return !probe.error && probe.status === 0;
}

/**
 * The napi-rs glibc 2.17 cross toolchains (gcc + sysroot) for a linux x64 host, by target, with
 * the package version that exists on the registry (napi 3's own `--use-napi-cross` download asks
 * for the version of @napi-rs/cross-toolchain, 1.0.5, which these packages never published).
 */
const CROSS_TOOLCHAINS = {
  'x86_64-unknown-linux-gnu': '@napi-rs/cross-toolchain-x64-target-x86_64@1.0.0',
  'aarch64-unknown-linux-gnu': '@napi-rs/cross-toolchain-x64-target-aarch64@1.0.3',
};

/**
 * Puts the glibc 2.17 cross toolchain for `triple` where `napi build --use-napi-cross` looks
 * (~/.napi-rs/cross-toolchain/VERSION/TRIPLE), fetched with `npm pack` when missing. Returns
 * whether it is there; says why in one line when it cannot be had.
 */
function crossToolchain(triple) {
  const hostIsGlibcX64 =
    process.platform === 'linux' && process.arch === 'x64' && Boolean(process.report?.getReport().header.glibcVersionRuntime);
  const pkg = CROSS_TOOLCHAINS[triple];
  if (!hostIsGlibcX64 || !pkg || process.env.OMNIBAL_HOST_GLIBC === '1') return false;
  let version;
  try {
    version = JSON.parse(readFileSync(join(root, 'node_modules', '@napi-rs', 'cross-toolchain', 'package.json'), 'utf8')).version;
  } catch {
    return false;
  }
  const dir = join(homedir(), '.napi-rs', 'cross-toolchain', version, triple);
  if (existsSync(join(dir, 'package.json'))) return true;
  const work = mkdtempSync(join(tmpdir(), 'omnibal-cross-'));
  try {
    if (!succeeds('npm', ['pack', '--silent', pkg, '--pack-destination', work], { cwd: work })) throw new Error(`npm pack ${pkg} failed`);
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tgz || !succeeds('tar', ['-xzf', join(work, tgz), '-C', work])) throw new Error(`cannot unpack ${pkg}`);
    mkdirSync(dir, { recursive: true });
    if (!succeeds('tar', ['-xJf', join(work, 'package', `${triple}.tar.xz`), '-C', dir])) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error('cannot unpack the toolchain (is xz installed?)');
    }
    return true;
  } catch (error) {
    console.error(`omnibal: no glibc 2.17 cross toolchain (${error.message}); linking against this machine's glibc`);
    return false;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `--target TRIPLE` from the command line (the release workflow), else this host's glibc target. */
function wantedTarget() {
  const at = process.argv.indexOf('--target');
  if (at >= 0) return process.argv[at + 1];
  return process.platform === 'linux' && process.arch === 'x64' ? 'x86_64-unknown-linux-gnu' : undefined;
}

// `npx omnibal` inside a clone installs the clone itself (a link) into npx's folder, and npm runs
// `prepare` for it again. `npm ci` built everything already; build only what is missing.
const viaNpx = process.env.npm_command === 'exec' && process.env.npm_lifecycle_event === 'prepare';
if (viaNpx && existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) process.exit(0);

if (process.argv.includes('--ts-only')) {
  // TypeScript only.
} else if (process.env.OMNIBAL_SKIP_NATIVE === '1') {
  console.error('omnibal: OMNIBAL_SKIP_NATIVE=1, skipped the native build; the package runs on its TypeScript twins');
} else if (!succeeds('cargo', ['--version'])) {
  console.error('omnibal: no Rust toolchain (cargo) found, skipped the native build; the package runs on its TypeScript twins');
} else if (!existsSync(bin('napi'))) {
  console.error('omnibal: @napi-rs/cli is not installed (dev dependencies missing?), skipped the native build');
} else {
  const target = wantedTarget();
  const explicit = process.argv.includes('--target');
  const cross = target !== undefined && crossToolchain(target);
  run(bin('napi'), [
    'build', '--platform', '--release',
    ...(cross ? ['--use-napi-cross', '--target', target] : explicit ? ['--target', target] : []),
    // musl targets from a glibc host: cargo-zigbuild (napi's -x), as in the napi-rs template.
    ...(explicit && target.endsWith('-musl') ? ['-x'] : []),
    '--manifest-path', 'crate/node/Cargo.toml',
    '--package-json-path', 'package.json',
    '--output-dir', '.',
    '--js', 'bindings.js',
    '--dts', 'bindings.d.ts',
  ]);
}
if (!process.argv.includes('--native-only')) {
  // A fresh dist/: tsc never deletes, and a module moved into a folder (src/data/balance.ts ->
  // src/data/balance/index.ts) would leave its old build first in line for `require('./balance')`.
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  run(bin('tsc'), ['-p', 'tsconfig.build.json']);
  // The compiled declarations import the binding's types from `../bindings` (dist/src/binding.d.ts)
  // and `../../bindings` (dist/src/model/index.d.ts): ship a copy beside them.
  copyFileSync(join(root, 'bindings.d.ts'), join(root, 'dist', 'bindings.d.ts'));
}
