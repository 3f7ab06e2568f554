//! Verdict logic: explicit, documented rules that turn our numbers into "holds" / "partly" /
//! "does not hold" / "inconclusive" for each claim of the paper's Figure 2 and Table 1.
//!
//! Every rule is a margin with its standard error, decided by the one rule of
//! [`crate::uncertainty`]: a claim **holds** only when its margin m exceeds twice its standard
//! error (m > 2·SE), **does not hold** when m < −2·SE, and is **inconclusive** in between; the
//! SE combines the binomial (Wilson) errors of the accuracies involved and, for models trained
//! with several seeds, their seed-to-seed spread. "Partly" is kept for claims with two parts of
//! which one holds. The levels below define the claims (what "good", "near zero" mean) and were
//! fixed before any result was seen; they are never tuned to make a claim pass. All accuracies
//! are fractions in [0, 1]; "points" are percentage points.
//!
//! | claim | margin(s) m; decided by m vs 2·SE |
//! |---|---|
//! | F2a: training on D_R gives robustness | m = rob(on_D_R) − rob(r) for r = on_D_NR and C_std at the headline ε; holds if both hold, does not hold if either does not |
//! | F2b: D_NR gives good standard accuracy and no robustness | good: m = std(on_D_NR) − (std(ref) − 15 points); near zero: m = 10% − rob(on_D_NR); holds if both, partly if one; gate: a model not above chance supports neither part (does not hold if "good" clearly fails, else the above-chance rule's verdict) |
//! | F2c: D_R gives decent standard accuracy | m = std(on_D_R) − (std(ref) − 15 points); the same above-chance gate |
//! | F2d (not in the paper): D_R beats a clean set of its size | m = rob(on_D_R) − rob(on_control) at the headline ε |
//! | T1a / T1b: D_rand / D_det models are above chance on the real test set | the one above-chance rule: the accuracy's 95% interval lies above 1/C (holds), below it (does not hold), or contains it (inconclusive) |
//! | T1c: D_rand / D_det models are not robust (\[CD\]: 0%) | near zero: m = 10% − rob for each; holds if both, partly if one |
//!
//! ref = the control model (`on_control`: same recipe on a same-size clean subset of D) when
//! present, else `C_std`. chance = 1 / num_classes. Variants (e.g. `on_D_det_eps2`) get the
//! T1a / T1b rule as extra claims. Models are found by their role
//! ([`crate::results::ModelRole`]), never by their names: `on_D_R` above is the main model of
//! D_R whatever it is called, and an extra's model is never one of these.
use crate::results::{Headline, ModelResult, ModelRole};
use crate::uncertainty::{above_chance, combine_parts, Accuracy, Margin};
use serde::{Deserialize, Serialize};

mod figure2;
mod table1;
#[cfg(test)]
mod tests;

pub use figure2::figure2_verdicts;
pub use table1::table1_verdicts;

/// Largest drop (fraction) below the reference model's standard accuracy that still counts as
/// "good" / "decent" standard accuracy (part of the claims' definition, not a noise threshold).
pub const GOOD_STD_MAX_DROP: f64 = 0.15;
/// Robust accuracy below this (fraction) counts as "near zero" (part of the claim's definition).
pub const NEAR_ZERO_ROBUST: f64 = 0.10;

/// How every margin is decided, in the rule texts.
const DECIDE: &str = "holds if m > 2 SE, does not hold if m < −2 SE, inconclusive otherwise (SE: binomial errors of the accuracies and the seed spread, combined in quadrature)";

/// Outcome of a claim check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The claim holds by the rule: its margin exceeds twice its standard error.
    #[serde(rename = "holds")]
    Holds,
    /// A claim of two parts of which one holds.
    #[serde(rename = "partly")]
    Partly,
    /// The claim does not hold: its margin is more than twice its standard error on the wrong
    /// side.
    #[serde(rename = "does not hold")]
    DoesNotHold,
    /// The margin is within twice its standard error of zero: the numbers cannot decide.
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
/// ([`crate::results::ModelRole`]). In JSON: `std`, `rob`, `d_r`, `d_nr`, `d_rand`, `d_det`,
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

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A conjunction of margins that must all hold (one claim against several references):
/// does not hold when any does not hold, holds when all hold, inconclusive otherwise.
fn all_of(margins: &[Margin]) -> Verdict {
    let vs: Vec<Verdict> = margins.iter().map(Margin::verdict).collect();
    if vs.is_empty() || vs.contains(&Verdict::Undetermined) {
        Verdict::Undetermined
    } else if vs.contains(&Verdict::DoesNotHold) {
        Verdict::DoesNotHold
    } else if vs.iter().all(|v| *v == Verdict::Holds) {
        Verdict::Holds
    } else {
        Verdict::Inconclusive
    }
}

/// The margin closest to the other side of its decision (smallest m / SE).
fn binding(margins: &[Margin]) -> Option<Margin> {
    margins
        .iter()
        .copied()
        .min_by(|a, b| a.z().total_cmp(&b.z()))
}

/// F2a / F2d on numbers: the claim that `subject` is more robust than every one of `refs`.
/// Returns the verdict and the margins m_i = subject − refs\[i\].
pub fn more_robust(subject: &Accuracy, refs: &[&Accuracy]) -> (Verdict, Vec<Margin>) {
    let margins: Vec<Margin> = refs.iter().map(|r| Margin::between(subject, r)).collect();
    (all_of(&margins), margins)
}

/// The gate of F2b / F2c: a model whose standard accuracy is not above chance (the one rule)
/// learned nothing, so it supports no claim about what its training set teaches. Returns the
/// above-chance verdict and margin (acc − chance) when the gate closes, None when it opens.
fn not_learned(std: &Accuracy, chance: f64) -> Option<(Verdict, Margin)> {
    match above_chance(std, chance) {
        Verdict::Holds => None,
        v => Some((v, Margin::above(std, chance))),
    }
}

/// The evidence's note on the gate: empty when the model is above chance.
fn gate_note(std: &Accuracy, chance: f64) -> String {
    match not_learned(std, chance) {
        None => String::new(),
        Some((_, m)) => format!(
            "; not above chance (acc − chance = {}), so the model supports neither part",
            m.text()
        ),
    }
}

/// A closed gate's verdict: the accuracy margin `good` still refutes the claim when it clearly
/// fails; otherwise the gate's own verdict (inconclusive or does not hold) decides.
fn gated(gate: (Verdict, Margin), good: Margin) -> (Verdict, Margin) {
    if good.verdict() == Verdict::DoesNotHold {
        (Verdict::DoesNotHold, good)
    } else {
        gate
    }
}

/// F2b on numbers (see the module table): the verdict, the deciding margin and the margins
/// (good, near zero).
pub fn fig2b(
    std_nr: &Accuracy,
    rob_nr: &Accuracy,
    std_ref: &Accuracy,
    chance: f64,
) -> (Verdict, Margin, [Margin; 2]) {
    let good = Margin::of(&[(1.0, std_nr), (-1.0, std_ref)], GOOD_STD_MAX_DROP);
    let near_zero = Margin::below(rob_nr, NEAR_ZERO_ROBUST);
    let parts = [good, near_zero];
    match not_learned(std_nr, chance) {
        Some(gate) => {
            let (v, m) = gated(gate, good);
            (v, m, parts)
        }
        None => {
            let v = combine_parts(&[good.verdict(), near_zero.verdict()]);
            let m = binding(&parts).unwrap_or(good);
            (v, m, parts)
        }
    }
}

/// F2c on numbers (see the module table): the verdict and the deciding margin.
pub fn fig2c(std_r: &Accuracy, std_ref: &Accuracy, chance: f64) -> (Verdict, Margin) {
    let m = Margin::of(&[(1.0, std_r), (-1.0, std_ref)], GOOD_STD_MAX_DROP);
    match not_learned(std_r, chance) {
        Some(gate) => gated(gate, m),
        None => (m.verdict(), m),
    }
}

/// The main model of set `k` (by its role, whatever its name).
fn find(models: &[ModelResult], k: ModelKind) -> Option<&ModelResult> {
    models.iter().find(|m| m.role == ModelRole::Main(k))
}

/// Robust accuracy of `m` at the headline, or a reason why it is unavailable: under the
/// ensemble of attacks where it was run (the worst case per example), else under PGD.
fn rob_at(m: &ModelResult, h: Option<&Headline>) -> Result<Accuracy, String> {
    let h = h.ok_or("the headline ε is unknown (run.json has no headline_eps)")?;
    m.decisive_robust_accuracy(&h.norm, h.eps)
        .map(|(a, _)| a)
        .ok_or_else(|| format!("{} has no {} ε={} robust accuracy", m.name, h.norm, h.eps))
}

fn undetermined(id: &str, claim: &str, rule: &str, why: String) -> ClaimVerdict {
    ClaimVerdict {
        id: id.into(),
        claim: claim.into(),
        rule: rule.into(),
        evidence: why,
        verdict: Verdict::Undetermined,
        margin: None,
    }
}

fn missing_models(models: &[ModelResult], kinds: &[ModelKind]) -> Option<String> {
    let missing: Vec<String> = kinds
        .iter()
        .filter(|k| find(models, **k).is_none())
        .map(|k| format!("models/{}.json", k.base_name()))
        .collect();
    (!missing.is_empty()).then(|| format!("not computed yet: {}", missing.join(", ")))
}

/// The reference for "good standard accuracy": on_control if present, else C_std.
fn reference(models: &[ModelResult]) -> Option<&ModelResult> {
    find(models, ModelKind::Control).or_else(|| find(models, ModelKind::Std))
}

/// A robust-accuracy margin claim at the headline ε: m_i = rob(subject) − rob(refs[i]), decided
/// by [`more_robust`]; the evidence names every model with its interval and every margin ± SE.
/// Undetermined when a number is missing.
fn margin_claim(
    id: &str,
    claim: &str,
    rule: &str,
    subject: &ModelResult,
    refs: &[&ModelResult],
    headline: Option<&Headline>,
) -> ClaimVerdict {
    let models: Vec<&ModelResult> = std::iter::once(subject)
        .chain(refs.iter().copied())
        .collect();
    let robs: Vec<Result<Accuracy, String>> = models.iter().map(|m| rob_at(m, headline)).collect();
    let why: Vec<String> = robs.iter().filter_map(|r| r.clone().err()).collect();
    if !why.is_empty() {
        return undetermined(id, claim, rule, why.join("; "));
    }
    let robs: Vec<Accuracy> = robs.into_iter().flatten().collect();
    let ref_accs: Vec<&Accuracy> = robs[1..].iter().collect();
    let (verdict, margins) = more_robust(&robs[0], &ref_accs);
    let h = headline.expect("rob_at succeeded, so the headline is known");
    let numbers: Vec<String> = models
        .iter()
        .zip(&robs)
        .map(|(model, r)| format!("{} {}", model.name, r.text()))
        .collect();
    let ms: Vec<String> = refs
        .iter()
        .zip(&margins)
        .map(|(r, m)| format!("{} vs {}", m.text(), r.name))
        .collect();
    ClaimVerdict {
        id: id.into(),
        claim: claim.into(),
        rule: rule.into(),
        evidence: format!(
            "at {} ε={}: {}; m = {}",
            h.norm,
            h.eps,
            numbers.join(", "),
            ms.join(", ")
        ),
        verdict,
        margin: binding(&margins),
    }
}
