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
import { open, writeFile } from 'node:fs/promises';
import { outputError } from '../io/output-error';

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

/**
 * Writes `chunks` to stdout one after another, each written before the next is taken (so a lazy
 * iterator is held a chunk at a time); stops quietly once the reader has gone (EPIPE).
 */
export async function writeStdoutChunks(chunks: Iterable<Uint8Array>): Promise<void> {
  watchStdout();
  for (const chunk of chunks) {
    if (stdoutClosed) return;
    await new Promise<void>((resolve, reject) => {
      process.stdout.write(chunk, (error) => {
        if (!error) resolve();
        else if ((error as NodeJS.ErrnoException).code === 'EPIPE') {
          stdoutClosed = true;
          resolve();
        } else reject(outputError('stdout', error));
      });
    });
  }
}

/** Writes `chunks` to `file` (replacing it), each before the next is taken; a coded error naming the path when that fails. */
export async function writeOutputFileChunks(file: string, chunks: Iterable<Uint8Array>): Promise<void> {
  const coded = <T>(p: Promise<T>) => p.catch((error: unknown) => Promise.reject(outputError(file, error)));
  const fh = await coded(open(file, 'w'));
  try {
    for (const chunk of chunks) {
      for (let at = 0; at < chunk.length; ) at += (await coded(fh.write(chunk, at))).bytesWritten;
    }
  } finally {
    await coded(fh.close());
  }
}

/** Writes `chunks` to `file` when given, else to stdout (see {@link writeStdoutChunks}). */
export function writeOutputChunks(file: string | undefined, chunks: Iterable<Uint8Array>): Promise<void> {
  return file === undefined ? writeStdoutChunks(chunks) : writeOutputFileChunks(file, chunks);
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
