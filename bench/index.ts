// `npm run bench -- pack [--quick]` | `npm run bench -- partition` | `npm run bench -- plan [--quick]`: tables of wall time, peak RSS and plan quality,
// native vs the TypeScript twin vs pure-JS peers. Each case runs in its own process.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { formatTable } from '../src/cli/table';
import { benchPartition } from './partition';
import { benchPlan } from './plan';

interface CaseResult {
  impl: string;
  data: string;
  samples: number;
  ms: number;
  rssMB: number;
  pad: number;
  visionDist: number;
  textDist: number;
  costDistB: number;
  samplesPerPack: number;
  dropped: number;
}

function runCase(script: string, args: string[]): CaseResult | string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, script), ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, OMNIBAL_BACKEND: undefined },
  });
  if (r.status !== 0) return (r.stderr || `exit ${r.status}`).trim().split('\n')[0];
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as CaseResult;
}

function pack(quick: boolean): void {
  const sets: [string, string[]][] = [
    ['real', ['native', 'native-cost', 'js', 'bin-packer', 'native-isf', 'native-random', 'native-length-grouped']],
    ['synthetic:1200000', quick ? ['native', 'js', 'native-isf'] : ['native', 'js', 'bin-packer', 'native-isf']],
    ['synthetic:10000000', quick ? ['native'] : ['native', 'js']],
  ];
  console.log('omnibal bench: pack (dp 8, ~4.5 samples per pack, seed 1); balanced unless named');
  console.log('time = planning only (argument search included; reading or generating data excluded); RSS = peak of the whole case process');
  console.log('native-cost balances the text cost a*tokens + b*sum(len^2) with b = 1/4096; "cost dist b>0" measures every plan on that cost');
  console.log('bin-packer = first-fit-decreasing on text tokens (the pure-JS peer), packs dealt to ranks at random');
  for (const [data, impls] of sets) {
    const rows: (string | number)[][] = [];
    let nativeMs = 0;
    for (const impl of impls) {
      const r = runCase('pack-case.ts', [impl, data]);
      if (typeof r === 'string') {
        rows.push([impl, 'failed', '', '', '', '', '', '', '', r.slice(0, 60)]);
        continue;
      }
      if (impl === 'native') nativeMs = r.ms;
      rows.push([
        impl,
        r.ms.toFixed(1),
        impl === 'native' || nativeMs === 0 ? '' : `${(r.ms / nativeMs).toFixed(1)}x`,
        r.rssMB.toFixed(0),
        r.samplesPerPack.toFixed(2),
        r.pad.toFixed(4),
        r.visionDist.toFixed(5),
        r.textDist.toFixed(5),
        r.costDistB.toFixed(5),
        r.dropped,
      ]);
    }
    const samples = data === 'real' ? 'shared real data (60,495 samples)' : `${Number(data.split(':')[1]).toLocaleString('en-US')} synthetic samples`;
    console.log(`\n${samples}`);
    console.log(formatTable(['implementation', 'ms', 'time / native', 'peak RSS MB', 'samples/pack', 'pad', 'vision dist', 'text dist', 'cost dist b>0', 'dropped'], rows));
  }
}

const [what = 'pack', ...rest] = process.argv.slice(2);
if (what === 'pack') pack(rest.includes('--quick'));
else if (what === 'partition') benchPartition();
else if (what === 'plan') benchPlan(rest.includes('--quick'));
else {
  console.error(`unknown benchmark ${what}; known: pack, partition, plan`);
  process.exit(2);
}
