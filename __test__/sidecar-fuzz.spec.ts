// Fuzz: random and mutated requests from a seeded generator against a real `omnibal serve`
// (bounded in count and time). Zero crashes, no internal errors (-32603: every bad input has its
// own code), and the sidecar still answers afterwards.
import test from 'ava';
import { exited, LineClient, spawnServe, type Msg } from './sidecar-harness';

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

const WEIRD: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -0, 2 ** 32, 2 ** 53 + 2, '', 'x', '__proto__', [], [1, 'a'], {}, { $base64: '!!', dtype: 'u32' }, { a: { b: { c: [] } } }, 'A'.repeat(300)];

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
