//! The Figure 2 claims (F2a–F2d): what training on D_R and D_NR gives, decided by the margin
//! rules of [`super`].
use super::{
    fig2b, fig2c, find, gate_note, margin_claim, missing_models, pct, reference, rob_at,
    undetermined, ClaimVerdict, ModelKind, DECIDE, GOOD_STD_MAX_DROP,
};
use crate::results::{Headline, ModelResult};
use crate::uncertainty::Margin;

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
