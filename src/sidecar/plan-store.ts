/**
 * The sidecar's plan store: plans kept under random, unguessable handles (128 bits), each handle
 * owned by the connection that asked for it; identical requests (same samples and options; plans
 * are deterministic) share one plan in memory, counted by reference, so eight local ranks on one
 * Unix-socket sidecar hold one copy; a byte budget with least-recently-used eviction. An evicted
 * handle answers a clear error (ask again), never another connection's plan.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { BatchPlan, Samples } from '../data/index';
import { RpcError, RpcErrors, SidecarCodes, limitError } from './errors';

/** One stored plan. */
export interface StoredPlan {
  plan: BatchPlan;
  samples: Samples;
}

interface Entry extends StoredPlan {
  key: string;
  bytes: number;
  handles: Set<string>;
}

/** How {@link PlanStore.acquire} computes a missing plan, and learns of its caller's cancellation. */
export interface AcquireOptions {
  /** Starts computing the plan (in the pool). */
  compute: () => { promise: Promise<StoredPlan>; cancel(): void };
  /** Whether the caller was cancelled meanwhile (then no handle is made). */
  isCancelled: () => boolean;
  /** Registers what to do when the caller is cancelled. */
  onCancel: (f: () => void) => void;
}

interface PendingJob {
  task: { promise: Promise<StoredPlan>; cancel(): void };
  waiters: number;
}

interface Handle {
  entry: Entry;
  owner: object;
}

/** Bytes held by the typed arrays of an object, one level deep. */
function typedBytes(o: object): number {
  let n = 0;
  for (const v of Object.values(o)) if (ArrayBuffer.isView(v)) n += v.byteLength;
  return n;
}

/** Evicted handle ids remembered (to say "evicted" rather than "unknown"); older ones are forgotten. */
const EVICTED_MEMORY = 65536;

/** A new 128-bit random handle. */
export function newHandle(prefix: string): string {
  return `${prefix}-${randomBytes(16).toString('hex')}`;
}

/** Plans by handle, shared by content, within a byte budget. */
export class PlanStore {
  /** Entries by content key; Map order is least recently used first. */
  private entries = new Map<string, Entry>();
  private handles = new Map<string, Handle>();
  private evicted = new Set<string>();
  private pending = new Map<string, PendingJob>();
  private bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes held by stored plans and their samples. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** Number of distinct plans held. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * A handle for `owner` on the plan with content key `key`: the stored one if any (no work), the
   * one being computed for an identical request (shared), or a new one from `compute`. The
   * computation is cancelled only when every request waiting on it is.
   */
  async acquire(owner: object, key: string, how: AcquireOptions): Promise<{ id: string; plan: BatchPlan; shared: boolean }> {
    let entry = this.entries.get(key);
    let shared = entry !== undefined;
    if (!entry) {
      let job = this.pending.get(key);
      shared = job !== undefined;
      if (!job) {
        const task = how.compute();
        const j: PendingJob = { task, waiters: 0 };
        job = j;
        this.pending.set(key, j);
        task.promise.then(
          () => this.pending.delete(key),
          () => this.pending.delete(key),
        );
      }
      const j = job;
      j.waiters++;
      let left = false;
      how.onCancel(() => {
        if (left) return;
        left = true;
        if (--j.waiters === 0) j.task.cancel();
      });
      let stored: StoredPlan;
      try {
        stored = await j.task.promise;
      } finally {
        if (!left) {
          left = true;
          j.waiters--;
        }
      }
      if (how.isCancelled()) throw new RpcError(RpcErrors.CANCELLED, 'request cancelled');
      entry = this.entries.get(key);
      if (!entry) {
        const bytes = typedBytes(stored.plan) + typedBytes(stored.samples);
        if (bytes > this.maxBytes) throw limitError(`the plan needs ${bytes} bytes, over the plan store's budget of ${this.maxBytes} (--max-plan-bytes)`);
        entry = { ...stored, key, bytes, handles: new Set() };
        this.entries.set(key, entry);
        this.bytes += bytes;
        this.evict(entry);
      }
    }
    this.touch(entry);
    const id = newHandle('plan');
    entry.handles.add(id);
    this.handles.set(id, { entry, owner });
    return { id, plan: entry.plan, shared };
  }

  /** The plan behind `id`, if `owner` holds it. */
  get(owner: object, id: string): StoredPlan {
    const h = this.handles.get(id);
    if (!h || h.owner !== owner) {
      if (this.evicted.has(id)) {
        throw new RpcError(RpcErrors.UNKNOWN_HANDLE, `plan ${id} was evicted from the plan store (--max-plan-bytes); ask for it again`, { code: SidecarCodes.EVICTED });
      }
      throw new RpcError(RpcErrors.UNKNOWN_HANDLE, 'no such plan on this connection (unknown, released, or owned by another connection)', { code: SidecarCodes.UNKNOWN_HANDLE });
    }
    this.touch(h.entry);
    return h.entry;
  }

  /** Releases `id`; the plan is freed once no handle holds it. Returns whether `owner` held it. */
  release(owner: object, id: string): boolean {
    const h = this.handles.get(id);
    if (!h || h.owner !== owner) return false;
    this.handles.delete(id);
    h.entry.handles.delete(id);
    if (h.entry.handles.size === 0) this.drop(h.entry);
    return true;
  }

  /** Releases every handle `owner` holds (its connection closed). */
  releaseAll(owner: object): void {
    for (const [id, h] of this.handles) if (h.owner === owner) this.release(owner, id);
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry.key);
    this.entries.set(entry.key, entry);
  }

  private drop(entry: Entry): void {
    if (this.entries.get(entry.key) === entry) {
      this.entries.delete(entry.key);
      this.bytes -= entry.bytes;
    }
  }

  /** Evicts least recently used plans (never `keep`) until the budget holds. */
  private evict(keep: Entry): void {
    for (const entry of this.entries.values()) {
      if (this.bytes <= this.maxBytes) break;
      if (entry === keep) continue;
      for (const id of entry.handles) {
        this.handles.delete(id);
        this.evicted.add(id);
        if (this.evicted.size > EVICTED_MEMORY) this.evicted.delete(this.evicted.values().next().value!);
      }
      this.drop(entry);
    }
  }
}
