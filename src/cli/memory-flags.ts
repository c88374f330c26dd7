/**
 * The memory flags `omnibal partition` and `omnibal plan` share: their registration, parsing and
 * validation (one place, so both commands accept and refuse the same values with the same words).
 *
 * @module
 */
import type { Command } from 'commander';
import { ErrorCodes, omnibalError } from '../errors';
import type { TrainingOptions } from '../model/index';
import { TARGETS, type Target } from '../model/target';

/** The memory flags as commander parses them. */
export interface MemoryFlags {
  /** `--memory-gib`. */
  memoryGib?: number;
  /** `--headroom`. */
  headroom?: number;
  /** `--grads` (fp32 or bf16). */
  grads: string;
  /** `--zero` (0-3). */
  zero?: number;
  /** `--frozen` (vit, llm), repeatable. */
  frozen: string[];
  /** False with `--no-flash-attention`. */
  flashAttention: boolean;
  /** `--target` (none, megatron, deepspeed). */
  target: string;
}

const num = (v: string) => Number(v);
const collect = (v: string, prev: string[]) => [...prev, v];

/**
 * A flag's value as printed in an error: "a value that is not a number" for NaN.
 *
 * @param v - the parsed value
 * @returns the value in words
 */
export const describeFlag = (v: number): string => (Number.isNaN(v) ? 'a value that is not a number' : String(v));

/**
 * Adds the memory flags to a command.
 *
 * @param command - the command to add `--memory-gib`, `--headroom`, `--grads`, `--zero`, `--frozen`, `--no-flash-attention` and `--target` to
 * @returns the command
 */
export function addMemoryFlags(command: Command): Command {
  return command
    .option('--zero <z>', 'ZeRO stage 0-3 (1 = Megatron distributed optimizer; default 1)', num)
    .option('--grads <precision>', 'gradient precision: fp32 (Megatron default, 18 bytes/param unsharded) or bf16 (16)', 'fp32')
    .option('--frozen <module>', 'a frozen module (vit or llm): weights only, no gradients or optimizer state; repeatable', collect, [])
    .option('--no-flash-attention', 'count the s^2 attention activations (Korthikanti 5 a s^2 per sequence)')
    .option('--headroom <fraction>', 'extra activation memory, e.g. 0.1 for 10% (default 0)', num)
    .option('--target <framework>', `restrict the plan to what a framework runs: ${TARGETS.join(', ')}`, 'none')
    .option('--memory-gib <gib>', 'memory per GPU (default: the GPU preset)', num);
}

/**
 * Checks `--target`.
 *
 * @param value - the flag's value
 * @returns the target
 */
export function targetFlag(value: string): Target {
  if (!(TARGETS as readonly string[]).includes(value)) throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `--target must be one of ${TARGETS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as Target;
}

/**
 * Checks `--memory-gib` and `--headroom`.
 *
 * @param flags - the parsed flags
 */
export function checkMemorySize(flags: Pick<MemoryFlags, 'memoryGib' | 'headroom'>): void {
  if (flags.memoryGib !== undefined && !(Number.isFinite(flags.memoryGib) && flags.memoryGib > 0)) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--memory-gib must be a number > 0, got ${describeFlag(flags.memoryGib)}`);
  }
  // In bytes it must stay finite too (1e308 GiB is not).
  if (flags.memoryGib !== undefined && !Number.isFinite(flags.memoryGib * 2 ** 30)) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--memory-gib must be below 2^994 (its bytes must be a finite number), got ${describeFlag(flags.memoryGib)}`);
  }
  if (flags.headroom !== undefined && !(Number.isFinite(flags.headroom) && flags.headroom >= 0)) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--headroom must be a number >= 0, got ${describeFlag(flags.headroom)}`);
  }
  // Larger, the activations it scales overflow (an error about a layer, not about this flag).
  if (flags.headroom !== undefined && flags.headroom > 100) {
    throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--headroom must be at most 100 (a fraction of the activation memory: 0.1 is 10%), got ${describeFlag(flags.headroom)}`);
  }
}

/**
 * Checks `--zero`.
 *
 * @param value - the flag's value
 * @returns the ZeRO stage, or undefined when not given
 */
export function zeroFlag(value: number | undefined): number | undefined {
  if (value !== undefined && ![0, 1, 2, 3].includes(value)) throw omnibalError(ErrorCodes.OUT_OF_RANGE, `--zero must be 0, 1, 2 or 3, got ${describeFlag(value)}`);
  return value;
}

/**
 * Checks `--grads`, `--frozen` and `--no-flash-attention`.
 *
 * @param flags - the parsed flags
 * @returns the training options of the layer table
 */
export function trainingFlags(flags: Pick<MemoryFlags, 'grads' | 'frozen' | 'flashAttention'>): TrainingOptions {
  if (flags.grads !== 'fp32' && flags.grads !== 'bf16') throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `--grads must be fp32 or bf16, got ${JSON.stringify(flags.grads)}`);
  for (const f of flags.frozen) {
    if (f !== 'vit' && f !== 'llm') throw omnibalError(ErrorCodes.UNKNOWN_OPTION, `--frozen must be vit or llm, got ${JSON.stringify(f)}`);
  }
  return { grads: flags.grads, frozenVit: flags.frozen.includes('vit'), frozenLlm: flags.frozen.includes('llm'), flashAttention: flags.flashAttention };
}
