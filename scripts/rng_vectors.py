#!/usr/bin/env python3
"""Writes vectors/rng.json: the reference stream of omnibal's generator.

This is a third, independent implementation of the generator (xoshiro128** seeded by
SplitMix64, bounded draws by mask-and-reject, Fisher-Yates from the back), written from the
algorithm's definition with Python's unbounded integers. The Rust core and the TypeScript twin
both check their output against the file it writes, so neither can drift, and neither is only
compared with itself. Run: python3 scripts/rng_vectors.py > vectors/rng.json
"""
import json

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


class Rng:
    def __init__(self, seed):
        st, a = splitmix64(seed)
        st, b = splitmix64(st)
        self.s = [a & M32, a >> 32, b & M32, b >> 32]
        if self.s == [0, 0, 0, 0]:
            self.s[0] = 1

    @classmethod
    def for_stream(cls, seed, stream):
        _, z = splitmix64((seed ^ (stream * 0xD1B54A32D192ED03)) & M64)
        return cls(z)

    def next_u32(self):
        s = self.s
        result = (rotl((s[1] * 5) & M32, 7) * 9) & M32
        t = (s[1] << 9) & M32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
        return result

    def below(self, bound):
        mask = 0 if bound == 1 else (1 << (bound - 1).bit_length()) - 1
        while True:
            r = self.next_u32() & mask
            if r < bound:
                return r

    def next_f64(self):
        hi = self.next_u32() >> 5
        lo = self.next_u32() >> 6
        return (hi * 67108864 + lo) / 9007199254740992


def permutation(n, seed):
    rng = Rng(seed)
    values = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        values[i], values[j] = values[j], values[i]
    return values


SEEDS = [0, 1, 42, 123456789, 2**32 - 1, 2**32, 2**53 - 1]
BOUNDS = [1, 2, 3, 10, 1000, 2**31, 2**32 - 1]


def main():
    raw = Rng(0)
    raw.s = [1, 2, 3, 4]
    out = {
        "generator": "xoshiro128** seeded by SplitMix64",
        # The generator from the raw state (1, 2, 3, 4), as in the reference C code's examples.
        "rawState": {"state": [1, 2, 3, 4], "u32": [raw.next_u32() for _ in range(8)]},
        "seeds": [],
    }
    for seed in SEEDS:
        r = Rng(seed)
        u32 = [r.next_u32() for _ in range(16)]
        r = Rng(seed)
        below = [{"bound": b, "values": [r.below(b) for _ in range(8)]} for b in BOUNDS]
        r = Rng(seed)
        f64 = [r.next_f64() for _ in range(6)]
        streams = [{"stream": k, "first": Rng.for_stream(seed, k).next_u32()} for k in [0, 1, 7]]
        out["seeds"].append({
            "seed": seed,
            "u32": u32,
            "below": below,
            "f64": f64,
            "streams": streams,
            "permutation10": permutation(10, seed),
            "permutation1000Head": permutation(1000, seed)[:20],
        })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
