/**
 * `omnibal plan`: the whole run planned and predicted; with no arguments, InternVL-Chat-1.5 on
 * 64 A100-80G over 1.2 million synthetic samples (the README's main command).
 *
 * @module
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { ErrorCodes, omnibalError } from '../errors';
import { readSamples } from '../io/samples';
import { syntheticSamples } from '../data/synthetic';
import { DEFAULT_RUN, PLAN_ASSUMPTIONS, calibrationWarnings, planTraining, simulateSavedPlan, type TrainingPlan } from '../plan/index';
import type { RunFigures } from '../plan/figures';
import { paperAblation } from '../plan/paper';
import { checkSavedPlan } from '../plan/validate';
import { searchLayouts } from '../plan/layout';
import type { Calibration } from '../model/index';
import { renderReport } from '../report/index';
import { readJsonFile } from '../io/json';
import { integerBetween } from '../validate';
import { exportLines } from './export-lines';
import { formatTable } from './table';
import { checkOutputFiles, writeOutputFile, writeStdout } from './output';
import { calibrationWarningsForCli } from './warnings';
import { readPlanInputs, recordedInputs } from './plan-paths';
import { checkCalibration } from '../model/calibration-file';
import { addMemoryFlags, checkMemorySize, targetFlag, trainingFlags, zeroFlag, type MemoryFlags } from './memory-flags';

interface PlanFlags extends MemoryFlags {
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
  simulatedSteps?: number;
  epochs: number;
  json?: boolean;
  out?: string;
  report?: string;
  calibration?: string;
  searchLayout?: boolean;
}

const num = (v: string) => Number(v);
const collect = (v: string, prev: string[]) => [...prev, v];

// One formatter per digit count: `toLocaleString` with options builds a new ICU formatter per call.
const formatters = new Map<number, Intl.NumberFormat>();
const fmt = (x: number, digits: number) => {
  let f = formatters.get(digits);
  if (!f) formatters.set(digits, (f = new Intl.NumberFormat('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })));
  return f.format(x);
};

/** The run-level figures as lines of text (labelled predictions). */
export function figureLines(f: RunFigures, gpus: number): string[] {
  return [
    `run figures (PREDICTIONS): ${fmt(f.samplesPerStep, 0)} samples and ${fmt(f.tokensPerStep, 0)} tokens per step; ${fmt(f.samplesPerS, 1)} samples/s, ${fmt(f.tokensPerS, 0)} tokens/s; ${fmt(f.tflopsPerGpu, 1)} model TFLOP/s per GPU, MFU ${(f.mfu * 100).toFixed(1)}%`,
    `predicted time for ${f.epochs} epoch${f.epochs === 1 ? '' : 's'}: ${fmt(f.hours, 1)} h on ${gpus} GPUs (${fmt(f.gpuHours / 24, 1)} GPU-days)`,
  ];
}

function human(plan: TrainingPlan): string {
  const c = plan.cluster;
  const g = (x: number) => (x / 2 ** 30).toFixed(1);
  const chunked = plan.chunks;
  // An interleaved plan: each device's chunks, comma-separated, in every per-layer column.
  const mine = (i: number) => (chunked ? chunked.chunks.filter((c) => c.stage === i) : []);
  const stageRows = plan.stages.stages.map((s, i) => [
    i,
    chunked ? mine(i).map((c) => `${c.firstLayer}-${c.lastLayer}`).join(', ') : `${s.firstLayer}-${s.lastLayer}`,
    chunked ? mine(i).map((c) => `${c.layerNames[0]} .. ${c.layerNames[c.layerNames.length - 1]}`).join(', ') : `${s.layerNames[0]} .. ${s.layerNames[s.layerNames.length - 1]}`,
    chunked ? mine(i).map((c) => c.recomputeLayers.length).join(' + ') : s.recomputeLayers.length,
    s.timeMs.toFixed(0),
    g(s.memoryBytes),
    `${g(s.memory.weights)} / ${g(s.memory.gradients)} / ${g(s.memory.optimizer)} / ${g(s.memory.activations)} / ${g(s.memory.checkpoints)} / ${g(s.memory.fixed)}`,
    chunked ? mine(i).map((c) => c.held).join(' + ') : s.inFlight,
  ]);
  const chunkLines = chunked
    ? [
        '',
        `interleaved: ${chunked.virtualStages} x ${c.pp} model chunks, chunk c on stage c mod ${c.pp}; ${chunked.optimal ? 'optimal under the model (the chunk search finished)' : `best found (the chunk search stopped at its node budget; the optimum is at least ${chunked.lowerBoundMs.toFixed(0)} ms per iteration)`}`,
        ...chunked.targetNotes.map((n) => `  target: ${n}`),
        ...(chunked.megatron.alternatives.length === 0 ? ['Megatron-LM: no valid arguments for this plan'] : chunked.megatron.alternatives.map((a) => `Megatron-LM (${a.name}): ${a.command}`)),
        ...chunked.megatron.unsupported.map((u) => `  cannot express: ${u}`),
      ]
    : [];
  const fig = (x: number, f: (x: number) => string) => (Number.isNaN(x) ? '-' : f(x));
  const paper = paperAblation(plan.model);
  const abl = plan.ablation.map((r, i) => [
    r.error ? `${r.name}: does not fit` : r.name,
    r.steps,
    fig(r.stepMs, (x) => (x / 1000).toFixed(1)),
    fig(r.gpuHours, (x) => (x / 24).toFixed(1)),
    fig(r.speedup, (x) => `${x.toFixed(2)}x`),
    fig(r.bubbleFraction, (x) => `${(x * 100).toFixed(0)}%`),
    ...(paper ? [paper[i].toFixed(1), `${(paper[0] / paper[i]).toFixed(2)}x`] : []),
  ]);
  const failed = plan.ablation.filter((r) => r.error).map((r) => `  ${r.name}: ${r.error}`);
  const extra = Object.values(plan.baselines).map((v) =>
    'stepMs' in v
      ? `  beside the chain: ${v.name}: step ${(v.stepMs / 1000).toFixed(1)} s, ${(v.gpuHours / 24).toFixed(1)} GPU-days${Number.isNaN(v.speedup) ? '' : `, ${v.speedup.toFixed(2)}x`}`
      : `  beside the chain: ${v.name ?? 'a baseline'}: not evaluated: ${v.error}`,
  );
  const f = plan.figures;
  return [
    `omnibal plan: ${plan.model} on ${c.gpus} x ${plan.gpu} (tp ${c.tp}, pp ${c.pp}, dp ${c.dp}), ${plan.replay.schedule}, ${plan.accum} micro-batches per rank per step (global batch ${fmt(f.samplesPerStep, 0)} samples), ${plan.samples.toLocaleString('en-US')} samples, ${plan.steps} steps`,
    'ALL FIGURES ARE PREDICTIONS of the omnibal cost model and simulator, assuming:',
    ...plan.assumptions.map((a) => `  - ${a}`),
    '',
    `data: balanced packs ${plan.data.balanced.samplesPerPack.toFixed(2)} samples, pad ${plan.data.balanced.padRatio.toFixed(3)}, dist vision ${plan.data.balanced.visionDist.toFixed(4)} / text ${plan.data.balanced.textDist.toFixed(4)}; random batches: pad ${plan.data.random.padRatio.toFixed(3)}, dist ${plan.data.random.visionDist.toFixed(4)} / ${plan.data.random.textDist.toFixed(4)}`,
    '',
    formatTable(
      chunked
        ? ['stage', 'chunks (layers)', 'names', 'recomputed per chunk', 'ms / micro-batch', 'memory GiB', 'weights / grads / optim / acts / ckpts / fixed GiB', 'held at peak per chunk']
        : ['stage', 'layers', 'names', 'recomputed', 'ms / micro-batch', 'memory GiB', 'weights / grads / optim / acts / ckpts / fixed GiB', 'in flight'],
      stageRows,
    ),
    ...chunkLines,
    ...(plan.exports ? ['', ...exportLines(plan.exports)] : []),
    '',
    formatTable(['ablation (predicted, one epoch)', 'steps', 'step s', 'GPU-days', 'speed-up', 'bubble', ...(paper ? ['paper GPU-days', 'paper speed-up'] : [])], abl),
    ...failed,
    ...extra,
    '',
    ...figureLines(f, c.gpus),
    paper
      ? "The paper's figures are measured GPU-days of the whole InternVL-1.5 SFT run (6B+20B, Table 2) on its own layout (not stated); ours are predicted per epoch of this data on this layout: compare the speed-ups, not the days."
      : `(The paper's ablation (Table 2) measured InternViT-6B + InternLM2-20B only, so no paper figures are shown for ${plan.model}.)`,
  ].join('\n');
}

/** The plan as the file `out` holds it: its `--input` files relative to `out`'s folder (absolute ones as given). */
function savedAt(plan: TrainingPlan, input: string[], out: string): TrainingPlan {
  if (input.length === 0) return plan;
  return { ...plan, replay: { ...plan.replay, inputs: { files: recordedInputs(input, out) } } };
}

function readCalibration(file: string | undefined): Calibration | undefined {
  if (!file) return undefined;
  const doc = readJsonFile(file, 'calibration file');
  // Checked here, as partition's calibrate does: a file holding `null` would otherwise read as no calibration.
  checkCalibration(doc);
  return doc as Calibration;
}

/**
 * The layout search's progress bar on stderr, only when stderr is a terminal (and not with
 * --json): the candidate layouts evaluated of all of them, and what runs now (the data plans
 * between candidates take most of the time, and are named rather than counted).
 */
function progressBar(enabled: boolean): { update: (done: number, total: number, phase: string) => void; end: () => void } {
  if (!enabled) return { update: () => undefined, end: () => undefined };
  const started = Date.now();
  let drawn = false;
  return {
    update: (done, total, phase) => {
      const width = 30;
      const filled = Math.round((done / Math.max(total, 1)) * width);
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} layouts evaluated, ${((Date.now() - started) / 1000).toFixed(0)} s: ${phase}`;
      // One line, cleared to its end (a shorter phase leaves nothing of a longer one behind).
      process.stderr.write(`\r${line.slice(0, Math.max(40, (process.stderr.columns || 120) - 1))}\x1b[K`);
      drawn = true;
    },
    end: () => {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

/**
 * Flags that contradict each other, refused with one line naming both (never one silently
 * winning): `--input` with `--synthetic`, `--global-batch` with an `--accum` it does not equal
 * over dp.
 */
function checkConflicts(flags: PlanFlags, given: (name: string) => boolean, dp: number): void {
  if (flags.input.length > 0 && given('synthetic')) throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--input and --synthetic conflict: give --input or --synthetic, not both');
  if (flags.globalBatch !== undefined && flags.accum !== undefined && flags.globalBatch !== flags.accum * dp) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--global-batch (${flags.globalBatch}) and --accum (${flags.accum}) conflict: --accum ${flags.accum} x dp ${dp} = ${flags.accum * dp} micro-batches per step; give one`);
  }
}

/**
 * Too few samples for one step: the data planner's advice names tail policies, which `plan`
 * has no flag for; say what `plan` offers instead.
 */
function tooFewForPlan(error: unknown): unknown {
  const e = error as { code?: string; message?: string } | null;
  if (e?.code !== ErrorCodes.TOO_FEW_SAMPLES || typeof e.message !== 'string') return error;
  const advice = e.message.replace(/; use tail 'pad' or 'keep-partial', or fewer ranks$/, '');
  if (advice === e.message) return error;
  return omnibalError(ErrorCodes.TOO_FEW_SAMPLES, `${advice}: give more samples (--synthetic N, or more --input files), a smaller --accum or --global-batch, or fewer ranks (--dp, --gpus)`, error);
}

async function runPlan(flags: PlanFlags, command?: Command): Promise<void> {
  try {
    await planCommand(flags, command);
  } catch (error) {
    throw tooFewForPlan(error);
  }
}

async function planCommand(flags: PlanFlags, command?: Command): Promise<void> {
  const given = (name: string) => command?.getOptionValueSource(name) === 'cli';
  const dp = flags.dp ?? Math.floor(flags.gpus / (flags.tp * flags.pp));
  checkConflicts(flags, given, dp);
  if (flags.dp === undefined && flags.tp * flags.pp * dp !== flags.gpus) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `tp x pp (${flags.tp} x ${flags.pp}) must divide the GPU count (${flags.gpus})`);
  }
  // Both into one file would leave only the JSON plan there, the report silently lost.
  if (flags.report !== undefined && flags.out !== undefined && path.resolve(flags.report) === path.resolve(flags.out)) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--report and --out name the same file (${flags.out}): give each its own`);
  }
  // Never onto an input (a link to it included), a FIFO or a device.
  checkOutputFiles(
    [
      ['--out', flags.out],
      ['--report', flags.report],
    ],
    [...flags.input.map((f): [string, string] => ['--input', f]), ['--calibration', flags.calibration]],
  );
  // Read every input before the long part, so a missing file fails at once.
  checkMemorySize(flags);
  const memory = { zero: zeroFlag(flags.zero), training: trainingFlags(flags), memoryBytes: flags.memoryGib === undefined ? undefined : flags.memoryGib * 2 ** 30, headroom: flags.headroom, target: targetFlag(flags.target) };
  const calibration = readCalibration(flags.calibration);
  // Checked (and its warnings printed) before the long part; the JSON carries them too.
  const warnings = calibrationWarningsForCli(calibration ? calibrationWarnings(flags.model, flags.gpu, calibration) : []);
  for (const w of warnings) process.stderr.write(`omnibal: warning: ${w}\n`);
  const samples = flags.input.length > 0 ? await readSamples(flags.input) : syntheticSamples(flags.synthetic, flags.seed);
  // The plan names its files absolute (stdout's JSON, the report); the --out file names relative
  // ones relative to its own folder, as simulate --plan reads them (plan-paths.ts).
  const inputs = flags.input.length > 0 ? { files: recordedInputs(flags.input) } : { synthetic: flags.synthetic, seed: flags.seed };
  const common = {
    model: flags.model,
    gpu: flags.gpu,
    samples,
    seed: flags.seed,
    schedule: flags.schedule,
    virtualStages: flags.virtualStages,
    calibration,
    epochs: flags.epochs,
    ...memory,
  };
  if (flags.searchLayout) {
    // --tp/--pp/--dp, --accum/--global-batch and --samples-per-pack set the global batch the
    // search holds; checked as the plain plan checks them (exit 2), never silently dropped.
    if (flags.tp * flags.pp * dp !== flags.gpus) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, `tp x pp x dp (${flags.tp} x ${flags.pp} x ${dp} = ${flags.tp * flags.pp * dp}) must equal the GPU count (${flags.gpus})`);
    }
    if (flags.globalBatch !== undefined) {
      integerBetween('globalBatch', flags.globalBatch, 1, 1 << 30);
      if (flags.globalBatch % dp !== 0) throw omnibalError(ErrorCodes.INVALID_OPTIONS, `the global batch (${flags.globalBatch} micro-batches) must divide by dp (${dp})`);
    } else {
      integerBetween('accum', flags.accum ?? DEFAULT_RUN.accum, 1, 1 << 20);
    }
    const microBatches = flags.globalBatch ?? (flags.accum ?? DEFAULT_RUN.accum) * dp;
    // The ranking covers every layout: a layout given is not ranked alone, it sets the global batch only.
    const layoutGiven = (['tp', 'pp', 'dp'] as const).filter((k) => given(k));
    const layoutNote =
      layoutGiven.length > 0
        ? `--search-layout ranks every tp x pp x dp layout of the ${flags.gpus} GPUs; ${layoutGiven.map((k) => `--${k}`).join(', ')} only set${layoutGiven.length === 1 ? 's' : ''} the global batch here (${microBatches} micro-batches of ${flags.samplesPerPack} samples per step)`
        : undefined;
    const bar = progressBar(process.stderr.isTTY === true && !flags.json);
    let ranked;
    try {
      ranked = searchLayouts({
        ...common,
        gpus: flags.gpus,
        globalBatchSamples: microBatches * flags.samplesPerPack,
        samplesPerPacks: [...(flags.samplesPerPack / 2 >= 1 ? [flags.samplesPerPack / 2] : []), flags.samplesPerPack, flags.samplesPerPack * 2],
        simulatedSteps: flags.simulatedSteps ?? 4,
        onProgress: bar.update,
      });
    } finally {
      bar.end();
    }
    const best = ranked.find((c) => c.error === undefined);
    // --report and --out describe the best layout, planned in full (ablation included).
    let bestPlan: TrainingPlan | undefined;
    if (best && (flags.report || flags.out)) {
      bestPlan = planTraining({
        ...common,
        cluster: { gpus: flags.gpus, tp: best.tp, pp: best.pp, dp: best.dp },
        accum: best.accum,
        samplesPerPack: best.samplesPerPack,
        simulatedSteps: flags.simulatedSteps,
        inputs,
      });
      if (flags.report) await writeOutputFile(flags.report, renderReport(bestPlan, bestPlan.memoryBytes));
      if (flags.out) await writeOutputFile(flags.out, `${JSON.stringify(savedAt(bestPlan, flags.input, flags.out))}\n`);
    }
    const rows = ranked.map((c, i) => [
      c.error ? '-' : i + 1,
      c.tp,
      c.pp,
      c.dp,
      c.accum,
      c.packedSamplesPerPack === undefined ? c.samplesPerPack : `${c.samplesPerPack} (${c.packedSamplesPerPack.toFixed(2)})`,
      c.samplesPerStep === undefined ? '' : fmt(c.samplesPerStep, 0),
      c.stepMs === undefined ? '' : (c.stepMs / 1000).toFixed(1),
      c.steps ?? '',
      c.hours === undefined ? '' : fmt(c.hours, 1),
      c.totalGpuHours === undefined ? 'does not fit' : fmt(c.totalGpuHours / 24, 1),
      c.tokensPerS === undefined ? '' : fmt(c.tokensPerS, 0),
      c.mfu === undefined ? '' : `${(c.mfu * 100).toFixed(1)}%`,
      c.error ?? '',
    ]);
    const epochs = `${flags.epochs} epoch${flags.epochs === 1 ? '' : 's'}`;
    const text = formatTable(['rank', 'tp', 'pp', 'dp', 'accum', 'samples/pack asked (held)', 'samples/step', 'step s', 'steps / epoch', `hours (${epochs})`, `GPU-days (${epochs})`, 'tokens/s', 'MFU', 'why not'], rows);
    const gb = ranked[0]?.globalBatchSamples ?? microBatches * flags.samplesPerPack;
    if (flags.json) {
      await writeStdout(`${JSON.stringify({ prediction: true, assumptions: PLAN_ASSUMPTIONS, globalBatchSamples: gb, epochs: flags.epochs, ...(layoutNote && { note: layoutNote }), layouts: ranked, ...(warnings.length > 0 && { warnings }) })}\n`);
    } else {
      await writeStdout(
        [
          `omnibal plan --search-layout: ${flags.model} on ${flags.gpus} x ${flags.gpu}, the same global batch of ${fmt(gb, 0)} samples per step for every layout (each rank takes a whole number of packs within one pack of its share; the epoch's last partial step is dropped) (PREDICTIONS of the cost model and simulator, ${flags.simulatedSteps ?? 4} simulated steps each); ranked by GPU-hours per epoch, hours and GPU-days for ${epochs}`,
          ...(layoutNote ? [`note: ${layoutNote}`] : []),
          text,
          ...(flags.report && bestPlan ? [`report of the best layout: ${flags.report}`] : []),
          ...(flags.out && bestPlan ? [`plan of the best layout: ${flags.out}`] : []),
        ].join('\n') + '\n',
      );
    }
    // Asked for the best layout's plan or report, and there is none: never a silent exit 0.
    if (!best && (flags.report || flags.out)) {
      throw omnibalError(ErrorCodes.INFEASIBLE, `no layout fits, so ${[flags.report, flags.out].filter(Boolean).join(' and ')} ${flags.report && flags.out ? 'were' : 'was'} not written (each layout's reason is in the table)`);
    }
    return;
  }
  const plan = planTraining({
    ...common,
    cluster: { gpus: flags.gpus, tp: flags.tp, pp: flags.pp, dp },
    accum: flags.globalBatch === undefined ? flags.accum ?? DEFAULT_RUN.accum : undefined,
    globalBatch: flags.globalBatch,
    samplesPerPack: flags.samplesPerPack,
    simulatedSteps: flags.simulatedSteps,
    inputs,
  });
  // The calibration's warnings were printed (named under their flag) before the long part; the
  // balanced plan's (samples left out) now.
  const dataWarnings = (plan.warnings ?? []).slice(warnings.length);
  for (const w of dataWarnings) process.stderr.write(`omnibal: warning: ${w}\n`);
  if (plan.warnings) plan.warnings = [...warnings, ...dataWarnings];
  if (flags.report) await writeOutputFile(flags.report, renderReport(plan, plan.memoryBytes));
  if (flags.out) await writeOutputFile(flags.out, `${JSON.stringify(savedAt(plan, flags.input, flags.out))}\n`);
  if (flags.json) await writeStdout(`${JSON.stringify(plan)}\n`);
  else await writeStdout(`${human(plan)}\n`);
}

/** Adds `omnibal plan` to the program. */
export function registerPlan(program: Command): void {
  const plan = program
    .command('plan')
    .description('plan a whole VLM training run and predict its speed-up (default: InternVL-Chat-1.5 on 64 A100-80G, 1.2M synthetic samples)')
    .option('--model <name>', 'model preset', DEFAULT_RUN.model)
    .option('--gpu <name>', 'GPU preset', DEFAULT_RUN.gpu)
    .option('--gpus <n>', 'GPU count', num, DEFAULT_RUN.cluster.gpus)
    .option('--tp <t>', 'tensor parallel size', num, DEFAULT_RUN.cluster.tp)
    .option('--pp <p>', 'pipeline stages', num, DEFAULT_RUN.cluster.pp)
    .option('--dp <d>', 'data parallel size (default gpus / (tp x pp))', num)
    .option('--accum <m>', `micro-batches per rank per step (default ${DEFAULT_RUN.accum})`, num)
    .option('--global-batch <n>', 'micro-batches per step over all ranks (divisible by dp)', num)
    .option('--input <file>', 'length file(s) instead of the synthetic default; repeatable', collect, [])
    .option('--synthetic <n>', 'synthetic samples when no --input', num, DEFAULT_RUN.samples)
    .option('--samples-per-pack <b>', 'mean samples per packed micro-batch', num, DEFAULT_RUN.samplesPerPack)
    .option('--seed <s>', 'seed', num, 0)
    .option('--schedule <name>', 'gpipe, 1f1b or interleaved', '1f1b')
    .option('--virtual-stages <v>', 'model chunks per device for --schedule interleaved (default 2)', num)
    .option('--simulated-steps <n>', 'steps simulated per configuration (default 16; 4 per layout with --search-layout)', num)
    .option('--epochs <n>', 'epochs to predict the training time of', num, 1)
    .option('--json', 'write the whole plan as one JSON object')
    .option('--out <file>', "also write the JSON plan to this file (with --search-layout: of the best layout); it names relative --input files relative to its own folder (stdout's --json: absolute), as simulate --plan reads them")
    .option('--report <file>', 'write a self-contained HTML report with charts (with --search-layout: of the best layout)')
    .option('--calibration <file>', 'measured layer times and stage memory to calibrate the cost model (see README)')
    .option('--search-layout', 'rank every tp x pp x dp layout of the GPUs and micro-batch size (half, as given, double; same global batch) by predicted GPU-hours');
  addMemoryFlags(plan).action(async (flags: PlanFlags, command: Command) => runPlan(flags, command));

  program
    .command('simulate')
    .description('re-simulate a plan written by omnibal plan --json or --out (edit its stages, cluster or accum by hand to ask what-if)')
    .requiredOption('--plan <file>', "the plan JSON; the length files it names (replay.inputs.files) are read relative to this file's folder when relative, so it reads the same files from any working directory")
    .option('--input <file>', 'length file(s) instead of those the plan names (relative to the working directory); repeatable', collect, [])
    .option('--json', 'write one JSON object')
    .action(async (flags: { plan: string; input: string[]; json?: boolean }) => {
      const saved = checkSavedPlan(readJsonFile(flags.plan, 'plan file'));
      const inputs = saved.replay.inputs;
      const samples =
        flags.input.length > 0
          ? await readSamples(flags.input)
          : inputs && 'files' in inputs
            ? await readPlanInputs(inputs.files, flags.plan)
            : syntheticSamples(inputs && 'synthetic' in inputs ? inputs.synthetic : DEFAULT_RUN.samples, inputs && 'seed' in inputs ? inputs.seed : 0);
      const r = simulateSavedPlan(saved, samples);
      if (flags.json) {
        await writeStdout(`${JSON.stringify({ prediction: true, assumptions: saved.assumptions, ...r })}\n`);
        return;
      }
      const mine = (i: number) => (r.chunks ? r.chunks.chunks.filter((c) => c.stage === i) : []);
      const rows = r.stages.stages.map((s, i) => [
        i,
        r.chunks ? mine(i).map((c) => `${c.firstLayer}-${c.lastLayer}`).join(', ') : `${s.firstLayer}-${s.lastLayer}`,
        r.chunks ? mine(i).map((c) => c.recomputeLayers.length).join(' + ') : s.recomputeLayers.length,
        s.timeMs.toFixed(0),
        (s.memoryBytes / 2 ** 30).toFixed(1),
      ]);
      await writeStdout(
        [
          `omnibal simulate: ${flags.plan} (PREDICTION of the cost model and simulator)`,
          formatTable(r.chunks ? ['stage', 'chunks (layers)', 'recomputed per chunk', 'ms / micro-batch', 'memory GiB'] : ['stage', 'layers', 'recomputed', 'ms / micro-batch', 'memory GiB'], rows),
          `predicted step ${(r.stepMs / 1000).toFixed(1)} s, ${(r.gpuHours / 24).toFixed(1)} GPU-days per epoch, bubble ${(r.bubbleFraction * 100).toFixed(0)}%`,
          ...figureLines(r.figures, saved.cluster.gpus),
        ].join('\n') + '\n',
      );
    });
}
