/**
 * The JSON that `omnibal pack --json` / `--out` writes, streamed: the sample indices of a plan
 * (10 million at 10M samples) go from the plan's typed arrays straight into 1 MiB byte chunks,
 * never through per-micro-batch JavaScript arrays or one giant string. {@link planToJson} builds
 * the same document as one object (small plans, tests); {@link planJsonChunks} gives exactly
 * the bytes of `JSON.stringify(planToJson(...)) + '\n'`.
 *
 * @module
 */
import { backend } from '../binding';
import { droppedSamples } from '../data/index';
import type { BatchMetrics } from '../data/metrics';
import { planStep, type BatchPlan } from '../data/plan';
import { DROP_REASONS } from '../data/samples';

/** Version of the JSON written by `omnibal pack --json`. */
export const BATCH_PLAN_SCHEMA = 'omnibal.batch-plan/1';

/** Bytes per chunk of {@link planJsonChunks}. */
export const PLAN_JSON_CHUNK = 1 << 20;

/** The document's small parts: what comes before `steps` and what comes after `dropped`. */
function planJsonParts(plan: BatchPlan, metrics: BatchMetrics, params: Record<string, unknown>, load: object | undefined, warnings: string[]) {
  return {
    head: { schema: BATCH_PLAN_SCHEMA, strategy: plan.strategy, backend: backend().kind, params },
    tail: {
      load,
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
 * @returns the document: schema, strategy, backend, params, steps (`[step][rank][microBatch][sample]`), padding, dropped, load, metrics
 */
export function planToJson(plan: BatchPlan, metrics: BatchMetrics, params: Record<string, unknown>, load?: object, warnings: string[] = []): object {
  const { head, tail } = planJsonParts(plan, metrics, params, load, warnings);
  const steps: number[][][][] = [];
  for (let s = 0; s < plan.steps; s++) steps.push(planStep(plan, s).map((rank) => rank.map((mb) => Array.from(mb))));
  return { ...head, steps, padding: Array.from(plan.padding), dropped: droppedSamples(plan), ...tail };
}

const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/** Writes ASCII text and unsigned integers into fixed-size chunks. */
class ChunkWriter {
  private buf: Buffer;
  private at = 0;
  private readonly full: Uint8Array[] = [];

  constructor(private readonly size: number) {
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

  /** Writes `[a[from],a[from+1],...]` (`a[q]` in 0..2^32 - 1): the hot loop of a plan. */
  list(a: Uint32Array, from: number, to: number): void {
    if ((to - from) * 11 + 2 > this.buf.length) {
      // Longer than a chunk: value by value.
      this.byte(OPEN);
      for (let q = from; q < to; q++) {
        if (q > from) this.byte(COMMA);
        this.uint(a[q]);
      }
      this.byte(CLOSE);
      return;
    }
    this.room((to - from) * 11 + 2);
    const b = this.buf;
    let at = this.at;
    b[at++] = OPEN;
    for (let q = from; q < to; q++) {
      if (q > from) b[at++] = COMMA;
      at = writeUint(b, at, a[q]);
    }
    b[at++] = CLOSE;
    this.at = at;
  }
}

/** Writes `x` (an integer 0..2^32 - 1) in decimal at `b[at..]`; returns the end. */
function writeUint(b: Uint8Array, at: number, x: number): number {
  if (x < 10) {
    b[at] = 48 + x;
    return at + 1;
  }
  const digits = x < 100 ? 2 : x < 1e3 ? 3 : x < 1e4 ? 4 : x < 1e5 ? 5 : x < 1e6 ? 6 : x < 1e7 ? 7 : x < 1e8 ? 8 : x < 1e9 ? 9 : 10;
  const end = at + digits;
  let p = end;
  if (x >= 0x80000000) {
    const q = Math.floor(x / 10);
    b[--p] = 48 + x - q * 10;
    x = q;
  }
  while (x >= 10) {
    const q = (x / 10) | 0;
    b[--p] = 48 + x - q * 10;
    x = q;
  }
  b[--p] = 48 + x;
  return end;
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
 * @returns an iterator of byte chunks
 */
export function* planJsonChunks(
  plan: BatchPlan,
  metrics: BatchMetrics,
  params: Record<string, unknown>,
  load?: object,
  warnings: string[] = [],
  chunkBytes = PLAN_JSON_CHUNK,
): Generator<Uint8Array> {
  const { head, tail } = planJsonParts(plan, metrics, params, load, warnings);
  const w = new ChunkWriter(Math.max(chunkBytes, 64));
  w.text(`${JSON.stringify(head).slice(0, -1)},"steps":[`);
  const { samples, microBatchOffsets: mbo, rankOffsets, dp } = plan;
  for (let s = 0; s < plan.steps; s++) {
    if (s > 0) w.byte(COMMA);
    w.byte(OPEN);
    for (let r = 0; r < dp; r++) {
      if (r > 0) w.byte(COMMA);
      w.byte(OPEN);
      const i = s * dp + r;
      for (let k = rankOffsets[i]; k < rankOffsets[i + 1]; k++) {
        if (k > rankOffsets[i]) w.byte(COMMA);
        w.list(samples, mbo[k], mbo[k + 1]);
      }
      w.byte(CLOSE);
    }
    w.byte(CLOSE);
    if (w.pending > 0) yield* w.take();
  }
  w.text('],"padding":[');
  for (let k = 0; k < plan.padding.length; k++) {
    if (k > 0) w.byte(COMMA);
    w.uint(plan.padding[k]);
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
