// Every public function taking an options object refuses a key it does not know (a typo must
// not silently run a default), naming the key and the known key it resembles; valid calls are
// unchanged. The checks run before either backend, so both give the same error.
import test from 'ava';
import * as o from '../index';
import { editDistance, closestKey } from '../src/validate';
import { PLAN_BATCHES_OPTION_KEYS } from '../src/data/strategy';
import { PLAN_TRAINING_OPTION_KEYS } from '../src/plan/options';
import { VLM_STAGE_OPTION_KEYS } from '../src/model/option-keys';
import { STEP_INPUT_KEYS } from '../src/simulate/index';
import { PARAM_SCHEMAS } from '../src/sidecar/schemas';

const samples = o.syntheticSamples(600, 3);
const problem = o.vlmStageProblem({ model: 'internvl-300m-internlm2-7b', gpu: 'A100-80G', pp: 2, microBatches: 4, load: { tiles: 4, tokens: 2048 } });
const step: o.StepInput = {
  dp: 1, pp: 2, microBatches: 2, forwardMs: new Float64Array(4).fill(1), backwardMs: new Float64Array(4).fill(2), transferMs: new Float64Array(1),
  gradBytes: new Float64Array(2), allreduceBytesPerS: 0, activationBytes: new Float64Array(2), schedule: '1f1b',
};
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const loose = (x: object) => x as any;
const names = (list: readonly string[]) => [...list].sort();

/** [what, call, the message it must give]: each a typo (or a key from elsewhere) in one options object. */
const syncCases: [string, () => unknown, RegExp][] = [
  ['planBatches', () => o.planBatches(samples, loose({ dp: 4, samplesPerPack: 4.5, acum: 2, sed: 3 })), /^options\.acum is not a known option; did you mean 'accum'\?$/],
  ['planBatches (case)', () => o.planBatches(samples, loose({ dp: 4, samplesperpack: 4.5 })), /^options\.samplesperpack .*did you mean 'samplesPerPack'\?$/],
  ['balanceBatches (strategy)', () => o.balanceBatches(samples, loose({ dp: 4, samplesPerPack: 4.5, strategy: 'isf' })), /^options\.strategy .*did you mean planBatches/],
  ['packIsf', () => o.packIsf(samples, loose({ maxVision: 20, maxText: 8192, iteration: 3 })), /^options\.iteration .*'iterations'/],
  ['searchIsfArguments', () => o.searchIsfArguments(samples, loose({ samplesPerPack: 4, maxStep: 2 })), /^options\.maxStep .*'maxSteps'/],
  ['batchMetrics', () => o.batchMetrics(o.planBatches(samples, { dp: 2, samplesPerPack: 4 }), samples, loose({ costB: 0 })), /^cost\.costB .*did you mean 'b'\?$/],
  ['vlmLayers', () => o.vlmLayers('internvl-300m-internlm2-7b', 'A100-80G', loose({ load: { tiles: 1, tokens: 64 }, tps: 2 })), /^options\.tps .*'tp'/],
  ['vlmStageProblem (load)', () => o.vlmStageProblem(loose({ model: 'internvl-300m-internlm2-7b', gpu: 'A100-80G', pp: 2, microBatches: 4, load: { tile: 4, tokens: 2048 } })), /^load\.tile .*'tiles'/],
  ['vlmLayers (training)', () => o.vlmLayers('internvl-300m-internlm2-7b', 'A100-80G', loose({ load: { tiles: 1, tokens: 64 }, training: { frozenVIT: true } })), /^training\.frozenVIT .*'frozenVit'/],
  ['vlmLayers (model spec)', () => o.vlmLayers(loose({ ...o.modelPreset('internvl-300m-internlm2-7b'), patches: 14 }), 'A100-80G', { load: { tiles: 1, tokens: 64 } }), /^model\.patches .*'patch'/],
  ['vlmLayers (gpu spec)', () => o.vlmLayers('internvl-300m-internlm2-7b', loose({ ...o.gpuPreset('A100-80G'), peakFlop: 1e15 }), { load: { tiles: 1, tokens: 64 } }), /^gpu\.peakFlop .*'peakFlops'/],
  ['vlmStageProblem', () => o.vlmStageProblem(loose({ model: 'internvl-300m-internlm2-7b', gpu: 'A100-80G', pp: 2, microBatches: 4, load: { tiles: 4, tokens: 2048 }, recomput: 'full' })), /^options\.recomput .*'recompute'/],
  ['vlmStageProblem (memoryLoad)', () => o.vlmStageProblem(loose({ model: 'internvl-300m-internlm2-7b', gpu: 'A100-80G', pp: 2, microBatches: 4, load: { tiles: 4, tokens: 2048 }, memoryLoad: { tiles: 4, token: 1 } })), /^memoryLoad\.token .*'tokens'/],
  ['calibrate', () => o.calibrate('internvl-300m-internlm2-7b', 'A100-80G', loose({ load: { tiles: 1, tokens: 64 }, zer: 1 }), { layers: [{ index: 0, forwardMs: 1 }] }), /^options\.zer .*'zero'/],
  ['partitionStages', () => o.partitionStages(loose({ ...problem, pp: 2 })), /^problem\.pp .*did you mean 'stages'\?$/],
  ['partitionChunks', () => o.partitionChunks(loose({ ...problem, schedule: 'interleaved', virtualStage: 2 })), /^problem\.virtualStage .*'virtualStages'/],
  ['evaluateSplit', () => o.evaluateSplit(loose({ ...problem, memoryByte: 1 }), [3, problem.forwardMs.length - 1]), /^problem\.memoryByte .*'memoryBytes'/],
  ['evaluateStages', () => o.evaluateStages(loose({ ...problem, microBatch: 4 }), [3, problem.forwardMs.length - 1], [0, 0]), /^problem\.microBatch .*'microBatches'/],
  ['baselineStages', () => o.baselineStages(loose({ ...problem, recompte: 'full' }), 'uniform', 'none'), /^problem\.recompte .*'recompute'/],
  ['partitionForTarget', () => o.partitionForTarget(loose({ ...problem, stage: 2 }), 'megatron'), /^problem\.stage .*'stages'/],
  ['exportMegatron', () => o.exportMegatron(loose({ ...problem, layerName: [] }), o.partitionStages(problem)), /^problem\.layerName .*'layerNames'/],
  ['searchStages', () => o.searchStages(problem, loose({ radiu: 1 })), /^options\.radiu .*'radius'/],
  ['simulateStep', () => o.simulateStep(loose({ ...step, virtualStage: 2 })), /^input\.virtualStage .*'virtualStages'/],
  ['chunkInFlight', () => o.chunkInFlight(loose({ schedule: '1f1b', pp: 2, stage: 0, microBatches: 4, chunkBytes: new Float64Array(1), stages: 2 })), /^input\.stages .*'stage'/],
  ['planTraining', () => o.planTraining(loose({ synthetic: 50000, gpus: 16, pp: 4 })), /^options\.synthetic .*did you mean samples: syntheticSamples\(n, seed\)\?$/],
  ['planTraining (layout keys)', () => o.planTraining(loose({ samples, pp: 4 })), /^options\.pp .*did you mean cluster\.pp/],
  ['planTraining (schedule)', () => o.planTraining(loose({ samples, schedul: 'gpipe' })), /^options\.schedul .*did you mean 'schedule'\?$/],
  ['planTraining (cluster)', () => o.planTraining(loose({ samples, cluster: { gpus: 8, tp: 1, pp: 2, dp: 4, dps: 4 } })), /^cluster\.dps .*'dp'/],
  ['planTraining (training)', () => o.planTraining(loose({ samples, training: { grad: 'bf16' } })), /^training\.grad .*'grads'/],
  ['planTraining (inputs)', () => o.planTraining(loose({ samples, inputs: { file: ['a.json'] } })), /^inputs\.file .*'files'/],
  ['searchLayouts', () => o.searchLayouts(loose({ samples, gpus: 8, tp: [1] })), /^options\.tp .*'tps'/],
  ['searchLayouts (plan-only key)', () => o.searchLayouts(loose({ samples, gpus: 8, cluster: { gpus: 8, tp: 1, pp: 1, dp: 8 } })), /^options\.cluster .*did you mean gpus with tps and pps/],
];

for (const [what, call, message] of syncCases) {
  test(`${what}: an unknown key is ERR_OMNIBAL_UNKNOWN_OPTION naming it`, (t) => {
    const e = t.throws(call) as Error & { code?: string };
    t.is(e.code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
    t.regex(e.message, message);
  });
}

const asyncCases: [string, () => Promise<unknown>, RegExp][] = [
  ['planBatchesAsync', () => o.planBatchesAsync(samples, loose({ dp: 2, samplesPerPack: 4, epochs: 1 })), /^options\.epochs .*'epoch'/],
  ['planBatchesAsync (asyncOptions)', () => o.planBatchesAsync(samples, { dp: 2, samplesPerPack: 4 }, loose({ onprogress: () => {} })), /^asyncOptions\.onprogress .*'onProgress'/],
  ['packIsfAsync (asyncOptions signal)', () => o.packIsfAsync(samples, { maxVision: 20, maxText: 8192 }, loose({ singal: new AbortController().signal })), /^asyncOptions\.singal .*'signal'/],
  ['permutationAsync (no signal)', () => o.permutationAsync(10, 1, loose({ signal: new AbortController().signal })), /^options\.signal is not a known option; known: onProgress$/],
  ['balanceBatchesAsync', () => o.balanceBatchesAsync(samples, loose({ dp: 2, samplesPerPack: 4, strategy: 'random' })), /^options\.strategy /],
  ['packIsfAsync', () => o.packIsfAsync(samples, loose({ maxVision: 20, maxText: 8192, minVisio: 1 })), /^options\.minVisio .*'minVision'/],
  ['searchIsfArgumentsAsync', () => o.searchIsfArgumentsAsync(samples, loose({ samplesPerPack: 4, dP: 2 })), /^options\.dP .*'dp'/],
  ['permutationAsync', () => o.permutationAsync(10, 1, loose({ onProgres: () => {} })), /^options\.onProgres .*'onProgress'/],
  ['partitionStagesAsync', () => o.partitionStagesAsync(loose({ ...problem, memory: 1 })), /^problem\.memory is not a known option/],
  ['readSamples', () => o.readSamples('/nonexistent.jsonl', loose({ maxbytes: 3 })), /^options\.maxbytes .*'maxBytes'/],
];

for (const [what, call, message] of asyncCases) {
  test(`${what}: an unknown key rejects with ERR_OMNIBAL_UNKNOWN_OPTION naming it`, async (t) => {
    const e = (await t.throwsAsync(call)) as Error & { code?: string };
    t.is(e.code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
    t.regex(e.message, message);
  });
}

test('valid calls are unchanged: a known key given as undefined is still accepted, and the plan is the same', async (t) => {
  const a = o.planBatches(samples, { dp: 2, samplesPerPack: 4, seed: 5 });
  const b = o.planBatches(samples, { dp: 2, samplesPerPack: 4, seed: 5, accum: undefined, tail: undefined });
  t.deepEqual(b, a);
  t.deepEqual(o.balanceBatches(samples, { dp: 2, samplesPerPack: 4, seed: 5 }), a);
  // `signal` is a known key of the async data functions' options (with `onProgress`).
  const signal = new AbortController().signal;
  t.deepEqual(await o.planBatchesAsync(samples, { dp: 2, samplesPerPack: 4, seed: 5 }, { signal, onProgress: undefined }), a);
  t.notThrows(() => o.simulateStep(step));
  t.notThrows(() => o.partitionStages({ ...problem }));
  t.notThrows(() => o.vlmLayers(o.modelPreset('internvl-300m-internlm2-7b'), o.gpuPreset('A100-80G'), { load: { tiles: 1, tokens: 64, sumSqLen: 4096 }, training: { grads: 'bf16' } }));
});

test('the key lists agree with the sidecar schemas of the same options', (t) => {
  const props = (method: string) => Object.keys((PARAM_SCHEMAS[method] as { properties: object }).properties);
  // `pack` adds the samples' own params and `encoding` (how answers are sent).
  const sampleParams = ['vision', 'text', 'path', 'paths', 'format', 'encoding'];
  t.deepEqual(names(props('pack').filter((k) => !sampleParams.includes(k))), names(PLAN_BATCHES_OPTION_KEYS));
  t.deepEqual(names(props('simulate')), names(STEP_INPUT_KEYS));
  for (const k of props('partition')) t.true(VLM_STAGE_OPTION_KEYS.includes(k), `partition param ${k}`);
  for (const k of props('plan')) t.true(PLAN_TRAINING_OPTION_KEYS.includes(k), `plan param ${k}`);
});

test('did-you-mean: edit distance with swaps, the closest key within a third of its length, case first', (t) => {
  t.is(editDistance('acum', 'accum'), 1);
  t.is(editDistance('sedd', 'seed'), 1);
  t.is(editDistance('shcedule', 'schedule'), 1);
  t.is(editDistance('', 'abc'), 3);
  t.is(closestKey('SEED', ['seed', 'sed']), 'seed');
  t.is(closestKey('schedul', ['schedule', 'simulatedSteps']), 'schedule');
  t.is(closestKey('pp', ['gpu', 'model']), undefined);
  t.is(closestKey('xyzzy', ['accum', 'epoch']), undefined);
});
