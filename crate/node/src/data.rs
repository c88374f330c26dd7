//! Data balance for JavaScript: batch plans (every strategy), ISF packs, the ISF argument search
//! and plan metrics, each sync and as a Promise on the libuv pool.
//!
//! Samples arrive as two `Uint32Array`s (vision, text) without copying; the async variants keep
//! references to them while the work runs on a worker thread, so callers must not change the
//! arrays until the Promise settles.

use crate::args::expect_u32_array;
use crate::cancel::CancelFlag;
use crate::error::{guard, run_sync, to_js_error};
use crate::progress::{JsProgress, ProgressFn};
use napi::bindgen_prelude::{AsyncTask, ToNapiValue, TypeName, Uint32Array, Uint8Array, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use omnibal_core::data::cost::TextCost;
use omnibal_core::data::isf::{pack_isf, IsfParams};
use omnibal_core::data::isf_search::{search_isf_arguments, IsfSearchParams};
use omnibal_core::data::load::{plan_loads, PlanLoads};
use omnibal_core::data::metrics::{batch_metrics, BatchMetrics};
use omnibal_core::data::plan::{BatchPlan, Packs, Tail};
use omnibal_core::data::samples::{Caps, DropReason, Samples};
use omnibal_core::data::strategy::{
    plan_batches_with_carry, PlanOptions, ResolvedSize, Size, Strategy,
};
use omnibal_core::data::synthetic::synthetic_samples;
use omnibal_core::error::{integer_between, integer_in_range, number_at_least};
use omnibal_core::progress::Progress;
use omnibal_core::rng::MAX_SEED;
use omnibal_core::Error;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const MAX_U32: u64 = u32::MAX as u64;

/// Options of a batch plan (see the TypeScript `PlanBatchesOptions` for the documentation).
#[napi(object)]
pub struct PlanBatchesOptions {
    pub strategy: Option<String>,
    pub dp: f64,
    pub accum: Option<f64>,
    pub samples_per_pack: Option<f64>,
    pub max_vision: Option<f64>,
    pub max_text: Option<f64>,
    pub seed: Option<f64>,
    pub epoch: Option<f64>,
    pub cost_a: Option<f64>,
    pub cost_b: Option<f64>,
    pub tail: Option<String>,
    pub iterations: Option<f64>,
    pub min_text: Option<f64>,
    pub min_vision: Option<f64>,
    pub carry: Option<Uint32Array>,
}

fn opt_int(name: &str, v: Option<f64>, min: u64, max: u64, default: u64) -> Result<u64, Error> {
    v.map_or(Ok(default), |x| integer_between(name, x, min, max))
}

/// Caps from `maxVision` / `maxText`, when both are given; an error when only one is.
fn caps_of(max_vision: Option<f64>, max_text: Option<f64>) -> Result<Option<Caps>, Error> {
    match (max_vision, max_text) {
        (Some(v), Some(t)) => Ok(Some(Caps {
            max_vision: integer_in_range("maxVision", v, MAX_U32)? as u32,
            max_text: integer_between("maxText", t, 1, MAX_U32)? as u32,
        })),
        (None, None) => Ok(None),
        _ => Err(Error::InvalidOptions {
            message: "maxVision and maxText go together: give both, or samplesPerPack".into(),
        }),
    }
}

/// Checks the options and turns them into the core's.
pub fn plan_options(o: &PlanBatchesOptions) -> Result<PlanOptions, Error> {
    let strategy = Strategy::parse(o.strategy.as_deref().unwrap_or("balanced"))?;
    let dp = integer_between("dp", o.dp, 1, 1 << 20)? as u32;
    let accum = opt_int("accum", o.accum, 1, 1 << 20, 1)? as u32;
    let size = match (o.samples_per_pack, caps_of(o.max_vision, o.max_text)?) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidOptions {
                message: "give samplesPerPack or maxVision/maxText, not both".into(),
            })
        }
        (Some(b), None) => Size::SamplesPerPack(number_at_least("samplesPerPack", b, 1.0)?),
        (None, Some(c)) => Size::Caps(c),
        (None, None) => {
            return Err(Error::InvalidOptions {
                message: "give samplesPerPack, or maxVision and maxText".into(),
            })
        }
    };
    Ok(PlanOptions {
        strategy,
        dp,
        accum,
        size,
        seed: opt_int("seed", o.seed, 0, MAX_SEED, 0)?,
        epoch: opt_int("epoch", o.epoch, 0, MAX_U32, 0)?,
        cost: TextCost::new(o.cost_a.unwrap_or(1.0), o.cost_b.unwrap_or(0.0))?,
        tail: Tail::parse(o.tail.as_deref().unwrap_or("drop"))?,
        iterations: o
            .iterations
            .map(|x| integer_between("iterations", x, 1, 10_000))
            .transpose()?
            .map(|x| x as u32),
        min_text: o
            .min_text
            .map(|x| integer_in_range("minText", x, MAX_U32))
            .transpose()?
            .map(|x| x as u32),
        min_vision: o
            .min_vision
            .map(|x| integer_in_range("minVision", x, MAX_U32))
            .transpose()?
            .map(|x| x as u32),
    })
}

/// A batch plan as JavaScript sees it (struct of typed arrays).
#[napi(object)]
pub struct NativeBatchPlan {
    pub strategy: String,
    pub dp: u32,
    pub accum: u32,
    pub packed: bool,
    pub tail: String,
    pub steps: u32,
    pub max_vision: Option<u32>,
    pub max_text: Option<u32>,
    pub batch_size: Option<u32>,
    pub samples: Uint32Array,
    pub micro_batch_offsets: Uint32Array,
    pub rank_offsets: Uint32Array,
    pub padding: Uint8Array,
    pub dropped_index: Uint32Array,
    pub dropped_reason: Uint8Array,
    pub oversize_index: Uint32Array,
    pub carried_index: Uint32Array,
}

fn split_dropped(dropped: &[(u32, DropReason)]) -> (Uint32Array, Uint8Array) {
    let index: Vec<u32> = dropped.iter().map(|d| d.0).collect();
    let reason: Vec<u8> = dropped.iter().map(|d| d.1 as u8).collect();
    (Uint32Array::new(index), Uint8Array::new(reason))
}

fn to_js_plan(strategy: Strategy, plan: BatchPlan, size: ResolvedSize) -> NativeBatchPlan {
    let (dropped_index, dropped_reason) = split_dropped(&plan.dropped);
    NativeBatchPlan {
        strategy: strategy.name().to_owned(),
        dp: plan.dp,
        accum: plan.accum,
        packed: plan.packed,
        tail: plan.tail.name().to_owned(),
        steps: plan.steps() as u32,
        max_vision: size.caps.map(|c| c.max_vision),
        max_text: size.caps.map(|c| c.max_text),
        batch_size: size.batch_size,
        samples: Uint32Array::new(plan.samples),
        micro_batch_offsets: Uint32Array::new(plan.micro_batch_offsets),
        rank_offsets: Uint32Array::new(plan.rank_offsets),
        padding: Uint8Array::new(plan.padding),
        dropped_index,
        dropped_reason,
        oversize_index: Uint32Array::new(plan.oversize),
        carried_index: Uint32Array::new(plan.carried),
    }
}

fn run_plan(
    vision: &[u32],
    text: &[u32],
    o: &PlanBatchesOptions,
    progress: &mut dyn Progress,
) -> Result<NativeBatchPlan, Error> {
    let samples = Samples::new(vision, text)?;
    let options = plan_options(o)?;
    let carry = o.carry.as_deref().unwrap_or(&[]);
    let (plan, size) = plan_batches_with_carry(&samples, &options, carry, progress)?;
    Ok(to_js_plan(options.strategy, plan, size))
}

/// Plans one epoch of batches with the chosen strategy.
#[napi(
    js_name = "planBatches",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: PlanBatchesOptions"
)]
pub fn plan_batches_sync(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: PlanBatchesOptions,
) -> napi::Result<NativeBatchPlan> {
    call(&env, vision, text, &options, run_plan)
}

/// A solver call over samples: `(vision, text, options, progress)`.
pub type SamplesFn<O, R> = fn(&[u32], &[u32], &O, &mut dyn Progress) -> Result<R, Error>;

/// A solver call over samples, run on the libuv pool: the typed arrays stay referenced (not
/// copied) until it settles.
pub struct SamplesTask<O: Send, R: Send> {
    vision: Uint32Array,
    text: Uint32Array,
    options: O,
    progress: Option<ProgressFn>,
    /// Set from JavaScript ([`CancelFlag::cancel`]) to stop the solver.
    cancel: Option<Arc<AtomicBool>>,
    run: SamplesFn<O, R>,
}

impl<O: Send, R: Send + 'static + ToNapiValue + TypeName> Task for SamplesTask<O, R> {
    type Output = Result<R, Error>;
    type JsValue = R;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut progress = JsProgress::cancellable(self.progress.take(), self.cancel.take());
        Ok(guard(|| {
            (self.run)(&self.vision, &self.text, &self.options, &mut progress)
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|e| to_js_error(&env, &e))
    }
}

/// Reads the two sample arrays and queues `run` on the libuv pool, stopped by `cancel`.
fn queue<O: Send, R: Send + 'static + ToNapiValue + TypeName>(
    env: &Env,
    vision: Unknown,
    text: Unknown,
    options: O,
    progress: Option<ProgressFn>,
    cancel: Option<&CancelFlag>,
    run: SamplesFn<O, R>,
) -> napi::Result<AsyncTask<SamplesTask<O, R>>> {
    let vision = expect_u32_array(env, vision, "vision")?;
    let text = expect_u32_array(env, text, "text")?;
    // `OMNIBAL_THREADS` is read here, on the JavaScript thread, never on the pool's.
    omnibal_core::data::balance::worker_threads();
    Ok(AsyncTask::new(SamplesTask {
        vision,
        text,
        options,
        progress,
        cancel: cancel.map(CancelFlag::shared),
        run,
    }))
}

/// Reads the two sample arrays and runs `run` now.
fn call<O, R>(
    env: &Env,
    vision: Unknown,
    text: Unknown,
    options: &O,
    run: SamplesFn<O, R>,
) -> napi::Result<R> {
    let vision = expect_u32_array(env, vision, "vision")?;
    let text = expect_u32_array(env, text, "text")?;
    run_sync(env, || run(&vision, &text, options, &mut ()))
}

/// [`plan_batches_sync`] on the libuv pool.
#[napi(
    js_name = "planBatchesAsync",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: PlanBatchesOptions, onProgress?: ((done: number, total: number) => void) | undefined | null, cancel?: CancelFlag | undefined | null",
    ts_return_type = "Promise<NativeBatchPlan>"
)]
pub fn plan_batches_async(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: PlanBatchesOptions,
    on_progress: Option<ProgressFn>,
    cancel: Option<&CancelFlag>,
) -> napi::Result<AsyncTask<SamplesTask<PlanBatchesOptions, NativeBatchPlan>>> {
    queue(&env, vision, text, options, on_progress, cancel, run_plan)
}

/// Options of ISF.
#[napi(object)]
#[derive(Clone)]
pub struct PackIsfOptions {
    pub max_vision: f64,
    pub max_text: f64,
    pub min_vision: Option<f64>,
    pub min_text: Option<f64>,
    pub iterations: Option<f64>,
    pub seed: Option<f64>,
    pub epoch: Option<f64>,
}

/// ISF packs as JavaScript sees them.
#[napi(object)]
pub struct NativeIsfPacks {
    pub pack_samples: Uint32Array,
    pub pack_offsets: Uint32Array,
    pub dropped_index: Uint32Array,
    pub dropped_reason: Uint8Array,
}

fn isf_params(o: &PackIsfOptions) -> Result<IsfParams, Error> {
    let caps = caps_of(Some(o.max_vision), Some(o.max_text))?.expect("both caps given");
    let mut p = IsfParams::reference(
        caps,
        opt_int("seed", o.seed, 0, MAX_SEED, 0)?,
        opt_int("epoch", o.epoch, 0, MAX_U32, 0)?,
    );
    p.min_vision = opt_int("minVision", o.min_vision, 0, MAX_U32, p.min_vision as u64)? as u32;
    p.min_text = opt_int("minText", o.min_text, 0, MAX_U32, p.min_text as u64)? as u32;
    p.iterations = opt_int("iterations", o.iterations, 1, 10_000, p.iterations as u64)? as u32;
    Ok(p)
}

fn run_isf(
    vision: &[u32],
    text: &[u32],
    o: &PackIsfOptions,
    progress: &mut dyn Progress,
) -> Result<NativeIsfPacks, Error> {
    let samples = Samples::new(vision, text)?;
    let out = pack_isf(&samples, &isf_params(o)?, progress)?;
    let Packs { items, offsets } = out.packs;
    let (dropped_index, dropped_reason) = split_dropped(&out.dropped);
    Ok(NativeIsfPacks {
        pack_samples: Uint32Array::new(items),
        pack_offsets: Uint32Array::new(offsets),
        dropped_index,
        dropped_reason,
    })
}

/// The reference ISF (bug-fixed): packs in acceptance order, and the samples over a cap.
#[napi(
    js_name = "packIsf",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: PackIsfOptions"
)]
pub fn pack_isf_sync(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: PackIsfOptions,
) -> napi::Result<NativeIsfPacks> {
    call(&env, vision, text, &options, run_isf)
}

/// [`pack_isf_sync`] on the libuv pool.
#[napi(
    js_name = "packIsfAsync",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: PackIsfOptions, onProgress?: ((done: number, total: number) => void) | undefined | null, cancel?: CancelFlag | undefined | null",
    ts_return_type = "Promise<NativeIsfPacks>"
)]
pub fn pack_isf_async(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: PackIsfOptions,
    on_progress: Option<ProgressFn>,
    cancel: Option<&CancelFlag>,
) -> napi::Result<AsyncTask<SamplesTask<PackIsfOptions, NativeIsfPacks>>> {
    queue(&env, vision, text, options, on_progress, cancel, run_isf)
}

/// Options of the ISF argument search.
#[napi(object)]
#[derive(Clone)]
pub struct SearchIsfOptions {
    pub samples_per_pack: f64,
    pub dp: Option<f64>,
    pub accum: Option<f64>,
    pub iterations: Option<f64>,
    pub max_steps: Option<f64>,
    pub seed: Option<f64>,
}

/// One candidate of the search.
#[napi(object)]
pub struct NativeIsfCandidate {
    pub max_vision: u32,
    pub max_text: u32,
    pub samples_per_pack: f64,
    pub pad_ratio: f64,
    pub vision_dist: f64,
    pub text_dist: f64,
    pub score: f64,
    pub dropped: u32,
    pub in_window: bool,
}

/// The search's result.
#[napi(object)]
pub struct NativeIsfSearch {
    pub chosen: u32,
    pub text_step: u32,
    pub candidates: Vec<NativeIsfCandidate>,
    pub warnings: Vec<String>,
}

fn run_search(
    vision: &[u32],
    text: &[u32],
    o: &SearchIsfOptions,
    progress: &mut dyn Progress,
) -> Result<NativeIsfSearch, Error> {
    let samples = Samples::new(vision, text)?;
    let p = IsfSearchParams {
        samples_per_pack: number_at_least("samplesPerPack", o.samples_per_pack, 1.0)?,
        dp: opt_int("dp", o.dp, 1, 1 << 20, 8)? as u32,
        accum: opt_int("accum", o.accum, 1, 1 << 20, 1)? as u32,
        iterations: opt_int("iterations", o.iterations, 1, 10_000, 50)? as u32,
        max_steps: opt_int("maxSteps", o.max_steps, 1, 4096, 32)? as u32,
        seed: opt_int("seed", o.seed, 0, MAX_SEED, 0)?,
    };
    let out = search_isf_arguments(&samples, &p, progress)?;
    Ok(NativeIsfSearch {
        chosen: out.chosen as u32,
        text_step: out.text_step,
        candidates: out
            .candidates
            .iter()
            .map(|c| NativeIsfCandidate {
                max_vision: c.caps.max_vision,
                max_text: c.caps.max_text,
                samples_per_pack: c.samples_per_pack,
                pad_ratio: c.pad_ratio,
                vision_dist: c.vision_dist,
                text_dist: c.text_dist,
                score: c.score,
                dropped: c.dropped as u32,
                in_window: c.in_window,
            })
            .collect(),
        warnings: out.warnings,
    })
}

/// The reference search for ISF's caps.
#[napi(
    js_name = "searchIsfArguments",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: SearchIsfOptions"
)]
pub fn search_isf_arguments_sync(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: SearchIsfOptions,
) -> napi::Result<NativeIsfSearch> {
    call(&env, vision, text, &options, run_search)
}

/// [`search_isf_arguments_sync`] on the libuv pool.
#[napi(
    js_name = "searchIsfArgumentsAsync",
    ts_args_type = "vision: Uint32Array, text: Uint32Array, options: SearchIsfOptions, onProgress?: ((done: number, total: number) => void) | undefined | null, cancel?: CancelFlag | undefined | null",
    ts_return_type = "Promise<NativeIsfSearch>"
)]
pub fn search_isf_arguments_async(
    env: Env,
    vision: Unknown,
    text: Unknown,
    options: SearchIsfOptions,
    on_progress: Option<ProgressFn>,
    cancel: Option<&CancelFlag>,
) -> napi::Result<AsyncTask<SamplesTask<SearchIsfOptions, NativeIsfSearch>>> {
    queue(&env, vision, text, options, on_progress, cancel, run_search)
}

/// The parts of a plan that metrics read.
#[napi(object)]
pub struct PlanArrays {
    pub dp: f64,
    pub packed: bool,
    pub samples: Uint32Array,
    pub micro_batch_offsets: Uint32Array,
    pub rank_offsets: Uint32Array,
    pub padding: Uint8Array,
    pub dropped_index: Uint32Array,
}

/// Metrics of a plan.
#[napi(object)]
pub struct NativeBatchMetrics {
    pub pad_ratio: f64,
    pub vision_dist: f64,
    pub text_dist: f64,
    pub cost_dist: f64,
    pub samples_per_pack: f64,
    pub packs: u32,
    pub steps: u32,
    pub dropped: u32,
    pub step_vision_dist: napi::bindgen_prelude::Float64Array,
    pub step_text_dist: napi::bindgen_prelude::Float64Array,
    pub step_cost_dist: napi::bindgen_prelude::Float64Array,
    pub cost_excess_median: f64,
    pub cost_excess_p99: f64,
    pub step_cost_excess: napi::bindgen_prelude::Float64Array,
    /// The plan's mean and largest micro-batch loads (what `planLoads` gives), from the same pass.
    pub loads: NativePlanLoads,
}

fn run_metrics(
    plan: &PlanArrays,
    vision: &[u32],
    text: &[u32],
    cost_a: Option<f64>,
    cost_b: Option<f64>,
) -> Result<NativeBatchMetrics, Error> {
    let samples = Samples::new(vision, text)?;
    let cost = TextCost::new(cost_a.unwrap_or(1.0), cost_b.unwrap_or(0.0))?;
    let dp = integer_between("dp", plan.dp, 1, 1 << 20)? as u32;
    let mut p = BatchPlan::from_parts(
        dp,
        plan.packed,
        plan.samples.to_vec(),
        plan.micro_batch_offsets.to_vec(),
        plan.rank_offsets.to_vec(),
        plan.padding.to_vec(),
    )?;
    p.dropped = plan
        .dropped_index
        .iter()
        .map(|&i| (i, DropReason::Tail))
        .collect();
    let BatchMetrics {
        pad_ratio,
        vision_dist,
        text_dist,
        cost_dist,
        samples_per_pack,
        packs,
        steps,
        dropped,
        step_vision_dist,
        step_text_dist,
        step_cost_dist,
        cost_excess_median,
        cost_excess_p99,
        step_cost_excess,
        loads,
    } = batch_metrics(&p, &samples, &cost)?;
    Ok(NativeBatchMetrics {
        pad_ratio,
        vision_dist,
        text_dist,
        cost_dist,
        samples_per_pack,
        packs: packs as u32,
        steps: steps as u32,
        dropped: dropped as u32,
        step_vision_dist: step_vision_dist.into(),
        step_text_dist: step_text_dist.into(),
        step_cost_dist: step_cost_dist.into(),
        cost_excess_median,
        cost_excess_p99,
        step_cost_excess: step_cost_excess.into(),
        loads: native_loads(loads),
    })
}

/// The paper's pad and dist ratios of a plan, and the dist on the text cost.
#[napi(
    js_name = "batchMetrics",
    ts_args_type = "plan: PlanArrays, vision: Uint32Array, text: Uint32Array, costA?: number | undefined | null, costB?: number | undefined | null"
)]
pub fn batch_metrics_sync(
    env: Env,
    plan: PlanArrays,
    vision: Unknown,
    text: Unknown,
    cost_a: Option<f64>,
    cost_b: Option<f64>,
) -> napi::Result<NativeBatchMetrics> {
    let vision = expect_u32_array(&env, vision, "vision")?;
    let text = expect_u32_array(&env, text, "text")?;
    run_sync(&env, || run_metrics(&plan, &vision, &text, cost_a, cost_b))
}

/// A plan's mean and componentwise largest micro-batch loads.
#[napi(object)]
pub struct NativePlanLoads {
    pub mean_tiles: f64,
    pub mean_tokens: f64,
    pub mean_sum_sq_len: f64,
    pub most_tiles: f64,
    pub most_tokens: f64,
}

/// The mean and largest micro-batch loads of a plan (tiles, tokens, summed squared lengths;
/// padding counted in padded plans), in one pass.
#[napi(
    js_name = "planLoads",
    ts_args_type = "packed: boolean, planSamples: Uint32Array, microBatchOffsets: Uint32Array, vision: Uint32Array, text: Uint32Array"
)]
pub fn plan_loads_sync(
    env: Env,
    packed: bool,
    plan_samples: Unknown,
    micro_batch_offsets: Unknown,
    vision: Unknown,
    text: Unknown,
) -> napi::Result<NativePlanLoads> {
    let plan_samples = expect_u32_array(&env, plan_samples, "samples")?;
    let offsets = expect_u32_array(&env, micro_batch_offsets, "microBatchOffsets")?;
    let vision = expect_u32_array(&env, vision, "vision")?;
    let text = expect_u32_array(&env, text, "text")?;
    run_sync(&env, || {
        let samples = Samples::new(&vision, &text)?;
        Ok(native_loads(plan_loads(
            packed,
            &plan_samples,
            &offsets,
            &samples,
        )?))
    })
}

fn native_loads(l: PlanLoads) -> NativePlanLoads {
    NativePlanLoads {
        mean_tiles: l.mean_tiles,
        mean_tokens: l.mean_tokens,
        mean_sum_sq_len: l.mean_sum_sq_len,
        most_tiles: l.most_tiles,
        most_tokens: l.most_tokens,
    }
}

/// Synthetic samples (see the TypeScript `syntheticSamples`).
#[napi(object)]
pub struct NativeSyntheticSamples {
    pub vision: Uint32Array,
    pub text: Uint32Array,
    pub group: Uint32Array,
}

/// `n` synthetic samples with the real length data's statistics, a pure function of `n` and
/// `seed` (the same samples as the TypeScript twin).
#[napi(js_name = "syntheticSamples")]
pub fn synthetic_samples_sync(
    env: Env,
    n: f64,
    seed: Option<f64>,
) -> napi::Result<NativeSyntheticSamples> {
    run_sync(&env, || {
        let n = integer_between("n", n, 1, MAX_U32)? as usize;
        let seed = opt_int("seed", seed, 0, MAX_SEED, 0)?;
        let s = synthetic_samples(n, seed)?;
        Ok(NativeSyntheticSamples {
            vision: s.vision.into(),
            text: s.text.into(),
            group: s.group.into(),
        })
    })
}
