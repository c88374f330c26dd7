/**
 * One plan for the whole run: balance the data with the cost model's real per-micro-batch
 * costs, split the model into stages with per-stage recomputation on the resulting loads,
 * simulate steps over the epoch, and predict step time, epoch time and GPU-hours, with the
 * ablation (baseline, + data, + model, + memory balance).
 *
 * Every figure is a prediction of the cost model and the simulator, under their assumptions.
 *
 * @module
 */
export {
  checkMemoryOptions,
  checkRunOptions,
  DEFAULT_RUN,
  type Cluster,
  type DefaultRun,
  type FileInputs,
  type PlanInputs,
  type PlanMemory,
  type PlanTrainingOptions,
  type SyntheticInputs,
} from './options';
export {
  PLAN_ASSUMPTIONS,
  type AblationRow,
  type DataComparison,
  type DataSummary,
  type FailedBaseline,
  type PlanDetail,
  type PlanReplay,
  type PlanChunks,
  type StageMemory,
  type Timeline,
  type TimelineEvent,
  type TrainingPlan,
} from './training-plan';
export { calibrationWarnings, prepareModel, type Coefficients } from './prepare-model';
export { simulateConfig, type Config, type Resolved, type Simulated } from './simulate-config';
export { planTraining } from './plan-training';
export { simulateSavedPlan, type ReplayResult } from './replay';
