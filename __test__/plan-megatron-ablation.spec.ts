// `plan --target megatron`: every row of the ablation is a split Megatron-LM can run (the vision
// encoder, projector and LLM embedding on stage 0), the baselines included, so the planned rows
// compare against splits Megatron-LM could run instead.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { baselineStages, gpuPreset, SPLITS, vlmStageProblem } from '../src/model/index';
import { baselineProblem } from '../src/plan/simulate-config';
import { cli } from './helpers';

const load = { tiles: 18, tokens: 5000, sumSqLen: (5000 * 5000) / 4.5 };
// The plan's default model and layout (pp 8, dp 8, 32 micro-batches), at 141 GiB per GPU.
const problem = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: { ...gpuPreset('A100-80G'), memoryBytes: 141 * 2 ** 30 }, pp: 8, dp: 8, microBatches: 32, load, recompute: 'full' });

test('under megatron every baseline split keeps the vision encoder, projector and LLM embedding on stage 0', (t) => {
  const kinds = problem.layerKinds!;
  const embed = kinds.indexOf('embed');
  t.true(embed > 0);
  // Without the target the parameter split cuts inside the vision encoder (what the fix is for).
  t.true(baselineStages(problem, 'parameters', 'full').stages[0].lastLayer < embed);
  const pinned = baselineProblem(problem, 'megatron');
  t.is(pinned.firstStageMinLayers, embed + 1);
  let planned = 0;
  for (const method of SPLITS) {
    for (const rec of ['none', 'full', 'uniform'] as const) {
      try {
        const plan = baselineStages(pinned, method, rec);
        const first = plan.stages[0];
        t.is(first.firstLayer, 0);
        t.true(first.lastLayer >= embed, `${method}+${rec}: stage 0 ends at ${first.lastLayer}`);
        for (let l = first.lastLayer + 1; l < kinds.length; l++) t.true(['llm', 'head'].includes(kinds[l]), `${method}+${rec}: layer ${l} (${kinds[l]})`);
        planned++;
      } catch (error) {
        t.is((error as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE', `${method}+${rec}`);
      }
    }
  }
  t.true(planned >= 4, `${planned} baselines fit`);
  // Megatron-LM's default: the layers after the first-stage ones in equal counts (97 - 48 = 49 over 8).
  const uniform = baselineStages(pinned, 'uniform', 'full').stages.map((s) => s.lastLayer - s.firstLayer + 1);
  t.deepEqual(uniform, [embed + 1 + 7, 6, 6, 6, 6, 6, 6, 6]);
});

test('other targets leave the baselines as they were', (t) => {
  for (const target of ['none', 'deepspeed'] as const) t.is(baselineProblem(problem, target), problem);
});

test('plan --target megatron: the model-balance row is no slower than the baseline, and the assumptions say every row obeys the rules', (t) => {
  const r = spawnSync(process.execPath, [cli, 'plan', '--target', 'megatron', '--synthetic', '20000', '--simulated-steps', '2', '--memory-gib', '110', '--json'], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 300_000 });
  t.is(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  const row = (prefix: string) => plan.ablation.find((x: { name: string }) => x.name.startsWith(prefix));
  const baseline = row('baseline');
  const model = row('+ model balance');
  t.is(baseline.error, undefined);
  t.true(Number.isFinite(baseline.stepMs) && Number.isFinite(model.stepMs));
  t.true(model.stepMs <= baseline.stepMs, `model balance ${model.stepMs} ms, baseline ${baseline.stepMs} ms`);
  t.true(plan.assumptions.some((a: string) => a.startsWith("ablation: every row obeys Megatron-LM's layout rules")));
  t.false(plan.assumptions.some((a: string) => a.includes('cannot run')));
});
