/**
 * The pipeline step simulator: one training step over `dp` ranks x `pp` stages, each rank with
 * its own micro-batches, under GPipe, 1F1B or interleaved 1F1B. Its figures are predictions.
 *
 * @module
 */
import { activeBackend } from '../binding';
import { invalidType, outOfRange, unknownOption } from '../errors';
import { checkKnownKeys, describeValue, expectNumber, integerBetween, numberAtLeast, optionKeys } from '../validate';

/** One step to simulate (struct of arrays). */
export interface StepInput {
  /** Data-parallel ranks. */
  dp: number;
  /** Pipeline stages. */
  pp: number;
  /** Micro-batches per rank. */
  microBatches: number;
  /** `forwardMs[(r * M + m) * P + s]`: forward time of micro-batch `m` of rank `r` on stage `s`. */
  forwardMs: Float64Array;
  /** Backward time (recomputation included), same layout. */
  backwardMs: Float64Array;
  /** Transfer time of one micro-batch across the cut after each stage (length `P - 1`). */
  transferMs: Float64Array;
  /** Gradient bytes per stage (length `P`), all-reduced over `dp` at the step end. */
  gradBytes: Float64Array;
  /** All-reduce bandwidth, bytes/s (0: none). */
  allreduceBytesPerS: number;
  /** Activation bytes of one in-flight micro-batch per stage (length `P`). */
  activationBytes: Float64Array;
  /** `gpipe`, `1f1b` or `interleaved`. */
  schedule: 'gpipe' | '1f1b' | 'interleaved';
  /** Model chunks per device for `interleaved`; default 1. */
  virtualStages?: number;
  /**
   * Interleaved only, optional: each model chunk's own forward time,
   * `chunkForwardMs[((r * M + m) * v + j) * P + s]` for micro-batch `m` of rank `r` on chunk `j`
   * of stage `s` (layer-order chunk `j P + s`). Without it each chunk takes `1 / v` of its
   * stage's time; with it `forwardMs` / `backwardMs` are only checked.
   */
  chunkForwardMs?: Float64Array;
  /** Each model chunk's backward time (recomputation included), same layout; given with `chunkForwardMs`. */
  chunkBackwardMs?: Float64Array;
}

/** What the simulation predicts. */
export interface StepResult {
  /** The step: the slowest rank, all-reduce included, ms. */
  stepMs: number;
  /** Each rank's step time, ms. */
  rankMs: Float64Array;
  /** Compute time per device, `[r * P + s]`, ms. */
  busyMs: Float64Array;
  /** Idle time per device within the step, ms. */
  idleMs: Float64Array;
  /** Idle share of all device time. */
  bubbleFraction: number;
  /** Most micro-batches in flight per stage. */
  peakInFlight: Float64Array;
  /** Peak activation bytes per stage. */
  peakActivationBytes: Float64Array;
  /** The timeline (struct of arrays), when asked for. */
  events?: StepEvents;
}

/** The timeline of a simulated step, one entry per executed operation. */
export interface StepEvents {
  /** Data-parallel rank. */
  rank: Uint32Array;
  /** Pipeline stage (device). */
  stage: Uint32Array;
  /** Micro-batch of the rank. */
  microBatch: Uint32Array;
  /** Model chunk (interleaved), else 0. */
  chunk: Uint32Array;
  /** 1 for a backward, 0 for a forward. */
  backward: Uint8Array;
  /** Start, ms from the step start. */
  startMs: Float64Array;
  /** End, ms. */
  endMs: Float64Array;
}

const SCHEDULES = ['gpipe', '1f1b', 'interleaved'] as const;
/** Every key of {@link StepInput} (tsc checks the list against the interface). */
export const STEP_INPUT_KEYS = optionKeys<StepInput>({
  dp: true, pp: true, microBatches: true, forwardMs: true, backwardMs: true, transferMs: true, gradBytes: true, allreduceBytesPerS: true,
  activationBytes: true, schedule: true, virtualStages: true, chunkForwardMs: true, chunkBackwardMs: true,
});
/** Every key of {@link ChunkInFlightInput}. */
const CHUNK_IN_FLIGHT_INPUT_KEYS = optionKeys<ChunkInFlightInput>({ schedule: true, virtualStages: true, pp: true, stage: true, microBatches: true, chunkBytes: true });

/**
 * Checks a step before either backend sees it, so both answer bad input with the same coded
 * error: counts are integers in range, every array a `Float64Array` of the right length holding
 * finite values >= 0, the bandwidth finite and >= 0.
 */
function checkStep(input: StepInput): void {
  if (typeof input !== 'object' || input === null) throw invalidType('input', `must be an object, got ${describeValue(input)}`);
  checkKnownKeys('input', input, STEP_INPUT_KEYS);
  for (const k of ['dp', 'pp', 'microBatches', 'allreduceBytesPerS'] as const) expectNumber(k, input[k]);
  const dp = integerBetween('dp', input.dp, 1, 1 << 20);
  const pp = integerBetween('pp', input.pp, 1, 1 << 12);
  const m = integerBetween('microBatches', input.microBatches, 1, 1 << 20);
  if (input.virtualStages !== undefined) {
    expectNumber('virtualStages', input.virtualStages);
    integerBetween('virtualStages', input.virtualStages, 1, 64);
  }
  if (typeof input.schedule !== 'string' || !(SCHEDULES as readonly string[]).includes(input.schedule)) throw unknownOption('schedule', String(input.schedule), SCHEDULES);
  numberAtLeast('allreduceBytesPerS', input.allreduceBytesPerS, 0);
  const lengths = { forwardMs: dp * m * pp, backwardMs: dp * m * pp, transferMs: pp - 1, gradBytes: pp, activationBytes: pp } as const;
  for (const [k, n] of Object.entries(lengths) as [keyof typeof lengths, number][]) {
    const a = input[k];
    if (!(a instanceof Float64Array)) throw invalidType(k, `must be a Float64Array, got ${describeValue(a)}`);
    if (a.length !== n) throw outOfRange(k, `must have ${n} entries, got ${a.length}`);
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i]) || a[i] < 0) throw outOfRange(`${k}[${i}]`, `must be a finite number >= 0, got ${a[i]}`);
    }
  }
  if (input.chunkForwardMs !== undefined || input.chunkBackwardMs !== undefined) {
    if (input.schedule !== 'interleaved') throw outOfRange('chunkForwardMs', 'is for the interleaved schedule only');
    const n = dp * m * pp * (input.virtualStages ?? 1);
    for (const k of ['chunkForwardMs', 'chunkBackwardMs'] as const) {
      const a = input[k];
      if (!(a instanceof Float64Array)) throw invalidType(k, `must be a Float64Array (given with ${k === 'chunkForwardMs' ? 'chunkBackwardMs' : 'chunkForwardMs'}), got ${describeValue(a)}`);
      if (a.length !== n) throw outOfRange(k, `must have dp x microBatches x virtualStages x pp = ${n} entries, got ${a.length}`);
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(a[i]) || a[i] < 0) throw outOfRange(`${k}[${i}]`, `must be a finite number >= 0, got ${a[i]}`);
      }
    }
  }
}

/**
 * Simulates one training step; `withEvents` returns the full timeline too.
 *
 * @param input - the layout, per-micro-batch stage times, transfers, gradients and schedule
 * @param withEvents - also return every forward, backward and transfer event
 * @returns the predicted step time, bubble fraction and peak in-flight micro-batches (and events)
 * @throws `ERR_OMNIBAL_INVALID_TYPE` (not a `Float64Array`), `ERR_OMNIBAL_OUT_OF_RANGE` (a count,
 *   length or value out of range: NaN, negative, infinite), `ERR_OMNIBAL_UNKNOWN_OPTION` (schedule, or a key `StepInput` does not have),
 *   the same from both backends.
 */
export function simulateStep(input: StepInput, withEvents = false): StepResult {
  checkStep(input);
  const r = activeBackend().simulateStep(input, withEvents);
  // Finite inputs can still overflow (1e308 ms, or gradient bytes over a subnormal bandwidth).
  if (!Number.isFinite(r.stepMs) || !Number.isFinite(r.bubbleFraction)) {
    throw outOfRange('input', `gives a step of ${r.stepMs} ms (bubble ${r.bubbleFraction}): times, bytes and bandwidth must keep the step finite`);
  }
  const out: StepResult = {
    stepMs: r.stepMs,
    rankMs: r.rankMs,
    busyMs: r.busyMs,
    idleMs: r.idleMs,
    bubbleFraction: r.bubbleFraction,
    peakInFlight: r.peakInFlight,
    peakActivationBytes: r.peakActivationBytes,
  };
  if (withEvents) {
    out.events = { rank: r.eventRank, stage: r.eventStage, microBatch: r.eventMicroBatch, chunk: r.eventChunk, backward: r.eventBackward, startMs: r.eventStartMs, endMs: r.eventEndMs };
  }
  return out;
}

/** A stage whose model chunks may differ in size, for {@link chunkInFlight}. */
export interface ChunkInFlightInput {
  /** `gpipe`, `1f1b` or `interleaved`. */
  schedule: 'gpipe' | '1f1b' | 'interleaved';
  /** Model chunks per device for `interleaved`; default 1 (ignored otherwise). */
  virtualStages?: number;
  /** Pipeline stages `P`. */
  pp: number;
  /** The stage, `0 .. P - 1`. */
  stage: number;
  /** Micro-batches per step `m` (a multiple of `P` when interleaved with `v > 1`). */
  microBatches: number;
  /** Activation bytes of one micro-batch of each of the stage's chunks (`v` entries, else 1). */
  chunkBytes: Float64Array;
}

/** Where a stage's held activations peak, per model chunk. */
export interface ChunkInFlight {
  /** Micro-batches of each model chunk held at the peak. */
  counts: Uint32Array;
  /** The peak activation bytes, `sum counts[c] x chunkBytes[c]` (a prediction of the schedule's peak). */
  bytes: number;
}

/**
 * The per-chunk in-flight counts at a stage's activation peak, from the operation order the
 * simulator runs (Megatron's interleaved 1F1B: forward `k` runs chunk `(k // P) mod v`). With
 * equal chunks the peak is the closed form the memory model uses (`min(P - s, m)` for 1F1B,
 * `P (1 + (P - 1) / (P v))` micro-batches on the first interleaved stage); with unequal chunks
 * it is the weighted maximum over time, which the average undercounts.
 *
 * @param input - schedule, layout, stage, micro-batches and the stage's per-chunk activation bytes
 * @returns the counts per chunk at the peak and the peak bytes
 * @throws `ERR_OMNIBAL_OUT_OF_RANGE` (a count or byte value out of range, `m` not a multiple of
 *   `P` when interleaved), `ERR_OMNIBAL_INVALID_TYPE` (`chunkBytes` not a `Float64Array`),
 *   `ERR_OMNIBAL_UNKNOWN_OPTION` (schedule), the same from both backends.
 */
export function chunkInFlight(input: ChunkInFlightInput): ChunkInFlight {
  if (typeof input !== 'object' || input === null) throw invalidType('input', `must be an object, got ${describeValue(input)}`);
  checkKnownKeys('input', input, CHUNK_IN_FLIGHT_INPUT_KEYS);
  for (const k of ['pp', 'stage', 'microBatches'] as const) expectNumber(k, input[k]);
  if (input.virtualStages !== undefined) expectNumber('virtualStages', input.virtualStages);
  if (!(input.chunkBytes instanceof Float64Array)) throw invalidType('chunkBytes', `must be a Float64Array, got ${describeValue(input.chunkBytes)}`);
  if (typeof input.schedule !== 'string' || !(SCHEDULES as readonly string[]).includes(input.schedule)) throw unknownOption('schedule', String(input.schedule), SCHEDULES);
  const r = activeBackend().chunkInFlight(input.schedule, input.virtualStages ?? 1, input.pp, input.stage, input.microBatches, input.chunkBytes);
  return { counts: r.counts, bytes: r.bytes };
}
