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
/// Returns the verdict and the margins m_i = subject − refs[i].
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

/// The Figure 2 claims (F2a, F2b, F2c, and F2d when a clean control exists) for the given models.
pub fn figure2_verdicts(
    models: &[ModelResult],
    headline: Option<&Headline>,
    num_classes: usize,
) -> Vec<ClaimVerdict> {
    let chance = 1.0 / num_classes.max(1) as f64;
    let mut out = Vec::new();

    let (id, claim) = (
        "F2a",
        "Training on D_R gives robustness: the model trained on D_R has higher robust accuracy (headline ε) than the models trained on D_NR and on D (standard training).",
    );
    let rule = format!("m = rob(on_D_R) − rob(r) for r = on_D_NR and C_std; each {DECIDE}; holds if both hold, does not hold if either does not.");
    out.push(
        match missing_models(models, &[ModelKind::DR, ModelKind::DNR, ModelKind::Std]) {
            Some(why) => undetermined(id, claim, &rule, why),
            None => {
                let (r, nr, s) = (
                    find(models, ModelKind::DR).unwrap(),
                    find(models, ModelKind::DNR).unwrap(),
                    find(models, ModelKind::Std).unwrap(),
                );
                margin_claim(id, claim, &rule, r, &[nr, s], headline)
            }
        },
    );

    let (id, claim) = (
        "F2b",
        "Non-robust features suffice for standard accuracy: the model trained on D_NR has good standard accuracy and near-zero robust accuracy.",
    );
    let rule = format!("good: m = std(on_D_NR) − (std(ref) − 15 points); near zero: m = 10% − rob(on_D_NR); each {DECIDE}. holds if both hold, partly if one does. A model not above chance (its interval above 1/C) supports neither part: the verdict is then does not hold if \"good\" clearly fails, else the above-chance rule's (inconclusive or does not hold). ref = on_control if present, else C_std.");
    out.push(match (find(models, ModelKind::DNR), reference(models)) {
        (Some(nr), Some(rf)) => match rob_at(nr, headline) {
            Ok(rob) => {
                let (std_nr, std_ref) = (nr.std_accuracy(), rf.std_accuracy());
                let (verdict, margin, [good, near]) = fig2b(&std_nr, &rob, &std_ref, chance);
                ClaimVerdict {
                    id: id.into(),
                    claim: claim.into(),
                    rule,
                    evidence: format!(
                        "on_D_NR std {} (ref {} {}): good m = {}; rob {} at the headline ε: near zero m = {}; chance {}{}",
                        std_nr.text(),
                        rf.name,
                        std_ref.text(),
                        good.text(),
                        rob.text(),
                        near.text(),
                        pct(chance),
                        gate_note(&std_nr, chance)
                    ),
                    verdict,
                    margin: Some(margin),
                }
            }
            Err(why) => undetermined(id, claim, &rule, why),
        },
        _ => undetermined(
            id,
            claim,
            &rule,
            missing_models(models, &[ModelKind::DNR, ModelKind::Std]).unwrap_or_default(),
        ),
    });

    let (id, claim) = (
        "F2c",
        "Robust features suffice for decent standard accuracy: the model trained on D_R has decent standard accuracy.",
    );
    let rule = format!("m = std(on_D_R) − (std(ref) − 15 points); {DECIDE}. A model not above chance (its interval above 1/C) does not support the claim: the verdict is then does not hold if m clearly fails, else the above-chance rule's (inconclusive or does not hold, shown with m = acc − chance). ref = on_control if present, else C_std.");
    out.push(match (find(models, ModelKind::DR), reference(models)) {
        (Some(r), Some(rf)) => {
            let (std_r, std_ref) = (r.std_accuracy(), rf.std_accuracy());
            let (verdict, m) = fig2c(&std_r, &std_ref, chance);
            let decent = Margin::of(&[(1.0, &std_r), (-1.0, &std_ref)], GOOD_STD_MAX_DROP);
            ClaimVerdict {
                id: id.into(),
                claim: claim.into(),
                rule,
                evidence: format!(
                    "on_D_R std {} (ref {} {}); m = {}; chance {}{}",
                    std_r.text(),
                    rf.name,
                    std_ref.text(),
                    decent.text(),
                    pct(chance),
                    gate_note(&std_r, chance)
                ),
                verdict,
                margin: Some(m),
            }
        }
        _ => undetermined(
            id,
            claim,
            &rule,
            missing_models(models, &[ModelKind::DR, ModelKind::Std]).unwrap_or_default(),
        ),
    });

    // Not in the paper: a small constructed set must beat a clean set of its own size, since
    // a model trained on few images can be more robust than one trained on all of D.
    if let (Some(r), Some(ctl)) = (
        find(models, ModelKind::DR),
        find(models, ModelKind::Control),
    ) {
        let (id, claim) = (
            "F2d",
            "(Not in the paper.) D_R's robustness is more than a small training set's: the model trained on D_R has higher robust accuracy (headline ε) than a standard model trained on the same number of clean images (on_control).",
        );
        let rule = format!("m = rob(on_D_R) − rob(on_control); {DECIDE}.");
        out.push(margin_claim(id, claim, &rule, r, &[ctl], headline));
    }
    out
}

/// T1a / T1b for one model: the one above-chance rule on its test accuracy.
fn chance_claim(
    id: String,
    claim: String,
    rule: &str,
    m: &ModelResult,
    chance: f64,
) -> ClaimVerdict {
    let acc = m.std_accuracy();
    ClaimVerdict {
        id,
        claim,
        rule: rule.into(),
        evidence: format!("{} test acc {}; chance {}", m.name, acc.text(), pct(chance)),
        verdict: above_chance(&acc, chance),
        margin: Some(Margin::above(&acc, chance)),
    }
}

/// The Table 1 claims (T1a: D_rand, T1b: D_det, T1c: neither is robust), plus T1a / T1b for every
/// variant model (e.g. `on_D_det_eps2`).
pub fn table1_verdicts(
    models: &[ModelResult],
    headline: Option<&Headline>,
    num_classes: usize,
) -> Vec<ClaimVerdict> {
    let chance = 1.0 / num_classes.max(1) as f64;
    let rule = "holds if the test accuracy's 95% interval (Wilson on the test images, widened by the seed spread) lies above chance, does not hold if it lies below, inconclusive if it contains chance; m = acc − chance is shown.";
    let mut out = Vec::new();
    for (id, kind, set) in [
        ("T1a", ModelKind::DRand, "D_rand"),
        ("T1b", ModelKind::DDet, "D_det"),
    ] {
        let claim = format!(
            "A model trained on {set} (non-robust features only, labels that look wrong to a human) is above chance on the real test set."
        );
        out.push(match find(models, kind) {
            Some(m) => chance_claim(id.into(), claim.clone(), rule, m, chance),
            None => undetermined(
                id,
                &claim,
                rule,
                format!("not computed yet: models/{}.json", kind.base_name()),
            ),
        });
        for m in models {
            if m.role == ModelRole::Variant(kind) {
                out.push(chance_claim(
                    format!("{id}[{}]", m.name),
                    format!("Variant {}: {claim}", m.name),
                    rule,
                    m,
                    chance,
                ));
            }
        }
    }

    let (id, claim) = (
        "T1c",
        "The models trained on D_rand and D_det are not robust ([CD]: 0% robust accuracy).",
    );
    let rule = format!("near zero: m = 10% − rob at the headline ε, for each model; {DECIDE}; holds if both hold, partly if one does.");
    out.push(
        match missing_models(models, &[ModelKind::DRand, ModelKind::DDet]) {
            Some(why) => undetermined(id, claim, &rule, why),
            None => {
                let a = rob_at(find(models, ModelKind::DRand).unwrap(), headline);
                let b = rob_at(find(models, ModelKind::DDet).unwrap(), headline);
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        let ms = [
                            Margin::below(&a, NEAR_ZERO_ROBUST),
                            Margin::below(&b, NEAR_ZERO_ROBUST),
                        ];
                        ClaimVerdict {
                            id: id.into(),
                            claim: claim.into(),
                            rule,
                            evidence: format!(
                                "rob at the headline ε: on_D_rand {} (m = {}), on_D_det {} (m = {})",
                                a.text(),
                                ms[0].text(),
                                b.text(),
                                ms[1].text()
                            ),
                            verdict: combine_parts(&[ms[0].verdict(), ms[1].verdict()]),
                            margin: binding(&ms),
                        }
                    }
                    (a, b) => {
                        let why: Vec<String> = [a, b].into_iter().filter_map(|x| x.err()).collect();
                        undetermined(id, claim, &rule, why.join("; "))
                    }
                }
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{RobustPoint, SeedRun, Varies};
    use ModelKind::{Control, DDet, DRand, Rob, Std, DNR, DR};

    /// A model with `std_acc` on 10,000 test images and robust accuracy `rob` at L2 0.5 on 500.
    fn model(name: &str, role: ModelRole, std_acc: f64, rob: f64) -> ModelResult {
        ModelResult {
            name: name.into(),
            role,
            arch: "a".into(),
            trained_on: "D".into(),
            train_size: 1,
            adversarial: None,
            epochs: vec![],
            std_acc,
            test_size: 10_000,
            ensemble: Vec::new(),
            checks: None,
            robust: vec![RobustPoint {
                norm: "L2".into(),
                eps: 0.5,
                acc: rob,
                steps: 20,
                n: 500,
                attack: None,
            }],
            final_train_acc: None,
            wall_s: 0.0,
            seeds: vec![],
            seed_summary: None,
        }
    }

    /// The main model of set `k`, named as the pipeline names it.
    fn main(k: ModelKind, std_acc: f64, rob: f64) -> ModelResult {
        model(k.base_name(), ModelRole::Main(k), std_acc, rob)
    }

    /// `main(k, ..)` trained with one seed per (std, rob) pair; seed 0's numbers are the model's.
    fn seeded(k: ModelKind, runs: &[(f64, f64)]) -> ModelResult {
        let mut m = main(k, runs[0].0, runs[0].1);
        let point = m.robust[0].clone();
        m.set_seeds(
            runs.iter()
                .enumerate()
                .map(|(i, &(s, r))| SeedRun {
                    seed: i,
                    train_seed: i as u64,
                    std_acc: s,
                    ensemble: Vec::new(),
                    robust: vec![RobustPoint {
                        acc: r,
                        ..point.clone()
                    }],
                })
                .collect(),
        );
        m
    }

    #[test]
    fn robustness_is_decided_on_the_ensemble_when_present() {
        let h = headline();
        let plain = main(DR, 0.8, 0.6);
        assert!((rob_at(&plain, Some(&h)).unwrap().value - 0.6).abs() < 1e-12);
        let mut hard = main(DR, 0.8, 0.6);
        hard.ensemble = vec![RobustPoint {
            norm: "L2".into(),
            eps: 0.5,
            acc: 0.1,
            steps: 100,
            n: 500,
            attack: Some("PGD-20 + APGD-CE 100 steps x1".into()),
        }];
        assert!((rob_at(&hard, Some(&h)).unwrap().value - 0.1).abs() < 1e-12);
    }

    fn headline() -> Headline {
        Headline {
            norm: "L2".into(),
            eps: 0.5,
            source: "test".into(),
        }
    }

    fn a(v: f64, n: usize) -> Accuracy {
        Accuracy::single(v, n)
    }

    /// Models are found by their role: a paper model under any name is used, an extra's model
    /// named like a paper model is not.
    #[test]
    fn models_are_found_by_role_not_by_name() {
        let h = headline();
        let paper = vec![
            model("baseline", ModelRole::Main(Std), 0.9525, 0.0866),
            model("robust_src", ModelRole::Main(Rob), 0.9083, 0.8234),
            model("fresh_r", ModelRole::Main(DR), 0.84, 0.48),
            model("fresh_nr", ModelRole::Main(DNR), 0.88, 0.0),
            model("rand", ModelRole::Main(DRand), 0.63, 0.0),
            model("det", ModelRole::Main(DDet), 0.44, 0.0),
            model("det_far", ModelRole::Variant(DDet), 0.50, 0.0),
        ];
        let f2 = figure2_verdicts(&paper, Some(&h), 10);
        assert_eq!(f2.len(), 3);
        assert!(f2.iter().all(|c| c.verdict == Verdict::Holds), "{f2:#?}");
        let t1 = table1_verdicts(&paper, Some(&h), 10);
        assert!(t1.iter().any(|c| c.id == "T1b[det_far]"), "{t1:#?}");
        assert!(t1.iter().all(|c| c.verdict == Verdict::Holds), "{t1:#?}");
        // Extras' models with the paper's names (and a variant's): none is a paper model.
        let extra =
            |name: &str, set, varies| model(name, ModelRole::Extra { set, varies }, 0.84, 0.48);
        let extras = vec![
            extra("on_D_R", DR, Varies::Distance),
            extra("on_D_NR", DNR, Varies::Init),
            extra("C_std", Std, Varies::Architecture),
            extra("on_D_det", DDet, Varies::Construction),
            extra("on_D_det_eps2", DDet, Varies::Eps),
            extra("on_D_R_xyz", DR, Varies::TrainSize),
        ];
        let f2 = figure2_verdicts(&extras, Some(&h), 10);
        assert!(
            f2.iter().all(|c| c.verdict == Verdict::Undetermined),
            "{f2:#?}"
        );
        let t1 = table1_verdicts(&extras, Some(&h), 10);
        assert_eq!(t1.len(), 3, "no variant claims: {t1:#?}");
        assert!(t1.iter().all(|c| c.verdict == Verdict::Undetermined));
        // Next to the paper's models they change nothing.
        let both: Vec<ModelResult> = extras.iter().chain(&paper).cloned().collect();
        assert_eq!(figure2_verdicts(&both, Some(&h), 10), f2_of(&paper));
        assert_eq!(table1_verdicts(&both, Some(&h), 10), t1_of(&paper));
    }

    fn f2_of(ms: &[ModelResult]) -> Vec<ClaimVerdict> {
        figure2_verdicts(ms, Some(&headline()), 10)
    }

    fn t1_of(ms: &[ModelResult]) -> Vec<ClaimVerdict> {
        table1_verdicts(ms, Some(&headline()), 10)
    }

    #[test]
    fn number_rules() {
        // More robust than every reference, by more than 2 SE of each difference.
        let (v, m) = more_robust(&a(0.48, 500), &[&a(0.0, 500), &a(0.0866, 500)]);
        assert_eq!(v, Verdict::Holds);
        assert_eq!(m.len(), 2);
        // Within noise of one reference: inconclusive; clearly below one: does not hold.
        assert_eq!(
            more_robust(&a(0.15, 500), &[&a(0.02, 500), &a(0.13, 500)]).0,
            Verdict::Inconclusive
        );
        assert_eq!(
            more_robust(&a(0.05, 500), &[&a(0.02, 500), &a(0.15, 500)]).0,
            Verdict::DoesNotHold
        );
        let (s, r) = (10_000, 500);
        assert_eq!(
            fig2b(&a(0.88, s), &a(0.0, r), &a(0.95, s), 0.1).0,
            Verdict::Holds
        );
        // Far below the reference but not robust: one part of two.
        assert_eq!(
            fig2b(&a(0.60, s), &a(0.0, r), &a(0.95, s), 0.1).0,
            Verdict::Partly
        );
        // At chance: no credit for near-zero robustness.
        assert_eq!(
            fig2b(&a(0.10, s), &a(0.0, r), &a(0.95, s), 0.1).0,
            Verdict::DoesNotHold
        );
        assert_eq!(
            fig2b(&a(0.60, s), &a(0.4, r), &a(0.95, s), 0.1).0,
            Verdict::DoesNotHold
        );
        // Robust accuracy within noise of 10%: that part is inconclusive.
        assert_eq!(
            fig2b(&a(0.88, s), &a(0.10, r), &a(0.95, s), 0.1).0,
            Verdict::Partly
        );
        assert_eq!(fig2c(&a(0.84, s), &a(0.95, s), 0.1).0, Verdict::Holds);
        assert_eq!(fig2c(&a(0.50, s), &a(0.95, s), 0.1).0, Verdict::DoesNotHold);
        // 15 points below on 200 images each: inside the noise.
        assert_eq!(
            fig2c(&a(0.80, 200), &a(0.95, 200), 0.1).0,
            Verdict::Inconclusive
        );
        // Everything at chance (a reference at chance too): the gate, not the 15-point rule.
        let (v, m) = fig2c(&a(0.108, 1000), &a(0.148, 1000), 0.1);
        assert_eq!(v, Verdict::Inconclusive);
        assert!((m.m - 0.008).abs() < 1e-12);
        assert_eq!(
            fig2b(&a(0.111, 1000), &a(0.13, 100), &a(0.148, 1000), 0.1).0,
            Verdict::Inconclusive
        );
        let at_chance = vec![
            main(Std, 0.56, 0.6),
            main(DR, 0.1, 0.13),
            main(DNR, 0.1, 0.13),
            main(Control, 0.12, 0.13),
        ];
        let f2 = figure2_verdicts(&at_chance, Some(&headline()), 10);
        for c in &f2[1..3] {
            assert_eq!(c.verdict, Verdict::Inconclusive, "{c:?}");
            assert!(
                c.evidence
                    .contains("not above chance (acc − chance = +0.0 ± "),
                "{c:?}"
            );
        }
        assert_eq!(fig2c(&a(0.05, s), &a(0.15, s), 0.1).0, Verdict::DoesNotHold);
        for s in [
            "holds",
            "partly",
            "does not hold",
            "inconclusive",
            "undetermined",
            "n/a",
        ] {
            assert_eq!(Verdict::parse(s).unwrap().as_str(), s);
        }
    }

    /// The paper's own CIFAR numbers satisfy every claim under these rules (a case that holds).
    #[test]
    fn paper_numbers_hold() {
        let ms = vec![
            main(Std, 0.9525, 0.0866),
            main(Rob, 0.9083, 0.8234),
            main(DR, 0.84, 0.48),
            main(DNR, 0.88, 0.0),
            main(DRand, 0.63, 0.0),
            main(DDet, 0.44, 0.0),
            model("on_D_det_eps2", ModelRole::Variant(DDet), 0.50, 0.0),
        ];
        let h = headline();
        let f2 = figure2_verdicts(&ms, Some(&h), 10);
        assert_eq!(f2.len(), 3);
        assert!(f2.iter().all(|c| c.verdict == Verdict::Holds), "{f2:#?}");
        assert!(
            f2[0].evidence.contains("on_D_R 48.0% [43.7, 52.4]"),
            "{}",
            f2[0].evidence
        );
        assert!(
            f2[0].verdict_text().starts_with("holds (m = +39.3 ± "),
            "{}",
            f2[0].verdict_text()
        );
        let t1 = table1_verdicts(&ms, Some(&h), 10);
        assert!(t1.iter().any(|c| c.id == "T1b[on_D_det_eps2]"));
        assert!(t1.iter().all(|c| c.verdict == Verdict::Holds), "{t1:#?}");
    }

    /// A run where the robust-features story fails (a case that does not hold).
    #[test]
    fn contradicting_numbers_do_not_hold() {
        let ms = vec![
            main(Std, 0.91, 0.02),
            main(DR, 0.25, 0.01),
            main(DNR, 0.85, 0.40),
            main(DRand, 0.09, 0.3),
            main(DDet, 0.05, 0.3),
            main(Control, 0.88, 0.01),
        ];
        let h = headline();
        let f2 = figure2_verdicts(&ms, Some(&h), 10);
        assert_eq!(f2[0].verdict, Verdict::DoesNotHold, "{:?}", f2[0]);
        assert_eq!(f2[1].verdict, Verdict::Partly, "{:?}", f2[1]);
        assert!(f2[1].evidence.contains("ref on_control"));
        assert_eq!(f2[2].verdict, Verdict::DoesNotHold);
        // F2d (with on_control present) comes last: 1% vs 1% is no margin, inside the noise.
        assert_eq!(f2[3].id, "F2d");
        assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
        assert!(f2[3].evidence.contains("m = +0.0 ± "), "{}", f2[3].evidence);
        let t1 = table1_verdicts(&ms, Some(&h), 10);
        assert!(
            t1.iter().all(|c| c.verdict == Verdict::DoesNotHold),
            "{t1:#?}"
        );
    }

    /// The F2d: 49.0% vs 49.6% (and 51.0% vs 50.0%) on 500 images is inconclusive,
    /// and two seeds that disagree keep a borderline margin inconclusive.
    #[test]
    fn noise_sized_margins_are_inconclusive() {
        let h = headline();
        for (r, c) in [(0.490, 0.496), (0.510, 0.500)] {
            let ms = vec![
                main(Std, 0.919, 0.376),
                main(DR, 0.778, r),
                main(DNR, 0.677, 0.094),
                main(Control, 0.806, c),
            ];
            let f2 = figure2_verdicts(&ms, Some(&h), 10);
            assert_eq!(f2[3].id, "F2d");
            assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
            // F2a: 49% vs 37.6% on 500 images each is 11.4 ± 3.1 points: holds.
            assert_eq!(f2[0].verdict, Verdict::Holds, "{:?}", f2[0]);
        }
        // Clear on one seed (60% vs 50% on 500), but the second seed lands at 48%.
        let one = vec![
            main(Std, 0.9, 0.3),
            main(DR, 0.8, 0.60),
            main(DNR, 0.7, 0.05),
            main(Control, 0.8, 0.50),
        ];
        assert_eq!(
            figure2_verdicts(&one, Some(&h), 10)[3].verdict,
            Verdict::Holds
        );
        let mut two = one.clone();
        two[1] = seeded(DR, &[(0.8, 0.60), (0.8, 0.48)]);
        let f2 = figure2_verdicts(&two, Some(&h), 10);
        assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
        assert!(
            f2[3].evidence.contains("(seeds 60.0, 48.0)"),
            "{}",
            f2[3].evidence
        );
    }

    #[test]
    fn missing_inputs_are_undetermined() {
        let ms = vec![main(Std, 0.91, 0.02), main(DR, 0.8, 0.5)];
        let f2 = figure2_verdicts(&ms, Some(&headline()), 10);
        assert_eq!(f2[0].verdict, Verdict::Undetermined);
        assert!(f2[0].margin.is_none());
        assert!(f2[0].evidence.contains("models/on_D_NR.json"));
        let mut ms2 = ms.clone();
        ms2.push(main(DNR, 0.8, 0.0));
        let f2 = figure2_verdicts(&ms2, None, 10);
        assert_eq!(f2[0].verdict, Verdict::Undetermined);
        assert!(f2[0].evidence.contains("headline"));
        let other = Headline {
            eps: 0.25,
            ..headline()
        };
        let f2 = figure2_verdicts(&ms2, Some(&other), 10);
        assert!(
            f2[0].evidence.contains("no L2 ε=0.25"),
            "{}",
            f2[0].evidence
        );
        assert_eq!(f2[2].verdict, Verdict::Holds);
    }
}
