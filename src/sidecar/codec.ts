/**
 * Numeric arrays on the sidecar wire: JSON lists, `{ "$base64": "...", "dtype": "u32" | "f64" }`
 * holding little-endian typed-array bytes (much smaller and faster for millions of samples), or
 * `{ "$binary": k, "dtype": "u32" }`: attachment `k`, raw little-endian bytes after the line
 * (docs/protocol.md, "Binary attachments"; no text encoding at all).
 *
 * @module
 */
import * as os from 'node:os';
import { invalidType } from '../errors';
import { RpcError, RpcErrors, paramsError } from './errors';
import { activeBackend } from '../binding';

/** A wire-encoded numeric array. */
export interface Base64Array {
  /** Little-endian bytes, base64. */
  $base64: string;
  /** Element type. */
  dtype: 'u32' | 'f64';
}

/** Decodes a JSON list or a base64 array into a `Uint32Array` (an attachment, bound by {@link bindAttachments}, is one already). */
export function toU32(name: string, v: unknown): Uint32Array {
  if (v instanceof Uint32Array) return v;
  if (Array.isArray(v)) {
    const out = new Uint32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0xffffffff) {
        throw Object.assign(new RangeError(`${name}[${i}] must be an integer between 0 and 4294967295, got ${JSON.stringify(x)}`), { code: 'ERR_OMNIBAL_OUT_OF_RANGE' });
      }
      out[i] = x;
    }
    return out;
  }
  if (v && typeof v === 'object' && typeof (v as Base64Array).$base64 === 'string') {
    const b = v as Base64Array;
    if (b.dtype !== 'u32') throw invalidType(name, `must have dtype u32, got ${JSON.stringify(b.dtype)}`);
    return decodeCanonical(b.$base64) ?? activeBackend().decodeBase64U32(name, b.$base64);
  }
  throw invalidType(name, 'must be a list of integers, { "$base64", "dtype": "u32" } or { "$binary", "dtype": "u32" }');
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * `text` decoded by Node's own base64 decoder when it is the canonical padded standard base64 of
 * whole little-endian `u32` values (what every client writes), else `undefined`. Node's decoder
 * takes the URL-safe `-` and `_` (looked for) and skips or stops at any other character outside
 * the alphabet, a `=` before the end included, which leaves fewer bytes than the length and
 * padding promise (checked); the bits past the last byte must be zero (checked). Text that
 * passes is what the strict decoder accepts, with the same values. Node's decoder is
 * vectorised and the text is not copied across N-API: 4M samples take a few ms instead of
 * 40-60 ms. Any other text (errors included) goes to the backend's strict decoder, which says
 * what is wrong.
 */
function decodeCanonical(text: string): Uint32Array | undefined {
  const n = text.length;
  if (os.endianness() !== 'LE' || n % 4 !== 0) return undefined;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== (n / 4) * 3 - pad || bytes.length % 4 !== 0) return undefined;
  if (text.includes('-') || text.includes('_')) return undefined;
  if (pad > 0 && (BASE64_ALPHABET.indexOf(text[n - pad - 1]) & (pad === 1 ? 0b11 : 0b1111)) !== 0) return undefined;
  // Large buffers own their memory, small ones share Node's pool and may not be 4-byte aligned.
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

/** The little-endian bytes of `a`: a Buffer over its own memory on a little-endian host (no copy). */
export function littleEndianBytes(a: Uint32Array): Buffer {
  if (os.endianness() === 'LE') return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const buf = Buffer.alloc(a.length * 4);
  for (let i = 0; i < a.length; i++) buf.writeUInt32LE(a[i], 4 * i);
  return buf;
}

/** Encodes a typed array for the wire. */
export function encodeU32(a: Uint32Array): Base64Array {
  return { $base64: littleEndianBytes(a).toString('base64'), dtype: 'u32' };
}

/**
 * An answer's array sent as a binary attachment (`encoding: "binary"`): written as
 * `{"$binary": k, "dtype": "u32"}` in the answer line, its bytes (over the array's own memory)
 * after it.
 */
export class U32Attachment {
  constructor(readonly array: Uint32Array) {}
}

/** Most attachments one request may carry. */
export const MAX_ATTACHMENTS = 64;

/** A request's `$binary` reference, as its schema admits it. */
interface BinaryRef {
  $binary: number;
  $base64?: unknown;
  dtype: 'u32';
}

function isBinaryRef(v: unknown): v is BinaryRef {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.prototype.hasOwnProperty.call(v, '$binary');
}

/**
 * `params` with every top-level `{"$binary": k, "dtype": "u32"}` replaced by attachment `k` as
 * a `Uint32Array` over the attachment's own memory (no copy on a little-endian host). Only the
 * params named in `arrays` (the method's numeric arrays) may be references: another param given
 * as one (an object param such as `calibration`) is -32602 naming it. Each attachment must be
 * referenced exactly once and hold whole u32 values; a reference without its attachment, or an
 * attachment never referenced, is an error naming it (-32602 / -32600). `params` itself is not
 * changed.
 */
export function bindAttachments(params: Record<string, unknown>, attachments: Buffer[], arrays: ReadonlySet<string>): Record<string, unknown> {
  let out = params;
  const used = new Array<string | undefined>(attachments.length);
  for (const key of Object.keys(params)) {
    const v = params[key];
    if (!isBinaryRef(v)) {
      checkNested(key, v);
      continue;
    }
    if (!arrays.has(key)) throw paramsError(key, `is a {"$binary": k} attachment reference: only a numeric-array param may be a binary attachment${notAttachable(arrays)}`, 'ERR_OMNIBAL_INVALID_TYPE');
    if (v.$base64 !== undefined) throw paramsError(key, 'must have one of $base64 or $binary, not both', 'ERR_OMNIBAL_INVALID_TYPE');
    const k = v.$binary;
    if (k >= attachments.length) {
      throw paramsError(key, `refers to attachment ${k}, but the request has ${attachments.length === 0 ? 'none ("$attachments" lists their byte lengths)' : `only ${attachments.length}`}`, 'ERR_OMNIBAL_INVALID_OPTIONS');
    }
    if (used[k] !== undefined) throw paramsError(key, `refers to attachment ${k}, which ${used[k]} already refers to (each attachment is one array)`, 'ERR_OMNIBAL_INVALID_OPTIONS');
    used[k] = key;
    const bytes = attachments[k];
    if (bytes.length % 4 !== 0) throw paramsError(key, `attachment ${k} is ${bytes.length} bytes, not a whole number of u32 values (a multiple of 4)`, 'ERR_OMNIBAL_INVALID_TYPE');
    if (out === params) out = { ...params };
    out[key] = fromLittleEndian(bytes);
  }
  let first = -1;
  for (let i = attachments.length - 1; i >= 0; i--) if (used[i] === undefined) first = i;
  if (first >= 0) {
    throw new RpcError(RpcErrors.INVALID_REQUEST, `invalid request: attachment ${first} (of ${attachments.length} in "$attachments") is never referenced by a {"$binary": ${first}} param`, { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
  }
  return out;
}

/** The method's array params, as the end of a message (`` (here: `vision`, `text`) ``). */
function notAttachable(arrays: ReadonlySet<string>): string {
  return arrays.size === 0 ? ' (this method takes none)' : ` (here: ${[...arrays].map((k) => `\`${k}\``).join(', ')})`;
}

/** Deepest nesting of objects and lists inside one param (a calibration file needs 4 levels). */
export const MAX_PARAM_DEPTH = 64;

/** Most objects and lists nested inside one param (a calibration file holds a few hundred). */
export const MAX_PARAM_NODES = 100_000;

/** A nested value met by {@link checkNested}, with how to name its path (built only for an error). */
interface NestedNode {
  value: object;
  depth: number;
  parent: NestedNode | undefined;
  step: string | number;
}

function pathOf(key: string, node: NestedNode): string {
  const steps: (string | number)[] = [];
  for (let n: NestedNode | undefined = node; n?.parent !== undefined; n = n.parent) steps.push(n.step);
  return steps.reverse().reduce<string>((path, step) => (typeof step === 'number' ? `${path}[${step}]` : `${path}.${step}`), key);
}

/**
 * Throws -32602 naming the field path of a `{"$binary": k}` object found anywhere inside `value`
 * (the value of top-level param `key`): only a top-level array param may be an attachment; of
 * a value nested more than {@link MAX_PARAM_DEPTH} levels deep (free-form members such as a
 * calibration's extra fields would otherwise overflow the stack of the code that copies them to
 * a worker: an internal error); or of a param holding more than {@link MAX_PARAM_NODES} nested
 * objects and lists (copying millions of them to a worker would stall the server for seconds).
 * Walks with its own stack, naming paths only for an error; a list of numbers costs one `typeof`
 * per element.
 */
function checkNested(key: string, value: unknown): void {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return;
  const stack: NestedNode[] = [{ value, depth: 1, parent: undefined, step: key }];
  let nodes = 0;
  while (stack.length > 0) {
    const node = stack.pop()!;
    const v = node.value;
    if (node.depth > MAX_PARAM_DEPTH) throw paramsError(pathOf(key, node), `is nested more than ${MAX_PARAM_DEPTH} levels deep`, 'ERR_OMNIBAL_OUT_OF_RANGE');
    if (++nodes > MAX_PARAM_NODES) throw paramsError(key, `holds more than ${MAX_PARAM_NODES} nested objects and lists`, 'ERR_OMNIBAL_OUT_OF_RANGE');
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) {
        const x: unknown = v[i];
        if (x !== null && typeof x === 'object') stack.push({ value: x, depth: node.depth + 1, parent: node, step: i });
      }
      continue;
    }
    if (node.parent !== undefined && isBinaryRef(v)) {
      throw paramsError(pathOf(key, node), 'is a {"$binary": k} attachment reference: only a top-level array param may be a binary attachment', 'ERR_OMNIBAL_INVALID_TYPE');
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    for (let j = keys.length - 1; j >= 0; j--) {
      const x = o[keys[j]];
      if (x !== null && typeof x === 'object') stack.push({ value: x, depth: node.depth + 1, parent: node, step: keys[j] });
    }
  }
}

/** Little-endian u32 bytes (a buffer that owns its 4-byte-aligned memory) as a `Uint32Array`, without a copy where the host is little-endian. */
function fromLittleEndian(bytes: Buffer): Uint32Array {
  if (os.endianness() === 'LE' && bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const out = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readUInt32LE(4 * i);
  return out;
}

/** `encoding: "base64"` answer of `planStep` / `planForRank`: the nested lists as three flat arrays. */
export interface MicroBatchArrays {
  encoding: 'base64';
  /** Sample indices of every micro-batch, one after another. */
  samples: Base64Array;
  /** Micro-batch `k` is `samples[microBatchOffsets[k] .. microBatchOffsets[k + 1]]`. */
  microBatchOffsets: Base64Array;
  /** Group `g` (a rank of `planStep`, a step of `planForRank`) is micro-batches `groupOffsets[g] .. groupOffsets[g + 1]`. */
  groupOffsets: Base64Array;
}

/**
 * The lists {@link encodeMicroBatchLists} writes, as {@link MicroBatchArrays}: about 5.5 bytes per
 * sample instead of up to 11, and decoded by a client without parsing a number per sample.
 */
export function encodeMicroBatchArrays(plan: MicroBatchLayout, groups: ArrayLike<number>): MicroBatchArrays {
  const { samples, microBatchOffsets, groupOffsets } = microBatchArrays(plan, groups);
  return { encoding: 'base64', samples: encodeU32(samples), microBatchOffsets: encodeU32(microBatchOffsets), groupOffsets: encodeU32(groupOffsets) };
}

/** {@link MicroBatchArrays} as binary attachments (`encoding: "binary"`). */
export function attachMicroBatchArrays(plan: MicroBatchLayout, groups: ArrayLike<number>): { encoding: 'binary'; samples: U32Attachment; microBatchOffsets: U32Attachment; groupOffsets: U32Attachment } {
  const { samples, microBatchOffsets, groupOffsets } = microBatchArrays(plan, groups);
  return { encoding: 'binary', samples: new U32Attachment(samples), microBatchOffsets: new U32Attachment(microBatchOffsets), groupOffsets: new U32Attachment(groupOffsets) };
}

/** The flat arrays of {@link MicroBatchArrays}, not yet encoded. */
function microBatchArrays(plan: MicroBatchLayout, groups: ArrayLike<number>): { samples: Uint32Array; microBatchOffsets: Uint32Array; groupOffsets: Uint32Array } {
  const { samples, microBatchOffsets: mbo, rankOffsets: ro } = plan;
  const { values, lists } = groupSizes(plan, groups);
  const out = new Uint32Array(values);
  const offsets = new Uint32Array(lists + 1);
  const groupOffsets = new Uint32Array(groups.length + 1);
  let v = 0;
  let k = 0;
  for (let g = 0; g < groups.length; g++) {
    const a = ro[groups[g]];
    const b = ro[groups[g] + 1];
    // A group's micro-batches are contiguous in the plan: one copy, offsets rebased.
    out.set(samples.subarray(mbo[a], mbo[b]), v);
    for (let j = a; j < b; j++) offsets[k++] = v + mbo[j] - mbo[a];
    v += mbo[b] - mbo[a];
    groupOffsets[g + 1] = k;
  }
  offsets[k] = v;
  return { samples: out, microBatchOffsets: offsets, groupOffsets };
}

/** How many sample indices (`values`) and micro-batches (`lists`) the groups hold. */
function groupSizes(plan: MicroBatchLayout, groups: ArrayLike<number>): { values: number; lists: number } {
  const { microBatchOffsets: mbo, rankOffsets: ro } = plan;
  let values = 0;
  let lists = 0;
  for (let g = 0; g < groups.length; g++) {
    const a = ro[groups[g]];
    const b = ro[groups[g] + 1];
    lists += b - a;
    values += mbo[b] - mbo[a];
  }
  return { values, lists };
}

/** JSON text made without `JSON.stringify` (big index lists), sent as is. */
export class RawJson {
  constructor(readonly bytes: Buffer) {}
}

/** The index layout of a plan that {@link encodeMicroBatchLists} reads. */
export interface MicroBatchLayout {
  samples: Uint32Array;
  microBatchOffsets: Uint32Array;
  rankOffsets: Uint32Array;
}

/**
 * `[[[indices of a micro-batch], ...] for each group]` as JSON bytes, where group `g` is the
 * micro-batches `rankOffsets[groups[g]] .. rankOffsets[groups[g] + 1]`. Writes ASCII digits
 * straight into one buffer: a 2-million-sample `planForRank` is about 10x faster than building
 * nested arrays and stringifying them.
 */
export function encodeMicroBatchLists(plan: MicroBatchLayout, groups: ArrayLike<number>): RawJson {
  const { samples, microBatchOffsets: mbo, rankOffsets: ro } = plan;
  const { values, lists } = groupSizes(plan, groups);
  const buf = Buffer.allocUnsafe(values * 11 + lists * 3 + groups.length * 3 + 2);
  const digits = new Uint8Array(10);
  let p = 0;
  buf[p++] = 0x5b;
  for (let g = 0; g < groups.length; g++) {
    if (g > 0) buf[p++] = 0x2c;
    buf[p++] = 0x5b;
    const a = ro[groups[g]];
    const b = ro[groups[g] + 1];
    for (let k = a; k < b; k++) {
      if (k > a) buf[p++] = 0x2c;
      buf[p++] = 0x5b;
      for (let j = mbo[k]; j < mbo[k + 1]; j++) {
        if (j > mbo[k]) buf[p++] = 0x2c;
        let v = samples[j];
        let d = 0;
        do {
          digits[d++] = 48 + (v % 10);
          v = Math.floor(v / 10);
        } while (v > 0);
        while (d > 0) buf[p++] = digits[--d];
      }
      buf[p++] = 0x5d;
    }
    buf[p++] = 0x5d;
  }
  buf[p++] = 0x5d;
  return new RawJson(buf.subarray(0, p));
}
