/**
 * Warnings the CLI prints on stderr and puts in its JSON: a batch plan's (`planWarnings`, from
 * `src/data/plan-warnings.ts`) and a calibration's, named under its flag.
 *
 * @module
 */
export { OVER_CAP_WARN_SHARE, planWarnings } from '../data/plan-warnings';

/**
 * A calibration's warnings as the CLI prints them (stderr and the JSON's `warnings`): the
 * file's fields named under its flag, `--calibration.layers[3].forwardMs`, as its errors are.
 */
export function calibrationWarningsForCli(warnings: readonly string[]): string[] {
  return warnings.map((w) => w.replace(/(?<![\w.-])calibration(?=[.[])/g, '--calibration'));
}
