//! The report: `report.html` (self-contained) and `report.md`, plus the plots under `plots/`.
//!
//! This file assembles the document ([`write_report`], [`summary_markdown`]); each section is
//! built in its own module under `report/`, with the helpers they share in `common`.
use crate::doc::{
    render_html, render_markdown, table_markdown, Block, DocSection, DocTable, Status,
};
use crate::io::atomic_write;
use crate::load::Results;
use crate::verdict::ClaimVerdict;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

mod common;
mod datasets;
mod extras;
mod figure2;
mod paper;
mod robust;
mod run_info;
mod summary;
mod table1;
mod theory;
mod training;

use common::METHODS;
use datasets::datasets_section;
use extras::sections_section;
use figure2::{figure2_section, figure2_table};
use paper::paper_section;
use robust::robust_section;
use run_info::run_section;
use summary::summary_section;
use table1::{table1_section, table1_table};
use training::training_section;

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
            let v = s.verdict.as_str().to_string();
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
