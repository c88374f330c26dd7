/**
 * The JSON that `omnibal pack --json` / `--out` writes, streamed: the sample indices of a plan
 * (10 million at 10M samples) go from the plan's typed arrays straight into 1 MiB byte chunks,
 * never through per-micro-batch JavaScript arrays or one giant string. {@link planToJson} builds
 * the same document as one object (small plans, tests); {@link planJsonChunks} gives exactly
 * the bytes of `JSON.stringify(planToJson(...)) + '\n'`.
 *
 * @module
 */
import { activeBackend, backend } from '../binding';
import { writeUint } from '../io/plan-steps-json';
import { droppedSamples } from '../data/index';
import type { BatchMetrics } from '../data/metrics';
import { planStep, type BatchPlan } from '../data/plan';
import { DROP_REASONS } from '../data/samples';

/** Version of the JSON written by `omnibal pack --json`. */
export const BATCH_PLAN_SCHEMA = 'omnibal.batch-plan/1';

/** Bytes per chunk of {@link planJsonChunks}. */
export const PLAN_JSON_CHUNK = 1 << 20;

/** The document's small parts: what comes before `steps` and what comes after `dropped`. */
function planJsonParts(plan: BatchPlan, metrics: BatchMetrics, params: Record<string, unknown>, load: object | undefined, warnings: string[], heaviestLoad?: object) {
  return {
    head: { schema: BATCH_PLAN_SCHEMA, strategy: plan.strategy, backend: backend().kind, params },
    tail: {
      load,
      heaviestLoad,
      metrics: {
        padRatio: metrics.padRatio,
        visionDist: metrics.visionDist,
        textDist: metrics.textDist,
        costDist: metrics.costDist,
        samplesPerPack: metrics.samplesPerPack,
        packs: metrics.packs,
        steps: metrics.steps,
        costExcessMedian: metrics.costExcessMedian,
        costExcessP99: metrics.costExcessP99,
        oversize: plan.oversizeIndex.length,
        carriedIn: metrics.carriedIn,
        carriedOut: metrics.carriedOut,
        warnings,
      },
    },
  };
}

/**
 * The plan as the JSON object `omnibal pack --json` writes (built whole: for small plans and
 * as the reference {@link planJsonChunks} is tested against).
 *
 * @param plan - the plan
 * @param metrics - its metrics
 * @param params - the parameters it was made with
 * @param load - the mean micro-batch load, if known
 * @param warnings - the warnings printed with it
 * @param heaviestLoad - the componentwise heaviest micro-batch load (what activation memory is sized for), if known
 * @returns the document: schema, strategy, backend, params, steps (`[step][rank][microBatch][sample]`), padding, dropped, load, heaviestLoad, metrics
 */
export function planToJson(plan: BatchPlan, metrics: BatchMetrics, params: Record<string, unknown>, load?: object, warnings: string[] = [], heaviestLoad?: object): object {
  const { head, tail } = planJsonParts(plan, metrics, params, load, warnings, heaviestLoad);
  const steps: number[][][][] = [];
  for (let s = 0; s < plan.steps; s++) steps.push(planStep(plan, s).map((rank) => rank.map((mb) => Array.from(mb))));
  return { ...head, steps, padding: Array.from(plan.padding), dropped: droppedSamples(plan), ...tail };
}

const COMMA = 0x2c;

/** Padding flags written per block (each at most 3 digits and a comma). */
const PADDING_BLOCK = 1 << 16;

/** Writes ASCII text and unsigned integers into fixed-size chunks. */
class ChunkWriter {
  private buf: Buffer;
  private at = 0;
  private readonly full: Uint8Array[] = [];

  constructor(readonly size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Room for `n` more bytes (`n` <= the chunk size). */
  private room(n: number): void {
    if (this.at + n > this.buf.length) this.flush();
  }

  /** Moves the current chunk to the finished ones. */
  flush(): void {
    if (this.at > 0) this.full.push(this.buf.subarray(0, this.at));
    this.buf = Buffer.allocUnsafe(this.size);
    this.at = 0;
  }

  /** Takes the finished chunks. */
  take(): Uint8Array[] {
    return this.full.splice(0);
  }

  get pending(): number {
    return this.full.length;
  }

  /** Writes bytes (a chunk of their own when longer than a chunk). */
  bytes(b: Uint8Array): void {
    if (b.length > this.buf.length) {
      this.flush();
      this.full.push(b);
      return;
    }
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /** Writes a string as UTF-8. */
  text(s: string): void {
    this.bytes(Buffer.from(s));
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.at++] = c;
  }

  /** Writes `x` (an integer 0..2^32 - 1) in decimal. */
  uint(x: number): void {
    this.room(10);
    this.at = writeUint(this.buf, this.at, x);
  }

  /** Writes `b` across chunks: the current one filled to its end, then the next. */
  fill(b: Uint8Array): void {
    for (let from = 0; from < b.length; ) {
      if (this.at === this.buf.length) this.flush();
      const n = Math.min(b.length - from, this.buf.length - this.at);
      this.buf.set(b.subarray(from, from + n), this.at);
      this.at += n;
      from += n;
    }
  }
}


/**
 * The bytes of `JSON.stringify(planToJson(plan, ...)) + '\n'`, in chunks of about
 * {@link PLAN_JSON_CHUNK} bytes, made as they are taken (so a consumer that writes each chunk
 * before taking the next holds one chunk at a time).
 *
 * @param plan - the plan
 * @param metrics - its metrics
 * @param params - the parameters it was made with
 * @param load - the mean micro-batch load, if known
 * @param warnings - the warnings printed with it
 * @param chunkBytes - bytes per chunk (at least 64; the head and the metrics come as a chunk of their own when longer)
 * @param heaviestLoad - the componentwise heaviest micro-batch load, if known
 * @returns an iterator of byte chunks
 */
export function* planJsonChunks(
  plan: BatchPlan,
  metrics: BatchMetrics,
  params: Record<string, unknown>,
  load?: object,
  warnings: string[] = [],
  chunkBytes = PLAN_JSON_CHUNK,
  heaviestLoad?: object,
): Generator<Uint8Array> {
  const { head, tail } = planJsonParts(plan, metrics, params, load, warnings, heaviestLoad);
  const w = new ChunkWriter(Math.max(chunkBytes, 64));
  w.text(`${JSON.stringify(head).slice(0, -1)},"steps":[`);
  // The sample indices, a chunk's worth of whole steps at a time (natively, or by the twin).
  const api = activeBackend();
  for (let s = 0; s < plan.steps; ) {
    const run = api.planStepsJson(plan.samples, plan.microBatchOffsets, plan.rankOffsets, plan.dp, s, w.size);
    if (run.nextStep <= s) throw new Error(`internal: no step written from step ${s}`);
    s = run.nextStep;
    w.fill(run.bytes);
    if (w.pending > 0) yield* w.take();
  }
  w.text('],"padding":[');
  // One flag per micro-batch (2 million at 10M samples): written a block at a time.
  const flags = Buffer.allocUnsafe(4 * Math.min(plan.padding.length, PADDING_BLOCK));
  for (let from = 0; from < plan.padding.length; from += PADDING_BLOCK) {
    let at = 0;
    for (let k = from; k < Math.min(from + PADDING_BLOCK, plan.padding.length); k++) {
      if (k > 0) flags[at++] = COMMA;
      at = writeUint(flags, at, plan.padding[k]);
    }
    w.fill(flags.subarray(0, at));
    if (w.pending > 0) yield* w.take();
  }
  w.text('],"dropped":[');
  const index = Buffer.from('{"index":');
  const reasons = DROP_REASONS.map((r) => Buffer.from(`,"reason":"${r}"}`));
  for (let k = 0; k < plan.droppedIndex.length; k++) {
    if (k > 0) w.byte(COMMA);
    w.bytes(index);
    w.uint(plan.droppedIndex[k]);
    w.bytes(reasons[plan.droppedReason[k] - 1]);
    if (w.pending > 0) yield* w.take();
  }
  w.text(`],${JSON.stringify(tail).slice(1)}\n`);
  w.flush();
  yield* w.take();
}
