/**
 * Argument checks shared by the public API and the TypeScript twins. The native side has the
 * same rules in `crate/core/src/error.rs` (numbers) and `crate/node/src/args.rs` (typed arrays),
 * with the same codes and wording.
 *
 * @module
 */
import { invalidType, outOfRange } from './errors';

/** What a value is, as error messages name it: `Float64Array`, `an object`, `string`, `null`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

/** Throws unless `value` is a JS number (any number, NaN included: ranges are checked later). */
export function expectNumber(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number') {
    throw invalidType(name, `must be a number, got ${describeValue(value)}`);
  }
}

/** Returns `value` if it is an integer in `0..=max`, else throws a coded `RangeError`. */
export function integerInRange(name: string, value: number, max: number): number {
  return integerBetween(name, value, 0, max);
}

/** Returns `value` if it is an integer in `min..=max`, else throws a coded `RangeError`. */
export function integerBetween(name: string, value: number, min: number, max: number): number {
  if (Number.isNaN(value)) throw outOfRange(name, 'must be an integer, got NaN');
  if (!Number.isInteger(value)) throw outOfRange(name, `must be an integer, got ${value}`);
  if (value < min || value > max) throw outOfRange(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** Returns `value` if it is finite and at least `min`, else throws a coded `RangeError`. */
export function numberAtLeast(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min) {
    throw outOfRange(name, `must be a finite number >= ${min}, got ${value}`);
  }
  return value;
}

/** Returns `value` if it is a `Uint32Array`, else throws a coded `TypeError` naming what it is. */
export function expectU32Array(name: string, value: unknown): Uint32Array {
  if (value instanceof Uint32Array) return value;
  throw invalidType(name, `must be a Uint32Array, got ${describeValue(value)}`);
}

/**
 * Throws unless `value` is a non-null object (arrays and typed arrays are not accepted), naming
 * the argument and what it got; `what` says which object is wanted (default `an object`).
 */
export function expectObject<T extends object>(name: string, value: T | null | undefined, what = 'an object'): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw invalidType(name, `must be ${what}, got ${Array.isArray(value) ? 'an array' : describeValue(value)}`);
  }
  return value;
}

/** Throws unless `value` is an array (or typed array) of numbers, naming the argument. */
export function expectNumberList(name: string, value: unknown): ArrayLike<number> {
  const list = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
  if (!list) throw invalidType(name, `must be an array of numbers, got ${describeValue(value)}`);
  const items = value as ArrayLike<unknown>;
  for (let i = 0; i < items.length; i++) {
    if (typeof items[i] !== 'number') throw invalidType(`${name}[${i}]`, `must be a number, got ${describeValue(items[i])}`);
  }
  return items as ArrayLike<number>;
}
