//! End-to-end: `run_all_with` writes every artefact, the JSON round-trips, checks pass and the
//! numbers are reproducible for a fixed seed.

use nrf_theory::{run_all_with, RunConfig, TheorySummary};

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
fn run_all_writes_everything_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = run_all_with(&dir.path().join("a"), 7, &small()).unwrap();
    for c in &a.checks {
        assert!(c.passed, "check {} failed: {}", c.name, c.detail);
    }
    for f in [
        "theory.json",
        "figure4.png",
        "figure4.svg",
        "thm1_vulnerability.png",
        "thm3_alignment.png",
        "circles_usefulness.png",
        "circles_usefulness.svg",
    ] {
        let p = dir.path().join("a").join(f);
        assert!(
            p.metadata().map(|m| m.len() > 1000).unwrap_or(false),
            "{f} missing or tiny"
        );
        assert!(a.files.iter().any(|n| n == f));
    }
    // No temporaries left behind.
    for e in std::fs::read_dir(dir.path().join("a")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary left: {name}");
    }
    let text = std::fs::read_to_string(dir.path().join("a/theory.json")).unwrap();
    let back: TheorySummary = serde_json::from_str(&text).unwrap();
    // serde_json's float parsing may differ from the written value in the last ulp.
    assert_close(
        &serde_json::to_value(&back).unwrap(),
        &serde_json::to_value(&a).unwrap(),
        "$",
    );

    let b = run_all_with(&dir.path().join("b"), 7, &small()).unwrap();
    assert_eq!(a.thm1, b.thm1);
    assert_eq!(a.thm2, b.thm2);
    assert_eq!(a.thm3, b.thm3);
    assert_eq!(a.risks, b.risks);
    assert_eq!(a.circles, b.circles);
    let c = run_all_with(&dir.path().join("c"), 8, &small()).unwrap();
    assert_ne!(a.risks, c.risks);
}

#[test]
fn run_all_rejects_bad_output_dir_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = run_all_with(&file, 0, &small()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let mut cfg = small();
    cfg.fig4_eps = vec![0.5];
    assert!(run_all_with(&dir.path().join("x"), 0, &cfg).is_err());
    let mut cfg = small();
    cfg.circles_factor = 1.5;
    assert!(run_all_with(&dir.path().join("y"), 0, &cfg).is_err());
}
