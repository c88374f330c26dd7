/**
 * Backend selection: the native binding when it loads, else the TypeScript twins.
 *
 * The generated loader (`bindings.js`, written by `napi build`) finds the binary: the path in
 * `NAPI_RS_NATIVE_LIBRARY_PATH`, a local `omnibal.<platform>.node`, then the per-platform
 * package. `OMNIBAL_BACKEND` forces a side: `js` always uses the twins, `native` fails with every
 * load error when no binary loads, `auto` (the default) falls back to the twins with one warning
 * on stderr.
 *
 * @module
 */
import * as path from 'node:path';
import type * as Native from '../bindings';
import { ErrorCodes, omnibalError } from './errors';
import { describeLoadError } from './load-error';
import { packageRoot, version } from './package';
import { threadsWarning } from './threads';
import { deferred } from './progress';
import { CancelFlagTwin } from './abort';
import { dataTwins } from './data/twins';
import { modelTwins } from './model/twins';
import { chunkInFlightTwin, simulateStepTwin } from './simulate/simulate';
import { permutationTwin, shuffleU32Twin } from './random/permutation';
import { readSampleFilesTwin } from './io/samples';
import { decodeBase64U32Twin } from './io/base64';
import { planStepsJsonTwin } from './io/plan-steps-json';

/**
 * The functions every backend provides: the native binding's declarations (generated from the
 * Rust code), which the TypeScript twins implement too.
 */
export type Backend = Pick<
  typeof Native,
  | 'CancelFlag'
  | 'permutation'
  | 'permutationAsync'
  | 'shuffleU32'
  | 'planBatches'
  | 'planBatchesAsync'
  | 'packIsf'
  | 'packIsfAsync'
  | 'searchIsfArguments'
  | 'searchIsfArgumentsAsync'
  | 'batchMetrics'
  | 'planLoads'
  | 'syntheticSamples'
  | 'planStepsJson'
  | 'partitionStages'
  | 'partitionStagesAsync'
  | 'partitionChunks'
  | 'evaluateStages'
  | 'evaluateSplit'
  | 'baselineStages'
  | 'vlmLayerTable'
  | 'calibrateModel'
  | 'simulateStep'
  | 'chunkInFlight'
  | 'readSampleFiles'
  | 'decodeBase64U32'
>;

/** Which backend serves the API, as {@link backend} reports it. */
export interface BackendInfo {
  /** `native`: the Rust core through Node-API; `js`: the TypeScript twins. */
  kind: 'native' | 'js';
  /** The native binary that was loaded (native only). */
  path?: string;
  /** Why this backend was chosen, when it was not the default choice. */
  reason?: string;
}

/** The TypeScript twins, shaped as a {@link Backend}. */
export const jsBackend: Backend = {
  CancelFlag: CancelFlagTwin,
  permutation: permutationTwin,
  permutationAsync: (n, seed, onProgress) => deferred(() => permutationTwin(n, seed), onProgress, n),
  shuffleU32: shuffleU32Twin,
  ...dataTwins,
  ...modelTwins,
  simulateStep: simulateStepTwin,
  chunkInFlight: chunkInFlightTwin,
  readSampleFiles: readSampleFilesTwin,
  decodeBase64U32: decodeBase64U32Twin,
  planStepsJson: planStepsJsonTwin,
};

type NativeModule = typeof Native;

interface Loaded {
  api: Backend;
  info: BackendInfo;
  native?: NativeModule;
}

let loaded: Loaded | undefined;


/** The `.node` file Node loaded for `exportsObject`, found in the require cache. */
function nativePathOf(exportsObject: unknown): string | undefined {
  for (const [file, mod] of Object.entries(require.cache)) {
    if (file.endsWith('.node') && mod?.exports === exportsObject) return file;
  }
  return undefined;
}

function loadNative(): { native?: NativeModule; error?: unknown } {
  try {
    return { native: require(path.join(packageRoot, 'bindings.js')) as NativeModule };
  } catch (error) {
    return { error };
  }
}

/** The one-line cause and fix of a failed load (see `load-error.ts`). */
function loadErrorLine(error: unknown): string {
  return describeLoadError(error, { version, packageRoot, overridePath: process.env.NAPI_RS_NATIVE_LIBRARY_PATH || undefined });
}

function select(): Loaded {
  const wanted = (process.env.OMNIBAL_BACKEND ?? 'auto').trim().toLowerCase() || 'auto';
  if (wanted === 'js') {
    return { api: jsBackend, info: { kind: 'js', reason: 'OMNIBAL_BACKEND=js' } };
  }
  if (wanted !== 'native' && wanted !== 'auto') {
    throw omnibalError(
      ErrorCodes.INVALID_BACKEND,
      `OMNIBAL_BACKEND must be native, js or auto, got ${JSON.stringify(process.env.OMNIBAL_BACKEND)}`,
    );
  }
  const { native, error } = loadNative();
  if (native) {
    const warning = threadsWarning(process.env.OMNIBAL_THREADS);
    if (warning) process.stderr.write(warning);
    const file = nativePathOf(native);
    const info: BackendInfo = { kind: 'native', ...(file ? { path: file } : {}) };
    if (wanted === 'native') info.reason = 'OMNIBAL_BACKEND=native';
    return { api: native, info, native };
  }
  if (wanted === 'native') {
    throw omnibalError(
      ErrorCodes.NATIVE_UNAVAILABLE,
      `OMNIBAL_BACKEND=native but the native binding did not load: ${loadErrorLine(error)}`,
      error,
    );
  }
  const reason = `native binding not loaded: ${loadErrorLine(error)}`;
  process.stderr.write(
    `omnibal: ${reason}; using the TypeScript twins meanwhile (the same results, slower; set OMNIBAL_BACKEND=js to silence this)\n`,
  );
  return { api: jsBackend, info: { kind: 'js', reason } };
}

function current(): Loaded {
  loaded ??= select();
  return loaded;
}

/** The backend the API calls into (loaded on first use). */
export function activeBackend(): Backend {
  return current().api;
}

/**
 * Which backend serves the API: `native` (with the binary's path) or `js` (with the reason).
 * Loads the backend on first call; throws `ERR_OMNIBAL_NATIVE_UNAVAILABLE` when
 * `OMNIBAL_BACKEND=native` and no binary loads.
 */
export function backend(): BackendInfo {
  return { ...current().info };
}

/** The raw native module when it is loaded (for diagnostics such as `omnibal doctor`). */
export function nativeModule(): NativeModule | undefined {
  return current().native;
}
