use nrf_theory::{figure4_model, optim::GdOptions, thm2::fit_constrained_robust, GaussianModel};
use rand::SeedableRng;
fn main() {
    let model = figure4_model().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let s = model.sample(800, &mut rng).unwrap();
    let mle = GaussianModel::fit_mle(&s).unwrap();
    for it in [100usize, 400, 2000] {
        let mut cur = mle.clone();
        let t = std::time::Instant::now();
        for eps in [0.0, 0.25, 0.5, 1.0, 2.0] {
            let f = fit_constrained_robust(
                &s,
                eps,
                &cur,
                GdOptions {
                    max_iter: it,
                    grad_tol: 1e-9,
                    initial_step: 1e-2,
                },
            )
            .unwrap();
            println!(
                "it {it} eps {eps}: iters {} grad {:.3e} obj {:.10} sigma {:?}",
                f.report.iterations,
                f.report.grad_norm,
                f.objective,
                f.model
                    .sigma()
                    .iter()
                    .map(|x| (x * 1e5).round() / 1e5)
                    .collect::<Vec<_>>()
            );
            cur = f.model.clone();
        }
        println!("time {:?}", t.elapsed());
    }
}
