/**
 * The `steps` of a batch plan as JSON text, a run of whole steps at a time: the TypeScript twin
 * of the native `planStepsJson` (`crate/core/src/io/plan_json.rs`), byte for byte. The bulk of
 * `omnibal pack --json` (10 million sample indices at 10M samples); `src/cli/plan-json.ts`
 * streams it with the rest of the document.
 *
 * @module
 */
import type { NativeStepsJson } from '../../bindings';
import { outOfRange } from '../errors';
import { expectU32Array, integerBetween } from '../validate';

const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/** Writes `x` (an integer 0..2^32 - 1) in decimal at `b[at..]`; returns the end. */
export function writeUint(b: Uint8Array, at: number, x: number): number {
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
 * Steps `fromStep ..` of a plan as JSON text (`[[[i,...],...],...]` per step: ranks,
 * micro-batches, sample indices; each step after a comma unless it is step 0), whole steps until
 * one step at least, then whole steps until `minBytes` are written or the steps end.
 *
 * @param samples - every micro-batch's sample indices, one after another
 * @param microBatchOffsets - micro-batch `k` is `samples[microBatchOffsets[k] .. microBatchOffsets[k + 1]]`
 * @param rankOffsets - rank `r` of step `s` runs micro-batches `rankOffsets[s * dp + r] .. rankOffsets[s * dp + r + 1]`
 * @param dp - ranks per step
 * @param fromStep - the first step to write
 * @param minBytes - after the first step, write whole steps until at least this many bytes
 * @returns the bytes and the first step not written
 */
export function planStepsJsonTwin(samples: Uint32Array, microBatchOffsets: Uint32Array, rankOffsets: Uint32Array, dp: number, fromStep: number, minBytes: number): NativeStepsJson {
  expectU32Array('samples', samples);
  expectU32Array('microBatchOffsets', microBatchOffsets);
  expectU32Array('rankOffsets', rankOffsets);
  integerBetween('dp', dp, 1, 1 << 20);
  integerBetween('fromStep', fromStep, 0, 0xffffffff);
  integerBetween('minBytes', minBytes, 0, 1 << 30);
  const steps = Math.floor(Math.max(rankOffsets.length - 1, 0) / dp);
  let b = new Uint8Array(Math.min(minBytes, 64 << 20) + 4096);
  let at = 0;
  const room = (n: number) => {
    if (at + n <= b.length) return;
    const grown = new Uint8Array(Math.max(b.length * 2, at + n));
    grown.set(b.subarray(0, at));
    b = grown;
  };
  let s = fromStep;
  for (; s < steps && (s === fromStep || at < minBytes); s++) {
    room(2);
    if (s > 0) b[at++] = COMMA;
    b[at++] = OPEN;
    for (let r = 0; r < dp; r++) {
      const i = s * dp + r;
      const first = rankOffsets[i];
      const last = rankOffsets[i + 1];
      if (first > last || last + 1 > microBatchOffsets.length) {
        throw outOfRange('plan', 'rankOffsets must never decrease and must stay within the micro-batches');
      }
      room(2);
      if (r > 0) b[at++] = COMMA;
      b[at++] = OPEN;
      for (let k = first; k < last; k++) {
        const from = microBatchOffsets[k];
        const to = microBatchOffsets[k + 1];
        if (from > to || to > samples.length) {
          throw outOfRange('plan', 'microBatchOffsets must never decrease and must stay within the samples');
        }
        room((to - from) * 11 + 3);
        if (k > first) b[at++] = COMMA;
        b[at++] = OPEN;
        for (let q = from; q < to; q++) {
          if (q > from) b[at++] = COMMA;
          at = writeUint(b, at, samples[q]);
        }
        b[at++] = CLOSE;
      }
      room(1);
      b[at++] = CLOSE;
    }
    room(1);
    b[at++] = CLOSE;
  }
  return { bytes: b.slice(0, at), nextStep: Math.max(s, fromStep) };
}
