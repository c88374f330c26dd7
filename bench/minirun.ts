// `npm run bench -- minirun [--quick]`: omnibal's predictions against real runs on this machine.
// Runs `python -m omnibal.validate` (tiny-vlm, two gloo processes: data parallel random vs
// balanced batches, a 1F1B pipeline with the naive and the optimal splits) and the GPU check's
// CPU path (`python -m omnibal.gpu_check --tiny`: per layer, calibrated at one load, checked at
// another), and prints predicted vs measured. Needs an interpreter with PyTorch.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { formatTable } from '../src/cli/table';

const root = path.join(__dirname, '..');

function python(): string | undefined {
  const candidates = [process.env.OMNIBAL_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => Boolean(p));
  return candidates.find((py) => (!py.startsWith('/') || existsSync(py)) && spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);
}

function run(py: string, args: string[]): string {
  const r = spawnSync(py, ['-m', ...args], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, PYTHONPATH: path.join(root, 'python') }, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`python -m ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

interface Run {
  name: string;
  predictedMs: number;
  measuredMs: number;
  errorPct: number;
  predictedCpuMs?: number;
  measuredCpuMs?: number;
  cpuErrorPct?: number;
  lastLayers?: number[];
  predictedStageCpuMs?: number[];
  measuredStageCpuMs?: number[];
  samples?: number;
  steps?: number;
}

interface CheckRow {
  layer: string;
  measuredMs: number;
  uncalibratedMs: number;
  uncalibratedErrorPct: number | null;
  calibratedMs: number | null;
  checkMeasuredMs: number;
  calibratedErrorPct: number | null;
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '' : `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`);

/** Runs the mini-run and the per-layer check and prints their tables. */
export function benchMinirun(quick: boolean): void {
  const py = python();
  if (!py) {
    console.log('omnibal bench: minirun skipped: no python3 with PyTorch (set OMNIBAL_PYTHON)');
    return;
  }
  const size = quick ? ['--steps', '2', '--accum', '2', '--samples-per-pack', '2', '--pp-micro-batches', '4', '--repeats', '2'] : ['--steps', '4', '--accum', '4', '--samples-per-pack', '4', '--pp-micro-batches', '8', '--repeats', '5', '--profile-repeats', '7'];
  console.log(`omnibal bench: minirun (tiny-vlm, 2 gloo processes x 1 thread, ${quick ? 'quick' : 'full'} size; medians of repeats after a warm-up)`);
  const doc = JSON.parse(run(py, ['omnibal.validate', '--json', ...size])) as { data: string; runs: Run[]; speedups: Record<string, { predicted: number; measured: number }>; lossesMatch: boolean; calibration: { load: unknown } };
  console.log(`data: ${doc.data}; calibrated at ${JSON.stringify(doc.calibration.load)}; pipeline losses match between splits: ${doc.lossesMatch}`);
  const rows: (string | number)[][] = [];
  for (const r of doc.runs) {
    const what = r.lastLayers ? `split after layer ${r.lastLayers[0]}` : `${r.samples} samples, ${r.steps} steps`;
    rows.push([r.name, what, 'wall', r.predictedMs.toFixed(0), r.measuredMs.toFixed(0), pct(r.errorPct)]);
    if (r.predictedCpuMs !== undefined) rows.push([r.name, what, 'thread CPU', r.predictedCpuMs.toFixed(0), r.measuredCpuMs!.toFixed(0), pct(r.cpuErrorPct)]);
    (r.predictedStageCpuMs ?? []).forEach((p, s) => {
      const m = r.measuredStageCpuMs![s];
      rows.push([r.name, `stage ${s} busy`, 'thread CPU', p.toFixed(0), m.toFixed(0), pct((100 * (p - m)) / m)]);
    });
  }
  console.log(formatTable(['run', 'what', 'clock', 'predicted ms', 'measured ms', 'error'], rows));
  console.log(formatTable(['speed-up', 'predicted', 'measured'], Object.entries(doc.speedups).map(([k, v]) => [k, `${v.predicted.toFixed(2)}x`, `${v.measured.toFixed(2)}x`])));
  for (const clock of ['cpu', 'wall']) {
    const out = mkdtempSync(path.join(tmpdir(), 'omnibal-check-'));
    try {
      run(py, ['omnibal.gpu_check', '--tiny', '--clock', clock, '--repeats', quick ? '5' : '25', '--out', out]);
      const check = JSON.parse(readFileSync(path.join(out, 'check.json'), 'utf8')) as { meta: { calibrationLoads: unknown[]; checkLoad: unknown }; rows: CheckRow[] };
      console.log(`\nper layer, forward + backward (${clock === 'cpu' ? 'thread CPU time' : 'wall clock'}): uncalibrated (cpu preset) and calibrated at ${check.meta.calibrationLoads.map((l) => JSON.stringify(l)).join(' and ')} (fixed cost + cost per FLOP), checked at ${JSON.stringify(check.meta.checkLoad)}`);
      console.log(
        formatTable(
          ['layer', 'measured ms', 'uncalibrated ms', 'error', 'calibrated ms at check load', 'measured ms', 'error'],
          check.rows.map((r) => [r.layer, r.measuredMs.toFixed(2), r.uncalibratedMs.toFixed(2), pct(r.uncalibratedErrorPct), r.calibratedMs === null ? '' : r.calibratedMs.toFixed(2), r.checkMeasuredMs.toFixed(2), pct(r.calibratedErrorPct)]),
        ),
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }
}
