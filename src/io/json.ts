/**
 * Reading a JSON document from a file, with errors that name the file (and, for syntax, the
 * position).
 *
 * @module
 */
import { readFileSync, statSync } from 'node:fs';
import { ErrorCodes, omnibalError } from '../errors';

/** Reads and parses `file` (a regular file); `what` names it in errors (`ERR_OMNIBAL_PARSE`). */
export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  try {
    // A FIFO or a device (/dev/zero) would block or never end: only regular files are read.
    if (!statSync(file).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw omnibalError(ErrorCodes.PARSE, `${file}: cannot read the ${what} (${(error as { code?: string }).code ?? String(error)})`, error);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw omnibalError(ErrorCodes.PARSE, `${file}: the ${what} does not parse: ${(error as Error).message}`, error);
  }
}
