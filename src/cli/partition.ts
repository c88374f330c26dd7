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
  partitionStages,
  resolveGpu,
  SPLITS,
  vlmStageProblem,
  type Calibration,
  type MicroBatchLoad,
  type Recompute,
  type Split,
  type StagePlan,
  type StageProblem,
} from '../model/index';
import { LAYER_KINDS, type LayerKind } from '../model/vlm';
import { readJsonFile } from '../io/json';
import { formatTable } from './table';

interface PartitionFlags {
  model?: string;
  layers?: string;
  gpu: string;
  pp?: number;
  tp?: number;
  dp?: number;
  zero?: number;
  microBatches?: number;
  visionPerMicroBatch?: number;
  textPerMicroBatch?: number;
  samplesPerMicroBatch?: number;
  fromPlan?: string;
  recompute: string;
  method: string;
  visionOnFirstStage?: boolean;
  memoryGib?: number;
  calibration?: string;
  json?: boolean;
}

const num = (v: string) => Number(v);

/** The assumptions every prediction of `partition` carries, as printed with it. */
export const PARTITION_ASSUMPTIONS = [
  '1F1B schedule: iteration = sum of stage times + (micro-batches - 1) x slowest stage',
  'layer times from FLOPs / (peak bf16 x per-kind efficiency), backward = 2 x forward',
  'activations 34 n h / tp bytes per layer kept, 2 n h / tp when recomputed; logits kept in fp32 and bf16',
  'optimizer state 16 bytes/parameter (ZeRO-1: 4 + 12/dp); fixed per-stage overhead',
  'cut communication at the network bandwidth, not overlapped; no data-parallel all-reduce',
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
    stages: flags.pp ?? doc.stages ?? NaN,
    microBatches: flags.microBatches ?? doc.microBatches ?? NaN,
    memoryBytes: memory,
    commMs: doc.commMs ? Float64Array.from(doc.commMs) : undefined,
    recompute: flags.recompute as Recompute,
    layerNames: doc.layers.map((x, i) => String(x.name ?? `layer.${i}`)),
    layerKinds: kinds.every((k) => k !== undefined && (LAYER_KINDS as readonly string[]).includes(k)) ? (kinds as LayerKind[]) : undefined,
  };
}

function loadOf(flags: PartitionFlags): MicroBatchLoad {
  if (flags.fromPlan) {
    const doc = readJsonFile(flags.fromPlan, 'plan file') as { schema?: string; load?: MicroBatchLoad };
    if (doc?.schema !== 'omnibal.batch-plan/1' || !doc.load) {
      throw omnibalError(ErrorCodes.PARSE, `${flags.fromPlan}: not a plan written by omnibal pack --json (schema omnibal.batch-plan/1 with a load)`);
    }
    return doc.load;
  }
  if (flags.textPerMicroBatch === undefined) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give the micro-batch load: --text-per-micro-batch (and --vision-per-micro-batch), or --from-plan FILE');
  }
  const tokens = flags.textPerMicroBatch;
  const samples = flags.samplesPerMicroBatch ?? 1;
  return { tiles: flags.visionPerMicroBatch ?? 0, tokens, sumSqLen: (tokens * tokens) / samples };
}

function build(flags: PartitionFlags): StageProblem {
  if (flags.layers) return layersProblem(flags.layers, flags);
  if (!flags.model) throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give --model NAME or --layers FILE');
  const gpu = resolveGpu(flags.gpu);
  const load = loadOf(flags);
  const shape = { tp: flags.tp, dp: flags.dp, zero: flags.zero, load };
  let g = flags.memoryGib !== undefined ? { ...gpu, memoryBytes: flags.memoryGib * 2 ** 30 } : gpu;
  let problem: StageProblem;
  const options = () => ({
    model: flags.model!,
    gpu: g,
    pp: flags.pp ?? NaN,
    microBatches: flags.microBatches ?? NaN,
    recompute: flags.recompute as Recompute,
    visionOnFirstStage: flags.visionOnFirstStage,
    ...shape,
  });
  if (flags.calibration) {
    const result = calibrate(flags.model, g, shape, readJsonFile(flags.calibration, 'calibration file') as Calibration);
    g = result.gpu;
    problem = applyCalibration(vlmStageProblem(options()), result);
  } else {
    problem = vlmStageProblem(options());
  }
  return problem;
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

function runPartition(flags: PartitionFlags): void {
  const problem = build(flags);
  const method = flags.method;
  let plan: StagePlan;
  if (method === 'optimal') plan = partitionStages(problem);
  else if ((SPLITS as readonly string[]).includes(method)) {
    const rec = flags.recompute === 'none' || flags.recompute === 'full' ? flags.recompute : 'uniform';
    plan = baselineStages(problem, method as Split, rec);
  } else {
    throw Object.assign(new RangeError(`method must be one of optimal, ${SPLITS.join(', ')}, got ${JSON.stringify(method)}`), { code: ErrorCodes.UNKNOWN_OPTION });
  }
  const baselines = baselinesOf(problem);
  const frameworks = { megatron: exportMegatron(problem, plan), deepspeed: exportDeepSpeed(plan) };
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({
        prediction: { note: 'figures are predictions of the omnibal cost model', assumptions: PARTITION_ASSUMPTIONS },
        stages: plan.stages,
        objectiveMs: plan.objectiveMs,
        bottleneckMs: plan.bottleneckMs,
        lowerBoundMs: plan.lowerBoundMs,
        baselines,
        exports: frameworks,
      })}\n`,
    );
    return;
  }
  const rows = plan.stages.map((s, i) => [
    i,
    `${s.firstLayer}-${s.lastLayer}`,
    s.layerNames.length ? `${s.layerNames[0]} .. ${s.layerNames[s.layerNames.length - 1]}` : '',
    s.recomputeLayers.length,
    s.timeMs.toFixed(1),
    (s.memoryBytes / GIB).toFixed(1),
    s.inFlight,
  ]);
  const lines = [
    `omnibal partition (${method}): ${plan.stages.length} stages, ${problem.microBatches} micro-batches, ${(problem.memoryBytes / GIB).toFixed(0)} GiB per GPU`,
    'PREDICTION of the omnibal cost model, assuming:',
    ...PARTITION_ASSUMPTIONS.map((a) => `  - ${a}`),
    '',
    formatTable(['stage', 'layers', 'names', 'recomputed', 'ms / micro-batch', 'memory GiB', 'in flight'], rows),
    '',
    `predicted iteration ${plan.objectiveMs.toFixed(0)} ms; bottleneck ${plan.bottleneckMs.toFixed(1)} ms (lower bound ${plan.lowerBoundMs.toFixed(1)} ms)`,
    '',
    formatTable(
      ['baseline (split+recompute)', 'predicted iteration ms', 'vs this plan'],
      Object.entries(baselines).map(([k, v]) => ('error' in v ? [k, 'does not fit', ''] : [k, v.objectiveMs.toFixed(0), `${(v.objectiveMs / plan.objectiveMs).toFixed(2)}x`])),
    ),
    '',
    `Megatron-LM: ${frameworks.megatron.args.join(' ')}`,
    ...frameworks.megatron.unsupported.map((u) => `  cannot express: ${u}`),
    `DeepSpeed parts: [${frameworks.deepspeed.parts.join(', ')}]`,
    ...frameworks.deepspeed.unsupported.map((u) => `  cannot express: ${u}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Adds `omnibal partition` to the program. */
export function registerPartition(program: Command): void {
  program
    .command('partition')
    .description('split a model into pipeline stages with per-stage recomputation (a prediction of the cost model)')
    .option('--model <name>', 'model preset (internvl-chat-1.5, internvl-chat-1.5-plus, internvl-300m-internlm2-7b, llava-1.5-7b)')
    .option('--layers <file>', 'measured layers as JSON: { "layers": [{ "forwardMs", "backwardMs", "staticBytes", "activationBytes", "checkpointBytes" }] }')
    .option('--gpu <name>', 'GPU preset (A100-80G, H100-80G, H200)', 'A100-80G')
    .option('--pp <p>', 'pipeline stages', num)
    .option('--tp <t>', 'tensor parallel size', num)
    .option('--dp <d>', 'data parallel size', num)
    .option('--zero <z>', 'ZeRO stage, 0 or 1', num)
    .option('--micro-batches <m>', 'micro-batches per iteration', num)
    .option('--vision-per-micro-batch <tiles>', 'image tiles per micro-batch', num)
    .option('--text-per-micro-batch <tokens>', 'LLM tokens per micro-batch', num)
    .option('--samples-per-micro-batch <n>', 'samples packed in a micro-batch (for attention cost)', num)
    .option('--from-plan <file>', 'take the micro-batch load from a plan written by omnibal pack --json')
    .option('--recompute <mode>', 'none, full, block or any', 'block')
    .option('--method <name>', `optimal, or a baseline: ${SPLITS.join(', ')}`, 'optimal')
    .option('--vision-on-first-stage', 'keep the vision encoder and projector on stage 0')
    .option('--memory-gib <gib>', 'memory per GPU (default: the GPU preset)', num)
    .option('--calibration <file>', 'measured layer times and stage memory (see README) to calibrate the model')
    .option('--json', 'write one JSON object')
    .action((flags: PartitionFlags) => runPartition(flags));
}
