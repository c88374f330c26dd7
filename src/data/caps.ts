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

function capsFromSums(b: number, v: number, t: number, n: number): Caps {
  const meanV = v / n;
  const meanT = t / n;
  const capV = meanV > 0 ? roundHalfUp(b * meanV) + 1 : 0;
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
  let caps = capsFromSums(b, v, t, text.length);
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
    const next = capsFromSums(b, v, t, n);
    if (next.maxVision === caps.maxVision && next.maxText === caps.maxText) break;
    caps = next;
  }
  return caps;
}
