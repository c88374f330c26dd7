// The interleaved chunk planner refuses, up front and with a coded error, a problem past its
// work bound (MAX_CHUNK_WORK: model chunks x (layer ranges + 2 x micro-batches x model chunks)),
// from the API, the CLI and `plan`; problems within it still run. Was: 2,000 layers in 32 x 4
// chunks ran past 30 s synchronously. The exact baseline splits (parameters, balanced) have
// their own bound (MAX_SPLIT_ENTRIES; was: 20,000 layers over 32 stages, 51 s).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { baselineStages, partitionChunks, type StageProblem } from '../src/model/index';
import { MAX_SPLIT_ENTRIES } from '../src/model/baselines';
import { MAX_CHUNK_WORK } from '../src/model/chunks';
import { syntheticSamples } from '../src/data/synthetic';
import { planTraining } from '../src/plan/index';
import { cli, nativeTest, sameOnBothBackends, thrown } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-chunk-work-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function layers(n: number, stages: number, virtualStages: number, microBatches: number): StageProblem {
  const f = Float64Array.from({ length: n }, (_, i) => 1 + (i % 7) / 10);
  return {
    forwardMs: f,
    backwardMs: f.map((x) => 2 * x),
    staticBytes: new Float64Array(n).fill(1e6),
    activationBytes: new Float64Array(n).fill(1e6),
    checkpointBytes: new Float64Array(n).fill(1e5),
    stages,
    microBatches,
    memoryBytes: 80e9,
    stageOverheadBytes: 0,
    recompute: 'block',
    schedule: 'interleaved',
    virtualStages,
  };
}

const units = (l: number, k: number, m: number) => k * ((l * (l + 1)) / 2 + 2 * m * k);

test('2,000 layers in 32 x 4 chunks: refused before any work, naming the sizes and the bound', (t) => {
  const e = thrown(() => partitionChunks(layers(2000, 32, 4, 64)));
  t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(
    e.message,
    `layers must be few enough for the interleaved chunk planner (at most 2^24 work units, model chunks x (layer ranges + 2 x micro-batches x model chunks); 2000 layers in 128 model chunks (32 stages x 4 virtual stages) with 64 micro-batches need ${units(2000, 128, 64)}): merge layers into blocks, or use fewer stages, virtual stages or micro-batches`,
  );
  // Micro-batches count too: 97 layers in 96 chunks are within the bound at 32, not at 1,024.
  t.is(thrown(() => partitionChunks(layers(97, 16, 6, 1024))).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.regex(thrown(() => partitionChunks(layers(1e5, 10000, 10, 1 << 20))).message, /100000 layers in 100000 model chunks \(10000 stages x 10 virtual stages\) with 1048576 micro-batches need more\)/);
});

test('the bound is exact: 2^24 work units run, one layer more is refused', (t) => {
  // 2 x (4095 x 4096 / 2 + 2 x 512 x 2) = 2^24.
  t.is(units(4095, 2, 512), MAX_CHUNK_WORK);
  t.true(partitionChunks(layers(4095, 1, 2, 512)).chunks.length === 2);
  t.is(thrown(() => partitionChunks(layers(4096, 1, 2, 512))).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  // Every problem of up to 250 layers with at most 64 micro-batches is within it.
  t.true(units(250, 250, 64) <= MAX_CHUNK_WORK);
});

nativeTest('native and the twin refuse with the same error', (t) => {
  for (const [n, p, v, m] of [
    [2000, 32, 4, 64],
    [4096, 1, 2, 512],
    [97, 16, 6, 1024],
    [1e5, 10000, 10, 1 << 20],
  ]) {
    const d = sameOnBothBackends((api) => api.partitionChunks({ ...layers(n, p, v, m) }));
    t.is(d, null, `${n} layers, ${p} x ${v}, ${m}`);
  }
});

test('omnibal partition --schedule interleaved: exit 2 with one coded line, no stack', (t) => {
  const file = path.join(dir, 'layers.json');
  writeFileSync(file, JSON.stringify({ layers: Array.from({ length: 2000 }, () => ({ forwardMs: 1, backwardMs: 2, staticBytes: 1e7, activationBytes: 1e7, checkpointBytes: 1e6 })) }));
  const r = spawnSync(process.execPath, [cli, 'partition', '--layers', file, '--pp', '32', '--schedule', 'interleaved', '--virtual-stages', '4', '--micro-batches', '64'], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 2, r.stderr);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, r.stderr);
  t.regex(lines[0], /^omnibal: --layers must be few enough for the interleaved chunk planner \(at most 2\^24 work units.*2000 layers in 128 model chunks.* \[ERR_OMNIBAL_OUT_OF_RANGE\]$/);
});

test('plan with an interleaved schedule past the bound: the coded error, from the API and the CLI', (t) => {
  const options = { schedule: 'interleaved' as const, virtualStages: 6, cluster: { gpus: 64, tp: 1, pp: 16, dp: 4 }, accum: 1024, simulatedSteps: 1, samples: syntheticSamples(40000, 0) };
  const e = thrown(() => planTraining(options));
  t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.regex(e.message, /97 layers in 96 model chunks \(16 stages x 6 virtual stages\) with 1024 micro-batches need 19330656/);
  const r = spawnSync(process.execPath, [cli, 'plan', '--schedule', 'interleaved', '--virtual-stages', '6', '--pp', '16', '--accum', '1024', '--synthetic', '40000', '--simulated-steps', '1'], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 2, r.stderr);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, /chunk planner .*\[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/);
});

test('the exact baseline splits refuse past 2^26 (stage, layer range) entries; uniform and anchor always run', (t) => {
  const flat = (n: number): StageProblem => ({ ...layers(n, 32, 1, 64), schedule: '1f1b' });
  t.true(32 * ((2047 * 2048) / 2) <= MAX_SPLIT_ENTRIES);
  t.is(baselineStages(flat(2047), 'parameters', 'none').stages.length, 32);
  for (const method of ['parameters', 'balanced'] as const) {
    const e = thrown(() => baselineStages(flat(2048), method, 'none'));
    t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
    t.is(e.message, `layers must be few enough for the ${method} split's search (at most 2^26 entries, stages x layer ranges; 2048 layers over 32 stages need 67141632): merge layers into blocks, use fewer stages, or the uniform or anchor split`);
  }
  for (const method of ['uniform', 'anchor'] as const) t.is(baselineStages(flat(20000), method, 'none').stages.length, 32);
});

nativeTest('the baseline bound: native and the twin refuse with the same error', (t) => {
  for (const method of ['parameters', 'balanced']) {
    const p = { ...layers(2048, 32, 1, 64), schedule: '1f1b' as const };
    t.is(
      sameOnBothBackends((api) => api.baselineStages(p, p.staticBytes, method, 'none')),
      null,
    );
  }
});
