// `omnibal plan --schedule interleaved`: planned in v x P model chunks (partitionChunks), each
// device sized for the heaviest in-flight window of its own data with the schedule's real
// per-chunk held counts; saved with its chunks (validated on load), replayed by `simulate`,
// shown per chunk in the table and the report, exported for Megatron-LM.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { planBatches } from '../src/data/index';
import { capsForTarget } from '../src/data/caps';
import { microBatchLoad } from '../src/data/load';
import { syntheticSamples } from '../src/data/synthetic';
import { resolveGpu, resolveModel, vlmLayers } from '../src/model/index';
import { balanceCostB } from '../src/plan/prepare-model';
import { planTraining, simulateSavedPlan, type TrainingPlan } from '../src/plan/index';
import { searchLayouts } from '../src/plan/layout';
import { chunkInFlight } from '../src/simulate/index';
import { cli, evenChunkEnds, thrown } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-plan-interleaved-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const GIB = 2 ** 30;
const base = ['plan', '--synthetic', '20000', '--simulated-steps', '2', '--schedule', 'interleaved', '--virtual-stages', '2'];
const saved = path.join(dir, 'plan.json');
const report = path.join(dir, 'report.html');
const run = omnibal([...base, '--json', '--out', saved, '--report', report]);

test('--schedule interleaved --virtual-stages 2: every device fits the GPU for the heaviest in-flight window of its own data, with the per-chunk held counts the schedule replays', (t) => {
  t.is(run.status, 0, run.stderr);
  const plan = JSON.parse(run.stdout) as TrainingPlan;
  const { tp, pp, dp } = plan.cluster;
  t.is(plan.chunks!.virtualStages, 2);
  t.is(plan.chunks!.chunks.length, 2 * pp);
  // The plan's own balanced data, rebuilt from its replay settings; its heaviest micro-batch
  // (most tiles, most tokens) bounds every window of in-flight micro-batches of the epoch.
  const samples = syntheticSamples(20000, 0);
  const spec = resolveModel(plan.model);
  const gpu = resolveGpu(plan.gpu);
  const r = plan.replay;
  const batches = planBatches(samples, { dp, accum: plan.accum, samplesPerPack: r.samplesPerPack, seed: r.seed, epoch: r.epoch, costA: 1, costB: balanceCostB(spec, gpu), tail: 'drop' });
  let tiles = 0;
  let tokens = 0;
  for (let k = 0; k < batches.rankOffsets[batches.rankOffsets.length - 1]; k++) {
    const l = microBatchLoad(batches, samples, k);
    tiles = Math.max(tiles, l.tiles);
    tokens = Math.max(tokens, l.tokens);
  }
  // Every epoch packs afresh within the same caps, so the plan is sized for the most of this
  // epoch's heaviest, the caps and every over-cap sample (per component).
  const caps = capsForTarget(samples.vision, samples.text, r.samplesPerPack);
  for (let i = 0; i < samples.text.length; i++) {
    const over = samples.vision[i] > caps.maxVision || samples.text[i] > caps.maxText;
    tiles = Math.max(tiles, over ? samples.vision[i] : 0, caps.maxVision);
    tokens = Math.max(tokens, over ? samples.text[i] : 0, caps.maxText);
  }
  const layers = vlmLayers(spec, gpu, { tp, dp, zero: r.memory!.zero, training: r.memory!.training, load: { tiles, tokens, sumSqLen: tokens * tokens } });
  // One micro-batch of each chunk keeps its recomputed layers' checkpoints and the others' activations.
  const kept = plan.chunks!.chunks.map((c) => {
    let b = 0;
    for (let l = c.firstLayer; l <= c.lastLayer; l++) b += c.recomputeLayers.includes(l) ? layers.checkpointBytes[l] : layers.activationBytes[l];
    return b;
  });
  for (let s = 0; s < pp; s++) {
    const mine = plan.chunks!.chunks.map((c, i) => ({ c, i })).filter(({ c }) => c.stage === s);
    t.deepEqual(mine.map(({ i }) => i), [s, s + pp], 'chunk c runs on stage c mod P');
    let staticBytes = 0;
    for (const { c } of mine) for (let l = c.firstLayer; l <= c.lastLayer; l++) staticBytes += layers.weightBytes[l] + layers.gradientBytes[l] + layers.optimizerBytes[l];
    // The held counts are the schedule's real peak for these chunk bytes (Megatron's interleaved order).
    const peak = chunkInFlight({ schedule: 'interleaved', virtualStages: 2, pp, stage: s, microBatches: plan.accum, chunkBytes: Float64Array.from(mine, ({ i }) => kept[i]) });
    t.deepEqual(Array.from(peak.counts), mine.map(({ c }) => c.held), `stage ${s} held counts`);
    const held = mine.reduce((a, { c, i }) => a + c.held * kept[i], 0);
    const fixed = plan.stages.stages[s].memory.fixed;
    t.true(fixed >= 3 * GIB);
    const need = staticBytes + held + fixed;
    t.true(need <= plan.memoryBytes, `stage ${s}: ${need / GIB} GiB of ${plan.memoryBytes / GIB}`);
    t.true(Math.abs(need - plan.stages.stages[s].memoryBytes) <= 1e-6 * need, `stage ${s}: the plan reports what it needs`);
  }
  // The averaged in-flight count (the old contiguous accounting) would undercount: the first
  // stage holds more micro-batches of its first chunk than of its second.
  t.true(plan.chunks!.chunks[0].held > plan.chunks!.chunks[pp].held);
});

test('simulate --plan replays the saved chunks: the same step and stages; the chunk layout is validated on load', (t) => {
  t.is(run.status, 0, run.stderr);
  const plan = JSON.parse(readFileSync(saved, 'utf8')) as TrainingPlan;
  const again = omnibal(['simulate', '--plan', saved, '--json']);
  t.is(again.status, 0, again.stderr);
  const replay = JSON.parse(again.stdout);
  t.is(replay.stepMs, plan.ablation[plan.ablation.length - 1].stepMs);
  t.deepEqual(replay.stages.stages.map((s: { memoryBytes: number }) => s.memoryBytes), plan.stages.stages.map((s) => s.memoryBytes));
  t.deepEqual(replay.chunks.chunks.map((c: { held: number }) => c.held), plan.chunks!.chunks.map((c) => c.held));
  // Bounds are numbers (not NaN, written as null), each on what its plan bounds: the per-device
  // view's on the bottleneck (as every StagePlan's), the chunk plan's on the iteration time.
  t.false(again.stdout.includes('null'));
  for (const r of [replay, plan]) {
    t.true(Number.isFinite(r.stages.lowerBoundMs) && r.stages.lowerBoundMs > 0 && r.stages.lowerBoundMs <= r.stages.bottleneckMs);
  }
  t.true(Number.isFinite(replay.chunks.lowerBoundMs) && replay.chunks.lowerBoundMs <= replay.chunks.objectiveMs);
  // The replay bounds any chunking (it does not rerun the search); the planner's bound, from the
  // branches its search left, is at least that.
  t.true(replay.chunks.lowerBoundMs <= plan.chunks!.lowerBoundMs * (1 + 1e-12));
  // The plan's iteration time is the simulated step of its chunks, which the replay simulates
  // again from the saved layout (the same figure up to summation order).
  t.true(Math.abs(replay.stages.objectiveMs - plan.stages.objectiveMs) <= 1e-9 * plan.stages.objectiveMs, `${replay.stages.objectiveMs} vs ${plan.stages.objectiveMs}`);
  const human = omnibal(['simulate', '--plan', saved]);
  t.regex(human.stdout, /chunks \(layers\)/);
  // A hand edit: move the cut between chunks 2 and 3 by one layer; the replay prices the new layout.
  const edited = structuredClone(plan);
  const [c2, c3] = [edited.chunks!.chunks[2], edited.chunks!.chunks[3]];
  const moved = c3.recomputeLayers.includes(c3.firstLayer);
  c2.lastLayer += 1;
  c3.firstLayer += 1;
  // Each stage spans its first chunk's first layer to its last chunk's last layer (copied, as its recomputed layers are).
  const pp = edited.cluster.pp;
  edited.stages.stages.forEach((st, s) => {
    st.firstLayer = edited.chunks!.chunks[s].firstLayer;
    st.lastLayer = edited.chunks!.chunks[edited.chunks!.chunks.length - pp + s].lastLayer;
  });
  if (moved) {
    // The layer keeps its recomputation in its new chunk (and stage: both lists are edited).
    c3.recomputeLayers = c3.recomputeLayers.filter((l) => l !== c2.lastLayer);
    c2.recomputeLayers.push(c2.lastLayer);
    edited.stages.stages[3].recomputeLayers = edited.stages.stages[3].recomputeLayers.filter((l) => l !== c2.lastLayer);
    edited.stages.stages[2].recomputeLayers.push(c2.lastLayer);
  }
  const editedFile = path.join(dir, 'edited.json');
  writeFileSync(editedFile, JSON.stringify(edited));
  const e = omnibal(['simulate', '--plan', editedFile, '--json']);
  if (e.status === 0) t.not(JSON.parse(e.stdout).stepMs, replay.stepMs);
  else t.regex(e.stderr, /needs [\d.]+ GiB.*\[ERR_OMNIBAL_INFEASIBLE\]\n$/);
  // Broken layouts: one line naming the field, exit 2.
  const cases: [string, (p: TrainingPlan) => void, RegExp][] = [
    ['a gap', (p) => (p.chunks!.chunks[3].firstLayer += 1), /chunks\.chunks\[3\]\.firstLayer \(\d+\) must follow chunks\.chunks\[2\]\.lastLayer/],
    ['a short last chunk', (p) => (p.chunks!.chunks[15].lastLayer -= 1), /the last chunk must end at layer 96/],
    ['a missing chunk', (p) => p.chunks!.chunks.pop(), /the plan has 15 chunks but virtualStages x pp is 16/],
    ['no chunks', (p) => delete p.chunks, /chunks\.chunks must be the list of the v x P model chunks/],
    ['a recomputed layer out of its chunk', (p) => p.chunks!.chunks[1].recomputeLayers.push(p.chunks!.chunks[1].lastLayer + 1), /chunks\.chunks\[1\]\.recomputeLayers\[\d+\] = \d+ is not a layer of chunk 1/],
    ['a chunk on the wrong stage', (p) => (p.chunks!.chunks[9].stage = 0), /chunks\.chunks\[9\]\.stage must be 1/],
    ['a stage edit not copied to its chunks', (p) => p.stages.stages[0].recomputeLayers.pop(), /stages\[0\]\.recomputeLayers must list its chunks' recomputed layers/],
    ['a stage cut not copied to its chunks', (p) => ((p.stages.stages[0].lastLayer += 1), (p.stages.stages[1].firstLayer += 1)), /stages\[0\] must span \d+-\d+ \(its first chunk's first layer to its last chunk's last layer\), got \d+-\d+/],
    ['a stage span that is not a number', (p) => ((p.stages.stages[2] as { firstLayer: unknown }).firstLayer = 'x'), /stages\[2\] must span \d+-\d+ .*got "x"-\d+/],
    ['chunks on a 1F1B plan', (p) => (p.replay.schedule = '1f1b'), /chunks is for an interleaved plan/],
    ['chunks of another virtual-stage count', (p) => (p.chunks!.virtualStages = 3), /chunks\.virtualStages \(3\) must equal replay\.virtualStages \(2\)/],
  ];
  for (const [name, edit, message] of cases) {
    const p = structuredClone(plan);
    edit(p);
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify(p));
    const r = omnibal(['simulate', '--plan', file]);
    t.is(r.status, 2, name);
    t.regex(r.stderr, new RegExp(`^omnibal: plan: ${message.source}.*\\[ERR_OMNIBAL_INVALID_OPTIONS\\]\\n$`), name);
  }
});

test('the planned chunks replay on their data no slower than Megatron-LM\'s uniform chunking with the least --recompute-num-layers that fits', (t) => {
  t.is(run.status, 0, run.stderr);
  const plan = JSON.parse(readFileSync(saved, 'utf8')) as TrainingPlan;
  const samples = syntheticSamples(20000, 0);
  const mine = simulateSavedPlan(plan, samples);
  t.is(mine.stepMs, plan.ablation[plan.ablation.length - 1].stepMs);
  // Megatron's layout: the layers spread evenly over the v x P chunks, each chunk recomputing its
  // first k layers; the least k whose every stage fits (the replay refuses what does not).
  const pp = plan.cluster.pp;
  const chunks = plan.chunks!.chunks;
  const K = chunks.length;
  const L = chunks[K - 1].lastLayer + 1;
  const ends = evenChunkEnds(L, K);
  let uniform: number | undefined;
  for (let k = 0; uniform === undefined && k <= Math.ceil(L / K); k++) {
    const edited = structuredClone(plan);
    edited.chunks!.chunks.forEach((c, i) => {
      c.firstLayer = i === 0 ? 0 : ends[i - 1] + 1;
      c.lastLayer = ends[i];
      c.recomputeLayers = Array.from({ length: Math.min(k, c.lastLayer - c.firstLayer + 1) }, (_, j) => c.firstLayer + j);
      c.selectiveLayers = [];
    });
    edited.stages.stages.forEach((st, s) => {
      const own = edited.chunks!.chunks.filter((_, i) => i % pp === s);
      st.firstLayer = own[0].firstLayer;
      st.lastLayer = own[own.length - 1].lastLayer;
      st.recomputeLayers = own.flatMap((c) => c.recomputeLayers);
      st.selectiveLayers = [];
    });
    try {
      uniform = simulateSavedPlan(edited, samples).stepMs;
    } catch (error) {
      t.is((error as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE', (error as Error).message);
    }
  }
  t.not(uniform, undefined, 'some k fits');
  t.true(mine.stepMs <= uniform!, `${mine.stepMs} vs ${uniform}`);
  t.log(`replayed step: planned chunks ${mine.stepMs.toFixed(0)} ms, Megatron uniform chunks ${uniform!.toFixed(0)} ms`);
});

test('the table and the report show each stage\'s chunks; the plan exports the chunks for Megatron-LM as partition does', (t) => {
  t.is(run.status, 0, run.stderr);
  const plan = JSON.parse(run.stdout) as TrainingPlan;
  const human = omnibal(base);
  t.is(human.status, 0, human.stderr);
  t.regex(human.stdout, /chunks \(layers\).*held at peak per chunk/);
  const c0 = plan.chunks!.chunks[0];
  const c8 = plan.chunks!.chunks[8];
  t.regex(human.stdout, new RegExp(`\\n +0 +${c0.firstLayer}-${c0.lastLayer}, ${c8.firstLayer}-${c8.lastLayer} `));
  t.regex(human.stdout, /interleaved: 2 x 8 model chunks, chunk c on stage c mod 8/);
  t.regex(human.stdout, /Megatron-LM/);
  const html = readFileSync(report, 'utf8');
  t.regex(html, /<th>chunks \(layers\)<\/th>/);
  t.true(html.includes(`<td>0</td><td>${c0.firstLayer}-${c0.lastLayer}, ${c8.firstLayer}-${c8.lastLayer}</td>`));
  // The export is a function of the chunks: what partition --schedule interleaved emits for them.
  t.true(Array.isArray(plan.chunks!.megatron.alternatives));
  t.true(plan.chunks!.megatron.alternatives.length > 0 || plan.chunks!.megatron.unsupported.length > 0);
});

test('when no chunk plan fits, the error names the least memory that does, rounded up to 0.01 GiB, with the flag; that much fits and 0.01 GiB less does not', (t) => {
  const o = { samples: syntheticSamples(20000, 0), simulatedSteps: 1, schedule: 'interleaved' as const, virtualStages: 2, ablation: false };
  const e = thrown(() => planTraining({ ...o, memoryBytes: 30 * GIB }));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  const m = /the least memory per GPU at which the interleaved search finds a plan is (\d+) bytes \((\d+\.\d\d) GiB, rounded up\): --memory-gib (\d+\.\d\d)$/.exec(e.message);
  t.truthy(m, e.message);
  const gib = Number(m![2]);
  t.is(m![3], m![2]);
  t.true(Number(m![1]) >= gib * GIB - 1 && Number(m![1]) <= gib * GIB + 1);
  const plan = planTraining({ ...o, memoryBytes: gib * GIB });
  for (const s of plan.stages.stages) t.true(s.memoryBytes <= gib * GIB);
  t.is(thrown(() => planTraining({ ...o, memoryBytes: (gib - 0.01) * GIB })).code, 'ERR_OMNIBAL_INFEASIBLE');
});

test('the layout search ranks interleaved layouts by their chunk plans, as planning each from scratch does', (t) => {
  const options = { gpus: 16, globalBatchSamples: 144, samples: syntheticSamples(20000, 1), tps: [1], pps: [4], samplesPerPacks: [2.25, 4.5], simulatedSteps: 1, schedule: 'interleaved' as const, virtualStages: 2 };
  const ranked = searchLayouts(options);
  const fits = ranked.filter((c) => c.gpuHours !== undefined);
  t.true(fits.length > 0);
  t.deepEqual(ranked, searchLayouts({ ...options, exhaustive: true }));
  // The best layout's step is its chunk plan's, simulated with each chunk's own time.
  const best = fits[0];
  // The plan options only: planTraining refuses the search's own keys (gpus, tps, ...).
  const { samples, simulatedSteps, schedule, virtualStages } = options;
  const plan = planTraining({ samples, simulatedSteps, schedule, virtualStages, cluster: { gpus: 16, tp: best.tp, pp: best.pp, dp: best.dp }, accum: best.accum, samplesPerPack: best.samplesPerPack, ablation: false });
  t.is(plan.chunks!.chunks.length, 2 * best.pp);
  t.true(Math.abs(plan.ablation[0].stepMs / best.stepMs! - 1) < 1e-9, `${plan.ablation[0].stepMs} vs ${best.stepMs}`);
});

test('--search-layout with --schedule interleaved and --target deepspeed is refused once, exit 2 (was: every layout listed as "does not fit", exit 0)', (t) => {
  const options = { gpus: 16, globalBatchSamples: 144, samples: syntheticSamples(2000, 1), tps: [1], pps: [4], samplesPerPacks: [4.5], simulatedSteps: 1, schedule: 'interleaved' as const, virtualStages: 2, target: 'deepspeed' as const };
  const e = t.throws(() => searchLayouts(options)) as { code?: string; message: string };
  t.is(e.code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  t.regex(e.message, /--target deepspeed: DeepSpeed's pipeline engine .* has no interleaved/);
  const r = omnibal(['plan', '--search-layout', '--synthetic', '2000', '--schedule', 'interleaved', '--virtual-stages', '2', '--target', 'deepspeed']);
  t.is(r.status, 2);
  t.regex(r.stderr, /^omnibal: --target deepspeed: .*\[ERR_OMNIBAL_INVALID_OPTIONS\]\n$/);
});

test('--schedule interleaved with one virtual stage is refused (Megatron-LM runs one chunk per device as 1F1B), in plan and partition', (t) => {
  for (const args of [
    ['plan', '--synthetic', '2000', '--simulated-steps', '1', '--schedule', 'interleaved', '--virtual-stages', '1'],
    ['partition', '--pp', '8', '--micro-batches', '32', '--schedule', 'interleaved', '--virtual-stages', '1'],
  ]) {
    const r = omnibal(args);
    t.is(r.status, 2, r.stderr);
    t.regex(r.stderr, /virtual.stages.*1f1b.*ERR_OMNIBAL_INVALID_OPTIONS|ERR_OMNIBAL_INVALID_OPTIONS.*1f1b/s);
    t.notRegex(r.stderr, /\n\s+at /);
  }
});
