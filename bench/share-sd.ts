// The step-composition figure of the pack benches: how far steps are from i.i.d. draws of the data.
import { planStep, type BatchPlan } from '../src/data/plan';
import { shuffleInPlace } from '../src/random/permutation';
import { Rng } from '../src/random/rng';

/**
 * Largest over datasets of (SD over steps of its share of a step's samples) / (the same for
 * i.i.d. steps of the same sizes). The i.i.d. steps are cut from a random order of the samples,
 * repeated when the plan holds more samples than the data (a carried tail planned besides them).
 * `null` for a plan of fewer than two steps (no spread over steps to measure).
 */
export function shareSdRatio(plan: BatchPlan, label: Uint8Array): number | null {
  if (plan.steps < 2) return null;
  const steps: number[][] = [];
  for (let st = 0; st < plan.steps; st++) steps.push(planStep(plan, st).flatMap((rank) => rank.flatMap((mb) => Array.from(mb))));
  const order = Array.from(label.keys());
  shuffleInPlace(order, new Rng(7));
  const pool = order.concat(order);
  let at = 0;
  const iid = steps.map((st) => pool.slice(at, (at += st.length)));
  const sd = (groups: number[][], d: number) => {
    const shares = groups.map((g) => g.filter((i) => label[i] === d).length / g.length);
    const mean = shares.reduce((a, b) => a + b, 0) / shares.length;
    return Math.sqrt(shares.reduce((a, x) => a + (x - mean) ** 2, 0) / shares.length);
  };
  return Math.max(...[0, 1, 2].map((d) => sd(steps, d) / sd(iid, d)));
}
