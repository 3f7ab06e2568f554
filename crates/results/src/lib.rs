//! The results schema of nrf: what the experiments write under `results/<preset>/` and the
//! report reads, in one crate without libtorch that producers (`nrf-models`, `nrf-attacks`,
//! `nrf-experiments`) and the report (`nrf-report`) share. Models return their training curve
//! as [`EpochMetrics`] and attacks their robust accuracy as [`RobustPoint`]: the types written to
//! `models/<name>.json`, not copies of them. A model carries a typed [`ModelRole`], a section its
//! [`Verdict`]; accuracies come with their uncertainty ([`uncertainty`]).
//!
//! Layout of a results directory:
//! - `run.json` — [`RunInfo`]: configuration, machine, versions, seed, wall time per stage.
//! - `models/<name>.json` — [`ModelResult`]: one per trained model (training curve, accuracies;
//!   for the fresh models of Figure 2 / Table 1 with `[fresh] seeds` ≥ 2, every seed's numbers).
//! - `datasets/<name>.json` — [`ConstructedInfo`]: one per constructed dataset (D_R, D_NR, ...).
//! - `grids/<name>.png` — image grids of constructed datasets.
//! - `theory/theory.json` — nrf-theory's typed `TheorySummary` (the report re-exports it beside
//!   this schema), and `theory/*.png`, the theory's figures; both written by the theory stage of
//!   nrf-experiments.
//! - `sections/<name>.json` — [`Section`]: any further experiment (Figure 3, reviewers' questions),
//!   rendered generically: a statement, tables and plots.
//!
//! Every file is optional: a partial run gives a partial report that says what is missing.
//!
//! ```
//! use nrf_results::{Accuracy, Margin, ModelKind, ModelRole, RobustPoint, Section, Verdict};
//!
//! // A robust point as an attack returns it and `models/<name>.json` stores it.
//! let p: RobustPoint = serde_json::from_str(
//!     r#"{"norm": "L2", "eps": 0.5, "acc": 0.471, "steps": 20, "n": 1000}"#,
//! )?;
//! assert_eq!(p.attack, None);
//!
//! // A margin with its standard error decides a claim: m = 47.1% - 32.3% on 1,000 images each.
//! let m = Margin::between(&Accuracy::single(0.471, 1000), &Accuracy::single(0.323, 1000));
//! assert_eq!(m.verdict(), Verdict::Holds);
//!
//! // Roles are typed; a section's verdict is a Verdict, written as the text it always was.
//! let role: ModelRole = serde_json::from_str(r#"{"main": "d_r"}"#)?;
//! assert_eq!(role, ModelRole::Main(ModelKind::DR));
//! let s: Section = serde_json::from_str(
//!     r#"{"id": "q", "title": "", "claim": "", "finding": "", "verdict": "does not hold",
//!         "tables": [], "images": []}"#,
//! )?;
//! assert_eq!(s.verdict, Verdict::DoesNotHold);
//! assert!(serde_json::to_string(&s)?.contains(r#""verdict":"does not hold""#));
//! let bad = r#"{"id": "q", "title": "", "claim": "", "finding": "", "verdict": "maybe",
//!               "tables": [], "images": []}"#;
//! assert!(serde_json::from_str::<Section>(bad).unwrap_err().to_string().contains("\"maybe\""));
//! # Ok::<(), serde_json::Error>(())
//! ```

#![warn(missing_docs)]

mod checks;
mod constructed;
mod model;
mod role;
mod run;
mod seeds;
pub mod uncertainty;
pub mod verdict;

pub use checks::EvalChecks;
pub use constructed::ConstructedInfo;
pub use model::{EpochMetrics, ModelResult, RobustPoint};
pub use role::{ModelRole, Varies};
pub use run::{
    run_time, unix_seconds, utc_string, Headline, MachineInfo, RunInfo, StageInfo, StageStatus,
};
pub use seeds::{RobustSeedStat, SeedRun, SeedStat, SeedSummary};
pub use uncertainty::{above_chance, wilson, Accuracy, Interval, Margin};
pub use verdict::{ClaimVerdict, ModelKind, Verdict};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A table: headers and rows of cells (already formatted strings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// Caption shown above the table.
    pub caption: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows; each should have as many cells as there are headers.
    pub rows: Vec<Vec<String>>,
}

/// `sections/<name>.json`: a further experiment, rendered generically.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Section {
    /// Stable id, also the file name, e.g. "figure3", "eps_sensitivity".
    pub id: String,
    /// Heading of the section in the report.
    pub title: String,
    /// What the paper (or the reviewer) claims or asks.
    pub claim: String,
    /// One or two sentences stating what our result shows, including "no effect" or a contradiction.
    pub finding: String,
    /// The section's verdict: "holds", "partly", "does not hold", "inconclusive", or "n/a" (for
    /// questions, not claims) in JSON; read case-insensitively ([`Verdict::parse`]), and a file
    /// with any other value is an error that names it.
    #[serde(deserialize_with = "verdict_from_text")]
    pub verdict: Verdict,
    /// Tables of results.
    pub tables: Vec<Table>,
    /// Relative paths of plots / image grids under the results dir.
    pub images: Vec<String>,
}

fn verdict_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
    let text = String::deserialize(d)?;
    Verdict::parse(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "verdict \"{text}\" is none of \"holds\", \"partly\", \"does not hold\", \
             \"inconclusive\", \"undetermined\", \"n/a\""
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers (added by nrf-report; they do not change the file format).
// ---------------------------------------------------------------------------------------------

/// Whether two ε values are the same threat-model budget (relative tolerance 1e-6).
pub fn eps_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Whether two norm names denote the same norm ("L2" = "l2", "Linf" = "linf" = "L∞").
pub fn norm_eq(a: &str, b: &str) -> bool {
    fn canon(s: &str) -> String {
        s.trim().to_ascii_lowercase().replace('∞', "inf")
    }
    canon(a) == canon(b)
}

fn check_unit(what: &str, v: f64) -> Result<()> {
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        bail!("{what} = {v} is not a fraction in [0, 1]");
    }
    Ok(())
}

fn check_nonneg(what: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        bail!("{what} = {v} is not a finite non-negative number");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_and_eps_compare_loosely() {
        assert!(norm_eq("L2", "l2") && norm_eq("Linf", "L∞") && !norm_eq("L2", "Linf"));
        assert!(eps_eq(0.1 + 0.2, 0.3) && !eps_eq(0.25, 0.5));
    }
}
