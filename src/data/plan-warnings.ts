/**
 * Warnings about a batch plan, for the CLI (stderr and the JSON's metrics) and `planTraining`: a
 * plan that leaves out more than 1% of the samples for being over a cap or in the dropped tail
 * (large `dp x accum`), and, for an ISF plan whose caps a search chose, the search's own warnings:
 * it ended outside the window `[B, B + 1]`, or its caps drop more than 1% of the input over a cap.
 * Those judge what the search evaluated (every sample, nothing dropped as tail), not the plan
 * after its tail is dropped, whose samples per pack differ.
 *
 * @module
 */
import type { IsfSearch } from './isf-search';
import type { BatchPlan } from './plan';

/** Share of the samples a plan may leave out over a cap before a warning. */
export const OVER_CAP_WARN_SHARE = 0.01;

/**
 * The warnings for `plan` of `total` samples; `isfSearch` is the search that chose an ISF plan's
 * caps, if one did (its warnings replace the plan's over-cap one: the same samples, counted by it);
 * `tailAdvice` replaces the CLI `pack` flags the dropped-tail warning suggests.
 */
export function planWarnings(plan: BatchPlan, total: number, isfSearch?: IsfSearch, tailAdvice?: string): string[] {
  const warnings: string[] = [];
  let vision = 0;
  let text = 0;
  let tail = 0;
  for (const r of plan.droppedReason) {
    if (r === 1) vision++;
    else if (r === 2) text++;
    else if (r === 3) tail++;
  }
  if (isfSearch !== undefined) {
    for (const w of isfSearch.warnings) warnings.push(`${plan.strategy}: ${w}`);
  } else if (vision + text > OVER_CAP_WARN_SHARE * total) {
    const share = Math.floor((1000 * (vision + text)) / total + 0.5) / 10;
    warnings.push(
      `${plan.strategy}: ${vision + text} of ${total} samples (${share}%) are over a cap and left out (vision ${vision}, text ${text}); raise the caps or --samples-per-pack`,
    );
  }
  if (tail > OVER_CAP_WARN_SHARE * total) {
    const share = Math.floor((1000 * tail) / total + 0.5) / 10;
    warnings.push(
      `${plan.strategy}: ${tail} of ${total} samples (${share}%) are in the dropped tail (the last incomplete step); ${tailAdvice ?? `use --tail pad or keep-partial${plan.strategy === 'balanced' ? ', or carry (planned in the next epoch)' : ''}, or fewer ranks or micro-batches per step`}`,
    );
  }
  return warnings;
}
