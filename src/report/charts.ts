/**
 * The report's charts, as inline SVG: pipeline timelines, stage time and memory against the
 * limit, the ablation as bars, and per-rank vision and text loads.
 *
 * @module
 */
import type { StageInfo } from '../model/index';
import type { AblationRow, StageMemory, Timeline } from '../plan/index';
import { esc, focusRange, legend, niceMax, niceTicks, r1, svgOpen, tickLabel, timeUnit, xAxis, yAxis, type Frame } from './svg';

const GIB = 2 ** 30;

/** The slowest rank's timeline of one simulated step; every timeline of a report shares `endMs` as its scale. */
export function ganttChart(t: Timeline, pp: number, width: number, endMs: number): string {
  const row = 20;
  const f: Frame = { width, height: pp * row + 76, left: 70, right: width - 16, top: 40, bottom: 40 + pp * row };
  const { unit, scale } = timeUnit(endMs);
  const ax = xAxis(f, 0, endMs / scale, `time in the step (${unit})`);
  const x = (ms: number) => ax.x(ms / scale);
  const rects = t.events
    .map(
      (e) =>
        `<rect class="${e.backward ? 'bwd' : 'fwd'}" x="${r1(x(e.startMs))}" y="${f.top + e.stage * row + 2}" width="${r1(Math.max(x(e.endMs) - x(e.startMs), 0.6))}" height="${row - 4}"><title>stage ${e.stage}, ${e.backward ? 'backward' : 'forward'} of micro-batch ${e.microBatch}: ${e.startMs.toFixed(0)}-${e.endMs.toFixed(0)} ms</title></rect>`,
    )
    .join('');
  const labels = Array.from({ length: pp }, (_, s) => `<text class="tick" x="${f.left - 6}" y="${f.top + s * row + row - 6}" text-anchor="end">stage ${s}</text>`).join('');
  const end = x(t.stepMs);
  const endLine = `<line class="limit" x1="${r1(end)}" x2="${r1(end)}" y1="${f.top - 4}" y2="${f.bottom}"/><text class="note-text" x="${r1(end < f.right - 260 ? end + 6 : end - 6)}" y="${f.top - 8}" text-anchor="${end < f.right - 260 ? 'start' : 'end'}">step end ${tickLabel(t.stepMs / scale, 0.1)} ${unit} (all-reduce included)</text>`;
  const key = legend(f.left, 14, [
    { label: 'forward', cls: 'fwd' },
    { label: 'backward (recomputation included)', cls: 'bwd' },
  ]);
  return `${svgOpen('gantt', width, f.height, `${t.name}: pipeline timeline of the slowest rank`)}${ax.svg}${labels}${rects}${endLine}${key}</svg>`;
}

/**
 * Which stages of a bar chart `bw` px per stage wide get text: every stage while a label of
 * `labelPx` fits, else every k-th (0, k, 2k, ...) so that labels never run into each other (the
 * stage table has every figure).
 */
function labelled(i: number, bw: number, labelPx: number): boolean {
  return i % Math.max(1, Math.ceil(labelPx / bw)) === 0;
}

/** Per-stage time per micro-batch, with its axis in ms. */
export function stageTimeChart(stages: StageInfo[], width: number): string {
  const f: Frame = { width, height: 260, left: 64, right: width - 12, top: 40, bottom: 220 };
  const max = Math.max(...stages.map((s) => s.timeMs));
  const [lo, hi] = [0, niceMax(max * 1.12)];
  const ay = yAxis(f, lo, hi, 'ms per micro-batch', niceTicks(lo, hi, 5));
  const bw = (f.right - f.left) / stages.length;
  const bars = stages
    .map((s, i) => {
      const x0 = f.left + i * bw + bw * 0.15;
      const y0 = ay.y(s.timeMs);
      const value = labelled(i, bw, 36) ? `<text class="value" x="${r1(x0 + bw * 0.35)}" y="${r1(y0 - 3)}" text-anchor="middle">${s.timeMs.toFixed(0)}</text>` : '';
      const tick = labelled(i, bw, 24) ? `<text class="tick" x="${r1(x0 + bw * 0.35)}" y="${f.bottom + 14}" text-anchor="middle">${i}</text>` : '';
      return `<rect class="time" x="${r1(x0)}" y="${r1(y0)}" width="${r1(bw * 0.7)}" height="${r1(f.bottom - y0)}"><title>stage ${i}: ${s.timeMs.toFixed(0)} ms per micro-batch</title></rect>${value}${tick}`;
    })
    .join('');
  const key = legend(f.left, 16, [{ label: 'forward + backward + recomputation + transfer', cls: 'time' }]);
  return `${svgOpen('stage-time', width, f.height, 'time per micro-batch by stage')}${ay.svg}${bars}<text class="axis-label" x="${r1((f.left + f.right) / 2)}" y="${f.height - 4}" text-anchor="middle">pipeline stage</text>${key}</svg>`;
}

/** Per-stage predicted memory (static, activations, other), stacked, against the GPU's limit line. */
export function stageMemoryChart(stages: StageInfo[], memory: StageMemory[], limitBytes: number, width: number): string {
  const f: Frame = { width, height: 260, left: 64, right: width - 12, top: 40, bottom: 220 };
  const max = Math.max(limitBytes, ...stages.map((s) => s.memoryBytes)) / GIB;
  const hi = niceMax(max * 1.1);
  const ay = yAxis(f, 0, hi, 'GiB per GPU', niceTicks(0, hi, 5));
  const bw = (f.right - f.left) / stages.length;
  const bars = stages
    .map((s, i) => {
      const m = memory[i] ?? { staticBytes: 0, activationBytes: s.memoryBytes, otherBytes: 0 };
      const x0 = f.left + i * bw + bw * 0.15;
      let base = 0;
      const parts = (
        [
          ['static', m.staticBytes, 'weights, gradients, optimizer'],
          ['act', m.activationBytes, 'activations in flight'],
          ['other', m.otherBytes, 'other'],
        ] as const
      )
        .map(([cls, bytes, what]) => {
          const y1 = ay.y((base + bytes) / GIB);
          const y0 = ay.y(base / GIB);
          base += bytes;
          return `<rect class="${cls}" x="${r1(x0)}" y="${r1(y1)}" width="${r1(bw * 0.7)}" height="${r1(Math.max(y0 - y1, 0))}"><title>stage ${i}: ${what} ${(bytes / GIB).toFixed(1)} GiB</title></rect>`;
        })
        .join('');
      const pct = (s.memoryBytes / limitBytes) * 100;
      // The share of the limit beside the stage while it fits (else in the stage table only).
      const tick = bw >= 44 ? `${i} (${pct.toFixed(0)}%)` : labelled(i, bw, 24) ? `${i}` : '';
      return `${parts}${tick ? `<text class="tick" x="${r1(x0 + bw * 0.35)}" y="${f.bottom + 14}" text-anchor="middle">${tick}</text>` : ''}`;
    })
    .join('');
  // A stage near the limit would have its value struck through by the limit line, where it
  // matters most: such a value goes just above the line, and values are drawn over the line with
  // a halo (see .value in the report's style).
  const ly = ay.y(limitBytes / GIB);
  const values = stages
    .map((s, i) => {
      if (!labelled(i, bw, 36)) return '';
      const y = ay.y(s.memoryBytes / GIB) - 3;
      return `<text class="value" x="${r1(f.left + i * bw + bw * 0.5)}" y="${r1(y > ly - 2 && y < ly + 12 ? ly - 4 : y)}" text-anchor="middle">${(s.memoryBytes / GIB).toFixed(1)}</text>`;
    })
    .join('');
  const limit = `<line class="limit" x1="${f.left}" x2="${f.right}" y1="${r1(ly)}" y2="${r1(ly)}"/>${values}`;
  const key = legend(f.left, 16, [
    { label: 'weights+grads+optimizer', cls: 'static' },
    { label: 'activations', cls: 'act' },
    { label: 'other', cls: 'other' },
    { label: `limit ${(limitBytes / GIB).toFixed(1)} GiB`, cls: 'limit', dash: true },
  ]);
  return `${svgOpen('stage-memory', width, f.height, 'predicted memory by stage against the GPU limit')}${ay.svg}${bars}${limit}<text class="axis-label" x="${r1((f.left + f.right) / 2)}" y="${f.height - 4}" text-anchor="middle">pipeline stage${bw >= 44 ? ' (share of the limit)' : ''}</text>${key}</svg>`;
}

/** The ablation as horizontal bars of predicted GPU-days (and the paper's, where it measured this model). */
export function ablationChart(rows: AblationRow[], paper: number[] | undefined, width: number): string {
  const barH = paper ? 28 : 20;
  const f: Frame = { width, height: rows.length * (barH + 14) + 70, left: 250, right: width - 120, top: 28, bottom: 28 + rows.length * (barH + 14) };
  const max = Math.max(...rows.map((r) => (Number.isNaN(r.gpuHours) ? 0 : r.gpuHours / 24)), ...(paper ?? []));
  const hi = niceMax(max * 1.05, 6);
  const ax = xAxis(f, 0, hi, 'GPU-days per epoch (predicted)', niceTicks(0, hi, 6));
  const bars = rows
    .map((r, i) => {
      const y0 = f.top + i * (barH + 14) + 7;
      const label = `<text class="tick" x="${f.left - 8}" y="${y0 + barH / 2 + 4}" text-anchor="end">${esc(r.name.split(' (')[0])}</text>`;
      if (r.error || Number.isNaN(r.gpuHours)) return `${label}<text class="note-text" x="${f.left + 6}" y="${y0 + barH / 2 + 4}">does not fit in memory</text>`;
      const days = r.gpuHours / 24;
      const h = paper ? barH / 2 - 1 : barH;
      const ours = `<rect class="fwd" x="${f.left}" y="${y0}" width="${r1(ax.x(days) - f.left)}" height="${h}"><title>${esc(r.name)}: ${days.toFixed(1)} GPU-days</title></rect><text class="value" x="${r1(ax.x(days) + 4)}" y="${y0 + h - 2}">${days.toFixed(1)} (${Number.isNaN(r.speedup) ? '-' : `${r.speedup.toFixed(2)}x`})</text>`;
      const theirs = paper
        ? `<rect class="paper" x="${f.left}" y="${y0 + h + 2}" width="${r1(ax.x(paper[i]) - f.left)}" height="${h}"><title>paper: ${paper[i]} GPU-days</title></rect><text class="value" x="${r1(ax.x(paper[i]) + 4)}" y="${y0 + 2 * h}">${paper[i].toFixed(1)} (${(paper[0] / paper[i]).toFixed(2)}x)</text>`
        : '';
      return label + ours + theirs;
    })
    .join('');
  const key = legend(f.left, 16, paper ? [{ label: 'predicted (this plan)', cls: 'fwd' }, { label: 'paper, measured (Table 2)', cls: 'paper' }] : [{ label: 'predicted (this plan)', cls: 'fwd' }]);
  return `${svgOpen('ablation', width, f.height, 'ablation: predicted GPU-days per epoch')}${ax.svg}${bars}${key}</svg>`;
}

/** Mean over steps of (largest rank load / mean rank load - 1): how much longer the slowest rank works. */
export function imbalance(steps: number[][]): number {
  let sum = 0;
  let n = 0;
  for (const ranks of steps) {
    const mean = ranks.reduce((a, b) => a + b, 0) / ranks.length;
    if (mean > 0) {
      sum += Math.max(...ranks) / mean - 1;
      n++;
    }
  }
  return n ? sum / n : 0;
}

/** Per-rank loads of each simulated step: one dot per rank, the range drawn as a bar, on the given value range. */
export function rankLoadChart(title: string, steps: number[][], unit: string, range: [number, number], width: number): string {
  const f: Frame = { width, height: 230, left: 70, right: width - 12, top: 34, bottom: 190 };
  const ay = yAxis(f, range[0], range[1], unit);
  const dx = (f.right - f.left) / Math.max(steps.length, 1);
  const marks = steps
    .map((ranks, i) => {
      const cx = f.left + dx * (i + 0.5);
      const lo = Math.min(...ranks);
      const hi = Math.max(...ranks);
      const bar = `<line class="spread" x1="${r1(cx)}" x2="${r1(cx)}" y1="${r1(ay.y(lo))}" y2="${r1(ay.y(hi))}"/>`;
      const dots = ranks.map((v, r) => `<circle class="dot" cx="${r1(cx)}" cy="${r1(ay.y(v))}" r="2.6"><title>step ${i}, rank ${r}: ${v.toLocaleString('en-US')} ${esc(unit)}</title></circle>`).join('');
      return `${bar}${dots}${i % Math.ceil(steps.length / 16) === 0 ? `<text class="tick" x="${r1(cx)}" y="${f.bottom + 14}" text-anchor="middle">${i}</text>` : ''}`;
    })
    .join('');
  const imb = imbalance(steps) * 100;
  const head = `<text class="chart-title" x="${f.left}" y="16">${esc(title)}: imbalance ${imb.toFixed(1)}%</text>`;
  const key = legend(f.right - 80, 16, [{ label: 'one rank', cls: 'dot' }]);
  return `${svgOpen('loads', width, f.height, `${title}: per-rank load per simulated step`)}${ay.svg}${marks}${head}${key}<text class="axis-label" x="${r1((f.left + f.right) / 2)}" y="${f.height - 4}" text-anchor="middle">simulated step</text></svg>`;
}

/** One value range for several load charts, so they compare on one scale. */
export function sharedRange(...sets: number[][][]): [number, number] {
  const all = sets.flat(2);
  return focusRange(Math.min(...all), Math.max(...all));
}
