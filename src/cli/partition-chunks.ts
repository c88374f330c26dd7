/**
 * `omnibal partition --schedule interleaved`: the `v x P` chunk plan ({@link partitionChunks}),
 * printed per device with its chunks, and exported for Megatron-LM as a layout of `v x P`
 * segments.
 *
 * @module
 */
import { writeStdout } from './output';
import { ErrorCodes, omnibalError } from '../errors';
import { exportMegatronChunks } from '../export/megatron-chunks';
import { baselineStages, SPLITS, type ChunkPlan, type StagePlan, type StageProblem } from '../model/index';
import { uniformInterleavedStep } from '../model/chunk-evaluate';
import { chunksWithMemoryHint, DEEPSPEED_INTERLEAVED, partitionChunksForTarget } from '../model/chunk-target';
import type { Target } from '../model/target';
import { formatTable } from './table';

const GIB = 2 ** 30;

/** The assumptions of an interleaved prediction, as printed with it. */
export const INTERLEAVED_ASSUMPTIONS = [
  'layers cut into v x P contiguous model chunks, chunk c on stage c mod P (Megatron-LM\'s interleaved layout); stage time = the sum of its chunks\' times',
  'iteration = the simulated step of one rank whose micro-batches all take these times: each chunk its own forward and backward (+ recomputation) time in Megatron-LM\'s interleaved order, one transfer per device boundary (the mean of its chunks\' cuts), no all-reduce; the planner minimises it',
  'stage memory = its chunks\' static bytes + the most, over the schedule, of sum over its chunks of (micro-batches of that chunk held) x (its kept activation bytes) + fixed overhead; recomputation chosen per chunk',
];

/** DeepSpeed cannot run an interleaved plan: refused with the reason. */
function checkTarget(target: Target): void {
  if (target === 'deepspeed') throw omnibalError(ErrorCodes.INVALID_OPTIONS, DEEPSPEED_INTERLEAVED);
}

/** A contiguous split's simulated interleaved step, each device's layers as `v` equal chunks (the simulator's default without chunk times). */
function contiguousStep(problem: StageProblem, plan: StagePlan, v: number): number {
  const P = problem.stages;
  const fwd = new Float64Array(v * P);
  const bwd = new Float64Array(v * P);
  const transferMs = new Float64Array(Math.max(P - 1, 0));
  plan.stages.forEach((st, s) => {
    let f = 0;
    let b = 0;
    for (let l = st.firstLayer; l <= st.lastLayer; l++) {
      f += problem.forwardMs[l];
      b += problem.backwardMs[l];
    }
    for (const l of st.recomputeLayers) b += problem.forwardMs[l];
    for (let j = 0; j < v; j++) {
      fwd[j * P + s] = f / v;
      bwd[j * P + s] = b / v;
    }
    if (s + 1 < P && problem.commMs && problem.commMs.length > 0) transferMs[s] = problem.commMs[st.lastLayer];
  });
  return uniformInterleavedStep(P, problem.microBatches, v, fwd, bwd, transferMs);
}

/** Contiguous baselines priced by the same simulation (each device's layers as v equal chunks). */
function baselinesOf(problem: StageProblem, v: number): Record<string, { objectiveMs: number; bottleneckMs: number } | { error: string }> {
  const out: Record<string, { objectiveMs: number; bottleneckMs: number } | { error: string }> = {};
  for (const method of SPLITS) {
    for (const rec of ['none', 'full', 'uniform'] as const) {
      try {
        const p = baselineStages(problem, method, rec);
        out[`${method}+${rec}`] = { objectiveMs: contiguousStep(problem, p, v), bottleneckMs: p.bottleneckMs };
      } catch (error) {
        out[`${method}+${rec}`] = { error: (error as Error).message };
      }
    }
  }
  return out;
}

/** What `partition --schedule interleaved` prints: the plan and its Megatron-LM export. */
export interface InterleavedRun {
  problem: StageProblem;
  memoryFrom: string;
  headroom?: number;
  target: Target;
  method: string;
  json?: boolean;
  /** The shared assumptions of every partition prediction (layer times, activations, ...). */
  assumptions: readonly string[];
}

/**
 * Plans and prints an interleaved partition (a prediction of the cost model).
 *
 * @param run - the problem (schedule `interleaved`) and the output options
 */
export async function runInterleavedPartition(run: InterleavedRun): Promise<void> {
  checkTarget(run.target);
  // --target none: the chunk planner as asked; megatron: its constraints (partitionChunksForTarget).
  const targeted = run.target === 'none' ? undefined : partitionChunksForTarget(run.problem, run.target);
  const problem = targeted?.problem ?? run.problem;
  const plan: ChunkPlan = targeted?.plan ?? chunksWithMemoryHint(problem);
  const v = plan.virtualStages;
  const baselines = baselinesOf(problem, v);
  const megatron = exportMegatronChunks(problem, plan);
  const deepspeed = { unsupported: ["DeepSpeed's pipeline engine has no interleaved schedule"] };
  const assumptions = [...INTERLEAVED_ASSUMPTIONS, ...run.assumptions.filter((a) => !a.startsWith('iteration = '))];
  const search = plan.optimal
    ? 'optimal under the model (the search finished)'
    : `best found (the search stopped at its node budget); the optimum is at least ${plan.lowerBoundMs.toFixed(0)} ms, so this plan is within ${((plan.objectiveMs / plan.lowerBoundMs - 1) * 100).toFixed(1)}% of it`;
  if (run.json) {
    await writeStdout(
      `${JSON.stringify({
        prediction: { note: 'figures are predictions of the omnibal cost model', assumptions },
        memory: { schedule: { name: 'interleaved', virtualStages: v }, activationsSizedFor: run.memoryFrom, headroom: run.headroom ?? 0 },
        target: targeted ? { name: run.target, notes: targeted.notes, unconstrained: targeted.unconstrained ?? null } : null,
        stages: plan.stages,
        chunks: plan.chunks,
        objectiveMs: plan.objectiveMs,
        bottleneckMs: plan.bottleneckMs,
        lowerBoundMs: plan.lowerBoundMs,
        optimal: plan.optimal,
        baselines,
        exports: { megatron, deepspeed },
      })}\n`,
    );
    return;
  }
  const gib = (x: number) => (x / GIB).toFixed(1);
  const rows = plan.stages.map((s, i) => {
    const chunks = s.chunks.map((c) => plan.chunks[c]);
    return [
      i,
      chunks.map((c) => `${c.firstLayer}-${c.lastLayer}`).join(', '),
      chunks.map((c) => (c.layerNames.length ? `${c.layerNames[0]} .. ${c.layerNames[c.layerNames.length - 1]}` : '')).join(', '),
      chunks.map((c) => (c.selectiveLayers.length ? `${c.recomputeLayers.length} + ${c.selectiveLayers.length} sel.` : String(c.recomputeLayers.length))).join(', '),
      s.timeMs.toFixed(1),
      gib(s.memoryBytes),
      `${gib(s.memory.weights)} / ${gib(s.memory.gradients)} / ${gib(s.memory.optimizer)} / ${gib(s.memory.activations)} / ${gib(s.memory.checkpoints)} / ${gib(s.memory.fixed)}`,
      chunks.map((c) => c.held).join(' + '),
    ];
  });
  const lines = [
    `omnibal partition (${run.method}${targeted ? `, target ${run.target}` : ''}): ${plan.stages.length} stages x ${v} model chunks, ${problem.microBatches} micro-batches, interleaved (v = ${v}), ${(problem.memoryBytes / GIB).toFixed(0)} GiB per GPU`,
    'PREDICTION of the omnibal cost model, assuming:',
    ...assumptions.map((a) => `  - ${a}`),
    `  - activations sized for ${run.memoryFrom}${run.headroom ? ` + ${(run.headroom * 100).toFixed(0)}% headroom` : ''}`,
    ...(targeted ? targeted.notes.map((n) => `  - target: ${n}`) : []),
    ...(targeted?.unconstrained ? [`  - the unconstrained chunk plan (--target none) predicts ${targeted.unconstrained.objectiveMs.toFixed(0)} ms per iteration (${((1 - targeted.unconstrained.objectiveMs / plan.objectiveMs) * 100).toFixed(1)}% less)`] : []),
    '',
    formatTable(['stage', 'chunks (layers)', 'names', 'recomputed per chunk', 'ms / micro-batch', 'memory GiB', 'weights / grads / optim / acts / ckpts / fixed GiB', 'held at peak per chunk'], rows),
    '',
    `predicted iteration ${plan.objectiveMs.toFixed(0)} ms; bottleneck ${plan.bottleneckMs.toFixed(1)} ms; ${search}`,
    '',
    formatTable(
      ['baseline (contiguous split+recompute, as v equal chunks)', 'predicted iteration ms', 'vs this plan'],
      Object.entries(baselines).map(([k, b]) => ('error' in b ? [k, 'does not fit', ''] : [k, b.objectiveMs.toFixed(0), `${(b.objectiveMs / plan.objectiveMs).toFixed(2)}x`])),
    ),
    '',
    ...(megatron.alternatives.length === 0 ? ['Megatron-LM: no valid arguments for this plan'] : megatron.alternatives.map((a) => `Megatron-LM (${a.name}): ${a.command}`)),
    ...megatron.unsupported.map((u) => `  cannot express: ${u}`),
    `DeepSpeed: ${deepspeed.unsupported[0]}`,
  ];
  await writeStdout(`${lines.join('\n')}\n`);
}
