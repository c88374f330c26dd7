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
}

/** Twin of `search_start`. */
export function searchStart(vision: Uint32Array, text: Uint32Array): { caps: Caps; a: number } {
  const [meanV, meanT] = means(vision, text);
  const meanT256 = Math.ceil(meanT / 256) * 256;
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

function tryEvaluate(vision: Uint32Array, text: Uint32Array, caps: Caps, p: IsfSearchParams): IsfCandidate | undefined {
  try {
    return evaluate(vision, text, caps, p);
  } catch {
    return undefined;
  }
}

/** Twin of `search_isf_arguments`. */
export function searchIsfArgumentsTwin(vision: Uint32Array, text: Uint32Array, p: IsfSearchParams): IsfSearch {
  const b = numberAtLeast('samplesPerPack', p.samplesPerPack, 1);
  const { caps: start, a } = searchStart(vision, text);
  const capsAt = (k: number): Caps | undefined => {
    const v = start.maxVision + k;
    const t = start.maxText + k * a;
    return v >= 1 && t > 128 && v <= 0xffffffff && t <= 0xffffffff ? { maxVision: v, maxText: t } : undefined;
  };
  const candidates: IsfCandidate[] = [];
  const first = tryEvaluate(vision, text, start, p);
  let dirs: number[];
  if (first === undefined) dirs = [1];
  else if (first.samplesPerPack < b) dirs = [1];
  else if (first.samplesPerPack > b + 1) dirs = [-1];
  else dirs = [1, -1];
  if (first) candidates.push(first);
  for (const dir of dirs) {
    let entered = first?.inWindow ?? false;
    for (let step = 1; step <= p.maxSteps; step++) {
      const caps = capsAt(dir * step);
      if (caps === undefined) break;
      const c = tryEvaluate(vision, text, caps, p);
      if (c === undefined) continue;
      candidates.push(c);
      if (c.inWindow) entered = true;
      else if (entered || (dir > 0 && c.samplesPerPack > b + 1) || (dir < 0 && c.samplesPerPack < b)) break;
    }
  }
  if (candidates.length === 0) throw rangeError(ErrorCodes.CAP_TOO_SMALL, 'no caps on the search path fit any sample');
  const gap = (c: IsfCandidate) => (c.inWindow ? 0 : c.samplesPerPack < b ? b - c.samplesPerPack : c.samplesPerPack - b - 1);
  let chosen = 0;
  candidates.forEach((c, k) => {
    const best = candidates[chosen];
    const x = [c.inWindow ? 0 : 1, c.dropped > 0 ? 1 : 0];
    const y = [best.inWindow ? 0 : 1, best.dropped > 0 ? 1 : 0];
    const lexLess = x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
    const same = x[0] === y[0] && x[1] === y[1];
    if (lexLess || (same && (gap(c) < gap(best) || (gap(c) === gap(best) && c.score < best.score)))) chosen = k;
  });
  return { chosen, textStep: a, candidates };
}
