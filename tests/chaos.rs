//! The kill/resume harness on the smoke preset's core (Figure 2 + Table 1, no extras, one seed): one run
//! uninterrupted, one SIGKILLed 10 times at seeded random moments and resumed; every result
//! file (JSON without timings, weights and data sets byte for byte) must be identical. Both runs
//! use 1 libtorch thread (bit-for-bit reproducible on a CPU). `cargo xtask chaos` runs the same
//! harness on any preset.
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf) and the real
//! Fashion-MNIST files; without them the test says why and passes vacuously.
mod common;

use nrf::experiments::chaos::{run, ChaosConfig};

#[test]
fn killed_ten_times_the_smoke_run_ends_with_the_uninterrupted_results() {
    let Some(bin) = common::nrf_bin_with_fashion_mnist() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChaosConfig {
        bin,
        preset: "smoke".into(),
        // The smoke preset's core, one seed per fresh model: every stage kind (training, PGD
        // and ensemble evaluation, both constructions, fresh models, theory), a few minutes on
        // 1 thread.
        set: ["extras.enabled=false", "fresh.seeds=1", "eval.robust_n=50"]
            .map(String::from)
            .to_vec(),
        kills: 10,
        seed: 7,
        work: dir.path().to_path_buf(),
    };
    let report = run(&cfg).unwrap();
    eprintln!("{}", report.to_text());
    assert_eq!(report.kills.len(), 10);
    assert!(
        report.compared >= 20,
        "too few result files compared: {}",
        report.compared
    );
    assert!(report.identical(), "{}", report.to_text());
    assert!(report.damaged.is_empty(), "{}", report.to_text());
}
