/**
 * One sidecar connection: its bytes read and framed into requests (within the shared budget of
 * request bytes, with backpressure when its client does not read), authenticated, checked, run
 * through {@link Methods}, tracked until answered or cancelled, and its answers written as lines
 * (with binary attachments where asked).
 *
 * @module
 */
import type { StageSearch } from '../model/search';
import { bindAttachments, littleEndianBytes, MAX_ATTACHMENTS, RawJson, U32Attachment } from './codec';
import type { ServerContext } from './context';
import { RpcError, RpcErrors, SidecarCodes, limitError, paramsError, toRpcError, withField } from './errors';
import { isAttachmentList, LineReader, looksLikeHttp, recoverId, startsLikeHttp, trailingAttachments, type AttachmentFrame } from './framing';
import { tokenMatches } from './listen';
import { LONG_METHODS, Methods } from './methods';
import { attachmentParams, isMethod, validateParams } from './schemas';

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
  /** The connection authenticated (a TCP connection's `auth` with the token): it no longer counts as a stranger (`--max-unauthenticated`). */
  authenticated?(): void;
}

type Id = string | number | null;
type Response = { jsonrpc: '2.0'; id: Id; result?: unknown; error?: { code: number; message: string; data?: unknown } };

/** Longest partial line an unauthenticated TCP connection may hold (its first line is `auth`). */
const MAX_UNAUTHENTICATED_LINE_BYTES = 4096;

/** How a batch member is handled: the pool slot held for it (a long call), or the refusal of its whole batch. */
interface BatchMember {
  /** `held` while the slot the pool holds for this long call is neither taken by its task nor given back. */
  slot?: { held: boolean };
  /** The batch was not admitted: this member is answered with it and does not run. */
  refused?: RpcError;
}

/** Whether a batch member calls a long method (one that takes a pool slot). */
function isLongCall(m: unknown): boolean {
  const method = m !== null && typeof m === 'object' ? (m as { method?: unknown }).method : undefined;
  return typeof method === 'string' && LONG_METHODS.has(method);
}

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

/** Milliseconds a connection ended for a fault (a stall, a malformed frame) stays open for its client to read the answers, before it is cut. */
export const END_GRACE_MS = 2000;

/** One connection: frames, checks and answers its requests. */
export class Session {
  private readonly reader: LineReader;
  /** Cancels a request in flight, answering it -32800 (or the error given). */
  private readonly pending = new Map<string | number, (error?: RpcError) => void>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly searches = new Map<string, StageSearch>();
  /** What each method does, for this connection. */
  private readonly methods: Methods;
  private authenticated: boolean;
  private closed = false;
  /** No more requests are taken: those received are answered, then the connection closes. */
  private ending = false;
  private firstBytes = true;
  private sawLine = false;
  private reading = true;
  /** Received bytes not yet framed: held while the connection is not read (backpressure). */
  private readonly held: Buffer[] = [];
  /** Attachment bytes a request line declared, not yet reserved in the shared `RequestBytes` (request-bytes.ts). */
  private frameNeed = 0;
  /** Bytes reserved for the request whose attachments are being read (its line and attachments). */
  private frameHeld = 0;
  /** Bytes of this connection's requests queued or running. */
  private requestHeld = 0;
  /** What this connection last recorded in the shared `RequestBytes` (request-bytes.ts): held, framed. */
  private recorded = [0, 0];
  /** Not read until the shared `RequestBytes` (request-bytes.ts) has room. */
  private budgetBlocked = false;
  /** An overdraft ended during a feed: stop there and check the room again. */
  private overdraftEnded = false;
  /** Whether the bytes received so far end with a newline (none received: true). */
  private endsLine = true;
  /** When this connection last sent bytes, or the sidecar last began waiting for them again (ms). */
  private lastInput = Date.now();
  /** Checks a socket connection stalled in the middle of a request (`--stall-timeout`). */
  private stallTimer: NodeJS.Timeout | undefined;
  /** The id of the request whose attachments are being read (for its stall error). */
  private frameId: Id = null;
  /** Closes a TCP connection that has not authenticated in time (`--auth-timeout`). */
  private authTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: ServerContext,
    private readonly kind: ConnectionKind,
    private readonly transport: Transport,
  ) {
    this.authenticated = kind !== 'tcp';
    if (!this.authenticated) {
      this.authTimer = setTimeout(() => {
        if (this.authenticated || this.closed) return;
        const seconds = ctx.limits.authTimeout;
        this.answerAndClose(null, new RpcError(RpcErrors.UNAUTHORIZED, `unauthorized: no auth within ${seconds} s of connecting (--auth-timeout); the connection is closed`, { code: SidecarCodes.UNAUTHORIZED }));
      }, ctx.limits.authTimeout * 1000).unref();
    }
    this.methods = new Methods(ctx, this, this.searches);
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
    this.lastInput = Date.now();
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
    this.watchStall();
  }

  /**
   * Starts the stall check (`--stall-timeout`) of a socket connection inside a request: a client
   * that stops mid-request would hold its part of the shared byte budget (and the overdraft's
   * turn) for as long as it stays connected.
   */
  private watchStall(): void {
    if (this.kind === 'stdio' || this.closed || this.ending || this.stallTimer || !this.reader.midRequest) return;
    this.stallTimer = setTimeout(() => this.checkStall(), this.ctx.limits.stallTimeout * 1000).unref();
  }

  /** The stall check: only time the sidecar spends waiting for this client's bytes counts. */
  private checkStall(): void {
    this.stallTimer = undefined;
    if (this.closed || this.ending || !this.reader.midRequest) return;
    const now = Date.now();
    // Not read (its answers unread, the budget full) or bytes of it not yet framed: not its stall.
    if (!this.reading || this.held.length > 0) this.lastInput = now;
    const left = this.lastInput + this.ctx.limits.stallTimeout * 1000 - now;
    if (left > 0) {
      this.stallTimer = setTimeout(() => this.checkStall(), left).unref();
      return;
    }
    // The request is dropped (what it held is freed at once), answered, and the connection ends
    // once the answers to its earlier requests are sent.
    // Its id: from the line of the attachments being kept, or the start of the line; none for bytes being skipped (already answered).
    const id = this.frameHeld > 0 ? this.frameId : this.reader.lineBytes > 0 ? recoverId(this.reader.lineHead()) : null;
    this.reader.discard();
    this.frameHeld = 0;
    this.frameNeed = 0;
    this.endOverdraft();
    this.recordBytes();
    const seconds = this.ctx.limits.stallTimeout;
    this.send(errorResponse(id, limitError(`request incomplete: no bytes for ${seconds} s in the middle of a request (--stall-timeout); what it sent of it is dropped and the connection is closed`)));
    this.endAfterAnswers();
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
    // A client that keeps its side open (a stalled one, say) cannot hold the connection, or a
    // stopping server, open: it is cut END_GRACE_MS after the answers are written.
    void this.drain().then(() => {
      this.close(true);
      setTimeout(() => this.transport.close(), END_GRACE_MS).unref();
    });
  }

  /**
   * Closes: cancels this connection's work, releases its plans and searches. `graceful`: the
   * answers already written are sent first.
   */
  close(graceful = false): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    clearTimeout(this.authTimer);
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
   * The server is stopping: takes no more requests, answers each request in flight -32004
   * ("shutting down", so a client can tell a stop from a crash), then closes once those answers
   * are sent.
   */
  shutDown(): void {
    if (this.closed) return;
    this.ending = true;
    this.held.length = 0;
    this.reading = false;
    this.transport.setReading(false);
    const error = new RpcError(RpcErrors.SHUTTING_DOWN, 'server shutting down: this request was not finished (the sidecar is stopping); send it again to a running sidecar', { code: SidecarCodes.SHUTTING_DOWN });
    const cancels = [...this.pending.values()];
    this.pending.clear();
    for (const cancel of cancels) cancel(error);
    // The answers are sent once the promises they resolve have run (microtasks), before this;
    // then the connection closes whether or not its client closes its side.
    setImmediate(() => {
      this.close(true);
      setTimeout(() => this.transport.close(), 200).unref();
    });
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
      // Read again: the client's time to send starts now (`--stall-timeout`).
      if (want) this.lastInput = Date.now();
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
      const refused = this.admitBatch(msg.filter(isLongCall).length);
      const pool = this.ctx.pool;
      const member = (m: unknown): BatchMember => (refused ? { refused } : isLongCall(m) ? { slot: { held: true } } : {});
      this.track(
        Promise.all(
          msg.map((m) => {
            const b = member(m);
            // A slot its call did not take (a bad request, a plan found stored) is given back once the call is answered.
            return this.handle(m, undefined, true, running, b).finally(() => {
              if (b.slot?.held) {
                b.slot.held = false;
                pool.unreserve();
              }
            });
          }),
        ).then((answers) => {
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
   * Admits a batch whole (docs/protocol.md, "Framing and requests"): its `long` long calls take
   * that many pool slots at once, held for them until each submits its task. Returns the error
   * every member is answered with when they do not all fit now (none of them runs), else undefined.
   */
  private admitBatch(long: number): RpcError | undefined {
    const pool = this.ctx.pool;
    if (long === 0 || pool.reserve(long)) return undefined;
    if (long > pool.capacity) {
      return limitError(`a batch of ${long} long calls is more than the sidecar holds at once (${pool.capacity}: --workers ${pool.concurrency} + --max-queue ${pool.maxQueue}); a batch is admitted whole: split it`);
    }
    return limitError(`the sidecar is busy: this batch's ${long} long calls do not all fit now (room for ${pool.room} of ${pool.capacity}: --workers + --max-queue); a batch is admitted whole: try again later`);
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
    if (!isAttachmentList(lengths)) {
      this.send(errorResponse(id, new RpcError(RpcErrors.INVALID_REQUEST, `invalid request: "$attachments" must be a list of at most ${MAX_ATTACHMENTS} byte lengths (integers >= 0); the connection is closed (where this request ends is unknown)`, { code: 'ERR_OMNIBAL_INVALID_OPTIONS' })));
      return this.endAfterAnswers();
    }
    const total = lengths.reduce((a, b) => a + b, 0);
    const limit = this.ctx.limits.maxLineBytes;
    if (lineBytes + total > limit) {
      // Answered at once; the bytes are skipped as they come (and the next line found after them).
      this.send(errorResponse(id, limitError(`request of ${lineBytes + total} bytes (line and ${total} attachment bytes) over the limit of ${limit} bytes (--max-line-bytes); skipped`)));
      return { lengths, keep: false, done: () => undefined };
    }
    // The line is held from now, the attachments once they fit the shared budget (before a byte of them is read).
    this.frameHeld = lineBytes;
    this.frameNeed = total;
    this.frameId = id;
    return {
      lengths,
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

  /**
   * Closes a connection that has not authenticated, answering `error` first (id null): a newer
   * one took its place among those waiting to authenticate (`--max-unauthenticated`).
   */
  evict(error: RpcError): void {
    if (this.closed || this.authenticated) return;
    this.answerAndClose(null, error);
  }

  /** Answers -32002 and closes an unauthenticated TCP connection. */
  private refuse(id: Id): void {
    this.answerAndClose(id, new RpcError(RpcErrors.UNAUTHORIZED, 'unauthorized: the first request on a TCP connection must be auth with the server token', { code: SidecarCodes.UNAUTHORIZED }));
  }

  /** Answers `error` to `id` and closes the connection (its fault, or its turn, ends it). */
  private answerAndClose(id: Id, error: RpcError): void {
    this.send(errorResponse(id, error));
    this.close();
  }

  /**
   * The answer to one request (none for a notification). A request cancelled (or whose connection
   * closed) is answered at once, and adds to `running` a promise that settles once its work no
   * longer runs.
   */
  private async handle(msg: unknown, attachments?: Buffer[], inBatch = false, running?: Promise<void>[], member: BatchMember = {}): Promise<Response | undefined> {
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
    if (member.refused) return isRequest ? errorResponse(id, member.refused) : undefined;
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
        if (!this.authenticated) this.transport.authenticated?.();
        this.authenticated = true;
        clearTimeout(this.authTimer);
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
      this.pending.set(id, (error?: RpcError) => {
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
        cancelAnswer!(errorResponse(id, error ?? new RpcError(RpcErrors.CANCELLED, 'request cancelled')));
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
        const result = await this.methods.dispatch(method, params, progress, {
          isCancelled: () => cancelled,
          onCancel: (f) => {
            cancelWork = f;
          },
          hold: (task) => {
            tasks.push(task);
          },
          takeSlot: () => {
            if (!member.slot?.held) return false;
            member.slot.held = false;
            return true;
          },
        });
        // Every long call ends its progress with done == total, before its answer.
        if (LONG_METHODS.has(method)) progress(lastTotal, lastTotal);
        return cancelled ? undefined : answer(result);
      } catch (error) {
        return cancelled ? undefined : fail(withField(toRpcError(error), params));
      } finally {
        if (registered && !cancelled) this.pending.delete(id);
      }
    })();
    return Promise.race([work, cancelledAnswer]);
  }
}
