/**
 * Runs `planTraining` on a worker thread for the sidecar's `plan` method, so a second-long plan
 * does not hold up other requests.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { planTraining } from '../plan/index';

try {
  const { detail: _detail, ...plan } = planTraining(workerData as never);
  void _detail;
  parentPort!.postMessage({ ok: plan });
} catch (error) {
  const e = error as Error & { code?: string };
  parentPort!.postMessage({ error: { message: e.message, code: e.code, name: e.constructor.name } });
}
