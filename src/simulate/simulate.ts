/**
 * The pipeline step simulator. TypeScript twin of `crate/core/src/simulate.rs`; see there for
 * the model.
 *
 * @module
 */
import type * as Native from '../../bindings';
import { outOfRange, unknownOption } from '../errors';
import { integerBetween } from '../validate';

interface Op {
  mb: number;
  chunk: number;
  backward: boolean;
}

function order(schedule: string, v: number, p: number, s: number, m: number): Op[] {
  const f = (mb: number, chunk: number): Op => ({ mb, chunk, backward: false });
  const b = (mb: number, chunk: number): Op => ({ mb, chunk, backward: true });
  const ops: Op[] = [];
  if (schedule === 'gpipe') {
    for (let i = 0; i < m; i++) ops.push(f(i, 0));
    for (let i = m - 1; i >= 0; i--) ops.push(b(i, 0));
    return ops;
  }
  if (schedule === '1f1b') {
    const warm = Math.min(p - s - 1, m);
    for (let i = 0; i < warm; i++) ops.push(f(i, 0));
    for (let i = 0; i < m - warm; i++) {
      ops.push(f(warm + i, 0));
      ops.push(b(i, 0));
    }
    for (let i = m - warm; i < m; i++) ops.push(b(i, 0));
    return ops;
  }
  const total = m * v;
  const fwd = (k: number) => f(Math.floor(k / (p * v)) * p + (k % p), Math.floor(k / p) % v);
  const bwd = (k: number) => b(Math.floor(k / (p * v)) * p + (k % p), v - 1 - (Math.floor(k / p) % v));
  const warm = Math.min((p - s - 1) * 2 + (v - 1) * p, total);
  for (let k = 0; k < warm; k++) ops.push(fwd(k));
  for (let i = 0; i < total - warm; i++) {
    ops.push(fwd(warm + i));
    ops.push(bwd(i));
  }
  for (let k = total - warm; k < total; k++) ops.push(bwd(k));
  return ops;
}

/** Twin of `simulate::Hops`: transfer time between neighbouring devices; the wrap from the last device to the first is priced like the last cut. */
class Hops {
  constructor(
    readonly pp: number,
    readonly p2p: ArrayLike<number>,
  ) {}

  between(from: number, to: number): number {
    if (this.pp === 1 || from === to) return 0;
    if (to === from + 1) return this.p2p[from];
    if (from === to + 1) return this.p2p[to];
    return this.p2p[this.pp - 2];
  }
}

/** Twin of `simulate::RankScratch`: buffers one rank's replay reuses. */
class RankScratch {
  doneF = new Float64Array(0);
  doneB = new Float64Array(0);
  next: number[] = [];
  free: number[] = [];
  live: number[] = [];
}

/** Twin of `simulate::replay_rank`: one rank's devices through their operation orders; returns each device's finish time. */
function replayRank(
  orders: Op[][],
  v: number,
  m: number,
  hop: Hops,
  sc: RankScratch,
  dur: (s: number, op: Op) => number,
  onOp: (s: number, op: Op, dur: number, start: number, end: number, live: number) => void,
): number[] {
  const pp = orders.length;
  const vsCount = pp * v;
  if (sc.doneF.length !== vsCount * m) {
    sc.doneF = new Float64Array(vsCount * m);
    sc.doneB = new Float64Array(vsCount * m);
  }
  sc.doneF.fill(NaN);
  sc.doneB.fill(NaN);
  sc.next = new Array<number>(pp).fill(0);
  sc.free = new Array<number>(pp).fill(0);
  sc.live = new Array<number>(pp).fill(0);
  const { doneF, doneB, next, free, live } = sc;
  let totalOps = 0;
  for (const o of orders) totalOps += o.length;
  let executed = 0;
  while (executed < totalOps) {
    let progressed = false;
    for (let s = 0; s < pp; s++) {
      while (next[s] < orders[s].length) {
        const op = orders[s][next[s]];
        const vs = op.chunk * pp + s;
        const mb = op.mb;
        let ready: number | undefined;
        if (!op.backward) {
          if (vs === 0) ready = 0;
          else if (!Number.isNaN(doneF[(vs - 1) * m + mb])) ready = doneF[(vs - 1) * m + mb] + hop.between((vs - 1) % pp, s);
        } else if (vs === vsCount - 1) {
          if (!Number.isNaN(doneF[vs * m + mb])) ready = doneF[vs * m + mb];
        } else if (!Number.isNaN(doneB[(vs + 1) * m + mb])) ready = doneB[(vs + 1) * m + mb] + hop.between((vs + 1) % pp, s);
        if (ready === undefined) break;
        const d = dur(s, op);
        const start = Math.max(free[s], ready);
        const end = start + d;
        free[s] = end;
        if (op.backward) {
          doneB[vs * m + mb] = end;
          live[s] -= 1 / v;
        } else {
          doneF[vs * m + mb] = end;
          live[s] += 1 / v;
        }
        onOp(s, op, d, start, end, live[s]);
        next[s]++;
        executed++;
        progressed = true;
      }
    }
    if (!progressed) throw outOfRange('schedule', 'deadlocked: the operation order cannot run (internal error)');
  }
  return free;
}

/**
 * Twin of `simulate::ChunkReplay`: the simulator for one rank whose micro-batches all take the
 * same time per model chunk (the interleaved chunk planner scores its plans with it).
 */
export class ChunkReplayTwin {
  private readonly orders: Op[][];
  private readonly scratch = new RankScratch();

  /**
   * @param virtualStages - model chunks per device (the schedule is interleaved)
   * @param pp - devices
   * @param m - micro-batches, a multiple of `pp` when `virtualStages > 1`
   */
  constructor(
    readonly virtualStages: number,
    readonly pp: number,
    readonly m: number,
  ) {
    if (virtualStages > 1 && m % pp !== 0) throw outOfRange('microBatches', `must be a multiple of pp (${pp}) for the interleaved schedule`);
    this.orders = Array.from({ length: pp }, (_, s) => order('interleaved', virtualStages, pp, s, m));
  }

  /** Twin of `ChunkReplay::step_ms`: chunk times in layer order (`v x P`), transfers after each device (`P - 1`). */
  stepMs(forwardMs: ArrayLike<number>, backwardMs: ArrayLike<number>, p2pMs: ArrayLike<number>): number {
    const pp = this.pp;
    const free = replayRank(
      this.orders,
      this.virtualStages,
      this.m,
      new Hops(pp, p2pMs),
      this.scratch,
      (s, op) => {
        const u = op.chunk * pp + s;
        return op.backward ? backwardMs[u] : forwardMs[u];
      },
      () => {},
    );
    let step = 0;
    for (const f of free) step = Math.max(step, f);
    return step;
  }
}

/** Twin of the native `simulateStep`. */
export function simulateStepTwin(input: Native.SimulateStepInput, withEvents: boolean): Native.NativeStepResult {
  const v = input.virtualStages === undefined || input.virtualStages === null ? 1 : integerBetween('virtualStages', input.virtualStages, 1, 64);
  const dp = integerBetween('dp', input.dp, 1, 1 << 20);
  const pp = integerBetween('pp', input.pp, 1, 1 << 12);
  const m = integerBetween('microBatches', input.microBatches, 1, 1 << 20);
  if (!['gpipe', '1f1b', 'interleaved'].includes(input.schedule)) throw unknownOption('schedule', input.schedule, ['gpipe', '1f1b', 'interleaved']);
  const interleaved = input.schedule === 'interleaved';
  const n = dp * m * pp;
  if (input.forwardMs.length !== n || input.backwardMs.length !== n) {
    throw outOfRange('forwardMs', `and backwardMs must have dp x microBatches x pp = ${n} entries`);
  }
  if (input.transferMs.length !== pp - 1 || input.gradBytes.length !== pp || input.activationBytes.length !== pp) {
    throw outOfRange('transferMs', 'must have pp - 1 entries; gradBytes and activationBytes pp entries');
  }
  for (const [name, xs] of [['forwardMs', input.forwardMs], ['backwardMs', input.backwardMs], ['transferMs', input.transferMs], ['gradBytes', input.gradBytes], ['activationBytes', input.activationBytes]] as const) {
    const bad = Array.from(xs as ArrayLike<number>).find((x) => !Number.isFinite(x) || x < 0);
    if (bad !== undefined) throw outOfRange(name, `must hold finite numbers >= 0, got ${bad}`);
  }
  const vv = interleaved ? v : 1;
  if (vv > 1 && m % pp !== 0) throw outOfRange('microBatches', `must be a multiple of pp (${pp}) for the interleaved schedule`);
  const cf = input.chunkForwardMs ?? undefined;
  const cb = input.chunkBackwardMs ?? undefined;
  const chunked = (cf !== undefined && cf.length > 0) || (cb !== undefined && cb.length > 0);
  if (chunked) {
    const nc = n * vv;
    if (!interleaved) throw outOfRange('chunkForwardMs', 'is for the interleaved schedule only');
    if (cf === undefined || cb === undefined || cf.length !== nc || cb.length !== nc) {
      throw outOfRange('chunkForwardMs', `and chunkBackwardMs must have dp x microBatches x virtualStages x pp = ${nc} entries`);
    }
    for (const [name, xs] of [['chunkForwardMs', cf], ['chunkBackwardMs', cb]] as const) {
      const bad = Array.from(xs).find((x) => !Number.isFinite(x) || x < 0);
      if (bad !== undefined) throw outOfRange(name, `must hold finite numbers >= 0, got ${bad}`);
    }
  }
  const schedule = interleaved ? 'interleaved' : input.schedule;
  const rankMs = new Float64Array(dp);
  const busy = new Float64Array(dp * pp);
  const idle = new Float64Array(dp * pp);
  const peak = new Float64Array(pp);
  const events: [number, number, number, number, number, number, number][] = [];
  const allreduce = (s: number) => (dp > 1 && input.allreduceBytesPerS > 0 ? ((((2 * (dp - 1)) / dp) * input.gradBytes[s]) / input.allreduceBytesPerS) * 1e3 : 0);
  const hop = new Hops(pp, input.transferMs);
  const orders = Array.from({ length: pp }, (_, s) => order(schedule, vv, pp, s, m));
  const scratch = new RankScratch();
  for (let r = 0; r < dp; r++) {
    const free = replayRank(
      orders,
      vv,
      m,
      hop,
      scratch,
      (s, op) => {
        const at = ((r * m + op.mb) * vv + op.chunk) * pp + s;
        const idx = (r * m + op.mb) * pp + s;
        return chunked ? (op.backward ? cb! : cf!)[at] : (op.backward ? input.backwardMs[idx] : input.forwardMs[idx]) / vv;
      },
      (s, op, dur, start, end, live) => {
        busy[r * pp + s] += dur;
        if (!op.backward) peak[s] = Math.max(peak[s], live);
        if (withEvents) events.push([r, s, op.mb, op.chunk, op.backward ? 1 : 0, start, end]);
      },
    );
    let rankEnd = 0;
    free.forEach((f, s) => {
      rankEnd = Math.max(rankEnd, f + allreduce(s));
    });
    rankMs[r] = rankEnd;
  }
  let step = 0;
  for (const x of rankMs) step = Math.max(step, x);
  let idleTotal = 0;
  for (let i = 0; i < dp * pp; i++) {
    idle[i] = step - busy[i];
    idleTotal += idle[i];
  }
  return {
    stepMs: step,
    rankMs,
    busyMs: busy,
    idleMs: idle,
    bubbleFraction: step > 0 ? idleTotal / (step * (dp * pp)) : 0,
    peakInFlight: peak,
    peakActivationBytes: Float64Array.from(peak, (x, s) => x * input.activationBytes[s]),
    eventRank: Uint32Array.from(events, (e) => e[0]),
    eventStage: Uint32Array.from(events, (e) => e[1]),
    eventMicroBatch: Uint32Array.from(events, (e) => e[2]),
    eventChunk: Uint32Array.from(events, (e) => e[3]),
    eventBackward: Uint8Array.from(events, (e) => e[4]),
    eventStartMs: Float64Array.from(events, (e) => e[5]),
    eventEndMs: Float64Array.from(events, (e) => e[6]),
  };
}

/**
 * Twin of the native `chunkInFlight` (`simulate::chunk_in_flight`): replays stage `stage`'s
 * operation order, adding a micro-batch to a chunk on its forward and freeing it on its
 * backward, and returns the per-chunk counts at the first moment the held bytes peak.
 */
export function chunkInFlightTwin(schedule: string, virtualStages: number, pp: number, stage: number, microBatches: number, chunkBytes: Float64Array): Native.NativeChunkPeak {
  const v = integerBetween('virtualStages', virtualStages, 1, 64);
  const p = integerBetween('pp', pp, 1, 1 << 12);
  const s = integerBetween('stage', stage, 0, p - 1);
  const m = integerBetween('microBatches', microBatches, 1, 1 << 20);
  if (!['gpipe', '1f1b', 'interleaved'].includes(schedule)) throw unknownOption('schedule', schedule, ['gpipe', '1f1b', 'interleaved']);
  const k = schedule === 'interleaved' ? v : 1;
  if (chunkBytes.length !== k) throw outOfRange('chunkBytes', `must have one entry per model chunk (${k})`);
  for (const x of chunkBytes) {
    if (!Number.isFinite(x) || x < 0) throw outOfRange('chunkBytes', `must hold finite numbers >= 0, got ${x}`);
  }
  if (k > 1 && m % p !== 0) throw outOfRange('microBatches', `must be a multiple of pp (${p}) for the interleaved schedule`);
  const held = new Uint32Array(k);
  let best = new Uint32Array(k);
  let bestBytes = 0;
  let bestTotal = 0;
  let total = 0;
  for (const op of order(schedule, k, p, s, m)) {
    if (op.backward) {
      held[op.chunk]--;
      total--;
      continue;
    }
    held[op.chunk]++;
    total++;
    let bytes = 0;
    for (let c = 0; c < k; c++) bytes += held[c] * chunkBytes[c];
    // Largest bytes first; among equal bytes (zero-byte chunks), most micro-batches.
    if (bytes > bestBytes || (bytes === bestBytes && total > bestTotal)) {
      best = held.slice();
      bestBytes = bytes;
      bestTotal = total;
    }
  }
  return { counts: best, bytes: bestBytes };
}

/**
 * Twin of `simulate::chunk_states`: every per-chunk held-count vector stage `stage` passes
 * through right after a forward, keeping only those no other covers in every chunk, in the
 * order they were reached (arguments checked by the caller).
 */
export function chunkStatesTwin(schedule: string, virtualStages: number, pp: number, stage: number, microBatches: number): number[][] {
  const k = schedule === 'interleaved' ? virtualStages : 1;
  if (k > 1 && microBatches % pp !== 0) throw outOfRange('microBatches', `must be a multiple of pp (${pp}) for the interleaved schedule`);
  const held = new Array<number>(k).fill(0);
  let states: number[][] = [];
  const covers = (a: number[], b: number[]) => a.every((x, i) => x >= b[i]);
  for (const op of order(schedule, k, pp, stage, microBatches)) {
    if (op.backward) {
      held[op.chunk]--;
      continue;
    }
    held[op.chunk]++;
    if (states.some((st) => covers(st, held))) continue;
    states = states.filter((st) => !covers(held, st));
    states.push(held.slice());
  }
  return states;
}
