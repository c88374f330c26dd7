// Every file the CLI writes (plan --out / --report, with and without --search-layout, serve
// --token-file): a write that fails (missing folder, a directory, a full device, a read-only
// folder) is one line naming the path with ERR_OMNIBAL_OUTPUT and exit 2, never a stack trace,
// ERR_OMNIBAL_PARSE (that code is for reading) or exit 0.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-output-'));
test.after.always(() => {
  chmodSync(path.join(dir, 'read-only'), 0o755);
  rmSync(dir, { recursive: true, force: true });
});
const readOnly = path.join(dir, 'read-only');
mkdirSync(readOnly, { mode: 0o555 });
// Root writes into a read-only folder anyway: that case only means something for other users.
const permissionsHold = process.getuid?.() !== 0 && process.platform !== 'win32';

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const places: [string, string, RegExp][] = [
  ['a missing folder', path.join(dir, 'no-such', 'f'), /\(the folder .*no-such does not exist\)/],
  ['a directory', dir, /\(it is a directory\)/],
  ...(process.platform === 'linux' ? ([['a device', '/dev/full', /\(not a regular file: a device; --(?:out|report) takes a regular file\)/]] as [string, string, RegExp][]) : []),
  ...(permissionsHold ? ([['a read-only folder', path.join(readOnly, 'f'), /\(permission denied\)/]] as [string, string, RegExp][]) : []),
];

// A link to a place whose folder is missing (the token file replaces a link, so only here).
const dangling = path.join(dir, 'dangling');
symlinkSync(path.join(dir, 'no-such', 'target'), dangling);
const planPlaces: [string, string, RegExp][] = [...places, ['a link into a missing folder', dangling, /\(it is a link to .*no-such\/target, whose folder does not exist\)/]];

const small = ['--synthetic', '20000', '--accum', '4', '--simulated-steps', '1']; // under 1% in the dropped tail: no warning before the error
const search = ['--search-layout', '--gpus', '8', '--accum', '16', '--dp', '2', '--tp', '1', '--pp', '4'];

for (const [flag, searching] of [
  ['--out', false],
  ['--report', false],
  ['--out', true],
  ['--report', true],
] as [string, boolean][]) {
  test(`plan${searching ? ' --search-layout' : ''} ${flag} into a place it cannot write: ERR_OMNIBAL_OUTPUT, exit 2`, (t) => {
    for (const [what, file, why] of planPlaces) {
      const r = omnibal(['plan', ...small, ...(searching ? search : []), flag, file]);
      t.is(r.status, 2, `${what}: ${r.stderr}`);
      t.regex(r.stderr, new RegExp(`^omnibal: ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: cannot write ${why.source} \\[ERR_OMNIBAL_OUTPUT\\]\\n$`), what);
      t.notRegex(r.stderr, /    at /, what);
    }
  });
}

test('serve --token-file into a place it cannot write: ERR_OMNIBAL_OUTPUT, exit 2, nothing removed', (t) => {
  for (const [what, file, why] of places.filter(([w]) => w !== 'a device')) {
    const r = spawnSync(process.execPath, [cli, 'serve', '--listen', '127.0.0.1:0', '--token-file', file], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, OMNIBAL_TOKEN: undefined } });
    t.is(r.status, 2, `${what}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`^omnibal: ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: cannot write the token file ${why.source} \\[ERR_OMNIBAL_OUTPUT\\]\\n$`), what);
    t.notRegex(r.stderr, /    at /, what);
  }
  t.true(existsSync(dir), 'a directory given as the token file is left alone');
});

// stdout itself: a full device is a coded error too (an early-closed pipe is quiet: see plan.spec.ts).
(process.platform === 'linux' ? test : test.skip)('every command writing to a full stdout: ERR_OMNIBAL_OUTPUT, exit 2, no stack trace', (t) => {
  for (const args of [
    ['doctor'],
    ['doctor', '--json'],
    ['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '32', '--text-per-micro-batch', '5000', '--vision-per-micro-batch', '18'],
    ['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '32', '--text-per-micro-batch', '5000', '--vision-per-micro-batch', '18', '--json'],
    ['plan', ...small],
    ['plan', ...small, '--json'],
  ]) {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${cli}" ${args.join(' ')} > /dev/full`], { encoding: 'utf8', timeout: 120_000 });
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr, 'omnibal: stdout: cannot write (ENOSPC) [ERR_OMNIBAL_OUTPUT]\n', args.join(' '));
  }
});

// Commander's own writes (help, version) go through the same writer: a full device is the coded
// line with exit 2, a reader that goes away early is quiet with exit 0, and a normal stdout gets
// the whole text with exit 0.
(process.platform === 'linux' ? test : test.skip)('help and version to a full stdout: ERR_OMNIBAL_OUTPUT, exit 2, no stack trace', (t) => {
  for (const args of [['--help'], ['-h'], ['plan', '--help'], ['pack', '-h'], ['help'], ['help', 'plan'], ['--version'], ['-v']]) {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${cli}" ${args.join(' ')} > /dev/full`], { encoding: 'utf8', timeout: 60_000 });
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr, 'omnibal: stdout: cannot write (ENOSPC) [ERR_OMNIBAL_OUTPUT]\n', args.join(' '));
    const ok = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
    t.is(ok.status, 0, `${args.join(' ')}: ${ok.stderr}`);
    t.is(ok.stderr, '', args.join(' '));
    t.regex(ok.stdout, args.some((a) => a === '-v' || a === '--version') ? /^\d+\.\d+\.\d+\n$/ : /^Usage: omnibal/, args.join(' '));
  }
  const closed = spawnSync('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" "${cli}" plan --help | head -c 1 > /dev/null`], { encoding: 'utf8', timeout: 60_000 });
  t.is(closed.status, 0, closed.stderr);
  t.is(closed.stderr, '');
});

// Messages to a stderr that cannot take them (a full device): lost, but the exit code is the same.
(process.platform === 'linux' ? test : test.skip)('usage and input errors with stderr on a full device still exit 2, a good run 0', (t) => {
  for (const args of [['no-such-command'], ['plan', '--gpus', '0'], ['simulate', '--plan', path.join(dir, 'missing.json')], ['plan', '--no-such-flag']]) {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${cli}" ${args.join(' ')} 2> /dev/full`], { encoding: 'utf8', timeout: 60_000 });
    t.is(r.status, 2, args.join(' '));
  }
  t.is(spawnSync('bash', ['-c', `"${process.execPath}" "${cli}" --version 2> /dev/full`], { encoding: 'utf8', timeout: 60_000 }).status, 0);
});

test('plan --report and --out into the same file: exit 2 before planning, nothing written', (t) => {
  for (const extra of [[], search]) {
    const file = path.join(dir, `same-${extra.length}`);
    const r = omnibal(['plan', ...small, ...extra, '--report', file, '--out', path.join(dir, '.', path.basename(file))]);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, /^omnibal: --report and --out name the same file .*\[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
    t.false(existsSync(file));
  }
});
