//! Seeded permutations and shuffles (`omnibal_core::permutation`) for JavaScript.

use crate::args::expect_u32_array;
use crate::error::{guard, run_sync, to_js_error};
use crate::progress::{JsProgress, ProgressFn};
use napi::bindgen_prelude::{AsyncTask, Uint32Array, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use omnibal_core::error::integer_in_range;
use omnibal_core::permutation::{permutation_with_progress, shuffle, MAX_PERMUTATION_LEN};
use omnibal_core::rng::{Rng, MAX_SEED};
use omnibal_core::Error;

fn check_n_and_seed(n: f64, seed: f64) -> Result<(u64, u64), Error> {
    Ok((
        integer_in_range("n", n, MAX_PERMUTATION_LEN)?,
        integer_in_range("seed", seed, MAX_SEED)?,
    ))
}

/// A uniformly random permutation of `0..n` for `seed`.
#[napi]
pub fn permutation(env: Env, n: f64, seed: f64) -> napi::Result<Uint32Array> {
    run_sync(&env, || {
        let (n, seed) = check_n_and_seed(n, seed)?;
        permutation_with_progress(n, seed, &mut ())
    })
    .map(Uint32Array::new)
}

/// The work of [`permutation_async`], run on the libuv pool.
pub struct PermutationTask {
    n: f64,
    seed: f64,
    progress: Option<ProgressFn>,
}

impl Task for PermutationTask {
    type Output = Result<Vec<u32>, Error>;
    type JsValue = Uint32Array;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut progress = JsProgress::new(self.progress.take());
        let (n, seed) = (self.n, self.seed);
        Ok(guard(|| {
            let (n, seed) = check_n_and_seed(n, seed)?;
            permutation_with_progress(n, seed, &mut progress)
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output
            .map(Uint32Array::new)
            .map_err(|e| to_js_error(&env, &e))
    }
}

/// [`permutation`] off the main thread: resolves with the permutation; `onProgress(done, total)`
/// is called a few times a second at most.
#[napi(ts_return_type = "Promise<Uint32Array>")]
pub fn permutation_async(
    n: f64,
    seed: f64,
    #[napi(ts_arg_type = "((done: number, total: number) => void) | undefined | null")]
    on_progress: Option<ProgressFn>,
) -> AsyncTask<PermutationTask> {
    AsyncTask::new(PermutationTask {
        n,
        seed,
        progress: on_progress,
    })
}

/// A shuffled copy of `values` (Fisher-Yates, the same draws as [`permutation`]).
#[napi(ts_args_type = "values: Uint32Array, seed: number")]
pub fn shuffle_u32(env: Env, values: Unknown, seed: f64) -> napi::Result<Uint32Array> {
    let array = expect_u32_array(&env, values, "values")?;
    run_sync(&env, || {
        let seed = integer_in_range("seed", seed, MAX_SEED)?;
        let mut out = array.to_vec();
        shuffle(&mut out, &mut Rng::new(seed));
        Ok(out)
    })
    .map(Uint32Array::new)
}
