/**
 * `omnibal serve`: a JSON-RPC 2.0 sidecar, one JSON object per line, on stdin/stdout (logs on
 * stderr) or on a Unix socket / loopback TCP port. See `docs/protocol.md` for every method.
 *
 * Structure: {@link LineReader} frames bytes into lines in linear time; every request is checked
 * against its method's JSON Schema ({@link validateParams}) before any handler runs; long calls go
 * through one bounded {@link TaskPool}; plans live in a shared, refcounted, byte-bounded
 * {@link PlanStore} under random handles owned by their connection. A connection whose client does
 * not read stops being read (backpressure); a closed connection cancels its queued work and
 * releases its plans; on stdio the sidecar exits when its client is gone.
 *
 * @module
 */
import { constants as bufferConstants } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { backend } from '../binding';
import { outOfRange } from '../errors';
import { batchMetrics, planBatchesAsync, type Samples } from '../data/index';
import { formatOf, readSamples, type SamplesFormat } from '../io/samples';
import { partitionStagesAsync, vlmStageProblem, type StageProblem } from '../model/index';
import { searchStages, type StageSearch } from '../model/search';
import { layoutCandidates } from '../plan/layout';
import { simulateStep } from '../simulate/index';
import { version } from '../package';
import { attachMicroBatchArrays, bindAttachments, encodeMicroBatchArrays, encodeMicroBatchLists, encodeU32, littleEndianBytes, MAX_ATTACHMENTS, RawJson, toU32, U32Attachment } from './codec';
import { RpcError, RpcErrors, SidecarCodes, limitError, paramsError, sanitizeFileError, toRpcError } from './errors';
import { LineReader, looksLikeHttp, recoverId, startsLikeHttp, trailingAttachments, type AttachmentFrame } from './framing';
import { clearStaleSocket, listenUnix, parseListen, serverToken, tokenMatches, writeTokenFile } from './listen';
import { PlanStore, newHandle, type StoredPlan } from './plan-store';
import { RequestBytes } from './request-bytes';
import { attachmentParams, isMethod, validateParams } from './schemas';
import { PlanWorkers, TaskPool, type PoolTask, type TaskControl } from './task-pool';

export { RpcErrors } from './errors';
export { parseListen } from './listen';

/** Sidecar limits and settings. */
export interface ServeOptions {
  /** Longest request line (with its attachments), bytes; default 64 MiB, at most `buffer.constants.MAX_STRING_LENGTH` (~512 MiB). */
  maxLineBytes?: number;
  /** Most samples in one request; default 20 million. */
  maxSamples?: number;
  /** Largest length file `path`/`paths` may name, bytes each; default 2 GiB (a 20-million-line JSON Lines file is under 1 GiB). */
  maxFileBytes?: number;
  /** Byte budget of the plan store (plans and their samples); default 1 GiB. */
  maxPlanBytes?: number;
  /** Long calls running at once (and `plan` worker threads); default min(2, CPUs). */
  workers?: number;
  /** Long calls waiting, server-wide; default 256. */
  maxQueue?: number;
  /** A connection is not read while more than this many answer bytes wait to be sent; default 64 MiB. */
  maxPendingOutputBytes?: number;
  /** A connection is not read while this many of its requests are unanswered; default 1024. */
  maxInFlight?: number;
  /**
   * Byte budget of requests held in memory, all connections together: received and not yet
   * answered (queued or running), lines being received, declared attachments; default 1 GiB.
   * Connections that want more are not read until bytes are released (see {@link RequestBytes}).
   */
  maxQueuedBytes?: number;
  /** Where a socket sidecar writes `{"listen", "token", "pid"}` (mode 0600). */
  tokenFile?: string;
}

type Limits = Required<Omit<ServeOptions, 'tokenFile'>>;

/** Longest string Node.js can make: the most `--max-line-bytes` may be. */
const MAX_STRING_LENGTH = bufferConstants.MAX_STRING_LENGTH;

function resolveLimits(o: ServeOptions): Limits {
  // A line is made a string, and an attachment a Buffer: a limit above the longest string Node.js
  // can make (~512 MiB) let one request crash the sidecar (`$attachments: [5e9]` and one byte).
  if (o.maxLineBytes !== undefined && o.maxLineBytes > MAX_STRING_LENGTH) {
    throw outOfRange('maxLineBytes', `must be at most ${MAX_STRING_LENGTH} bytes (the longest string Node.js can make of a line), got ${o.maxLineBytes}`);
  }
  return {
    maxLineBytes: o.maxLineBytes ?? 64 * 2 ** 20,
    maxSamples: o.maxSamples ?? 20_000_000,
    maxFileBytes: o.maxFileBytes ?? 2 * 2 ** 30,
    maxPlanBytes: o.maxPlanBytes ?? 2 ** 30,
    workers: o.workers ?? Math.max(1, Math.min(2, os.availableParallelism())),
    maxQueue: o.maxQueue ?? 256,
    maxPendingOutputBytes: o.maxPendingOutputBytes ?? 64 * 2 ** 20,
    maxInFlight: o.maxInFlight ?? 1024,
    maxQueuedBytes: o.maxQueuedBytes ?? 2 ** 30,
  };
}

/** What every connection of one server shares. */
export interface ServerContext {
  limits: Limits;
  store: PlanStore;
  pool: TaskPool;
  workers: PlanWorkers;
  /** Bytes of requests held, all connections together, within `--max-queued-bytes`. */
  requestBytes: RequestBytes;
  /** The token of a socket server (absent on stdio, or on a Unix socket without one). */
  token?: string;
  shutdown: () => void;
}

/** The shared state of one server: limits, plan store, task pool, `plan` workers, token. */
export function newContext(options: ServeOptions, shutdown: () => void, token?: string): ServerContext {
  const limits = resolveLimits(options);
  return { limits, store: new PlanStore(limits.maxPlanBytes), pool: new TaskPool(limits.workers, limits.maxQueue), workers: new PlanWorkers(), requestBytes: new RequestBytes(limits.maxQueuedBytes), token, shutdown };
}

/** How a connection came in. */
export type ConnectionKind = 'stdio' | 'unix' | 'tcp';

/** What a session needs from its transport. */
export interface Transport {
  /** Writes one line. */
  write(line: string | Buffer): void;
  /** Bytes written but not yet sent. */
  pendingBytes(): number;
  /** Stops or restarts reading. */
  setReading(on: boolean): void;
  /** Closes the connection (socket) or ends the sidecar (stdio). */
  close(): void;
  /** Closes the connection once the bytes written so far are sent (default: {@link Transport.close}). */
  end?(): void;
}

type Id = string | number | null;
type Response = { jsonrpc: '2.0'; id: Id; result?: unknown; error?: { code: number; message: string; data?: unknown } };

/**
 * What this sidecar supports beyond `omnibal-rpc/1` as first published, answered by `version`
 * (docs/protocol.md, "version"): a client checks the ones it needs instead of meeting -32602 or
 * parse errors from an older sidecar. Only ever added to; an incompatible change bumps the
 * protocol's number.
 */
export const CAPABILITIES = ['base64', 'batch', 'binary-attachments', 'cancel', 'carry', 'half-close', 'plan', 'queued-bytes', 'release', 'search', 'searchLayout'] as const;

const LONG_METHODS = new Set(['pack', 'balance', 'partition', 'simulate', 'plan', 'searchLayout']);
/** Longest partial line an unauthenticated TCP connection may hold (its first line is `auth`). */
const MAX_UNAUTHENTICATED_LINE_BYTES = 4096;
/** Most searches one connection may hold. */
const MAX_SEARCHES = 64;

/** Whether a parsed message declares binary attachments (a top-level `"$attachments"` member). */
function hasAttachments(m: unknown): boolean {
  return m !== null && typeof m === 'object' && !Array.isArray(m) && Object.prototype.hasOwnProperty.call(m, '$attachments');
}

/** -32600: the bytes after a request's declared attachments are not its closing `\n`. */
function misframedError(total: number): RpcError {
  return new RpcError(RpcErrors.INVALID_REQUEST, `invalid request: the ${total} attachment bytes "$attachments" declares are not followed by "\\n" (a length that does not match the bytes sent); skipped to the next line`, { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
}

function errorResponse(id: Id, e: RpcError): Response {
  return { jsonrpc: '2.0', id, error: { code: e.rpcCode, message: e.message, ...(e.data ? { data: e.data } : {}) } };
}

/** One answer as JSON text; a {@link RawJson} result is spliced in as is. */
function encodeAnswer(msg: Response): string | Buffer {
  if (!(msg.result instanceof RawJson)) return JSON.stringify(msg);
  return Buffer.concat([Buffer.from(`{"jsonrpc":"2.0","id":${JSON.stringify(msg.id)},"result":`), msg.result.bytes, Buffer.from('}')]);
}

/**
 * An answer whose result holds {@link U32Attachment}s (top-level members, `encoding: "binary"`)
 * as its line, with `"$attachments"` and `{"$binary": k}` references, then each array's bytes
 * (a Buffer over the array's own memory on a little-endian host: not copied), then the closing
 * `\n`; `undefined` for any other message.
 */
function encodeWithAttachments(msg: object): (string | Buffer)[] | undefined {
  const result = (msg as Response).result;
  if (Array.isArray(msg) || result === null || typeof result !== 'object' || !Object.values(result).some((v) => v instanceof U32Attachment)) return undefined;
  const bytes: Buffer[] = [];
  const json = JSON.stringify(result, (_key, v: unknown) => {
    if (!(v instanceof U32Attachment)) return v;
    bytes.push(littleEndianBytes(v.array));
    return { $binary: bytes.length - 1, dtype: 'u32' };
  });
  const line = `{"jsonrpc":"2.0","id":${JSON.stringify((msg as Response).id)},"result":${json},"$attachments":[${bytes.map((b) => b.length).join(',')}]}\n`;
  return [line, ...bytes, '\n'];
}

/** A message (or a batch of answers) as one line. */
function encodeLine(msg: object): string | Buffer {
  if (Array.isArray(msg)) {
    const parts = (msg as Response[]).map(encodeAnswer);
    return Buffer.concat([Buffer.from('['), ...parts.flatMap((x, i) => [Buffer.from(i > 0 ? ',' : ''), typeof x === 'string' ? Buffer.from(x) : x]), Buffer.from(']\n')]);
  }
  const text = encodeAnswer(msg as Response);
  return typeof text === 'string' ? `${text}\n` : Buffer.concat([text, Buffer.from('\n')]);
}

/** Stat-checks length files before reading: regular files only, within the byte limit. */
function checkFiles(files: string[], asPaths: boolean, limits: Limits): fs.Stats[] {
  return files.map((file, i) => {
    const field = asPaths ? `paths[${i}]` : 'path';
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (error) {
      throw paramsError(field, `cannot be read (${(error as { code?: string }).code ?? 'error'})`, 'ERR_OMNIBAL_PARSE');
    }
    if (!st.isFile()) throw paramsError(field, `must name a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'a device or socket'} was given)`, 'ERR_OMNIBAL_INVALID_TYPE');
    if (st.size > limits.maxFileBytes) throw limitError(`${field} is ${st.size} bytes, over the limit of ${limits.maxFileBytes} (--max-file-bytes)`);
    return st;
  });
}

function u32Length(v: unknown): number {
  if (Array.isArray(v) || v instanceof Uint32Array) return v.length;
  // Neither form (`{"dtype": "u32"}` alone passes the schema): 0 here, and toU32 names the forms.
  const b = (v as { $base64?: unknown }).$base64;
  return typeof b === 'string' ? Math.floor((b.length * 3) / 4 / 4) : 0;
}

/** One connection: frames, checks and answers its requests. */
export class Session {
  private readonly reader: LineReader;
  private readonly pending = new Map<string | number, () => void>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly searches = new Map<string, StageSearch>();
  private authenticated: boolean;
  private closed = false;
  /** No more requests are taken: those received are answered, then the connection closes. */
  private ending = false;
  private firstBytes = true;
  private sawLine = false;
  private reading = true;
  /** Received bytes not yet framed: held while the connection is not read (backpressure). */
  private readonly held: Buffer[] = [];
  /** Attachment bytes a request line declared, not yet reserved in the shared {@link RequestBytes}. */
  private frameNeed = 0;
  /** Bytes reserved for the request whose attachments are being read (its line and attachments). */
  private frameHeld = 0;
  /** Bytes of this connection's requests queued or running. */
  private requestHeld = 0;
  /** What this connection last recorded in the shared {@link RequestBytes}: held, framed. */
  private recorded = [0, 0];
  /** Not read until the shared {@link RequestBytes} has room. */
  private budgetBlocked = false;
  /** An overdraft ended during a feed: stop there and check the room again. */
  private overdraftEnded = false;
  /** Whether the bytes received so far end with a newline (none received: true). */
  private endsLine = true;

  constructor(
    private readonly ctx: ServerContext,
    private readonly kind: ConnectionKind,
    private readonly transport: Transport,
  ) {
    this.authenticated = kind !== 'tcp';
    this.reader = new LineReader(ctx.limits.maxLineBytes, {
      line: (text, bytes) => this.onLine(text, bytes),
      tooLong: (head) => {
        this.endOverdraft();
        if (this.firstLine(head)) return;
        if (!this.authenticated) return this.refuse(null);
        this.send(errorResponse(recoverId(head), limitError(`line longer than ${ctx.limits.maxLineBytes} bytes (--max-line-bytes); skipped`)));
      },
      // The attachments an over-long request line declares are skipped with it (answered once,
      // above); a malformed declaration leaves where the request ends unknown: nothing more is read.
      tooLongEnd: (tail) => {
        if (this.closed || this.ending) return;
        const lengths = trailingAttachments(tail);
        if (lengths === 'malformed') return this.endAfterAnswers();
        if (lengths) return { lengths, keep: false, done: () => undefined };
      },
    });
  }

  /** Feeds received bytes. */
  feed(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    if (this.firstBytes && this.kind !== 'stdio') {
      this.firstBytes = false;
      // Only the first line's bytes: an HTTP line after a short request is a later line (its
      // requests before it are answered, see firstLine).
      const head = chunk.subarray(0, 64);
      const nl = head.indexOf(0x0a);
      if (looksLikeHttp(head.subarray(0, nl === -1 ? head.length : nl).toString('latin1'))) return this.close();
    }
    if (chunk.length > 0) this.endsLine = chunk[chunk.length - 1] === 0x0a;
    this.held.push(chunk);
    this.pump();
  }

  /**
   * Hands held bytes to the line reader while the connection is read. One chunk may hold many
   * small requests with large answers, and answers come in later ticks: after a line that leaves
   * a request in flight, the rest waits a turn of the event loop (its answer is written and
   * counted first), and waits for the client while it is behind, so what is queued stays within
   * the output limit plus one answer.
   */
  private pump(): void {
    const before = this.inFlight.size;
    const stop = () => this.closed || this.ending || !this.reading || this.inFlight.size > before || this.overdraftEnded || (this.frameNeed > 0 && !this.admitFrame());
    for (;;) {
      this.overdraftEnded = false;
      if (this.held.length === 0 || stop()) break;
      // Within the shared budget of request bytes: a line's bytes as they come; none left: wait
      // until some are released. Unbudgeted: attachments (reserved whole when their line
      // declared them), a line being skipped (it holds nothing), and a TCP line before `auth`
      // (held to its own few KiB below, so stalled strangers can neither fill the budget nor
      // take its overdraft).
      const room = this.reader.inAttachments || this.reader.inSkip || !this.authenticated ? Infinity : this.ctx.requestBytes.room(this);
      if (room === 0) {
        this.waitForBytes();
        break;
      }
      const chunk = this.held[0];
      const taken = this.reader.feed(room >= chunk.length ? chunk : chunk.subarray(0, room), stop);
      // Before `auth`, a TCP connection may hold only a short line (an auth request is under 2 KiB).
      if (!this.authenticated && this.reader.lineBytes > MAX_UNAUTHENTICATED_LINE_BYTES) this.refuse(null);
      this.recordBytes();
      // A line may have closed or ended the connection: what is left is never read.
      if (this.closed || this.ending) {
        this.held.length = 0;
        break;
      }
      if (taken === chunk.length) this.held.shift();
      else this.held[0] = chunk.subarray(taken);
    }
    if (this.held.length > 0 && this.reading && !this.closed && !this.ending) setImmediate(() => this.pump());
  }

  /** Reserves the declared attachments in the shared budget; false (and waits) when they do not fit. */
  private admitFrame(): boolean {
    if (this.ctx.requestBytes.room(this, this.frameNeed) < this.frameNeed) {
      this.waitForBytes();
      return false;
    }
    this.frameHeld += this.frameNeed;
    this.frameNeed = 0;
    this.recordBytes();
    return true;
  }

  /** Stops reading until the shared budget has room (backpressure; nothing is dropped). */
  private waitForBytes(): void {
    if (this.budgetBlocked || this.closed) return;
    this.budgetBlocked = true;
    this.ctx.requestBytes.wait(this, () => {
      this.budgetBlocked = false;
      this.flow();
    });
    this.flow();
  }

  /** Ends this connection's overdraft (its over-budget line is in, or skipped). */
  private endOverdraft(): void {
    if (!this.ctx.requestBytes.inOverdraft(this)) return;
    this.ctx.requestBytes.endOverdraft(this);
    this.overdraftEnded = true;
  }

  /** Records this connection's held bytes (line being received, reserved attachments, requests in flight) in the shared budget. */
  private recordBytes(): void {
    const line = this.authenticated ? this.reader.lineBytes : 0;
    const held = (this.closed ? 0 : line + this.frameHeld) + this.requestHeld;
    const [h, f] = this.recorded;
    this.recorded = [held, this.requestHeld];
    if (held !== h || this.requestHeld !== f) this.ctx.requestBytes.change(held - h, this.requestHeld - f);
  }

  /**
   * True when a socket's line looks like HTTP (it is not run): the first line by its method or an
   * `HTTP/1.` anywhere in it closes the connection at once; a later line with a leading HTTP
   * method ends it after the requests already received are answered.
   */
  private firstLine(text: string): boolean {
    if (this.kind === 'stdio') return false;
    const first = !this.sawLine;
    this.sawLine = true;
    if (first ? looksLikeHttp(text) : startsLikeHttp(text)) {
      if (first) this.close();
      else this.endAfterAnswers();
      return true;
    }
    return false;
  }

  /** Takes no more requests; answers those received, then closes once the answers are sent. */
  private endAfterAnswers(): void {
    if (this.ending || this.closed) return;
    this.ending = true;
    this.held.length = 0;
    this.reading = false;
    this.transport.setReading(false);
    void this.drain().then(() => this.close(true));
  }

  /**
   * Closes: cancels this connection's work, releases its plans and searches. `graceful`: the
   * answers already written are sent first.
   */
  close(graceful = false): void {
    if (this.closed) return;
    this.closed = true;
    for (const cancel of [...this.pending.values()]) cancel();
    this.pending.clear();
    this.held.length = 0;
    this.frameHeld = 0;
    this.frameNeed = 0;
    this.ctx.requestBytes.forget(this);
    this.recordBytes();
    this.ctx.store.releaseAll(this);
    this.searches.clear();
    if (graceful && this.transport.end) this.transport.end();
    else this.transport.close();
  }

  /**
   * The client closed its side (stdin ended, or a socket's write side shut down): no more
   * requests come; those received (held bytes included) are answered, then the connection
   * closes (on stdio, the sidecar ends). Both transports behave alike.
   */
  inputEnded(): void {
    if (this.closed) return;
    // A last request without its newline is still a request (as a line reader reads a file).
    if (!this.endsLine && !this.ending) {
      this.endsLine = true;
      this.held.push(Buffer.from('\n'));
      this.pump();
    }
    void this.drain().then(() => this.close(true));
  }

  /** Resolves once every request received so far has been answered. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0 || (this.held.length > 0 && !this.closed)) {
      if (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      // Requests held back until the client reads its answers are received too.
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Called by the transport when written bytes have been sent. */
  flow(): void {
    const want = !this.closed && !this.ending && !this.budgetBlocked && this.transport.pendingBytes() <= this.ctx.limits.maxPendingOutputBytes && this.inFlight.size < this.ctx.limits.maxInFlight;
    if (want !== this.reading) {
      this.reading = want;
      this.transport.setReading(want);
    }
    if (want && this.held.length > 0) setImmediate(() => this.pump());
  }

  private send(msg: object): void {
    if (this.closed) return;
    const parts = encodeWithAttachments(msg);
    if (parts) for (const part of parts) this.transport.write(part);
    else this.transport.write(encodeLine(msg));
    this.flow();
  }

  /** Tracks a request in flight; its `bytes` (line and attachments) are held until it is answered. */
  private track(p: Promise<unknown>, bytes: number): void {
    this.inFlight.add(p);
    this.requestHeld += bytes;
    this.recordBytes();
    this.flow();
    void p.finally(() => {
      this.inFlight.delete(p);
      this.requestHeld -= bytes;
      this.recordBytes();
      this.flow();
    });
  }

  private onLine(text: string, bytes: number): AttachmentFrame | void {
    this.endOverdraft();
    if (this.ending || text.trim() === '') return;
    if (this.firstLine(text)) return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (error) {
      const e = new RpcError(RpcErrors.PARSE, `parse error: ${(error as Error).message.slice(0, 200)}`);
      if (!this.authenticated) return this.refuse(null);
      this.send(errorResponse(recoverId(text.slice(0, 256)), e));
      return;
    }
    if (Array.isArray(msg)) {
      if (!this.authenticated) return this.refuse(null);
      if (msg.length === 0) return this.send(errorResponse(null, new RpcError(RpcErrors.INVALID_REQUEST, 'invalid request: an empty batch')));
      const running: Promise<void>[] = [];
      this.track(
        Promise.all(msg.map((m) => this.handle(m, undefined, true, running))).then((answers) => {
          const out = answers.filter((a): a is Response => a !== undefined);
          if (out.length > 0) this.send(out);
          return running.length > 0 ? Promise.all(running) : undefined;
        }),
        bytes,
      );
      // Attachments declared in a batch (refused by handle) would follow its line: where they end
      // is unknown, so nothing after them is read (as for a malformed "$attachments").
      if (msg.some(hasAttachments)) this.endAfterAnswers();
      return;
    }
    if (hasAttachments(msg)) return this.attachmentFrame(msg as Record<string, unknown>, bytes);
    this.run(msg, undefined, bytes);
  }

  /**
   * Handles one request (with its attachments; `bytes` of them all) and sends its answer; its
   * bytes are held until its work no longer runs (a cancelled request is answered at once, while
   * its native work may run on).
   */
  private run(msg: unknown, attachments: Buffer[] | undefined, bytes: number): void {
    const running: Promise<void>[] = [];
    this.track(
      this.handle(msg, attachments, false, running).then((answer) => {
        if (answer) this.send(answer);
        return running.length > 0 ? Promise.all(running) : undefined;
      }),
      bytes,
    );
  }

  /**
   * The attachments a request line declares in `"$attachments"` (docs/protocol.md, "Binary
   * attachments"), checked before a byte of them is buffered: a list of at most
   * {@link MAX_ATTACHMENTS} byte lengths (else -32600, and the connection is closed once its
   * answers are sent: where the request ends is unknown); the line and its attachments within
   * `--max-line-bytes` (else -32001 at once, and the bytes are skipped as they arrive, not kept). The
   * request runs once its bytes and the closing `\n` are in; a request whose bytes are not
   * followed by `\n` gets -32600 and the reader resumes at the next `\n`.
   */
  private attachmentFrame(msg: Record<string, unknown>, lineBytes: number): AttachmentFrame | void {
    const id = typeof msg.id === 'string' || (typeof msg.id === 'number' && Number.isFinite(msg.id)) ? (msg.id as Id) : null;
    if (!this.authenticated) return this.refuse(id);
    const lengths = msg.$attachments;
    if (!Array.isArray(lengths) || lengths.length > MAX_ATTACHMENTS || !lengths.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
      this.send(errorResponse(id, new RpcError(RpcErrors.INVALID_REQUEST, `invalid request: "$attachments" must be a list of at most ${MAX_ATTACHMENTS} byte lengths (integers >= 0); the connection is closed (where this request ends is unknown)`, { code: 'ERR_OMNIBAL_INVALID_OPTIONS' })));
      return this.endAfterAnswers();
    }
    const total = (lengths as number[]).reduce((a, b) => a + b, 0);
    const limit = this.ctx.limits.maxLineBytes;
    if (lineBytes + total > limit) {
      // Answered at once; the bytes are skipped as they come (and the next line found after them).
      this.send(errorResponse(id, limitError(`request of ${lineBytes + total} bytes (line and ${total} attachment bytes) over the limit of ${limit} bytes (--max-line-bytes); skipped`)));
      return { lengths: lengths as number[], keep: false, done: () => undefined };
    }
    // The line is held from now, the attachments once they fit the shared budget (before a byte of them is read).
    this.frameHeld = lineBytes;
    this.frameNeed = total;
    return {
      lengths: lengths as number[],
      keep: true,
      done: (attachments, misframed) => {
        const held = this.frameHeld;
        this.frameHeld = 0;
        this.endOverdraft();
        if (misframed) {
          this.recordBytes();
          return this.send(errorResponse(id, misframedError(total)));
        }
        delete msg.$attachments;
        this.run(msg, attachments, held);
      },
    };
  }

  /** Answers -32002 and closes an unauthenticated TCP connection. */
  private refuse(id: Id): void {
    this.send(errorResponse(id, new RpcError(RpcErrors.UNAUTHORIZED, 'unauthorized: the first request on a TCP connection must be auth with the server token', { code: SidecarCodes.UNAUTHORIZED })));
    this.close();
  }

  /** One request; resolves with its answer (undefined for a notification). */
  /**
   * The answer to one request (none for a notification). A request cancelled (or whose connection
   * closed) is answered at once, and adds to `running` a promise that settles once its work no
   * longer runs.
   */
  private async handle(msg: unknown, attachments?: Buffer[], inBatch = false, running?: Promise<void>[]): Promise<Response | undefined> {
    const m = msg as { jsonrpc?: unknown; method?: unknown; id?: unknown; params?: unknown };
    const validId = m !== null && typeof m === 'object' && (typeof m.id === 'string' || (typeof m.id === 'number' && Number.isFinite(m.id)) || m.id === null);
    const id: Id = validId ? (m.id as Id) : null;
    const isRequest = m !== null && typeof m === 'object' && !Array.isArray(m) && 'id' in m;
    if (typeof m !== 'object' || m === null || Array.isArray(m) || m.jsonrpc !== '2.0' || typeof m.method !== 'string' || (isRequest && !validId)) {
      if (!this.authenticated) {
        this.refuse(id);
        return undefined;
      }
      return errorResponse(id, new RpcError(RpcErrors.INVALID_REQUEST, 'invalid request: need {"jsonrpc": "2.0", "method": string, "id"?: string | number | null}'));
    }
    const method = m.method;
    if (!this.authenticated && method !== 'auth') {
      this.refuse(id);
      return undefined;
    }
    if (inBatch && hasAttachments(m)) {
      const e = new RpcError(RpcErrors.INVALID_REQUEST, 'invalid request: "$attachments" inside a batch (a batch is one line; attachments go with a request sent alone); the connection is closed (where the attachments end is unknown)', { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
      return isRequest ? errorResponse(id, e) : undefined;
    }
    const answer = (result: unknown): Response | undefined => (isRequest ? { jsonrpc: '2.0', id, result: result ?? null } : undefined);
    const fail = (e: unknown): Response | undefined => {
      const error = toRpcError(e);
      // A bug, not bad input: one line on stderr for the operator (the client gets no internals).
      if (error.rpcCode === RpcErrors.INTERNAL) process.stderr.write(`omnibal serve: internal error in ${method}: ${String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300)}\n`);
      return isRequest ? errorResponse(id, error) : undefined;
    };
    if (!isMethod(method)) return fail(new RpcError(RpcErrors.METHOD_NOT_FOUND, `method not found: ${method.slice(0, 100)}`));
    let params: Record<string, unknown>;
    try {
      params = validateParams(method, m.params);
      // Binary attachments become the arrays their `{"$binary": k}` params refer to (checked
      // also without attachments: a reference to none is an error naming the param).
      params = bindAttachments(params, attachments ?? [], attachmentParams(method));
      if (inBatch && params.encoding === 'binary') throw paramsError('encoding', 'cannot be "binary" inside a batch (a batch answers on one line without attachments); send the request alone', 'ERR_OMNIBAL_INVALID_OPTIONS');
    } catch (error) {
      // An `auth` that is not even well-formed, before auth, is a failed auth: refused and closed
      // (as a wrong token is), not an answer that leaves the connection open for another try.
      if (!this.authenticated) {
        this.refuse(id);
        return undefined;
      }
      return fail(error);
    }
    if (method === 'auth') {
      if (tokenMatches(this.ctx.token, params.token)) {
        this.authenticated = true;
        return answer({ ok: true });
      }
      if (!this.authenticated) {
        this.refuse(id);
        return undefined;
      }
      return fail(new RpcError(RpcErrors.UNAUTHORIZED, 'unauthorized: wrong token', { code: SidecarCodes.UNAUTHORIZED }));
    }
    if (method === '$/cancelRequest') {
      const target = params.id as string | number;
      const cancel = this.pending.get(target);
      if (cancel) cancel();
      return answer({ cancelled: cancel !== undefined });
    }
    if (method === 'shutdown') {
      if (this.kind !== 'stdio' && !tokenMatches(this.ctx.token, params.token)) {
        return fail(new RpcError(RpcErrors.UNAUTHORIZED, 'unauthorized: shutdown needs the server token (or the stdio owner)', { code: SidecarCodes.UNAUTHORIZED }));
      }
      // Answer, stop reading, let what is in flight finish (at most 2 s), then stop.
      this.transport.setReading(false);
      const grace = new Promise((r) => setTimeout(r, 2000).unref());
      setImmediate(() => void Promise.race([this.drain(), grace]).then(this.ctx.shutdown));
      return answer({ ok: true });
    }
    // A request id already in flight on this connection cannot be cancelled separately: the later one is not registered.
    let cancelled = false;
    let cancelWork: (() => void) | undefined;
    let cancelAnswer: ((r: Response | undefined) => void) | undefined;
    const registered = isRequest && id !== null && !this.pending.has(id);
    const cancelledAnswer = new Promise<Response | undefined>((resolve) => {
      cancelAnswer = resolve;
    });
    // The pool tasks this request started (each settles once it no longer runs).
    const tasks: Promise<void>[] = [];
    let work: Promise<Response | undefined> | undefined;
    if (registered) {
      this.pending.set(id, () => {
        cancelled = true;
        this.pending.delete(id);
        cancelWork?.();
        // Answered at once, but its work may run on (native code runs to its end) on the bytes
        // it was given: `running` settles once it, and every task it started, no longer runs.
        running?.push(
          Promise.resolve()
            .then(() => work)
            .then(() => Promise.all(tasks))
            .then(() => undefined),
        );
        cancelAnswer!(errorResponse(id, new RpcError(RpcErrors.CANCELLED, 'request cancelled')));
      });
    }
    let last = 0;
    let lastTotal = 1;
    let finished = false;
    const progress = (done: number, total: number) => {
      const now = Date.now();
      lastTotal = total;
      if (!isRequest || cancelled || this.closed || finished || (now - last < 200 && done < total && done > 0)) return;
      last = now;
      finished = done >= total;
      this.send({ jsonrpc: '2.0', method: 'progress', params: { id, done, total } });
    };
    work = (async () => {
      try {
        const result = await this.dispatch(method, params, progress, {
          isCancelled: () => cancelled,
          onCancel: (f) => {
            cancelWork = f;
          },
          hold: (task) => {
            tasks.push(task);
          },
        });
        // Every long call ends its progress with done == total, before its answer.
        if (LONG_METHODS.has(method)) progress(lastTotal, lastTotal);
        return cancelled ? undefined : answer(result);
      } catch (error) {
        return cancelled ? undefined : fail(error);
      } finally {
        if (registered && !cancelled) this.pending.delete(id);
      }
    })();
    return Promise.race([work, cancelledAnswer]);
  }

  private pooled<T>(control: Control, run: (c: TaskControl) => Promise<T>): Promise<T> {
    const task: PoolTask<T> = this.ctx.pool.submit(run);
    control.onCancel(() => task.cancel());
    control.hold(task.settled);
    return task.promise;
  }

  private async samples(p: Record<string, unknown>): Promise<{ key: string; load: () => Promise<Samples> }> {
    const limits = this.ctx.limits;
    if (p.vision !== undefined) {
      for (const k of ['vision', 'text']) {
        const n = u32Length(p[k]);
        if (n > limits.maxSamples) throw limitError(`${k} has ${n} samples, over the limit of ${limits.maxSamples} (--max-samples)`);
      }
      const vision = toU32('vision', p.vision);
      const text = toU32('text', p.text);
      if (vision.length !== text.length) throw paramsError('text', `must have as many samples as vision (${vision.length}), got ${text.length}`, 'ERR_OMNIBAL_INVALID_OPTIONS');
      const hash = createHash('sha256');
      hash.update(`inline:${vision.length}:`);
      hash.update(new Uint8Array(vision.buffer, vision.byteOffset, vision.byteLength));
      hash.update(new Uint8Array(text.buffer, text.byteOffset, text.byteLength));
      const samples = { vision, text };
      return { key: hash.digest('hex'), load: async () => samples };
    }
    const files = (p.paths as string[] | undefined) ?? [p.path as string];
    const stats = checkFiles(files, p.paths !== undefined, limits);
    // The format each file is read as (its own extension unless `format` is given): two names of one
    // file with different extensions are read differently, so they must not share a plan.
    const formats = files.map((f) => {
      try {
        return formatOf(f, p.format as SamplesFormat | undefined);
      } catch {
        return null;
      }
    });
    const key = JSON.stringify(files.map((f, i) => [fs.realpathSync(f), stats[i].dev, stats[i].ino, stats[i].size, stats[i].mtimeMs, formats[i]]));
    const load = async () => {
      let loaded: Samples;
      try {
        loaded = await readSamples(files, p.format ? { format: p.format as 'json' | 'jsonl' | 'csv' } : {});
      } catch (error) {
        throw sanitizeFileError(error, files);
      }
      if (loaded.text.length > limits.maxSamples) throw limitError(`${loaded.text.length} samples exceed the limit of ${limits.maxSamples} (--max-samples)`);
      return { vision: loaded.vision, text: loaded.text };
    };
    return { key, load };
  }

  private async batches(p: Record<string, unknown>, progress: Progress, control: Control, strategy?: string) {
    const { key: samplesKey, load } = await this.samples(p);
    const options: Record<string, unknown> = {};
    // `encoding` shapes the answer only: not a planning option, not part of the plan's key.
    for (const k of Object.keys(p).sort()) if (!['vision', 'text', 'path', 'paths', 'format', 'encoding'].includes(k)) options[k] = p[k];
    if (strategy) options.strategy = strategy;
    // `carry` decoded first and keyed by its values, so a list, base64 and an attachment of the
    // same carry share one plan (the other options key by their JSON).
    const carry = options.carry === undefined ? undefined : toU32('carry', options.carry);
    delete options.carry;
    const hash = createHash('sha256').update(samplesKey).update(JSON.stringify(options));
    if (carry) hash.update(`carry:${carry.length}:`).update(new Uint8Array(carry.buffer, carry.byteOffset, carry.byteLength));
    const key = hash.digest('hex');
    if (carry) options.carry = carry;
    const { id, plan, shared } = await this.ctx.store.acquire(this, key, {
      compute: () => {
        const task = this.ctx.pool.submit<StoredPlan>(async () => {
          const samples = await load();
          const plan = await planBatchesAsync(samples, options as never, { onProgress: progress });
          return { plan, samples };
        });
        // The task holds this request's samples until it ends, even once cancelled.
        control.hold(task.settled);
        return task;
      },
      isCancelled: control.isCancelled,
      onCancel: control.onCancel,
    });
    return {
      planId: id,
      shared,
      strategy: plan.strategy,
      dp: plan.dp,
      accum: plan.accum,
      steps: plan.steps,
      microBatches: plan.padding.length,
      maxVision: plan.maxVision ?? null,
      maxText: plan.maxText ?? null,
      ...(p.encoding === 'base64'
        ? { encoding: 'base64', dropped: encodeU32(plan.droppedIndex), droppedReason: encodeU32(Uint32Array.from(plan.droppedReason)) }
        : p.encoding === 'binary'
          ? { encoding: 'binary', dropped: new U32Attachment(plan.droppedIndex), droppedReason: new U32Attachment(Uint32Array.from(plan.droppedReason)) }
          : { dropped: Array.from(plan.droppedIndex), droppedReason: Array.from(plan.droppedReason) }),
    };
  }

  private search(id: unknown): StageSearch {
    const s = typeof id === 'string' ? this.searches.get(id) : undefined;
    if (!s) throw new RpcError(RpcErrors.UNKNOWN_HANDLE, 'no such search on this connection (unknown, released, or owned by another connection)', { code: SidecarCodes.UNKNOWN_HANDLE });
    return s;
  }

  private async dispatch(method: string, p: Record<string, unknown>, progress: Progress, control: Control): Promise<unknown> {
    const store = this.ctx.store;
    switch (method) {
      case 'version':
        return { version, protocol: 'omnibal-rpc/1', capabilities: [...CAPABILITIES] };
      case 'backend':
        return backend();
      case 'pack':
        return this.batches(p, progress, control);
      case 'balance':
        return this.batches(p, progress, control, 'balanced');
      case 'metrics': {
        const { plan, samples } = store.get(this, p.planId as string);
        const m = batchMetrics(plan, samples, { a: p.costA as number | undefined, b: p.costB as number | undefined });
        return { ...m, stepVisionDist: Array.from(m.stepVisionDist), stepTextDist: Array.from(m.stepTextDist), stepCostDist: Array.from(m.stepCostDist) };
      }
      case 'planStep': {
        const { plan } = store.get(this, p.planId as string);
        const step = p.step as number;
        if (step >= plan.steps) throw paramsError('step', `must be below the plan's ${plan.steps} steps, got ${step}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
        const groups = Array.from({ length: plan.dp }, (_, r) => step * plan.dp + r);
        return p.encoding === 'base64' ? encodeMicroBatchArrays(plan, groups) : p.encoding === 'binary' ? attachMicroBatchArrays(plan, groups) : encodeMicroBatchLists(plan, groups);
      }
      case 'planForRank': {
        const { plan } = store.get(this, p.planId as string);
        const rank = p.rank as number;
        if (rank >= plan.dp) throw paramsError('rank', `must be below the plan's dp of ${plan.dp}, got ${rank}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
        const groups = Array.from({ length: plan.steps }, (_, s) => s * plan.dp + rank);
        return p.encoding === 'base64' ? encodeMicroBatchArrays(plan, groups) : p.encoding === 'binary' ? attachMicroBatchArrays(plan, groups) : encodeMicroBatchLists(plan, groups);
      }
      case 'release':
        if (p.planId !== undefined) return { released: store.release(this, p.planId as string) };
        return { released: this.searches.delete(p.searchId as string) };
      case 'partition': {
        const problem = vlmStageProblem(p as never);
        progress(0, 1);
        const plan = await this.pooled(control, () => partitionStagesAsync(problem));
        return { prediction: true, ...plan };
      }
      case 'simulate': {
        progress(0, 1);
        const r = await this.pooled(control, async () => {
          const f64 = (k: string) => Float64Array.from(p[k] as number[]);
          // Per-chunk times (interleaved, checked with the params): each model chunk its own time.
          const chunks = p.chunkForwardMs !== undefined ? { chunkForwardMs: f64('chunkForwardMs'), chunkBackwardMs: f64('chunkBackwardMs') } : {};
          return simulateStep({ ...p, forwardMs: f64('forwardMs'), backwardMs: f64('backwardMs'), transferMs: f64('transferMs'), gradBytes: f64('gradBytes'), activationBytes: f64('activationBytes'), ...chunks } as never);
        });
        return { prediction: true, stepMs: r.stepMs, bubbleFraction: r.bubbleFraction, rankMs: Array.from(r.rankMs), peakInFlight: Array.from(r.peakInFlight) };
      }
      case 'plan': {
        progress(0, 1);
        const r = await this.pooled(control, (c) => this.ctx.workers.run(p, c));
        return r;
      }
      case 'searchLayout': {
        // On a pool worker like `plan`: bounded by the pool, cancelled by terminating the worker.
        // Progress counts the candidate layouts from the first notification (0 of them, queued).
        progress(0, Math.max(1, layoutCandidates(p).length));
        return this.pooled(control, (c) => this.ctx.workers.run({ method: 'searchLayout', params: p }, c, progress));
      }
      case 'search.ask': {
        let id = p.searchId as string | undefined;
        if (id === undefined) {
          if (this.searches.size >= MAX_SEARCHES) throw limitError(`a connection holds at most ${MAX_SEARCHES} searches; release one`);
          const problem: StageProblem = vlmStageProblem(p.problem as never);
          id = newHandle('search');
          this.searches.set(id, searchStages(problem, { radius: p.radius as number | undefined, budget: p.budget as number | undefined }));
        }
        const search = this.search(id);
        const c = search.ask();
        return { searchId: id, candidate: c ? { lastLayers: c.lastLayers, predictedMs: c.predicted.objectiveMs } : null, best: search.best().lastLayers };
      }
      case 'search.tell': {
        const search = this.search(p.searchId);
        const lastLayers = (p.lastLayers as number[]).join(',');
        const c = search.candidates.find((x) => x.lastLayers.join(',') === lastLayers);
        if (!c) throw paramsError('lastLayers', 'is not a candidate this search proposed', 'ERR_OMNIBAL_INVALID_OPTIONS');
        search.tell(c, p.seconds as number);
        return { best: search.best().lastLayers };
      }
      default:
        throw new RpcError(RpcErrors.METHOD_NOT_FOUND, `method not found: ${method}`);
    }
  }

  /** Whether `method` is a long call that goes through the pool. */
  static isLong(method: string): boolean {
    return LONG_METHODS.has(method);
  }
}

type Progress = (done: number, total: number) => void;

interface Control {
  isCancelled: () => boolean;
  onCancel: (f: () => void) => void;
  /** Holds the request's bytes in the shared budget until `task` no longer runs (also after a cancel). */
  hold: (task: Promise<void>) => void;
}

/** Serves on stdin/stdout until stdin ends, stdout breaks, or `shutdown` is called. */
export function serveStdio(options: ServeOptions = {}): Promise<void> {
  return new Promise((resolve) => {
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      void ctx.workers.close().finally(() => resolve());
    };
    const ctx = newContext(options, done);
    const out = process.stdout;
    // The client is gone when its end of our stdout breaks (EPIPE): stop at once.
    out.on('error', () => done());
    const session = new Session(ctx, 'stdio', {
      write: (line) => void out.write(line),
      pendingBytes: () => out.writableLength,
      setReading: (on) => (on ? process.stdin.resume() : process.stdin.pause()),
      close: done,
    });
    out.on('drain', () => session.flow());
    process.stdin.on('data', (c: Buffer) => session.feed(c));
    // The client closed our stdin: answer what it already sent (it may be reading still), then exit.
    process.stdin.on('end', () => session.inputEnded());
    process.stderr.write(`omnibal serve: ${version}, backend ${backend().kind}, JSON-RPC 2.0 on stdio\n`);
  });
}

/**
 * Serves on a Unix socket or a loopback TCP port until `shutdown` or SIGTERM/SIGINT (an orderly
 * stop; a second signal during it exits at once with status 128 + the signal's number).
 */
export async function serveSocket(spec: string, options: ServeOptions = {}): Promise<void> {
  const where = parseListen(spec);
  if (where.kind === 'tcp' && !options.tokenFile && !process.env.OMNIBAL_TOKEN) {
    throw paramsErrorToCli('a TCP sidecar needs a token: give --token-file FILE (it is written there) or set OMNIBAL_TOKEN');
  }
  const token = where.kind === 'tcp' || options.tokenFile || process.env.OMNIBAL_TOKEN ? serverToken() : undefined;
  const sessions = new Set<Session>();
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => {
    resolveDone = r;
  });
  let stopping = false;
  let listening = false;
  let tokenWritten = false;
  // A second signal while stopping ends at once, with the shell's status for that signal
  // (128 + its number: 130 for SIGINT, 143 for SIGTERM), not the status of a failure; the socket
  // and token files are removed first.
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) return stop();
    removeFiles();
    const status = 128 + (os.constants.signals[signal] ?? 0);
    process.stderr.write(`omnibal serve: ${signal} while stopping: exiting now (status ${status})\n`);
    process.exit(status);
  };
  const removeFiles = () => {
    if (where.kind === 'unix') fs.rmSync(where.path, { force: true });
    // Only a token file this server wrote (a failed write leaves whatever was there alone).
    if (options.tokenFile && tokenWritten) fs.rmSync(options.tokenFile, { force: true });
  };
  const finish = () => {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    void ctx.workers.close().finally(resolveDone);
  };
  // Before listening, a stop is only recorded: start-up ends in close() once the socket exists.
  const close = () =>
    server.close(() => {
      removeFiles();
      finish();
    });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const s of sessions) s.close();
    if (listening) close();
  };
  const ctx = newContext(options, stop, token);
  // Half-open: a client that shuts down its write side still gets the answers to what it sent
  // (as on stdio when stdin ends); the connection closes once they are sent.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (stopping) return void socket.destroy();
    const session = new Session(ctx, where.kind, {
      write: (line) => void (!socket.destroyed && socket.write(line)),
      pendingBytes: () => socket.writableLength,
      setReading: (on) => (on ? socket.resume() : socket.pause()),
      close: () => socket.destroy(),
      end: () => socket.end(),
    });
    sessions.add(session);
    socket.on('data', (c: Buffer) => session.feed(c));
    socket.on('drain', () => session.flow());
    socket.on('end', () => session.inputEnded());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      sessions.delete(session);
      session.close();
    });
  });
  // Installed before anything is created: a signal during start-up still removes the socket file
  // and ends with exit 0 (the default action would kill the process and leave the file behind).
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let listen = spec;
  try {
    if (where.kind === 'unix') {
      await clearStaleSocket(where.path);
      await listenUnix(server, where.path);
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(where.port, where.host, () => resolve());
      });
    }
    const a = server.address();
    listen = where.kind === 'unix' ? where.path : typeof a === 'object' && a ? (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`) : spec;
    if (options.tokenFile && token) {
      writeTokenFile(options.tokenFile, listen, token);
      tokenWritten = true;
    }
  } catch (error) {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    if (server.listening) {
      server.close();
      removeFiles();
    }
    throw error;
  }
  listening = true;
  if (stopping) {
    close();
    return finished;
  }
  process.stderr.write(`omnibal serve: ${version}, backend ${backend().kind}, listening on ${listen}${where.kind === 'tcp' ? ' (token required: auth first)' : ''}\n`);
  return finished;
}

function paramsErrorToCli(message: string) {
  return Object.assign(new Error(message), { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
}
