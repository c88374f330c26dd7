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
import { invalidOptions } from '../errors';

/** The calibration formats this version reads. */
export const CALIBRATION_SCHEMAS = ['omnibal.calibration/1', 'omnibal.calibration/2'] as const;

const load = {
  type: 'object',
  required: ['tiles', 'tokens'],
  properties: { tiles: { type: 'number', minimum: 0 }, tokens: { type: 'number', minimum: 1 }, sumSqLen: { type: 'number', minimum: 0 } },
} as const;

const schema = {
  type: 'object',
  properties: {
    schema: { enum: CALIBRATION_SCHEMAS },
    load,
    layers: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index', 'forwardMs'],
        properties: { index: { type: 'integer', minimum: 0, maximum: 4294967295 }, forwardMs: { type: 'number' }, load },
      },
    },
    stageMemory: {
      type: 'array',
      items: {
        type: 'object',
        required: ['firstLayer', 'lastLayer', 'inFlight', 'fullRecomputeBytes', 'noRecomputeBytes'],
        properties: {
          firstLayer: { type: 'integer', minimum: 0, maximum: 4294967295 },
          lastLayer: { type: 'integer', minimum: 0, maximum: 4294967295 },
          inFlight: { type: 'integer', minimum: 1, maximum: 4294967295 },
          fullRecomputeBytes: { type: 'number', minimum: 0 },
          noRecomputeBytes: { type: 'number', minimum: 0 },
        },
      },
    },
  },
} as const;

// Compiled on first use, ajv loaded with it: at start-up the two cost every command ~0.1 s of CPU.
let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  if (!compiled) {
    const Ajv = (require('ajv') as typeof import('ajv')).default;
    compiled = new Ajv({ allErrors: false, strict: true, strictRequired: false }).compile(schema);
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
 *   needs format 2)
 */
export function checkCalibration(doc: unknown): void {
  const validate = validator();
  if (!validate(doc)) throw invalidOptions(describe(validate.errors![0]));
  const d = doc as { schema?: string; layers?: { load?: unknown }[] };
  const i = (d.layers ?? []).findIndex((l) => l.load !== undefined);
  if (i >= 0 && d.schema !== 'omnibal.calibration/2') {
    throw invalidOptions(`calibration.layers[${i}].load needs "schema": "omnibal.calibration/2" (format 1 measures every layer at the file's load)`);
  }
}
