// `npm run bench -- partition`: the stage DP natively vs its TypeScript twin vs the pure-JS
// linear-partition peer, and the predicted iteration time of the optimum against every baseline.
import { linearPartition } from '@prezly/linear-partition';
import { jsBackend } from '../src/binding';
import { formatTable } from '../src/cli/table';
import { baselineStages, partitionChunks, partitionStages, SPLITS, vlmStageProblem, type StageProblem } from '../src/model/index';
import { Rng } from '../src/random/rng';
import type * as Native from '../bindings';

const native = require('../bindings.js') as typeof Native;

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(f: () => unknown, minRuns = 3, budgetMs = 1500): number {
  const runs: number[] = [];
  const start = performance.now();
  while (runs.length < minRuns || (performance.now() - start < budgetMs && runs.length < 50)) {
    const t0 = performance.now();
    f();
    runs.push(performance.now() - t0);
  }
  return median(runs);
}

function synthetic(): StageProblem {
  const rng = new Rng(1);
  const n = 200;
  const f = Float64Array.from({ length: n }, (_, i) => (i < 45 ? 2 : 5) * (0.9 + 0.2 * rng.nextF64()));
  return {
    forwardMs: f,
    backwardMs: f.map((x) => 2 * x),
    staticBytes: Float64Array.from({ length: n }, (_, i) => (i < 45 ? 0.3e9 : 1e9)),
    activationBytes: Float64Array.from({ length: n }, (_, i) => (i < 45 ? 0.6e9 : 0.9e9)),
    checkpointBytes: Float64Array.from({ length: n }, (_, i) => (i < 45 ? 0.04e9 : 0.05e9)),
    selectiveBytes: Float64Array.from({ length: n }, (_, i) => (i < 45 ? 0.35e9 : 0.5e9)),
    selectiveMs: f.map((x) => 0.4 * x),
    stages: 32,
    microBatches: 64,
    memoryBytes: 40e9,
    stageOverheadBytes: 2e9,
    commMs: new Float64Array(n - 1).fill(0.1),
    recompute: 'block',
  };
}

const load = { tiles: 18, tokens: 5000, sumSqLen: (5000 * 5000) / 4.5 };

export function benchPartition(): void {
  console.log('omnibal bench: partition (the stage DP: optimal split + per-stage block recomputation)');
  console.log('InternVL-Chat-1.5 on A100-80G, dp 8, ZeRO-1, micro-batch of 18 tiles and 5,000 tokens (4.5 samples), M = 4 x PP');
  const cases: [string, StageProblem][] = [
    ...[4, 8, 16].map((pp): [string, StageProblem] => [`InternVL-Chat-1.5, PP ${pp}`, vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp, dp: 8, microBatches: 4 * pp, load })]),
    ['InternVL-Chat-1.5, PP 8, selective', vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load, recompute: 'selective' })],
    ['InternVL-Chat-1.5, PP 8, interleaved v 2', vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load, schedule: 'interleaved', virtualStages: 2 })],
    ['synthetic 200 layers, 32 stages', synthetic()],
    ['synthetic 200 layers, 32 stages, selective', { ...synthetic(), recompute: 'selective' }],
  ];
  const rows = cases.map(([name, p]) => {
    const input = { ...p };
    const n = time(() => native.partitionStages(input));
    const j = time(() => jsBackend.partitionStages(input), 2, 3000);
    const times = Array.from(p.forwardMs, (f, i) => f + p.backwardMs[i]);
    const lp = time(() => linearPartition(times, p.stages));
    const parts = linearPartition(times, p.stages);
    const lpBottleneck = Math.max(...parts.map((g) => g.reduce((a, b) => a + b, 0)));
    const plan = partitionStages(p);
    return [name, n.toFixed(2), j.toFixed(1), `${(j / n).toFixed(1)}x`, lp.toFixed(2), plan.bottleneckMs.toFixed(1), lpBottleneck.toFixed(1), plan.lowerBoundMs.toFixed(1)];
  });
  console.log(
    formatTable(['problem', 'native ms', 'TS twin ms', 'twin / native', 'linear-partition ms', 'bottleneck ms (optimal, with memory)', 'bottleneck ms (linear-partition, no memory)', 'lower bound ms'], rows),
  );
  console.log('\nPredicted iteration time at PP 8 (a PREDICTION of the cost model: 1F1B, no overlap, FLOPs-based layer times):');
  const p8 = cases[1][1];
  const best = partitionStages(p8);
  const table: (string | number)[][] = [['optimal (this package)', best.objectiveMs.toFixed(0), '1.00x', best.bottleneckMs.toFixed(1)]];
  for (const method of SPLITS) {
    for (const rec of ['none', 'full', 'uniform'] as const) {
      try {
        const b = baselineStages(p8, method, rec);
        table.push([`${method} split + ${rec} recompute`, b.objectiveMs.toFixed(0), `${(b.objectiveMs / best.objectiveMs).toFixed(2)}x`, b.bottleneckMs.toFixed(1)]);
      } catch {
        table.push([`${method} split + ${rec} recompute`, 'does not fit', '', '']);
      }
    }
  }
  console.log(formatTable(['plan', 'iteration ms', 'vs optimal', 'bottleneck ms'], table));
  console.log(`lower bound on the bottleneck: max(total / P, largest layer) = ${best.lowerBoundMs.toFixed(1)} ms; the optimum's bottleneck is ${((best.bottleneckMs / best.lowerBoundMs - 1) * 100).toFixed(1)}% above it`);
  console.log('paper: parameter split + full recomputation -> balanced model + memory: 51.9 / 21.3 = 2.4x (GPU-days, measured)');
  benchChunks();
}

/** The interleaved chunk planner (v x P chunks, branch and bound with a node budget). */
function benchChunks(): void {
  console.log('\nInterleaved chunk planner (partitionChunks: v x P chunks, chunk c on stage c mod P; iteration = the simulated step at the mean micro-batch; a PREDICTION of the cost model):');
  const rows = [
    [4, 2],
    [8, 2],
    [8, 3],
    [8, 4],
  ].map(([pp, v]) => {
    const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp, dp: 8, microBatches: 4 * pp, load, schedule: 'interleaved', virtualStages: v });
    const input = { ...p };
    const n = time(() => native.partitionChunks(input), 2, 1500);
    const j = time(() => jsBackend.partitionChunks(input), 1, 1);
    try {
      const plan = partitionChunks(p);
      const memory = Math.max(...plan.stages.map((s) => s.memoryBytes)) / 2 ** 30;
      return [`InternVL-Chat-1.5, PP ${pp}, v ${v}`, n.toFixed(0), j.toFixed(0), plan.objectiveMs.toFixed(0), plan.lowerBoundMs.toFixed(0), `${((plan.objectiveMs / plan.lowerBoundMs - 1) * 100).toFixed(1)}%`, String(plan.optimal), memory.toFixed(1)];
    } catch (error) {
      return [`InternVL-Chat-1.5, PP ${pp}, v ${v}`, n.toFixed(0), j.toFixed(0), (error as Error).message.slice(0, 60), '', '', '', ''];
    }
  });
  console.log(formatTable(['problem', 'native ms', 'TS twin ms', 'iteration ms', 'lower bound ms', 'gap bound', 'optimal', 'fullest stage GiB'], rows));
}
