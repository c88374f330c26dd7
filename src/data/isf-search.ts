/**
 * The reference search for ISF's caps. TypeScript twin of
 * `crate/core/src/data/isf_search.rs`; see there for the procedure.
 *
 * @module
 */
import { ErrorCodes, rangeError } from '../errors';
import { numberAtLeast } from '../validate';
import { isfBatchesTwin } from './baselines';
import { batchMetricsTwin } from './metrics';
import { referenceIsfParams } from './isf';
import { means, type Caps } from './samples';

/** Parameters of the search, all set. */
export interface IsfSearchParams {
  samplesPerPack: number;
  dp: number;
  accum: number;
  iterations: number;
  maxSteps: number;
  seed: number;
}

/** One evaluated pair of caps. */
export interface IsfCandidate {
/** The vision cap tried. */
  maxVision: number;
/** The text cap tried (the text threshold is this - 128). */
  maxText: number;
  /** Mean samples per pack ISF reached with these caps. */
  samplesPerPack: number;
/** Pad ratio of the ISF plan (0: packs are not padded). */
  padRatio: number;
/** Vision dist of ISF's packs handed out at random. */
  visionDist: number;
/** Text dist of the same. */
  textDist: number;
  /** `padRatio + visionDist + textDist`: lower is better. */
  score: number;
  /** Samples over a cap. */
  dropped: number;
  /** Whether `samplesPerPack` lies in `[B, B + 1]`. */
  inWindow: boolean;
}

/** The search's choice (an index into `candidates`) and every candidate, in evaluation order. */
export interface IsfSearch {
/** Index of the chosen candidate. */
  chosen: number;
  /** Text-cap step: tokens per vision unit. */
  textStep: number;
/** Every candidate, in evaluation order. */
  candidates: IsfCandidate[];
  /**
   * What went wrong: the walk ended without caps in the window `[B, B + 1]`, or the choice
   * drops more than 1% of the samples over a cap. Empty when neither.
   */
  warnings: string[];
}

/** Twin of `search_start`: each text length rounded up to its own multiple of 256, then the mean. */
export function searchStart(vision: Uint32Array, text: Uint32Array): { caps: Caps; a: number } {
  let binned = 0;
  for (let i = 0; i < text.length; i++) binned += Math.ceil(text[i] / 256) * 256;
  const meanT256 = binned / text.length;
  const [meanV] = means(vision, text);
  const a = Math.max(Math.floor((Math.floor(meanT256 / Math.max(meanV, 1)) + 1) / 16) * 16, 16);
  return { caps: { maxVision: Math.max(Math.floor(4096 / a), 1), maxText: 4096 }, a };
}

function evaluate(vision: Uint32Array, text: Uint32Array, caps: Caps, p: IsfSearchParams): IsfCandidate {
  const isf = referenceIsfParams(caps, p.seed, 0);
  isf.iterations = p.iterations;
  const plan = isfBatchesTwin(vision, text, isf, p.dp, p.accum, 'keep-partial');
  const m = batchMetricsTwin(plan, vision, text, { a: 1, b: 0 });
  const b = p.samplesPerPack;
  return {
    maxVision: caps.maxVision,
    maxText: caps.maxText,
    samplesPerPack: m.samplesPerPack,
    padRatio: m.padRatio,
    visionDist: m.visionDist,
    textDist: m.textDist,
    score: m.padRatio + m.visionDist + m.textDist,
    dropped: plan.droppedIndex.length,
    inWindow: m.samplesPerPack >= b && m.samplesPerPack <= b + 1,
  };
}

/** Caps that fit no sample count as an evaluation below the window; other errors propagate. */
function tryEvaluate(vision: Uint32Array, text: Uint32Array, caps: Caps, p: IsfSearchParams): IsfCandidate | undefined {
  try {
    return evaluate(vision, text, caps, p);
  } catch (error) {
    if ((error as { code?: string }).code === ErrorCodes.CAP_TOO_SMALL) return undefined;
    throw error;
  }
}

/** Share of the samples a choice may drop over a cap before the search warns. */
export const DROP_WARN_SHARE = 0.01;

/** Twin of `search_isf_arguments`: the reference walk (see the Rust module notes). */
export function searchIsfArgumentsTwin(vision: Uint32Array, text: Uint32Array, p: IsfSearchParams): IsfSearch {
  const b = numberAtLeast('samplesPerPack', p.samplesPerPack, 1);
  const { caps: start, a } = searchStart(vision, text);
  const capsAt = (k: number): Caps | undefined => {
    const v = start.maxVision + k;
    const t = start.maxText + k * a;
    return v >= 1 && t > 128 && v <= 0xffffffff && t <= 0xffffffff ? { maxVision: v, maxText: t } : undefined;
  };
  const candidates: IsfCandidate[] = [];
  const seen = new Map<number, number | undefined>();
  const warnings: string[] = [];
  let maxSeen = -Infinity;
  let recorded = false;
  let k = 0;
  for (let steps = 0; ; steps++) {
    const caps = capsAt(k);
    if (caps === undefined) {
      warnings.push(
        `the ISF search reached caps that cannot exist (vision ${start.maxVision + k}, text ${start.maxText + k * a}) before finding ${b} to ${b + 1} samples per pack`,
      );
      break;
    }
    let at: number | undefined;
    if (seen.has(k)) at = seen.get(k);
    else {
      const c = tryEvaluate(vision, text, caps, p);
      if (c !== undefined) {
        candidates.push(c);
        at = candidates.length - 1;
      }
      seen.set(k, at);
    }
    maxSeen = Math.max(maxSeen, at === undefined ? 0 : candidates[at].samplesPerPack);
    if (at !== undefined && candidates[at].inWindow) recorded = true;
    if (maxSeen > b + 1) {
      if (recorded) break;
      k -= 1;
    } else k += 1;
    if (steps === p.maxSteps) {
      if (!recorded) warnings.push(`the ISF search took its ${p.maxSteps} steps without finding ${b} to ${b + 1} samples per pack`);
      break;
    }
  }
  if (candidates.length === 0) throw rangeError(ErrorCodes.CAP_TOO_SMALL, 'no caps on the search path fit any sample');
  const gap = (c: IsfCandidate) => (c.inWindow ? 0 : c.samplesPerPack < b ? b - c.samplesPerPack : c.samplesPerPack - b - 1);
  let chosen = 0;
  candidates.forEach((c, i) => {
    const best = candidates[chosen];
    const better = recorded
      ? c.inWindow && (!best.inWindow || c.score < best.score)
      : gap(c) < gap(best) || (gap(c) === gap(best) && c.score < best.score);
    if (better) chosen = i;
  });
  const c = candidates[chosen];
  if (!c.inWindow) {
    warnings.push(
      `the ISF search left its window: caps ${c.maxVision} / ${c.maxText} give ${Math.floor(c.samplesPerPack * 100 + 0.5) / 100} samples per pack, outside ${b} to ${b + 1}`,
    );
  }
  if (c.dropped > DROP_WARN_SHARE * vision.length) {
    warnings.push(
      `caps ${c.maxVision} / ${c.maxText} drop ${c.dropped} of ${vision.length} samples over a cap (${Math.floor((1000 * c.dropped) / vision.length + 0.5) / 10}%)`,
    );
  }
  return { chosen, textStep: a, candidates, warnings };
}
