/**
 * One bounded pool for the sidecar's long calls (`pack`, `balance`, `partition`, `simulate`,
 * `plan`): at most `concurrency` run at once (the native ones on the libuv pool, `plan` on one of
 * `concurrency` reused worker threads), at most `maxQueue` wait; more is a -32001 error, never a
 * thread per request. A queued task that is cancelled never runs; a running `plan` that is
 * cancelled has its worker terminated (and replaced), which frees its memory; a running
 * `pack`/`balance` aborts its native planner (an `AbortSignal`), which stops at its next check.
 *
 * @module
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { limitError, RpcError, RpcErrors } from './errors';

/** A task's handle on its cancellation. */
export interface TaskControl {
  /** Set by a running task: what to do when cancelled (terminate a worker, ...). */
  onCancel?: () => void;
}

interface Queued {
  run: (control: TaskControl) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  control: TaskControl;
  started: boolean;
  done: boolean;
  /** Called once the task's own run has ended (or it was dropped before it started). */
  ended: () => void;
}

/** A cancellable task in the pool. */
export interface PoolTask<T> {
  /** Settles with the task's result, or rejects with -32800 once cancelled. */
  promise: Promise<T>;
  /**
   * Resolves once the task no longer runs: its run ended (however), or it was cancelled before it
   * started. A cancelled running task may go on a while after `promise` rejects (until its
   * `onCancel` takes effect: a native planner stops within a fraction of a second, a call
   * without a way to stop runs to its end), holding what it was given and its slot.
   */
  settled: Promise<void>;
  /** Cancels: a queued task is dropped, a running one gets its `onCancel`. */
  cancel(): void;
}

const cancelledError = () => new RpcError(RpcErrors.CANCELLED, 'request cancelled');

/** A concurrency-limited, queue-limited task runner. */
export class TaskPool {
  private queue: Queued[] = [];
  private running = 0;
  /** Slots held for the long calls of admitted batches that have not submitted yet (see {@link TaskPool.reserve}). */
  private reserved = 0;

  constructor(
    readonly concurrency: number,
    readonly maxQueue: number,
  ) {}

  /** Tasks running now. */
  get active(): number {
    return this.running;
  }

  /** Tasks waiting. */
  get waiting(): number {
    return this.queue.length;
  }

  /** The most tasks the pool holds at once, running and waiting: `concurrency` + `maxQueue`. */
  get capacity(): number {
    return this.concurrency + this.maxQueue;
  }

  /** How many more tasks fit now (running or waiting), the slots held for batches counted as taken. */
  get room(): number {
    return Math.max(0, this.capacity - this.running - this.queue.length - this.reserved);
  }

  /**
   * Holds `n` slots for the long calls of one JSON-RPC batch, so that the batch is admitted
   * whole: true when they fit now ({@link TaskPool.room}), false (nothing held) otherwise. Each
   * held slot is taken by a `submit(run, true)` or given back with {@link TaskPool.unreserve}.
   */
  reserve(n: number): boolean {
    if (n > this.room) return false;
    this.reserved += n;
    return true;
  }

  /** Gives back one slot held by {@link TaskPool.reserve} (its call ended without a task). */
  unreserve(): void {
    this.reserved--;
  }

  /**
   * Queues `run`; throws a -32001 error when the pool is full (the slots held for batches count
   * as taken). `reserved`: it takes a slot {@link TaskPool.reserve} held, which is never refused.
   */
  submit<T>(run: (control: TaskControl) => Promise<T>, reserved = false): PoolTask<T> {
    if (reserved) this.reserved--;
    else if (this.room === 0) {
      const held = this.reserved > 0 ? `, ${this.reserved} held for a batch` : '';
      throw limitError(`the sidecar is busy: ${this.running} long calls running and ${this.queue.length} queued${held} (--max-queue); try again later`);
    }
    let item!: Queued;
    let ended!: () => void;
    const settled = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const promise = new Promise<T>((resolve, reject) => {
      item = { run: run as Queued['run'], resolve: resolve as Queued['resolve'], reject, control: {}, started: false, done: false, ended };
    });
    this.queue.push(item);
    this.pump();
    return {
      promise,
      settled,
      cancel: () => {
        if (item.done) return;
        item.done = true;
        if (!item.started) {
          this.queue.splice(this.queue.indexOf(item), 1);
          item.ended();
        } else {
          item.control.onCancel?.();
        }
        item.reject(cancelledError());
      },
    };
  }

  private pump(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const item = this.queue.shift()!;
      item.started = true;
      this.running++;
      let ran: Promise<unknown>;
      try {
        ran = item.run(item.control);
      } catch (error) {
        ran = Promise.reject(error);
      }
      ran.then(
        (v) => {
          if (!item.done) item.resolve(v);
        },
        (e) => {
          if (!item.done) item.reject(e);
        },
      ).finally(() => {
        item.done = true;
        item.ended();
        this.running--;
        this.pump();
      });
    }
  }
}

/** Reused worker threads for `plan`; a cancelled one is terminated and replaced on demand. */
export class PlanWorkers {
  private idle: Worker[] = [];
  private all = new Set<Worker>();

  private spawn(): Worker {
    const fromSources = __filename.endsWith('.ts');
    const file = path.join(__dirname, fromSources ? 'plan-worker.ts' : 'plan-worker.js');
    const worker = new Worker(file, { execArgv: fromSources ? ['--import', 'tsx'] : [] });
    worker.unref();
    this.all.add(worker);
    worker.on('exit', () => {
      this.all.delete(worker);
      this.idle = this.idle.filter((w) => w !== worker);
    });
    return worker;
  }

  /**
   * Runs `planTraining(params)` (or `{ method: 'searchLayout', params }`) on a worker;
   * `control.onCancel` terminates it; `onProgress` gets the worker's progress messages.
   */
  run(params: unknown, control: TaskControl, onProgress?: (done: number, total: number) => void): Promise<unknown> {
    const worker = this.idle.pop() ?? this.spawn();
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (m: { ok?: unknown; error?: { message: string; code?: string }; progress?: [number, number] }) => {
        if (m.progress) {
          onProgress?.(m.progress[0], m.progress[1]);
          return;
        }
        cleanup();
        this.idle.push(worker);
        if (m.error) reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
        else resolve(m.ok);
      };
      const onError = (e: unknown) => {
        cleanup();
        void worker.terminate();
        reject(e);
      };
      const onExit = () => {
        cleanup();
        reject(new RpcError(RpcErrors.CANCELLED, 'request cancelled'));
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      control.onCancel = () => void worker.terminate();
      worker.postMessage(params);
    });
  }

  /** Terminates every worker. */
  async close(): Promise<void> {
    await Promise.all([...this.all].map((w) => w.terminate()));
  }
}
