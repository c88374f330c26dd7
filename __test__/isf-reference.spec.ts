// The ISF argument search against the reference code's published behaviour
// (/work/shared/docs/reference-notes.md §1.1): start from the mean of per-sample 256-bins, walk
// in steps of (1 tile, a tokens) by the largest samples-per-pack seen, never stop on a single
// evaluation outside the window, pick the in-window candidate with the smallest score.
import test from 'ava';
import { existsSync } from 'node:fs';
import { searchIsfArguments, type IsfSearch } from '../index';
import { readSamples } from '../src/io/samples';
import { backends, realFiles } from './helpers';

const haveReal = realFiles.every((f) => existsSync(f));

/** The reference start, computed here from the raw lengths, independently of the package. */
function referenceStart(vision: Uint32Array, text: Uint32Array): { a: number; qv: number } {
  let bins = 0;
  let v = 0;
  for (let i = 0; i < text.length; i++) {
    bins += Math.ceil(text[i] / 256) * 256;
    v += vision[i];
  }
  const meanText = bins / text.length;
  const meanVision = v / text.length;
  const a = Math.floor((Math.floor(meanText / Math.max(meanVision, 1)) + 1) / 16) * 16;
  return { a, qv: Math.floor(4096 / a) };
}

/** Replays the reference rule over the evaluations: each new caps are the next ones the rule visits. */
function checkWalk(t: { true: (v: boolean, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, r: IsfSearch, b: number): void {
  const qv0 = r.candidates[0].maxVision;
  t.is(r.candidates[0].maxText, 4096);
  let maxSeen = -Infinity;
  let recorded = false;
  const visited = new Set([0]);
  for (const c of r.candidates) {
    const k = c.maxVision - qv0;
    t.is(c.maxText, 4096 + k * r.textStep, 'text moves with vision');
    t.true(visited.has(k), `caps ${c.maxVision}/${c.maxText} off the reference walk`);
    maxSeen = Math.max(maxSeen, c.samplesPerPack);
    recorded ||= c.inWindow;
    visited.add(maxSeen > b + 1 ? k - 1 : k + 1);
  }
  const inWindow = r.candidates.filter((c) => c.inWindow);
  if (inWindow.length > 0) {
    const best = Math.min(...inWindow.map((c) => c.score));
    t.true(r.candidates[r.chosen].inWindow && r.candidates[r.chosen].score === best, 'smallest score in the window');
    t.is(r.warnings.length, 0);
  }
}

(haveReal ? test : test.skip)('on the shared files the search walks the reference path through its published caps', async (t) => {
  const s = await readSamples(realFiles);
  const start = referenceStart(s.vision, s.text);
  // The reference, run on these files plus one more, published Qv 18 / Qt 6016: start + 6
  // steps of (1, 320) from 12 / 4096.
  t.deepEqual(start, { a: 320, qv: 12 });
  for (const [, api] of backends) {
    const r = api.searchIsfArguments(s.vision, s.text, { samplesPerPack: 4.5, dp: 8 });
    t.is(r.textStep, 320);
    t.is(r.candidates[0].maxVision, 12);
    checkWalk(t, r, 4.5);
    t.true(r.candidates.some((c) => c.maxVision === 18 && c.maxText === 6016 && c.inWindow), 'the published caps are on the walk, in the window');
    const c = r.candidates[r.chosen];
    t.true(c.samplesPerPack >= 4.5 && c.samplesPerPack <= 5.5);
  }
  for (const f of realFiles) {
    const one = await readSamples([f]);
    const r = searchIsfArguments(one, { samplesPerPack: 4.5, dp: 8 });
    const st = referenceStart(one.vision, one.text);
    t.is(r.textStep, st.a, f);
    t.is(r.candidates[0].maxVision, st.qv, f);
    checkWalk(t, r, 4.5);
  }
});

(haveReal ? test : test.skip)('one sample per pack: the walk steps down to caps in [1, 2] instead of dropping most samples', async (t) => {
  const s = await readSamples(realFiles);
  const r = searchIsfArguments(s, { samplesPerPack: 1, dp: 8, iterations: 10 });
  checkWalk(t, r, 1);
  const c = r.candidates[r.chosen];
  t.true(c.inWindow, JSON.stringify(r.candidates));
  t.true(c.dropped <= 0.01 * s.text.length, `${c.dropped} dropped`);
  t.deepEqual(r.warnings, []);
});
