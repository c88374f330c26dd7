// Flags that contradict each other are refused with one line naming both (exit 2), never
// resolved silently by one of them winning; --search-layout says what a layout given does.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-conflicts-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lengths = path.join(dir, 'lengths.json');
writeFileSync(lengths, JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ vit_num: 1 + (i % 5), token_num: 300 + ((i * 37) % 900) }))));
const layers = path.join(dir, 'layers.json');
const layer = { forwardMs: 1, backwardMs: 2, staticBytes: 1000, activationBytes: 100, checkpointBytes: 10 };
writeFileSync(layers, JSON.stringify({ layers: [layer, layer, layer], memoryBytes: 1e9 }));

test('conflicting flags: exit 2, one coded line naming both', (t) => {
  for (const [args, both] of [
    [['plan', '--global-batch', '256', '--accum', '16'], /--global-batch \(256\) and --accum \(16\) conflict: --accum 16 x dp 8 = 128/],
    [['plan', '--input', lengths, '--synthetic', '5000'], /--input and --synthetic conflict/],
    [['partition', '--layers', layers, '--pp', '2', '--micro-batches', '4', '--frozen', 'vit'], /--frozen and --layers conflict/],
    [['partition', '--layers', layers, '--pp', '2', '--micro-batches', '4', '--no-flash-attention'], /--no-flash-attention and --layers conflict/],
    [['partition', '--layers', layers, '--pp', '2', '--micro-batches', '4', '--grads', 'bf16'], /--grads and --layers conflict/],
  ] as [string[], RegExp][]) {
    const r = omnibal(args);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, both, args.join(' '));
    t.regex(r.stderr, /^omnibal: [^\n]*\[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/, args.join(' '));
  }
});

test('consistent values still run: --global-batch equal to --accum x dp', (t) => {
  const r = omnibal(['plan', '--input', lengths, '--gpus', '8', '--pp', '4', '--global-batch', '4', '--accum', '2', '--memory-gib', '400', '--simulated-steps', '1', '--json']);
  t.is(r.status, 0, r.stderr);
  t.is(JSON.parse(r.stdout).accum, 2);
});

test('--search-layout with a layout given says that the ranking covers every layout and the layout sets the global batch only', (t) => {
  const r = omnibal(['plan', '--search-layout', '--gpus', '8', '--synthetic', '20000', '--accum', '16', '--pp', '4', '--dp', '2', '--simulated-steps', '1', '--json']);
  t.is(r.status, 0, r.stderr);
  t.is(JSON.parse(r.stdout).note, '--search-layout ranks every tp x pp x dp layout of the 8 GPUs; --pp, --dp only set the global batch here (32 micro-batches of 4.5 samples per step)');
  const text = omnibal(['plan', '--search-layout', '--gpus', '8', '--synthetic', '20000', '--accum', '16', '--pp', '4', '--dp', '2', '--simulated-steps', '1']);
  t.is(text.status, 0, text.stderr);
  t.is(text.stdout.split('\n')[1], 'note: --search-layout ranks every tp x pp x dp layout of the 8 GPUs; --pp, --dp only set the global batch here (32 micro-batches of 4.5 samples per step)');
  const quiet = omnibal(['plan', '--search-layout', '--gpus', '8', '--synthetic', '20000', '--simulated-steps', '1', '--json']);
  t.is(quiet.status, 0, quiet.stderr);
  t.false('note' in JSON.parse(quiet.stdout));
});
