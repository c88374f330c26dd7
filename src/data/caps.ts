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

/**
 * The greatest common divisor of the nonzero vision values (0 when every one is 0): the unit every
 * pack's vision sum is a multiple of (twin of `vision_unit`).
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

/** Caps for a wanted mean of `b` samples per micro-batch (twin of `caps_for_target`). */
export function capsForTarget(vision: Uint32Array, text: Uint32Array, b: number): Caps {
  let v = 0;
  let t = 0;
  for (let i = 0; i < text.length; i++) {
    v += vision[i];
    t += text[i];
  }
  const unit = visionUnit(vision);
  let caps = capsFromSums(b, v, t, text.length, unit);
  for (let round = 0; round < CAP_REFINEMENTS; round++) {
    v = 0;
    t = 0;
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      if (vision[i] <= caps.maxVision && text[i] <= caps.maxText) {
        v += vision[i];
        t += text[i];
        n++;
      }
    }
    if (n === 0) break;
    const next = capsFromSums(b, v, t, n, unit);
    if (next.maxVision === caps.maxVision && next.maxText === caps.maxText) break;
    caps = next;
  }
  return caps;
}
