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
 * Work bound: one search (the target's planner runs, and the bisection for the least memory when
 * nothing fits) spends at most {@link MAX_CHUNK_SEARCH_WORK} work units (four times what one
 * `partitionChunks` run may, {@link MAX_CHUNK_WORK}), each planner run counting its own units
 * ({@link chunkWorkUnits}). The Megatron-LM target's
 * runs (one per recompute setting, and the unconstrained plan) are counted up front and refused
 * past it; the bisection stops where the bound leaves no run, and says what it found.
 *
 * @module
 */
import { ErrorCodes, invalidOptions, omnibalError, outOfRange } from '../errors';
import { chunkWorkUnits, MAX_CHUNK_WORK } from './chunks';
import { partitionChunks, type ChunkPlan, type StageProblem } from './index';
import { bestSetting, megatronFirstStageLayers, megatronSettings, unlessInfeasible, withSetting, type Target } from './target';

/**
 * Most work units one chunk target search spends over all its planner runs (2^26: four times a
 * single run's bound {@link MAX_CHUNK_WORK}; a search at the bound runs for seconds, not minutes).
 */
export const MAX_CHUNK_SEARCH_WORK = 4 * MAX_CHUNK_WORK;

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

/** What the bisection of {@link leastChunkMemory} found. */
export interface LeastChunkMemory {
  /** The least memory found to fit, bytes (a multiple of 0.01 GiB); absent when none tried does. */
  fits?: number;
  /** The most memory tried that does not fit, bytes. */
  short: number;
  /** Whether the search finished: `fits` is the least (or, absent, not even the ceiling fits); false when it stopped at `runs`. */
  exact: boolean;
}

/**
 * The least memory per GPU (bytes, a multiple of 0.01 GiB) at which the chunk planner finds a
 * plan for `problem`, or none when not even 64 times its memory, nor the memory at which every
 * chunking fits, does: bisection on the memory limit (whether a plan fits only grows with the
 * limit), in at most `runs` planner runs.
 *
 * @param problem - a chunk problem that did not fit
 * @param solve - the planner to try (default {@link partitionChunks})
 * @param runs - the most planner runs the bisection may make (default: as many as it needs)
 * @returns the least fitting memory (rounded up to 0.01 GiB) when the search finished; otherwise
 *   the bracket it reached
 */
export function leastChunkMemory(problem: StageProblem, solve: (p: StageProblem) => ChunkPlan | undefined = tryChunks, runs = Infinity): LeastChunkMemory {
  const unit = GIB / 100;
  let lo = Math.floor(problem.memoryBytes / unit); // does not fit
  let hi = Math.max(lo + 1, 1);
  const top = Math.ceil(Math.max(64 * Math.max(problem.memoryBytes, GIB), chunkMemoryCeiling(problem)) / unit);
  let left = runs;
  const fits = (units: number) => {
    left--;
    return solve({ ...problem, memoryBytes: units * unit }) !== undefined;
  };
  for (;;) {
    if (left < 1) return { short: lo * unit, exact: false };
    if (fits(hi)) break;
    lo = hi;
    if (hi >= top) return { short: lo * unit, exact: true };
    hi = Math.min(hi * 2, top);
  }
  while (hi - lo > 1) {
    if (left < 1) return { fits: hi * unit, short: lo * unit, exact: false };
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid;
  }
  return { fits: hi * unit, short: lo * unit, exact: true };
}

/** `bytes` in GiB with two decimals (as `--memory-gib` takes it). */
function gibOf(bytes: number): string {
  return (Math.round(bytes / (GIB / 100)) / 100).toFixed(2);
}

/**
 * Runs the chunk planner; when nothing fits, the error says the least memory per GPU that does
 * (rounded up to 0.01 GiB, naming `--memory-gib`), found by {@link leastChunkMemory} within
 * `budget` work units (the planner's runs each count {@link chunkWorkUnits}); when the budget
 * stops the bisection first, the error says what it found and why it stopped.
 *
 * @param problem - the chunk problem
 * @param solve - the planner (default {@link partitionChunks}); used again with more memory
 * @param budget - work units left for this run and the bisection (default {@link MAX_CHUNK_SEARCH_WORK})
 * @returns the plan
 * @throws the planner's `ERR_OMNIBAL_INFEASIBLE`, its message extended with the least memory
 */
export function chunksWithMemoryHint(problem: StageProblem, solve: (p: StageProblem) => ChunkPlan = partitionChunks, budget: number = MAX_CHUNK_SEARCH_WORK): ChunkPlan {
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
    const units = runUnits(problem);
    const runs = units > 0 ? Math.max(0, Math.floor((budget - units) / units)) : Infinity;
    const need = leastChunkMemory(problem, quiet, runs);
    const stopped = `the bisection stopped at the work bound (at most 2^26 work units over the planner's runs; each run of ${units} units)`;
    if (need.exact && need.fits !== undefined) {
      const gib = gibOf(need.fits);
      e.message += `; the least memory per GPU at which the interleaved search finds a plan is ${Math.ceil(need.fits)} bytes (${gib} GiB, rounded up): --memory-gib ${gib}`;
    } else if (need.exact) e.message += '; not even the memory at which every chunking fits does';
    else if (need.fits !== undefined) e.message += `; the interleaved search finds a plan at ${gibOf(need.fits)} GiB per GPU (--memory-gib ${gibOf(need.fits)}) and none at ${gibOf(need.short)} GiB: ${stopped}`;
    else {
      // Without a run: at the memory where every chunking fits, the planner finds a plan.
      const ceiling = Math.ceil(chunkMemoryCeiling(problem) / (GIB / 100)) / 100;
      const at = `every chunking fits at ${ceiling.toFixed(2)} GiB per GPU (--memory-gib ${ceiling.toFixed(2)})`;
      e.message += need.short > problem.memoryBytes ? `; none either at ${gibOf(need.short)} GiB per GPU, ${at}: ${stopped}` : `; ${at}; the least memory that fits was not searched: ${stopped}`;
    }
    throw e;
  }
}

/**
 * Refuses, before any run, a Megatron-LM target search whose planner runs (one per recompute
 * setting, and the unconstrained plan) would spend more than {@link MAX_CHUNK_SEARCH_WORK} work units.
 */
function checkTargetWork(problem: StageProblem, settings: number): void {
  const units = runUnits(problem);
  const runs = settings + 1;
  const need = runs * units;
  if (!(need > MAX_CHUNK_SEARCH_WORK)) return; // within the bound (or a malformed problem: the planner says what is wrong)
  const v = problem.virtualStages ?? 2;
  throw outOfRange(
    'layers',
    `must be few enough for the Megatron-LM target's interleaved search (at most 2^26 work units over its chunk planner runs, runs x model chunks x (layer ranges + 2 x micro-batches x model chunks); ${problem.forwardMs.length} layers in ${v * problem.stages} model chunks (${problem.stages} stages x ${v} virtual stages) with ${problem.microBatches} micro-batches, ${runs} runs (${settings} recompute settings and the unconstrained plan) of ${units} units need ${need <= Number.MAX_SAFE_INTEGER ? need : 'more'}): merge layers into blocks, use fewer stages, virtual stages or micro-batches, or plan with target none (--target none: one run)`,
  );
}

/** Work units of one chunk planner run on `problem` ({@link chunkWorkUnits}). */
function runUnits(problem: StageProblem): number {
  return chunkWorkUnits(problem.forwardMs.length, (problem.virtualStages ?? 2) * problem.stages, problem.microBatches);
}

/**
 * The best interleaved chunk plan `target` can run (see the module notes).
 *
 * @param problem - the chunk problem (`schedule: 'interleaved'`)
 * @param target - `megatron`, `none` (or `deepspeed`, refused)
 * @returns the target's best chunk plan
 * @throws `ERR_OMNIBAL_INVALID_OPTIONS` for `deepspeed`; `ERR_OMNIBAL_INFEASIBLE` (with the least
 *   memory that fits) when no plan the target can run fits; `ERR_OMNIBAL_OUT_OF_RANGE` when the
 *   search's planner runs would pass the work bound (2^26 work units over all runs), before any run
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
  // Counts up to the most decoder layers a chunk can hold: larger ones recompute the same.
  const settings = megatronSettings(constrained, problem.recompute ?? 'block', (problem.virtualStages ?? 2) * problem.stages);
  if (settings.length > 1) notes.push('Megatron-LM applies one recomputation setting to every model chunk: tried none, selective (when asked) and every --recompute-num-layers count (the first k decoder layers of each chunk), with and without --recompute-vision');
  checkTargetWork(problem, settings.length);
  const best = bestSetting(constrained, settings, tryChunks);
  if (!best) {
    // The most memory-saving setting says how much memory would fit, within the work left.
    try {
      chunksWithMemoryHint(withSetting(constrained, settings[settings.length - 1]), partitionChunks, MAX_CHUNK_SEARCH_WORK - settings.length * runUnits(problem));
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
