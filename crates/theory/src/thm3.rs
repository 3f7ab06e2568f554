//! Theorem 3: gradients of robust models align better with the inter-class direction.
//!
//! A classifier monotone in the linear score `wᵀx` with `w = Σ⁻¹μ` has input gradient parallel to
//! `Σ⁻¹μ`. Its alignment with the inter-class direction `μ` is `cos∠(Σ⁻¹μ, μ)`
//! ([`alignment_cosine`]). By the Kantorovich inequality the worst case over `μ` is
//! `min_μ cos∠(Σ⁻¹μ, μ) = 2√κ/(1+κ)` with `κ` the condition number of `Σ`
//! ([`worst_case_alignment`]), attained by [`worst_case_mu`]. The robust covariance `Σ_r(λ)` of
//! Theorem 2 has a smaller condition number than `Σ*`, decreasing as `λ` decreases (ε grows), so
//! the worst-case alignment increases with ε.

use ndarray::{Array1, ArrayView1, ArrayView2};

use crate::error::{invalid, Result};
use crate::linalg::{check_spd, check_vector, spd_solve, sym_eig};

/// `cos∠(Σ⁻¹μ, μ)`, the cosine between the classifier's input gradient direction and `μ`.
pub fn alignment_cosine(sigma: ArrayView2<f64>, mu: ArrayView1<f64>) -> Result<f64> {
    let d = check_spd("sigma", sigma)?;
    check_vector("mu", mu, d)?;
    let mn = mu.dot(&mu).sqrt();
    if mn == 0.0 {
        return Err(invalid("mu", "must be non-zero"));
    }
    let w = spd_solve("sigma", sigma, mu)?;
    Ok(w.dot(&mu) / (w.dot(&w).sqrt() * mn))
}

/// `min_μ cos∠(Σ⁻¹μ, μ) = 2√κ/(1+κ)` (Kantorovich), `κ = σ_max/σ_min`.
pub fn worst_case_alignment(sigma: ArrayView2<f64>) -> Result<f64> {
    check_spd("sigma", sigma)?;
    let e = sym_eig(sigma)?;
    let k = e.max() / e.min();
    Ok(2.0 * k.sqrt() / (1.0 + k))
}

/// A unit `μ` attaining [`worst_case_alignment`]: `μ = √w·q_min + √(1-w)·q_max` with
/// `w = σ_min/(σ_min+σ_max)`, where `q_min`, `q_max` are the extreme eigenvectors of `Σ`.
pub fn worst_case_mu(sigma: ArrayView2<f64>) -> Result<Array1<f64>> {
    let d = check_spd("sigma", sigma)?;
    let e = sym_eig(sigma)?;
    let (smin, smax) = (e.min(), e.max());
    // In terms of M = Σ⁻¹ (m1 = 1/smin, m2 = 1/smax) the weight on q_min is m2/(m1+m2).
    let w = smin / (smin + smax);
    let qmin = e.vectors.column(0);
    let qmax = e.vectors.column(d - 1);
    Ok(&qmin * w.sqrt() + &qmax * (1.0 - w).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{random_spd, rotation2};
    use crate::thm2::robust_covariance_penalty;
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn kantorovich_bound_is_tight_in_2d() {
        let sigma = rotation2(0.3)
            .dot(&array![[1.0, 0.0], [0.0, 0.05]])
            .dot(&rotation2(0.3).t());
        let want = worst_case_alignment(sigma.view()).unwrap();
        let brute = (0..100_000)
            .map(|k| {
                let t = k as f64 / 100_000.0 * std::f64::consts::PI;
                alignment_cosine(sigma.view(), array![t.cos(), t.sin()].view()).unwrap()
            })
            .fold(f64::INFINITY, f64::min);
        assert!((brute - want).abs() < 1e-6, "{brute} vs {want}");
        let mu = worst_case_mu(sigma.view()).unwrap();
        assert!((alignment_cosine(sigma.view(), mu.view()).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn bound_holds_in_higher_dimension() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let sigma = random_spd(6, 0.05, 4.0, &mut rng);
        let bound = worst_case_alignment(sigma.view()).unwrap();
        for _ in 0..500 {
            let mu = Array1::from_iter((0..6).map(|_| rand::Rng::gen_range(&mut rng, -1.0..1.0)));
            assert!(alignment_cosine(sigma.view(), mu.view()).unwrap() >= bound - 1e-12);
        }
    }

    #[test]
    fn robust_alignment_improves_as_lambda_decreases() {
        let sigma = rotation2(0.3)
            .dot(&array![[1.0, 0.0], [0.0, 0.05]])
            .dot(&rotation2(0.3).t());
        let mu = array![0.4, 0.5];
        let mut prev_c = alignment_cosine(sigma.view(), mu.view()).unwrap();
        let mut prev_w = worst_case_alignment(sigma.view()).unwrap();
        for lambda in [100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1] {
            let r = robust_covariance_penalty(sigma.view(), lambda).unwrap();
            let c = alignment_cosine(r.view(), mu.view()).unwrap();
            let w = worst_case_alignment(r.view()).unwrap();
            assert!(c > prev_c && w > prev_w, "lambda {lambda}: {c} {w}");
            prev_c = c;
            prev_w = w;
        }
        assert!(prev_c > 0.95);
    }
}
