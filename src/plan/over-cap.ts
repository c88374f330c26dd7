/**
 * Why a balanced plan's memory bound is high: the samples over the packing caps.
 *
 * The balanced rows of `planTraining` are sized for the heaviest micro-batch of any epoch
 * (`anyEpochHeaviestLoad`): the caps every pack keeps to, and every sample over them, which gets
 * a micro-batch of its own. One 60k-token sample among a million short ones sets the text
 * component alone; when no split then fits, the error says so (this module), not only how much
 * memory would.
 *
 * @module
 */
import { ErrorCodes } from '../errors';
import type { Caps, Samples } from '../data/samples';
import type { MicroBatchLoad, StagePlan } from '../model/index';

/** The largest over-cap sample in one component of the load. */
export interface OverCapLargest {
  /** Its index in the samples. */
  index: number;
  /** Its tiles. */
  tiles: number;
  /** Its text tokens. */
  tokens: number;
}

/** The over-cap samples and what they do to the memory bound. */
export interface OverCapCause {
  /** Samples over a cap (each packed alone). */
  count: number;
  /** The caps the packs keep to. */
  caps: Caps;
  /** The load without the over-cap samples: the caps. */
  capsLoad: MicroBatchLoad;
  /** The over-cap sample with the most tiles, when it raises the tiles above the vision cap. */
  tiles?: OverCapLargest;
  /** The over-cap sample with the most tokens, when it raises the tokens above the text cap. */
  tokens?: OverCapLargest;
}

/**
 * The over-cap samples of `s` under `caps`, when they raise the any-epoch memory bound above the
 * caps' (the most tiles over the vision cap, or the most tokens over the text cap); `undefined`
 * when no over-cap sample does (the caps, or packs within them, set the bound).
 *
 * @param s - the samples
 * @param caps - the caps the balanced plan was made with
 * @returns the over-cap samples, with the largest per raised component
 */
export function overCapCause(s: Samples, caps: Caps): OverCapCause | undefined {
  const { vision, text } = s;
  let count = 0;
  let tiles: OverCapLargest | undefined;
  let tokens: OverCapLargest | undefined;
  for (let i = 0; i < text.length; i++) {
    const v = vision[i];
    const t = text[i];
    if (v <= caps.maxVision && t <= caps.maxText) continue;
    count++;
    // The first of equals: the lowest index.
    if (v > caps.maxVision && (!tiles || v > tiles.tiles)) tiles = { index: i, tiles: v, tokens: t };
    if (t > caps.maxText && (!tokens || t > tokens.tokens)) tokens = { index: i, tiles: v, tokens: t };
  }
  if (!tiles && !tokens) return undefined;
  const capTokens = Math.max(1, caps.maxText);
  return { count, caps, capsLoad: { tiles: caps.maxVision, tokens: capTokens, sumSqLen: capTokens * capTokens }, ...(tiles && { tiles }), ...(tokens && { tokens }) };
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/**
 * What to add to an `ERR_OMNIBAL_INFEASIBLE` message: which component the over-cap samples
 * raise, how many there are, the largest, the memory without them (`without`, in words, when
 * known) and the fix.
 *
 * @param cause - from {@link overCapCause}
 * @param samplesPerPack - the mean samples per pack the caps come from
 * @param without - what the plan needs without the over-cap samples, in words
 * @returns the clause, starting with `; `
 */
export function overCapMessage(cause: OverCapCause, samplesPerPack: number, without: string | undefined): string {
  const { caps } = cause;
  const sample = (l: OverCapLargest) => `sample ${l.index}: ${plural(l.tiles, 'tile', 'tiles')}, ${plural(l.tokens, 'token', 'tokens')}`;
  const raised = [
    ...(cause.tokens ? [`the text tokens to ${cause.tokens.tokens} against the text cap's ${caps.maxText} (${sample(cause.tokens)})`] : []),
    ...(cause.tiles ? [`the vision tiles to ${cause.tiles.tiles} against the vision cap's ${caps.maxVision} (${sample(cause.tiles)})`] : []),
  ];
  return (
    `; the memory is sized for the heaviest micro-batch of any epoch, which ${plural(cause.count, 'sample', 'samples')} over the packing caps ` +
    `(${caps.maxVision} tiles, ${caps.maxText} tokens, from samplesPerPack ${samplesPerPack}; each packed alone) ${cause.count === 1 ? 'raises' : 'raise'}: ` +
    raised.join(' and ') +
    (without ? `; without the over-cap samples ${without}` : '') +
    `; to plan without them, filter the samples over ${caps.maxVision} tiles or ${caps.maxText} tokens out of the data ` +
    `(omnibal pack --max-vision ${caps.maxVision} --max-text ${caps.maxText} drops them, listed in its --json's dropped), or give each GPU more memory`
  );
}

const GIB = 2 ** 30;

/**
 * `error` with the over-cap samples named, when it is `ERR_OMNIBAL_INFEASIBLE` and they raise the
 * memory bound above the caps' (see {@link overCapMessage}); otherwise `error` as it is. The plan
 * without them is planned once more (`replan` with the caps' load) to say whether it fits, or how
 * much memory it needs.
 *
 * @param error - what planning the balanced plan threw
 * @param s - the samples
 * @param caps - the caps of the balanced plan
 * @param samplesPerPack - the mean samples per pack the caps come from
 * @param memoryBytes - the memory per GPU asked for
 * @param replan - plans the same configuration with the given memory load
 * @returns the error to throw
 */
export function withOverCapCause(error: unknown, s: Samples, caps: Caps, samplesPerPack: number, memoryBytes: number, replan: (load: MicroBatchLoad) => StagePlan): unknown {
  if ((error as { code?: string }).code !== ErrorCodes.INFEASIBLE) return error;
  const cause = overCapCause(s, caps);
  if (!cause) return error;
  let without: string | undefined;
  try {
    const fullest = Math.max(...replan(cause.capsLoad).stages.map((st) => st.memoryBytes));
    without = `the plan fits: its fullest stage holds ${(fullest / GIB).toFixed(2)} of ${(memoryBytes / GIB).toFixed(2)} GiB`;
  } catch (again) {
    const least = (again as { code?: string }).code === ErrorCodes.INFEASIBLE ? /(\d+) bytes \(([\d.]+) GiB, rounded up\)/.exec((again as Error).message) : null;
    if (least) without = `it still does not fit: it needs ${least[2]} GiB per GPU (rounded up)`;
  }
  (error as Error).message += overCapMessage(cause, samplesPerPack, without);
  return error;
}
