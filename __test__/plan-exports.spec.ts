// `omnibal plan` gives the framework exports `omnibal partition` gives for its chosen stages
// (Megatron-LM arguments, DeepSpeed parts), in the JSON and as printed lines.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cli } from './helpers';

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const run = ['plan', '--target', 'megatron', '--synthetic', '20000', '--simulated-steps', '1', '--memory-gib', '96'];

test('plan --target megatron (1F1B): exports in the JSON match its stages, and are printed', (t) => {
  const json = omnibal([...run, '--json']);
  t.is(json.status, 0, json.stderr);
  const plan = JSON.parse(json.stdout);
  const stages = plan.stages.stages as { firstLayer: number; lastLayer: number; recomputeLayers: number[] }[];
  t.deepEqual(plan.exports.deepspeed.parts, [...stages.map((s) => s.firstLayer), stages[stages.length - 1].lastLayer + 1]);
  t.deepEqual(plan.exports.deepspeed.checkpointLayers, stages.map((s) => s.recomputeLayers));
  const megatron = plan.exports.megatron;
  t.true(megatron.alternatives.length > 0, JSON.stringify(megatron.unsupported));
  t.deepEqual(megatron.unsupported, []);
  const size = megatron.args.indexOf('--pipeline-model-parallel-size');
  t.is(megatron.args[size + 1], String(plan.cluster.pp));
  const text = omnibal(run);
  t.is(text.status, 0, text.stderr);
  for (const a of megatron.alternatives) t.true(text.stdout.includes(`Megatron-LM (${a.name}): ${a.command}\n`), a.name);
  t.regex(text.stdout, new RegExp(`DeepSpeed: OmnibalPipelineModule .* with parts \\[${plan.exports.deepspeed.parts.join(', ')}\\]`));
  // Every row of the ablation obeys Megatron-LM's layout rules: said among the assumptions.
  t.true(plan.assumptions.some((a: string) => a.startsWith("ablation: every row obeys Megatron-LM's layout rules")));
  t.regex(text.stdout, /\n {2}- ablation: every row obeys Megatron-LM's layout rules/);
});

test('an interleaved plan keeps its export under chunks (no second, contiguous one)', (t) => {
  const r = omnibal(['plan', '--synthetic', '20000', '--simulated-steps', '1', '--schedule', 'interleaved', '--virtual-stages', '2', '--memory-gib', '96', '--json']);
  t.is(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  t.is(plan.exports, undefined);
  t.truthy(plan.chunks.megatron);
});
