//! The risk table (section `risk_table`): closed-form against Monte-Carlo standard and adversarial
//! risk of the MLE and robust classifiers of the 2-D model.

use crate::error::Result;
use crate::gaussian::{empirical_adversarial_risk, GaussianModel};
use crate::summary::{Check, RiskRow, RunConfig};

use super::figure4::RobustFits;
use super::rng_for;

/// Closed-form vs Monte-Carlo standard and adversarial risk of the MLE and robust classifiers.
pub(super) fn risk_table(
    seed: u64,
    cfg: &RunConfig,
    model: &GaussianModel,
    fits: &RobustFits,
) -> Result<(Vec<RiskRow>, Check)> {
    let mut risks = Vec::new();
    let mut rng = rng_for(seed, 2);
    let test = model.sample(cfg.risk_mc_samples, &mut rng)?;
    let mut classifiers = vec![("MLE (eps=0)".to_string(), fits.mle.bayes_weights()?)];
    for fit in fits.fits.iter().skip(1) {
        classifiers.push((
            format!("robust eps={}", fit.eps),
            fit.model.bayes_weights()?,
        ));
    }
    let mut max_z = 0.0f64;
    for (name, w) in &classifiers {
        for eps in [0.0, 0.1, 0.2, 0.3, 0.5] {
            let cf = model.linear_adversarial_risk(w.view(), eps)?;
            let mc = empirical_adversarial_risk(&test, w.view(), eps)?;
            let se = (cf * (1.0 - cf) / test.len() as f64).sqrt().max(1e-12);
            max_z = max_z.max((cf - mc).abs() / se);
            risks.push(RiskRow {
                classifier: name.clone(),
                eps,
                closed_form: cf,
                monte_carlo: mc,
                std_err: se,
            });
        }
    }
    let check = Check {
        name: "risk_closed_form_matches_monte_carlo".into(),
        passed: max_z < 5.0,
        detail: format!(
            "largest |closed − MC| / s.e. = {max_z:.2} over {} rows",
            risks.len()
        ),
    };
    Ok((risks, check))
}
