/**
 * The interleaved chunk planner ({@link partitionChunks}) under a framework target, and the
 * least GPU memory that fits when no chunk plan does.
 *
 * - `megatron`: Megatron-LM runs the interleaved schedule (`--pipeline-model-parallel-layout` with
 *   `v x P` segments or `--num-layers-per-virtual-pipeline-stage`, see `src/export/megatron-chunks.ts`). Its multimodal
 *   models build the vision encoder, projector and LLM embedding in the first model chunk (the
 *   first virtual stage of pipeline rank 0), so those layers are pinned to chunk 0; it applies one
 *   recomputation setting to every chunk (`--recompute-method block --recompute-num-layers k`
 *   recomputes the first `min(k, local decoder layers)` of each chunk, each chunk being its own
 *   `TransformerBlock`; `--recompute-vision` the whole ViT; or `--recompute-granularity
 *   selective`), so the chunk planner runs once per setting and the fastest plan is kept.
 * - `deepspeed`: refused. DeepSpeed's `PipelineModule` / `PipeSchedule` (deepspeed/runtime/pipe)
 *   runs one contiguous partition per stage with `TrainSchedule` (1F1B); it has no virtual stages.
 * - `none`: the chunk planner as asked.
 *
 * @module
 */
import { ErrorCodes, invalidOptions, omnibalError } from '../errors';
import { partitionChunks, type ChunkPlan, type StageProblem } from './index';
import { bestSetting, megatronFirstStageLayers, megatronSettings, unlessInfeasible, withSetting, type Target } from './target';

/** Why DeepSpeed cannot run an interleaved plan (the refusal's message). */
export const DEEPSPEED_INTERLEAVED =
  "--target deepspeed: DeepSpeed's pipeline engine (PipelineModule with TrainSchedule) runs one contiguous layer range per stage and has no interleaved (virtual-stage) schedule; use --schedule 1f1b or gpipe";

/** Why Megatron-LM cannot run an interleaved plan on one pipeline stage (the refusal's message). */
export const MEGATRON_INTERLEAVED_PP =
  "--target megatron: Megatron-LM's interleaved schedule needs at least 2 pipeline stages (megatron/training/arguments.py validate_args: 'When interleaved schedule is used, pipeline-model-parallel size should be greater than 1'); use --pp 2 or more, or --schedule 1f1b";

/** A chunk plan for a target. */
export interface ChunkTargetPlan {
  /** The best chunk plan the target can run. */
  plan: ChunkPlan;
  /** The problem it solves (the target's constraints and recompute setting). */
  problem: StageProblem;
  /** What the target changed, in words. */
  notes: string[];
  /** The unconstrained chunk plan's figures, when it fits (absent for `none`). */
  unconstrained?: {
    /** Its predicted iteration time, ms. */
    objectiveMs: number;
    /** Its slowest device per micro-batch, ms. */
    bottleneckMs: number;
  };
}

const GIB = 2 ** 30;

function tryChunks(problem: StageProblem): ChunkPlan | undefined {
  return unlessInfeasible(() => partitionChunks(problem));
}

/**
 * Memory per GPU at which every chunking of `problem` fits: all the static bytes, the overhead,
 * and every layer's largest kept bytes for all `M` micro-batches (no chunk holds more).
 */
function chunkMemoryCeiling(problem: StageProblem): number {
  let bytes = problem.stageOverheadBytes ?? 0;
  for (let i = 0; i < problem.forwardMs.length; i++) {
    const kept = Math.max(problem.activationBytes[i], problem.checkpointBytes[i], problem.selectiveBytes?.[i] ?? 0);
    bytes += problem.staticBytes[i] + problem.microBatches * kept;
  }
  return bytes;
}

/**
 * The least memory per GPU (bytes, a multiple of 0.01 GiB) at which the chunk planner finds a
 * plan for `problem`, or `undefined` when not even 64 times its memory, nor the memory at which
 * every chunking fits, does: bisection on the memory limit (whether a plan fits only grows with
 * the limit).
 *
 * @param problem - a chunk problem that did not fit
 * @param solve - the planner to try (default {@link partitionChunks})
 * @returns the least fitting memory, rounded up to 0.01 GiB
 */
export function leastChunkMemory(problem: StageProblem, solve: (p: StageProblem) => ChunkPlan | undefined = tryChunks): number | undefined {
  const unit = GIB / 100;
  let lo = Math.floor(problem.memoryBytes / unit); // does not fit
  let hi = Math.max(lo + 1, 1);
  const top = Math.ceil(Math.max(64 * Math.max(problem.memoryBytes, GIB), chunkMemoryCeiling(problem)) / unit);
  while (!solve({ ...problem, memoryBytes: hi * unit })) {
    lo = hi;
    if (hi >= top) return undefined;
    hi = Math.min(hi * 2, top);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (solve({ ...problem, memoryBytes: mid * unit })) hi = mid;
    else lo = mid;
  }
  return hi * unit;
}

/**
 * Runs the chunk planner; when nothing fits, the error says the least memory per GPU that does
 * (rounded up to 0.01 GiB, naming `--memory-gib`), found by {@link leastChunkMemory}.
 *
 * @param problem - the chunk problem
 * @param solve - the planner (default {@link partitionChunks}); used again with more memory
 * @returns the plan
 * @throws the planner's `ERR_OMNIBAL_INFEASIBLE`, its message extended with the least memory
 */
export function chunksWithMemoryHint(problem: StageProblem, solve: (p: StageProblem) => ChunkPlan = partitionChunks): ChunkPlan {
  try {
    return solve(problem);
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code !== 'ERR_OMNIBAL_INFEASIBLE') throw error;
    const quiet = (p: StageProblem) => {
      try {
        return solve(p);
      } catch (inner) {
        if ((inner as { code?: string }).code === 'ERR_OMNIBAL_INFEASIBLE') return undefined;
        throw inner;
      }
    };
    const need = leastChunkMemory(problem, quiet);
    if (need !== undefined) {
      const gib = (Math.round(need / (GIB / 100)) / 100).toFixed(2);
      e.message += `; the least memory per GPU at which the interleaved search finds a plan is ${Math.ceil(need)} bytes (${gib} GiB, rounded up): --memory-gib ${gib}`;
    } else e.message += '; not even the memory at which every chunking fits does';
    throw e;
  }
}

/**
 * The best interleaved chunk plan `target` can run (see the module notes).
 *
 * @param problem - the chunk problem (`schedule: 'interleaved'`)
 * @param target - `megatron`, `none` (or `deepspeed`, refused)
 * @returns the target's best chunk plan
 * @throws `ERR_OMNIBAL_INVALID_OPTIONS` for `deepspeed`; `ERR_OMNIBAL_INFEASIBLE` (with the least
 *   memory that fits) when no plan the target can run fits
 */
export function partitionChunksForTarget(problem: StageProblem, target: Target): ChunkTargetPlan {
  if (target === 'deepspeed') throw omnibalError(ErrorCodes.INVALID_OPTIONS, DEEPSPEED_INTERLEAVED);
  if (target === 'none') return { plan: chunksWithMemoryHint(problem), problem, notes: [] };
  if (target !== 'megatron') throw invalidOptions(`target must be one of none, megatron, deepspeed, got ${JSON.stringify(target)}`);
  if (problem.stages < 2 && (problem.virtualStages ?? 2) > 1) throw omnibalError(ErrorCodes.INVALID_OPTIONS, MEGATRON_INTERLEAVED_PP);
  const notes: string[] = [];
  let constrained = problem;
  const first = megatronFirstStageLayers(problem);
  if (first === undefined) notes.push('no layer kinds (a --layers file): the first-chunk constraint of Megatron-LM (vision encoder, projector and embedding in chunk 0) is not applied');
  else if ((problem.firstStageMinLayers ?? 0) < first) {
    constrained = { ...problem, firstStageMinLayers: first };
    notes.push(`Megatron-LM builds the vision encoder, projector and LLM embedding (layers 0-${first - 1}) in the first model chunk (virtual stage 0 of pipeline rank 0)`);
  }
  // A chunk holds at most L - (v P - 1) layers: larger counts recompute the same.
  const settings = megatronSettings(problem, problem.recompute ?? 'block', (problem.virtualStages ?? 2) * problem.stages);
  if (settings.length > 1) notes.push('Megatron-LM applies one recomputation setting to every model chunk: tried none, selective (when asked) and every --recompute-num-layers count (the first k decoder layers of each chunk), with and without --recompute-vision');
  const best = bestSetting(constrained, settings, tryChunks);
  if (!best) {
    // The most memory-saving setting says how much memory would fit.
    try {
      chunksWithMemoryHint(withSetting(constrained, settings[settings.length - 1]));
    } catch (error) {
      const e = error as Error;
      e.message = `no interleaved plan Megatron-LM can run fits (${notes.join('; ')}): ${e.message}`;
      throw e;
    }
    throw invalidOptions('no interleaved plan Megatron-LM can run fits');
  }
  const free = tryChunks(problem);
  return { plan: best.plan, problem: best.problem, notes, ...(free && { unconstrained: { objectiveMs: free.objectiveMs, bottleneckMs: free.bottleneckMs } }) };
}
