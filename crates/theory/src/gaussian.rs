//! The two-class Gaussian model of section 4: `y ~ Unif{-1,+1}`, `x ~ N(y·μ, Σ)`.
//!
//! Provides seeded sampling, the maximum-likelihood fit of `(μ, Σ)`, the Gaussian negative
//! log-likelihood, the Bayes/MLE linear classifier `sign(wᵀx)` with `w = Σ⁻¹μ`, and the closed-form
//! standard and ℓ2-adversarial risks of any linear classifier `sign(wᵀx)`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::{check_nonneg, invalid, Result};
use crate::linalg::{
    check_symmetric, check_vector, cholesky, cholesky_solve, spd_inverse, spd_log_det,
};
use crate::stats::normal_cdf;

/// Labelled samples: rows of `x` are points, `y[i] ∈ {-1, +1}` their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSamples {
    /// `n×d` matrix of points.
    pub x: Array2<f64>,
    /// `n` labels in `{-1.0, +1.0}`.
    pub y: Array1<f64>,
}

impl LabelledSamples {
    /// Validates shapes, finiteness and labels.
    pub fn new(x: Array2<f64>, y: Array1<f64>) -> Result<Self> {
        let (n, d) = x.dim();
        if n == 0 || d == 0 {
            return Err(invalid(
                "x",
                format!("must be non-empty, got shape {n}x{d}"),
            ));
        }
        if y.len() != n {
            return Err(invalid(
                "y",
                format!("has {} labels but x has {n} rows", y.len()),
            ));
        }
        if let Some(bad) = x.iter().find(|v| !v.is_finite()) {
            return Err(invalid("x", format!("contains a non-finite entry ({bad})")));
        }
        if let Some((i, bad)) = y
            .iter()
            .enumerate()
            .find(|(_, v)| **v != 1.0 && **v != -1.0)
        {
            return Err(invalid(
                "y",
                format!("labels must be -1 or +1, y[{i}] = {bad}"),
            ));
        }
        Ok(Self { x, y })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Always false (construction rejects empty sets); provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.x.ncols()
    }

    /// Residuals `vᵢ = xᵢ - yᵢ·μ`, one per row.
    pub fn residuals(&self, mu: ArrayView1<f64>) -> Result<Array2<f64>> {
        check_vector("mu", mu, self.dim())?;
        let mut v = self.x.clone();
        for (mut row, &y) in v.axis_iter_mut(Axis(0)).zip(self.y.iter()) {
            row.scaled_add(-y, &mu);
        }
        Ok(v)
    }
}

/// Parameters `(μ, Σ)` of the two-class Gaussian model (Σ symmetric positive definite).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianModel {
    mu: Array1<f64>,
    sigma: Array2<f64>,
}

impl GaussianModel {
    /// Validates `μ` (finite, length d) and `Σ` (d×d, symmetric positive definite).
    pub fn new(mu: Array1<f64>, sigma: Array2<f64>) -> Result<Self> {
        let d = check_symmetric("sigma", sigma.view())?;
        cholesky("sigma", sigma.view())?;
        check_vector("mu", mu.view(), d)?;
        Ok(Self { mu, sigma })
    }

    /// The class mean `μ` (class `y` has mean `y·μ`).
    pub fn mu(&self) -> &Array1<f64> {
        &self.mu
    }

    /// The shared covariance `Σ`.
    pub fn sigma(&self) -> &Array2<f64> {
        &self.sigma
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// Draws `n` labelled samples (`y` uniform on `{-1,+1}`, `x = y·μ + L z`, `Σ = L Lᵀ`).
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<LabelledSamples> {
        if n == 0 {
            return Err(invalid("n", "must be at least 1"));
        }
        let d = self.dim();
        let l = cholesky("sigma", self.sigma.view())?;
        let mut x = Array2::<f64>::zeros((n, d));
        let mut y = Array1::<f64>::zeros(n);
        let mut z = vec![0.0; d];
        for i in 0..n {
            let yi = if rng.gen::<bool>() { 1.0 } else { -1.0 };
            y[i] = yi;
            for zj in z.iter_mut() {
                *zj = rng.sample(StandardNormal);
            }
            for r in 0..d {
                let mut s = yi * self.mu[r];
                for (c, zc) in z.iter().enumerate().take(r + 1) {
                    s += l[[r, c]] * zc;
                }
                x[[i, r]] = s;
            }
        }
        LabelledSamples::new(x, y)
    }

    /// Maximum-likelihood estimate of `(μ, Σ)` from samples:
    /// `μ̂ = (1/n) Σ yᵢ xᵢ`, `Σ̂ = (1/n) Σ (xᵢ - yᵢμ̂)(xᵢ - yᵢμ̂)ᵀ`.
    ///
    /// Fails when `Σ̂` is singular (e.g. fewer samples than dimensions).
    pub fn fit_mle(samples: &LabelledSamples) -> Result<Self> {
        let n = samples.len() as f64;
        let mut mu = Array1::<f64>::zeros(samples.dim());
        for (row, &y) in samples.x.axis_iter(Axis(0)).zip(samples.y.iter()) {
            mu.scaled_add(y / n, &row);
        }
        let v = samples.residuals(mu.view())?;
        let sigma = v.t().dot(&v) / n;
        Self::new(mu, sigma).map_err(|e| match e {
            crate::TheoryError::NotSpd { reason, .. } => crate::TheoryError::NotSpd {
                field: "fitted sigma (too few or degenerate samples?)".into(),
                reason,
            },
            other => other,
        })
    }

    /// Gaussian negative log-likelihood `½(x-yμ)ᵀΣ⁻¹(x-yμ) + ½ln|Σ| + (d/2)ln 2π` of one point.
    pub fn nll(&self, x: ArrayView1<f64>, y: f64) -> Result<f64> {
        check_vector("x", x, self.dim())?;
        let l = cholesky("sigma", self.sigma.view())?;
        let v = &x - &(&self.mu * y);
        let a_v = cholesky_solve(l.view(), v.view());
        let logdet = 2.0 * l.diag().iter().map(|t| t.ln()).sum::<f64>();
        Ok(0.5 * v.dot(&a_v)
            + 0.5 * logdet
            + 0.5 * self.dim() as f64 * (2.0 * std::f64::consts::PI).ln())
    }

    /// Mean negative log-likelihood over samples.
    pub fn mean_nll(&self, samples: &LabelledSamples) -> Result<f64> {
        if samples.dim() != self.dim() {
            return Err(invalid("samples", "dimension does not match the model"));
        }
        let mut s = 0.0;
        for (row, &y) in samples.x.axis_iter(Axis(0)).zip(samples.y.iter()) {
            s += self.nll(row, y)?;
        }
        Ok(s / samples.len() as f64)
    }

    /// Weights `w = Σ⁻¹μ` of the Bayes-optimal (and MLE plug-in) classifier `sign(wᵀx)`:
    /// the log-likelihood ratio is `ln p(x|+1) - ln p(x|-1) = 2 μᵀΣ⁻¹x`.
    pub fn bayes_weights(&self) -> Result<Array1<f64>> {
        let inv = spd_inverse("sigma", self.sigma.view())?;
        Ok(inv.dot(&self.mu))
    }

    /// `ln |Σ|`.
    pub fn log_det_sigma(&self) -> Result<f64> {
        spd_log_det("sigma", self.sigma.view())
    }

    /// Closed-form standard risk `P(y·wᵀx ≤ 0) = Φ(-μᵀw / √(wᵀΣw))` of `sign(wᵀx)` under this model.
    pub fn linear_risk(&self, w: ArrayView1<f64>) -> Result<f64> {
        self.linear_adversarial_risk(w, 0.0)
    }

    /// Closed-form ℓ2-adversarial risk at radius `eps` of `sign(wᵀx)` under this model:
    /// the worst perturbation is `δ = -eps·y·w/‖w‖`, so the risk is
    /// `Φ(-(μᵀw - eps‖w‖) / √(wᵀΣw))`.
    pub fn linear_adversarial_risk(&self, w: ArrayView1<f64>, eps: f64) -> Result<f64> {
        check_vector("w", w, self.dim())?;
        check_nonneg("eps", eps)?;
        let wn = w.dot(&w).sqrt();
        if wn == 0.0 {
            return Err(invalid("w", "must be non-zero"));
        }
        let s = w.dot(&self.sigma.dot(&w)).sqrt();
        Ok(normal_cdf(-(self.mu.dot(&w) - eps * wn) / s))
    }
}

/// Monte-Carlo ℓ2-adversarial risk of `sign(wᵀx)`: each point is moved by the explicit worst-case
/// perturbation `δ = -eps·y·w/‖w‖` and counted as an error when `y·wᵀ(x+δ) ≤ 0`.
pub fn empirical_adversarial_risk(
    samples: &LabelledSamples,
    w: ArrayView1<f64>,
    eps: f64,
) -> Result<f64> {
    check_vector("w", w, samples.dim())?;
    check_nonneg("eps", eps)?;
    let wn = w.dot(&w).sqrt();
    if wn == 0.0 {
        return Err(invalid("w", "must be non-zero"));
    }
    let mut errors = 0usize;
    let w: Vec<f64> = w.to_vec();
    for (row, &y) in samples.x.axis_iter(Axis(0)).zip(samples.y.iter()) {
        // Score of the perturbed point x - eps·y·w/‖w‖.
        let mut score = 0.0;
        for (xi, wi) in row.iter().zip(&w) {
            score += wi * (xi - eps * y * wi / wn);
        }
        if y * score <= 0.0 {
            errors += 1;
        }
    }
    Ok(errors as f64 / samples.len() as f64)
}

/// Monte-Carlo standard risk of `sign(wᵀx)`.
pub fn empirical_risk(samples: &LabelledSamples, w: ArrayView1<f64>) -> Result<f64> {
    empirical_adversarial_risk(samples, w, 0.0)
}

/// Sample second moment `(1/n) Σ vᵢvᵢᵀ` of the rows of `v`.
pub fn second_moment(v: ArrayView2<f64>) -> Array2<f64> {
    v.t().dot(&v) / v.nrows() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{frobenius, random_spd};
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn mle_recovers_parameters() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sigma = random_spd(3, 0.2, 2.0, &mut rng);
        let model = GaussianModel::new(array![1.0, -0.5, 0.2], sigma.clone()).unwrap();
        let s = model.sample(40_000, &mut rng).unwrap();
        let fit = GaussianModel::fit_mle(&s).unwrap();
        assert!((fit.mu() - model.mu())
            .mapv(f64::abs)
            .iter()
            .all(|e| *e < 0.03));
        assert!(frobenius((fit.sigma() - &sigma).view()) < 0.05);
    }

    #[test]
    fn risks_match_monte_carlo() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let sigma = random_spd(4, 0.05, 1.5, &mut rng);
        let model = GaussianModel::new(array![0.6, 0.3, -0.2, 0.1], sigma).unwrap();
        let w = model.bayes_weights().unwrap();
        let s = model.sample(60_000, &mut rng).unwrap();
        for eps in [0.0, 0.1, 0.3, 0.6] {
            let cf = model.linear_adversarial_risk(w.view(), eps).unwrap();
            let mc = empirical_adversarial_risk(&s, w.view(), eps).unwrap();
            // 5 binomial standard errors.
            let se = (cf * (1.0 - cf) / s.len() as f64).sqrt();
            assert!(
                (cf - mc).abs() < 5.0 * se + 1e-4,
                "eps {eps}: cf {cf} mc {mc}"
            );
        }
        // Adversarial risk grows with eps and the Bayes classifier beats a random direction.
        let r0 = model.linear_risk(w.view()).unwrap();
        let r1 = model.linear_adversarial_risk(w.view(), 0.3).unwrap();
        assert!(r1 > r0);
        let other = array![1.0, 1.0, 1.0, 1.0];
        assert!(model.linear_risk(other.view()).unwrap() >= r0 - 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(GaussianModel::new(array![1.0], array![[-1.0]]).is_err());
        assert!(GaussianModel::new(array![1.0, 2.0], array![[1.0]]).is_err());
        assert!(GaussianModel::new(array![f64::NAN], array![[1.0]]).is_err());
        assert!(LabelledSamples::new(Array2::zeros((2, 1)), array![1.0, 0.0]).is_err());
        let m = GaussianModel::new(array![1.0], array![[1.0]]).unwrap();
        assert!(m.linear_adversarial_risk(array![0.0].view(), 0.1).is_err());
        assert!(m.linear_adversarial_risk(array![1.0].view(), -0.1).is_err());
        let s = LabelledSamples::new(array![[1.0, 2.0]], array![1.0]).unwrap();
        assert!(GaussianModel::fit_mle(&s).is_err());
    }
}
