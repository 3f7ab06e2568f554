//! Property tests of the closed forms against numerical optimisation.

use ndarray::{Array1, Array2};
use nrf_theory::circles::{make_circles, CircleFeature, NormalisedFeature};
use nrf_theory::linalg::{spd_from_eigenvalues, sym_eig};
use nrf_theory::optim::{GdOptions, StopReason};
use nrf_theory::{thm1, thm2, thm3};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A random SPD matrix: dimension, log-eigenvalues and a rotation seed.
fn spd_strategy(max_d: usize) -> impl Strategy<Value = Array2<f64>> {
    (1..=max_d)
        .prop_flat_map(|d| (prop::collection::vec(-3.0f64..1.6, d), any::<u64>()))
        .prop_map(|(logs, seed)| {
            let eig: Vec<f64> = logs.iter().map(|l| l.exp()).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            spd_from_eigenvalues(&eig, &mut rng)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Theorem 2: the closed form equals the minimiser found by direct gradient descent over all
    /// SPD matrices (Cholesky parametrisation), for random Σ* and λ.
    #[test]
    fn thm2_closed_form_is_the_numerical_minimiser(
        sigma_star in spd_strategy(4),
        log_lambda in (-3.0f64)..4.0,
    ) {
        let lambda = log_lambda.exp();
        let c = thm2::check_closed_form(
            sigma_star.view(),
            lambda,
            GdOptions { max_iter: 20_000, grad_tol: 1e-10, initial_step: 1e-2 },
        ).unwrap();
        prop_assert!(c.stop != StopReason::MaxIter, "optimiser hit its iteration limit: {c:?}");
        prop_assert!(c.rel_error < 1e-6, "{c:?}");
        // The closed form is never beaten.
        prop_assert!(c.objective_gap > -1e-10, "{c:?}");
    }

    /// Theorem 2: Σ_r ⪰ Σ*, and Σ_r = (sqrt(I/λ + Σ*/4) + sqrt(Σ*)/2)² (an equivalent form).
    #[test]
    fn thm2_closed_form_identities(sigma_star in spd_strategy(5), log_lambda in (-3.0f64)..4.0) {
        let lambda = log_lambda.exp();
        let r = thm2::robust_covariance_penalty(sigma_star.view(), lambda).unwrap();
        let diff = &r - &sigma_star;
        prop_assert!(sym_eig(diff.view()).unwrap().min() > 0.0);
        let e = sym_eig(sigma_star.view()).unwrap();
        let alt = e.map(|s| ((1.0 / lambda + s / 4.0).sqrt() + s.sqrt() / 2.0).powi(2));
        let err = (&alt - &r).iter().fold(0.0f64, |m, x| m.max(x.abs()));
        prop_assert!(err < 1e-9 * r.iter().fold(1.0f64, |m, x| m.max(x.abs())));
    }

    /// Theorem 1: at fixed trace, no spectrum is less vulnerable than the isotropic one.
    #[test]
    fn thm1_isotropic_is_least_vulnerable(
        logs in prop::collection::vec(-1.0f64..1.0, 2..6),
        seed in any::<u64>(),
        margin in 1.01f64..5.0,
    ) {
        let eig: Vec<f64> = logs.iter().map(|l| l.exp()).collect();
        let d = eig.len();
        let k: f64 = eig.iter().sum();
        let smin = eig.iter().cloned().fold(f64::INFINITY, f64::min);
        let lambda = margin / smin;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = spd_from_eigenvalues(&eig, &mut rng);
        let iso = Array2::<f64>::eye(d) * (k / d as f64);
        let v = thm1::vulnerability(s.view(), lambda).unwrap();
        let v_iso = thm1::vulnerability(iso.view(), lambda).unwrap();
        prop_assert!(v >= v_iso - 1e-12 * v_iso.abs().max(1.0), "{v} < {v_iso}");
    }

    /// Theorem 3: for every μ, cos∠(Σ_r⁻¹μ, μ) does not decrease as λ decreases, and the worst case
    /// over μ (Kantorovich) strictly increases for anisotropic Σ*.
    #[test]
    fn thm3_alignment_is_monotone_in_lambda(
        sigma_star in spd_strategy(6),
        mu_raw in prop::collection::vec(-1.0f64..1.0, 6),
        l1 in (-3.0f64)..4.0,
        ratio in 1.05f64..20.0,
    ) {
        let d = sigma_star.nrows();
        let mu = Array1::from_vec(mu_raw[..d].to_vec());
        prop_assume!(mu.dot(&mu) > 1e-6);
        let lam_hi = l1.exp();
        let lam_lo = lam_hi / ratio;
        let r_hi = thm2::robust_covariance_penalty(sigma_star.view(), lam_hi).unwrap();
        let r_lo = thm2::robust_covariance_penalty(sigma_star.view(), lam_lo).unwrap();
        let c_std = thm3::alignment_cosine(sigma_star.view(), mu.view()).unwrap();
        let c_hi = thm3::alignment_cosine(r_hi.view(), mu.view()).unwrap();
        let c_lo = thm3::alignment_cosine(r_lo.view(), mu.view()).unwrap();
        prop_assert!(c_hi >= c_std - 1e-12 && c_lo >= c_hi - 1e-12, "{c_std} {c_hi} {c_lo}");
        let e = sym_eig(sigma_star.view()).unwrap();
        if e.max() / e.min() > 1.0 + 1e-6 {
            let w_std = thm3::worst_case_alignment(sigma_star.view()).unwrap();
            let w_hi = thm3::worst_case_alignment(r_hi.view()).unwrap();
            let w_lo = thm3::worst_case_alignment(r_lo.view()).unwrap();
            prop_assert!(w_hi > w_std && w_lo > w_hi, "{w_std} {w_hi} {w_lo}");
        }
    }

    /// Robust usefulness: the exact infimum is a lower bound of, and close to, the PGD infimum.
    #[test]
    fn circles_exact_infimum_matches_pgd(
        seed in any::<u64>(),
        noise in 0.0f64..0.3,
        factor in 0.1f64..0.9,
        eps in 0.0f64..1.5,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = make_circles(200, noise, factor, true, &mut rng).unwrap();
        for kind in CircleFeature::ALL {
            let Ok(f) = NormalisedFeature::fit(kind, &data) else { continue };
            let ex = f.robust_usefulness(&data, eps).unwrap();
            let num = f.robust_usefulness_numerical(&data, eps, 120).unwrap();
            prop_assert!(num >= ex - 1e-9 && num - ex < 1e-3 / f.std.max(1e-3), "{kind:?}: {ex} vs {num}");
        }
    }
}
