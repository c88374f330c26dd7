/**
 * A long-lived worker thread of the sidecar's pool: runs `planTraining` for the `plan` method,
 * one request at a time, so a second-long plan does not hold up other requests. The pool
 * terminates a worker whose request is cancelled and starts a fresh one.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads';
import { planTraining } from '../plan/index';

parentPort!.on('message', (params: unknown) => {
  try {
    const { detail: _detail, ...plan } = planTraining(params as never);
    void _detail;
    parentPort!.postMessage({ ok: plan });
  } catch (error) {
    const e = error as Error & { code?: string };
    parentPort!.postMessage({ error: { message: e.message, code: e.code, name: e.constructor.name } });
  }
});
