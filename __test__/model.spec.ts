// Model and memory balance through the public API: presets, optimum vs baselines and the lower
// bound, exports, the measured search, calibration, and bad input.
import test from 'ava';
import {
  applyCalibration,
  baselineStages,
  calibrate,
  evaluateSplit,
  exportDeepSpeed,
  exportMegatron,
  gpuPreset,
  modelPresets,
  partitionStages,
  partitionStagesAsync,
  partitionForTarget,
  searchStages,
  shellLine,
  shellQuote,
  SPLITS,
  vlmLayers,
  vlmStageProblem,
  type StageProblem,
} from '../index';
import { spawnSync } from 'node:child_process';
import { thrown } from './helpers';
import { largestFittingAccumulation, planWithFitHint } from '../src/model/fit-hint';

const load = { tiles: 18, tokens: 5000, sumSqLen: (5000 * 5000) / 4.5 };
const internvl = (pp: number, extra: Partial<Parameters<typeof vlmStageProblem>[0]> = {}) =>
  vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp, dp: 8, microBatches: 4 * pp, load, ...extra });

test('presets cover the models of the notes and resolve to full specs', (t) => {
  t.deepEqual(modelPresets().sort(), ['internvl-300m-internlm2-7b', 'internvl-chat-1.5', 'internvl-chat-1.5-plus', 'llava-1.5-7b', 'tiny-vlm']);
  const table = vlmLayers('internvl-chat-1.5', 'A100-80G', { load });
  t.is(table.names[0], 'vit.patch_embed');
  t.is(table.names[table.names.length - 1], 'llm.head');
  t.is(table.kinds.filter((k) => k === 'vit').length, 45);
  t.is(table.kinds.filter((k) => k === 'llm').length, 48);
  t.is(thrown(() => vlmLayers('gpt-5', 'A100-80G', { load })).code, 'ERR_OMNIBAL_UNKNOWN_PRESET');
  t.regex(thrown(() => gpuPreset('V100')).message, /known: A100-80G, H100-80G, H200/);
});

test('the optimum is never worse than any baseline and respects the bottleneck lower bound', (t) => {
  for (const pp of [4, 8, 16]) {
    const p = internvl(pp);
    const best = partitionStages(p);
    t.true(best.bottleneckMs >= best.lowerBoundMs - 1e-9, `pp ${pp}`);
    t.true(best.stages.every((s) => s.memoryBytes <= p.memoryBytes));
    for (const method of SPLITS) {
      for (const rec of ['none', 'full', 'uniform'] as const) {
        try {
          const b = baselineStages(p, method, rec);
          t.true(best.objectiveMs <= b.objectiveMs + 1e-9, `pp ${pp} ${method}+${rec}`);
        } catch (error) {
          t.is((error as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE', `${method}+${rec}`);
        }
      }
    }
  }
});

test('the paper baseline (parameter split + full recomputation) is far slower than the optimum at PP 8', (t) => {
  const p = internvl(8);
  const best = partitionStages(p);
  const base = baselineStages(p, 'parameters', 'full');
  const factor = base.objectiveMs / best.objectiveMs;
  t.log(`predicted model + memory factor at PP 8: ${factor.toFixed(2)}x (paper: 51.9 / 21.3 = 2.4x)`);
  t.true(factor > 1.5);
});

test('infeasible memory is an error that states the least memory that fits', async (t) => {
  const p: StageProblem = { ...internvl(4), memoryBytes: 20 * 2 ** 30 };
  const e = thrown(() => partitionStages(p));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  const need = Number(/the least memory that fits is (\d+) bytes/.exec(e.message)?.[1]);
  t.true(need > 20 * 2 ** 30);
  const ok = partitionStages({ ...p, memoryBytes: need });
  t.true(ok.stages.every((s) => s.memoryBytes <= need));
  t.throws(() => partitionStages({ ...p, memoryBytes: need - 1 }));
  const rejected = await t.throwsAsync(partitionStagesAsync(p));
  t.is((rejected as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE');
});

test('recomputation modes: none <= block <= full in memory use, and block is never slower than full', (t) => {
  const p = { ...internvl(8), memoryBytes: 200 * 2 ** 30 };
  const none = partitionStages({ ...p, recompute: 'none' });
  const block = partitionStages({ ...p, recompute: 'block' });
  const full = partitionStages({ ...p, recompute: 'full' });
  t.is(block.objectiveMs, none.objectiveMs, 'with room to spare, block recomputes nothing');
  t.true(block.objectiveMs < full.objectiveMs);
  const any = partitionStages({ ...internvl(8), recompute: 'any' });
  t.true(any.objectiveMs <= partitionStages(internvl(8)).objectiveMs);
});

test('the Megatron target keeps vision, projector and embedding on stage 0 and one recompute setting; its export runs', (t) => {
  const p = internvl(8, { gpu: 'H200' });
  const r = partitionForTarget(p, 'megatron');
  const embed = p.layerKinds!.indexOf('embed');
  t.true(r.plan.stages[0].lastLayer >= embed);
  t.true(r.unconstrainedGain! >= 0);
  t.true(r.unconstrained!.objectiveMs <= r.plan.objectiveMs);
  const m = exportMegatron(r.problem, r.plan);
  t.deepEqual(m.unsupported.filter((u) => !u.includes('vision layers')), []);
  t.true(m.alternatives.length >= 1);
  for (const a of m.alternatives) {
    t.false(a.argv.some((x) => x.startsWith('#')), 'no comment elements');
    // Layout and first/last counts never together.
    t.false(a.argv.includes('--pipeline-model-parallel-layout') && a.argv.some((x) => x.startsWith('--decoder-')));
    const first = a.argv.indexOf('--decoder-first-pipeline-num-layers');
    if (first >= 0) t.true(Number(a.argv[first + 1]) > 0);
  }
  const layout = m.alternatives.find((a) => a.name === 'layout')!;
  const value = layout.argv[layout.argv.indexOf('--pipeline-model-parallel-layout') + 1];
  t.is(value.split('|').length, 8);
  t.true(value.split('|')[0].startsWith('E'), 'embedding on the first stage');
  t.true(value.endsWith('L'));
  t.regex(layout.command, /--pipeline-model-parallel-layout '[^']*\|[^']*'/, 'the | is quoted for the shell');
  // The unconstrained optimum splits the vision encoder, which the export flags instead of emitting.
  const free = partitionStages(p);
  const mf = exportMegatron(p, free);
  t.true(mf.unsupported.some((u) => u.includes('vision encoder spans')));
  t.false(mf.alternatives.some((a) => a.name === 'layout' && a.argv.join(' ').includes('E') && free.stages[0].lastLayer < embed));
});

test("uniform recomputation is Megatron-LM's: the first min(k, local decoder layers) per stage, the ViT whole or not at all", (t) => {
  // megatron/core/transformer/transformer_block.py _checkpointed_forward (block method, per
  // TransformerBlock on its rank); examples/multimodal/model.py --recompute-vision.
  const p = internvl(8, { gpu: 'H200' });
  const kinds = p.layerKinds!;
  for (const [k, recomputeVision] of [[3, false], [5, true], [100, false]] as const) {
    const plan = partitionStages({ ...p, recompute: 'uniform', uniformLayers: k, recomputeVision, memoryBytes: 1e15 });
    for (const s of plan.stages) {
      const layers = Array.from({ length: s.lastLayer - s.firstLayer + 1 }, (_, j) => s.firstLayer + j);
      const decoder = layers.filter((l) => kinds[l] === 'llm');
      const vit = layers.filter((l) => kinds[l] === 'vit');
      t.deepEqual(s.recomputeLayers, [...(recomputeVision ? vit : []), ...decoder.slice(0, k)].sort((a, b) => a - b), `stage ${s.firstLayer}-${s.lastLayer}, k ${k}`);
    }
  }
  // The Megatron target picks one count and the ViT setting; its export reproduces them exactly.
  const r = partitionForTarget(p, 'megatron');
  const m = exportMegatron(r.problem, r.plan);
  t.deepEqual(m.unsupported, []);
  const argv = m.alternatives[0].argv;
  const k = Number(argv[argv.indexOf('--recompute-num-layers') + 1]);
  t.is(argv.includes('--recompute-vision'), r.problem.recomputeVision === true);
  for (const s of r.plan.stages) {
    const decoder = kinds.flatMap((kind, l) => (kind === 'llm' && l >= s.firstLayer && l <= s.lastLayer ? [l] : []));
    t.deepEqual(s.recomputeLayers.filter((l) => kinds[l] === 'llm'), decoder.slice(0, k));
    t.false(s.recomputeLayers.some((l) => kinds[l] !== 'llm' && kinds[l] !== 'vit'), 'patch embedding, projector, embedding and head are never recomputed');
  }
});

test('GPipe: an infeasible plan names the largest accumulation that fits', (t) => {
  const fitsWith = (p: StageProblem, m: number) => thrown(() => partitionStages({ ...p, microBatches: m })).code === undefined;
  // GPipe keeps all 32 micro-batches on every stage (the last one with their logits): no split fits 80 GiB.
  const g = internvl(8, { schedule: 'gpipe', microBatches: 32, memoryLoad: { tiles: 18, tokens: 5400 } });
  t.false(fitsWith(g, 32));
  const m = largestFittingAccumulation(g, partitionStages)!;
  t.true(m >= 1 && m < 32);
  t.true(fitsWith(g, m));
  t.false(fitsWith(g, m + 1));
  const e = thrown(() => planWithFitHint(g, partitionStages));
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  t.regex(e.message, new RegExp(`the largest accumulation that fits these micro-batches is ${m} \\(--accum ${m};`));
  // 1F1B's and interleaving's in-flight counts stop growing past about P micro-batches: no hint.
  for (const schedule of ['1f1b', 'interleaved'] as const) {
    const p: StageProblem = { ...internvl(8, { microBatches: 32, schedule }), memoryBytes: 2 ** 30 };
    t.is(largestFittingAccumulation(p, partitionStages), undefined);
    t.notRegex(thrown(() => planWithFitHint(p, partitionStages)).message, /largest accumulation/);
  }
});

test('shell quoting survives a POSIX shell', (t) => {
  const argv = ['--x', 'a|b', "it's", '', 'plain-1.5', '$HOME'];
  const r = spawnSync('sh', ['-c', `printf '%s\\n' ${shellLine(argv)}`], { encoding: 'utf8' });
  t.is(r.stdout, `${argv.join('\n')}\n`);
  t.is(shellQuote('plain-1.5'), 'plain-1.5');
});

test('the schedule sets the in-flight counts: GPipe M, 1F1B min(P - s, M), interleaved Megatron\'s', (t) => {
  const g = partitionStages(internvl(4, { gpu: 'H200', schedule: 'gpipe', recompute: 'full' }));
  t.deepEqual(g.stages.map((s) => s.inFlight), [16, 16, 16, 16]);
  const o = partitionStages(internvl(4, { gpu: 'H200' }));
  t.deepEqual(o.stages.map((s) => s.inFlight), [4, 3, 2, 1]);
  const i = partitionStages(internvl(4, { gpu: 'H200', schedule: 'interleaved', virtualStages: 2 }));
  // P (1 + (P - 1) / (P v)) on the first stage: 4 x (1 + 3 / 8) = 5.5.
  t.is(i.stages[0].inFlight, 5.5);
  for (const plan of [g, o, i]) {
    for (const s of plan.stages) {
      const m = s.memory;
      t.true(Math.abs(m.weights + m.gradients + m.optimizer + m.activations + m.checkpoints + m.fixed - s.memoryBytes) <= 1e-6 * s.memoryBytes);
      t.true(s.memoryBytes <= 150755131392);
    }
  }
});

test('memory for the heaviest micro-batch, with headroom, grows only the activations', (t) => {
  const base = partitionStages(internvl(8, { gpu: 'H200', recompute: 'none' }));
  const heavy = internvl(8, { gpu: 'H200', recompute: 'none', memoryLoad: { tiles: 24, tokens: 6000 }, headroom: 0.1 });
  const light = internvl(8, { gpu: 'H200', recompute: 'none' });
  t.deepEqual(heavy.forwardMs, light.forwardMs, 'times follow the mean load');
  t.deepEqual(heavy.staticBytes, light.staticBytes);
  for (let i = 0; i < light.activationBytes.length; i++) t.true(heavy.activationBytes[i] >= light.activationBytes[i] * 1.1 - 1e-6);
  t.true(base.stages.every((s) => s.memory.activations > 0));
  t.is(thrown(() => internvl(8, { headroom: -1 })).code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  // A bad memoryLoad is named as such, not as the (valid) load.
  for (const [memoryLoad, field] of [[{ tiles: 0, tokens: 0 }, 'memoryLoad.tokens'], [{ tiles: -1, tokens: 5 }, 'memoryLoad.tiles'], [{ tiles: 1, tokens: 5, sumSqLen: NaN }, 'memoryLoad.sumSqLen']] as const) {
    const e = thrown(() => internvl(8, { memoryLoad }));
    t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
    t.true(e.message.startsWith(`${field} must be`), e.message);
  }
});

test('precision, ZeRO and frozen modules in the static bytes; tp must divide heads, KV heads and FFN', (t) => {
  const w = (o: Parameters<typeof vlmLayers>[2]) => vlmLayers('internvl-chat-1.5', 'A100-80G', o);
  const l = 50; // an LLM block
  const params = w({ load }).params[l];
  t.is(w({ load, zero: 0 }).staticBytes[l], 18 * params);
  t.is(w({ load, zero: 0, training: { grads: 'bf16' } }).staticBytes[l], 16 * params);
  t.is(w({ load, zero: 1, dp: 8 }).staticBytes[l], (6 + 12 / 8) * params);
  t.is(w({ load, zero: 3, dp: 8 }).staticBytes[l], (18 / 8) * params);
  const frozen = w({ load, training: { frozenLlm: true } });
  t.is(frozen.staticBytes[l], 2 * params);
  t.is(frozen.gradientBytes[l] + frozen.optimizerBytes[l], 0);
  const e = thrown(() => w({ load, tp: 3 }));
  t.is(e.code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  // The API names its option once (the CLI rewrites `tp` to `--tp`).
  t.regex(e.message, /^tp 3 must divide vit\.heads \(25\)/);
});

test('selective recomputation: a per-stage choice beside block that Megatron exports when every layer uses it', (t) => {
  const small = vlmStageProblem({ model: 'internvl-300m-internlm2-7b', gpu: 'H200', pp: 4, dp: 8, microBatches: 16, load: { tiles: 2, tokens: 2000 }, recompute: 'selective-all', training: { flashAttention: false } });
  const r = partitionForTarget(small, 'megatron');
  const { problem: p, plan } = r;
  const llm = p.layerKinds!.flatMap((k, i) => (k === 'llm' ? [i] : []));
  t.deepEqual(plan.stages.flatMap((s) => s.selectiveLayers).filter((i) => llm.includes(i)), llm);
  const m = exportMegatron(p, plan);
  const argv = m.alternatives[0].argv;
  t.deepEqual(argv.slice(argv.indexOf('--recompute-granularity'), argv.indexOf('--recompute-granularity') + 5), ['--recompute-granularity', 'selective', '--recompute-modules', 'core_attn', 'mlp']);
  // Per-stage selective is never slower than block alone.
  const sel = partitionStages(internvl(8, { recompute: 'selective' }));
  t.true(sel.objectiveMs <= partitionStages(internvl(8)).objectiveMs);
});

test('DeepSpeed export: parts cover the stack and checkpoint lists match the plan', (t) => {
  const p = internvl(4);
  const plan = partitionStages(p);
  const ds = exportDeepSpeed(plan);
  t.is(ds.parts[0], 0);
  t.is(ds.parts[ds.parts.length - 1], p.forwardMs.length);
  t.deepEqual(ds.checkpointLayers, plan.stages.map((s) => s.recomputeLayers));
});

test('searchStages ranks candidates around the optimum and learns from measurements', async (t) => {
  const p = internvl(4);
  const search = searchStages(p, { radius: 1, budget: 5 });
  t.true(search.candidates.length > 1 && search.candidates.length <= 27);
  const optimum = partitionStages(p);
  t.deepEqual(search.candidates[0].lastLayers, optimum.stages.map((s) => s.lastLayer));
  for (let k = 1; k < search.candidates.length; k++) t.true(search.candidates[k].predicted.objectiveMs >= search.candidates[k - 1].predicted.objectiveMs);
  // Pretend the fourth-ranked candidate is fastest on real hardware.
  const target = search.candidates[3].lastLayers.join(',');
  const best = await search.run(async (c) => (c.lastLayers.join(',') === target ? 10 : 20));
  t.is(best.lastLayers.join(','), target);
  t.is(search.ask(), undefined, 'budget spent');
  t.is(thrown(() => search.tell({ ...search.candidates[0], lastLayers: [0, 1, 2, 3] }, 1)).code, 'ERR_OMNIBAL_INVALID_OPTIONS');
});

test('evaluateSplit prices a given split', (t) => {
  const p = internvl(4);
  const plan = evaluateSplit(p, [40, 60, 80, p.forwardMs.length - 1]);
  t.deepEqual(plan.stages.map((s) => s.lastLayer), [40, 60, 80, p.forwardMs.length - 1]);
  t.is(thrown(() => evaluateSplit(p, [50, 40, 80, 96])).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
});

test('calibration recovers efficiency and activation scales from measurements', (t) => {
  const opts = { dp: 8, load };
  const truthGpu = { ...gpuPreset('A100-80G'), efficiency: { vit: 0.3, projector: 0.2, llm: 0.6, head: 0.4 } };
  const measuredTable = vlmLayers('internvl-chat-1.5', truthGpu, opts);
  const layers = [1, 2, 3, 50, 51, 60].map((index) => ({ index, forwardMs: measuredTable.forwardMs[index] }));
  const model = vlmLayers('internvl-chat-1.5', 'A100-80G', opts);
  // True activations: 1.2x the model's on ViT blocks, 0.9x on LLM blocks.
  const stage = (first: number, last: number, n: number) => {
    let diff = 0;
    for (let i = first; i <= last; i++) {
      const scale = model.kinds[i] === 'vit' ? 1.2 : model.kinds[i] === 'llm' ? 0.9 : 1;
      diff += model.activationBytes[i] * scale - model.checkpointBytes[i];
    }
    return { firstLayer: first, lastLayer: last, inFlight: n, fullRecomputeBytes: 5e10, noRecomputeBytes: 5e10 + n * diff };
  };
  const result = calibrate('internvl-chat-1.5', 'A100-80G', opts, { layers, stageMemory: [stage(1, 20, 4), stage(50, 70, 2), stage(21, 60, 3)] });
  t.true(Math.abs(result.gpu.efficiency.vit - 0.3) < 1e-9);
  t.true(Math.abs(result.gpu.efficiency.llm - 0.6) < 1e-9);
  t.is(result.gpu.efficiency.head, 0.5, 'unmeasured kinds keep their factor');
  t.true(Math.abs(result.activationScale.vit - 1.2) < 1e-6);
  t.true(Math.abs(result.activationScale.llm - 0.9) < 1e-6);
  const p = applyCalibration(vlmStageProblem({ model: 'internvl-chat-1.5', gpu: result.gpu, pp: 4, dp: 8, microBatches: 16, load }), result);
  t.true(partitionStages(p).objectiveMs > 0);
});

test('calibration at two loads fits a fixed cost and an efficiency per kind; the model then predicts a third load', (t) => {
  // The truth: every kind has its own fixed cost (ms per layer and micro-batch) and efficiency.
  const truth = {
    ...gpuPreset('cpu'),
    layerCost: {
      'vit-embed': { overheadMs: 0.2, efficiency: 0.9 },
      vit: { overheadMs: 0.3, efficiency: 0.02 },
      projector: { overheadMs: 0.4, efficiency: 0.03 },
      embed: { overheadMs: 0.1, efficiency: 0.02 },
      llm: { overheadMs: 0.5, efficiency: 0.03 },
      head: { overheadMs: 0.35, efficiency: 0.04 },
    },
  };
  const a = { tiles: 8, tokens: 40, sumSqLen: 1600 };
  const b = { tiles: 2, tokens: 10, sumSqLen: 100 };
  const c = { tiles: 5, tokens: 30, sumSqLen: 450 };
  const picks = [0, 1, 5, 6, 7, 13]; // one layer of each kind in tiny-vlm
  const at = (l: typeof a) => vlmLayers('tiny-vlm', truth, { load: l });
  const layers = [a, b].flatMap((l) => picks.map((index) => ({ index, forwardMs: at(l).forwardMs[index], load: l })));
  const r = calibrate('tiny-vlm', 'cpu', { load: a }, { schema: 'omnibal.calibration/2', load: a, layers });
  for (const [k, want] of Object.entries(truth.layerCost)) {
    const got = r.gpu.layerCost![k as keyof typeof truth.layerCost]!;
    t.true(Math.abs(got.overheadMs - want.overheadMs) < 1e-9, k);
    if (k !== 'embed') t.true(Math.abs(got.efficiency / want.efficiency - 1) < 1e-9, k);
  }
  const predicted = vlmLayers('tiny-vlm', r.gpu, { load: c });
  const measured = at(c);
  for (const i of picks) t.true(Math.abs(predicted.forwardMs[i] / measured.forwardMs[i] - 1) < 1e-9, `layer ${i}`);
  // The same times read as format 1 (one load, no per-layer load): efficiency only, as before.
  const old = calibrate('tiny-vlm', 'cpu', { load: a }, { load: a, layers: picks.map((index) => ({ index, forwardMs: at(a).forwardMs[index] })) });
  t.is(old.gpu.layerCost!.vit!.overheadMs, 0);
  t.true(Math.abs(vlmLayers('tiny-vlm', old.gpu, { load: a }).forwardMs[1] / at(a).forwardMs[1] - 1) < 1e-9);
});

test('a malformed calibration file: one coded error naming the field', (t) => {
  const opts = { load };
  const cases: [unknown, RegExp][] = [
    [{ schema: 'omnibal.calibration/9', layers: [] }, /calibration\.schema must be one of "omnibal\.calibration\/1", "omnibal\.calibration\/2"/],
    [{ layers: [{ forwardMs: 1 }] }, /calibration\.layers\[0\]\.index is required/],
    [{ layers: [{ index: 'x', forwardMs: 1 }] }, /calibration\.layers\[0\]\.index must be integer/],
    [{ layers: [{ index: 1, forwardMs: 1, load: { tiles: 1, tokens: 9 } }] }, /layers\[0\]\.load needs "schema": "omnibal\.calibration\/2"/],
    [{ schema: 'omnibal.calibration/2', layers: [{ index: 1, forwardMs: 1, load: { tiles: -1, tokens: 9 } }] }, /calibration\.layers\[0\]\.load\.tiles must be >= 0/],
    [{ load: { tiles: 1 } }, /calibration\.load\.tokens is required/],
  ];
  for (const [doc, re] of cases) {
    const e = thrown(() => calibrate('internvl-chat-1.5', 'A100-80G', opts, doc as never));
    t.is(e.code, 'ERR_OMNIBAL_INVALID_OPTIONS', String(re));
    t.regex(e.message, re);
  }
});

test('bad problems: coded errors from the public API', (t) => {
  const p = internvl(4);
  t.is(thrown(() => partitionStages({ ...p, stages: 0 })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(thrown(() => partitionStages({ ...p, microBatches: 0 })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(thrown(() => partitionStages({ ...p, memoryBytes: 0 })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(thrown(() => partitionStages({ ...p, stages: 200 })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  const nan = p.forwardMs.slice();
  nan[3] = NaN;
  t.regex(thrown(() => partitionStages({ ...p, forwardMs: nan })).message, /layers\[3\]\.forwardMs must be a finite number >= 0, got NaN/);
  const neg = p.staticBytes.slice();
  neg[0] = -1;
  t.is(thrown(() => partitionStages({ ...p, staticBytes: neg })).code, 'ERR_OMNIBAL_OUT_OF_RANGE');
  t.is(thrown(() => partitionStages({ ...p, recompute: 'some' as never })).code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
  t.is(thrown(() => partitionStages({ ...p, forwardMs: [1, 2] as never })).code, 'ERR_OMNIBAL_INVALID_TYPE');
  t.is(thrown(() => baselineStages(p, 'random' as never, 'full')).code, 'ERR_OMNIBAL_UNKNOWN_OPTION');
});
