//! nrf-report turns a results directory (`results/<preset>/`, written by the experiments) into a
//! report a researcher reads instead of the logs: `report.html` (one self-contained page) and
//! `report.md`, with the paper's Figure 2 and Table 1 side by side with our numbers and an
//! explicit verdict per claim.
//!
//! - [`results`]: the schema of the results files (written by nrf-experiments).
//! - [`paper`]: the paper's numbers with their source tags (`paper_numbers.toml`).
//! - [`verdict`]: the documented, fixed decision rules for each claim.
//! - [`uncertainty`]: Wilson intervals, seed spread, margins and their standard errors: the one
//!   rule every verdict uses (holds only when the margin exceeds c standard errors: 2, or Student's t
//!   when few seeds' spread is part of them).
//! - [`plot`]: PNG plots (line, scatter, grouped bars, multi-chart figures) with an embedded
//!   font: the one plotting stack of the workspace.
//! - [`theory_figures`]: the theory's figures, drawn from nrf-theory's figure data.
//! - [`grid`]: labelled image grids.
//! - [`write_report`] / [`summary_markdown`]: the report.
//! - [`replicates`]: independent runs of one preset (master seeds differ) read together: Figure 2
//!   and Table 1 decided with the run-to-run spread, which includes the source models.
//!
//! ```rust
//! use nrf_report::{demo::write_demo_results, summary_markdown, write_report, Verdict};
//!
//! let dir = tempfile::tempdir()?;
//! write_demo_results(dir.path())?; // a fake results/<preset>/ with invented numbers
//! let summary = write_report(dir.path())?;
//! assert!(summary.html.exists() && summary.markdown.exists());
//! assert!(summary.verdicts.iter().all(|v| v.verdict != Verdict::Undetermined));
//! println!("{}", summary_markdown(dir.path())?);
//! # Ok::<(), anyhow::Error>(())
//! ```
#![warn(missing_docs)]

pub mod demo;
mod doc;
pub mod grid;
pub mod io;
mod load;
pub mod paper;
pub mod plot;
pub mod replicates;
mod report;
pub mod results;
pub mod text;
pub mod theory_figures;
pub use nrf_results::uncertainty;
pub mod verdict;

pub use grid::{image_grid, GridCell, GridRow};
pub use io::{atomic_write, read_json, write_json_atomic};
pub use load::Results;
pub use paper::{paper_numbers, PaperNumber, SourceStatus};
pub use plot::{bar_plot, line_plot, scatter_plot, PlotOptions};
pub use report::{summary_markdown, write_report, ReportSummary, SECTION_TITLES};
pub use theory_figures::{draw_theory_figures, write_theory};
pub use uncertainty::{above_chance, wilson, Accuracy, Interval, Margin};
pub use verdict::{ClaimVerdict, ModelKind, Verdict};
