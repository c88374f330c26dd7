// The one-line warning when the native addon does not load: the cause on this platform first,
// then the one fix that applies. Real loader failures come from a copy of the built package in a
// temporary project (node_modules untouched); NODE_PATH lends it the dependencies.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describeLoadError, loadAttempts } from '../src/load-error';
import { root } from './helpers';

const version = (require('../package.json') as { version: string }).version;
const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
const linuxGnu = process.platform === 'linux' && process.arch === 'x64' && header?.glibcVersionRuntime !== undefined;
/** These tests build the loader's real failures for linux-x64-gnu (the platform package's name is in them). */
const onLinuxGnu = linuxGnu ? test : test.skip;
const PKG = 'omnibal-linux-x64-gnu';

interface Install {
  /** A `package-lock.json` beside node_modules. */
  lock?: boolean;
  /** The platform package: absent, or present with a file that is not an addon. */
  platformPackage?: 'missing' | 'corrupt';
  /** A corrupt `omnibal.linux-x64-gnu.node` in the package root (as a local build leaves one). */
  localCorrupt?: boolean;
}

/** Installs a copy of the built package into a fresh project and loads it; returns its stderr lines and backend. */
function loadFrom(install: Install, env: Record<string, string> = {}) {
  const project = mkdtempSync(path.join(tmpdir(), 'omnibal-load-'));
  try {
    const pkg = path.join(project, 'node_modules', 'omnibal');
    mkdirSync(pkg, { recursive: true });
    for (const f of ['dist', 'presets', 'bindings.js', 'package.json']) cpSync(path.join(root, f), path.join(pkg, f), { recursive: true });
    writeFileSync(path.join(project, 'package.json'), '{"name":"p","version":"1.0.0"}');
    if (install.lock) writeFileSync(path.join(project, 'package-lock.json'), '{"lockfileVersion":3}');
    if (install.localCorrupt) writeFileSync(path.join(pkg, 'omnibal.linux-x64-gnu.node'), 'not an addon');
    if (install.platformPackage === 'corrupt') {
      const platform = path.join(project, 'node_modules', PKG);
      mkdirSync(platform);
      cpSync(path.join(root, 'npm', 'linux-x64-gnu', 'package.json'), path.join(platform, 'package.json'));
      writeFileSync(path.join(platform, 'omnibal.linux-x64-gnu.node'), 'not an addon');
    }
    const snippet = `const o = require(${JSON.stringify(path.join(pkg, 'dist', 'index.js'))}); o.permutation(3, 1); o.permutation(4, 2); process.stdout.write(JSON.stringify(o.backend()));`;
    const r = spawnSync(process.execPath, ['-e', snippet], {
      cwd: project,
      env: { ...process.env, OMNIBAL_BACKEND: undefined, NAPI_RS_NATIVE_LIBRARY_PATH: undefined, NODE_PATH: path.join(root, 'node_modules'), ...env },
      encoding: 'utf8',
    });
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    return { status: r.status, lines, info: r.status === 0 ? (JSON.parse(r.stdout) as { kind: string; reason?: string }) : undefined, stderr: r.stderr };
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

/** The line must not send the user to the wrong place: no WebAssembly tries, no npm bug unless asked. */
function checkOneLine(t: import('ava').ExecutionContext, r: ReturnType<typeof loadFrom>, startsWith: RegExp) {
  t.is(r.status, 0, r.stderr);
  t.is(r.lines.length, 1, r.stderr);
  t.regex(r.lines[0], /^omnibal: native binding not loaded: /);
  t.regex(r.lines[0].slice('omnibal: native binding not loaded: '.length), startsWith);
  t.notRegex(r.lines[0], /wasi|wasm/i);
  t.regex(r.lines[0], /using the TypeScript twins/);
  t.is(r.info?.kind, 'js');
}

onLinuxGnu('platform package missing (npm install --omit=optional), no lock file: names the package and how to install it', (t) => {
  const r = loadFrom({ platformPackage: 'missing' });
  checkOneLine(t, r, new RegExp(`^Cannot find module '${PKG}'`));
  t.true(r.lines[0].includes(`npm install ${PKG}@${version}`), r.lines[0]);
  t.notRegex(r.lines[0], /4828|optional-dependency bug|package-lock/);
});

onLinuxGnu('platform package missing with a lock file: the install first, npm\'s optional-dependency bug after it', (t) => {
  const r = loadFrom({ platformPackage: 'missing', lock: true });
  checkOneLine(t, r, new RegExp(`^Cannot find module '${PKG}'`));
  const line = r.lines[0];
  t.true(line.indexOf(`npm install ${PKG}@${version}`) < line.indexOf('4828'), line);
  t.regex(line, /remove package-lock\.json and node_modules/);
});

onLinuxGnu('a corrupt addon in the platform package: the loader\'s own reason first, then reinstall that package', (t) => {
  const r = loadFrom({ platformPackage: 'corrupt', lock: true });
  checkOneLine(t, r, new RegExp(`node_modules/${PKG}/omnibal\\.linux-x64-gnu\\.node: (invalid ELF header|file too short)`));
  t.regex(r.lines[0], new RegExp(`corrupt or for another platform: reinstall the platform package: npm install ${PKG}@${version}`));
  t.notRegex(r.lines[0], /4828|Cannot find module/);
});

onLinuxGnu('a corrupt addon beside omnibal: its reason first, then remove or rebuild it', (t) => {
  const r = loadFrom({ localCorrupt: true, platformPackage: 'missing' });
  checkOneLine(t, r, /omnibal\/omnibal\.linux-x64-gnu\.node: (invalid ELF header|file too short)/);
  t.regex(r.lines[0], /remove it, or rebuild it with npm run build/);
});

onLinuxGnu('NAPI_RS_NATIVE_LIBRARY_PATH at a corrupt file or at nothing: that path, and the variable to fix', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-override-'));
  try {
    const bad = path.join(dir, 'bad.node');
    writeFileSync(bad, 'not an addon');
    const corrupt = loadFrom({}, { NAPI_RS_NATIVE_LIBRARY_PATH: bad });
    checkOneLine(t, corrupt, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: (invalid ELF header|file too short)`));
    t.regex(corrupt.lines[0], /NAPI_RS_NATIVE_LIBRARY_PATH names a file that is not a loadable addon/);
    const missing = loadFrom({}, { NAPI_RS_NATIVE_LIBRARY_PATH: path.join(dir, 'none.node') });
    checkOneLine(t, missing, /^Cannot find module '.*none\.node'.*: NAPI_RS_NATIVE_LIBRARY_PATH names no file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A loader error as the generated loader chains its tries (the last try outermost). */
function loaderError(tries: string[]): Error {
  const chain = tries.reduce<Error | null>((previous, message) => Object.assign(new Error(message), { cause: previous }), null);
  return Object.assign(new Error('Cannot find native binding. npm has a bug related to optional dependencies (https://github.com/npm/cli/issues/4828).'), { cause: chain });
}

const ctx = { version: '1.2.3', packageRoot: '/nowhere/omnibal' };

test('loadAttempts: the tries in the order the loader made them', (t) => {
  t.deepEqual(loadAttempts(loaderError(['a\nRequire stack: x', 'b', 'c'])), ['a', 'b', 'c']);
  t.deepEqual(loadAttempts(new Error('alone\nmore')), ['alone']);
  t.deepEqual(loadAttempts('text'), ['text']);
});

test('describeLoadError: the platform\'s cause leads, the WebAssembly tries and the npm-bug advice are left out', (t) => {
  const missing = loaderError(["Cannot find module './omnibal.darwin-arm64.node'", "Cannot find module 'omnibal-darwin-arm64'", "Cannot find module './omnibal.wasi.cjs'", "Cannot find module 'omnibal-wasm32-wasi'"]);
  t.is(describeLoadError(missing, ctx), "Cannot find module 'omnibal-darwin-arm64' (the platform package with the prebuilt addon is not installed): install it with npm install omnibal-darwin-arm64@1.2.3");
  const mismatch = loaderError(["Cannot find module './omnibal.linux-x64-musl.node'", 'Native binding package version mismatch, expected 1.2.3 but got 1.0.0. You can reinstall dependencies to fix this issue.', "Cannot find module 'omnibal-wasm32-wasi'"]);
  t.regex(describeLoadError(mismatch, ctx), /^Native binding package version mismatch, expected 1\.2\.3 but got 1\.0\.0\..*: reinstall omnibal$/);
  const glibc = loaderError(["/x/node_modules/omnibal-linux-x64-gnu/omnibal.linux-x64-gnu.node: /lib/libc.so.6: version `GLIBC_2.99' not found", "Cannot find module 'omnibal-wasm32-wasi'"]);
  t.regex(describeLoadError(glibc, ctx), /GLIBC_2\.99' not found: this system's C library is older than the prebuilt addon needs$/);
  const unsupported = loaderError(['Unsupported architecture on Linux: mips', "Cannot find module 'omnibal-wasm32-wasi'"]);
  t.is(describeLoadError(unsupported, ctx), 'Unsupported architecture on Linux: mips: no prebuilt addon exists for this platform');
  t.is(describeLoadError(new Error("Cannot find module '/x/bindings.js'"), ctx), "Cannot find module '/x/bindings.js'");
});
