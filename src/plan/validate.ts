/**
 * Checks a saved (possibly hand-edited) training plan before it is re-simulated: the schema,
 * the cluster arithmetic, the replay settings, and the stages (contiguous layer ranges from the
 * first layer to the last, recomputed layers inside their own stage). Every problem is one coded
 * error that names the field; nothing is silently repaired.
 *
 * @module
 */
import { ErrorCodes, omnibalError } from '../errors';
import { describeValue } from '../validate';
import type { TrainingPlan } from './training-plan';

const SCHEMA = 'omnibal.training-plan/1';

function bad(message: string): Error {
  return omnibalError(ErrorCodes.INVALID_OPTIONS, `plan: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as an error message shows it: numbers and strings as written, else their kind. */
const show = (v: unknown) => (typeof v === 'number' ? String(v) : typeof v === 'string' ? JSON.stringify(v) : describeValue(v));

function int(where: string, v: unknown, min: number, max = 2 ** 31): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw bad(`${where} must be an integer from ${min} to ${max}, got ${show(v)}`);
  }
  return v;
}

/**
 * Checks the shape of a saved plan (everything but the layer count, which needs the model):
 * returns it typed, or throws `ERR_OMNIBAL_PARSE` (another schema) or
 * `ERR_OMNIBAL_INVALID_OPTIONS` (a field out of place).
 */
export function checkSavedPlan(saved: unknown): TrainingPlan {
  const schema = isObject(saved) ? saved.schema : undefined;
  if (schema !== SCHEMA) {
    throw omnibalError(ErrorCodes.PARSE, `not an omnibal training plan of this version: schema ${JSON.stringify(schema) ?? 'missing'}, expected "${SCHEMA}"`);
  }
  const p = saved as Record<string, unknown>;
  for (const k of ['model', 'gpu'] as const) if (typeof p[k] !== 'string') throw bad(`${k} must be a preset name, got ${describeValue(p[k])}`);
  if (!isObject(p.cluster)) throw bad(`cluster must be an object, got ${describeValue(p.cluster)}`);
  const c = p.cluster;
  const [gpus, tp, pp, dp] = (['gpus', 'tp', 'pp', 'dp'] as const).map((k) => int(`cluster.${k}`, c[k], 1, 1 << 20));
  if (tp * pp * dp !== gpus) throw bad(`cluster: tp x pp x dp (${tp} x ${pp} x ${dp} = ${tp * pp * dp}) must equal gpus (${gpus})`);
  int('accum', p.accum, 1, 1 << 20);
  if (!isObject(p.replay)) throw bad(`replay must be an object, got ${describeValue(p.replay)}`);
  const r = p.replay;
  if (typeof r.samplesPerPack !== 'number' || !Number.isFinite(r.samplesPerPack) || r.samplesPerPack < 1) {
    throw bad(`replay.samplesPerPack must be a number >= 1, got ${show(r.samplesPerPack)}`);
  }
  int('replay.seed', r.seed, 0, Number.MAX_SAFE_INTEGER);
  int('replay.epoch', r.epoch, 0, 1 << 30);
  int('replay.simulatedSteps', r.simulatedSteps, 1, 1 << 20);
  int('replay.virtualStages', r.virtualStages, 1, 64);
  if (!['gpipe', '1f1b', 'interleaved'].includes(r.schedule as string)) throw bad(`replay.schedule must be gpipe, 1f1b or interleaved, got ${show(r.schedule)}`);
  if (r.calibration !== null && r.calibration !== undefined && !isObject(r.calibration)) throw bad(`replay.calibration must be an object or null, got ${describeValue(r.calibration)}`);
  if (r.inputs !== null && r.inputs !== undefined) {
    const i = r.inputs;
    const files = isObject(i) && Array.isArray(i.files) && i.files.every((f) => typeof f === 'string');
    const synthetic = isObject(i) && typeof i.synthetic === 'number' && typeof i.seed === 'number';
    if (!files && !synthetic) throw bad(`replay.inputs must be { files: [...] } or { synthetic, seed }, got ${describeValue(i)}`);
    if (synthetic) int('replay.inputs.synthetic', (i as Record<string, unknown>).synthetic, 1, 1 << 30);
  }
  if (!isObject(p.stages) || !Array.isArray(p.stages.stages)) throw bad('stages.stages must be a list of stages');
  const stages = p.stages.stages as unknown[];
  if (stages.length !== pp) throw bad(`the plan has ${stages.length} stages but pp is ${pp}`);
  stages.forEach((st, i) => {
    if (!isObject(st)) throw bad(`stages[${i}] must be an object, got ${describeValue(st)}`);
    if (!Array.isArray(st.recomputeLayers)) throw bad(`stages[${i}].recomputeLayers must be a list of layer indices`);
  });
  if (r.schedule === 'interleaved') {
    const k = (r.virtualStages as number) * pp;
    if (!isObject(p.chunks) || !Array.isArray(p.chunks.chunks)) throw bad('chunks.chunks must be the list of the v x P model chunks of an interleaved plan (re-plan with omnibal plan --schedule interleaved)');
    const list = p.chunks.chunks as unknown[];
    if (p.chunks.virtualStages !== undefined && p.chunks.virtualStages !== r.virtualStages) {
      throw bad(`chunks.virtualStages (${show(p.chunks.virtualStages)}) must equal replay.virtualStages (${r.virtualStages}): the replay runs replay.virtualStages; edit both`);
    }
    if (list.length !== k) throw bad(`the plan has ${list.length} chunks but virtualStages x pp is ${k}`);
    list.forEach((c, i) => {
      if (!isObject(c)) throw bad(`chunks.chunks[${i}] must be an object, got ${describeValue(c)}`);
      if (!Array.isArray(c.recomputeLayers)) throw bad(`chunks.chunks[${i}].recomputeLayers must be a list of layer indices`);
    });
  } else if (p.chunks !== undefined) throw bad(`chunks is for an interleaved plan, but replay.schedule is ${show(r.schedule)}`);
  return saved as TrainingPlan;
}

/**
 * Checks the chunks of a saved interleaved plan against the model's `layers`: chunk `c` runs
 * layers `firstLayer..lastLayer` on device `c mod P` (its `stage`), the first starts at 0, each
 * next one where the previous ended, the last ends at `layers - 1`; every recomputed layer is an
 * integer inside its chunk, once; no selectively recomputed layers; each stage's
 * `recomputeLayers` lists exactly its chunks' (so an edit in only one place is refused, not
 * ignored). Returns the chunks' last layers and the recomputed layers.
 */
export function checkSavedChunks(plan: TrainingPlan, layers: number): { chunkLastLayers: number[]; recomputeLayers: number[] } {
  const pp = plan.cluster.pp;
  const chunks = plan.chunks!.chunks;
  const chunkLastLayers: number[] = [];
  const recomputeLayers: number[] = [];
  const perStage: Set<number>[] = Array.from({ length: pp }, () => new Set<number>());
  let next = 0;
  chunks.forEach((c, i) => {
    const where = `chunks.chunks[${i}]`;
    const first = int(`${where}.firstLayer`, c.firstLayer, 0, layers - 1);
    const last = int(`${where}.lastLayer`, c.lastLayer, 0, layers - 1);
    if (first !== next) {
      throw bad(i === 0 ? `${where}.firstLayer must be 0, got ${first}` : `${where}.firstLayer (${first}) must follow chunks.chunks[${i - 1}].lastLayer (${next - 1}): edit both to move a cut`);
    }
    if (last < first) throw bad(`${where} has no layers (${first}-${last})`);
    if (c.stage !== undefined && c.stage !== i % pp) throw bad(`${where}.stage must be ${i % pp} (chunk c runs on stage c mod pp), got ${show(c.stage)}`);
    const selective: unknown = c.selectiveLayers;
    if (selective !== undefined && !(Array.isArray(selective) && selective.length === 0)) {
      throw bad(`${where}.selectiveLayers must be empty: a plan is re-simulated with whole recomputed layers only (list them in recomputeLayers), got ${Array.isArray(selective) ? JSON.stringify(selective).slice(0, 80) : show(selective)}`);
    }
    const seen = new Set<number>();
    c.recomputeLayers.forEach((l, k) => {
      const at = `${where}.recomputeLayers[${k}]`;
      if (typeof l !== 'number' || !Number.isInteger(l)) throw bad(`${at} must be a layer index (an integer), got ${show(l)}`);
      if (l < first || l > last) throw bad(`${at} = ${l} is not a layer of chunk ${i} (layers ${first}-${last})`);
      if (seen.has(l)) throw bad(`${at} = ${l} is listed twice`);
      seen.add(l);
      perStage[i % pp].add(l);
      recomputeLayers.push(l);
    });
    chunkLastLayers.push(last);
    next = last + 1;
  });
  if (next !== layers) throw bad(`the last chunk must end at layer ${layers - 1} (the model has ${layers} layers), got ${next - 1}`);
  plan.stages.stages.forEach((st, i) => {
    const listed = new Set(st.recomputeLayers);
    const same = listed.size === perStage[i].size && [...listed].every((l) => perStage[i].has(l));
    if (!same) throw bad(`stages[${i}].recomputeLayers must list its chunks' recomputed layers (an interleaved plan is edited in chunks.chunks[c].recomputeLayers; copy the change to its stage)`);
    // A stage spans its first chunk's first layer to its last chunk's last layer: a cut moved
    // only here would be ignored, so it is refused.
    const from = chunks[i].firstLayer;
    const to = chunks[chunks.length - pp + i].lastLayer;
    if (st.firstLayer !== from || st.lastLayer !== to) {
      throw bad(`stages[${i}] must span ${from}-${to} (its first chunk's first layer to its last chunk's last layer), got ${show(st.firstLayer)}-${show(st.lastLayer)}: an interleaved plan's cuts are edited in chunks.chunks[c].firstLayer / lastLayer; copy the change to its stage`);
    }
  });
  return { chunkLastLayers, recomputeLayers };
}

/**
 * Checks the stages of a saved plan against the model's `layers`: stage `i` runs layers
 * `firstLayer..lastLayer`, the first stage starts at 0, each next one where the previous ended,
 * the last ends at `layers - 1`; every recomputed layer is an integer inside its stage, once;
 * no selectively recomputed layers (the plan never has them, and the replay would ignore them).
 * Returns the stages' last layers and the recomputed layers.
 */
export function checkSavedStages(plan: TrainingPlan, layers: number): { lastLayers: number[]; recomputeLayers: number[] } {
  const lastLayers: number[] = [];
  const recomputeLayers: number[] = [];
  let next = 0;
  plan.stages.stages.forEach((st, i) => {
    const first = int(`stages[${i}].firstLayer`, st.firstLayer, 0, layers - 1);
    const last = int(`stages[${i}].lastLayer`, st.lastLayer, 0, layers - 1);
    if (first !== next) {
      throw bad(
        i === 0
          ? `stages[0].firstLayer must be 0, got ${first}`
          : `stages[${i}].firstLayer (${first}) must follow stages[${i - 1}].lastLayer (${next - 1}): edit both to move a cut`,
      );
    }
    if (last < first) throw bad(`stages[${i}] has no layers (${first}-${last})`);
    // The plan recomputes whole layers only; an edit here would be silently ignored by the replay.
    const selective: unknown = st.selectiveLayers;
    if (selective !== undefined && !(Array.isArray(selective) && selective.length === 0)) {
      throw bad(`stages[${i}].selectiveLayers must be empty: a plan is re-simulated with whole recomputed layers only (list them in recomputeLayers), got ${Array.isArray(selective) ? JSON.stringify(selective).slice(0, 80) : show(selective)}`);
    }
    const seen = new Set<number>();
    st.recomputeLayers.forEach((l, k) => {
      const where = `stages[${i}].recomputeLayers[${k}]`;
      if (typeof l !== 'number' || !Number.isInteger(l)) throw bad(`${where} must be a layer index (an integer), got ${show(l)}`);
      if (l < first || l > last) throw bad(`${where} = ${l} is not a layer of stage ${i} (layers ${first}-${last})`);
      if (seen.has(l)) throw bad(`${where} = ${l} is listed twice`);
      seen.add(l);
      recomputeLayers.push(l);
    });
    lastLayers.push(last);
    next = last + 1;
  });
  if (next !== layers) throw bad(`the last stage must end at layer ${layers - 1} (the model has ${layers} layers), got ${next - 1}`);
  return { lastLayers, recomputeLayers };
}
