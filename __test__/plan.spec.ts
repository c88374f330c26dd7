// The planner and `omnibal plan`: the ablation chain, bad layouts, the versioned JSON, and the
// HTML report rendered in headless Chromium.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { planTraining } from '../src/plan/index';
import { syntheticSamples } from '../src/data/synthetic';
import { searchLayouts, vlmLayers } from '../index';
import { cli, thrown } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'omnibal-plan-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function omnibal(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const small = syntheticSamples(60_000, 3);

test('the ablation runs baseline, + data, + model, + memory, each no slower than the one before', (t) => {
  const plan = planTraining({ samples: small, simulatedSteps: 8 });
  t.deepEqual(plan.ablation.map((r) => r.name.split(' (')[0]), ['baseline', '+ data balance', '+ model balance', '+ memory balance']);
  for (let i = 1; i < plan.ablation.length; i++) {
    t.true(plan.ablation[i].gpuHours <= plan.ablation[i - 1].gpuHours * (1 + 1e-9), plan.ablation[i].name);
    t.true(plan.ablation[i].speedup >= plan.ablation[i - 1].speedup - 1e-9);
  }
  t.is(plan.ablation[0].speedup, 1);
  t.true('megatronUniform' in plan.baselines);
  t.is(plan.schema, 'omnibal.training-plan/1');
  t.true(plan.assumptions.some((a) => a.includes('predictions')));
  t.deepEqual(planTraining({ samples: small, simulatedSteps: 8 }).ablation, plan.ablation, 'deterministic');
});

test('bad layouts are coded errors', (t) => {
  t.regex(thrown(() => planTraining({ samples: small, cluster: { gpus: 64, tp: 2, pp: 8, dp: 8 } })).message, /must equal the GPU count \(64\)/);
  t.is(thrown(() => planTraining({ samples: small, globalBatch: 100 })).code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  t.is(thrown(() => planTraining({ samples: small, gpu: 'TPU' })).code, 'ERR_OMNIBAL_UNKNOWN_PRESET');
});

test('omnibal plan prints the ablation beside the paper and labels it a prediction; --json is versioned', (t) => {
  const r = omnibal(['plan', '--synthetic', '60000', '--simulated-steps', '4']);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /ALL FIGURES ARE PREDICTIONS/);
  t.regex(r.stdout, /paper GPU-days/);
  t.regex(r.stdout, /61\.8/);
  t.regex(r.stdout, /\+ memory balance/);
  const j = omnibal(['plan', '--synthetic', '60000', '--simulated-steps', '4', '--json']);
  const plan = JSON.parse(j.stdout);
  t.is(plan.schema, 'omnibal.training-plan/1');
  t.is(plan.ablation.length, 4);
  for (const row of plan.ablation) for (const k of ['name', 'stepMs', 'gpuHours', 'speedup']) t.true(k in row);
  const bad = omnibal(['plan', '--gpus', '60']);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /ERR_OMNIBAL_INVALID_OPTIONS/);
  const unwritable = omnibal(['plan', '--synthetic', '20000', '--simulated-steps', '2', '--report', '/nonexistent/dir/r.html']);
  t.is(unwritable.status, 2);
  t.regex(unwritable.stderr, /cannot write the report to \/nonexistent\/dir\/r\.html/);
});

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const browserTest = chromium ? test.serial : test.skip;
if (!chromium) console.log('skipping the report browser test: Debian chromium not installed (.ci/run installs it)');

browserTest('the HTML report is self-contained and renders its charts in headless Chromium without console errors', async (t) => {
  const report = path.join(dir, 'report.html');
  const r = omnibal(['plan', '--synthetic', '60000', '--simulated-steps', '4', '--report', report]);
  t.is(r.status, 0, r.stderr);
  const html = readFileSync(report, 'utf8');
  t.false(/<script|https?:\/\//.test(html.replace('http://www.w3.org', '')), 'no scripts, no network');
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({
    executablePath: chromium,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`file://${report}`);
  t.is(await page.locator('svg.gantt').count(), 2);
  t.is(await page.locator('svg.loads').count(), 2);
  t.is(await page.locator('svg.stages').count(), 1);
  t.true((await page.locator('svg.gantt rect').count()) > 50);
  t.is(await page.locator('#ablation tr').count(), 5);
  const box = await page.locator('svg.gantt').first().boundingBox();
  t.true(box !== null && box.width > 500 && box.height > 50);
  const shot = path.join(process.env.OMNIBAL_ARTIFACTS ?? dir, 'report.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.log(`screenshot: ${shot}`);
  t.deepEqual(errors, []);
});

test('omnibal simulate re-simulates a saved plan, what-if edits included, and refuses other versions', (t) => {
  const saved = path.join(dir, 'plan.json');
  const made = omnibal(['plan', '--synthetic', '40000', '--simulated-steps', '4', '--out', saved]);
  t.is(made.status, 0, made.stderr);
  const plan = JSON.parse(readFileSync(saved, 'utf8'));
  const again = omnibal(['simulate', '--plan', saved, '--json']);
  t.is(again.status, 0, again.stderr);
  const r = JSON.parse(again.stdout);
  t.true(Math.abs(r.stepMs - plan.ablation[3].stepMs) < 1e-6 * plan.ablation[3].stepMs, 'replaying the plan gives its own prediction');
  // What-if: no recomputation anywhere does not fit; the error names the stage and the excess.
  for (const s of plan.stages.stages) s.recomputeLayers = [];
  const edited = path.join(dir, 'edited.json');
  writeFileSync(edited, JSON.stringify(plan));
  const bad = omnibal(['simulate', '--plan', edited]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /stage \d+ needs [\d.]+ GiB, [\d.]+ GiB more than the 80\.0 GiB per GPU \[ERR_OMNIBAL_INFEASIBLE\]/);
  plan.schema = 'omnibal.training-plan/0';
  writeFileSync(edited, JSON.stringify(plan));
  t.regex(omnibal(['simulate', '--plan', edited]).stderr, /schema "omnibal\.training-plan\/0", expected "omnibal\.training-plan\/1" \[ERR_OMNIBAL_PARSE\]/);
});

test('plan --calibration predicts from measurements', (t) => {
  const calibration = path.join(dir, 'calibration.json');
  // Measured LLM blocks twice as slow as the guessed efficiency predicts (at the calibration load).
  const predicted = vlmLayers('internvl-chat-1.5', 'A100-80G', { tp: 1, dp: 8, zero: 1, load: { tiles: 18, tokens: 5000 } }).forwardMs[60];
  writeFileSync(calibration, JSON.stringify({ layers: [{ index: 60, forwardMs: 2 * predicted }] }));
  const slow = JSON.parse(omnibal(['plan', '--synthetic', '20000', '--simulated-steps', '2', '--json', '--calibration', calibration]).stdout);
  const base = JSON.parse(omnibal(['plan', '--synthetic', '20000', '--simulated-steps', '2', '--json']).stdout);
  t.true(slow.ablation[3].stepMs > base.ablation[3].stepMs, 'slower measured LLM layers, slower predicted steps');
});

test('layout search ranks the layouts that fit by predicted GPU-hours, and says why others do not', (t) => {
  const ranked = searchLayouts({ gpus: 8, globalBatchSamples: 144, samples: syntheticSamples(20000, 1), tps: [1, 2], pps: [1, 2, 4], simulatedSteps: 2 });
  t.true(ranked.length >= 4);
  const fits = ranked.filter((c) => c.gpuHours !== undefined);
  for (let i = 1; i < fits.length; i++) t.true(fits[i].gpuHours! >= fits[i - 1].gpuHours!);
  for (const c of ranked) t.is(c.tp * c.pp * c.dp, 8);
  const misfit = ranked.find((c) => c.error);
  if (misfit) t.regex(misfit.error!, /memory|fit/);
});

test('a baseline that does not fit is reported in its row, and the plan still comes', (t) => {
  const plan = planTraining({ samples: small, cluster: { gpus: 8, tp: 1, pp: 4, dp: 2 }, accum: 16, simulatedSteps: 2 });
  t.regex(plan.ablation[0].error ?? '', /stage \d+ needs \d+ bytes, \d+ more than/);
  t.true(Number.isNaN(plan.ablation[0].stepMs));
  t.false(Number.isNaN(plan.ablation[3].stepMs));
  t.is(plan.stages.stages.length, 4);
});
