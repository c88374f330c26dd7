// The TypeScript generator against the shared vectors (written by scripts/rng_vectors.py, an
// independent implementation; the Rust suite checks the same file).
import test from 'ava';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../src/random/rng';
import { permutationTwin } from '../src/random/permutation';
import { root } from './helpers';

interface SeedCase {
  seed: number;
  u32: number[];
  below: { bound: number; values: number[] }[];
  f64: number[];
  streams: { stream: number; first: number }[];
  permutation10: number[];
  permutation1000Head: number[];
}
const vectors = JSON.parse(readFileSync(path.join(root, 'vectors', 'rng.json'), 'utf8')) as {
  rawState: { state: [number, number, number, number]; u32: number[] };
  seeds: SeedCase[];
};

test('raw-state stream matches the reference xoshiro128**', (t) => {
  const rng = Rng.fromState(vectors.rawState.state);
  t.deepEqual(
    Array.from({ length: 8 }, () => rng.nextU32()),
    vectors.rawState.u32,
  );
});

for (const c of vectors.seeds) {
  test(`seeded streams match the vectors for seed ${c.seed}`, (t) => {
    let rng = new Rng(c.seed);
    t.deepEqual(Array.from({ length: 16 }, () => rng.nextU32()), c.u32);
    rng = new Rng(c.seed);
    for (const { bound, values } of c.below) {
      t.deepEqual(Array.from({ length: 8 }, () => rng.below(bound)), values, `below(${bound})`);
    }
    rng = new Rng(c.seed);
    t.deepEqual(Array.from({ length: c.f64.length }, () => rng.nextF64()), c.f64);
    for (const { stream, first } of c.streams) {
      t.is(Rng.forStream(c.seed, stream).nextU32(), first, `stream ${stream}`);
    }
    t.deepEqual(Array.from(permutationTwin(10, c.seed)), c.permutation10);
    t.deepEqual(Array.from(permutationTwin(1000, c.seed).subarray(0, 20)), c.permutation1000Head);
  });
}

test('the vectors cover the seed range edges', (t) => {
  const seeds = vectors.seeds.map((c) => c.seed);
  t.true(seeds.includes(0));
  t.true(seeds.includes(Number.MAX_SAFE_INTEGER));
  t.true(seeds.includes(2 ** 32));
});
