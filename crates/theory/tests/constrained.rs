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
        assert!(probe < 1e-9, "eps {eps}: found a descent of {probe}");
        if eps == 0.0 {
            // No adversary: the robust MLE is the MLE.
            assert!((s - mle.sigma()).iter().all(|x| x.abs() < 1e-8));
        }
        prev_aniso = a;
        prev_trace = tr;
        current = fit.model;
    }
}
