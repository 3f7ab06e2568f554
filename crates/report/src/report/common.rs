//! Helpers shared by the sections: number and duration formatting, accuracy cells, claim
//! tables, the models listed per kind and a section's status.
use crate::doc::{DocTable, Status};
use crate::load::Results;
use crate::paper::fmt_num;
use crate::results::{Headline, ModelResult, ModelRole};
use crate::uncertainty::Accuracy;
use crate::verdict::{ClaimVerdict, ModelKind};

pub(crate) fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

pub(super) fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "—".into())
}

pub(super) fn opt_num(v: Option<f64>) -> String {
    v.map(|x| fmt_num((x * 1000.0).round() / 1000.0))
        .unwrap_or_else(|| "—".into())
}

pub(super) fn dur(s: f64) -> String {
    if !s.is_finite() {
        return "—".into();
    }
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!(
            "{} min {:02} s",
            (s / 60.0).floor(),
            (s % 60.0).round() as u64 % 60
        )
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0).floor(),
            ((s % 3600.0) / 60.0).floor()
        )
    }
}

pub(super) fn headline_text(h: Option<&Headline>) -> String {
    match h {
        Some(h) => format!("{} ε={}", h.norm, fmt_num(h.eps)),
        None => "headline ε (unknown)".into(),
    }
}

/// Robust accuracy of `m` at the headline, with its uncertainty.
pub(super) fn rob_acc(m: &ModelResult, h: Option<&Headline>) -> Option<Accuracy> {
    h.and_then(|h| m.robust_accuracy(&h.norm, h.eps))
}

pub(super) fn rob_cell(m: &ModelResult, h: Option<&Headline>) -> String {
    match h {
        Some(h) => match m.robust_accuracy(&h.norm, h.eps) {
            Some(a) => a.text(),
            None => format!("not measured at {} ε={}", h.norm, fmt_num(h.eps)),
        },
        None => "—".into(),
    }
}

/// The (lo, hi) error bar of an accuracy (NaNs when there is none).
pub(super) fn bar_of(a: Option<&Accuracy>) -> (f64, f64) {
    match a {
        Some(a) if a.value.is_finite() => {
            let i = a.interval();
            (i.lo, i.hi)
        }
        _ => (f64::NAN, f64::NAN),
    }
}

/// How the numbers' uncertainty is shown and how verdicts use it (the methods text).
pub(crate) const METHODS: &str = "Every accuracy is shown as value [lo, hi]: its 95% Wilson score interval over the n images it was measured on (the whole test set for standard accuracy, the fixed robust-evaluation subset for robust accuracy). A model trained with several seeds (`[fresh] seeds`) shows the mean over seeds ± their sample standard deviation, an interval widened by that spread (mean ± c·SE, Student's t for few seeds, as below), and every seed's value. Each claim is a margin m (e.g. m = rob(on_D_R) − rob(on_control)) with standard error SE = sqrt(Σ SE_i²) over the accuracies involved, where SE_i² = (Wilson half-width / 1.96)² + s²/k for k seeds with spread s. A claim **holds** only when m > c SE, **does not hold** when m < −c SE, and is **inconclusive** otherwise, where c = 2, or, when seed spreads are part of SE, Student's t 97.5% quantile at its Welch-Satterthwaite degrees of freedom if larger (a spread from three seeds has two: up to c = 4.30); **partly** means one of a claim's two parts holds. \"Above chance\" has one rule: the accuracy's interval lies above 1/C. Verdicts show the deciding margin as m ± SE, and \"needs c SE\" where c is above 2.";

pub(super) fn verdict_cell(verdicts: &[ClaimVerdict], ids: &[&str]) -> String {
    let parts: Vec<String> = verdicts
        .iter()
        .filter(|v| ids.contains(&v.id.as_str()))
        .map(|v| format!("{}: {}", v.id, v.verdict_text()))
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

pub(super) fn claims_table(caption: &str, verdicts: &[ClaimVerdict]) -> DocTable {
    DocTable {
        caption: caption.into(),
        headers: vec![
            "Claim".into(),
            "Statement".into(),
            "Rule".into(),
            "Our numbers".into(),
            "Verdict".into(),
        ],
        rows: verdicts
            .iter()
            .map(|v| {
                vec![
                    v.id.clone(),
                    v.claim.clone(),
                    v.rule.clone(),
                    v.evidence.clone(),
                    v.verdict_text(),
                ]
            })
            .collect(),
        verdict_cols: vec![4],
        left_align: false,
    }
}

pub(super) fn models_of<'a>(
    r: &'a Results,
    kinds: &[ModelKind],
) -> Vec<(ModelKind, Option<&'a ModelResult>, bool)> {
    // (kind, model, is_variant): every base kind (present or not) followed by its variants, by
    // their roles.
    let mut out = Vec::new();
    for k in kinds {
        out.push((*k, r.main_model(*k), false));
        for m in &r.models {
            if m.role == ModelRole::Variant(*k) {
                out.push((*k, Some(m), true));
            }
        }
    }
    out
}

pub(super) fn section_status(present: usize, expected: usize, anything_missing: bool) -> Status {
    if present == 0 {
        Status::Missing
    } else if present < expected || anything_missing {
        Status::Partial
    } else {
        Status::Complete
    }
}

/// The sum of every stage's own wall time (cached stages count the time they took when run).
pub(super) fn stage_seconds(run: &crate::results::RunInfo) -> f64 {
    run.stages.iter().map(|s| s.wall_s).sum()
}
