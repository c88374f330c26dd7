//! Length files for JavaScript: the native reader streams files into `Uint32Array`s on the
//! libuv pool (see `crate/core/src/io/samples.rs`; `src/io/samples.ts` is the twin).

use crate::args::expect_u32_array;
use crate::error::{guard, run_sync, to_js_error};
use napi::bindgen_prelude::{AsyncTask, Uint32Array, Uint8Array, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use omnibal_core::error::integer_between;
use omnibal_core::io::plan_json::plan_steps_json;
use omnibal_core::io::samples::{
    read_samples, Format, ReadLimits, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_SAMPLES, MAX_RECORD_BYTES_LIMIT,
};
use omnibal_core::Error;

/// Limits of a read (see the TypeScript `ReadSamplesOptions`).
#[napi(object)]
#[derive(Clone)]
pub struct ReadLimitsOptions {
    pub max_bytes: Option<f64>,
    pub max_samples: Option<f64>,
    pub max_record_bytes: Option<f64>,
}

/// Samples read from files, as arrays; `counts[k]` samples came from file `k` (the TypeScript
/// `readSamples` derives each sample's file from them when asked, not one `u32` per sample here).
#[napi(object)]
pub struct NativeLoadedSamples {
    pub vision: Uint32Array,
    pub text: Uint32Array,
    pub counts: Vec<f64>,
}

/// Checks the limits; the defaults are the core's.
pub fn read_limits(o: &ReadLimitsOptions) -> Result<ReadLimits, Error> {
    let get = |name: &str, v: Option<f64>, max: u64, default: u64| {
        v.map_or(Ok(default), |x| integer_between(name, x, 1, max))
    };
    Ok(ReadLimits {
        max_bytes: get("maxBytes", o.max_bytes, (1 << 53) - 1, DEFAULT_MAX_BYTES)?,
        max_samples: get(
            "maxSamples",
            o.max_samples,
            u32::MAX as u64,
            DEFAULT_MAX_SAMPLES,
        )?,
        max_record_bytes: get(
            "maxRecordBytes",
            o.max_record_bytes,
            MAX_RECORD_BYTES_LIMIT as u64,
            DEFAULT_MAX_RECORD_BYTES as u64,
        )? as usize,
    })
}

/// Hands the reader's freed buffers back to the system: its parse threads allocate in their own
/// glibc arenas, which otherwise stay resident (about 30 MB after a 10M-line file) through the
/// plan that usually follows.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A read of length files on the libuv pool.
pub struct ReadTask {
    files: Vec<(String, String)>,
    options: ReadLimitsOptions,
}

/// What the worker thread hands back: arrays and counts.
type ReadOutput = (Vec<u32>, Vec<u32>, Vec<f64>);

impl Task for ReadTask {
    type Output = Result<ReadOutput, Error>;
    type JsValue = NativeLoadedSamples;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            let limits = read_limits(&self.options)?;
            let files = self
                .files
                .iter()
                .map(|(p, f)| Ok((p.clone(), Format::parse(f)?)))
                .collect::<Result<Vec<_>, Error>>()?;
            let out = read_samples(&files, limits)?;
            release_free_memory();
            let counts = out.counts.iter().map(|&c| c as f64).collect();
            Ok((out.vision, out.text, counts))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        let (vision, text, counts) = output.map_err(|e| to_js_error(&env, &e))?;
        Ok(NativeLoadedSamples {
            vision: Uint32Array::new(vision),
            text: Uint32Array::new(text),
            counts,
        })
    }
}

/// Reads length files (`paths[k]` in `formats[k]`: `json`, `jsonl` or `csv`) off the main
/// thread.
#[napi(
    js_name = "readSampleFiles",
    ts_return_type = "Promise<NativeLoadedSamples>"
)]
pub fn read_sample_files(
    paths: Vec<String>,
    formats: Vec<String>,
    options: ReadLimitsOptions,
) -> napi::Result<AsyncTask<ReadTask>> {
    if paths.len() != formats.len() {
        return Err(napi::Error::from_reason(
            "paths and formats must have the same length",
        ));
    }
    Ok(AsyncTask::new(ReadTask {
        files: paths.into_iter().zip(formats).collect(),
        options,
    }))
}

/// Decodes a sidecar binary array (`{ "$base64": text, "dtype": "u32" }`): little-endian `u32`
/// values in strict, padded standard base64; errors name argument `name`
/// (`ERR_OMNIBAL_INVALID_TYPE`, the TypeScript twin's messages).
#[napi]
pub fn decode_base64_u32(env: Env, name: String, text: String) -> napi::Result<Uint32Array> {
    run_sync(&env, || {
        omnibal_core::io::base64::decode_u32(&name, text.as_bytes())
    })
    .map(Uint32Array::new)
}

/// A run of a plan's steps as JSON text, and the first step not written.
#[napi(object)]
pub struct NativeStepsJson {
    pub bytes: Uint8Array,
    pub next_step: u32,
}

/// Steps `fromStep ..` of a plan as JSON text (`[[[i,...],...],...]` per step, each after a comma
/// unless it is step 0): one step at least, then whole steps until `minBytes` are written or the
/// steps end.
#[napi(
    js_name = "planStepsJson",
    ts_args_type = "samples: Uint32Array, microBatchOffsets: Uint32Array, rankOffsets: Uint32Array, dp: number, fromStep: number, minBytes: number"
)]
pub fn plan_steps_json_sync(
    env: Env,
    samples: Unknown,
    micro_batch_offsets: Unknown,
    rank_offsets: Unknown,
    dp: f64,
    from_step: f64,
    min_bytes: f64,
) -> napi::Result<NativeStepsJson> {
    let samples = expect_u32_array(&env, samples, "samples")?;
    let mbo = expect_u32_array(&env, micro_batch_offsets, "microBatchOffsets")?;
    let ranks = expect_u32_array(&env, rank_offsets, "rankOffsets")?;
    run_sync(&env, || {
        let dp = integer_between("dp", dp, 1, 1 << 20)? as usize;
        let from = integer_between("fromStep", from_step, 0, u32::MAX as u64)? as usize;
        let min = integer_between("minBytes", min_bytes, 0, 1 << 30)? as usize;
        let out = plan_steps_json(&samples, &mbo, &ranks, dp, from, min)?;
        Ok(NativeStepsJson {
            bytes: out.bytes.into(),
            next_step: out.next_step as u32,
        })
    })
}
