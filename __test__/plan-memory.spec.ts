// `omnibal plan` / planTraining take the memory options `omnibal partition` takes (--memory-gib,
// --headroom, --grads, --zero, --frozen, --no-flash-attention, --target) into the stage problem
// of the plan and of its ablation, check them with the same words, and keep them for `simulate`.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { planTraining, type TrainingPlan } from '../src/plan/index';
import { syntheticSamples } from '../src/data/synthetic';
import { capsForTarget } from '../src/data/caps';
import { planBatches } from '../src/data/index';
import { anyEpochHeaviestLoad, heaviestMicroBatchLoad } from '../src/model/memory-load';
import { cli, thrown } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-plan-memory-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const samples = syntheticSamples(20_000, 3);
const GIB = 2 ** 30;
const sum = (p: TrainingPlan, k: 'gradients' | 'optimizer' | 'weights') => p.stages.stages.reduce((a, s) => a + s.memory[k], 0);
const fixed = { samples, simulatedSteps: 2 };

test('planTraining: gradient precision, ZeRO and frozen modules reach the stages and the ablation', (t) => {
  const base = planTraining(fixed);
  const bf16 = planTraining({ ...fixed, training: { grads: 'bf16' } });
  // Every layer is on some stage: the stages' gradients sum to the model's, halved by bf16.
  t.true(Math.abs(sum(bf16, 'gradients') - sum(base, 'gradients') / 2) < 1e-6 * sum(base, 'gradients'));
  t.is(sum(bf16, 'weights'), sum(base, 'weights'));
  t.is(bf16.replay.memory?.training.grads, 'bf16');
  // ZeRO-3 shards gradients over dp 8 (ZeRO-1 already shards the optimizer).
  const zero3 = planTraining({ ...fixed, zero: 3 });
  t.true(Math.abs(sum(zero3, 'gradients') - sum(base, 'gradients') / 8) < 1e-6 * sum(base, 'gradients'));
  // A frozen ViT has no gradients, optimizer state or backward: less memory and faster steps in every row.
  const frozen = planTraining({ ...fixed, training: { frozenVit: true } });
  t.true(sum(frozen, 'gradients') < sum(base, 'gradients'));
  t.true(sum(frozen, 'optimizer') < sum(base, 'optimizer'));
  frozen.ablation.forEach((r, i) => t.true(r.stepMs < base.ablation[i].stepMs, r.name));
});

test('planTraining: memoryBytes and headroom size the stages; too little memory names the least, rounded up', (t) => {
  const base = planTraining(fixed);
  const small = planTraining({ ...fixed, memoryBytes: 60 * GIB });
  t.is(small.memoryBytes, 60 * GIB);
  for (const s of small.stages.stages) t.true(s.memoryBytes <= 60 * GIB);
  const recomputed = (p: TrainingPlan) => p.stages.stages.reduce((a, s) => a + s.recomputeLayers.length, 0);
  t.true(recomputed(small) > recomputed(base), 'less memory: more layers recomputed');
  const roomy = planTraining({ ...fixed, headroom: 0.5 });
  t.true(roomy.stages.stages[0].memory.activations + roomy.stages.stages[0].memory.checkpoints > 0);
  t.true(recomputed(roomy) > recomputed(base), 'headroom: more layers recomputed');
  const e = thrown(() => planTraining({ ...fixed, memoryBytes: 20 * GIB }));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  t.regex(e.message, /least memory that fits is \d+ bytes \([\d.]+ GiB, rounded up\)/);
  for (const [o, code] of [
    [{ zero: 9 }, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ memoryBytes: -1 }, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ headroom: Number.NaN }, 'ERR_OMNIBAL_OUT_OF_RANGE'],
    [{ training: { grads: 'fp16' } }, 'ERR_OMNIBAL_UNKNOWN_OPTION'],
    [{ target: 'jax' }, 'ERR_OMNIBAL_UNKNOWN_OPTION'],
  ] as [Parameters<typeof planTraining>[0], string][]) {
    t.is(thrown(() => planTraining({ ...fixed, ...o })).code, code, JSON.stringify(o));
  }
});

test('planTraining: --target megatron keeps the vision encoder, projector and embedding on stage 0', (t) => {
  const o = { ...fixed, model: 'internvl-300m-internlm2-7b', gpu: 'H200' };
  const free = planTraining(o);
  const megatron = planTraining({ ...o, target: 'megatron' });
  const embed = megatron.stages.stages[0].layerNames.indexOf('llm.embed');
  t.true(embed >= 0, 'the LLM embedding is on stage 0');
  t.is(free.stages.stages[0].layerNames.indexOf('llm.embed'), -1, 'the unconstrained optimum cuts before the embedding');
  t.true(megatron.ablation[megatron.ablation.length - 1].stepMs >= free.ablation[free.ablation.length - 1].stepMs);
  t.is(megatron.replay.memory?.target, 'megatron');
});

test('omnibal plan: the memory flags reach --json and simulate; bad values exit 2 naming the flag', (t) => {
  const base = ['plan', '--synthetic', '20000', '--simulated-steps', '2'];
  const fp32 = JSON.parse(omnibal([...base, '--json']).stdout) as TrainingPlan;
  const saved = path.join(dir, 'bf16.json');
  const r = omnibal([...base, '--json', '--grads', 'bf16', '--memory-gib', '60', '--out', saved]);
  t.is(r.status, 0, r.stderr);
  const bf16 = JSON.parse(r.stdout) as TrainingPlan;
  t.true(Math.abs(sum(bf16, 'gradients') - sum(fp32, 'gradients') / 2) < 1e-6 * sum(fp32, 'gradients'));
  t.is(bf16.memoryBytes, 60 * GIB);
  for (const s of bf16.stages.stages) t.true(s.memoryBytes <= 60 * GIB);
  // simulate re-plans under the saved settings: the same stages and step.
  const again = omnibal(['simulate', '--plan', saved, '--json']);
  t.is(again.status, 0, again.stderr);
  const replay = JSON.parse(again.stdout);
  t.deepEqual(replay.stages.stages.map((s: { memory: unknown }) => s.memory), bf16.stages.stages.map((s) => s.memory));
  t.is(replay.stepMs, bf16.ablation[bf16.ablation.length - 1].stepMs);
  // Too little memory: one line naming the least memory, rounded up, and the flag to give.
  const tight = omnibal([...base, '--memory-gib', '20']);
  t.is(tight.status, 2);
  t.regex(tight.stderr, /^omnibal: no plan fits in 20\.00 GiB per GPU; the least memory that fits is ([\d.]+) GiB \(rounded up\): --memory-gib \1 \[ERR_OMNIBAL_INFEASIBLE\]\n$/);
  for (const [flags, message] of [
    [['--zero', '9'], /^omnibal: --zero must be 0, 1, 2 or 3, got 9 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    [['--grads', 'fp16'], /^omnibal: --grads must be fp32 or bf16, got "fp16" \[ERR_OMNIBAL_UNKNOWN_OPTION\]\n$/],
    [['--frozen', 'projector'], /^omnibal: --frozen must be vit or llm, got "projector" \[ERR_OMNIBAL_UNKNOWN_OPTION\]\n$/],
    [['--memory-gib', '0'], /^omnibal: --memory-gib must be a number > 0, got 0 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    // Finite in GiB but not in bytes: named as typed, not as "Infinity".
    [['--memory-gib', '1e308'], /^omnibal: --memory-gib must be below 2\^994 \(its bytes must be a finite number\), got 1e\+308 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    [['--headroom', '-1'], /^omnibal: --headroom must be a number >= 0, got -1 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/],
    [['--target', 'jax'], /^omnibal: --target must be one of none, megatron, deepspeed, got "jax" \[ERR_OMNIBAL_UNKNOWN_OPTION\]\n$/],
  ] as [string[], RegExp][]) {
    const bad = omnibal([...base, ...flags]);
    t.is(bad.status, 2, flags.join(' '));
    t.regex(bad.stderr, message, flags.join(' '));
  }
});

test('a tp that does not divide the heads names --tp once', (t) => {
  for (const args of [
    ['plan', '--synthetic', '2000', '--tp', '2'],
    ['partition', '--model', 'internvl-chat-1.5', '--pp', '8', '--micro-batches', '16', '--text-per-micro-batch', '4096', '--tp', '3'],
  ]) {
    const r = omnibal(args);
    t.is(r.status, 2, args[0]);
    t.regex(r.stderr, /^omnibal: --tp \d must divide vit\.heads \(25\) and every head, key\/value head and FFN count it splits; values up to 16 that do: 1 \[ERR_OMNIBAL_OUT_OF_RANGE\]\n$/, args[0]);
  }
});

test('GPipe on the default A100-80G: no split fits 32 micro-batches in flight; the error names the largest accumulation, which fits', (t) => {
  // Synthetic samples, so this holds without the data files; the default run has 1.2M of them.
  const e = thrown(() => planTraining({ ...fixed, schedule: 'gpipe', ablation: false }));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  const m = /the largest accumulation that fits these micro-batches is (\d+) \(--accum \1;/.exec(e.message);
  t.truthy(m, e.message);
  const accum = Number(m![1]);
  t.true(accum >= 1 && accum < 32);
  const plan = planTraining({ ...fixed, schedule: 'gpipe', accum, ablation: false });
  for (const s of plan.stages.stages) {
    t.is(s.inFlight, accum);
    t.true(s.memoryBytes <= 80 * GIB);
  }
});

test('an interleaved plan says it is planned in v x P model chunks and carries them; 1F1B does not', (t) => {
  const plan = planTraining({ ...fixed, schedule: 'interleaved', virtualStages: 2, ablation: false });
  t.true(plan.assumptions.some((a) => /^interleaved: the layers cut into v x P contiguous model chunks.*partitionChunks/.test(a)));
  t.is(plan.chunks?.chunks.length, 16);
  const one = planTraining({ ...fixed, ablation: false });
  t.false(one.assumptions.some((a) => a.startsWith('interleaved')));
  t.is(one.chunks, undefined);
});

test('planTraining sizes the balanced rows for the heaviest micro-batch of ANY epoch, not only its own (a later epoch used to pack a heavier one: OOM after a "fits")', (t) => {
  const s = syntheticSamples(20_000, 3);
  const vision = Uint32Array.from(s.vision);
  const text = Uint32Array.from(s.text);
  // Two outliers over the caps, fewer than a step: one long text, one many-tile.
  vision[100] = 1;
  text[100] = 60_000;
  vision[200] = 30;
  text[200] = 2_000;
  const skewed = { vision, text };
  const b = 4.5;
  const caps = capsForTarget(vision, text, b);
  t.true(text[100] > caps.maxText && vision[200] > caps.maxVision);
  const bound = anyEpochHeaviestLoad(planBatches(skewed, { dp: 2, accum: 8, samplesPerPack: b, seed: 3 }), skewed, caps);
  t.true(bound.tiles >= 30 && bound.tokens >= 60_000 && bound.tiles >= caps.maxVision && bound.tokens >= caps.maxText);
  for (let epoch = 0; epoch < 8; epoch++) {
    for (const tail of ['drop', 'pad', 'keep-partial'] as const) {
      const here = heaviestMicroBatchLoad(planBatches(skewed, { dp: 2, accum: 8, samplesPerPack: b, seed: 3, epoch, tail }), skewed);
      t.true(here.tiles <= bound.tiles && here.tokens <= bound.tokens && (here.sumSqLen ?? 0) <= (bound.sumSqLen ?? 0), `epoch ${epoch} ${tail}`);
    }
  }
  // The plan is sized for that bound whatever its epoch: every epoch's full plan fits the same heaviest micro-batch.
  const plan = (epoch: number, memoryBytes = 160 * GIB) =>
    planTraining({ samples: skewed, simulatedSteps: 2, epoch, cluster: { gpus: 8, tp: 1, pp: 4, dp: 2 }, accum: 8, seed: 3, ablation: false, memoryBytes });
  // On 80 GiB the 60k-token micro-batch does not fit: said up front, not found by an OOM.
  t.is(thrown(() => plan(0, 80 * GIB)).code, 'ERR_OMNIBAL_INFEASIBLE');
  const activations = (p: TrainingPlan) => p.stages.stages.map((x) => x.memory.activations + x.memory.checkpoints);
  const [e0, e3] = [plan(0), plan(3)];
  t.true(e0.assumptions.some((a) => a.includes('heaviest micro-batch of any epoch')));
  t.true(activations(e0)[0] > 0 && activations(e3)[0] > 0);
  t.deepEqual(e0.stages.stages.map((x) => x.lastLayer), e3.stages.stages.map((x) => x.lastLayer), 'the same split: sized for the same heaviest load');
});

test('omnibal plan says when its balanced plan leaves over 1% of the samples in the dropped tail (stderr and --json warnings), as pack does', (t) => {
  const r = omnibal(['plan', '--synthetic', '18318', '--gpus', '16', '--pp', '4', '--simulated-steps', '2', '--json']);
  t.is(r.status, 0, r.stderr);
  const warning = /^omnibal: warning: balanced: (\d+) of 18318 samples \([\d.]+%\) are in the dropped tail/m.exec(r.stderr);
  t.truthy(warning, r.stderr);
  const doc = JSON.parse(r.stdout) as TrainingPlan;
  t.true(doc.warnings?.some((w) => w.includes(`${warning![1]} of 18318 samples`)));
  // Planned + dropped = the input: the warning counts what the plan really left out.
  const planned = doc.ablation.at(-1)!.steps * doc.figures.samplesPerStep;
  t.true(planned + Number(warning![1]) <= 18318 + doc.figures.samplesPerStep);
  // Under 1% left out: no warning.
  const quiet = omnibal(['plan', '--synthetic', '20000', '--gpus', '8', '--pp', '4', '--accum', '4', '--simulated-steps', '2', '--memory-gib', '96']);
  t.is(quiet.status, 0, quiet.stderr);
  t.notRegex(quiet.stderr, /dropped tail/);
});

// One sample over the packing caps (a micro-batch of its own) sets the any-epoch memory bound:
// when nothing then fits, the error says which component it raises, how many such samples there
// are, the largest, whether the plan fits without them, and the fix (was: only the least memory).
const outlierRun = { simulatedSteps: 2, cluster: { gpus: 16, tp: 1, pp: 4, dp: 4 }, accum: 8, seed: 3, ablation: false, memoryBytes: 80 * GIB };
const withOutliers = (edit: (vision: Uint32Array, text: Uint32Array) => void) => {
  const vision = Uint32Array.from(samples.vision);
  const text = Uint32Array.from(samples.text);
  edit(vision, text);
  return { vision, text };
};
const fullest = (p: TrainingPlan) => Math.max(...p.stages.stages.map((x) => x.memoryBytes));

test('INFEASIBLE because of one 60k-token sample: the error names it, the text component, and that the plan fits without it', (t) => {
  const skewed = withOutliers((vision, text) => {
    vision[100] = 1;
    text[100] = 60_000;
  });
  const e = thrown(() => planTraining({ ...outlierRun, samples: skewed }));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  const m =
    /^no plan fits in 85899345920 bytes per GPU; the least memory that fits is \d+ bytes \([\d.]+ GiB, rounded up\); the memory is sized for the heaviest micro-batch of any epoch, which 1 sample over the packing caps \(18 tiles, 6144 tokens, from samplesPerPack 4\.5; each packed alone\) raises: the text tokens to 60000 against the text cap's 6144 \(sample 100: 1 tile, 60000 tokens\); without the over-cap samples the plan fits: its fullest stage holds (\d+\.\d\d) of 80\.00 GiB; to plan without them, filter the samples over 18 tiles or 6144 tokens out of the data \(omnibal pack --max-vision 18 --max-text 6144 drops them, listed in its --json's dropped\), or give each GPU more memory$/.exec(
      e.message,
    );
  t.truthy(m, e.message);
  // Filtered as it says, the data plans, and its fullest stage is the one the error gave.
  const keep = (a: Uint32Array) => a.filter((_, i) => i !== 100);
  const filtered = planTraining({ ...outlierRun, samples: { vision: keep(skewed.vision), text: keep(skewed.text) } });
  t.is((fullest(filtered) / GIB).toFixed(2), m![1]);
  // No over-cap sample (the synthetic set as drawn): the error says only how much memory fits.
  const plain = thrown(() => planTraining({ ...outlierRun, samples, memoryBytes: 40 * GIB }));
  t.is(plain.code, 'ERR_OMNIBAL_INFEASIBLE');
  t.regex(plain.message, /^no plan fits in \d+ bytes per GPU; the least memory that fits is \d+ bytes \([\d.]+ GiB, rounded up\)$/);
});

test('over-cap samples in both components: each raised component names its largest sample; the count covers all of them', (t) => {
  const skewed = withOutliers((vision, text) => {
    vision[100] = 1;
    text[100] = 60_000;
    text[7] = 20_000;
    vision[200] = 30;
    text[200] = 2_000;
    vision[300] = 25;
  });
  const e = thrown(() => planTraining({ ...outlierRun, samples: skewed }));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  t.regex(e.message, /which 4 samples over the packing caps \(18 tiles, 6144 tokens, from samplesPerPack 4\.5; each packed alone\) raise: the text tokens to 60000 against the text cap's 6144 \(sample 100: 1 tile, 60000 tokens\) and the vision tiles to 30 against the vision cap's 18 \(sample 200: 30 tiles, 2000 tokens\); without the over-cap samples /);
});

test('omnibal plan with a 60k-token sample in its --input: one line naming the sample, the flag to give and the fix, exit 2', (t) => {
  const file = path.join(dir, 'outlier.jsonl');
  const { vision, text } = withOutliers((v, x) => {
    v[100] = 1;
    x[100] = 60_000;
  });
  writeFileSync(file, Array.from(text, (x, i) => JSON.stringify({ vit_num: vision[i], token_num: x })).join('\n'));
  const r = omnibal(['plan', '--input', file, '--gpus', '16', '--pp', '4', '--accum', '8', '--seed', '3', '--simulated-steps', '2']);
  t.is(r.status, 2, r.stderr);
  t.is(r.stdout, '');
  t.is(r.stderr.split('\n').length, 2, r.stderr);
  t.regex(
    r.stderr,
    /^omnibal: no plan fits in 80\.00 GiB per GPU; the least memory that fits is ([\d.]+) GiB \(rounded up\): --memory-gib \1; the memory is sized for the heaviest micro-batch of any epoch, which 1 sample over the packing caps \(18 tiles, 6144 tokens, from --samples-per-pack 4\.5; each packed alone\) raises: the text tokens to 60000 .*\(sample 100: 1 tile, 60000 tokens\); without the over-cap samples the plan fits: .*omnibal pack --max-vision 18 --max-text 6144 drops them.* \[ERR_OMNIBAL_INFEASIBLE\]\n$/,
  );
});
