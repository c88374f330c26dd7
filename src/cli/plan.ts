/**
 * `omnibal plan`: the whole run planned and predicted; with no arguments, InternVL-Chat-1.5 on
 * 64 A100-80G over 1.2 million synthetic samples (the README's main command).
 *
 * @module
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ErrorCodes, omnibalError } from '../errors';
import { readSamples } from '../io/samples';
import { syntheticSamples } from '../data/synthetic';
import { DEFAULT_RUN, planTraining, simulateSavedPlan, type TrainingPlan } from '../plan/index';
import { searchLayouts } from '../plan/layout';
import type { Calibration } from '../model/index';
import { renderReport } from '../report/index';
import { readJsonFile } from '../io/json';
import { formatTable } from './table';

interface PlanFlags {
  model: string;
  gpu: string;
  gpus: number;
  tp: number;
  pp: number;
  dp?: number;
  accum?: number;
  globalBatch?: number;
  input: string[];
  synthetic: number;
  samplesPerPack: number;
  seed: number;
  schedule: 'gpipe' | '1f1b' | 'interleaved';
  virtualStages?: number;
  simulatedSteps: number;
  json?: boolean;
  out?: string;
  report?: string;
  calibration?: string;
  searchLayout?: boolean;
}


const num = (v: string) => Number(v);
const collect = (v: string, prev: string[]) => [...prev, v];

/** The paper's Table 2 (A100 GPU-days, InternViT-6B + InternLM2-20B, measured). */
const PAPER_TABLE_2 = [61.8, 51.9, 29.0, 21.3];

function human(plan: TrainingPlan): string {
  const c = plan.cluster;
  const g = (x: number) => (x / 2 ** 30).toFixed(1);
  const stageRows = plan.stages.stages.map((s, i) => [i, `${s.firstLayer}-${s.lastLayer}`, `${s.layerNames[0]} .. ${s.layerNames[s.layerNames.length - 1]}`, s.recomputeLayers.length, s.timeMs.toFixed(0), g(s.memoryBytes), `${g(s.memory.weights)} / ${g(s.memory.gradients)} / ${g(s.memory.optimizer)} / ${g(s.memory.activations)} / ${g(s.memory.checkpoints)} / ${g(s.memory.fixed)}`, s.inFlight]);
  const fig = (x: number, f: (x: number) => string) => (Number.isNaN(x) ? '-' : f(x));
  const abl = plan.ablation.map((r, i) => [
    r.error ? `${r.name}: does not fit` : r.name,
    fig(r.stepMs, (x) => (x / 1000).toFixed(1)),
    fig(r.gpuHours, (x) => (x / 24).toFixed(1)),
    fig(r.speedup, (x) => `${x.toFixed(2)}x`),
    fig(r.bubbleFraction, (x) => `${(x * 100).toFixed(0)}%`),
    PAPER_TABLE_2[i].toFixed(1),
    `${(PAPER_TABLE_2[0] / PAPER_TABLE_2[i]).toFixed(2)}x`,
  ]);
  const failed = plan.ablation.filter((r) => r.error).map((r) => `  ${r.name}: ${r.error}`);
  const extra = Object.values(plan.baselines).map((v) =>
    'stepMs' in v
      ? `  beside the chain: ${v.name}: step ${(v.stepMs / 1000).toFixed(1)} s, ${(v.gpuHours / 24).toFixed(1)} GPU-days${Number.isNaN(v.speedup) ? '' : `, ${v.speedup.toFixed(2)}x`}`
      : `  (a baseline could not be evaluated: ${v.error})`,
  );
  return [
    `omnibal plan: ${plan.model} on ${c.gpus} x ${plan.gpu} (tp ${c.tp}, pp ${c.pp}, dp ${c.dp}), ${plan.accum} micro-batches per rank per step, ${plan.samples.toLocaleString('en-US')} samples, ${plan.steps} steps`,
    'ALL FIGURES ARE PREDICTIONS of the omnibal cost model and simulator, assuming:',
    ...plan.assumptions.map((a) => `  - ${a}`),
    '',
    `data: balanced packs ${plan.data.balanced.samplesPerPack.toFixed(2)} samples, pad ${plan.data.balanced.padRatio.toFixed(3)}, dist vision ${plan.data.balanced.visionDist.toFixed(4)} / text ${plan.data.balanced.textDist.toFixed(4)}; random batches: pad ${plan.data.random.padRatio.toFixed(3)}, dist ${plan.data.random.visionDist.toFixed(4)} / ${plan.data.random.textDist.toFixed(4)}`,
    '',
    formatTable(['stage', 'layers', 'names', 'recomputed', 'ms / micro-batch', 'memory GiB', 'weights / grads / optim / acts / ckpts / fixed GiB', 'in flight'], stageRows),
    '',
    formatTable(['ablation (predicted, one epoch)', 'step s', 'GPU-days', 'speed-up', 'bubble', 'paper GPU-days', 'paper speed-up'], abl),
    ...failed,
    ...extra,
    '',
    `predicted epoch: ${plan.epochHours.toFixed(1)} h on ${c.gpus} GPUs (${((plan.epochHours * c.gpus) / 24).toFixed(1)} GPU-days).`,
    "The paper's figures are measured GPU-days of the whole InternVL-1.5 SFT run on its own layout (not stated); ours are predicted per epoch of this data on this layout: compare the speed-ups, not the days.",
  ].join('\n');
}

async function runPlan(flags: PlanFlags): Promise<void> {
  const dp = flags.dp ?? Math.floor(flags.gpus / (flags.tp * flags.pp));
  if (flags.dp === undefined && flags.tp * flags.pp * dp !== flags.gpus) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `tp x pp (${flags.tp} x ${flags.pp}) must divide the GPU count (${flags.gpus})`);
  }
  const samples = flags.input.length > 0 ? await readSamples(flags.input) : syntheticSamples(flags.synthetic, flags.seed);
  if (flags.searchLayout) {
    const ranked = searchLayouts({
      model: flags.model,
      gpu: flags.gpu,
      gpus: flags.gpus,
      globalBatch: flags.globalBatch ?? (flags.accum ?? DEFAULT_RUN.accum) * dp,
      samples,
      samplesPerPacks: [flags.samplesPerPack / 2, flags.samplesPerPack, flags.samplesPerPack * 2].filter((b) => b >= 1),
      seed: flags.seed,
      schedule: flags.schedule,
    });
    const rows = ranked.map((c, i) => [c.error ? '-' : i + 1, c.tp, c.pp, c.dp, c.accum, c.samplesPerPack, c.stepMs === undefined ? '' : (c.stepMs / 1000).toFixed(1), c.gpuHours === undefined ? 'does not fit' : (c.gpuHours / 24).toFixed(1), c.error ? c.error.slice(0, 70) : '']);
    const text = formatTable(['rank', 'tp', 'pp', 'dp', 'accum', 'samples/pack', 'step s', 'GPU-days / epoch', 'why not'], rows);
    process.stdout.write(flags.json ? `${JSON.stringify({ prediction: true, layouts: ranked })}\n` : `omnibal plan --search-layout: ${flags.gpus} GPUs, fixed global batch (PREDICTIONS of the cost model)\n${text}\n`);
    return;
  }
  const plan = planTraining({
    model: flags.model,
    gpu: flags.gpu,
    cluster: { gpus: flags.gpus, tp: flags.tp, pp: flags.pp, dp },
    samples,
    accum: flags.globalBatch === undefined ? flags.accum ?? DEFAULT_RUN.accum : undefined,
    globalBatch: flags.globalBatch,
    samplesPerPack: flags.samplesPerPack,
    seed: flags.seed,
    schedule: flags.schedule,
    virtualStages: flags.virtualStages,
    simulatedSteps: flags.simulatedSteps,
    calibration: flags.calibration ? (readJsonFile(flags.calibration, 'calibration file') as Calibration) : undefined,
    inputs: flags.input.length > 0 ? { files: flags.input } : { synthetic: flags.synthetic, seed: flags.seed },
  });
  if (flags.report) {
    try {
      writeFileSync(flags.report, renderReport(plan, plan.memoryBytes));
    } catch (error) {
      throw omnibalError(ErrorCodes.PARSE, `cannot write the report to ${flags.report} (${(error as { code?: string }).code ?? String(error)})`, error);
    }
  }
  const json = `${JSON.stringify(plan)}\n`;
  if (flags.out) writeFileSync(flags.out, json);
  if (flags.json) process.stdout.write(json);
  else process.stdout.write(`${human(plan)}\n`);
}

/** Adds `omnibal plan` to the program. */
export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('plan a whole VLM training run and predict its speed-up (default: InternVL-Chat-1.5 on 64 A100-80G, 1.2M synthetic samples)')
    .option('--model <name>', 'model preset', DEFAULT_RUN.model)
    .option('--gpu <name>', 'GPU preset', DEFAULT_RUN.gpu)
    .option('--gpus <n>', 'GPU count', num, DEFAULT_RUN.cluster.gpus)
    .option('--tp <t>', 'tensor parallel size', num, DEFAULT_RUN.cluster.tp)
    .option('--pp <p>', 'pipeline stages', num, DEFAULT_RUN.cluster.pp)
    .option('--dp <d>', 'data parallel size (default gpus / (tp x pp))', num)
    .option('--accum <m>', 'micro-batches per rank per step', num)
    .option('--global-batch <n>', 'micro-batches per step over all ranks (divisible by dp)', num)
    .option('--input <file>', 'length file(s) instead of the synthetic default; repeatable', collect, [])
    .option('--synthetic <n>', 'synthetic samples when no --input', num, DEFAULT_RUN.samples)
    .option('--samples-per-pack <b>', 'mean samples per packed micro-batch', num, DEFAULT_RUN.samplesPerPack)
    .option('--seed <s>', 'seed', num, 0)
    .option('--schedule <name>', 'gpipe, 1f1b or interleaved', '1f1b')
    .option('--virtual-stages <v>', 'model chunks per device (interleaved)', num)
    .option('--simulated-steps <n>', 'steps simulated per configuration', num, 16)
    .option('--json', 'write the whole plan as one JSON object')
    .option('--out <file>', 'also write the JSON plan to this file')
    .option('--report <file>', 'write a self-contained HTML report with charts')
    .option('--calibration <file>', 'measured layer times and stage memory to calibrate the cost model (see README)')
    .option('--search-layout', 'rank every tp x pp x dp layout of the GPUs and micro-batch size (half, as given, double; same global batch) by predicted GPU-hours')
    .action(async (flags: PlanFlags) => runPlan(flags));

  program
    .command('simulate')
    .description('re-simulate a plan written by omnibal plan --json (edit its stages, cluster or accum by hand to ask what-if)')
    .requiredOption('--plan <file>', 'the plan JSON')
    .option('--input <file>', 'length file(s), when the plan was made from files elsewhere; repeatable', collect, [])
    .option('--json', 'write one JSON object')
    .action(async (flags: { plan: string; input: string[]; json?: boolean }) => {
      const saved = readJsonFile(flags.plan, 'plan file') as TrainingPlan;
      const inputs = saved?.replay?.inputs;
      const samples =
        flags.input.length > 0
          ? await readSamples(flags.input)
          : inputs && 'files' in inputs
            ? await readSamples(inputs.files)
            : syntheticSamples(inputs && 'synthetic' in inputs ? inputs.synthetic : DEFAULT_RUN.samples, inputs && 'seed' in inputs ? inputs.seed : 0);
      const r = simulateSavedPlan(saved, samples);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ prediction: true, assumptions: saved.assumptions, ...r })}\n`);
        return;
      }
      const rows = r.stages.stages.map((s, i) => [i, `${s.firstLayer}-${s.lastLayer}`, s.recomputeLayers.length, s.timeMs.toFixed(0), (s.memoryBytes / 2 ** 30).toFixed(1)]);
      process.stdout.write(
        [
          `omnibal simulate: ${flags.plan} (PREDICTION of the cost model and simulator)`,
          formatTable(['stage', 'layers', 'recomputed', 'ms / micro-batch', 'memory GiB'], rows),
          `predicted step ${(r.stepMs / 1000).toFixed(1)} s, ${(r.gpuHours / 24).toFixed(1)} GPU-days per epoch, bubble ${(r.bubbleFraction * 100).toFixed(0)}%`,
        ].join('\n') + '\n',
      );
    });
}
