// `omnibal partition --from-plan`: memory is sized for the plan's real heaviest micro-batch (its
// caps are soft: an over-cap sample gets a micro-batch of its own), so "it fits" bounds the
// heaviest micro-batch the plan produces; a load given beside the plan is refused, not ignored.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-from-plan-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// 20,000 samples, one in 500 of them 40 tiles / 60,000 tokens (far over the caps 4.5 samples per pack derives).
const lengths = path.join(dir, 'skew.json');
const samples = Array.from({ length: 20_000 }, (_, i) => (i % 500 === 0 ? { vit_num: 40, token_num: 60_000 } : { vit_num: 1 + (i % 6), token_num: 200 + ((i * 7919) % 2300) }));
writeFileSync(lengths, JSON.stringify(samples));
const planFile = path.join(dir, 'skewplan.json');
const packed = omnibal(['pack', '--input', lengths, '--dp', '8', '--accum', '4', '--samples-per-pack', '4.5', '--out', planFile]);
const model = ['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '32'];

test('pack --json carries the heaviest micro-batch: at least every micro-batch of the plan, and reached', (t) => {
  t.is(packed.status, 0, packed.stderr);
  const doc = JSON.parse(readFileSync(planFile, 'utf8'));
  t.true(doc.metrics.oversize > 0, 'the plan has over-cap samples');
  t.true(doc.heaviestLoad.tokens > doc.params.maxText, 'the heaviest micro-batch is over the soft cap');
  let tiles = 0;
  let tokens = 0;
  for (const step of doc.steps) for (const rank of step) for (const mb of rank) {
    tiles = Math.max(tiles, mb.reduce((a: number, i: number) => a + samples[i].vit_num, 0));
    tokens = Math.max(tokens, mb.reduce((a: number, i: number) => a + samples[i].token_num, 0));
  }
  t.deepEqual([doc.heaviestLoad.tiles, doc.heaviestLoad.tokens], [tiles, tokens]);
});

test('partition --from-plan sizes memory for the heaviest micro-batch, as the explicit memory load does', (t) => {
  const fromPlan = omnibal([...model, '--from-plan', planFile]);
  const doc = JSON.parse(readFileSync(planFile, 'utf8'));
  const explicit = omnibal([...model, '--from-plan', planFile, '--memory-vision-per-micro-batch', String(doc.heaviestLoad.tiles), '--memory-text-per-micro-batch', String(doc.heaviestLoad.tokens)]);
  // 80 GiB does not hold the 60,000-token micro-batches: no "fits" from the caps.
  t.is(fromPlan.status, 2, fromPlan.stdout);
  t.regex(fromPlan.stderr, /the least memory that fits is [\d.]+ GiB/);
  t.is(fromPlan.stderr, explicit.stderr);
  const roomy = omnibal([...model, '--from-plan', planFile, '--memory-gib', '100']);
  t.is(roomy.status, 0, roomy.stderr);
  t.regex(roomy.stdout, /activations sized for the heaviest micro-batch of any epoch \(40 tiles, 60000 tokens: the most of each over this plan's micro-batches, 40 tiles and 60000 tokens/);
});

test('partition --from-plan of a balanced plan sizes memory for any epoch (its caps, when this epoch\'s heaviest stays under them) and takes its micro-batches from the plan\'s accum', (t) => {
  // No outliers: this epoch's heaviest micro-batch is under the text cap, which another epoch may reach.
  const plain = path.join(dir, 'plain.json');
  writeFileSync(plain, JSON.stringify(Array.from({ length: 4_000 }, (_, i) => ({ vit_num: 1 + (i % 6), token_num: 200 + ((i * 7919) % 2300) }))));
  const planPath = path.join(dir, 'plainplan.json');
  t.is(omnibal(['pack', '--input', plain, '--dp', '2', '--accum', '16', '--samples-per-pack', '4.5', '--out', planPath]).status, 0);
  const doc = JSON.parse(readFileSync(planPath, 'utf8'));
  t.true(doc.heaviestLoad.tokens < doc.params.maxText, `${doc.heaviestLoad.tokens} < ${doc.params.maxText}`);
  const r = omnibal(['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--from-plan', planPath, '--memory-gib', '100']);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /16 micro-batches/);
  t.true(r.stdout.includes(`activations sized for the heaviest micro-batch of any epoch (${Math.max(doc.heaviestLoad.tiles, doc.params.maxVision)} tiles, ${doc.params.maxText} tokens`), r.stdout);
  // The same as giving that load and the accum by hand.
  const explicit = omnibal(['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '16', '--from-plan', planPath, '--memory-gib', '100', '--memory-vision-per-micro-batch', String(Math.max(doc.heaviestLoad.tiles, doc.params.maxVision)), '--memory-text-per-micro-batch', String(doc.params.maxText)]);
  t.is(explicit.status, 0, explicit.stderr);
  const table = (out: string) => out.slice(out.indexOf('stage  layers'));
  t.is(table(r.stdout), table(explicit.stdout));
});

test('partition --from-plan of a plan without its heaviest micro-batch: exit 2 unless the memory load is given', (t) => {
  const doc = JSON.parse(readFileSync(planFile, 'utf8'));
  delete doc.heaviestLoad;
  const old = path.join(dir, 'old.json');
  writeFileSync(old, JSON.stringify(doc));
  const r = omnibal([...model, '--from-plan', old, '--memory-gib', '100']);
  t.is(r.status, 2);
  t.regex(r.stderr, /^omnibal: .*old\.json: the plan has no heaviestLoad.*\[ERR_OMNIBAL_PARSE\]\n$/);
  const given = omnibal([...model, '--from-plan', old, '--memory-gib', '100', '--memory-vision-per-micro-batch', '40', '--memory-text-per-micro-batch', '60000']);
  t.is(given.status, 0, given.stderr);
});

test('partition --from-plan of a plan whose heaviestLoad is present but malformed: exit 2 naming the JSON path and what it holds (not "an older pack"), even with the memory load given', (t) => {
  const text = readFileSync(planFile, 'utf8');
  const cases: [string, string, RegExp][] = [
    ['null', 'null', /: heaviestLoad must be an object \{ tiles, tokens \} \(the plan's heaviest micro-batch\), got null /],
    ['a string', '"40x60000"', /: heaviestLoad must be an object .*, got "40x60000" /],
    ['a list', '[40, 60000]', /: heaviestLoad must be an object .*, got a list /],
    ['a negative', '{"tiles": -1, "tokens": 60000}', /: heaviestLoad\.tiles must be a whole number >= 0, got -1 /],
    ['a fraction', '{"tiles": 40, "tokens": 600.5}', /: heaviestLoad\.tokens must be a whole number >= 0, got 600\.5 /],
    ['infinite', '{"tiles": 40, "tokens": 1e999}', /: heaviestLoad\.tokens must be a whole number >= 0, got Infinity /],
    ['a quoted number', '{"tiles": "40", "tokens": 60000}', /: heaviestLoad\.tiles must be a whole number >= 0, got "40" /],
    ['tokens missing', '{"tiles": 40}', /: heaviestLoad\.tokens is missing /],
  ];
  for (const [what, value, message] of cases) {
    // The plan's own text with its heaviestLoad replaced: the rest of the file is as pack wrote it.
    const edited = text.replace(/"heaviestLoad":\{[^}]*\}/, `"heaviestLoad": ${value}`);
    t.not(edited, text, what);
    const file = path.join(dir, 'malformed.json');
    writeFileSync(file, edited);
    for (const extra of [[], ['--memory-vision-per-micro-batch', '40', '--memory-text-per-micro-batch', '60000']]) {
      const r = omnibal([...model, '--from-plan', file, '--memory-gib', '100', ...extra]);
      t.is(r.status, 2, `${what}: ${r.stderr}`);
      t.regex(r.stderr, message, what);
      t.regex(r.stderr, /^omnibal: [^\n]*malformed\.json: [^\n]*\[ERR_OMNIBAL_PARSE\]\n$/, what);
      t.notRegex(r.stderr, /older/, what);
    }
  }
});

test('partition: a micro-batch load beside --from-plan, or a memory load lighter than the compute load: exit 2 naming both flags', (t) => {
  for (const [args, flags] of [
    [['--from-plan', planFile, '--text-per-micro-batch', '5000'], /--text-per-micro-batch and --from-plan conflict/],
    [['--from-plan', planFile, '--vision-per-micro-batch', '5'], /--vision-per-micro-batch and --from-plan conflict/],
    [['--text-per-micro-batch', '5000', '--memory-text-per-micro-batch', '100'], /--memory-text-per-micro-batch \(100\) is lighter than --text-per-micro-batch \(5000\)/],
    [['--text-per-micro-batch', '5000', '--vision-per-micro-batch', '18', '--memory-vision-per-micro-batch', '2'], /--memory-vision-per-micro-batch \(2\) is lighter than --vision-per-micro-batch \(18\)/],
    [['--from-plan', planFile, '--memory-text-per-micro-batch', '100'], /--memory-text-per-micro-batch \(100\) is lighter than the --from-plan mean/],
  ] as [string[], RegExp][]) {
    const r = omnibal([...model, ...args]);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, flags);
    t.regex(r.stderr, /^omnibal: [^\n]*\[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
  }
});
