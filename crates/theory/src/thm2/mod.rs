//! Theorem 2: the robust maximum-likelihood parameters.
//!
//! **Penalty form.** Against the quadratic-penalty adversary the inner maximum of the loss is
//! `½vᵀ(Σ - I/λ)⁻¹v + ½ln|Σ|` (for `Σ ≻ I/λ`), so the robust objective with `E[vvᵀ] = Σ*` is
//!
//! `J_λ(Σ) = ½ tr[(Σ - I/λ)⁻¹ Σ*] + ½ ln|Σ|`.
//!
//! Its minimiser is, in Σ*'s eigenbasis ([`robust_covariance_penalty`]),
//! `Σ_r = ½Σ* + (1/λ)I + sqrt((1/λ)Σ* + ¼Σ*²)`, and `μ_r = μ*`.
//! [`minimise_penalty_objective`] checks this by direct numerical minimisation over all SPD
//! matrices (Cholesky parametrisation of `Σ - I/λ`).
//!
//! **Constrained form.** The robust MLE of the paper minimises
//! `E[max_{‖δ‖₂≤ε} ℓ(x+δ, y; μ, Σ)]`. The inner problem (maximise a convex quadratic over a ball)
//! is a trust-region problem solved exactly by the secular equation ([`constrained_inner_max`]);
//! [`fit_constrained_robust`] minimises the sample objective over `(μ, Σ)` numerically.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{check_positive, invalid, Result};
use crate::linalg::{check_spd, cholesky, frobenius, spd_inverse, spd_log_det, sym_eig};
use crate::optim::{minimise, GdOptions, GdReport};

mod constrained;

pub use constrained::{
    constrained_descent_probe, constrained_inner_max, constrained_robust_objective,
    fit_constrained_robust, ConstrainedFit,
};

/// Closed-form robust covariance of Theorem 2 (penalty form):
/// `Σ_r = ½Σ* + (1/λ)I + sqrt((1/λ)Σ* + ¼Σ*²)`, computed in Σ*'s eigenbasis
/// (eigenvalue-wise `r(σ) = σ/2 + 1/λ + sqrt(σ/λ + σ²/4)`).
///
/// `λ = ∞` is allowed and returns `Σ*`.
pub fn robust_covariance_penalty(sigma_star: ArrayView2<f64>, lambda: f64) -> Result<Array2<f64>> {
    check_spd("sigma_star", sigma_star)?;
    if lambda.is_nan() || lambda <= 0.0 {
        return Err(invalid("lambda", format!("must be > 0, got {lambda}")));
    }
    let e = sym_eig(sigma_star)?;
    let t = if lambda.is_infinite() {
        0.0
    } else {
        1.0 / lambda
    };
    Ok(e.map(|s| robust_eigenvalue(s, t)))
}

/// `r(σ, t) = σ/2 + t + sqrt(tσ + σ²/4)` with `t = 1/λ`: the positive root `s` of
/// `s² - σs - σt = 0` shifted by `t`.
pub fn robust_eigenvalue(sigma: f64, t: f64) -> f64 {
    0.5 * sigma + t + (t * sigma + 0.25 * sigma * sigma).sqrt()
}

/// Root-mean-square size of the penalty adversary's perturbation against the robust fit:
/// with `v ~ N(0, Σ*)` and `δ = (λΣ_r - I)⁻¹v`, `E‖δ‖² = tr[(λΣ_r - I)⁻¹Σ*(λΣ_r - I)⁻¹]`, which
/// simplifies (eigenvalue-wise, using the stationarity `s² = σ(s + 1/λ)`, `s = r - 1/λ`) to
/// `tr(Σ_r⁻¹)/λ²`. Returns `sqrt(tr(Σ_r⁻¹))/λ`.
pub fn penalty_rms_radius(sigma_star: ArrayView2<f64>, lambda: f64) -> Result<f64> {
    check_positive("lambda", lambda)?;
    check_spd("sigma_star", sigma_star)?;
    let e = sym_eig(sigma_star)?;
    let t = 1.0 / lambda;
    let tr_inv: f64 = e
        .values
        .iter()
        .map(|&s| 1.0 / robust_eigenvalue(s, t))
        .sum();
    Ok(tr_inv.sqrt() / lambda)
}

/// The λ at which the penalty adversary's RMS perturbation size [`penalty_rms_radius`] equals
/// `eps` (the function is strictly decreasing in λ; bisection on `ln λ`). A principled, but not
/// unique, way to map a constraint radius ε to a penalty λ.
pub fn lambda_for_rms_radius(sigma_star: ArrayView2<f64>, eps: f64) -> Result<f64> {
    check_positive("eps", eps)?;
    let (mut lo, mut hi) = (-30.0f64, 30.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if penalty_rms_radius(sigma_star, mid.exp())? > eps {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((0.5 * (lo + hi)).exp())
}

/// Penalty-form robust objective `J_λ(Σ) = ½tr[(Σ - I/λ)⁻¹Σ*] + ½ln|Σ|`
/// (the constant `(d/2)ln 2π` omitted). Fails unless `Σ - I/λ ≻ 0`.
pub fn penalty_robust_objective(
    sigma: ArrayView2<f64>,
    sigma_star: ArrayView2<f64>,
    lambda: f64,
) -> Result<f64> {
    check_positive("lambda", lambda)?;
    let d = check_spd("sigma_star", sigma_star)?;
    check_spd("sigma", sigma)?;
    if sigma.nrows() != d {
        return Err(invalid("sigma", "dimension differs from sigma_star"));
    }
    let s = &sigma - &(Array2::<f64>::eye(d) / lambda);
    let s_inv = spd_inverse("sigma - I/lambda", s.view())?;
    Ok(0.5 * (&s_inv * &sigma_star).sum() + 0.5 * spd_log_det("sigma", sigma)?)
}

/// Result of a numerical covariance fit.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericalCovariance {
    /// The minimiser found.
    pub sigma: Array2<f64>,
    /// Objective value there.
    pub objective: f64,
    /// Optimiser diagnostics.
    pub report: GdReport,
}

fn tril_to_mat(theta: &[f64], d: usize) -> Array2<f64> {
    let mut l = Array2::<f64>::zeros((d, d));
    let mut k = 0;
    for i in 0..d {
        for j in 0..=i {
            l[[i, j]] = theta[k];
            k += 1;
        }
    }
    l
}

fn mat_to_tril(l: ArrayView2<f64>) -> Vec<f64> {
    let d = l.nrows();
    let mut out = Vec::with_capacity(d * (d + 1) / 2);
    for i in 0..d {
        for j in 0..=i {
            out.push(l[[i, j]]);
        }
    }
    out
}

/// A fixed SPD starting point `S₀ = m(I + 0.3P)` (`m = tr Σ*/d`, `P` symmetric with zero diagonal
/// and off-diagonal entries `±1/d` alternating in sign), which in general does not commute with `Σ*`.
pub fn generic_start(sigma_star: ArrayView2<f64>) -> Array2<f64> {
    let d = sigma_star.nrows();
    let m = sigma_star.diag().sum() / d as f64;
    Array2::from_shape_fn((d, d), |(i, j)| {
        if i == j {
            m
        } else {
            let sign = if (i + j) % 2 == 0 { 1.0 } else { -1.0 };
            m * 0.3 * sign / d as f64
        }
    })
}

/// Directly minimises the penalty-form objective [`penalty_robust_objective`] over all SPD
/// matrices by gradient descent on the Cholesky factor `L` of `S = Σ - I/λ = LLᵀ`
/// (gradient `∂J/∂L = 2GL`, `G = ½[(S + I/λ)⁻¹ - S⁻¹Σ*S⁻¹]`). Does not use the closed form.
///
/// Unless `init` (a candidate `Σ` with `Σ - I/λ ≻ 0`) is given, it starts from
/// [`generic_start`], which does not commute with `Σ*`: a start commuting with `Σ*` would keep every
/// iterate in `Σ*`'s eigenbasis (the gradient then commutes too), which would make the check blind
/// to minimisers outside that family.
pub fn minimise_penalty_objective(
    sigma_star: ArrayView2<f64>,
    lambda: f64,
    init: Option<ArrayView2<f64>>,
    opts: GdOptions,
) -> Result<NumericalCovariance> {
    check_positive("lambda", lambda)?;
    let d = check_spd("sigma_star", sigma_star)?;
    let eye_t = Array2::<f64>::eye(d) / lambda;
    let s0 = match init {
        Some(s) => {
            check_spd("init", s)?;
            &s - &eye_t
        }
        None => generic_start(sigma_star),
    };
    let l0 = cholesky("init - I/lambda", s0.view())?;
    let ss = sigma_star.to_owned();
    let obj = |theta: &[f64]| {
        let l = tril_to_mat(theta, d);
        let s = l.dot(&l.t());
        let s_inv = spd_inverse("S", s.view()).ok()?;
        let sigma = &s + &eye_t;
        let sig_inv = spd_inverse("sigma", sigma.view()).ok()?;
        let logdet = spd_log_det("sigma", sigma.view()).ok()?;
        let val = 0.5 * (&s_inv * &ss).sum() + 0.5 * logdet;
        let g = (&sig_inv - &s_inv.dot(&ss).dot(&s_inv)) * 0.5;
        let gl = g.dot(&l) * 2.0;
        Some((val, mat_to_tril(gl.view())))
    };
    let report = minimise(obj, mat_to_tril(l0.view()), opts)?;
    let l = tril_to_mat(&report.x, d);
    let sigma = l.dot(&l.t()) + &eye_t;
    Ok(NumericalCovariance {
        sigma,
        objective: report.value,
        report,
    })
}

/// Anisotropy of a covariance: `‖Σ/(tr Σ/d) - I‖_F`, zero exactly for multiples of the identity.
pub fn anisotropy(sigma: ArrayView2<f64>) -> Result<f64> {
    let d = check_spd("sigma", sigma)?;
    let tr = sigma.diag().sum();
    let scaled = &sigma * (d as f64 / tr);
    Ok(frobenius((&scaled - &Array2::<f64>::eye(d)).view()))
}

/// The `λ` whose closed-form `Σ_r(λ)` is closest (relative Frobenius) to `sigma`, searched on a
/// log grid over `[1e-3, 1e6]` then refined by golden section. Returns `(λ, relative error)`.
pub fn best_fit_lambda(sigma_star: ArrayView2<f64>, sigma: ArrayView2<f64>) -> Result<(f64, f64)> {
    check_spd("sigma", sigma)?;
    let norm = frobenius(sigma);
    let err = |log_l: f64| -> Result<f64> {
        let r = robust_covariance_penalty(sigma_star, log_l.exp())?;
        Ok(frobenius((&r - &sigma).view()) / norm)
    };
    let (a, b) = (1e-3f64.ln(), 1e6f64.ln());
    let steps = 200;
    let mut best = (a, err(a)?);
    for k in 1..=steps {
        let t = a + (b - a) * k as f64 / steps as f64;
        let e = err(t)?;
        if e < best.1 {
            best = (t, e);
        }
    }
    let h = (b - a) / steps as f64;
    let (mut lo, mut hi) = (best.0 - h, best.0 + h);
    let g = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..80 {
        let m1 = hi - g * (hi - lo);
        let m2 = lo + g * (hi - lo);
        if err(m1)? < err(m2)? {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    let t = 0.5 * (lo + hi);
    Ok((t.exp(), err(t)?))
}

/// Comparison of the closed form with a numerical minimisation (relative Frobenius error and
/// objective gap `J(numerical) - J(closed form)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClosedFormCheck {
    /// `‖Σ_num - Σ_r‖_F / ‖Σ_r‖_F`.
    pub rel_error: f64,
    /// `J(Σ_num) - J(Σ_r)`; ≥ 0 up to round-off if the closed form is the minimiser.
    pub objective_gap: f64,
    /// Optimiser iterations.
    pub iterations: usize,
    /// Whether the optimiser met its gradient tolerance.
    pub converged: bool,
    /// Why the optimiser stopped.
    pub stop: crate::optim::StopReason,
}

/// Runs [`minimise_penalty_objective`] and compares with [`robust_covariance_penalty`].
pub fn check_closed_form(
    sigma_star: ArrayView2<f64>,
    lambda: f64,
    opts: GdOptions,
) -> Result<ClosedFormCheck> {
    let cf = robust_covariance_penalty(sigma_star, lambda)?;
    let num = minimise_penalty_objective(sigma_star, lambda, None, opts)?;
    let j_cf = penalty_robust_objective(cf.view(), sigma_star, lambda)?;
    Ok(ClosedFormCheck {
        rel_error: frobenius((&num.sigma - &cf).view()) / frobenius(cf.view()),
        objective_gap: num.objective - j_cf,
        iterations: num.report.iterations,
        converged: num.report.converged,
        stop: num.report.stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{random_spd, rotation2};
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn closed_form_limits() {
        let s = array![[2.0, 0.3], [0.3, 0.5]];
        let inf = robust_covariance_penalty(s.view(), f64::INFINITY).unwrap();
        assert!(frobenius((&inf - &s).view()) < 1e-12);
        let big = robust_covariance_penalty(s.view(), 1e9).unwrap();
        assert!(frobenius((&big - &s).view()) < 1e-4);
        // Small lambda: Σ_r ≈ (1/λ)(I + ...) dominated by (2/λ)·I... anisotropy vanishes.
        let small = robust_covariance_penalty(s.view(), 1e-6).unwrap();
        assert!(anisotropy(small.view()).unwrap() < 1e-2);
        assert!(anisotropy(s.view()).unwrap() > 0.5);
    }

    #[test]
    fn numerical_check_starts_off_the_commuting_family() {
        let sigma = rotation2(0.4)
            .dot(&array![[1.0, 0.0], [0.0, 0.05]])
            .dot(&rotation2(0.4).t());
        let s0 = generic_start(sigma.view());
        check_spd("s0", s0.view()).unwrap();
        let comm = s0.dot(&sigma) - sigma.dot(&s0);
        assert!(frobenius(comm.view()) > 1e-3);
        // ... and still reaches the closed form.
        let c = check_closed_form(sigma.view(), 2.0, GdOptions::default()).unwrap();
        assert!(c.rel_error < 1e-6, "{c:?}");
    }

    #[test]
    fn rms_radius_identity() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        let s = random_spd(3, 0.1, 3.0, &mut rng);
        for lambda in [0.3, 2.0, 30.0] {
            let r = robust_covariance_penalty(s.view(), lambda).unwrap();
            let m = &r * lambda - &Array2::<f64>::eye(3);
            let mi = spd_inverse("m", m.view()).unwrap();
            let direct = mi.dot(&s).dot(&mi).diag().sum().sqrt();
            let formula = penalty_rms_radius(s.view(), lambda).unwrap();
            assert!(
                (direct - formula).abs() < 1e-10 * direct,
                "{direct} {formula}"
            );
            let back = lambda_for_rms_radius(s.view(), formula).unwrap();
            assert!((back - lambda).abs() < 1e-8 * lambda);
        }
    }

    #[test]
    fn closed_form_is_stationary_and_beats_perturbations() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let s = random_spd(3, 0.1, 3.0, &mut rng);
        let lambda = 0.7;
        let r = robust_covariance_penalty(s.view(), lambda).unwrap();
        let j = penalty_robust_objective(r.view(), s.view(), lambda).unwrap();
        for _ in 0..50 {
            let p = random_spd(3, 0.5, 1.5, &mut rng) * 1e-3;
            let jr = penalty_robust_objective((&r + &p).view(), s.view(), lambda).unwrap();
            assert!(jr >= j - 1e-12);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let s = array![[1.0, 0.0], [0.0, 1.0]];
        assert!(robust_covariance_penalty(s.view(), 0.0).is_err());
        assert!(robust_covariance_penalty(s.view(), f64::NAN).is_err());
        assert!(robust_covariance_penalty(array![[1.0, 2.0], [2.0, 1.0]].view(), 1.0).is_err());
        // sigma - I/lambda not PD.
        assert!(penalty_robust_objective(s.view(), s.view(), 0.5).is_err());
    }
}
