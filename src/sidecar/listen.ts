/**
 * Where a socket sidecar listens, parsed strictly (`--listen`), and what guards it: a Unix socket
 * created 0600 whatever the umask (a stale one replaced, a live one refused), or a loopback TCP
 * port that demands a per-server token (written to a 0600 `--token-file`, or given in
 * `OMNIBAL_TOKEN`).
 *
 * @module
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { ErrorCodes, omnibalError } from '../errors';
import { SidecarCodes } from './errors';

/** A parsed `--listen`. */
export type ListenTarget = { kind: 'unix'; path: string } | { kind: 'tcp'; host: '127.0.0.1' | '::1' | 'localhost'; port: number };

const LISTEN_FORMS = 'unix:PATH, a socket path containing "/", 127.0.0.1:PORT, [::1]:PORT or localhost:PORT';

/** The longest Unix socket path the OS takes (`sun_path` less its NUL). */
export const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

function bad(spec: string, why: string) {
  return omnibalError(ErrorCodes.OUT_OF_RANGE, `--listen ${why}; expected ${LISTEN_FORMS}, got ${JSON.stringify(spec)}`);
}

/**
 * Parses `--listen`: `unix:PATH` or a path with a `/` (a Unix socket), or `127.0.0.1:PORT`,
 * `[::1]:PORT`, `localhost:PORT` (loopback TCP, PORT 0..65535, 0 picks a free one). Anything else
 * (a bare number, `0.0.0.0:1`, a host name) is an `ERR_OMNIBAL_OUT_OF_RANGE` error.
 */
export function parseListen(spec: string): ListenTarget {
  let socketPath: string | undefined;
  if (spec.startsWith('unix:')) socketPath = spec.slice(5);
  else if (spec.includes('/') && !/^\w+:\/\//.test(spec)) socketPath = spec;
  if (socketPath !== undefined) {
    if (socketPath === '') throw bad(spec, 'needs a socket path after unix:');
    if (socketPath.includes('\0')) throw bad(spec, 'socket path holds a NUL byte');
    const bytes = Buffer.byteLength(socketPath);
    if (bytes > MAX_SOCKET_PATH_BYTES) throw bad(spec, `socket path is ${bytes} bytes, over the OS limit of ${MAX_SOCKET_PATH_BYTES}`);
    return { kind: 'unix', path: socketPath };
  }
  const m = /^(127\.0\.0\.1|\[::1\]|localhost):(\d{1,5})$/.exec(spec);
  if (!m) throw bad(spec, 'only binds a Unix socket or a loopback port');
  const port = Number(m[2]);
  if (port > 65535) throw bad(spec, 'port must be 0..65535');
  const host = m[1] === '[::1]' ? '::1' : (m[1] as '127.0.0.1' | 'localhost');
  return { kind: 'tcp', host, port };
}

/** Whether something accepts connections on the Unix socket `file`. */
function isLive(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Makes `file` free for a new socket: nothing there is fine; a socket nobody listens on (a
 * crashed sidecar's) is removed; a live socket or any other file is an
 * `ERR_OMNIBAL_ADDRESS_IN_USE` error (exit 2), never replaced. Call it only while holding the
 * path's lock (`lockSocketPath`, socket-lock.ts): the check and the removal are not one step.
 */
export async function clearStaleSocket(file: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    return;
  }
  if (!st.isSocket()) throw omnibalError(SidecarCodes.ADDRESS_IN_USE as never, `--listen ${file}: a file that is not a socket is in the way; not replaced`);
  if (await isLive(file)) throw omnibalError(SidecarCodes.ADDRESS_IN_USE as never, `--listen ${file}: another sidecar is serving this socket`);
  fs.unlinkSync(file);
}

/** Listens on a Unix socket created with mode 0600 whatever the umask; resolves to the socket file's identity. */
export function listenUnix(server: net.Server, file: string): Promise<{ dev: number; ino: number }> {
  return new Promise((resolve, reject) => {
    const old = process.umask(0o177);
    const restore = () => process.umask(old);
    server.once('error', (e) => {
      restore();
      reject(e);
    });
    server.listen(file, () => {
      restore();
      fs.chmodSync(file, 0o600);
      const st = fs.lstatSync(file);
      resolve({ dev: st.dev, ino: st.ino });
    });
  });
}

/** The server's token: `OMNIBAL_TOKEN` when set (at least 16 characters), else 32 random bytes in hex. */
export function serverToken(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.OMNIBAL_TOKEN;
  if (given !== undefined && given !== '') {
    if (given.length < 16) throw omnibalError(ErrorCodes.OUT_OF_RANGE, 'OMNIBAL_TOKEN must be at least 16 characters');
    return given;
  }
  return randomBytes(32).toString('hex');
}

/** Constant-time token comparison. */
export function tokenMatches(expected: string | undefined, given: unknown): boolean {
  if (expected === undefined || typeof given !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
