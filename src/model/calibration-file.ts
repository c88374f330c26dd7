/**
 * The calibration file (what `python -m omnibal.profile` writes and `--calibration` reads),
 * checked before it is fitted: format 1 has every layer time at the file's `load`; format 2
 * (`"schema": "omnibal.calibration/2"`) lets each layer time carry the `load` it was measured
 * at, so a kind measured at two loads or more gets a fixed cost as well as an efficiency.
 * Fields the fit does not read (names, backward times, samples) are allowed and ignored.
 *
 * @module
 */
// ajv (already the sidecar's validator): the schema below is the check, field by field.
import type { ErrorObject, ValidateFunction } from 'ajv';
import { invalidOptions, outOfRange } from '../errors';

/** The calibration formats this version reads. */
export const CALIBRATION_SCHEMAS = ['omnibal.calibration/1', 'omnibal.calibration/2'] as const;

/** A micro-batch load: tiles at least 0, tokens at least 1 (the fit divides by it); no other field (a misspelt `sumSqLen` would silently become tokens squared). */
const load = {
  type: 'object',
  required: ['tiles', 'tokens'],
  properties: { tiles: { type: 'number', minimum: 0, maximum: 1e30 }, tokens: { type: 'number', minimum: 1, maximum: 1e30 }, sumSqLen: { type: 'number', minimum: 0, maximum: 1e30 } },
  additionalProperties: false,
} as const;

const u32 = { type: 'integer', minimum: 0, maximum: 4294967295 } as const;
/** Bytes: 0 is a measurement (`--tiles 0` profiles a stage that keeps nothing). */
const bytes = { type: 'number', minimum: 0, maximum: 1e30 } as const;

/**
 * The JSON Schema of a calibration file: the one rule set of `--calibration` (CLI),
 * `calibrate` (library) and the sidecar's `calibration` params (docs/protocol.md prints it).
 * The fields the fit reads are checked; the rest of a layer entry (names, backward times,
 * samples) and of the file (device, date, loads) is allowed and ignored. What a schema cannot
 * say (a time below the floor of a measurement, times that fall as the load grows, a layer
 * timed only where it does no work) is checked against the model by {@link checkMeasurements}.
 */
export const CALIBRATION_FILE_SCHEMA = {
  type: 'object',
  properties: {
    schema: { enum: CALIBRATION_SCHEMAS },
    load,
    layers: {
      type: 'array',
      maxItems: 100000,
      items: {
        type: 'object',
        required: ['index', 'forwardMs'],
        properties: { index: u32, forwardMs: { type: 'number', maximum: 1e30 }, load },
      },
    },
    stageMemory: {
      type: 'array',
      maxItems: 4096,
      items: {
        type: 'object',
        required: ['firstLayer', 'lastLayer', 'inFlight', 'fullRecomputeBytes', 'noRecomputeBytes'],
        properties: {
          firstLayer: u32,
          lastLayer: u32,
          inFlight: { type: 'integer', minimum: 1, maximum: 1048576 },
          fullRecomputeBytes: bytes,
          noRecomputeBytes: bytes,
        },
        additionalProperties: false,
      },
    },
  },
} as const;

// Compiled on first use, ajv loaded with it: at start-up the two cost every command ~0.1 s of CPU.
let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  if (!compiled) {
    const Ajv = (require('ajv') as typeof import('ajv')).default;
    compiled = new Ajv({ allErrors: false, strict: true, strictRequired: false }).compile(CALIBRATION_FILE_SCHEMA);
  }
  return compiled;
}

function where(e: ErrorObject, child?: string): string {
  let out = 'calibration';
  for (const p of e.instancePath.split('/').slice(1)) out += /^\d+$/.test(p) ? `[${p}]` : `.${p}`;
  return child === undefined ? out : `${out}.${child}`;
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'required') return `${where(e, String(p.missingProperty))} is required`;
  if (e.keyword === 'enum') return `${where(e)} must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')} (a newer omnibal may read it)`;
  return `${where(e)} ${e.message ?? 'is invalid'}`;
}

/**
 * Checks a calibration document (a parsed calibration file, or one built in code).
 *
 * @param doc - the document
 * @throws an `ERR_OMNIBAL_INVALID_OPTIONS` error naming the first bad field (a per-layer `load`
 *   needs format 2; a file with neither `layers` nor `stageMemory` entries calibrates nothing)
 */
export function checkCalibration(doc: unknown): void {
  const validate = validator();
  if (!validate(doc)) throw invalidOptions(describe(validate.errors![0]));
  const d = doc as { schema?: string; layers?: { load?: unknown }[]; stageMemory?: unknown[] };
  // A file that calibrates nothing would leave every prediction uncalibrated while the output says calibrated.
  if (!d.layers?.length && !d.stageMemory?.length) {
    throw invalidOptions('calibration.layers is empty (and there is no stageMemory): the file measures nothing to calibrate (profile with python -m omnibal.profile)');
  }
  const i = (d.layers ?? []).findIndex((l) => l.load !== undefined);
  if (i >= 0 && d.schema !== 'omnibal.calibration/2') {
    throw invalidOptions(`calibration.layers[${i}].load needs "schema": "omnibal.calibration/2" (format 1 measures every layer at the file's load)`);
  }
}

/**
 * The shortest forward time a measured layer can have, ms: 1 µs. No framework runs a layer's
 * forward and backward faster (one kernel launch, or one dispatch of a CPU operator, takes
 * several µs); a smaller figure is a unit slip or a broken timer, never a measurement.
 */
export const MIN_LAYER_MS = 1e-3;

/**
 * The longest forward time a measured layer can have, ms: one day. A profile times each layer
 * many times over; a larger figure is a unit slip (ns written as ms), not a measurement.
 */
export const MAX_LAYER_MS = 86_400_000;

/**
 * The least efficiency a fit may give a kind with FLOPs (the model's floor on an efficiency): a
 * fit below it is times that no cost per FLOP explains (see {@link checkFittedCosts}).
 */
export const MIN_FITTED_EFFICIENCY = 1e-6;

/**
 * A file whose only measured layer kind is more than this many times slower at a load of less
 * work than at a load of more is rejected (swapped loads or times). In a file of several kinds,
 * one kind slower at less work is a warning, whatever the ratio: a loaded machine makes that
 * (a 0.25 ms layer once measured 3.8x slower at a third of the work, medians of 2 at load 20);
 * every kind slower at less work at once is rejected.
 */
export const SLOWER_AT_LESS_WORK_REJECT = 3;

/** A layer measured more than this many times slower at less work than at more is a warning (noise, or a kernel choice at a small shape). */
export const SLOWER_AT_LESS_WORK_WARN = 1.05;

/** A micro-batch load as a calibration file holds it. */
interface FileLoad {
  tiles: number;
  tokens: number;
  sumSqLen?: number;
}

/** The fields of a (schema-checked) calibration that {@link checkMeasurements} reads. */
interface MeasuredFile {
  load?: FileLoad;
  layers?: { index: number; forwardMs: number; load?: FileLoad }[];
  stageMemory?: { firstLayer: number; lastLayer: number; fullRecomputeBytes: number; noRecomputeBytes: number }[];
}

/** What the checks need of the model at one load: each layer's kind, and its forward time at 100% efficiency, ms. */
export interface LayerWork {
  /** Layer kinds, in table order. */
  kinds: readonly string[];
  /** Forward time of each layer at the GPU's peak (its FLOPs over the peak), ms. */
  msAtPeak: ArrayLike<number>;
}

const ms = (x: number) => (x >= 0.01 ? x.toPrecision(3) : String(x));
const loadWords = (l: FileLoad) => `${l.tiles} tiles, ${l.tokens} tokens`;

/**
 * Checks a calibration's measurements against the model (after {@link checkCalibration}):
 * rejects what cannot be a measurement, each error naming the file's field
 * (`calibration.layers[3].forwardMs`), never a quantity derived from it; returns warnings for
 * what a real profile can hold but the user should look at.
 *
 * Rejected (`ERR_OMNIBAL_INVALID_OPTIONS`; a layer or stage bound outside the model:
 * `ERR_OMNIBAL_OUT_OF_RANGE`): a `forwardMs` below {@link MIN_LAYER_MS} or over
 * {@link MAX_LAYER_MS}; every measured layer kind slower at a load of less work than at one of
 * more (the only kind: {@link SLOWER_AT_LESS_WORK_REJECT} times slower);
 * a kind with work (ViT, projector) timed only at 0 tiles, where it does none (its cost per tile
 * would be extrapolated from nothing); a stage whose `noRecomputeBytes` is below its
 * `fullRecomputeBytes` (keeping every activation cannot take less memory than recomputing them).
 * Warned: a time below the layer's FLOPs at the GPU's peak (efficiency above 1: the GPU preset
 * is not the device measured, or its peak is nominal); a kind measured slower (by more than
 * {@link SLOWER_AT_LESS_WORK_WARN}) at less work, in a file where other kinds are not.
 *
 * @param doc - the calibration, already checked by {@link checkCalibration}
 * @param callerLoad - the load of layers with no `load` of their own when the file has none
 * @param workAt - the model at a load (the caller caches it per load)
 * @returns the warnings, one line each, and the kind of each measured layer
 * @throws a coded error naming the first bad field
 */
export function checkMeasurements(doc: MeasuredFile, callerLoad: FileLoad, workAt: (load: FileLoad) => LayerWork): { warnings: string[]; kinds: string[] } {
  const warnings: string[] = [];
  const layers = doc.layers ?? [];
  interface Point {
    j: number;
    kind: string;
    x: number;
    t: number;
    load: FileLoad;
  }
  const points: Point[] = [];
  for (const [j, l] of layers.entries()) {
    const field = `calibration.layers[${j}]`;
    const load = l.load ?? doc.load ?? callerLoad;
    const work = workAt(load);
    if (l.index >= work.kinds.length) throw outOfRange(`${field}.index`, `${l.index} is not a layer of the model (it has ${work.kinds.length}, 0 to ${work.kinds.length - 1})`);
    if (l.forwardMs > MAX_LAYER_MS) {
      throw invalidOptions(`${field}.forwardMs is ${l.forwardMs} ms, over ${MAX_LAYER_MS} ms (one day) for one layer's forward: not a measurement (ns or µs written as ms?)`);
    }
    if (!(l.forwardMs >= MIN_LAYER_MS)) {
      throw invalidOptions(
        `${field}.forwardMs is ${l.forwardMs} ms, below ${MIN_LAYER_MS} ms (1 µs), faster than any layer runs (one kernel launch takes several µs): not a measurement (seconds written as ms?)`,
      );
    }
    const kind = work.kinds[l.index];
    const x = work.msAtPeak[l.index];
    if (x > 0 && l.forwardMs < x) {
      warnings.push(
        `${field}.forwardMs (${ms(l.forwardMs)} ms) is faster than the ${kind} layer's FLOPs allow at the GPU's peak (${ms(x)} ms at 100% efficiency, ${loadWords(load)}), so its fitted efficiency exceeds 1: is the GPU preset the device it was measured on?`,
      );
    }
    points.push({ j, kind, x, t: l.forwardMs, load });
  }
  interface Inversion {
    kind: string;
    a: Point;
    b: Point;
    ratio: number;
  }
  const inverted: Inversion[] = [];
  let comparedKinds = 0;
  const where = (p: Point) => (layers[p.j].load ? `calibration.layers[${p.j}].load` : doc.load ? 'calibration.load' : undefined);
  for (const kind of new Set(points.map((p) => p.kind))) {
    const of = points.filter((p) => p.kind === kind);
    // A kind with work, timed only where it has none (a ViT layer at 0 tiles).
    if (kind !== 'embed' && of.every((p) => p.x === 0)) {
      const first = of[0];
      const path = where(first);
      throw invalidOptions(
        `${path ? `${path}.tiles is 0` : `calibration.layers[${first.j}] was measured at the caller's load of 0 tiles`} at every measurement of the ${kind} layers (first: calibration.layers[${first.j}]): with no tiles they do no work, so their cost per tile would be extrapolated from nothing; measure them at tiles > 0 or leave them out`,
      );
    }
    // Times must not fall as the work grows: each point against the fastest point of strictly more work.
    const byWork = [...of].sort((a, b) => a.x - b.x || a.j - b.j);
    const fastestFrom: Point[] = new Array<Point>(byWork.length);
    for (let i = byWork.length - 1; i >= 0; i--) fastestFrom[i] = i + 1 < byWork.length && fastestFrom[i + 1].t <= byWork[i].t ? fastestFrom[i + 1] : byWork[i];
    let worst: Inversion | undefined;
    let compared = false;
    for (const a of of) {
      let lo = 0;
      let hi = byWork.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (byWork[mid].x > a.x) hi = mid;
        else lo = mid + 1;
      }
      if (lo === byWork.length) continue;
      compared = true;
      const b = fastestFrom[lo];
      const ratio = a.t / b.t;
      if (ratio > SLOWER_AT_LESS_WORK_WARN && (!worst || ratio > worst.ratio)) worst = { kind, a, b, ratio };
    }
    if (compared) comparedKinds++;
    if (worst) inverted.push(worst);
  }
  // One kind slower at less work is noise a loaded machine makes (a sub-ms layer measured 3.8x
  // slower at a third of the work, medians of 2 under load 20): a warning. Every kind at once,
  // or the only kind by more than SLOWER_AT_LESS_WORK_REJECT, is not noise: swapped loads or times.
  const says = ({ kind, a, b, ratio }: Inversion) =>
    `calibration.layers[${a.j}].forwardMs (${ms(a.t)} ms at ${loadWords(a.load)}) is ${ratio.toFixed(2)}x calibration.layers[${b.j}].forwardMs (${ms(b.t)} ms at ${loadWords(b.load)}), a load of more work for the ${kind} layers`;
  if (comparedKinds >= 2 && inverted.length === comparedKinds) {
    throw invalidOptions(`${says(inverted[0])}, and every other layer kind's time falls as its work grows too: swapped loads or times?`);
  }
  if (comparedKinds === 1 && inverted.length === 1 && inverted[0].ratio > SLOWER_AT_LESS_WORK_REJECT) {
    throw invalidOptions(`${says(inverted[0])}: a layer's time cannot fall that much as its work grows (swapped loads or times?)`);
  }
  for (const i of inverted) warnings.push(`${says(i)}: timing noise? (profile with more repeats; the fit takes the time per FLOP from the trend)`);
  for (const [s, st] of (doc.stageMemory ?? []).entries()) {
    const field = `calibration.stageMemory[${s}]`;
    const count = workAt(doc.load ?? callerLoad).kinds.length;
    if (st.lastLayer >= count) throw outOfRange(`${field}.lastLayer`, `${st.lastLayer} is not a layer of the model (it has ${count}, 0 to ${count - 1})`);
    if (st.lastLayer < st.firstLayer) throw outOfRange(`${field}.lastLayer`, `${st.lastLayer} is before its firstLayer ${st.firstLayer}`);
    if (st.noRecomputeBytes < st.fullRecomputeBytes) {
      throw invalidOptions(
        `${field}.noRecomputeBytes (${st.noRecomputeBytes}) is below its fullRecomputeBytes (${st.fullRecomputeBytes}): keeping every activation cannot take less memory than recomputing them all (swapped fields?)`,
      );
    }
  }
  return { warnings, kinds: points.map((p) => p.kind) };
}

/**
 * Checks the fit of each measured kind: a cost per FLOP below {@link MIN_FITTED_EFFICIENCY} of
 * the GPU's peak, or a fixed cost that is not a finite number, is an error naming the
 * measurements it came from (the file's fields), not the fitted quantity.
 *
 * @param kinds - the kind of each measured layer (from {@link checkMeasurements})
 * @param kindNames - the kinds in fit order
 * @param efficiency - the fitted efficiency of each kind (NaN: not measured)
 * @param overheadMs - the fitted fixed cost of each kind
 * @throws `ERR_OMNIBAL_INVALID_OPTIONS` naming the kind's measured times
 */
export function checkFittedCosts(kinds: readonly string[], kindNames: readonly string[], efficiency: ArrayLike<number>, overheadMs: ArrayLike<number>): void {
  kindNames.forEach((kind, k) => {
    if (Number.isNaN(efficiency[k])) return;
    if (efficiency[k] >= MIN_FITTED_EFFICIENCY && Number.isFinite(efficiency[k]) && overheadMs[k] >= 0 && Number.isFinite(overheadMs[k])) return;
    const js = kinds.flatMap((x, j) => (x === kind ? [j] : []));
    const others = js.length > 1 ? ` and the other ${kind} times (calibration.layers[${js.slice(1).join('], [')}])` : '';
    throw invalidOptions(
      `calibration.layers[${js[0]}].forwardMs${others} fit no cost the model takes (slower per FLOP than ${MIN_FITTED_EFFICIENCY} of the GPU's peak): is the GPU preset the device measured, and are the times in ms?`,
    );
  });
}
