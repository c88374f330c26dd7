// The CLI's error lines say what the user typed and can act on: GiB (not bytes), the range a flag
// takes, an empty value as empty, the flag (not a layer) for a headroom that overflows, what
// `plan` offers for too few samples, a JSON file's line and column (never its content), and an
// unknown command for `help`.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-messages-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const model = ['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '32', '--text-per-micro-batch', '5000', '--vision-per-micro-batch', '18'];
const layersFile = path.join(dir, 'layers.json');
const layer = { forwardMs: 1, backwardMs: 2, staticBytes: 1000, activationBytes: 100, checkpointBytes: 10 };
writeFileSync(layersFile, JSON.stringify({ layers: [layer, layer], memoryBytes: 1e9 }));

test('one coded line per error, in the words of the flags', (t) => {
  for (const [args, line] of [
    [['partition', '--model', 'tiny-vlm', '--gpu', 'cpu', '--pp', '2', '--micro-batches', '4', '--text-per-micro-batch', '40', '--schedule', 'interleaved', '--virtual-stages', '2', '--memory-gib', '0.5'], /^omnibal: no interleaved plan \(2 x 2 chunks\) fits in 0\.50 GiB per GPU .* is [\d.]+ GiB \(rounded up\): --memory-gib [\d.]+ \[ERR_OMNIBAL_INFEASIBLE\]\n$/],
    [['partition', '--layers', layersFile, '--pp', '2', '--micro-batches', '2000000'], /^omnibal: --micro-batches must be an integer between 1 and 1048576, got 2000000 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    [['pack', '--synthetic', '100', '--dp', ''], /^omnibal: option '--dp <n>' argument '' is invalid\. Expected a value, got an empty string; see omnibal pack --help \[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/],
    [[...model, '--headroom', '1e308'], /^omnibal: --headroom must be at most 100 \(a fraction of the activation memory: 0\.1 is 10%\), got 1e\+308 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    [['plan', '--synthetic', '10'], /^omnibal: the samples fill \d+ micro-batches, fewer than one step needs \(dp 8 x accum 32 = 256\): give more samples \(--synthetic N, or more --input files\), a smaller --accum or --global-batch, or fewer ranks \(--dp, --gpus\) \[ERR_OMNIBAL_TOO_FEW_SAMPLES\]\n$/],
    [['help', 'nope'], /^omnibal: help: unknown command "nope": give one of doctor, pack, partition, plan, simulate, serve; see omnibal --help \[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/],
  ] as [string[], RegExp][]) {
    const r = omnibal(args);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, line, args.join(' '));
    t.is(r.stdout, '', args.join(' '));
  }
});

test('a JSON file that does not parse: its name, line and column and what was wrong, never its content', (t) => {
  const csv = path.join(dir, 'lengths.csv');
  writeFileSync(csv, 'vit_num,token_num\n1,300\n');
  const late = path.join(dir, 'late.json');
  writeFileSync(late, '{\n  "layers": [\n    {"forwardMs": 1 "backwardMs": 2}\n  ]\n}\n');
  for (const [args, file, where, what] of [
    [['simulate', '--plan', csv], csv, '1:1', 'plan file'],
    [['partition', '--layers', csv, '--pp', '1', '--micro-batches', '1'], csv, '1:1', 'layers file'],
    [[...model, '--calibration', csv], csv, '1:1', 'calibration file'],
    [['partition', '--layers', late, '--pp', '1', '--micro-batches', '1'], late, '3:21', 'layers file'],
  ] as [string[], string, string, string][]) {
    const r = omnibal(args);
    t.is(r.status, 2, args.join(' '));
    t.true(r.stderr.startsWith(`omnibal: ${file}:${where}: the ${what} does not parse: `), r.stderr);
    t.regex(r.stderr, /\[ERR_OMNIBAL_PARSE\]\n$/);
    t.notRegex(r.stderr, /vit_num|backwardMs|is not valid JSON/, 'no content quoted');
  }
});
