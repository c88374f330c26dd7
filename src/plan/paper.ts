/**
 * The OmniBal paper's measured ablation, shown beside a plan only for the model it measured.
 *
 * @module
 */

/** Table 2 of the paper: A100 GPU-days, InternViT-6B + InternLM2-20B (InternVL-Chat-1.5), measured. */
export const PAPER_TABLE_2 = [61.8, 51.9, 29.0, 21.3];

/** The model preset the paper's Table 2 measured. */
export const PAPER_TABLE_2_MODEL = 'internvl-chat-1.5';

/** The paper's ablation (baseline, + data, + model, + memory) for `model`, or undefined where the paper did not measure it. */
export function paperAblation(model: string): number[] | undefined {
  return model === PAPER_TABLE_2_MODEL ? PAPER_TABLE_2 : undefined;
}
