//! Section `d_det_study` (issue 14): "D_det: what it takes". Table 1's D_det fails on
//! Fashion-MNIST at the paper's recipe (the fresh model predicts (y+1) mod C on most real test
//! images). Replications on CIFAR-10 made D_det work with a larger source model, a slightly
//! robust source model, a targeted attack averaged over random transformations of each image
//! (EOT), more steps with a margin loss, or larger radii. Each variant here rebuilds D_det from
//! the first `n` images of Table 1's subset changing one of these (one variant changes all but
//! the architecture), trains fresh models on it and measures it as Table 1 does: real-test
//! accuracy, attack success on the source model, and the share of real test images on which
//! the model predicts (y+1) mod C. Table 1's own D_det models at each radius (larger sets) are
//! listed beside them when the run has them.
//!
//! Models and sets of this section carry the prefix `dd_` (sets `D_det_dd_*`); the paper-recipe
//! baseline reuses `D_det_n<n>` (the same set `train_size` builds).

/// The id of this extra's section (`sections/d_det_study.json`) and job (`extras:d_det_study`).
pub const ID: &str = "d_det_study";
use super::stats::{above_chance, pct, Accuracy};
use super::{chance, read_model, shifted_agreement, write_section};
use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel, ModelJob, TrainingSet};
use crate::preset::{DDetStudy, RelabelSection, TrainSection};
use crate::table1::{construct_spec, eps_tag, RelabelSpec};
use anyhow::{Context, Result};
use nrf_features::relabel::TargetRule;
use nrf_features::targeted::{TargetLoss, TargetedAttack};
use nrf_results::ModelKind;
use nrf_results::Verdict;
use nrf_results::{ConstructedInfo, ModelResult, ModelRole, Section, Table, Varies};

/// One rebuilt D_det and what fresh models trained on it do.
#[derive(Debug, Clone)]
pub struct Variant {
    /// What changes from the paper's recipe.
    pub label: String,
    /// The set's name.
    pub set: String,
    /// The source model, its test accuracy and its robust accuracy at the headline eps.
    pub source: String,
    pub source_acc: f64,
    pub source_robust: f64,
    pub attack: String,
    pub eps: f64,
    pub steps: usize,
    pub n: usize,
    /// Fraction of the set the source model classifies as the target.
    pub success: f64,
    /// Real-test accuracy of the fresh models (mean over seeds) with its uncertainty.
    pub acc: Accuracy,
    /// Mean share of real test images predicted as (y+1) mod C.
    pub shifted: f64,
}

/// The verdict of one variant: does its D_det train a model above chance on the real test set
/// (the paper's Table 1 claim)?
pub fn variant_verdict(v: &Variant, chance: f64) -> Verdict {
    above_chance(&v.acc, chance)
}

/// The finding over every variant: which (if any) make D_det work, stated plainly.
pub fn finding(variants: &[Variant], chance: f64) -> (String, Verdict) {
    let works: Vec<&Variant> = variants
        .iter()
        .filter(|v| variant_verdict(v, chance) == Verdict::Holds)
        .collect();
    let best = variants
        .iter()
        .max_by(|a, b| a.acc.value.total_cmp(&b.acc.value));
    let mut text = if works.is_empty() {
        format!(
            "No variant makes D_det work here: none trains a model above chance ({}) on the real \
             test set.",
            pct(chance)
        )
    } else {
        format!(
            "D_det trains a model above chance ({}) on the real test set with: {}.",
            pct(chance),
            works
                .iter()
                .map(|v| format!("{} ({})", v.label, v.acc.short()))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    if let Some(b) = best {
        text += &format!(
            " The best is {} at {}, its models predicting (y+1) mod C on {} of the real test \
             images.",
            b.label,
            b.acc.short(),
            pct(b.shifted)
        );
    }
    let verdict = if works.is_empty() {
        if variants
            .iter()
            .all(|v| variant_verdict(v, chance) == Verdict::DoesNotHold)
        {
            Verdict::DoesNotHold
        } else {
            Verdict::Inconclusive
        }
    } else if works.len() == variants.len() {
        Verdict::Holds
    } else {
        Verdict::Partly
    };
    (text, verdict)
}

/// `section` trained for `epochs` instead (the source models' shorter schedules).
fn with_epochs(section: &TrainSection, epochs: usize) -> TrainSection {
    TrainSection {
        epochs,
        ..section.clone()
    }
}

/// Trains the study's models on `set` (stage key `key`), one per seed, and returns their mean
/// test accuracy with its uncertainty and the mean share of (y+1) predictions.
fn fresh_models(ctx: &mut Ctx, set: &str, key: &str, seeds: usize) -> Result<(Accuracy, f64)> {
    let mut accs = Vec::new();
    let mut shifted = Vec::new();
    let mut test_n = 0;
    for s in 0..seeds {
        let name = if s == 0 {
            format!("dd_on_{set}")
        } else {
            format!("dd_on_{set}_s{s}")
        };
        let role = ModelRole::Extra {
            set: ModelKind::DDet,
            varies: Varies::Construction,
        };
        let m = ctx.fresh_model(&name, role, set, key, EvalLevel::Standard)?;
        accs.push(m.std_acc);
        test_n = m.test_size;
        shifted.push(shifted_agreement(ctx, &name)?);
    }
    let acc = if accs.len() >= 2 {
        Accuracy::with_seeds(&accs, test_n)
    } else {
        Accuracy::single(accs[0], test_n)
    };
    Ok((acc, super::stats::mean(&shifted)))
}

/// The names of the study's two source models: the larger standard one (`dd_C_std_<arch>`) and
/// the slightly robust one (`dd_C_rob_eps<eps>`). The plan prices them under the same names.
pub(crate) fn source_names(study: &DDetStudy) -> (String, String) {
    let slug = super::arch_slug(&study.source_arch);
    (
        format!("dd_C_std_{slug}"),
        format!("dd_C_rob_eps{}", eps_tag(study.robust_source_eps)),
    )
}

/// The study's own source models (a larger standard one and a slightly robust one), trained on
/// D (cached): (name, result, training key) of each. They need nothing else, so a run with
/// workers trains them while the paper's core runs ([`crate::jobs`]).
#[allow(clippy::type_complexity)]
pub fn source_models(
    ctx: &mut Ctx,
    study: &DDetStudy,
) -> Result<((String, ModelResult, String), (String, ModelResult, String))> {
    let train = ctx.train.clone();
    let data_key = ctx.data_key.clone();
    let (big, rob) = source_names(study);
    let std_section = with_epochs(&ctx.preset.train_std, study.source_epochs);
    let set = TrainingSet {
        name: "D",
        data: &train,
        key: &data_key,
    };
    let big_role = ModelRole::Extra {
        set: ModelKind::Std,
        varies: Varies::Architecture,
    };
    let big_job = ModelJob::new(&ctx.preset, big.as_str(), big_role, set, &std_section)
        .with_arch(&study.source_arch);
    let big_m = ctx.model_stage(&big_job)?;
    let big_key = big_m.key().to_string();
    let mut rob_section = with_epochs(&ctx.preset.train_rob, study.robust_source_epochs);
    match rob_section.attack.as_mut() {
        Some(a) => a.eps = study.robust_source_eps,
        None => anyhow::bail!(
            "extras.d_det_study needs `train_rob.attack` (the slightly robust source model is \
             `train_rob` at robust_source_eps)"
        ),
    }
    let rob_role = ModelRole::Extra {
        set: ModelKind::Rob,
        varies: Varies::Eps,
    };
    let rob_job = ModelJob::new(&ctx.preset, rob.as_str(), rob_role, set, &rob_section);
    let rob_m = ctx.model_stage(&rob_job)?;
    let rob_key = rob_m.key().to_string();
    Ok(((big, big_m.result, big_key), (rob, rob_m.result, rob_key)))
}

/// The source models of the study's variants: (name, result, training key) of each.
struct StudySources {
    c_std: (ModelResult, String),
    big: (String, ModelResult, String),
    rob: (String, ModelResult, String),
}

impl StudySources {
    /// Test accuracy and robust accuracy at L2 `eps` of the source model `name`.
    fn accuracies(&self, name: &str, eps: f64) -> (f64, f64) {
        let m = if name == self.big.0 {
            &self.big.1
        } else if name == self.rob.0 {
            &self.rob.1
        } else {
            &self.c_std.0
        };
        let robust = m.robust_at("L2", eps).map(|p| p.acc).unwrap_or(f64::NAN);
        (m.std_acc, robust)
    }
}

/// The model a variant attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceModel {
    /// The paper's C_std.
    CStd,
    /// The study's larger standard model (`source_arch`).
    Larger,
    /// The study's slightly robust model (`robust_source_eps`).
    Robust,
}

/// How one variant rebuilds D_det (the plan prices the same list: `plan::stages`).
pub(crate) struct Recipe {
    /// What changes from the paper's recipe.
    pub(crate) label: String,
    /// The set's name.
    pub(crate) name: String,
    pub(crate) source: SourceModel,
    pub(crate) eps: f64,
    pub(crate) steps: usize,
    pub(crate) attack: TargetedAttack,
}

impl Recipe {
    /// The construction, with its source model's name and training key from `sources`.
    fn spec(&self, r: &RelabelSection, sources: &StudySources) -> RelabelSpec {
        let (source, key) = match self.source {
            SourceModel::CStd => ("C_std", sources.c_std.1.as_str()),
            SourceModel::Larger => (sources.big.0.as_str(), sources.big.2.as_str()),
            SourceModel::Robust => (sources.rob.0.as_str(), sources.rob.2.as_str()),
        };
        RelabelSpec {
            name: self.name.clone(),
            rule: TargetRule::Deterministic,
            eps: self.eps,
            steps: self.steps,
            // More steps keep the step size: they search longer, not finer.
            step_size: r.step_at(self.eps),
            source: source.to_string(),
            source_key: key.to_string(),
            attack: self.attack,
        }
    }
}

/// The rebuilt D_det sets, the paper's recipe first.
pub(crate) fn recipes(r: &RelabelSection, study: &DDetStudy, n: usize) -> Vec<Recipe> {
    let paper = TargetedAttack::default();
    let eot = TargetedAttack {
        loss: TargetLoss::CrossEntropy,
        eot: Some(study.eot),
    };
    let margin = TargetedAttack {
        loss: TargetLoss::Margin,
        eot: None,
    };
    let all = TargetedAttack {
        loss: TargetLoss::Margin,
        eot: Some(study.eot),
    };
    let recipe = |label: String, name: String, source, eps, steps, attack| Recipe {
        label,
        name,
        source,
        eps,
        steps,
        attack,
    };
    let slug = super::arch_slug(&study.source_arch);
    let rob_tag = eps_tag(study.robust_source_eps);
    use SourceModel::*;
    vec![
        recipe(
            "the paper's recipe".into(),
            format!("D_det_n{n}"),
            CStd,
            r.eps,
            r.steps,
            paper,
        ),
        recipe(
            format!("larger source model ({})", study.source_arch.label()),
            format!("D_det_dd_{slug}"),
            Larger,
            r.eps,
            r.steps,
            paper,
        ),
        recipe(
            format!(
                "slightly robust source model (L2 eps {} training)",
                study.robust_source_eps
            ),
            format!("D_det_dd_rob{rob_tag}"),
            Robust,
            r.eps,
            r.steps,
            paper,
        ),
        recipe(
            format!("EOT ({})", eot.describe()),
            "D_det_dd_eot".into(),
            CStd,
            r.eps,
            r.steps,
            eot,
        ),
        recipe(
            format!("margin loss, {} steps", study.margin_steps),
            "D_det_dd_margin".into(),
            CStd,
            r.eps,
            study.margin_steps,
            margin,
        ),
        recipe(
            format!(
                "all: slightly robust source, margin loss, EOT, eps {}",
                study.combined_eps
            ),
            "D_det_dd_all".into(),
            Robust,
            study.combined_eps,
            r.steps,
            all,
        ),
    ]
}

/// Table 1's own D_det models at every radius this run trained (larger sets, no new work), as
/// variants.
fn table1_radii(ctx: &Ctx, sources: &StudySources) -> Result<Vec<Variant>> {
    let r = &ctx.preset.relabel;
    let head = ctx.preset.eval.headline_eps;
    let mut radii: Vec<(String, f64)> = vec![("on_D_det".into(), r.eps)];
    for &e in r.extra_eps.iter().chain(&ctx.preset.extras.eps_sensitivity) {
        let name = if r.is_table1_radius(e) {
            format!("on_D_det_eps{}", eps_tag(e))
        } else {
            format!("es_on_D_det_eps{}", eps_tag(e))
        };
        if !radii.iter().any(|(m, _)| *m == name) && (e - r.eps).abs() > 1e-12 {
            radii.push((name, e));
        }
    }
    let mut variants = Vec::new();
    for (model, eps) in radii {
        if !ctx.path(&format!("models/{model}.json")).exists() {
            continue;
        }
        let m = read_model(ctx, &model)?;
        let set = m.trained_on.clone();
        let info: ConstructedInfo =
            nrf_data::store::read_json(ctx.path(&format!("datasets/{set}.json")))?;
        let (source_acc, source_robust) = sources.accuracies("C_std", head);
        variants.push(Variant {
            label: format!("Table 1's D_det at eps {eps}"),
            set,
            source: "C_std".into(),
            source_acc,
            source_robust,
            attack: TargetedAttack::default().describe(),
            eps,
            steps: info.steps,
            n: info.n,
            success: info.success_rate.unwrap_or(f64::NAN),
            acc: m.std_accuracy(),
            shifted: shifted_agreement(ctx, &model)?,
        });
    }
    Ok(variants)
}

/// The section's table: one row per variant.
fn table(variants: &[Variant], n: usize, seeds: usize, head: f64, chance: f64) -> Table {
    let rows = variants
        .iter()
        .map(|v| {
            vec![
                v.label.clone(),
                format!(
                    "{} ({} / {})",
                    v.source,
                    pct(v.source_acc),
                    pct(v.source_robust)
                ),
                v.attack.clone(),
                format!("{}", v.eps),
                v.steps.to_string(),
                v.n.to_string(),
                pct(v.success),
                v.acc.text(),
                pct(v.shifted),
                super::stats::section_verdict(variant_verdict(v, chance))
                    .as_str()
                    .to_string(),
            ]
        })
        .collect();
    Table {
        caption: format!(
            "D_det (t = (y+1) mod C) rebuilt with stronger recipes from the first {n} images of \
             Table 1's subset; fresh standard models ({seeds} seed(s), the `fresh` settings) \
             measured on the real test set. Source: the model attacked, with its test accuracy \
             / L2 eps {head} robust accuracy. Success: fraction of the set the source model \
             classifies as t. Test acc: mean over seeds with its 95% interval. Predicts y+1: \
             share of real test images on which the models predict (y+1) mod C. Above chance: \
             the accuracy's interval above chance ({}). The last rows are Table 1's own D_det \
             models (on larger sets, for the radii).",
            pct(chance)
        ),
        headers: [
            "variant",
            "source",
            "attack",
            "eps",
            "steps",
            "n",
            "success",
            "test acc",
            "predicts y+1",
            "above chance",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// What every variant shares: the images it rebuilds, the seeds of its fresh models and the
/// source models (trained or loaded; stages).
struct Study {
    indices: Vec<usize>,
    seeds: usize,
    sources: StudySources,
}

impl Study {
    fn new(ctx: &mut Ctx, src: &Sources, study: &DDetStudy) -> Result<Study> {
        let n = study.n.min(ctx.preset.relabel.n).min(src.subset.len());
        let (big, rob) = source_models(ctx, study)?;
        let c_std_key = src.c_std(ctx)?;
        Ok(Study {
            indices: src.subset[..n].to_vec(),
            seeds: study.seeds.unwrap_or_else(|| ctx.preset.fresh_seeds()),
            sources: StudySources {
                c_std: (read_model(ctx, "C_std")?, c_std_key),
                big,
                rob,
            },
        })
    }

    /// The study's variants as this run builds them.
    fn recipes(&self, ctx: &Ctx, study: &DDetStudy) -> Vec<Recipe> {
        recipes(&ctx.preset.relabel, study, self.indices.len())
    }

    /// Builds one variant's set (cached), trains its fresh models (cached) and measures them.
    fn variant(&self, ctx: &mut Ctx, recipe: &Recipe) -> Result<Variant> {
        let sp = recipe.spec(&ctx.preset.relabel, &self.sources);
        let key = construct_spec(ctx, &sp, &self.indices)
            .with_context(|| format!("building {}", sp.name))?;
        let (acc, shifted) = fresh_models(ctx, &sp.name, &key, self.seeds)?;
        let info: ConstructedInfo =
            nrf_data::store::read_json(ctx.path(&format!("datasets/{}.json", sp.name)))?;
        info.validate()?;
        let head = ctx.preset.eval.headline_eps;
        let (source_acc, source_robust) = self.sources.accuracies(&sp.source, head);
        Ok(Variant {
            label: recipe.label.clone(),
            set: sp.name.clone(),
            source: sp.source.clone(),
            source_acc,
            source_robust,
            attack: sp.attack.describe(),
            eps: sp.eps,
            steps: sp.steps,
            n: self.indices.len(),
            success: info.success_rate.unwrap_or(f64::NAN),
            acc,
            shifted,
        })
    }
}

/// The sets of the study's variants, in order: a run with workers makes each a job of its own
/// ([`variant_job`]), so that both workers build them.
pub fn variant_sets(ctx: &Ctx, study: &DDetStudy) -> Vec<String> {
    let n = study.n.min(ctx.preset.relabel.n);
    recipes(&ctx.preset.relabel, study, n)
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// Variant `i` alone: its set and its fresh models (stages, which [`run`] then finds cached).
pub fn variant_job(ctx: &mut Ctx, src: &Sources, study: &DDetStudy, i: usize) -> Result<()> {
    let s = Study::new(ctx, src, study)?;
    let recipe = s
        .recipes(ctx, study)
        .into_iter()
        .nth(i)
        .with_context(|| format!("d_det_study has no variant {i}"))?;
    s.variant(ctx, &recipe).map(drop)
}

/// Builds every variant, trains on it, writes `sections/d_det_study.json`.
pub fn run(ctx: &mut Ctx, src: &Sources, study: &DDetStudy) -> Result<()> {
    let s = Study::new(ctx, src, study)?;
    let mut variants = Vec::new();
    for recipe in s.recipes(ctx, study) {
        variants.push(s.variant(ctx, &recipe)?);
    }
    variants.extend(table1_radii(ctx, &s.sources)?);
    let (n, seeds) = (s.indices.len(), s.seeds);
    let head = ctx.preset.eval.headline_eps;
    let chance = chance(ctx);
    let (finding, verdict) = finding(&variants, chance);
    let section = Section {
        id: ID.into(),
        title: "D_det: what it takes".into(),
        claim: "Table 1: a model trained on D_det (every image attacked towards (y+1) mod C and \
                relabelled) generalises to the real test set above chance. Replications on \
                CIFAR-10 needed a larger or slightly robust source model, EOT, more steps or a \
                margin loss, or larger radii. Here each is tried on this data set."
            .into(),
        finding,
        verdict,
        tables: vec![table(&variants, n, seeds, head, chance)],
        images: vec![],
    };
    write_section(ctx, &section)?;
    Ok(())
}
