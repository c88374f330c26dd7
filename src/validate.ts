/**
 * Argument checks shared by the public API and the TypeScript twins. The native side has the
 * same rules in `crate/core/src/error.rs` (numbers) and `crate/node/src/args.rs` (typed arrays),
 * with the same codes and wording.
 *
 * @module
 */
import { invalidType, outOfRange, unknownKey } from './errors';

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

/**
 * Every key of an options type, written once as `{ key: true, ... }`: the mapped type makes tsc
 * refuse a list that misses a key of `T` or names one `T` does not have, so the runtime check
 * below and the type cannot drift apart.
 */
export type KeyList<T> = { readonly [K in keyof Required<T>]: true };

/** The keys of a {@link KeyList}, for {@link checkKnownKeys}. */
export function optionKeys<T>(list: KeyList<T>): readonly string[] {
  return Object.freeze(Object.keys(list));
}

/**
 * Edit distance (optimal string alignment: insertions, deletions, substitutions and swaps of
 * two neighbours each cost 1), for "did you mean" hints on short option names.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The known key `key` most likely stands for: the same name in another case, else the closest
 * within a third of its length (at least 1 edit, at most 3); undefined when none is that close.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const sameCase = known.find((k) => k.toLowerCase() === lower);
  if (sameCase !== undefined) return sameCase;
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
  for (const k of known) {
    const distance = editDistance(lower, k.toLowerCase());
    if (distance <= bestDistance && (best === undefined || distance < bestDistance)) {
      best = k;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Throws `ERR_OMNIBAL_UNKNOWN_OPTION` for the first own key of `options` that is not in `known`
 * (a typo must not silently run a default), naming it as `name.key` and the known key it
 * resembles, or `hints[key]` where a key belongs elsewhere (`pp` -> `cluster.pp`). Anything that
 * is not a plain object is left to the caller's type check.
 */
export function checkKnownKeys(name: string, options: unknown, known: readonly string[], hints: Readonly<Record<string, string>> = {}): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options) || ArrayBuffer.isView(options)) return;
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const close = closestKey(key, known);
    throw unknownKey(name, key, Object.hasOwn(hints, key) ? hints[key] : close === undefined ? undefined : `'${close}'`, known);
  }
}
