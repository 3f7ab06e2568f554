//! Verdict logic: explicit, documented rules that turn our numbers into "holds" / "partly" /
//! "does not hold" / "inconclusive" for each claim of the paper's Figure 2 and Table 1.
//!
//! Every rule is a margin with its standard error, decided by the one rule of
//! [`crate::uncertainty`]: a claim **holds** only when its margin m exceeds c standard errors
//! (m > c·SE), **does not hold** when m < −c·SE, and is **inconclusive** in between; the SE
//! combines the binomial (Wilson) errors of the accuracies involved and, for models trained with
//! several seeds, their seed-to-seed spread; c = 2, or Student's t at the Welch-Satterthwaite
//! degrees of freedom of the seed spreads when that is larger (up to 4.30 for three seeds). "Partly" is kept for claims with two parts of
//! which one holds. The levels below define the claims (what "good", "near zero" mean) and were
//! fixed before any result was seen; they are never tuned to make a claim pass. All accuracies
//! are fractions in [0, 1]; "points" are percentage points.
//!
//! | claim | margin(s) m; decided by m vs c·SE |
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
pub use nrf_results::verdict::{ClaimVerdict, ModelKind, Verdict};

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
const DECIDE: &str = "holds if m > c SE, does not hold if m < −c SE, inconclusive otherwise (SE: binomial errors of the accuracies and the seed spread, combined in quadrature; c = 2, or Student's t at the Welch-Satterthwaite degrees of freedom of the seed spreads when larger)";

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

/// The margin closest to the other side of its decision (smallest m / (c·SE), c the number of
/// standard errors it needs: [`Margin::critical`]).
fn binding(margins: &[Margin]) -> Option<Margin> {
    let scaled = |m: &Margin| m.z() / m.critical();
    margins
        .iter()
        .copied()
        .min_by(|a, b| scaled(a).total_cmp(&scaled(b)))
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
