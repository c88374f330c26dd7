/**
 * Samples as a struct of arrays, their checks, and micro-batch caps. TypeScript twin of
 * `crate/core/src/data/samples.rs`.
 *
 * @module
 */
import { ErrorCodes, invalidSample, omnibalError, outOfRange, rangeError } from '../errors';
import { expectU32Array } from '../validate';

/**
 * Training samples, one entry per sample in each array.
 *
 * - `vision`: the vision load, in the unit the caps use: image tiles (InternVL: one 448x448
 *   tile is 1,025 ViT tokens and 256 LLM tokens) or vision tokens; both work as long as caps and
 *   samples agree. 0 for a text-only sample.
 * - `text`: the LLM sequence length in tokens, image tokens included; at least 1.
 * - `group`: optional dataset id per sample (for example the file it came from), carried along
 *   for reporting; plans never sort or clump by it.
 */
export interface Samples {
/** Vision load per sample (tiles or vision tokens). */
  vision: Uint32Array;
/** LLM tokens per sample, image tokens included (at least 1). */
  text: Uint32Array;
/** Optional dataset id per sample. */
  group?: Uint32Array;
}

/** Why a sample is not in a plan. */
export type DropReason = 'vision-over-cap' | 'text-over-cap' | 'tail' | 'carried';

/** Drop reasons by their numeric code (as in `droppedReason` arrays). */
export const DROP_REASONS: readonly DropReason[] = ['vision-over-cap', 'text-over-cap', 'tail', 'carried'];

/** The numeric code of a drop reason (1-based, as the native core numbers them). */
export const DROP_CODE: Record<DropReason, number> = { 'vision-over-cap': 1, 'text-over-cap': 2, tail: 3, carried: 4 };

/** Caps of one micro-batch (one packed sequence). */
export interface Caps {
/** Most vision units (tiles) in one micro-batch. */
  maxVision: number;
/** Most text tokens in one micro-batch (a packed sequence's budget). */
  maxText: number;
}

/** Checks the arrays (twin of `Samples::new`): same length, not empty, no 0-token sample. */
export function checkSamples(vision: Uint32Array, text: Uint32Array): void {
  expectU32Array('vision', vision);
  expectU32Array('text', text);
  if (vision.length !== text.length) {
    throw outOfRange('vision', `and text must have the same length, got ${vision.length} and ${text.length}`);
  }
  if (text.length === 0) throw omnibalError(ErrorCodes.EMPTY_INPUT, 'no samples: the input is empty');
  const zero = text.indexOf(0);
  if (zero >= 0) throw invalidSample(zero, 'has 0 text tokens; every sample needs at least one');
}

/** Mean vision and text load (twin of `Samples::means`). */
export function means(vision: Uint32Array, text: Uint32Array): [number, number] {
  let v = 0;
  let t = 0;
  for (let i = 0; i < text.length; i++) {
    v += vision[i];
    t += text[i];
  }
  return [v / text.length, t / text.length];
}

/** Indices that fit the caps, and the others with their reason code (twin of `split_by_caps`). */
export function splitByCaps(vision: Uint32Array, text: Uint32Array, caps: Caps): { fit: number[]; dropped: [number, number][] } {
  const fit: number[] = [];
  const dropped: [number, number][] = [];
  for (let i = 0; i < text.length; i++) {
    if (vision[i] > caps.maxVision) dropped.push([i, DROP_CODE['vision-over-cap']]);
    else if (text[i] > caps.maxText) dropped.push([i, DROP_CODE['text-over-cap']]);
    else fit.push(i);
  }
  if (fit.length === 0) {
    let minV = Infinity;
    let minT = Infinity;
    for (let i = 0; i < text.length; i++) {
      minV = Math.min(minV, vision[i]);
      minT = Math.min(minT, text[i]);
    }
    throw rangeError(
      ErrorCodes.CAP_TOO_SMALL,
      `no sample fits the caps (max vision ${caps.maxVision}, max text ${caps.maxText}); the smallest sample needs vision ${minV} and text ${minT}`,
    );
  }
  return { fit, dropped };
}

/** Rounds a non-negative number half up, as the core does. */
export function roundHalfUp(x: number): number {
  return Math.floor(x + 0.5);
}

/** Caps for a wanted mean number of samples per micro-batch (twin of `caps_for_samples_per_pack`). */
export function capsForSamplesPerPack(vision: Uint32Array, text: Uint32Array, b: number): Caps {
  const [meanV, meanT] = means(vision, text);
  let maxV = 0;
  let maxT = 1;
  for (let i = 0; i < text.length; i++) {
    if (vision[i] > maxV) maxV = vision[i];
    if (text[i] > maxT) maxT = text[i];
  }
  const v = Math.min(meanV > 0 ? roundHalfUp(b * meanV) + 1 : 0, 0xffffffff);
  const t = Math.ceil((b * meanT * 1.25) / 128) * 128;
  return { maxVision: Math.max(v, maxV), maxText: Math.max(Math.min(t, 0xffffffff), maxT) };
}
