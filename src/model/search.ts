/**
 * The measured search (the paper's model balance): candidates around the optimal split, ranked
 * by predicted time, refined with real measurements through ask/tell.
 *
 * @module
 */
import { invalidOptions } from '../errors';
import { checkKnownKeys, expectObject, integerBetween } from '../validate';
import { SEARCH_STAGES_OPTION_KEYS } from './option-keys';
import { evaluateSplit, partitionStages, type StagePlan, type StageProblem } from './index';

/** One candidate split with its prediction and, once told, its measurement. */
export interface StageCandidate {
  /** Last layer of each stage. */
  lastLayers: number[];
  /** The predicted plan (cheapest feasible recomputation per stage). */
  predicted: StagePlan;
  /** Measured seconds per iteration, once told. */
  measuredSeconds?: number;
}

/** Options of {@link searchStages}. */
export interface SearchStagesOptions {
  /** How far each boundary may move from the optimum, in layers; default 1. */
  radius?: number;
  /** How many candidates to measure at most; default 8. */
  budget?: number;
  /** Most candidates to enumerate before ranking; default 20,000. */
  maxCandidates?: number;
}

/** The ask/tell state of a search. */
export interface StageSearch {
  /** Every feasible candidate, best predicted first. */
  readonly candidates: readonly StageCandidate[];
  /** The next candidate to measure, or undefined when the budget is spent or none is left. */
  ask(): StageCandidate | undefined;
  /**
   * Records a measurement of a candidate (seconds per iteration).
   *
   * @param candidate - a candidate from `ask`
   * @param seconds - its measured seconds per iteration
   */
  tell(candidate: StageCandidate, seconds: number): void;
  /** The best measured candidate so far, else the best predicted. */
  best(): StageCandidate;
  /**
   * Measures candidates with `measure` until the budget is spent; resolves with the best.
   *
   * @param measure - measures one candidate, resolving with seconds per iteration
   * @returns a Promise of the best candidate measured
   */
  run(measure: (candidate: StageCandidate) => Promise<number>): Promise<StageCandidate>;
}

/**
 * Starts a search around the optimal split of `problem`: every split whose boundaries lie
 * within `radius` layers of the optimum's (3^(P-1) for radius 1), priced by the model and
 * ranked; then `ask` / `tell` (or `run` with an async `measure`) refine it with measurements.
 *
 * @param problem - the stage problem
 * @param options - the radius around the optimum, the measurement budget, the most candidates
 * @returns the search: its ranked candidates, `ask`, `tell`, `best` and `run`
 */
export function searchStages(problem: StageProblem, options: SearchStagesOptions = {}): StageSearch {
  checkKnownKeys('options', expectObject('options', options), SEARCH_STAGES_OPTION_KEYS);
  const radius = integerBetween('radius', options.radius ?? 1, 0, 64);
  const budget = integerBetween('budget', options.budget ?? 8, 1, 1 << 20);
  const maxCandidates = integerBetween('maxCandidates', options.maxCandidates ?? 20000, 1, 1 << 24);
  const optimum = partitionStages(problem);
  const center = optimum.stages.map((s) => s.lastLayer);
  const last = problem.forwardMs.length - 1;
  const candidates: StageCandidate[] = [];
  const ends = center.slice();
  const visit = (i: number): void => {
    if (candidates.length >= maxCandidates) return;
    if (i === center.length - 1) {
      ends[i] = last;
      for (let k = 1; k < ends.length; k++) if (ends[k] <= ends[k - 1]) return;
      try {
        candidates.push({ lastLayers: ends.slice(), predicted: evaluateSplit(problem, ends) });
      } catch {
        // Infeasible split: not a candidate.
      }
      return;
    }
    for (let d = -radius; d <= radius; d++) {
      ends[i] = center[i] + d;
      if (ends[i] < 0 || ends[i] >= last) continue;
      visit(i + 1);
    }
  };
  visit(0);
  candidates.sort((a, b) => a.predicted.objectiveMs - b.predicted.objectiveMs || compareEnds(a.lastLayers, b.lastLayers));
  let asked = 0;
  const byKey = new Map(candidates.map((c) => [c.lastLayers.join(','), c]));
  const search: StageSearch = {
    candidates,
    ask() {
      if (asked >= budget) return undefined;
      const next = candidates.find((c) => c.measuredSeconds === undefined);
      if (next) asked++;
      return next;
    },
    tell(candidate, seconds) {
      const c = byKey.get(candidate.lastLayers.join(','));
      if (!c) throw invalidOptions('tell() got a candidate this search did not propose');
      if (!Number.isFinite(seconds) || seconds <= 0) throw invalidOptions(`seconds must be a positive number, got ${seconds}`);
      c.measuredSeconds = seconds;
    },
    best() {
      const measured = candidates.filter((c) => c.measuredSeconds !== undefined);
      if (measured.length === 0) return candidates[0];
      return measured.reduce((b, c) => (c.measuredSeconds! < b.measuredSeconds! ? c : b));
    },
    async run(measure) {
      for (let c = search.ask(); c; c = search.ask()) search.tell(c, await measure(c));
      return search.best();
    },
  };
  return search;
}

function compareEnds(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
