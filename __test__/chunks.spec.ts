// The interleaved chunk planner: native equals the twin (errors included), the plan is optimal
// against brute force on small instances (on whichever backend runs; the objective is the
// simulated step), deterministic, and at one chunk per device never slower than the contiguous
// stage DP's split.
import test from 'ava';
import fc from 'fast-check';
import { exportMegatronChunks } from '../src/export/megatron-chunks';
import { chunksWithMemoryHint, partitionChunksForTarget } from '../src/model/chunk-target';
import { evaluateChunks, uniformInterleavedStep } from '../src/model/chunk-evaluate';
import { partitionChunks, partitionStages, vlmStageProblem, type StageProblem } from '../src/model/index';
import { chunkInFlight, simulateStep } from '../src/simulate/index';
import { evenChunkEnds, farOverMemory, nativeTest, sameOnBothBackends } from './helpers';

const problemArb = fc
  .record({
    layers: fc.array(
      fc.record({
        f: fc.integer({ min: 0, max: 30 }),
        b: fc.integer({ min: 0, max: 60 }),
        w: fc.integer({ min: 0, max: 40 }),
        a: fc.integer({ min: 0, max: 60 }),
        c: fc.integer({ min: 0, max: 20 }),
        s: fc.integer({ min: 0, max: 60 }),
        e: fc.integer({ min: 0, max: 4 }),
        g: fc.integer({ min: 0, max: 2 }),
      }),
      { minLength: 1, maxLength: 14 },
    ),
    stages: fc.integer({ min: 1, max: 4 }),
    mult: fc.integer({ min: 1, max: 3 }),
    spoilMicroBatches: fc.boolean(),
    memoryBytes: fc.integer({ min: 1, max: 2000 }),
    overhead: fc.integer({ min: 0, max: 10 }),
    recompute: fc.constantFrom('none', 'full', 'block', 'any', 'selective', 'uniform', 'selective-all'),
    uniformLayers: fc.integer({ min: 0, max: 3 }),
    selective: fc.boolean(),
    schedule: fc.constantFrom('interleaved', 'interleaved', 'interleaved', '1f1b'),
    virtualStages: fc.integer({ min: 1, max: 3 }),
    comm: fc.boolean(),
    firstMin: fc.integer({ min: 0, max: 3 }),
    groups: fc.boolean(),
  })
  .map(
    (r): StageProblem => ({
      forwardMs: Float64Array.from(r.layers, (x) => x.f),
      backwardMs: Float64Array.from(r.layers, (x) => x.b),
      staticBytes: Float64Array.from(r.layers, (x) => x.w),
      activationBytes: Float64Array.from(r.layers, (x) => x.a),
      checkpointBytes: Float64Array.from(r.layers, (x) => x.c),
      selectiveBytes: r.selective ? Float64Array.from(r.layers, (x) => x.s) : undefined,
      selectiveMs: r.selective ? Float64Array.from(r.layers, (x) => (x.f * x.e) / 4) : undefined,
      schedule: r.schedule as 'interleaved' | '1f1b',
      virtualStages: r.virtualStages,
      stages: r.stages,
      microBatches: r.stages * r.mult + (r.spoilMicroBatches && r.stages > 1 && r.mult === 3 ? 1 : 0),
      memoryBytes: r.memoryBytes,
      stageOverheadBytes: r.overhead,
      commMs: r.comm ? Float64Array.from({ length: Math.max(r.layers.length - 1, 0) }, (_, i) => (i * 7) % 5) : undefined,
      recompute: r.recompute,
      uniformLayers: r.uniformLayers,
      firstStageMinLayers: r.firstMin,
      recomputeGroups: r.groups ? Uint32Array.from(r.layers, (x) => x.g) : undefined,
    }),
  );

const inputOf = (p: StageProblem) => ({
  forwardMs: p.forwardMs,
  backwardMs: p.backwardMs,
  staticBytes: p.staticBytes,
  activationBytes: p.activationBytes,
  checkpointBytes: p.checkpointBytes,
  selectiveBytes: p.selectiveBytes,
  selectiveMs: p.selectiveMs,
  schedule: p.schedule,
  virtualStages: p.virtualStages,
  stages: p.stages,
  microBatches: p.microBatches,
  memoryBytes: p.memoryBytes,
  stageOverheadBytes: p.stageOverheadBytes,
  commMs: p.commMs,
  recompute: p.recompute,
  uniformLayers: p.uniformLayers,
  firstStageMinLayers: p.firstStageMinLayers,
  recomputeGroups: p.recomputeGroups,
});

nativeTest('partitionChunks: native equals the twin on random problems, errors included', (t) => {
  let planned = 0;
  fc.assert(
    fc.property(problemArb, (p) => {
      const d = sameOnBothBackends((api) => {
        const out = api.partitionChunks(inputOf(p));
        planned++;
        return out;
      });
      if (d) throw new Error(d);
    }),
    { numRuns: 400 },
  );
  t.true(planned > 100, `${planned} plans`);
});

/** The simulator's step for one rank whose `m` micro-batches all take these chunk times: every chunk time copied `m` times into a full `simulateStep` input. */
function simulatedStep(P: number, m: number, v: number, fwd: Float64Array, bwd: Float64Array, transferMs: Float64Array): number {
  const chunkForwardMs = new Float64Array(m * v * P);
  const chunkBackwardMs = new Float64Array(m * v * P);
  for (let i = 0; i < m; i++) {
    chunkForwardMs.set(fwd, i * v * P);
    chunkBackwardMs.set(bwd, i * v * P);
  }
  const zeros = (n: number) => new Float64Array(n);
  return simulateStep({ dp: 1, pp: P, microBatches: m, forwardMs: zeros(m * P), backwardMs: zeros(m * P), transferMs, gradBytes: zeros(P), allreduceBytesPerS: 0, activationBytes: zeros(P), schedule: 'interleaved', virtualStages: v, chunkForwardMs, chunkBackwardMs }).stepMs;
}

test('uniformInterleavedStep (one replay) is bit-identical to the full simulateStep input, and refuses bad input with its error', (t) => {
  const time = fc.oneof(fc.double({ min: 0, max: 1000, noNaN: true }), fc.integer({ min: 0, max: 50 }), fc.constant(0));
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.array(time, { minLength: 96, maxLength: 96 }), (P, mult, v, xs) => {
      const K = v * P;
      const fwd = Float64Array.from({ length: K }, (_, i) => xs[i % 96]);
      const bwd = Float64Array.from({ length: K }, (_, i) => xs[(i + 37) % 96]);
      const transferMs = Float64Array.from({ length: P - 1 }, (_, i) => xs[(i + 71) % 96]);
      const m = v > 1 ? P * mult : mult + P;
      const a = uniformInterleavedStep(P, m, v, fwd, bwd, transferMs);
      const b = simulatedStep(P, m, v, fwd, bwd, transferMs);
      if (!Object.is(a, b)) throw new Error(`P ${P} m ${m} v ${v}: ${a} vs ${b}`);
    }),
    { numRuns: 1000 },
  );
  const ok = Float64Array.from([1, 2, 3, 4]);
  for (const [P, m, v, fwd, bwd, tr] of [
    [2, 4, 2, Float64Array.from([1, -1, 3, 4]), ok, Float64Array.from([1])],
    [2, 4, 2, ok, Float64Array.from([1, 2, NaN, 4]), Float64Array.from([1])],
    [2, 4, 2, ok, ok, Float64Array.from([-2])],
    [2, 3, 2, ok, ok, Float64Array.from([1])],
    [1, 4, 65, new Float64Array(65), new Float64Array(65), new Float64Array(0)],
    [2, 4, 2, Float64Array.from([1e308, 1e308, 1e308, 1e308]), ok, Float64Array.from([1])],
  ] as const) {
    const mine = t.throws(() => uniformInterleavedStep(P, m, v, fwd, bwd, tr));
    const theirs = t.throws(() => simulatedStep(P, m, v, fwd, bwd, tr));
    t.is(mine?.message, theirs?.message);
    t.is((mine as { code?: string })?.code, (theirs as { code?: string })?.code);
  }
});

/**
 * Every chunking, every `block` choice per chunk, priced layer by layer with `chunkInFlight`: per
 * stage the least added time that fits (among equal ones the least on its earlier chunks, the
 * planner's rule), per chunking the step `simulateStep` predicts (`simulatedStep`, not the planner's replay): the least step.
 */
function bruteForce(p: StageProblem): number {
  const v = p.virtualStages ?? 2;
  const P = p.stages;
  const K = v * P;
  const L = p.forwardMs.length;
  const M = p.microBatches;
  const cut = (r: number) => (P > 1 && r + 1 < L && p.commMs ? p.commMs[r] : 0);
  let best = Infinity;
  const ends: number[] = new Array(K).fill(0);
  const visit = () => {
    if (ends[0] + 1 < (p.firstStageMinLayers ?? 0)) return;
    const fwd = new Float64Array(K);
    const bwd = new Float64Array(K);
    const transferMs = new Float64Array(P - 1);
    for (let s = 0; s < P; s++) {
      const ranges = Array.from({ length: v }, (_, j) => {
        const c = j * P + s;
        return [c === 0 ? 0 : ends[c - 1] + 1, ends[c]];
      });
      let w = 0;
      let cuts = 0;
      ranges.forEach(([a, b], j) => {
        for (let i = a; i <= b; i++) {
          w += p.staticBytes[i];
          fwd[j * P + s] += p.forwardMs[i];
          bwd[j * P + s] += p.backwardMs[i];
        }
        cuts += cut(b);
      });
      if (s + 1 < P) transferMs[s] = cuts / v;
      let least: [number, number[]] | undefined;
      const pick = new Array(v).fill(0);
      for (;;) {
        const per = new Array<number>(v).fill(0);
        const kept = ranges.map(([a, b], c) => {
          let x = 0;
          for (let i = a; i <= b; i++) {
            if (i < a + pick[c]) {
              per[c] += p.forwardMs[i];
              x += p.checkpointBytes[i];
            } else x += p.activationBytes[i];
          }
          return x;
        });
        const extra = per.reduce((x, y) => x + y, 0);
        const peak = chunkInFlight({ schedule: 'interleaved', virtualStages: v, pp: P, stage: s, microBatches: M, chunkBytes: Float64Array.from(kept) }).bytes;
        const earlier = (q: number[]) => {
          for (let c = 0; c < v; c++) if (per[c] !== q[c]) return per[c] < q[c];
          return false;
        };
        if (w + peak + (p.stageOverheadBytes ?? 0) <= p.memoryBytes && (least === undefined || extra < least[0] || (extra === least[0] && earlier(least[1])))) least = [extra, per];
        let c = 0;
        while (c < v) {
          pick[c]++;
          if (pick[c] <= ranges[c][1] - ranges[c][0] + 1) break;
          pick[c] = 0;
          c++;
        }
        if (c === v) break;
      }
      if (least === undefined) return;
      least[1].forEach((e, j) => (bwd[j * P + s] += e));
    }
    const step = simulatedStep(P, M, v, fwd, bwd, transferMs);
    best = Math.min(best, step);
  };
  const each = (c: number, start: number) => {
    if (c === K - 1) {
      ends[c] = L - 1;
      visit();
      return;
    }
    for (let e = start; e <= L - (K - c); e++) {
      ends[c] = e;
      each(c + 1, e + 1);
    }
  };
  each(0, 0);
  return best;
}

test('partitionChunks: optimal against brute force on small instances, deterministic', (t) => {
  let feasible = 0;
  fc.assert(
    fc.property(
      problemArb.filter((p) => p.forwardMs.length <= 9),
      fc.integer({ min: 2, max: 3 }),
      (q, v) => {
        const p: StageProblem = { ...q, schedule: 'interleaved', virtualStages: v, stages: Math.min(q.stages, 3), recompute: 'block', microBatches: Math.min(q.stages, 3) * 2 };
        if (p.forwardMs.length < v * p.stages || (p.firstStageMinLayers ?? 0) > p.forwardMs.length - v * p.stages + 1) return;
        const best = bruteForce(p);
        let plan;
        try {
          plan = partitionChunks(p);
        } catch (e) {
          if ((e as { code?: string }).code === 'ERR_OMNIBAL_INFEASIBLE' && best === Infinity) return;
          throw e;
        }
        feasible++;
        if (!plan.optimal) throw new Error('budget hit on a small instance');
        if (Math.abs(plan.objectiveMs - best) > 1e-9 * Math.max(best, 1)) throw new Error(`${plan.objectiveMs} vs brute force ${best}`);
        if (plan.stages.some((s) => s.memoryBytes > p.memoryBytes)) throw new Error('a stage over memory');
        t.deepEqual(partitionChunks(p), plan);
      },
    ),
    { numRuns: 250 },
  );
  t.true(feasible > 30, `${feasible} feasible`);
});

test('partitionChunks at one chunk per device is never slower than the contiguous DP split, scored the same way', (t) => {
  let compared = 0;
  fc.assert(
    fc.property(problemArb, (q) => {
      // Modes whose recomputation evaluateChunks replays (full recomputation of listed layers).
      const recompute = q.recompute === 'any' || q.recompute === 'selective' || q.recompute === 'selective-all' ? 'block' : q.recompute;
      const p: StageProblem = { ...q, schedule: 'interleaved', virtualStages: 1, microBatches: q.stages * 2, recompute };
      let a: number | string;
      let optimal = false;
      let b: number | string;
      try {
        const plan = partitionChunks(p);
        a = plan.objectiveMs;
        optimal = plan.optimal;
      } catch (e) {
        a = (e as { code: string }).code;
      }
      try {
        const dp = partitionStages(p);
        b = evaluateChunks(
          p,
          dp.stages.map((s) => s.lastLayer),
          dp.stages.flatMap((s) => s.recomputeLayers),
        ).objectiveMs;
      } catch (e) {
        b = (e as { code: string }).code;
      }
      if (typeof a === 'number' && typeof b === 'number') {
        compared++;
        if (!optimal) throw new Error('budget hit on a small instance');
        if (a > b * (1 + 1e-9)) throw new Error(`${a} vs ${b}`);
      } else if (a !== b) throw new Error(`${a} vs ${b}`);
    }),
    { numRuns: 300 },
  );
  t.true(compared > 50, `${compared} compared`);
});

test('partitionChunks rejects what it cannot plan with coded errors', (t) => {
  const p: StageProblem = {
    forwardMs: new Float64Array(8).fill(1),
    backwardMs: new Float64Array(8).fill(2),
    staticBytes: new Float64Array(8).fill(1),
    activationBytes: new Float64Array(8).fill(1),
    checkpointBytes: new Float64Array(8),
    stages: 4,
    microBatches: 8,
    memoryBytes: 100,
    schedule: 'interleaved',
    virtualStages: 2,
  };
  const plan = partitionChunks(p);
  t.is(plan.chunks.length, 8);
  t.deepEqual(
    plan.chunks.map((c) => c.stage),
    [0, 1, 2, 3, 0, 1, 2, 3],
  );
  t.true(plan.optimal);
  t.is(t.throws(() => partitionChunks({ ...p, schedule: '1f1b' }))?.message, 'schedule must be interleaved for the chunk planner');
  t.regex(t.throws(() => partitionChunks({ ...p, virtualStages: 3 }))?.message ?? '', /at least as many as the model chunks \(virtualStages x stages = 12\), got 8/);
  t.regex(t.throws(() => partitionChunks({ ...p, microBatches: 6 }))?.message ?? '', /multiple of pp \(4\)/);
  t.is((t.throws(() => partitionChunks({ ...p, memoryBytes: 1.5 })) as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE');
});

nativeTest('partitionChunks: native equals the twin on InternVL-Chat-1.5 PP 8, v = 2 (the search stops at its budget)', (t) => {
  const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load: { tiles: 6, tokens: 4096 }, schedule: 'interleaved', virtualStages: 2 });
  const d = sameOnBothBackends((api) => api.partitionChunks(inputOf(p)));
  t.is(d, null);
  const plan = partitionChunks(p);
  t.false(plan.optimal);
  t.true(plan.lowerBoundMs < plan.objectiveMs);
  t.true(plan.stages.every((s) => s.memoryBytes <= p.memoryBytes));
  // The breakdown adds up to the planner's own memory figure.
  for (const s of plan.stages) {
    const m = s.memory;
    t.true(Math.abs(m.weights + m.gradients + m.optimizer + m.activations + m.checkpoints + m.fixed - s.memoryBytes) < 1e-3 * s.memoryBytes);
  }
});

test('partitionChunks proves a chunk plan cannot fit when the first chunk alone overflows (was: the whole node budget, then "the search found no" plan)', (t) => {
  // InternVL-Chat-1.5 PP 8, v = 2, the ViT, projector and embedding pinned to chunk 0 (as
  // --target megatron does): the 6B ViT's weights and its held micro-batches overflow 80 GiB
  // whatever the later chunks are, so every branch is cut at chunk 0.
  const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load: { tiles: 18, tokens: 5000 }, schedule: 'interleaved', virtualStages: 2, embeddingOnFirstStage: true, recompute: 'full' });
  const e = t.throws(() => partitionChunks(p)) as Error & { code?: string };
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  t.regex(e.message, /^no interleaved plan \(2 x 8 chunks\) fits/);
  t.notRegex(e.message, /node budget/);
  // With the memory the error path finds, it plans (the bound never cuts a plan that fits).
  const plan = partitionChunks({ ...p, memoryBytes: 150 * 2 ** 30 });
  t.true(plan.stages.every((s) => s.memoryBytes <= 150 * 2 ** 30));
});

test('an interleaved problem far over its memory names the least --memory-gib that fits, however far (was: "not even 64 times this memory fits" past 64 GiB)', (t) => {
  const GIB = 2 ** 30;
  const p = farOverMemory();
  const e = t.throws(() => chunksWithMemoryHint(p)) as Error & { code?: string };
  t.is(e.code, 'ERR_OMNIBAL_INFEASIBLE');
  const m = /--memory-gib (\d+\.\d\d)$/.exec(e.message);
  t.truthy(m, e.message);
  const gib = Number(m?.[1]);
  t.true(gib > 200);
  t.notThrows(() => partitionChunks({ ...p, memoryBytes: gib * GIB }));
  t.is((t.throws(() => partitionChunks({ ...p, memoryBytes: (gib - 0.01) * GIB })) as { code?: string }).code, 'ERR_OMNIBAL_INFEASIBLE');
});

test('partitionChunks on InternVL-Chat-1.5 PP 8: the simulated step is at most Megatron-LM\'s uniform chunking\'s (v = 2, 3), at the same memory', (t) => {
  const load = { tiles: 18, tokens: 5000, sumSqLen: (5000 * 5000) / 4.5 };
  for (const v of [2, 3]) {
    const p = vlmStageProblem({ model: 'internvl-chat-1.5', gpu: 'A100-80G', pp: 8, dp: 8, microBatches: 32, load, schedule: 'interleaved', virtualStages: v });
    const plan = partitionChunks(p);
    t.true(plan.stages.every((s) => s.memoryBytes <= p.memoryBytes));
    // The planner's figure is the simulation of its own chunks, as a saved plan replays it.
    const again = evaluateChunks(
      p,
      plan.chunks.map((c) => c.lastLayer),
      plan.chunks.flatMap((c) => c.recomputeLayers),
    );
    t.true(Math.abs(again.objectiveMs - plan.objectiveMs) <= 1e-9 * plan.objectiveMs, `${again.objectiveMs} vs ${plan.objectiveMs}`);
    // Megatron-LM's uniform layout: the layers spread evenly over the v x P chunks, each chunk
    // recomputing its first k layers (--recompute-num-layers k, applied per chunk); the fastest k
    // whose every stage fits.
    const L = p.forwardMs.length;
    const K = v * p.stages;
    const ends = evenChunkEnds(L, K);
    let uniform = Infinity;
    let bestK = -1;
    for (let k = 0; k <= Math.ceil(L / K); k++) {
      const rec = ends.flatMap((e, c) => {
        const first = c === 0 ? 0 : ends[c - 1] + 1;
        return Array.from({ length: Math.min(k, e - first + 1) }, (_, i) => first + i);
      });
      const u = evaluateChunks(p, ends, rec);
      if (u.stages.every((s) => s.memoryBytes <= p.memoryBytes) && u.objectiveMs < uniform) {
        uniform = u.objectiveMs;
        bestK = k;
      }
    }
    t.true(Number.isFinite(uniform), `v ${v}: some uniform setting fits`);
    t.true(plan.objectiveMs <= uniform, `v ${v}: ${plan.objectiveMs} vs uniform ${uniform}`);
    t.log(`v ${v}: planned ${plan.objectiveMs.toFixed(0)} ms, Megatron uniform chunks (k ${bestK}) ${uniform.toFixed(0)} ms, bound ${plan.lowerBoundMs.toFixed(0)} ms`);
  }
});

test('exportMegatronChunks: v x P layout segments in chunk order, the per-virtual-stage count when even, and what it cannot express', (t) => {
  const kinds = ['vit-embed', 'vit', 'projector', 'embed', 'llm', 'llm', 'llm', 'llm', 'llm', 'llm', 'llm', 'llm', 'head'] as const;
  const n = kinds.length;
  const problem: StageProblem = {
    forwardMs: new Float64Array(n).fill(1),
    backwardMs: new Float64Array(n).fill(2),
    staticBytes: new Float64Array(n),
    activationBytes: new Float64Array(n),
    checkpointBytes: new Float64Array(n),
    stages: 2,
    microBatches: 4,
    memoryBytes: 1,
    schedule: 'interleaved',
    virtualStages: 2,
    layerKinds: [...kinds],
  };
  const planOf = (ends: number[]) => {
    const chunks = ends.map((last, c) => ({ firstLayer: c === 0 ? 0 : ends[c - 1] + 1, lastLayer: last, stage: c % 2, layerNames: [], recomputeLayers: [], selectiveLayers: [], timeMs: 1, held: 1 }));
    const stage = (s: number) => ({ chunks: [s, s + 2], timeMs: 2, memoryBytes: 0, memory: { weights: 0, gradients: 0, optimizer: 0, activations: 0, checkpoints: 0, fixed: 0 }, inFlight: 1 });
    return { virtualStages: 2, chunks, stages: [stage(0), stage(1)], objectiveMs: 1, bottleneckMs: 1, lowerBoundMs: 1, optimal: true };
  };
  const even = exportMegatronChunks(problem, planOf([5, 7, 9, 12]));
  t.is(even.layout, 'Ett|tt|tt|ttL');
  t.deepEqual(
    even.alternatives.map((a) => a.argv),
    [
      // The layout alone: Megatron-LM derives the virtual size from it (no --virtual-pipeline-model-parallel-size flag).
      ['--pipeline-model-parallel-size', '2', '--pipeline-model-parallel-layout', 'Ett|tt|tt|ttL'],
      ['--pipeline-model-parallel-size', '2', '--num-layers-per-virtual-pipeline-stage', '2'],
    ],
  );
  t.deepEqual(even.unsupported, []);
  const uneven = exportMegatronChunks(problem, planOf([6, 7, 9, 12]));
  t.deepEqual(
    uneven.alternatives.map((a) => a.name),
    ['layout'],
  );
  // The ViT split over chunks 0 and 1, the embedding in chunk 1: no arguments, and why.
  const split = exportMegatronChunks(problem, planOf([0, 5, 9, 12]));
  t.deepEqual(split.alternatives, []);
  t.true(split.unsupported.some((u) => /vision encoder spans stages 0, 1/.test(u)));
  t.true(split.unsupported.some((u) => /LLM embedding is on stage 1/.test(u)));
});

test('Megatron-LM cannot run v model chunks on one pipeline stage: the export has no arguments and says why, --target megatron refuses', (t) => {
  // megatron/training/arguments.py validate_args: the interleaved schedule needs pp > 1.
  const p = vlmStageProblem({ model: 'internvl-300m-internlm2-7b', gpu: 'H200', pp: 1, dp: 8, microBatches: 4, load: { tiles: 2, tokens: 2000 }, schedule: 'interleaved', virtualStages: 2, embeddingOnFirstStage: true });
  const m = exportMegatronChunks(p, partitionChunks(p));
  t.deepEqual(m.alternatives, []);
  t.deepEqual(m.args, []);
  t.is(m.layout, null);
  t.true(m.unsupported.some((u) => /one pipeline stage: Megatron-LM's interleaved schedule needs a pipeline-model-parallel size greater than 1/.test(u)), m.unsupported.join('; '));
  const e = t.throws(() => partitionChunksForTarget(p, 'megatron')) as { code?: string; message: string };
  t.is(e.code, 'ERR_OMNIBAL_INVALID_OPTIONS');
  t.regex(e.message, /needs at least 2 pipeline stages/);
  // One chunk per device on one stage is plain 1F1B: exported as usual.
  const one = { ...p, virtualStages: 1 };
  t.true(exportMegatronChunks(one, partitionChunks(one)).alternatives.length > 0);
});
