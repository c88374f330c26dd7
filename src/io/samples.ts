/**
 * Readers of per-sample length files, streamed (a 10-million-line file is never held as one
 * string). The native core reads files (`crate/core/src/io/samples.rs`); this module is its
 * TypeScript twin, and also reads streams such as stdin.
 *
 * Formats, chosen by extension unless `format` says otherwise:
 * - `.json`: the reference format, a JSON list of `{"vit_num": tiles, "token_num": tokens,
 *   "image_flags": images}` objects (`vision`/`text` keys work too);
 * - `.jsonl` / `.ndjson`: JSON Lines, one such object per line (lines of whitespace skipped);
 * - `.csv`: RFC 4180 CSV; a header naming the columns (`vision,text` or `vit_num,token_num`,
 *   in any order, other columns ignored), then one sample per record, quoted fields allowed.
 *
 * JSON is strict (RFC 8259: no trailing comma, no comments, no NaN); a UTF-8 byte-order mark at
 * the start of a file is skipped; line ends may be LF or CRLF (a CSV whose lines end in a bare CR,
 * as on classic Mac OS, is a parse error saying so). Only regular files are read (a
 * FIFO, device or directory is an error; a symbolic link is followed and its target checked),
 * opened with `O_NONBLOCK` so a FIFO cannot block. Limits hold while streaming: total bytes,
 * samples, and bytes of one record.
 *
 * Several inputs concatenate in order: a sample's index is its position in that concatenation,
 * and its `group` is the index of its input. Malformed syntax and I/O errors are
 * `ERR_OMNIBAL_PARSE`, a bad value (missing, not a number, fractional, negative, over
 * 2^32 - 1, or 0 text tokens) `ERR_OMNIBAL_INVALID_SAMPLE`; either names the file and line, and
 * for a JSON list the element (counted from 0), and never quotes the file's content.
 *
 * @module
 */
import { constants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type * as Native from '../../bindings';
import { activeBackend } from '../binding';
import { ErrorCodes, invalidType, omnibalError, unknownOption, type OmnibalError } from '../errors';
import { checkKnownKeys, describeValue, expectNumber, expectObject, integerBetween, optionKeys } from '../validate';
import type { Samples } from '../data/samples';
import { csvFields, csvTrim, csvValue, isJsonSpace, jsonSample, type RecordError } from './record';

/** A length-file format. */
export type SamplesFormat = 'json' | 'jsonl' | 'csv';

/** The formats, in the order help texts list them. */
export const SAMPLES_FORMATS: readonly SamplesFormat[] = ['json', 'jsonl', 'csv'];

/** Default total byte limit of {@link readSamples}: 64 GiB. */
export const DEFAULT_MAX_BYTES = 64 * 2 ** 30;
/** Default sample limit of {@link readSamples}: 2^31 - 1. */
export const DEFAULT_MAX_SAMPLES = 2 ** 31 - 1;
/** Default record limit of {@link readSamples}: 1 MiB. */
export const DEFAULT_MAX_RECORD_BYTES = 2 ** 20;
/** The largest record limit a caller may set: 256 MiB, well under V8's string limit. */
export const MAX_RECORD_BYTES_LIMIT = 256 * 2 ** 20;

/** Options of {@link readSamples}. */
export interface ReadSamplesOptions {
  /** The format of every input; default: from each file's extension (a stream: from its first byte). */
  format?: SamplesFormat;
  /** Most bytes over all inputs together; default 64 GiB. */
  maxBytes?: number;
  /** Most samples over all inputs together; default 2^31 - 1. */
  maxSamples?: number;
  /** Most bytes of one record (a line, a CSV record, one element of a JSON list); default 1 MiB, at most 256 MiB. */
  maxRecordBytes?: number;
}

const READ_SAMPLES_OPTION_KEYS = optionKeys<ReadSamplesOptions>({ format: true, maxBytes: true, maxSamples: true, maxRecordBytes: true });

/** A stream to read samples from (such as `process.stdin`), with the name errors give it. */
export interface SamplesStream {
  /** The name messages use, such as `<stdin>`. */
  name: string;
  /** The bytes. */
  stream: AsyncIterable<Uint8Array | string>;
  /** Its format; default: `json` when the first byte is `[`, `jsonl` when `{`, else `csv`. */
  format?: SamplesFormat;
}

/** Samples read from files, and how many came from each. */
export interface LoadedSamples extends Samples {
  /** The index of the file each sample came from (made when first read). */
  group: Uint32Array;
  /** Each file read, in order, with its number of samples. */
  files: LoadedFile[];
}

/** One file of a {@link LoadedSamples}. */
export interface LoadedFile {
  /** The path as given. */
  path: string;
  /** How many samples it held. */
  samples: number;
}

/** A growable `Uint32Array`. */
class U32Builder {
  private data = new Uint32Array(1024);
  length = 0;

  push(x: number): void {
    if (this.length === this.data.length) {
      const bigger = new Uint32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = x;
  }

  finish(): Uint32Array {
    return this.data.slice(0, this.length);
  }
}

function parseError(message: string, cause?: unknown): OmnibalError {
  return omnibalError(ErrorCodes.PARSE, message, cause);
}

interface Limits {
  maxBytes: number;
  maxSamples: number;
  maxRecordBytes: number;
}

/** Where samples go, with the limits and the input's name. */
class Sink {
  readonly vision = new U32Builder();
  readonly text = new U32Builder();
  path = '';

  constructor(readonly limits: Limits) {}

  where(line: number, element?: number): string {
    return element === undefined ? `${this.path}:${line}` : `${this.path}:${line}: element ${element}`;
  }

  fail(line: number, element: number | undefined, e: RecordError): OmnibalError {
    const message = `${this.where(line, element)}: ${e.message}`;
    if (e.kind === 'syntax') return parseError(message);
    return Object.assign(new RangeError(message), { code: ErrorCodes.INVALID_SAMPLE });
  }

  tooLong(line: number, element?: number): OmnibalError {
    return parseError(`${this.where(line, element)}: the record is longer than ${this.limits.maxRecordBytes} bytes (maxRecordBytes)`);
  }

  push(line: number, element: number | undefined, v: number, t: number): void {
    if (this.text.length >= this.limits.maxSamples) {
      throw parseError(`${this.where(line, element)}: more than ${this.limits.maxSamples} samples (maxSamples)`);
    }
    this.vision.push(v);
    this.text.push(t);
  }
}

/** A format's incremental scanner (see `Scanner` in the Rust twin). */
interface Scanner {
  shift(by: number): void;
  /** Takes every complete record of `buf[start..end]`; returns the new start. */
  scan(buf: Buffer, start: number, end: number, sink: Sink): number;
  finish(buf: Buffer, start: number, end: number, sink: Sink): void;
}

const LF = 0x0a;

class JsonLines implements Scanner {
  private line = 0;
  private scanned = 0;

  shift(by: number): void {
    this.scanned = Math.max(this.scanned - by, 0);
  }

  private record(buf: Buffer, start: number, end: number, sink: Sink): void {
    this.line++;
    if (end - start > sink.limits.maxRecordBytes) throw sink.tooLong(this.line);
    let blank = true;
    for (let i = start; i < end; i++) {
      if (!isJsonSpace(buf[i])) {
        blank = false;
        break;
      }
    }
    if (blank) return;
    const r = jsonSample(buf, start, end);
    if (!Array.isArray(r)) throw sink.fail(this.line, undefined, r);
    sink.push(this.line, undefined, r[0], r[1]);
  }

  scan(buf: Buffer, start: number, end: number, sink: Sink): number {
    let from = Math.max(start, this.scanned);
    for (;;) {
      const p = buf.indexOf(LF, from);
      if (p < 0 || p >= end) break;
      this.record(buf, start, p, sink);
      start = p + 1;
      from = start;
    }
    this.scanned = end;
    if (end - start > sink.limits.maxRecordBytes) throw sink.tooLong(this.line + 1);
    return start;
  }

  finish(buf: Buffer, start: number, end: number, sink: Sink): void {
    if (start < end) this.record(buf, start, end, sink);
  }
}

const enum List {
  Start,
  First,
  Next,
  After,
  Element,
  End,
}

class JsonList implements Scanner {
  private state = List.Start;
  private line = 1;
  private element = 0;
  private pos = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private elementLine = 1;

  shift(by: number): void {
    this.pos = Math.max(this.pos - by, 0);
  }

  scan(buf: Buffer, start: number, end: number, sink: Sink): number {
    const max = sink.limits.maxRecordBytes;
    let i = Math.max(this.pos, start);
    while (i < end) {
      const c = buf[i];
      if (this.state === List.Element) {
        if (c === LF) this.line++;
        if (this.inString) {
          if (this.escaped) this.escaped = false;
          else if (c === 0x5c) this.escaped = true;
          else if (c === 0x22) this.inString = false;
        } else if (c === 0x22) this.inString = true;
        else if (c === 0x7b || c === 0x5b) this.depth++;
        else if (c === 0x7d || c === 0x5d) {
          this.depth--;
          if (this.depth === 0) {
            const k = this.element;
            if (i + 1 - start > max) throw sink.tooLong(this.elementLine, k);
            const r = jsonSample(buf, start, i + 1);
            if (!Array.isArray(r)) throw sink.fail(this.elementLine, k, r);
            sink.push(this.elementLine, k, r[0], r[1]);
            this.element++;
            this.state = List.After;
            start = i + 1;
          }
        }
        i++;
        if (this.state === List.Element && i - start > max) throw sink.tooLong(this.elementLine, this.element);
        continue;
      }
      start = i + 1;
      if (c === LF) {
        this.line++;
        i++;
        continue;
      }
      if (isJsonSpace(c)) {
        i++;
        continue;
      }
      const here = sink.where(this.line);
      switch (this.state) {
        case List.Start:
          if (c !== 0x5b) throw parseError(`${here}: expected a JSON list starting with '['`);
          this.state = List.First;
          break;
        case List.First:
        case List.Next:
          if (c === 0x7b) {
            this.state = List.Element;
            this.depth = 1;
            this.elementLine = this.line;
            start = i;
          } else if (c === 0x5d && this.state === List.First) this.state = List.End;
          else throw parseError(`${sink.where(this.line, this.element)}: expected a JSON object`);
          break;
        case List.After:
          if (c === 0x2c) this.state = List.Next;
          else if (c === 0x5d) this.state = List.End;
          else throw parseError(`${here}: expected ',' or ']' after element ${this.element - 1}`);
          break;
        default:
          throw parseError(`${here}: unexpected content after the end of the list`);
      }
      i++;
    }
    this.pos = i;
    return start;
  }

  finish(_buf: Buffer, _start: number, _end: number, sink: Sink): void {
    const here = sink.where(this.line);
    switch (this.state) {
      case List.End:
        return;
      case List.Start:
        throw parseError(`${here}: expected a JSON list starting with '['`);
      case List.Element:
        throw parseError(`${sink.where(this.elementLine, this.element)}: the file ends inside the element`);
      default:
        throw parseError(`${here}: the file ends before the list's closing ']'`);
    }
  }
}

const enum Field {
  Start,
  Unquoted,
  Quoted,
  QuoteInQuoted,
}

const CR = 0x0d;
/** The message for a CR outside quotes that no LF follows (twin of `BARE_CR` in the Rust reader). */
const BARE_CR = 'a line ends in a bare CR (classic Mac OS line ends) or a CR stands alone outside quotes; use LF or CRLF line ends';

const VISION_KEYS = ['vit_num', 'vision'];
const TEXT_KEYS = ['token_num', 'text'];

class Csv implements Scanner {
  private line = 1;
  private recordLines = 0;
  private field = Field.Start;
  private pos = 0;
  private columns?: { count: number; vc: number; tc: number; vn: string; tn: string };
  private readonly fields: number[] = [];

  shift(by: number): void {
    this.pos = Math.max(this.pos - by, 0);
  }

  private record(buf: Buffer, start: number, end: number, sink: Sink): void {
    const line = this.line;
    this.line += this.recordLines + 1;
    this.recordLines = 0;
    if (end - start > sink.limits.maxRecordBytes) throw sink.tooLong(line);
    if (end > start && buf[end - 1] === 0x0d) end--;
    if (end === start) return;
    const e = csvFields(buf, start, end, this.fields);
    if (e) throw sink.fail(line, undefined, e);
    const f = this.fields;
    if (this.columns === undefined) {
      const names: string[] = [];
      for (let c = 0; c < f.length; c += 2) {
        const [s, t] = csvTrim(buf, f[c], f[c + 1]);
        let name = '';
        for (let j = s; j < t; j++) {
          const b = buf[j];
          name += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
        }
        names.push(name);
      }
      const find = (keys: string[]) => {
        for (let c = 0; c < names.length; c++) if (keys.includes(names[c])) return { c, n: names[c] };
        return undefined;
      };
      const v = find(VISION_KEYS);
      const t = find(TEXT_KEYS);
      if (!v || !t) {
        throw parseError(
          `${sink.where(line)}: the header must name a vision column (vit_num or vision) and a text column (token_num or text)`,
        );
      }
      this.columns = { count: names.length, vc: v.c, tc: t.c, vn: v.n, tn: t.n };
      return;
    }
    const { count, vc, tc, vn, tn } = this.columns;
    if (f.length / 2 !== count) throw parseError(`${sink.where(line)}: has ${f.length / 2} fields, the header has ${count}`);
    const v = csvValue(vn, vc, buf, f[2 * vc], f[2 * vc + 1], 0);
    if (typeof v !== 'number') throw sink.fail(line, undefined, v);
    const t = csvValue(tn, tc, buf, f[2 * tc], f[2 * tc + 1], 1);
    if (typeof t !== 'number') throw sink.fail(line, undefined, t);
    sink.push(line, undefined, v, t);
  }

  scan(buf: Buffer, start: number, end: number, sink: Sink): number {
    let i = Math.max(this.pos, start);
    for (; i < end; i++) {
      const c = buf[i];
      const f = this.field;
      if (f === Field.Quoted) {
        if (c === 0x22) this.field = Field.QuoteInQuoted;
        else if (c === LF) this.recordLines++;
      } else if (f === Field.QuoteInQuoted && c === 0x22) this.field = Field.Quoted;
      else if (f === Field.Start && c === 0x22) this.field = Field.Quoted;
      else if (c === 0x2c) this.field = Field.Start;
      else if (c === LF) {
        this.record(buf, start, i, sink);
        start = i + 1;
        this.field = Field.Start;
      } else if (c === CR) {
        // Outside quotes a CR must start a CRLF: resume here once the next byte has arrived.
        if (i + 1 === end) break;
        if (buf[i + 1] !== LF) throw parseError(`${sink.where(this.line + this.recordLines)}: ${BARE_CR}`);
        this.field = Field.Unquoted;
      } else this.field = Field.Unquoted;
    }
    this.pos = i;
    if (end - start > sink.limits.maxRecordBytes) throw sink.tooLong(this.line);
    return start;
  }

  finish(buf: Buffer, start: number, end: number, sink: Sink): void {
    if (start < end) {
      if (end - start > sink.limits.maxRecordBytes) throw sink.tooLong(this.line);
      if (this.field === Field.Quoted) throw parseError(`${sink.where(this.line)}: a quoted field is not closed`);
      this.record(buf, start, end, sink);
    }
    if (this.columns === undefined) throw parseError(`${sink.path}: no header row`);
  }
}

function scannerFor(format: SamplesFormat): Scanner {
  return format === 'json' ? new JsonList() : format === 'jsonl' ? new JsonLines() : new Csv();
}

const CHUNK = 1 << 20;

/** Feeds chunks to a scanner, keeping the partial record, skipping a leading byte-order mark. */
class Feeder {
  private buf = Buffer.allocUnsafe(CHUNK);
  private start = 0;
  private end = 0;
  private first = true;

  constructor(
    private readonly scanner: Scanner,
    private readonly sink: Sink,
  ) {}

  /** Room for at least half a chunk at the end; returns the buffer and where to write. */
  room(): { buf: Uint8Array; at: number } {
    if (this.buf.length - this.end < CHUNK / 2) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.scanner.shift(this.start);
        this.end -= this.start;
        this.start = 0;
      }
      if (this.buf.length - this.end < CHUNK / 2) {
        const bigger = Buffer.allocUnsafe(this.buf.length + CHUNK);
        bigger.set(this.buf.subarray(0, this.end));
        this.buf = bigger;
      }
    }
    return { buf: this.buf, at: this.end };
  }

  /** `n` bytes were written at the end. */
  wrote(n: number): void {
    this.end += n;
    if (this.first && this.end >= 3) {
      if (this.buf[0] === 0xef && this.buf[1] === 0xbb && this.buf[2] === 0xbf) this.start = 3;
      this.first = false;
    }
    if (!this.first) this.start = this.scanner.scan(this.buf, this.start, this.end, this.sink);
  }

  /** Appends a chunk from a stream. */
  push(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      const { buf, at } = this.room();
      const n = Math.min(buf.length - at, chunk.length - off);
      buf.set(chunk.subarray(off, off + n), at);
      off += n;
      this.wrote(n);
    }
  }

  finish(): void {
    if (this.first) this.start = this.scanner.scan(this.buf, this.start, this.end, this.sink);
    this.scanner.finish(this.buf, this.start, this.end, this.sink);
  }
}

function errnoName(error: unknown): string {
  return (error as { code?: string }).code ?? 'EIO';
}

/** Reads one regular file through `format`'s scanner. */
async function readFile(file: string, format: SamplesFormat, sink: Sink, bytes: { n: number }): Promise<void> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    throw parseError(`${file}: cannot read (${errnoName(error)})`, error);
  }
  try {
    let size: number;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw parseError(`${file}: not a regular file`);
      size = st.size;
    } catch (error) {
      if ((error as { code?: string }).code === ErrorCodes.PARSE) throw error;
      throw parseError(`${file}: cannot read (${errnoName(error)})`, error);
    }
    const tooBig = () => parseError(`${file}: the input is larger than ${sink.limits.maxBytes} bytes (maxBytes)`);
    if (size > sink.limits.maxBytes - bytes.n) throw tooBig();
    const feeder = new Feeder(scannerFor(format), sink);
    for (;;) {
      const { buf, at } = feeder.room();
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, at, buf.length - at, null));
      } catch (error) {
        throw parseError(`${file}: cannot read (${errnoName(error)})`, error);
      }
      if (n === 0) break;
      bytes.n += n;
      if (bytes.n > sink.limits.maxBytes) throw tooBig();
      feeder.wrote(n);
    }
    feeder.finish();
  } finally {
    await fh.close();
  }
}

/** Reads one stream; without a format, takes it from the first byte that is not whitespace. */
async function readStream(input: SamplesStream, format: SamplesFormat | undefined, sink: Sink, bytes: { n: number }): Promise<void> {
  let feeder: Feeder | undefined;
  const pending: Uint8Array[] = [];
  const begin = (f: SamplesFormat) => {
    feeder = new Feeder(scannerFor(f), sink);
    for (const c of pending) feeder.push(c);
  };
  try {
    for await (const raw of input.stream) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      bytes.n += chunk.length;
      if (bytes.n > sink.limits.maxBytes) throw parseError(`${input.name}: the input is larger than ${sink.limits.maxBytes} bytes (maxBytes)`);
      if (feeder) feeder.push(chunk);
      else {
        pending.push(chunk);
        const f = format ?? sniff(pending);
        if (f) begin(f);
      }
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('ERR_OMNIBAL_')) throw error;
    throw parseError(`${input.name}: cannot read (${errnoName(error)})`, error);
  }
  if (!feeder) begin(format ?? 'jsonl');
  feeder!.finish();
}

/** The format from the first byte after a byte-order mark that is not whitespace, once one has arrived. */
function sniff(chunks: Uint8Array[]): SamplesFormat | undefined {
  const head = Buffer.concat(chunks);
  let i = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  if (head.length < 3 && (head[0] === 0xef || head.length === 0)) return undefined;
  while (i < head.length && isJsonSpace(head[i])) i++;
  if (i === head.length) return undefined;
  return head[i] === 0x5b ? 'json' : head[i] === 0x7b ? 'jsonl' : 'csv';
}

/** The format of `file` from its extension (`.json`, `.jsonl`/`.ndjson`, `.csv`). */
export function formatOf(file: string, format: SamplesFormat | undefined): SamplesFormat {
  if (format) {
    if (!SAMPLES_FORMATS.includes(format)) throw unknownOption('format', format, SAMPLES_FORMATS);
    return format;
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  throw parseError(`${file}: unknown format (extension ${ext || 'none'}); use .json, .jsonl or .csv, or give the format`);
}

function limitOf(name: string, v: number | undefined, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  expectNumber(name, v);
  return integerBetween(name, v, 1, max);
}

function limitsOf(o: { maxBytes?: number | null; maxSamples?: number | null; maxRecordBytes?: number | null }): Limits {
  return {
    maxBytes: limitOf('maxBytes', o.maxBytes ?? undefined, Number.MAX_SAFE_INTEGER, DEFAULT_MAX_BYTES),
    maxSamples: limitOf('maxSamples', o.maxSamples ?? undefined, 0xffffffff, DEFAULT_MAX_SAMPLES),
    maxRecordBytes: limitOf('maxRecordBytes', o.maxRecordBytes ?? undefined, MAX_RECORD_BYTES_LIMIT, DEFAULT_MAX_RECORD_BYTES),
  };
}

async function readAll(
  inputs: (string | SamplesStream)[],
  formats: (SamplesFormat | undefined)[],
  limits: Limits,
): Promise<{ vision: Uint32Array; text: Uint32Array; counts: number[] }> {
  const sink = new Sink(limits);
  const counts: number[] = [];
  const bytes = { n: 0 };
  for (let k = 0; k < inputs.length; k++) {
    const input = inputs[k];
    const before = sink.text.length;
    if (typeof input === 'string') {
      sink.path = input;
      await readFile(input, formats[k]!, sink, bytes);
    } else {
      sink.path = input.name;
      await readStream(input, formats[k], sink, bytes);
    }
    counts.push(sink.text.length - before);
  }
  return { vision: sink.vision.finish(), text: sink.text.finish(), counts };
}

/** Twin of the native `readSampleFiles`: reads `paths[k]` in `formats[k]`. */
export async function readSampleFilesTwin(
  paths: string[],
  formats: string[],
  options: Native.ReadLimitsOptions,
): Promise<Native.NativeLoadedSamples> {
  const limits = limitsOf(options);
  const checked = formats.map((f) => formatOf('', f as SamplesFormat));
  return readAll(paths, checked, limits);
}

/**
 * Reads samples from files (and streams, such as stdin), in order (see the module notes for
 * the formats and limits). Files are read by the native core when it is loaded, else by the
 * TypeScript twin; both give the same samples and the same errors.
 *
 * @param inputs - one path or stream, or several, read in order (`.json` list, `.jsonl`, `.csv`)
 * @param options - formats and the byte, sample and record limits held while streaming
 * @returns a Promise of the samples, the input each came from (`group`), and each input with its sample count
 */
export async function readSamples(inputs: string | SamplesStream | (string | SamplesStream)[], options: ReadSamplesOptions = {}): Promise<LoadedSamples> {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (list.length === 0) throw omnibalError(ErrorCodes.EMPTY_INPUT, 'no input files');
  list.forEach(checkInput);
  checkKnownKeys('options', expectObject('options', options), READ_SAMPLES_OPTION_KEYS);
  const limits = limitsOf(options);
  const formats = list.map((input) => (typeof input === 'string' ? formatOf(input, options.format) : (input.format ?? options.format)));
  const names = list.map((input) => (typeof input === 'string' ? input : input.name));
  const loaded = list.every((input) => typeof input === 'string')
    ? await activeBackend().readSampleFiles(list as string[], formats as string[], limits)
    : await readAll(list, formats, limits);
  const out = {
    vision: loaded.vision,
    text: loaded.text,
    files: names.map((p, k) => ({ path: p, samples: loaded.counts[k] })),
  } as LoadedSamples;
  // Made on first use from the counts: most callers never read it (40 MB at 10M samples).
  let group: Uint32Array | undefined;
  return Object.defineProperty(out, 'group', {
    enumerable: true,
    get: () => (group ??= groupsOf(loaded.counts)),
    // Still a plain writable field to callers (the type says so): a strict-mode assignment must not throw.
    set: (value: Uint32Array) => {
      group = value;
    },
  });
}

/** Whether `value` can be read with `for await`. */
function isAsyncIterable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

/** Throws a coded `TypeError` unless `input` is a path (a string) or a {@link SamplesStream}. */
function checkInput(input: unknown, k: number): void {
  if (typeof input === 'string') return;
  const o = typeof input === 'object' && input !== null ? (input as Partial<SamplesStream>) : undefined;
  if (o && !Buffer.isBuffer(o) && typeof o.name === 'string' && isAsyncIterable(o.stream)) return;
  const what = input instanceof URL
    ? 'a URL (pass url.fileURLToPath(url))'
    : Buffer.isBuffer(input)
      ? 'a Buffer'
      : isAsyncIterable(input)
        ? 'a bare stream (wrap it as { name, stream })'
        : describeValue(input);
  throw invalidType(`inputs[${k}]`, `must be a file path (a string) or { name, stream, format? } with an async-iterable stream, got ${what}`);
}

/** Each sample's input index, from the inputs' sample counts. */
function groupsOf(counts: number[]): Uint32Array {
  const group = new Uint32Array(counts.reduce((a, b) => a + b, 0));
  let at = 0;
  counts.forEach((c, k) => group.fill(k, at, (at += c)));
  return group;
}
