/**
 * ISF, iterative sampling and filtering (the OmniBal reference balancer, bug-fixed).
 * TypeScript twin of `crate/core/src/data/isf.rs`; see there for the semantics.
 *
 * @module
 */
import { shuffleInPlace } from '../random/permutation';
import { Rng } from '../random/rng';
import { outOfRange } from '../errors';
import { Packs } from './plan';
import { splitByCaps, type Caps } from './samples';

/** Parameters of ISF, all set. */
export interface IsfParams {
  caps: Caps;
  minVision: number;
  minText: number;
  iterations: number;
  seed: number;
  epoch: number;
}

/** The reference defaults for `caps`. */
export function referenceIsfParams(caps: Caps, seed: number, epoch: number): IsfParams {
  return { caps, minVision: caps.maxVision, minText: Math.max(caps.maxText - 128, 0), iterations: 50, seed, epoch };
}

/** Twin of `pack_isf`. */
export function packIsfTwin(
  vision: Uint32Array,
  text: Uint32Array,
  p: IsfParams,
  progress?: (done: number, total: number) => void,
): { packs: Packs; dropped: [number, number][] } {
  if (p.iterations === 0) throw outOfRange('iterations', 'must be at least 1, got 0');
  const split = splitByCaps(vision, text, p.caps);
  let pool = split.fit;
  const total = pool.length;
  const kept = new Packs();
  for (let round = 0; round < p.iterations; round++) {
    shuffleInPlace(pool, Rng.forEpoch(p.seed, p.epoch, round));
    const last = round + 1 === p.iterations;
    const rest: number[] = [];
    let group: number[] = [];
    let v = 0;
    let t = 0;
    const close = () => {
      if (last || v === p.minVision || t >= p.minText) kept.push(group);
      else for (const i of group) rest.push(i);
    };
    for (const i of pool) {
      if (group.length > 0 && (v + vision[i] > p.caps.maxVision || t + text[i] > p.caps.maxText)) {
        close();
        group = [];
        v = 0;
        t = 0;
      }
      group.push(i);
      v += vision[i];
      t += text[i];
    }
    if (group.length > 0) close();
    pool = rest;
    progress?.(total - pool.length, total);
    if (pool.length === 0) break;
  }
  return { packs: kept, dropped: split.dropped };
}
