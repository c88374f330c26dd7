/**
 * The one error for a result that cannot be written (`ERR_OMNIBAL_OUTPUT`): every writer of the
 * CLI and the sidecar's token file use it, so a missing folder, a directory, a full device or a
 * read-only place reads the same everywhere (the CLI exits with 2).
 *
 * @module
 */
import { lstatSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, omnibalError, type OmnibalError } from '../errors';

/**
 * `TARGET: cannot write[ WHAT] (why)`, coded `ERR_OMNIBAL_OUTPUT`, with `error` as its cause.
 *
 * @param target - the path (or `stdout`) that could not be written
 * @param error - the system error (its `code` says why: ENOENT, EISDIR, EACCES, ...)
 * @param what - what was being written, when the path alone does not say (`the token file`)
 * @returns the coded error, one line naming the path
 */
export function outputError(target: string, error: unknown, what?: string): OmnibalError {
  const code = (error as { code?: string } | null)?.code ?? 'EIO';
  const why =
    code === 'ENOENT'
      ? missingFolder(target)
      : code === 'EISDIR'
        ? 'it is a directory'
        : code === 'ENOTDIR'
          ? 'a part of the path is not a folder'
          : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
            ? 'permission denied'
            : code;
  return omnibalError(ErrorCodes.OUTPUT, `${target}: cannot write${what ? ` ${what}` : ''} (${why})`, error);
}

/** Why a path cannot be created: its folder is missing, or it is a link to a place whose folder is. */
function missingFolder(target: string): string {
  try {
    if (lstatSync(target).isSymbolicLink()) return `it is a link to ${readlinkSync(target)}, whose folder does not exist`;
  } catch {
    // not there at all: its own folder is missing
  }
  return `the folder ${path.dirname(target)} does not exist`;
}
