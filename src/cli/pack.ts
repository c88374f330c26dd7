/**
 * `omnibal pack`: plan balanced batches for a dataset's per-sample lengths.
 *
 * @module
 */
import type { Command } from 'commander';
import { backend } from '../binding';
import { batchMetrics, droppedSamples, planBatchesAsync, searchIsfArgumentsAsync, STRATEGIES, TAILS, type AsyncOptions } from '../data/index';
import type { IsfSearch } from '../data/isf-search';
import type { BatchMetrics } from '../data/metrics';
import type { BatchPlan, Tail } from '../data/plan';
import type { Samples } from '../data/samples';
import { resolvePlanOptions, type PlanBatchesOptions, type Strategy } from '../data/strategy';
import { checkStepSize } from '../data/step-size';
import { syntheticSamples } from '../data/synthetic';
import { meanMicroBatchLoad } from '../data/load';
import { heaviestMicroBatchLoad } from '../model/memory-load';
import { DEFAULT_COST_MODEL, modelTextCost } from '../data/model-cost';
import { ErrorCodes, omnibalError } from '../errors';
import { readSamples, SAMPLES_FORMATS, type SamplesFormat, type SamplesStream } from '../io/samples';
import { checkOutputFiles, stdoutIsClosed, writeOutputChunks, writeStdout } from './output';
import { planJsonChunks } from './plan-json';
import { formatTable, progressBar } from './table';
import { planWarnings } from './warnings';

export { BATCH_PLAN_SCHEMA, planToJson } from './plan-json';

interface PackFlags {
  input: string[];
  inputFormat?: string;
  synthetic?: number;
  dp: number;
  accum?: number;
  samplesPerPack?: number;
  maxVision?: number;
  maxText?: number;
  strategy: string;
  seed?: number;
  epoch?: number;
  tail?: string;
  costA?: number;
  costB?: number;
  model: string;
  compare?: boolean;
  json?: boolean;
  out?: string;
}

const num = (v: string) => Number(v);
const collect = (v: string, prev: string[]) => [...prev, v];

function fmt(x: number, digits: number): string {
  return x.toFixed(digits);
}

function dropSummary(plan: BatchPlan): string {
  if (plan.droppedIndex.length === 0) return '0';
  const counts = new Map<string, number>();
  for (const d of droppedSamples(plan)) counts.set(d.reason, (counts.get(d.reason) ?? 0) + 1);
  return `${plan.droppedIndex.length} (${[...counts].map(([r, c]) => `${r} ${c}`).join(', ')})`;
}

/** The table's line on carried samples (tail `carry`), labelled; empty otherwise. */
function carryLine(results: { plan: BatchPlan; metrics: BatchMetrics }[]): string {
  const carrying = results.filter(({ plan }) => plan.tail === 'carry');
  if (carrying.length === 0) return '';
  const counts = carrying.map(({ plan, metrics: m }) => `${plan.strategy}: ${m.carriedIn} carried in, ${m.carriedOut} carried out`).join('; ');
  return `carried (--tail carry) = ${counts}: the carried-out samples are this epoch's tail (listed in the JSON's dropped, reason carried), left out here to be planned in the next epoch's plan (the library's carry option, the Python sampler's tail='carry'); one CLI run plans one epoch, so nothing is carried in.\n`;
}

async function loadSamples(flags: PackFlags): Promise<{ samples: Samples; source: string }> {
  if (flags.synthetic !== undefined && flags.input.length > 0) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give --input or --synthetic, not both');
  }
  if (flags.inputFormat !== undefined && !SAMPLES_FORMATS.includes(flags.inputFormat as SamplesFormat)) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `--input-format must be one of ${SAMPLES_FORMATS.join(', ')}`);
  }
  if (flags.compare && flags.json) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--compare prints a table of every strategy, --json one plan: give one (--compare --out FILE writes the plan of --strategy)');
  }
  if (flags.synthetic !== undefined && flags.inputFormat !== undefined) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--input-format applies to --input files, not --synthetic');
  }
  if (flags.input.filter((f) => f === '-').length > 1) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, '--input - (stdin) can be given once');
  }
  if (flags.synthetic !== undefined) {
    return { samples: syntheticSamples(flags.synthetic, flags.seed ?? 0), source: `${flags.synthetic} synthetic samples` };
  }
  if (flags.input.length === 0) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, 'give --input FILE (repeatable) or --synthetic N');
  }
  const inputs = flags.input.map((f): string | SamplesStream => (f === '-' ? { name: '<stdin>', stream: process.stdin } : f));
  const loaded = await readSamples(inputs, { format: flags.inputFormat as SamplesFormat | undefined });
  return { samples: loaded, source: `${loaded.text.length} samples from ${loaded.files.length} file(s)` };
}

/**
 * Plans with `options`. An ISF plan sized by samples per pack runs the caps search here, then
 * plans with the caps it chose (the plan the search inside the planner would give), so its
 * warnings judge what it evaluated; the options are checked first, before a long search.
 */
async function planWithSearch(samples: Samples, options: PlanBatchesOptions, progress: AsyncOptions): Promise<{ plan: BatchPlan; isfSearch?: IsfSearch }> {
  if (options.strategy !== 'isf' || options.samplesPerPack === undefined || options.maxVision !== undefined || options.maxText !== undefined) {
    return { plan: await planBatchesAsync(samples, options, progress) };
  }
  const o = resolvePlanOptions(options);
  checkStepSize(o.dp, o.accum);
  const isfSearch = await searchIsfArgumentsAsync(samples, { samplesPerPack: options.samplesPerPack, dp: o.dp, accum: o.accum, seed: o.seed });
  const { maxVision, maxText } = isfSearch.candidates[isfSearch.chosen];
  const plan = await planBatchesAsync(samples, { ...options, samplesPerPack: undefined, maxVision, maxText }, progress);
  return { plan, isfSearch };
}

async function runPack(flags: PackFlags): Promise<void> {
  checkOutputFiles([['--out', flags.out]], flags.input.map((f) => ['--input', f]));
  const { samples, source } = await loadSamples(flags);
  // The step-time cost of the model's LLM unless costA/costB are given (see data/model-cost.ts).
  const modelCost = modelTextCost(flags.model);
  flags.costA ??= modelCost.a;
  flags.costB ??= modelCost.b;
  const options: PlanBatchesOptions = {
    strategy: flags.strategy as Strategy,
    dp: flags.dp,
    accum: flags.accum,
    samplesPerPack: flags.samplesPerPack,
    maxVision: flags.maxVision,
    maxText: flags.maxText,
    seed: flags.seed,
    epoch: flags.epoch,
    tail: flags.tail as Tail | undefined,
    costA: flags.costA,
    costB: flags.costB,
  };
  const cost = { a: flags.costA, b: flags.costB };
  const strategies = flags.compare ? STRATEGIES : [options.strategy ?? 'balanced'];
  const results: { plan: BatchPlan; metrics: BatchMetrics; ms: number; isfSearch?: IsfSearch }[] = [];
  for (const strategy of strategies) {
    const bar = samples.text.length >= 200_000 ? progressBar(`planning ${strategy}`) : { done: () => {} };
    const started = process.hrtime.bigint();
    // --compare --tail carry: the baselines, which cannot carry, drop their tail.
    const tail = options.tail === 'carry' && flags.compare && strategy !== 'balanced' ? 'drop' : options.tail;
    const { plan, isfSearch } = await planWithSearch(samples, { ...options, strategy, tail }, { onProgress: 'onProgress' in bar ? bar.onProgress : undefined });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    bar.done();
    results.push({ plan, metrics: batchMetrics(plan, samples, cost), ms, isfSearch });
  }
  const main = results[0];
  const params = {
    dp: main.plan.dp,
    accum: main.plan.accum,
    samplesPerPack: flags.samplesPerPack ?? null,
    maxVision: main.plan.maxVision ?? null,
    maxText: main.plan.maxText ?? null,
    batchSize: main.plan.batchSize ?? null,
    seed: flags.seed ?? 0,
    epoch: flags.epoch ?? 0,
    tail: main.plan.tail,
    model: flags.model,
    costA: flags.costA,
    costB: flags.costB,
    inputs: flags.synthetic !== undefined ? { synthetic: flags.synthetic } : flags.input,
  };
  const warnings = planWarnings(main.plan, samples.text.length, main.isfSearch);
  for (const w of warnings) process.stderr.write(`omnibal: warning: ${w}\n`);
  if (flags.json || flags.out) {
    // Streamed from the plan's arrays: 10M sample indices never become one string. The heaviest
    // micro-batch (over-cap samples' own micro-batches included) is what `partition --from-plan` sizes memory for.
    const heaviest = main.plan.steps > 0 ? heaviestMicroBatchLoad(main.plan, samples) : undefined;
    await writeOutputChunks(flags.out, planJsonChunks(main.plan, main.metrics, params, meanMicroBatchLoad(main.plan, samples), warnings, undefined, heaviest));
    if (flags.json || stdoutIsClosed()) return;
  }
  const head = `omnibal pack: ${source}, dp ${main.plan.dp}, accum ${main.plan.accum}, backend ${backend().kind}`;
  const size = (p: BatchPlan) => (p.maxVision !== undefined ? `caps ${p.maxVision} / ${p.maxText}` : `batch ${p.batchSize}`);
  const rows = results.map(({ plan, metrics: m, ms }) => [
    plan.strategy,
    size(plan),
    m.steps,
    m.packs,
    fmt(m.samplesPerPack, 2),
    fmt(m.padRatio, 4),
    fmt(m.visionDist, 5),
    fmt(m.textDist, 5),
    fmt(m.costDist, 5),
    `${fmt(100 * m.costExcessMedian, 2)}% / ${fmt(100 * m.costExcessP99, 2)}%`,
    dropSummary(plan),
    plan.oversizeIndex.length,
    fmt(ms, 0),
  ]);
  await writeStdout(
    `${head}\n\n${formatTable(
      ['strategy', 'size (vision/text)', 'steps', 'packs', 'samples/pack', 'pad', 'vision dist', 'text dist', 'cost dist', 'slowest rank + (median / p99)', 'dropped', 'own micro-batch', 'ms'],
      rows,
    )}\n\ndist = mean over steps of sum_r (max - load_r) / (max * dp): the share of rank time spent waiting.\ncost = ${flags.costA} * tokens + ${flags.costB.toPrecision(4)} * sum(len^2) per micro-batch${flags.costB === modelCost.b && flags.costA === modelCost.a ? ` (${flags.model}'s LLM, hidden ${modelCost.llmHidden}: causal-attention FLOPs ratio)` : ''}; slowest rank + = max / mean - 1 of that cost per step, a prediction of the step time lost to imbalance assuming compute-bound ranks.\nown micro-batch = samples over the caps derived from --samples-per-pack, each packed alone, in steps of such micro-batches (those short of a whole step share one step with random packs).\n${carryLine(results)}`,
  );
}

/** Adds `omnibal pack` to the program. */
export function registerPack(program: Command): void {
  program
    .command('pack')
    .description('plan balanced mini-batches for data-parallel ranks from per-sample lengths')
    .option('--input <file>', 'length file (.json reference list, .jsonl, .csv; - for stdin); repeatable, concatenated in order', collect, [])
    .option('--input-format <format>', `format of every input: ${SAMPLES_FORMATS.join(', ')} (default: from the extension; stdin: from its first byte)`)
    .option('--synthetic <n>', 'plan n synthetic samples with the real SFT data statistics instead of files', num)
    .requiredOption('--dp <n>', 'data-parallel ranks', num)
    .option('--accum <m>', 'micro-batches per rank per step (gradient accumulation; default 1)', num)
    .option('--samples-per-pack <b>', 'wanted mean samples per micro-batch (caps are derived)', num)
    .option('--max-vision <qv>', 'vision cap of a micro-batch (tiles)', num)
    .option('--max-text <qt>', 'text cap of a micro-batch (tokens)', num)
    .option('--strategy <name>', `one of ${STRATEGIES.join(', ')}`, 'balanced')
    .option('--seed <s>', 'seed (default 0)', num)
    .option('--epoch <e>', 'epoch: each has its own order (default 0)', num)
    .option('--tail <policy>', `the last incomplete step: ${TAILS.join(', ')} (default drop; carry: left out, reported as carried for the next epoch's plan, balanced only)`)
    .option('--model <name>', 'VLM preset whose LLM sets the default text cost t + t^2/(12 h) (presets/models.json)', DEFAULT_COST_MODEL)
    .option('--cost-a <a>', 'text cost per token (default 1)', num)
    .option('--cost-b <b>', "text cost per squared sample length (default 1/(12 h) for --model's LLM)", num)
    .option('--compare', 'plan with every strategy and print them side by side')
    .option('--json', 'write one JSON object (the plan, its metrics and parameters)')
    .option('--out <file>', 'write the JSON plan to this file')
    .action(async (flags: PackFlags) => runPack(flags));
}
