// `omnibal pack`: JSON output, human output, and exit code 2 for bad input.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli, realFiles } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-pack-cli-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function lengths(name: string, rows: [number, number][]): string {
  const p = path.join(dir, name);
  writeFileSync(p, rows.map(([v, t]) => JSON.stringify({ vision: v, text: t })).join('\n'));
  return p;
}

const small = lengths('small.jsonl', Array.from({ length: 400 }, (_, i) => [1 + (i % 5), 300 + ((i * 37) % 1500)]));

test('--json writes the plan, its dropped samples and metrics as one object', (t) => {
  const r = omnibal(['pack', '--input', small, '--dp', '4', '--accum', '2', '--samples-per-pack', '4', '--seed', '3', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.is(out.schema, 'omnibal.batch-plan/1');
  t.is(out.strategy, 'balanced');
  t.regex(out.backend, /^(native|js)$/);
  t.is(out.params.dp, 4);
  t.is(out.params.accum, 2);
  t.is(out.steps.length, out.metrics.steps);
  for (const step of out.steps) {
    t.is(step.length, 4);
    for (const rank of step) t.is(rank.length, 2);
  }
  const seen = new Set<number>();
  for (const step of out.steps) for (const rank of step) for (const mb of rank) for (const i of mb) seen.add(i);
  for (const d of out.dropped) seen.add(d.index);
  t.is(seen.size, 400);
  for (const key of ['padRatio', 'visionDist', 'textDist', 'costDist', 'samplesPerPack', 'packs', 'steps', 'costExcessMedian', 'costExcessP99', 'oversize']) {
    t.is(typeof out.metrics[key], 'number', key);
  }
  // The default cost is the default model's step-time cost: t + t^2 / (12 h), InternLM2-20B's h = 6144.
  t.is(out.params.model, 'internvl-chat-1.5');
  t.is(out.params.costA, 1);
  t.is(out.params.costB, 1 / (12 * 6144));
});

test('--model sets the step-time cost from its LLM; --cost-b overrides it', (t) => {
  const llava = JSON.parse(omnibal(['pack', '--input', small, '--dp', '4', '--samples-per-pack', '4', '--model', 'llava-1.5-7b', '--json']).stdout);
  t.is(llava.params.costB, 1 / (12 * 4096));
  const tokens = JSON.parse(omnibal(['pack', '--input', small, '--dp', '4', '--samples-per-pack', '4', '--cost-b', '0', '--json']).stdout);
  t.is(tokens.params.costB, 0);
  const table = omnibal(['pack', '--input', small, '--dp', '4', '--samples-per-pack', '4']);
  t.is(table.status, 0, table.stderr);
  t.regex(table.stdout, /internvl-chat-1\.5's LLM, hidden 6144/);
  t.regex(table.stdout, /a prediction of the step time lost/);
});

test('a dropped tail of more than 1% of the samples is a warning (stderr and metrics)', (t) => {
  const r = omnibal(['pack', '--synthetic', '2000', '--dp', '128', '--samples-per-pack', '4', '--json']);
  t.is(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  const tail = plan.dropped.filter((d: { reason: string }) => d.reason === 'tail').length;
  t.true(tail > 20, `tail ${tail}`);
  t.regex(r.stderr, new RegExp(`warning: balanced: ${tail} of 2000 samples .* dropped tail`));
  t.is(plan.metrics.warnings.length, 1);
  const kept = JSON.parse(omnibal(['pack', '--synthetic', '2000', '--dp', '128', '--samples-per-pack', '4', '--tail', 'pad', '--json']).stdout);
  t.deepEqual(kept.metrics.warnings, []);
});

test('--model names only a preset: inherited names such as __proto__ are unknown, not a crash', (t) => {
  for (const name of ['__proto__', 'toString', 'constructor']) {
    const r = omnibal(['pack', '--input', small, '--dp', '4', '--samples-per-pack', '4', '--model', name]);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, /^omnibal: unknown model .*\[ERR_OMNIBAL_UNKNOWN_PRESET\]\n$/);
  }
});

test('--out writes the JSON to a file and the summary to stdout', (t) => {
  const out = path.join(dir, 'plan.json');
  const r = omnibal(['pack', '--input', small, '--dp', '2', '--max-vision', '12', '--max-text', '4096', '--strategy', 'isf', '--out', out]);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^strategy\s+size/m);
  t.is(JSON.parse(readFileSync(out, 'utf8')).strategy, 'isf');
});

test('--compare prints every strategy', (t) => {
  const r = omnibal(['pack', '--synthetic', '20000', '--dp', '8', '--samples-per-pack', '4.5', '--compare']);
  t.is(r.status, 0, r.stderr);
  for (const s of ['balanced', 'isf', 'random', 'length-grouped']) t.regex(r.stdout, new RegExp(`^${s}\\s`, 'm'));
});

const base = (dp: string, ...more: string[]) => ['pack', '--input', small, '--dp', dp, ...more];
const badRuns: [string, string[], RegExp][] = [
  ['unknown strategy', base('4', '--samples-per-pack', '4', '--strategy', 'fastest'), /ERR_OMNIBAL_UNKNOWN_OPTION/],
  ['dp 0', base('0', '--samples-per-pack', '4'), /dp must be between 1 and 1048576, got 0 \[ERR_OMNIBAL_OUT_OF_RANGE\]/],
  ['accum 0', base('4', '--samples-per-pack', '4', '--accum', '0'), /ERR_OMNIBAL_OUT_OF_RANGE/],
  ['caps below every sample', base('4', '--max-vision', '0', '--max-text', '10'), /ERR_OMNIBAL_CAP_TOO_SMALL/],
  ['too few samples for a step', base('5000', '--samples-per-pack', '4'), /ERR_OMNIBAL_TOO_FEW_SAMPLES/],
  ['no size option', base('4'), /ERR_OMNIBAL_INVALID_OPTIONS/],
  ['unknown model', base('4', '--samples-per-pack', '4', '--model', 'gpt-5'), /ERR_OMNIBAL_UNKNOWN_PRESET/],
  ['dp x accum over the bound', base('65536', '--samples-per-pack', '4', '--accum', '65537', '--tail', 'pad'), /accum times dp must be at most 1048576 .*ERR_OMNIBAL_OUT_OF_RANGE/],
  ['a missing file', ['pack', '--input', path.join(dir, 'missing.json'), '--dp', '4', '--samples-per-pack', '4'], /ERR_OMNIBAL_PARSE/],
];

for (const [label, args, expected] of badRuns) {
  test(`bad input exits with 2 and a coded message: ${label}`, (t) => {
    const r = omnibal(args);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, expected);
    t.is(r.stdout, '');
  });
}

test('an empty input file exits with 2', (t) => {
  const empty = path.join(dir, 'empty.json');
  writeFileSync(empty, '[]');
  const r = omnibal(['pack', '--input', empty, '--dp', '2', '--samples-per-pack', '4']);
  t.is(r.status, 2);
  t.regex(r.stderr, /ERR_OMNIBAL_EMPTY_INPUT/);
});

const realTest = realFiles.every((f) => existsSync(f)) ? test : test.skip;
realTest('plans the shared real data from the CLI', (t) => {
  const r = omnibal(['pack', ...realFiles.flatMap((f) => ['--input', f]), '--dp', '8', '--samples-per-pack', '4.5', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.true(out.metrics.textDist <= 0.01);
  t.true(out.metrics.visionDist <= 0.001);
});
