// Length-file readers: formats, concatenation, and errors that name the file and line.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readSamples } from '../src/io/samples';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-io-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

async function failure(paths: string[]): Promise<{ code: string; message: string }> {
  try {
    await readSamples(paths);
  } catch (error) {
    const e = error as Error & { code: string };
    return { code: e.code, message: e.message };
  }
  throw new Error('no error');
}

test('reads the reference JSON list, JSON Lines and CSV, concatenated in order with groups', async (t) => {
  const json = file('a.json', '[\n {"vit_num": 1, "token_num": 358, "image_flags": 1},\n {"vit_num": 5, "token_num": 1341, "image_flags": 5}\n]\n');
  const jsonl = file('b.jsonl', '{"vision": 3, "text": 811}\n\n{"vit_num": 0, "token_num": 120}\n');
  const csv = file('c.csv', 'token_num,vit_num,image_flags\n900,4,4\n77,0,0\n');
  const s = await readSamples([json, jsonl, csv]);
  t.deepEqual(Array.from(s.vision), [1, 5, 3, 0, 4, 0]);
  t.deepEqual(Array.from(s.text), [358, 1341, 811, 120, 900, 77]);
  t.deepEqual(Array.from(s.group), [0, 0, 1, 1, 2, 2]);
  t.deepEqual(s.files.map((f) => f.samples), [2, 2, 2]);
});

test('the JSON reader streams across chunk boundaries', async (t) => {
  const n = 120_000;
  const body = Array.from({ length: n }, (_, i) => `{"vit_num": ${i % 5}, "token_num": ${100 + (i % 977)}, "image_flags": ${i % 5}}`).join(',\n');
  const s = await readSamples([file('big.json', `[${body}]`)]);
  t.is(s.text.length, n);
  t.is(s.text[n - 1], 100 + ((n - 1) % 977));
  t.is(s.vision[n - 2], (n - 2) % 5);
});

const bad: [string, string, string, RegExp][] = [
  ['NaN', 'nan.json', '[\n{"vit_num": 1, "token_num": 5},\n{"vit_num": NaN, "token_num": 5}\n]', /ERR_OMNIBAL_PARSE nan\.json:3: malformed object/],
  ['negative', 'neg.jsonl', '{"vit_num": 1, "token_num": 5}\n{"vit_num": -2, "token_num": 5}\n', /ERR_OMNIBAL_INVALID_SAMPLE neg\.jsonl:2: vision must be an integer between 0 and 4294967295, got -2/],
  ['fractional', 'frac.csv', 'vision,text\n1,5\n2,5.5\n', /ERR_OMNIBAL_INVALID_SAMPLE frac\.csv:3: text must be an integer between 1 and 4294967295, got 5\.5/],
  ['over 2^32', 'big.jsonl', '{"vision": 4294967296, "text": 5}\n', /ERR_OMNIBAL_INVALID_SAMPLE big\.jsonl:1: vision must be an integer/],
  ['zero text', 'zero.json', '[{"vit_num": 1, "token_num": 0}]', /ERR_OMNIBAL_INVALID_SAMPLE zero\.json:1: text must be an integer between 1/],
  ['missing key', 'key.jsonl', '{"vision": 1}\n', /ERR_OMNIBAL_INVALID_SAMPLE key\.jsonl:1: a sample needs vit_num and token_num/],
  ['a string value', 'str.csv', 'vision,text\nabc,5\n', /ERR_OMNIBAL_INVALID_SAMPLE str\.csv:2: vision must be an integer between 0 and 4294967295, got NaN/],
  ['truncated list', 'cut.json', '[{"vit_num": 1, "token_num": 5},', /ERR_OMNIBAL_PARSE cut\.json:1: the file ends before/],
  ['not a list', 'obj.json', '{"vit_num": 1}', /ERR_OMNIBAL_PARSE obj\.json:1: expected a JSON list/],
  ['CSV without the columns', 'hdr.csv', 'a,b\n1,2\n', /ERR_OMNIBAL_PARSE hdr\.csv:1: the header must name/],
  ['unknown extension', 'x.txt', '1 2\n', /ERR_OMNIBAL_PARSE .*x\.txt: unknown format/],
];

for (const [label, name, content, expected] of bad) {
  test(`a bad file is a coded error naming file and line: ${label}`, async (t) => {
    const e = await failure([file(name, content)]);
    t.regex(`${e.code} ${e.message.replaceAll(dir + path.sep, '')}`, expected);
  });
}

test('a missing file is a coded error', async (t) => {
  const e = await failure([path.join(dir, 'nope.json')]);
  t.is(e.code, 'ERR_OMNIBAL_PARSE');
  t.regex(e.message, /nope\.json: cannot read \(ENOENT\)/);
});

test('an empty list reads as no samples (planning it is then an EMPTY_INPUT error)', async (t) => {
  const s = await readSamples([file('empty.json', '[]')]);
  t.is(s.text.length, 0);
});
