// Test harness of the sidecar suites: an in-process session with a recording transport, and a
// line client for a spawned `omnibal serve` (stdio or socket).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { newContext, Session, type ConnectionKind, type ServeOptions, type ServerContext } from '../src/sidecar/server';
import { cli } from './helpers';

/** A JSON-RPC message as received. */
export type Msg = { jsonrpc: string; id?: string | number | null; result?: any; error?: { code: number; message: string; data?: any }; method?: string; params?: any };

/** Collects what arrives on a line stream and matches answers to ids. */
export class Lines {
  readonly messages: (Msg | Msg[])[] = [];
  private waiters: { test: (m: Msg | Msg[]) => boolean; resolve: (m: Msg | Msg[]) => void }[] = [];

  push(text: string): void {
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const m = JSON.parse(line) as Msg | Msg[];
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => {
        if (!w.test(m)) return true;
        w.resolve(m);
        return false;
      });
    }
  }

  /** The first message (past or future) passing `test`. */
  next(test: (m: Msg | Msg[]) => boolean, timeoutMs = 60_000): Promise<Msg | Msg[]> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer in time')), timeoutMs);
      this.waiters.push({
        test,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** The answer to `id`. */
  answer(id: string | number | null, timeoutMs?: number): Promise<Msg> {
    return this.next((m) => !Array.isArray(m) && m.method === undefined && m.id === id, timeoutMs) as Promise<Msg>;
  }
}

/** An in-process session with a recording transport. */
export class Harness {
  readonly lines = new Lines();
  readonly session: Session;
  closed = false;
  private nextId = 1;

  constructor(
    readonly ctx: ServerContext,
    kind: ConnectionKind = 'stdio',
  ) {
    this.session = new Session(ctx, kind, {
      write: (line) => this.lines.push(line.toString()),
      pendingBytes: () => 0,
      setReading: () => undefined,
      close: () => {
        this.closed = true;
      },
    });
  }

  static create(options: ServeOptions = {}, kind: ConnectionKind = 'stdio', token?: string): Harness {
    return new Harness(newContext(options, () => undefined, token), kind);
  }

  /** Sends raw text. */
  raw(text: string): void {
    this.session.feed(Buffer.from(text));
  }

  /** Sends a request; resolves with its answer. */
  call(method: string, params?: unknown): Promise<Msg> {
    const id = this.nextId++;
    this.raw(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
    return this.lines.answer(id);
  }
}

/** A line client over a readable/writable pair (a socket, or a child's stdio). */
export class LineClient {
  readonly lines = new Lines();
  private nextId = 1;
  ended = false;

  constructor(
    private readonly out: Writable,
    input: Readable,
  ) {
    let rest = '';
    input.setEncoding('utf8');
    input.on('data', (c: string) => {
      const text = rest + c;
      const cut = text.lastIndexOf('\n');
      rest = text.slice(cut + 1);
      if (cut >= 0) this.lines.push(text.slice(0, cut + 1));
    });
    input.on('end', () => {
      this.ended = true;
    });
  }

  raw(text: string): void {
    this.out.write(text);
  }

  call(method: string, params?: unknown, timeoutMs?: number): Promise<Msg> {
    const id = this.nextId++;
    this.raw(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
    return this.lines.answer(id, timeoutMs);
  }
}

/** `omnibal serve ARGS` from the built CLI. */
export function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { stderrText: () => string } {
  const child = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, OMNIBAL_TOKEN: undefined, ...env } });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (err += c));
  return Object.assign(child, { stderrText: () => err });
}

/** Resolves with the exit code (or signal) of `child`. */
export function exited(child: ChildProcess, timeoutMs = 30_000): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('still running')), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? String(signal));
    });
  });
}

/** Waits until `file` exists. */
export async function waitFor(file: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (Date.now() > end) throw new Error(`${file} did not appear`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Connects to a Unix socket or `host:port`. */
export function connect(where: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const m = /^(?:\[(.+)\]|([^:/]+)):(\d+)$/.exec(where);
    const socket = m ? net.connect(Number(m[3]), m[1] ?? m[2]) : net.connect(where);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A fresh temporary directory (short, for socket paths). */
export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'omsc-'));
}

/** The resident set size of process `pid`, bytes (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}
