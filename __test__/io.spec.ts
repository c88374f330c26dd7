// Length-file readers: formats, strictness, limits, file kinds, and errors that name the file,
// line and element without quoting the content. Runs on the active backend (native when it
// loads, the twin under OMNIBAL_BACKEND=js); io-parity.spec.ts checks that both agree.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { readSamples, type ReadSamplesOptions, type SamplesStream } from '../src/io/samples';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-io-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

async function failure(paths: (string | SamplesStream)[], options?: ReadSamplesOptions): Promise<{ code: string; message: string }> {
  try {
    await readSamples(paths, options);
  } catch (error) {
    const e = error as Error & { code: string };
    return { code: e.code, message: e.message.replaceAll(dir + path.sep, '') };
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
  // The lazily made group index is still a writable field, as its type says.
  s.group = new Uint32Array([2, 2, 1, 1, 0, 0]);
  t.deepEqual(Array.from(s.group), [2, 2, 1, 1, 0, 0]);
});

test('a UTF-8 byte-order mark and CRLF line ends are accepted', async (t) => {
  const bom = '\uFEFF';
  const s = await readSamples([
    file('bom.json', `${bom}[\r\n{"vit_num": 2, "token_num": 10}\r\n]\r\n`),
    file('bom.jsonl', `${bom}{"vit_num": 3, "token_num": 11}\r\n`),
    file('bom.csv', `${bom}vision,text\r\n4,12\r\n`),
  ]);
  t.deepEqual(Array.from(s.vision), [2, 3, 4]);
  t.deepEqual(Array.from(s.text), [10, 11, 12]);
});

test('CSV follows RFC 4180: quoted fields with commas, quotes and line breaks', async (t) => {
  const s = await readSamples([file('q.csv', 'name,vision,text\n"x,4,500,y",1,200\n"say ""hi""\nthere","2","500"\n')]);
  t.deepEqual(Array.from(s.vision), [1, 2]);
  t.deepEqual(Array.from(s.text), [200, 500]);
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
  ['NaN', 'nan.json', '[\n{"vit_num": 1, "token_num": 5},\n{"vit_num": NaN, "token_num": 5}\n]', /^ERR_OMNIBAL_PARSE nan\.json:3: element 1: not valid JSON$/],
  ['trailing comma in an object', 'tc.jsonl', '{"vit_num": 1, "token_num": 5,}\n', /^ERR_OMNIBAL_PARSE tc\.jsonl:1: not valid JSON$/],
  ['trailing comma in the list', 'tcl.json', '[{"vit_num": 1, "token_num": 5},]', /^ERR_OMNIBAL_PARSE tcl\.json:1: element 1: expected a JSON object$/],
  ['negative', 'neg.jsonl', '{"vit_num": 1, "token_num": 5}\n{"vit_num": -2, "token_num": 5}\n', /^ERR_OMNIBAL_INVALID_SAMPLE neg\.jsonl:2: vit_num must be an integer between 0 and 4294967295$/],
  ['fractional', 'frac.csv', 'vision,text\n1,5\n2,5.5\n', /^ERR_OMNIBAL_INVALID_SAMPLE frac\.csv:3: text \(field 2\) must be an integer between 1 and 4294967295$/],
  ['over 2^32', 'big.jsonl', '{"vision": 4294967296, "text": 5}\n', /^ERR_OMNIBAL_INVALID_SAMPLE big\.jsonl:1: vision must be an integer between 0 and 4294967295$/],
  ['huge exponent', 'exp.jsonl', '{"vision": 1e400, "text": 5}\n', /^ERR_OMNIBAL_INVALID_SAMPLE exp\.jsonl:1: vision must be an integer/],
  ['zero text', 'zero.json', '[{"vit_num": 1, "token_num": 0}]', /^ERR_OMNIBAL_INVALID_SAMPLE zero\.json:1: element 0: token_num must be an integer between 1/],
  ['missing key', 'key.jsonl', '{"vision": 1}\n', /^ERR_OMNIBAL_INVALID_SAMPLE key\.jsonl:1: a sample needs vit_num and token_num/],
  ['not an object', 'arr.jsonl', '[1, 2]\n', /^ERR_OMNIBAL_INVALID_SAMPLE arr\.jsonl:1: a sample must be a JSON object, got an array$/],
  ['a string value', 'str.csv', 'vision,text\nabc,5\n', /^ERR_OMNIBAL_INVALID_SAMPLE str\.csv:2: vision \(field 1\) must be an integer between 0 and 4294967295$/],
  ['a stray quote', 'sq.csv', 'vision,text\n1,5"0\n', /^ERR_OMNIBAL_PARSE sq\.csv:2: field 2: malformed quoting$/],
  ['an unclosed quote', 'uq.csv', 'vision,text\n1,"5\n', /^ERR_OMNIBAL_PARSE uq\.csv:2: a quoted field is not closed$/],
  ['a short record', 'short.csv', 'vision,text,x\n1,5\n', /^ERR_OMNIBAL_PARSE short\.csv:2: has 2 fields, the header has 3$/],
  ['truncated list', 'cut.json', '[{"vit_num": 1, "token_num": 5},', /^ERR_OMNIBAL_PARSE cut\.json:1: the file ends before the list's closing '\]'$/],
  ['not a list', 'obj.json', '{"vit_num": 1}', /^ERR_OMNIBAL_PARSE obj\.json:1: expected a JSON list starting with '\['$/],
  ['CSV without the columns', 'hdr.csv', 'a,b\n1,2\n', /^ERR_OMNIBAL_PARSE hdr\.csv:1: the header must name/],
  ['unknown extension', 'x.txt', '1 2\n', /^ERR_OMNIBAL_PARSE x\.txt: unknown format/],
  ['CSV whose lines end in a bare CR (classic Mac OS)', 'mac.csv', 'vision,text\r1,5\r2,6\r', /^ERR_OMNIBAL_PARSE mac\.csv:1: a line ends in a bare CR \(classic Mac OS line ends\) or a CR stands alone outside quotes; use LF or CRLF line ends$/],
  ['a bare CR after a quoted field, on line 3', 'mac3.csv', 'vision,text\n1,5\n"2",6\r7,8\n', /^ERR_OMNIBAL_PARSE mac3\.csv:3: a line ends in a bare CR/],
];

for (const [label, name, content, expected] of bad) {
  test(`a bad file is a coded error naming file and line: ${label}`, async (t) => {
    const e = await failure([file(name, content)]);
    t.regex(`${e.code} ${e.message}`, expected);
  });
}

test('CSV line ends: a bare CR is named even past the record limit or across chunks; CR inside quotes and a final CR are data / a line end', async (t) => {
  // CR-only lines make the whole file one record: the bare CR is reported, not the record's length.
  const rows = Array.from({ length: 40_000 }, (_, i) => `${i % 7},${100 + i}`).join('\r');
  const big = await failure([file('mac-big.csv', `vision,text\r${rows}\r`)]);
  t.is(big.code, 'ERR_OMNIBAL_PARSE');
  t.regex(big.message, /^mac-big\.csv:1: a line ends in a bare CR/);
  t.regex((await failure([file('mac-small.csv', `vision,text\r${rows.slice(0, 400)}`)], { maxRecordBytes: 64 })).message, /^mac-small\.csv:1: a line ends in a bare CR/);
  // A CRLF split across the reader's 1 MiB chunks, a CR inside quotes, and a last line ending in CR are read.
  const pad = 'x'.repeat((1 << 20) - 'name,vision,text\r\n'.length - ',1,5'.length - 1);
  const s = await readSamples([file('crlf-edge.csv', `name,vision,text\r\n${pad},1,5\r\n"a\rb",2,6\r\n"c",3,7\r`)], { maxRecordBytes: 2 << 20 });
  t.deepEqual(Array.from(s.vision), [1, 2, 3]);
  t.deepEqual(Array.from(s.text), [5, 6, 7]);
  const stdin = await failure([{ name: '<stdin>', stream: Readable.from([Buffer.from('vision,text\r'), Buffer.from('1,5\r')]) }]);
  t.regex(stdin.message, /^<stdin>:1: a line ends in a bare CR/);
});

test('an error on a one-line JSON list names the element', async (t) => {
  const items = Array.from({ length: 1000 }, (_, i) => `{"vit_num": 1, "token_num": ${i === 737 ? -1 : 5}}`);
  const e = await failure([file('one.json', `[${items.join(',')}]`)]);
  t.is(e.message, 'one.json:1: element 737: token_num must be an integer between 1 and 4294967295');
});

test('messages never quote the file content', async (t) => {
  const secret = 'hunter2-secret';
  for (const [name, content] of [
    ['s1.jsonl', `{"vit_num": "${secret}", "token_num": 5}\n`],
    ['s2.jsonl', `{"vit_num": 1, "token_num": 5, "${secret}": }\n`],
    ['s3.csv', `vision,text\n${secret},5\n`],
    ['s4.csv', `${secret},x\n1,2\n`],
    ['s5.json', `[${secret}]`],
    ['s6.json', `${secret}`],
  ]) {
    const e = await failure([file(name, content)]);
    t.false(e.message.includes(secret), e.message);
    t.false(e.message.includes('hunter'), e.message);
  }
});

test('invalid UTF-8 is a parse error; a line over the record limit is a coded error, not a crash', async (t) => {
  const e = await failure([file('bad-utf8.jsonl', Buffer.from([...Buffer.from('{"vit_num": 1, "token_num": 5, "a": "'), 0xff, ...Buffer.from('"}\n')]))]);
  t.is(e.message, 'bad-utf8.jsonl:1: not valid UTF-8');
  const long = file('long.jsonl', `{"vit_num": 1, "token_num": 5}\n{"pad": "${'x'.repeat(3 << 20)}"}\n`);
  const l = await failure([long]);
  t.is(l.code, 'ERR_OMNIBAL_PARSE');
  t.is(l.message, 'long.jsonl:2: the record is longer than 1048576 bytes (maxRecordBytes)');
  const obj = file('long.json', `[{"vit_num": 1, "token_num": 5}, {"pad": "${'x'.repeat(2000)}"}]`);
  t.is((await failure([obj], { maxRecordBytes: 1000 })).message, 'long.json:1: element 1: the record is longer than 1000 bytes (maxRecordBytes)');
});

test('byte and sample limits hold while streaming', async (t) => {
  const p = file('many.jsonl', '{"vision": 1, "text": 2}\n'.repeat(10));
  t.is((await failure([p], { maxSamples: 4 })).message, 'many.jsonl:5: more than 4 samples (maxSamples)');
  t.is((await failure([p], { maxBytes: 100 })).message, 'many.jsonl: the input is larger than 100 bytes (maxBytes)');
  t.is((await failure([p], { maxRecordBytes: 0 })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is((await readSamples([p], { maxSamples: 10, maxBytes: 250 })).text.length, 10);
});

test('only regular files: directories and FIFOs are coded errors (a FIFO does not block), symlinks are followed', async (t) => {
  mkdirSync(path.join(dir, 'sub.json'));
  t.regex((await failure([path.join(dir, 'sub.json')])).message, /^sub\.json: (not a regular file|cannot read \(EISDIR\))$/);
  const fifo = path.join(dir, 'fifo.jsonl');
  execFileSync('mkfifo', [fifo]);
  const e = await failure([fifo]);
  t.is(e.code, 'ERR_OMNIBAL_PARSE');
  t.is(e.message, 'fifo.jsonl: not a regular file');
  const target = file('target.jsonl', '{"vision": 1, "text": 2}\n');
  symlinkSync(target, path.join(dir, 'link.jsonl'));
  t.is((await readSamples([path.join(dir, 'link.jsonl')])).text.length, 1);
  symlinkSync(path.join(dir, 'sub.json'), path.join(dir, 'dirlink.json'));
  t.is((await failure([path.join(dir, 'dirlink.json')])).code, 'ERR_OMNIBAL_PARSE');
  t.is((await failure([path.join(dir, 'devnull.jsonl')].map(() => '/dev/null'), { format: 'jsonl' })).message, '/dev/null: not a regular file');
});

test('a missing file is a coded error', async (t) => {
  const e = await failure([path.join(dir, 'nope.json')]);
  t.is(e.code, 'ERR_OMNIBAL_PARSE');
  t.is(e.message, 'nope.json: cannot read (ENOENT)');
});

test('streams (stdin) read in any format, sniffed from the first byte', async (t) => {
  const stream = (text: string): SamplesStream => ({ name: '<stdin>', stream: Readable.from([Buffer.from(text.slice(0, 5)), Buffer.from(text.slice(5))]) });
  const a = await readSamples([stream('\uFEFF [{"vit_num": 1, "token_num": 5}]')]);
  const b = await readSamples([stream('{"vit_num": 2, "token_num": 6}\n')]);
  const c = await readSamples([stream('vision,text\n3,7\n')]);
  t.deepEqual([a.text[0], b.text[0], c.text[0]], [5, 6, 7]);
  const e = await failure([stream('{"vit_num": 2, "token_num": 6}\n{"vit_num": x}\n')]);
  t.is(e.message, '<stdin>:2: not valid JSON');
});

test('an empty list reads as no samples (planning it is then an EMPTY_INPUT error)', async (t) => {
  const s = await readSamples([file('empty.json', '[]')]);
  t.is(s.text.length, 0);
});
