// Native and TypeScript twins agree on the stage DP, split evaluation, baselines, the VLM layer
// table and calibration, or fail with the same coded error.
import fc from 'fast-check';
import { modelPreset, gpuPreset, gpuInput, LAYER_KINDS } from '../src/model/index';
import { native, nativeTest, sameOnBothBackends } from './helpers';

const layerArb = fc.record({
  f: fc.integer({ min: 0, max: 30 }),
  b: fc.integer({ min: 0, max: 60 }),
  w: fc.integer({ min: 0, max: 40 }),
  a: fc.integer({ min: 0, max: 60 }),
  c: fc.integer({ min: 0, max: 20 }),
  s: fc.integer({ min: 0, max: 60 }),
  e: fc.integer({ min: 0, max: 4 }),
  // Role under uniform recomputation: mostly runs (a VLM's ViT, decoder, other layers).
  g: fc.integer({ min: 0, max: 2 }),
});

const problemArb = fc
  .record({
    layers: fc.array(layerArb, { minLength: 1, maxLength: 24 }),
    stages: fc.integer({ min: 1, max: 6 }),
    microBatches: fc.integer({ min: 1, max: 16 }),
    memoryBytes: fc.integer({ min: 1, max: 600 }),
    overhead: fc.integer({ min: 0, max: 10 }),
    recompute: fc.constantFrom('none', 'full', 'block', 'any', 'selective', 'uniform', 'selective-all'),
    uniformLayers: fc.integer({ min: 0, max: 5 }),
    selective: fc.boolean(),
    schedule: fc.constantFrom('1f1b', 'gpipe', 'interleaved'),
    virtualStages: fc.integer({ min: 1, max: 3 }),
    comm: fc.boolean(),
    firstMin: fc.integer({ min: 0, max: 4 }),
    // Uniform roles: none given (all counted), per layer, in runs, or one invalid role (3).
    groups: fc.constantFrom('none', 'layers', 'runs', 'invalid'),
  })
  .map((r) => ({
    forwardMs: Float64Array.from(r.layers, (x) => x.f),
    backwardMs: Float64Array.from(r.layers, (x) => x.b),
    staticBytes: Float64Array.from(r.layers, (x) => x.w),
    activationBytes: Float64Array.from(r.layers, (x) => x.a),
    checkpointBytes: Float64Array.from(r.layers, (x) => x.c),
    // Selective recomputation redoes at most the forward (e / 4 of it).
    selectiveBytes: r.selective ? Float64Array.from(r.layers, (x) => x.s) : undefined,
    selectiveMs: r.selective ? Float64Array.from(r.layers, (x) => (x.f * x.e) / 4) : undefined,
    schedule: r.schedule,
    virtualStages: r.virtualStages,
    stages: r.stages,
    microBatches: r.microBatches,
    memoryBytes: r.memoryBytes,
    stageOverheadBytes: r.overhead,
    commMs: r.comm ? Float64Array.from({ length: Math.max(r.layers.length - 1, 0) }, (_, i) => (i * 7) % 5) : undefined,
    recompute: r.recompute,
    uniformLayers: r.uniformLayers,
    firstStageMinLayers: r.firstMin,
    recomputeGroups:
      r.groups === 'none'
        ? undefined
        : Uint32Array.from(r.layers, (x, i) => (r.groups === 'invalid' && i === r.layers.length - 1 ? 3 : r.groups === 'runs' ? r.layers[Math.floor(i / 4) * 4].g : x.g)),
  }));


nativeTest('baselines keep a pinned first-stage prefix (Megatron-LM under --target megatron): native equals the twin, stage 0 holds it', (t) => {
  fc.assert(
    fc.property(problemArb, fc.nat(), fc.constantFrom('uniform', 'parameters', 'balanced', 'anchor'), fc.constantFrom('none', 'full', 'uniform'), (p0, pick, method, rec) => {
      // Any prefix the problem allows: up to the layers that leave one for each later stage.
      const most = p0.forwardMs.length - (p0.stages - 1);
      if (most < 0) return;
      const p = { ...p0, firstStageMinLayers: pick % (most + 1) };
      const d = sameOnBothBackends((api) => api.baselineStages(p, p.staticBytes, method, rec as 'none'));
      if (d) throw new Error(`baseline: ${d}`);
      let plan;
      try {
        plan = native!.baselineStages(p, p.staticBytes, method, rec as 'none');
      } catch {
        return; // the same coded error on both (checked above)
      }
      if (plan.lastLayer[0] + 1 < p.firstStageMinLayers) throw new Error(`${method}: stage 0 ends at ${plan.lastLayer[0]}, the prefix has ${p.firstStageMinLayers} layers`);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

nativeTest('partitionStages, evaluateSplit and baselines: native equals the twin on random problems', (t) => {
  fc.assert(
    fc.property(problemArb, fc.constantFrom('uniform', 'parameters', 'balanced', 'anchor'), fc.constantFrom('none', 'full', 'uniform'), (p, method, rec) => {
      const d1 = sameOnBothBackends((api) => api.partitionStages(p));
      if (d1) throw new Error(`partition: ${d1}`);
      const d2 = sameOnBothBackends((api) => api.baselineStages(p, p.staticBytes, method, rec as 'none'));
      if (d2) throw new Error(`baseline: ${d2}`);
      const l = p.forwardMs.length;
      const ends = Uint32Array.from({ length: p.stages }, (_, s) => Math.min(l - 1, Math.floor(((s + 1) * l) / p.stages) - 1));
      const d3 = sameOnBothBackends((api) => api.evaluateSplit(p, ends));
      if (d3) throw new Error(`split: ${d3}`);
      const flags = Uint8Array.from({ length: l }, (_, i) => (i * 5 + p.stages) % 3);
      const d4 = sameOnBothBackends((api) => api.evaluateStages(p, ends, flags));
      if (d4) throw new Error(`evaluate: ${d4}`);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

nativeTest('the VLM layer table and calibration: native equals the twin', (t) => {
  const models = ['internvl-chat-1.5', 'internvl-chat-1.5-plus', 'internvl-300m-internlm2-7b', 'llava-1.5-7b'];
  fc.assert(
    fc.property(
      fc.constantFrom(...models),
      fc.constantFrom('A100-80G', 'H100-80G', 'H200'),
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 3 }),
      fc.double({ min: 0, max: 40, noNaN: true }),
      fc.double({ min: 1, max: 16384, noNaN: true }),
      fc.record({ gradBytes: fc.constantFrom(2, 4), frozenVit: fc.boolean(), frozenLlm: fc.boolean(), flashAttention: fc.boolean() }),
      fc.option(fc.array(fc.oneof(fc.constant(null), fc.tuple(fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0.01, max: 1, noNaN: true }))), { minLength: 6, maxLength: 6 })),
      fc.option(fc.tuple(fc.double({ min: 0, max: 40, noNaN: true }), fc.double({ min: 1, max: 16384, noNaN: true }))),
      (m, g, tp, dp, zero, tiles, tokens, setup, costs, second) => {
        const spec = modelPreset(m);
        const gpu = gpuInput({
          ...gpuPreset(g),
          // Calibrated kinds: their own fixed cost and efficiency.
          ...(costs && { layerCost: Object.fromEntries(costs.flatMap((c, k) => (c ? [[LAYER_KINDS[k], { overheadMs: c[0], efficiency: c[1] }]] : []))) }),
        });
        const shape = { tp, dp, zero, tiles, tokens, sumSqLen: (tokens * tokens) / 3, ...setup };
        const d = sameOnBothBackends((api) => api.vlmLayerTable(spec, gpu, shape));
        if (d) throw new Error(d);
        // Patch embedding, two ViT blocks, the token embedding, an LLM block twice.
        const layers = Uint32Array.from([0, 1, 2, spec.vit.layers + 2, spec.vit.layers + 4, spec.vit.layers + 4]);
        const times = Float64Array.from([0.5, 3, 4, 0.2, 5, 2]);
        const bounds = Uint32Array.from([0, 10, 4, 11, spec.vit.layers + 5, 2]);
        const memory = Float64Array.from([1e10, 3e10, 2e10, 5e10]);
        // With `second`: every other measurement at another load (format 2), so kinds get a
        // fixed cost as well as an efficiency.
        const loads = second ? Float64Array.from(Array.from(times, (_, j) => (j % 2 ? [second[0], second[1], second[1] * 3] : [tiles, tokens, tokens * 7])).flat()) : undefined;
        const measured = { measuredLayers: layers, measuredForwardMs: times, measuredLoads: loads, stageBounds: bounds, stageMemory: memory };
        const c = sameOnBothBackends((api) => api.calibrateModel(spec, gpu, { ...shape, sumSqLen: tokens * 7 }, measured));
        if (c) throw new Error(`calibrate: ${c}`);
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});
