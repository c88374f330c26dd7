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
import { fstatSync, lstatSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { open, writeFile } from 'node:fs/promises';
import { ErrorCodes, omnibalError } from '../errors';
import { outputError } from '../io/output-error';

/** What a file that is not a regular one is, in words. */
function kindOf(st: Stats): string {
  return st.isFIFO() ? 'not a regular file: a FIFO' : st.isSocket() ? 'not a regular file: a socket' : 'not a regular file: a device';
}

/**
 * Checks the CLI's output files before anything is read or computed: each must be a regular file
 * or not exist yet (a FIFO without a reader would block forever, a device is no place for a
 * result), and none may be the same file as an input or as another output (compared by device
 * and inode, so a symbolic link or another spelling of the path is caught): writing it would
 * silently replace the user's length file; two outputs not there yet may not resolve to one path
 * (a dangling link included). Inputs named `-` are stdin (its own file when it was redirected
 * from one); an output named `-` is the file of that name.
 *
 * @param outputs - the output flags and the paths given to them (`--out`, `--report`); absent ones skipped
 * @param inputs - the input flags and their paths (`--input` may be given more than once)
 * @throws `ERR_OMNIBAL_OUTPUT` naming the path and why (the CLI exits with 2)
 */
export function checkOutputFiles(outputs: [flag: string, file: string | undefined][], inputs: [flag: string, file: string | undefined][]): void {
  // An input `-` is stdin; an output is always the file of that name.
  const statOf = (file: string, input: boolean): Stats | undefined => {
    try {
      return input && file === '-' ? fstatSync(0) : statSync(file);
    } catch {
      return undefined; // not there (yet), or not reachable: the read or the write says why
    }
  };
  const seen: [string, string, Stats][] = inputs.flatMap(([flag, file]) => {
    const st = file === undefined ? undefined : statOf(file, true);
    return st && file !== undefined ? [[flag, file, st] as [string, string, Stats]] : [];
  });
  // Where each output not there yet would be written (through dangling links), so two outputs
  // cannot land in one file.
  const planned: [string, string, string][] = [];
  for (const [flag, file] of outputs) {
    if (file === undefined) continue;
    const st = statOf(file, false);
    const clash = (otherFlag: string, otherFile: string) =>
      omnibalError(ErrorCodes.OUTPUT, `${file}: cannot write (it is the same file as ${otherFlag} ${otherFile === '-' ? '(stdin)' : otherFile}, which ${flag} would overwrite; give it another path)`);
    if (!st) {
      const target = writeTarget(file);
      const same = planned.find(([, , other]) => other === target);
      if (same) throw clash(same[0], same[1]);
      planned.push([flag, file, target]);
      continue;
    }
    if (st.isDirectory()) throw omnibalError(ErrorCodes.OUTPUT, `${file}: cannot write (it is a directory)`);
    if (!st.isFile()) throw omnibalError(ErrorCodes.OUTPUT, `${file}: cannot write (${kindOf(st)}; ${flag} takes a regular file)`);
    const same = seen.find(([, , other]) => other.dev === st.dev && other.ino === st.ino);
    if (same) throw clash(same[0], same[1]);
    seen.push([flag, file, st]);
  }
}

/**
 * The absolute path a write to `file` (which does not exist yet) would create: symbolic links
 * followed (a dangling link creates its target), the folder's real path.
 */
function writeTarget(file: string): string {
  let p = path.resolve(file);
  for (let hops = 0; hops < 40; hops++) {
    let link: string;
    try {
      if (!lstatSync(p).isSymbolicLink()) break;
      link = readlinkSync(p);
    } catch {
      break;
    }
    p = path.resolve(path.dirname(p), link);
  }
  try {
    return path.join(realpathSync(path.dirname(p)), path.basename(p));
  } catch {
    return p;
  }
}

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
