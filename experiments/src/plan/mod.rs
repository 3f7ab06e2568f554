//! `nrf plan`: what a preset's `nrf reproduce` will cost, before anything runs.
//!
//! Every stage the run would execute (the same names as `stages/<name>.json`: `train:C_std`,
//! `construct:D_R`, `eval:on_D_R`, ...) with its work — images × passes, as forward passes,
//! training backward passes (weight and input gradients) and input-gradient backward passes
//! (attack steps, frozen weights) — its FLOPs from the architecture ([`nrf_models::flops`]), and
//! its time at a throughput that is either measured here in a few seconds (a training step of the
//! preset's own architecture on the device `nrf reproduce` would use, see [`measure`]) or given
//! as a device's sustained GFLOP/s (`--gflops`).
//!
//! The stage list follows the pipeline's own modules ([`crate::figure2`], [`crate::table1`],
//! [`crate::extras`]) and the helpers they name their sets and models with; stages the run would
//! share (a set an extra reuses from Table 1, a model evaluated once) are counted once, as the
//! stage cache runs them once.
//!
//! Costs per image, with F the forward FLOPs of the model: a training step is F forward plus
//! 2F − (first layer) backward ([`Cost::train_backward_flops`]); an attack step is F forward plus
//! F backward ([`Cost::input_backward_flops`]). PGD adversarial training with k steps is k + 1
//! forward passes and k input-gradient backward passes, then the training step. Representation
//! matching adds 3 forward passes per image (target representation, errors at start and end),
//! targeted PGD 2 (final objective, success check). Robust evaluation is counted as the full-batch
//! loop (every example attacked for every step), an upper bound: nrf stops attacking examples once
//! they are fooled. Only convolutions and linear layers are counted; theory (section 4, ndarray)
//! and the report are not network work and are left out.
//!
//! [`Cost::train_backward_flops`]: nrf_models::flops::Cost::train_backward_flops
//! [`Cost::input_backward_flops`]: nrf_models::flops::Cost::input_backward_flops

mod data;
mod stages;
mod text;
mod timing;
mod work;

#[cfg(test)]
mod tests;

pub use data::{data_shape, data_sizes};
pub use text::{flops_text, time_text};
pub use timing::{matmul_gflops, measure, source_cost};

use crate::preset::Preset;
use anyhow::{bail, Result};
use nrf_models::flops::cost;
use serde::Serialize;
use stages::stages;
use std::path::PathBuf;
use tch::Device;

/// What `nrf plan` was asked.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// A device's sustained GFLOP/s; None = measure this machine.
    pub gflops: Option<f64>,
    /// The data folder (else the preset's `data.dir`): counts the images when it is there.
    pub data_dir: Option<PathBuf>,
    /// Price `[sources]` files as the preset's architecture instead of timing them (the
    /// workers' progress lines, which need only FLOP shares, at every run's start).
    pub untimed_sources: bool,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub preset: String,
    pub overrides: Vec<String>,
    pub dataset: String,
    pub train_images: usize,
    pub test_images: usize,
    /// Where the image counts come from.
    pub sizes_from: String,
    pub image_shape: [i64; 3],
    pub classes: i64,
    pub throughput: Throughput,
    /// Every architecture the plan uses, with its per-image cost (a source model file's in
    /// FLOP-equivalents: [`SourceCost`]).
    pub models: Vec<ModelCost>,
    /// The source models of `[sources]` (TorchScript files, nrf checkpoints), priced by
    /// measurement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceCost>,
    pub stages: Vec<StagePlan>,
    /// Sums per kind of stage ("train", "eval", "construct", "ensemble", "extras").
    pub by_kind: Vec<KindTotal>,
    /// Sums per part of the run: the paper's core ([`CORE_PART`]), then each extra.
    pub by_part: Vec<PartTotal>,
    pub total_flops: f64,
    pub total_seconds: f64,
    pub total_hours: f64,
}

/// The rate the times are computed at.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Effective GFLOP/s used for every stage.
    pub gflops: f64,
    /// "--gflops" or "measured".
    pub source: String,
    /// The device (measured) or "given".
    pub device: String,
    /// How it was measured.
    pub detail: String,
    /// libtorch's f32 matmul rate on the device, for reference (measured only).
    pub matmul_gflops: Option<f64>,
}

/// A source model file's cost ([`source_cost`]): every stage that runs on it counts its
/// passes at `relative_cost` times the preset architecture's FLOPs.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCost {
    /// "C_std" or "C_rob": the model it stands in for.
    pub model: String,
    /// The TorchScript file or nrf checkpoint.
    pub file: String,
    /// Its time per attack step over the preset architecture's, measured here (1 when the file
    /// is not here).
    pub relative_cost: f64,
    /// Its number of parameters (None when the file is not here).
    pub params: Option<i64>,
    /// How it was measured, in words.
    pub detail: String,
}

/// One architecture's cost per image.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub arch: String,
    pub params: i64,
    pub forward_mflop: f64,
    pub train_backward_mflop: f64,
    pub input_backward_mflop: f64,
}

/// One stage of the run.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    /// The stage's name in `stages/` (seeds ≥ 1 of a fresh model: `<name>~s<k>`, one row).
    pub name: String,
    /// "train", "eval", "construct", "ensemble" or "extras".
    pub kind: String,
    /// The part of the run that needs it first: [`CORE_PART`] (Figure 2 and Table 1), else the
    /// extra's section id ([`INDEPENDENT_MODEL_PART`] for `C_indep`, which two extras share).
    pub part: String,
    /// The architecture whose passes these are (a source model file: its file).
    pub arch: String,
    /// The source model file ("C_std" / "C_rob") the stage runs on when `[sources]` names
    /// one: its passes are priced at that file's measured cost ([`SourceCost`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Distinct images the stage works on.
    pub images: usize,
    /// The passes per image, in words.
    pub work: String,
    /// How many times the stage runs (the seeds of a fresh model; 1 otherwise).
    pub seeds: usize,
    /// Image-passes over all seeds: forward, training backward, input-gradient backward.
    pub forward: f64,
    pub train_backward: f64,
    pub input_backward: f64,
    pub flops: f64,
    pub seconds: f64,
}

/// Stages, FLOPs and seconds summed over a group of planned stages (in the plan's JSON, its
/// fields sit in the group's object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageSums {
    pub stages: usize,
    pub flops: f64,
    pub seconds: f64,
}

impl StageSums {
    /// Counts `s` in.
    fn add(&mut self, s: &StagePlan) {
        self.stages += 1;
        self.flops += s.flops;
        self.seconds += s.seconds;
    }
}

/// A kind's total.
#[derive(Debug, Clone, Serialize)]
pub struct KindTotal {
    pub kind: String,
    #[serde(flatten)]
    pub sums: StageSums,
}

/// A part's total.
#[derive(Debug, Clone, Serialize)]
pub struct PartTotal {
    pub part: String,
    #[serde(flatten)]
    pub sums: StageSums,
    /// The FLOPs of its robust evaluations (kinds "eval" and "ensemble"), counted as if no example
    /// were ever fooled: an upper bound. The rest of `sums.flops` is the exact count.
    pub bounded_flops: f64,
}

/// The part of the run that is the paper's core: Figure 2 and Table 1 (their source models,
/// constructed sets, fresh models and evaluations).
pub const CORE_PART: &str = "core";

/// The part of `C_indep`, the independent model of the `diversity` and `source_vs_target` extras.
pub const INDEPENDENT_MODEL_PART: &str = "independent_model";

/// The total in `totals` that `is_it` finds, pushed by `new` when there is none yet: totals kept
/// in the order of their first stage.
fn entry<T>(totals: &mut Vec<T>, is_it: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> &mut T {
    let i = match totals.iter().position(is_it) {
        Some(i) => i,
        None => {
            totals.push(new());
            totals.len() - 1
        }
    };
    &mut totals[i]
}

/// Plans `p`: its stages, their work and FLOPs, and their times at the measured or given rate.
pub fn plan(p: &Preset, opts: &PlanOptions) -> Result<Plan> {
    if let Some(g) = opts.gflops {
        if !(g > 0.0 && g.is_finite()) {
            bail!("--gflops: must be a positive number of GFLOP/s (a device's sustained rate), got {g}");
        }
    }
    let (shape, classes) = data_shape(p);
    let (train_n, test_n, sizes_from) = data_sizes(p, opts.data_dir.as_deref())?;
    if train_n == 0 || test_n == 0 {
        bail!(
            "preset {}: {train_n} training / {test_n} test images ({sizes_from})",
            p.name
        );
    }
    let device = Device::cuda_if_available();
    let throughput = match opts.gflops {
        Some(g) => Throughput {
            gflops: g,
            source: "--gflops".into(),
            device: "given".into(),
            detail: format!("{g} GFLOP/s sustained, as given"),
            matmul_gflops: None,
        },
        None => measure(p, shape, classes, device, 2.0)?,
    };
    let rate = throughput.gflops * 1e9;
    let mut sources = Vec::new();
    for model in ["C_std", "C_rob"] {
        if let Some(src) = p.sources.of(model) {
            sources.push(if opts.untimed_sources {
                SourceCost {
                    model: model.into(),
                    file: src.model.display().to_string(),
                    relative_cost: 1.0,
                    params: None,
                    detail: "not timed: priced as the preset's architecture".into(),
                }
            } else {
                source_cost(p, model, src, shape, classes, device, 1.0)?
            });
        }
    }
    let mut models: Vec<ModelCost> = Vec::new();
    let mut out = Vec::new();
    for (mut s, passes, arch) in stages(p, train_n, test_n) {
        let c = cost(&arch, shape, classes);
        let source = s
            .source
            .as_ref()
            .and_then(|m| sources.iter().find(|x| &x.model == m));
        let (scale, params) = match source {
            Some(x) => {
                s.arch = format!(
                    "{} ({}, {})",
                    x.file,
                    x.model,
                    crate::construct_cmd::ModelFormat::of(std::path::Path::new(&x.file)).label()
                );
                (x.relative_cost, x.params.unwrap_or(c.params))
            }
            None => (1.0, c.params),
        };
        if !models.iter().any(|m| m.arch == s.arch) {
            models.push(ModelCost {
                arch: s.arch.clone(),
                params,
                forward_mflop: scale * c.forward_flops() / 1e6,
                train_backward_mflop: scale * c.train_backward_flops() / 1e6,
                input_backward_mflop: scale * c.input_backward_flops() / 1e6,
            });
        }
        s.flops = scale * passes.flops(&c);
        s.seconds = s.flops / rate;
        out.push(s);
    }
    let (mut by_kind, mut by_part) = (Vec::<KindTotal>::new(), Vec::<PartTotal>::new());
    for s in &out {
        let k = entry(
            &mut by_kind,
            |k| k.kind == s.kind,
            || KindTotal {
                kind: s.kind.clone(),
                sums: StageSums::default(),
            },
        );
        k.sums.add(s);
        let t = entry(
            &mut by_part,
            |t| t.part == s.part,
            || PartTotal {
                part: s.part.clone(),
                sums: StageSums::default(),
                bounded_flops: 0.0,
            },
        );
        t.sums.add(s);
        if s.kind == "eval" || s.kind == "ensemble" {
            t.bounded_flops += s.flops;
        }
    }
    let total_flops: f64 = out.iter().map(|s| s.flops).sum();
    let total_seconds = total_flops / rate;
    Ok(Plan {
        preset: p.name.clone(),
        overrides: p.overrides.clone(),
        dataset: p.data.dataset.to_string(),
        train_images: train_n,
        test_images: test_n,
        sizes_from,
        image_shape: shape,
        classes,
        throughput,
        models,
        sources,
        stages: out,
        by_kind,
        by_part,
        total_flops,
        total_seconds,
        total_hours: total_seconds / 3600.0,
    })
}
