/**
 * Reading a JSON document from a file, with errors that name the file (and, for syntax, the
 * position).
 *
 * @module
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { ErrorCodes, omnibalError } from '../errors';

/**
 * Reads and parses `file` (a leading byte-order mark ignored); `what` names it in errors (`ERR_OMNIBAL_PARSE`). Only a regular file:
 * a FIFO without a writer would block and a device such as `/dev/zero` never ends (opened
 * non-blocking, checked with `fstat`, as the sample readers do).
 */
export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw omnibalError(ErrorCodes.PARSE, `${file}: the ${what} is not a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'a device or socket'})`);
    }
    text = readFileSync(fd, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === ErrorCodes.PARSE) throw error;
    throw omnibalError(ErrorCodes.PARSE, `${file}: cannot read the ${what} (${(error as { code?: string }).code ?? String(error)})`, error);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  // A byte-order mark (editors on Windows write one) is not JSON; RFC 8259 lets a parser ignore it.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw omnibalError(ErrorCodes.PARSE, `${file}: the ${what} does not parse: ${(error as Error).message}`, error);
  }
}
