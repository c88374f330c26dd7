/**
 * The `--token-file` a socket sidecar writes (`{"listen", "token", "pid"}`, mode 0600): created
 * whole or not at all (a temp file in the same folder, linked into place), never over another
 * file (a live sidecar's, or anything else: refused), except the stale one of a sidecar that is
 * gone (taken over); removed at exit only while it is still the one this server wrote.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, omnibalError } from '../errors';
import { outputError } from '../io/output-error';
import { SidecarCodes } from './errors';

/** Whether process `pid` exists (one we may not signal exists too). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of a token file an omnibal sidecar wrote (`{"listen", "token", "pid"}` and nothing else), else undefined. */
function tokenFilePid(file: string): number | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const keys = Object.keys(v).sort().join(',');
    if (keys !== 'listen,pid,token' || typeof v.listen !== 'string' || typeof v.token !== 'string' || !Number.isSafeInteger(v.pid) || (v.pid as number) <= 0) return undefined;
    return v.pid as number;
  } catch {
    return undefined;
  }
}

/** A token file this server wrote: what identifies it, to remove it only while it is still ours. */
export interface OwnedTokenFile {
  file: string;
  dev: number;
  ino: number;
  text: string;
}

/**
 * Writes `{"listen", "token", "pid"}` to `file`, mode 0600, atomically (a reader sees no file or the
 * whole file). An existing file is refused (`ERR_OMNIBAL_ADDRESS_IN_USE` for a live sidecar's,
 * `ERR_OMNIBAL_OUTPUT` for anything else), unless it is the token file of a sidecar that is no
 * longer running: that one is replaced. A place it cannot write is an `ERR_OMNIBAL_OUTPUT` error.
 */
export function writeTokenFile(file: string, listen: string, token: string): OwnedTokenFile {
  const text = `${JSON.stringify({ listen, token, pid: process.pid })}\n`;
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
    fs.chmodSync(tmp, 0o600);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    const e = error as NodeJS.ErrnoException;
    // The folder is not writable, or `file` names a directory's child oddly: say so about `file`.
    throw outputError(file, fs.existsSync(file) && fs.statSync(file).isDirectory() ? { code: 'EISDIR' } : e, 'the token file');
  }
  try {
    const st = fs.statSync(tmp);
    try {
      fs.linkSync(tmp, file); // fails if anything is there: never replaces a file
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw outputError(file, error, 'the token file');
      let isFile = false;
      try {
        isFile = fs.lstatSync(file).isFile();
      } catch {
        // gone meanwhile: tried again below
      }
      if (!isFile && fs.existsSync(file)) throw outputError(file, { code: fs.statSync(file).isDirectory() ? 'EISDIR' : 'EEXIST' }, 'the token file');
      const pid = isFile ? tokenFilePid(file) : undefined;
      if (isFile && pid === undefined) throw omnibalError(ErrorCodes.OUTPUT, `--token-file ${file}: a file that is not an omnibal token file is in the way; not replaced`);
      if (pid !== undefined && processAlive(pid)) throw omnibalError(SidecarCodes.ADDRESS_IN_USE as never, `--token-file ${file}: the token file of a running sidecar (pid ${pid}); not replaced`);
      // A stale token file (its sidecar is gone): replaced in one step, with any temp file that
      // sidecar left (killed between linking its file and removing its temp name).
      fs.renameSync(tmp, file);
      const prefix = `.${path.basename(file)}.${pid}.`;
      for (const f of fs.readdirSync(path.dirname(file))) if (f.startsWith(prefix) && f.endsWith('.tmp')) fs.rmSync(path.join(path.dirname(file), f), { force: true });
    }
    return { file, dev: st.dev, ino: st.ino, text };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Removes the token file only while it is still the one this server wrote. */
export function removeTokenFile(owned: OwnedTokenFile | undefined): void {
  if (!owned) return;
  try {
    const st = fs.lstatSync(owned.file);
    if (st.dev !== owned.dev || st.ino !== owned.ino || fs.readFileSync(owned.file, 'utf8') !== owned.text) return;
    fs.rmSync(owned.file, { force: true });
  } catch {
    // gone already
  }
}
