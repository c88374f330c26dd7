//! The `steps` of a batch plan as JSON text (`[[[i,...],...],...]` per step: ranks, micro-batches,
//! sample indices), the bulk of what `omnibal pack --json` writes: 10 million sample indices at
//! 10M samples. Written a run of whole steps at a time, so the caller streams the document in
//! chunks; `src/cli/plan-json.ts` holds the TypeScript twin and the rest of the document.

use crate::error::Error;

/// Steps written by one [`plan_steps_json`] call, and the first step not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepsJson {
    pub bytes: Vec<u8>,
    pub next_step: usize,
}

fn write_uint(out: &mut Vec<u8>, mut x: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn bad(what: &str) -> Error {
    Error::out_of_range("plan", what.to_owned())
}

/// Writes steps `from_step ..` of the plan (`dp` ranks per step; rank `r` of step `s` runs
/// micro-batches `rank_offsets[s * dp + r] .. rank_offsets[s * dp + r + 1]`, micro-batch `k` is
/// `samples[micro_batch_offsets[k] .. micro_batch_offsets[k + 1]]`), each step preceded by a
/// comma unless it is step 0: at least one step, then whole steps until at least `min_bytes`
/// are written or the steps end.
///
/// Errors: `dp` 0, offsets that decrease or point past their arrays (only the steps written are
/// read).
pub fn plan_steps_json(
    samples: &[u32],
    micro_batch_offsets: &[u32],
    rank_offsets: &[u32],
    dp: usize,
    from_step: usize,
    min_bytes: usize,
) -> Result<StepsJson, Error> {
    if dp == 0 {
        return Err(bad("dp must be at least 1"));
    }
    let steps = rank_offsets.len().saturating_sub(1) / dp;
    let mut out = Vec::with_capacity(min_bytes.min(64 << 20) + 4096);
    let mut s = from_step;
    while s < steps && (s == from_step || out.len() < min_bytes) {
        if s > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for r in 0..dp {
            if r > 0 {
                out.push(b',');
            }
            out.push(b'[');
            let i = s * dp + r;
            let (a, b) = (rank_offsets[i] as usize, rank_offsets[i + 1] as usize);
            if a > b || b + 1 > micro_batch_offsets.len() {
                return Err(bad(
                    "rankOffsets must never decrease and must stay within the micro-batches",
                ));
            }
            for k in a..b {
                if k > a {
                    out.push(b',');
                }
                let (from, to) = (
                    micro_batch_offsets[k] as usize,
                    micro_batch_offsets[k + 1] as usize,
                );
                if from > to || to > samples.len() {
                    return Err(bad(
                        "microBatchOffsets must never decrease and must stay within the samples",
                    ));
                }
                out.push(b'[');
                for (q, &x) in samples[from..to].iter().enumerate() {
                    if q > 0 {
                        out.push(b',');
                    }
                    write_uint(&mut out, x);
                }
                out.push(b']');
            }
            out.push(b']');
        }
        out.push(b']');
        s += 1;
    }
    Ok(StepsJson {
        bytes: out,
        next_step: s.max(from_step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_runs_join_to_the_whole() {
        // 2 ranks; step 0: [[0,1],[2]] and [[3]]; step 1: [[4294967295]] and [] (no micro-batch).
        let samples = [0, 1, 2, 3, u32::MAX];
        let mbo = [0, 2, 3, 4, 5];
        let ranks = [0, 2, 3, 4, 4];
        let whole = plan_steps_json(&samples, &mbo, &ranks, 2, 0, usize::MAX).unwrap();
        assert_eq!(
            String::from_utf8(whole.bytes.clone()).unwrap(),
            "[[[0,1],[2]],[[3]]],[[[4294967295]],[]]"
        );
        assert_eq!(whole.next_step, 2);
        let first = plan_steps_json(&samples, &mbo, &ranks, 2, 0, 0).unwrap();
        assert_eq!(first.next_step, 1);
        let rest = plan_steps_json(&samples, &mbo, &ranks, 2, 1, 1).unwrap();
        assert_eq!([first.bytes, rest.bytes].concat(), whole.bytes);
        let none = plan_steps_json(&samples, &mbo, &ranks, 2, 2, 1).unwrap();
        assert_eq!((none.bytes.len(), none.next_step), (0, 2));
    }

    #[test]
    fn bad_offsets_are_errors_not_panics() {
        let e = |s: &[u32], m: &[u32], r: &[u32], dp| {
            plan_steps_json(s, m, r, dp, 0, usize::MAX)
                .unwrap_err()
                .code()
        };
        assert_eq!(e(&[0], &[0, 1], &[0, 1], 0), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert_eq!(e(&[0], &[0, 1], &[0, 2], 1), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert_eq!(e(&[0], &[0, 2], &[0, 1], 1), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert_eq!(e(&[0], &[1, 0], &[0, 1], 1), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert_eq!(e(&[0], &[0, 1], &[1, 0], 1), "ERR_OMNIBAL_OUT_OF_RANGE");
    }
}
