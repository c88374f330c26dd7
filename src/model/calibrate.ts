/**
 * Calibration of the cost model from measurements. TypeScript twin of
 * `crate/core/src/model/calibrate.rs`.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { numberAtLeast } from '../validate';

/** Twin of `check_timing`: layer `i` exists and its time is a positive number; its kind. */
export function checkTimingTwin(kinds: Uint8Array, i: number, forwardMs: number): number {
  if (i >= kinds.length) throw outOfRange('measured layer', `${i} is not a layer (there are ${kinds.length})`);
  numberAtLeast('measured forwardMs', forwardMs, 0);
  if (forwardMs === 0) throw outOfRange('measured forwardMs', `of layer ${i} must be > 0 (a measured layer takes time), got 0`);
  return kinds[i];
}

/**
 * Twin of `fit_layer_cost`: per kind, `[overheadMs, efficiency]` fitted to `t = o + x / e` over
 * its measurements (`kind`, `x` = ms at 100% efficiency, `t` = measured forward ms); null for a
 * kind without measurements. `efficiency[k]` is kept by a kind without FLOPs.
 */
export function fitLayerCostTwin(kind: ArrayLike<number>, msAtPeak: ArrayLike<number>, forwardMs: ArrayLike<number>, efficiency: ArrayLike<number>): ([number, number] | null)[] {
  return Array.from({ length: 6 }, (_, k) => {
    const pts: [number, number][] = [];
    for (let j = 0; j < kind.length; j++) if (kind[j] === k) pts.push([msAtPeak[j], forwardMs[j]]);
    if (pts.length === 0) return null;
    const n = pts.length;
    let [sx, sy] = [0, 0];
    for (const [x, y] of pts) [sx, sy] = [sx + x, sy + y];
    const [mx, my] = [sx / n, sy / n];
    let [sxx, sxy, xmax] = [0, 0, 0];
    for (const [x] of pts) sxx += (x - mx) * (x - mx);
    for (const [x, y] of pts) sxy += (x - mx) * (y - my);
    for (const [x] of pts) xmax = Math.max(xmax, x);
    if (xmax <= 0) return [my, efficiency[k]];
    if (sxx > 1e-12 * mx * mx * n) {
      const slope = sxy / sxx;
      const o = my - slope * mx;
      if (slope > 0 && o >= 0) return [o, 1 / slope];
    }
    let [num, den] = [0, 0];
    for (const [x, y] of pts) [num, den] = [num + x * y, den + x * x];
    return [0, den / num];
  });
}

/** Kinds whose activation bytes are fitted: ViT blocks and LLM blocks. */
const FITTED = [1, 4];

/** Twin of `fit_activation_scale`. `bounds` holds (first, last, inFlight) per stage, `memory` (full, none) bytes. */
export function fitActivationScaleTwin(
  kinds: Uint8Array,
  activation: ArrayLike<number>,
  checkpoint: ArrayLike<number>,
  bounds: ArrayLike<number>,
  memory: ArrayLike<number>,
): Float64Array {
  const rows: [number[], number][] = [];
  for (let s = 0; s < bounds.length / 3; s++) {
    const [first, last, n] = [bounds[3 * s], bounds[3 * s + 1], bounds[3 * s + 2]];
    if (last < first || last >= kinds.length || n === 0) throw outOfRange('stageMemory', `stage ${s} has bad layer bounds or in-flight count`);
    numberAtLeast('fullRecomputeBytes', memory[2 * s], 0);
    numberAtLeast('noRecomputeBytes', memory[2 * s + 1], 0);
    const a = new Array<number>(6).fill(0);
    let known = 0;
    for (let i = first; i <= last; i++) {
      if (FITTED.includes(kinds[i])) a[kinds[i]] += activation[i];
      else known += activation[i];
      known -= checkpoint[i];
    }
    rows.push([a, (memory[2 * s + 1] - memory[2 * s]) / n - known]);
  }
  const used = FITTED.filter((k) => rows.some((r) => r[0][k] > 0));
  const m = used.length;
  const scale = new Float64Array(6).fill(1);
  if (m === 0) return scale;
  const a = Array.from({ length: m }, () => new Array<number>(m + 1).fill(0));
  for (const [row, y] of rows) {
    used.forEach((ki, i) => {
      used.forEach((kj, j) => {
        a[i][j] += row[ki] * row[kj];
      });
      a[i][m] += row[ki] * y;
    });
  }
  for (let col = 0; col < m; col++) {
    // Rust's max_by keeps the last of equal maxima.
    let pivot = col;
    for (let x = col; x < m; x++) if (Math.abs(a[x][col]) >= Math.abs(a[pivot][col])) pivot = x;
    let size = 0;
    for (let i = 0; i < m; i++) size = Math.max(size, Math.abs(a[i][i]));
    if (Math.abs(a[pivot][col]) <= 1e-12 * size) return scale;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let r = 0; r < m; r++) {
      if (r === col) continue;
      const f = a[r][col] / a[col][col];
      const pivotRow = a[col].slice();
      for (let c2 = col; c2 <= m; c2++) a[r][c2] -= f * pivotRow[c2];
    }
  }
  used.forEach((k, i) => {
    scale[k] = a[i][m] / a[i][i];
  });
  return scale;
}
