/**
 * Caps from a wanted mean number of samples per micro-batch, chosen from the typical sample so
 * outliers do not inflate every pack. TypeScript twin of `crate/core/src/data/caps.rs`; see
 * there for the rule.
 *
 * @module
 */
import { roundHalfUp, type Caps } from './samples';

/** How many times the means are refined over the samples that fit. */
export const CAP_REFINEMENTS = 4;

/** Samples {@link visionUnit} looks at for its candidate units (twin of `VISION_UNIT_PROBES`). */
export const VISION_UNIT_PROBES = 4096;

/**
 * The vision unit (twin of `vision_unit`): the greatest common divisor of the nonzero vision
 * values (0 when every one is 0), or, where a larger number divides all but at most 1/1,000 of
 * them, the largest such number among the multiples of that divisor that divide the most common
 * value of up to {@link VISION_UNIT_PROBES} samples spread evenly over the list.
 */
export function visionUnit(vision: Uint32Array): number {
  let unit = 0;
  for (let i = 0; i < vision.length; i++) {
    const x = vision[i];
    if (x !== 0 && (unit === 0 || x % unit !== 0)) {
      let a = unit;
      let b = x;
      while (b !== 0) [a, b] = [b, a % b];
      unit = a;
      if (unit === 1) break;
    }
  }
  if (unit === 0) return 0;
  const n = vision.length;
  const probes = Math.min(n, VISION_UNIT_PROBES);
  const seen: number[] = [];
  for (let j = 0; j < probes; j++) {
    // j x n stays below 2^44: exact in a double, and so is its floored quotient.
    const x = vision[Math.floor((j * n) / probes)];
    if (x !== 0) seen.push(x);
  }
  seen.sort((a, b) => a - b);
  // The most common probed value, the least among equally common ones.
  let mode = 0;
  let best = 0;
  let run = 0;
  for (let j = 0; j < seen.length; j++) {
    run = j > 0 && seen[j - 1] === seen[j] ? run + 1 : 1;
    if (run > best) {
      mode = seen[j];
      best = run;
    }
  }
  const divisors = new Set<number>();
  for (let d = 1; d * d <= mode; d++) {
    if (mode % d === 0) {
      divisors.add(d);
      divisors.add(mode / d);
    }
  }
  const allowed = Math.floor(n / 1000);
  for (const d of [...divisors].sort((a, b) => b - a)) {
    // Larger than the common divisor and a multiple of it.
    if (d <= unit || d % unit !== 0) continue;
    let off = 0;
    let nonzero = 0;
    for (let i = 0; i < n; i++) {
      const x = vision[i];
      if (x !== 0) {
        nonzero++;
        if (x % d !== 0 && ++off > allowed) break;
      }
    }
    if (off * 1000 <= nonzero) return d;
  }
  return unit;
}

function capsFromSums(b: number, v: number, t: number, n: number, unit: number): Caps {
  const meanV = v / n;
  const meanT = t / n;
  const u = Math.max(unit, 1);
  const capV = meanV > 0 ? (roundHalfUp((b * meanV) / u) + 1) * u : 0;
  const capT = Math.ceil((b * meanT * 1.25) / 128) * 128;
  return { maxVision: Math.min(capV, 0xffffffff), maxText: Math.max(Math.min(capT, 0xffffffff), 1) };
}

/** Samples summed in one double: 2^20 values below 2^32 sum below 2^52, exactly. */
const BLOCK = 2 ** 20;

/**
 * The vision and text sums and the count of the samples within `caps` (every sample when
 * undefined): each sum exact, then rounded to the nearest double, as the core's `u64 as f64`. A
 * plain double sum drifts once it passes 2^53 (2.6M samples of 4e9 tiles: 174,098 short, and the
 * vision cap one under the core's).
 */
function sumsWithin(vision: Uint32Array, text: Uint32Array, caps: Caps | undefined): [number, number, number] {
  const maxV = caps ? caps.maxVision : Infinity;
  const maxT = caps ? caps.maxText : Infinity;
  let vSum = 0n;
  let tSum = 0n;
  let n = 0;
  for (let start = 0; start < text.length; start += BLOCK) {
    const end = Math.min(text.length, start + BLOCK);
    let v = 0;
    let t = 0;
    for (let i = start; i < end; i++) {
      const x = vision[i];
      const y = text[i];
      if (x > maxV || y > maxT) continue;
      v += x;
      t += y;
      n++;
    }
    vSum += BigInt(v);
    tSum += BigInt(t);
  }
  return [Number(vSum), Number(tSum), n];
}

/** Caps for a wanted mean of `b` samples per micro-batch (twin of `caps_for_target`). */
export function capsForTarget(vision: Uint32Array, text: Uint32Array, b: number): Caps {
  const unit = visionUnit(vision);
  const [v, t] = sumsWithin(vision, text, undefined);
  let caps = capsFromSums(b, v, t, text.length, unit);
  for (let round = 0; round < CAP_REFINEMENTS; round++) {
    const [fv, ft, n] = sumsWithin(vision, text, caps);
    if (n === 0) break;
    const next = capsFromSums(b, fv, ft, n, unit);
    if (next.maxVision === caps.maxVision && next.maxText === caps.maxText) break;
    caps = next;
  }
  return caps;
}
