/**
 * Warnings about a batch plan that the CLI prints on stderr and puts in the JSON metrics: a
 * plan that leaves out more than 1% of the samples for being over a cap or in the dropped tail
 * (large `dp x accum`), and an ISF plan whose
 * searched caps missed the wanted samples per pack (the window `[B, B + 1]`).
 *
 * @module
 */
import type { BatchMetrics } from '../data/metrics';
import type { BatchPlan } from '../data/plan';

/** Share of the samples a plan may leave out over a cap before a warning. */
export const OVER_CAP_WARN_SHARE = 0.01;

/** The warnings for `plan` of `total` samples; `samplesPerPack` is the `B` asked for, if any. */
export function planWarnings(plan: BatchPlan, metrics: BatchMetrics, total: number, samplesPerPack?: number): string[] {
  const warnings: string[] = [];
  let vision = 0;
  let text = 0;
  let tail = 0;
  for (const r of plan.droppedReason) {
    if (r === 1) vision++;
    else if (r === 2) text++;
    else if (r === 3) tail++;
  }
  if (vision + text > OVER_CAP_WARN_SHARE * total) {
    const share = Math.floor((1000 * (vision + text)) / total + 0.5) / 10;
    warnings.push(
      `${plan.strategy}: ${vision + text} of ${total} samples (${share}%) are over a cap and left out (vision ${vision}, text ${text}); raise the caps or --samples-per-pack`,
    );
  }
  if (tail > OVER_CAP_WARN_SHARE * total) {
    const share = Math.floor((1000 * tail) / total + 0.5) / 10;
    warnings.push(
      `${plan.strategy}: ${tail} of ${total} samples (${share}%) are in the dropped tail (the last incomplete step); use --tail pad or keep-partial, or fewer ranks or micro-batches per step`,
    );
  }
  if (plan.strategy === 'isf' && samplesPerPack !== undefined) {
    const got = metrics.samplesPerPack;
    if (!(got >= samplesPerPack && got <= samplesPerPack + 1)) {
      warnings.push(
        `isf: the caps search left its window: ${got.toFixed(2)} samples per pack, outside ${samplesPerPack} to ${samplesPerPack + 1}`,
      );
    }
  }
  return warnings;
}

/**
 * A calibration's warnings as the CLI prints them (stderr and the JSON's `warnings`): the
 * file's fields named under its flag, `--calibration.layers[3].forwardMs`, as its errors are.
 */
export function calibrationWarningsForCli(warnings: readonly string[]): string[] {
  return warnings.map((w) => w.replace(/(?<![\w.-])calibration(?=[.[])/g, '--calibration'));
}
