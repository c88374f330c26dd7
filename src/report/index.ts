/**
 * A self-contained HTML report of a training plan: inline SVG charts, no scripts, no network.
 *
 * @module
 */
import type { Timeline, TrainingPlan } from '../plan/index';

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function gantt(t: Timeline, pp: number, width: number, endMs: number): string {
  const row = 18;
  const left = 60;
  const h = pp * row + 30;
  const x = (ms: number) => left + (ms / endMs) * (width - left - 10);
  const rects = t.events
    .map((e) => `<rect x="${x(e.startMs).toFixed(1)}" y="${e.stage * row + 4}" width="${Math.max(x(e.endMs) - x(e.startMs), 0.5).toFixed(1)}" height="${row - 4}" fill="${e.backward ? '#e8833a' : '#3a7be8'}"><title>${e.backward ? 'backward' : 'forward'} mb ${e.microBatch}, ${e.startMs.toFixed(0)}-${e.endMs.toFixed(0)} ms</title></rect>`)
    .join('');
  const labels = Array.from({ length: pp }, (_, s) => `<text x="4" y="${s * row + row}" font-size="11">stage ${s}</text>`).join('');
  return `<svg class="chart gantt" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" role="img"><title>${esc(t.name)}</title>${labels}${rects}<text x="${left}" y="${h - 6}" font-size="11">0 ms</text><text x="${width - 80}" y="${h - 6}" font-size="11">${endMs.toFixed(0)} ms</text><line x1="${x(t.stepMs)}" x2="${x(t.stepMs)}" y1="0" y2="${pp * row + 4}" stroke="#333" stroke-dasharray="3,3"/></svg>`;
}

function rankLoads(title: string, steps: number[][], width: number): string {
  const h = 160;
  const left = 50;
  const max = Math.max(1, ...steps.flat());
  const dx = (width - left - 10) / Math.max(steps.length, 1);
  const dots = steps
    .flatMap((ranks, i) => ranks.map((v, r) => `<circle cx="${(left + dx * (i + 0.5) + (r - ranks.length / 2) * 1.5).toFixed(1)}" cy="${(h - 20 - (v / max) * (h - 40)).toFixed(1)}" r="2.5" fill="#3a7be8"><title>step ${i}, rank ${r}: ${v.toFixed(0)} tokens</title></circle>`))
    .join('');
  return `<svg class="chart loads" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" role="img"><title>${esc(title)}</title><text x="4" y="14" font-size="11">${esc(title)}</text><line x1="${left}" x2="${width - 10}" y1="${h - 20}" y2="${h - 20}" stroke="#999"/><text x="4" y="${h - 22}" font-size="10">0</text><text x="4" y="24" font-size="10">${max.toFixed(0)}</text>${dots}</svg>`;
}

function stageBars(plan: TrainingPlan, limitBytes: number, width: number): string {
  const st = plan.stages.stages;
  const h = 200;
  const left = 40;
  const bw = (width - left - 10) / st.length;
  const maxT = Math.max(...st.map((s) => s.timeMs));
  const maxM = Math.max(limitBytes, ...st.map((s) => s.memoryBytes));
  const bars = st
    .map((s, i) => {
      const th = (s.timeMs / maxT) * 70;
      const mh = (s.memoryBytes / maxM) * 70;
      const x0 = left + i * bw + 4;
      return `<rect x="${x0}" y="${90 - th}" width="${bw - 8}" height="${th}" fill="#3a7be8"><title>stage ${i}: ${s.timeMs.toFixed(0)} ms per micro-batch</title></rect><rect x="${x0}" y="${190 - mh}" width="${bw - 8}" height="${mh}" fill="#6bb36b"><title>stage ${i}: ${(s.memoryBytes / 2 ** 30).toFixed(1)} GiB</title></rect><text x="${x0}" y="${104}" font-size="10">s${i}</text>`;
    })
    .join('');
  const limitY = 190 - (limitBytes / maxM) * 70;
  return `<svg class="chart stages" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" role="img"><title>per-stage time and memory</title><text x="4" y="14" font-size="11">time / micro-batch</text><text x="4" y="124" font-size="11">memory (line: GPU limit)</text>${bars}<line x1="${left}" x2="${width - 10}" y1="${limitY}" y2="${limitY}" stroke="#c33" stroke-dasharray="4,3"/></svg>`;
}

/**
 * Renders the report.
 *
 * @param plan - a plan from `planTraining`
 * @param memoryLimitBytes - the GPU memory line in the memory chart (default the largest stage's memory)
 * @returns one self-contained HTML document
 */
export function renderReport(plan: TrainingPlan, memoryLimitBytes?: number): string {
  const width = 900;
  const timelines = plan.detail.timelines;
  const end = Math.max(...timelines.map((t) => t.stepMs));
  const limit = memoryLimitBytes ?? Math.max(...plan.stages.stages.map((s) => s.memoryBytes));
  const rows = plan.ablation
    .map((r) =>
      r.error
        ? `<tr><td>${esc(r.name)}</td><td colspan="4">does not fit: ${esc(r.error)}</td></tr>`
        : `<tr><td>${esc(r.name)}</td><td>${(r.stepMs / 1000).toFixed(1)}</td><td>${(r.gpuHours / 24).toFixed(1)}</td><td>${Number.isNaN(r.speedup) ? '-' : `${r.speedup.toFixed(2)}x`}</td><td>${(r.bubbleFraction * 100).toFixed(0)}%</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>omnibal plan: ${esc(plan.model)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:960px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}.note{color:#555}</style></head>
<body>
<h1>omnibal plan: ${esc(plan.model)} on ${plan.cluster.gpus} x ${esc(plan.gpu)}</h1>
<p class="note">All figures are <strong>predictions</strong> of the omnibal cost model and pipeline simulator: ${plan.assumptions.map(esc).join('; ')}.</p>
<h2>Ablation (one epoch)</h2>
<table id="ablation"><tr><th>configuration</th><th>step s</th><th>GPU-days</th><th>speed-up</th><th>bubble</th></tr>${rows}</table>
<h2>Pipeline timeline of the slowest rank</h2>
${timelines.map((t) => `<h3>${esc(t.name)}: ${(t.stepMs / 1000).toFixed(1)} s</h3>${gantt(t, plan.cluster.pp, width, end)}`).join('\n')}
<h2>Per-rank load per simulated step (LLM tokens)</h2>
${plan.detail.randomRankTokens.length ? rankLoads('random batches', plan.detail.randomRankTokens, width) : ''}
${rankLoads('balanced batches', plan.detail.balancedRankTokens, width)}
<h2>Per-stage time and memory</h2>
${stageBars(plan, limit, width)}
</body></html>
`;
}
