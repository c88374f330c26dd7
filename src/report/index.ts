/**
 * A self-contained HTML report of a training plan (inline SVG charts, no scripts, no network),
 * meant to be pasted into a design doc: the layout and batch, the run-level figures, the data
 * plan, the per-stage table, the ablation, the pipeline timelines, and the per-rank loads.
 * Readable in light and dark mode (`prefers-color-scheme`). Every figure is a prediction.
 *
 * @module
 */
import { invalidType } from '../errors';
import type { TrainingPlan } from '../plan/index';
import { expectNumber, expectObject } from '../validate';
import { paperAblation } from '../plan/paper';
import { ablationChart, ganttChart, imbalance, rankLoadChart, sharedRange, stageMemoryChart, stageTimeChart } from './charts';
import { esc } from './svg';

const GIB = 2 ** 30;
const n0 = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: 0 });
const n1 = (x: number) => x.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

const STYLE = `
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2330;--muted:#5b6475;--line:#d5d9e0;--grid:#eceef2;--card:#f5f7fa;
--fwd:#2f6fdb;--bwd:#e07b28;--time:#2f6fdb;--static:#7b61c9;--act:#2a9d8f;--other:#a0a8b5;--limit:#d03131;--paper:#9aa3b1;--dot:#2f6fdb;--spread:#9fb8e8}
@media (prefers-color-scheme:dark){:root{--bg:#15181e;--fg:#e6e9ef;--muted:#a3abb9;--line:#3a404c;--grid:#262b34;--card:#1e232b;
--fwd:#5b93f0;--bwd:#f0994d;--time:#5b93f0;--static:#a08ae6;--act:#3cc2b2;--other:#6d7584;--limit:#ff6b6b;--paper:#6d7584;--dot:#6ea2f5;--spread:#3d5684}}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:24px 28px;background:var(--bg);color:var(--fg);max-width:1120px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px}
.sub{color:var(--muted);margin:0 0 12px}.note{color:var(--muted);font-size:12.5px;margin:4px 0 8px}
.badge{display:inline-block;background:var(--limit);color:#fff;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:600;vertical-align:middle}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px;margin:12px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 12px}.card b{display:block;font-size:19px}.card span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}td,th{border:1px solid var(--line);padding:3px 8px;text-align:right}th{background:var(--card)}td:first-child,th:first-child{text-align:left}td.names{text-align:left;white-space:nowrap}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:8px 16px}
svg.chart{display:block;max-width:100%;height:auto}
svg text{fill:var(--fg);font:11px system-ui,sans-serif}svg .tick{fill:var(--muted)}svg .axis-label{fill:var(--muted);font-size:11.5px}svg .chart-title{font-weight:600;font-size:12.5px}
svg .note-text{fill:var(--muted)}svg .value{font-size:10.5px;paint-order:stroke;stroke:var(--bg);stroke-width:3px;stroke-linejoin:round}svg .legend{font-size:11.5px}
svg .grid{stroke:var(--grid)}svg .axis{stroke:var(--muted)}
svg .fwd{fill:var(--fwd)}svg .bwd{fill:var(--bwd)}svg .time{fill:var(--time)}svg .static{fill:var(--static)}svg .act{fill:var(--act)}svg .other{fill:var(--other)}svg .paper{fill:var(--paper)}
svg .limit{stroke:var(--limit);stroke-width:2;stroke-dasharray:6 4;fill:var(--limit)}svg line.limit{fill:none}
svg .dot{fill:var(--dot)}svg .spread{stroke:var(--spread);stroke-width:5;stroke-linecap:round}
@media (max-width:900px){.grid2{grid-template-columns:1fr}.cards{grid-template-columns:repeat(2,1fr)}}
`;

function card(value: string, label: string): string {
  return `<div class="card"><b>${esc(value)}</b><span>${esc(label)}</span></div>`;
}

/**
 * Renders the report: one self-contained HTML page with SVG charts.
 *
 * @param plan - a plan from `planTraining`
 * @param memoryLimitBytes - the GPU memory the stages are drawn against (default the plan's)
 * @returns the HTML text
 */
export function renderReport(plan: TrainingPlan, memoryLimitBytes?: number): string {
  // A plan from planTraining (or a saved one read back): refused by shape before any drawing.
  for (const k of ['cluster', 'figures', 'detail', 'stages', 'replay'] as const) expectObject(`plan.${k}`, expectObject('plan', plan, 'a TrainingPlan')[k]);
  if (!Array.isArray(plan.ablation) || !Array.isArray(plan.stages.stages)) throw invalidType('plan', 'must be a TrainingPlan (ablation and stages.stages lists)');
  if (memoryLimitBytes !== undefined) expectNumber('memoryLimitBytes', memoryLimitBytes);
  const c = plan.cluster;
  const f = plan.figures;
  const d = plan.detail;
  const stages = plan.stages.stages;
  const limit = memoryLimitBytes ?? plan.memoryBytes;
  const full = plan.ablation[plan.ablation.length - 1];
  const paper = paperAblation(plan.model);
  const schedule = plan.replay.schedule === '1f1b' ? '1F1B' : plan.replay.schedule === 'gpipe' ? 'GPipe' : `interleaved 1F1B (${plan.replay.virtualStages} chunks per device)`;
  const header = `<h1>omnibal plan: ${esc(plan.model)} on ${c.gpus} x ${esc(plan.gpu)} <span class="badge">PREDICTION</span></h1>
<p class="sub">tp ${c.tp} · pp ${c.pp} · dp ${c.dp} · ${esc(schedule)} · ${plan.accum} micro-batches per rank per step (gradient accumulation) · global batch ${n0(f.samplesPerStep)} samples / ${n0(f.tokensPerStep)} tokens per step · ${n0(plan.steps)} steps per epoch · ${n0(plan.samples)} samples</p>
<p class="sub">data plan: ${plan.data.balanced.samplesPerPack.toFixed(2)} samples per micro-batch, vision dist ${plan.data.balanced.visionDist.toFixed(4)}, text dist ${plan.data.balanced.textDist.toFixed(4)}, text-cost dist ${plan.data.balanced.costDist.toFixed(4)} (random batches: ${plan.data.random.visionDist.toFixed(4)}, ${plan.data.random.textDist.toFixed(4)}, ${plan.data.random.costDist.toFixed(4)}, pad ratio ${plan.data.random.padRatio.toFixed(3)}; details in "Data plan" below)</p>`;
  const cards = `<div class="cards">${[
    card(`${n1(full.stepMs / 1000)} s`, 'step time (mean of the simulated steps)'),
    card(`${n1(f.hours)} h`, `time for ${f.epochs} epoch${f.epochs === 1 ? '' : 's'} (${n1(f.gpuHours / 24)} GPU-days)`),
    card(Number.isNaN(full.speedup) ? '-' : `${full.speedup.toFixed(2)}x`, 'speed-up over the baseline'),
    card(`${(f.mfu * 100).toFixed(1)}%`, 'MFU (model FLOPs / GPUs x peak)'),
    card(n0(f.tokensPerS), 'tokens/s (whole cluster)'),
    card(n1(f.samplesPerS), 'samples/s (whole cluster)'),
    card(n1(f.tflopsPerGpu), 'model TFLOP/s per GPU'),
    card(`${(full.bubbleFraction * 100).toFixed(0)}%`, 'pipeline bubble'),
  ].join('')}</div>
<p class="note">All figures are <strong>predictions</strong>, not measurements: ${plan.assumptions.map(esc).join('; ')}; ${esc(f.assumption)}.</p>`;
  const dataRows = (
    [
      ['balanced packs (this plan)', plan.data.balanced],
      ['random batches (baseline)', plan.data.random],
    ] as const
  )
    .map(([name, m]) => `<tr><td>${name}</td><td>${m.samplesPerPack.toFixed(2)}</td><td>${m.padRatio.toFixed(3)}</td><td>${m.visionDist.toFixed(4)}</td><td>${m.textDist.toFixed(4)}</td><td>${m.costDist.toFixed(4)}</td></tr>`)
    .join('');
  const data = `<h2>Data plan</h2><table id="data"><tr><th>batches</th><th>samples / micro-batch</th><th>pad ratio</th><th>vision dist</th><th>text dist</th><th>text-cost dist</th></tr>${dataRows}</table>
<p class="note">dist: the paper's dist ratio, mean over steps of (max - min) / max of the ranks' loads; 0 is perfect balance.</p>`;
  const mem = d.stageMemory;
  const stageRows = stages
    .map((s, i) => {
      const m = mem[i];
      const parts = m ? `<td>${(m.staticBytes / GIB).toFixed(1)}</td><td>${(m.activationBytes / GIB).toFixed(1)}</td><td>${(m.otherBytes / GIB).toFixed(1)}</td>` : '<td></td><td></td><td></td>';
      // An interleaved plan: the device's chunks, each with its layers, names, recomputed layers and held micro-batches.
      const chunks = plan.chunks ? plan.chunks.chunks.filter((c) => c.stage === i) : undefined;
      const span = (x: { layerNames: string[] }) => (x.layerNames.length ? `${esc(x.layerNames[0])} .. ${esc(x.layerNames[x.layerNames.length - 1])}` : '');
      const layers = chunks ? chunks.map((c) => `${c.firstLayer}-${c.lastLayer}`).join(', ') : `${s.firstLayer}-${s.lastLayer}`;
      const names = chunks ? chunks.map(span).join(', ') : span(s);
      const recomputed = chunks
        ? `${chunks.map((c) => `${c.recomputeLayers.length} of ${c.lastLayer - c.firstLayer + 1}`).join(', ')} (held at peak: ${chunks.map((c) => c.held).join(' + ')})`
        : `${s.recomputeLayers.length} of ${s.lastLayer - s.firstLayer + 1}`;
      return `<tr><td>${i}</td><td>${layers}</td><td class="names">${names}</td><td>${recomputed}</td><td>${s.timeMs.toFixed(0)}</td>${parts}<td><b>${(s.memoryBytes / GIB).toFixed(1)}</b></td><td>${((s.memoryBytes / limit) * 100).toFixed(0)}%</td></tr>`;
    })
    .join('');
  const chunkNote = plan.chunks
    ? `<p class="note">Interleaved: ${plan.chunks.virtualStages} x ${c.pp} model chunks, chunk c on stage c mod ${c.pp}; each stage's cells list its chunks in order. ${plan.chunks.megatron.alternatives.length > 0 ? `Megatron-LM: <code>${esc(plan.chunks.megatron.alternatives[0].command)}</code>` : 'Megatron-LM: no valid arguments for this plan'}${plan.chunks.megatron.unsupported.map((u) => `<br>cannot express: ${esc(u)}`).join('')}</p>`
    : '';
  const stageTable = `<h2>Stages</h2>${chunkNote}<table id="stages"><tr><th>stage</th><th>${plan.chunks ? 'chunks (layers)' : 'layers'}</th><th>first .. last layer</th><th>recomputed layers</th><th>ms / micro-batch</th><th>static GiB</th><th>activations GiB</th><th>other GiB</th><th>memory GiB</th><th>of ${(limit / GIB).toFixed(1)} GiB</th></tr>${stageRows}</table>
<div class="grid2">${stageTimeChart(stages, 540)}${stageMemoryChart(stages, mem, limit, 540)}</div>`;
  const ablationRows = plan.ablation
    .map((r) =>
      r.error
        ? `<tr><td>${esc(r.name)}</td><td>${r.steps}</td><td colspan="4">does not fit: ${esc(r.error)}</td></tr>`
        : `<tr><td>${esc(r.name)}</td><td>${r.steps}</td><td>${(r.stepMs / 1000).toFixed(1)}</td><td>${(r.gpuHours / 24).toFixed(1)}</td><td>${Number.isNaN(r.speedup) ? '-' : `${r.speedup.toFixed(2)}x`}</td><td>${(r.bubbleFraction * 100).toFixed(0)}%</td></tr>`,
    )
    .join('');
  const ablation = `<h2>Ablation (one epoch each)</h2>${ablationChart(plan.ablation, paper, 1060)}
<table id="ablation"><tr><th>configuration</th><th>steps</th><th>step s</th><th>GPU-days</th><th>speed-up</th><th>bubble</th></tr>${ablationRows}</table>
<p class="note">${
    paper
      ? "The paper's bars are measured GPU-days of the whole InternVL-1.5 SFT run (InternViT-6B + InternLM2-20B, Table 2) on its own, unstated layout; compare the speed-ups, not the days."
      : `The paper measured its ablation (Table 2) for InternViT-6B + InternLM2-20B only, so no paper figures are shown for ${esc(plan.model)}.`
  } Random batches and balanced packs hold different numbers of micro-batches, so the rows run different numbers of steps.</p>`;
  const end = Math.max(...d.timelines.map((t) => t.stepMs));
  const timelines = `<h2>Pipeline timeline of the slowest rank (one simulated step)</h2>
<p class="note">Each timeline is the <em>first</em> of the ${plan.replay.simulatedSteps} simulated steps, so its step time differs from the tables' mean over all of them. Both timelines share one time axis.</p>
${d.timelines.map((t) => `<h3>${esc(t.name)}: this step ${n1(t.stepMs / 1000)} s</h3>${ganttChart(t, c.pp, 1060, end)}`).join('\n')}`;
  const tiles = sharedRange(d.balancedRankTiles, d.randomRankTiles);
  const tokens = sharedRange(d.balancedRankTokens, d.randomRankTokens);
  const hasRandom = d.randomRankTokens.length > 0;
  const loads = `<h2>Per-rank load in each simulated step</h2>
<p class="note">One dot per data-parallel rank; vision (image tiles, the ViT's work) and text (LLM tokens, padding included for random batches) each on one scale for both configurations, not from 0, so the spread is visible. Imbalance: mean over steps of the busiest rank's load over the mean rank's, minus 1${hasRandom ? `: vision ${(imbalance(d.randomRankTiles) * 100).toFixed(1)}% -> ${(imbalance(d.balancedRankTiles) * 100).toFixed(1)}%, text ${(imbalance(d.randomRankTokens) * 100).toFixed(1)}% -> ${(imbalance(d.balancedRankTokens) * 100).toFixed(1)}%` : ''}.</p>
<div class="grid2">${hasRandom ? rankLoadChart('vision, random batches', d.randomRankTiles, 'image tiles', tiles, 540) : ''}${rankLoadChart('vision, balanced packs', d.balancedRankTiles, 'image tiles', tiles, 540)}${
    hasRandom ? rankLoadChart('text, random batches', d.randomRankTokens, 'LLM tokens', tokens, 540) : ''
  }${rankLoadChart('text, balanced packs', d.balancedRankTokens, 'LLM tokens', tokens, 540)}</div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="color-scheme" content="light dark">
<title>omnibal plan: ${esc(plan.model)} on ${c.gpus} x ${esc(plan.gpu)}, tp ${c.tp} pp ${c.pp} dp ${c.dp}</title>
<style>${STYLE}</style></head>
<body>
${header}
${cards}
${stageTable}
${ablation}
${timelines}
${loads}
${data}
</body></html>
`;
}
