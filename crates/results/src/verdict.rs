//! The outcome types of the paper's claims: [`Verdict`], one decided claim ([`ClaimVerdict`]),
//! and the paper's training sets ([`ModelKind`]). The rules that decide them live in the report
//! (`nrf_report::verdict`); producers and the report share these types.
use crate::uncertainty::Margin;
use serde::{Deserialize, Serialize};

/// Outcome of a claim check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The claim holds by the rule: its margin exceeds c standard errors (`Margin::critical`).
    #[serde(rename = "holds")]
    Holds,
    /// A claim of two parts of which one holds.
    #[serde(rename = "partly")]
    Partly,
    /// The claim does not hold: its margin is more than c standard errors on the wrong
    /// side.
    #[serde(rename = "does not hold")]
    DoesNotHold,
    /// The margin is within c standard errors of zero: the numbers cannot decide.
    #[serde(rename = "inconclusive")]
    Inconclusive,
    /// Not decidable: an input is missing.
    #[serde(rename = "undetermined")]
    Undetermined,
    /// Not a claim (a question).
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Verdict {
    /// "holds", "partly", "does not hold", "inconclusive", "undetermined" or "n/a".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Partly => "partly",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Undetermined => "undetermined",
            Verdict::NotApplicable => "n/a",
        }
    }

    /// Parses the strings of [`Verdict::as_str`] (case-insensitive; "does_not_hold" accepted).
    pub fn parse(s: &str) -> Option<Verdict> {
        match s.trim().to_ascii_lowercase().replace('_', " ").as_str() {
            "holds" => Some(Verdict::Holds),
            "partly" => Some(Verdict::Partly),
            "does not hold" => Some(Verdict::DoesNotHold),
            "inconclusive" => Some(Verdict::Inconclusive),
            "undetermined" => Some(Verdict::Undetermined),
            "n/a" | "na" => Some(Verdict::NotApplicable),
            _ => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One claim, its rule, the numbers used and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimVerdict {
    /// Short id, e.g. `"F2a"`, `"T1b"`, `"T1b[on_D_det_eps2]"`.
    pub id: String,
    /// The claim in words.
    pub claim: String,
    /// The decision rule in words.
    pub rule: String,
    /// The numbers used (with their 95% intervals and the margins ± SE), or what is missing.
    pub evidence: String,
    /// The outcome.
    pub verdict: Verdict,
    /// The deciding margin ± SE (the one closest to deciding the other way when a claim has
    /// several); None when undetermined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<Margin>,
}

impl ClaimVerdict {
    /// "holds (m = +11.4 ± 3.1 points)": the verdict with its deciding margin, for tables.
    pub fn verdict_text(&self) -> String {
        match &self.margin {
            Some(m) => format!("{} (m = {})", self.verdict.as_str(), m.text()),
            None => self.verdict.as_str().to_string(),
        }
    }
}

/// The paper's training sets (and trainings) of Figure 2 / Table 1: which one a model stands for
/// ([`crate::ModelRole`]). In JSON: `std`, `rob`, `d_r`, `d_nr`, `d_rand`, `d_det`,
/// `control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ModelKind {
    /// `C_std`: standard training on D.
    #[serde(rename = "std")]
    Std,
    /// `C_rob`: adversarial training on D.
    #[serde(rename = "rob")]
    Rob,
    /// `on_D_R`: trained on the robust dataset.
    #[serde(rename = "d_r")]
    DR,
    /// `on_D_NR`: trained on the non-robust dataset.
    #[serde(rename = "d_nr")]
    DNR,
    /// `on_D_rand`: trained on D_rand.
    #[serde(rename = "d_rand")]
    DRand,
    /// `on_D_det`: trained on D_det.
    #[serde(rename = "d_det")]
    DDet,
    /// `on_control`: trained on a same-size clean subset of D.
    #[serde(rename = "control")]
    Control,
}

impl ModelKind {
    /// All kinds in report order.
    pub const ALL: [ModelKind; 7] = [
        ModelKind::Std,
        ModelKind::Rob,
        ModelKind::DR,
        ModelKind::DNR,
        ModelKind::DRand,
        ModelKind::DDet,
        ModelKind::Control,
    ];

    /// The name the pipeline gives this set's main model, e.g. "on_D_R" (the file named when it
    /// is missing); models are found by their role, not by this name.
    pub fn base_name(self) -> &'static str {
        match self {
            ModelKind::Std => "C_std",
            ModelKind::Rob => "C_rob",
            ModelKind::DR => "on_D_R",
            ModelKind::DNR => "on_D_NR",
            ModelKind::DRand => "on_D_rand",
            ModelKind::DDet => "on_D_det",
            ModelKind::Control => "on_control",
        }
    }

    /// Row label as in the paper, e.g. "D (standard training)".
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Std => "D, standard training",
            ModelKind::Rob => "D, adversarial training",
            ModelKind::DR => "D_R",
            ModelKind::DNR => "D_NR",
            ModelKind::DRand => "D_rand",
            ModelKind::DDet => "D_det",
            ModelKind::Control => "control (clean subset of D)",
        }
    }

    /// Row key of `paper_numbers.toml` ("D_std", "D_adv", "D_R", ...); None for the control.
    pub fn paper_key(self) -> Option<&'static str> {
        match self {
            ModelKind::Std => Some("D_std"),
            ModelKind::Rob => Some("D_adv"),
            ModelKind::DR => Some("D_R"),
            ModelKind::DNR => Some("D_NR"),
            ModelKind::DRand => Some("D_rand"),
            ModelKind::DDet => Some("D_det"),
            ModelKind::Control => None,
        }
    }
}
