/**
 * The keys of the model side's option and spec objects, each written once: `optionKeys` makes
 * tsc check every list against its interface, and `checkKnownKeys` refuses any other key (a
 * typo must not silently run a default), as the sidecar's schemas do.
 *
 * @module
 */
import { optionKeys } from '../validate';
import type { LayerTableOptions, MicroBatchLoad, StageProblem, TrainingOptions, VlmStageOptions } from './index';
import type { SearchStagesOptions } from './search';
import type { Efficiency, GpuSpec, LayerCost, Transformer, VlmSpec } from './vlm';

/** Every key of {@link StageProblem}. */
export const STAGE_PROBLEM_KEYS = optionKeys<StageProblem>({
  forwardMs: true, backwardMs: true, staticBytes: true, activationBytes: true, checkpointBytes: true, selectiveBytes: true, selectiveMs: true,
  weightBytes: true, gradientBytes: true, optimizerBytes: true, schedule: true, virtualStages: true, selectiveModules: true, stages: true,
  microBatches: true, memoryBytes: true, stageOverheadBytes: true, commMs: true, recompute: true, uniformLayers: true, recomputeVision: true,
  recomputeGroups: true, firstStageMinLayers: true, layerNames: true, layerKinds: true, params: true,
});

/** Keys users reach for that a {@link StageProblem} spells otherwise. */
export const STAGE_PROBLEM_HINTS: Readonly<Record<string, string>> = { pp: "'stages'" };

/** Every key of {@link VlmStageOptions}. */
export const VLM_STAGE_OPTION_KEYS = optionKeys<VlmStageOptions>({
  model: true, gpu: true, pp: true, tp: true, dp: true, zero: true, training: true, microBatches: true, load: true, memoryLoad: true,
  headroom: true, schedule: true, virtualStages: true, recompute: true, visionOnFirstStage: true, embeddingOnFirstStage: true,
  stageOverheadBytes: true, communication: true,
});

/** Every key of {@link LayerTableOptions}. */
export const LAYER_TABLE_OPTION_KEYS = optionKeys<LayerTableOptions>({ tp: true, dp: true, zero: true, training: true, load: true });

/** Every key of {@link TrainingOptions}. */
export const TRAINING_OPTION_KEYS = optionKeys<TrainingOptions>({ grads: true, frozenVit: true, frozenLlm: true, flashAttention: true });

/** Every key of {@link MicroBatchLoad}. */
export const MICRO_BATCH_LOAD_KEYS = optionKeys<MicroBatchLoad>({ tiles: true, tokens: true, sumSqLen: true });

/** Every key of {@link SearchStagesOptions}. */
export const SEARCH_STAGES_OPTION_KEYS = optionKeys<SearchStagesOptions>({ radius: true, budget: true, maxCandidates: true });

/** Every key of {@link VlmSpec}. */
export const VLM_SPEC_KEYS = optionKeys<VlmSpec>({ vit: true, llm: true, vitTokensPerTile: true, tilePixels: true, patch: true, llmTokensPerTile: true, projectorIn: true });

/** Every key of {@link Transformer}. */
export const TRANSFORMER_KEYS = optionKeys<Transformer>({ layers: true, hidden: true, heads: true, kvHeads: true, ffn: true, gated: true, vocab: true });

/** Every key of {@link GpuSpec}. */
export const GPU_SPEC_KEYS = optionKeys<GpuSpec>({ peakFlops: true, memoryBytes: true, efficiency: true, networkBytesPerS: true, nvlinkBytesPerS: true, layerCost: true });

/** Every key of {@link Efficiency}. */
export const EFFICIENCY_KEYS = optionKeys<Efficiency>({ vit: true, projector: true, llm: true, head: true });

/** Every key of {@link LayerCost}. */
export const LAYER_COST_KEYS = optionKeys<LayerCost>({ overheadMs: true, efficiency: true });
