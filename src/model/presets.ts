/**
 * Model and GPU presets, read from `presets/*.json` in the package (data, not code: add a
 * model by adding an entry).
 *
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, rangeError } from '../errors';
import { packageRoot } from '../package';
import type { GpuSpec, Transformer, VlmSpec } from './vlm';

interface ModelsFile {
  transformers: Record<string, Transformer>;
  vlms: Record<string, { vit: string; llm: string; vitTokensPerTile: number; tilePixels: number; patch: number; llmTokensPerTile: number; pixelShuffle: number }>;
}

let models: ModelsFile | undefined;
let gpus: Record<string, GpuSpec> | undefined;

function read<T>(name: string): T {
  const parsed = JSON.parse(fs.readFileSync(path.join(packageRoot, 'presets', name), 'utf8')) as T & { $comment?: string };
  delete parsed.$comment;
  return parsed;
}

/** Names of the VLM presets. */
export function modelPresets(): string[] {
  models ??= read<ModelsFile>('models.json');
  return Object.keys(models.vlms);
}

/** Names of the GPU presets. */
export function gpuPresets(): string[] {
  gpus ??= read<Record<string, GpuSpec>>('gpus.json');
  return Object.keys(gpus);
}

/**
 * A VLM preset by name (`internvl-chat-1.5`, ...); the error lists the known ones.
 *
 * @param name - the preset name
 * @returns the model spec
 */
export function modelPreset(name: string): VlmSpec {
  const known = modelPresets();
  const v = Object.hasOwn(models!.vlms, name) ? models!.vlms[name] : undefined; // not __proto__ or toString
  if (!v) throw rangeError(ErrorCodes.UNKNOWN_PRESET, `unknown model ${JSON.stringify(name)}; known: ${known.join(', ')}`);
  const vit = models!.transformers[v.vit];
  const llm = models!.transformers[v.llm];
  // Pixel shuffle by s merges 1/s^2 patches into one token of s^-2 x the ViT width.
  const projectorIn = vit.hidden / (v.pixelShuffle * v.pixelShuffle);
  return {
    vit: { ...vit },
    llm: { ...llm },
    vitTokensPerTile: v.vitTokensPerTile,
    tilePixels: v.tilePixels,
    patch: v.patch,
    llmTokensPerTile: v.llmTokensPerTile,
    projectorIn,
  };
}

/**
 * A GPU preset by name (`A100-80G`, `H100-80G`, `H200`); the error lists the known ones.
 *
 * @param name - the preset name
 * @returns the GPU spec
 */
export function gpuPreset(name: string): GpuSpec {
  const known = gpuPresets();
  const g = Object.hasOwn(gpus!, name) ? gpus![name] : undefined; // not __proto__ or toString
  if (!g) throw rangeError(ErrorCodes.UNKNOWN_PRESET, `unknown GPU ${JSON.stringify(name)}; known: ${known.join(', ')}`);
  return { ...g, efficiency: { ...g.efficiency } };
}
