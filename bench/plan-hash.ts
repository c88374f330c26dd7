// Hashes of native balanced plans (samples, offsets, dropped) + CPU time of each planBatches call.
// Usage: node --import tsx bench/plan-hash.ts CASE...  CASE = DATA@DP, DATA as in pack-case.ts.
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { syntheticSamples } from '../src/data/synthetic';
import { readSamples } from '../src/io/samples';
import { Rng } from '../src/random/rng';
import { modelTextCost, DEFAULT_COST_MODEL } from '../src/data/model-cost';
import type * as Native from '../bindings';

const native = require('../bindings.js') as typeof Native;
const MODEL_COST = modelTextCost(DEFAULT_COST_MODEL);

async function load(data: string) {
  if (data === 'real') {
    const dir = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'lengths');
    return readSamples(['ai2d_train_12k.json', 'chartqa_train_18k.json', 'synthdog_en.json'].map((f) => path.join(dir, f)));
  }
  const [kind, n] = data.split(':');
  const s = syntheticSamples(Number(n), 1);
  const rng = new Rng(99);
  if (kind === 'skewed') for (let i = 0; i < s.text.length; i += 100) { s.vision[i] = 40; s.text[i] = 16000 + rng.below(2001); }
  else if (kind === 'heavytext') for (let i = 0; i < s.text.length; i++) if (rng.below(100) < 3) s.text[i] *= 4 + rng.below(13);
  return s;
}

async function main() {
  for (const c of process.argv.slice(2)) {
    const [data, dpArg, accArg] = c.split('@');
    const s = await load(data);
    const opts = { dp: Number(dpArg ?? 8), accum: Number(accArg ?? 1), samplesPerPack: 4.5, seed: 1, costA: MODEL_COST.a, costB: MODEL_COST.b };
    const cpu0 = process.cpuUsage();
    const plan = native.planBatches(s.vision, s.text, opts) as any;
    const cpu = process.cpuUsage(cpu0);
    const h = createHash('sha256');
    for (const k of ['samples', 'microBatchOffsets', 'rankOffsets', 'droppedIndex', 'droppedReason', 'oversizeIndex']) {
      const a = plan[k];
      h.update(k);
      if (a) h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    }
    console.log(`${c}\t${h.digest('hex').slice(0, 16)}\tcpu ${((cpu.user + cpu.system) / 1e6).toFixed(3)}s`);
  }
}
main();
