//! End-to-end: `run_with` computes every table and figure, the summary round-trips through JSON,
//! checks pass and the numbers are reproducible for a fixed seed.

use nrf_theory::{run_with, RunConfig, TheoryOutput, TheorySummary};

fn small() -> RunConfig {
    RunConfig {
        risk_mc_samples: 20_000,
        thm1_dim: 4,
        thm1_condition_numbers: vec![1.0, 4.0, 10.0],
        thm1_mc_samples: 4_000,
        thm1_ga_samples: 40,
        thm1_random_spectra: 30,
        thm2_cases: 6,
        fig4_samples: 250,
        fig4_eps: vec![0.0, 0.5, 1.5],
        circles_samples: 600,
        circles_noise: 0.1,
        circles_factor: 0.5,
        circles_eps: vec![0.0, 0.1, 0.2, 0.4],
    }
}

fn assert_close(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-13 * x.abs().max(y.abs()),
                "{path}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_close(p, q, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (k, p) in x {
                assert_close(p, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn run_is_reproducible_and_round_trips_through_json() {
    let a = run_with(7, &small()).unwrap();
    for c in &a.summary.checks {
        assert!(c.passed, "check {} failed: {}", c.name, c.detail);
    }
    assert_eq!(a.summary.checks.len(), 11);
    assert!(a.summary.files.is_empty(), "run writes no file");
    let sections: Vec<&str> = a
        .summary
        .section_seconds
        .iter()
        .map(|s| s.0.as_str())
        .collect();
    assert_eq!(
        sections,
        [
            "constrained_robust_fits",
            "risk_table",
            "thm1",
            "thm2_closed_form_checks",
            "thm3",
            "make_circles"
        ]
    );
    let text = serde_json::to_string_pretty(&a.summary).unwrap();
    let back: TheorySummary = serde_json::from_str(&text).unwrap();
    // serde_json's float parsing may differ from the written value in the last ulp.
    assert_close(
        &serde_json::to_value(&back).unwrap(),
        &serde_json::to_value(&a.summary).unwrap(),
        "$",
    );

    let b = run_with(7, &small()).unwrap();
    assert_eq!(a.summary.thm1, b.summary.thm1);
    assert_eq!(a.summary.thm2, b.summary.thm2);
    assert_eq!(a.summary.thm3, b.summary.thm3);
    assert_eq!(a.summary.risks, b.summary.risks);
    assert_eq!(a.summary.circles, b.summary.circles);
    assert_eq!(a.figures, b.figures);
    let c = run_with(8, &small()).unwrap();
    assert_ne!(a.summary.risks, c.summary.risks);
}

#[test]
fn figures_hold_the_summary_numbers() {
    let cfg = small();
    let TheoryOutput {
        summary: s,
        figures: f,
    } = run_with(3, &cfg).unwrap();
    // Figure 4: the whole sample, one panel per ε, a closed form for every ε > 0.
    assert_eq!(f.figure4.samples.len(), cfg.fig4_samples);
    assert!(f.figure4.samples.iter().all(|p| p.y == 1.0 || p.y == -1.0));
    assert_eq!(f.figure4.panels.len(), cfg.fig4_eps.len());
    for (p, r) in f.figure4.panels.iter().zip(&s.thm2.constrained) {
        assert_eq!(p.eps, r.eps);
        assert_eq!(p.matched_lambda, r.matched_lambda);
        assert_eq!(p.closed_form.is_some(), r.eps > 0.0);
        assert_eq!(p.robust_mle.mu, (r.mu[0], r.mu[1]));
        // The outline is closed and centred on ±μ.
        let o = &p.robust_mle.plus;
        assert_eq!(o.len(), 241);
        assert!((o[0].0 - o[240].0).abs() < 1e-12 && (o[0].1 - o[240].1).abs() < 1e-12);
        let cx = o[..240].iter().map(|q| q.0).sum::<f64>() / 240.0;
        assert!((cx - r.mu[0]).abs() < 1e-9, "{cx} vs {}", r.mu[0]);
        // The other class's ellipse is the same shape around −μ.
        assert!((o[7].0 - p.robust_mle.minus[7].0 - 2.0 * r.mu[0]).abs() < 1e-12);
    }
    let ratios: Vec<f64> = f.figure4.smallest_eigenvalue.iter().map(|p| p.1).collect();
    assert!(ratios.windows(2).all(|w| w[1] > w[0]), "{ratios:?}");
    assert!((f.figure4.mu_norm[0].1 - 1.0).abs() < 1e-6);
    // Theorem 1: one panel per λ with the rows' numbers.
    assert_eq!(f.thm1.panels.len(), 2);
    let p = &f.thm1.panels[1];
    let rows: Vec<_> = s
        .thm1
        .rows
        .iter()
        .filter(|r| r.lambda == p.lambda)
        .collect();
    assert_eq!(p.closed_form.len(), rows.len());
    assert_eq!(
        p.mc_gradient_ascent[0],
        (rows[0].condition_number, rows[0].mc_gradient_ascent.mean)
    );
    // Theorem 3: the finite λ of the sweep, against 1/λ.
    assert_eq!(f.thm3.cosine_2d.len(), s.thm3.lambda_sweep.len() - 1);
    assert_eq!(
        f.thm3.cosine_2d[0],
        (1.0 / 1000.0, s.thm3.lambda_sweep[1].cosine)
    );
    assert_eq!(f.thm3.eps_worst.len(), cfg.fig4_eps.len());
    // make_circles: three exact curves, the numerical points at every other ε.
    assert_eq!(f.circles.exact.len(), 3);
    assert_eq!(f.circles.exact[2].feature, "radius");
    assert_eq!(
        f.circles.numerical.len(),
        3 * cfg.circles_eps.len().div_ceil(2)
    );
    assert_eq!(f.circles.samples.len(), cfg.circles_samples.min(1500));
}

#[test]
fn run_rejects_a_bad_config() {
    let mut cfg = small();
    cfg.fig4_eps = vec![0.5];
    assert!(run_with(0, &cfg).is_err());
    let mut cfg = small();
    cfg.circles_factor = 1.5;
    assert!(run_with(0, &cfg).is_err());
    let mut cfg = small();
    cfg.thm1_condition_numbers.clear();
    assert!(run_with(0, &cfg).is_err());
}
