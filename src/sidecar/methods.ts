/**
 * What each sidecar method does, once its request is checked: samples read or decoded, plans
 * computed and kept in the plan store, plan slices and metrics answered, searches asked and told,
 * long calls run on the task pool. A session hands each request's method to {@link Methods}, made
 * for its connection with a narrow context (the server's shared state, the connection as the
 * owner of its plans, its searches).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { backend } from '../binding';
import { batchMetrics, planBatchesAsync, type Samples } from '../data/index';
import { formatOf, readSamples, type SamplesFormat } from '../io/samples';
import { partitionStagesAsync, vlmStageProblem, type StageProblem } from '../model/index';
import { searchStages, type StageSearch } from '../model/search';
import { layoutCandidates } from '../plan/layout';
import { simulateStep } from '../simulate/index';
import { version } from '../package';
import { attachMicroBatchArrays, encodeMicroBatchArrays, encodeMicroBatchLists, encodeU32, toU32, U32Attachment } from './codec';
import type { Limits, ServerContext } from './context';
import { RpcError, RpcErrors, SidecarCodes, limitError, paramsError, sanitizeFileError } from './errors';
import { newHandle, type StoredPlan } from './plan-store';
import type { PoolTask, TaskControl } from './task-pool';

/**
 * What this sidecar supports beyond `omnibal-rpc/1` as first published, answered by `version`
 * (docs/protocol.md, "version"): a client checks the ones it needs instead of meeting -32602 or
 * parse errors from an older sidecar. Only ever added to; an incompatible change bumps the
 * protocol's number.
 */
export const CAPABILITIES = ['base64', 'batch', 'binary-attachments', 'cancel', 'carry', 'half-close', 'plan', 'queued-bytes', 'release', 'search', 'searchLayout'] as const;

export const LONG_METHODS = new Set(['pack', 'balance', 'partition', 'simulate', 'plan', 'searchLayout']);
/** Most searches one connection may hold. */
const MAX_SEARCHES = 64;

/** Stat-checks length files before reading: regular files only, within the byte limit. */
function checkFiles(files: string[], asPaths: boolean, limits: Limits): fs.Stats[] {
  return files.map((file, i) => {
    const field = asPaths ? `paths[${i}]` : 'path';
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (error) {
      throw paramsError(field, `cannot be read (${(error as { code?: string }).code ?? 'error'})`, 'ERR_OMNIBAL_PARSE');
    }
    if (!st.isFile()) throw paramsError(field, `must name a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'a device or socket'} was given)`, 'ERR_OMNIBAL_INVALID_TYPE');
    if (st.size > limits.maxFileBytes) throw limitError(`${field} is ${st.size} bytes, over the limit of ${limits.maxFileBytes} (--max-file-bytes)`);
    return st;
  });
}

function u32Length(v: unknown): number {
  if (Array.isArray(v) || v instanceof Uint32Array) return v.length;
  // Neither form (`{"dtype": "u32"}` alone passes the schema): 0 here, and toU32 names the forms.
  const b = (v as { $base64?: unknown }).$base64;
  return typeof b === 'string' ? Math.floor((b.length * 3) / 4 / 4) : 0;
}

/** What each method does, for one connection: the owner of its plans and searches. */

/** Micro-batch groups of a plan in the answer's encoding: base64 arrays, binary attachments, or lists. */
function encodeGroups(plan: Parameters<typeof encodeMicroBatchLists>[0], groups: number[], encoding: unknown) {
  return encoding === 'base64' ? encodeMicroBatchArrays(plan, groups) : encoding === 'binary' ? attachMicroBatchArrays(plan, groups) : encodeMicroBatchLists(plan, groups);
}

export class Methods {
  /**
   * @param ctx The server's shared state.
   * @param owner The connection: the owner of its plans in the store.
   * @param searches The connection's searches, by handle (the connection clears them when it closes).
   */
  constructor(
    private readonly ctx: ServerContext,
    private readonly owner: object,
    private readonly searches: Map<string, StageSearch>,
  ) {}

  private pooled<T>(control: Control, run: (c: TaskControl) => Promise<T>): Promise<T> {
    const task: PoolTask<T> = this.ctx.pool.submit(run, control.takeSlot());
    control.onCancel(() => task.cancel());
    control.hold(task.settled);
    return task.promise;
  }

  private async samples(p: Record<string, unknown>): Promise<{ key: string; load: () => Promise<Samples> }> {
    const limits = this.ctx.limits;
    if (p.vision !== undefined) {
      for (const k of ['vision', 'text']) {
        const n = u32Length(p[k]);
        if (n > limits.maxSamples) throw limitError(`${k} has ${n} samples, over the limit of ${limits.maxSamples} (--max-samples)`);
      }
      const vision = toU32('vision', p.vision);
      const text = toU32('text', p.text);
      if (vision.length !== text.length) throw paramsError('text', `must have as many samples as vision (${vision.length}), got ${text.length}`, 'ERR_OMNIBAL_INVALID_OPTIONS');
      const hash = createHash('sha256');
      hash.update(`inline:${vision.length}:`);
      hash.update(new Uint8Array(vision.buffer, vision.byteOffset, vision.byteLength));
      hash.update(new Uint8Array(text.buffer, text.byteOffset, text.byteLength));
      const samples = { vision, text };
      return { key: hash.digest('hex'), load: async () => samples };
    }
    const files = (p.paths as string[] | undefined) ?? [p.path as string];
    const stats = checkFiles(files, p.paths !== undefined, limits);
    // The format each file is read as (its own extension unless `format` is given): two names of one
    // file with different extensions are read differently, so they must not share a plan.
    const formats = files.map((f) => {
      try {
        return formatOf(f, p.format as SamplesFormat | undefined);
      } catch {
        return null;
      }
    });
    const key = JSON.stringify(files.map((f, i) => [fs.realpathSync(f), stats[i].dev, stats[i].ino, stats[i].size, stats[i].mtimeMs, formats[i]]));
    const load = async () => {
      let loaded: Samples;
      try {
        loaded = await readSamples(files, p.format ? { format: p.format as 'json' | 'jsonl' | 'csv' } : {});
      } catch (error) {
        throw sanitizeFileError(error, files);
      }
      if (loaded.text.length > limits.maxSamples) throw limitError(`${loaded.text.length} samples exceed the limit of ${limits.maxSamples} (--max-samples)`);
      return { vision: loaded.vision, text: loaded.text };
    };
    return { key, load };
  }

  private async batches(p: Record<string, unknown>, progress: Progress, control: Control, strategy?: string) {
    const { key: samplesKey, load } = await this.samples(p);
    const options: Record<string, unknown> = {};
    // `encoding` shapes the answer only: not a planning option, not part of the plan's key.
    for (const k of Object.keys(p).sort()) if (!['vision', 'text', 'path', 'paths', 'format', 'encoding'].includes(k)) options[k] = p[k];
    if (strategy) options.strategy = strategy;
    // `carry` decoded first and keyed by its values, so a list, base64 and an attachment of the
    // same carry share one plan (the other options key by their JSON).
    const carry = options.carry === undefined ? undefined : toU32('carry', options.carry);
    delete options.carry;
    const hash = createHash('sha256').update(samplesKey).update(JSON.stringify(options));
    if (carry) hash.update(`carry:${carry.length}:`).update(new Uint8Array(carry.buffer, carry.byteOffset, carry.byteLength));
    const key = hash.digest('hex');
    if (carry) options.carry = carry;
    const { id, plan, shared } = await this.ctx.store.acquire(this.owner, key, {
      compute: () => {
        const task = this.ctx.pool.submit<StoredPlan>(async (c) => {
          // Cancelled (every request waiting on this plan was): the native planner stops at its
          // next check, so the pool slot is free again within a fraction of a second.
          const abort = new AbortController();
          c.onCancel = () => abort.abort();
          const samples = await load();
          const plan = await planBatchesAsync(samples, options as never, { onProgress: progress, signal: abort.signal });
          return { plan, samples };
        }, control.takeSlot());
        // The task holds this request's samples until it ends, even once cancelled.
        control.hold(task.settled);
        return task;
      },
      isCancelled: control.isCancelled,
      onCancel: control.onCancel,
    });
    return {
      planId: id,
      shared,
      strategy: plan.strategy,
      dp: plan.dp,
      accum: plan.accum,
      steps: plan.steps,
      microBatches: plan.padding.length,
      maxVision: plan.maxVision ?? null,
      maxText: plan.maxText ?? null,
      ...(p.encoding === 'base64'
        ? { encoding: 'base64', dropped: encodeU32(plan.droppedIndex), droppedReason: encodeU32(Uint32Array.from(plan.droppedReason)) }
        : p.encoding === 'binary'
          ? { encoding: 'binary', dropped: new U32Attachment(plan.droppedIndex), droppedReason: new U32Attachment(Uint32Array.from(plan.droppedReason)) }
          : { dropped: Array.from(plan.droppedIndex), droppedReason: Array.from(plan.droppedReason) }),
    };
  }

  private search(id: unknown): StageSearch {
    const s = typeof id === 'string' ? this.searches.get(id) : undefined;
    if (!s) throw new RpcError(RpcErrors.UNKNOWN_HANDLE, 'no such search on this connection (unknown, released, or owned by another connection)', { code: SidecarCodes.UNKNOWN_HANDLE });
    return s;
  }

  async dispatch(method: string, p: Record<string, unknown>, progress: Progress, control: Control): Promise<unknown> {
    const store = this.ctx.store;
    switch (method) {
      case 'version':
        return { version, protocol: 'omnibal-rpc/1', capabilities: [...CAPABILITIES] };
      case 'backend':
        return backend();
      case 'pack':
        return this.batches(p, progress, control);
      case 'balance':
        return this.batches(p, progress, control, 'balanced');
      case 'metrics': {
        const { plan, samples } = store.get(this.owner, p.planId as string);
        const m = batchMetrics(plan, samples, { a: p.costA as number | undefined, b: p.costB as number | undefined });
        return { ...m, stepVisionDist: Array.from(m.stepVisionDist), stepTextDist: Array.from(m.stepTextDist), stepCostDist: Array.from(m.stepCostDist) };
      }
      case 'planStep': {
        const { plan } = store.get(this.owner, p.planId as string);
        const step = p.step as number;
        if (step >= plan.steps) throw paramsError('step', `must be below the plan's ${plan.steps} steps, got ${step}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
        const groups = Array.from({ length: plan.dp }, (_, r) => step * plan.dp + r);
        return encodeGroups(plan, groups, p.encoding);
      }
      case 'planForRank': {
        const { plan } = store.get(this.owner, p.planId as string);
        const rank = p.rank as number;
        if (rank >= plan.dp) throw paramsError('rank', `must be below the plan's dp of ${plan.dp}, got ${rank}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
        const groups = Array.from({ length: plan.steps }, (_, s) => s * plan.dp + rank);
        return encodeGroups(plan, groups, p.encoding);
      }
      case 'release':
        if (p.planId !== undefined) return { released: store.release(this.owner, p.planId as string) };
        return { released: this.searches.delete(p.searchId as string) };
      case 'partition': {
        const problem = vlmStageProblem(p as never);
        progress(0, 1);
        const plan = await this.pooled(control, () => partitionStagesAsync(problem));
        return { prediction: true, ...plan };
      }
      case 'simulate': {
        progress(0, 1);
        const r = await this.pooled(control, async () => {
          const f64 = (k: string) => Float64Array.from(p[k] as number[]);
          // Per-chunk times (interleaved, checked with the params): each model chunk its own time.
          const chunks = p.chunkForwardMs !== undefined ? { chunkForwardMs: f64('chunkForwardMs'), chunkBackwardMs: f64('chunkBackwardMs') } : {};
          return simulateStep({ ...p, forwardMs: f64('forwardMs'), backwardMs: f64('backwardMs'), transferMs: f64('transferMs'), gradBytes: f64('gradBytes'), activationBytes: f64('activationBytes'), ...chunks } as never);
        });
        return { prediction: true, stepMs: r.stepMs, bubbleFraction: r.bubbleFraction, rankMs: Array.from(r.rankMs), peakInFlight: Array.from(r.peakInFlight) };
      }
      case 'plan': {
        progress(0, 1);
        const r = await this.pooled(control, (c) => this.ctx.workers.run(p, c));
        return r;
      }
      case 'searchLayout': {
        // On a pool worker like `plan`: bounded by the pool, cancelled by terminating the worker.
        // Progress counts the candidate layouts from the first notification (0 of them, queued).
        progress(0, Math.max(1, layoutCandidates(p).length));
        return this.pooled(control, (c) => this.ctx.workers.run({ method: 'searchLayout', params: p }, c, progress));
      }
      case 'search.ask': {
        let id = p.searchId as string | undefined;
        if (id === undefined) {
          if (this.searches.size >= MAX_SEARCHES) throw limitError(`a connection holds at most ${MAX_SEARCHES} searches; release one`);
          const problem: StageProblem = vlmStageProblem(p.problem as never);
          id = newHandle('search');
          this.searches.set(id, searchStages(problem, { radius: p.radius as number | undefined, budget: p.budget as number | undefined }));
        }
        const search = this.search(id);
        const c = search.ask();
        return { searchId: id, candidate: c ? { lastLayers: c.lastLayers, predictedMs: c.predicted.objectiveMs } : null, best: search.best().lastLayers };
      }
      case 'search.tell': {
        const search = this.search(p.searchId);
        const lastLayers = (p.lastLayers as number[]).join(',');
        const c = search.candidates.find((x) => x.lastLayers.join(',') === lastLayers);
        if (!c) throw paramsError('lastLayers', 'is not a candidate this search proposed', 'ERR_OMNIBAL_INVALID_OPTIONS');
        search.tell(c, p.seconds as number);
        return { best: search.best().lastLayers };
      }
      default:
        throw new RpcError(RpcErrors.METHOD_NOT_FOUND, `method not found: ${method}`);
    }
  }
}

export type Progress = (done: number, total: number) => void;

export interface Control {
  isCancelled: () => boolean;
  onCancel: (f: () => void) => void;
  /** Holds the request's bytes in the shared budget until `task` no longer runs (also after a cancel). */
  hold: (task: Promise<void>) => void;
  /** Whether the pool holds a slot for this request (a long call of an admitted batch): true once, when it submits its task. */
  takeSlot: () => boolean;
}
