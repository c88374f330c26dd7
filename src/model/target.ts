/**
 * Framework targets: restrict the stage DP to plans a training framework can run, and say what
 * the unconstrained optimum would gain.
 *
 * - `megatron`: Megatron-LM's multimodal models build the vision encoder, the projector and the
 *   LLM embedding on the first pipeline stage, and apply one recomputation setting to every
 *   stage (`--recompute-granularity full --recompute-method block --recompute-num-layers k`:
 *   the first `min(k, local decoder layers)` decoder layers of every stage, the ViT all or
 *   nothing with `examples/multimodal`'s `--recompute-vision`; or
 *   `--recompute-granularity selective`; sources in `crate/core/src/model/recompute.rs`). The
 *   DP runs once per setting (none, selective, each `k` with and without the ViT), with those
 *   layers pinned to stage 0, and keeps the fastest.
 * - `deepspeed`: the generated `PipelineModule` subclass (see `exportDeepSpeed`) imposes any
 *   split and per-stage checkpoint list, so only selective recomputation, which DeepSpeed's
 *   pipeline does not offer, is replaced by `block`.
 * - `none`: the DP as asked.
 *
 * @module
 */
import { invalidOptions } from '../errors';
import { partitionStages, type StagePlan, type StageProblem } from './index';
import type { Recompute } from './stages';

/** Frameworks a plan can be restricted to. */
export const TARGETS = ['none', 'megatron', 'deepspeed'] as const;

/** A framework target. */
export type Target = (typeof TARGETS)[number];

/** A plan for a target, with what the target's restrictions cost. */
export interface TargetPlan {
  /** The target. */
  target: Target;
  /** The best plan the target can run. */
  plan: StagePlan;
  /** The problem the plan solves (with the target's constraints and recompute setting). */
  problem: StageProblem;
  /** The unconstrained optimum's figures, when it fits (absent for `none`). */
  unconstrained?: {
    /** Its predicted iteration time, ms. */
    objectiveMs: number;
    /** Its slowest stage per micro-batch, ms. */
    bottleneckMs: number;
  };
  /** Share of the target plan's iteration time the unconstrained optimum would save (0 when equal). */
  unconstrainedGain?: number;
  /** What the target changed, in words. */
  notes: string[];
}

/** Layers Megatron-LM builds on its first stage (or first model chunk): everything up to the LLM embedding. */
export function megatronFirstStageLayers(problem: StageProblem): number | undefined {
  const kinds = problem.layerKinds;
  if (!kinds) return undefined;
  const embed = kinds.indexOf('embed');
  return embed < 0 ? undefined : embed + 1;
}

/** One recomputation setting for every stage (or model chunk). */
export interface Setting {
  recompute: Recompute;
  uniformLayers?: number;
  recomputeVision?: boolean;
}

/**
 * The recomputation settings Megatron-LM can express for `mode`: the fixed modes as they are;
 * otherwise none, selective (when asked and it saves memory) and every `--recompute-num-layers`
 * count up to the most decoder layers one of `parts` contiguous parts can hold (larger counts
 * recompute the same), with and without `--recompute-vision`. The first part holds layers of
 * `0 .. L - parts` at most; with it holding at least `f = max(firstStageMinLayers, 1)` layers, any
 * other holds at most `L - f - (parts - 2)`: pass the problem with its first-part constraint.
 */
export function megatronSettings(problem: StageProblem, mode: Recompute, parts: number = problem.stages): Setting[] {
  if (mode === 'none' || mode === 'full' || mode === 'uniform' || mode === 'selective-all') return [{ recompute: mode, uniformLayers: problem.uniformLayers, recomputeVision: problem.recomputeVision }];
  const hasSelective = problem.selectiveBytes !== undefined && problem.selectiveBytes.some((s, i) => s < problem.activationBytes[i]);
  const out: Setting[] = [{ recompute: 'none' }];
  if (mode === 'selective' && hasSelective) out.push({ recompute: 'selective-all' });
  const kinds = problem.layerKinds;
  const decoder = kinds ? kinds.filter((k) => k === 'llm').length : problem.forwardMs.length;
  const L = problem.forwardMs.length;
  const firstPart = kinds ? kinds.slice(0, L - parts + 1).filter((k) => k === 'llm').length : L - parts + 1;
  const otherPart = L - Math.max(problem.firstStageMinLayers ?? 0, 1) - (parts - 2);
  const longest = Math.min(decoder, Math.max(firstPart, otherPart));
  const vision = kinds !== undefined && kinds.includes('vit') ? [false, true] : [false];
  for (const recomputeVision of vision) for (let k = 1; k <= longest; k++) out.push({ recompute: 'uniform', uniformLayers: k, recomputeVision });
  return out;
}

/** `problem` with setting `s`. */
export function withSetting(problem: StageProblem, s: Setting): StageProblem {
  return { ...problem, recompute: s.recompute, uniformLayers: s.uniformLayers, recomputeVision: s.recomputeVision };
}

/**
 * The fastest plan over `settings` of `problem` (ties: the smaller bottleneck), with the problem
 * it solves; `undefined` when `solve` fits none (it returns `undefined` for a setting that does not fit).
 */
export function bestSetting<P extends { objectiveMs: number; bottleneckMs: number }>(
  problem: StageProblem,
  settings: Setting[],
  solve: (p: StageProblem) => P | undefined,
): { plan: P; problem: StageProblem } | undefined {
  let best: { plan: P; problem: StageProblem } | undefined;
  for (const s of settings) {
    const p = withSetting(problem, s);
    const plan = solve(p);
    if (plan && (!best || plan.objectiveMs < best.plan.objectiveMs || (plan.objectiveMs === best.plan.objectiveMs && plan.bottleneckMs < best.plan.bottleneckMs))) best = { plan, problem: p };
  }
  return best;
}

/** `solve()`, or `undefined` where it proves that nothing fits (`ERR_OMNIBAL_INFEASIBLE`); other errors are thrown. */
export function unlessInfeasible<T>(solve: () => T): T | undefined {
  try {
    return solve();
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_OMNIBAL_INFEASIBLE') return undefined;
    throw error;
  }
}

function tryPlan(problem: StageProblem): StagePlan | undefined {
  return unlessInfeasible(() => partitionStages(problem));
}

/**
 * The best plan `target` can run, and what the unconstrained optimum would gain.
 *
 * @param problem - the stage problem
 * @param target - the framework the plan must run on: `megatron`, `deepspeed` or `none`
 * @returns the target's best plan, the unconstrained optimum and the gap between them
 * @throws `ERR_OMNIBAL_INFEASIBLE` when no plan the target can run fits (the message gives the
 *   least memory of the target's plain setting); `ERR_OMNIBAL_INVALID_OPTIONS` for an unknown target.
 */
export function partitionForTarget(problem: StageProblem, target: Target): TargetPlan {
  if (!(TARGETS as readonly string[]).includes(target)) throw invalidOptions(`target must be one of ${TARGETS.join(', ')}, got ${JSON.stringify(target)}`);
  const mode = problem.recompute ?? 'block';
  if (target === 'none') return { target, plan: partitionStages(problem), problem, notes: [] };
  const notes: string[] = [];
  let constrained: StageProblem = problem;
  let settings: Setting[];
  if (target === 'megatron') {
    const first = megatronFirstStageLayers(problem);
    if (first === undefined) notes.push('no layer kinds (a --layers file): the first-stage constraint of Megatron-LM (vision encoder, projector and embedding on stage 0) is not applied');
    else if ((problem.firstStageMinLayers ?? 0) < first) {
      constrained = { ...problem, firstStageMinLayers: first };
      notes.push(`Megatron-LM builds the vision encoder, projector and LLM embedding (layers 0-${first - 1}) on the first stage`);
    }
    settings = megatronSettings(constrained, mode);
    if (settings.length > 1) notes.push('Megatron-LM applies one recomputation setting to every stage: tried none, selective (when asked) and every --recompute-num-layers count (decoder layers per stage), with and without --recompute-vision (the whole ViT)');
  } else {
    settings = [{ recompute: mode === 'selective' ? 'block' : mode === 'selective-all' ? 'none' : mode, uniformLayers: problem.uniformLayers, recomputeVision: problem.recomputeVision }];
    if (mode === 'selective' || mode === 'selective-all') notes.push("DeepSpeed's pipeline has no selective recomputation: planned with block recomputation per stage instead");
  }
  const best = bestSetting(constrained, settings, tryPlan);
  if (!best) {
    // Say why with the core's own message (the least memory) for the most memory-saving setting.
    try {
      partitionStages(withSetting(constrained, settings[settings.length - 1]));
    } catch (error) {
      const e = error as Error & { code?: string };
      e.message = `no plan ${target === 'megatron' ? 'Megatron-LM' : 'DeepSpeed'} can run fits (${notes.join('; ') || 'its recomputation settings'}): ${e.message}`;
      throw e;
    }
    throw invalidOptions('no plan the target can run fits');
  }
  const free = tryPlan(problem);
  return {
    target,
    plan: best.plan,
    problem: best.problem,
    unconstrained: free ? { objectiveMs: free.objectiveMs, bottleneckMs: free.bottleneckMs } : undefined,
    unconstrainedGain: free ? Math.max(0, 1 - free.objectiveMs / best.plan.objectiveMs) : undefined,
    notes,
  };
}
