/**
 * A given interleaved chunk layout priced as {@link partitionChunks} prices its own: for a saved
 * (possibly hand-edited) plan, and the per-device view of a chunk plan that reports and the
 * simulator read.
 *
 * Each chunk's time is its layers' forward + backward, a forward again for each fully
 * recomputed layer, and the cut after its last layer (none after the model's last layer, none
 * with one stage); a device's time is the sum of its chunks'. A device's memory is its layers'
 * static bytes, the fixed stage overhead, and its held activations at the schedule's peak: the
 * per-chunk held micro-batches the schedule's replay gives ({@link chunkInFlight}, the same
 * replay the planner's `chunk_states` run) times each chunk's kept bytes (a recomputed layer keeps
 * its checkpoint, any other its activations). Memory is reported, not enforced. The iteration time
 * is the simulated step ({@link simulateStep}) of one rank whose micro-batches all take the
 * problem's times: each chunk its forward, and its backward plus its recomputation; one transfer
 * time per device boundary, the mean of that device's chunks' cuts; no all-reduce. The chunk
 * planner scores its plans the same way, so a saved plan replays to the figure it was planned at.
 *
 * @module
 */
import { invalidOptions } from '../errors';
import { chunkInFlight, simulateStep } from '../simulate/index';
import { ChunkReplayTwin } from '../simulate/simulate';
import { expectNumberList } from '../validate';
import { checkStageProblem, type ChunkInfo, type ChunkPlan, type ChunkStageInfo, type MemoryBreakdown, type StagePlan, type StageProblem } from './index';

/**
 * Predicted figures of a given interleaved layout: `v x P` contiguous chunks (chunk `c` ends at
 * `chunkLastLayers[c]` and runs on device `c mod P`), with the given layers fully recomputed.
 *
 * @param problem - the stage problem (`schedule: 'interleaved'`, `virtualStages` = `v`)
 * @param chunkLastLayers - each chunk's last layer, ascending, the last one the model's last layer
 * @param recomputeLayers - the fully recomputed layers (absolute indices)
 * @returns the chunk plan with its predicted times and memory (`optimal: false`; `lowerBoundMs` a
 *   bound on any chunking's simulated step: the busiest device at least `M` times the bare layer
 *   time over `P`, and one micro-batch through every layer)
 * @throws `ERR_OMNIBAL_INVALID_OPTIONS` when the chunks do not cover the layers in order
 */
export function evaluateChunks(problem: StageProblem, chunkLastLayers: number[], recomputeLayers: number[]): ChunkPlan {
  checkStageProblem(problem);
  expectNumberList('chunkLastLayers', chunkLastLayers);
  expectNumberList('recomputeLayers', recomputeLayers);
  const P = problem.stages;
  const v = problem.virtualStages ?? 2;
  const L = problem.forwardMs.length;
  const K = v * P;
  if (chunkLastLayers.length !== K) throw invalidOptions(`an interleaved layout needs virtualStages x stages = ${K} chunks, got ${chunkLastLayers.length}`);
  chunkLastLayers.forEach((r, c) => {
    const first = c === 0 ? 0 : chunkLastLayers[c - 1] + 1;
    if (!Number.isInteger(r) || r < first || r >= L) throw invalidOptions(`chunk ${c} must end at a layer from ${first} to ${L - 1}, got ${r}`);
  });
  if (chunkLastLayers[K - 1] !== L - 1) throw invalidOptions(`the last chunk must end at the model's last layer ${L - 1}, got ${chunkLastLayers[K - 1]}`);
  const recomputed = new Uint8Array(L);
  for (const l of recomputeLayers) recomputed[l] = 1;
  const comm = problem.commMs;
  const split = problem.weightBytes !== undefined && problem.gradientBytes !== undefined && problem.optimizerBytes !== undefined;
  const chunks: ChunkInfo[] = [];
  const act = new Float64Array(K);
  const ckpt = new Float64Array(K);
  const fwd = new Float64Array(K);
  const bwd = new Float64Array(K);
  const cutAfter = new Float64Array(K);
  for (let c = 0; c < K; c++) {
    const first = c === 0 ? 0 : chunkLastLayers[c - 1] + 1;
    const last = chunkLastLayers[c];
    let time = 0;
    const rec: number[] = [];
    for (let l = first; l <= last; l++) {
      time += problem.forwardMs[l] + problem.backwardMs[l];
      fwd[c] += problem.forwardMs[l];
      bwd[c] += problem.backwardMs[l];
      if (recomputed[l]) {
        time += problem.forwardMs[l];
        bwd[c] += problem.forwardMs[l];
        ckpt[c] += problem.checkpointBytes[l];
        rec.push(l);
      } else act[c] += problem.activationBytes[l];
    }
    if (P > 1 && last + 1 < L && comm !== undefined && comm.length > 0) {
      time += comm[last];
      cutAfter[c] = comm[last];
    }
    chunks.push({ firstLayer: first, lastLayer: last, stage: c % P, layerNames: problem.layerNames?.slice(first, last + 1) ?? [], recomputeLayers: rec, selectiveLayers: [], timeMs: time, held: 0 });
  }
  const stages: ChunkStageInfo[] = [];
  let max = 0;
  for (let s = 0; s < P; s++) {
    const mine = Array.from({ length: v }, (_, j) => j * P + s);
    const kept = Float64Array.from(mine, (c) => act[c] + ckpt[c]);
    const peak = chunkInFlight({ schedule: 'interleaved', virtualStages: v, pp: P, stage: s, microBatches: problem.microBatches, chunkBytes: kept });
    const memory: MemoryBreakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0, checkpoints: 0, fixed: problem.stageOverheadBytes ?? 0 };
    let staticBytes = 0;
    let time = 0;
    let held = 0;
    mine.forEach((c, j) => {
      const ch = chunks[c];
      ch.held = peak.counts[j];
      held += ch.held;
      time += ch.timeMs;
      for (let l = ch.firstLayer; l <= ch.lastLayer; l++) {
        staticBytes += problem.staticBytes[l];
        if (split) {
          memory.weights += problem.weightBytes![l];
          memory.gradients += problem.gradientBytes![l];
          memory.optimizer += problem.optimizerBytes![l];
        } else memory.weights += problem.staticBytes[l];
      }
      memory.activations += ch.held * act[c];
      memory.checkpoints += ch.held * ckpt[c];
    });
    max = Math.max(max, time);
    stages.push({ chunks: mine, timeMs: time, memoryBytes: staticBytes + peak.bytes + (problem.stageOverheadBytes ?? 0), memory, inFlight: held / v });
  }
  const objectiveMs = uniformInterleavedStep(P, problem.microBatches, v, fwd, bwd, deviceTransferMs(P, v, (c) => cutAfter[c]));
  const bare = bareLayerMs(problem);
  const lowerBoundMs = Math.max(problem.microBatches * (bare.total / P), bare.total);
  return { virtualStages: v, chunks, stages, objectiveMs, bottleneckMs: max, optimal: false, lowerBoundMs };
}

/**
 * The transfer time after each device of a `v x P` chunk layout, as the simulator takes it (one
 * transfer per device boundary): the mean of the cuts after that device's chunks, summed in chunk
 * order (the chunk planner's `step_input` does the same).
 *
 * @param P - devices
 * @param v - model chunks per device
 * @param cutAfter - the cut after chunk `c` (layer order, `c = j P + s`), ms
 * @returns `P - 1` transfer times, ms
 */
export function deviceTransferMs(P: number, v: number, cutAfter: (c: number) => number): Float64Array {
  const transferMs = new Float64Array(Math.max(P - 1, 0));
  for (let s = 0; s + 1 < P; s++) {
    let cuts = 0;
    for (let j = 0; j < v; j++) cuts += cutAfter(j * P + s);
    transferMs[s] = cuts / v;
  }
  return transferMs;
}

/** The replay {@link uniformInterleavedStep} ran last (one shape kept, so memory stays bounded). */
let lastReplay: ChunkReplayTwin | undefined;

/**
 * The interleaved schedule's simulated step ({@link simulateStep}) for one rank whose `m`
 * micro-batches all take the same time per model chunk: `fwd[u]` / `bwd[u]` for chunk `u = j P + s`
 * (chunk `j` of device `s`), `transferMs` after each device (`P - 1`); no all-reduce.
 *
 * Valid inputs are replayed once with {@link ChunkReplayTwin} (the replay the chunk planner scores
 * with; bit-identical to `simulateStep` on both backends, see chunks.spec.ts) instead of copying
 * the chunk times `m` times into a full simulator input; any other input goes to
 * {@link simulateStep}, so it is refused with the simulator's error.
 *
 * @param P - devices
 * @param m - micro-batches (a multiple of `P` when `v > 1`)
 * @param v - model chunks per device
 * @param fwd - forward time per chunk, ms
 * @param bwd - backward time (recomputation included) per chunk, ms
 * @param transferMs - transfer time across the cut after each device, ms
 * @returns the simulated step, ms
 */
export function uniformInterleavedStep(P: number, m: number, v: number, fwd: Float64Array, bwd: Float64Array, transferMs: Float64Array): number {
  const count = (x: number, most: number) => Number.isInteger(x) && x >= 1 && x <= most;
  const times = (xs: Float64Array) => xs.every((x) => Number.isFinite(x) && x >= 0);
  if (count(P, 1 << 12) && count(v, 64) && count(m, 1 << 20) && (v === 1 || m % P === 0) && fwd.length === v * P && bwd.length === v * P && transferMs.length === P - 1 && times(transferMs) && times(fwd) && times(bwd)) {
    // The last shape's replay is kept: callers price several layouts of one shape in a row (the
    // CLI's baselines), and building the operation orders costs about as much as a replay.
    if (lastReplay === undefined || lastReplay.virtualStages !== v || lastReplay.pp !== P || lastReplay.m !== m) lastReplay = new ChunkReplayTwin(v, P, m);
    const step = lastReplay.stepMs(fwd, bwd, transferMs);
    // A step that overflows is the simulator's to refuse.
    if (Number.isFinite(step)) return step;
  }
  const chunkForwardMs = new Float64Array(m * v * P);
  const chunkBackwardMs = new Float64Array(m * v * P);
  for (let i = 0; i < m; i++) {
    chunkForwardMs.set(fwd, i * v * P);
    chunkBackwardMs.set(bwd, i * v * P);
  }
  return simulateStep({
    dp: 1,
    pp: P,
    microBatches: m,
    forwardMs: new Float64Array(m * P),
    backwardMs: new Float64Array(m * P),
    transferMs,
    gradBytes: new Float64Array(P),
    allreduceBytesPerS: 0,
    activationBytes: new Float64Array(P),
    schedule: 'interleaved',
    virtualStages: v,
    chunkForwardMs,
    chunkBackwardMs,
  }).stepMs;
}

/** The layers' bare forward + backward time: their total and the largest. */
export function bareLayerMs(problem: StageProblem): { total: number; largest: number } {
  let total = 0;
  let largest = 0;
  for (let l = 0; l < problem.forwardMs.length; l++) {
    const t = problem.forwardMs[l] + problem.backwardMs[l];
    total += t;
    largest = Math.max(largest, t);
  }
  return { total, largest };
}

/**
 * A chunk plan seen per device, as a {@link StagePlan} (what the plan's reports, replay checks and
 * the simulator's per-stage inputs read): each device's time, memory and in-flight count, its
 * layers' names and recomputed layers over all its chunks; its `firstLayer` / `lastLayer` are its
 * first chunk's first layer and its last chunk's last layer (it runs only its chunks' layers
 * between them: see the chunk plan). `objectiveMs` is the interleaved iteration time;
 * `lowerBoundMs` bounds the bottleneck as a {@link StagePlan}'s does (max(bare total / P, largest
 * layer)), not the iteration time the chunk plan's own bound is on.
 *
 * @param plan - a chunk plan
 * @param problem - the problem it was planned (or evaluated) for
 * @returns the per-device view
 */
export function chunkDevices(plan: ChunkPlan, problem: StageProblem): StagePlan {
  const bare = bareLayerMs(problem);
  return {
    stages: plan.stages.map((st) => {
      const mine = st.chunks.map((c) => plan.chunks[c]);
      return {
        firstLayer: mine[0].firstLayer,
        lastLayer: mine[mine.length - 1].lastLayer,
        layerNames: mine.flatMap((c) => c.layerNames),
        recomputeLayers: mine.flatMap((c) => c.recomputeLayers),
        selectiveLayers: mine.flatMap((c) => c.selectiveLayers),
        timeMs: st.timeMs,
        memoryBytes: st.memoryBytes,
        memory: st.memory,
        inFlight: st.inFlight,
      };
    }),
    objectiveMs: plan.objectiveMs,
    bottleneckMs: plan.bottleneckMs,
    lowerBoundMs: Math.max(bare.total / plan.stages.length, bare.largest),
  };
}
