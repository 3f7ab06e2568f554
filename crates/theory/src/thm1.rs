//! Theorem 1: vulnerability of the standard MLE comes from the misalignment between the
//! Mahalanobis metric `Σ⁻¹` and the ℓ2 metric of the adversary.
//!
//! The adversary maximises the penalised loss `ℓ(x+δ) - (λ/2)‖δ‖²` with the Gaussian negative
//! log-likelihood `ℓ(x) = ½(x-yμ)ᵀΣ⁻¹(x-yμ) + ½ln|Σ|`. With `v = x - yμ` the maximiser is
//! `δ* = (λΣ - I)⁻¹ v`, which needs `λΣ - I ≻ 0`, i.e. `λ > 1/σ_min(Σ)`. For the true parameters
//! (`v ~ N(0, Σ*)`) the expected loss increase is
//!
//! `E[ℓ(x+δ*) - ℓ(x)] = ½ (tr[(I + (λΣ* - I)⁻¹)²] - d)`,
//!
//! which the paper states without the factor ½ ([`vulnerability_paper`]). In Σ*'s eigenbasis it is
//! `½ Σᵢ [(λσᵢ/(λσᵢ - 1))² - 1]`; the summand is convex in `σᵢ`, so for a fixed trace `k` the sum
//! is smallest when all `σᵢ = k/d`, i.e. `Σ* = (k/d) I`, where the Mahalanobis and ℓ2 metrics agree.

pub use crate::summary::McEstimate;
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use rand::Rng;

use crate::error::{check_positive, invalid, Result};
use crate::gaussian::GaussianModel;
use crate::linalg::{check_spd, check_vector, sym_eig, SymEig};
use crate::optim::{minimise, GdOptions};

/// Eigendecomposition of `Σ` after checking that `λΣ - I ≻ 0` (the admissibility condition
/// `λ > 1/σ_min(Σ)`, the paper's `C ≥ 1/σ_min(Σ*)`).
pub fn admissible_eig(sigma: ArrayView2<f64>, lambda: f64) -> Result<SymEig> {
    check_spd("sigma", sigma)?;
    check_positive("lambda", lambda)?;
    let e = sym_eig(sigma)?;
    if lambda * e.min() <= 1.0 {
        return Err(invalid(
            "lambda",
            format!(
                "the penalty adversary needs lambda > 1/sigma_min = {:.6}, got {lambda}",
                1.0 / e.min()
            ),
        ));
    }
    Ok(e)
}

/// The smallest admissible penalty `1/σ_min(Σ)` (exclusive bound).
pub fn lambda_min(sigma: ArrayView2<f64>) -> Result<f64> {
    check_spd("sigma", sigma)?;
    Ok(1.0 / sym_eig(sigma)?.min())
}

/// Closed-form optimal perturbation `δ* = (λΣ - I)⁻¹ v` of the quadratic-penalty adversary,
/// for the residual `v = x - yμ`.
pub fn penalty_adversary_delta(
    sigma: ArrayView2<f64>,
    lambda: f64,
    v: ArrayView1<f64>,
) -> Result<Array1<f64>> {
    let e = admissible_eig(sigma, lambda)?;
    check_vector("v", v, e.values.len())?;
    Ok(apply_fn(&e, v, |s| 1.0 / (lambda * s - 1.0)))
}

fn apply_fn(e: &SymEig, v: ArrayView1<f64>, f: impl Fn(f64) -> f64) -> Array1<f64> {
    let mut c = e.to_basis(v);
    for (ci, &s) in c.iter_mut().zip(e.values.iter()) {
        *ci *= f(s);
    }
    e.vectors.dot(&c)
}

/// Vulnerability `½ (tr[(I + (λΣ* - I)⁻¹)²] - d)`: the expected increase of the negative
/// log-likelihood of the true model under the optimal penalty-`λ` perturbation.
pub fn vulnerability(sigma_star: ArrayView2<f64>, lambda: f64) -> Result<f64> {
    let e = admissible_eig(sigma_star, lambda)?;
    Ok(0.5
        * e.values
            .iter()
            .map(|&s| {
                let m = lambda * s / (lambda * s - 1.0);
                m * m - 1.0
            })
            .sum::<f64>())
}

/// The paper's form `tr[(I + (CΣ* - I)⁻¹)²] - d` (twice [`vulnerability`]).
pub fn vulnerability_paper(sigma_star: ArrayView2<f64>, lambda: f64) -> Result<f64> {
    Ok(2.0 * vulnerability(sigma_star, lambda)?)
}

/// Expected value of the penalised inner maximum minus the clean loss,
/// `E[max_δ ℓ(x+δ) - (λ/2)‖δ‖² - ℓ(x)] = ½ Σᵢ 1/(λσᵢ - 1)` (the adversary's net gain).
pub fn penalised_gain(sigma_star: ArrayView2<f64>, lambda: f64) -> Result<f64> {
    let e = admissible_eig(sigma_star, lambda)?;
    Ok(0.5
        * e.values
            .iter()
            .map(|&s| 1.0 / (lambda * s - 1.0))
            .sum::<f64>())
}

impl McEstimate {
    fn from_values(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Self {
            mean,
            std_err: (var / n as f64).sqrt(),
            n,
        }
    }
}

/// How the adversary's perturbation is computed in [`loss_increase_mc`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InnerSolver {
    /// The closed form `δ* = (λΣ - I)⁻¹ v`.
    ClosedForm,
    /// Numerical gradient ascent on `ℓ(x+δ) - (λ/2)‖δ‖²` from `δ = 0`.
    GradientAscent,
}

/// Numerical inner maximisation of `g(δ) = ½(v+δ)ᵀΣ⁻¹(v+δ) - (λ/2)‖δ‖²` by gradient ascent
/// (BB steps with Armijo backtracking), starting at `δ = 0`. Returns the maximiser.
pub fn penalty_inner_max_numerical(
    sigma: ArrayView2<f64>,
    lambda: f64,
    v: ArrayView1<f64>,
) -> Result<Array1<f64>> {
    let e = admissible_eig(sigma, lambda)?;
    let d = e.values.len();
    check_vector("v", v, d)?;
    let a = e.map(|s| 1.0 / s);
    let a: Vec<f64> = a.iter().cloned().collect();
    let v: Vec<f64> = v.iter().cloned().collect();
    Ok(Array1::from_vec(gradient_ascent(&a, d, lambda, &v)?))
}

/// Gradient ascent on `½(v+δ)ᵀA(v+δ) - (λ/2)‖δ‖²` with `A` row-major `d×d` (plain loops: this is
/// the hot path of the Monte-Carlo check).
fn gradient_ascent(a: &[f64], d: usize, lambda: f64, v: &[f64]) -> Result<Vec<f64>> {
    let mut u = vec![0.0; d];
    let mut au = vec![0.0; d];
    // Minimise -g.
    let obj = |delta: &[f64]| {
        for i in 0..d {
            u[i] = v[i] + delta[i];
        }
        let mut val = 0.0;
        for i in 0..d {
            let mut s = 0.0;
            for j in 0..d {
                s += a[i * d + j] * u[j];
            }
            au[i] = s;
            val += 0.5 * u[i] * s - 0.5 * lambda * delta[i] * delta[i];
        }
        let grad: Vec<f64> = (0..d).map(|i| -(au[i] - lambda * delta[i])).collect();
        Some((-val, grad))
    };
    let scale = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    let r = minimise(
        obj,
        vec![0.0; d],
        GdOptions {
            max_iter: 10_000,
            grad_tol: 1e-11 * scale * lambda.max(1.0),
            initial_step: 1.0 / lambda,
        },
    )?;
    Ok(r.x)
}

/// Monte-Carlo estimate of `E[ℓ(x+δ*) - ℓ(x)]` for the true model `N(±μ, Σ*)` (the MLE in the
/// population limit) under the penalty-`λ` adversary, with `n` samples.
pub fn loss_increase_mc<R: Rng + ?Sized>(
    sigma_star: ArrayView2<f64>,
    lambda: f64,
    n: usize,
    solver: InnerSolver,
    rng: &mut R,
) -> Result<McEstimate> {
    let e = admissible_eig(sigma_star, lambda)?;
    if n < 2 {
        return Err(invalid("n", "need at least 2 samples"));
    }
    let d = e.values.len();
    // The loss difference does not depend on μ; use μ = 0.
    let model = GaussianModel::new(Array1::zeros(d), sigma_star.to_owned())?;
    let samples = model.sample(n, rng)?;
    let a = e.map(|s| 1.0 / s);
    let a_flat: Vec<f64> = a.iter().cloned().collect();
    // Closed form in the eigenbasis: δ* = Q diag(1/(λσᵢ - 1)) Qᵀ v.
    let b = e.map(|s| 1.0 / (lambda * s - 1.0));
    let b_flat: Vec<f64> = b.iter().cloned().collect();
    let quad = |x: &[f64]| -> f64 {
        let mut q = 0.0;
        for i in 0..d {
            for j in 0..d {
                q += x[i] * a_flat[i * d + j] * x[j];
            }
        }
        0.5 * q
    };
    let mut values = Vec::with_capacity(n);
    for row in samples.x.axis_iter(Axis(0)) {
        let v: Vec<f64> = row.iter().cloned().collect();
        let delta = match solver {
            InnerSolver::ClosedForm => (0..d)
                .map(|i| (0..d).map(|j| b_flat[i * d + j] * v[j]).sum())
                .collect(),
            InnerSolver::GradientAscent => gradient_ascent(&a_flat, d, lambda, &v)?,
        };
        let u: Vec<f64> = (0..d).map(|i| v[i] + delta[i]).collect();
        values.push(quad(&u) - quad(&v));
    }
    Ok(McEstimate::from_values(&values))
}

/// Numerically minimises [`vulnerability`] over covariance spectra with a fixed trace `k`
/// (eigenvalues `σᵢ = 1/λ + (k - d/λ)·softmax(z)ᵢ`, so every candidate is admissible), from a
/// random start. Returns the minimising eigenvalues; Theorem 1 predicts all equal `k/d`.
pub fn minimise_vulnerability_fixed_trace<R: Rng + ?Sized>(
    d: usize,
    k: f64,
    lambda: f64,
    rng: &mut R,
) -> Result<Vec<f64>> {
    if d == 0 {
        return Err(invalid("d", "must be >= 1"));
    }
    check_positive("k", k)?;
    check_positive("lambda", lambda)?;
    let slack = k - d as f64 / lambda;
    if slack <= 0.0 {
        return Err(invalid(
            "k",
            format!("fixed trace k must exceed d/lambda = {}", d as f64 / lambda),
        ));
    }
    let eig = |z: &[f64]| {
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let ex: Vec<f64> = z.iter().map(|zi| (zi - m).exp()).collect();
        let s: f64 = ex.iter().sum();
        let p: Vec<f64> = ex.iter().map(|e| e / s).collect();
        let sig: Vec<f64> = p.iter().map(|pi| 1.0 / lambda + slack * pi).collect();
        (p, sig)
    };
    let obj = |z: &[f64]| {
        let (p, sig) = eig(z);
        let mut val = 0.0;
        // d/dσ of ½[(λσ/(λσ-1))² - 1] = -λ²σ/(λσ-1)³.
        let dsig: Vec<f64> = sig
            .iter()
            .map(|&s| {
                let m = lambda * s / (lambda * s - 1.0);
                val += 0.5 * (m * m - 1.0);
                -lambda * lambda * s / (lambda * s - 1.0).powi(3)
            })
            .collect();
        if !val.is_finite() {
            return None;
        }
        // Chain rule through softmax: ∂σᵢ/∂zⱼ = slack·pᵢ(δᵢⱼ - pⱼ).
        let dot: f64 = dsig.iter().zip(&p).map(|(g, pi)| g * pi).sum();
        let grad = (0..z.len())
            .map(|j| slack * p[j] * (dsig[j] - dot))
            .collect();
        Some((val, grad))
    };
    let z0: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.5..1.5)).collect();
    let r = minimise(
        obj,
        z0,
        GdOptions {
            max_iter: 20_000,
            grad_tol: 1e-12,
            initial_step: 0.1,
        },
    )?;
    Ok(eig(&r.x).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{frobenius, random_spd, spd_from_eigenvalues};
    use ndarray::{array, Array2};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn closed_form_delta_is_stationary() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let sigma = random_spd(4, 0.2, 3.0, &mut rng);
        let lambda = 1.5 * lambda_min(sigma.view()).unwrap();
        let v = array![0.3, -1.0, 0.7, 0.1];
        let delta = penalty_adversary_delta(sigma.view(), lambda, v.view()).unwrap();
        let a = crate::linalg::spd_inverse("s", sigma.view()).unwrap();
        let grad = a.dot(&(&v + &delta)) - &delta * lambda;
        assert!(grad.iter().all(|g| g.abs() < 1e-10));
        let num = penalty_inner_max_numerical(sigma.view(), lambda, v.view()).unwrap();
        assert!(
            (&num - &delta).iter().all(|x| x.abs() < 1e-7),
            "{num} vs {delta}"
        );
    }

    #[test]
    fn inadmissible_lambda_is_rejected() {
        let sigma = array![[1.0, 0.0], [0.0, 0.1]];
        assert!(vulnerability(sigma.view(), 5.0).is_err());
        assert!(vulnerability(sigma.view(), 10.0).is_err());
        assert!(vulnerability(sigma.view(), 10.5).is_ok());
        assert!(vulnerability(sigma.view(), f64::NAN).is_err());
    }

    #[test]
    fn vulnerability_matches_matrix_trace_formula() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let sigma = random_spd(5, 0.1, 2.0, &mut rng);
        let lambda = 2.0 * lambda_min(sigma.view()).unwrap();
        let d = 5;
        let e = sym_eig(sigma.view()).unwrap();
        let inv = e.map(|s| 1.0 / (lambda * s - 1.0));
        let m = &Array2::<f64>::eye(d) + &inv;
        let tr = m.dot(&m).diag().sum();
        let want = 0.5 * (tr - d as f64);
        assert!((vulnerability(sigma.view(), lambda).unwrap() - want).abs() < 1e-10);
    }

    #[test]
    fn monte_carlo_matches_closed_form() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let sigma = spd_from_eigenvalues(&[0.2, 0.5, 1.0, 2.3], &mut rng);
        for factor in [1.5, 3.0] {
            let lambda = factor / 0.2;
            let cf = vulnerability(sigma.view(), lambda).unwrap();
            let mc = loss_increase_mc(
                sigma.view(),
                lambda,
                20_000,
                InnerSolver::ClosedForm,
                &mut rng,
            )
            .unwrap();
            assert!((mc.mean - cf).abs() < 4.0 * mc.std_err, "{cf} vs {mc:?}");
            let ga = loss_increase_mc(
                sigma.view(),
                lambda,
                300,
                InnerSolver::GradientAscent,
                &mut rng,
            )
            .unwrap();
            assert!((ga.mean - cf).abs() < 4.0 * ga.std_err, "{cf} vs {ga:?}");
        }
    }

    #[test]
    fn isotropic_minimises_for_fixed_trace() {
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let d = 6;
        let k = 6.0;
        let lambda = 8.0;
        let iso = Array2::<f64>::eye(d) * (k / d as f64);
        let v_iso = vulnerability(iso.view(), lambda).unwrap();
        let mut checked = 0;
        for _ in 0..200 {
            let s = random_spd(d, 0.2, 3.0, &mut rng);
            let s = &s * (k / s.diag().sum());
            if lambda_min(s.view()).unwrap() >= lambda {
                continue;
            }
            checked += 1;
            assert!(vulnerability(s.view(), lambda).unwrap() >= v_iso - 1e-12);
        }
        assert!(checked > 50);
        let eig = minimise_vulnerability_fixed_trace(d, k, lambda, &mut rng).unwrap();
        for s in &eig {
            assert!((s - k / d as f64).abs() < 1e-5, "{eig:?}");
        }
        let _ = frobenius(iso.view());
    }
}
