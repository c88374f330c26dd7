// `omnibal partition`: JSON and human output (labelled as a prediction), measured layers from a
// file, and exit code 2 with a coded message for bad input.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cli } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-partition-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const base = ['partition', '--model', 'internvl-chat-1.5', '--gpu', 'A100-80G', '--pp', '8', '--dp', '8', '--micro-batches', '32', '--vision-per-micro-batch', '18', '--text-per-micro-batch', '5000', '--samples-per-micro-batch', '4.5'];

test('--json gives stages, objective, baselines and exports, labelled as a prediction', (t) => {
  const r = omnibal([...base, '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.regex(out.prediction.note, /prediction/);
  t.is(out.stages.length, 8);
  for (const key of ['firstLayer', 'lastLayer', 'layerNames', 'recomputeLayers', 'timeMs', 'memoryBytes']) t.true(key in out.stages[0], key);
  t.is(out.stages[0].firstLayer, 0);
  t.is(out.stages[7].lastLayer, 96);
  t.true(out.bottleneckMs >= out.lowerBoundMs);
  for (const [name, b] of Object.entries(out.baselines) as [string, { objectiveMs?: number }][]) {
    if (b.objectiveMs !== undefined) t.true(b.objectiveMs >= out.objectiveMs - 1e-6, name);
  }
  t.true(Array.isArray(out.exports.megatron.args));
  t.deepEqual(out.exports.deepspeed.parts[0], 0);
});

test('the human output is a table that says it is a prediction and states its assumptions', (t) => {
  const r = omnibal(base);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /PREDICTION of the omnibal cost model, assuming:/);
  t.regex(r.stdout, /the 1F1B closed form/);
  t.regex(r.stdout, /weights \/ grads \/ optim \/ acts \/ ckpts \/ fixed GiB/);
  t.regex(r.stdout, /^stage\s+layers/m);
  t.regex(r.stdout, /parameters\+full/);
});

test('measured layers from a file, with a baseline method', (t) => {
  const layers = Array.from({ length: 12 }, (_, i) => ({ name: `l${i}`, forwardMs: 1 + (i % 3), backwardMs: 2 + (i % 3), staticBytes: 1e9, activationBytes: 2e9, checkpointBytes: 1e8 }));
  const file = path.join(dir, 'layers.json');
  writeFileSync(file, JSON.stringify({ layers }));
  const r = omnibal(['partition', '--layers', file, '--pp', '4', '--micro-batches', '8', '--memory-gib', '40', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.is(out.stages.length, 4);
  t.deepEqual(out.stages[0].layerNames.slice(0, 1), ['l0']);
  const uniform = omnibal(['partition', '--layers', file, '--pp', '4', '--micro-batches', '8', '--memory-gib', '40', '--method', 'uniform', '--json']);
  t.deepEqual(JSON.parse(uniform.stdout).stages.map((s: { lastLayer: number }) => s.lastLayer), [2, 5, 8, 11]);
});

test('a prediction from measured layers states the layers file\'s assumptions, not the FLOPs model\'s', (t) => {
  const layers = Array.from({ length: 12 }, (_, i) => ({ forwardMs: 1 + (i % 3), backwardMs: 2 + (i % 3), staticBytes: 1e9, activationBytes: 2e9, checkpointBytes: 1e8 }));
  const file = path.join(dir, 'layers-assumptions.json');
  writeFileSync(file, JSON.stringify({ layers }));
  const modelOnly = /FLOPs|bytes per parameter|autograd saves|network bandwidth/;
  for (const schedule of ['1f1b', 'interleaved']) {
    const args = ['partition', '--layers', file, '--pp', '4', '--micro-batches', '8', '--schedule', schedule];
    const json = omnibal([...args, '--json']);
    t.is(json.status, 0, json.stderr);
    const assumptions: string[] = JSON.parse(json.stdout).prediction.assumptions;
    t.true(assumptions.some((a) => /as the layers file gives them/.test(a)), schedule);
    t.false(assumptions.some((a) => modelOnly.test(a)), `${schedule}: ${assumptions.join(' | ')}`);
    const table = omnibal(args);
    t.is(table.status, 0, table.stderr);
    t.regex(table.stdout, /as the layers file gives them/);
    t.notRegex(table.stdout, modelOnly);
  }
  // A model preset's prediction still states the cost model's.
  t.regex(omnibal(base).stdout, /layer times from FLOPs/);
});

const bad: [string, string[], RegExp][] = [
  ['fewer layers than stages', ['--pp', '200'], /--pp must be at most the 97 layers of internvl-chat-1\.5, got 200 \[ERR_OMNIBAL_OUT_OF_RANGE\]/],
  ['P of 0', ['--pp', '0'], /--pp must be an integer between 1 and 65536, got 0 \[ERR_OMNIBAL_OUT_OF_RANGE\]/],
  ['M of 0', ['--micro-batches', '0'], /--micro-batches must be an integer between 1 and 1048576, got 0/],
  ['C of 0', ['--memory-gib', '0'], /--memory-gib must be a number > 0, got 0/],
  ['no samples per micro-batch', ['--samples-per-micro-batch', '0'], /^omnibal: --samples-per-micro-batch must be a number >= 1, got 0 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
  ['a pp that is not a number', ['--pp', 'x'], /option '--pp <p>' argument 'x' is invalid\. Expected a number; see omnibal partition --help \[ERR_OMNIBAL_INVALID_OPTIONS\]/],
  ['a tp that does not divide the heads', ['--tp', '3'], /omnibal: --tp 3 must divide vit\.heads \(25\).*values up to 16 that do: 1 \[ERR_OMNIBAL_OUT_OF_RANGE\]/],
  ['ZeRO 4', ['--zero', '4'], /--zero must be 0, 1, 2 or 3, got 4/],
  ['an unknown schedule', ['--schedule', 'zb'], /--schedule must be one of gpipe, 1f1b, interleaved/],
  ['an unknown target', ['--target', 'jax'], /--target must be one of none, megatron, deepspeed/],
  ['an unknown gradient precision', ['--grads', 'fp8'], /--grads must be fp32 or bf16/],
  ['an unknown model', ['--model', 'gpt-9'], /unknown model "gpt-9"; known: internvl-chat-1\.5.* \[ERR_OMNIBAL_UNKNOWN_PRESET\]/],
  ['an unknown GPU', ['--gpu', 'V100'], /unknown GPU "V100"; known: A100-80G, H100-80G, H200/],
  ['memory far too small', ['--memory-gib', '1e-300'], /no plan fits in 1\.00e-300 GiB per GPU; the least memory that fits is (\d+\.\d\d) GiB \(rounded up\): --memory-gib \1 /],
  ['memory too small', ['--memory-gib', '16'], /no plan fits in 16\.00 GiB per GPU; the least memory that fits is (\d+\.\d\d) GiB \(rounded up\): --memory-gib \1 \[ERR_OMNIBAL_INFEASIBLE\]/],
  ['an unknown recompute mode', ['--recompute', 'half'], /ERR_OMNIBAL_UNKNOWN_OPTION/],
  ['an unknown method', ['--method', 'magic'], /method must be one of optimal, uniform, parameters, balanced, anchor/],
];

for (const [label, extra, expected] of bad) {
  test(`bad input exits with 2: ${label}`, (t) => {
    const args = base.slice();
    for (let k = 0; k < extra.length; k += 2) {
      const at = args.indexOf(extra[k]);
      if (at >= 0) args[at + 1] = extra[k + 1];
      else args.push(extra[k], extra[k + 1]);
    }
    const r = omnibal(args);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, expected);
  });
}

test('messages name the flag: missing --pp, --model with --layers, overflowing times, a calibration time of 0', (t) => {
  const noPp = base.filter((_, i) => base[i] !== '--pp' && base[i - 1] !== '--pp');
  const a = omnibal(noPp);
  t.is(a.status, 2);
  t.regex(a.stderr, /give --pp \(pipeline stages\) \[ERR_OMNIBAL_INVALID_OPTIONS\]/);
  t.notRegex(a.stderr, /NaN/);
  const layer = { forwardMs: 1, backwardMs: 2, staticBytes: 1, activationBytes: 5, checkpointBytes: 0 };
  const file = path.join(dir, 'two.json');
  writeFileSync(file, JSON.stringify({ layers: [layer, layer] }));
  const both = omnibal([...base, '--layers', file]);
  t.is(both.status, 2);
  t.regex(both.stderr, /--model and --layers conflict/);
  const huge = path.join(dir, 'huge.json');
  writeFileSync(huge, JSON.stringify({ layers: [{ ...layer, forwardMs: 1e308 }, layer] }));
  const h = omnibal(['partition', '--layers', huge, '--pp', '1', '--micro-batches', '4', '--json']);
  t.is(h.status, 2, h.stdout);
  t.regex(h.stderr, /times are too large: the iteration time overflows .* \[ERR_OMNIBAL_OUT_OF_RANGE\]/);
  const cal = path.join(dir, 'cal.json');
  writeFileSync(cal, JSON.stringify({ layers: [{ index: 60, forwardMs: 0 }] }));
  const c = omnibal([...base, '--calibration', cal]);
  t.is(c.status, 2);
  t.regex(c.stderr, /^omnibal: --calibration\.layers\[0\]\.forwardMs is 0 ms, below 0\.001 ms \(1 µs\).* \[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
});

test('flags that size a model preset conflict with --layers; --pp past the model\'s layers names --pp', (t) => {
  const layer = { forwardMs: 1, backwardMs: 2, staticBytes: 1, activationBytes: 5, checkpointBytes: 0 };
  const file = path.join(dir, 'four.json');
  writeFileSync(file, JSON.stringify({ layers: [layer, layer, layer, layer] }));
  const ok = omnibal(['partition', '--layers', file, '--pp', '2', '--micro-batches', '4', '--json']);
  t.is(ok.status, 0, ok.stderr);
  const tp = omnibal(['partition', '--layers', file, '--pp', '2', '--micro-batches', '4', '--tp', '3']);
  t.is(tp.status, 2, tp.stdout);
  t.regex(tp.stderr, /--tp and --layers conflict: it sizes a --model preset.* \[ERR_OMNIBAL_INVALID_OPTIONS\]/);
  const two = omnibal(['partition', '--layers', file, '--pp', '2', '--micro-batches', '4', '--dp', '8', '--text-per-micro-batch', '5000']);
  t.is(two.status, 2, two.stdout);
  t.regex(two.stderr, /--dp, --text-per-micro-batch and --layers conflict/);
  const deep = omnibal([...base.filter((_, i) => base[i] !== '--pp' && base[i - 1] !== '--pp'), '--pp', '100']);
  t.is(deep.status, 2, deep.stdout);
  t.regex(deep.stderr, /--pp must be at most the 97 layers of internvl-chat-1.5, got 100 \[ERR_OMNIBAL_OUT_OF_RANGE\]/);
  t.notRegex(deep.stderr, /--layers/);
});

test('the least memory that fits is rounded up: asking for exactly that much fits', (t) => {
  const r = omnibal([...base, '--memory-gib', '20']);
  t.is(r.status, 2);
  // The flag to give is named, in GiB rounded up (issue 11).
  const gib = /the least memory that fits is (\d+\.\d\d) GiB \(rounded up\): --memory-gib (\d+\.\d\d)/.exec(r.stderr)![2];
  const ok = omnibal([...base, '--memory-gib', gib, '--json']);
  t.is(ok.status, 0, ok.stderr);
  t.true(JSON.parse(ok.stdout).stages.every((s: { memoryBytes: number }) => s.memoryBytes <= Number(gib) * 2 ** 30));
});

test('GPipe that does not fit names the largest --micro-batches that fits, and that fits', (t) => {
  const r = omnibal([...base, '--schedule', 'gpipe']);
  t.is(r.status, 2);
  const m = /the largest accumulation that fits these micro-batches is (\d+) \(--micro-batches \1;/.exec(r.stderr);
  t.truthy(m, r.stderr);
  const ok = omnibal([...base.slice(0, -8), '--schedule', 'gpipe', '--micro-batches', m![1], ...base.slice(-6), '--json']);
  t.is(ok.status, 0, ok.stderr);
  t.true(JSON.parse(ok.stdout).stages.every((s: { inFlight: number; memoryBytes: number }) => s.inFlight === Number(m![1]) && s.memoryBytes <= 80 * 2 ** 30));
});

test('schedules, the Megatron target and exports in the JSON', (t) => {
  const g = omnibal([...base, '--gpu', 'H200', '--schedule', 'gpipe', '--micro-batches', '8', '--json']);
  t.is(g.status, 0, g.stderr);
  const gp = JSON.parse(g.stdout);
  t.deepEqual(gp.stages.map((s: { inFlight: number }) => s.inFlight), [8, 8, 8, 8, 8, 8, 8, 8]);
  t.is(gp.memory.schedule.name, 'gpipe');
  for (const s of gp.stages) {
    const m = s.memory;
    t.true(Math.abs(m.weights + m.gradients + m.optimizer + m.activations + m.checkpoints + m.fixed - s.memoryBytes) < 1e-3 * s.memoryBytes);
  }
  const m = omnibal([...base, '--gpu', 'H200', '--target', 'megatron', '--json']);
  t.is(m.status, 0, m.stderr);
  const out = JSON.parse(m.stdout);
  t.is(out.target.name, 'megatron');
  t.true(out.target.unconstrainedGain >= 0);
  const alts = out.exports.megatron.alternatives as { name: string; argv: string[]; command: string }[];
  t.true(alts.length >= 1);
  for (const a of alts) t.false(a.argv.some((x) => x.startsWith('#')));
  t.regex(out.exports.deepspeed.python, /class OmnibalPipelineModule\(PipelineModule\)/);
  t.regex(out.exports.deepspeed.intervalSemantics, /not mean the first k layers/);
  const human = omnibal([...base, '--gpu', 'H200', '--target', 'megatron']);
  t.regex(human.stdout, /Megatron-LM \(layout\): --pipeline-model-parallel-size 8 --pipeline-model-parallel-layout 'E/);
  t.regex(human.stdout, /the unconstrained optimum \(\d+ ms\) would save/);
});

test('a layers file that does not parse names the file and position; NaN and negatives are refused', (t) => {
  const broken = path.join(dir, 'broken.json');
  writeFileSync(broken, '{ "layers": [ { "forwardMs": 1, } ] }');
  const r = omnibal(['partition', '--layers', broken, '--pp', '1', '--micro-batches', '1']);
  t.is(r.status, 2);
  t.regex(r.stderr, /broken\.json:1:33: the layers file does not parse: a property name in double quotes was expected \[ERR_OMNIBAL_PARSE\]\n$/);
  const neg = path.join(dir, 'neg.json');
  const layer = { forwardMs: 1, backwardMs: 2, staticBytes: 1, activationBytes: -5, checkpointBytes: 0 };
  writeFileSync(neg, JSON.stringify({ layers: [layer, layer] }));
  const n = omnibal(['partition', '--layers', neg, '--pp', '1', '--micro-batches', '1']);
  t.is(n.status, 2);
  t.regex(n.stderr, /layers\[0\]\.activationBytes must be a finite number >= 0, got -5/);
  const nan = path.join(dir, 'nan.json');
  writeFileSync(nan, '{ "layers": [ { "forwardMs": NaN } ] }');
  t.is(omnibal(['partition', '--layers', nan, '--pp', '1', '--micro-batches', '1']).status, 2);
});

test('a calibration file named by a relative path keeps its name in errors; its fields are named under --calibration', (t) => {
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
  writeFileSync(path.join(dir, 'calibration.json'), '{"layers": [');
  writeFileSync(path.join(dir, 'cal.json'), JSON.stringify({ layers: [{ index: 1.5, forwardMs: 1 }] }));
  const tiny = ['--model', 'tiny-vlm', '--gpu', 'cpu'];
  for (const args of [['partition', ...tiny, '--pp', '2', '--micro-batches', '4', '--text-per-micro-batch', '40'], ['plan', ...tiny, '--simulated-steps', '1']]) {
    const broken = run([...args, '--calibration', 'calibration.json']);
    t.is(broken.status, 2, broken.stderr);
    t.regex(broken.stderr, /^omnibal: calibration\.json:1:13: the calibration file does not parse: .* \[ERR_OMNIBAL_PARSE\]\n$/);
    const bad = run([...args, '--calibration', 'cal.json']);
    t.is(bad.status, 2, bad.stderr);
    t.is(bad.stderr, 'omnibal: --calibration.layers[0].index must be integer [ERR_OMNIBAL_INVALID_OPTIONS]\n');
  }
});

test('--schedule interleaved plans v x P model chunks: chunk c on stage c mod P, memory from the per-chunk held counts, a Megatron layout of v x P segments', (t) => {
  const r = omnibal([...base, '--gpu', 'H200', '--pp', '4', '--micro-batches', '16', '--schedule', 'interleaved', '--json']);
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.regex(out.prediction.assumptions.join('\n'), /v x P contiguous model chunks/);
  t.deepEqual(out.memory.schedule, { name: 'interleaved', virtualStages: 2 });
  t.is(out.chunks.length, 8);
  t.deepEqual(
    out.chunks.map((c: { stage: number }) => c.stage),
    [0, 1, 2, 3, 0, 1, 2, 3],
  );
  t.is(out.chunks[0].firstLayer, 0);
  t.is(out.chunks[7].lastLayer, 96);
  for (let c = 1; c < 8; c++) t.is(out.chunks[c].firstLayer, out.chunks[c - 1].lastLayer + 1);
  t.is(out.stages.length, 4);
  for (const s of out.stages) {
    t.true(s.memoryBytes <= 141 * 2 ** 30);
    t.true(Math.abs(s.timeMs - s.chunks.reduce((a: number, c: number) => a + out.chunks[c].timeMs, 0)) < 1e-6);
  }
  t.true(out.objectiveMs >= out.lowerBoundMs);
  t.is(typeof out.optimal, 'boolean');
  // The unconstrained plan puts the LLM embedding after chunk 0: Megatron-LM cannot run it, and says why.
  t.true(out.exports.megatron.unsupported.length > 0);
  t.deepEqual(out.exports.deepspeed.unsupported, ["DeepSpeed's pipeline engine has no interleaved schedule"]);
  const human = omnibal([...base, '--gpu', 'H200', '--pp', '4', '--micro-batches', '16', '--schedule', 'interleaved']);
  t.is(human.status, 0, human.stderr);
  t.regex(human.stdout, /4 stages x 2 model chunks/);
  t.regex(human.stdout, /PREDICTION of the omnibal cost model/);
  t.regex(human.stdout, /held at peak per chunk/);
});

test('--schedule interleaved --target deepspeed is refused with the reason, exit 2; --target megatron plans what Megatron-LM runs', (t) => {
  const r = omnibal([...base, '--schedule', 'interleaved', '--target', 'deepspeed']);
  t.is(r.status, 2);
  t.regex(r.stderr, /^omnibal: --target deepspeed: DeepSpeed's pipeline engine \(PipelineModule with TrainSchedule\) runs one contiguous layer range per stage and has no interleaved \(virtual-stage\) schedule; use --schedule 1f1b or gpipe \[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
  const small = ['partition', '--model', 'internvl-300m-internlm2-7b', '--pp', '2', '--micro-batches', '8', '--vision-per-micro-batch', '18', '--text-per-micro-batch', '5000', '--schedule', 'interleaved'];
  const m = omnibal([...small, '--target', 'megatron', '--json']);
  t.is(m.status, 0, m.stderr);
  const out = JSON.parse(m.stdout);
  t.is(out.target.name, 'megatron');
  // The vision encoder, projector and LLM embedding (layers 0-26) in chunk 0; one recompute setting for every chunk.
  t.true(out.chunks[0].lastLayer >= 26);
  t.deepEqual(out.exports.megatron.unsupported, []);
  t.truthy(out.exports.megatron.alternatives.find((a: { name: string }) => a.name === 'layout'));
  const free = JSON.parse(omnibal([...small, '--json']).stdout);
  t.true(out.objectiveMs >= free.objectiveMs);
  t.true(Math.abs(out.target.unconstrained.objectiveMs - free.objectiveMs) < 1e-6 * free.objectiveMs);
  t.true(free.exports.megatron.unsupported.length > 0, 'the unconstrained chunk plan is not what Megatron-LM runs');
});
