/**
 * Line framing of the sidecar: bytes in, one UTF-8 line per request out, in linear time (chunks
 * are kept in a list and joined once per line), with the line limit checked while buffering, so
 * an endless line (`/dev/zero`) costs at most the limit in memory.
 *
 * @module
 */
import { MAX_ATTACHMENTS } from './codec';

/**
 * Binary attachments that follow a line (see docs/protocol.md, "Binary attachments"): the line's
 * sink declares their byte lengths, and the reader takes exactly that many bytes after the
 * line's `\n`, then one `\n` that closes the request.
 */
export interface AttachmentFrame {
  /** Byte length of each attachment, in order (checked against the limits by the sink). */
  lengths: number[];
  /** `false`: the bytes are skipped as they arrive, never buffered (a request over the limit). */
  keep: boolean;
  /**
   * Called once the bytes and the closing `\n` are in: `attachments` holds one fresh Buffer per
   * attachment (its own 4-byte-aligned memory; empty when `keep` is false). `misframed`: the byte
   * after them was not `\n` (a length that does not match the bytes sent); the reader then skips
   * to the next `\n` and goes on from there.
   */
  done(attachments: Buffer[], misframed: boolean): void;
}

/** What the reader hands on. */
export interface LineSink {
  /**
   * A complete line (without its `\n`, `\r\n` trimmed) of `bytes` bytes. Returning an
   * {@link AttachmentFrame} makes the reader take that many binary bytes after the line.
   */
  line(text: string, bytes: number): AttachmentFrame | void;
  /** A line went over the limit; `head` is its first bytes (for {@link recoverId}). Called once per such line, as soon as the limit is crossed; the rest of the line is skipped. */
  tooLong(head: string): void;
  /**
   * The over-long line has ended; `tail` is its last bytes (latin1), where a request declares its
   * attachments (`,"$attachments":[...]}`, see {@link trailingAttachments}). Returning an
   * {@link AttachmentFrame} (`keep: false`) skips them too: read as lines, their bytes would be
   * answered, or run, as requests.
   */
  tooLongEnd?(tail: string): AttachmentFrame | void;
}

/** How many leading bytes of an over-long line are kept to recover its id. */
const HEAD_BYTES = 256;

/** How many trailing bytes of an over-long line are kept to find its `"$attachments"` (64 lengths of up to 16 digits; a declaration written longer is not found). */
const TAIL_BYTES = 1280;

/** The attachments being read after a line. */
interface AttachmentState {
  frame: AttachmentFrame;
  buffers: Buffer[];
  /** The attachment being filled. */
  index: number;
  /** Bytes of it filled so far. */
  filled: number;
}

/** A linear-time, limit-checking line splitter (and reader of the binary attachments a line declares). */
export class LineReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private skipping = false;
  /** The last bytes of the over-long line being skipped (undefined when skipping for another reason). */
  private tail: Buffer | undefined;
  private attachments: AttachmentState | undefined;

  constructor(
    private readonly maxLineBytes: number,
    private readonly sink: LineSink,
  ) {}

  /**
   * Feeds bytes (kept by reference until their line ends: a fed buffer must not be reused, as
   * stream `data` chunks never are). `stopped()` is checked between lines, so a closed connection stops at once
   * (nothing after an HTTP-looking first line runs), and a connection whose client does not read
   * stops mid-chunk. Returns how many bytes of `chunk` were taken: the rest starts a line and is
   * to be fed again later.
   */
  feed(chunk: Buffer, stopped: () => boolean = () => false): number {
    let start = 0;
    while (start < chunk.length && !stopped()) {
      if (this.attachments) {
        start = this.takeAttachments(chunk, start);
        continue;
      }
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (!this.skipping) {
        if (this.size + piece.length > this.maxLineBytes) {
          const head = Buffer.concat([...this.chunks, piece.subarray(0, HEAD_BYTES)]).subarray(0, HEAD_BYTES).toString('utf8');
          // The line's bytes so far end where its tail starts (the line may end just past the limit).
          this.tail = lastBytes(Buffer.concat(lastChunks(this.chunks, TAIL_BYTES)), Buffer.alloc(0), TAIL_BYTES);
          this.chunks = [];
          this.size = 0;
          this.skipping = true;
          this.sink.tooLong(head);
        } else if (piece.length > 0) {
          // A line's middle part is the whole chunk: kept as it is (the transports hand over fresh
          // buffers, which the server already queues by reference). A line's start within a
          // chunk is copied: a subarray would pin the chunk's earlier lines.
          this.chunks.push(nl === -1 && start > 0 ? Buffer.from(piece) : piece);
          this.size += piece.length;
        }
      }
      if (this.skipping && this.tail !== undefined) this.tail = lastBytes(this.tail, piece, TAIL_BYTES);
      if (nl === -1) return chunk.length;
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        const tail = this.tail;
        this.tail = undefined;
        const frame = tail !== undefined ? this.sink.tooLongEnd?.(tail.toString('latin1')) : undefined;
        if (frame) this.attachments = { frame, buffers: [], index: 0, filled: 0 };
        continue;
      }
      const bytes = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
      this.chunks = [];
      this.size = 0;
      let text = bytes.toString('utf8');
      if (text.endsWith('\r')) text = text.slice(0, -1);
      const frame = this.sink.line(text, bytes.length);
      if (frame) this.attachments = { frame, buffers: [], index: 0, filled: 0 };
    }
    return start;
  }

  /**
   * Takes attachment bytes from `chunk` at `start` (copied once into each attachment's own
   * buffer, allocated when its first byte arrives: a length declared but never sent costs no
   * memory), then the closing `\n`. Returns where the rest of `chunk` starts.
   */
  private takeAttachments(chunk: Buffer, start: number): number {
    const a = this.attachments!;
    const { lengths, keep } = a.frame;
    while (a.index < lengths.length && start < chunk.length) {
      const want = lengths[a.index];
      if (keep && a.buffers.length === a.index) a.buffers.push(Buffer.allocUnsafeSlow(want));
      const n = Math.min(want - a.filled, chunk.length - start);
      if (keep) chunk.copy(a.buffers[a.index], a.filled, start, start + n);
      a.filled += n;
      start += n;
      if (a.filled === want) {
        a.index++;
        a.filled = 0;
      }
    }
    if (a.index < lengths.length || start >= chunk.length) return start;
    this.attachments = undefined;
    const misframed = chunk[start] !== 0x0a;
    if (misframed) this.skipping = true;
    else start++;
    a.frame.done(a.buffers, misframed);
    return start;
  }

  /** Bytes of the line being received (not its attachments). */
  get lineBytes(): number {
    return this.size;
  }

  /** Whether the reader is skipping a line (one over the limit, or what follows misframed attachments): its bytes are never held. */
  get inSkip(): boolean {
    return this.skipping;
  }

  /** Whether the reader is taking (or skipping) the attachments a line declared. */
  get inAttachments(): boolean {
    return this.attachments !== undefined;
  }

  /** Whether the reader is inside a request: a line begun (or being skipped), or its attachments. */
  get midRequest(): boolean {
    return this.size > 0 || this.skipping || this.attachments !== undefined;
  }

  /** The first bytes of the line being received (for {@link recoverId}); empty when none. */
  lineHead(): string {
    return Buffer.concat(firstChunks(this.chunks, HEAD_BYTES)).subarray(0, HEAD_BYTES).toString('utf8');
  }

  /** Drops the request being received (its line or attachments): nothing of it is held any more. */
  discard(): void {
    this.chunks = [];
    this.size = 0;
    this.skipping = false;
    this.tail = undefined;
    this.attachments = undefined;
  }
}

/** The fewest first chunks that hold `n` bytes (or all of them). */
function firstChunks(chunks: Buffer[], n: number): Buffer[] {
  let i = 0;
  for (let size = 0; i < chunks.length && size < n; ) size += chunks[i++].length;
  return chunks.slice(0, i);
}

/** The fewest last chunks that hold `n` bytes (or all of them). */
function lastChunks(chunks: Buffer[], n: number): Buffer[] {
  let i = chunks.length;
  for (let size = 0; i > 0 && size < n; ) size += chunks[--i].length;
  return chunks.slice(i);
}

/** The last `n` bytes of `kept` followed by `piece` (copied: `piece` may be a large chunk). */
function lastBytes(kept: Buffer, piece: Buffer, n: number): Buffer {
  if (piece.length >= n) return Buffer.from(piece.subarray(piece.length - n));
  const joined = Buffer.concat([kept, piece]);
  return joined.length > n ? joined.subarray(joined.length - n) : joined;
}

/**
 * Whether a parsed `"$attachments"` value is a valid declaration: a list of at most
 * {@link MAX_ATTACHMENTS} byte lengths, each a safe integer >= 0 (as JSON reads them: `1e3` is
 * 1000, `1.0` is 1). The one rule for a request line and for the end of an over-long one.
 */
export function isAttachmentList(value: unknown): value is number[] {
  return Array.isArray(value) && value.length <= MAX_ATTACHMENTS && value.every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
}

/**
 * The attachments an over-long line declares at its end, as a request line does
 * (`..., "$attachments": [n, ...]}`: the last member of the request object, as the Python
 * client and docs/protocol.md write it): their byte lengths, `'malformed'` when the line ends
 * with a `"$attachments"` whose value (read as JSON) fails {@link isAttachmentList}, as a
 * request line's would (where the request ends is then unknown), or `undefined` when it ends
 * without one.
 */
export function trailingAttachments(tail: string): number[] | 'malformed' | undefined {
  // The value: everything after the member's colon up to the object's closing brace (a list of
  // numbers holds no colon), parsed as JSON so that it means what it means in a request line.
  const loose = /"\$attachments"\s*:\s*([^:]*?)\s*\}\s*$/.exec(tail);
  if (!loose) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(loose[1]);
  } catch {
    return 'malformed';
  }
  return isAttachmentList(value) ? value : 'malformed';
}

/**
 * Recovers a request's id from the start of a line that cannot be parsed whole (over-long or
 * malformed), with a strict pattern: `{"jsonrpc": "2.0", "id": ID, ...` or `{"id": ID, ...`,
 * where ID is an integer of at most 15 digits or a string of at most 64 characters from
 * `[A-Za-z0-9_.:-]`. Returns `null` (answer with `id: null`) when none is recognised.
 */
export function recoverId(head: string): string | number | null {
  const m = /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(?:(-?\d{1,15})|"([A-Za-z0-9_.:-]{1,64})")\s*[,}]/.exec(head);
  if (!m) return null;
  return m[1] !== undefined ? Number(m[1]) : m[2];
}

const HTTP_METHOD = /^(?:GET|POST|PUT|HEAD|OPTIONS|DELETE|PATCH|CONNECT|TRACE|PRI) /;

/** Whether `text` starts with an HTTP method and a space (a JSON-RPC line starts with `{` or `[`). */
export function startsLikeHttp(text: string): boolean {
  return HTTP_METHOD.test(text);
}

/**
 * Whether a line (or the first bytes of a connection) looks like HTTP: it starts with an HTTP
 * method and a space, or does not start with `{` or `[` (as a JSON-RPC line does) and holds
 * `HTTP/1.` / `HTTP/2`.
 */
export function looksLikeHttp(text: string): boolean {
  // A line that starts like JSON is never taken for HTTP (a first request may name a path with `HTTP/1.` in it).
  return HTTP_METHOD.test(text) || (!/^\s*[[{]/.test(text) && /\bHTTP\/(?:1\.|2)/.test(text.slice(0, 8192)));
}
