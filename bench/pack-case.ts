// One benchmark case of `npm run bench -- pack`, in its own process so its peak RSS is its own.
// Usage: node --import tsx bench/pack-case.ts IMPL DATA   (prints one JSON line)
//   IMPL: native | native-cost | js | bin-packer | native-isf | native-random | native-length-grouped
//   DATA: real | synthetic:N
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

const [impl, data] = process.argv.slice(2);
const DP = 8;
const B = 4.5;

async function load(): Promise<Samples> {
  if (data === 'real') {
    const dir = process.env.OMNIBAL_SHARED_LENGTHS ?? path.resolve(__dirname, '..', '..', 'shared', 'data', 'lengths');
    const files = ['ai2d_train_12k.json', 'chartqa_train_18k.json', 'synthdog_en.json'].map((f) => path.join(dir, f));
    if (!files.every((f) => existsSync(f))) throw new Error(`real data not found in ${dir}`);
    return readSamples(files);
  }
  return syntheticSamples(Number(data.split(':')[1]), 1);
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
  const options = { dp: DP, samplesPerPack: B, seed: 1 };
  const started = process.hrtime.bigint();
  let plan: BatchPlan;
  if (impl === 'native') plan = native!.planBatches(s.vision, s.text, options) as BatchPlan;
  else if (impl === 'native-cost') plan = native!.planBatches(s.vision, s.text, { ...options, costB: 1 / 4096 }) as BatchPlan;
  else if (impl.startsWith('native-')) plan = native!.planBatches(s.vision, s.text, { ...options, strategy: impl.slice(7) }) as BatchPlan;
  else if (impl === 'js') plan = jsBackend.planBatches(s.vision, s.text, options) as BatchPlan;
  else if (impl === 'bin-packer') plan = binPacker(s);
  else throw new Error(`unknown implementation ${impl}`);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const m = batchMetricsTwin(plan, s.vision, s.text, { a: 1, b: 0 });
  const mc = batchMetricsTwin(plan, s.vision, s.text, { a: 1, b: 1 / 4096 });
  const rssMB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(
    `${JSON.stringify({ impl, data, samples: s.text.length, ms, rssMB, pad: m.padRatio, visionDist: m.visionDist, textDist: m.textDist, costDistB: mc.costDist, samplesPerPack: m.samplesPerPack, dropped: m.dropped })}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`${String(error?.stack ?? error)}\n`);
  process.exit(1);
});
