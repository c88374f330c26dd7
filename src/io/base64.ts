/**
 * Twin of the core's `io::base64`: a sidecar binary array (`{ "$base64": text, "dtype": "u32" }`)
 * is little-endian `u32` values in strict, padded standard base64 (RFC 4648, section 4).
 *
 * @module
 */
import * as os from 'node:os';
import { invalidType } from '../errors';

/** Twin of the native `decodeBase64U32`: `text` decoded, errors naming `name`. */
export function decodeBase64U32Twin(name: string, text: string): Uint32Array {
  // Buffer.from() skips characters that are not base64: check the alphabet and padding first.
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw invalidType(name, 'is not valid base64 (standard alphabet, padded to a multiple of 4 characters)');
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length % 4 !== 0) throw invalidType(name, 'base64 data must be a whole number of 4-byte values');
  // Little-endian hosts take the bytes as they are (one copy, to an aligned buffer of its own).
  if (os.endianness() === 'LE') return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const out = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readUInt32LE(4 * i);
  return out;
}
