// One case of `npm run bench -- plan`, in its own process: the default plan, or the default
// layout search (fast or exhaustive); prints wall and CPU time (user + system) as one JSON line.
import { planTraining } from '../src/plan/index';
import { searchLayouts } from '../src/plan/layout';
import { syntheticSamples } from '../src/data/synthetic';

const [what, samplesArg] = process.argv.slice(2);
const n = Number(samplesArg ?? 1_200_000);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const samples = syntheticSamples(n, 0);
let summary: unknown;
if (what === 'plan') {
  const plan = planTraining({ samples });
  summary = { stepMs: plan.ablation[3].stepMs, mfu: plan.figures.mfu };
} else {
  const ranked = searchLayouts({
    samples,
    samplesPerPacks: [2.25, 4.5, 9],
    simulatedSteps: 4,
    exhaustive: what === 'search-exhaustive',
  });
  summary = { candidates: ranked.length, best: ranked[0], ranking: ranked.map((c) => `${c.tp}/${c.pp}/${c.dp}/${c.samplesPerPack}:${c.gpuHours ?? c.error}`) };
}
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ what, samples: n, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, summary }));
