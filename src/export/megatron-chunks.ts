/**
 * Megatron-LM arguments for an interleaved plan ({@link partitionChunks}): `v x P` model chunks,
 * chunk `c` on pipeline rank `c mod P` as virtual stage `c div P`.
 *
 * megatron-core's `PipelineParallelLayerLayout` (megatron/core/transformer/
 * pipeline_parallel_layer_layout.py, megatron-core 0.16.1) reads the layout as a flat list of
 * `len(layout)` segments, `len(layout) / P` virtual stages per rank, segment
 * `vpp_rank * P + pp_rank` on rank `pp_rank` (its "Convert 1D layout to 2D layout"): exactly
 * the chunk order here, so the layout is the chunks' segments (`E`, `t`, `L`) joined by `|`.
 * Megatron-LM derives the virtual pipeline size from the layout (megatron/training/arguments.py,
 * `validate_args`: `virtual_pipeline_model_parallel_size = num_stages // pipeline_model_parallel_size`)
 * and has no `--virtual-pipeline-model-parallel-size` flag (`_add_distributed_args`; its parser
 * rejects unknown flags), and it allows at most one of `--pipeline-model-parallel-layout`,
 * `--num-layers-per-virtual-pipeline-stage` and `--num-virtual-stages-per-pipeline-rank`: the
 * layout goes alone. When every chunk holds the same number `n` of decoder layers (the
 * embedding in the first chunk, the loss in the last), `--num-layers-per-virtual-pipeline-stage n`
 * says the same.
 *
 * Placement and recomputation are checked as {@link exportMegatron} checks a contiguous plan,
 * with each model chunk in the place of a stage: Megatron-LM's multimodal models build the
 * vision encoder, projector and LLM embedding in the first chunk (the first virtual stage of
 * rank 0) and the loss in the last, and `--recompute-method block --recompute-num-layers k`
 * recomputes the first `min(k, local decoder layers)` of every chunk (each chunk is its own
 * `TransformerBlock`; see `crate/core/src/model/recompute.rs`).
 *
 * @module
 */
import type { ChunkPlan, StagePlan, StageProblem } from '../model/index';
import { invalidType } from '../errors';
import { checkStageProblem } from '../model/index';
import { describeValue, expectNumber, expectObject } from '../validate';
import { checkStagePlanShape, exportMegatron, shellLine, type MegatronAlternative, type MegatronExport } from './index';

/**
 * Megatron-LM arguments for an interleaved chunk plan: the layout of `v x P` segments (Megatron-LM
 * derives `v` from it), or `--num-layers-per-virtual-pipeline-stage`
 * when every chunk holds the same decoder layers; what Megatron cannot express goes to
 * `unsupported`.
 *
 * @param problem - the stage problem the plan was made for
 * @param plan - a plan from `partitionChunks`
 * @returns the Megatron-LM arguments, the layout and what they cannot express
 */
export function exportMegatronChunks(problem: StageProblem, plan: ChunkPlan): MegatronExport {
  checkStageProblem(problem);
  // The chunks stand in for stages below: each must be shaped as one.
  checkStagePlanShape({ stages: expectObject('plan', plan).chunks } as unknown as StagePlan, 'plan.chunks');
  if (!Array.isArray(plan.stages)) throw invalidType('plan.stages', `must be an array, got ${describeValue(plan.stages)}`);
  expectNumber('plan.virtualStages', plan.virtualStages);
  const P = plan.stages.length;
  const v = plan.virtualStages;
  // Each chunk in the place of a stage (a contiguous plan of v x P stages).
  const asStages: StagePlan = {
    stages: plan.chunks.map((c) => ({ ...c, memoryBytes: 0, memory: { weights: 0, gradients: 0, optimizer: 0, activations: 0, checkpoints: 0, fixed: 0 }, inFlight: c.held })),
    objectiveMs: plan.objectiveMs,
    bottleneckMs: plan.bottleneckMs,
    lowerBoundMs: plan.lowerBoundMs,
  };
  const flat = exportMegatron({ ...problem, schedule: '1f1b', stages: v * P }, asStages);
  const unsupported = flat.unsupported.map((u) => `model chunks (chunk c on stage c mod ${P}, virtual stage c div ${P}; "stage" below means chunk): ${u}`);
  const alternatives: MegatronAlternative[] = [];
  const add = (name: MegatronAlternative['name'], argv: string[]) => alternatives.push({ name, argv, command: shellLine(argv) });
  const layoutAlt = flat.alternatives.find((a) => a.name === 'layout');
  const pp = ['--pipeline-model-parallel-size', String(P)];
  // megatron/training/arguments.py validate_args: "When interleaved schedule is used,
  // pipeline-model-parallel size should be greater than 1".
  if (P < 2 && v > 1) unsupported.push(`${v} model chunks on one pipeline stage: Megatron-LM's interleaved schedule needs a pipeline-model-parallel size greater than 1`);
  else if (layoutAlt && flat.layout !== null) {
    // The flat export's argv: --pipeline-model-parallel-size K --pipeline-model-parallel-layout X ...recompute.
    const recompute = layoutAlt.argv.slice(4);
    add('layout', [...pp, '--pipeline-model-parallel-layout', flat.layout, ...recompute]);
    const segments = flat.layout.split('|');
    const decoder = segments.map((s) => [...s].filter((ch) => ch === 't').length);
    const uniform = decoder.every((n) => n === decoder[0]) && decoder[0] > 0 && segments[0].startsWith('E') && segments[segments.length - 1].endsWith('L');
    if (uniform) add('per-virtual-stage', [...pp, '--num-layers-per-virtual-pipeline-stage', String(decoder[0]), ...recompute]);
  }
  return {
    args: alternatives[0]?.argv ?? [],
    alternatives,
    layout: alternatives.some((a) => a.name === 'layout') ? flat.layout : null,
    recomputeLayersPerStage: flat.recomputeLayersPerStage,
    unsupported,
  };
}
