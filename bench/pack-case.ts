// One benchmark case of `npm run bench -- pack`, in its own process so its peak RSS is its own.
// Usage: node --import tsx bench/pack-case.ts IMPL DATA   (prints one JSON line)
//   IMPL: native (the library's default cost: the default model's step-time cost) | native-tokens (costB 0) |
//         native-cost | js | bin-packer | native-isf | native-random | native-length-grouped,
//         optionally suffixed @DP (data-parallel ranks, default 8)
//   DATA: real | synthetic:N | skewed:N (1% of samples at 40 tiles, 16-18k tokens) |
//         heavytext:N (3% of samples' text stretched 4-16x)
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { firstFitDecreasing } from 'bin-packer';
import { jsBackend } from '../src/binding';
import { capsForSamplesPerPack, type Samples } from '../src/data/samples';
import { assemble, Packs, type BatchPlan } from '../src/data/plan';
import { batchMetricsTwin } from '../src/data/metrics';
import { shuffleInPlace } from '../src/random/permutation';
import { Rng } from '../src/random/rng';
import { syntheticSamples } from '../src/data/synthetic';
import { readSamples } from '../src/io/samples';
import type * as Native from '../bindings';
import { modelTextCost, DEFAULT_COST_MODEL } from '../src/data/model-cost';
import { shareSdRatio } from './share-sd';

const [implArg, data] = process.argv.slice(2);
const [impl, dpArg] = implArg.split('@');
const DP = dpArg ? Number(dpArg) : 8;
/** The default step-time cost (the default plan's LLM). */
const MODEL_COST = modelTextCost(DEFAULT_COST_MODEL);
let labels: Uint8Array | undefined;
const B = 4.5;

async function load(): Promise<Samples> {
  if (data === 'real') {
    const dir = process.env.OMNIBAL_SHARED_LENGTHS ?? path.resolve(__dirname, '..', '..', 'shared', 'data', 'lengths');
    const files = ['ai2d_train_12k.json', 'chartqa_train_18k.json', 'synthdog_en.json'].map((f) => path.join(dir, f));
    if (!files.every((f) => existsSync(f))) throw new Error(`real data not found in ${dir}`);
    const sizes = await Promise.all(files.map(async (f) => (await readSamples([f])).text.length));
    labels = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
    let at = 0;
    sizes.forEach((n, d) => labels!.fill(d, at, (at += n)));
    return readSamples(files);
  }
  const [kind, n] = data.split(':');
  const s = syntheticSamples(Number(n), 1);
  const rng = new Rng(99);
  if (kind === 'skewed') {
    for (let i = 0; i < s.text.length; i += 100) {
      s.vision[i] = 40;
      s.text[i] = 16000 + rng.below(2001);
    }
  } else if (kind === 'heavytext') {
    for (let i = 0; i < s.text.length; i++) if (rng.below(100) < 3) s.text[i] *= 4 + rng.below(13);
  }
  return s;
}

/** bin-packer's first-fit-decreasing on text tokens (its pure-JS peer), bins dealt at random. */
function binPacker(s: Samples): BatchPlan {
  const caps = capsForSamplesPerPack(s.vision, s.text, B);
  const items = Array.from({ length: s.text.length }, (_, i) => i);
  const { bins, oversized } = firstFitDecreasing(items, (i: number) => s.text[i], caps.maxText);
  const packs = new Packs();
  for (const bin of bins as number[][]) packs.push(bin);
  const order = Array.from({ length: packs.length }, (_, k) => k);
  shuffleInPlace(order, new Rng(1));
  const dropped = (oversized as number[]).map((i): [number, number] => [i, 2]);
  return { strategy: 'balanced', ...assemble(packs, order, DP, 1, 'drop', true, undefined, dropped) };
}

async function main(): Promise<void> {
  const s = await load();
  const native = impl.startsWith('native') ? (require('../bindings.js') as typeof Native) : undefined;
  // The library's default (planBatches fills in the default model's cost; the raw bindings do not).
  const options = { dp: DP, samplesPerPack: B, seed: 1, costA: MODEL_COST.a, costB: MODEL_COST.b };
  const started = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  let plan: BatchPlan;
  if (impl === 'native') plan = native!.planBatches(s.vision, s.text, options) as BatchPlan;
  else if (impl === 'native-tokens') plan = native!.planBatches(s.vision, s.text, { ...options, costA: 1, costB: 0 }) as BatchPlan;
  else if (impl === 'native-cost') plan = native!.planBatches(s.vision, s.text, { ...options, costB: 1 / 4096 }) as BatchPlan;
  else if (impl.startsWith('native-')) plan = native!.planBatches(s.vision, s.text, { ...options, strategy: impl.slice(7) }) as BatchPlan;
  else if (impl === 'js') plan = jsBackend.planBatches(s.vision, s.text, options) as BatchPlan;
  else if (impl === 'bin-packer') plan = binPacker(s);
  else throw new Error(`unknown implementation ${impl}`);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  // CPU time (user + system) of planning: wall time is unreliable on a shared machine.
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const m = batchMetricsTwin(plan, s.vision, s.text, { a: 1, b: 0 });
  const mc = batchMetricsTwin(plan, s.vision, s.text, { a: 1, b: 1 / 4096 });
  const mm = batchMetricsTwin(plan, s.vision, s.text, MODEL_COST);
  const rssMB = process.resourceUsage().maxRSS / 1024;
  const shareSd = labels ? shareSdRatio(plan, labels) : null;
  process.stdout.write(
    `${JSON.stringify({ impl, data, samples: s.text.length, ms, cpuMs, rssMB, pad: m.padRatio, visionDist: m.visionDist, textDist: m.textDist, costDistB: mc.costDist, samplesPerPack: m.samplesPerPack, dropped: m.dropped, excessMedian: mm.costExcessMedian, excessP99: mm.costExcessP99, modelDist: mm.costDist, worstTextDist: m.stepTextDist.reduce((a, b) => Math.max(a, b), 0), shareSd, oversize: plan.oversizeIndex?.length ?? 0, dp: DP })}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`${String(error?.stack ?? error)}\n`);
  process.exit(1);
});
