/**
 * The sidecar's transports: stdin/stdout, and a Unix socket or loopback TCP port (token file,
 * signals, orderly stop), each connection a {@link Session}.
 *
 * @module
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { backend } from '../binding';
import { version } from '../package';
import { newContext, type ServeOptions } from './context';
import { ConnectionSlots, REFUSING_AT_ONCE, refuseConnection } from './connections';
import { RpcError } from './errors';
import { clearStaleSocket, listenUnix, parseListen, serverToken } from './listen';
import { Session } from './session';
import { lockSocketPath } from './socket-lock';
import { removeTokenFile, writeTokenFile, type OwnedTokenFile } from './token-file';

/** Serves on stdin/stdout until stdin ends, stdout breaks, or `shutdown` is called. */
export function serveStdio(options: ServeOptions = {}): Promise<void> {
  return new Promise((resolve) => {
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      void ctx.workers.close().finally(() => resolve());
    };
    const ctx = newContext(options, done);
    const out = process.stdout;
    // The client is gone when its end of our stdout breaks (EPIPE): stop at once.
    out.on('error', () => done());
    const session = new Session(ctx, 'stdio', {
      write: (line) => void out.write(line),
      pendingBytes: () => out.writableLength,
      setReading: (on) => (on ? process.stdin.resume() : process.stdin.pause()),
      close: done,
    });
    out.on('drain', () => session.flow());
    process.stdin.on('data', (c: Buffer) => session.feed(c));
    // The client closed our stdin: answer what it already sent (it may be reading still), then exit.
    process.stdin.on('end', () => session.inputEnded());
    process.stderr.write(`omnibal serve: ${version}, backend ${backend().kind}, JSON-RPC 2.0 on stdio\n`);
  });
}

/**
 * Serves on a Unix socket or a loopback TCP port until `shutdown` or SIGTERM/SIGINT (an orderly
 * stop; a second signal during it exits at once with status 128 + the signal's number).
 */
export async function serveSocket(spec: string, options: ServeOptions = {}): Promise<void> {
  const where = parseListen(spec);
  if (where.kind === 'tcp' && !options.tokenFile && !process.env.OMNIBAL_TOKEN) {
    throw paramsErrorToCli('a TCP sidecar needs a token: give --token-file FILE (it is written there) or set OMNIBAL_TOKEN');
  }
  const token = where.kind === 'tcp' || options.tokenFile || process.env.OMNIBAL_TOKEN ? serverToken() : undefined;
  const sessions = new Set<Session>();
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => {
    resolveDone = r;
  });
  let stopping = false;
  let listening = false;
  let ownedToken: OwnedTokenFile | undefined;
  // The Unix socket this server bound (its identity), and the release of the path's lock.
  let boundSocket: { dev: number; ino: number } | undefined;
  let unlock: (() => void) | undefined;
  // A second signal while stopping ends at once, with the shell's status for that signal
  // (128 + its number: 130 for SIGINT, 143 for SIGTERM), not the status of a failure; the socket
  // and token files are removed first.
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) return stop();
    removeFiles();
    const status = 128 + (os.constants.signals[signal] ?? 0);
    process.stderr.write(`omnibal serve: ${signal} while stopping: exiting now (status ${status})\n`);
    process.exit(status);
  };
  // Only files this server made, still as it made them: the socket it bound (same device and
  // inode), the token file it wrote (same inode and content); never another server's.
  const removeFiles = () => {
    if (where.kind === 'unix' && boundSocket) {
      try {
        const st = fs.lstatSync(where.path);
        if (st.dev === boundSocket.dev && st.ino === boundSocket.ino) fs.rmSync(where.path, { force: true });
      } catch {
        // gone already
      }
      boundSocket = undefined;
    }
    removeTokenFile(ownedToken);
    ownedToken = undefined;
  };
  // The signal handlers stay until the workers have stopped: a second signal meanwhile (a native
  // call still running) takes the "exiting now" branch above instead of the default action.
  const finish = () => {
    void ctx.workers.close().finally(() => {
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
      unlock?.();
      resolveDone();
    });
  };
  // Before listening, a stop is only recorded: start-up ends in close() once the socket exists.
  const close = () =>
    server.close(() => {
      removeFiles();
      finish();
    });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Each request in flight is answered "shutting down" (-32004) before its connection closes.
    for (const s of sessions) s.shutDown();
    if (listening) close();
  };
  const ctx = newContext(options, stop, token);
  // At most --max-connections connections (--max-unauthenticated of them before auth); one more
  // is answered -32005 and closed before it gets a session.
  const slots = new ConnectionSlots(ctx.limits.maxConnections, ctx.limits.maxUnauthenticated);
  // Half-open: a client that shuts down its write side still gets the answers to what it sent
  // (as on stdio when stdin ends); the connection closes once they are sent.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (stopping) return void socket.destroy();
    // Evicted while waiting to authenticate (a newer stranger came, always after this callback
    // made the session): answered -32005, closed.
    let session!: Session;
    const slot = slots.take(where.kind === 'tcp', (error) => session.evict(error));
    if (slot instanceof RpcError) return refuseConnection(socket, slot);
    session = new Session(ctx, where.kind, {
      write: (line) => void (!socket.destroyed && socket.write(line)),
      pendingBytes: () => socket.writableLength,
      setReading: (on) => (on ? socket.resume() : socket.pause()),
      close: () => socket.destroy(),
      end: () => socket.end(),
      authenticated: () => slot.authenticated(),
    });
    sessions.add(session);
    socket.once('data', () => slot.spoke());
    socket.on('data', (c: Buffer) => session.feed(c));
    socket.on('drain', () => session.flow());
    socket.on('end', () => session.inputEnded());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      slot.release();
      sessions.delete(session);
      session.close();
    });
  });
  // Refusals still being sent are bounded too: past them, a new connection is closed at once.
  server.maxConnections = ctx.limits.maxConnections + REFUSING_AT_ONCE;
  // Installed before anything is created: a signal during start-up still removes the socket file
  // and ends with exit 0 (the default action would kill the process and leave the file behind).
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let listen = spec;
  try {
    if (where.kind === 'unix') {
      // Only the holder of the path's lock checks for a stale socket, removes it and binds.
      unlock = await lockSocketPath(where.path);
      await clearStaleSocket(where.path);
      boundSocket = await listenUnix(server, where.path);
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(where.port, where.host, () => resolve());
      });
    }
    const a = server.address();
    listen = where.kind === 'unix' ? where.path : typeof a === 'object' && a ? (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`) : spec;
    if (options.tokenFile && token) {
      ownedToken = writeTokenFile(options.tokenFile, listen, token);
    }
  } catch (error) {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    if (server.listening) {
      server.close();
      removeFiles();
    }
    unlock?.();
    throw error;
  }
  listening = true;
  // A failed accept (out of file descriptors, say) is Node's 'error' on the server: without a
  // listener it would end the process. It costs that one connection; say so, at most once a second.
  let lastAcceptError = 0;
  server.on('error', (e: NodeJS.ErrnoException) => {
    const now = Date.now();
    if (now - lastAcceptError < 1000) return;
    lastAcceptError = now;
    process.stderr.write(`omnibal serve: warning: a connection could not be accepted (${e.code ?? e.message}); still serving\n`);
  });
  if (stopping) {
    close();
    return finished;
  }
  process.stderr.write(`omnibal serve: ${version}, backend ${backend().kind}, listening on ${listen}${where.kind === 'tcp' ? ' (token required: auth first)' : ''}\n`);
  return finished;
}

function paramsErrorToCli(message: string) {
  return Object.assign(new Error(message), { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
}
