/**
 * Readers of per-sample length files, streamed (a 10-million-line file is never parsed whole).
 *
 * Formats, chosen by extension unless `format` says otherwise:
 * - `.json`: the reference format, a JSON list of `{"vit_num": tiles, "token_num": tokens,
 *   "image_flags": images}` objects (`vision`/`text` keys work too);
 * - `.jsonl` / `.ndjson`: JSON Lines, one such object per line;
 * - `.csv`: a header naming the columns (`vision,text` or `vit_num,token_num`, in any order,
 *   other columns ignored), then one sample per line.
 *
 * Several files concatenate in order: a sample's index is its position in that concatenation,
 * and its `group` is the index of its file. A bad value (missing, NaN, negative, fractional, over
 * 2^32 - 1, or 0 text tokens) is an `ERR_OMNIBAL_INVALID_SAMPLE` error naming the file and line;
 * malformed syntax is `ERR_OMNIBAL_PARSE`, likewise.
 *
 * @module
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import * as path from 'node:path';
import { ErrorCodes, omnibalError, type OmnibalError } from '../errors';
import { describeValue } from '../validate';
import type { Samples } from '../data/samples';

/** A length-file format. */
export type SamplesFormat = 'json' | 'jsonl' | 'csv';

/** Options of {@link readSamples}. */
export interface ReadSamplesOptions {
  /** The format of every file; default: from each file's extension. */
  format?: SamplesFormat;
}

/** Samples read from files, and how many came from each. */
export interface LoadedSamples extends Samples {
  /** The index of the file each sample came from. */
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

const VISION_KEYS = ['vit_num', 'vision'];
const TEXT_KEYS = ['token_num', 'text'];

function where(file: string, line: number): string {
  return `${file}:${line}`;
}

function parseError(file: string, line: number, message: string, cause?: unknown): OmnibalError {
  return omnibalError(ErrorCodes.PARSE, `${where(file, line)}: ${message}`, cause);
}

function sampleError(file: string, line: number, message: string): OmnibalError {
  return Object.assign(new RangeError(`${where(file, line)}: ${message}`), { code: ErrorCodes.INVALID_SAMPLE });
}

/** Checks one value: an integer in `min..=2^32 - 1`. */
function checkValue(file: string, line: number, name: string, value: unknown, min: number): number {
  if (typeof value !== 'number') {
    throw sampleError(file, line, `${name} must be a number, got ${value === undefined ? 'nothing' : describeValue(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > 0xffffffff) {
    throw sampleError(file, line, `${name} must be an integer between ${min} and 4294967295, got ${value}`);
  }
  return value;
}

/** Where samples of all files go, each tagged with its file's index as its group. */
class Sink {
  readonly vision = new U32Builder();
  readonly text = new U32Builder();
  readonly group = new U32Builder();
  fileIndex = 0;

  /** Adds a sample from an object with one of the accepted key pairs. */
  addObject(file: string, line: number, obj: unknown): void {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      throw sampleError(file, line, `a sample must be an object, got ${describeValue(obj)}`);
    }
    const o = obj as Record<string, unknown>;
    const vk = VISION_KEYS.find((k) => k in o);
    const tk = TEXT_KEYS.find((k) => k in o);
    if (vk === undefined || tk === undefined) {
      throw sampleError(file, line, 'a sample needs vit_num and token_num (or vision and text)');
    }
    this.add(file, line, o[vk], o[tk]);
  }

  add(file: string, line: number, vision: unknown, text: unknown): void {
    this.vision.push(checkValue(file, line, 'vision', vision, 0));
    this.text.push(checkValue(file, line, 'text', text, 1));
    this.group.push(this.fileIndex);
  }
}

/** The reference JSON list, streamed: each top-level object is parsed on its own. */
async function readJsonList(file: string, sink: Sink): Promise<void> {
  let line = 1;
  let state: 'start' | 'item' | 'after' | 'end' = 'start';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let objectText = '';
  let objectLine = 1;
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const text = chunk as string;
    let objectStart = depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (depth > 0) {
        if (c === '\n') line++;
        if (inString) {
          if (escaped) escaped = false;
          else if (c === '\\') escaped = true;
          else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
          depth--;
          if (depth === 0) {
            objectText += text.slice(objectStart, i + 1);
            let parsed: unknown;
            try {
              parsed = JSON.parse(objectText);
            } catch (error) {
              throw parseError(file, objectLine, `malformed object: ${(error as Error).message}`, error);
            }
            sink.addObject(file, objectLine, parsed);
            objectText = '';
            objectStart = -1;
            state = 'after';
          }
        }
        continue;
      }
      if (c === '\n') {
        line++;
        continue;
      }
      if (c === ' ' || c === '\t' || c === '\r') continue;
      if (state === 'start') {
        if (c !== '[') throw parseError(file, line, `expected a JSON list starting with '[', got '${c}'`);
        state = 'item';
      } else if (state === 'item') {
        if (c === '{') {
          depth = 1;
          objectStart = i;
          objectLine = line;
        } else if (c === ']' ) {
          state = 'end';
        } else {
          throw parseError(file, line, `expected a sample object, got '${c}'`);
        }
      } else if (state === 'after') {
        if (c === ',') state = 'item';
        else if (c === ']') state = 'end';
        else throw parseError(file, line, `expected ',' or ']' after a sample, got '${c}'`);
      } else {
        throw parseError(file, line, `unexpected '${c}' after the end of the list`);
      }
    }
    if (depth > 0) objectText += text.slice(objectStart);
  }
  if (state !== 'end') throw parseError(file, line, depth > 0 ? 'the file ends inside a sample' : "the file ends before the list's closing ']'");
}

/** JSON Lines, one object per line; blank lines are skipped. */
async function readJsonLines(file: string, sink: Sink): Promise<void> {
  let line = 0;
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const raw of lines) {
    line++;
    if (raw.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (error) {
      throw parseError(file, line, `malformed JSON line: ${(error as Error).message}`, error);
    }
    sink.addObject(file, line, parsed);
  }
}

/** CSV with a header row naming the vision and text columns. */
async function readCsv(file: string, sink: Sink): Promise<void> {
  let line = 0;
  let vCol = -1;
  let tCol = -1;
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const raw of lines) {
    line++;
    if (raw.trim() === '') continue;
    const fields = raw.split(',').map((f) => f.trim());
    if (vCol < 0) {
      const names = fields.map((f) => f.replace(/^"|"$/g, '').toLowerCase());
      vCol = names.findIndex((n) => VISION_KEYS.includes(n));
      tCol = names.findIndex((n) => TEXT_KEYS.includes(n));
      if (vCol < 0 || tCol < 0) {
        throw parseError(file, line, `the header must name a vision column (vit_num or vision) and a text column (token_num or text), got "${raw}"`);
      }
      continue;
    }
    const num = (s: string | undefined) => (s === undefined || s === '' ? undefined : Number(s));
    sink.add(file, line, num(fields[vCol]), num(fields[tCol]));
  }
  if (vCol < 0) throw parseError(file, line, 'no header row');
}

function formatOf(file: string, format: SamplesFormat | undefined): SamplesFormat {
  if (format) return format;
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  throw omnibalError(ErrorCodes.PARSE, `${file}: unknown format (extension ${ext || 'none'}); use .json, .jsonl or .csv, or give the format`);
}

/**
 * Reads samples from one or more files, in order (see the module notes for the formats).
 *
 * @param paths - one file or several (`.json` reference list, `.jsonl`, `.csv`), concatenated in order
 * @param options - the format of every file (default: from each file's extension)
 * @returns a Promise of the samples, the file each came from (`group`), and each file with its sample count
 */
export async function readSamples(paths: string | string[], options: ReadSamplesOptions = {}): Promise<LoadedSamples> {
  const list = Array.isArray(paths) ? paths : [paths];
  if (list.length === 0) throw omnibalError(ErrorCodes.EMPTY_INPUT, 'no input files');
  const sink = new Sink();
  const files: LoadedFile[] = [];
  for (let k = 0; k < list.length; k++) {
    const file = list[k];
    const format = formatOf(file, options.format);
    const before = sink.text.length;
    sink.fileIndex = k;
    try {
      if (format === 'json') await readJsonList(file, sink);
      else if (format === 'jsonl') await readJsonLines(file, sink);
      else await readCsv(file, sink);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
        throw omnibalError(ErrorCodes.PARSE, `${file}: cannot read (${code})`, error);
      }
      throw error;
    }
    files.push({ path: file, samples: sink.text.length - before });
  }
  return { vision: sink.vision.finish(), text: sink.text.finish(), group: sink.group.finish(), files };
}
