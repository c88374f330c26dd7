/**
 * The JSON Schemas of every sidecar method's `params` (docs/protocol.md prints the same schemas,
 * and a test checks that they agree), and the one validation layer built from them with ajv:
 * unknown, missing or mistyped params are a -32602 error naming the field, before any handler
 * runs. The bounds keep a small request from allocating without limit (`dp x accum`, the
 * simulator's `dp x pp x microBatches`, the planner's cluster and steps).
 *
 * @module
 */
// ajv earns its place: a well-kept JSON Schema validator, so the schemas in docs/protocol.md are the check itself.
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { CALIBRATION_FILE_SCHEMA } from '../model/calibration-file';
import { gpuPresets, modelPresets } from '../model/presets';
import { MAX_ATTACHMENTS } from './codec';
import { paramsError, RpcError } from './errors';

/** Most `dp x accum` (micro-batches per step) a request may ask for: 2^20. */
export const MAX_STEP_MICROBATCHES = 2 ** 20;
/** Most `dp x pp x microBatches` a `simulate` request may ask for: 2^22. */
export const MAX_SIMULATED_OPS = 2 ** 22;

const u32 = { type: 'integer', minimum: 0, maximum: 4294967295 } as const;
const count = (max: number) => ({ type: 'integer', minimum: 1, maximum: max }) as const;
const seed = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const handle = { type: 'string', minLength: 1, maxLength: 128 } as const;
const finite = { type: 'number' } as const;

/**
 * A numeric array: a JSON list, little-endian bytes in base64 (checked strictly when decoded), or
 * a binary attachment `{"$binary": k}` (exactly one of `$base64` / `$binary`: checked when bound,
 * see codec.ts `bindAttachments`).
 */
const U32 = {
  type: ['array', 'object'],
  items: u32,
  required: ['dtype'],
  properties: { $base64: { type: 'string', contentEncoding: 'base64' }, $binary: { type: 'integer', minimum: 0, maximum: MAX_ATTACHMENTS - 1 }, dtype: { const: 'u32' } },
  additionalProperties: false,
} as const;

/** How an answer's big integer arrays are sent: JSON lists (default), base64 little-endian u32, or binary attachments (see codec.ts). */
const encoding = { enum: ['json', 'base64', 'binary'] } as const;

const F64List = (max: number) => ({ type: 'array', items: finite, maxItems: max }) as const;

/** `Samples`: exactly one of `vision` + `text`, `path`, `paths`. */
const samplesProperties = {
  vision: U32,
  text: U32,
  path: { type: 'string', minLength: 1, maxLength: 4096 },
  paths: { type: 'array', minItems: 1, maxItems: 1024, items: { type: 'string', minLength: 1, maxLength: 4096 } },
  format: { enum: ['json', 'jsonl', 'csv'] },
} as const;

const planBatchesProperties = {
  strategy: { enum: ['balanced', 'isf', 'random', 'length-grouped'] },
  dp: count(MAX_STEP_MICROBATCHES),
  accum: count(MAX_STEP_MICROBATCHES),
  samplesPerPack: { type: 'number', minimum: 1, maximum: 65536 },
  maxVision: count(4294967295),
  maxText: count(4294967295),
  minVision: u32,
  minText: u32,
  seed,
  epoch: { type: 'integer', minimum: 0, maximum: 4294967295 },
  tail: { enum: ['drop', 'pad', 'keep-partial', 'carry'] },
  // The previous epoch's carried tail (tail 'carry', balanced only): sample indices, each once.
  carry: U32,
  costA: { type: 'number', minimum: 0 },
  costB: { type: 'number', minimum: 0 },
  iterations: count(1000),
  encoding,
} as const;

const load = {
  type: 'object',
  required: ['tiles', 'tokens'],
  properties: { tiles: { type: 'number', minimum: 0 }, tokens: { type: 'number', minimum: 0 }, sumSqLen: { type: 'number', minimum: 0 } },
  additionalProperties: false,
} as const;

const positive = { type: 'number', exclusiveMinimum: 0, maximum: 1e30 } as const;
const fraction = { type: 'number', exclusiveMinimum: 0, maximum: 1 } as const;

const transformer = {
  type: 'object',
  required: ['layers', 'hidden', 'heads', 'kvHeads', 'ffn', 'gated'],
  properties: { layers: count(1024), hidden: count(1 << 17), heads: count(1024), kvHeads: count(1024), ffn: count(1 << 20), gated: { type: 'boolean' }, vocab: count(1 << 23) },
  additionalProperties: false,
} as const;

/** A model: a preset name or a `VlmSpec`. */
const modelChoice = {
  type: ['string', 'object'],
  maxLength: 200,
  required: ['vit', 'llm', 'vitTokensPerTile', 'tilePixels', 'patch', 'llmTokensPerTile', 'projectorIn'],
  properties: { vit: transformer, llm: transformer, vitTokensPerTile: count(1 << 16), tilePixels: count(1 << 16), patch: count(1 << 16), llmTokensPerTile: count(1 << 16), projectorIn: count(1 << 20) },
  additionalProperties: false,
} as const;

/** A GPU: a preset name or a `GpuSpec`. */
const gpuChoice = {
  type: ['string', 'object'],
  maxLength: 200,
  required: ['peakFlops', 'memoryBytes', 'efficiency', 'networkBytesPerS', 'nvlinkBytesPerS'],
  properties: {
    peakFlops: positive,
    memoryBytes: positive,
    efficiency: { type: 'object', required: ['vit', 'projector', 'llm', 'head'], properties: { vit: fraction, projector: fraction, llm: fraction, head: fraction }, additionalProperties: false },
    networkBytesPerS: positive,
    nvlinkBytesPerS: positive,
  },
  additionalProperties: false,
} as const;

/**
 * A calibration file as `python -m omnibal.profile` writes it (format 1 or 2): the one schema
 * `--calibration` and `calibrate` check too (src/model/calibration-file.ts); the measurements
 * are then checked against the model as they are there.
 */
const calibration = CALIBRATION_FILE_SCHEMA;

/**
 * The memory options of `planTraining` (`omnibal plan`'s memory flags: `--zero`, `--grads`,
 * `--frozen`, `--no-flash-attention`, `--memory-gib`, `--headroom`, `--target`), taken by
 * `plan` and `searchLayout` as the API and the CLI take them (`partition` and `search.ask`: those of
 * `vlmStageProblem`).
 */
const memoryOptions = {
  zero: { enum: [0, 1, 2, 3] },
  training: {
    type: 'object',
    properties: { grads: { enum: ['fp32', 'bf16'] }, frozenVit: { type: 'boolean' }, frozenLlm: { type: 'boolean' }, flashAttention: { type: 'boolean' } },
    additionalProperties: false,
  },
  memoryBytes: { type: 'number', exclusiveMinimum: 0, maximum: 1e30 },
  headroom: { type: 'number', minimum: 0, maximum: 1e6 },
  target: { enum: ['none', 'megatron', 'deepspeed'] },
} as const;

/** Params of `partition` (and `search.ask`'s `problem`): `vlmStageProblem`'s options. */
const stageProblem = {
  type: 'object',
  required: ['model', 'gpu', 'pp', 'microBatches', 'load'],
  properties: {
    model: modelChoice,
    gpu: gpuChoice,
    pp: count(1024),
    tp: count(1024),
    dp: count(65536),
    zero: memoryOptions.zero,
    training: memoryOptions.training,
    headroom: memoryOptions.headroom,
    microBatches: count(MAX_STEP_MICROBATCHES),
    load,
    memoryLoad: load,
    recompute: { enum: ['none', 'full', 'block', 'any'] },
    visionOnFirstStage: { type: 'boolean' },
    stageOverheadBytes: { type: 'number', minimum: 0 },
    communication: { type: 'boolean' },
  },
  additionalProperties: false,
} as const;

const empty = { type: 'object', additionalProperties: false } as const;

/** The `params` schema of every method, by method name. */
export const PARAM_SCHEMAS: Readonly<Record<string, object>> = {
  version: empty,
  backend: empty,
  auth: { type: 'object', required: ['token'], properties: { token: { type: 'string', maxLength: 1024 } }, additionalProperties: false },
  pack: {
    type: 'object',
    required: ['dp'],
    properties: { ...samplesProperties, ...planBatchesProperties },
    additionalProperties: false,
    oneOf: [{ required: ['vision', 'text'] }, { required: ['path'] }, { required: ['paths'] }],
  },
  balance: {
    type: 'object',
    required: ['dp'],
    properties: { ...samplesProperties, ...planBatchesProperties, strategy: { const: 'balanced' } },
    additionalProperties: false,
    oneOf: [{ required: ['vision', 'text'] }, { required: ['path'] }, { required: ['paths'] }],
  },
  metrics: { type: 'object', required: ['planId'], properties: { planId: handle, costA: { type: 'number', minimum: 0 }, costB: { type: 'number', minimum: 0 } }, additionalProperties: false },
  planStep: { type: 'object', required: ['planId', 'step'], properties: { planId: handle, step: u32, encoding }, additionalProperties: false },
  planForRank: { type: 'object', required: ['planId', 'rank'], properties: { planId: handle, rank: u32, encoding }, additionalProperties: false },
  release: {
    type: 'object',
    properties: { planId: handle, searchId: handle },
    additionalProperties: false,
    oneOf: [{ required: ['planId'] }, { required: ['searchId'] }],
  },
  partition: stageProblem,
  simulate: {
    type: 'object',
    required: ['dp', 'pp', 'microBatches', 'forwardMs', 'backwardMs', 'transferMs', 'gradBytes', 'allreduceBytesPerS', 'activationBytes', 'schedule'],
    properties: {
      dp: count(4096),
      pp: count(1024),
      microBatches: count(65536),
      forwardMs: F64List(MAX_SIMULATED_OPS),
      backwardMs: F64List(MAX_SIMULATED_OPS),
      transferMs: F64List(1024),
      gradBytes: F64List(1024),
      allreduceBytesPerS: { type: 'number', minimum: 0 },
      activationBytes: F64List(1024),
      schedule: { enum: ['gpipe', '1f1b', 'interleaved'] },
      virtualStages: count(64),
      chunkForwardMs: F64List(MAX_SIMULATED_OPS),
      chunkBackwardMs: F64List(MAX_SIMULATED_OPS),
    },
    additionalProperties: false,
  },
  plan: {
    type: 'object',
    properties: {
      model: modelChoice,
      gpu: gpuChoice,
      cluster: {
        type: 'object',
        required: ['gpus', 'tp', 'pp', 'dp'],
        properties: { gpus: count(65536), tp: count(1024), pp: count(1024), dp: count(65536) },
        additionalProperties: false,
      },
      accum: count(4096),
      globalBatch: count(MAX_STEP_MICROBATCHES),
      samplesPerPack: { type: 'number', minimum: 1, maximum: 1024 },
      seed,
      epoch: { type: 'integer', minimum: 0, maximum: 4294967295 },
      simulatedSteps: count(256),
      schedule: { enum: ['gpipe', '1f1b', 'interleaved'] },
      virtualStages: count(64),
      epochs: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
      calibration,
      ablation: { type: 'boolean' },
      ...memoryOptions,
    },
    additionalProperties: false,
  },
  searchLayout: {
    type: 'object',
    properties: {
      model: modelChoice,
      gpu: gpuChoice,
      gpus: count(65536),
      // Bounded so that a candidate's micro-batches x stages stay within MAX_SIMULATED_OPS.
      globalBatchSamples: { type: 'number', exclusiveMinimum: 0, maximum: 65536 },
      tps: { type: 'array', minItems: 1, maxItems: 16, items: count(1024) },
      pps: { type: 'array', minItems: 1, maxItems: 16, items: count(64) },
      samplesPerPacks: { type: 'array', minItems: 1, maxItems: 8, items: { type: 'number', minimum: 1, maximum: 1024 } },
      synthetic: count(20_000_000),
      seed,
      epoch: { type: 'integer', minimum: 0, maximum: 4294967295 },
      simulatedSteps: count(256),
      schedule: { enum: ['gpipe', '1f1b', 'interleaved'] },
      virtualStages: count(64),
      epochs: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
      calibration,
      ...memoryOptions,
    },
    additionalProperties: false,
  },
  'search.ask': {
    type: 'object',
    properties: { searchId: handle, problem: stageProblem, radius: count(64), budget: count(10000) },
    additionalProperties: false,
    oneOf: [{ required: ['searchId'] }, { required: ['problem'] }],
  },
  'search.tell': {
    type: 'object',
    required: ['searchId', 'lastLayers', 'seconds'],
    properties: { searchId: handle, lastLayers: { type: 'array', maxItems: 1024, items: u32 }, seconds: { type: 'number', exclusiveMinimum: 0 } },
    additionalProperties: false,
  },
  '$/cancelRequest': { type: 'object', required: ['id'], properties: { id: { type: ['string', 'number'] } }, additionalProperties: false },
  shutdown: { type: 'object', properties: { token: { type: 'string', maxLength: 1024 } }, additionalProperties: false },
};

const ajv = new Ajv({ allErrors: false, allowUnionTypes: true, strict: true, strictRequired: false });
const validators = new Map<string, ValidateFunction>(Object.entries(PARAM_SCHEMAS).map(([name, schema]) => [name, ajv.compile(schema)]));

/** Each method's params of the numeric-array schema: the only ones a `{"$binary": k}` attachment may stand for. */
const arrayParams = new Map<string, ReadonlySet<string>>(
  Object.entries(PARAM_SCHEMAS).map(([name, schema]) => {
    const properties = (schema as { properties?: Record<string, unknown> }).properties ?? {};
    return [name, new Set(Object.keys(properties).filter((k) => properties[k] === U32))];
  }),
);

/** The params of `method` that may be numeric arrays, so binary attachments (empty for an unknown method). */
export function attachmentParams(method: string): ReadonlySet<string> {
  return arrayParams.get(method) ?? new Set();
}

/** `/cluster/tp` -> `cluster.tp`, `/vision/3` -> `vision[3]`. */
function fieldOf(instancePath: string, child?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? 'params' : out;
}

const ONE_OF_HINTS: Record<string, string> = {
  pack: 'give the samples as exactly one of vision + text, path or paths',
  balance: 'give the samples as exactly one of vision + text, path or paths',
  release: 'give exactly one of planId or searchId',
  'search.ask': 'give exactly one of searchId (to continue) or problem (to start)',
};

function toParamsError(method: string, e: ErrorObject): RpcError {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return paramsError(fieldOf(e.instancePath, String(p.missingProperty)), 'is required', 'ERR_OMNIBAL_INVALID_OPTIONS');
    case 'additionalProperties':
      return paramsError(fieldOf(e.instancePath, String(p.additionalProperty)), 'is not a known parameter', 'ERR_OMNIBAL_UNKNOWN_OPTION');
    case 'enum':
      return paramsError(fieldOf(e.instancePath), `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`, 'ERR_OMNIBAL_UNKNOWN_OPTION');
    case 'const':
      return paramsError(fieldOf(e.instancePath), `must be ${JSON.stringify(p.allowedValue)}`, 'ERR_OMNIBAL_UNKNOWN_OPTION');
    case 'type':
      return paramsError(fieldOf(e.instancePath), `must be ${String(p.type).replace(',', ' or ')}`, 'ERR_OMNIBAL_INVALID_TYPE');
    case 'oneOf':
      return paramsError(fieldOf(e.instancePath), ONE_OF_HINTS[method] ?? 'matches none or several of the allowed forms', 'ERR_OMNIBAL_INVALID_OPTIONS');
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
    case 'minItems':
    case 'maxItems':
    case 'minLength':
    case 'maxLength':
      return paramsError(fieldOf(e.instancePath), e.message ?? 'is out of range', 'ERR_OMNIBAL_OUT_OF_RANGE');
    default:
      return paramsError(fieldOf(e.instancePath), e.message ?? 'is invalid', 'ERR_OMNIBAL_INVALID_TYPE');
  }
}

/** Whether `method` is a known method (own entries only: `constructor` is not). */
export function isMethod(method: string): boolean {
  return validators.has(method);
}

/**
 * `simulate`'s optional per-chunk times: both or neither, for the interleaved schedule only,
 * `dp x microBatches x virtualStages x pp` (= `ops`) finite entries >= 0 each; -32602 naming the
 * field (the entry, for a bad value).
 */
function checkChunkTimes(o: Record<string, unknown>, ops: number): void {
  const given = (['chunkForwardMs', 'chunkBackwardMs'] as const).filter((k) => o[k] !== undefined);
  if (given.length === 0) return;
  const missing = given.length === 1 ? (given[0] === 'chunkForwardMs' ? 'chunkBackwardMs' : 'chunkForwardMs') : undefined;
  if (missing) throw paramsError(missing, `must be given with ${given[0]} (each model chunk's forward and backward times)`, 'ERR_OMNIBAL_INVALID_OPTIONS');
  if (o.schedule !== 'interleaved') throw paramsError('chunkForwardMs', `is for the interleaved schedule only, got schedule ${String(o.schedule)}`, 'ERR_OMNIBAL_INVALID_OPTIONS');
  for (const k of given) {
    const xs = o[k] as number[];
    if (xs.length !== ops) throw paramsError(k, `must have dp x microBatches x virtualStages x pp = ${ops} entries, got ${xs.length}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
    const i = xs.findIndex((x) => !Number.isFinite(x) || x < 0);
    if (i >= 0) throw paramsError(`${k}[${i}]`, `must be a finite number >= 0, got ${xs[i]}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
  }
}

/**
 * Checks `params` (absent means `{}`) against `method`'s schema and the cross-field bounds;
 * throws a -32602 {@link RpcError} naming the first bad field.
 */
export function validateParams(method: string, params: unknown): Record<string, unknown> {
  const validate = validators.get(method);
  if (!validate) throw new RpcError(-32601, `method not found: ${method}`);
  const p = params === undefined ? {} : params;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw paramsError('params', 'must be an object', 'ERR_OMNIBAL_INVALID_TYPE');
  if (!validate(p)) {
    const errors = validate.errors!;
    // Prefer "exactly one of ..." over the first branch's complaint when the forms are mixed up.
    const oneOf = errors.find((e) => e.keyword === 'oneOf' && e.instancePath === errors[0].instancePath);
    throw toParamsError(method, oneOf ?? errors[0]);
  }
  const o = p as Record<string, unknown>;
  // Preset names are checked against the known lists (a name like `__proto__` never reaches a lookup).
  const checkPresets = (o: Record<string, unknown> | undefined, at: string) => {
    if (!o) return;
    if (typeof o.model === 'string' && !modelPresets().includes(o.model)) throw paramsError(`${at}model`, `must be a known model preset (${modelPresets().join(', ')}) or a model spec`, 'ERR_OMNIBAL_UNKNOWN_PRESET');
    if (typeof o.gpu === 'string' && !gpuPresets().includes(o.gpu)) throw paramsError(`${at}gpu`, `must be a known GPU preset (${gpuPresets().join(', ')}) or a GPU spec`, 'ERR_OMNIBAL_UNKNOWN_PRESET');
  };
  if (method === 'partition' || method === 'plan' || method === 'searchLayout') checkPresets(o, '');
  if (method === 'search.ask') checkPresets(o.problem as Record<string, unknown> | undefined, 'problem.');
  if ((method === 'pack' || method === 'balance') && (o.dp as number) * ((o.accum as number | undefined) ?? 1) > MAX_STEP_MICROBATCHES) {
    throw paramsError('accum', `times dp must be at most ${MAX_STEP_MICROBATCHES} micro-batches per step`, 'ERR_OMNIBAL_OUT_OF_RANGE');
  }
  if (method === 'simulate') {
    const ops = (o.dp as number) * (o.pp as number) * (o.microBatches as number) * ((o.virtualStages as number | undefined) ?? 1);
    if (ops > MAX_SIMULATED_OPS) throw paramsError('microBatches', `times dp, pp and virtualStages must be at most ${MAX_SIMULATED_OPS}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
    checkChunkTimes(o, ops);
  }
  if (method === 'plan' && o.cluster !== undefined) {
    const c = o.cluster as { dp: number };
    const accum = (o.accum as number | undefined) ?? 32;
    if (c.dp * accum > MAX_STEP_MICROBATCHES) throw paramsError('accum', `times cluster.dp must be at most ${MAX_STEP_MICROBATCHES}`, 'ERR_OMNIBAL_OUT_OF_RANGE');
  }
  return o;
}
