//! Verdict logic: explicit, documented rules that turn our numbers into "holds" / "partly" /
//! "does not hold" for each claim of the paper's Figure 2 and Table 1.
//!
//! The thresholds below were fixed before any result was seen and are never tuned to make a
//! claim pass. All accuracies are fractions in [0, 1]; "points" are percentage points.
//!
//! | claim | rule |
//! |---|---|
//! | F2a: training on D_R gives robustness | m = rob(on_D_R) − max(rob(on_D_NR), rob(C_std)) at the headline ε. holds: m ≥ 10 points; partly: 0 < m < 10; does not hold: m ≤ 0 |
//! | F2b: D_NR gives good standard accuracy and no robustness | good: std(on_D_NR) ≥ std(ref) − 15 points; near zero: rob(on_D_NR) ≤ 10%; learned: std(on_D_NR) ≥ chance + 20 points. holds: good and near zero; partly: learned and exactly one of the two; does not hold: otherwise |
//! | F2c: D_R gives decent standard accuracy | holds: std(on_D_R) ≥ std(ref) − 15 points; partly: ≥ chance + 20 points; does not hold: otherwise |
//! | T1a / T1b: D_rand / D_det models generalise to the real test set | holds: acc ≥ chance + 20 points; partly: acc > chance + 5 points; does not hold: otherwise |
//! | T1c: D_rand / D_det models are not robust (\[CD\]: 0%) | holds: both rob ≤ 10%; partly: one of them; does not hold: neither |
//!
//! ref = the control model (`on_control`: same recipe on a same-size clean subset of D) when
//! present, else `C_std`. chance = 1 / num_classes. Variants (e.g. `on_D_det_eps2`) get the
//! T1a / T1b rule as extra claims.
use crate::results::{Headline, ModelResult};
use serde::{Deserialize, Serialize};

/// F2a: minimum margin (fraction) of D_R's robust accuracy over D_NR's and D's for "holds".
pub const FIG2A_CLEAR_MARGIN: f64 = 0.10;
/// Largest drop (fraction) below the reference model's standard accuracy that still counts as
/// "good" / "decent" standard accuracy.
pub const GOOD_STD_MAX_DROP: f64 = 0.15;
/// Robust accuracy at or below this (fraction) counts as "near zero".
pub const NEAR_ZERO_ROBUST: f64 = 0.10;
/// Accuracy this far (fraction) above chance is "well above chance".
pub const ABOVE_CHANCE_CLEAR: f64 = 0.20;
/// Accuracy more than this far (fraction) above chance is "above chance".
pub const ABOVE_CHANCE_SOME: f64 = 0.05;

/// Outcome of a claim check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The claim holds by the rule.
    #[serde(rename = "holds")]
    Holds,
    /// The claim holds in part.
    #[serde(rename = "partly")]
    Partly,
    /// The claim does not hold.
    #[serde(rename = "does not hold")]
    DoesNotHold,
    /// Not decidable: an input is missing.
    #[serde(rename = "undetermined")]
    Undetermined,
    /// Not a claim (a question).
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Verdict {
    /// "holds", "partly", "does not hold", "undetermined" or "n/a".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Partly => "partly",
            Verdict::DoesNotHold => "does not hold",
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
    /// The numbers used, or what is missing.
    pub evidence: String,
    /// The outcome.
    pub verdict: Verdict,
}

/// The role of a model in the paper's experiments, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelKind {
    /// `C_std`: standard training on D.
    Std,
    /// `C_rob`: adversarial training on D.
    Rob,
    /// `on_D_R`: trained on the robust dataset.
    DR,
    /// `on_D_NR`: trained on the non-robust dataset.
    DNR,
    /// `on_D_rand`: trained on D_rand.
    DRand,
    /// `on_D_det`: trained on D_det.
    DDet,
    /// `on_control`: trained on a same-size clean subset of D.
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

    /// The canonical model name, e.g. "on_D_R".
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

    /// Classifies a model name: the kind and whether it is a variant (`on_D_det_eps2` is a
    /// variant of `on_D_det`). None for names outside the paper's experiments.
    pub fn of(name: &str) -> Option<(ModelKind, bool)> {
        for k in ModelKind::ALL {
            let base = k.base_name();
            if name == base {
                return Some((k, false));
            }
            if let Some(rest) = name.strip_prefix(base) {
                if rest.starts_with('_') && rest.len() > 1 {
                    return Some((k, true));
                }
            }
        }
        None
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn pts(v: f64) -> String {
    format!("{:+.1} points", v * 100.0)
}

/// F2a on numbers: returns the verdict and the margin
/// rob_r − max(rob_nr, rob_std).
pub fn fig2a(rob_r: f64, rob_nr: f64, rob_std: f64) -> (Verdict, f64) {
    let margin = rob_r - rob_nr.max(rob_std);
    let v = if margin >= FIG2A_CLEAR_MARGIN - 1e-12 {
        Verdict::Holds
    } else if margin > 0.0 {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    };
    (v, margin)
}

/// F2b on numbers (see the module table).
pub fn fig2b(std_nr: f64, rob_nr: f64, std_ref: f64, chance: f64) -> Verdict {
    let learned = std_nr >= chance + ABOVE_CHANCE_CLEAR - 1e-12;
    let good = std_nr >= std_ref - GOOD_STD_MAX_DROP - 1e-12;
    let near_zero = rob_nr <= NEAR_ZERO_ROBUST + 1e-12;
    if !learned {
        Verdict::DoesNotHold
    } else if good && near_zero {
        Verdict::Holds
    } else if good || near_zero {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    }
}

/// F2c on numbers (see the module table).
pub fn fig2c(std_r: f64, std_ref: f64, chance: f64) -> Verdict {
    if std_r >= std_ref - GOOD_STD_MAX_DROP - 1e-12 {
        Verdict::Holds
    } else if std_r >= chance + ABOVE_CHANCE_CLEAR - 1e-12 {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    }
}

/// T1a / T1b on numbers: accuracy on the real test set against chance.
pub fn above_chance(acc: f64, chance: f64) -> Verdict {
    if acc >= chance + ABOVE_CHANCE_CLEAR - 1e-12 {
        Verdict::Holds
    } else if acc > chance + ABOVE_CHANCE_SOME {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    }
}

fn find(models: &[ModelResult], k: ModelKind) -> Option<&ModelResult> {
    models.iter().find(|m| m.name == k.base_name())
}

/// Robust accuracy of `m` at the headline, or a reason why it is unavailable.
fn rob_at(m: &ModelResult, h: Option<&Headline>) -> Result<f64, String> {
    let h = h.ok_or("the headline ε is unknown (run.json has no headline_eps)")?;
    m.robust_at(&h.norm, h.eps)
        .map(|p| p.acc)
        .ok_or_else(|| format!("{} has no {} ε={} robust accuracy", m.name, h.norm, h.eps))
}

fn undetermined(id: &str, claim: &str, rule: &str, why: String) -> ClaimVerdict {
    ClaimVerdict {
        id: id.into(),
        claim: claim.into(),
        rule: rule.into(),
        evidence: why,
        verdict: Verdict::Undetermined,
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

/// A robust-accuracy margin claim at the headline ε: m = rob(subject) − max(rob(refs)), decided
/// by [`fig2a`]'s thresholds; the evidence names every model. Undetermined when a number is
/// missing.
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
    let robs: Vec<Result<f64, String>> = models.iter().map(|m| rob_at(m, headline)).collect();
    let why: Vec<String> = robs.iter().filter_map(|r| r.clone().err()).collect();
    if !why.is_empty() {
        return undetermined(id, claim, rule, why.join("; "));
    }
    let robs: Vec<f64> = robs.into_iter().flatten().collect();
    let best_ref = robs[1..].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (verdict, m) = fig2a(robs[0], best_ref, best_ref);
    let h = headline.expect("rob_at succeeded, so the headline is known");
    let numbers: Vec<String> = models
        .iter()
        .zip(&robs)
        .map(|(model, r)| format!("{} {}", model.name, pct(*r)))
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
            pts(m)
        ),
        verdict,
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

    let (id, claim, rule) = (
        "F2a",
        "Training on D_R gives robustness: the model trained on D_R has clearly higher robust accuracy (headline ε) than the models trained on D_NR and on D (standard training).",
        "m = rob(on_D_R) − max(rob(on_D_NR), rob(C_std)); holds if m ≥ 10 points, partly if 0 < m < 10, does not hold if m ≤ 0.",
    );
    out.push(
        match missing_models(models, &[ModelKind::DR, ModelKind::DNR, ModelKind::Std]) {
            Some(why) => undetermined(id, claim, rule, why),
            None => {
                let (r, nr, s) = (
                    find(models, ModelKind::DR).unwrap(),
                    find(models, ModelKind::DNR).unwrap(),
                    find(models, ModelKind::Std).unwrap(),
                );
                margin_claim(id, claim, rule, r, &[nr, s], headline)
            }
        },
    );

    let (id, claim, rule) = (
        "F2b",
        "Non-robust features suffice for standard accuracy: the model trained on D_NR has good standard accuracy and near-zero robust accuracy.",
        "good: std(on_D_NR) ≥ std(ref) − 15 points; near zero: rob(on_D_NR) ≤ 10%; learned: std(on_D_NR) ≥ chance + 20 points. holds if good and near zero; partly if learned and one of the two; else does not hold. ref = on_control if present, else C_std.",
    );
    out.push(match (find(models, ModelKind::DNR), reference(models)) {
        (Some(nr), Some(rf)) => match rob_at(nr, headline) {
            Ok(rob) => ClaimVerdict {
                id: id.into(),
                claim: claim.into(),
                rule: rule.into(),
                evidence: format!(
                    "on_D_NR std {} (ref {} {}), rob {} at the headline ε; chance {}",
                    pct(nr.std_acc),
                    rf.name,
                    pct(rf.std_acc),
                    pct(rob),
                    pct(chance)
                ),
                verdict: fig2b(nr.std_acc, rob, rf.std_acc, chance),
            },
            Err(why) => undetermined(id, claim, rule, why),
        },
        _ => undetermined(
            id,
            claim,
            rule,
            missing_models(models, &[ModelKind::DNR, ModelKind::Std]).unwrap_or_default(),
        ),
    });

    let (id, claim, rule) = (
        "F2c",
        "Robust features suffice for decent standard accuracy: the model trained on D_R has decent standard accuracy.",
        "holds if std(on_D_R) ≥ std(ref) − 15 points; partly if ≥ chance + 20 points; else does not hold. ref = on_control if present, else C_std.",
    );
    out.push(match (find(models, ModelKind::DR), reference(models)) {
        (Some(r), Some(rf)) => ClaimVerdict {
            id: id.into(),
            claim: claim.into(),
            rule: rule.into(),
            evidence: format!(
                "on_D_R std {} (ref {} {}); chance {}",
                pct(r.std_acc),
                rf.name,
                pct(rf.std_acc),
                pct(chance)
            ),
            verdict: fig2c(r.std_acc, rf.std_acc, chance),
        },
        _ => undetermined(
            id,
            claim,
            rule,
            missing_models(models, &[ModelKind::DR, ModelKind::Std]).unwrap_or_default(),
        ),
    });

    // Not in the paper: a small constructed set must beat a clean set of its own size, since
    // a model trained on few images can be more robust than one trained on all of D.
    if let (Some(r), Some(ctl)) = (
        find(models, ModelKind::DR),
        find(models, ModelKind::Control),
    ) {
        let (id, claim, rule) = (
            "F2d",
            "(Not in the paper.) D_R's robustness is more than a small training set's: the model trained on D_R has clearly higher robust accuracy (headline ε) than a standard model trained on the same number of clean images (on_control).",
            "m = rob(on_D_R) − rob(on_control); holds if m ≥ 10 points, partly if 0 < m < 10, does not hold if m ≤ 0.",
        );
        out.push(margin_claim(id, claim, rule, r, &[ctl], headline));
    }
    out
}

/// The Table 1 claims (T1a: D_rand, T1b: D_det, T1c: neither is robust), plus T1a / T1b for every
/// variant model (e.g. `on_D_det_eps2`).
pub fn table1_verdicts(
    models: &[ModelResult],
    headline: Option<&Headline>,
    num_classes: usize,
) -> Vec<ClaimVerdict> {
    let chance = 1.0 / num_classes.max(1) as f64;
    let rule = "holds if test accuracy ≥ chance + 20 points; partly if > chance + 5 points; else does not hold.";
    let mut out = Vec::new();
    for (id, kind, set) in [
        ("T1a", ModelKind::DRand, "D_rand"),
        ("T1b", ModelKind::DDet, "D_det"),
    ] {
        let claim = format!(
            "A model trained on {set} (non-robust features only, labels that look wrong to a human) is well above chance on the real test set."
        );
        out.push(match find(models, kind) {
            Some(m) => ClaimVerdict {
                id: id.into(),
                claim: claim.clone(),
                rule: rule.into(),
                evidence: format!(
                    "{} test acc {}; chance {}",
                    m.name,
                    pct(m.std_acc),
                    pct(chance)
                ),
                verdict: above_chance(m.std_acc, chance),
            },
            None => undetermined(
                id,
                &claim,
                rule,
                format!("not computed yet: models/{}.json", kind.base_name()),
            ),
        });
        for m in models {
            if ModelKind::of(&m.name) == Some((kind, true)) {
                out.push(ClaimVerdict {
                    id: format!("{id}[{}]", m.name),
                    claim: format!("Variant {}: {claim}", m.name),
                    rule: rule.into(),
                    evidence: format!(
                        "{} test acc {}; chance {}",
                        m.name,
                        pct(m.std_acc),
                        pct(chance)
                    ),
                    verdict: above_chance(m.std_acc, chance),
                });
            }
        }
    }

    let (id, claim, rule) = (
        "T1c",
        "The models trained on D_rand and D_det are not robust ([CD]: 0% robust accuracy).",
        "near zero: rob ≤ 10% at the headline ε; holds if both, partly if one, does not hold if neither.",
    );
    out.push(
        match missing_models(models, &[ModelKind::DRand, ModelKind::DDet]) {
            Some(why) => undetermined(id, claim, rule, why),
            None => {
                let a = rob_at(find(models, ModelKind::DRand).unwrap(), headline);
                let b = rob_at(find(models, ModelKind::DDet).unwrap(), headline);
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        let n = [a, b]
                            .iter()
                            .filter(|r| **r <= NEAR_ZERO_ROBUST + 1e-12)
                            .count();
                        ClaimVerdict {
                            id: id.into(),
                            claim: claim.into(),
                            rule: rule.into(),
                            evidence: format!(
                                "rob at the headline ε: on_D_rand {}, on_D_det {}",
                                pct(a),
                                pct(b)
                            ),
                            verdict: match n {
                                2 => Verdict::Holds,
                                1 => Verdict::Partly,
                                _ => Verdict::DoesNotHold,
                            },
                        }
                    }
                    (a, b) => {
                        let why: Vec<String> = [a, b].into_iter().filter_map(|x| x.err()).collect();
                        undetermined(id, claim, rule, why.join("; "))
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
    use crate::results::RobustPoint;

    fn model(name: &str, std_acc: f64, rob: f64) -> ModelResult {
        ModelResult {
            name: name.into(),
            arch: "a".into(),
            trained_on: "D".into(),
            train_size: 1,
            adversarial: None,
            epochs: vec![],
            std_acc,
            test_size: 1,
            robust: vec![RobustPoint {
                norm: "L2".into(),
                eps: 0.5,
                acc: rob,
                steps: 20,
                n: 100,
            }],
            final_train_acc: None,
            wall_s: 0.0,
        }
    }

    fn headline() -> Headline {
        Headline {
            norm: "L2".into(),
            eps: 0.5,
            source: "test".into(),
        }
    }

    #[test]
    fn model_kinds_and_variants() {
        assert_eq!(ModelKind::of("on_D_R"), Some((ModelKind::DR, false)));
        assert_eq!(ModelKind::of("on_D_R_noise"), Some((ModelKind::DR, true)));
        assert_eq!(ModelKind::of("on_D_rand"), Some((ModelKind::DRand, false)));
        assert_eq!(
            ModelKind::of("on_D_det_eps2"),
            Some((ModelKind::DDet, true))
        );
        assert_eq!(ModelKind::of("on_D_NR"), Some((ModelKind::DNR, false)));
        assert_eq!(ModelKind::of("on_D_"), None);
        assert_eq!(ModelKind::of("resnet"), None);
    }

    #[test]
    fn number_rules() {
        assert_eq!(fig2a(0.48, 0.0, 0.0866).0, Verdict::Holds);
        assert_eq!(fig2a(0.15, 0.10, 0.08).0, Verdict::Partly);
        assert_eq!(fig2a(0.05, 0.10, 0.02).0, Verdict::DoesNotHold);
        assert_eq!(fig2b(0.88, 0.0, 0.95, 0.1), Verdict::Holds);
        assert_eq!(fig2b(0.60, 0.0, 0.95, 0.1), Verdict::Partly);
        assert_eq!(fig2b(0.12, 0.0, 0.95, 0.1), Verdict::DoesNotHold);
        assert_eq!(fig2b(0.60, 0.4, 0.95, 0.1), Verdict::DoesNotHold);
        assert_eq!(fig2c(0.84, 0.95, 0.1), Verdict::Holds);
        assert_eq!(fig2c(0.50, 0.95, 0.1), Verdict::Partly);
        assert_eq!(fig2c(0.20, 0.95, 0.1), Verdict::DoesNotHold);
        assert_eq!(above_chance(0.63, 0.1), Verdict::Holds);
        assert_eq!(above_chance(0.20, 0.1), Verdict::Partly);
        assert_eq!(above_chance(0.12, 0.1), Verdict::DoesNotHold);
        for s in ["holds", "partly", "does not hold", "undetermined", "n/a"] {
            assert_eq!(Verdict::parse(s).unwrap().as_str(), s);
        }
    }

    /// The paper's own CIFAR numbers satisfy every claim under these rules (a case that holds).
    #[test]
    fn paper_numbers_hold() {
        let ms = vec![
            model("C_std", 0.9525, 0.0866),
            model("C_rob", 0.9083, 0.8234),
            model("on_D_R", 0.84, 0.48),
            model("on_D_NR", 0.88, 0.0),
            model("on_D_rand", 0.63, 0.0),
            model("on_D_det", 0.44, 0.0),
            model("on_D_det_eps2", 0.50, 0.0),
        ];
        let h = headline();
        let f2 = figure2_verdicts(&ms, Some(&h), 10);
        assert_eq!(f2.len(), 3);
        assert!(f2.iter().all(|c| c.verdict == Verdict::Holds), "{f2:#?}");
        let t1 = table1_verdicts(&ms, Some(&h), 10);
        assert!(t1.iter().any(|c| c.id == "T1b[on_D_det_eps2]"));
        assert!(t1.iter().all(|c| c.verdict == Verdict::Holds), "{t1:#?}");
    }

    /// A run where the robust-features story fails (a case that does not hold).
    #[test]
    fn contradicting_numbers_do_not_hold() {
        let ms = vec![
            model("C_std", 0.91, 0.02),
            model("on_D_R", 0.25, 0.01),
            model("on_D_NR", 0.85, 0.40),
            model("on_D_rand", 0.11, 0.3),
            model("on_D_det", 0.09, 0.3),
            model("on_control", 0.88, 0.01),
        ];
        let h = headline();
        let f2 = figure2_verdicts(&ms, Some(&h), 10);
        assert_eq!(f2[0].verdict, Verdict::DoesNotHold, "{:?}", f2[0]);
        assert_eq!(f2[1].verdict, Verdict::Partly, "{:?}", f2[1]);
        assert!(f2[1].evidence.contains("ref on_control"));
        assert_eq!(f2[2].verdict, Verdict::DoesNotHold);
        // F2d (with on_control present) comes last: 1% vs 1% is no margin.
        assert_eq!(f2[3].id, "F2d");
        assert_eq!(f2[3].verdict, Verdict::DoesNotHold, "{:?}", f2[3]);
        let t1 = table1_verdicts(&ms, Some(&h), 10);
        assert!(
            t1.iter().all(|c| c.verdict == Verdict::DoesNotHold),
            "{t1:#?}"
        );
    }

    #[test]
    fn missing_inputs_are_undetermined() {
        let ms = vec![model("C_std", 0.91, 0.02), model("on_D_R", 0.8, 0.5)];
        let f2 = figure2_verdicts(&ms, Some(&headline()), 10);
        assert_eq!(f2[0].verdict, Verdict::Undetermined);
        assert!(f2[0].evidence.contains("models/on_D_NR.json"));
        let mut ms2 = ms.clone();
        ms2.push(model("on_D_NR", 0.8, 0.0));
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
