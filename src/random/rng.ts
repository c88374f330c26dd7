/**
 * TypeScript twin of `crate/core/src/rng.rs`: xoshiro128** seeded by SplitMix64, bounded draws
 * by mask-and-reject. Bit-for-bit the same stream as the native core (checked against
 * `vectors/rng.json` by both test suites).
 *
 * @module
 */

/** Largest seed accepted: `Number.MAX_SAFE_INTEGER`. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

const M64 = (1n << 64n) - 1n;

/** One SplitMix64 step on a 64-bit BigInt state: returns `[newState, output]`. */
function splitmix64(state: bigint): [bigint, bigint] {
  const next = (state + 0x9e3779b97f4a7c15n) & M64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return [next, z ^ (z >> 31n)];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The deterministic generator every TypeScript twin draws from. */
export class Rng {
  // The four state words in a typed array: as object fields, words of 2^31 and above were boxed
  // numbers, and each draw allocated (~6x slower; 1.2M synthetic samples draw 7.2M words).
  private readonly s = new Uint32Array(4);

  /** A generator in a raw state; the all-zero state becomes `[1, 0, 0, 0]`. */
  static fromState(state: readonly [number, number, number, number]): Rng {
    const rng = new Rng(0);
    rng.s.set(state.map((x) => x >>> 0));
    if ((rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) === 0) rng.s[0] = 1;
    return rng;
  }

  /** A generator for one of several independent streams of the same seed. */
  static forStream(seed: number, stream: number): Rng {
    const mixed = (BigInt(seed) ^ (BigInt(stream) * 0xd1b54a32d192ed03n)) & M64;
    return Rng.fromBigSeed(splitmix64(mixed)[1]);
  }

  /** The generator for one purpose of one epoch: stream `epoch * 2^20 + purpose`. */
  static forEpoch(seed: number, epoch: number, purpose: number): Rng {
    return Rng.forStream(seed, epoch * 1048576 + purpose);
  }

  /** Seeds from a safe-integer seed (checked by callers). */
  constructor(seed: number) {
    this.seed(BigInt(seed));
  }

  private static fromBigSeed(seed: bigint): Rng {
    const rng = new Rng(0);
    rng.seed(seed);
    return rng;
  }

  private seed(seed: bigint): void {
    const [a, b] = Rng.seedWords(seed);
    this.s.set([a[0], a[1], b[0], b[1]]);
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  private static seedWords(seed: bigint): [[number, number], [number, number]] {
    const [state, a] = splitmix64(seed & M64);
    const b = splitmix64(state)[1];
    const words = (x: bigint): [number, number] => [Number(x & 0xffffffffn), Number(x >> 32n)];
    return [words(a), words(b)];
  }

  /** The next 32 random bits, as an unsigned integer. */
  nextU32(): number {
    const s = this.s;
    const s0 = s[0];
    const s1 = s[1];
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = s1 << 9;
    const s2 = s[2] ^ s0;
    const s3 = s[3] ^ s1;
    s[1] = s1 ^ s2;
    s[0] = s0 ^ s3;
    s[2] = s2 ^ t;
    s[3] = (s3 << 11) | (s3 >>> 21);
    return result;
  }

  /** A uniform integer in `0..bound` (`1 <= bound <= 2^32 - 1`). */
  below(bound: number): number {
    const mask = bound === 1 ? 0 : 0xffffffff >>> Math.clz32(bound - 1);
    for (;;) {
      const r = (this.nextU32() & mask) >>> 0;
      if (r < bound) return r;
    }
  }

  /** A uniform float in `[0, 1)` with 53 random bits. */
  nextF64(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}
