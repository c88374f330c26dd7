// `npm run bench -- read [--lines N]`: reading length files and the whole CLI on them.
// Writes an N-line JSON Lines file (default 10 million, ~520 MB) under the OS temp folder at
// bench time, times the native reader, the TypeScript twin (up to 2 million lines),
// `omnibal pack` end to end (process start, read, plan, metrics, then the table, `--json` to a
// file, or `--out`) with each run's peak RSS against the targets (<= 3 s wall, <= 460 MiB at
// 10M lines), and the phases of one `--json` run; then deletes the files.
import { spawnSync, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { formatTable } from '../src/cli/table';

function writeLines(file: string, n: number): void {
  const fd = openSync(file, 'w');
  let x = 12345;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648);
  let batch: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = 1 + (next() % 6);
    batch.push(`{"vit_num": ${v}, "token_num": ${100 + 256 * v + (next() % 1200)}, "image_flags": ${v}}`);
    if (batch.length === 100_000 || i === n - 1) {
      writeSync(fd, `${batch.join('\n')}\n`);
      batch = [];
    }
  }
  closeSync(fd);
}

const TIME = '/usr/bin/time';

interface Timed {
  ms: number;
  cpuMs?: number;
  rssMiB?: number;
  ok: boolean;
  out: string;
}

/** Runs node with `args`: wall ms, and CPU ms (user + sys, all threads) and peak RSS where GNU time exists. */
function timed(args: string[], env: NodeJS.ProcessEnv = {}, stdout?: number): Timed {
  const withTime = existsSync(TIME);
  const [cmd, argv] = withTime ? [TIME, ['-f', 'cpu %U %S %M', process.execPath, ...args]] : [process.execPath, args];
  const stdio: StdioOptions = ['ignore', stdout ?? 'pipe', 'pipe'];
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26, stdio });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const m = /cpu ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(r.stderr ?? '');
  const stderr = m ? r.stderr.slice(0, m.index) : r.stderr;
  return {
    ms,
    cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : undefined,
    rssMiB: m ? Number(m[3]) / 1024 : undefined,
    ok: r.status === 0,
    out: ((r.stdout ?? '') + stderr).trim(),
  };
}

const cpu = (r: { cpuMs?: number }) => (r.cpuMs === undefined ? '' : r.cpuMs.toFixed(0));
const rss = (r: { rssMiB?: number }) => (r.rssMiB === undefined ? '' : r.rssMiB.toFixed(0));

export function benchRead(argv: string[]): void {
  const at = argv.indexOf('--lines');
  const n = at >= 0 ? Number(argv[at + 1]) : 10_000_000;
  const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-bench-read-'));
  const file = path.join(dir, 'lengths.jsonl');
  const json = path.join(dir, 'plan.json');
  const root = path.resolve(__dirname, '..');
  const main = path.join(root, 'dist/src/cli/main.js');
  try {
    writeLines(file, n);
    const reader = (backend: string) =>
      timed(['--import', 'tsx', '-e', `require(${JSON.stringify(path.join(root, 'src/io/samples'))}).readSamples([${JSON.stringify(file)}]).then((s) => console.log(s.text.length))`], {
        OMNIBAL_BACKEND: backend,
      });
    const rows: (string | number)[][] = [];
    const row = (what: string, r: Timed, result: string, target = '') => rows.push([what, r.ms.toFixed(0), cpu(r), rss(r), target, r.ok ? result : r.out.slice(0, 60)]);
    row('node start (baseline)', timed(['-e', '0']), '');
    row('omnibal --version (CLI start)', timed([main, '--version']), 'ok');
    const nat = reader('native');
    row('readSamples, native (tsx start included)', nat, nat.out);
    if (n <= 2_000_000) {
      const js = reader('js');
      row('readSamples, TypeScript twin (tsx start included)', js, js.out);
    }
    const pack = ['pack', '--input', file, '--dp', '8', '--samples-per-pack', '4.5'];
    const targets = (r: Timed) => (n === 10_000_000 ? `${r.ms <= 3000 ? 'ok' : 'OVER'} 3 s, ${r.rssMiB === undefined ? '?' : r.rssMiB <= 460 ? 'ok' : 'OVER'} 460 MiB` : '');
    const table = timed([main, ...pack]);
    row('omnibal pack (table)', table, 'ok', targets(table));
    const fd = openSync(json, 'w');
    const withJson = timed([main, ...pack, '--json'], {}, fd);
    closeSync(fd);
    row('omnibal pack --json > file', withJson, `${(statSync(json).size / 2 ** 20).toFixed(0)} MiB`, targets(withJson));
    rmSync(json, { force: true });
    const out = timed([main, ...pack, '--out', json]);
    row('omnibal pack --out file (+ table)', out, `${(statSync(json).size / 2 ** 20).toFixed(0)} MiB`, targets(out));
    rmSync(json, { force: true });
    console.log(`omnibal bench: read, ${n.toLocaleString('en-US')} JSON lines; load average ${loadavg()[0].toFixed(1)} on ${cpus().length} CPUs (a busy machine inflates wall times; CPU is user + sys of every thread)`);
    console.log(formatTable(['what', 'wall ms', 'CPU ms (all threads)', 'peak RSS MiB', 'target', 'result'], rows));
    // The same work as `pack --json`, phase by phase, in one process.
    const phases = timed(['--import', 'tsx', path.join(__dirname, 'read-phases.ts'), file, json]);
    if (!phases.ok) console.log(`\nphases: failed: ${phases.out.slice(0, 200)}`);
    else {
      const p = JSON.parse(phases.out.split('\n').pop()!) as Record<string, [number, number]> & { rssMB: number };
      const names = Object.keys(p).filter((k) => k !== 'rssMB');
      console.log(`\nphases of pack --json in one process (balanced, dp 8, 4.5 samples per pack, the default model cost; peak RSS ${p.rssMB.toFixed(0)} MiB)`);
      console.log(formatTable(['phase', 'wall ms', 'CPU ms (all threads)'], names.map((k) => [k, p[k][0].toFixed(0), p[k][1].toFixed(0)])));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
