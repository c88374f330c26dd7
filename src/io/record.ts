/**
 * One record of a length file: a JSON sample object or a CSV record, checked strictly.
 * TypeScript twin of `crate/core/src/io/record.rs`; every message is worded alike and never
 * quotes the file's content.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer';

/** The largest value a vision or text field may hold. */
export const MAX_VALUE = 0xffffffff;

/** What is wrong with a record: malformed syntax (`ERR_OMNIBAL_PARSE`) or a bad value (`ERR_OMNIBAL_INVALID_SAMPLE`). */
export interface RecordError {
  /** `syntax` or `value`. */
  kind: 'syntax' | 'value';
  /** What was wrong, without the content. */
  message: string;
}

/** JSON whitespace (RFC 8259): space, tab, line feed, carriage return. */
export function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

const syntax = (message: string): RecordError => ({ kind: 'syntax', message });
const value = (message: string): RecordError => ({ kind: 'value', message });


function kindOf(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  switch (typeof x) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'number':
      return 'a number';
    default:
      return 'an object';
  }
}

function jsonValue(name: string, x: unknown, min: number): number | RecordError {
  if (typeof x !== 'number') return value(`${name} must be a number, got ${kindOf(x)}`);
  if (!Number.isInteger(x) || x < min || x > MAX_VALUE) return value(`${name} must be an integer between ${min} and ${MAX_VALUE}`);
  return x === 0 ? 0 : x;
}

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Reads one sample from `bytes[start..end]` (a JSON Lines line or one element of a list):
 * valid UTF-8, valid JSON, an object with `vit_num` and `token_num` (or `vision` and `text`),
 * integer values in range (text at least 1). Returns `[vision, text]` or what is wrong.
 */
export function jsonSample(bytes: Buffer, start: number, end: number): [number, number] | RecordError {
  if (!isUtf8(bytes.subarray(start, end))) return syntax('not valid UTF-8');
  // Buffer's UTF-8 decoding keeps a U+FEFF inside the text, as the native parser does.
  const text = bytes.toString('utf8', start, end);
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return syntax('not valid JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return value(`a sample must be a JSON object, got ${kindOf(o)}`);
  const vk = has(o, 'vit_num') ? 'vit_num' : has(o, 'vision') ? 'vision' : undefined;
  const tk = has(o, 'token_num') ? 'token_num' : has(o, 'text') ? 'text' : undefined;
  if (vk === undefined || tk === undefined) return value('a sample needs vit_num and token_num (or vision and text)');
  const rec = o as Record<string, unknown>;
  const v = jsonValue(vk, rec[vk], 0);
  if (typeof v !== 'number') return v;
  const t = jsonValue(tk, rec[tk], 1);
  if (typeof t !== 'number') return t;
  return [v, t];
}

const QUOTE = 0x22;
const COMMA = 0x2c;

/**
 * Splits one CSV record `r[start..end]` (no line terminator) into its fields' byte ranges
 * (`out` holds start/end pairs), RFC 4180 strictly: a field is quoted (a quote inside doubled)
 * or holds no quote at all; after a closing quote comes a comma or the end of the record.
 * Returns what is wrong, or `undefined`.
 */
export function csvFields(r: Uint8Array, start: number, end: number, out: number[]): RecordError | undefined {
  out.length = 0;
  let i = start;
  for (;;) {
    const k = out.length / 2 + 1;
    if (i < end && r[i] === QUOTE) {
      let j = i + 1;
      let close: number;
      for (;;) {
        const q = r.subarray(j, end).indexOf(QUOTE);
        if (q < 0) return syntax(`field ${k}: a quoted field is not closed`);
        if (j + q + 1 < end && r[j + q + 1] === QUOTE) j += q + 2;
        else {
          close = j + q;
          break;
        }
      }
      out.push(i + 1, close);
      i = close + 1;
      if (i === end) return undefined;
      if (r[i] !== COMMA) return syntax(`field ${k}: malformed quoting`);
      i++;
    } else {
      const c = r.subarray(i, end).indexOf(COMMA);
      const fieldEnd = c < 0 ? end : i + c;
      if (r.subarray(i, fieldEnd).indexOf(QUOTE) >= 0) return syntax(`field ${k}: malformed quoting`);
      out.push(i, fieldEnd);
      if (fieldEnd === end) return undefined;
      i = fieldEnd + 1;
    }
  }
}

/** The range of `r[start..end]` without spaces and tabs around it. */
export function csvTrim(r: Uint8Array, start: number, end: number): [number, number] {
  while (start < end && (r[start] === 0x20 || r[start] === 0x09)) start++;
  while (end > start && (r[end - 1] === 0x20 || r[end - 1] === 0x09)) end--;
  return [start, end];
}

/** A CSV value: decimal digits only (spaces and tabs around allowed), an integer in `min..=2^32 - 1`. */
export function csvValue(name: string, column: number, r: Uint8Array, start: number, end: number, min: number): number | RecordError {
  const [s, e] = csvTrim(r, start, end);
  const bad = value(`${name} (field ${column + 1}) must be an integer between ${min} and ${MAX_VALUE}`);
  if (s === e) return bad;
  let i = s;
  for (let j = s; j < e; j++) if (r[j] < 0x30 || r[j] > 0x39) return bad;
  while (i < e && r[i] === 0x30) i++;
  if (e - i > 10) return bad;
  let x = 0;
  for (let j = i; j < e; j++) x = x * 10 + (r[j] - 0x30);
  return x < min || x > MAX_VALUE ? bad : x;
}
