//! The report: `report.html` (self-contained) and `report.md`, plus the plots under `plots/`.
use crate::doc::{
    render_html, render_markdown, table_markdown, Block, DocSection, DocTable, Status,
};
use crate::io::atomic_write;
use crate::load::Results;
use crate::paper::{cell_text, fmt_num, paper_numbers, select};
use crate::plot::{
    bar_plot_with_errors, line_plot_with, panel_line_plot, LineSeriesSpec, Panel, PlotOptions,
};
use crate::results::{norm_eq, Headline, ModelResult, ModelRole};
use crate::uncertainty::Accuracy;
use crate::verdict::{ClaimVerdict, ModelKind, Verdict};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod theory;

/// What [`write_report`] produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportSummary {
    /// Path of report.html.
    pub html: PathBuf,
    /// Path of report.md.
    pub markdown: PathBuf,
    /// Plots written under plots/.
    pub plots: Vec<PathBuf>,
    /// Titles of sections with content (complete or partial).
    pub sections_present: Vec<String>,
    /// Titles of sections with some content missing (a subset of `sections_present`).
    pub sections_partial: Vec<String>,
    /// Titles of sections with no content at all.
    pub sections_missing: Vec<String>,
    /// Every missing artefact, e.g. "models/on_D_R.json".
    pub missing: Vec<String>,
    /// Files that could not be read, invalid values, failed plots.
    pub problems: Vec<String>,
    /// The Figure 2 and Table 1 claim verdicts.
    pub verdicts: Vec<ClaimVerdict>,
}

/// Section titles, in report order (also the headings of report.html / report.md).
pub const SECTION_TITLES: [(&str, &str); 10] = [
    ("summary", "Summary of verdicts"),
    (
        "figure2",
        "Figure 2: training on robust and non-robust features",
    ),
    (
        "table1",
        "Table 1: non-robust features suffice (D_rand, D_det)",
    ),
    ("robust", "Robust accuracy vs ε"),
    ("datasets", "Constructed datasets"),
    ("training", "Training curves and over-fitting"),
    ("theory", "Theory (Section 4, Figure 4)"),
    ("sections", "Further experiments"),
    ("paper", "Paper numbers used for comparison"),
    ("run", "Run info"),
];

fn title(id: &str) -> String {
    SECTION_TITLES
        .iter()
        .find(|t| t.0 == id)
        .map(|t| t.1)
        .unwrap_or(id)
        .to_string()
}

pub(crate) fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "—".into())
}

fn opt_num(v: Option<f64>) -> String {
    v.map(|x| fmt_num((x * 1000.0).round() / 1000.0))
        .unwrap_or_else(|| "—".into())
}

fn dur(s: f64) -> String {
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

/// Collects missing artefacts and problems while sections are built.
struct Ctx<'a> {
    r: &'a Results,
    missing: Vec<String>,
    problems: Vec<String>,
    plots: Vec<PathBuf>,
    make_plots: bool,
}

impl Ctx<'_> {
    fn miss(&mut self, artefact: &str) -> String {
        if !artefact.contains('*') && self.r.dir.join(artefact).exists() {
            // Present but unreadable or invalid: listed under the problems.
            return format!("could not be read: {artefact} (see the summary)");
        }
        if !self.missing.iter().any(|m| m == artefact) {
            self.missing.push(artefact.to_string());
        }
        format!("not computed yet: {artefact}")
    }

    /// Renders a plot into plots/<file>; returns the image block or a "missing" block.
    fn plot(
        &mut self,
        file: &str,
        caption: &str,
        draw: impl FnOnce(&Path) -> Result<()>,
    ) -> Option<Block> {
        if !self.make_plots {
            return None;
        }
        let rel = format!("plots/{file}");
        let path = self.r.dir.join(&rel);
        match draw(&path) {
            Ok(()) => {
                self.plots.push(path);
                Some(Block::Image {
                    rel,
                    caption: caption.to_string(),
                })
            }
            Err(e) => {
                let msg = format!("plot {rel} failed: {e:#}");
                self.problems.push(msg.clone());
                Some(Block::Problem(msg))
            }
        }
    }
}

fn headline_text(h: Option<&Headline>) -> String {
    match h {
        Some(h) => format!("{} ε={}", h.norm, fmt_num(h.eps)),
        None => "headline ε (unknown)".into(),
    }
}

/// Robust accuracy of `m` at the headline, with its uncertainty.
fn rob_acc(m: &ModelResult, h: Option<&Headline>) -> Option<Accuracy> {
    h.and_then(|h| m.robust_accuracy(&h.norm, h.eps))
}

fn rob_cell(m: &ModelResult, h: Option<&Headline>) -> String {
    match h {
        Some(h) => match m.robust_accuracy(&h.norm, h.eps) {
            Some(a) => a.text(),
            None => format!("not measured at {} ε={}", h.norm, fmt_num(h.eps)),
        },
        None => "—".into(),
    }
}

/// The (lo, hi) error bar of an accuracy (NaNs when there is none).
fn bar_of(a: Option<&Accuracy>) -> (f64, f64) {
    match a {
        Some(a) if a.value.is_finite() => {
            let i = a.interval();
            (i.lo, i.hi)
        }
        _ => (f64::NAN, f64::NAN),
    }
}

/// How the numbers' uncertainty is shown and how verdicts use it (the methods text).
pub(crate) const METHODS: &str = "Every accuracy is shown as value [lo, hi]: its 95% Wilson score interval over the n images it was measured on (the whole test set for standard accuracy, the fixed robust-evaluation subset for robust accuracy). A model trained with several seeds (`[fresh] seeds`) shows the mean over seeds ± their sample standard deviation, an interval widened by that spread, and every seed's value. Each claim is a margin m (e.g. m = rob(on_D_R) − rob(on_control)) with standard error SE = sqrt(Σ SE_i²) over the accuracies involved, where SE_i² = (Wilson half-width / 1.96)² + s²/k for k seeds with spread s. A claim **holds** only when m > 2 SE, **does not hold** when m < −2 SE, and is **inconclusive** otherwise; **partly** means one of a claim's two parts holds. \"Above chance\" has one rule: the accuracy's interval lies above 1/C. Verdicts show the deciding margin as m ± SE.";

fn verdict_cell(verdicts: &[ClaimVerdict], ids: &[&str]) -> String {
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

fn claims_table(caption: &str, verdicts: &[ClaimVerdict]) -> DocTable {
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

fn models_of<'a>(
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

/// The Figure 2 table (also used by [`summary_markdown`]).
fn figure2_table(ctx: &mut Ctx, verdicts: &[ClaimVerdict]) -> DocTable {
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

fn table1_table(ctx: &mut Ctx, verdicts: &[ClaimVerdict]) -> DocTable {
    let h = ctx.r.headline();
    let (nc, _) = ctx.r.num_classes();
    let chance = 1.0 / nc as f64;
    let numbers = paper_numbers().unwrap_or(&[]);
    let kinds = [
        ModelKind::Std,
        ModelKind::DRand,
        ModelKind::DDet,
        ModelKind::Control,
    ];
    let mut rows = Vec::new();
    for (k, m, variant) in models_of(ctx.r, &kinds) {
        let paper = |ds: &str| match k.paper_key() {
            Some(key) if !variant => {
                let sel: Vec<_> = select(numbers, "Table 1", ds, key)
                    .into_iter()
                    .filter(|n| n.metric == "std_acc")
                    .collect();
                cell_text(&sel)
            }
            Some(_) => "(variant)".into(),
            None => "— (not in the paper)".into(),
        };
        let verdict = match (k, m) {
            (ModelKind::DRand | ModelKind::DDet, Some(m)) => {
                let id = if k == ModelKind::DRand { "T1a" } else { "T1b" };
                let id = if variant {
                    format!("{id}[{}]", m.name)
                } else {
                    id.to_string()
                };
                verdict_cell(verdicts, &[id.as_str()])
            }
            (ModelKind::DRand | ModelKind::DDet, None) => "undetermined".into(),
            _ => "reference".into(),
        };
        let (cifar, rin) = (paper("CIFAR-10"), paper("Restricted ImageNet"));
        match m {
            Some(m) => rows.push(vec![
                if variant {
                    m.trained_on.clone()
                } else {
                    k.label().replace(", standard training", "")
                },
                format!("`{}`", m.name),
                m.std_accuracy().text(),
                rob_cell(m, h.as_ref()),
                cifar,
                rin,
                pct(chance),
                verdict,
            ]),
            None => {
                let miss = ctx.miss(&format!("models/{}.json", k.base_name()));
                rows.push(vec![
                    k.label().replace(", standard training", "").to_string(),
                    format!("`{}`", k.base_name()),
                    miss,
                    "—".into(),
                    cifar,
                    rin,
                    pct(chance),
                    verdict,
                ])
            }
        }
    }
    DocTable {
        caption:
            "Accuracy on the real test set (true labels) of models trained on D, D_rand and D_det, with 95% intervals [lo, hi] (several seeds: mean ± sd over seeds). A claim is above chance when the interval lies above it; verdicts show m = acc − chance ± its standard error."
                .into(),
        headers: vec![
            "Training set".into(),
            "Model".into(),
            "Test acc".into(),
            format!("Robust acc ({})", headline_text(h.as_ref())),
            "Paper (CIFAR-10)".into(),
            "Paper (Restricted ImageNet)".into(),
            "Chance".into(),
            "Verdict".into(),
        ],
        rows,
        verdict_cols: vec![7],
        left_align: false,
    }
}

fn summary_section(ctx: &mut Ctx, f2: &[ClaimVerdict], t1: &[ClaimVerdict]) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    match &r.run {
        Some(run) => {
            let state = match &run.finished {
                Some(f) => format!("finished {f}"),
                None => "**not finished**".into(),
            };
            b.push(Block::Para(format!(
                "Preset `{}`, seed {}, started {}, {state}; wall time of this invocation {}, compute time of all stages {} (the sum of their stage times, whichever invocation ran them).",
                run.preset,
                run.seed,
                run.started,
                dur(run.total_wall_s),
                dur(stage_seconds(run))
            )));
            if !run.missing.is_empty() {
                b.push(Block::Missing(format!(
                    "the run has not completed {} stage(s) the preset asks for (run.json `missing`): {}",
                    run.missing.len(),
                    run.missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                )));
            }
            let failed: Vec<String> = run
                .stages
                .iter()
                .filter(|s| s.status == crate::results::StageStatus::Failed)
                .map(|s| format!("`{}`: {}", s.name, s.message.clone().unwrap_or_default()))
                .collect();
            if !failed.is_empty() {
                b.push(Block::Problem(format!(
                    "failed stages: {}",
                    failed.join("; ")
                )));
            }
        }
        None => {
            let m = ctx.miss("run.json");
            b.push(Block::Missing(m));
        }
    }
    let h = r.headline();
    let (nc, nc_src) = r.num_classes();
    b.push(Block::Para(format!(
        "Robust accuracies in the verdicts are at **{}** ({}); chance is 1/{nc} = {} ({nc_src}). The rules are fixed in advance and listed with each claim; \"undetermined\" means an input is missing, \"inconclusive\" that the margin is within twice its standard error.",
        headline_text(h.as_ref()),
        h.as_ref().map(|h| h.source.as_str()).unwrap_or("no headline_eps in run.json or the preset"),
        pct(1.0 / nc as f64)
    )));
    b.push(Block::Para(format!("**Uncertainty.** {METHODS}")));
    let mut rows: Vec<Vec<String>> = f2
        .iter()
        .chain(t1.iter())
        .map(|v| {
            vec![
                v.id.clone(),
                v.claim.clone(),
                v.evidence.clone(),
                v.verdict_text(),
            ]
        })
        .collect();
    for s in &r.sections {
        let v = Verdict::parse(&s.verdict)
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| s.verdict.clone());
        rows.push(vec![
            format!("`{}`", s.id),
            s.claim.clone(),
            s.finding.clone(),
            v,
        ]);
    }
    {
        let all: Vec<Verdict> = f2
            .iter()
            .chain(t1.iter())
            .map(|v| v.verdict)
            .chain(r.sections.iter().filter_map(|s| Verdict::parse(&s.verdict)))
            .collect();
        let n = |v: Verdict| all.iter().filter(|x| **x == v).count();
        b.push(Block::Para(format!(
            "**{} claims checked: {} hold, {} partly, {} do not hold, {} inconclusive, {} undetermined**{}.",
            all.iter().filter(|v| **v != Verdict::NotApplicable).count(),
            n(Verdict::Holds),
            n(Verdict::Partly),
            n(Verdict::DoesNotHold),
            n(Verdict::Inconclusive),
            n(Verdict::Undetermined),
            match n(Verdict::NotApplicable) {
                0 => String::new(),
                k => format!(" (and {k} question(s) without a verdict)"),
            }
        )));
    }
    b.push(Block::Table(DocTable {
        caption: "Every claim checked in this run.".into(),
        headers: vec![
            "Claim".into(),
            "Statement".into(),
            "Our numbers / finding".into(),
            "Verdict".into(),
        ],
        rows,
        verdict_cols: vec![3],
        left_align: false,
    }));
    if !r.problems.is_empty() {
        b.push(Block::Problem("some files could not be used:".into()));
        b.push(Block::List(r.problems.clone()));
    }
    DocSection {
        id: "summary",
        title: title("summary"),
        status: Status::Complete,
        blocks: b,
    }
}

fn figure2_section(ctx: &mut Ctx, f2: &[ClaimVerdict]) -> DocSection {
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

fn section_status(present: usize, expected: usize, anything_missing: bool) -> Status {
    if present == 0 {
        Status::Missing
    } else if present < expected || anything_missing {
        Status::Partial
    } else {
        Status::Complete
    }
}

fn table1_section(ctx: &mut Ctx, t1: &[ClaimVerdict]) -> DocSection {
    let mut b = vec![Block::Para(
        "The paper (Table 1) relabels adversarial examples of a standard model with their target class t: D_rand (t uniform) and D_det (t = y+1 mod C). To a human every label is wrong; a model trained on them still scores well above chance on the real test set, so the non-robust features the attack put in generalise.".into(),
    )];
    let missing_before = ctx.missing.len();
    let table = table1_table(ctx, t1);
    let present = [
        ModelKind::Std,
        ModelKind::DRand,
        ModelKind::DDet,
        ModelKind::Control,
    ]
    .iter()
    .filter(|k| ctx.r.main_model(**k).is_some())
    .count();
    b.push(Block::Table(table));
    let (nc, _) = ctx.r.num_classes();
    let mut cats = Vec::new();
    let mut vals = Vec::new();
    let mut errs = Vec::new();
    for (k, m, _) in models_of(
        ctx.r,
        &[
            ModelKind::Std,
            ModelKind::DRand,
            ModelKind::DDet,
            ModelKind::Control,
        ],
    ) {
        if let Some(m) = m {
            cats.push(match k {
                ModelKind::Std => "D".to_string(),
                ModelKind::Control => "control".to_string(),
                _ => m.trained_on.clone(),
            });
            let a = m.std_accuracy();
            vals.push(a.value);
            errs.push(bar_of(Some(&a)));
        }
    }
    if !cats.is_empty() {
        let caption = "Table 1 as bars: accuracy on the real test set (mean over seeds where there are several); error bars: 95% intervals; dashed line = chance.";
        if let Some(img) = ctx.plot("table1.png", caption, |p| {
            bar_plot_with_errors(
                p,
                "Table 1: test accuracy on D by training set",
                "Test accuracy",
                &cats,
                &[("Test accuracy".into(), vals.clone())],
                &[errs.clone()],
                &PlotOptions {
                    hlines: vec![(
                        1.0 / nc as f64,
                        format!("chance ({})", pct(1.0 / nc as f64)),
                    )],
                    legend: crate::plot::LegendPlace::None,
                    ..PlotOptions::accuracy()
                },
            )
        }) {
            b.push(img);
        }
    }
    b.push(Block::Table(claims_table(
        "Table 1 claims and how they are decided.",
        t1,
    )));
    let status = section_status(present, 4, ctx.missing.len() > missing_before);
    DocSection {
        id: "table1",
        title: title("table1"),
        status,
        blocks: b,
    }
}

/// The sum of every stage's own wall time (cached stages count the time they took when run).
fn stage_seconds(run: &crate::results::RunInfo) -> f64 {
    run.stages.iter().map(|s| s.wall_s).sum()
}

fn robust_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let mut norms: Vec<String> = Vec::new();
    for m in &r.models {
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
                    dashed: false,
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

/// One row per model with [`crate::results::EvalChecks`]: the numbers and the flags raised.
fn checks_table(models: &[ModelResult]) -> Option<DocTable> {
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
fn seed_table(models: &[ModelResult]) -> Option<DocTable> {
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

fn datasets_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let mut partial = false;
    let expected = ["D_R", "D_NR", "D_rand", "D_det"];
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| r.dataset(n).is_none())
        .map(|n| format!("datasets/{n}.json"))
        .collect();
    for m in &missing {
        let s = ctx.miss(m);
        b.push(Block::Missing(s));
        partial = true;
    }
    if r.datasets.is_empty() && r.grid_images.is_empty() {
        return DocSection {
            id: "datasets",
            title: title("datasets"),
            status: Status::Missing,
            blocks: b,
        };
    }
    if !r.datasets.is_empty() {
        let rows = r
            .datasets
            .iter()
            .map(|d| {
                vec![
                    format!("`{}`", d.name),
                    d.method.clone(),
                    format!("`{}`", d.source_model),
                    d.n.to_string(),
                    opt_num(d.epsilon),
                    d.steps.to_string(),
                    opt_num(Some(d.step_size)),
                    opt_pct(d.success_rate),
                    match (d.init_rel_err, d.final_rel_err) {
                        (None, None) => "—".into(),
                        (a, b) => format!("{} → {}", opt_num(a), opt_num(b)),
                    },
                    opt_num(d.mean_dist_to_x),
                    opt_num(d.mean_dist_to_x0),
                    dur(d.wall_s),
                ]
            })
            .collect();
        b.push(Block::Table(DocTable {
            caption: "Constructed training sets. Success rate: share of targeted examples the source model classifies as the target. Rel. error: mean ‖g(x_r) − g(x)‖ / ‖g(x)‖ at the start and the end of representation matching. Distances: mean ℓ2 pixel distance of the result to the target image x and to the start x0.".into(),
            headers: ["Dataset", "Method", "Source model", "n", "ε", "Steps", "Step size", "Success rate", "Rel. error start → end", "Dist. to x", "Dist. to x0", "Wall time"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
            verdict_cols: vec![],
            left_align: false,
        }));
    }
    let mut shown = BTreeSet::new();
    for d in &r.datasets {
        b.push(Block::Heading(format!("{} examples", d.name)));
        match &d.grid {
            Some(g) => {
                shown.insert(g.clone());
                b.push(Block::Image {
                    rel: g.clone(),
                    caption: format!(
                        "Samples of {} ({}, from {}).",
                        d.name, d.method, d.source_model
                    ),
                });
                if !r.dir.join(g).exists() {
                    ctx.miss(g);
                    partial = true;
                }
            }
            None => {
                let guess = format!("grids/{}.png", d.name);
                if r.grid_images.contains(&guess) {
                    shown.insert(guess.clone());
                    b.push(Block::Image {
                        rel: guess,
                        caption: format!("Samples of {}.", d.name),
                    });
                } else {
                    b.push(Block::Missing(format!(
                        "no image grid for {} (datasets/{}.json has no `grid`)",
                        d.name, d.name
                    )));
                }
            }
        }
    }
    let others: Vec<&String> = r
        .grid_images
        .iter()
        .filter(|g| !shown.contains(*g))
        .collect();
    if !others.is_empty() {
        b.push(Block::Heading("Other image grids".into()));
        for g in others {
            b.push(Block::Image {
                rel: g.clone(),
                caption: g.trim_start_matches("grids/").to_string(),
            });
        }
    }
    let status = if partial {
        Status::Partial
    } else {
        Status::Complete
    };
    DocSection {
        id: "datasets",
        title: title("datasets"),
        status,
        blocks: b,
    }
}

fn training_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    if r.models.is_empty() {
        let m = ctx.miss("models/*.json");
        b.push(Block::Missing(m));
        return DocSection {
            id: "training",
            title: title("training"),
            status: Status::Missing,
            blocks: b,
        };
    }
    let mut running = false;
    let rows = r
        .models
        .iter()
        .map(|m| {
            let train = match m.train_acc() {
                Some((a, true)) => {
                    running = true;
                    format!("{}*", pct(a))
                }
                Some((a, false)) => pct(a),
                None => "—".into(),
            };
            vec![
                format!("`{}`", m.name),
                m.trained_on.clone(),
                m.arch.clone(),
                m.train_size.to_string(),
                m.adversarial.clone().unwrap_or_else(|| "—".into()),
                m.epochs.len().to_string(),
                train,
                pct(m.std_acc),
                m.gap()
                    .map(|g| format!("{:+.1}", g * 100.0))
                    .unwrap_or_else(|| "—".into()),
                dur(m.wall_s),
            ]
        })
        .collect();
    b.push(Block::Table(DocTable {
        caption: "Training summary. Gap = training accuracy − test accuracy, in points; a large gap means over-fitting (expected for small constructed sets).".into(),
        headers: ["Model", "Trained on", "Arch", "Train size", "Adversarial training", "Epochs", "Final train acc", "Test acc", "Gap (points)", "Wall time"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows,
        verdict_cols: vec![],
        left_align: false,
    }));
    if running {
        b.push(Block::Para("\\* no `final_train_acc` recorded: last epoch's running accuracy on the training batches (for adversarial training: on adversarial batches).".into()));
    }
    // One panel per Figure 2 / Table 1 model (the extras' own models are in the table above and
    // in their sections); all models when none is one of those.
    let paper: Vec<&ModelResult> = r
        .models
        .iter()
        .filter(|m| m.role.paper().is_some())
        .collect();
    let shown: Vec<&ModelResult> = if paper.is_empty() {
        r.models.iter().collect()
    } else {
        paper
    };
    let panels: Vec<Panel> = shown
        .iter()
        .map(|m| Panel {
            title: m.name.clone(),
            series: vec![
                LineSeriesSpec {
                    name: "train acc (running)".into(),
                    points: m
                        .epochs
                        .iter()
                        .map(|e| (e.epoch as f64, e.train_acc))
                        .collect(),
                    dashed: true,
                    color: Some(0),
                    intervals: Vec::new(),
                },
                LineSeriesSpec {
                    name: "test acc".into(),
                    points: m
                        .epochs
                        .iter()
                        .filter_map(|e| e.test_acc.map(|t| (e.epoch as f64, t)))
                        .collect(),
                    dashed: false,
                    color: Some(3),
                    intervals: Vec::new(),
                },
            ],
        })
        .collect();
    if r.models.iter().any(|m| !m.epochs.is_empty()) {
        if let Some(img) = ctx.plot("training_curves.png", "Training curves: accuracy per epoch (dashed: running train accuracy; solid: test accuracy).", |p| {
            panel_line_plot(p, "Training curves", "epoch", "accuracy", &panels, &PlotOptions { y_range: Some((0.0, 1.0)), percent_y: true, ..Default::default() })
        }) {
            b.push(img);
        }
    } else {
        b.push(Block::Missing("no model has per-epoch metrics".into()));
    }
    DocSection {
        id: "training",
        title: title("training"),
        status: Status::Complete,
        blocks: b,
    }
}

fn sections_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    if r.sections.is_empty() {
        b.push(Block::Missing(
            "no further experiments yet (sections/*.json)".into(),
        ));
        return DocSection {
            id: "sections",
            title: title("sections"),
            status: Status::Missing,
            blocks: b,
        };
    }
    for s in &r.sections {
        let v = Verdict::parse(&s.verdict)
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| s.verdict.clone());
        b.push(Block::Heading(if s.title.is_empty() {
            s.id.clone()
        } else {
            s.title.clone()
        }));
        b.push(Block::Table(DocTable {
            caption: String::new(),
            headers: vec![
                "Claim / question".into(),
                "Finding".into(),
                "Verdict".into(),
            ],
            rows: vec![vec![s.claim.clone(), s.finding.clone(), v]],
            verdict_cols: vec![2],
            left_align: false,
        }));
        for t in &s.tables {
            b.push(Block::Table(DocTable {
                caption: t.caption.clone(),
                headers: t.headers.clone(),
                rows: t.rows.clone(),
                verdict_cols: t
                    .headers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.eq_ignore_ascii_case("verdict"))
                    .map(|(i, _)| i)
                    .collect(),
                left_align: false,
            }));
        }
        for img in &s.images {
            b.push(Block::Image {
                rel: img.clone(),
                caption: format!("{}: {}", s.id, img),
            });
            if !r.dir.join(img).exists() {
                ctx.miss(img);
            }
        }
    }
    DocSection {
        id: "sections",
        title: title("sections"),
        status: Status::Complete,
        blocks: b,
    }
}

fn paper_section(ctx: &mut Ctx) -> DocSection {
    let mut b = vec![Block::Para(
        "Every reference number, from `crates/report/paper_numbers.toml`. Status: **confirmed** = the paper's number as quoted by the authors' dataset release [CD]; **proxy** = the authors' library's model of the same kind [RL], not the figure's own bar; **third-party replication** = Benz et al. [PB]; **unconfirmed** = recollection of the paper (MEM), not checked.".into(),
    )];
    match paper_numbers() {
        Ok(nums) => {
            let table = |sel: Vec<&crate::paper::PaperNumber>| DocTable {
                caption: String::new(),
                headers: [
                    "Table",
                    "Dataset",
                    "Training set",
                    "Metric",
                    "Value",
                    "Source",
                    "Status",
                    "Note",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                rows: sel
                    .iter()
                    .map(|n| {
                        vec![
                            n.table.clone(),
                            n.dataset.clone(),
                            n.training_set.clone(),
                            n.metric_text(),
                            n.value_text(),
                            n.source.clone(),
                            n.status.label().to_string(),
                            n.note.clone(),
                        ]
                    })
                    .collect(),
                verdict_cols: vec![],
                left_align: false,
            };
            let (rep, main): (Vec<_>, Vec<_>) = nums
                .iter()
                .partition(|n| n.status == crate::paper::SourceStatus::Replication);
            b.push(Block::Table(table(main)));
            if !rep.is_empty() {
                b.push(Block::Details {
                    summary: format!("Benz et al. replication [PB]: {} numbers", rep.len()),
                    body: vec![Block::Table(table(rep))],
                });
            }
        }
        Err(e) => {
            ctx.problems.push(format!("{e:#}"));
            b.push(Block::Missing(format!("{e:#}")));
        }
    }
    DocSection {
        id: "paper",
        title: title("paper"),
        status: Status::Complete,
        blocks: b,
    }
}

fn run_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let Some(run) = &r.run else {
        let m = ctx.miss("run.json");
        b.push(Block::Missing(m));
        return DocSection {
            id: "run",
            title: title("run"),
            status: Status::Missing,
            blocks: b,
        };
    };
    let h = run.resolved_headline();
    let (nc, nc_src) = run.resolved_num_classes();
    let kv = |k: &str, v: String| vec![k.to_string(), v];
    b.push(Block::Table(DocTable {
        caption: String::new(),
        headers: vec!["Item".into(), "Value".into()],
        rows: vec![
            kv("Preset", format!("`{}`", run.preset)),
            kv("Seed", run.seed.to_string()),
            kv("Started", run.started.clone()),
            kv(
                "Finished",
                run.finished
                    .clone()
                    .unwrap_or_else(|| "not finished".into()),
            ),
            kv("Wall time of this invocation", dur(run.total_wall_s)),
            kv("Compute time of all stages", dur(stage_seconds(run))),
            kv(
                "Headline threat model",
                h.map(|h| format!("{} ε={} ({})", h.norm, fmt_num(h.eps), h.source))
                    .unwrap_or_else(|| "unknown".into()),
            ),
            kv("Classes", format!("{nc} ({nc_src})")),
            kv("nrf version", run.nrf_version.clone()),
            kv("libtorch version", run.torch_version.clone()),
            kv(
                "Machine",
                format!(
                    "{} — {}, {} ({} CPUs)",
                    run.machine.hostname, run.machine.os, run.machine.cpu, run.machine.cpus
                ),
            ),
            kv(
                "Device",
                format!(
                    "{} (torch threads: {})",
                    run.machine.device, run.machine.torch_threads
                ),
            ),
        ],
        verdict_cols: vec![],
        left_align: true,
    }));
    if !run.crate_versions.is_empty() {
        b.push(Block::Table(DocTable {
            caption: "Crate versions.".into(),
            headers: vec!["Crate".into(), "Version".into()],
            rows: run
                .crate_versions
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect(),
            verdict_cols: vec![],
            left_align: false,
        }));
    }
    if run.stages.is_empty() {
        b.push(Block::Missing("run.json lists no stages".into()));
    } else {
        b.push(Block::Table(DocTable {
            caption: "Stages in execution order (cached: loaded from an earlier run with the same key; wall time is the original computation's).".into(),
            headers: ["Stage", "Status", "Wall time", "Cache key", "Message"].iter().map(|s| s.to_string()).collect(),
            rows: run
                .stages
                .iter()
                .map(|s| {
                    let key: String = s.key.chars().take(12).collect();
                    vec![
                        format!("`{}`", s.name),
                        match s.status {
                            crate::results::StageStatus::Done => "done".into(),
                            crate::results::StageStatus::Cached => "cached".into(),
                            crate::results::StageStatus::Failed => "**failed**".into(),
                        },
                        dur(s.wall_s),
                        if key.is_empty() { "—".into() } else { format!("`{key}`") },
                        s.message.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
            verdict_cols: vec![],
            left_align: false,
        }));
    }
    if !run.missing.is_empty() {
        b.push(Block::Missing(
            "stages not completed (run.json `missing`):".into(),
        ));
        b.push(Block::List(
            run.missing.iter().map(|m| format!("`{m}`")).collect(),
        ));
    }
    b.push(Block::Details {
        summary: "Preset (configuration as used)".into(),
        body: vec![Block::Pre(run.config_toml.clone())],
    });
    let status = if run.missing.is_empty() && run.finished.is_some() {
        Status::Complete
    } else {
        Status::Partial
    };
    DocSection {
        id: "run",
        title: title("run"),
        status,
        blocks: b,
    }
}

fn build(r: &Results, make_plots: bool) -> (Vec<DocSection>, Ctx<'_>, Vec<ClaimVerdict>) {
    let f2 = r.figure2_verdicts();
    let t1 = r.table1_verdicts();
    let mut ctx = Ctx {
        r,
        missing: Vec::new(),
        problems: Vec::new(),
        plots: Vec::new(),
        make_plots,
    };
    // Built in dependency order, shown in SECTION_TITLES order; the summary comes last so it can
    // list everything the other sections found missing.
    let fig2 = figure2_section(&mut ctx, &f2);
    let tab1 = table1_section(&mut ctx, &t1);
    let robust = robust_section(&mut ctx);
    let datasets = datasets_section(&mut ctx);
    let training = training_section(&mut ctx);
    let theory = theory::theory_section(&mut ctx);
    let sections = sections_section(&mut ctx);
    let paper = paper_section(&mut ctx);
    let run = run_section(&mut ctx);
    let mut summary = summary_section(&mut ctx, &f2, &t1);
    if !ctx.missing.is_empty() {
        summary.blocks.push(Block::Missing(format!(
            "{} artefact(s) not computed yet:",
            ctx.missing.len()
        )));
        summary.blocks.push(Block::List(
            ctx.missing.iter().map(|m| format!("`{m}`")).collect(),
        ));
    }
    if !ctx.problems.is_empty() {
        summary
            .blocks
            .push(Block::Problem("problems while writing the report:".into()));
        summary.blocks.push(Block::List(ctx.problems.clone()));
    }
    let verdicts = f2.into_iter().chain(t1).collect();
    (
        vec![
            summary, fig2, tab1, robust, datasets, training, theory, sections, paper, run,
        ],
        ctx,
        verdicts,
    )
}

/// Writes `results_dir/report.html` (one self-contained page: images embedded as base64 data
/// URIs) and `results_dir/report.md` (GitHub markdown, images by relative path), after
/// rendering the report's plots into `results_dir/plots/`. A partial run gives a partial report
/// in which each missing artefact is named. Fails only if the directory is unreadable or the
/// report files cannot be written.
pub fn write_report(results_dir: impl AsRef<Path>) -> Result<ReportSummary> {
    let dir = results_dir.as_ref();
    let r = Results::load(dir)?;
    let (sections, ctx, verdicts) = build(&r, true);
    let preset = r.run.as_ref().map(|x| x.preset.clone()).unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let title = format!("nrf report: {preset}");
    let meta = format!(
        "Reproduction of Ilyas et al. 2019, \"Adversarial Examples Are Not Bugs, They Are Features\". Generated by nrf-report {} from `{}`.",
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    let html = render_html(dir, &title, &meta, &sections);
    let md = render_markdown(dir, &title, &meta, &sections);
    let html_path = dir.join("report.html");
    let md_path = dir.join("report.md");
    atomic_write(&html_path, html.as_bytes())?;
    atomic_write(&md_path, md.as_bytes())?;
    let mut problems = r.problems.clone();
    problems.extend(ctx.problems.iter().cloned());
    Ok(ReportSummary {
        html: html_path,
        markdown: md_path,
        plots: ctx.plots.clone(),
        sections_present: sections
            .iter()
            .filter(|s| s.status != Status::Missing)
            .map(|s| s.title.clone())
            .collect(),
        sections_partial: sections
            .iter()
            .filter(|s| s.status == Status::Partial)
            .map(|s| s.title.clone())
            .collect(),
        sections_missing: sections
            .iter()
            .filter(|s| s.status == Status::Missing)
            .map(|s| s.title.clone())
            .collect(),
        missing: ctx.missing.clone(),
        problems,
        verdicts,
    })
}

/// The Figure 2 and Table 1 tables with verdicts, as markdown (no images, nothing written),
/// e.g. for the `nrf` binary to print at the end of a run.
pub fn summary_markdown(results_dir: impl AsRef<Path>) -> Result<String> {
    let r = Results::load(results_dir.as_ref())?;
    let f2 = r.figure2_verdicts();
    let t1 = r.table1_verdicts();
    let mut ctx = Ctx {
        r: &r,
        missing: Vec::new(),
        problems: Vec::new(),
        plots: Vec::new(),
        make_plots: false,
    };
    let mut out = String::new();
    let preset = r.run.as_ref().map(|x| x.preset.as_str()).unwrap_or("?");
    out.push_str(&format!("## nrf results: {preset}\n\n"));
    if let Some(run) = &r.run {
        if !run.missing.is_empty() {
            out.push_str(&format!(
                "> **Incomplete run:** {} stage(s) missing: {}\n\n",
                run.missing.len(),
                run.missing.join(", ")
            ));
        }
    }
    out.push_str("### Figure 2\n\n");
    out.push_str(&table_markdown(&figure2_table(&mut ctx, &f2)));
    out.push_str("### Table 1\n\n");
    out.push_str(&table_markdown(&table1_table(&mut ctx, &t1)));
    out.push_str("### Verdicts\n\n");
    out.push_str(&format!("{METHODS}\n\n"));
    let all: Vec<ClaimVerdict> = f2.into_iter().chain(t1).collect();
    out.push_str(&table_markdown(&DocTable {
        caption: String::new(),
        headers: vec!["Claim".into(), "Our numbers".into(), "Verdict".into()],
        rows: all
            .iter()
            .map(|v| vec![v.id.clone(), v.evidence.clone(), v.verdict_text()])
            .collect(),
        verdict_cols: vec![2],
        left_align: false,
    }));
    if !r.sections.is_empty() {
        out.push_str("### Further experiments\n\n");
        for s in &r.sections {
            let v = Verdict::parse(&s.verdict)
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| s.verdict.clone());
            let title = if s.title.is_empty() { &s.id } else { &s.title };
            out.push_str(&format!("#### {title}\n\n**{v}.** {}\n\n", s.finding));
            for t in &s.tables {
                out.push_str(&table_markdown(&DocTable {
                    caption: t.caption.clone(),
                    headers: t.headers.clone(),
                    rows: t.rows.clone(),
                    verdict_cols: Vec::new(),
                    left_align: false,
                }));
            }
        }
    }
    if !r.problems.is_empty() {
        out.push_str("**Unreadable files:**\n\n");
        for p in &r.problems {
            out.push_str(&format!("- {p}\n"));
        }
    }
    Ok(out)
}
