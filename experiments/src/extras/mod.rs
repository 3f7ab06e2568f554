//! Further experiments: the paper's Figure 3 and the reviewers' questions. Each writes one
//! `sections/<id>.json` ([`Section`]), which the report renders generically, plus its plots
//! under `plots/`. Each is switched on separately in the preset's `[extras]` table:
//!
//! | id | module | switch | cost |
//! |---|---|---|---|
//! | `overfitting` | [`overfitting`] | `overfitting = true` | none (reads `models/*.json`) |
//! | `diversity` | [`diversity`] | `diversity = true` | seconds |
//! | `source_vs_target` | [`source_vs_target`] | `source_vs_target = true` | seconds |
//! | `cosine_ablation` | [`cosine`] | `cosine_ablation = true` | one D_R construction + one model |
//! | `init_ablation` | [`init_ablation`] | `init_ablation = true` | three models |
//! | `eps_sensitivity` | [`eps_sensitivity`] | `eps_sensitivity = [radii]` | two constructions + two models per radius |
//! | `figure3` | [`figure3`] | `figure3 = true`, `figure3_archs` | two models per architecture |
//! | `train_size` | [`train_size`] | `train_sizes = [n, ...]` | two constructions + three models per size |
//! | `d_det_study` | [`d_det`] | `[extras.d_det_study]` | two source models, six constructions, six x seeds models |
//!
//! Models an extra trains for itself have the role `ModelRole::Extra` (the paper's set they stand
//! in for and what the extra varies), so that the report's Figure 2 / Table 1 tables keep to the
//! preset's own sets; their names carry the extra's prefix (`f3_`, `es_`, `ts_`, `cos_`,
//! `init_`, `dd_`, and `C_indep`) only to keep their files apart. Models of Figure 2 / Table 1
//! that an extra reuses keep their names and roles.
//!
//! Every model goes through [`Ctx::model_stage`] and every dataset through the construction
//! stages, so everything is cached and an interrupted run resumes. Findings and verdicts are
//! computed from the numbers (see [`stats`] for the rules).
pub mod cosine;
pub mod d_det;
pub mod diversity;
pub mod eps_sensitivity;
pub mod figure3;
pub mod init_ablation;
pub mod overfitting;
pub mod source_vs_target;
pub mod stats;
pub mod train_size;

use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel, ModelJob, TrainingSet};
use crate::preset::IndependentModel;
use crate::workers::Job;
use anyhow::{bail, Context, Result};
use nrf_data::store::{read_json, ConstructedDataset};
use nrf_data::Dataset;
use nrf_models::{Arch, Classifier, Model};
use nrf_results::ModelKind;
use nrf_results::{ModelResult, ModelRole, Section, Varies};
use tch::Tensor;

/// An extra as a job of the pipeline ([`crate::jobs`]).
pub struct ExtraJob {
    pub job: Job,
    /// Needs nothing but stages (else it waits, in a run with workers, for the paper's core).
    pub independent: bool,
}

/// Every extra's section id (`sections/<id>.json`), one per extra of `[extras]`.
pub const SECTION_IDS: [&str; 9] = [
    overfitting::ID,
    diversity::ID,
    source_vs_target::ID,
    cosine::ID,
    init_ablation::ID,
    eps_sensitivity::ID,
    figure3::ID,
    train_size::ID,
    d_det::ID,
];

/// The enabled extras, in the order an ordinary run runs them (`[extras]` in the preset).
pub fn jobs(ctx: &Ctx) -> Vec<ExtraJob> {
    let e = ctx.preset.extras.clone();
    let mut jobs = Vec::new();
    if !e.enabled {
        return jobs;
    }
    type Run = Box<dyn Fn(&mut Ctx, &Sources) -> Result<()>>;
    let extra = |name: &str, run: Run| {
        let what = format!("extra `{name}`");
        ExtraJob {
            job: Job::new(format!("extras:{name}"), move |ctx, src| {
                run(ctx, src).with_context(|| what.clone())
            }),
            independent: false,
        }
    };
    if e.diversity {
        jobs.push(extra(
            diversity::ID,
            Box::new(|ctx, src| {
                let indep = independent_model(ctx, src)?;
                diversity::run(ctx, src, &indep)
            }),
        ));
    }
    if e.source_vs_target {
        jobs.push(extra(
            source_vs_target::ID,
            Box::new(|ctx, src| {
                let indep = independent_model(ctx, src)?;
                source_vs_target::run(ctx, &indep)
            }),
        ));
    }
    if e.cosine_ablation {
        jobs.push(extra(cosine::ID, Box::new(cosine::run)));
    }
    if e.init_ablation {
        jobs.push(extra(init_ablation::ID, Box::new(init_ablation::run)));
    }
    if !e.eps_sensitivity.is_empty() {
        let eps = e.eps_sensitivity.clone();
        jobs.push(extra(
            eps_sensitivity::ID,
            Box::new(move |ctx, src| eps_sensitivity::run(ctx, src, &eps)),
        ));
    }
    if e.figure3 {
        let archs = e.figure3_archs.clone();
        jobs.push(extra(
            figure3::ID,
            Box::new(move |ctx, src| figure3::run(ctx, src, &archs)),
        ));
    }
    if !e.train_sizes.is_empty() {
        let sizes = e.train_sizes.clone();
        jobs.push(extra(
            train_size::ID,
            Box::new(move |ctx, src| train_size::run(ctx, src, &sizes)),
        ));
    }
    if let Some(study) = e.d_det_study {
        // Its own source models need nothing else: trained while the core runs.
        let s = study.clone();
        let sources = Job::new("extras:d_det_study:sources", move |ctx, _| {
            d_det::source_models(ctx, &s).map(drop)
        });
        jobs.push(ExtraJob {
            job: sources,
            independent: true,
        });
        // Each variant a job (its construction and fresh models: both workers take them); the
        // section's job, after them, finds their stages cached.
        let mut variant_jobs = Vec::new();
        for (i, set) in d_det::variant_sets(ctx, &study).into_iter().enumerate() {
            let s = study.clone();
            let job = extra(
                &format!("d_det_study:{set}"),
                Box::new(move |ctx, src| d_det::variant_job(ctx, src, &s, i)),
            );
            variant_jobs.push(job.job.name.clone());
            jobs.push(job);
        }
        let mut study_job = extra(
            d_det::ID,
            Box::new(move |ctx, src| d_det::run(ctx, src, &study)),
        );
        study_job.job.after.extend(variant_jobs);
        // It lists Table 1's D_det models at eps_sensitivity's radii too.
        if !e.eps_sensitivity.is_empty() {
            study_job.job.after.push("extras:eps_sensitivity".into());
        }
        jobs.push(study_job);
    }
    if e.overfitting {
        jobs.push(extra(
            overfitting::ID,
            Box::new(|ctx, _| overfitting::run(ctx)),
        ));
    }
    jobs
}

/// The independent standard model of `diversity` and `source_vs_target`.
pub struct Independent {
    /// Its name (weights and `models/<name>.json`).
    pub name: String,
    /// How it was trained, for the report.
    pub description: String,
    /// The loaded weights (frozen).
    pub model: Model,
}

/// Trains (or loads) the independent model the preset names.
///
/// `C_indep` is trained with the `fresh` settings on as many images as the clean control, drawn
/// from the training images that are neither a target (any of `src.subset`) nor a start image of
/// D_R / D_NR: it has seen none of the images the extras compare. `on_control` costs nothing but
/// was trained on the targets x of D_R / D_NR (not on most starts x0), which favours x.
pub fn independent_model(ctx: &mut Ctx, src: &Sources) -> Result<Independent> {
    let (name, description) = match ctx.preset.extras.independent_model {
        IndependentModel::OnControl => (
            "on_control",
            "on_control, the fresh standard model on the clean control subset: it was trained on \
             the target images x of D_R / D_NR but not on most start images x0",
        ),
        IndependentModel::CIndep => {
            let mut used = vec![false; ctx.train.len()];
            for &i in &src.subset {
                used[i] = true;
            }
            for set in ["D_R", "D_NR"] {
                for s in start_indices(&ctx.load_constructed(set)?, set)? {
                    if s >= 0 && (s as usize) < used.len() {
                        used[s as usize] = true;
                    }
                }
            }
            let free: Vec<usize> = (0..used.len()).filter(|&i| !used[i]).collect();
            let k = ctx.preset.rep_match.n.min(free.len());
            if k < 2 * ctx.train.num_classes {
                bail!(
                    "C_indep: only {} training images are neither a target nor a start image; \
                     use extras.independent_model = \"on_control\" or a larger training set",
                    free.len()
                );
            }
            let pick = nrf_data::batch::random_subset(
                free.len(),
                k,
                ctx.preset.stage_seed("indep-subset"),
            )?;
            let idx: Vec<usize> = pick.iter().map(|&j| free[j]).collect();
            let data = ctx.train.subset(&idx);
            let key = ctx.subset_key(&idx);
            let section = ctx.preset.fresh.clone();
            let role = ModelRole::Extra {
                set: ModelKind::Control,
                varies: Varies::HeldOutImages,
            };
            let set = TrainingSet {
                name: "D_heldout",
                data: &data,
                key: &key,
            };
            let job = ModelJob::new(&ctx.preset, "C_indep", role, set, &section)
                .with_level(EvalLevel::Standard);
            ctx.model_stage(&job)?;
            (
                "C_indep",
                "C_indep, a fresh standard model trained (fresh settings, its own seed) on as many \
                 training images as the control, none of which is a target or start image",
            )
        }
    };
    let model = ctx.load_weights(name)?;
    Ok(Independent {
        name: name.into(),
        description: description.into(),
        model,
    })
}

/// The start indices x0 stored with D_R / D_NR (`-1` for noise starts), one per example.
pub fn start_indices(ds: &ConstructedDataset, name: &str) -> Result<Vec<i64>> {
    ds.start_indices
        .clone()
        .with_context(|| format!("{name}: no start indices stored with it"))
}

/// A short file-name-safe name of an architecture, e.g. "resnet18_w8", "mlp_256_256".
pub fn arch_slug(arch: &Arch) -> String {
    match arch {
        Arch::FmnistCnn => "fmnist_cnn".into(),
        Arch::Mlp { hidden } => {
            let h: Vec<String> = hidden.iter().map(|v| v.to_string()).collect();
            format!("mlp_{}", h.join("_"))
        }
        Arch::ResNet18 { width } => format!("resnet18_w{width}"),
        Arch::ResNet50 { width } => format!("resnet50_w{width}"),
        Arch::ResNet50ImageNet { width } => format!("resnet50in_w{width}"),
        Arch::Vgg16 { width } => format!("vgg16_w{width}"),
        Arch::DenseNet { growth, blocks } => {
            let b: Vec<String> = blocks.iter().map(|v| v.to_string()).collect();
            format!("densenet_k{growth}_{}", b.join("_"))
        }
    }
}

/// Writes `sections/<id>.json` atomically.
pub fn write_section(ctx: &Ctx, section: &Section) -> Result<()> {
    ctx.cache
        .write_result(&format!("sections/{}.json", section.id), section)?;
    tracing::info!(
        "section {}: {} ({})",
        section.id,
        section.finding,
        section.verdict
    );
    Ok(())
}

/// Reads and checks `models/<name>.json`.
pub fn read_model(ctx: &Ctx, name: &str) -> Result<ModelResult> {
    let path = ctx.path(&format!("models/{name}.json"));
    let m: ModelResult = read_json(&path)?;
    m.validate()
        .with_context(|| format!("{}: bad values", path.display()))?;
    Ok(m)
}

/// Robust accuracy of `m` at the preset's headline L2 eps (NaN when not measured).
pub fn headline_robust(ctx: &Ctx, m: &ModelResult) -> f64 {
    m.robust_at("L2", ctx.preset.eval.headline_eps)
        .map(|p| p.acc)
        .unwrap_or(f64::NAN)
}

/// Chance accuracy (1 / number of classes).
pub fn chance(ctx: &Ctx) -> f64 {
    1.0 / ctx.train.num_classes.max(1) as f64
}

/// Representations g(x) of `x` (`[N, ...]`, N >= 1) in batches, without gradients, on the CPU.
pub fn representations(model: &dyn Classifier, x: &Tensor, batch: i64) -> Result<Tensor> {
    map_batches(x, batch, |b| model.forward_rep(b, false).1.flatten(1, -1))
}

/// Predicted labels of `x` (N >= 1) in batches, on the CPU.
pub fn predictions(model: &dyn Classifier, x: &Tensor, batch: i64) -> Result<Tensor> {
    map_batches(x, batch, |b| model.logits(b, false).argmax(-1, false))
}

fn map_batches(x: &Tensor, batch: i64, f: impl Fn(&Tensor) -> Tensor) -> Result<Tensor> {
    let n = x.size().first().copied().unwrap_or(0);
    if n == 0 {
        anyhow::bail!("no images to run the model on");
    }
    let parts: Vec<Tensor> = nrf_data::batch::spans(n, batch.max(1))
        .map(|(lo, len)| tch::no_grad(|| f(&x.narrow(0, lo, len))).to_device(tch::Device::Cpu))
        .collect();
    Ok(Tensor::cat(&parts, 0))
}

/// Fraction of the real test set on which the trained model `name` predicts (y + 1) mod C, the
/// label D_det's rule gives a real image of class y: how far a D_det model learned that label
/// shift on the images' robust features instead of the non-robust features the attack planted.
pub fn shifted_agreement(ctx: &Ctx, name: &str) -> Result<f64> {
    let model = ctx.load_weights(name)?;
    let pred = predictions(&model, &ctx.test_x, ctx.preset.eval.batch_size as i64)?;
    let classes = ctx.train.num_classes.max(1) as i64;
    let shifted = (ctx.test_y.to_device(tch::Device::Cpu) + 1).remainder(classes);
    Ok(pred
        .eq_tensor(&shifted)
        .to_kind(tch::Kind::Double)
        .mean(tch::Kind::Double)
        .double_value(&[]))
}

/// The sentence on [`shifted_agreement`] over D_det models (fractions), empty when none.
pub fn shifted_sentence(fractions: &[f64]) -> String {
    let f: Vec<f64> = fractions
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if f.is_empty() {
        return String::new();
    }
    let lo = f.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        " The D_det models predict (y+1) mod C, the label D_det's rule gives a real image of \
         class y, on {} to {} of the real test images{}.",
        stats::pct(lo),
        stats::pct(hi),
        if lo > 0.5 {
            ": they learned the label shift on the images' robust features, not the \
             non-robust features the attack planted"
        } else {
            ""
        }
    )
}

/// Images of `data` at `indices` as a tensor on the context's device.
pub fn images(ctx: &Ctx, data: &Dataset, indices: &[usize]) -> Tensor {
    nrf_models::images_to_tensor(data, indices, ctx.device)
}

/// A class name (or its number).
pub fn class_name(ctx: &Ctx, y: usize) -> String {
    ctx.train
        .class_names
        .get(y)
        .cloned()
        .unwrap_or_else(|| y.to_string())
}
