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
//! When an architecture is the preset's own and the control has the same size, the Figure 2 /
//! Table 1 models `on_D_det` and `on_control` are reused (same stages, cached).
use super::stats::{above_chance, correlation_verdict, correlation_words, pct, pearson};
use super::{arch_slug, model_stage_arch, predictions, write_section};
use crate::figure2::Sources;
use crate::pipeline::{hash_key, Ctx, EvalLevel};
use crate::table1::construct;
use anyhow::{bail, Result};
use nrf_attacks::{pgd, targeted_ce, PgdConfig, L2};
use nrf_features::relabel::{choose_targets, TargetRule};
use nrf_models::Arch;
use nrf_report::plot::{scatter_plot_with, PlotOptions};
use nrf_report::results::{Section, Table};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// One architecture's point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchPoint {
    /// Architecture label, e.g. "resnet18(w=8)".
    pub arch: String,
    /// Real-test accuracy of the model trained on D_det (x).
    pub acc_det: f64,
    /// Real-test accuracy of the standard model trained on the clean control.
    pub acc_std: f64,
    /// Transfer success rate to the standard model (y).
    pub transfer: f64,
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

/// Finding and verdict from the points, the chance level and the real test set's size. The
/// verdict follows [`correlation_verdict`] on the Pearson correlation of x and y, except "n/a"
/// when no architecture is clearly above chance after training on D_det.
pub fn finding(points: &[ArchPoint], chance: f64, n_test: usize) -> (String, &'static str) {
    let xs: Vec<f64> = points.iter().map(|p| p.acc_det).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.transfer).collect();
    let r = pearson(&xs, &ys);
    let mut verdict = correlation_verdict(r, points.len());
    let best = points.iter().max_by(|a, b| a.acc_det.total_cmp(&b.acc_det));
    let most = points
        .iter()
        .max_by(|a, b| a.transfer.total_cmp(&b.transfer));
    let mut s = match r {
        Some(r) => format!(
            "Across {} architectures, accuracy on D after training on D_det and the transfer rate \
             of C_std's targeted adversarial examples show {} correlation (Pearson r = {r:.2})",
            points.len(),
            correlation_words(r)
        ),
        None => format!(
            "The correlation over {} architectures is undefined (too few points or no spread)",
            points.len()
        ),
    };
    if let (Some(b), Some(m)) = (best, most) {
        s += &format!(
            "; {} learns most from D_det ({}) and {} is the most susceptible ({} transfer)",
            b.arch,
            pct(b.acc_det),
            m.arch,
            pct(m.transfer)
        );
    }
    let at_chance: Vec<&str> = points
        .iter()
        .filter(|p| !above_chance(p.acc_det, chance, n_test))
        .map(|p| p.arch.as_str())
        .collect();
    if !at_chance.is_empty() {
        s += &format!(
            "; {} {} not clearly above chance ({}) after training on D_det",
            at_chance.join(", "),
            if at_chance.len() == 1 { "is" } else { "are" },
            pct(chance)
        );
    }
    if at_chance.len() == points.len() {
        // The claim relates how much each architecture learns from D_det to transfer; when
        // none learned anything the x values are noise around chance and the test is void.
        verdict = "n/a";
        s += ". No architecture learned from D_det, so this run cannot test the claim";
    } else if points.len() < 5 {
        s += &format!(
            ". With only {} points the correlation is a rough indication",
            points.len()
        );
    }
    s.push('.');
    (s, verdict)
}

/// Trains every model, measures transfer, writes `sections/figure3.json` and
/// `plots/figure3.png`.
pub fn run(ctx: &mut Ctx, src: &Sources, archs: &[Arch]) -> Result<()> {
    if archs.len() < 3 {
        bail!("extras.figure3_archs: needs at least 3 architectures");
    }
    let r = ctx.preset.relabel.clone();
    let det_key = construct(
        ctx,
        "D_det",
        src,
        TargetRule::Deterministic,
        r.eps,
        r.step_size,
    )?;
    let det = ctx.load_constructed("D_det")?.dataset;
    let n = r.n.min(src.subset.len());
    let control_idx = &src.subset[..n];
    let control = ctx.train.subset(control_idx);
    let control_key = hash_key(&(&ctx.data_key, control_idx));
    let fresh = ctx.preset.fresh.clone();
    let same_control = ctx.preset.rep_match.n.min(src.subset.len()) == n;
    let mut runs = Vec::new();
    for arch in archs {
        let own = *arch == ctx.preset.model.arch;
        let slug = arch_slug(arch);
        let det_name = if own {
            "on_D_det".to_string()
        } else {
            format!("f3_{slug}_on_D_det")
        };
        let std_name = if own && same_control {
            "on_control".to_string()
        } else {
            format!("f3_{slug}_on_control")
        };
        let trained_on = if same_control {
            "D_control".to_string()
        } else {
            format!("D_control_{n}")
        };
        let (m_det, k_det) = model_stage_arch(
            ctx,
            arch,
            &det_name,
            "D_det",
            &det,
            &det_key,
            &fresh,
            EvalLevel::Standard,
        )?;
        let (m_std, k_std) = model_stage_arch(
            ctx,
            arch,
            &std_name,
            &trained_on,
            &control,
            &control_key,
            &fresh,
            EvalLevel::Standard,
        )?;
        runs.push((arch.label(), m_det, k_det, std_name, m_std, k_std));
    }

    // Transfer: targeted attacks on C_std, evaluated on every standard model (one stage).
    let std_models: Vec<(String, String)> =
        runs.iter().map(|r| (r.3.clone(), r.5.clone())).collect();
    let key_input = (
        &src.c_std,
        r.eps,
        r.steps,
        r.step_size,
        &std_models,
        ctx.preset.eval.robust_n,
    );
    let (transfer, _) = ctx.stage("extras:figure3_transfer", &key_input, |ctx, _| {
        let source = ctx.load_weights("C_std")?;
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
        let threat = L2::new(r.eps)?;
        let cfg = PgdConfig::new(r.steps, r.step_size)
            .with_use_best(true)
            .with_random_start(false);
        let n = labels.len() as i64;
        let mut parts = Vec::new();
        let mut lo = 0;
        while lo < n {
            let hi = (lo + r.batch_size as i64).min(n);
            let xb = x.narrow(0, lo, hi - lo);
            let tb = t_all.narrow(0, lo, hi - lo);
            let mut obj = targeted_ce(&source, &tb);
            parts.push(pgd(&threat, &xb, &xb, &cfg, &mut obj, None)?.x.detach());
            lo = hi;
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
        let source_success = rate(predictions(&source, &adv, batch)?);
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

    let points: Vec<ArchPoint> = runs
        .iter()
        .map(|(label, m_det, _, std_name, m_std, _)| ArchPoint {
            arch: label.clone(),
            acc_det: m_det.std_acc,
            acc_std: m_std.std_acc,
            transfer: transfer
                .rates
                .iter()
                .find(|(n, _)| n == std_name)
                .map(|(_, v)| *v)
                .unwrap_or(f64::NAN),
        })
        .collect();
    let plot = "plots/figure3.png";
    let scatter: Vec<(f64, f64, String)> = points
        .iter()
        .filter(|p| p.acc_det.is_finite() && p.transfer.is_finite())
        .map(|p| (p.acc_det * 100.0, p.transfer, p.arch.clone()))
        .collect();
    let opts = PlotOptions {
        percent_y: true,
        ..Default::default()
    };
    scatter_plot_with(
        ctx.path(plot),
        "Figure 3: transfer success vs accuracy when trained on D_det",
        "real-test accuracy (%) of the model trained on D_det",
        "transfer success rate (classified as t)",
        &scatter,
        &opts,
    )?;
    let chance = super::chance(ctx);
    let (finding, verdict) = finding(&points, chance, ctx.test.len());
    let table = Table {
        caption: format!(
            "Per architecture: real-test accuracy of a model trained on D_det ({} images) and of \
             a standard model trained on the same {} clean images; transfer = fraction of {} \
             targeted L2 PGD adversarial examples made on C_std (eps {}, {} steps of {}, \
             t = (y+1) mod C) that the standard model classifies as t. C_std itself: {}.",
            det.len(),
            control.len(),
            transfer.n,
            r.eps,
            r.steps,
            r.step_size,
            pct(transfer.source_success)
        ),
        headers: [
            "architecture",
            "acc trained on D_det",
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
                    pct(p.acc_det),
                    pct(p.acc_std),
                    pct(p.transfer),
                ]
            })
            .collect(),
    };
    let section = Section {
        id: "figure3".into(),
        title: "Figure 3: transferability vs learning from non-robust features".into(),
        claim: "Architectures that learn more from the non-robust features of D_det (higher \
                real-test accuracy when trained on it) are more susceptible to adversarial \
                examples transferred from the source model."
            .into(),
        finding,
        verdict: verdict.into(),
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}
