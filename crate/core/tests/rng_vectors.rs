//! Checks the generator against `vectors/rng.json`, written by an independent implementation
//! (`scripts/rng_vectors.py`); the TypeScript suite checks the same file.

use omnibal_core::permutation::permutation;
use omnibal_core::rng::Rng;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors/rng.json");
    let text = std::fs::read_to_string(path).expect("vectors/rng.json is readable");
    serde_json::from_str(&text).expect("vectors/rng.json parses")
}

fn u32s(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn raw_state_stream_matches_the_reference() {
    let v = vectors();
    let state = u32s(&v["rawState"]["state"]);
    let mut rng = Rng::from_state([state[0], state[1], state[2], state[3]]);
    let got: Vec<u32> = (0..8).map(|_| rng.next_u32()).collect();
    assert_eq!(got, u32s(&v["rawState"]["u32"]));
}

#[test]
fn seeded_streams_match_the_reference() {
    let v = vectors();
    let seeds = v["seeds"].as_array().unwrap();
    assert!(seeds.len() >= 5);
    for case in seeds {
        let seed = case["seed"].as_u64().unwrap();
        let mut rng = Rng::new(seed);
        let got: Vec<u32> = (0..16).map(|_| rng.next_u32()).collect();
        assert_eq!(got, u32s(&case["u32"]), "u32 stream, seed {seed}");

        let mut rng = Rng::new(seed);
        for entry in case["below"].as_array().unwrap() {
            let bound = entry["bound"].as_u64().unwrap() as u32;
            let got: Vec<u32> = (0..8).map(|_| rng.below(bound)).collect();
            assert_eq!(got, u32s(&entry["values"]), "below({bound}), seed {seed}");
        }

        let mut rng = Rng::new(seed);
        for expected in case["f64"].as_array().unwrap() {
            assert_eq!(
                rng.next_f64(),
                expected.as_f64().unwrap(),
                "f64, seed {seed}"
            );
        }

        for entry in case["streams"].as_array().unwrap() {
            let stream = entry["stream"].as_u64().unwrap();
            let got = Rng::for_stream(seed, stream).next_u32();
            assert_eq!(
                got as u64,
                entry["first"].as_u64().unwrap(),
                "stream {stream}, seed {seed}"
            );
        }

        assert_eq!(
            permutation(10, seed).unwrap(),
            u32s(&case["permutation10"]),
            "seed {seed}"
        );
        assert_eq!(
            permutation(1000, seed).unwrap()[..20].to_vec(),
            u32s(&case["permutation1000Head"]),
            "seed {seed}"
        );
    }
}
