/**
 * `omnibal partition`: split a model into pipeline stages with per-stage recomputation.
 *
 * @module
 */
import type { Command } from 'commander';
import { ErrorCodes, omnibalError } from '../errors';
import { exportDeepSpeed, exportMegatron } from '../export/index';
import {
  applyCalibration,
  baselineStages,
  calibrate,
  resolveGpu,
  SPLITS,
  vlmStageProblem,
  type Calibration,
  type MicroBatchLoad,
  type Recompute,
  type Split,
  type StagePlan,
  type StageProblem,
  type Schedule,
} from '../model/index';
import { LAYER_KINDS, type LayerKind } from '../model/vlm';
import { gpuPresets, modelPresets } from '../model/presets';
import { checkCalibration } from '../model/calibration-file';
import { partitionForTarget, type TargetPlan } from '../model/target';
import { planWithFitHint } from '../model/fit-hint';
import { addMemoryFlags, checkMemorySize, describeFlag, targetFlag, trainingFlags, zeroFlag, type MemoryFlags } from './memory-flags';
import { readJsonFile } from '../io/json';
import { describeValue } from '../validate';
import { formatTable } from './table';
import { runInterleavedPartition } from './partition-chunks';
import { exportLines } from './export-lines';
import { writeStdout } from './output';
import { calibrationWarningsForCli } from './warnings';

interface PartitionFlags extends MemoryFlags {
  model?: string;
  layers?: string;
  gpu: string;
  pp?: number;
  tp?: number;
  dp?: number;
  microBatches?: number;
  visionPerMicroBatch?: number;
  textPerMicroBatch?: number;
  samplesPerMicroBatch?: number;
  fromPlan?: string;
  recompute: string;
  method: string;
  visionOnFirstStage?: boolean;
  calibration?: string;
  json?: boolean;
  schedule: string;
  virtualStages?: number;
  memoryVisionPerMicroBatch?: number;
  memoryTextPerMicroBatch?: number;
}

const num = (v: string) => Number(v);

/** The assumptions every prediction of `partition` carries, as printed with it. */
export const PARTITION_ASSUMPTIONS = [
  'iteration = sum of stage times + (micro-batches - 1) x slowest stage (the 1F1B closed form; the schedule sets memory)',
  'micro-batches in flight per stage from the schedule: 1F1B min(P - s, M), GPipe M, interleaved Megatron\'s count (chunk-weighted)',
  'layer times from FLOPs / (peak bf16 x per-kind efficiency) (+ a fixed cost per layer and micro-batch for a kind calibrated at two loads or more), backward = 2 x forward',
  'activations per block from the tensors autograd saves (bf16, sequence parallel, flash attention unless --no-flash-attention): 12h + 4kd + 4f (GELU MLP) or 8f (SwiGLU) bytes per token / tp; 2 n h / tp when recomputed; logits kept in fp32 and bf16',
  'activations sized for the heaviest micro-batch (the memory load) x in-flight count, a bound on every in-flight window',
  'static bytes per parameter: bf16 weights 2 + gradients 4 (fp32) or 2 (bf16) + Adam 12, sharded over dp by ZeRO 1/2/3; frozen modules keep weights only; fixed per-stage overhead',
  'cut communication at the network bandwidth, not overlapped; no data-parallel all-reduce',
];

/**
 * The assumptions of a prediction from a `--layers` file: its times and bytes are taken as given
 * (no FLOPs, no activation formula, no bytes per parameter), so only the schedule's are left.
 */
export const LAYERS_FILE_ASSUMPTIONS = [
  PARTITION_ASSUMPTIONS[0],
  PARTITION_ASSUMPTIONS[1],
  'layer times (forwardMs, backwardMs) and bytes (staticBytes; activationBytes per micro-batch in flight; checkpointBytes when recomputed) as the layers file gives them; recomputation adds a layer\'s forward',
  'cut communication as the layers file\'s commMs (none without it), not overlapped; no data-parallel all-reduce',
];


function layersProblem(file: string, flags: PartitionFlags): StageProblem {
  const doc = readJsonFile(file, 'layers file') as { layers?: Record<string, unknown>[]; commMs?: number[]; memoryBytes?: number; stages?: number; microBatches?: number };
  if (!doc || !Array.isArray(doc.layers) || doc.layers.length === 0) {
    throw omnibalError(ErrorCodes.PARSE, `${file}: expected { "layers": [{ "forwardMs", "backwardMs", "staticBytes", "activationBytes", "checkpointBytes" }, ...] }`);
  }
  const col = (key: string) =>
    Float64Array.from(doc.layers!, (x, i) => {
      const v = x[key];
      if (typeof v !== 'number') throw omnibalError(ErrorCodes.PARSE, `${file}: layers[${i}].${key} must be a number, got ${JSON.stringify(v)}`);
      return v;
    });
  const kinds = doc.layers.map((x) => x.kind as LayerKind | undefined);
  const memory = flags.memoryGib !== undefined ? flags.memoryGib * 2 ** 30 : doc.memoryBytes ?? resolveGpu(flags.gpu).memoryBytes;
  return {
    forwardMs: col('forwardMs'),
    backwardMs: col('backwardMs'),
    staticBytes: col('staticBytes'),
    activationBytes: col('activationBytes'),
    checkpointBytes: col('checkpointBytes'),
    stages: required('--pp', flags.pp ?? doc.stages, 'pipeline stages (or "stages" in the layers file)', 1 << 16),
    microBatches: required('--micro-batches', flags.microBatches ?? doc.microBatches, 'micro-batches per iteration (or "microBatches" in the layers file)'),
    schedule: flags.schedule as Schedule,
    virtualStages: flags.virtualStages,
    memoryBytes: memory,
    commMs: doc.commMs ? Float64Array.from(doc.commMs) : undefined,
    recompute: flags.recompute as Recompute,
    layerNames: doc.layers.map((x, i) => String(x.name ?? `layer.${i}`)),
    layerKinds: kinds.every((k) => k !== undefined && (LAYER_KINDS as readonly string[]).includes(k)) ? (kinds as LayerKind[]) : undefined,
  };
}

/** A required numeric flag: a clear error naming it when missing or not an integer from 1 to `max`. */
function required(flag: string, value: number | undefined, what: string, max = 1 << 20): number {
  if (value === undefined) throw omnibalError(ErrorCodes.INVALID_OPTIONS, `give ${flag} (${what})`);
  if (!Number.isInteger(value) || value < 1 || value > max) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `${flag} must be an integer between 1 and ${max}, got ${describeFlag(value)}`);
  return value;
}

/** An optional numeric flag within a range (NaN from a non-number is refused by name). */
function checked(flag: string, value: number | undefined, min: number, integer = false): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `${flag} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${describeFlag(value)}`);
  }
  return value;
}


interface Loads {
  /** The load that sets layer times (the mean micro-batch). */
  load: MicroBatchLoad;
  /** The load activations are sized for (the heaviest micro-batch). */
  memoryLoad: MicroBatchLoad;
  /** Where the memory load comes from, in words. */
  memoryFrom: string;
  /** A `--from-plan` plan's micro-batches per rank per step (`params.accum`), if it has one. */
  planMicroBatches?: number;
}

/**
 * A saved plan's `heaviestLoad`: undefined when the plan has none (written by an older pack),
 * else its tiles and tokens, each a whole number >= 0 (`ERR_OMNIBAL_PARSE` naming the JSON path
 * and what it holds otherwise: a present but malformed field is never read as a missing one).
 */
function savedHeaviestLoad(file: string, doc: object): { tiles: number; tokens: number } | undefined {
  if (!Object.prototype.hasOwnProperty.call(doc, 'heaviestLoad')) return undefined;
  const heaviest = (doc as { heaviestLoad: unknown }).heaviestLoad;
  const show = (v: unknown) => (typeof v === 'number' ? String(v) : typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'a list' : describeValue(v));
  const bad = (path: string, what: string, got: unknown) => omnibalError(ErrorCodes.PARSE, `${file}: ${path} must be ${what}, got ${show(got)}`);
  if (typeof heaviest !== 'object' || heaviest === null || Array.isArray(heaviest)) throw bad('heaviestLoad', "an object { tiles, tokens } (the plan's heaviest micro-batch)", heaviest);
  const h = heaviest as Record<string, unknown>;
  for (const k of ['tiles', 'tokens'] as const) {
    if (!(k in h)) throw omnibalError(ErrorCodes.PARSE, `${file}: heaviestLoad.${k} is missing (the plan's heaviest micro-batch needs tiles and tokens)`);
    if (typeof h[k] !== 'number' || !Number.isSafeInteger(h[k]) || (h[k] as number) < 0) throw bad(`heaviestLoad.${k}`, 'a whole number >= 0', h[k]);
  }
  return { tiles: h.tiles as number, tokens: h.tokens as number };
}

function loadsOf(flags: PartitionFlags): Loads {
  checked('--vision-per-micro-batch', flags.visionPerMicroBatch, 0);
  checked('--text-per-micro-batch', flags.textPerMicroBatch, 1);
  checked('--samples-per-micro-batch', flags.samplesPerMicroBatch, 1);
  checked('--memory-vision-per-micro-batch', flags.memoryVisionPerMicroBatch, 0);
  checked('--memory-text-per-micro-batch', flags.memoryTextPerMicroBatch, 1);
  let load: MicroBatchLoad;
  let memoryLoad: MicroBatchLoad;
  let memoryFrom: string;
  let planHeaviest: MicroBatchLoad | undefined;
  let planMicroBatches: number | undefined;
  if (flags.fromPlan) {
    // The plan carries the load: a given one would be silently ignored.
    const given = (['--vision-per-micro-batch', '--text-per-micro-batch', '--samples-per-micro-batch'] as const).filter((_, i) => [flags.visionPerMicroBatch, flags.textPerMicroBatch, flags.samplesPerMicroBatch][i] !== undefined);
    if (given.length > 0) throw omnibalError(ErrorCodes.INVALID_OPTIONS, `${given.join(', ')} and --from-plan conflict: the plan carries its own micro-batch load; give one (--memory-vision/text-per-micro-batch size memory for another load)`);
    const doc = readJsonFile(flags.fromPlan, 'plan file') as { schema?: string; load?: MicroBatchLoad; heaviestLoad?: MicroBatchLoad };
    if (doc?.schema !== 'omnibal.batch-plan/1' || !doc.load) {
      throw omnibalError(ErrorCodes.PARSE, `${flags.fromPlan}: not a plan written by omnibal pack --json (schema omnibal.batch-plan/1 with a load)`);
    }
    load = doc.load;
    const params = (doc as { params?: Record<string, unknown> }).params ?? {};
    const whole = (v: unknown, min: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
    if (whole(params.accum, 1)) planMicroBatches = params.accum;
    const heaviest = savedHeaviestLoad(flags.fromPlan, doc);
    const memoryGiven = flags.memoryVisionPerMicroBatch !== undefined && flags.memoryTextPerMicroBatch !== undefined;
    if (heaviest) {
      // The plan's real heaviest micro-batch, not its caps: the caps from --samples-per-pack are
      // soft (an over-cap sample gets a micro-batch of its own), so only this bounds every window.
      // A balanced plan's epochs each pack afresh within the same caps (the sampler, --epochs):
      // the heaviest micro-batch of any epoch is at most the most of this one's and the caps.
      let tiles = heaviest.tiles;
      let tokens = Math.max(1, heaviest.tokens);
      const capped = (doc as { strategy?: unknown }).strategy === 'balanced' && whole(params.maxVision, 0) && whole(params.maxText, 1);
      if (capped) {
        tiles = Math.max(tiles, params.maxVision as number);
        tokens = Math.max(tokens, params.maxText as number);
      }
      memoryLoad = planHeaviest = { tiles, tokens, sumSqLen: tokens * tokens };
      memoryFrom = capped
        ? `the heaviest micro-batch of any epoch (${tiles} tiles, ${tokens} tokens: the most of each over this plan's micro-batches, ${heaviest.tiles} tiles and ${heaviest.tokens} tokens, over-cap samples' own included, and over its caps, ${params.maxVision} and ${params.maxText}, which every epoch's packs keep to)`
        : `the plan's heaviest micro-batch (${heaviest.tiles} tiles, ${tokens} tokens: the most of each over its micro-batches, over-cap samples' own included)`;
    } else if (memoryGiven) {
      memoryLoad = load;
      memoryFrom = '';
    } else {
      throw omnibalError(ErrorCodes.PARSE, `${flags.fromPlan}: the plan has no heaviestLoad (written by an older omnibal pack): write it again with omnibal pack --json, or give --memory-vision-per-micro-batch and --memory-text-per-micro-batch`);
    }
  } else {
    if (flags.textPerMicroBatch === undefined) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give the micro-batch load: --text-per-micro-batch (and --vision-per-micro-batch), or --from-plan FILE');
    }
    const tokens = flags.textPerMicroBatch;
    const samples = flags.samplesPerMicroBatch ?? 1;
    load = { tiles: flags.visionPerMicroBatch ?? 0, tokens, sumSqLen: (tokens * tokens) / samples };
    memoryLoad = load;
    memoryFrom = 'the given micro-batch load';
  }
  if (flags.memoryVisionPerMicroBatch !== undefined || flags.memoryTextPerMicroBatch !== undefined) {
    // A memory load lighter than the compute load cannot bound it: an error naming both flags.
    const computeFlag = flags.fromPlan ? '--from-plan' : undefined;
    if (flags.memoryVisionPerMicroBatch !== undefined && flags.memoryVisionPerMicroBatch < load.tiles) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--memory-vision-per-micro-batch (${flags.memoryVisionPerMicroBatch}) is lighter than ${computeFlag ? `the --from-plan mean micro-batch (${load.tiles} tiles)` : `--vision-per-micro-batch (${load.tiles})`}: memory must be sized for at least the compute load`);
    }
    if (flags.memoryTextPerMicroBatch !== undefined && flags.memoryTextPerMicroBatch < load.tokens) {
      throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--memory-text-per-micro-batch (${flags.memoryTextPerMicroBatch}) is lighter than ${computeFlag ? `the --from-plan mean micro-batch (${load.tokens} tokens)` : `--text-per-micro-batch (${load.tokens})`}: memory must be sized for at least the compute load`);
    }
    const tokens = flags.memoryTextPerMicroBatch ?? memoryLoad.tokens;
    memoryLoad = { tiles: flags.memoryVisionPerMicroBatch ?? memoryLoad.tiles, tokens, sumSqLen: tokens * tokens };
    memoryFrom = `--memory-vision/text-per-micro-batch (${memoryLoad.tiles} tiles, ${tokens} tokens)`;
    if (planHeaviest && (memoryLoad.tiles < planHeaviest.tiles || memoryLoad.tokens < planHeaviest.tokens)) {
      process.stderr.write(`omnibal: warning: --memory-vision/text-per-micro-batch (${memoryLoad.tiles} tiles, ${tokens} tokens) is lighter than the plan's heaviest micro-batch (${planHeaviest.tiles} tiles, ${planHeaviest.tokens} tokens): the prediction that it fits is not a bound for the plan's heaviest micro-batches\n`);
    }
  }
  return { load, memoryLoad, memoryFrom, planMicroBatches };
}

function build(flags: PartitionFlags): { problem: StageProblem; memoryFrom: string; warnings: string[]; assumptions: readonly string[] } {
  if (flags.layers && flags.model) throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--model and --layers conflict: give one (a --layers file carries its own costs)');
  if (!['gpipe', '1f1b', 'interleaved'].includes(flags.schedule)) throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `--schedule must be one of gpipe, 1f1b, interleaved, got ${JSON.stringify(flags.schedule)}`);
  checked('--virtual-stages', flags.virtualStages, 1, true);
  if (flags.virtualStages !== undefined && flags.schedule !== 'interleaved') throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--virtual-stages needs --schedule interleaved');
  if (flags.schedule === 'interleaved' && flags.virtualStages === 1) throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--schedule interleaved needs --virtual-stages 2 or more; one chunk per device is --schedule 1f1b (Megatron-LM runs it as such)');
  checkMemorySize(flags);
  if (flags.layers) {
    // These size a model preset; a layers file carries its own costs and memory.
    const modelOnly = { '--tp': flags.tp, '--dp': flags.dp, '--zero': flags.zero, '--vision-per-micro-batch': flags.visionPerMicroBatch, '--text-per-micro-batch': flags.textPerMicroBatch, '--samples-per-micro-batch': flags.samplesPerMicroBatch, '--from-plan': flags.fromPlan, '--memory-vision-per-micro-batch': flags.memoryVisionPerMicroBatch, '--memory-text-per-micro-batch': flags.memoryTextPerMicroBatch, '--headroom': flags.headroom, '--calibration': flags.calibration, '--frozen': flags.frozen.length > 0 ? flags.frozen : undefined, '--grads': flags.grads !== 'fp32' ? flags.grads : undefined, '--no-flash-attention': flags.flashAttention ? undefined : false };
    const given = Object.entries(modelOnly).filter(([, v]) => v !== undefined).map(([k]) => k);
    if (given.length > 0) throw omnibalError(ErrorCodes.INVALID_OPTIONS, `${given.join(', ')} and --layers conflict: ${given.length > 1 ? 'they size' : 'it sizes'} a --model preset; a --layers file carries its own costs and memory`);
    return { problem: layersProblem(flags.layers, flags), memoryFrom: 'the layers file', warnings: [], assumptions: LAYERS_FILE_ASSUMPTIONS };
  }
  if (!flags.model) throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give --model NAME or --layers FILE');
  const gpu = resolveGpu(flags.gpu);
  const pp = required('--pp', flags.pp, 'pipeline stages', 1 << 16);
  for (const [flag, v] of [['--tp', flags.tp], ['--dp', flags.dp]] as const) checked(flag, v, 1, true);
  zeroFlag(flags.zero);
  const { load, memoryLoad, memoryFrom, planMicroBatches } = loadsOf(flags);
  // A --from-plan plan's accum is its micro-batches per iteration unless given.
  const microBatches = required('--micro-batches', flags.microBatches ?? planMicroBatches, 'micro-batches per iteration');
  const shape = { tp: flags.tp, dp: flags.dp, zero: flags.zero, training: trainingFlags(flags), load };
  let g = flags.memoryGib !== undefined ? { ...gpu, memoryBytes: flags.memoryGib * 2 ** 30 } : gpu;
  let problem: StageProblem;
  let warnings: string[] = [];
  const options = () => ({
    model: flags.model!,
    gpu: g,
    pp,
    microBatches,
    recompute: flags.recompute as Recompute,
    visionOnFirstStage: flags.visionOnFirstStage,
    schedule: flags.schedule as Schedule,
    virtualStages: flags.virtualStages,
    memoryLoad,
    headroom: flags.headroom,
    ...shape,
  });
  if (flags.calibration) {
    // Measured whole layers on one device (tp 1), as omnibal.profile does; scaled to --tp by the model.
    const doc = readJsonFile(flags.calibration, 'calibration file');
    // A file holding `null` or a list is a malformed calibration file (as in plan), not a wrong argument type.
    checkCalibration(doc);
    const result = calibrate(flags.model, g, { ...shape, tp: 1 }, doc as Calibration);
    g = result.gpu;
    problem = applyCalibration(vlmStageProblem(options()), result);
    warnings = calibrationWarningsForCli(result.warnings);
    for (const w of warnings) process.stderr.write(`omnibal: warning: ${w}\n`);
  } else {
    problem = vlmStageProblem(options());
  }
  const layers = problem.forwardMs.length;
  if (pp > layers) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--pp must be at most the ${layers} layers of ${flags.model}, got ${pp}`);
  return { problem, memoryFrom, warnings, assumptions: PARTITION_ASSUMPTIONS };
}

const GIB = 2 ** 30;

function baselinesOf(problem: StageProblem): Record<string, { objectiveMs: number; bottleneckMs: number } | { error: string }> {
  const out: Record<string, { objectiveMs: number; bottleneckMs: number } | { error: string }> = {};
  for (const method of SPLITS) {
    for (const rec of ['none', 'full', 'uniform'] as const) {
      try {
        const p = baselineStages(problem, method, rec);
        out[`${method}+${rec}`] = { objectiveMs: p.objectiveMs, bottleneckMs: p.bottleneckMs };
      } catch (error) {
        out[`${method}+${rec}`] = { error: (error as Error).message };
      }
    }
  }
  return out;
}

async function runPartition(flags: PartitionFlags): Promise<void> {
  const targetName = targetFlag(flags.target);
  if (flags.target !== 'none' && flags.method !== 'optimal') throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--target ${flags.target} applies to --method optimal; a baseline split is exported as it is`);
  const built = build(flags);
  if (built.problem.schedule === 'interleaved' && flags.method === 'optimal') {
    // v x P model chunks, as Megatron-LM's interleaved schedule runs them.
    await runInterleavedPartition({ problem: built.problem, memoryFrom: built.memoryFrom, headroom: flags.headroom, target: targetName, method: flags.method, json: flags.json, assumptions: built.assumptions });
    return;
  }
  let problem = built.problem;
  const method = flags.method;
  let plan: StagePlan;
  let target: TargetPlan | undefined;
  if (method === 'optimal') {
    const asked = problem;
    plan = planWithFitHint(asked, (q) => (q === asked ? (target = partitionForTarget(q, targetName)) : partitionForTarget(q, targetName)).plan, '--micro-batches');
    target = target!;
    problem = target.problem;
  } else if ((SPLITS as readonly string[]).includes(method)) {
    const rec = flags.recompute === 'none' || flags.recompute === 'full' ? flags.recompute : 'uniform';
    plan = baselineStages(problem, method as Split, rec);
  } else {
    throw Object.assign(new RangeError(`method must be one of optimal, ${SPLITS.join(', ')}, got ${JSON.stringify(method)}`), { code: ErrorCodes.UNKNOWN_OPTION });
  }
  const baselines = baselinesOf(problem);
  const frameworks = { megatron: exportMegatron(problem, plan), deepspeed: exportDeepSpeed(plan) };
  const schedule = { name: problem.schedule ?? '1f1b', virtualStages: problem.schedule === 'interleaved' ? (problem.virtualStages ?? 2) : 1 };
  const targetInfo = target && { name: target.target, recompute: target.problem.recompute, uniformLayers: target.problem.uniformLayers, unconstrained: target.unconstrained ?? null, unconstrainedGain: target.unconstrainedGain ?? null, notes: target.notes };
  if (flags.json) {
    await writeStdout(
      `${JSON.stringify({
        prediction: { note: 'figures are predictions of the omnibal cost model', assumptions: built.assumptions },
        memory: { schedule, activationsSizedFor: built.memoryFrom, headroom: flags.headroom ?? 0 },
        target: targetInfo ?? null,
        stages: plan.stages,
        objectiveMs: plan.objectiveMs,
        bottleneckMs: plan.bottleneckMs,
        lowerBoundMs: plan.lowerBoundMs,
        baselines,
        exports: frameworks,
        ...(built.warnings.length > 0 && { warnings: built.warnings }),
      })}\n`,
    );
    return;
  }
  const gib = (x: number) => (x / GIB).toFixed(1);
  const rows = plan.stages.map((s, i) => [
    i,
    `${s.firstLayer}-${s.lastLayer}`,
    s.layerNames.length ? `${s.layerNames[0]} .. ${s.layerNames[s.layerNames.length - 1]}` : '',
    s.selectiveLayers.length ? `${s.recomputeLayers.length} + ${s.selectiveLayers.length} sel.` : s.recomputeLayers.length,
    s.timeMs.toFixed(1),
    gib(s.memoryBytes),
    `${gib(s.memory.weights)} / ${gib(s.memory.gradients)} / ${gib(s.memory.optimizer)} / ${gib(s.memory.activations)} / ${gib(s.memory.checkpoints)} / ${gib(s.memory.fixed)}`,
    Number.isInteger(s.inFlight) ? s.inFlight : s.inFlight.toFixed(2),
  ]);
  const lines = [
    `omnibal partition (${method}${target && target.target !== 'none' ? `, target ${target.target}` : ''}): ${plan.stages.length} stages, ${problem.microBatches} micro-batches, ${schedule.name}${schedule.name === 'interleaved' ? ` (v = ${schedule.virtualStages})` : ''}, ${(problem.memoryBytes / GIB).toFixed(0)} GiB per GPU`,
    'PREDICTION of the omnibal cost model, assuming:',
    ...built.assumptions.map((a) => `  - ${a}`),
    `  - activations sized for ${built.memoryFrom}${flags.headroom ? ` + ${(flags.headroom * 100).toFixed(0)}% headroom` : ''}`,
    '',
    formatTable(['stage', 'layers', 'names', 'recomputed', 'ms / micro-batch', 'memory GiB', 'weights / grads / optim / acts / ckpts / fixed GiB', 'in flight'], rows),
    '',
    `predicted iteration ${plan.objectiveMs.toFixed(0)} ms; bottleneck ${plan.bottleneckMs.toFixed(1)} ms (lower bound ${plan.lowerBoundMs.toFixed(1)} ms)`,
    ...(target ? target.notes.map((n) => `  target: ${n}`) : []),
    ...(target?.unconstrained
      ? [`  the unconstrained optimum (${target.unconstrained.objectiveMs.toFixed(0)} ms) would save ${((target.unconstrainedGain ?? 0) * 100).toFixed(1)}% of this plan's iteration time`]
      : []),
    '',
    formatTable(
      ['baseline (split+recompute)', 'predicted iteration ms', 'vs this plan'],
      Object.entries(baselines).map(([k, v]) => ('error' in v ? [k, 'does not fit', ''] : [k, v.objectiveMs.toFixed(0), `${(v.objectiveMs / plan.objectiveMs).toFixed(2)}x`])),
    ),
    '',
    ...exportLines(frameworks),
  ];
  await writeStdout(`${lines.join('\n')}\n`);
}

/** Adds `omnibal partition` to the program. */
export function registerPartition(program: Command): void {
  const command = program
    .command('partition')
    .description('split a model into pipeline stages with per-stage recomputation (a prediction of the cost model)')
    // The preset lists come from presets/*.json, so --help names every preset the command takes.
    .option('--model <name>', `model preset (${modelPresets().join(', ')})`)
    .option('--layers <file>', 'measured layers as JSON: { "layers": [{ "forwardMs", "backwardMs", "staticBytes", "activationBytes", "checkpointBytes" }] }')
    .option('--gpu <name>', `GPU preset (${gpuPresets().join(', ')})`, 'A100-80G')
    .option('--pp <p>', 'pipeline stages', num)
    .option('--tp <t>', 'tensor parallel size (default 1)', num)
    .option('--dp <d>', 'data parallel size: ZeRO shards over it (default 1)', num)
    .option('--schedule <name>', 'pipeline schedule: 1f1b, gpipe or interleaved (sets the in-flight micro-batches)', '1f1b')
    .option('--virtual-stages <v>', 'model chunks per device for --schedule interleaved (default 2)', num)
    .option('--memory-vision-per-micro-batch <tiles>', 'size activations for this many tiles (default: the plan caps or the given load)', num)
    .option('--memory-text-per-micro-batch <tokens>', 'size activations for this many tokens (default: the plan caps or the given load)', num)
    .option('--micro-batches <m>', "micro-batches per iteration (default with --from-plan: the plan's accum)", num)
    .option('--vision-per-micro-batch <tiles>', 'image tiles per micro-batch', num)
    .option('--text-per-micro-batch <tokens>', 'LLM tokens per micro-batch', num)
    .option('--samples-per-micro-batch <n>', 'samples packed in a micro-batch (for attention cost; default 1: one sequence of all its tokens)', num)
    .option('--from-plan <file>', 'take the micro-batch load from a plan written by omnibal pack --json')
    .option('--recompute <mode>', 'none, full, block, any, selective (block + Megatron selective per stage) or selective-all', 'block')
    .option('--method <name>', `optimal, or a baseline: ${SPLITS.join(', ')}`, 'optimal')
    .option('--vision-on-first-stage', 'keep the vision encoder and projector on stage 0')
    .option('--calibration <file>', 'measured layer times and stage memory (see README) to calibrate the model')
    .option('--json', 'write one JSON object');
  addMemoryFlags(command).action((flags: PartitionFlags) => runPartition(flags));
}
