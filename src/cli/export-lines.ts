/**
 * The framework exports of a stage plan as printed lines (`omnibal partition` and `omnibal plan`
 * print the same).
 *
 * @module
 */
import type { DeepSpeedExport, MegatronExport } from '../export/index';

/**
 * The Megatron-LM command lines and the DeepSpeed parts of a plan, with what each cannot express.
 *
 * @param exports - the plan's exports (`exportMegatron`, `exportDeepSpeed`)
 * @returns the lines to print
 */
export function exportLines(exports: { megatron: MegatronExport; deepspeed: DeepSpeedExport }): string[] {
  const { megatron, deepspeed } = exports;
  return [
    ...(megatron.alternatives.length === 0 ? ['Megatron-LM: no valid arguments for this plan'] : megatron.alternatives.map((a) => `Megatron-LM (${a.name}): ${a.command}`)),
    ...megatron.unsupported.map((u) => `  cannot express: ${u}`),
    `DeepSpeed: OmnibalPipelineModule (--json: exports.deepspeed.python) with parts [${deepspeed.parts.join(', ')}] and ${deepspeed.checkpointLayers.map((c) => c.length).join(', ')} checkpointed layers per stage`,
    ...deepspeed.unsupported.map((u) => `  cannot express: ${u}`),
  ];
}
