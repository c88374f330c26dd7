// `npm run bench -- read [--lines N]`: reading length files and the whole CLI on them.
// Writes an N-line JSON Lines file (default 10 million, ~520 MB) under the OS temp folder at
// bench time, times the native reader, the TypeScript twin (up to 2 million lines) and
// `omnibal pack` end to end (process start, read, plan, metrics, table), then deletes the file.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
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

/** Runs node with `args`: wall ms, and CPU ms (user + sys, all threads) where GNU time exists. */
function timed(args: string[], env: NodeJS.ProcessEnv = {}): { ms: number; cpuMs?: number; ok: boolean; out: string } {
  const withTime = existsSync(TIME);
  const [cmd, argv] = withTime ? [TIME, ['-f', 'cpu %U %S', process.execPath, ...args]] : [process.execPath, args];
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr ?? '');
  const stderr = m ? r.stderr.slice(0, m.index) : r.stderr;
  return { ms, cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : undefined, ok: r.status === 0, out: (r.stdout + stderr).trim() };
}

const cpu = (r: { cpuMs?: number }) => (r.cpuMs === undefined ? '' : r.cpuMs.toFixed(0));

export function benchRead(argv: string[]): void {
  const at = argv.indexOf('--lines');
  const n = at >= 0 ? Number(argv[at + 1]) : 10_000_000;
  const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-bench-read-'));
  const file = path.join(dir, 'lengths.jsonl');
  const root = path.resolve(__dirname, '..');
  try {
    writeLines(file, n);
    const reader = (backend: string) =>
      timed(['--import', 'tsx', '-e', `require(${JSON.stringify(path.join(root, 'src/io/samples'))}).readSamples([${JSON.stringify(file)}]).then((s) => console.log(s.text.length))`], {
        OMNIBAL_BACKEND: backend,
      });
    const rows: (string | number)[][] = [];
    const start = timed(['-e', '0']);
    rows.push(['node start (baseline)', start.ms.toFixed(0), cpu(start), '']);
    const nat = reader('native');
    rows.push(['readSamples, native (tsx start included)', nat.ms.toFixed(0), cpu(nat), nat.ok ? nat.out : nat.out.slice(0, 60)]);
    if (n <= 2_000_000) {
      const js = reader('js');
      rows.push(['readSamples, TypeScript twin (tsx start included)', js.ms.toFixed(0), cpu(js), js.ok ? js.out : js.out.slice(0, 60)]);
    }
    const cli = timed([path.join(root, 'dist/src/cli/main.js'), 'pack', '--input', file, '--dp', '8', '--samples-per-pack', '4.5']);
    rows.push(['omnibal pack, whole CLI (dist)', cli.ms.toFixed(0), cpu(cli), cli.ok ? 'ok' : cli.out.slice(0, 60)]);
    console.log(`omnibal bench: read, ${n.toLocaleString('en-US')} JSON lines; load average ${loadavg()[0].toFixed(1)} (a busy machine inflates wall times; CPU is user + sys of every thread)`);
    console.log(formatTable(['what', 'wall ms', 'CPU ms (all threads)', 'result'], rows));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
