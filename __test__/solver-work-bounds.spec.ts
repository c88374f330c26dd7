// The interleaved chunk planner refuses, up front and with a coded error, a problem past its
// work bound (MAX_CHUNK_WORK: model chunks x (layer ranges + 2 x micro-batches x model chunks)),
// from the API, the CLI and `plan`; problems within it still run. Was: 2,000 layers in 32 x 4
// chunks ran past 30 s synchronously. The exact baseline splits (parameters, balanced) have
// their own bound (MAX_SPLIT_ENTRIES; was: 20,000 layers over 32 stages, 51 s). The searches
// around the chunk planner (partitionChunksForTarget: one run per Megatron-LM recompute setting;
// the least-memory bisection) spend at most the same bound over all their runs. Was: 200 layers
// in 64 x 2 chunks under --target megatron, 75 runs of 4.7 M units, past 5 minutes.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { baselineStages, partitionChunks, vlmStageProblem, type StageProblem } from '../src/model/index';
import { MAX_SPLIT_ENTRIES } from '../src/model/baselines';
import { chunksWithMemoryHint, MAX_CHUNK_SEARCH_WORK, partitionChunksForTarget } from '../src/model/chunk-target';
import { chunkWorkUnits, MAX_CHUNK_WORK } from '../src/model/chunks';
import { megatronFirstStageLayers, megatronSettings, withSetting } from '../src/model/target';
import { syntheticSamples } from '../src/data/synthetic';
import { planTraining } from '../src/plan/index';
import { cli, farOverMemory, nativeTest, sameOnBothBackends, thrown } from './helpers';

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

const GIB = 2 ** 30;

test('--target megatron: a search whose planner runs pass 2^26 units in all is refused before any run, naming the runs', (t) => {
  // 200 layers in 64 x 2 chunks, M 64: 4,669,952 units a run (within the planner's own bound), 74
  // recompute settings and the unconstrained plan: 75 runs. Was: past 5 minutes (one run 7 s).
  const started = performance.now();
  const e = thrown(() => partitionChunksForTarget(layers(200, 64, 2, 64), 'megatron'));
  t.true(performance.now() - started < 1000);
  t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(units(200, 128, 64), chunkWorkUnits(200, 128, 64));
  t.is(
    e.message,
    `layers must be few enough for the Megatron-LM target's interleaved search (at most 2^26 work units over its chunk planner runs, runs x model chunks x (layer ranges + 2 x micro-batches x model chunks); 200 layers in 128 model chunks (64 stages x 2 virtual stages) with 64 micro-batches, 75 runs (74 recompute settings and the unconstrained plan) of 4669952 units need ${75 * units(200, 128, 64)}): merge layers into blocks, use fewer stages, virtual stages or micro-batches, or plan with target none (--target none: one run)`,
  );
});

test('--target megatron within the bound still plans: InternVL-Chat-1.5 PP 8 v 4 (40 runs of 217,632 units; 98 before the counts a chunk cannot hold were dropped)', (t) => {
  const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load: { tiles: 18, tokens: 5000 }, schedule: 'interleaved', virtualStages: 4 });
  const roomy = { ...p, memoryBytes: 240 * GIB };
  const constrained = { ...roomy, firstStageMinLayers: megatronFirstStageLayers(roomy) };
  const settings = megatronSettings(constrained, 'block', 32);
  t.is(settings.length, 39);
  t.true(40 * chunkWorkUnits(97, 32, 32) <= MAX_CHUNK_SEARCH_WORK);
  const r = partitionChunksForTarget(roomy, 'megatron');
  t.true(r.plan.stages.every((s) => s.memoryBytes <= roomy.memoryBytes));
  t.true(r.plan.chunks[0].lastLayer >= 47);
  // A chunk holds at most 19 decoder layers here (the first pins 48 layers, 31 others need one
  // each): every larger --recompute-num-layers count recomputes the same, so plans the same.
  const last = settings[settings.length - 1];
  t.deepEqual(last, { recompute: 'uniform', uniformLayers: 19, recomputeVision: true });
  const at = (k: number) => partitionChunks(withSetting(constrained, { ...last, uniformLayers: k }));
  const k19 = at(19);
  for (const k of [20, 48]) t.deepEqual(at(k), k19, `k ${k}`);
});

test('--target megatron at PP 8 v 2 with 1,024 micro-batches runs (72 runs of about 600k units: within the search bound, over one run\'s)', (t) => {
  const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 1024, load: { tiles: 18, tokens: 5000 }, schedule: 'interleaved', virtualStages: 2 });
  const constrained = { ...p, firstStageMinLayers: megatronFirstStageLayers(p) };
  const runs = megatronSettings(constrained, 'block', 16).length + 1;
  const need = runs * chunkWorkUnits(97, 16, 1024);
  t.true(need > MAX_CHUNK_WORK && need <= MAX_CHUNK_SEARCH_WORK, `${runs} runs, ${need} units`);
  // It searches (here nothing fits at 80 GiB, and the hint names the least memory that does).
  const e = thrown(() => partitionChunksForTarget(p, 'megatron'));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE', e.message);
  t.regex(e.message, /the least memory per GPU at which the interleaved search finds a plan is \d+ bytes \([\d.]+ GiB, rounded up\)/);
});

test('the least-memory bisection stops at the work bound and says what it found', (t) => {
  // 8 layers, 4 x 2 chunks, M 8: 1,312 units a run; over 200 GiB needed at 1 GiB.
  const p = farOverMemory();
  const run = chunkWorkUnits(8, 8, 8);
  t.is(run, 1312);
  const hint = (runs: number) => thrown(() => chunksWithMemoryHint(p, partitionChunks, runs * run)).message.replace(/^.*?per GPU with the recomputation the mode allows/, '');
  const stopped = `the bisection stopped at the work bound (at most 2^26 work units over the planner's runs; each run of ${run} units)`;
  // Room for the planner's own run only.
  t.is(hint(1), `; every chunking fits at 864.00 GiB per GPU (--memory-gib 864.00); the least memory that fits was not searched: ${stopped}`);
  // Three more runs: 1.01, 2.02 and 4.04 GiB do not fit.
  t.is(hint(4), `; none either at 4.04 GiB per GPU, every chunking fits at 864.00 GiB per GPU (--memory-gib 864.00): ${stopped}`);
  // Ten: the doubling's ninth run fits at 258.56 GiB, 129.28 did not; no run left to narrow it.
  t.is(hint(10), `; the interleaved search finds a plan at 258.56 GiB per GPU (--memory-gib 258.56) and none at 129.28 GiB: ${stopped}`);
  // Unbounded (the default budget is ample here): the least, between the two, as before.
  const least = /--memory-gib (\d+\.\d\d)$/.exec(thrown(() => chunksWithMemoryHint(p)).message);
  t.is(least?.[1], '202.75');
});

test('omnibal partition --target megatron past the search bound: exit 2 with one coded line, at once', (t) => {
  const file = path.join(dir, 'layers-200.json');
  writeFileSync(file, JSON.stringify({ layers: Array.from({ length: 200 }, () => ({ forwardMs: 1, backwardMs: 2, staticBytes: 1e7, activationBytes: 1e7, checkpointBytes: 1e6 })) }));
  const args = [cli, 'partition', '--layers', file, '--pp', '64', '--schedule', 'interleaved', '--virtual-stages', '2', '--micro-batches', '64', '--target', 'megatron'];
  const started = performance.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
  t.true(performance.now() - started < 10_000);
  t.is(r.status, 2, r.stderr);
  t.is(r.stdout, '');
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, /^omnibal: --layers must be few enough for the Megatron-LM target's interleaved search \(.*75 runs \(74 recompute settings and the unconstrained plan\) of 4669952 units need 350246400\).* \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/);
});
