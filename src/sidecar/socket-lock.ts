/**
 * The one-owner lock of a Unix socket path: only the sidecar holding it may check whether the
 * socket file there is stale, remove it, and bind. Without it, sidecars started together on a
 * stale socket each saw it stale, each removed it (the others' live socket too) and each bound,
 * leaving orphan servers and a path that refused connections.
 *
 * On Linux the lock is an abstract Unix socket named after the socket path's real location: binding
 * it is atomic, and the kernel releases it when its process ends however it ends (SIGKILL too), so
 * no stale lock is ever left to take over. Elsewhere no lock is taken (the check stays best-effort).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { omnibalError } from '../errors';
import { SidecarCodes } from './errors';

/** The abstract socket name locking `file` (one per real path, whatever path names it). */
function lockName(file: string): string {
  let dir = path.dirname(path.resolve(file));
  try {
    dir = fs.realpathSync(dir);
  } catch {
    // a folder that does not exist: listening will say so
  }
  const key = createHash('sha256').update(path.join(dir, path.basename(file))).digest('hex');
  return `\0omnibal-serve-lock:${key}`;
}

/**
 * Takes the lock of the socket path `file` for this process's life, or fails with
 * `ERR_OMNIBAL_ADDRESS_IN_USE` when another sidecar holds it. Returns a release function.
 */
export function lockSocketPath(file: string): Promise<() => void> {
  if (process.platform !== 'linux') return Promise.resolve(() => undefined);
  return new Promise((resolve, reject) => {
    const lock = net.createServer((s) => s.destroy());
    lock.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') reject(omnibalError(SidecarCodes.ADDRESS_IN_USE as never, `--listen ${file}: another sidecar is serving (or starting on) this socket`));
      else reject(error);
    });
    lock.listen(lockName(file), () => {
      lock.unref();
      resolve(() => lock.close());
    });
  });
}
