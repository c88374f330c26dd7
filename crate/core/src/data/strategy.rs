//! One entry point for every batching strategy: options in, batch plan out.

use super::balance::{balance_batches_with_carry, BalanceParams, Oversize};
use super::baselines::{isf_batches, length_grouped_batches, random_batches, PaddedParams};
use super::caps::caps_for_target;
use super::cost::TextCost;
use super::isf::IsfParams;
use super::isf_search::{search_isf_arguments, IsfSearchParams};
use super::plan::{BatchPlan, Tail};
use super::samples::{round_half_up, Caps, Samples};
use crate::error::{number_at_least, Error};
use crate::progress::{checkpoint, Cancellable, Progress};

/// A batching strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// [`balance_batches`]: the default.
    Balanced,
    /// Reference ISF packs, handed out at random.
    Isf,
    /// Shuffled fixed-size padded micro-batches.
    Random,
    /// LLaVA / HF length-grouped padded micro-batches.
    LengthGrouped,
}

impl Strategy {
    /// Every strategy name, as the API and CLI spell them.
    pub const NAMES: &'static [&'static str] = &["balanced", "isf", "random", "length-grouped"];

    /// The strategy's name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Balanced => "balanced",
            Strategy::Isf => "isf",
            Strategy::Random => "random",
            Strategy::LengthGrouped => "length-grouped",
        }
    }

    /// Parses a strategy name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "balanced" => Ok(Strategy::Balanced),
            "isf" => Ok(Strategy::Isf),
            "random" => Ok(Strategy::Random),
            "length-grouped" => Ok(Strategy::LengthGrouped),
            _ => Err(Error::UnknownOption {
                name: "strategy".into(),
                value: name.into(),
                known: Strategy::NAMES,
            }),
        }
    }
}

/// How big a micro-batch is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// Explicit caps per micro-batch.
    Caps(Caps),
    /// A wanted mean number of samples per micro-batch; caps (or the batch size of the padded
    /// baselines) are derived from it.
    SamplesPerPack(f64),
}

/// Everything a plan depends on besides the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanOptions {
    pub strategy: Strategy,
    pub dp: u32,
    pub accum: u32,
    pub size: Size,
    pub seed: u64,
    pub epoch: u64,
    pub cost: TextCost,
    pub tail: Tail,
    /// ISF rounds (`isf`, default 50) or packing rounds (`balanced`, default 4).
    pub iterations: Option<u32>,
    /// Text acceptance threshold (default: text cap - 128).
    pub min_text: Option<u32>,
    /// ISF's vision acceptance value (default: the vision cap).
    pub min_vision: Option<u32>,
}

/// What the strategy settled on, reported with the plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedSize {
    /// Caps of a packed micro-batch (`balanced`, `isf`).
    pub caps: Option<Caps>,
    /// Samples per padded micro-batch (`random`, `length-grouped`).
    pub batch_size: Option<u32>,
}

/// Most micro-batches one step may hold (`dp x accum`): plans, padding and per-step work are
/// sized by it, so it is bounded whatever the two factors are.
pub const MAX_STEP_MICRO_BATCHES: u64 = 1 << 20;

/// The error for a step of more than [`MAX_STEP_MICRO_BATCHES`] micro-batches.
pub fn step_too_large(dp: u32, accum: u32) -> Error {
    Error::out_of_range(
        "accum",
        format!(
            "times dp must be at most {MAX_STEP_MICRO_BATCHES} micro-batches per step, got dp {dp} x accum {accum} = {}",
            dp as u64 * accum as u64
        ),
    )
}

fn check_samples_per_pack(b: f64) -> Result<f64, Error> {
    number_at_least("samplesPerPack", b, 1.0)
}

/// Plans one epoch.
pub fn plan_batches(
    samples: &Samples,
    o: &PlanOptions,
    progress: &mut dyn Progress,
) -> Result<(BatchPlan, ResolvedSize), Error> {
    plan_batches_with_carry(samples, o, &[], progress)
}

/// [`plan_batches`] with the previous epoch's carried tail (`carry`, the samples its plan
/// reported as `carried`), planned in addition to the epoch's own samples
/// ([`balance_batches_with_carry`]). `carry` and tail `carry` need the balanced strategy.
pub fn plan_batches_with_carry(
    samples: &Samples,
    o: &PlanOptions,
    carry: &[u32],
    progress: &mut dyn Progress,
) -> Result<(BatchPlan, ResolvedSize), Error> {
    if o.dp as u64 * o.accum as u64 > MAX_STEP_MICRO_BATCHES {
        return Err(step_too_large(o.dp, o.accum));
    }
    checkpoint(progress)?;
    if o.strategy != Strategy::Balanced && (o.tail == Tail::Carry || !carry.is_empty()) {
        return Err(Error::InvalidOptions {
            message: format!(
                "tail 'carry' (and a carry list) needs strategy balanced, got {}",
                o.strategy.name()
            ),
        });
    }
    match o.strategy {
        Strategy::Balanced => {
            let (caps, oversize) = match o.size {
                Size::Caps(c) => (c, Oversize::Drop),
                Size::SamplesPerPack(b) => (
                    caps_for_target(samples, check_samples_per_pack(b)?),
                    Oversize::OwnMicroBatch,
                ),
            };
            let mut p = BalanceParams::new(o.dp, o.accum, caps, o.seed, o.epoch);
            p.oversize = oversize;
            p.cost = o.cost;
            p.tail = o.tail;
            if let Some(r) = o.iterations {
                p.rounds = r;
            }
            if let Some(t) = o.min_text {
                p.min_text = t;
            }
            Ok((
                balance_batches_with_carry(samples, &p, carry, progress)?,
                ResolvedSize {
                    caps: Some(caps),
                    batch_size: None,
                },
            ))
        }
        Strategy::Isf => {
            let caps = match o.size {
                Size::Caps(c) => c,
                Size::SamplesPerPack(b) => {
                    let sp = IsfSearchParams {
                        samples_per_pack: check_samples_per_pack(b)?,
                        dp: o.dp.max(1),
                        accum: o.accum.max(1),
                        iterations: o.iterations.unwrap_or(50),
                        max_steps: 32,
                        seed: o.seed,
                    };
                    // The search's progress is not the plan's; its cancel flag is.
                    let mut cancel = Cancellable {
                        flag: progress.cancel_flag().unwrap_or_default(),
                    };
                    let found = search_isf_arguments(samples, &sp, &mut cancel)?;
                    found.candidates[found.chosen].caps
                }
            };
            let mut p = IsfParams::reference(caps, o.seed, o.epoch);
            if let Some(r) = o.iterations {
                p.iterations = r;
            }
            if let Some(t) = o.min_text {
                p.min_text = t;
            }
            if let Some(v) = o.min_vision {
                p.min_vision = v;
            }
            let plan = isf_batches(samples, &p, o.dp, o.accum, o.tail, progress)?;
            Ok((
                plan,
                ResolvedSize {
                    caps: Some(caps),
                    batch_size: None,
                },
            ))
        }
        Strategy::Random | Strategy::LengthGrouped => {
            let b = match o.size {
                Size::SamplesPerPack(b) => check_samples_per_pack(b)?,
                Size::Caps(c) => {
                    // Caps no sample fits are an error, as for the packed strategies (not batch 1).
                    samples.split_by_caps(c)?;
                    let (mv, mt) = samples.means();
                    let by_v = if mv > 0.0 {
                        c.max_vision as f64 / mv
                    } else {
                        f64::INFINITY
                    };
                    by_v.min(c.max_text as f64 / mt).max(1.0)
                }
            };
            let batch = round_half_up(b).min(u32::MAX as f64) as u32;
            let p = PaddedParams {
                dp: o.dp,
                accum: o.accum,
                batch,
                seed: o.seed,
                epoch: o.epoch,
                tail: o.tail,
            };
            let plan = if o.strategy == Strategy::Random {
                random_batches(samples, &p)?
            } else {
                length_grouped_batches(samples, &p)?
            };
            progress.report(1, 1);
            Ok((
                plan,
                ResolvedSize {
                    caps: None,
                    batch_size: Some(batch),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_errors() {
        for &name in Strategy::NAMES {
            assert_eq!(Strategy::parse(name).unwrap().name(), name);
        }
        let err = Strategy::parse("greedy").unwrap_err();
        assert_eq!(err.code(), "ERR_OMNIBAL_UNKNOWN_OPTION");
        assert_eq!(
            err.to_string(),
            "strategy must be one of balanced, isf, random, length-grouped, got \"greedy\""
        );
    }

    #[test]
    fn every_strategy_plans_and_reports_its_size() {
        let v: Vec<u32> = (0..2000).map(|i| 1 + i % 5).collect();
        let t: Vec<u32> = (0..2000).map(|i| 300 + (i * 37) % 1500).collect();
        let s = Samples::new(&v, &t).unwrap();
        for &name in Strategy::NAMES {
            let o = PlanOptions {
                strategy: Strategy::parse(name).unwrap(),
                dp: 4,
                accum: 2,
                size: Size::SamplesPerPack(4.0),
                seed: 1,
                epoch: 0,
                cost: TextCost::default(),
                tail: Tail::KeepPartial,
                iterations: None,
                min_text: None,
                min_vision: None,
            };
            let (plan, size) = plan_batches(&s, &o, &mut ()).unwrap();
            assert!(plan.steps() > 10, "{name}");
            assert_eq!(size.caps.is_some(), plan.packed, "{name}");
            assert_eq!(
                size.batch_size,
                if plan.packed { None } else { Some(4) },
                "{name}"
            );
        }
    }
}
