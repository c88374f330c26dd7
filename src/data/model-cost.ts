/**
 * The step-time text cost of an LLM preset, for balancing: per sample of `t` tokens,
 * `t + t^2 / (12 h)` for hidden size `h` (causal attention), i.e. `costA = 1`,
 * `costB = 1 / (12 h)`.
 *
 * Derivation (a FLOPs ratio; Narayanan et al. 2021, "Efficient Large-Scale Language Model
 * Training on GPU Clusters Using Megatron-LM", section 5.1): one transformer layer's forward pass
 * over a sequence of `t` tokens costs `24 t h^2` FLOPs in its linear layers (QKV, output
 * projection and a 4h MLP: 12 h^2 weights, 2 FLOPs per weight per token) and `4 t^2 h` in
 * attention (the scores `Q K^T` and their product with `V`, `2 t^2 h` each). Causal attention
 * computes half of the score matrix, `2 t^2 h`. Packed samples attend only within themselves, so
 * a pack's cost is the sum over its samples of `24 t h^2 + 2 t^2 h`, proportional to
 * `t + t^2 / (12 h)`. It predicts compute-bound step time; memory-bound kernels, GQA and gated
 * MLPs shift the ratio somewhat, and `costA` / `costB` override it.
 *
 * @module
 */
import { modelPreset } from '../model/presets';
import type { TextCost } from './cost';

/**
 * The default model of `omnibal pack --model` and of the library's default text cost: the
 * default plan's VLM (`DEFAULT_RUN.model`; a test keeps the two equal). A literal, so that the
 * data API does not import the planner.
 */
export const DEFAULT_COST_MODEL = 'internvl-chat-1.5';

/** The default text cost of the balanced planner: {@link modelTextCost} of {@link DEFAULT_COST_MODEL}. */
export function defaultTextCost(): TextCost {
  const { a, b } = modelTextCost(DEFAULT_COST_MODEL);
  return { a, b };
}

/** The text cost `t + t^2 / (12 h)` of the LLM of VLM preset `model`, with its hidden size. */
export function modelTextCost(model: string): TextCost & { llmHidden: number } {
  const h = modelPreset(model).llm.hidden;
  return { a: 1, b: 1 / (12 * h), llmHidden: h };
}
