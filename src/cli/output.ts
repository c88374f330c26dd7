/**
 * The one writer for the CLI's results: stdout, or a file given with `--out`.
 *
 * - stdout closed early by its reader (`omnibal pack --json | head -c 300`): the EPIPE ends
 *   the output quietly, never a stack trace; later writes are dropped.
 * - a file in a folder that does not exist, onto a directory, or without permission: an
 *   `ERR_OMNIBAL_OUTPUT` error that names the path (the CLI exits with 2).
 *
 * @module
 */
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ErrorCodes, omnibalError, type OmnibalError } from '../errors';

let stdoutClosed = false;
let watching = false;

/** Whether stdout's reader went away (EPIPE); nothing more is written then. */
export function stdoutIsClosed(): boolean {
  return stdoutClosed;
}

function watchStdout(): void {
  if (watching) return;
  watching = true;
  // Without a listener an EPIPE would be an uncaught 'error' event.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') stdoutClosed = true;
  });
}

function outputError(target: string, error: unknown): OmnibalError {
  const code = (error as { code?: string }).code ?? 'EIO';
  const why =
    code === 'ENOENT'
      ? `the folder ${path.dirname(target)} does not exist`
      : code === 'EISDIR'
        ? 'it is a directory'
        : code === 'ENOTDIR'
          ? 'a part of the path is not a folder'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied'
            : code;
  return omnibalError(ErrorCodes.OUTPUT, `${target}: cannot write (${why})`, error);
}

/** Writes `text` to stdout; resolves once written, or at once if the reader has gone (EPIPE). */
export function writeStdout(text: string): Promise<void> {
  watchStdout();
  if (stdoutClosed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => {
      if (!error) resolve();
      else if ((error as NodeJS.ErrnoException).code === 'EPIPE') {
        stdoutClosed = true;
        resolve();
      } else reject(outputError('stdout', error));
    });
  });
}

/** Writes `text` to `file` (replacing it), with a coded error naming the path when that fails. */
export async function writeOutputFile(file: string, text: string): Promise<void> {
  try {
    await writeFile(file, text);
  } catch (error) {
    throw outputError(file, error);
  }
}

/** Writes `text` to `file` when given, else to stdout. */
export function writeOutput(file: string | undefined, text: string): Promise<void> {
  return file === undefined ? writeStdout(text) : writeOutputFile(file, text);
}
