//! Theorem 3 (section `thm3`): alignment of the gradient direction Σ⁻¹μ with μ.

use ndarray::{Array1, Array2};

use crate::error::Result;
use crate::figures::Thm3Figure;
use crate::gaussian::GaussianModel;
use crate::summary::{Check, RunConfig, Thm3EpsRow, Thm3Results, Thm3Row};
use crate::thm2::{robust_covariance_penalty, ConstrainedFit};
use crate::thm3::{alignment_cosine, worst_case_alignment};

use super::rng_for;
use super::theorem1::Theorem1;

/// Theorem 3's results, checks and figure.
pub(super) struct Theorem3 {
    pub(super) results: Thm3Results,
    pub(super) checks: Vec<Check>,
    pub(super) figure: Thm3Figure,
}

/// Theorem 3: alignment cos∠(Σ⁻¹μ, μ) along Theorem 2's closed form (decreasing λ), for random
/// μ in the high-dimensional model, and along the ε-constrained fits.
pub(super) fn theorem3(
    seed: u64,
    cfg: &RunConfig,
    model: &GaussianModel,
    thm1: &Theorem1,
    fits: &[ConstrainedFit],
) -> Result<Theorem3> {
    let d = cfg.thm1_dim;
    let hd_sigma = &thm1.high_dim_sigma;
    let mut lambda_grid: Vec<f64> = vec![f64::INFINITY];
    lambda_grid.extend((0..=40).map(|k| 10f64.powf(3.0 - 5.0 * k as f64 / 40.0)));
    let mut sweep = Vec::new();
    for &lambda in &lambda_grid {
        let r2 = robust_covariance_penalty(model.sigma().view(), lambda)?;
        let rh = robust_covariance_penalty(hd_sigma.view(), lambda)?;
        sweep.push(Thm3Row {
            lambda: lambda.is_finite().then_some(lambda),
            cosine: alignment_cosine(r2.view(), model.mu().view())?,
            worst_case_cosine: worst_case_alignment(r2.view())?,
            worst_case_cosine_high_dim: worst_case_alignment(rh.view())?,
        });
    }
    let mono = |f: &dyn Fn(&Thm3Row) -> f64| sweep.windows(2).all(|w| f(&w[1]) > f(&w[0]));
    let first = &sweep[0];
    let last = sweep.last().expect("non-empty");
    let mut checks = vec![Check {
        name: "thm3_alignment_grows_as_lambda_decreases".into(),
        passed: mono(&|r| r.cosine) && mono(&|r| r.worst_case_cosine) && mono(&|r| r.worst_case_cosine_high_dim),
        detail: format!(
            "2-D cos: {:.4} (MLE) → {:.4} (λ = {:.0e}); worst case 2-D {:.4} → {:.4}; worst case d={d} {:.4} → {:.4}",
            first.cosine,
            last.cosine,
            last.lambda.unwrap_or(f64::INFINITY),
            first.worst_case_cosine,
            last.worst_case_cosine,
            first.worst_case_cosine_high_dim,
            last.worst_case_cosine_high_dim
        ),
    }];
    let mut rng = rng_for(seed, 5);
    let rh_list: Vec<Array2<f64>> = lambda_grid
        .iter()
        .map(|&l| robust_covariance_penalty(hd_sigma.view(), l))
        .collect::<Result<_>>()?;
    let mut mono_count = 0;
    let random_mu_tried = 200;
    for _ in 0..random_mu_tried {
        let mu = Array1::from_iter((0..d).map(|_| rand::Rng::gen_range(&mut rng, -1.0..1.0)));
        let cs: Vec<f64> = rh_list
            .iter()
            .map(|r| alignment_cosine(r.view(), mu.view()))
            .collect::<Result<_>>()?;
        if cs.windows(2).all(|w| w[1] >= w[0] - 1e-12) {
            mono_count += 1;
        }
    }
    let eps_sweep: Vec<Thm3EpsRow> = fits
        .iter()
        .map(|f| {
            Ok(Thm3EpsRow {
                eps: f.eps,
                cosine: alignment_cosine(f.model.sigma().view(), f.model.mu().view())?,
                worst_case_cosine: worst_case_alignment(f.model.sigma().view())?,
            })
        })
        .collect::<Result<_>>()?;
    checks.push(Check {
        name: "thm3_alignment_grows_with_eps_constrained".into(),
        passed: eps_sweep.windows(2).all(|w| w[1].cosine > w[0].cosine),
        detail: format!(
            "cos along eps {:?}: {:?}",
            cfg.fig4_eps,
            eps_sweep
                .iter()
                .map(|r| (r.cosine * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        ),
    });
    let finite: Vec<(f64, &Thm3Row)> = sweep
        .iter()
        .filter_map(|r| r.lambda.map(|l| (1.0 / l, r)))
        .collect();
    let figure = Thm3Figure {
        dim: d,
        kappa: thm1.kappa_max,
        cosine_2d: finite.iter().map(|(x, r)| (*x, r.cosine)).collect(),
        worst_2d: finite
            .iter()
            .map(|(x, r)| (*x, r.worst_case_cosine))
            .collect(),
        worst_high_dim: finite
            .iter()
            .map(|(x, r)| (*x, r.worst_case_cosine_high_dim))
            .collect(),
        eps_cosine: eps_sweep.iter().map(|r| (r.eps, r.cosine)).collect(),
        eps_worst: eps_sweep
            .iter()
            .map(|r| (r.eps, r.worst_case_cosine))
            .collect(),
    };
    Ok(Theorem3 {
        results: Thm3Results {
            lambda_sweep: sweep,
            eps_sweep,
            random_mu_monotone: mono_count,
            random_mu_tried,
        },
        checks,
        figure,
    })
}
