/**
 * Exports of a stage plan to what training frameworks accept, each saying what it cannot
 * express instead of emitting something wrong.
 *
 * @module
 */
import type { StagePlan, StageProblem } from '../model/index';

/** Megatron-LM arguments for a plan. */
export interface MegatronExport {
  /** Command-line arguments that apply the split (and recomputation, where Megatron can). */
  args: string[];
  /** `--pipeline-model-parallel-layout` value for the LLM decoder, when expressible. */
  layout: string | null;
  /** Recomputed LLM layers per stage (Megatron's block method counts). */
  recomputeLayersPerStage: number[];
  /** What Megatron-LM cannot express about this plan; empty when the args say it all. */
  unsupported: string[];
}

/** DeepSpeed `PipelineModule` settings for a plan. */
export interface DeepSpeedExport {
  /** Layer boundaries: stage `s` holds layers `parts[s] .. parts[s + 1] - 1`. */
  parts: number[];
  /** Checkpointed (recomputed) layer indices per stage. */
  checkpointLayers: number[][];
  /** What DeepSpeed cannot take as is. */
  unsupported: string[];
}

const isVision = (k: string) => k === 'vit-embed' || k === 'vit' || k === 'projector';

/**
 * Megatron-LM: the decoder layout (`E` embedding, `t` transformer layer, `L` loss, `|` between
 * stages), or first/last stage layer counts, and the recompute flags. Megatron's multimodal
 * models keep the vision encoder and projector on the first pipeline stage, and apply one
 * `--recompute-num-layers` to every stage.
 *
 * @param problem - the stage problem the plan was made for
 * @param plan - a plan from `partitionStages` (or any stage plan)
 * @returns the Megatron-LM arguments and layout
 */
export function exportMegatron(problem: StageProblem, plan: StagePlan): MegatronExport {
  const kinds = problem.layerKinds;
  const unsupported: string[] = [];
  if (!kinds) {
    return { args: [], layout: null, recomputeLayersPerStage: [], unsupported: ['the problem has no layer kinds (a --layers file): Megatron needs to know which layers are embedding, decoder and loss'] };
  }
  const visionStages = new Set<number>();
  plan.stages.forEach((s, i) => {
    for (let l = s.firstLayer; l <= s.lastLayer; l++) if (isVision(kinds[l])) visionStages.add(i);
  });
  if ([...visionStages].some((s) => s !== 0)) {
    unsupported.push(`the vision encoder spans stages ${[...visionStages].join(', ')}; Megatron-LM keeps it whole on stage 0 (re-plan with visionOnFirstStage)`);
  }
  const parts = plan.stages.map((s) => {
    let out = '';
    for (let l = s.firstLayer; l <= s.lastLayer; l++) {
      if (kinds[l] === 'embed') out += 'E';
      else if (kinds[l] === 'llm') out += 't';
      else if (kinds[l] === 'head') out += 'L';
    }
    return out;
  });
  const layout = parts.join('|');
  const llmPerStage = parts.map((p) => [...p].filter((c) => c === 't').length);
  const recomputeLayersPerStage = plan.stages.map((s) => s.recomputeLayers.filter((l) => kinds[l] === 'llm').length);
  const args = ['--pipeline-model-parallel-size', String(plan.stages.length), '--pipeline-model-parallel-layout', layout];
  const middle = llmPerStage.slice(1, -1);
  if (plan.stages.length > 2 && middle.every((n) => n === middle[0])) {
    args.push('# or, equivalently for the decoder:', '--decoder-first-pipeline-num-layers', String(llmPerStage[0]), '--decoder-last-pipeline-num-layers', String(llmPerStage[llmPerStage.length - 1]));
  }
  const ks = new Set(recomputeLayersPerStage);
  const maxK = Math.max(0, ...recomputeLayersPerStage);
  if (maxK > 0) {
    args.push('--recompute-granularity', 'full', '--recompute-method', 'block', '--recompute-num-layers', String(maxK));
    if (ks.size > 1) {
      unsupported.push(
        `per-stage recomputation (${recomputeLayersPerStage.join(', ')} layers) differs by stage; Megatron-LM applies one --recompute-num-layers (${maxK} here, the largest) to every stage, which recomputes more than the plan needs`,
      );
    }
  }
  const visionRecomputed = plan.stages.flatMap((s) => s.recomputeLayers.filter((l) => isVision(kinds[l])));
  if (visionRecomputed.length > 0) unsupported.push(`recomputation of vision layers (${visionRecomputed.length}) is set in the vision encoder's own config, not by these flags`);
  return { args, layout, recomputeLayersPerStage, unsupported };
}

/**
 * DeepSpeed: `PipelineModule` boundaries and the checkpointed layers of each stage. DeepSpeed
 * takes one `activation_checkpoint_interval` for all stages, so per-stage lists need a custom
 * `checkpoint_func` or layer wrappers.
 *
 * @param plan - a plan from `partitionStages` (or any stage plan)
 * @returns the `PipelineModule` parts and checkpointed layers per stage
 */
export function exportDeepSpeed(plan: StagePlan): DeepSpeedExport {
  const parts = [...plan.stages.map((s) => s.firstLayer), plan.stages[plan.stages.length - 1].lastLayer + 1];
  const checkpointLayers = plan.stages.map((s) => s.recomputeLayers);
  const counts = new Set(plan.stages.map((s) => s.recomputeLayers.length));
  const unsupported: string[] = [];
  if (counts.size > 1) {
    unsupported.push('DeepSpeed applies one activation_checkpoint_interval to every stage; checkpoint these per-stage layer lists with a custom checkpoint_func or by wrapping those layers');
  }
  return { parts, checkpointLayers, unsupported };
}
