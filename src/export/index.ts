/**
 * Exports of a stage plan to what training frameworks accept, each saying what it cannot
 * express instead of emitting something wrong.
 *
 * Megatron-LM rules the Megatron export keeps (megatron/training/arguments.py and
 * megatron/core/transformer/transformer_config.py in the Megatron-LM repository):
 * - `--pipeline-model-parallel-layout` and `--decoder-first/last-pipeline-num-layers` are
 *   mutually exclusive, so each is its own alternative (`argv` arrays, no comments);
 * - `--decoder-first-pipeline-num-layers` and `--decoder-last-pipeline-num-layers` must be > 0,
 *   and the decoder layers left over must divide evenly over the middle stages;
 * - the embedding is built on the first stage and the loss on the last (the layout's `E` and
 *   `L`); the multimodal models build the vision encoder and projector on the first stage too;
 * - one recomputation setting for all stages: `--recompute-granularity full --recompute-method
 *   block --recompute-num-layers k` recomputes the first `min(k, local decoder layers)` decoder
 *   layers of every stage (of every model chunk when interleaved); the ViT is recomputed whole
 *   with `--recompute-vision` (an argument of Megatron-LM's `examples/multimodal` scripts) and
 *   not at all without it (see `crate/core/src/model/recompute.rs` for the source lines);
 *   `--recompute-granularity selective --recompute-modules ...` recomputes those modules in
 *   every layer.
 *
 * @module
 */
import { invalidType } from '../errors';
import { checkStageProblem, type StagePlan, type StageProblem } from '../model/index';
import { describeValue, expectNumber, expectNumberList, expectObject } from '../validate';

/**
 * `plan` if it is shaped as a {@link StagePlan} (a non-empty `stages` list, each stage with its
 * layer numbers and lists), else a coded `TypeError` (`ERR_OMNIBAL_INVALID_TYPE`).
 */
export function checkStagePlanShape(plan: StagePlan, name = 'plan'): StagePlan {
  const stages = expectObject(name, plan).stages as unknown;
  if (!Array.isArray(stages) || stages.length === 0) {
    throw invalidType(`${name}.stages`, `must be a non-empty array of stages, got ${Array.isArray(stages) ? 'an empty array' : describeValue(stages)}`);
  }
  stages.forEach((s: unknown, k) => {
    const stage = expectObject(`${name}.stages[${k}]`, s as Record<string, unknown>);
    expectNumber(`${name}.stages[${k}].firstLayer`, stage.firstLayer);
    expectNumber(`${name}.stages[${k}].lastLayer`, stage.lastLayer);
    expectNumberList(`${name}.stages[${k}].recomputeLayers`, stage.recomputeLayers);
    expectNumberList(`${name}.stages[${k}].selectiveLayers`, stage.selectiveLayers);
  });
  return plan;
}

/** One way to pass the split to Megatron-LM. */
export interface MegatronAlternative {
  /** What this alternative uses: `layout`, `first-last`, or (interleaved chunk plans) `per-virtual-stage`. */
  name: 'layout' | 'first-last' | 'per-virtual-stage';
  /** The arguments, one element each, ready for `subprocess` or `execve` (no comments). */
  argv: string[];
  /** The same arguments as one POSIX-shell-quoted line. */
  command: string;
}

/** Megatron-LM arguments for a plan. */
export interface MegatronExport {
  /** The arguments of the first alternative (kept for callers of earlier versions). */
  args: string[];
  /** Every valid way to pass this split (layout, or first/last stage layer counts), each with the recompute flags. */
  alternatives: MegatronAlternative[];
  /** `--pipeline-model-parallel-layout` value for the LLM decoder, when expressible. */
  layout: string | null;
  /** Fully recomputed LLM decoder layers per stage (Megatron's block method counts). */
  recomputeLayersPerStage: number[];
  /** What Megatron-LM cannot express about this plan; empty when the arguments say it all. */
  unsupported: string[];
}

/** DeepSpeed `PipelineModule` settings for a plan. */
export interface DeepSpeedExport {
  /** Layer boundaries: stage `s` holds layers `parts[s] .. parts[s + 1] - 1`. */
  parts: number[];
  /** Checkpointed (recomputed) layer indices per stage. */
  checkpointLayers: number[][];
  /**
   * A small Python module defining `OmnibalPipelineModule(PipelineModule)`, which imposes
   * `parts` (overriding `_partition_layers`) and checkpoints exactly the listed layers (with
   * `activation_checkpoint_interval = 1` and an overridden `_is_checkpointable`).
   */
  python: string;
  /**
   * What DeepSpeed's own `activation_checkpoint_interval = k` does, for comparison: each
   * stage's local layers are cut into consecutive chunks of `k` and every chunk that holds a
   * layer with parameters is checkpointed as one unit (only the chunk's input is kept); it
   * checkpoints every such chunk, not "the first k layers".
   */
  intervalSemantics: string;
  /** What DeepSpeed cannot take as is. */
  unsupported: string[];
}

const isVision = (k: string) => k === 'vit-embed' || k === 'vit' || k === 'projector';

/**
 * Quotes one argument for a POSIX shell (single quotes unless it is plainly safe).
 *
 * @param arg - one argument
 * @returns the argument, quoted where needed
 */
export function shellQuote(arg: string): string {
  if (typeof arg !== 'string') throw invalidType('arg', `must be a string, got ${describeValue(arg)}`);
  if (arg !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The arguments as one POSIX-shell-quoted line.
 *
 * @param argv - the arguments
 * @returns one line a POSIX shell reads back as `argv`
 */
export function shellLine(argv: string[]): string {
  if (!Array.isArray(argv)) throw invalidType('argv', `must be an array of strings, got ${describeValue(argv)}`);
  return argv.map(shellQuote).join(' ');
}

/**
 * Megatron-LM: the decoder layout (`E` embedding, `t` transformer layer, `L` loss, `|` between
 * stages) or first/last stage layer counts, each a separate alternative, plus the recompute
 * flags. Flags only what Megatron can run; the rest goes to `unsupported`.
 *
 * @param problem - the stage problem the plan was made for
 * @param plan - a plan from `partitionStages` (or any stage plan)
 * @returns the Megatron-LM arguments and layout
 */
export function exportMegatron(problem: StageProblem, plan: StagePlan): MegatronExport {
  checkStageProblem(problem);
  checkStagePlanShape(plan);
  const kinds = problem.layerKinds;
  const unsupported: string[] = [];
  if (!kinds) {
    return {
      args: [],
      alternatives: [],
      layout: null,
      recomputeLayersPerStage: [],
      unsupported: ['the problem has no layer kinds (a --layers file): Megatron needs to know which layers are embedding, decoder and loss'],
    };
  }
  const P = plan.stages.length;
  const stageOf = (kind: string) => plan.stages.findIndex((s) => kinds.slice(s.firstLayer, s.lastLayer + 1).includes(kind as never));
  const visionStages = new Set<number>();
  plan.stages.forEach((s, i) => {
    for (let l = s.firstLayer; l <= s.lastLayer; l++) if (isVision(kinds[l])) visionStages.add(i);
  });
  if ([...visionStages].some((s) => s !== 0)) {
    unsupported.push(`the vision encoder spans stages ${[...visionStages].join(', ')}; Megatron-LM builds it whole on stage 0 (re-plan with --target megatron)`);
  }
  const embedStage = stageOf('embed');
  if (embedStage > 0) unsupported.push(`the LLM embedding is on stage ${embedStage}; Megatron-LM builds it on the first stage (re-plan with --target megatron)`);
  const headStage = stageOf('head');
  if (headStage >= 0 && headStage !== P - 1) unsupported.push(`the loss is on stage ${headStage}; Megatron-LM computes it on the last stage`);
  const parts = plan.stages.map((s) => {
    let out = '';
    for (let l = s.firstLayer; l <= s.lastLayer; l++) {
      if (kinds[l] === 'embed') out += 'E';
      else if (kinds[l] === 'llm') out += 't';
      else if (kinds[l] === 'head') out += 'L';
    }
    return out;
  });
  const layout = parts.join('|');
  const llmPerStage = parts.map((p) => [...p].filter((c) => c === 't').length);
  const recomputeLayersPerStage = plan.stages.map((s) => s.recomputeLayers.filter((l) => kinds[l] === 'llm').length);
  const selectivePerStage = plan.stages.map((s) => s.selectiveLayers.filter((l) => kinds[l] === 'llm').length);
  // Recompute flags, shared by both alternatives.
  const recompute: string[] = [];
  const maxK = Math.max(0, ...recomputeLayersPerStage);
  const anySelective = selectivePerStage.some((n) => n > 0);
  if (anySelective && maxK > 0) {
    unsupported.push('the plan mixes full and selective recomputation; Megatron-LM takes one --recompute-granularity (re-plan with --target megatron)');
  }
  if (anySelective) {
    const allSelective = plan.stages.every((_, i) => selectivePerStage[i] === llmPerStage[i]);
    if (!allSelective) unsupported.push('selective recomputation on some layers only; Megatron-LM applies --recompute-granularity selective to every layer (re-plan with --target megatron)');
    recompute.push('--recompute-granularity', 'selective', '--recompute-modules', ...(problem.selectiveModules ?? ['mlp']));
    // examples/multimodal/model.py: without --recompute-vision the vision config's recompute is
    // cleared; with it (and no --recompute-method, as selective has none) the ViT keeps the
    // selective setting.
    const vit = kinds.flatMap((k, l) => (k === 'vit' ? [l] : []));
    const vitSelective = new Set(plan.stages.flatMap((s) => s.selectiveLayers.filter((l) => kinds[l] === 'vit')));
    if (vit.length > 0 && vitSelective.size === vit.length) recompute.push('--recompute-vision');
    else if (vitSelective.size > 0) unsupported.push(`selective recomputation of ${vitSelective.size} of ${vit.length} ViT layers: Megatron-LM's multimodal example applies it to the whole ViT (--recompute-vision) or none`);
  } else if (maxK > 0) {
    recompute.push('--recompute-granularity', 'full', '--recompute-method', 'block', '--recompute-num-layers', String(maxK));
    // Megatron's block method recomputes the first min(k, decoder layers) of every stage.
    const expressible = plan.stages.every((s, i) => {
      const llm = s.recomputeLayers.filter((l) => kinds[l] === 'llm');
      const firstLlm = kinds.indexOf('llm', s.firstLayer);
      return llm.length === Math.min(maxK, llmPerStage[i]) && llm.every((l, j) => l === firstLlm + j);
    });
    if (!expressible) {
      unsupported.push(
        `per-stage recomputation (${recomputeLayersPerStage.join(', ')} decoder layers) differs from one count for all stages; Megatron-LM recomputes the first min(${maxK}, decoder layers) of every stage, more than the plan needs (re-plan with --target megatron)`,
      );
    }
  }
  const vitLayers = kinds.flatMap((k, l) => (k === 'vit' ? [l] : []));
  const recomputed = new Set(plan.stages.flatMap((s) => s.recomputeLayers));
  const vitRecomputed = vitLayers.filter((l) => recomputed.has(l)).length;
  const otherVision = [...recomputed].filter((l) => isVision(kinds[l]) && kinds[l] !== 'vit').length;
  if (vitRecomputed > 0 && vitRecomputed === vitLayers.length && recompute.includes('full')) {
    // examples/multimodal/model.py: --recompute-vision sets the vision config's
    // recompute_num_layers to all its layers, with the same granularity and method.
    recompute.push('--recompute-vision');
  } else if (vitRecomputed > 0) {
    unsupported.push(
      `recomputation of ${vitRecomputed} of ${vitLayers.length} ViT layers: Megatron-LM's multimodal example recomputes the whole ViT (--recompute-vision, with full decoder recomputation) or none of it (re-plan with --target megatron)`,
    );
  }
  if (otherVision > 0) unsupported.push(`recomputation of the patch embedding or projector (${otherVision} layers): Megatron-LM's multimodal example never recomputes them`);
  if (problem.schedule === 'interleaved') {
    unsupported.push(
      `interleaved schedule: these arguments describe ${P} contiguous stages; with ${problem.virtualStages ?? 2} virtual stages per rank Megatron-LM needs a layout of ${P} x ${problem.virtualStages ?? 2} segments: plan the chunks with partitionChunks and export them with exportMegatronChunks (omnibal partition --schedule interleaved does)`,
    );
  }
  const pp = ['--pipeline-model-parallel-size', String(P)];
  const alternatives: MegatronAlternative[] = [];
  const add = (name: MegatronAlternative['name'], argv: string[]) => alternatives.push({ name, argv, command: shellLine(argv) });
  if (embedStage <= 0 && (headStage < 0 || headStage === P - 1)) add('layout', [...pp, '--pipeline-model-parallel-layout', layout, ...recompute]);
  // First/last counts: the middle stages equal, first and last > 0, nothing but decoder layers
  // in between (E on the first stage, L on the last, as Megatron builds them).
  const first = llmPerStage[0];
  const last = llmPerStage[P - 1];
  const middle = llmPerStage.slice(1, -1);
  const evenMiddle = middle.every((n) => n === middle[0]) && (middle.length === 0 || middle[0] > 0);
  if (P > 1 && embedStage <= 0 && (headStage < 0 || headStage === P - 1) && first > 0 && last > 0 && evenMiddle) {
    const argv = [...pp, '--decoder-first-pipeline-num-layers', String(first)];
    // With two stages the last stage takes the rest; naming it too would leave no middle stage to divide by.
    if (P > 2) argv.push('--decoder-last-pipeline-num-layers', String(last));
    add('first-last', [...argv, ...recompute]);
  }
  return { args: alternatives[0]?.argv ?? [], alternatives, layout: alternatives.some((a) => a.name === 'layout') ? layout : null, recomputeLayersPerStage, unsupported };
}

/** `activation_checkpoint_interval` as DeepSpeed's `PipelineModule.forward` applies it. */
export const DEEPSPEED_INTERVAL_SEMANTICS =
  "DeepSpeed's activation_checkpoint_interval = k cuts each stage's local layers into consecutive chunks of k (layers 0..k-1, k..2k-1, ...) and checkpoints every chunk that holds a layer with parameters as one unit, keeping only the chunk's input (deepspeed/runtime/pipe/module.py, PipelineModule.forward and _is_checkpointable); it does not mean the first k layers. The generated OmnibalPipelineModule sets k = 1 and checkpoints only the layers listed per stage.";

function pythonModule(parts: number[], checkpoint: number[][]): string {
  const flat = checkpoint.flat();
  return [
    '# Generated by omnibal: a DeepSpeed PipelineModule with explicit stage boundaries and',
    '# per-stage activation checkpointing. Build it as PipelineModule (same arguments).',
    'from deepspeed.pipe import PipelineModule',
    '',
    '',
    'class OmnibalPipelineModule(PipelineModule):',
    '    """Stage s holds layers PARTS[s] .. PARTS[s + 1] - 1; layers in CHECKPOINT are recomputed."""',
    '',
    `    PARTS = [${parts.join(', ')}]`,
    `    CHECKPOINT = frozenset([${flat.join(', ')}])`,
    '',
    '    def __init__(self, *args, **kwargs):',
    '        # One layer per checkpoint chunk, so _is_checkpointable decides layer by layer.',
    "        kwargs['activation_checkpoint_interval'] = 1",
    '        super().__init__(*args, **kwargs)',
    '',
    "    def _partition_layers(self, method='uniform'):",
    "        stages = self._topo.get_dim('pipe')",
    '        if len(self.PARTS) != stages + 1 or self.PARTS[0] != 0 or self.PARTS[-1] != len(self._layer_specs):',
    '            raise ValueError(',
    "                f'omnibal parts {self.PARTS} do not fit {stages} stages of {len(self._layer_specs)} layers'",
    '            )',
    '        stage = self._topo.get_coord(self.global_rank).pipe',
    '        self.parts = list(self.PARTS)',
    '        self._set_bounds(start=self.parts[stage], stop=self.parts[stage + 1])',
    '',
    '    def _is_checkpointable(self, funcs):',
    '        # With interval 1, funcs is one local layer; find its global index.',
    '        for offset, f in enumerate(self.forward_funcs):',
    '            if f is funcs[0]:',
    '                if self._local_start + offset not in self.CHECKPOINT:',
    '                    return False',
    '                break',
    '        return super()._is_checkpointable(funcs)',
    '',
  ].join('\n');
}

/**
 * DeepSpeed: `PipelineModule` boundaries, the checkpointed layers of each stage, and a
 * generated subclass that imposes both (DeepSpeed's `partition_method` takes `uniform`,
 * `parameters` or `type:regex`, not explicit parts, and one `activation_checkpoint_interval`).
 *
 * @param plan - a plan from `partitionStages` (or any stage plan)
 * @returns the `PipelineModule` parts and checkpointed layers per stage
 */
export function exportDeepSpeed(plan: StagePlan): DeepSpeedExport {
  checkStagePlanShape(plan);
  const parts = [...plan.stages.map((s) => s.firstLayer), plan.stages[plan.stages.length - 1].lastLayer + 1];
  const checkpointLayers = plan.stages.map((s) => s.recomputeLayers);
  const unsupported: string[] = [];
  if (plan.stages.some((s) => s.selectiveLayers.length > 0)) {
    unsupported.push("selective recomputation: DeepSpeed's PipelineModule checkpoints whole layers only (re-plan with --target deepspeed)");
  }
  return { parts, checkpointLayers, python: pythonModule(parts, checkpointLayers), intervalSemantics: DEEPSPEED_INTERVAL_SEMANTICS, unsupported };
}
