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

/**
 * Splits the sidecar's bytes into messages: lines, and the binary attachments a line declares in
 * `"$attachments"` (docs/protocol.md), each `{"$binary": k}` member of the result replaced by a
 * `Uint32Array` of attachment `k`. Throws on bytes that break the framing (a test failure).
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  /** Pieces received after `buf`, joined once `need` bytes are in (linear for large answers). */
  private later: Buffer[] = [];
  private laterBytes = 0;
  private need = 0;

  constructor(private readonly onMessage: (m: Msg | Msg[]) => void) {}

  push(bytes: Buffer): void {
    this.later.push(bytes);
    this.laterBytes += bytes.length;
    // Waiting for a newline that this piece does not hold, or for attachment bytes not all in yet.
    if (this.buf.length + this.laterBytes < this.need || (this.need === 0 && bytes.indexOf(0x0a) < 0)) return;
    this.buf = Buffer.concat([this.buf, ...this.later]);
    this.later = [];
    this.laterBytes = 0;
    this.need = 0;
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return;
      const line = this.buf.subarray(0, nl).toString('utf8');
      if (line === '') {
        this.buf = this.buf.subarray(nl + 1);
        continue;
      }
      const m = JSON.parse(line) as Msg & { $attachments?: number[] };
      let at = nl + 1;
      if (!Array.isArray(m) && m.$attachments !== undefined) {
        const total = m.$attachments.reduce((a, b) => a + b, 0);
        if (this.buf.length < at + total + 1) {
          this.need = at + total + 1; // the attachments are not all in yet
          return;
        }
        const arrays = m.$attachments.map((n) => {
          const bytes = Buffer.from(this.buf.subarray(at, at + n));
          at += n;
          return new Uint32Array(bytes.buffer, bytes.byteOffset, n / 4);
        });
        if (this.buf[at] !== 0x0a) throw new Error('attachments not followed by a newline');
        at++;
        for (const [k, v] of Object.entries(m.result ?? {})) {
          if (v && typeof v === 'object' && '$binary' in (v as object)) m.result[k] = arrays[(v as { $binary: number }).$binary];
        }
      }
      this.buf = this.buf.subarray(at);
      this.onMessage(m);
    }
  }
}

/** Collects what arrives on a line stream and matches answers to ids. */
export class Lines {
  readonly messages: (Msg | Msg[])[] = [];
  private waiters: { test: (m: Msg | Msg[]) => boolean; resolve: (m: Msg | Msg[]) => void }[] = [];

  private readonly decoder = new FrameDecoder((m) => this.add(m));

  /** Takes received bytes (whole lines, or any pieces of the byte stream). */
  push(bytes: string | Buffer): void {
    this.decoder.push(typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
  }

  private add(m: Msg | Msg[]): void {
    this.messages.push(m);
    this.waiters = this.waiters.filter((w) => {
      if (!w.test(m)) return true;
      w.resolve(m);
      return false;
    });
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
      write: (line) => this.lines.push(typeof line === 'string' ? line : Buffer.from(line)),
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

  /** Sends raw text (or bytes). */
  raw(text: string | Buffer): void {
    this.session.feed(Buffer.from(text));
  }

  /** Sends a request; resolves with its answer. */
  call(method: string, params?: unknown): Promise<Msg> {
    const id = this.nextId++;
    this.raw(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
    return this.lines.answer(id);
  }
}

/** `count` in-process sessions sharing one server context (one budget, one plan store). */
export function newContextHarnesses(options: ServeOptions, count: number): Harness[] {
  const ctx = newContext(options, () => undefined);
  return Array.from({ length: count }, () => new Harness(ctx));
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
    input.on('data', (c: Buffer) => this.lines.push(c));
    input.on('end', () => {
      this.ended = true;
    });
  }

  raw(text: string | Buffer): void {
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

/**
 * Connects to a Unix socket or `host:port`. A Unix socket refused within `refusedMs` is tried
 * again: its file appears at bind(2), a moment before listen(2), and a test that saw the file
 * (`waitFor`) on a loaded machine could connect in between (seen once in a full run).
 */
export async function connect(where: string, refusedMs = 3000): Promise<net.Socket> {
  const tcp = /^(?:\[(.+)\]|([^:/]+)):(\d+)$/.exec(where);
  const end = Date.now() + refusedMs;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const socket = tcp ? net.connect(Number(tcp[3]), tcp[1] ?? tcp[2]) : net.connect(where);
        socket.once('connect', () => resolve(socket));
        socket.once('error', reject);
      });
    } catch (error) {
      if (tcp || (error as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > end) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
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
