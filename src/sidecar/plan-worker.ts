/**
 * A long-lived worker thread of the sidecar's pool: runs `planTraining` for the `plan` method,
 * one request at a time, so a second-long plan does not hold up other requests. The pool
 * terminates a worker whose request is cancelled and starts a fresh one.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads';
import { syntheticSamples } from '../data/synthetic';
import { ErrorCodes, omnibalError } from '../errors';
import { DEFAULT_RUN, PLAN_ASSUMPTIONS, calibrationWarnings, planTraining } from '../plan/index';
import { searchLayouts, type LayoutSearchOptions } from '../plan/layout';

/** `searchLayout`: the layout search on `synthetic` samples, progress posted as `{ progress: [done, total] }`. */
function searchLayout(params: LayoutSearchOptions & { synthetic?: number }) {
  const { synthetic, ...options } = params;
  const samples = syntheticSamples(synthetic ?? DEFAULT_RUN.samples, options.seed ?? 0);
  // Posted when the count of candidates evaluated moves (the phases in between are not sent).
  let posted = -1;
  const onProgress = (done: number, total: number) => {
    if (done !== posted) parentPort!.postMessage({ progress: [done, total] });
    posted = done;
  };
  const layouts = searchLayouts({ ...options, samples, onProgress });
  // No tp x pp of the lists divides the GPUs: an error, not an empty ranking without its global batch.
  if (layouts.length === 0) {
    throw omnibalError(ErrorCodes.INVALID_OPTIONS, `no layout: no tp in tps x pp in pps divides gpus (${options.gpus ?? DEFAULT_RUN.cluster.gpus})`);
  }
  // The calibration's warnings, once for the search (as `plan` gives its own).
  const warnings = options.calibration ? calibrationWarnings(options.model ?? DEFAULT_RUN.model, options.gpu ?? DEFAULT_RUN.gpu, options.calibration) : [];
  return { prediction: true, assumptions: PLAN_ASSUMPTIONS, globalBatchSamples: layouts[0]?.globalBatchSamples, epochs: layouts[0]?.epochs, layouts, ...(warnings.length > 0 && { warnings }) };
}

parentPort!.on('message', (params: unknown) => {
  try {
    // `{ method: 'searchLayout', params }` (plan params never hold `method`: their schema forbids it).
    const job = params as { method?: string; params?: unknown };
    if (job.method === 'searchLayout') {
      parentPort!.postMessage({ ok: searchLayout(job.params as never) });
      return;
    }
    const { detail: _detail, ...plan } = planTraining(params as never);
    void _detail;
    parentPort!.postMessage({ ok: plan });
  } catch (error) {
    const e = error as Error & { code?: string };
    parentPort!.postMessage({ error: { message: e.message, code: e.code, name: e.constructor.name } });
  }
});
