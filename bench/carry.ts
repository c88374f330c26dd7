// `npm run bench -- carry [--dp N] [--epochs E] [--seed S]`: the tail policies `drop` and `carry`
// over E consecutive epochs of the shared real data (balanced, ~4.5 samples per pack, the
// library's default step-time cost, native backend): samples lost and carried per epoch, and the
// plan quality of each epoch (slowest-rank excess p50 / p99, share SD / i.i.d., vision and text
// dist). `carry` feeds each epoch's carried tail into the next epoch's plan, as the Python
// sampler does.
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { formatTable } from '../src/cli/table';
import { batchMetricsTwin } from '../src/data/metrics';
import { DEFAULT_COST_MODEL, modelTextCost } from '../src/data/model-cost';
import type { BatchPlan } from '../src/data/plan';
import { DROP_CODE } from '../src/data/samples';
import { readSamples } from '../src/io/samples';
import type * as Native from '../bindings';
import { shareSdRatio } from './share-sd';

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** Runs the bench with the CLI-style `args`. */
export async function benchCarry(args: string[]): Promise<void> {
  const dp = flag(args, '--dp', 1024);
  const epochs = flag(args, '--epochs', 3);
  const seed = flag(args, '--seed', 1);
  const dir = process.env.OMNIBAL_SHARED_LENGTHS ?? path.resolve(__dirname, '..', '..', 'shared', 'data', 'lengths');
  const files = ['ai2d_train_12k.json', 'chartqa_train_18k.json', 'synthdog_en.json'].map((f) => path.join(dir, f));
  if (!files.every((f) => existsSync(f))) throw new Error(`real data not found in ${dir}`);
  const sizes = await Promise.all(files.map(async (f) => (await readSamples([f])).text.length));
  const labels = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  sizes.forEach((n, d) => labels.fill(d, at, (at += n)));
  const s = await readSamples(files);
  const native = require('../bindings.js') as typeof Native;
  const cost = modelTextCost(DEFAULT_COST_MODEL);
  const n = s.text.length;
  console.log(`omnibal bench: carry (shared real data, ${n.toLocaleString('en-US')} samples; balanced, dp ${dp}, ~4.5 samples per pack, seed ${seed}, epochs 0..${epochs - 1})`);
  console.log('lost = samples left out of the epoch and of every later one (reason tail); carried in / out = the previous epoch\'s tail planned here / this epoch\'s tail planned in the next');
  console.log('slowest + = max / mean - 1 of the default step-time cost per step (median / p99), a prediction assuming compute-bound ranks; share SD = max over datasets of the per-step share SD / i.i.d.');
  const rows: (string | number)[][] = [];
  for (const tail of ['drop', 'carry'] as const) {
    let carry = new Uint32Array(0);
    const planned = new Uint32Array(n);
    for (let e = 0; e < epochs; e++) {
      const options = { dp, samplesPerPack: 4.5, seed, epoch: e, tail, costA: cost.a, costB: cost.b, ...(tail === 'carry' ? { carry } : {}) };
      const started = process.hrtime.bigint();
      const plan = native.planBatches(s.vision, s.text, options) as BatchPlan;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      for (const i of plan.samples) planned[i]++;
      const lost = plan.droppedReason.filter((r) => r === DROP_CODE.tail).length;
      const out = plan.droppedIndex.filter((_, k) => plan.droppedReason[k] === DROP_CODE.carried);
      const m = batchMetricsTwin(plan, s.vision, s.text, { a: 1, b: 0 });
      const mm = batchMetricsTwin(plan, s.vision, s.text, cost);
      rows.push([
        tail,
        e,
        plan.steps,
        `${lost} (${((100 * lost) / n).toFixed(2)}%)`,
        carry.length,
        out.length,
        `${(100 * mm.costExcessMedian).toFixed(2)}% / ${(100 * mm.costExcessP99).toFixed(2)}%`,
        shareSdRatio(plan, labels)?.toFixed(2) ?? 'n/a (1 step)',
        m.visionDist.toFixed(5),
        m.textDist.toFixed(5),
        ms.toFixed(0),
      ]);
      carry = out;
    }
    // Over the epochs: samples never planned (carry: only the last epoch's carried ones may be).
    let never = 0;
    for (const c of planned) if (c === 0) never++;
    rows.push([tail, 'all', '', `never planned: ${never}`, '', carry.length, '', '', '', '', '']);
  }
  console.log(formatTable(['tail', 'epoch', 'steps', 'lost', 'carried in', 'carried out', 'slowest + p50 / p99', 'share SD / iid', 'vision dist', 'text dist', 'ms'], rows));
}
