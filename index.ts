/**
 * omnibal: balance vision-language model training across data-parallel ranks, pipeline stages
 * and memory, on a Rust core behind Node-API with TypeScript twins as fallback.
 *
 * @packageDocumentation
 */
export { backend, type BackendInfo } from './src/binding';
export {
  ErrorCodes,
  isOmnibalError,
  type ErrorCode,
  type OmnibalError,
} from './src/errors';
export {
  MAX_PERMUTATION_LEN,
  MAX_SEED,
  permutation,
  permutationAsync,
  shuffle,
  type PermutationAsyncOptions,
} from './src/random/index';
export {
  balanceBatches,
  balanceBatchesAsync,
  batchMetrics,
  DROP_REASONS,
  droppedSamples,
  packIsf,
  packIsfAsync,
  planBatches,
  planBatchesAsync,
  planForRank,
  planStep,
  searchIsfArguments,
  searchIsfArgumentsAsync,
  STRATEGIES,
  TAILS,
  type AsyncOptions,
  type BatchMetrics,
  type BatchPlan,
  type Caps,
  type DropReason,
  type DroppedSample,
  type IsfCandidate,
  type IsfPacks,
  type IsfSearch,
  type PackIsfOptions,
  type PlanBatchesOptions,
  type Samples,
  type SearchIsfOptions,
  type Strategy,
  type Tail,
  type TextCost,
} from './src/data/index';
export {
  readSamples,
  SAMPLES_FORMATS,
  type LoadedFile,
  type LoadedSamples,
  type ReadSamplesOptions,
  type SamplesFormat,
  type SamplesStream,
} from './src/io/samples';
export { syntheticSamples, TOKENS_PER_TILE } from './src/data/synthetic';
export {
  applyCalibration,
  baselineStages,
  calibrate,
  evaluateSplit,
  evaluateStages,
  gpuPreset,
  gpuPresets,
  LAYER_KINDS,
  modelPreset,
  modelPresets,
  partitionChunks,
  partitionStages,
  partitionStagesAsync,
  RECOMPUTE_MODES,
  SPLITS,
  vlmLayers,
  vlmStageProblem,
  type BaselineRecompute,
  type Calibration,
  type ChunkInfo,
  type ChunkPlan,
  type ChunkStageInfo,
  type CalibrationResult,
  type Efficiency,
  type LayerCost,
  type LayerTableOptions,
  type LayerTiming,
  type NamedLayerTable,
  type StageMemoryMeasurement,
  type GpuChoice,
  type GpuSpec,
  type LayerKind,
  type LayerTable,
  type MicroBatchLoad,
  type ModelChoice,
  type Recompute,
  type Split,
  type StageInfo,
  type StagePlan,
  type StageProblem,
  type Transformer,
  type VlmSpec,
  type VlmStageOptions,
  type MemoryBreakdown,
  type Schedule,
  type TrainingOptions,
} from './src/model/index';
export { partitionForTarget, TARGETS, type Target, type TargetPlan } from './src/model/target';
export { partitionChunksForTarget, type ChunkTargetPlan } from './src/model/chunk-target';
export { evaluateChunks } from './src/model/chunk-evaluate';
export { heaviestMicroBatchLoad } from './src/model/memory-load';
export { searchStages, type SearchStagesOptions, type StageCandidate, type StageSearch } from './src/model/search';
export { exportDeepSpeed, exportMegatron, shellLine, shellQuote, DEEPSPEED_INTERVAL_SEMANTICS, type DeepSpeedExport, type MegatronAlternative, type MegatronExport } from './src/export/index';
export { exportMegatronChunks } from './src/export/megatron-chunks';
export { chunkInFlight, simulateStep, type ChunkInFlight, type ChunkInFlightInput, type StepEvents, type StepInput, type StepResult } from './src/simulate/index';
export {
  DEFAULT_RUN,
  PLAN_ASSUMPTIONS,
  planTraining,
  simulateSavedPlan,
  type AblationRow,
  type Cluster,
  type DataComparison,
  type DataSummary,
  type DefaultRun,
  type FailedBaseline,
  type FileInputs,
  type PlanDetail,
  type SyntheticInputs,
  type Timeline,
  type TimelineEvent,
  type PlanInputs,
  type PlanMemory,
  type PlanReplay,
  type PlanChunks,
  type PlanTrainingOptions,
  type ReplayResult,
  type StageMemory,
  type TrainingPlan,
} from './src/plan/index';
export type { RunFigures } from './src/plan/figures';
export { searchLayouts, type LayoutCandidate, type LayoutProgressCallback, type LayoutSearchOptions } from './src/plan/layout';
export { renderReport } from './src/report/index';
export { version } from './src/package';
export type { ProgressCallback } from './src/progress';
