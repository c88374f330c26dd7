// An output (`--out`, `--report`) onto an input file (by any path: a symbolic or hard link
// included) is refused before anything is written, as is one onto a FIFO or a device: the
// user's length file is never replaced by the plan, and a FIFO without a reader never blocks.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-out-in-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lengths = JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ vit_num: 1 + (i % 5), token_num: 300 + ((i * 37) % 900) })));
const victim = (name: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, lengths);
  return file;
};
const small = ['--simulated-steps', '1', '--gpus', '8', '--pp', '2', '--accum', '2'];

test('pack/plan --out or --report onto an input (same path, a symbolic link, a hard link): exit 2, the input unchanged', (t) => {
  const v1 = victim('v1.json');
  const v2 = victim('v2.json');
  const link = path.join(dir, 'link-to-v2.json');
  symlinkSync(v2, link);
  const v3 = victim('v3.json');
  const hard = path.join(dir, 'hard-v1.json');
  linkSync(v1, hard);
  const cal = victim('cal.json');
  for (const [args, out, input] of [
    [['pack', '--input', v1, '--dp', '2', '--samples-per-pack', '2', '--out', v1], v1, v1],
    [['pack', '--input', v3, '--input', v1, '--dp', '2', '--samples-per-pack', '2', '--out', hard], hard, v1],
    [['plan', '--input', v2, ...small, '--out', link], link, v2],
    [['plan', '--input', v3, ...small, '--report', v3], v3, v3],
    [['plan', '--input', v3, ...small, '--calibration', cal, '--out', cal], cal, cal],
  ] as [string[], string, string][]) {
    const r = omnibal(args);
    t.is(r.status, 2, args.join(' '));
    t.is(r.stderr.split('\n').length, 2, r.stderr);
    t.true(r.stderr.startsWith(`omnibal: ${out}: cannot write (it is the same file as --`), r.stderr);
    t.true(r.stderr.includes(input), r.stderr);
    t.regex(r.stderr, /\[ERR_OMNIBAL_OUTPUT\]\n$/);
  }
  for (const f of [v1, v2, v3, cal]) t.is(readFileSync(f, 'utf8'), lengths, `${f} is untouched`);
});

(process.platform === 'win32' ? test.skip : test)('--out or --report onto a FIFO without a reader: exit 2 at once, never a hang', (t) => {
  const fifo = path.join(dir, 'fifo');
  t.is(spawnSync('mkfifo', [fifo]).status, 0);
  const v = victim('fifo-in.json');
  for (const args of [
    ['pack', '--input', v, '--dp', '2', '--samples-per-pack', '2', '--out', fifo],
    ['plan', '--input', v, ...small, '--out', fifo],
    ['plan', '--input', v, ...small, '--report', fifo],
  ]) {
    const r = omnibal(args);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /^omnibal: \S+fifo: cannot write \(not a regular file: a FIFO; --(out|report) takes a regular file\) \[ERR_OMNIBAL_OUTPUT\]\n$/);
  }
});

test('an output to a new file or an existing unrelated file is still written', (t) => {
  const v = victim('ok-in.json');
  const out = path.join(dir, 'ok-out.json');
  writeFileSync(out, 'old');
  const r = omnibal(['pack', '--input', v, '--dp', '2', '--samples-per-pack', '2', '--out', out]);
  t.is(r.status, 0, r.stderr);
  t.is(JSON.parse(readFileSync(out, 'utf8')).schema, 'omnibal.batch-plan/1');
});

test('--out and --report not there yet that resolve to one file (a dangling link to the other) are refused: no result silently lost', (t) => {
  const v = victim('dangling-in.json');
  const out = path.join(dir, 'plan-na.json');
  const report = path.join(dir, 'report-nl.html');
  symlinkSync(path.basename(out), report);
  const r = omnibal(['plan', '--input', v, ...small, '--out', out, '--report', report]);
  t.is(r.status, 2, r.stderr);
  t.is(r.stderr, `omnibal: ${report}: cannot write (it is the same file as --out ${out}, which --report would overwrite; give it another path) [ERR_OMNIBAL_OUTPUT]\n`);
});

test('--out - is the file named "-" whatever stdin is (stdin is an input only)', (t) => {
  const v = victim('dash-in.json');
  const sub = mkdtempSync(path.join(dir, 'dash-'));
  // stdin redirected from the input itself: before, `-` was taken for stdin and refused.
  const r = spawnSync(process.execPath, [cli, 'pack', '--input', v, '--dp', '2', '--samples-per-pack', '2', '--out', '-'], { cwd: sub, encoding: 'utf8', timeout: 60_000, input: lengths });
  t.is(r.status, 0, r.stderr);
  t.is(JSON.parse(readFileSync(path.join(sub, '-'), 'utf8')).schema, 'omnibal.batch-plan/1');
});
