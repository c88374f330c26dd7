// `npm run bench -- plan [--quick]`: CPU and wall time of the default plan (the compiled CLI's
// `omnibal plan`, whole process, target <= 1.5 s of CPU; and planTraining in-process) and of
// the default layout search (target <= 10 s of CPU), and whether the fast search ranks the
// layouts exactly as planning every layout from scratch does (on 200,000 samples; on the
// default 1.2 million unless --quick).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { formatTable } from '../src/cli/table';

interface PlanCase {
  what: string;
  samples: number;
  wallMs: number;
  cpuMs: number;
  summary: { ranking?: string[] };
}

/**
 * The compiled CLI's `omnibal plan` (the default run, as a user runs it) or `omnibal plan
 * --search-layout`, whole process: start-up, synthetic samples, planning and printing. Needs
 * `npm run build` (dist/).
 */
function runCli(args: string[]): PlanCase | string {
  const main = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
  const r = spawnSync(process.execPath, ['-r', path.join(__dirname, 'cpu-at-exit.cjs'), main, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, OMNIBAL_BACKEND: undefined },
  });
  const line = r.stderr.split('\n').find((l) => l.startsWith('omnibal-bench-cpu '));
  if (r.status !== 0 || !line) return (r.stderr || `exit ${r.status}`).trim().split('\n')[0] || 'no CPU figure (is dist/ built?)';
  const { cpuMs, wallMs } = JSON.parse(line.slice('omnibal-bench-cpu '.length)) as { cpuMs: number; wallMs: number };
  return { what: `omnibal ${args.join(' ')} (CLI)`, samples: 1_200_000, cpuMs, wallMs, summary: {} };
}

function run(what: string, samples: number): PlanCase | string {
  if (what === 'cli') return runCli(['plan']);
  if (what === 'cli-search') return runCli(['plan', '--search-layout']);
  if (what === 'cli-interleaved') return runCli(['plan', '--schedule', 'interleaved', '--virtual-stages', '2']);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'plan-case.ts'), what, String(samples)], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, OMNIBAL_BACKEND: undefined },
  });
  if (r.status !== 0) return (r.stderr || `exit ${r.status}`).trim().split('\n')[0];
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as PlanCase;
}

/** Prints the plan and layout-search table. */
export function benchPlan(quick: boolean): void {
  console.log('omnibal bench: plan (InternVL-Chat-1.5, 64 x A100-80G; synthetic samples generated inside the timed case)');
  console.log('layout search: tp 1-8 x pp 1-16, micro-batch 2.25 / 4.5 / 9 samples at a fixed 1,152 samples per step, 4 simulated steps each');
  console.log('cli-interleaved = `omnibal plan --schedule interleaved --virtual-stages 2`');
  console.log('cli = `omnibal plan`, cli-search = `omnibal plan --search-layout`: the compiled CLI, whole process (node start-up included); plan/search: in-process, after module loading');
  const rows: (string | number)[][] = [];
  const results = new Map<string, PlanCase>();
  const cases: [string, number, string][] = [
    ['cli', 1_200_000, '<= 1.5 s CPU'],
    // v x P chunk plans (partitionChunks) for the two optimal ablation rows, each chunk simulated with its own time.
    ['cli-interleaved', 1_200_000, ''],
    ['plan', 1_200_000, ''],
    ['cli-search', 1_200_000, '<= 10 s CPU'],
    ['search', 1_200_000, ''],
    ['search', 200_000, ''],
    ['search-exhaustive', 200_000, ''],
    ...(quick ? [] : ([['search-exhaustive', 1_200_000, '']] as [string, number, string][])),
  ];
  for (const [what, samples, target] of cases) {
    const r = run(what, samples);
    if (typeof r === 'string') {
      rows.push([what, samples.toLocaleString('en-US'), 'failed', '', '', r.slice(0, 60)]);
      continue;
    }
    results.set(`${what}:${samples}`, r);
    rows.push([what, samples.toLocaleString('en-US'), (r.cpuMs / 1000).toFixed(2), (r.wallMs / 1000).toFixed(2), target, '']);
  }
  const same = (n: number) => {
    const a = results.get(`search:${n}`)?.summary.ranking;
    const b = results.get(`search-exhaustive:${n}`)?.summary.ranking;
    if (!a || !b) return 'not run';
    // Same order of layouts (and same errors); GPU-hours may differ in the last digits, since the
    // shared data plan sums the same loads in another order.
    const key = (r: string) => r.slice(0, r.indexOf(':'));
    if (a.length !== b.length || a.some((r: string, i: number) => key(r) !== key(b[i]))) return 'DIFFERENT order';
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      const x = Number(a[i].slice(a[i].indexOf(':') + 1));
      const y = Number(b[i].slice(b[i].indexOf(':') + 1));
      if (Number.isNaN(x) !== Number.isNaN(y) || (Number.isNaN(x) && a[i] !== b[i])) return 'DIFFERENT errors';
      if (!Number.isNaN(x)) worst = Math.max(worst, Math.abs(x - y) / y);
    }
    return `same order, GPU-hours within ${worst.toExponential(1)} relative`;
  };
  console.log(formatTable(['case', 'samples', 'CPU s', 'wall s', 'target', 'note'], rows));
  console.log(`fast vs exhaustive ranking: 200,000 samples ${same(200_000)}; 1,200,000 samples ${same(1_200_000)}`);
}
