/**
 * How many socket connections a sidecar holds at once (`--max-connections`), and how many of
 * them may be waiting to authenticate (`--max-unauthenticated`, TCP only): a connection over
 * `--max-connections` is answered -32005 (`ERR_OMNIBAL_TOO_MANY_CONNECTIONS`) and closed at once,
 * before it gets a session, buffers or a timer; a connection that closes frees its slot. When
 * `--max-unauthenticated` connections wait to authenticate, a new one takes the slot of the one
 * that has waited longest, among those that have sent nothing yet first, which is answered -32005
 * and closed: strangers cannot take the slots of clients that authenticated, and idle ones cannot
 * keep a new client from authenticating (a client sends `auth` at once, so silent strangers go
 * before it; a stranger holds its slot only until others come). So does one that finds
 * `--max-connections` held while strangers hold some of them.
 *
 * @module
 */
import type * as net from 'node:net';
import { RpcError, RpcErrors, SidecarCodes } from './errors';

/** `--max-connections` when not given. */
export const DEFAULT_MAX_CONNECTIONS = 64;

/** Most `--max-connections` (and `--max-unauthenticated`) may be. */
export const MAX_CONNECTIONS = 65_536;

/**
 * Refused connections still open (their line being sent), beyond `--max-connections`: past
 * that, Node.js closes a new connection at once without a line (`net.Server.maxConnections`).
 */
export const REFUSING_AT_ONCE = 256;

/** How long a refused connection may stay open for its client to read the refusal, ms. */
export const REFUSAL_GRACE_MS = 1000;

/** A connection's place among those held; each method acts once. */
export interface ConnectionSlot {
  /**
   * The connection sent its first bytes (a client's `auth` on its way): strangers that sent
   * nothing are evicted before it.
   */
  spoke(): void;
  /** The connection authenticated: it no longer counts against `--max-unauthenticated`. */
  authenticated(): void;
  /** The connection closed: its slot is free. */
  release(): void;
}

/** The connections a socket sidecar holds, within its two bounds. */
export class ConnectionSlots {
  private open = 0;
  private waiting = 0;
  /** The connections waiting to authenticate, longest waiting first: how to evict each. */
  private readonly strangers = new Set<(full: boolean) => void>();
  /** Of them, those that sent nothing yet, longest waiting first: evicted before the others. */
  private readonly silent = new Set<(full: boolean) => void>();

  /**
   * @param max - connections held at once (`--max-connections`)
   * @param maxUnauthenticated - of them, waiting to authenticate (`--max-unauthenticated`)
   */
  constructor(
    readonly max: number,
    readonly maxUnauthenticated: number,
  ) {}

  /** Connections held now. */
  get held(): number {
    return this.open;
  }

  /** Connections held now that have not authenticated. */
  get unauthenticated(): number {
    return this.waiting;
  }

  /**
   * A slot for a new connection (`needsAuth`: it must authenticate first, a TCP connection), or
   * the -32005 error it is refused with when `--max-connections` is reached and no connection
   * waits to authenticate. When `--max-unauthenticated` connections wait to authenticate, or
   * `--max-connections` are held and some wait, the one that has waited longest is evicted first: its `evict` is called with the -32005 error to answer it with (it should then
   * close; its slot is free already).
   *
   * @param needsAuth - whether the connection must authenticate first
   * @param evict - closes this connection with the error, should it be evicted while waiting
   */
  take(needsAuth: boolean, evict: (error: RpcError) => void = () => undefined): ConnectionSlot | RpcError {
    const full = this.open >= this.max;
    if (full || (needsAuth && this.waiting >= this.maxUnauthenticated)) {
      // A stranger's slot is taken also when --max-connections is reached: else strangers that
      // fill it (--max-unauthenticated as large, or clients holding the rest) keep clients out.
      // The one that has waited longest among those that sent nothing, else among all: a client
      // sends auth at once, so it is the last to go.
      const oldest = needsAuth ? (this.silent.values().next().value ?? this.strangers.values().next().value) : undefined;
      if (oldest === undefined && full) {
        return tooMany(`too many connections: the sidecar holds at most ${this.max} at once (--max-connections); this one is closed: close one you hold, or try again later`);
      }
      if (oldest === undefined) {
        return tooMany(`too many connections waiting to authenticate: at most ${this.maxUnauthenticated} at once (--max-unauthenticated); this one is closed: send auth as the first request, or try again later`);
      }
      oldest(full);
    }
    this.open++;
    if (needsAuth) this.waiting++;
    let waiting = needsAuth;
    let open = true;
    const release = () => {
      if (!open) return;
      open = false;
      this.open--;
      authenticated();
    };
    const authenticated = () => {
      if (!waiting) return;
      waiting = false;
      this.waiting--;
      this.strangers.delete(evictThis);
      this.silent.delete(evictThis);
    };
    const spoke = () => void this.silent.delete(evictThis);
    const evictThis = (full: boolean) => {
      release();
      const bound = full ? `too many connections: at most ${this.max} at once (--max-connections)` : `too many connections waiting to authenticate: at most ${this.maxUnauthenticated} at once (--max-unauthenticated)`;
      evict(tooMany(`${bound}, and this one waited longest to authenticate; it is closed: send auth as the first request at once, or try again later`));
    };
    if (needsAuth) {
      this.strangers.add(evictThis);
      this.silent.add(evictThis);
    }
    return { spoke, authenticated, release };
  }
}

function tooMany(message: string): RpcError {
  return new RpcError(RpcErrors.TOO_MANY_CONNECTIONS, message, { code: SidecarCodes.TOO_MANY_CONNECTIONS });
}

/**
 * Answers a connection it has no slot for with `error` (one line, id null) and closes it: what
 * its client sends is read and dropped (so closing it does not reset the line away), and it is
 * closed once its client closes its side, or {@link REFUSAL_GRACE_MS} after the line at most.
 */
export function refuseConnection(socket: net.Socket, error: RpcError): void {
  socket.on('error', () => socket.destroy());
  socket.on('data', () => undefined);
  socket.end(`${JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: error.rpcCode, message: error.message, data: error.data } })}\n`);
  setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
}
