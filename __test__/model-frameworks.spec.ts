// The exports run through the frameworks' own code: DeepSpeed's PipelineModule (partition
// bounds and forward checkpointing) and megatron-core's pipeline layout validator. Needs a
// Python with `deepspeed` and `megatron-core` (with torch >= 2) installed: OMNIBAL_FRAMEWORKS_PYTHON, or
// .venv-frameworks/bin/python in the repository; skipped without one (the rule tests in
// model.spec.ts hold the same rules with their source lines cited).
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exportDeepSpeed, exportMegatron, exportMegatronChunks, modelPreset, partitionChunks, partitionForTarget, partitionStages, planTraining, vlmStageProblem } from '../index';
import { syntheticSamples } from '../src/data/synthetic';

const local = join(__dirname, '..', '.venv-frameworks', 'bin', 'python');
const python = process.env.OMNIBAL_FRAMEWORKS_PYTHON || (existsSync(local) ? local : undefined);
// One at a time: each starts a Python that imports torch (tens of seconds on a loaded machine).
// Without one, each test is skipped with the reason in its title.
const why = ' [skipped: no Python with torch >= 2, deepspeed and megatron-core; set OMNIBAL_FRAMEWORKS_PYTHON, see README]';
const run: typeof test.serial = python ? test.serial : ((title: string, fn: never) => test.skip(`${title}${why}`, fn)) as never;

function check(script: string, input: object): { ok: boolean; error?: string } {
  const r = spawnSync(python!, [join(__dirname, 'frameworks', script)], { input: JSON.stringify(input), encoding: 'utf8', timeout: 120_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as { ok: boolean; error?: string };
  } catch {
    return { ok: false, error: `no result: ${r.stderr.slice(-500)}` };
  }
}

const load = { tiles: 18, tokens: 5000, sumSqLen: (5000 * 5000) / 4.5 };
const internvl = (pp: number, extra: Partial<Parameters<typeof vlmStageProblem>[0]> = {}) =>
  vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp, dp: 8, microBatches: 4 * pp, load, ...extra });

run('DeepSpeed: the generated PipelineModule imposes the parts and checkpoints exactly the planned layers', (t) => {
  const exports = [internvl(4), internvl(8), internvl(8, { recompute: 'any' }), internvl(8, { gpu: 'H200', recompute: 'none' })].map((p) => exportDeepSpeed(partitionStages(p)));
  // The check can fail: a checkpoint list the module does not impose is caught.
  const wrong = { ...exports[0], checkpointLayers: exports[0].checkpointLayers.map((c) => c.slice(1)) };
  const r = check('deepspeed_check.py', [...exports, wrong]) as { ok: boolean; error?: string; results?: { ok: boolean; error?: string }[]; interval2Chunks?: number[][] };
  t.truthy(r.results, r.error);
  t.deepEqual(r.results!.slice(0, -1), exports.map(() => ({ ok: true })));
  t.false(r.results![exports.length].ok);
  // activation_checkpoint_interval = 2 checkpoints chunks of two consecutive layers, as documented.
  t.deepEqual(r.interval2Chunks, [[0, 1], [2, 3], [4]]);
});

run("Megatron: every emitted layout passes megatron-core's own layout validation", (t) => {
  for (const pp of [4, 8]) {
    const target = partitionForTarget(internvl(pp, { gpu: 'H200' }), 'megatron');
    const m = exportMegatron(target.problem, target.plan);
    const alt = m.alternatives.find((a) => a.name === 'layout');
    t.truthy(alt);
    const layout = alt!.argv[alt!.argv.indexOf('--pipeline-model-parallel-layout') + 1];
    const r = check('megatron_layout_check.py', { layout, pp, numLayers: 48 });
    t.true(r.ok, r.error);
  }
  // The validator can fail: a layout without the loss is rejected.
  const target = partitionForTarget(internvl(8, { gpu: 'H200' }), 'megatron');
  const alt = exportMegatron(target.problem, target.plan).alternatives.find((a) => a.name === 'layout')!;
  const layout = alt.argv[alt.argv.indexOf('--pipeline-model-parallel-layout') + 1];
  t.false(check('megatron_layout_check.py', { layout: layout.slice(0, -1), pp: 8, numLayers: 48 }).ok);
  // The unconstrained optimum puts the LLM embedding after the vision stages: Megatron's
  // multimodal models combine image and text embeddings on the first stage, so the export
  // emits no layout for it (megatron-core alone would accept empty leading stages).
  const free = partitionStages(internvl(8, { gpu: 'H200' }));
  t.false(exportMegatron(internvl(8, { gpu: 'H200' }), free).alternatives.some((a) => a.name === 'layout'));
});

run("Megatron: every emitted argv builds megatron-core's own TransformerConfig (language and vision), with the planned recompute count", (t) => {
  const dims = (model: string) => {
    const m = modelPreset(model);
    return { numLayers: m.llm.layers, hidden: m.llm.hidden, heads: m.llm.heads, kvHeads: m.llm.kvHeads, vitLayers: m.vit.layers, vitHidden: m.vit.hidden, vitHeads: m.vit.heads };
  };
  const cases = [
    { model: 'internvl-chat-1.5', problem: internvl(4, { gpu: 'H200' }) },
    { model: 'internvl-chat-1.5', problem: internvl(8, { gpu: 'H200' }) },
    {
      model: 'internvl-300m-internlm2-7b',
      problem: vlmStageProblem({ model: 'internvl-300m-internlm2-7b', gpu: 'H200', pp: 4, dp: 8, microBatches: 16, load: { tiles: 2, tokens: 2000 }, recompute: 'selective-all', training: { flashAttention: false } }),
    },
  ];
  type Result = { ok: boolean; error?: string; recomputeNumLayers?: number; vision?: { recomputeNumLayers: number | null; recomputeGranularity: string | null } };
  // One Python process for every argv (importing torch and megatron-core takes a while).
  const jobs: { input: object; expect: (r: Result) => void }[] = [];
  for (const c of cases) {
    const target = partitionForTarget(c.problem, 'megatron');
    const m = exportMegatron(target.problem, target.plan);
    t.deepEqual(m.unsupported, []);
    const kinds = target.problem.layerKinds!;
    const vitRecomputed = target.plan.stages.flatMap((s) => s.recomputeLayers).filter((l) => kinds[l] === 'vit').length;
    const vitSelective = target.plan.stages.flatMap((s) => s.selectiveLayers).some((l) => kinds[l] === 'vit');
    for (const alt of m.alternatives) {
      jobs.push({
        input: { argv: alt.argv, ...dims(c.model) },
        expect: (r) => {
          t.true(r.ok, `${alt.command}: ${r.error}`);
          const i = alt.argv.indexOf('--recompute-num-layers');
          t.is(r.recomputeNumLayers ?? null, i >= 0 ? Number(alt.argv[i + 1]) : null);
          // The ViT recomputes all its layers exactly when the plan recomputes them, and keeps
          // the selective setting when the plan recomputes it selectively.
          t.is(r.vision!.recomputeNumLayers ?? 0, vitRecomputed);
          t.is(r.vision!.recomputeGranularity, vitRecomputed > 0 ? 'full' : vitSelective ? 'selective' : null);
        },
      });
    }
  }
  t.true(jobs.length >= 3);
  // The check can fail: a full recompute without a count, and an unknown flag, are refused.
  const refused = (r: Result) => t.false(r.ok);
  jobs.push({ input: { argv: ['--pipeline-model-parallel-size', '4', '--recompute-granularity', 'full', '--recompute-method', 'block'], ...dims('internvl-chat-1.5') }, expect: refused });
  jobs.push({ input: { argv: ['--no-such-flag', '1'], ...dims('internvl-chat-1.5') }, expect: refused });
  const results = check('megatron_config_check.py', jobs.map((j) => j.input)) as unknown as Result[];
  t.true(Array.isArray(results), JSON.stringify(results));
  t.is(results.length, jobs.length);
  jobs.forEach((j, i) => j.expect(results[i]));
});

run("Megatron: an interleaved chunk plan's layout (v x P segments) passes megatron-core's layout validation and TransformerConfig, chunk c on rank c mod P", (t) => {
  // Megatron-LM's multimodal models build the vision encoder, projector and embedding in the first chunk.
  const problem = internvl(4, { gpu: 'H200', schedule: 'interleaved', virtualStages: 2, embeddingOnFirstStage: true });
  const plan = partitionChunks(problem);
  const m = exportMegatronChunks(problem, plan);
  const alt = m.alternatives.find((a) => a.name === 'layout');
  t.truthy(alt, JSON.stringify(m.unsupported));
  const layout = alt!.argv[alt!.argv.indexOf('--pipeline-model-parallel-layout') + 1];
  t.is(layout.split('|').length, 8);
  const r = check('megatron_layout_check.py', { layout, pp: 4, numLayers: 48 }) as { ok: boolean; error?: string; decoderPerRank?: number[][] };
  t.true(r.ok, r.error);
  // megatron-core's own 2D view: rank s, virtual stage j runs chunk j x P + s.
  const kinds = problem.layerKinds!;
  const decoder = (c: number) => kinds.slice(plan.chunks[c].firstLayer, plan.chunks[c].lastLayer + 1).filter((k) => k === 'llm').length;
  t.deepEqual(
    r.decoderPerRank,
    [0, 1, 2, 3].map((s) => [0, 1].map((j) => decoder(j * 4 + s))),
  );
  // The argv (the layout alone: Megatron-LM derives the virtual size from it and has no
  // --virtual-pipeline-model-parallel-size flag) builds megatron-core's TransformerConfig.
  const md = modelPreset('internvl-chat-1.5');
  const dims = { numLayers: md.llm.layers, hidden: md.llm.hidden, heads: md.llm.heads, kvHeads: md.llm.kvHeads, vitLayers: md.vit.layers, vitHidden: md.vit.hidden, vitHeads: md.vit.heads };
  t.false(alt!.argv.includes('--virtual-pipeline-model-parallel-size'));
  const results = check('megatron_config_check.py', [
    { argv: alt!.argv, ...dims },
    // Must fail: a flag Megatron-LM's parser does not have.
    { argv: [...alt!.argv, '--virtual-pipeline-model-parallel-size', '2'], ...dims },
    // Must fail: the layout with a per-virtual-stage count (validate_args allows one of them).
    { argv: [...alt!.argv, '--num-layers-per-virtual-pipeline-stage', '6'], ...dims },
  ]) as unknown as { ok: boolean; error?: string; virtualStages?: number }[];
  t.true(results[0].ok, results[0].error);
  t.is(results[0].virtualStages, 2);
  t.false(results[1].ok);
  t.false(results[2].ok);
  // And the validator can fail: v x P + 1 segments do not divide over the ranks.
  t.false(check('megatron_layout_check.py', { layout: `${layout}|t`, pp: 4, numLayers: 49 }).ok);
});

/**
 * The `layout` alternative of a plan's Megatron export (`pp` stages of the internvl-300m-internlm2-7b
 * preset), checked by megatron-core's own layout validation and TransformerConfig; returns the
 * layout and the config check's result.
 */
function checkPlanLayout(t: ExecutionContext, megatron: { unsupported: string[]; alternatives: { name: string; argv: string[] }[] }, pp: number) {
  t.deepEqual(megatron.unsupported, []);
  const alt = megatron.alternatives.find((a) => a.name === 'layout');
  if (!alt) throw new Error('no layout alternative');
  const layout = alt.argv[alt.argv.indexOf('--pipeline-model-parallel-layout') + 1];
  const md = modelPreset('internvl-300m-internlm2-7b');
  const r = check('megatron_layout_check.py', { layout, pp, numLayers: md.llm.layers });
  t.true(r.ok, r.error);
  const dims = { numLayers: md.llm.layers, hidden: md.llm.hidden, heads: md.llm.heads, kvHeads: md.llm.kvHeads, vitLayers: md.vit.layers, vitHidden: md.vit.hidden, vitHeads: md.vit.heads };
  const results = check('megatron_config_check.py', [{ argv: alt.argv, ...dims }]) as unknown as { ok: boolean; error?: string; virtualStages?: number }[];
  t.true(results[0].ok, results[0].error);
  return { layout, config: results[0] };
}

run("Megatron: plan --schedule interleaved --target megatron exports a layout and recompute setting megatron-core accepts, ViT, projector and embedding in the first chunk", (t) => {
  const plan = planTraining({ model: 'internvl-300m-internlm2-7b', cluster: { gpus: 32, tp: 1, pp: 4, dp: 8 }, accum: 16, samples: syntheticSamples(20000, 0), simulatedSteps: 1, schedule: 'interleaved', virtualStages: 2, target: 'megatron', ablation: false });
  const { layout, config } = checkPlanLayout(t, plan.chunks!.megatron, 4);
  t.true(layout.startsWith('E|'), layout);
  t.is(config.virtualStages, 2);
});

run("Megatron: plan --target megatron (1F1B) exports a layout and recompute setting megatron-core accepts", (t) => {
  const plan = planTraining({ model: 'internvl-300m-internlm2-7b', cluster: { gpus: 32, tp: 1, pp: 4, dp: 8 }, accum: 16, samples: syntheticSamples(20000, 0), simulatedSteps: 1, target: 'megatron', ablation: false });
  const { layout } = checkPlanLayout(t, plan.exports!.megatron, 4);
  t.true(layout.startsWith('E'), layout);
});
