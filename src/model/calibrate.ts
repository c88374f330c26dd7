/**
 * Calibration of the cost model from measurements. TypeScript twin of
 * `crate/core/src/model/calibrate.rs`.
 *
 * @module
 */
import { outOfRange } from '../errors';
import { numberAtLeast } from '../validate';

/** Twin of `fit_efficiency`: one efficiency per kind (NaN where unmeasured). */
export function fitEfficiencyTwin(kinds: Uint8Array, msAtPeak: ArrayLike<number>, layers: ArrayLike<number>, forwardMs: ArrayLike<number>): Float64Array {
  const num = new Array<number>(6).fill(0);
  const den = new Array<number>(6).fill(0);
  for (let j = 0; j < layers.length; j++) {
    const i = layers[j];
    if (i >= kinds.length) throw outOfRange('measured layer', `${i} is not a layer (there are ${kinds.length})`);
    const t = forwardMs[j];
    numberAtLeast('measured forwardMs', t, 0);
    if (t === 0) throw outOfRange('measured forwardMs', `of layer ${i} must be > 0 (a measured layer takes time), got 0`);
    const x = msAtPeak[i];
    num[kinds[i]] += t * x;
    den[kinds[i]] += x * x;
  }
  return Float64Array.from({ length: 6 }, (_, k) => (den[k] > 0 && num[k] > 0 ? den[k] / num[k] : NaN));
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
