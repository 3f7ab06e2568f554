//! The Table 1 claims (T1a–T1c): models trained on D_rand and D_det are above chance and not
//! robust, decided by the rules of [`super`].
use super::{
    binding, find, missing_models, pct, rob_at, undetermined, ClaimVerdict, ModelKind, DECIDE,
    NEAR_ZERO_ROBUST,
};
use crate::results::{Headline, ModelResult, ModelRole};
use crate::uncertainty::{above_chance, combine_parts, Margin};

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
