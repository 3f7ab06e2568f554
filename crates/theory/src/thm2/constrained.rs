//! Theorem 2, constrained form: the robust MLE minimises `E[max_{‖δ‖₂≤ε} ℓ(x+δ, y; μ, Σ)]`. The
//! inner problem (maximise a convex quadratic over a ball) is a trust-region problem solved
//! exactly by the secular equation ([`constrained_inner_max`]); [`fit_constrained_robust`]
//! minimises the sample objective over `(μ, Σ)` numerically.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::{mat_to_tril, tril_to_mat};
use crate::error::{check_nonneg, invalid, Result};
use crate::gaussian::{GaussianModel, LabelledSamples};
use crate::linalg::{check_spd, check_vector, cholesky, sym_eig, SymEig};
use crate::optim::{
    descent_probe, gradient_sampling, minimise, DescentProbe, GdOptions, GdReport, SamplingOptions,
    StopReason,
};

/// Exact solution of the inner problem `max_{‖δ‖≤ε} ½(v+δ)ᵀA(v+δ)` for SPD `A` given by its
/// eigendecomposition: `δ = (ηI - A)⁻¹Av` with the multiplier `η ≥ a_max` fixed by the secular
/// equation `‖δ(η)‖ = ε` (safeguarded Newton on `1/‖δ(η)‖ - 1/ε`; the "hard case" with `v` orthogonal
/// to the top eigenvector is handled). Returns `(δ, η)`; `ε = 0` gives `(0, ∞)`.
pub fn constrained_inner_max(
    a: &SymEig,
    v: ArrayView1<f64>,
    eps: f64,
) -> Result<(Array1<f64>, f64)> {
    let d = a.values.len();
    check_vector("v", v, d)?;
    check_nonneg("eps", eps)?;
    if a.min() <= 0.0 {
        return Err(invalid("A", "must be positive definite"));
    }
    let c = a.to_basis(v);
    let av: Vec<f64> = a.values.to_vec();
    let (y, eta) = trust_region_coords(&av, c.as_slice().expect("owned"), eps);
    Ok((a.vectors.dot(&Array1::from_vec(y)), eta))
}

/// The trust-region maximiser in the eigenbasis of `A`: eigenvalues `av` (ascending, > 0), the
/// coordinates `c = Qᵀv`; returns the coordinates of `δ` and the multiplier `η`.
///
/// The secular equation is solved for `s = η − a_max`, not for `η`: near the hard case (`v`
/// almost orthogonal to the top eigenvector) the root is `a_max` plus a tiny `s`, and forming
/// `η − a_max` from `η` would keep only the digits of `s` above one ulp of `a_max`, an error of
/// `ulp(a_max)/s` relative in the top component of `δ`, hence in `‖δ‖` and in the maximum (0.1%
/// at a top coordinate of 1e-12). With `s` and the gaps `a_max − aᵢ` held apart, each component
/// is accurate to a few ulps.
fn trust_region_coords(av: &[f64], c: &[f64], eps: f64) -> (Vec<f64>, f64) {
    let d = av.len();
    if eps == 0.0 {
        return (vec![0.0; d], f64::INFINITY);
    }
    let amax = av[d - 1];
    let gap: Vec<f64> = av.iter().map(|a| amax - a).collect();
    let b: Vec<f64> = (0..d).map(|i| av[i] * c[i]).collect();
    let bnorm = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let norm_at = |s: f64| -> f64 {
        b.iter()
            .zip(&gap)
            .map(|(bi, gi)| (bi / (s + gi)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    // Components in the top eigenspace (numerically tied eigenvalues).
    let tol = 1e-12 * amax;
    let is_top = |i: usize| gap[i] <= tol;
    let top_mass = (0..d)
        .filter(|&i| is_top(i))
        .map(|i| b[i] * b[i])
        .sum::<f64>()
        .sqrt();
    let hard = top_mass <= 1e-14 * bnorm.max(1e-300);
    if hard {
        // Norm as s -> 0 from the non-top components only.
        let rest: f64 = (0..d)
            .filter(|&i| !is_top(i))
            .map(|i| (b[i] / gap[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        if rest <= eps {
            let mut y = vec![0.0; d];
            for i in 0..d {
                if !is_top(i) {
                    y[i] = b[i] / gap[i];
                }
            }
            let tau = (eps * eps - rest * rest).max(0.0).sqrt();
            let i0 = d - 1;
            y[i0] = if c[i0] < 0.0 { -tau } else { tau };
            return (y, amax);
        }
    }
    // phi(s) = 1/norm(s) - 1/eps increases on (0, inf); it is < 0 near 0 (non-hard case) and
    // >= 0 at hi = ‖b‖/ε since norm(s) <= ‖b‖/s.
    let mut lo = 0.0;
    let mut hi = bnorm / eps;
    let mut s = top_mass.max(1e-300) / eps; // root of the top term alone
    if !(s > lo && s <= hi) {
        s = 0.5 * (lo + hi);
    }
    for _ in 0..200 {
        let n = norm_at(s);
        let phi = 1.0 / n - 1.0 / eps;
        if phi.abs() <= 1e-14 / eps {
            break;
        }
        if phi < 0.0 {
            lo = s;
        } else {
            hi = s;
        }
        if (hi - lo) <= 1e-15 * hi {
            break;
        }
        // dphi/ds = n^{-3} Σ b²/(s + gap)³ > 0.
        let s3: f64 = b
            .iter()
            .zip(&gap)
            .map(|(bi, gi)| bi * bi / (s + gi).powi(3))
            .sum();
        let mut next = s - phi * n * n * n / s3;
        if !(next > lo && next < hi && next.is_finite()) {
            next = 0.5 * (lo + hi);
        }
        s = next;
    }
    ((0..d).map(|i| b[i] / (s + gap[i])).collect(), amax + s)
}

/// Sample value of the ε-constrained robust objective
/// `(1/n) Σᵢ max_{‖δ‖≤ε} ½(vᵢ+δ)ᵀΣ⁻¹(vᵢ+δ) + ½ln|Σ|`, `vᵢ = xᵢ - yᵢμ`
/// (constant omitted), together with the mean multiplier `η̄`.
pub fn constrained_robust_objective(
    samples: &LabelledSamples,
    mu: ArrayView1<f64>,
    sigma: ArrayView2<f64>,
    eps: f64,
) -> Result<(f64, f64)> {
    let r = constrained_eval(samples, mu, sigma, eps)?;
    Ok((r.value, r.mean_multiplier))
}

struct ConstrainedEval {
    value: f64,
    /// A bound on the rounding error of `value` (see [`constrained_eval`]).
    noise: f64,
    grad_mu: Array1<f64>,
    grad_sigma: Array2<f64>,
    mean_multiplier: f64,
}

fn constrained_eval(
    samples: &LabelledSamples,
    mu: ArrayView1<f64>,
    sigma: ArrayView2<f64>,
    eps: f64,
) -> Result<ConstrainedEval> {
    let d = check_spd("sigma", sigma)?;
    check_vector("mu", mu, samples.dim())?;
    if d != samples.dim() {
        return Err(invalid("sigma", "dimension differs from the samples"));
    }
    check_nonneg("eps", eps)?;
    // Work in the eigenbasis of Σ (eigenvalues σᵢ, A = Σ⁻¹ has eigenvalues 1/σᵢ).
    let es = sym_eig(sigma)?;
    let q = &es.vectors;
    // Ascending eigenvalues of A correspond to descending σ: reverse the order.
    let order: Vec<usize> = (0..d).rev().collect();
    let av: Vec<f64> = order.iter().map(|&k| 1.0 / es.values[k]).collect();
    let qf: Vec<f64> = (0..d)
        .flat_map(|i| order.iter().map(move |&k| (i, k)))
        .map(|(i, k)| q[[i, k]])
        .collect(); // row-major d×d, column j = eigenvector of av[j]
    let mu_s: Vec<f64> = mu.to_vec();
    let n = samples.len() as f64;
    let mut quad = 0.0;
    let mut u_mom = vec![0.0; d * d];
    let mut yu = vec![0.0; d];
    let mut eta_sum = 0.0;
    let mut inner_err = 0.0;
    let mut v = vec![0.0; d];
    let mut c = vec![0.0; d];
    for (row, &y) in samples.x.axis_iter(Axis(0)).zip(samples.y.iter()) {
        for i in 0..d {
            v[i] = row[i] - y * mu_s[i];
        }
        for j in 0..d {
            let mut s = 0.0;
            for i in 0..d {
                s += qf[i * d + j] * v[i];
            }
            c[j] = s;
        }
        let (delta, eta) = trust_region_coords(&av, &c, eps);
        eta_sum += eta;
        if eps > 0.0 {
            let r = delta.iter().map(|x| x * x).sum::<f64>().sqrt();
            inner_err += eta * eps * (r - eps).abs();
        }
        for j in 0..d {
            let uj = c[j] + delta[j];
            quad += 0.5 * av[j] * uj * uj;
            yu[j] += y * uj;
            for k in 0..d {
                u_mom[j * d + k] += uj * (c[k] + delta[k]);
            }
        }
    }
    // Back to the original basis: A U A = Q diag(a) U_eig diag(a) Qᵀ, A·yu = Q diag(a) yu_eig.
    let mut grad_sigma = Array2::<f64>::zeros((d, d));
    let mut grad_mu = Array1::<f64>::zeros(d);
    for r in 0..d {
        for s2 in 0..d {
            let mut acc = 0.0;
            for j in 0..d {
                for k in 0..d {
                    let m = av[j] * u_mom[j * d + k] / n * av[k];
                    let a_jk = if j == k { av[j] } else { 0.0 };
                    acc += qf[r * d + j] * (a_jk - m) * qf[s2 * d + k];
                }
            }
            grad_sigma[[r, s2]] = 0.5 * acc;
        }
        let mut g = 0.0;
        for j in 0..d {
            g += qf[r * d + j] * av[j] * yu[j] / n;
        }
        grad_mu[r] = -g;
    }
    let log_det: f64 = es.values.iter().map(|s| s.ln()).sum();
    // A bound on the rounding error of the value, so that a descent probe can tell a real decrease
    // from round-off (u = EPSILON/2, the unit round-off; EPSILON leaves a factor 2 of room):
    // * `quad / n` sums n terms ≥ 0 one after another: relative error ≤ (n − 1)u;
    // * each term is computed in Σ's computed eigenbasis, whose eigenvalues carry a relative error
    //   of about κ(Σ)u, which the weights 1/σᵢ pass on: relative κu;
    // * ½ln|Σ|: d logarithms of eigenvalues with relative error κu: ≤ dκu absolute, plus u|ln|Σ||;
    // * the inner maxima are solved iteratively: a δ of norm r ≠ ε gives the maximum over the
    //   sphere of radius r, which changes at rate η·r with the radius, so its term is off by
    //   η·ε·|r − ε| to first order (`inner_err`, summed over the samples as they come).
    let kappa = es.values.iter().cloned().fold(0.0, f64::max)
        / es.values.iter().cloned().fold(f64::INFINITY, f64::min);
    let noise =
        f64::EPSILON * ((n + kappa) * quad / n + log_det.abs() + d as f64 * kappa) + inner_err / n;
    // Danskin: the maximiser is unique almost surely, so the gradient is that of the quadratic
    // at the fixed maximiser u = v + δ*.
    Ok(ConstrainedEval {
        value: quad / n + 0.5 * log_det,
        noise,
        grad_mu,
        grad_sigma,
        mean_multiplier: eta_sum / n,
    })
}

/// A robust MLE fitted under the ε-constrained adversary.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstrainedFit {
    /// The perturbation radius.
    pub eps: f64,
    /// Fitted `(μ, Σ)`.
    pub model: GaussianModel,
    /// Objective at the fit.
    pub objective: f64,
    /// Mean trust-region multiplier `η̄` over samples (the per-sample analogue of λ).
    pub mean_multiplier: f64,
    /// Gradient-descent diagnostics (`x` and `value` are the final ones, after any polish).
    pub report: GdReport,
    /// Steps of [`gradient_sampling`] taken after gradient descent stalled on a kink (0 when it
    /// met its gradient tolerance).
    pub polish_moves: usize,
}

/// Numerically minimises the sample ε-constrained robust objective over `(μ, Σ)`
/// (`Σ = LLᵀ`, gradient by Danskin's theorem), starting from `init` (e.g. the MLE or the fit at a
/// smaller ε).
///
/// The sample objective has kinks (where a sample is in the hard case of the inner problem), and
/// gradient descent can stall on one short of the minimum: the gradient of the side it stands on
/// then points across the kink, while directions along it still descend. When descent stops
/// without meeting `opts.grad_tol`, [`gradient_sampling`] (fixed seed; sampling radius from 1e-3
/// down to 1e-9 of `‖θ‖`, stationarity tolerance `opts.grad_tol`) continues from there.
pub fn fit_constrained_robust(
    samples: &LabelledSamples,
    eps: f64,
    init: &GaussianModel,
    opts: GdOptions,
) -> Result<ConstrainedFit> {
    use rand::SeedableRng;
    check_nonneg("eps", eps)?;
    let d = samples.dim();
    if init.dim() != d {
        return Err(invalid("init", "dimension differs from the samples"));
    }
    let l0 = cholesky("init sigma", init.sigma().view())?;
    let mut theta0 = init.mu().to_vec();
    theta0.extend(mat_to_tril(l0.view()));
    let obj = |theta: &[f64]| {
        let mu = ArrayView1::from(&theta[..d]);
        let l = tril_to_mat(&theta[d..], d);
        let sigma = l.dot(&l.t());
        let r = constrained_eval(samples, mu, sigma.view(), eps).ok()?;
        let gl = r.grad_sigma.dot(&l) * 2.0;
        let mut g = r.grad_mu.to_vec();
        g.extend(mat_to_tril(gl.view()));
        Some((r.value, g))
    };
    let mut report = minimise(obj, theta0, opts)?;
    let mut polish_moves = 0;
    if report.stop != StopReason::GradTol {
        let scale = report.x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x6b69_6e6b);
        let polish = gradient_sampling(
            obj,
            report.x.clone(),
            SamplingOptions {
                initial_radius: 1e-3 * scale,
                min_radius: 1e-9 * scale,
                stationarity_tol: opts.grad_tol,
                max_iter: 1_000,
            },
            &mut rng,
        )?;
        polish_moves = polish.moves;
        if let Some((value, g)) = obj(&polish.x).filter(|_| polish.value < report.value) {
            report.x = polish.x;
            report.value = value;
            report.grad_norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        }
    }
    let mu = Array1::from_vec(report.x[..d].to_vec());
    let l = tril_to_mat(&report.x[d..], d);
    let sigma = l.dot(&l.t());
    let r = constrained_eval(samples, mu.view(), sigma.view(), eps)?;
    Ok(ConstrainedFit {
        eps,
        model: GaussianModel::new(mu, sigma)?,
        objective: r.value,
        mean_multiplier: r.mean_multiplier,
        report,
        polish_moves,
    })
}

/// Probes `fit` for descent of the sample constrained objective along `n_dirs` random directions
/// in the `(μ, L)` parametrisation with step lengths 1e-3, 1e-4 and 1e-5 of `max(‖θ‖, 1)`
/// ([`descent_probe`]), each evaluation with its round-off bound. The fit is a (possibly
/// nonsmooth) local minimum when [`DescentProbe::is_local_minimum`] holds for the optimiser's
/// gradient tolerance.
pub fn constrained_descent_probe<R: rand::Rng + ?Sized>(
    samples: &LabelledSamples,
    fit: &ConstrainedFit,
    n_dirs: usize,
    rng: &mut R,
) -> Result<DescentProbe> {
    let d = samples.dim();
    let l = cholesky("fit sigma", fit.model.sigma().view())?;
    let mut theta = fit.model.mu().to_vec();
    theta.extend(mat_to_tril(l.view()));
    let scale = theta.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
    let steps: Vec<f64> = [1e-3, 1e-4, 1e-5].iter().map(|h| h * scale).collect();
    let eps = fit.eps;
    let f = |th: &[f64]| {
        let mu = ArrayView1::from(&th[..d]);
        let l = tril_to_mat(&th[d..], d);
        let sigma = l.dot(&l.t());
        constrained_eval(samples, mu, sigma.view(), eps)
            .ok()
            .map(|r| (r.value, r.noise))
    };
    descent_probe(f, &theta, &steps, n_dirs, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{rotation2, spd_inverse};
    use ndarray::array;

    #[test]
    fn trust_region_matches_brute_force_2d() {
        let sigma = rotation2(0.4)
            .dot(&array![[1.0, 0.0], [0.0, 0.05]])
            .dot(&rotation2(0.4).t());
        let a = spd_inverse("s", sigma.view()).unwrap();
        let ea = sym_eig(a.view()).unwrap();
        for (v, eps) in [
            (array![0.3, -0.2], 0.5),
            (array![1.0, 0.5], 0.1),
            (array![0.0, 0.0], 0.3),
            (array![-2.0, 0.7], 2.0),
        ] {
            let (delta, _) = constrained_inner_max(&ea, v.view(), eps).unwrap();
            assert!((delta.dot(&delta).sqrt() - eps).abs() < 1e-9);
            let val = |dl: &Array1<f64>| {
                let u = &v + dl;
                0.5 * u.dot(&a.dot(&u))
            };
            let best = (0..20_000)
                .map(|k| {
                    let t = k as f64 / 20_000.0 * std::f64::consts::TAU;
                    val(&array![eps * t.cos(), eps * t.sin()])
                })
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                val(&delta) >= best - 1e-9 * best.abs().max(1.0),
                "{v} {eps}"
            );
            assert!(val(&delta) - best < 1e-4 * best.abs().max(1.0));
        }
    }

    #[test]
    fn hard_case_is_handled() {
        // v orthogonal to the top eigenvector of A = diag(1, 10).
        let a = array![[1.0, 0.0], [0.0, 10.0]];
        let ea = sym_eig(a.view()).unwrap();
        let v = array![0.1, 0.0];
        let (delta, eta) = constrained_inner_max(&ea, v.view(), 1.0).unwrap();
        assert!((delta.dot(&delta).sqrt() - 1.0).abs() < 1e-12);
        assert_eq!(eta, 10.0);
        let u = &v + &delta;
        // Optimal value: most mass on the stiff axis.
        assert!(0.5 * u.dot(&a.dot(&u)) > 4.9);
    }
}

#[cfg(test)]
mod near_hard_case {
    use super::*;

    /// `A = diag(0.5, 1)`, `v = (1, t)`, `ε = 2`: as `t → 0` the maximiser tends to the hard-case
    /// one, `δ = (1, ±√3)`, and the maximum is `2.5 + √3·|t| + O(t²)`. Solving for `η` itself
    /// lost every digit of `η − 1 ≈ t/√3` below one ulp of 1: at `t = 1e-12` the radius was off by
    /// 2e-3 and the maximum by 4e-3, far above round-off, which a descent probe then took for a
    /// decrease.
    #[test]
    fn inner_max_is_accurate_near_the_hard_case() {
        for k in 2..=16 {
            let t = 10f64.powi(-k);
            let (y, eta) = trust_region_coords(&[0.5, 1.0], &[1.0, t], 2.0);
            let r = (y[0] * y[0] + y[1] * y[1]).sqrt();
            assert!((r - 2.0).abs() <= 4.0 * f64::EPSILON, "t = {t}: radius {r}");
            let value = 0.5 * (0.5 * (1.0 + y[0]).powi(2) + (t + y[1]).powi(2));
            let want = 2.5 + 3f64.sqrt() * t;
            assert!(
                (value - want).abs() <= 1e-14 + t * t,
                "t = {t}: maximum {value} vs {want}"
            );
            assert!(eta >= 1.0 && eta - 1.0 <= t, "t = {t}: eta {eta}");
        }
    }
}
