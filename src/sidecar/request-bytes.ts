/**
 * The server-wide budget of request bytes held in memory: requests received and not yet answered
 * (queued or running), the line each connection is receiving, and the binary attachments a
 * request has declared (reserved whole before a byte of them is read), summed over all
 * connections. A connection whose next bytes do not fit stops being read (backpressure) until
 * bytes are released; none is dropped.
 *
 * One request larger than the whole budget (but within `--max-line-bytes`) is still served: when
 * nothing received is queued or running, one connection at a time may go over the budget until
 * its line (or its attachments) are in (an overdraft); the others wait until it is answered.
 *
 * @module
 */

/** The held-bytes account of one server. */
export class RequestBytes {
  /** Bytes held now: lines being received, attachments reserved, requests queued or running. */
  held = 0;
  /** Of {@link RequestBytes.held}: bytes of requests queued or running (framed). */
  framed = 0;
  /** The most {@link RequestBytes.held} has been (for tests and the bench). */
  peak = 0;
  private overdraftOwner: object | undefined;
  private readonly waiters = new Map<object, () => void>();
  private waking = false;

  constructor(
    /** The budget, bytes (`--max-queued-bytes`). */
    readonly budget: number,
  ) {}

  /**
   * How many more bytes `owner` may take now: `Infinity` while it holds the overdraft (granted
   * here when nothing is framed and nobody else holds it, and `need` does not fit), `0` when it
   * must wait (see {@link RequestBytes.wait}).
   */
  room(owner: object, need = 1): number {
    if (this.overdraftOwner === owner) return Infinity;
    const left = this.budget - this.held;
    if (left >= need) return left;
    if (this.framed === 0 && this.overdraftOwner === undefined) {
      this.overdraftOwner = owner;
      return Infinity;
    }
    return 0;
  }

  /** Whether `owner` holds the overdraft. */
  inOverdraft(owner: object): boolean {
    return this.overdraftOwner === owner;
  }

  /** Ends `owner`'s overdraft (its over-budget line or attachments are in, or it closed). */
  endOverdraft(owner: object): void {
    if (this.overdraftOwner !== owner) return;
    this.overdraftOwner = undefined;
    this.wake();
  }

  /** Records a change of `owner`'s held bytes (`framedDelta` of them queued or running). */
  change(heldDelta: number, framedDelta: number): void {
    this.held += heldDelta;
    this.framed += framedDelta;
    if (this.held > this.peak) this.peak = this.held;
    if (heldDelta < 0 || framedDelta < 0) this.wake();
  }

  /** Calls `resume` (once) after bytes are released; a later call for the same owner replaces it. */
  wait(owner: object, resume: () => void): void {
    this.waiters.set(owner, resume);
  }

  /** Forgets `owner` (a closed connection). */
  forget(owner: object): void {
    this.waiters.delete(owner);
    this.endOverdraft(owner);
  }

  /** Resumes every waiting connection on the next turn of the event loop (each checks its room again). */
  private wake(): void {
    if (this.waking || this.waiters.size === 0) return;
    this.waking = true;
    setImmediate(() => {
      this.waking = false;
      const waiting = [...this.waiters.values()];
      this.waiters.clear();
      for (const resume of waiting) resume();
    });
  }
}
