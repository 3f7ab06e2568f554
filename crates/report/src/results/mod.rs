//! The results schema: what the experiments write under `results/<preset>/` and the report reads.
//!
//! Layout of a results directory:
//! - `run.json` — [`RunInfo`]: configuration, machine, versions, seed, wall time per stage.
//! - `models/<name>.json` — [`ModelResult`]: one per trained model (training curve, accuracies;
//!   for the fresh models of Figure 2 / Table 1 with `[fresh] seeds` ≥ 2, every seed's numbers).
//! - `datasets/<name>.json` — [`ConstructedInfo`]: one per constructed dataset (D_R, D_NR, ...).
//! - `grids/<name>.png` — image grids of constructed datasets.
//! - `theory/theory.json` — [`TheorySummary`] (nrf-theory's typed output, re-exported here), and
//!   `theory/*.png`, the theory's figures ([`crate::theory_figures`]); both written by the theory
//!   stage of nrf-experiments.
//! - `sections/<name>.json` — [`Section`]: any further experiment (Figure 3, reviewers' questions),
//!   rendered generically: a statement, tables and plots.
//!
//! Every file is optional: a partial run gives a partial report that says what is missing.

mod checks;
mod constructed;
mod model;
mod role;
mod run;
mod seeds;

pub use checks::EvalChecks;
pub use constructed::ConstructedInfo;
pub use model::{EpochMetrics, ModelResult, RobustPoint};
pub use nrf_theory::summary::{self as theory, TheorySummary};
pub use role::{ModelRole, Varies};
pub use run::{Headline, MachineInfo, RunInfo, StageInfo, StageStatus};
pub use seeds::{RobustSeedStat, SeedRun, SeedStat, SeedSummary};

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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Section {
    /// Stable id, also the file name, e.g. "figure3", "eps_sensitivity".
    pub id: String,
    /// Heading of the section in the report.
    pub title: String,
    /// What the paper (or the reviewer) claims or asks.
    pub claim: String,
    /// One or two sentences stating what our result shows, including "no effect" or a contradiction.
    pub finding: String,
    /// "holds", "partly", "does not hold", or "n/a" (for questions, not claims).
    pub verdict: String,
    /// Tables of results.
    pub tables: Vec<Table>,
    /// Relative paths of plots / image grids under the results dir.
    pub images: Vec<String>,
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
