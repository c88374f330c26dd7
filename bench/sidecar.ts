// `npm run bench -- sidecar [--quick] [--samples N] [--only sequential|concurrent|heap|answer|sharing]`: the sidecar under load, each case against a
// fresh `omnibal serve` (the built CLI in dist/): RSS over 10,000 sequential `balance` calls,
// peak RSS under 200 concurrent mixed requests, the time to frame a 16 MB answer, and the memory
// of 8 local ranks on one Unix-socket sidecar against one stdio sidecar each.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatTable } from '../src/cli/table';
import { LineReader } from '../src/sidecar/framing';

const cli = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
const MB = 2 ** 20;

type Msg = { id?: unknown; method?: string; result?: any; error?: { code: number; message: string } };

/** A minimal JSON-RPC line client (answers matched by id). */
class Client {
  private waiting = new Map<unknown, (m: Msg) => void>();
  /** When the last line was framed, and how long parsing it took. */
  framedAt = 0;
  parseMs = 0;
  private next = 1;
  private readonly reader = new LineReader(1024 * MB, {
    line: (line) => {
      if (line === '') return;
      this.framedAt = performance.now();
      const m = JSON.parse(line) as Msg;
      this.parseMs = performance.now() - this.framedAt;
      if (m.method !== undefined) return;
      this.waiting.get(m.id)?.(m);
      this.waiting.delete(m.id);
    },
    tooLong: () => {
      throw new Error('answer over 1 GiB');
    },
  });

  constructor(private readonly out: NodeJS.WritableStream, input: NodeJS.ReadableStream) {
    // Linear framing on this side too (the sidecar's own LineReader).
    input.on('data', (c: Buffer) => this.reader.feed(c));
  }

  call(method: string, params?: unknown): Promise<Msg> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.out.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }
}

function serve(args: string[] = []): ChildProcess {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  return spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
}

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples the RSS of `pids` (summed) every 20 ms; `stop()` returns the peak. */
function peakRss(pids: () => number[]): { stop: () => number } {
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, pids().reduce((s, p) => s + rss(p), 0));
  }, 20);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, pids().reduce((s, p) => s + rss(p), 0));
    },
  };
}

function lengths(n: number, seed = 1): { vision: number[]; text: number[] } {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const vision = Array.from({ length: n }, () => Math.floor(r() * 13));
  const text = Array.from({ length: n }, () => 32 + Math.floor(r() * r() * 4000));
  return { vision, text };
}

async function close(child: ChildProcess): Promise<void> {
  child.stdin!.end();
  if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
}

/** 10,000 sequential balance calls (distinct seeds): with release, and without (LRU budget). */
async function sequential(calls: number): Promise<(string | number)[][]> {
  const rows: (string | number)[][] = [];
  const data = lengths(2000);
  for (const [label, release, args] of [
    ['release after each', true, []],
    ['no release, --max-plan-bytes 8 MiB (LRU eviction)', false, ['--max-plan-bytes', String(8 * MB)]],
    ['no release, default budget (1 GiB): grows until the budget', false, []],
  ] as const) {
    const child = serve([...args]);
    const c = new Client(child.stdin!, child.stdout!);
    const started = performance.now();
    let warm = 0;
    let half = 0;
    let last = 0;
    for (let i = 0; i < calls; i++) {
      const r = await c.call('balance', { ...data, dp: 4, samplesPerPack: 3, seed: i });
      if (!r.result) throw new Error(JSON.stringify(r.error));
      if (release) await c.call('release', { planId: r.result.planId });
      if (i === Math.floor(calls / 10)) warm = rss(child.pid!);
      if (i === Math.floor(calls / 2)) half = rss(child.pid!);
    }
    last = rss(child.pid!);
    const ms = performance.now() - started;
    await close(child);
    const growth = last / warm - 1;
    rows.push([label, calls, (ms / calls).toFixed(2), (warm / MB).toFixed(0), (half / MB).toFixed(0), (last / MB).toFixed(0), `${(growth * 100).toFixed(1)}%`, release || args.length > 0 ? (growth <= 0.2 ? 'yes' : 'NO') : 'n/a: plans held']);
  }
  return rows;
}

/** 200 concurrent mixed requests on one connection; peak RSS of the sidecar. */
async function concurrent(n: number): Promise<(string | number)[][]> {
  const child = serve();
  const c = new Client(child.stdin!, child.stdout!);
  await c.call('version');
  const problem = { model: 'internvl-chat-1.5', gpu: 'H100-80G', pp: 8, microBatches: 32, load: { tiles: 10, tokens: 4096 } };
  const data = lengths(50_000);
  const sim = { dp: 8, pp: 8, microBatches: 32, forwardMs: Array(8 * 8 * 32).fill(1), backwardMs: Array(8 * 8 * 32).fill(2), transferMs: Array(7).fill(0.1), gradBytes: Array(8).fill(1e9), allreduceBytesPerS: 1e11, activationBytes: Array(8).fill(1e8), schedule: '1f1b' };
  const meter = peakRss(() => [child.pid!]);
  const started = performance.now();
  const kinds: string[] = [];
  const calls: Promise<Msg>[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 20;
    const [method, params] =
      k < 8 ? ['balance', { ...data, dp: 8, samplesPerPack: 4.5, seed: i }] : k < 12 ? ['partition', problem] : k < 16 ? ['simulate', sim] : k < 17 ? ['plan', { simulatedSteps: 1, ablation: false, seed: i }] : ['version', undefined];
    kinds.push(method);
    calls.push(c.call(method, params));
  }
  const answers = await Promise.all(calls);
  const ms = performance.now() - started;
  const peak = meter.stop();
  await close(child);
  const failed = answers.filter((a) => a.error).map((a) => a.error!.code);
  const mix = [...new Set(kinds)].map((k) => `${kinds.filter((x) => x === k).length} ${k}`).join(', ');
  return [[n, mix, (ms / 1000).toFixed(1), (peak / MB).toFixed(0), failed.length === 0 ? 'all answered' : `${failed.length} errors (${[...new Set(failed)].join(',')})`, peak <= 1024 * MB ? 'yes' : 'NO']];
}

/** A 16 MB answer: framed by LineReader in 64 KiB chunks, and end to end (planForRank over stdio). */
async function bigAnswer(): Promise<(string | number)[][]> {
  const line = Buffer.from(`{"jsonrpc":"2.0","id":1,"result":[${Array.from({ length: 2_000_000 }, (_, i) => 1_000_000 + i).join(',')}]}\n`);
  let got = 0;
  const reader = new LineReader(64 * MB, { line: (t) => void (got = t.length), tooLong: () => undefined });
  let t0 = performance.now();
  for (let i = 0; i < line.length; i += 65536) reader.feed(line.subarray(i, i + 65536));
  const frameMs = performance.now() - t0;
  if (got !== line.length - 1) throw new Error('framing lost bytes');
  const rows: (string | number)[][] = [['LineReader, 64 KiB chunks', (line.length / MB).toFixed(1), frameMs.toFixed(1)]];

  const child = serve();
  const c = new Client(child.stdin!, child.stdout!);
  const n = 2_000_000;
  const data = lengths(n, 3);
  const b64 = (a: number[]) => ({ $base64: Buffer.from(Uint32Array.from(a).buffer).toString('base64'), dtype: 'u32' });
  const plan = await c.call('balance', { vision: b64(data.vision), text: b64(data.text), dp: 1, samplesPerPack: 4.5 });
  if (!plan.result) throw new Error(JSON.stringify(plan.error));
  t0 = performance.now();
  const r = await c.call('planForRank', { planId: plan.result.planId, rank: 0 });
  const framedMs = c.framedAt - t0;
  const bytes = JSON.stringify(r.result).length;
  const parseMs = c.parseMs;
  t0 = performance.now();
  const b = await c.call('planForRank', { planId: plan.result.planId, rank: 0, encoding: 'base64' });
  const framedB = c.framedAt - t0;
  const bytesB = JSON.stringify(b.result).length;
  await close(child);
  rows.push([`planForRank of ${n.toLocaleString('en-US')} samples, JSON lists: request to answer framed (server encode + pipe + framing)`, (bytes / MB).toFixed(1), framedMs.toFixed(1)]);
  rows.push(['  then JSON.parse of it in Node (the client decoding, not framing)', (bytes / MB).toFixed(1), parseMs.toFixed(1)]);
  rows.push([`the same, encoding base64: request to answer framed`, (bytesB / MB).toFixed(1), framedB.toFixed(1)]);
  rows.push(['  then JSON.parse of it in Node (three strings; base64 decoding not included)', (bytesB / MB).toFixed(1), c.parseMs.toFixed(1)]);
  return rows;
}

/** 8 ranks x N samples from one length file: one Unix-socket sidecar vs 8 stdio sidecars. */
async function nodeSharing(samples: number): Promise<(string | number)[][]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'omb-'));
  const file = path.join(dir, 'lengths.csv');
  const data = lengths(samples, 5);
  const out = fs.createWriteStream(file);
  out.write('vision,text\n');
  for (let i = 0; i < samples; i += 100_000) {
    let chunk = '';
    for (let j = i; j < Math.min(samples, i + 100_000); j++) chunk += `${data.vision[j]},${data.text[j]}\n`;
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  const params = { path: file, dp: 8, samplesPerPack: 4.5, seed: 1 };
  const rows: (string | number)[][] = [];

  // One sidecar on a Unix socket, 8 connections.
  const sock = path.join(dir, 's.sock');
  const shared = spawn(process.execPath, [cli, 'serve', '--listen', sock], { stdio: ['ignore', 'ignore', 'ignore'] });
  while (!fs.existsSync(sock)) await new Promise((r) => setTimeout(r, 50));
  let meter = peakRss(() => [shared.pid!]);
  let t0 = performance.now();
  const sockets = await Promise.all(Array.from({ length: 8 }, () => new Promise<net.Socket>((res) => { const s = net.connect(sock, () => res(s)); })));
  await Promise.all(
    sockets.map(async (s, rank) => {
      const c = new Client(s, s);
      const p = await c.call('balance', params);
      if (!p.result) throw new Error(JSON.stringify(p.error));
      await c.call('planForRank', { planId: p.result.planId, rank });
    }),
  );
  let ms = performance.now() - t0;
  let peak = meter.stop();
  const held = rss(shared.pid!);
  for (const s of sockets) s.destroy();
  shared.kill('SIGTERM');
  await new Promise((r) => shared.once('exit', r));
  rows.push(['1 sidecar on a Unix socket, 8 connections', (ms / 1000).toFixed(1), (peak / MB).toFixed(0), (held / MB).toFixed(0)]);

  // One stdio sidecar per rank.
  const children = Array.from({ length: 8 }, () => serve());
  meter = peakRss(() => children.map((c) => c.pid!));
  t0 = performance.now();
  await Promise.all(
    children.map(async (child, rank) => {
      const c = new Client(child.stdin!, child.stdout!);
      const p = await c.call('balance', params);
      if (!p.result) throw new Error(JSON.stringify(p.error));
      await c.call('planForRank', { planId: p.result.planId, rank });
    }),
  );
  ms = performance.now() - t0;
  peak = meter.stop();
  const heldAll = children.reduce((s, c) => s + rss(c.pid!), 0);
  await Promise.all(children.map(close));
  rows.push(['8 stdio sidecars, one per rank', (ms / 1000).toFixed(1), (peak / MB).toFixed(0), (heldAll / MB).toFixed(0)]);
  fs.rmSync(dir, { recursive: true, force: true });
  return rows;
}

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`). */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system, all threads) that process `pid` has used so far (Linux). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * A stdio sidecar started as `omnibal serve` starts it, with or without `pinHeapShape()`
 * (src/sidecar/heap.ts), on the `backend` given: the one difference between the two is the pinning.
 */
function serveHeap(pin: boolean, backend: string): ChildProcess {
  const dir = path.join(__dirname, '..', 'dist', 'src', 'sidecar');
  const script = `${pin ? `require(${JSON.stringify(path.join(dir, 'heap.js'))}).pinHeapShape();` : ''}require(${JSON.stringify(path.join(dir, 'server.js'))}).serveStdio().then(() => process.exit(0));`;
  return spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, OMNIBAL_BACKEND: backend } });
}

/**
 * What pinning the heap costs in CPU: a fixed batch of `balance` calls (many small ones with
 * `release`, then a few large ones) against a sidecar with and without the pinning, on the
 * JavaScript twins (`OMNIBAL_BACKEND=js`, where the planner itself runs on the pinned heap) and
 * natively; rounds alternate the two so load on a shared machine hits both alike.
 */
async function heapPinning(rounds: number, small: number, large: number): Promise<(string | number)[][]> {
  const smallData = lengths(2000);
  const b64 = (a: number[]) => ({ $base64: Buffer.from(Uint32Array.from(a).buffer).toString('base64'), dtype: 'u32' });
  const big = lengths(large, 7);
  const largeData = { vision: b64(big.vision), text: b64(big.text) };
  const rows: (string | number)[][] = [];
  for (const backend of ['js', 'native']) {
    const cpu = { pinned: [] as number[][], unpinned: [] as number[][] };
    const held = { pinned: 0, unpinned: 0 };
    for (let round = 0; round < rounds; round++) {
      for (const pin of round % 2 === 0 ? [true, false] : [false, true]) {
        const child = serveHeap(pin, backend);
        const c = new Client(child.stdin!, child.stdout!);
        await c.call('balance', { ...smallData, dp: 4, samplesPerPack: 3, seed: 0 });
        const before = cpuSeconds(child.pid!);
        for (let i = 0; i < small; i++) {
          const r = await c.call('balance', { ...smallData, dp: 4, samplesPerPack: 3, seed: i + 1 });
          if (!r.result) throw new Error(JSON.stringify(r.error));
          await c.call('release', { planId: r.result.planId });
        }
        const between = cpuSeconds(child.pid!);
        for (let i = 0; i < 3; i++) {
          const r = await c.call('balance', { ...largeData, dp: 8, samplesPerPack: 4.5, seed: i });
          if (!r.result) throw new Error(JSON.stringify(r.error));
          await c.call('release', { planId: r.result.planId });
        }
        const after = cpuSeconds(child.pid!);
        cpu[pin ? 'pinned' : 'unpinned'].push([between - before, after - between, after - before]);
        held[pin ? 'pinned' : 'unpinned'] = Math.max(held[pin ? 'pinned' : 'unpinned'], rss(child.pid!));
        await close(child);
      }
    }
    // The median of an even count is the mean of the middle two.
    const median = (a: number[]) => {
      const x = [...a].sort((p, q) => p - q);
      return (x[(x.length - 1) >> 1] + x[x.length >> 1]) / 2;
    };
    const name = backend === 'js' ? 'JS twins (OMNIBAL_BACKEND=js)' : 'native';
    ['small calls', 'large calls', 'all'].forEach((phase, k) => {
      const p = cpu.pinned.map((r) => r[k]);
      const u = cpu.unpinned.map((r) => r[k]);
      const cost = `${(100 * (median(p) / median(u) - 1)).toFixed(1)}%`;
      const list = (a: number[]) => a.map((x) => x.toFixed(2)).join(' ');
      rows.push([`${name}, ${phase}`, list(p), list(u), cost, k === 2 ? (held.pinned / MB).toFixed(0) : '', k === 2 ? (held.unpinned / MB).toFixed(0) : '']);
    });
  }
  return rows;
}

/** Runs every sidecar case and prints the tables. */
export async function benchSidecar(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const at = args.indexOf('--samples');
  const samples = at >= 0 ? Number(args[at + 1]) : quick ? 200_000 : 1_000_000;
  console.log('omnibal bench: sidecar (omnibal serve from dist/, native backend); RSS read from /proc/PID/status');

  const o = args.indexOf('--only');
  const run = (name: string) => o < 0 || args[o + 1] === name;

  const calls = quick ? 2000 : 10_000;
  if (run('sequential')) console.log(`\n${calls.toLocaleString('en-US')} sequential balance calls, 2,000 samples each, distinct seeds (target: RSS growth <= 20% after the first tenth)`);
  if (run('sequential')) console.log(formatTable(['case', 'calls', 'ms/call', 'RSS MB at 1/10', 'RSS MB at 1/2', 'RSS MB at end', 'growth from 1/10', '<= 20%'], await sequential(calls)));

  if (run('concurrent')) console.log('\n200 concurrent mixed requests on one connection (balance: 50,000 samples each, distinct seeds; plan: simulatedSteps 1, no ablation) (target: peak RSS <= 1 GB)');
  if (run('concurrent')) console.log(formatTable(['requests', 'mix', 'wall s', 'peak RSS MB', 'answers', '<= 1 GB'], await concurrent(200)));

  if (run('heap')) {
    const [rounds, small, large] = quick ? [2, 200, 100_000] : [4, 1000, 500_000];
    console.log(`\nHeap pinning (src/sidecar/heap.ts): CPU s of the sidecar for ${small.toLocaleString('en-US')} balance calls of 2,000 samples (each released) + 3 of ${large.toLocaleString('en-US')} samples, per round; rounds alternate pinned / unpinned`);
    console.log(formatTable(['backend', 'pinned CPU s', 'unpinned CPU s', 'pinned / unpinned - 1 (medians)', 'RSS MB at end, pinned (max)', 'RSS MB at end, unpinned (max)'], await heapPinning(rounds, small, large)));
  }

  if (run('answer')) console.log('\nA 16 MB answer (target: read in <= 1 s)');
  if (run('answer')) console.log(formatTable(['what', 'MB', 'ms'], await bigAnswer()));
  if (!run('sharing')) return;

  console.log(`\n8 local ranks, ${samples.toLocaleString('en-US')} samples in one CSV file, balance (dp 8) + planForRank per rank`);
  const rows = await nodeSharing(samples);
  console.log(formatTable(['setup', 'wall s', 'peak RSS MB (sum)', 'RSS MB after (sum)'], rows));
  if (samples < 10_000_000) {
    const f = 10_000_000 / samples;
    const one = Number(rows[0][2]);
    const eight = Number(rows[1][2]);
    console.log(
      `extrapolated to 10,000,000 samples (linear in samples above a ~60 MB baseline per process; a prediction, not a measurement): ` +
        `one sidecar ~${Math.round(60 + (one - 60) * f)} MB, 8 sidecars ~${Math.round(8 * 60 + (eight - 8 * 60) * f)} MB`,
    );
  }
}
