//! The ε-constrained robust MLE, minimised numerically: Σ blends toward the identity as ε grows
//! while μ stays where the MLE put it.

use nrf_theory::optim::GdOptions;
use nrf_theory::thm2::{anisotropy, constrained_descent_probe, fit_constrained_robust};
use nrf_theory::{figure4_model, GaussianModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn constrained_robust_fit_blends_toward_identity() {
    let model = figure4_model().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let samples = model.sample(400, &mut rng).unwrap();
    let mle = GaussianModel::fit_mle(&samples).unwrap();
    let opts = GdOptions {
        max_iter: 300,
        grad_tol: 1e-7,
        initial_step: 1e-2,
    };
    let mut current = mle.clone();
    let mut prev_aniso = f64::INFINITY;
    let mut prev_trace = 0.0;
    for eps in [0.0, 0.3, 0.8, 1.6] {
        let fit = fit_constrained_robust(&samples, eps, &current, opts).unwrap();
        let s = fit.model.sigma();
        let a = anisotropy(s.view()).unwrap();
        let tr = s.diag().sum();
        assert!(a < prev_aniso, "eps {eps}: anisotropy {a} !< {prev_aniso}");
        assert!(tr > prev_trace, "eps {eps}: trace {tr} !> {prev_trace}");
        let shift = (fit.model.mu() - mle.mu()).mapv(|x| x * x).sum().sqrt();
        assert!(shift < 0.05, "eps {eps}: mu moved by {shift}");
        let probe = constrained_descent_probe(&samples, &fit, 20, &mut rng).unwrap();
        assert!(
            probe.is_local_minimum(opts.grad_tol),
            "eps {eps}: found a descent: {probe:?}"
        );
        if eps == 0.0 {
            // No adversary: the robust MLE is the MLE.
            assert!((s - mle.sigma()).iter().all(|x| x.abs() < 1e-8));
        }
        prev_aniso = a;
        prev_trace = tr;
        current = fit.model;
    }
}

/// The local-minimum check fails on a fit moved off its minimum, even by little: μ shifted by
/// 1e-4 puts the objective 3e-8 to 2e-7 above the fit's, and the probe finds decreases of 9e-9
/// to 2e-7 (the size of the failure of issue 12) against an allowance of about 1.5e-10; the fit
/// itself passes.
#[test]
fn descent_probe_catches_a_perturbed_fit() {
    let model = figure4_model().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let samples = model.sample(300, &mut rng).unwrap();
    let mle = GaussianModel::fit_mle(&samples).unwrap();
    let opts = GdOptions {
        max_iter: 400,
        grad_tol: 1e-7,
        initial_step: 1e-2,
    };
    for eps in [0.0, 0.5] {
        let fit = fit_constrained_robust(&samples, eps, &mle, opts).unwrap();
        let probe = constrained_descent_probe(&samples, &fit, 24, &mut rng).unwrap();
        assert!(
            probe.is_local_minimum(opts.grad_tol),
            "eps {eps}: {probe:?}"
        );
        for shift in [[1e-4, 0.0], [0.0, -1e-4]] {
            let mut moved = fit.clone();
            let mu = fit.model.mu() + &ndarray::arr1(&shift);
            moved.model = GaussianModel::new(mu, fit.model.sigma().clone()).unwrap();
            let probe = constrained_descent_probe(&samples, &moved, 24, &mut rng).unwrap();
            assert!(
                !probe.is_local_minimum(opts.grad_tol),
                "eps {eps}, μ moved by {shift:?}: not caught: {probe:?}"
            );
        }
    }
}
