// The native reader (crate/core/src/io) and its TypeScript twin (src/io/samples.ts) give the
// same samples, or the same error (class, code, message), on random files: every format,
// quoting, BOM, CRLF, huge numbers, invalid UTF-8, random limits.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { firstDifference, native, nativeTest } from './helpers';
import { readSampleFilesTwin } from '../src/io/samples';
import { decodeBase64U32Twin } from '../src/io/base64';
import { toU32 } from '../src/sidecar/codec';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-io-parity-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function outcome(f: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await f() };
  } catch (error) {
    const e = error as Error & { code?: string };
    return { name: e.constructor.name, code: e.code, message: e.message };
  }
}

const number = fc.oneof(
  fc.integer({ min: 0, max: 5000 }).map(String),
  fc.constantFrom('-1', '-0', '0', '1.0', '2.5', '1e3', '1E+2', '4294967295', '4294967296', '1e400', '-1e400', '12345678901234567890', '007', '0.0000001e7'),
);
const jsonValue = fc.oneof(
  { weight: 6, arbitrary: number },
  { weight: 1, arbitrary: fc.constantFrom('"5"', 'null', 'true', '[1]', '{"a": 1}', 'NaN', '"\\u0041"', '"é"') },
);
const key = fc.constantFrom('vit_num', 'token_num', 'vision', 'text', 'image_flags', 'v\\u0069t_num', 'x');
const ws = fc.constantFrom('', ' ', '  ', '\t', '\r');
const object = fc
  .array(fc.tuple(key, jsonValue, ws), { minLength: 0, maxLength: 5 })
  .chain((pairs) =>
    fc.constantFrom(
      `{${pairs.map(([k, v, w]) => `${w}"${k}":${w}${v}`).join(',')}}`,
      `{${pairs.map(([k, v]) => `"${k}": ${v}`).join(', ')},}`,
      `{"vit_num": ${pairs.length}, "token_num": ${pairs.length + 100}${pairs.map(([k, v]) => `, "${k}x": ${v}`).join('')}}`,
    ),
  );
const goodObject = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 20000 })).map(([v, t]) => `{"vit_num": ${v}, "token_num": ${t}, "image_flags": ${v}}`);
const anyObject = fc.oneof({ weight: 3, arbitrary: goodObject }, { weight: 2, arbitrary: object });
const eol = fc.constantFrom('\n', '\r\n');
// CSV may also come with classic Mac OS line ends (a bare CR): both readers must name them alike.
const csvEol = fc.constantFrom('\n', '\r\n', '\r');

const jsonl = fc.tuple(fc.array(fc.oneof({ weight: 8, arbitrary: anyObject }, { weight: 1, arbitrary: fc.constantFrom('', ' ', '[1]', '5', '{') }), { maxLength: 30 }), eol, fc.boolean()).map(
  ([lines, e, last]) => lines.join(e) + (last ? e : ''),
);
const jsonList = fc.tuple(fc.array(anyObject, { maxLength: 30 }), fc.constantFrom(',', ',\n', ' ,\r\n'), fc.constantFrom('', ',', ' 5', ']'), fc.boolean()).map(
  ([items, sep, tail, open]) => `[${items.join(sep)}${tail}${open ? '' : ']'}\n`,
);
const csvField = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 9000 }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('"12"', ' 7 ', '"x,4,500,y"', '"a""b"', 'a"b', '"a"b', '', '-3', '4294967296', '00012', '"\n5"', '1.5', '"', 'é'),
  },
);
const csv = fc
  .tuple(
    fc.constantFrom('vision,text', 'token_num,vit_num,image_flags', 'name,"VIT_NUM", Text ', 'a,b', '"vision","text","x"'),
    fc.array(fc.array(csvField, { minLength: 1, maxLength: 4 }), { maxLength: 25 }),
    csvEol,
  )
  .map(([header, rows, e]) => [header, ...rows.map((r) => r.join(','))].join(e) + e);

const mutate = (text: string, cuts: [number, number][]) => {
  const bytes = Buffer.from(text);
  for (const [at, b] of cuts) if (bytes.length > 0) bytes[at % bytes.length] = b;
  return bytes;
};
const content = fc.oneof(
  jsonl.map((t) => ['jsonl', t] as const),
  jsonList.map((t) => ['json', t] as const),
  csv.map((t) => ['csv', t] as const),
);

nativeTest('readSampleFiles: native equals the twin on random files', async (t) => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      content,
      fc.boolean(),
      fc.array(fc.tuple(fc.nat(), fc.constantFrom(0xff, 0xc3, 0x22, 0x2c, 0x0a, 0x0d, 0x7b, 0x7d, 0x5d)), { maxLength: 2 }),
      fc.record({ maxRecordBytes: fc.option(fc.integer({ min: 8, max: 200 }), { nil: undefined }), maxSamples: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }) }),
      async ([format, text], bom, cuts, limits) => {
        const p = path.join(dir, `f${run++}.${format}`);
        writeFileSync(p, Buffer.concat([Buffer.from(bom ? [0xef, 0xbb, 0xbf] : []), mutate(text, cuts)]));
        const a = await outcome(() => native!.readSampleFiles([p], [format], limits));
        const b = await outcome(() => readSampleFilesTwin([p], [format], limits));
        const d = firstDifference(a, b);
        if (d) throw new Error(`${d}\n${JSON.stringify(a)}\n${JSON.stringify(b)}\n${JSON.stringify(Buffer.from(text).toString('latin1'))}`);
      },
    ),
    { numRuns: 600, seed: 12 },
  );
  t.pass();
});

nativeTest('readSampleFiles: native equals the twin on several files and on the errors of opening them', async (t) => {
  const a = path.join(dir, 'a.jsonl');
  writeFileSync(a, '{"vision": 1, "text": 2}\n{"vision": 3, "text": 4}\n');
  const b = path.join(dir, 'b.csv');
  writeFileSync(b, 'vision,text\n5,6\n');
  for (const [paths, formats, limits] of [
    [[a, b, a], ['jsonl', 'csv', 'jsonl'], {}],
    [[a, path.join(dir, 'missing.json')], ['jsonl', 'json'], {}],
    [[dir], ['json'], {}],
    [[a, b], ['jsonl', 'csv'], { maxBytes: 60 }],
    [[a, b], ['jsonl', 'csv'], { maxSamples: 2 }],
    [[a], ['yaml'], {}],
  ] as [string[], string[], object][]) {
    const x = await outcome(() => native!.readSampleFiles(paths, formats, limits));
    const y = await outcome(() => readSampleFilesTwin(paths, formats, limits));
    t.is(firstDifference(x, y), null, `${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
  }
});

nativeTest('readSampleFiles: the parallel JSON Lines reader equals the twin across blocks (errors, limits, long lines)', async (t) => {
  const n = 400_000; // ~20 MB: several 8 MiB blocks
  const lines = Array.from({ length: n }, (_, i) => `{"vit_num": ${i % 7}, "token_num": ${1 + (i % 3001)}, "image_flags": ${i % 7}}`);
  const cases: [string, string[], object][] = [
    ['clean', lines, {}],
    ['bad late', lines.map((l, i) => (i === 310_001 ? '{"vit_num": 1, "token_num": 0}' : l)), {}],
    ['blank and CRLF', lines.map((l, i) => (i % 1000 === 0 ? ` \r` : `${l}\r`)), {}],
    ['sample limit in a later block', lines, { maxSamples: 250_123 }],
    ['long line late', lines.map((l, i) => (i === 299_999 ? `{"pad": "${'x'.repeat(5000)}"}` : l)), { maxRecordBytes: 4096 }],
  ];
  for (const [label, body, limits] of cases) {
    const p = path.join(dir, `${label.replaceAll(' ', '-')}.jsonl`);
    writeFileSync(p, body.join('\n'));
    const a = await outcome(() => native!.readSampleFiles([p], ['jsonl'], limits));
    const b = await outcome(() => readSampleFilesTwin([p], ['jsonl'], limits));
    t.is(firstDifference(a, b), null, label);
  }
  const long = path.join(dir, 'one-long-line.jsonl');
  writeFileSync(long, `${lines[0]}\n{"pad": "${'y'.repeat(20 << 20)}`);
  const a = await outcome(() => native!.readSampleFiles([long], ['jsonl'], {}));
  const b = await outcome(() => readSampleFilesTwin([long], ['jsonl'], {}));
  t.is(firstDifference(a, b), null);
  t.regex(JSON.stringify(a), /one-long-line\.jsonl:2: the record is longer than 1048576 bytes/);
});

nativeTest('readSampleFiles: bad limits are the same coded errors on both backends', async (t) => {
  for (const limits of [{ maxBytes: 0 }, { maxSamples: 1.5 }, { maxRecordBytes: 2 ** 29 }, { maxBytes: Number.NaN }]) {
    const x = await outcome(() => native!.readSampleFiles([], [], limits));
    const y = await outcome(() => readSampleFilesTwin([], [], limits));
    t.is(firstDifference(x, y), null, `${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
    t.is((x as { code?: string }).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  }
});

// The sidecar's binary arrays: the native decoder (crate/core/src/io/base64.rs) and the twin
// (src/io/base64.ts) take and refuse the same texts, with the same values or the same error.
nativeTest('decodeBase64U32: native = twin on valid, mutated and random texts', (t) => {
  const sync = (f: () => unknown) => {
    try {
      return { ok: f() };
    } catch (error) {
      const e = error as Error & { code?: string };
      return { name: e.constructor.name, code: e.code, message: e.message };
    }
  };
  const encode = (a: number[]) => Buffer.from(Uint32Array.from(a).buffer).toString('base64');
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.é';
  const text = fc.oneof(
    fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 40 }).map(encode),
    // A valid text with one character replaced, inserted or removed.
    fc
      .tuple(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 0, max: chars.length - 1 }), fc.constantFrom('set', 'insert', 'delete'))
      .map(([a, at, c, how]) => {
        const s = encode(a);
        const i = at % s.length;
        const ch = chars[c];
        return how === 'set' ? s.slice(0, i) + ch + s.slice(i + 1) : how === 'insert' ? s.slice(0, i) + ch + s.slice(i) : s.slice(0, i) + s.slice(i + 1);
      }),
    fc.array(fc.integer({ min: 0, max: chars.length - 1 }), { maxLength: 16 }).map((ix) => ix.map((i) => chars[i]).join('')),
  );
  fc.assert(
    fc.property(text, (s) => {
      const a = sync(() => native!.decodeBase64U32('vision', s));
      const b = sync(() => decodeBase64U32Twin('vision', s));
      // The sidecar's reader (Node's decoder on canonical text, else the backend's) agrees too.
      const c = sync(() => toU32('vision', { $base64: s, dtype: 'u32' }));
      t.is(firstDifference(a, b), null, JSON.stringify(s));
      t.is(firstDifference(c, b), null, `sidecar: ${JSON.stringify(s)}`);
      return firstDifference(a, b) === null && firstDifference(c, b) === null;
    }),
    { numRuns: 3000, seed: 11 },
  );
  // Long texts (buffers of their own, not Node's pool), valid and with one character changed.
  const long = Uint32Array.from({ length: 100_003 }, (_, i) => (i * 2654435761) >>> 0);
  const valid = Buffer.from(long.buffer).toString('base64');
  t.deepEqual(toU32('vision', { $base64: valid, dtype: 'u32' }), long);
  for (const [i, ch] of [[5, '-'], [1000, '_'], [valid.length - 1, 'A'], [77, ' ']] as const) {
    const bad = valid.slice(0, i) + ch + valid.slice(i + 1);
    t.is(firstDifference(sync(() => toU32('vision', { $base64: bad, dtype: 'u32' })), sync(() => native!.decodeBase64U32('vision', bad))), null, `${i} ${ch}`);
  }
  // Bits past the last byte are ignored by both ("AQAAAB==" is [1], as Node decodes it).
  t.deepEqual(Array.from(native!.decodeBase64U32('x', 'AQAAAB==')), [1]);
});
