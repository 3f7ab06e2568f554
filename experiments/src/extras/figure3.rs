//! Section `figure3` (the paper's Figure 3): architectures that learn more from the non-robust
//! features of D_det are more susceptible to transferred adversarial examples.
//!
//! For each architecture of `extras.figure3_archs`:
//! - a fresh model trained on D_det (built from C_std by Table 1) with the `fresh` settings; its
//!   accuracy on the real test set is the x value;
//! - a standard model of the same architecture trained on the clean images D_det was made from
//!   (the same-size clean control, not all of D, to keep the cost down; same `fresh` settings).
//!   The y value is the fraction of targeted adversarial examples made on C_std — same L2 eps,
//!   steps and step size as D_det, targets t = (y + 1) mod C, on the fixed evaluation subset of
//!   the test set — that this model classifies as t.
//!
//! - a fresh model trained on D_rand: the same test with D_rand's accuracy as x. The paper's
//!   dataset for Figure 3 is not confirmed (see the spec), and where no architecture learns from
//!   D_det (it falls below chance on Fashion-MNIST) D_rand still can test the claim.
//!
//! Each of the section's own models is trained with `extras.figure3_seeds` seeds (default
//! `[fresh] seeds`): a point is the mean over seeds, and its uncertainty, which the correlation's
//! interval carries, includes the seed spread (one model per point hides how far another seed
//! of the same architecture lands: measured, more than the binomial intervals).
//!
//! When an architecture is the preset's own and the control has the same size, the Figure 2 /
//! Table 1 models `on_D_det`, `on_D_rand` and `on_control` are reused (same stages, cached; their
//! seeds are `[fresh] seeds`).

/// The id of this extra's section (`sections/figure3.json`) and job (`extras:figure3`).
pub const ID: &str = "figure3";

use super::stats::{
    above_chance, correlation, correlation_verdict, correlation_words, num, pct, Accuracy, Margin,
};
use super::{arch_slug, predictions, write_section};
use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel, ModelJob, TrainedSeed, TrainingSet};
use crate::preset::RelabelSection;
use crate::table1::{construct, set_name};
use anyhow::{bail, Result};
use nrf_attacks::{pgd, targeted_ce, PgdConfig, L2};
use nrf_data::batch::spans;
use nrf_data::Dataset;
use nrf_features::relabel::{choose_targets, TargetRule};
use nrf_models::Arch;
use nrf_report::plot::{scatter_points_plot, PlotOptions, ScatterPoint};
use nrf_results::ModelKind;
use nrf_results::Verdict;
use nrf_results::{ModelResult, ModelRole, Section, Table, Varies};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// One architecture's point; every number with what its uncertainty needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchPoint {
    /// Architecture label, e.g. "resnet18(w=8)".
    pub arch: String,
    /// Real-test accuracy of the model trained on D_det (x; the mean over seeds when it was
    /// trained with several: `extras.figure3_seeds`, or `[fresh] seeds` for a reused model).
    pub acc_det: Accuracy,
    /// Real-test accuracy of the model trained on D_rand (the alternative x; None when not run).
    pub acc_rand: Option<Accuracy>,
    /// Real-test accuracy of the standard model trained on the clean control.
    pub acc_std: Accuracy,
    /// Transfer success rate to the standard model (y), on the attacked images (the mean over
    /// its seeds).
    pub transfer: Accuracy,
}

/// Output of the transfer stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transfer {
    /// Fraction of the adversarial examples C_std itself classifies as t.
    source_success: f64,
    /// Number of attacked test images.
    n: usize,
    /// Per standard model (by name): fraction classified as t.
    rates: Vec<(String, f64)>,
}

/// Finding and verdict for one training set (`set`, e.g. "D_det") whose real-test accuracies
/// per architecture (`xs`, in the order of `points`) are the x values. The verdict is
/// [`correlation_verdict`] on the correlation of x and transfer with its uncertainty (the
/// architectures' sampling and every point's measurement error), except "n/a" when no
/// architecture is above chance after training on `set` (then x is noise around chance and the
/// claim is not tested) and "inconclusive" when the transfer rates are within noise of each other.
pub fn finding_for(
    set: &str,
    xs: &[Accuracy],
    points: &[ArchPoint],
    chance: f64,
) -> (String, Verdict) {
    let at_chance: Vec<&str> = points
        .iter()
        .zip(xs)
        .filter(|(_, x)| above_chance(x, chance) != Verdict::Holds)
        .map(|(p, _)| p.arch.as_str())
        .collect();
    if at_chance.len() == points.len() {
        let accs: Vec<String> = points
            .iter()
            .zip(xs)
            .map(|(p, x)| format!("{} {}", p.arch, x.short()))
            .collect();
        return (
            format!(
                "No architecture is clearly above chance ({}) after training on {set} ({}), so \
                 {set} cannot test the claim",
                pct(chance),
                accs.join(", ")
            ),
            Verdict::NotApplicable,
        );
    }
    let ys: Vec<Accuracy> = points.iter().map(|p| p.transfer.clone()).collect();
    let c = correlation(xs, &ys);
    let mut verdict = correlation_verdict(c.as_ref());
    let seeded = xs.iter().chain(&ys).any(|a| a.n_seeds() >= 2);
    let mut s = match &c {
        Some(c) => {
            let words = correlation_words(c.r);
            // The words describe r alone; say so where its interval spans 0 (the correlation's
            // verdict is inconclusive exactly then).
            let unresolved = c.verdict() == Verdict::Inconclusive && words != "no clear";
            format!(
                "across {} architectures, accuracy on D after training on {set} and the \
                 transfer rate of C_std's targeted adversarial examples show {words} \
                 correlation{} (Pearson {}, a 95% interval from the {} points and their \
                 measurement errors{})",
                points.len(),
                if unresolved {
                    " in the point estimate, which these points do not resolve: its interval \
                     includes 0"
                } else {
                    ""
                },
                c.text(),
                c.k,
                if seeded { " and seed spreads" } else { "" }
            )
        }
        None => format!(
            "the correlation over {} architectures is undefined (too few points or no spread)",
            points.len()
        ),
    };
    let best = points
        .iter()
        .zip(xs)
        .max_by(|a, b| a.1.value.total_cmp(&b.1.value))
        .map(|(p, x)| (p.arch.as_str(), x.value));
    let most = points
        .iter()
        .max_by(|a, b| a.transfer.value.total_cmp(&b.transfer.value));
    if let (Some((b, x)), Some(m)) = (best, most) {
        s += &format!(
            "; {b} learns most from {set} ({}) and {} is the most susceptible ({} transfer)",
            pct(x),
            m.arch,
            pct(m.transfer.value)
        );
    }
    if !at_chance.is_empty() {
        s += &format!(
            "; {} {} not clearly above chance ({}) after training on {set}",
            at_chance.join(", "),
            if at_chance.len() == 1 { "is" } else { "are" },
            pct(chance)
        );
    }
    // y values that sampling noise alone could produce carry no ranking to correlate with.
    let finite: Vec<&Accuracy> = ys.iter().filter(|v| v.value.is_finite()).collect();
    let lo = finite.iter().min_by(|a, b| a.value.total_cmp(&b.value));
    let hi = finite.iter().max_by(|a, b| a.value.total_cmp(&b.value));
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let spread = Margin::between(hi, lo);
        if spread.verdict() != Verdict::Holds {
            if verdict != Verdict::NotApplicable {
                verdict = Verdict::Inconclusive;
            }
            s += &format!(
                "; but the transfer rates ({} to {}, a spread of {}) are within sampling noise of \
                 each other on {} attacked images, so the correlation does not test the claim",
                pct(lo.value),
                pct(hi.value),
                spread.text(),
                hi.n
            );
        } else if hi.value < 0.1 {
            s += &format!(
                "; transfer is weak for every architecture (at most {}), so the ranking rests on \
                 small differences",
                pct(hi.value)
            );
        }
    }
    (s, verdict)
}

/// The section's finding and verdict: the paper's D_det first; when every architecture's
/// D_rand accuracy is known, the same test with D_rand on the x axis follows, and its verdict
/// stands in when D_det cannot test the claim (says so in the text).
pub fn finding(points: &[ArchPoint], chance: f64) -> (String, Verdict) {
    let det: Vec<Accuracy> = points.iter().map(|p| p.acc_det.clone()).collect();
    let (d, vd) = finding_for("D_det", &det, points, chance);
    let mut text = format!("D_det (the paper's x axis): {d}.");
    let mut verdict = vd;
    let rand: Option<Vec<Accuracy>> = points.iter().map(|p| p.acc_rand.clone()).collect();
    if let (false, Some(rand)) = (points.is_empty(), rand) {
        let (r, vr) = finding_for("D_rand", &rand, points, chance);
        text += &format!(" With D_rand (random targets) on the x axis instead: {r}.");
        if vd == Verdict::NotApplicable && vr != Verdict::NotApplicable {
            verdict = vr;
            text += " The verdict is D_rand's, since D_det cannot test the claim here.";
        }
    }
    (text, verdict)
}

/// Trains every model, measures transfer, writes `sections/figure3.json` and
/// `plots/figure3.png`.
pub fn run(ctx: &mut Ctx, src: &Sources, archs: &[Arch]) -> Result<()> {
    if archs.len() < 3 {
        bail!("extras.figure3_archs: needs at least 3 architectures");
    }
    let sets = training_sets(ctx, src)?;
    let runs = arch_models(ctx, &sets, archs)?;
    let transfer = transfer(ctx, src, &sets, &runs)?;
    let points = arch_points(&runs, &transfer);
    // Axes from 0 and past chance, so that points at or below chance are seen as such (an
    // automatic range would blow noise around 1% up to fill the plot).
    let chance = super::chance(ctx);
    let images = plots(ctx, &points, chance)?;
    let (finding, verdict) = finding(&points, chance);
    let table = table(&sets, &transfer, &points);
    let section = Section {
        id: ID.into(),
        title: "Figure 3: transferability vs learning from non-robust features".into(),
        claim: "Architectures that learn more from the non-robust features of D_det (higher \
                real-test accuracy when trained on it) are more susceptible to adversarial \
                examples transferred from the source model."
            .into(),
        finding,
        verdict,
        tables: vec![table],
        images,
    };
    write_section(ctx, &section)
}

/// The section's training sets: D_det and D_rand at its radius (built from C_std by Table 1,
/// named as Table 1 names its sets, so that Table 1's sets and models are reused), their first
/// n images, and the clean control made of the same n images.
struct TrainingSets {
    relabel: RelabelSection,
    eps: f64,
    step: f64,
    det_set: String,
    rand_set: String,
    det: Dataset,
    det_key: String,
    rand: Dataset,
    rand_key: String,
    n: usize,
    control: Dataset,
    control_key: String,
    /// Table 1's models on D_det / D_rand are this section's for the preset's architecture.
    table1: bool,
    /// The control is Figure 2's (same size).
    same_control: bool,
}

/// Builds (or reuses) D_det and D_rand and takes the control's images: [`TrainingSets`].
fn training_sets(ctx: &mut Ctx, src: &Sources) -> Result<TrainingSets> {
    let r = ctx.preset.relabel.clone();
    let eps = ctx.preset.extras.figure3_eps.unwrap_or(r.eps);
    let step = r.step_at(eps);
    // Named as Table 1 names its sets, so that Table 1's sets and models are reused.
    let det_set = set_name("D_det", eps, r.eps);
    let rand_set = set_name("D_rand", eps, r.eps);
    let table1 = r.is_table1_radius(eps);
    let full = r.n.min(src.subset.len());
    let n = ctx.preset.extras.figure3_n.unwrap_or(full).min(full);
    // The first n images of a set are built from the first n of the subset, as the control's.
    let first_n = |d: Dataset, key: String| {
        if n == full {
            (d, key)
        } else {
            (
                d.subset(&(0..n).collect::<Vec<_>>()),
                format!("{key}/first{n}"),
            )
        }
    };
    let det_key = construct(ctx, &det_set, src, TargetRule::Deterministic, eps, step)?;
    let (det, det_key) = first_n(ctx.load_constructed(&det_set)?.dataset, det_key);
    let rand_key = construct(ctx, &rand_set, src, TargetRule::Random, eps, step)?;
    let (rand, rand_key) = first_n(ctx.load_constructed(&rand_set)?.dataset, rand_key);
    let table1 = table1 && n == full;
    let control_idx = &src.subset[..n];
    let control = ctx.train.subset(control_idx);
    let control_key = ctx.subset_key(control_idx);
    let same_control = ctx.preset.rep_match.n.min(src.subset.len()) == n;
    Ok(TrainingSets {
        relabel: r,
        eps,
        step,
        det_set,
        rand_set,
        det,
        det_key,
        rand,
        rand_key,
        n,
        control,
        control_key,
        table1,
        same_control,
    })
}

/// One architecture's models: trained on D_det, on D_rand, and the standard one on the control
/// (every seed's name and weights' key, for the transfer stage).
struct ArchModels {
    label: String,
    det: ModelResult,
    rand: ModelResult,
    std: ModelResult,
    std_seeds: Vec<TrainedSeed>,
}

/// The sets an architecture's three models are trained on, in [`ArchModels`]' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrainedOn {
    DDet,
    DRand,
    Control,
}

impl TrainedOn {
    const ALL: [TrainedOn; 3] = [TrainedOn::DDet, TrainedOn::DRand, TrainedOn::Control];
}

/// Trains (or reuses) the three models of each of `archs` with the `fresh` settings, standard
/// evaluation. The models are taken in the worker's order ([`crate::workers::map_in_order`]):
/// on two workers both train this section's models (a ResNet's three took 5.4 minutes on one).
fn arch_models(ctx: &mut Ctx, sets: &TrainingSets, archs: &[Arch]) -> Result<Vec<ArchModels>> {
    let models: Vec<(&Arch, TrainedOn)> = archs
        .iter()
        .flat_map(|a| TrainedOn::ALL.map(|t| (a, t)))
        .collect();
    let worker = ctx.cache.mode.worker;
    let mut trained = crate::workers::map_in_order(worker, models, |(arch, on)| {
        let (name, role) = model_name(ctx, sets, arch, on);
        train_model(ctx, sets, arch, on, name, role)
    })?
    .into_iter();
    let mut runs = Vec::new();
    for arch in archs {
        let (Some((det, _)), Some((rand, _)), Some((std, std_seeds))) =
            (trained.next(), trained.next(), trained.next())
        else {
            bail!("figure3: three models per architecture");
        };
        runs.push(ArchModels {
            label: arch.label(),
            det,
            rand,
            std,
            std_seeds,
        });
    }
    Ok(runs)
}

/// The name and role of `arch`'s model trained `on`: Table 1's / Figure 2's (name and role) for
/// the preset's own architecture on their sets, this section's own otherwise.
fn model_name(ctx: &Ctx, sets: &TrainingSets, arch: &Arch, on: TrainedOn) -> (String, ModelRole) {
    let (r, eps) = (&sets.relabel, sets.eps);
    let own = *arch == ctx.preset.model.arch;
    let slug = arch_slug(arch);
    let extra_role = |set| ModelRole::Extra {
        set,
        varies: Varies::Architecture,
    };
    match on {
        TrainedOn::DDet | TrainedOn::DRand => {
            let (set, rule, kind) = match on {
                TrainedOn::DDet => (&sets.det_set, TargetRule::Deterministic, ModelKind::DDet),
                _ => (&sets.rand_set, TargetRule::Random, ModelKind::DRand),
            };
            if own && sets.table1 {
                (format!("on_{set}"), crate::table1::role(rule, eps, r.eps))
            } else {
                (format!("f3_{slug}_on_{set}"), extra_role(kind))
            }
        }
        TrainedOn::Control if own && sets.same_control => (
            "on_control".to_string(),
            ModelRole::Main(ModelKind::Control),
        ),
        TrainedOn::Control => (
            format!("f3_{slug}_on_control"),
            extra_role(ModelKind::Control),
        ),
    }
}

/// The seeds of a Figure 3 model of role `role`: `extras.figure3_seeds` for the section's own
/// models, the role's (`[fresh] seeds`) for a Figure 2 / Table 1 model it reuses. One rule for
/// the run and for `nrf plan`.
pub fn model_seeds(preset: &crate::preset::Preset, role: ModelRole) -> usize {
    match role {
        ModelRole::Extra { .. } => preset.figure3_seeds(),
        _ => crate::pipeline::seeds_for(role, preset.fresh_seeds()),
    }
}

/// Trains (or reuses) model `name` of `arch` on the set `on` names: the architecture is this
/// row's, the rest the preset's `fresh` settings; standard accuracy only. The section's own
/// models are trained with `extras.figure3_seeds` seeds, a reused Figure 2 / Table 1 model with
/// its own. Returns its result and every seed's name and training key.
fn train_model(
    ctx: &mut Ctx,
    sets: &TrainingSets,
    arch: &Arch,
    on: TrainedOn,
    name: String,
    role: ModelRole,
) -> Result<(ModelResult, Vec<TrainedSeed>)> {
    let control_name = if sets.same_control {
        "D_control".to_string()
    } else {
        format!("D_control_{}", sets.n)
    };
    let set = match on {
        TrainedOn::DDet => TrainingSet {
            name: &sets.det_set,
            data: &sets.det,
            key: &sets.det_key,
        },
        TrainedOn::DRand => TrainingSet {
            name: &sets.rand_set,
            data: &sets.rand,
            key: &sets.rand_key,
        },
        TrainedOn::Control => TrainingSet {
            name: &control_name,
            data: &sets.control,
            key: &sets.control_key,
        },
    };
    let fresh = ctx.preset.fresh.clone();
    let job = ModelJob::new(&ctx.preset, name, role, set, &fresh)
        .with_arch(arch)
        .with_level(EvalLevel::Standard)
        .with_seeds(model_seeds(&ctx.preset, role));
    let staged = ctx.model_stage(&job)?;
    Ok((staged.result, staged.trained))
}

/// Transfer: targeted attacks on C_std, evaluated on every standard model, every seed (one
/// stage, `extras:figure3_transfer`).
fn transfer(
    ctx: &mut Ctx,
    src: &Sources,
    sets: &TrainingSets,
    runs: &[ArchModels],
) -> Result<Transfer> {
    let (r, eps, step) = (&sets.relabel, sets.eps, sets.step);
    // Every seed's (name, training key); with one seed per model the key of earlier runs.
    let std_models: Vec<(String, String)> = runs
        .iter()
        .flat_map(|m| m.std_seeds.iter().map(|s| (s.name.clone(), s.key.clone())))
        .collect();
    let c_std = src.c_std(ctx)?;
    let key_input = (
        &c_std,
        eps,
        r.steps,
        step,
        &std_models,
        ctx.preset.eval.robust_n,
    );
    let (transfer, _) = ctx.stage("extras:figure3_transfer", &key_input, |ctx, _| {
        // nrf's C_std, or the model file that stands for it (`[sources]`).
        let source = ctx.load_classifier("C_std")?;
        let x = ctx.robust_x.shallow_clone();
        let y = ctx.robust_y.shallow_clone();
        let labels: Vec<i64> = Vec::<i64>::try_from(y.to_device(tch::Device::Cpu))?;
        let classes = ctx.train.num_classes as i64;
        let t_all = Tensor::from_slice(&choose_targets(
            &labels,
            classes,
            TargetRule::Deterministic,
            0,
        ))
        .to_device(ctx.device);
        let threat = L2::new(eps)?;
        let cfg = PgdConfig::new(r.steps, step)
            .with_use_best(true)
            .with_random_start(false);
        let n = labels.len() as i64;
        let mut parts = Vec::new();
        for (lo, len) in spans(n, r.batch_size as i64) {
            let xb = x.narrow(0, lo, len);
            let tb = t_all.narrow(0, lo, len);
            let mut obj = targeted_ce(source.as_ref(), &tb);
            parts.push(pgd(&threat, &xb, &xb, &cfg, &mut obj, None)?.x.detach());
        }
        let adv = Tensor::cat(&parts, 0);
        let batch = ctx.preset.eval.batch_size as i64;
        let t_cpu = t_all.to_device(tch::Device::Cpu);
        let rate = |pred: Tensor| {
            pred.eq_tensor(&t_cpu)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        let source_success = rate(predictions(source.as_ref(), &adv, batch)?);
        let mut rates = Vec::new();
        for (name, _) in &std_models {
            let m = ctx.load_weights(name)?;
            rates.push((name.clone(), rate(predictions(&m, &adv, batch)?)));
        }
        Ok(Transfer {
            source_success,
            n: n as usize,
            rates,
        })
    })?;
    Ok(transfer)
}

/// Every architecture's point: its models' accuracies and its standard model's transfer rate
/// (the mean over its seeds, with their spread).
fn arch_points(runs: &[ArchModels], transfer: &Transfer) -> Vec<ArchPoint> {
    let rate = |name: &str| {
        transfer
            .rates
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    runs.iter()
        .map(|m| {
            let rates: Vec<f64> = m.std_seeds.iter().map(|s| rate(&s.name)).collect();
            ArchPoint {
                arch: m.label.clone(),
                acc_det: m.det.std_accuracy(),
                acc_rand: Some(m.rand.std_accuracy()),
                acc_std: m.std.std_accuracy(),
                transfer: Accuracy::with_seeds(&rates, transfer.n),
            }
        })
        .collect()
}

/// `plots/figure3.png` (x: accuracy after training on D_det) and `plots/figure3_rand.png`
/// (D_rand); returns their paths.
fn plots(ctx: &Ctx, points: &[ArchPoint], chance: f64) -> Result<Vec<String>> {
    // The axes include the error bars (95% intervals).
    let y_max = points
        .iter()
        .map(|p| p.transfer.interval().hi)
        .filter(|v| v.is_finite())
        .fold(0.05, f64::max);
    let mut images = Vec::new();
    type XOf = fn(&ArchPoint) -> Option<&Accuracy>;
    let sets: [(&str, &str, XOf); 2] = [
        ("D_det", "plots/figure3.png", |p| Some(&p.acc_det)),
        ("D_rand", "plots/figure3_rand.png", |p| p.acc_rand.as_ref()),
    ];
    for (set, file, x_of) in sets {
        let scatter = scatter(points, x_of);
        let x_max = scatter
            .iter()
            .map(|q| q.x_interval.map_or(q.x, |i| i.1))
            .fold(chance * 100.0 * 1.5, f64::max);
        let opts = PlotOptions {
            percent_y: true,
            x_range: Some((0.0, x_max * 1.1)),
            y_range: Some((0.0, y_max * 1.15)),
            ..Default::default()
        };
        scatter_points_plot(
            ctx.path(file),
            &format!("Figure 3: transfer success vs accuracy when trained on {set}"),
            &format!(
                "real-test accuracy (%) of the model trained on {set} (chance {:.0}%; bars: 95% intervals)",
                chance * 100.0
            ),
            "transfer success rate (classified as t)",
            &scatter,
            &opts,
        )?;
        images.push(file.to_string());
    }
    Ok(images)
}

/// The plot's points: x from `x_of` (in %), y the transfer rate, both with their intervals;
/// points without a finite x or y are left out.
fn scatter(points: &[ArchPoint], x_of: fn(&ArchPoint) -> Option<&Accuracy>) -> Vec<ScatterPoint> {
    points
        .iter()
        .filter_map(|p| {
            let x = x_of(p).filter(|x| x.value.is_finite())?;
            if !p.transfer.value.is_finite() {
                return None;
            }
            let (xi, yi) = (x.interval(), p.transfer.interval());
            Some(ScatterPoint {
                x: x.value * 100.0,
                y: p.transfer.value,
                label: p.arch.clone(),
                x_interval: Some((xi.lo * 100.0, xi.hi * 100.0)),
                y_interval: Some((yi.lo, yi.hi)),
            })
        })
        .collect()
}

/// The section's table: per architecture, the three accuracies and the transfer rate.
fn table(sets: &TrainingSets, transfer: &Transfer, points: &[ArchPoint]) -> Table {
    Table {
        caption: format!(
            "Per architecture: real-test accuracy of models trained on D_det and on D_rand ({} \
             images each) and of a standard model trained on the same {} clean images; transfer = fraction of {} \
             targeted L2 PGD adversarial examples made on C_std (eps {}, {} steps of {}, \
             t = (y+1) mod C) that the standard model classifies as t. C_std itself: {}. \
             Every number with its 95% interval; several seeds: mean ± sd over seeds.",
            sets.det.len(),
            sets.control.len(),
            transfer.n,
            sets.eps,
            sets.relabel.steps,
            num(sets.step),
            pct(transfer.source_success)
        ),
        headers: [
            "architecture",
            "acc trained on D_det",
            "acc trained on D_rand",
            "acc trained on clean control",
            "transfer success",
        ]
        .map(String::from)
        .to_vec(),
        rows: points
            .iter()
            .map(|p| {
                vec![
                    p.arch.clone(),
                    p.acc_det.text(),
                    p.acc_rand.as_ref().map_or("—".into(), Accuracy::text),
                    p.acc_std.text(),
                    p.transfer.text(),
                ]
            })
            .collect(),
    }
}
