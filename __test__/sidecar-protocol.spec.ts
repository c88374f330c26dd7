// The sidecar's protocol layer, in process: one schema check for every method (-32602 naming the
// field), method lookup, ids, batches, id recovery, files, plan ownership, sharing, release,
// eviction, cancellation and progress.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { recoverId, LineReader } from '../src/sidecar/framing';
import { PARAM_SCHEMAS } from '../src/sidecar/schemas';
import { newContext, Session } from '../src/sidecar/server';
import { TaskPool } from '../src/sidecar/task-pool';
import { simulateStep } from '../src/simulate/index';
import { partitionStages, vlmStageProblem } from '../src/model/index';
import { Harness, LineClient, spawnServe, tempDir, type Msg } from './sidecar-harness';
import { root } from './helpers';

const small = (n: number) => ({ vision: Array.from({ length: n }, (_, i) => 1 + (i % 5)), text: Array.from({ length: n }, (_, i) => 100 + ((i * 37) % 900)) });

/** An interleaved `simulate` request (dp 1, pp 2, 2 micro-batches, v 2) with per-chunk times. */
const chunked = {
  dp: 1,
  pp: 2,
  microBatches: 2,
  forwardMs: [2, 2, 2, 2],
  backwardMs: [4, 4, 4, 4],
  transferMs: [0.5],
  gradBytes: [0, 0],
  allreduceBytesPerS: 0,
  activationBytes: [1, 1],
  schedule: 'interleaved',
  virtualStages: 2,
  chunkForwardMs: [3, 1, 0.5, 1, 3, 1, 0.5, 1],
  chunkBackwardMs: [6, 2, 1, 2, 6, 2, 1, 2],
};

const invalidParams: [string, unknown, string][] = [
  ['balance', { ...small(8) }, 'dp'],
  ['balance', { ...small(8), dp: 2, sead: 1 }, 'sead'],
  ['balance', { ...small(8), dp: 2, shuffle: true }, 'shuffle'],
  ['balance', { ...small(8), dp: '2' }, 'dp'],
  ['balance', { ...small(8), dp: 0 }, 'dp'],
  ['balance', { ...small(8), dp: 1.5 }, 'dp'],
  ['balance', { ...small(8), dp: 2, tail: 'maybe' }, 'tail'],
  ['balance', { ...small(8), dp: 65536, accum: 65536, tail: 'pad' }, 'accum'],
  ['pack', { vision: [1, 2], text: [1, -2], dp: 1 }, 'text[1]'],
  ['pack', { vision: [1, 2], dp: 1 }, 'params'],
  ['pack', { ...small(4), path: '/x.csv', dp: 1 }, 'params'],
  ['pack', { vision: { $base64: 'AAAA', dtype: 'f64' }, text: [1], dp: 1 }, 'vision.dtype'],
  ['pack', { vision: { $base64: 'AAAA', dtype: 'u32', extra: 1 }, text: [1], dp: 1 }, 'vision.extra'],
  ['metrics', {}, 'planId'],
  ['metrics', { planId: 7 }, 'planId'],
  ['planStep', { planId: 'plan-x' }, 'step'],
  ['planStep', { planId: 'plan-x', step: -1 }, 'step'],
  ['planForRank', { planId: 'plan-x', rank: 'a' }, 'rank'],
  ['planForRank', { planId: 'plan-x', rank: 0, encoding: 'hex' }, 'encoding'],
  ['balance', { ...small(8), dp: 2, encoding: 'msgpack' }, 'encoding'],
  ['partition', { model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 4, microBatches: 8 }, 'load'],
  ['partition', { model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 4, microBatches: 8, load: { tiles: 1 } }, 'load.tokens'],
  ['simulate', { dp: 1 }, 'pp'],
  ['simulate', { dp: 4096, pp: 1024, microBatches: 65536, forwardMs: [], backwardMs: [], transferMs: [], gradBytes: [], allreduceBytesPerS: 0, activationBytes: [], schedule: '1f1b' }, 'microBatches'],
  ['simulate', { ...chunked, chunkBackwardMs: undefined }, 'chunkBackwardMs'],
  ['simulate', { ...chunked, chunkForwardMs: chunked.chunkForwardMs.slice(1) }, 'chunkForwardMs'],
  ['simulate', { ...chunked, chunkBackwardMs: [1, 2, 3, -2, 1, 2, 3, 2] }, 'chunkBackwardMs[3]'],
  ['simulate', { ...chunked, chunkForwardMs: [1, 2, 3, 2, 1, 2, 3, 'x'] }, 'chunkForwardMs[7]'],
  ['simulate', { ...chunked, schedule: '1f1b', virtualStages: undefined }, 'chunkForwardMs'],
  ['plan', { cluster: { gpus: 8, tp: 1, pp: 8 } }, 'cluster.dp'],
  ['plan', { simulatedSteps: 1e9 }, 'simulatedSteps'],
  ['search.tell', { searchId: 's', lastLayers: [1], seconds: 0 }, 'seconds'],
  ['version', { extra: 1 }, 'extra'],
  ['release', {}, 'params'],
  ['$/cancelRequest', {}, 'id'],
];

for (const [k, [method, params, field]] of invalidParams.entries()) {
  test(`invalid params #${k} (${method}): -32602 naming ${field}`, async (t) => {
    const h = Harness.create();
    const r = await h.call(method, params);
    t.is(r.error?.code, -32602, JSON.stringify(r));
    t.is(r.error?.data?.field, field);
    t.true(r.error!.message.includes(field === 'params' ? '' : field.split(/[.[]/)[0]), r.error!.message);
    t.false(/Missing field|internal/i.test(r.error!.message));
  });
}

test('simulate takes each model chunk\'s own times, as simulateStep does in process', async (t) => {
  const h = Harness.create();
  const r = await h.call('simulate', chunked);
  t.is(r.error, undefined, JSON.stringify(r.error));
  const f64 = (x: number[]) => Float64Array.from(x);
  const own = simulateStep({
    ...chunked,
    schedule: 'interleaved',
    forwardMs: f64(chunked.forwardMs),
    backwardMs: f64(chunked.backwardMs),
    transferMs: f64(chunked.transferMs),
    gradBytes: f64(chunked.gradBytes),
    activationBytes: f64(chunked.activationBytes),
    chunkForwardMs: f64(chunked.chunkForwardMs),
    chunkBackwardMs: f64(chunked.chunkBackwardMs),
  });
  t.is(r.result.stepMs, own.stepMs);
  t.deepEqual(r.result.rankMs, Array.from(own.rankMs));
  // Without them each chunk takes half its stage's time: another step here.
  const even = await h.call('simulate', { ...chunked, chunkForwardMs: undefined, chunkBackwardMs: undefined });
  t.not(even.result.stepMs, r.result.stepMs);
});

test('params that are not an object are -32602', async (t) => {
  const h = Harness.create();
  t.is((await h.call('version', [1])).error?.code, -32602);
  t.is((await h.call('balance', 'x')).error?.code, -32602);
});

test('every method has a schema, and the schemas in docs/protocol.md are these', (t) => {
  const doc = fs.readFileSync(path.join(root, 'docs', 'protocol.md'), 'utf8');
  for (const [method, schema] of Object.entries(PARAM_SCHEMAS)) {
    const m = new RegExp(`\`${method.replace(/[.$/]/g, (c) => `\\${c}`)}\` params\\n\`\`\`json\\n([^\`]+)\`\`\``).exec(doc);
    t.truthy(m, `docs/protocol.md has no params schema for ${method}`);
    if (m) t.deepEqual(JSON.parse(m[1]), JSON.parse(JSON.stringify(schema)), method);
  }
});

test('methods resolve through own entries only; id null is answered; notifications are not', async (t) => {
  const h = Harness.create();
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const r = await h.call(name, { a: 1 });
    t.is(r.error?.code, -32601, name);
  }
  h.raw('{"jsonrpc":"2.0","id":null,"method":"version"}\n');
  const r = await h.lines.answer(null);
  t.is(r.result.protocol, 'omnibal-rpc/1');
  const before = h.lines.messages.length;
  h.raw('{"jsonrpc":"2.0","method":"version"}\n');
  await h.call('version');
  t.is(h.lines.messages.length, before + 1);
});

test('batches are answered as one array, notifications left out; an empty batch is -32600', async (t) => {
  const h = Harness.create();
  h.raw('[{"jsonrpc":"2.0","id":"a","method":"version"},{"jsonrpc":"2.0","method":"version"},{"jsonrpc":"2.0","id":"b","method":"nope"},{"bad":1}]\n');
  const batch = (await h.lines.next((m) => Array.isArray(m))) as Msg[];
  t.deepEqual(batch.map((m) => m.id), ['a', 'b', null]);
  t.is(batch[1].error?.code, -32601);
  t.is(batch[2].error?.code, -32600);
  h.raw('[]\n');
  t.is((await h.lines.answer(null)).error?.code, -32600);
});

test('invalid base64 is rejected; valid base64 is taken', async (t) => {
  const h = Harness.create();
  const b64 = (a: number[]) => ({ $base64: Buffer.from(new Uint32Array(a).buffer).toString('base64'), dtype: 'u32' });
  for (const bad of ['AAAA!!!!', 'AAA', 'AA==AAAA', 'AAAAAA==']) {
    const r = await h.call('pack', { vision: { $base64: bad, dtype: 'u32' }, text: b64([5]), dp: 1 });
    t.is(r.error?.code, -32602, bad);
  }
  const ok = await h.call('balance', { vision: b64(small(16).vision), text: b64(small(16).text), dp: 2, samplesPerPack: 2 });
  t.truthy(ok.result?.planId, JSON.stringify(ok));
});

test('id recovery: strict pattern at the start of a line only', (t) => {
  t.is(recoverId('{"jsonrpc": "2.0", "id": 17, "method": "pack", "params": {'), 17);
  t.is(recoverId('{"id":"req-9","jsonrpc":"2.0"'), 'req-9');
  t.is(recoverId('  {"jsonrpc":"2.0","id":-3}'), -3);
  t.is(recoverId('{"jsonrpc": "2.0", "method": "pack", "id": 17'), null);
  t.is(recoverId('{"jsonrpc": "2.0", "id": 1e5, "method"'), null);
  t.is(recoverId('{"jsonrpc": "2.0", "id": "a\\"b", "method"'), null);
  t.is(recoverId('xx{"id": 3,'), null);
});

test('an over-long line and a parse error are answered with the recovered id, and the session goes on', async (t) => {
  const h = Harness.create({ maxLineBytes: 1000 });
  h.raw(`{"jsonrpc": "2.0", "id": 41, "method": "pack", "params": {"vision": [${'1,'.repeat(2000)}1]}}\n`);
  const long = await h.lines.answer(41);
  t.is(long.error?.code, -32001);
  h.raw('{"jsonrpc": "2.0", "id": 42, "method": "version", oops}\n');
  t.is((await h.lines.answer(42)).error?.code, -32700);
  h.raw('{"method": "version", oops}\n');
  t.is((await h.lines.answer(null)).error?.code, -32700);
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
});

test('an endless line costs at most the limit: -32001 once, then the next line is served', async (t) => {
  const h = Harness.create({ maxLineBytes: 4096 });
  const zeros = Buffer.alloc(65536);
  for (let i = 0; i < 64; i++) h.session.feed(zeros);
  const errors = h.lines.messages.filter((m) => !Array.isArray(m) && m.error?.code === -32001);
  t.is(errors.length, 1);
  h.raw('\n');
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
});

test('LineReader: chunk boundaries anywhere give the same lines; CRLF trimmed', (t) => {
  const text = Buffer.from('{"a":1}\r\n{"b":"é"}\n\n{"c":3}\n');
  for (let cut = 0; cut <= text.length; cut++) {
    const got: string[] = [];
    const r = new LineReader(100, { line: (l) => void got.push(l), tooLong: () => got.push('LONG') });
    r.feed(text.subarray(0, cut));
    r.feed(text.subarray(cut));
    t.deepEqual(got, ['{"a":1}', '{"b":"é"}', '', '{"c":3}']);
  }
});

test('paths: FIFOs, devices and directories are -32602 naming path; size over --max-file-bytes is -32001', async (t) => {
  const dir = tempDir();
  const fifo = path.join(dir, 'lengths.csv');
  execFileSync('mkfifo', [fifo]);
  const h = Harness.create({ maxFileBytes: 10 });
  for (const p of [fifo, '/dev/zero', dir]) {
    const r = await h.call('balance', { path: p, dp: 1 });
    t.is(r.error?.code, -32602, p);
    t.is(r.error?.data?.field, 'path');
  }
  const big = path.join(dir, 'big.csv');
  fs.writeFileSync(big, 'vision,text\n1,100\n2,200\n');
  const r = await h.call('balance', { paths: [big], dp: 1 });
  t.is(r.error?.code, -32001);
  t.true(r.error!.message.includes('paths[0]'));
});

test('file errors name file and line, never the file content', async (t) => {
  const dir = tempDir();
  const secret = 'root:x:0:0:SECRET-LINE:/root:/bin/bash';
  const csv = path.join(dir, 'passwd.csv');
  fs.writeFileSync(csv, `${secret}\nmore:secret\n`);
  const jsonl = path.join(dir, 'x.jsonl');
  fs.writeFileSync(jsonl, `{"vit_num": 1, "token_num": 5}\nSECRETSECRETSECRET\n`);
  const bad = path.join(dir, 'v.jsonl');
  fs.writeFileSync(bad, `{"vit_num": "SECRETVALUE", "token_num": 5}\n`);
  const h = Harness.create();
  for (const file of [csv, jsonl, bad]) {
    const r = await h.call('balance', { path: file, dp: 1 });
    t.truthy(r.error, file);
    t.true(r.error!.message.startsWith(file), r.error!.message);
    t.false(/SECRET|root:x/.test(r.error!.message), r.error!.message);
  }
});

test('one file under two extensions is read in each name\'s format, never as the other\'s shared plan', async (t) => {
  const dir = tempDir();
  const real = path.join(dir, 'lengths.data');
  fs.writeFileSync(real, 'vit_num,token_num\n1,10\n2,20\n3,30\n4,40\n');
  const csv = path.join(dir, 'a.csv');
  const jsonl = path.join(dir, 'a.jsonl');
  fs.symlinkSync(real, csv);
  fs.symlinkSync(real, jsonl);
  const h = Harness.create();
  const [asCsv, asJsonl] = await Promise.all([h.call('balance', { path: csv, dp: 1, samplesPerPack: 1 }), h.call('balance', { path: jsonl, dp: 1, samplesPerPack: 1 })]);
  t.is(asCsv.result?.steps, 4, JSON.stringify(asCsv));
  t.is(asCsv.result?.shared, false);
  // Read as JSON Lines the CSV header is not JSON: an error naming the JSON Lines name, not the CSV's plan.
  t.is(asJsonl.error?.data?.code, 'ERR_OMNIBAL_PARSE', JSON.stringify(asJsonl));
  t.true(asJsonl.error!.message.startsWith(`${jsonl}:`), asJsonl.error!.message);
});

test('plans: 128-bit random ids, owned by their connection; identical requests share one plan; release frees it', async (t) => {
  const a = Harness.create();
  const b = new Harness(a.ctx);
  const params = { ...small(64), dp: 2, samplesPerPack: 3, seed: 5 };
  const [ra, rb] = await Promise.all([a.call('balance', params), b.call('balance', params)]);
  t.regex(ra.result.planId, /^plan-[0-9a-f]{32}$/);
  t.not(ra.result.planId, rb.result.planId);
  t.is(a.ctx.store.size, 1);
  const fromB = await b.call('planForRank', { planId: ra.result.planId, rank: 0 });
  t.is(fromB.error?.code, -32003);
  t.deepEqual((await a.call('planForRank', { planId: ra.result.planId, rank: 1 })).result, (await b.call('planForRank', { planId: rb.result.planId, rank: 1 })).result);
  t.deepEqual((await b.call('release', { planId: ra.result.planId })).result, { released: false });
  t.deepEqual((await a.call('release', { planId: ra.result.planId })).result, { released: true });
  t.is(a.ctx.store.size, 1);
  t.is((await a.call('metrics', { planId: ra.result.planId })).error?.code, -32003);
  b.session.close();
  t.is(a.ctx.store.size, 0);
  t.is(a.ctx.store.heldBytes, 0);
});

test('metrics: without costA/costB, the cost dist is on the default text cost that pack balanced (as batchMetrics)', async (t) => {
  const h = Harness.create();
  const samples = small(4000);
  const packed = await h.call('pack', { ...samples, dp: 4, samplesPerPack: 4, seed: 1 });
  const byDefault = (await h.call('metrics', { planId: packed.result.planId })).result;
  const model = (await h.call('metrics', { planId: packed.result.planId, costA: 1, costB: 1 / (12 * 6144) })).result;
  const tokens = (await h.call('metrics', { planId: packed.result.planId, costB: 0 })).result;
  t.is(byDefault.costDist, model.costDist);
  t.deepEqual(byDefault.stepCostDist, model.stepCostDist);
  t.is(tokens.costDist, tokens.textDist);
  t.not(byDefault.costDist, tokens.costDist);
  h.session.close();
});

test('partition and search.ask take vlmStageProblem\'s memory options (zero 0-3, training, headroom, memoryLoad), as the API does', async (t) => {
  const h = Harness.create();
  const problem = { model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load: { tiles: 18, tokens: 5000 } };
  const memory = { zero: 3, training: { grads: 'bf16', frozenVit: true }, headroom: 0.1, memoryLoad: { tiles: 18, tokens: 6144 } };
  const r = await h.call('partition', { ...problem, ...memory });
  t.falsy(r.error, JSON.stringify(r.error));
  t.deepEqual(r.result, JSON.parse(JSON.stringify({ prediction: true, ...partitionStages(vlmStageProblem({ ...problem, ...memory } as never)) })));
  const plain = await h.call('partition', problem);
  t.notDeepEqual(r.result.stages, plain.result.stages, 'the memory options change the plan');
  const asked = await h.call('search.ask', { problem: { ...problem, ...memory }, budget: 2 });
  t.falsy(asked.error, JSON.stringify(asked.error));
  for (const [bad, field] of [[{ zero: 4 }, 'zero'], [{ training: { grads: 'fp8' } }, 'training.grads'], [{ headroom: -1 }, 'headroom'], [{ memoryLoad: { tiles: 1 } }, 'memoryLoad.tokens'], [{ memoryLoad: { tiles: 0, tokens: 0 } }, 'memoryLoad.tokens']] as [object, string][]) {
    const e = await h.call('partition', { ...problem, ...bad });
    t.is(e.error?.code, -32602, JSON.stringify(e));
    t.is(e.error?.data?.field, field);
    // search.ask names it inside its problem.
    const s = await h.call('search.ask', { problem: { ...problem, ...bad }, budget: 2 });
    t.is(s.error?.code, -32602, JSON.stringify(s));
    t.is(s.error?.data?.field, `problem.${field}`, JSON.stringify(s));
  }
  h.session.close();
});

test('-32602 errors the planner finds past the schema name their field too (carry, or params for the whole)', async (t) => {
  const h = Harness.create();
  const samples = small(400);
  for (const [carry, message] of [[[5, 5], /repeats sample 5/], [[5, 99999], /below 400/]] as [number[], RegExp][]) {
    const r = await h.call('pack', { ...samples, dp: 4, samplesPerPack: 4, tail: 'carry', epoch: 1, carry });
    t.is(r.error?.code, -32602, JSON.stringify(r));
    t.regex(r.error!.message, message);
    t.deepEqual(r.error?.data, { code: 'ERR_OMNIBAL_OUT_OF_RANGE', field: 'carry' });
  }
  // A fault of no one param (a combination) is the request's: field "params".
  const combined = await h.call('pack', { ...samples, dp: 4, samplesPerPack: 4, strategy: 'random', tail: 'carry' });
  t.is(combined.error?.code, -32602, JSON.stringify(combined));
  t.truthy(combined.error?.data?.field, JSON.stringify(combined));
  // Every -32602 has a field, whoever found the fault.
  const schema = await h.call('pack', { ...samples, dp: 0 });
  t.is(schema.error?.data?.field, 'dp');
  h.session.close();
});

test('the plan store evicts least recently used plans over its byte budget; evicted handles say so', async (t) => {
  const h = Harness.create({ maxPlanBytes: 12_000 });
  const ids: string[] = [];
  for (let seed = 0; seed < 6; seed++) ids.push((await h.call('balance', { ...small(200), dp: 2, samplesPerPack: 3, seed })).result.planId);
  t.true(h.ctx.store.heldBytes <= 12_000);
  const old = await h.call('planStep', { planId: ids[0], step: 0 });
  t.is(old.error?.code, -32003);
  t.is(old.error?.data?.code, 'ERR_OMNIBAL_EVICTED');
  t.truthy((await h.call('planStep', { planId: ids[5], step: 0 })).result);
  const huge = Harness.create({ maxPlanBytes: 100 });
  t.is((await huge.call('balance', { ...small(200), dp: 2, samplesPerPack: 3 })).error?.code, -32001);
});

test('a full queue is -32001; a cancelled queued call never runs; shutdown needs the token on sockets', async (t) => {
  const h = Harness.create({ workers: 1, maxQueue: 1 }, 'unix');
  const problem = { model: 'internvl-chat-1.5', gpu: 'H100-80G', pp: 8, microBatches: 32, load: { tiles: 10, tokens: 4096 } };
  h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 'run', method: 'partition', params: problem })}\n`);
  h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 'wait', method: 'partition', params: problem })}\n`);
  const full = await h.call('partition', problem);
  t.is(full.error?.code, -32001);
  t.deepEqual((await h.call('$/cancelRequest', { id: 'wait' })).result, { cancelled: true });
  t.is((await h.lines.answer('wait')).error?.code, -32800);
  t.is(h.ctx.pool.waiting, 0);
  await h.lines.answer('run');
  const progress = h.lines.messages.filter((m) => !Array.isArray(m) && m.method === 'progress' && m.params.id === 'run') as Msg[];
  t.true(progress.length >= 1);
  t.is(progress.at(-1)!.params.done, progress.at(-1)!.params.total);
  t.is((await h.call('shutdown')).error?.code, -32002);
});

/** A batch line of `count` distinct `pack` requests (ids `p0`...), then `extra` members. */
function packBatch(count: number, extra: object[] = []): string {
  const packs = Array.from({ length: count }, (_, i) => ({ jsonrpc: '2.0', id: `p${i}`, method: 'pack', params: { ...small(60), dp: 2, samplesPerPack: 3, seed: i } }));
  return `${JSON.stringify([...packs, ...extra])}\n`;
}

test('--max-queue and a batch: the batch is admitted whole when its long calls all fit, else every member is -32001 and none runs', async (t) => {
  // --workers 1 --max-queue 4: five long calls fit an idle pool.
  const h = Harness.create({ workers: 1, maxQueue: 4 }, 'unix');
  const pool = h.ctx.pool;
  const version = { jsonrpc: '2.0', id: 'v', method: 'version' };
  const note = { jsonrpc: '2.0', method: 'pack', params: { ...small(60), dp: 2, samplesPerPack: 3, seed: 99 } };
  // An idle queue: a batch of 4 packs, a notification pack and a version: every request answered, none "busy".
  h.raw(packBatch(4, [note, version]));
  const all = (await h.lines.next((m) => Array.isArray(m))) as Msg[];
  t.deepEqual(all.map((a) => a.id).sort(), ['p0', 'p1', 'p2', 'p3', 'v']);
  t.true(all.every((a) => a.error === undefined), JSON.stringify(all.map((a) => a.error?.message)));
  t.is(pool.room, pool.capacity, 'every held slot taken or given back');
  // One slot busy (another caller's task): the same five long calls do not all fit, so none runs.
  let finish!: () => void;
  const other = pool.submit(() => new Promise<void>((resolve) => (finish = resolve)));
  h.lines.messages.length = 0;
  h.raw(packBatch(4, [note, version]));
  const refused = (await h.lines.next((m) => Array.isArray(m))) as Msg[];
  t.deepEqual(refused.map((a) => a.id).sort(), ['p0', 'p1', 'p2', 'p3', 'v'], 'the notification is not answered');
  for (const a of refused) {
    t.is(a.error?.code, -32001);
    t.is(a.error?.data?.code, 'ERR_OMNIBAL_LIMIT');
    t.regex(a.error!.message, /this batch's 5 long calls do not all fit now \(room for 4 of 5: --workers \+ --max-queue\); a batch is admitted whole: try again later/);
  }
  t.is(pool.waiting, 0, 'nothing of the refused batch was queued');
  t.is(pool.room, 4);
  finish();
  await other.promise;
  // More long calls than the pool ever holds: refused whole, saying to split it.
  h.lines.messages.length = 0;
  h.raw(packBatch(6));
  const tooMany = (await h.lines.next((m) => Array.isArray(m))) as Msg[];
  t.is(tooMany.length, 6);
  for (const a of tooMany) t.regex(a.error!.message, /a batch of 6 long calls is more than the sidecar holds at once \(5: --workers 1 \+ --max-queue 4\); a batch is admitted whole: split it/);
  t.is(pool.room, pool.capacity);
});

test('--max-queue and a batch: the slots an admitted batch holds are not taken by another connection, and are given back by members that run no task', async (t) => {
  // The pool's own account: held slots count as taken for others, and a held slot is never refused.
  const pool = new TaskPool(1, 4);
  t.true(pool.reserve(3));
  t.false(pool.reserve(3), 'a second batch does not fit beside the first');
  const tasks = [pool.submit(async () => 1), pool.submit(async () => 2)];
  t.throws(() => pool.submit(async () => 3), { message: /the sidecar is busy: 1 long calls running and 1 queued, 3 held for a batch \(--max-queue\)/ });
  pool.unreserve();
  tasks.push(pool.submit(async () => 3, true), pool.submit(async () => 4, true));
  t.is(pool.room, 1, '4 tasks of 5 slots, none held');
  t.deepEqual(await Promise.all(tasks.map((x) => x.promise)), [1, 2, 3, 4]);
  t.is(pool.room, pool.capacity);

  const ctx = newContext({ workers: 1, maxQueue: 4 }, () => undefined);
  const [a, b] = [new Harness(ctx, 'unix'), new Harness(ctx, 'unix')];
  // Five long calls fill the pool; another connection's call in the same turn finds it full.
  a.raw(packBatch(5));
  const single = b.call('pack', { ...small(60), dp: 2, samplesPerPack: 3, seed: 7 });
  const five = (await a.lines.next((m) => Array.isArray(m))) as Msg[];
  t.true(five.every((m) => m.error === undefined), JSON.stringify(five.map((m) => m.error?.message)));
  t.is((await single).error?.code, -32001);
  // Two members are bad requests and one asks for p0's plan again (it shares it): 5 slots held, 2 tasks run.
  const same = { jsonrpc: '2.0', id: 'same', method: 'pack', params: { ...small(60), dp: 2, samplesPerPack: 3, seed: 0 } };
  const bad = { jsonrpc: '2.0', id: 'bad', method: 'pack', params: { ...small(60), dp: 0 } };
  const unknown = { jsonrpc: '2.0', id: 'unknown', method: 'balance', params: { ...small(60), dp: 2, sead: 1 } };
  a.lines.messages.length = 0;
  a.raw(packBatch(2, [same, bad, unknown]));
  const answers = (await a.lines.next((m) => Array.isArray(m))) as Msg[];
  const byId = Object.fromEntries(answers.map((m) => [m.id, m]));
  t.is(byId.p0.error, undefined);
  t.is(byId.p1.error, undefined);
  t.is(byId.same.error, undefined);
  t.is(byId.bad.error?.code, -32602);
  t.is(byId.unknown.error?.code, -32602);
  t.is(ctx.pool.room, ctx.pool.capacity, 'every held slot taken or given back');
  t.is((await b.call('pack', { ...small(60), dp: 2, samplesPerPack: 3, seed: 7 })).error, undefined);
});

test('TCP: nothing runs before auth; a wrong token closes; HTTP closes without running anything', async (t) => {
  const token = 'x'.repeat(32);
  const h = Harness.create({}, 'tcp', token);
  h.raw('{"jsonrpc":"2.0","id":1,"method":"version"}\n{"jsonrpc":"2.0","id":2,"method":"version"}\n');
  t.is((await h.lines.answer(1)).error?.code, -32002);
  t.true(h.closed);
  t.is(h.lines.messages.length, 1);
  // A malformed auth (a token that is not a string, an unknown param) is refused and closed like a wrong token.
  for (const params of [{ token: 123 }, { token, extra: 1 }, {}]) {
    const bad = Harness.create({}, 'tcp', token);
    bad.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'auth', params })}\n${JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'auth', params: { token } })}\n`);
    t.is((await bad.lines.answer(9)).error?.code, -32002, JSON.stringify(params));
    t.true(bad.closed);
    t.is(bad.lines.messages.length, 1);
  }
  const ok = Harness.create({}, 'tcp', token);
  t.deepEqual((await ok.call('auth', { token })).result, { ok: true });
  t.is((await ok.call('version')).result.protocol, 'omnibal-rpc/1');
  let stopped = false;
  const http = new Harness(
    Object.assign(Harness.create().ctx, {
      shutdown: () => {
        stopped = true;
      },
    }),
    'unix',
  );
  http.raw('POST / HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n{"jsonrpc":"2.0","id":1,"method":"shutdown"}\n');
  t.true(http.closed);
  t.is(http.lines.messages.length, 0);
  t.false(stopped);
});

/** A session over a fake transport that records what it writes and whether it reads; `pending` is the unsent byte count. */
function recordingSession(limits: Parameters<typeof newContext>[0]) {
  const rec = { pending: 0, out: [] as string[], reading: [] as boolean[] };
  const session = new Session(newContext(limits, () => undefined), 'unix', {
    write: (line) => {
      rec.out.push(line.toString());
      rec.pending += line.length;
    },
    pendingBytes: () => rec.pending,
    setReading: (on) => rec.reading.push(on),
    close: () => undefined,
  });
  return { session, rec };
}

test('backpressure: a connection is not read while its unsent answers exceed the limit or too many requests are open', async (t) => {
  const { session, rec } = recordingSession({ maxPendingOutputBytes: 1000, maxInFlight: 2 });
  const { out, reading } = rec;
  session.feed(Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'balance', params: { ...small(400), dp: 1, samplesPerPack: 2 } })}\n`));
  while (out.length === 0 || !out.some((l) => l.includes('"id":1,"result"'))) await new Promise((r) => setTimeout(r, 10));
  const planId = JSON.parse(out.find((l) => l.includes('"id":1,"result"'))!).result.planId as string;
  session.feed(Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'planForRank', params: { planId, rank: 0 } })}\n`));
  await new Promise((r) => setTimeout(r, 50));
  t.true(rec.pending > 1000);
  t.is(reading.at(-1), false, 'stopped reading while the client does not read');
  rec.pending = 0;
  session.flow();
  t.is(reading.at(-1), true, 'reads again once the answers are sent');
  t.true(reading.includes(false));
});

test('backpressure holds within one chunk: many small requests with large answers queue at most the limit plus one answer', async (t) => {
  const { session, rec } = recordingSession({ maxPendingOutputBytes: 1000 });
  const { out } = rec;
  session.feed(Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'balance', params: { ...small(400), dp: 1, samplesPerPack: 2 } })}\n`));
  while (!out.some((l) => l.includes('"id":0,"result"'))) await new Promise((r) => setTimeout(r, 10));
  const planId = JSON.parse(out.find((l) => l.includes('"id":0,"result"'))!).result.planId as string;
  rec.pending = 0;
  out.length = 0;
  const ids = Array.from({ length: 50 }, (_, i) => i + 1);
  // All 50 requests in ONE chunk (as a socket delivers them): each answer alone is over the limit.
  session.feed(Buffer.from(ids.map((id) => `${JSON.stringify({ jsonrpc: '2.0', id, method: 'planForRank', params: { planId, rank: 0 } })}\n`).join('')));
  await new Promise((r) => setTimeout(r, 100));
  t.true(out.length <= 2, `${out.length} answers queued for a client that does not read`);
  const answered = new Set<number>();
  for (let round = 0; round < 500 && answered.size < ids.length; round++) {
    for (const l of out.splice(0)) answered.add(JSON.parse(l).id as number);
    rec.pending = 0;
    session.flow();
    await new Promise((r) => setTimeout(r, 5));
  }
  for (const l of out.splice(0)) answered.add(JSON.parse(l).id as number);
  t.deepEqual([...answered].sort((a, b) => a - b), ids, 'every held request is answered once the client reads');
});

test('an over-long first line on an unauthenticated TCP connection closes it', (t) => {
  const h = Harness.create({ maxLineBytes: 100 }, 'tcp', 'y'.repeat(32));
  h.raw(`{"jsonrpc":"2.0","id":1,"method":"auth","params":{"token":"${'z'.repeat(200)}"}}\n`);
  t.true(h.closed);
});

/** A `{ $base64, dtype: "u32" }` array, decoded byte by byte (independently of the server's codec). */
function u32Of(b: { $base64: string; dtype: string }): number[] {
  const bytes = Buffer.from(b.$base64, 'base64');
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readUInt32LE(4 * i));
}

/** The nested lists an `encoding: "base64"` answer of planStep / planForRank stands for. */
function listsOf(r: { encoding: string; samples: any; microBatchOffsets: any; groupOffsets: any }): number[][][] {
  const samples = u32Of(r.samples);
  const mbo = u32Of(r.microBatchOffsets);
  const go = u32Of(r.groupOffsets);
  return Array.from({ length: go.length - 1 }, (_, g) => Array.from({ length: go[g + 1] - go[g] }, (_, j) => samples.slice(mbo[go[g] + j], mbo[go[g] + j + 1])));
}

test('encoding base64 and JSON lists carry identical plans (pack summary, every planStep and planForRank)', async (t) => {
  let compared = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 1, max: 5000 })), { minLength: 1, maxLength: 300 }),
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 4 }),
      fc.constantFrom('drop', 'pad', 'keep-partial'),
      fc.constantFrom('balanced', 'random', 'isf'),
      fc.boolean(),
      async (pairs, dp, accum, tail, strategy, asBase64Request) => {
        const h = Harness.create();
        const vision = pairs.map((p) => p[0]);
        const text = pairs.map((p) => p[1]);
        const enc = (a: number[]) => ({ $base64: Buffer.from(Uint32Array.from(a).buffer).toString('base64'), dtype: 'u32' });
        const samples = asBase64Request ? { vision: enc(vision), text: enc(text) } : { vision, text };
        const params = { ...samples, dp, accum, tail, strategy, samplesPerPack: 2, seed: 3 };
        const json = await h.call('pack', params);
        const bin = await h.call('pack', { ...params, encoding: 'base64' });
        if (json.error) {
          // An input too small for one step fails the same way in both encodings.
          t.deepEqual(bin.error, json.error);
          return;
        }
        compared++;
        t.true(bin.result.shared, 'the encoding is not part of the plan');
        t.is(bin.result.encoding, 'base64');
        const { planId: a, shared: _s, dropped, droppedReason, ...rest } = json.result;
        const { planId: b, shared: _t, encoding: _e, dropped: bd, droppedReason: br, ...restB } = bin.result;
        t.deepEqual(restB, rest);
        t.deepEqual(u32Of(bd), dropped);
        t.deepEqual(u32Of(br), droppedReason);
        for (let step = 0; step < json.result.steps; step++) {
          const x = await h.call('planStep', { planId: a, step });
          const y = await h.call('planStep', { planId: b, step, encoding: 'base64' });
          t.deepEqual(listsOf(y.result), x.result);
        }
        for (let rank = 0; rank < dp; rank++) {
          const x = await h.call('planForRank', { planId: a, rank });
          const y = await h.call('planForRank', { planId: b, rank, encoding: 'base64' });
          t.deepEqual(listsOf(y.result), x.result);
          t.is(u32Of(y.result.groupOffsets).length, json.result.steps + 1);
        }
      },
    ),
    { numRuns: 40, seed: 10 },
  );
  // Most cases plan (the others are inputs too small for one step, compared as errors).
  t.true(compared >= 20, `only ${compared} of 40 cases made a plan`);
});

test('a param holding more nested objects and lists than a calibration ever needs is -32602 naming it (copying millions to a worker stalled the server)', async (t) => {
  const h = Harness.create();
  const notes = `[${Array.from({ length: 100_001 }, () => '{}').join(',')}]`;
  h.raw(`{"jsonrpc":"2.0","id":1,"method":"plan","params":{"model":"tiny-vlm","gpu":"cpu","simulatedSteps":1,"calibration":{"schema":"omnibal.calibration/1","model":"tiny-vlm","layers":[{"index":1,"forwardMs":1}],"notes":${notes}}}}\n`);
  const a = await h.lines.answer(1, 60_000);
  t.is(a.error?.code, -32602, JSON.stringify(a).slice(0, 300));
  t.is(a.error?.data?.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(a.error?.data?.field, 'calibration');
  t.regex(a.error?.message as string, /more than 100000 nested objects and lists/);
});

test('a param nested deeper than 64 levels (a free-form calibration member) is -32602 naming its path, not an internal stack overflow', async (t) => {
  const h = Harness.create();
  const calibration = (notes: unknown) => ({ schema: 'omnibal.calibration/1', model: 'tiny-vlm', layers: [{ index: 1, forwardMs: 1 }], notes });
  for (const method of ['plan', 'searchLayout']) {
    // Sent as text: 20,000 levels, which JSON.parse takes but copying the params to a worker did not.
    const deep = `{"jsonrpc":"2.0","id":"${method}","method":"${method}","params":{"model":"tiny-vlm","gpu":"cpu","simulatedSteps":1,"calibration":{"schema":"omnibal.calibration/1","model":"tiny-vlm","layers":[{"index":1,"forwardMs":1}],"notes":${'['.repeat(20_000)}${']'.repeat(20_000)}}}}\n`;
    h.raw(deep);
    const a = await h.lines.answer(method, 120_000);
    t.is(a.error?.code, -32602, JSON.stringify(a).slice(0, 300));
    t.is(a.error?.data?.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
    t.regex(a.error?.data?.field as string, /^calibration\.notes(\[0\]){63}$/);
  }
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
  // Shallow free-form members are still accepted (a served process: plan runs on its worker threads).
  const server = spawnServe([]);
  t.teardown(() => server.kill('SIGKILL'));
  const c = new LineClient(server.stdin!, server.stdout!);
  const ok = await c.call('plan', { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, calibration: calibration([[{ a: [1] }]]) }, 120_000);
  t.is(ok.error, undefined, JSON.stringify(ok.error));
});
