//! The Figure 2 section: training on robust and non-robust features (D_R, D_NR).
use super::common::{
    bar_of, claims_table, headline_text, models_of, rob_acc, rob_cell, section_status, verdict_cell,
};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable};
use crate::paper::{cell_text, paper_numbers, select};
use crate::plot::{bar_plot_with_errors, PlotOptions};
use crate::results::ModelResult;
use crate::verdict::{ClaimVerdict, ModelKind};

pub(super) fn figure2_section(ctx: &mut Ctx, f2: &[ClaimVerdict]) -> DocSection {
    let h = ctx.r.headline();
    let mut b = vec![Block::Para(
        "The paper (Figure 2, CIFAR-10) trains fresh models with standard training on D_R (robust features of an adversarially trained model) and on D_NR (features of a standard model), and compares their standard and robust accuracy with standard and adversarial training on D. Claim: D_R gives robustness without adversarial training; D_NR gives accuracy without robustness. Our dataset, model and ε differ from the paper's; compare the pattern, not the exact values.".into(),
    )];
    let missing_before = ctx.missing.len();
    let table = figure2_table(ctx, f2);
    let present = [
        ModelKind::Std,
        ModelKind::Rob,
        ModelKind::DR,
        ModelKind::DNR,
        ModelKind::Control,
    ]
    .iter()
    .filter(|k| ctx.r.main_model(**k).is_some())
    .count();
    b.push(Block::Table(table));
    // The plot as the paper draws it: grouped bars of standard and robust accuracy.
    let mut cats = Vec::new();
    let (mut std_v, mut rob_v, mut ens_v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut std_e, mut rob_e, mut ens_e) = (Vec::new(), Vec::new(), Vec::new());
    for (k, m, _) in models_of(
        ctx.r,
        &[
            ModelKind::Std,
            ModelKind::Rob,
            ModelKind::DR,
            ModelKind::DNR,
            ModelKind::Control,
        ],
    ) {
        if let Some(m) = m {
            let label = match k {
                ModelKind::Std => "Std training on D".to_string(),
                ModelKind::Rob => "Adv training on D".to_string(),
                ModelKind::Control => "Std training on control".to_string(),
                _ => format!("Std training on {}", m.trained_on),
            };
            cats.push(label);
            let (std_a, rob_a) = (m.std_accuracy(), rob_acc(m, h.as_ref()));
            std_v.push(std_a.value);
            std_e.push(bar_of(Some(&std_a)));
            rob_v.push(rob_a.as_ref().map(|a| a.value).unwrap_or(f64::NAN));
            rob_e.push(bar_of(rob_a.as_ref()));
            let ens_a = h.as_ref().and_then(|h| m.ensemble_accuracy(&h.norm, h.eps));
            ens_v.push(ens_a.as_ref().map(|a| a.value).unwrap_or(f64::NAN));
            ens_e.push(bar_of(ens_a.as_ref()));
        }
    }
    if !cats.is_empty() {
        let rob_name = format!("Robust acc. ({}, PGD)", headline_text(h.as_ref()));
        // The ensemble's bars beside PGD's when any model was evaluated with it: the claims
        // about robustness are decided on them.
        let mut series = vec![
            ("Standard acc.".to_string(), std_v.clone()),
            (rob_name.clone(), rob_v.clone()),
        ];
        let mut errors = vec![std_e.clone(), rob_e.clone()];
        if ens_v.iter().any(|v| v.is_finite()) {
            series.push((
                format!("Robust acc. ({}, ensemble)", headline_text(h.as_ref())),
                ens_v.clone(),
            ));
            errors.push(ens_e.clone());
        }
        let caption = format!(
            "Figure 2 reproduced: standard accuracy and robust accuracy at {} on the real test set (under PGD, and under the ensemble of attacks where measured), per training set (mean over seeds where there are several); error bars: 95% intervals. A missing bar was not measured.",
            headline_text(h.as_ref())
        );
        if let Some(img) = ctx.plot("figure2.png", &caption, |p| {
            bar_plot_with_errors(
                p,
                "Figure 2: standard and robust accuracy by training set",
                "Test accuracy",
                &cats,
                &series,
                &errors,
                &PlotOptions {
                    width: 1120,
                    ..PlotOptions::accuracy()
                },
            )
        }) {
            b.push(img);
        }
    }
    b.push(Block::Table(claims_table(
        "Figure 2 claims and how they are decided.",
        f2,
    )));
    let status = section_status(present, 5, ctx.missing.len() > missing_before);
    DocSection {
        id: "figure2",
        title: title("figure2"),
        status,
        blocks: b,
    }
}

/// The Figure 2 table (also used by [`super::summary_markdown`]).
pub(super) fn figure2_table(ctx: &mut Ctx, verdicts: &[ClaimVerdict]) -> DocTable {
    let h = ctx.r.headline();
    let numbers = paper_numbers().unwrap_or(&[]);
    let kinds = [
        ModelKind::Std,
        ModelKind::Rob,
        ModelKind::DR,
        ModelKind::DNR,
        ModelKind::Control,
    ];
    let mut rows = Vec::new();
    let listed = models_of(ctx.r, &kinds);
    // A column for the ensemble of attacks when any model was evaluated with one.
    let ensemble = listed
        .iter()
        .filter_map(|(_, m, _)| m.as_ref())
        .find_map(|m| m.ensemble.first().and_then(|p| p.attack.clone()));
    let ens_cell =
        |m: &ModelResult| match h.as_ref().and_then(|h| m.ensemble_accuracy(&h.norm, h.eps)) {
            Some(a) => a.text(),
            None => "—".into(),
        };
    for (k, m, variant) in listed {
        let paper_cell = match k.paper_key() {
            Some(key) if !variant => cell_text(&select(numbers, "Figure 2", "CIFAR-10", key)),
            Some(_) => "(variant)".into(),
            None => "— (not in the paper)".into(),
        };
        let verdict = if variant {
            "—".to_string()
        } else {
            match k {
                ModelKind::DR => verdict_cell(verdicts, &["F2a", "F2d", "F2c"]),
                ModelKind::DNR => verdict_cell(verdicts, &["F2b"]),
                _ => "reference".to_string(),
            }
        };
        let mut row = match m {
            Some(m) => vec![
                if variant {
                    m.trained_on.clone()
                } else if m.trained_on == "external" {
                    // A model the run did not train (the preset's `[sources]`): say so, with
                    // the file it came from.
                    format!("{} (not trained here: {})", k.base_name(), m.arch)
                } else {
                    k.label().to_string()
                },
                format!("`{}`", m.name),
                m.std_accuracy().text(),
                rob_cell(m, h.as_ref()),
                if ensemble.is_some() {
                    ens_cell(m)
                } else {
                    String::new()
                },
                paper_cell,
                verdict,
            ],
            None => {
                let miss = ctx.miss(&format!("models/{}.json", k.base_name()));
                vec![
                    k.label().to_string(),
                    format!("`{}`", k.base_name()),
                    miss,
                    "—".into(),
                    "—".into(),
                    paper_cell,
                    verdict,
                ]
            }
        };
        if ensemble.is_none() {
            row.remove(4);
        }
        rows.push(row);
    }
    let mut headers = vec![
        "Training set".into(),
        "Model".into(),
        "Std acc".into(),
        format!(
            "Robust acc ({}{})",
            headline_text(h.as_ref()),
            if ensemble.is_some() { ", PGD" } else { "" }
        ),
        "Robust acc (ensemble)".into(),
        "Paper (CIFAR-10)".into(),
        "Verdict".into(),
    ];
    let ensemble_note = match &ensemble {
        Some(a) => {
            format!(" The ensemble column is the worst case per example over {a}; claims about robustness are decided on it.")
        }
        None => {
            headers.remove(4);
            String::new()
        }
    };
    let verdict_col = headers.len() - 1;
    DocTable {
        caption: format!(
            "Standard accuracy on the real test set and robust accuracy at {} (ours, with 95% intervals [lo, hi]; several seeds: mean ± sd over seeds) next to the paper's CIFAR-10 numbers (ℓ2 ε=0.25, ResNet-50). Verdicts show the deciding margin m ± its standard error.{ensemble_note}",
            headline_text(h.as_ref())
        ),
        headers,
        rows,
        verdict_cols: vec![verdict_col],
        left_align: false,
    }
}
