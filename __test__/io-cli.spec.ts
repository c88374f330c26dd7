// The CLI's input and output edges: stdin, conflicting flags, output into a missing folder or
// onto a directory, a reader that closes the pipe early, warnings of the ISF search; each a
// coded one-line error with exit 2, never a stack trace.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { searchIsfArguments } from '../src/data/index';
import { syntheticSamples } from '../src/data/synthetic';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-io-cli-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, maxBuffer: 1 << 28 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const rows = Array.from({ length: 600 }, (_, i) => JSON.stringify({ vit_num: 1 + (i % 5), token_num: 300 + ((i * 37) % 1500) }));
const jsonl = path.join(dir, 'small.jsonl');
writeFileSync(jsonl, `${rows.join('\n')}\n`);

function noStack(t: { false: (v: boolean, m?: string) => void }, stderr: string): void {
  t.false(/\n\s+at /.test(stderr), stderr);
  t.false(stderr.includes('internal error'), stderr);
}

test('--input - reads stdin (any format, sniffed) and equals reading the file', (t) => {
  const fromFile = omnibal(['pack', '--input', jsonl, '--dp', '2', '--samples-per-pack', '4', '--json']);
  const fromStdin = omnibal(['pack', '--input', '-', '--dp', '2', '--samples-per-pack', '4', '--json'], readFileSync(jsonl, 'utf8'));
  t.is(fromStdin.status, 0, fromStdin.stderr);
  const a = JSON.parse(fromFile.stdout);
  const b = JSON.parse(fromStdin.stdout);
  t.deepEqual(a.steps, b.steps);
  const list = omnibal(['pack', '--input', '-', '--dp', '2', '--samples-per-pack', '4', '--json'], `\uFEFF[${rows.join(',')}]`);
  t.is(list.status, 0, list.stderr);
  t.deepEqual(JSON.parse(list.stdout).steps, a.steps);
});

test('conflicting or bad input flags are rejected with exit 2', (t) => {
  for (const args of [
    ['--input', jsonl, '--synthetic', '100'],
    ['--input', '-', '--input', '-'],
    ['--input', jsonl, '--input-format', 'yaml'],
    ['--input', jsonl, '--out', ''],
    ['--input', jsonl, '--compare', '--json'],
    ['--synthetic', '300', '--input-format', 'csv'],
  ]) {
    const r = omnibal(['pack', ...args, '--dp', '2', '--samples-per-pack', '4']);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, /ERR_OMNIBAL_INVALID_OPTIONS/);
    noStack(t, r.stderr);
  }
});

test('bad input files: exit 2 with file, line and code, no stack', (t) => {
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '[{"vit_num": 1, "token_num": 5}, {"vit_num": 1, "token_num": 5},]');
  const r = omnibal(['pack', '--input', bad, '--dp', '1', '--samples-per-pack', '1']);
  t.is(r.status, 2);
  t.regex(r.stderr, /bad\.json:1: element 2: expected a JSON object \[ERR_OMNIBAL_PARSE\]/);
  noStack(t, r.stderr);
  for (const target of [dir, path.join(dir, 'missing.jsonl')]) {
    const e = omnibal(['pack', '--input', target, '--input-format', 'jsonl', '--dp', '1', '--samples-per-pack', '1']);
    t.is(e.status, 2, e.stderr);
    t.regex(e.stderr, /ERR_OMNIBAL_PARSE/);
    noStack(t, e.stderr);
  }
});

test('a relative input file name leads its error as typed (data.json is not taken for --json)', (t) => {
  writeFileSync(path.join(dir, 'data.json'), '[{"vit_num": 1, "token_num": 5}, {"vit_num": 1, "token_num": 0}]');
  writeFileSync(path.join(dir, 'maxText.jsonl'), '{"vit_num": 1}\n');
  for (const [file, message] of [
    ['data.json', /^omnibal: data\.json:1: element 1: token_num must be/],
    ['maxText.jsonl', /^omnibal: maxText\.jsonl:1: a sample needs/],
  ] as const) {
    const r = spawnSync(process.execPath, [cli, 'pack', '--input', file, '--dp', '1', '--samples-per-pack', '1'], { cwd: dir, encoding: 'utf8' });
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, message);
  }
  // API names are still given as the flags typed.
  const both = omnibal(['pack', '--input', jsonl, '--dp', '1', '--samples-per-pack', '1', '--max-vision', '4', '--max-text', '99']);
  t.regex(both.stderr, /give --samples-per-pack or --max-vision\/--max-text, not both/);
});

test('--out into a missing folder or onto a directory is a coded error with exit 2', (t) => {
  const missing = omnibal(['pack', '--input', jsonl, '--dp', '2', '--samples-per-pack', '4', '--out', path.join(dir, 'no', 'such', 'plan.json')]);
  t.is(missing.status, 2);
  t.regex(missing.stderr, /plan\.json: cannot write \(the folder .*such does not exist\) \[ERR_OMNIBAL_OUTPUT\]/);
  noStack(t, missing.stderr);
  mkdirSync(path.join(dir, 'a-dir'));
  const onDir = omnibal(['pack', '--input', jsonl, '--dp', '2', '--samples-per-pack', '4', '--out', path.join(dir, 'a-dir')]);
  t.is(onDir.status, 2);
  t.regex(onDir.stderr, /a-dir: cannot write \(it is a directory\) \[ERR_OMNIBAL_OUTPUT\]/);
  noStack(t, onDir.stderr);
  const ok = omnibal(['pack', '--input', jsonl, '--dp', '2', '--samples-per-pack', '4', '--out', path.join(dir, 'plan.json')]);
  t.is(ok.status, 0, ok.stderr);
  t.is(JSON.parse(readFileSync(path.join(dir, 'plan.json'), 'utf8')).schema, 'omnibal.batch-plan/1');
});

test('pack --json | head -c 300 ends quietly (EPIPE)', (t) => {
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${cli}" pack --synthetic 100000 --dp 8 --samples-per-pack 4 --json | head -c 300 > /dev/null; echo "status \${PIPESTATUS[0]}" >&2`], {
    encoding: 'utf8',
  });
  t.regex(r.stderr, /status 0\n$/);
  t.false(r.stderr.includes('EPIPE'), r.stderr);
  noStack(t, r.stderr);
});

test('isf: a search that drops more than 1% or leaves its window warns on stderr and in the metrics', (t) => {
  const skew = path.join(dir, 'skew.jsonl');
  const lines = Array.from({ length: 800 }, (_, i) =>
    JSON.stringify(i % 10 === 0 ? { vit_num: 12, token_num: 3200 } : { vit_num: 1 + (i % 3), token_num: 200 + ((i * 53) % 700) }),
  );
  writeFileSync(skew, lines.join('\n'));
  const r = omnibal(['pack', '--input', skew, '--strategy', 'isf', '--dp', '2', '--samples-per-pack', '1', '--tail', 'keep-partial', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.true(out.metrics.warnings.length > 0, r.stderr);
  t.regex(r.stderr, /omnibal: warning: /);
  t.true(out.metrics.warnings.some((w: string) => /over a cap|left its window/.test(w)), JSON.stringify(out.metrics.warnings));
});

// The ISF warnings judge what the caps search evaluated (every sample, no tail dropped), not the
// plan after its tail is dropped: its samples per pack against [B, B + 1], and the samples it
// dropped over a cap against 1% of the input.
test('isf: the window warning judges the search, not the plan after its tail is dropped', (t) => {
  // Premise: with these inputs the search ends inside [2.4, 3.4] ...
  const found = searchIsfArguments(syntheticSamples(3000, 0), { samplesPerPack: 2.4, dp: 256, accum: 1 });
  const chosen = found.candidates[found.chosen];
  t.true(chosen.inWindow && chosen.samplesPerPack < 3.4, JSON.stringify(chosen));
  t.deepEqual(found.warnings, []);
  const r = omnibal(['pack', '--synthetic', '3000', '--strategy', 'isf', '--samples-per-pack', '2.4', '--dp', '256', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  // ... while the plan, its last incomplete step dropped, has more than 3.4 samples per pack.
  t.true(out.metrics.samplesPerPack > 3.4, String(out.metrics.samplesPerPack));
  t.deepEqual([out.params.maxVision, out.params.maxText], [chosen.maxVision, chosen.maxText]);
  t.false(/window/.test(r.stderr), r.stderr);
  t.deepEqual(out.metrics.warnings.length, 1, JSON.stringify(out.metrics.warnings));
  t.regex(out.metrics.warnings[0], /^isf: 386 of 3000 samples \(12\.9%\) are in the dropped tail/);
});

test('isf: the over-cap warning is the search\'s own drop count against 1% of the input, once', (t) => {
  const skew = path.join(dir, 'skew2.jsonl');
  const lines = Array.from({ length: 800 }, (_, i) =>
    JSON.stringify(i % 10 === 0 ? { vit_num: 12, token_num: 3200 } : { vit_num: 1 + (i % 3), token_num: 200 + ((i * 53) % 700) }),
  );
  writeFileSync(skew, lines.join('\n'));
  const r = omnibal(['pack', '--input', skew, '--strategy', 'isf', '--dp', '2', '--samples-per-pack', '2', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  const overCap = out.metrics.warnings.filter((w: string) => /over a cap/.test(w));
  t.deepEqual(overCap, ['isf: caps 6 / 1968 drop 80 of 800 samples over a cap (10%)']);
  t.true(r.stderr.includes(`omnibal: warning: ${overCap[0]}\n`), r.stderr);
  // Caps that drop nothing over a cap: no such warning, whatever the tail drops.
  const none = omnibal(['pack', '--input', skew, '--strategy', 'isf', '--dp', '64', '--samples-per-pack', '3', '--json']);
  t.is(none.status, 0, none.stderr);
  t.deepEqual(JSON.parse(none.stdout).metrics.warnings.filter((w: string) => /over a cap|window/.test(w)), []);
});
