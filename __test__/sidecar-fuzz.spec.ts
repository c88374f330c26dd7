// Fuzz: random and mutated requests from a seeded generator against a real `omnibal serve`
// (bounded in count and time). Zero crashes, no internal errors (-32603: every bad input has its
// own code), and the sidecar still answers afterwards. The second test fuzzes requests that name
// live plans (both answer encodings) and small layout searches.
import test from 'ava';
import { exited, Harness, LineClient, spawnServe, type Msg } from './sidecar-harness';

/** xorshift32: a small seeded generator, so a failure is reproducible from its seed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)] };
}

const problem = { model: 'internvl-chat-1.5', gpu: 'H100-80G', pp: 4, microBatches: 8, load: { tiles: 10, tokens: 4096 } };
const TEMPLATES: [string, Record<string, unknown>][] = [
  ['version', {}],
  ['backend', {}],
  ['balance', { vision: [1, 2, 3, 4, 5, 6, 7, 8], text: [100, 200, 300, 400, 500, 600, 700, 800], dp: 2, samplesPerPack: 2 }],
  ['pack', { vision: { $base64: 'AQAAAAIAAAADAAAABAAAAA==', dtype: 'u32' }, text: [100, 200, 300, 400], dp: 1, strategy: 'isf', samplesPerPack: 2 }],
  ['pack', { path: '/dev/zero', dp: 1 }],
  ['balance', { paths: ['/etc/passwd'], dp: 1 }],
  ['metrics', { planId: 'plan-0' }],
  ['planStep', { planId: 'plan-0', step: 0 }],
  ['planForRank', { planId: 'plan-0', rank: 0 }],
  ['release', { planId: 'plan-0' }],
  ['partition', problem],
  ['simulate', { dp: 1, pp: 2, microBatches: 2, forwardMs: [1, 1, 1, 1], backwardMs: [2, 2, 2, 2], transferMs: [0], gradBytes: [0, 0], allreduceBytesPerS: 0, activationBytes: [1, 1], schedule: '1f1b' }],
  ['search.ask', { problem, budget: 2 }],
  ['search.tell', { searchId: 'search-0', lastLayers: [1, 2, 3], seconds: 1 }],
  ['$/cancelRequest', { id: 3 }],
  ['auth', { token: 'x' }],
  ['constructor', {}],
];

const WEIRD: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -0, 2 ** 32, 2 ** 53 + 2, '', 'x', '__proto__', [], [1, 'a'], {}, { $base64: '!!', dtype: 'u32' }, { dtype: 'u32' }, { $binary: 0, dtype: 'u32' }, { a: { b: { c: [] } } }, 'A'.repeat(300)];

function mutate(r: ReturnType<typeof rng>, v: unknown, depth = 0): unknown {
  if (depth > 3 || r.next() < 0.3) return r.next() < 0.5 ? r.pick(WEIRD) : v;
  if (Array.isArray(v)) {
    const out = v.map((x) => (r.next() < 0.2 ? mutate(r, x, depth + 1) : x));
    if (r.next() < 0.2) out.push(r.pick(WEIRD));
    if (r.next() < 0.2) out.splice(r.int(out.length + 1), 1);
    return out;
  }
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(out);
    if (keys.length && r.next() < 0.4) delete out[r.pick(keys)];
    if (keys.length && r.next() < 0.5) {
      const k = r.pick(keys);
      out[k] = mutate(r, out[k], depth + 1);
    }
    if (r.next() < 0.15) out[r.pick(['sead', 'shuffle', 'drop_last', '__proto__', 'constructor', 'token'])] = r.pick(WEIRD);
    return out;
  }
  return r.pick(WEIRD);
}

function request(r: ReturnType<typeof rng>, id: string): string {
  const [method, params] = r.pick(TEMPLATES);
  const roll = r.next();
  if (roll < 0.05) return Array.from({ length: 1 + r.int(200) }, () => String.fromCharCode(r.int(128))).join('').replace(/\n/g, ' ');
  const msg: Record<string, unknown> = { jsonrpc: '2.0', id, method, params: mutate(r, params) };
  if (roll < 0.1) msg.jsonrpc = r.pick(WEIRD);
  else if (roll < 0.15) msg.id = r.pick(WEIRD);
  else if (roll < 0.2) msg.method = r.pick(['__proto__', 'toString', 'hasOwnProperty', '', 'search.', 'version ', r.pick(TEMPLATES)[0]]);
  else if (roll < 0.23) delete msg.params;
  else if (roll < 0.25) delete msg.id;
  const text = JSON.stringify(msg);
  if (r.next() < 0.05) return text.slice(0, r.int(text.length));
  if (r.next() < 0.05) return `[${text},${text}]`;
  return text;
}

test('fuzz: 1,500 random and mutated requests, zero crashes, no internal errors, still answering', async (t) => {
  const seed = Number(process.env.OMNIBAL_FUZZ_SEED ?? 20261129);
  const r = rng(seed);
  const server = spawnServe(['--max-line-bytes', '65536', '--max-queue', '4096']);
  t.teardown(() => server.kill('SIGKILL'));
  const c = new LineClient(server.stdin!, server.stdout!);
  const started = Date.now();
  for (let i = 0; i < 1500 && Date.now() - started < 60_000; i++) {
    c.raw(`${request(r, `f${i}`)}\n`);
    if (i % 100 === 99) await c.call('version', undefined, 60_000);
  }
  const last = await c.call('version', undefined, 120_000);
  t.is(last.result?.protocol, 'omnibal-rpc/1', `seed ${seed}`);
  const all = c.lines.messages.flatMap((m) => (Array.isArray(m) ? m : [m])) as Msg[];
  const internal = all.filter((m) => m.error?.code === -32603);
  t.deepEqual(internal, [], `seed ${seed}: internal errors: ${server.stderrText()}`);
  t.is(server.exitCode, null, `seed ${seed}: ${server.stderrText()}`);
  t.false(/\n\s+at /.test(server.stderrText()), server.stderrText());
  t.true(all.length > 1000);
  server.stdin!.end();
  t.is(await exited(server), 0);
});

// Live plans: the requests above name plans that never existed. Here the fuzz first creates plans
// (`balance` and `pack`, either answer encoding), then mutates requests that name them:
// `planForRank`, `planStep`, `metrics`, `release` with `encoding` json or base64, more plans made
// and released on the way, and a few small `searchLayout`s (kept small: a mutation that drops
// `synthetic` gets it back, so no search plans the default 1.2M samples).

/** Whether `m` is a valid JSON-RPC 2.0 answer (or a progress notification); the reason if not. */
function invalidAnswer(m: unknown): string | null {
  if (!m || typeof m !== 'object' || Array.isArray(m)) return 'not an object';
  const a = m as Record<string, unknown>;
  if (a.jsonrpc !== '2.0') return 'jsonrpc is not "2.0"';
  if (a.method === 'progress') {
    const p = a.params as Record<string, unknown> | undefined;
    return p && Number.isInteger(p.done) && Number.isInteger(p.total) && (p.done as number) <= (p.total as number) ? null : 'bad progress';
  }
  if (!('id' in a) || !(a.id === null || typeof a.id === 'string' || typeof a.id === 'number')) return 'no id';
  if (('result' in a) === ('error' in a)) return 'not exactly one of result and error';
  if ('error' in a) {
    const e = a.error as Record<string, unknown> | null;
    if (!e || !Number.isInteger(e.code) || typeof e.message !== 'string' || e.message.length === 0) return 'bad error object';
    if ((e.message as string).includes('\n')) return 'multi-line error message';
  }
  return null;
}

/** A base64 u32 array of an answer, decoded strictly, or a binary attachment (decoded by the harness); null if it is neither. */
function u32Of(v: unknown): Uint32Array | null {
  if (v instanceof Uint32Array) return v;
  const b = v as { $base64?: unknown; dtype?: unknown } | null;
  if (!b || typeof b.$base64 !== 'string' || b.dtype !== 'u32') return null;
  if (b.$base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b.$base64)) return null;
  const bytes = Buffer.from(b.$base64, 'base64');
  if (bytes.length % 4 !== 0) return null;
  return Uint32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readUInt32LE(4 * i));
}

/** Offsets that start at 0, never decrease and end at `end`. */
const offsetsOk = (o: Uint32Array, end: number) => o.length > 0 && o[0] === 0 && o[o.length - 1] === end && o.every((x, i) => i === 0 || x >= o[i - 1]);

/** A `planStep` / `planForRank` result as nested lists (either encoding); null when malformed. */
function nestedLists(r: unknown): number[][][] | null {
  if (Array.isArray(r)) {
    const ok = r.every((g) => Array.isArray(g) && g.every((mb) => Array.isArray(mb) && mb.every((x) => Number.isInteger(x) && x >= 0)));
    return ok ? (r as number[][][]) : null;
  }
  const a = r as { encoding?: unknown; samples?: unknown; microBatchOffsets?: unknown; groupOffsets?: unknown } | null;
  if (!a || (a.encoding !== 'base64' && a.encoding !== 'binary')) return null;
  const [samples, mbo, go] = [u32Of(a.samples), u32Of(a.microBatchOffsets), u32Of(a.groupOffsets)];
  if (!samples || !mbo || !go || !offsetsOk(mbo, samples.length) || !offsetsOk(go, mbo.length - 1)) return null;
  return Array.from({ length: go.length - 1 }, (_, g) =>
    Array.from({ length: go[g + 1] - go[g] }, (_, j) => Array.from(samples.subarray(mbo[go[g] + j], mbo[go[g] + j + 1]))),
  );
}

test('fuzz with live plans: planForRank/planStep/metrics/release/searchLayout in both encodings, every answer valid', async (t) => {
  const seed = Number(process.env.OMNIBAL_FUZZ_SEED ?? 20261129) + 1;
  const r = rng(seed);
  const server = spawnServe(['--max-line-bytes', '65536', '--max-queue', '4096', '--workers', '2']);
  t.teardown(() => server.kill('SIGKILL'));
  const c = new LineClient(server.stdin!, server.stdout!);
  const n = 240;
  const vision = Array.from({ length: n }, (_, i) => (i * 7) % 5);
  const text = Array.from({ length: n }, (_, i) => 80 + ((i * 131) % 1900));
  const b64 = (a: number[]) => ({ $base64: Buffer.from(Uint32Array.from(a).buffer).toString('base64'), dtype: 'u32' });
  const encoding = () => r.pick(['json', 'base64', 'binary'] as const);
  const makers: [string, () => Record<string, unknown>][] = [
    ['balance', () => ({ vision, text, dp: 1 + r.int(4), accum: 1 + r.int(2), samplesPerPack: 2 + r.int(3), tail: r.pick(['drop', 'pad', 'keep-partial']), seed: r.int(5), encoding: encoding() })],
    ['pack', () => ({ vision: b64(vision), text: b64(text), dp: 1 + r.int(3), strategy: r.pick(['isf', 'random', 'length-grouped', 'balanced']), samplesPerPack: 2 + r.int(3), tail: r.pick(['drop', 'pad', 'keep-partial']), encoding: encoding() })],
  ];
  const live: { planId: string; dp: number; steps: number }[] = [];
  const sent = new Map<string, { method: string; params: unknown }>();
  let id = 0;
  const send = (method: string, params: unknown): string => {
    const key = `l${id++}`;
    sent.set(key, { method, params });
    c.raw(`${JSON.stringify({ jsonrpc: '2.0', id: key, method, params })}\n`);
    return key;
  };
  const makePlan = async () => {
    const [method, make] = r.pick(makers);
    const params = make();
    const a = await c.lines.answer(send(method, params), 60_000);
    t.is(invalidAnswer(a), null, JSON.stringify(a).slice(0, 300));
    t.truthy(a.result?.planId, `${method} ${JSON.stringify(a.error)}`);
    if (params.encoding !== 'json') {
      t.is(a.result.encoding, params.encoding);
      const dropped = u32Of(a.result.dropped);
      t.truthy(dropped && u32Of(a.result.droppedReason)?.length === dropped.length, JSON.stringify(a.result).slice(0, 300));
    } else t.true(Array.isArray(a.result.dropped));
    live.push({ planId: a.result.planId, dp: a.result.dp, steps: a.result.steps });
  };
  for (let i = 0; i < 6; i++) await makePlan();

  const layout = { gpus: 4, globalBatchSamples: 32, synthetic: 3000, seed: 1, tps: [1, 2], pps: [1, 2], samplesPerPacks: [4.5], simulatedSteps: 1 };
  let searches = 0;
  const started = Date.now();
  for (let i = 0; i < 1200 && Date.now() - started < 60_000; i++) {
    if (r.next() < 0.03 || live.length === 0) {
      await makePlan();
      continue;
    }
    const plan = r.pick(live);
    const roll = r.next();
    let method: string;
    let params: Record<string, unknown>;
    if (roll < 0.35) [method, params] = ['planForRank', { planId: plan.planId, rank: r.int(plan.dp + 1), encoding: encoding() }];
    else if (roll < 0.7) [method, params] = ['planStep', { planId: plan.planId, step: r.int(plan.steps + 1), encoding: encoding() }];
    else if (roll < 0.82) [method, params] = ['metrics', { planId: plan.planId, costB: r.pick([0, 1e-4]) }];
    else if (roll < 0.9) [method, params] = ['release', { planId: plan.planId }];
    else if (roll < 0.94 && searches < 30) {
      searches++;
      [method, params] = ['searchLayout', { ...layout }];
    } else [method, params] = [r.pick(['planForRank', 'planStep']), { planId: plan.planId, rank: 0, step: 0, encoding: encoding() }];
    // Half the requests go as made (they must succeed where the plan is live), half mutated.
    let p: unknown = r.next() < 0.5 ? params : mutate(r, params);
    if (method === 'searchLayout' && p && typeof p === 'object' && !Array.isArray(p) && !('synthetic' in p)) p = { ...p, synthetic: 3000 };
    if (method === 'release' && p === params) live.splice(live.indexOf(plan), 1);
    const key = send(method, p);
    if (i % 25 === 24) await c.lines.answer(key, 120_000);
  }
  // Every request answered (bounded wait), every line a valid JSON-RPC answer or notification.
  for (const key of sent.keys()) await c.lines.answer(key, 180_000);
  const all = c.lines.messages.flatMap((m) => (Array.isArray(m) ? m : [m])) as Msg[];
  const bad = all.map((m) => [invalidAnswer(m), m] as const).filter(([why]) => why !== null);
  t.deepEqual(bad.map(([why, m]) => `${why}: ${JSON.stringify(m).slice(0, 200)}`), [], `seed ${seed}`);
  t.deepEqual(all.filter((m) => m.error?.code === -32603), [], `seed ${seed}: internal errors`);
  // The answers to requests sent as made: plan lists well formed, and equal in both encodings.
  const seen = new Map<string, string>();
  const encodings = new Map<string, Set<string>>();
  let lists = 0;
  let okSearches = 0;
  for (const m of all) {
    if (m.method !== undefined || typeof m.id !== 'string' || !sent.has(m.id) || m.error) continue;
    const { method, params } = sent.get(m.id)!;
    if (method === 'planForRank' || method === 'planStep') {
      const nested = nestedLists(m.result);
      t.not(nested, null, `${method} ${JSON.stringify(m.result).slice(0, 200)}`);
      const q = params as Record<string, unknown>;
      const k = `${method} ${String(q.planId)} ${String(method === 'planStep' ? q.step : q.rank)}`;
      const text = JSON.stringify(nested);
      t.is(seen.get(k) ?? text, text, k);
      seen.set(k, text);
      encodings.set(k, (encodings.get(k) ?? new Set()).add(Array.isArray(m.result) ? 'json' : String(m.result.encoding)));
      lists++;
    }
    if (method === 'searchLayout') {
      t.true(m.result.prediction === true && Array.isArray(m.result.layouts), JSON.stringify(m.result).slice(0, 200));
      okSearches++;
    }
  }
  const tally = new Map<string, number>();
  for (const m of all) {
    if (m.method !== undefined || typeof m.id !== 'string' || !sent.has(m.id)) continue;
    const { method, params } = sent.get(m.id)!;
    const enc = (params as { encoding?: unknown } | null)?.encoding;
    const k = `${method}${typeof enc === 'string' ? `/${enc}` : ''} ${m.error ? `error ${m.error.code}` : 'ok'}`;
    tally.set(k, (tally.get(k) ?? 0) + 1);
  }
  const answered = [...tally].sort().map(([k, v]) => `${k}: ${v}`).join('\n');
  t.true(lists > 200, `only ${lists} plan lists answered:\n${answered}`);
  t.true([...encodings.values()].filter((e) => e.size >= 2).length > 10, `too few lists answered in two encodings or more:\n${answered}`);
  t.true(okSearches > 0, `no searchLayout answered:\n${answered}`);
  t.is(server.exitCode, null, `seed ${seed}: ${server.stderrText()}`);
  t.false(/\n\s+at /.test(server.stderrText()), server.stderrText());
  t.is((await c.call('version', undefined, 60_000)).result?.protocol, 'omnibal-rpc/1');
  server.stdin!.end();
  t.is(await exited(server, 120_000), 0);
});

// Binary attachments (docs/protocol.md): valid frames mutated in their declared lengths, their
// references, their bytes (cut short, extended, trailing garbage) and their `$attachments`
// member, each on a fresh connection of one shared server (a lying length takes the bytes after
// it, so a case must not reach the next). Every answer valid, no internal error, no exception,
// and the server still serves binary requests afterwards.
test('fuzz: 1,000 mutated binary frames (lying lengths, short reads, garbage, bad references), zero crashes', async (t) => {
  const seed = Number(process.env.OMNIBAL_FUZZ_SEED ?? 20261129) + 2;
  const r = rng(seed);
  const first = Harness.create({ maxLineBytes: 8192 });
  const ctx = first.ctx;
  const n = 40;
  const arrays = [Uint32Array.from({ length: n }, (_, i) => 1 + (i % 5)), Uint32Array.from({ length: n }, (_, i) => 90 + ((i * 37) % 700))];
  const all: Msg[] = [];
  const started = Date.now();
  let cases = 0;
  for (; cases < 1000 && Date.now() - started < 60_000; cases++) {
    const h = cases === 0 ? first : new Harness(ctx);
    let atts: Buffer[] = arrays.map((a) => Buffer.from(a.buffer.slice(0)));
    let refs: unknown[] = [{ $binary: 0, dtype: 'u32' }, { $binary: 1, dtype: 'u32' }];
    if (r.next() < 0.15) refs = refs.map((x) => mutate(r, x));
    if (r.next() < 0.1) atts.push(Buffer.alloc(r.int(3) * 4));
    if (r.next() < 0.1) atts = atts.slice(0, r.int(atts.length));
    let lengths: unknown = atts.map((b) => b.length);
    const roll = r.next();
    if (roll < 0.15) lengths = (lengths as number[]).map((x) => (r.next() < 0.5 ? Math.max(0, x + r.int(9) - 4) : x));
    else if (roll < 0.2) lengths = mutate(r, lengths);
    else if (roll < 0.23) lengths = [r.pick([9000, 2 ** 31, 2 ** 53 - 1])];
    const params = { vision: refs[0], text: refs[1], dp: 1 + r.int(2), samplesPerPack: 2, encoding: r.pick(['json', 'base64', 'binary']) };
    const msg: Record<string, unknown> = { jsonrpc: '2.0', id: `b${cases}`, method: r.next() < 0.9 ? 'pack' : r.pick(['version', 'balance', 'planStep']), params, $attachments: lengths };
    if (r.next() < 0.05) delete msg.$attachments;
    let bytes = Buffer.concat([Buffer.from(`${JSON.stringify(msg)}\n`), ...atts, Buffer.from('\n')]);
    const cut = r.next();
    if (cut < 0.1) bytes = bytes.subarray(0, r.int(bytes.length));
    else if (cut < 0.2) bytes = Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from(Array.from({ length: 1 + r.int(20) }, () => r.int(256))), Buffer.from('\n')]);
    else if (cut < 0.25) {
      bytes = Buffer.from(bytes);
      for (let k = 0; k < 3; k++) bytes[r.int(bytes.length)] = r.int(256);
    }
    // In pieces of random sizes, as a socket hands them over.
    for (let at = 0; at < bytes.length; ) {
      const size = 1 + r.int(64);
      h.raw(bytes.subarray(at, at + size));
      at += size;
    }
    await Promise.race([h.session.drain(), new Promise((res) => setTimeout(res, 5000))]);
    h.session.close();
    all.push(...(h.lines.messages.flatMap((m) => (Array.isArray(m) ? m : [m])) as Msg[]));
  }
  const bad = all.map((m) => [invalidAnswer(m), m] as const).filter(([why]) => why !== null);
  t.deepEqual(bad.map(([why, m]) => `${why}: ${JSON.stringify(m).slice(0, 200)}`), [], `seed ${seed}`);
  t.deepEqual(all.filter((m) => m.error?.code === -32603), [], `seed ${seed}: internal errors`);
  const codes = new Set(all.filter((m) => m.error).map((m) => m.error!.code));
  for (const code of [-32600, -32602, -32001]) t.true(codes.has(code), `seed ${seed}: no ${code} among ${[...codes].join(', ')}`);
  t.true(all.filter((m) => m.result?.planId).length > 100, `seed ${seed}: too few frames planned`);
  t.true(cases >= 200, `only ${cases} cases in the time`);
  const after = new Harness(ctx);
  const f = [Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 'end', method: 'pack', params: { vision: { $binary: 0, dtype: 'u32' }, text: { $binary: 1, dtype: 'u32' }, dp: 1, samplesPerPack: 2, encoding: 'binary' }, $attachments: [4 * n, 4 * n] })}\n`), ...arrays.map((a) => Buffer.from(a.buffer)), Buffer.from('\n')];
  after.raw(Buffer.concat(f));
  const end = await after.lines.answer('end', 20_000);
  t.true(end.result?.dropped instanceof Uint32Array, JSON.stringify(end));
});
