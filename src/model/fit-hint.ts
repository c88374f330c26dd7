/**
 * What would fit when a GPipe plan does not: the largest accumulation (micro-batches per rank
 * per step) that fits the same micro-batches.
 *
 * GPipe keeps all `M` micro-batches of a step in flight on every stage (with full
 * recomputation each layer still keeps its input per micro-batch, and the last stage the
 * logits the loss saves, which no layer checkpoint covers). Memory per stage never shrinks as
 * `M` grows, so whether a plan fits is monotone in `M` and the largest `M` that fits is found
 * by bisection. 1F1B keeps `min(P - s, M)` and interleaving `min(warmup + 1, M v) / v`, both
 * the same for every `M` past about `P`: fewer micro-batches do not help there, no hint.
 *
 * @module
 */
import type { StagePlan, StageProblem } from './index';

function fits(problem: StageProblem, microBatches: number, solve: (p: StageProblem) => StagePlan): boolean {
  try {
    solve({ ...problem, microBatches });
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_OMNIBAL_INFEASIBLE') return false;
    throw error;
  }
}

/**
 * The largest accumulation below `problem.microBatches` whose GPipe plan fits, or `undefined`
 * when none does or the schedule is not GPipe.
 *
 * @param problem - a stage problem that did not fit
 * @param solve - the planner to try (the stage DP, or a framework target's)
 * @returns the largest fitting micro-batch count, or `undefined`
 */
export function largestFittingAccumulation(problem: StageProblem, solve: (p: StageProblem) => StagePlan): number | undefined {
  if (problem.schedule !== 'gpipe') return undefined;
  let lo = 0; // no micro-batch: fits vacuously
  let hi = problem.microBatches; // assumed not to fit
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(problem, mid, solve)) lo = mid;
    else hi = mid;
  }
  return lo >= 1 ? lo : undefined;
}

/**
 * Runs `solve`; when it throws `ERR_OMNIBAL_INFEASIBLE` under GPipe, appends the largest
 * accumulation that fits to the message (a prediction of the memory model).
 *
 * @param problem - the stage problem `plan` solves
 * @param solve - the planner (used again with fewer micro-batches)
 * @param flag - the option that sets the micro-batches, for the message
 * @returns the plan
 * @throws the planner's error, its message extended with what would fit
 */
export function planWithFitHint(problem: StageProblem, solve: (p: StageProblem) => StagePlan, flag = '--accum'): StagePlan {
  try {
    return solve(problem);
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code !== 'ERR_OMNIBAL_INFEASIBLE') throw error;
    if (problem.schedule !== 'gpipe') throw e;
    const m = largestFittingAccumulation(problem, solve);
    e.message +=
      m === undefined
        ? '; GPipe keeps every micro-batch of a step in flight, and not even one per step fits'
        : `; GPipe keeps all ${problem.microBatches} micro-batches of a step in flight on every stage: the largest accumulation that fits these micro-batches is ${m} (${flag} ${m}; a prediction of the memory model)`;
    throw e;
  }
}
