// Calibration checks, one rule set for the library (`calibrate`), the CLI (`--calibration`,
// exit 2) and the sidecar (`calibration` params): what cannot be a measurement is a coded error
// naming the file's field, never a quantity derived from it; what a real profile can hold is a
// warning (stderr and the JSON's `warnings`); what the profiler writes is accepted by all three.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { calibrate, gpuPreset, vlmLayers } from '../index';
import { MIN_LAYER_MS, SLOWER_AT_LESS_WORK_REJECT } from '../src/model/calibration-file';
import { cli, thrown } from './helpers';
import { exited, LineClient, spawnServe } from './sidecar-harness';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-calibration-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const big = { tiles: 8, tokens: 40, sumSqLen: 1600 };
const small = { tiles: 2, tokens: 10, sumSqLen: 100 };
/** One layer of each kind in tiny-vlm: patch embedding, ViT block, projector, embedding, LLM block, head. */
const picks = [0, 1, 5, 6, 7, 13];
/** A device that made the measurements: a fixed cost per layer and a few percent of the `cpu` preset's peak. */
const truth = {
  ...gpuPreset('cpu'),
  layerCost: Object.fromEntries(['vit-embed', 'vit', 'projector', 'embed', 'llm', 'head'].map((k) => [k, { overheadMs: 0.1, efficiency: 0.05 }])),
};
const at = (l: typeof big) => vlmLayers('tiny-vlm', truth, { load: l }).forwardMs;

/** The LLM block's forward at 100% of the `cpu` preset's peak, at `big`. */
const atPeak = vlmLayers('tiny-vlm', { ...gpuPreset('cpu'), efficiency: { vit: 1, projector: 1, llm: 1, head: 1 } }, { load: big }).forwardMs[7];

type Layer = { index: number; forwardMs: number; load?: { tiles: number; tokens: number; sumSqLen?: number } };
type Doc = { schema: string; load?: typeof big; layers: Layer[]; stageMemory?: object[] };

/** A clean tiny-vlm profile as `python -m omnibal.profile` writes it (format 2, two loads), from the device above. */
function profiled(): Doc {
  return {
    schema: 'omnibal.calibration/2',
    load: big,
    layers: [big, small].flatMap((l) => picks.map((index) => ({ index, forwardMs: at(l)[index], load: l }))),
    stageMemory: [{ firstLayer: 1, lastLayer: 1, inFlight: 1, fullRecomputeBytes: 34816, noRecomputeBytes: 596232 }],
  };
}

/** `profiled()` with layer `j`'s time replaced. */
function withTime(j: number, forwardMs: number): Doc {
  const d = profiled();
  d.layers[j] = { ...d.layers[j], forwardMs };
  return d;
}

const vitBig = picks.indexOf(1); // layers[1]: the ViT block at 8 tiles
const vitSmall = picks.length + picks.indexOf(1); // layers[7]: the ViT block at 2 tiles

/** Bad calibrations: the error's code and the file's field it names (at the start of the message). */
const REJECTED: [string, Doc, string, string][] = [
  ['a time of 1e-300 ms', withTime(vitBig, 1e-300), 'ERR_OMNIBAL_INVALID_OPTIONS', `calibration.layers[${vitBig}].forwardMs`],
  ['a denormal time', withTime(vitBig, 5e-324), 'ERR_OMNIBAL_INVALID_OPTIONS', `calibration.layers[${vitBig}].forwardMs`],
  ['a time below the 1 us floor', withTime(vitSmall, MIN_LAYER_MS / 2), 'ERR_OMNIBAL_INVALID_OPTIONS', `calibration.layers[${vitSmall}].forwardMs`],
  ['a time of 0', withTime(vitBig, 0), 'ERR_OMNIBAL_INVALID_OPTIONS', `calibration.layers[${vitBig}].forwardMs`],
  ['a time of 1e30 ms', withTime(vitSmall, 1e30), 'ERR_OMNIBAL_INVALID_OPTIONS', `calibration.layers[${vitSmall}].forwardMs`],
  // Under a day each, but a million times slower than the peak per FLOP: no efficiency the model takes.
  ['times no cost per FLOP explains', { schema: 'omnibal.calibration/1', load: big, layers: [{ index: 1, forwardMs: 8e7 }] }, 'ERR_OMNIBAL_INVALID_OPTIONS', 'calibration.layers[0].forwardMs'],
  [
    'every kind slower at the smaller load (the loads swapped)',
    { ...profiled(), layers: profiled().layers.map((l) => ({ ...l, load: l.load === big ? small : big })) },
    'ERR_OMNIBAL_INVALID_OPTIONS',
    'calibration.layers[0].forwardMs',
  ],
  [
    'the only kind far slower at the smaller load',
    {
      schema: 'omnibal.calibration/2',
      layers: [
        { index: 1, forwardMs: 3, load: big },
        { index: 1, forwardMs: 3 * (SLOWER_AT_LESS_WORK_REJECT + 0.5), load: small },
      ],
    },
    'ERR_OMNIBAL_INVALID_OPTIONS',
    'calibration.layers[1].forwardMs',
  ],
  [
    'the ViT timed only at 0 tiles (one load, extrapolated)',
    { schema: 'omnibal.calibration/1', load: { tiles: 0, tokens: 40, sumSqLen: 1600 }, layers: [{ index: 1, forwardMs: 3 }, { index: 7, forwardMs: 3 }] },
    'ERR_OMNIBAL_INVALID_OPTIONS',
    'calibration.load.tiles',
  ],
  [
    'the projector timed only at 0 tiles (per-layer loads)',
    { schema: 'omnibal.calibration/2', layers: [{ index: 5, forwardMs: 0.2, load: { tiles: 0, tokens: 9 } }, { index: 5, forwardMs: 0.3, load: { tiles: 0, tokens: 40 } }] },
    'ERR_OMNIBAL_INVALID_OPTIONS',
    'calibration.layers[0].load.tiles',
  ],
  // Parses and passes the schema, yet calibrates nothing: the predictions would be the uncalibrated ones, printed as calibrated.
  ['nothing measured (no layers, no stage memory)', { schema: 'omnibal.calibration/2', layers: [] }, 'ERR_OMNIBAL_INVALID_OPTIONS', 'calibration.layers'],
  ['a layer the model does not have', { ...profiled(), layers: [{ index: 70, forwardMs: 1, load: big }] }, 'ERR_OMNIBAL_OUT_OF_RANGE', 'calibration.layers[0].index'],
  [
    'a stage keeping less memory with no recomputation than with full',
    { ...profiled(), stageMemory: [{ firstLayer: 1, lastLayer: 1, inFlight: 1, fullRecomputeBytes: 5000, noRecomputeBytes: 4000 }] },
    'ERR_OMNIBAL_INVALID_OPTIONS',
    'calibration.stageMemory[0].noRecomputeBytes',
  ],
  [
    'a stage past the last layer',
    { ...profiled(), stageMemory: [{ firstLayer: 1, lastLayer: 99, inFlight: 1, fullRecomputeBytes: 0, noRecomputeBytes: 1 }] },
    'ERR_OMNIBAL_OUT_OF_RANGE',
    'calibration.stageMemory[0].lastLayer',
  ],
];

/** Calibrations a real profile can hold: accepted, with a warning naming the field. */
const WARNED: [string, Doc, RegExp][] = [
  // 10% slower at a quarter of the work: timing noise.
  ['a layer slightly slower at the smaller load', withTime(vitSmall, at(big)[1] * 1.1), new RegExp(`^calibration\\.layers\\[${vitSmall}\\]\\.forwardMs \\(.*\\) is 1\\.10x calibration\\.layers\\[${vitBig}\\]\\.forwardMs .*timing noise`)],
  // One kind of several far slower at less work: a loaded machine makes that (a 0.25 ms patch
  // embedding measured 3.8x slower at a third of the work, medians of 2 at load 20).
  [
    'one kind far slower at the smaller load, the others not',
    withTime(vitSmall, at(big)[1] * (SLOWER_AT_LESS_WORK_REJECT + 0.5)),
    new RegExp(`^calibration\\.layers\\[${vitSmall}\\]\\.forwardMs \\(.*\\) is 3\\.50x calibration\\.layers\\[${vitBig}\\]\\.forwardMs .*timing noise`),
  ],
  // Twice as fast as the cpu preset's nominal peak allows: the preset is not the device measured.
  [
    'a time faster than the GPU peak',
    { schema: 'omnibal.calibration/1', load: big, layers: [{ index: 7, forwardMs: atPeak / 2 }] },
    /^calibration\.layers\[0\]\.forwardMs \(.* ms\) is faster than the llm layer's FLOPs allow at the GPU's peak \(.* ms at 100% efficiency, 8 tiles, 40 tokens\)/,
  ],
];

test('calibrate: a clean profile, and one with stage bytes of 0 (as --tiles 0 profiles a stage), fit with no warnings', (t) => {
  t.deepEqual(calibrate('tiny-vlm', 'cpu', { load: big }, profiled() as never).warnings, []);
  const zero = { ...profiled(), stageMemory: [{ firstLayer: 7, lastLayer: 7, inFlight: 1, fullRecomputeBytes: 0, noRecomputeBytes: 0 }] };
  const r = calibrate('tiny-vlm', 'cpu', { load: big }, zero as never);
  t.deepEqual(r.warnings, []);
  t.true(Number.isFinite(r.activationScale.llm));
});

test('calibrate: what cannot be a measurement is a coded error naming the file field', (t) => {
  for (const [what, doc, code, field] of REJECTED) {
    const e = thrown(() => calibrate('tiny-vlm', 'cpu', { load: big }, doc as never));
    t.is(e.code, code, `${what}: ${e.message}`);
    t.true(e.message.startsWith(`${field} `), `${what}: ${e.message}`);
    t.notRegex(e.message, /efficiency|NaN|Infinity/, what);
  }
});

test('calibrate: what a real profile can hold is fitted, with a warning naming the field', (t) => {
  for (const [what, doc, re] of WARNED) {
    const r = calibrate('tiny-vlm', 'cpu', { load: big }, doc as never);
    t.is(r.warnings.length, 1, `${what}: ${JSON.stringify(r.warnings)}`);
    t.regex(r.warnings[0], re, what);
    t.true(Object.values(r.gpu.layerCost!).every((c) => Number.isFinite(c!.efficiency) && c!.efficiency > 0 && c!.overheadMs >= 0), what);
  }
});

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const partition = ['partition', '--model', 'tiny-vlm', '--gpu', 'cpu', '--pp', '2', '--micro-batches', '4', '--vision-per-micro-batch', '8', '--text-per-micro-batch', '40', '--json'];
const plan = ['plan', '--model', 'tiny-vlm', '--gpu', 'cpu', '--gpus', '4', '--pp', '2', '--synthetic', '4000', '--accum', '4', '--simulated-steps', '1', '--json'];

function file(name: string, doc: object): string {
  const f = path.join(dir, name);
  writeFileSync(f, JSON.stringify(doc));
  return f;
}

test('CLI: a rejected calibration exits 2 with one line naming --calibration.FIELD', (t) => {
  REJECTED.forEach(([what, doc, code, field], i) => {
    const f = file(`bad-${i}.json`, doc);
    for (const args of [partition, plan]) {
      const r = omnibal([...args, '--calibration', f]);
      t.is(r.status, 2, `${args[0]} ${what}: ${r.stderr}`);
      t.is(r.stdout, '', what);
      t.true(r.stderr.startsWith(`omnibal: --${field} `), `${args[0]} ${what}: ${r.stderr}`);
      t.true(r.stderr.endsWith(` [${code}]\n`), `${args[0]} ${what}: ${r.stderr}`);
      t.is(r.stderr.split('\n').length, 2, what);
    }
  });
});

test('CLI: a calibration file holding null, or an empty object, exits 2 in plan as in partition (was: plan silently uncalibrated)', (t) => {
  for (const [name, text, message] of [
    ['null.json', 'null', '--calibration must be object'],
    ['empty-object.json', '{}', '--calibration.layers '],
  ]) {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    for (const args of [partition, plan]) {
      const r = omnibal([...args, '--calibration', f]);
      t.is(r.status, 2, `${args[0]} ${name}: ${r.stderr}`);
      t.is(r.stdout, '', name);
      t.true(r.stderr.startsWith(`omnibal: ${message}`), `${args[0]} ${name}: ${r.stderr}`);
      t.true(r.stderr.endsWith(' [ERR_OMNIBAL_INVALID_OPTIONS]\n'), `${args[0]} ${name}: ${r.stderr}`);
    }
  }
});

test('CLI: a calibration file saved with a byte-order mark reads as without one (was: a parse error at an invisible character)', (t) => {
  const f = path.join(dir, 'bom.json');
  writeFileSync(f, `\ufeff${JSON.stringify(profiled())}`);
  for (const args of [partition, plan]) {
    const r = omnibal([...args, '--calibration', f]);
    t.is(r.status, 0, `${args[0]}: ${r.stderr}`);
    t.is(r.stderr, '', args[0]);
  }
});

test('CLI: a warned calibration exits 0 with the warning on stderr and in the JSON warnings', (t) => {
  WARNED.forEach(([what, doc, re], i) => {
    const f = file(`warned-${i}.json`, doc);
    const flagged = new RegExp(re.source.replace(/calibration\\\./g, '--calibration\\.'));
    for (const args of [partition, plan, [...plan, '--search-layout']]) {
      const r = omnibal([...args, '--calibration', f]);
      t.is(r.status, 0, `${args.join(' ')} ${what}: ${r.stderr}`);
      const warnings = (JSON.parse(r.stdout) as { warnings?: string[] }).warnings ?? [];
      t.is(warnings.length, 1, `${args[0]} ${what}`);
      t.regex(warnings[0], flagged, what);
      t.is(r.stderr, `omnibal: warning: ${warnings[0]}\n`, what);
    }
  });
  // A clean one: no warnings at all.
  const r = omnibal([...partition, '--calibration', file('clean.json', profiled())]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '');
  t.false('warnings' in JSON.parse(r.stdout));
});

test('sidecar: the same rules (stage bytes of 0 accepted, absurd times rejected naming the field, warnings in plan and searchLayout)', async (t) => {
  const child = spawnServe([]);
  const h = new LineClient(child.stdin!, child.stdout!);
  t.teardown(() => {
    child.stdin!.end();
    return exited(child);
  });
  const params = { model: 'tiny-vlm', gpu: 'cpu', simulatedSteps: 1 };
  const zero = { ...profiled(), stageMemory: [{ firstLayer: 7, lastLayer: 7, inFlight: 1, fullRecomputeBytes: 0, noRecomputeBytes: 0 }] };
  const ok = await h.call('plan', { ...params, calibration: zero }, 120_000);
  t.falsy(ok.error, JSON.stringify(ok.error));
  t.false('warnings' in ok.result);
  for (const [what, doc, code, field] of REJECTED) {
    const e = await h.call('plan', { ...params, calibration: doc }, 120_000);
    t.is(e.error?.code, -32602, `${what}: ${JSON.stringify(e.error ?? e.result).slice(0, 300)}`);
    t.is(e.error?.data?.code, code, what);
    t.true(e.error!.message.includes(field), `${what}: ${e.error!.message}`);
  }
  const [what, doc, re] = WARNED[0];
  const w = await h.call('plan', { ...params, calibration: doc }, 120_000);
  t.falsy(w.error, what);
  t.is(w.result.warnings.length, 1, what);
  t.regex(w.result.warnings[0], re, what);
  const search = { model: 'tiny-vlm', gpu: 'cpu', gpus: 4, globalBatchSamples: 32, synthetic: 2000, tps: [1], pps: [2], samplesPerPacks: [4], simulatedSteps: 1 };
  const s = await h.call('searchLayout', { ...search, calibration: doc }, 120_000);
  t.falsy(s.error, JSON.stringify(s.error));
  t.is(s.result.warnings.length, 1, what);
  t.regex(s.result.warnings[0], re, what);
  t.false('warnings' in (await h.call('searchLayout', { ...search, calibration: profiled() }, 120_000)).result);
  const bad = await h.call('searchLayout', { ...search, calibration: REJECTED[0][1] }, 120_000);
  t.is(bad.error?.data?.code, REJECTED[0][2]);
  t.true(bad.error!.message.includes(REJECTED[0][3]), bad.error!.message);
});
