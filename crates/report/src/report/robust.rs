//! The robust-accuracy section: accuracy vs ε per norm, the evaluation checks and the seed
//! spread.
use super::common::{bar_of, pct};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::paper::fmt_num;
use crate::plot::{line_plot_with, LineSeriesSpec, PlotOptions};
use crate::results::{norm_eq, ModelResult};
use crate::uncertainty::Accuracy;
use std::collections::BTreeSet;

pub(super) fn robust_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let norms = norms_of(&r.models);
    if norms.is_empty() {
        let m = if r.models.is_empty() {
            ctx.miss("models/*.json")
        } else {
            "no model has robust-accuracy points yet".into()
        };
        b.push(Block::Missing(m));
        return DocSection {
            id: "robust",
            title: title("robust"),
            status: Status::Missing,
            blocks: b,
        };
    }
    b.push(Block::Para(
        "Robust accuracy on the fixed evaluation subset under PGD at each ε; the ε = 0 column is the standard accuracy on the full test set. Each cell: value [95% interval]; for models trained with several seeds the mean over seeds (the per-seed values are in the seed table below). Error bars in the plots are the same intervals.".into(),
    ));
    let std_only: Vec<String> = r
        .models
        .iter()
        .filter(|m| m.robust.is_empty())
        .map(|m| format!("`{}`", m.name))
        .collect();
    if !std_only.is_empty() {
        b.push(Block::Para(format!(
            "Evaluated for standard accuracy only (no table reports their robustness): {}.",
            std_only.join(", ")
        )));
    }
    for norm in &norms {
        norm_part(ctx, norm, &mut b);
    }
    if let Some(t) = checks_table(&r.models) {
        b.push(Block::Heading(
            "Evaluation checks (gradient masking)".into(),
        ));
        b.push(Block::Para(
            "In the spirit of AutoAttack's checks, for every model evaluated with the ensemble, at the headline ε on the same images: PGD with 5x the steps must not raise the robust accuracy; an unbounded attack (only the [0, 1] box) must reach about 0; two forward passes must give the same logits; the black-box Square attack alone must not beat the white-box attacks; and the ensemble shows how much PGD alone overestimates. A difference is flagged only beyond two standard errors.".into(),
        ));
        b.push(Block::Table(t));
    }
    if let Some(t) = seed_table(&r.models) {
        b.push(Block::Heading("Seed-to-seed spread".into()));
        b.push(Block::Table(t));
    }
    DocSection {
        id: "robust",
        title: title("robust"),
        status: Status::Complete,
        blocks: b,
    }
}

/// The norms of the models' robust points: ℓ2 first, then ℓ∞, then any other, by name.
fn norms_of(models: &[ModelResult]) -> Vec<String> {
    let mut norms: Vec<String> = Vec::new();
    for m in models {
        for p in &m.robust {
            if !norms.iter().any(|n| norm_eq(n, &p.norm)) {
                norms.push(p.norm.clone());
            }
        }
    }
    norms.sort_by_key(|n| {
        (
            if norm_eq(n, "L2") {
                0
            } else if norm_eq(n, "Linf") {
                1
            } else {
                2
            },
            n.clone(),
        )
    });
    norms
}

/// The table and the plot of robust accuracy vs ε under one norm.
fn norm_part(ctx: &mut Ctx, norm: &str, b: &mut Vec<Block>) {
    let r = ctx.r;
    let mut eps: Vec<f64> = Vec::new();
    let mut attack: BTreeSet<String> = BTreeSet::new();
    for m in &r.models {
        for p in m.robust.iter().filter(|p| norm_eq(&p.norm, norm)) {
            if !eps.iter().any(|e| crate::results::eps_eq(*e, p.eps)) {
                eps.push(p.eps);
            }
            attack.insert(format!("{} steps, n = {}", p.steps, p.n));
        }
    }
    eps.sort_by(|a, b| a.total_cmp(b));
    let mut headers = vec![
        "Model".to_string(),
        "Trained on".into(),
        "ε = 0 (std)".into(),
    ];
    headers.extend(eps.iter().map(|e| format!("ε = {}", fmt_num(*e))));
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (i, m) in r.models.iter().enumerate() {
        if !m.robust.iter().any(|p| norm_eq(&p.norm, norm)) {
            continue;
        }
        let std_a = m.std_accuracy();
        let mut row = vec![format!("`{}`", m.name), m.trained_on.clone(), std_a.short()];
        let mut pts = vec![(0.0, std_a.value)];
        let mut bars = vec![bar_of(Some(&std_a))];
        for e in &eps {
            match m.robust_accuracy(norm, *e) {
                Some(a) => {
                    row.push(a.short());
                    pts.push((*e, a.value));
                    bars.push(bar_of(Some(&a)));
                }
                None => row.push("—".into()),
            }
        }
        rows.push(row);
        if pts.len() > 1 {
            series.push(LineSeriesSpec {
                name: m.name.clone(),
                points: pts,
                // The palette's second round of colours drawn dashed (and with triangles).
                dashed: (i / crate::plot::PALETTE.len()) % 2 == 1,
                color: Some(i),
                intervals: bars,
            });
        }
    }
    b.push(Block::Heading(format!("{norm} attacks")));
    b.push(Block::Table(DocTable {
        caption: format!(
            "Accuracy (%) under {norm} PGD ({}).",
            attack.into_iter().collect::<Vec<_>>().join("; ")
        ),
        headers,
        rows,
        verdict_cols: vec![],
        left_align: false,
    }));
    let file = format!(
        "robust_{}.png",
        norm.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let caption = format!(
        "Robust accuracy vs {norm} ε, one line per model (ε = 0: standard accuracy); error bars: 95% intervals."
    );
    if let Some(img) = ctx.plot(&file, &caption, |p| {
        line_plot_with(
            p,
            &format!("Robust accuracy vs {norm} ε"),
            &format!("{norm} ε"),
            "Accuracy",
            &series,
            &PlotOptions::accuracy(),
        )
    }) {
        b.push(img);
    }
}

/// One row per model with [`crate::results::EvalChecks`]: the numbers and the flags raised.
pub(super) fn checks_table(models: &[ModelResult]) -> Option<DocTable> {
    let rows: Vec<Vec<String>> = models
        .iter()
        .filter_map(|m| {
            let c = m.checks.as_ref()?;
            let flags = c.flags();
            Some(vec![
                format!("`{}`", m.name),
                format!("{} ({} steps)", pct(c.pgd_acc), c.pgd_steps),
                format!("{} ({} steps)", pct(c.more_steps_acc), c.more_steps),
                pct(c.ensemble_acc),
                format!("{} ({} steps)", pct(c.unbounded_acc), c.unbounded_steps),
                format!("{:.1e}", c.output_spread),
                match c.square_acc {
                    Some(a) => format!("{} ({} queries)", pct(a), c.square_queries),
                    None => "—".into(),
                },
                if flags.is_empty() {
                    "none".into()
                } else {
                    flags.join("; ")
                },
            ])
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let c = models.iter().find_map(|m| m.checks.as_ref())?;
    Some(DocTable {
        caption: format!(
            "Robust accuracy at {} ε={} on {} images under PGD, PGD with more steps and the ensemble; accuracy under an unbounded attack; the largest logit difference between two passes; the flags raised.",
            c.norm,
            fmt_num(c.eps),
            c.n
        ),
        headers: vec![
            "Model".into(),
            "PGD".into(),
            "PGD, more steps".into(),
            "Ensemble".into(),
            "Unbounded attack".into(),
            "Output spread".into(),
            "Square (black-box)".into(),
            "Flags".into(),
        ],
        rows,
        verdict_cols: vec![],
        left_align: false,
    })
}

/// Every seed's numbers of the models trained with several seeds: one row per model and
/// accuracy (standard, then every robust point), the mean ± sample sd, then each seed. None when
/// no model has several seeds.
pub(super) fn seed_table(models: &[ModelResult]) -> Option<DocTable> {
    let seeded: Vec<&ModelResult> = models.iter().filter(|m| m.n_seeds() >= 2).collect();
    let k = seeded.iter().map(|m| m.n_seeds()).max()?;
    let mut rows = Vec::new();
    for m in &seeded {
        let mut add = |what: String, a: Accuracy| {
            let mut row = vec![
                format!("`{}`", m.name),
                what,
                format!(
                    "{} ± {:.1}",
                    pct(a.value),
                    a.seed_sd().unwrap_or(0.0) * 100.0
                ),
                a.short(),
            ];
            row.extend(a.seeds.iter().map(|v| pct(*v)));
            row.resize(4 + k, "—".into());
            rows.push(row);
        };
        add("std (test set)".into(), m.std_accuracy());
        for p in &m.robust {
            if let Some(a) = m.robust_accuracy(&p.norm, p.eps) {
                add(format!("{} ε={}", p.norm, fmt_num(p.eps)), a);
            }
        }
    }
    let mut headers: Vec<String> = ["Model", "Accuracy", "Mean ± sd", "Mean [95% interval]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    headers.extend((0..k).map(|i| format!("Seed {i}")));
    Some(DocTable {
        caption: "Models trained with several seeds (`[fresh] seeds`): every seed's accuracy, their mean ± sample standard deviation, and the interval the verdicts use (Wilson on the evaluation's images, widened by the seed spread). Seed 0 is the model whose weights the extras reuse.".into(),
        headers,
        rows,
        verdict_cols: vec![],
        left_align: false,
    })
}
