/**
 * `omnibal serve`: a JSON-RPC 2.0 sidecar, one JSON object per line, on stdin/stdout (logs on
 * stderr) or on a Unix socket / `127.0.0.1:PORT`. See `docs/protocol.md` for every method.
 *
 * Requests are handled concurrently and answered by id; long calls run off the event loop
 * (on the libuv pool with the native backend) and send `progress` notifications;
 * `$/cancelRequest` answers a pending request at once with a cancellation error and drops its
 * late result. A line over the size limit, or more samples than allowed, is an error, never a
 * crash. On stdin's end (stdio) the sidecar exits; a dropped socket connection only ends that
 * connection.
 *
 * @module
 */
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { backend } from '../binding';
import { isOmnibalError } from '../errors';
import { batchMetrics, planBatchesAsync, planForRank, planStep, type BatchPlan, type Samples } from '../data/index';
import { readSamples } from '../io/samples';
import { partitionStagesAsync, vlmStageProblem, type StageProblem } from '../model/index';
import { searchStages, type StageSearch } from '../model/search';
import { simulateStep } from '../simulate/index';
import { version } from '../package';
import { toU32 } from './codec';

/** JSON-RPC and omnibal error codes on the wire. */
export const RpcErrors = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** An omnibal error that is not about the parameters' shape (infeasible, too few samples...). */
  SERVER: -32000,
  /** Limits: a line or a sample count over the configured maximum. */
  LIMIT: -32001,
  /** The request was cancelled. */
  CANCELLED: -32800,
} as const;

/** Sidecar limits. */
export interface ServeOptions {
  /** Longest request line, bytes; default 64 MiB. */
  maxLineBytes?: number;
  /** Most samples in one request; default 20 million. */
  maxSamples?: number;
}

class RpcError extends Error {
  constructor(
    readonly rpcCode: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

type Send = (msg: object) => void;

interface State {
  plans: Map<string, { plan: BatchPlan; samples: Samples }>;
  searches: Map<string, StageSearch>;
  nextId: number;
}

const INVALID_PARAM_CODES = new Set(['ERR_OMNIBAL_OUT_OF_RANGE', 'ERR_OMNIBAL_INVALID_TYPE', 'ERR_OMNIBAL_INVALID_OPTIONS', 'ERR_OMNIBAL_UNKNOWN_OPTION', 'ERR_OMNIBAL_UNKNOWN_PRESET', 'ERR_OMNIBAL_INVALID_SAMPLE', 'ERR_OMNIBAL_EMPTY_INPUT']);

function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (isOmnibalError(error)) {
    const code = INVALID_PARAM_CODES.has(error.code) ? RpcErrors.INVALID_PARAMS : RpcErrors.SERVER;
    return new RpcError(code, error.message, { code: error.code });
  }
  return new RpcError(RpcErrors.INTERNAL, `internal error: ${error instanceof Error ? error.message : String(error)}`);
}

function obj(params: unknown): Record<string, unknown> {
  if (params === undefined) return {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new RpcError(RpcErrors.INVALID_PARAMS, 'params must be an object', { code: 'ERR_OMNIBAL_INVALID_TYPE' });
  }
  return params as Record<string, unknown>;
}

function need<T>(p: Record<string, unknown>, key: string, type: 'string' | 'number'): T {
  if (typeof p[key] !== type) throw new RpcError(RpcErrors.INVALID_PARAMS, `${key} must be a ${type}`, { code: 'ERR_OMNIBAL_INVALID_TYPE' });
  return p[key] as T;
}

async function samplesOf(p: Record<string, unknown>, limits: Required<ServeOptions>): Promise<Samples> {
  let samples: Samples;
  if (p.path !== undefined || p.paths !== undefined) {
    const paths = (p.paths ?? [p.path]) as unknown[];
    if (!paths.every((x) => typeof x === 'string')) throw new RpcError(RpcErrors.INVALID_PARAMS, 'path(s) must be strings', { code: 'ERR_OMNIBAL_INVALID_TYPE' });
    samples = await readSamples(paths as string[]);
  } else {
    samples = { vision: toU32('vision', p.vision), text: toU32('text', p.text) };
  }
  if (samples.text.length > limits.maxSamples) {
    throw new RpcError(RpcErrors.LIMIT, `${samples.text.length} samples exceed the limit of ${limits.maxSamples} (--max-samples)`, { code: 'ERR_OMNIBAL_LIMIT' });
  }
  return samples;
}

function planSummary(id: string, plan: BatchPlan) {
  return {
    planId: id,
    strategy: plan.strategy,
    dp: plan.dp,
    accum: plan.accum,
    steps: plan.steps,
    microBatches: plan.padding.length,
    maxVision: plan.maxVision ?? null,
    maxText: plan.maxText ?? null,
    dropped: Array.from(plan.droppedIndex),
    droppedReason: Array.from(plan.droppedReason),
  };
}

/** `planTraining` on a worker thread (it is synchronous and takes up to about a second). */
function planOnWorker(params: Record<string, unknown>): Promise<unknown> {
  const fromSources = __filename.endsWith('.ts');
  const file = path.join(__dirname, fromSources ? 'plan-worker.ts' : 'plan-worker.js');
  return new Promise((resolve, reject) => {
    const worker = new Worker(file, { workerData: params, execArgv: fromSources ? ['--import', 'tsx'] : [] });
    worker.once('message', (m: { ok?: unknown; error?: { message: string; code?: string; name: string } }) => {
      if (m.error) reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else resolve(m.ok);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

function getPlan(state: State, p: Record<string, unknown>) {
  const id = need<string>(p, 'planId', 'string');
  const entry = state.plans.get(id);
  if (!entry) throw new RpcError(RpcErrors.INVALID_PARAMS, `no plan ${JSON.stringify(id)} (plans live as long as the sidecar)`, { code: 'ERR_OMNIBAL_UNKNOWN_PLAN' });
  return entry;
}

type Handler = (params: Record<string, unknown>, ctx: { progress: (done: number, total: number) => void }) => Promise<unknown> | unknown;

function handlers(state: State, limits: Required<ServeOptions>, shutdown: () => void): Record<string, Handler> {
  const batches = async (p: Record<string, unknown>, progress: (d: number, t: number) => void, strategy?: string) => {
    const samples = await samplesOf(p, limits);
    // The rest of the params are planBatches options (the samples fields are not).
    const options: Record<string, unknown> = { ...p, ...(strategy ? { strategy } : {}) };
    for (const key of ['vision', 'text', 'path', 'paths']) delete options[key];
    const plan = await planBatchesAsync(samples, options as never, { onProgress: progress });
    const id = `plan-${state.nextId++}`;
    state.plans.set(id, { plan, samples });
    return planSummary(id, plan);
  };
  return {
    version: () => ({ version, protocol: 'omnibal-rpc/1' }),
    backend: () => backend(),
    pack: (p, ctx) => batches(p, ctx.progress),
    balance: (p, ctx) => batches(p, ctx.progress, 'balanced'),
    metrics: (p) => {
      const { plan, samples } = getPlan(state, p);
      const m = batchMetrics(plan, samples, { a: p.costA as number | undefined, b: p.costB as number | undefined });
      return { ...m, stepVisionDist: Array.from(m.stepVisionDist), stepTextDist: Array.from(m.stepTextDist), stepCostDist: Array.from(m.stepCostDist) };
    },
    planStep: (p) => planStep(getPlan(state, p).plan, need<number>(p, 'step', 'number')).map((rank) => rank.map((mb) => Array.from(mb))),
    planForRank: (p) => {
      const { plan } = getPlan(state, p);
      return planForRank(plan, need<number>(p, 'rank', 'number')).map((step) => step.map((mb) => Array.from(mb)));
    },
    partition: async (p) => {
      const problem = vlmStageProblem(p as never);
      const plan = await partitionStagesAsync(problem);
      return { prediction: true, ...plan };
    },
    simulate: (p) => {
      const f64 = (k: string) => Float64Array.from((p[k] as number[]) ?? []);
      const r = simulateStep({ ...(p as object), forwardMs: f64('forwardMs'), backwardMs: f64('backwardMs'), transferMs: f64('transferMs'), gradBytes: f64('gradBytes'), activationBytes: f64('activationBytes') } as never);
      return { prediction: true, stepMs: r.stepMs, bubbleFraction: r.bubbleFraction, rankMs: Array.from(r.rankMs), peakInFlight: Array.from(r.peakInFlight) };
    },
    plan: (p) => planOnWorker(p),
    'search.ask': (p) => {
      let id = p.searchId as string | undefined;
      if (id === undefined) {
        const problem: StageProblem = vlmStageProblem(p.problem as never);
        id = `search-${state.nextId++}`;
        state.searches.set(id, searchStages(problem, { radius: p.radius as number | undefined, budget: p.budget as number | undefined }));
      }
      const search = state.searches.get(id);
      if (!search) throw new RpcError(RpcErrors.INVALID_PARAMS, `no search ${JSON.stringify(id)}`, { code: 'ERR_OMNIBAL_UNKNOWN_SEARCH' });
      const c = search.ask();
      return { searchId: id, candidate: c ? { lastLayers: c.lastLayers, predictedMs: c.predicted.objectiveMs } : null, best: search.best().lastLayers };
    },
    'search.tell': (p) => {
      const search = state.searches.get(need<string>(p, 'searchId', 'string'));
      if (!search) throw new RpcError(RpcErrors.INVALID_PARAMS, 'no such search', { code: 'ERR_OMNIBAL_UNKNOWN_SEARCH' });
      const lastLayers = p.lastLayers as number[];
      const c = search.candidates.find((x) => x.lastLayers.join(',') === (Array.isArray(lastLayers) ? lastLayers.join(',') : ''));
      if (!c) throw new RpcError(RpcErrors.INVALID_PARAMS, 'tell() got a candidate this search did not propose', { code: 'ERR_OMNIBAL_INVALID_OPTIONS' });
      search.tell(c, need<number>(p, 'seconds', 'number'));
      return { best: search.best().lastLayers };
    },
    shutdown: () => {
      setImmediate(shutdown);
      return { ok: true };
    },
  };
}

/** One connection: reads request lines, answers them. Returns a function to feed it bytes. */
export function session(send: Send, state: State, limits: Required<ServeOptions>, shutdown: () => void) {
  const table = handlers(state, limits, shutdown);
  const cancelled = new Set<string | number>();
  const pending = new Set<string | number>();
  let buffer = '';
  let skipping = false;

  const handle = async (line: string) => {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch (error) {
      send({ jsonrpc: '2.0', id: null, error: { code: RpcErrors.PARSE, message: `parse error: ${(error as Error).message}` } });
      return;
    }
    const m = msg as { jsonrpc?: unknown; method?: unknown; id?: unknown; params?: unknown };
    const id = m && (typeof m.id === 'string' || typeof m.id === 'number') ? m.id : null;
    if (typeof m !== 'object' || m === null || Array.isArray(m) || m.jsonrpc !== '2.0' || typeof m.method !== 'string' || (m.id !== undefined && id === null && m.id !== null)) {
      send({ jsonrpc: '2.0', id, error: { code: RpcErrors.INVALID_REQUEST, message: 'invalid request: need {"jsonrpc": "2.0", "method": string, "id"?: string | number}' } });
      return;
    }
    if (m.method === '$/cancelRequest') {
      const target = (m.params as { id?: string | number } | undefined)?.id;
      if (target !== undefined && pending.has(target)) {
        cancelled.add(target);
        pending.delete(target);
        send({ jsonrpc: '2.0', id: target, error: { code: RpcErrors.CANCELLED, message: 'request cancelled' } });
      }
      if (id !== null) send({ jsonrpc: '2.0', id, result: { cancelled: target !== undefined && cancelled.has(target) } });
      return;
    }
    const fn = table[m.method];
    if (!fn) {
      if (id !== null) send({ jsonrpc: '2.0', id, error: { code: RpcErrors.METHOD_NOT_FOUND, message: `method not found: ${m.method}` } });
      return;
    }
    if (id !== null) pending.add(id);
    let last = 0;
    const progress = (done: number, total: number) => {
      const now = Date.now();
      if (id === null || cancelled.has(id) || (now - last < 200 && done < total)) return;
      last = now;
      send({ jsonrpc: '2.0', method: 'progress', params: { id, done, total } });
    };
    try {
      const result = await fn(obj(m.params), { progress });
      if (id !== null && !cancelled.has(id)) send({ jsonrpc: '2.0', id, result: result ?? null });
    } catch (error) {
      const e = toRpcError(error);
      if (id !== null && !cancelled.has(id)) send({ jsonrpc: '2.0', id, error: { code: e.rpcCode, message: e.message, ...(e.data ? { data: e.data } : {}) } });
    } finally {
      if (id !== null) {
        pending.delete(id);
        cancelled.delete(id);
      }
    }
  };

  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const feed = (chunk: string) => {
    buffer += chunk;
    for (;;) {
      const nl = buffer.indexOf('\n');
      if (nl < 0) {
        if (Buffer.byteLength(buffer) > limits.maxLineBytes) {
          if (!skipping) send({ jsonrpc: '2.0', id: null, error: { code: RpcErrors.LIMIT, message: `line longer than ${limits.maxLineBytes} bytes (--max-line-bytes)`, data: { code: 'ERR_OMNIBAL_LIMIT' } } });
          skipping = true;
          buffer = '';
        }
        return;
      }
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (skipping) {
        skipping = false;
        continue;
      }
      if (Buffer.byteLength(line) > limits.maxLineBytes) {
        send({ jsonrpc: '2.0', id: null, error: { code: RpcErrors.LIMIT, message: `line longer than ${limits.maxLineBytes} bytes (--max-line-bytes)`, data: { code: 'ERR_OMNIBAL_LIMIT' } } });
        continue;
      }
      if (line.trim() !== '') track(handle(line));
    }
  };
  /** Resolves once every request received so far has been answered. */
  const drain = async () => {
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
  };
  return { feed, drain };
}

function newState(): State {
  return { plans: new Map(), searches: new Map(), nextId: 1 };
}

function resolveLimits(o: ServeOptions): Required<ServeOptions> {
  return { maxLineBytes: o.maxLineBytes ?? 64 * 2 ** 20, maxSamples: o.maxSamples ?? 20_000_000 };
}

/** Serves on stdin/stdout until stdin ends or `shutdown` is called. */
export function serveStdio(options: ServeOptions = {}): Promise<void> {
  return new Promise((resolve) => {
    const state = newState();
    const write: Send = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);
    const done = () => resolve();
    const { feed, drain } = session(write, state, resolveLimits(options), done);
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c: string) => feed(c));
    // The client is gone: answer what it already sent (it may be reading still), then exit.
    process.stdin.on('end', () => void drain().then(done));
    process.stderr.write(`omnibal serve: ${version}, backend ${backend().kind}, JSON-RPC 2.0 on stdio\n`);
  });
}

/** Parses `--listen`: a Unix socket path, or `127.0.0.1:PORT` / `localhost:PORT` / `[::1]:PORT` (loopback only). */
export function parseListen(spec: string): { path: string } | { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(spec);
  if (!m) return { path: spec };
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (!loopback) {
    throw Object.assign(new RangeError(`--listen only binds loopback addresses (127.0.0.0/8, localhost, [::1]), got ${host}`), { code: 'ERR_OMNIBAL_OUT_OF_RANGE' });
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw Object.assign(new RangeError(`port must be 0..65535, got ${m[3]}`), { code: 'ERR_OMNIBAL_OUT_OF_RANGE' });
  return { host, port };
}

/** Serves on a Unix socket or a loopback TCP port until `shutdown`. */
export function serveSocket(spec: string, options: ServeOptions = {}): Promise<void> {
  const where = parseListen(spec);
  const state = newState();
  const limits = resolveLimits(options);
  return new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>();
    const stop = () => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    };
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.setEncoding('utf8');
      const send: Send = (msg) => {
        if (!socket.destroyed) socket.write(`${JSON.stringify(msg)}\n`);
      };
      const { feed } = session(send, state, limits, stop);
      socket.on('data', (c: string) => feed(c));
      socket.on('error', () => socket.destroy());
    });
    server.on('error', reject);
    const onListening = () => {
      const a = server.address();
      process.stderr.write(`omnibal serve: listening on ${typeof a === 'string' ? a : `${a?.address}:${a?.port}`}\n`);
    };
    if ('path' in where) server.listen(where.path, onListening);
    else server.listen(where.port, where.host, onListening);
  });
}
