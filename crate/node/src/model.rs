//! Model and memory balance for JavaScript: the stage DP, plan evaluation, baseline splits, the
//! VLM cost model's layer table, and calibration. Layer tables cross as typed arrays.

use crate::error::{guard, run_sync, to_js_error};
use napi::bindgen_prelude::{AsyncTask, Float64Array, Uint32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use omnibal_core::error::{integer_between, number_at_least};
use omnibal_core::model::baselines::{
    baseline_plan, check_split_work, split_ends, BaselineRecompute, Split,
};
use omnibal_core::model::calibrate::{
    check_timing, fit_activation_scale, fit_layer_cost, LayerTiming, StageMemory, KINDS,
};
use omnibal_core::model::chunks::{partition_chunks, ChunkPlan};
use omnibal_core::model::partition::{partition_stages, plan_for_split};
use omnibal_core::model::stages::{Layer, Recompute, StagePlan, StageProblem};
use omnibal_core::model::vlm::{
    cut_times, vlm_layers, Efficiency, GpuSpec, LayerCost, MicroBatchLoad, ModelLayer, Parallel,
    Transformer, VlmSpec,
};
use omnibal_core::simulate::Schedule;
use omnibal_core::Error;

/// The canonical stage problem, layers as typed arrays.
#[napi(object)]
pub struct StageProblemInput {
    pub forward_ms: Float64Array,
    pub backward_ms: Float64Array,
    pub static_bytes: Float64Array,
    pub activation_bytes: Float64Array,
    pub checkpoint_bytes: Float64Array,
    pub stages: f64,
    pub micro_batches: f64,
    pub memory_bytes: f64,
    pub stage_overhead_bytes: Option<f64>,
    pub comm_ms: Option<Float64Array>,
    pub recompute: Option<String>,
    pub first_stage_min_layers: Option<f64>,
    /// Bytes kept per in-flight micro-batch under selective recomputation (default: activation).
    pub selective_bytes: Option<Float64Array>,
    /// Forward time selective recomputation adds (default 0).
    pub selective_ms: Option<Float64Array>,
    /// `gpipe`, `1f1b` (default) or `interleaved`.
    pub schedule: Option<String>,
    /// Model chunks per device for `interleaved` (default 2).
    pub virtual_stages: Option<f64>,
    /// For `uniform` recomputation: the layers every stage recomputes (default 0).
    pub uniform_layers: Option<f64>,
    /// The transformer block of each layer for `uniform` (0: outside any block; default: all
    /// layers one block).
    pub recompute_groups: Option<Uint32Array>,
}

fn problem(p: &StageProblemInput) -> Result<StageProblem, Error> {
    let l = p.forward_ms.len();
    for (name, a) in [
        ("backwardMs", Some(&p.backward_ms)),
        ("staticBytes", Some(&p.static_bytes)),
        ("activationBytes", Some(&p.activation_bytes)),
        ("checkpointBytes", Some(&p.checkpoint_bytes)),
        ("selectiveBytes", p.selective_bytes.as_ref()),
        ("selectiveMs", p.selective_ms.as_ref()),
    ] {
        let Some(a) = a else { continue };
        if a.len() != l {
            return Err(Error::out_of_range(
                name,
                format!("must have one entry per layer ({l}), got {}", a.len()),
            ));
        }
    }
    let layers = (0..l)
        .map(|i| Layer {
            forward_ms: p.forward_ms[i],
            backward_ms: p.backward_ms[i],
            static_bytes: p.static_bytes[i],
            activation_bytes: p.activation_bytes[i],
            checkpoint_bytes: p.checkpoint_bytes[i],
            selective_bytes: p
                .selective_bytes
                .as_ref()
                .map_or(p.activation_bytes[i], |x| x[i]),
            selective_ms: p.selective_ms.as_ref().map_or(0.0, |x| x[i]),
        })
        .collect();
    let v = integer_between("virtualStages", p.virtual_stages.unwrap_or(2.0), 1, 1 << 10)? as u32;
    Ok(StageProblem {
        layers,
        stages: integer_between("stages", p.stages, 0, 1 << 16)? as u32,
        micro_batches: integer_between("microBatches", p.micro_batches, 0, 1 << 20)? as u32,
        memory_bytes: number_at_least("memoryBytes", p.memory_bytes, 0.0)?,
        stage_overhead_bytes: p.stage_overhead_bytes.unwrap_or(0.0),
        comm_ms: p.comm_ms.as_ref().map(|c| c.to_vec()).unwrap_or_default(),
        recompute: match Recompute::parse(p.recompute.as_deref().unwrap_or("block"))? {
            Recompute::Uniform(_) => Recompute::Uniform(integer_between(
                "uniformLayers",
                p.uniform_layers.unwrap_or(0.0),
                0,
                1 << 20,
            )? as u32),
            mode => mode,
        },
        first_stage_min_layers: p
            .first_stage_min_layers
            .map(|x| integer_between("firstStageMinLayers", x, 0, 1 << 20))
            .transpose()?
            .unwrap_or(0) as u32,
        schedule: Schedule::parse(p.schedule.as_deref().unwrap_or("1f1b"), v)?,
        recompute_groups: p
            .recompute_groups
            .as_ref()
            .map(|g| g.to_vec())
            .unwrap_or_default(),
    })
}

/// A stage plan as JavaScript sees it.
#[napi(object)]
pub struct NativeStagePlan {
    pub first_layer: Uint32Array,
    pub last_layer: Uint32Array,
    pub time_ms: Float64Array,
    pub memory_bytes: Float64Array,
    /// Micro-batches in flight (chunk-weighted for interleaved, so possibly fractional).
    pub in_flight: Float64Array,
    /// One flag per layer: 1 where it is fully recomputed, 2 where selectively.
    pub recomputed: Uint8Array,
    pub iteration_ms: f64,
    pub bottleneck_ms: f64,
}

/// One flag per layer from each part's (selectively, fully) recomputed layers: 2 where
/// selectively, 1 where fully recomputed, else 0.
fn recompute_flags<'a>(
    layers: usize,
    parts: impl Iterator<Item = (&'a [u32], &'a [u32])>,
) -> Vec<u8> {
    let mut flags = vec![0u8; layers];
    for (selective, recomputed) in parts {
        for &i in selective {
            flags[i as usize] = 2;
        }
        for &i in recomputed {
            flags[i as usize] = 1;
        }
    }
    flags
}

fn to_js(plan: StagePlan, layers: usize) -> NativeStagePlan {
    let flags = recompute_flags(
        layers,
        plan.stages
            .iter()
            .map(|s| (&s.selective[..], &s.recomputed[..])),
    );
    NativeStagePlan {
        first_layer: Uint32Array::new(plan.stages.iter().map(|s| s.first_layer).collect()),
        last_layer: Uint32Array::new(plan.stages.iter().map(|s| s.last_layer).collect()),
        time_ms: Float64Array::new(plan.stages.iter().map(|s| s.time_ms).collect()),
        memory_bytes: Float64Array::new(plan.stages.iter().map(|s| s.memory_bytes).collect()),
        in_flight: Float64Array::new(plan.stages.iter().map(|s| s.in_flight).collect()),
        recomputed: Uint8Array::new(flags),
        iteration_ms: plan.iteration_ms,
        bottleneck_ms: plan.bottleneck_ms,
    }
}

fn run_partition(p: &StageProblemInput) -> Result<NativeStagePlan, Error> {
    let problem = problem(p)?;
    Ok(to_js(partition_stages(&problem)?, problem.layers.len()))
}

/// The optimal stage plan (the stage DP).
#[napi(js_name = "partitionStages")]
pub fn partition_stages_sync(
    env: Env,
    problem: StageProblemInput,
) -> napi::Result<NativeStagePlan> {
    run_sync(&env, || run_partition(&problem))
}

/// The work of [`partition_stages_async`].
pub struct PartitionTask(StageProblemInput);

impl Task for PartitionTask {
    type Output = Result<NativeStagePlan, Error>;
    type JsValue = NativeStagePlan;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| run_partition(&self.0)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output.map_err(|e| to_js_error(&env, &e))
    }
}

/// [`partition_stages_sync`] on the libuv pool.
#[napi(ts_return_type = "Promise<NativeStagePlan>")]
pub fn partition_stages_async(problem: StageProblemInput) -> AsyncTask<PartitionTask> {
    AsyncTask::new(PartitionTask(problem))
}

/// An interleaved plan as JavaScript sees it: `v x P` chunks in layer order, `P` stages.
#[napi(object)]
pub struct NativeChunkPlan {
    pub chunk_first_layer: Uint32Array,
    pub chunk_last_layer: Uint32Array,
    /// Each chunk's time per micro-batch (recomputation and the cut after it included), ms.
    pub chunk_time_ms: Float64Array,
    /// Micro-batches of each chunk held at its stage's activation peak.
    pub chunk_held: Uint32Array,
    /// Per stage: the sum of its chunks' times, ms.
    pub time_ms: Float64Array,
    pub memory_bytes: Float64Array,
    /// Per stage: micro-batches held at the peak, chunk-weighted.
    pub in_flight: Float64Array,
    /// One flag per layer: 1 where it is fully recomputed, 2 where selectively.
    pub recomputed: Uint8Array,
    pub iteration_ms: f64,
    pub bottleneck_ms: f64,
    /// The search finished: the plan is optimal for the model.
    pub optimal: bool,
    /// A lower bound on the optimum's iteration time, ms.
    pub lower_bound_ms: f64,
}

fn chunks_to_js(plan: ChunkPlan, layers: usize) -> NativeChunkPlan {
    let flags = recompute_flags(
        layers,
        plan.chunks
            .iter()
            .map(|c| (&c.selective[..], &c.recomputed[..])),
    );
    NativeChunkPlan {
        chunk_first_layer: Uint32Array::new(plan.chunks.iter().map(|c| c.first_layer).collect()),
        chunk_last_layer: Uint32Array::new(plan.chunks.iter().map(|c| c.last_layer).collect()),
        chunk_time_ms: Float64Array::new(plan.chunks.iter().map(|c| c.time_ms).collect()),
        chunk_held: Uint32Array::new(plan.chunks.iter().map(|c| c.held).collect()),
        time_ms: Float64Array::new(plan.stages.iter().map(|s| s.time_ms).collect()),
        memory_bytes: Float64Array::new(plan.stages.iter().map(|s| s.memory_bytes).collect()),
        in_flight: Float64Array::new(plan.stages.iter().map(|s| s.in_flight).collect()),
        recomputed: Uint8Array::new(flags),
        iteration_ms: plan.iteration_ms,
        bottleneck_ms: plan.bottleneck_ms,
        optimal: plan.optimal,
        lower_bound_ms: plan.lower_bound_ms,
    }
}

/// The interleaved chunk planner (`model::chunks::partition_chunks`); the problem's schedule
/// must be `interleaved`.
#[napi(js_name = "partitionChunks")]
pub fn partition_chunks_sync(
    env: Env,
    problem: StageProblemInput,
) -> napi::Result<NativeChunkPlan> {
    run_sync(&env, || {
        let p = self::problem(&problem)?;
        Ok(chunks_to_js(partition_chunks(&p)?, p.layers.len()))
    })
}

fn recomputed_lists(ends: &[u32], flags: &[u8], flag: u8) -> Vec<Vec<u32>> {
    let mut first = 0u32;
    ends.iter()
        .map(|&last| {
            let v = (first..=last.min(flags.len().saturating_sub(1) as u32))
                .filter(|&i| flags.get(i as usize) == Some(&flag))
                .collect();
            first = last + 1;
            v
        })
        .collect()
}

/// Evaluates a given plan: stage ends and per-layer recompute flags (1 full, 2 selective).
#[napi]
pub fn evaluate_stages(
    env: Env,
    problem: StageProblemInput,
    last_layers: Uint32Array,
    recomputed: Uint8Array,
) -> napi::Result<NativeStagePlan> {
    run_sync(&env, || {
        let p = self::problem(&problem)?;
        p.check()?;
        if recomputed.len() != p.layers.len() {
            return Err(Error::out_of_range(
                "recomputed",
                format!("must have one flag per layer ({})", p.layers.len()),
            ));
        }
        Ok(to_js(
            p.evaluate_with(
                &last_layers,
                &recomputed_lists(&last_layers, &recomputed, 1),
                &recomputed_lists(&last_layers, &recomputed, 2),
            )?,
            p.layers.len(),
        ))
    })
}

/// A given split, each stage with its cheapest feasible recomputation.
#[napi]
pub fn evaluate_split(
    env: Env,
    problem: StageProblemInput,
    last_layers: Uint32Array,
) -> napi::Result<NativeStagePlan> {
    run_sync(&env, || {
        let p = self::problem(&problem)?;
        Ok(to_js(plan_for_split(&p, &last_layers)?, p.layers.len()))
    })
}

/// A baseline: a split method and a recomputation setting.
#[napi]
pub fn baseline_stages(
    env: Env,
    problem: StageProblemInput,
    params: Float64Array,
    method: String,
    #[napi(ts_arg_type = "'none' | 'full' | 'uniform'")] recompute: String,
) -> napi::Result<NativeStagePlan> {
    run_sync(&env, || {
        let p = self::problem(&problem)?;
        p.check()?;
        if params.len() != p.layers.len() {
            return Err(Error::out_of_range(
                "params",
                format!("must have one entry per layer ({})", p.layers.len()),
            ));
        }
        let rec = match recompute.as_str() {
            "none" => BaselineRecompute::None,
            "full" => BaselineRecompute::Full,
            "uniform" => BaselineRecompute::Uniform,
            _ => {
                return Err(Error::UnknownOption {
                    name: "recompute".into(),
                    value: recompute.clone(),
                    known: &["none", "full", "uniform"],
                })
            }
        };
        let split = Split::parse(&method)?;
        check_split_work(split, &p)?;
        let ends = split_ends(split, &p, &params);
        Ok(to_js(baseline_plan(&p, &ends, rec)?, p.layers.len()))
    })
}

/// A transformer stack.
#[napi(object)]
pub struct TransformerInput {
    pub layers: f64,
    pub hidden: f64,
    pub heads: f64,
    pub kv_heads: f64,
    pub ffn: f64,
    pub gated: bool,
    pub vocab: Option<f64>,
}

/// A VLM.
#[napi(object)]
pub struct VlmInput {
    pub vit: TransformerInput,
    pub llm: TransformerInput,
    pub vit_tokens_per_tile: f64,
    pub tile_pixels: f64,
    pub patch: f64,
    pub llm_tokens_per_tile: f64,
    pub projector_in: f64,
}

/// A GPU.
#[napi(object)]
pub struct GpuInput {
    pub peak_flops: f64,
    pub memory_bytes: f64,
    pub efficiency_vit: f64,
    pub efficiency_projector: f64,
    pub efficiency_llm: f64,
    pub efficiency_head: f64,
    pub network_bytes_per_s: f64,
    pub nvlink_bytes_per_s: f64,
    /// Calibrated fixed forward ms per layer kind (6 entries, NaN: not calibrated).
    pub layer_overhead_ms: Option<Float64Array>,
    /// Calibrated efficiency per layer kind (6 entries, NaN: not calibrated).
    pub layer_efficiency: Option<Float64Array>,
}

/// The parallel layout and the micro-batch a layer table is for.
#[napi(object)]
pub struct TableShape {
    pub tp: f64,
    pub dp: f64,
    pub zero: f64,
    pub tiles: f64,
    pub tokens: f64,
    pub sum_sq_len: f64,
    /// Bytes per gradient: 4 (fp32, default) or 2 (bf16).
    pub grad_bytes: Option<f64>,
    pub frozen_vit: Option<bool>,
    pub frozen_llm: Option<bool>,
    /// Default true.
    pub flash_attention: Option<bool>,
}

/// Measurements to calibrate with: layer forward times, and per stage `(first, last, inFlight)`
/// bounds with `(full, none)` recomputation peak bytes.
#[napi(object)]
pub struct CalibrationInput {
    pub measured_layers: Uint32Array,
    pub measured_forward_ms: Float64Array,
    /// The load each layer was measured at, `(tiles, tokens, sumSqLen)` per measured layer;
    /// default: the table's load.
    pub measured_loads: Option<Float64Array>,
    pub stage_bounds: Uint32Array,
    pub stage_memory: Float64Array,
}

/// The model's layer table (struct of arrays), plus the cut times between layers.
#[napi(object)]
pub struct NativeLayerTable {
    /// Index into `['vit-embed', 'vit', 'projector', 'embed', 'llm', 'head']`.
    pub kind: Uint8Array,
    pub forward_flops: Float64Array,
    pub params: Float64Array,
    pub forward_ms: Float64Array,
    pub backward_ms: Float64Array,
    pub static_bytes: Float64Array,
    pub activation_bytes: Float64Array,
    pub checkpoint_bytes: Float64Array,
    pub selective_bytes: Float64Array,
    pub selective_ms: Float64Array,
    pub weight_bytes: Float64Array,
    pub gradient_bytes: Float64Array,
    pub optimizer_bytes: Float64Array,
    pub comm_ms: Float64Array,
}

fn transformer(name: &str, t: &TransformerInput) -> Result<Transformer, Error> {
    Ok(Transformer {
        layers: integer_between(&format!("{name}.layers"), t.layers, 0, 100_000)? as u32,
        hidden: t.hidden,
        heads: t.heads,
        kv_heads: t.kv_heads,
        ffn: t.ffn,
        gated: t.gated,
        vocab: t.vocab.unwrap_or(0.0),
    })
}

fn spec_of(m: &VlmInput) -> Result<VlmSpec, Error> {
    Ok(VlmSpec {
        vit: transformer("vit", &m.vit)?,
        llm: transformer("llm", &m.llm)?,
        vit_tokens_per_tile: m.vit_tokens_per_tile,
        tile_pixels: m.tile_pixels,
        patch: m.patch,
        llm_tokens_per_tile: m.llm_tokens_per_tile,
        projector_in: m.projector_in,
    })
}

fn gpu_of(g: &GpuInput) -> Result<GpuSpec, Error> {
    let mut layer_cost = [None; 6];
    if let (Some(o), Some(e)) = (&g.layer_overhead_ms, &g.layer_efficiency) {
        if o.len() != 6 || e.len() != 6 {
            return Err(Error::out_of_range(
                "gpu.layerCost",
                "needs 6 overheads and 6 efficiencies (one per layer kind)",
            ));
        }
        for (k, slot) in layer_cost.iter_mut().enumerate() {
            if !(o[k].is_nan() && e[k].is_nan()) {
                *slot = Some(LayerCost {
                    overhead_ms: o[k],
                    efficiency: e[k],
                });
            }
        }
    }
    Ok(GpuSpec {
        peak_flops: g.peak_flops,
        memory_bytes: g.memory_bytes,
        efficiency: Efficiency {
            vit: g.efficiency_vit,
            projector: g.efficiency_projector,
            llm: g.efficiency_llm,
            head: g.efficiency_head,
        },
        network_bytes_per_s: g.network_bytes_per_s,
        nvlink_bytes_per_s: g.nvlink_bytes_per_s,
        layer_cost,
    })
}

fn table(
    model: &VlmInput,
    gpu: &GpuInput,
    shape: &TableShape,
) -> Result<(Vec<ModelLayer>, GpuSpec), Error> {
    let par = Parallel {
        grad_bytes: shape.grad_bytes.unwrap_or(4.0),
        frozen_vit: shape.frozen_vit.unwrap_or(false),
        frozen_llm: shape.frozen_llm.unwrap_or(false),
        flash_attention: shape.flash_attention.unwrap_or(true),
        ..Parallel::new(
            integer_between("tp", shape.tp, 1, 1 << 12)? as u32,
            integer_between("dp", shape.dp, 1, 1 << 20)? as u32,
            integer_between("zero", shape.zero, 0, 3)? as u32,
        )
    };
    let gpu = gpu_of(gpu)?;
    let load = MicroBatchLoad {
        tiles: shape.tiles,
        tokens: shape.tokens,
        sum_sq_len: shape.sum_sq_len,
    };
    Ok((vlm_layers(&spec_of(model)?, &gpu, &par, &load)?, gpu))
}

/// The layer table of a VLM on a GPU for one micro-batch.
#[napi]
pub fn vlm_layer_table(
    env: Env,
    model: VlmInput,
    gpu: GpuInput,
    shape: TableShape,
) -> napi::Result<NativeLayerTable> {
    run_sync(&env, || {
        let (layers, gpu) = table(&model, &gpu, &shape)?;
        let col =
            |f: &dyn Fn(&ModelLayer) -> f64| Float64Array::new(layers.iter().map(f).collect());
        Ok(NativeLayerTable {
            kind: Uint8Array::new(
                layers
                    .iter()
                    .map(|x| KINDS.iter().position(|&k| k == x.kind).unwrap_or(0) as u8)
                    .collect(),
            ),
            forward_flops: col(&|x| x.forward_flops),
            params: col(&|x| x.params),
            forward_ms: col(&|x| x.layer.forward_ms),
            backward_ms: col(&|x| x.layer.backward_ms),
            static_bytes: col(&|x| x.layer.static_bytes),
            activation_bytes: col(&|x| x.layer.activation_bytes),
            checkpoint_bytes: col(&|x| x.layer.checkpoint_bytes),
            selective_bytes: col(&|x| x.layer.selective_bytes),
            selective_ms: col(&|x| x.layer.selective_ms),
            weight_bytes: col(&|x| x.weight_bytes),
            gradient_bytes: col(&|x| x.gradient_bytes),
            optimizer_bytes: col(&|x| x.optimizer_bytes),
            comm_ms: Float64Array::new(cut_times(&layers, &gpu)),
        })
    })
}

/// Calibration results per kind: efficiency and fixed forward ms (NaN where not measured), and
/// activation scales.
#[napi(object)]
pub struct NativeCalibration {
    pub efficiency: Float64Array,
    pub overhead_ms: Float64Array,
    pub activation_scale: Float64Array,
}

/// Fits efficiency per kind from measured forward times, and activation scales per kind from
/// measured stage memory (full vs no recomputation).
#[napi]
pub fn calibrate_model(
    env: Env,
    model: VlmInput,
    gpu: GpuInput,
    shape: TableShape,
    measured: CalibrationInput,
) -> napi::Result<NativeCalibration> {
    run_sync(&env, || {
        let (layers, gpu_spec) = table(&model, &gpu, &shape)?;
        let CalibrationInput {
            measured_layers,
            measured_forward_ms,
            measured_loads,
            stage_bounds,
            stage_memory,
        } = &measured;
        if measured_layers.len() != measured_forward_ms.len() {
            return Err(Error::out_of_range(
                "measuredForwardMs",
                "must have one entry per measured layer",
            ));
        }
        if let Some(l) = measured_loads {
            if l.len() != 3 * measured_layers.len() {
                return Err(Error::out_of_range(
                    "measuredLoads",
                    "needs (tiles, tokens, sumSqLen) per measured layer",
                ));
            }
        }
        let tp = integer_between("tp", shape.tp, 1, 1 << 12)? as f64;
        // Each layer's time at 100% efficiency at the load it was measured at (one table per load).
        let mut tables: Vec<([f64; 3], Vec<ModelLayer>)> = Vec::new();
        let mut timings = Vec::with_capacity(measured_layers.len());
        for (j, (&i, &t)) in measured_layers
            .iter()
            .zip(measured_forward_ms.iter())
            .enumerate()
        {
            let kind = check_timing(&layers, i, t)?;
            let flops = match measured_loads {
                None => layers[i as usize].forward_flops,
                Some(l) => {
                    let key = [l[3 * j], l[3 * j + 1], l[3 * j + 2]];
                    let at = match tables.iter().position(|(k, _)| *k == key) {
                        Some(p) => p,
                        None => {
                            let s = TableShape {
                                tiles: key[0],
                                tokens: key[1],
                                sum_sq_len: key[2],
                                tp: shape.tp,
                                dp: shape.dp,
                                zero: shape.zero,
                                grad_bytes: shape.grad_bytes,
                                frozen_vit: shape.frozen_vit,
                                frozen_llm: shape.frozen_llm,
                                flash_attention: shape.flash_attention,
                            };
                            tables.push((key, table(&model, &gpu, &s)?.0));
                            tables.len() - 1
                        }
                    };
                    tables[at].1[i as usize].forward_flops
                }
            };
            timings.push(LayerTiming {
                kind,
                ms_at_peak: flops / tp / gpu_spec.peak_flops * 1e3,
                forward_ms: t,
            });
        }
        let e = gpu_spec.efficiency;
        let fitted = fit_layer_cost(&timings, &[e.vit, e.vit, e.projector, e.llm, e.llm, e.head]);
        if !stage_bounds.len().is_multiple_of(3) || stage_memory.len() * 3 != stage_bounds.len() * 2
        {
            return Err(Error::out_of_range(
                "stageMemory",
                "needs (first, last, inFlight) bounds and (full, none) bytes per stage",
            ));
        }
        let stages: Vec<StageMemory> = (0..stage_bounds.len() / 3)
            .map(|s| StageMemory {
                first_layer: stage_bounds[3 * s],
                last_layer: stage_bounds[3 * s + 1],
                in_flight: stage_bounds[3 * s + 2],
                full_recompute_bytes: stage_memory[2 * s],
                no_recompute_bytes: stage_memory[2 * s + 1],
            })
            .collect();
        let scale = fit_activation_scale(&layers, &stages)?;
        Ok(NativeCalibration {
            efficiency: Float64Array::new(
                fitted
                    .iter()
                    .map(|c| c.map_or(f64::NAN, |c| c.efficiency))
                    .collect(),
            ),
            overhead_ms: Float64Array::new(
                fitted
                    .iter()
                    .map(|c| c.map_or(f64::NAN, |c| c.overhead_ms))
                    .collect(),
            ),
            activation_scale: Float64Array::new(scale.to_vec()),
        })
    })
}
