// Binary attachments on the sidecar wire (docs/protocol.md, "Binary attachments"): raw u32 bytes
// after a request line (`"$attachments"` + `{"$binary": k}` params) and after an answer line
// (`encoding: "binary"`). Same plans as base64 and JSON lists; every framing fault is an error
// naming what was wrong, and the connection resynchronises (or closes, when where the request
// ends is unknown). Runs on both backends (OMNIBAL_BACKEND=js too).
import test from 'ava';
import fc from 'fast-check';
import { LineReader, type AttachmentFrame } from '../src/sidecar/framing';
import { Harness, type Msg } from './sidecar-harness';

const n = 300;
const vision = Uint32Array.from({ length: n }, (_, i) => 1 + ((i * 7) % 6));
const text = Uint32Array.from({ length: n }, (_, i) => 150 + ((i * 7919) % 2400));
const planParams = { dp: 2, accum: 2, samplesPerPack: 3, seed: 5 };

const le = (a: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const base64 = (a: Uint32Array) => ({ $base64: le(a).toString('base64'), dtype: 'u32' });
const fromBase64 = (v: { $base64: string }) => {
  const b = Buffer.from(v.$base64, 'base64');
  return Array.from(new Uint32Array(b.buffer, b.byteOffset, b.length / 4));
};

/**
 * A request line with `attachments` declared (`lengths`, default: their true lengths), then the
 * attachments' bytes and `tail` (default: the closing newline).
 */
function frame(id: number | string, method: string, params: Record<string, unknown>, attachments: Buffer[], lengths = attachments.map((b) => b.length), tail = '\n'): Buffer {
  const line = JSON.stringify({ jsonrpc: '2.0', id, method, params, $attachments: lengths });
  return Buffer.concat([Buffer.from(`${line}\n`), ...attachments, Buffer.from(tail)]);
}

const ref = (k: number) => ({ $binary: k, dtype: 'u32' });
const packFrame = (id: number | string, extra: Record<string, unknown> = {}) => frame(id, 'pack', { vision: ref(0), text: ref(1), ...planParams, ...extra }, [le(vision), le(text)]);

async function answered(h: Harness, id: number | string): Promise<Msg> {
  return h.lines.answer(id, 20_000);
}

test('binary attachments carry the same plans as base64 and JSON lists (pack, every planStep and planForRank)', async (t) => {
  const h = Harness.create();
  h.raw(packFrame(101, { encoding: 'binary' }));
  const bin = await answered(h, 101);
  t.is(bin.error, undefined, JSON.stringify(bin.error));
  const b64 = await h.call('pack', { vision: base64(vision), text: base64(text), ...planParams, encoding: 'base64' });
  const json = await h.call('pack', { vision: Array.from(vision), text: Array.from(text), ...planParams });
  // One plan: the data's key does not depend on how the arrays travelled.
  t.true(b64.result.shared && json.result.shared);
  t.is(bin.result.encoding, 'binary');
  t.true(bin.result.dropped instanceof Uint32Array);
  t.deepEqual(Array.from(bin.result.dropped as Uint32Array), json.result.dropped);
  t.deepEqual(Array.from(bin.result.droppedReason as Uint32Array), json.result.droppedReason);
  t.deepEqual(fromBase64(b64.result.dropped), json.result.dropped);
  const planId = bin.result.planId as string;
  for (const [method, key, count] of [['planStep', 'step', bin.result.steps], ['planForRank', 'rank', bin.result.dp]] as const) {
    for (let g = 0; g < count; g++) {
      const lists = (await h.call(method, { planId, [key]: g })).result as number[][][];
      const a = (await h.call(method, { planId, [key]: g, encoding: 'binary' })).result;
      const flat = lists.flat(2);
      t.deepEqual(Array.from(a.samples as Uint32Array), flat);
      const mbo = Array.from(a.microBatchOffsets as Uint32Array);
      const go = Array.from(a.groupOffsets as Uint32Array);
      const rebuilt = go.slice(0, -1).map((_, i) => mbo.slice(go[i], go[i + 1]).map((s, j) => flat.slice(s, mbo[go[i] + j + 1])));
      t.deepEqual(rebuilt, lists);
    }
  }
});

test('a carry keys its plan by its values: as a list, base64 or an attachment, one shared plan', async (t) => {
  const h = Harness.create();
  const carry = Uint32Array.of(3, 7, 11);
  const opts = { ...planParams, tail: 'carry' };
  const first = await h.call('pack', { vision: Array.from(vision), text: Array.from(text), ...opts, carry: Array.from(carry) });
  t.is(first.error, undefined, JSON.stringify(first.error));
  t.false(first.result.shared);
  const b64 = await h.call('pack', { vision: Array.from(vision), text: Array.from(text), ...opts, carry: base64(carry) });
  h.raw(frame(102, 'pack', { vision: ref(0), text: ref(1), ...opts, carry: ref(2) }, [le(vision), le(text), le(carry)]));
  const bin = await answered(h, 102);
  t.true(b64.result.shared && bin.result.shared, JSON.stringify([b64.result?.shared, bin.result?.shared]));
  const other = await h.call('pack', { vision: Array.from(vision), text: Array.from(text), ...opts, carry: [3, 7, 12] });
  t.false(other.result.shared);
});

test('an empty attachment and zero-length arrays frame and bind', async (t) => {
  const h = Harness.create();
  h.raw(frame(101, 'pack', { vision: ref(0), text: ref(1), dp: 1 }, [Buffer.alloc(0), Buffer.alloc(0)]));
  const a = await answered(h, 101);
  // Bound as empty arrays: what the planner says about no samples, not a framing or binding error.
  t.is(a.error?.data?.code, 'ERR_OMNIBAL_EMPTY_INPUT', JSON.stringify(a.error));
  t.false(h.closed);
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
});

/** Framing faults: each answered with its code and a message naming what was wrong; the next request is served. */
const faults: [string, () => Buffer, number, RegExp][] = [
  ['a length that is not a whole number of u32', () => frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [le(vision).subarray(0, 6), le(text)]), -32602, /vision attachment 0 is 6 bytes, not a whole number of u32/],
  ['a reference to a missing attachment', () => frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [le(vision)]), -32602, /text refers to attachment 1, but the request has only 1/],
  ['a reference without any attachments', () => Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 101, method: 'pack', params: { vision: ref(0), text: ref(1), ...planParams } })}\n`), -32602, /vision refers to attachment 0, but the request has none/],
  ['an attachment never referenced', () => frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [le(vision), le(text), le(text)]), -32600, /attachment 2 .* is never referenced/],
  ['one attachment referenced twice', () => frame(101, 'pack', { vision: ref(0), text: ref(0), ...planParams }, [le(vision)]), -32602, /text refers to attachment 0, which vision already refers to/],
  ['both $base64 and $binary', () => frame(101, 'pack', { vision: { ...base64(vision), $binary: 0 }, text: ref(1), ...planParams }, [le(vision), le(text)]), -32602, /vision must have one of \$base64 or \$binary/],
  ['neither $base64 nor $binary', () => frame(101, 'pack', { vision: { dtype: 'u32' }, text: ref(0), ...planParams }, [le(text)]), -32602, /vision must be a list of integers, .* or \{ "\$binary", "dtype": "u32" \}/],
  ['a $binary reference out of the schema', () => frame(101, 'pack', { vision: { $binary: -1, dtype: 'u32' }, text: ref(0), ...planParams }, [le(text)]), -32602, /vision\.\$binary/],
  ['a dtype other than u32', () => frame(101, 'pack', { vision: { $binary: 0, dtype: 'f64' }, text: ref(1), ...planParams }, [le(vision), le(text)]), -32602, /vision\.dtype must be "u32"/],
  ['garbage after the attachments (a length shorter than the bytes sent)', () => frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [le(vision), le(text)], undefined, 'XYZ\n'), -32600, /not followed by "\\n"/],
  ['a declared length shorter than the bytes sent', () => frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [le(vision), le(text)], [le(vision).length - 4, le(text).length]), -32600, /not followed by "\\n"/],
  ['binary answers inside a batch', () => Buffer.from(`[${JSON.stringify({ jsonrpc: '2.0', id: 101, method: 'pack', params: { vision: Array.from(vision), text: Array.from(text), ...planParams, encoding: 'binary' } })}]\n`), -32602, /encoding cannot be "binary" inside a batch/],
];

for (const [what, bytes, code, message] of faults) {
  test(`framing: ${what} -> ${code}, and the connection goes on`, async (t) => {
    const h = Harness.create();
    h.raw(bytes());
    const a = (await h.lines.next((m) => (Array.isArray(m) ? m[0]?.id === 101 : m.id === 101 && m.method === undefined), 20_000)) as Msg | Msg[];
    const e = (Array.isArray(a) ? a[0] : a).error;
    t.is(e?.code, code, JSON.stringify(a));
    t.regex(e!.message, message);
    t.false(e!.message.includes('\n'));
    t.false(h.closed);
    h.raw(packFrame(102));
    t.is((await answered(h, 102)).error, undefined);
    t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
  });
}

test('framing: a request over --max-line-bytes with its attachments is -32001 before a byte is kept; its bytes are skipped', async (t) => {
  const h = Harness.create({ maxLineBytes: 4096 });
  const big = Buffer.alloc(64 * 1024, 0x0a); // newlines: a reader that did not skip them would see lines
  const f = frame(101, 'pack', { vision: ref(0), text: ref(1), ...planParams }, [big, big]);
  for (let i = 0; i < f.length; i += 1000) h.raw(f.subarray(i, i + 1000));
  const a = await answered(h, 101);
  t.is(a.error?.code, -32001);
  t.regex(a.error!.message, /131\d+ bytes \(line and 131072 attachment bytes\) over the limit of 4096 bytes \(--max-line-bytes\); skipped/);
  t.is(h.lines.messages.length, 1, 'the skipped bytes made no other answer');
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
});

test('framing: a request line over --max-line-bytes has the attachments it declares skipped too (never read as lines)', async (t) => {
  const h = Harness.create({ maxLineBytes: 4096 });
  // The attachment holds newlines and a request line: read as lines, they were answered (and run).
  const smuggled = Buffer.from(`\n${JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'version' })}\n\u0000\u0000\n`);
  const att = Buffer.concat([smuggled, Buffer.alloc(4 - (smuggled.length % 4))]);
  // A long JSON list (over the limit) and an attachment: `$attachments` ends the line, as the Python client writes it.
  const f = frame(101, 'pack', { vision: ref(0), text: Array.from({ length: 3000 }, () => 1000), dp: 1 }, [att]);
  for (let i = 0; i < f.length; i += 1000) h.raw(f.subarray(i, i + 1000));
  h.raw(packFrame(102));
  t.is((await answered(h, 101)).error?.code, -32001);
  t.is((await answered(h, 102)).error, undefined);
  t.is((await h.call('version')).result.protocol, 'omnibal-rpc/1');
  t.false(h.lines.messages.some((m) => !Array.isArray(m) && (m.id === 9 || m.id === null)), JSON.stringify(h.lines.messages.map((m) => (Array.isArray(m) ? 'batch' : m.id))));
  // A malformed declaration at the end of an over-long line: where the request ends is unknown, so the connection closes.
  const g = Harness.create({ maxLineBytes: 4096 });
  g.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'pack', params: { text: Array.from({ length: 3000 }, () => 1000) }, $attachments: [-4] })}\n`);
  t.is((await answered(g, 5)).error?.code, -32001);
  await g.session.drain();
  await new Promise((r) => setTimeout(r, 20));
  t.true(g.closed);
});

test('LineReader: the attachments of an over-long line are skipped wherever the bytes are cut', (t) => {
  const line = `{"id":1,"p":"${'x'.repeat(300)}","$attachments":[8,4]}\r`;
  const stream = Buffer.concat([Buffer.from(`${line}\n`), Buffer.from([10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]), Buffer.from('\n{"b":2}\n')]);
  const run = (cuts: number[], limit = 100) => {
    const got: unknown[] = [];
    const r = new LineReader(limit, {
      line: (l) => void got.push(l),
      tooLong: () => void got.push('LONG'),
      tooLongEnd: (tail): AttachmentFrame | void => {
        got.push(tail.slice(-22));
        return { lengths: [8, 4], keep: false, done: (bufs, misframed) => void got.push({ skipped: bufs.length, misframed }) };
      },
    });
    let at = 0;
    for (const c of [...cuts, stream.length]) {
      r.feed(stream.subarray(at, c));
      at = c;
    }
    return got;
  };
  t.deepEqual(run([]), ['LONG', '"$attachments":[8,4]}\r', { skipped: 0, misframed: false }, '{"b":2}']);
  fc.assert(
    // Limits from far below the line's length to just under it (the line then ends right past the limit).
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 }), fc.integer({ min: 50, max: line.length - 1 }), (cuts, limit) => {
      t.deepEqual(run(cuts.sort((a, b) => a - b), limit), run([]));
    }),
    { numRuns: 500 },
  );
});

for (const [what, lengths] of [
  ['not a list', 'abc'],
  ['a negative length', [-4]],
  ['a fractional length', [1.5]],
  ['an unsafe integer', [2 ** 60]],
  ['too many attachments', Array.from({ length: 65 }, () => 0)],
] as const) {
  test(`framing: "$attachments" ${what} -> -32600, and the connection is closed (where the request ends is unknown)`, async (t) => {
    const h = Harness.create();
    h.raw(`${JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'version', $attachments: lengths })}\n${'\u0001'.repeat(100)}\n`);
    const a = await answered(h, 7);
    t.is(a.error?.code, -32600);
    t.regex(a.error!.message, /"\$attachments" must be a list of at most 64 byte lengths/);
    await h.session.drain();
    await new Promise((r) => setTimeout(r, 20));
    t.true(h.closed);
    t.is(h.lines.messages.length, 1);
  });
}

test('framing: a connection that ends inside the attachments (a short read) runs nothing and leaves the server well', async (t) => {
  const h = Harness.create();
  const f = packFrame(101);
  h.raw(f.subarray(0, f.length - 100));
  await new Promise((r) => setTimeout(r, 50));
  t.is(h.lines.messages.length, 0);
  h.session.close();
  // Another connection of the same server is served.
  const other = new Harness(h.ctx);
  other.raw(packFrame(102));
  t.is((await answered(other, 102)).error, undefined);
});

test('framing: attachments on an unauthenticated TCP connection are refused and the connection closed', async (t) => {
  const h = Harness.create({}, 'tcp', 'secret');
  h.raw(packFrame(101));
  const a = await answered(h, 101);
  t.is(a.error?.code, -32002);
  t.true(h.closed);
});

test('framing: "$attachments" in a batch element is -32600 and nothing after the batch is read (its bytes never run as requests)', async (t) => {
  const h = Harness.create();
  // The "attachment" holds a request line: a sidecar that ignored "$attachments" in a batch ran it.
  const smuggled = `${JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'version' })}\n`;
  const batch = [
    { jsonrpc: '2.0', id: 7, method: 'pack', params: { vision: ref(0), text: ref(1), ...planParams }, $attachments: [Buffer.byteLength(smuggled) - 1] },
    { jsonrpc: '2.0', id: 8, method: 'version' },
  ];
  h.raw(`${JSON.stringify(batch)}\n${smuggled}\n`);
  const answers = (await h.lines.next((m) => Array.isArray(m), 20_000)) as unknown as Msg[];
  const first = answers.find((a) => a.id === 7)!;
  t.is(first.error?.code, -32600);
  t.regex(first.error!.message, /"\$attachments" inside a batch/);
  t.is(answers.find((a) => a.id === 8)?.result?.protocol, 'omnibal-rpc/1');
  await h.session.drain();
  await new Promise((r) => setTimeout(r, 50));
  t.true(h.closed);
  t.is(h.lines.messages.length, 1, 'only the batch was answered (request 9 never ran)');
});

test('LineReader: lines and attachments split at any byte give the same lines and attachments', (t) => {
  const att = [Buffer.from([1, 2, 3, 4, 10, 6, 7, 8]), Buffer.alloc(0), Buffer.from([10, 10, 10, 10])];
  const withAtt = `{"a":1,"$attachments":[8,0,4]}`;
  const stream = Buffer.concat([Buffer.from(`{"z":0}\n${withAtt}\n`), ...att, Buffer.from(`\n{"b":2}\r\n${withAtt}\n`), ...att, Buffer.from('Q\n{"c":3}\n')]);
  const run = (cuts: number[]) => {
    const got: unknown[] = [];
    const r = new LineReader(1000, {
      line: (l): AttachmentFrame | void => {
        got.push(l);
        if (l.includes('$attachments')) return { lengths: [8, 0, 4], keep: true, done: (bufs, misframed) => void got.push({ bufs: bufs.map((b) => Array.from(b)), misframed }) };
      },
      tooLong: () => got.push('LONG'),
    });
    let at = 0;
    for (const c of [...cuts, stream.length]) {
      r.feed(stream.subarray(at, c));
      at = c;
    }
    return got;
  };
  const want = run([]);
  const bufs = att.map((b) => Array.from(b));
  t.deepEqual(want, ['{"z":0}', withAtt, { bufs, misframed: false }, '{"b":2}', withAtt, { bufs, misframed: true }, '{"c":3}']);
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 }), (cuts) => {
      t.deepEqual(run(cuts.sort((a, b) => a - b)), want);
    }),
    { numRuns: 300 },
  );
});

test('an attachment declared but never sent allocates nothing: the buffer is made when its first byte arrives', (t) => {
  let done: Buffer[] | undefined;
  const declared = 1 << 26;
  const r = new LineReader(1 << 30, { line: () => ({ lengths: [declared], keep: true, done: (bufs) => void (done = bufs) }), tooLong: () => undefined });
  // Node's count of ArrayBuffer memory (Buffers included): a 64 MiB attachment shows as 64 MiB.
  const before = process.memoryUsage().arrayBuffers;
  r.feed(Buffer.from('{"x":1}\n'));
  t.true(process.memoryUsage().arrayBuffers - before < 1 << 20, 'nothing allocated for the declared length');
  t.true(r.inAttachments);
  r.feed(Buffer.alloc(10, 7));
  t.true(process.memoryUsage().arrayBuffers - before >= declared / 2, 'the attachment allocated once its first byte came');
  t.is(done, undefined);
  r.feed(Buffer.concat([Buffer.alloc(declared - 10, 7), Buffer.from('\n')]));
  t.is(done?.length, 1);
  t.is(done![0].length, declared);
  t.false(r.inAttachments);
});

// The end of an over-long line is read with the same rule as a request line (JSON's reading of
// the list): a declaration one accepts and the other refuses left one path reading the
// attachment bytes as requests, or closing a connection the other kept.
for (const [decl, valid] of [
  ['[1e3]', true],
  ['[1000]', true],
  ['[1000.0]', true],
  ['[ 1E3 ]', true],
  ['[1.5]', false],
  ['[-1]', false],
  ['[1e400]', false],
  ['["1000"]', false],
] as const) {
  test(`framing: "$attachments": ${decl} is ${valid ? 'accepted' : 'refused'} alike in a request line and at the end of an over-long line`, async (t) => {
    // 1,000 attachment bytes holding a request line (read as lines, it would be answered).
    const smuggled = Buffer.from(`\n${JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'version' })}\n`);
    const att = Buffer.concat([smuggled, Buffer.alloc(1000 - smuggled.length, 0x0a)]);
    const next = `${JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'version' })}\n`;
    const lines = {
      short: `{"jsonrpc":"2.0","id":7,"method":"version","$attachments":${decl}}\n`,
      long: `{"jsonrpc":"2.0","id":7,"method":"pack","params":{"text":[${Array.from({ length: 3000 }, () => 1000).join(',')}]},"$attachments":${decl}}\n`,
    };
    for (const [kind, line] of Object.entries(lines)) {
      const h = Harness.create({ maxLineBytes: 4096 });
      h.raw(Buffer.concat([Buffer.from(line), att, Buffer.from('\n'), Buffer.from(next)]));
      const a = await answered(h, 7);
      t.is(a.error?.code, kind === 'long' ? -32001 : -32600, `${kind}: ${a.error?.message}`);
      if (kind === 'short') t.regex(a.error!.message, valid ? /attachment 0/ : /"\$attachments" must be a list/, kind);
      await h.session.drain();
      await new Promise((r) => setTimeout(r, 20));
      t.is(h.closed, !valid, `${kind}: ${valid ? 'goes on after the attachment' : 'closed: where the request ends is unknown'}`);
      const ids = h.lines.messages.map((m) => (Array.isArray(m) ? 'batch' : m.id));
      t.deepEqual(ids, valid ? [7, 8] : [7], kind);
    }
  });
}

test('a {"$binary": k} nested inside a param (plan calibration, a list of objects) or standing for an object param is -32602 naming its path, with or without attachments', async (t) => {
  const h = Harness.create();
  const nested = (extra: Record<string, unknown>) => ({ model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, calibration: { schema: 'omnibal.calibration/1', model: 'tiny-vlm', layers: [{ index: 1, forwardMs: 1 }], ...extra } });
  const cases: [Record<string, unknown>, string][] = [
    [{ device: ref(0) }, 'calibration.device'],
    [{ notes: [{ a: 1 }, { b: { c: ref(0) } }] }, 'calibration.notes[1].b.c'],
  ];
  let id = 1;
  for (const [extra, field] of cases) {
    for (const attachments of [[Buffer.alloc(8)], []]) {
      h.raw(frame(id, 'plan', nested(extra), attachments));
      const a = await answered(h, id++);
      t.is(a.error?.code, -32602, `${field}: ${JSON.stringify(a)}`);
      t.is(a.error?.data?.field, field);
      t.is(a.error?.data?.code, 'ERR_OMNIBAL_INVALID_TYPE');
    }
  }
  // A top-level param that is not a numeric array (an object: `calibration`) given as a reference
  // is refused by name, not bound and then refused as a calibration without layers.
  for (const attachments of [[Buffer.alloc(8)], []]) {
    h.raw(frame(id, 'plan', { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1, calibration: ref(0) }, attachments));
    const a = await answered(h, id++);
    t.is(a.error?.code, -32602, JSON.stringify(a));
    t.is(a.error?.data?.field, 'calibration');
    t.regex(a.error!.message, /calibration is a \{"\$binary": k\} attachment reference: only a numeric-array param may be a binary attachment \(this method takes none\)/);
  }
  // A top-level array param stays an attachment; the connection goes on.
  h.raw(packFrame(id));
  t.is((await answered(h, id)).error, undefined);
});
