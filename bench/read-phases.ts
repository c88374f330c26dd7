// Where `omnibal pack --json` spends its time, phase by phase, in one process (the built CLI's
// modules): read, plan, metrics, mean load, JSON written to a file. Prints one JSON line of
// { phase: [wall ms, CPU ms of the process (all threads)], ..., rssMB }.
// Usage: node bench/read-phases.js FILE OUT  (run by bench/read.ts with the dist build)
import { closeSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';

const dist = path.resolve(__dirname, '..', 'dist', 'src');
const { readSamples } = require(path.join(dist, 'io/samples')) as typeof import('../src/io/samples');
const data = require(path.join(dist, 'data/index')) as typeof import('../src/data/index');
const { meanMicroBatchLoad } = require(path.join(dist, 'data/load')) as typeof import('../src/data/load');
const { planJsonChunks } = require(path.join(dist, 'cli/plan-json')) as typeof import('../src/cli/plan-json');
const { modelTextCost, DEFAULT_COST_MODEL } = require(path.join(dist, 'data/model-cost')) as typeof import('../src/data/model-cost');

async function main(): Promise<void> {
  const [file, out] = process.argv.slice(2);
  const phases: Record<string, [number, number]> = {};
  let wall = process.hrtime.bigint();
  let cpu = process.cpuUsage();
  const lap = (name: string) => {
    const c = process.cpuUsage(cpu);
    phases[name] = [Number(process.hrtime.bigint() - wall) / 1e6, (c.user + c.system) / 1000];
    wall = process.hrtime.bigint();
    cpu = process.cpuUsage();
  };
  const samples = await readSamples([file]);
  lap('read');
  const cost = modelTextCost(DEFAULT_COST_MODEL);
  const plan = await data.planBatchesAsync(samples, { dp: 8, samplesPerPack: 4.5, costA: cost.a, costB: cost.b });
  lap('plan');
  const metrics = data.batchMetrics(plan, samples, { a: cost.a, b: cost.b });
  lap('metrics');
  const load = meanMicroBatchLoad(plan, samples);
  lap('mean load');
  const fd = openSync(out, 'w');
  for (const chunk of planJsonChunks(plan, metrics, {}, load, [])) writeSync(fd, chunk);
  closeSync(fd);
  lap('JSON written');
  process.stdout.write(`${JSON.stringify({ ...phases, rssMB: process.resourceUsage().maxRSS / 1024 })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
