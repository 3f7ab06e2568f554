//! A run split over worker processes (`workers = 2`, one libtorch thread each) ends with exactly
//! the results of the same run in one process at one thread, file for file (JSON without
//! timings, weights and data sets byte for byte), computes every stage once, and records each
//! as done in run.json, dated from the invocation's start (not the last pass's). On the smoke
//! preset with the extras whose order matters to workers: the D_det study (its own source models
//! run beside the core; it reads eps_sensitivity's models), eps_sensitivity, over-fitting (reads
//! Figure 2's results), Figure 3 and the initialisation ablation (their models in each worker's
//! order); two seeds per fresh model (each worker takes the seeds in its own order).
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf) and the real
//! Fashion-MNIST files; without them the test says why and passes vacuously.
mod common;

use nrf::experiments::chaos::compare_results;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The smoke preset, trimmed to the parts that matter here.
const SET: &[&str] = &[
    "fresh.seeds=2",
    "eval.robust_n=50",
    "extras.diversity=false",
    "extras.source_vs_target=false",
    "extras.cosine_ablation=false",
    "extras.train_sizes=[]",
];

fn run(bin: &Path, results: &Path, set: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(["reproduce", "--quiet", "--preset", "smoke", "--results"])
        .arg(results);
    for s in SET.iter().chain(set) {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("starting nrf");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "nrf reproduce failed:\n{log}");
    log
}

#[test]
fn two_workers_give_the_one_process_results_and_compute_each_stage_once() {
    let Some(bin) = common::nrf_bin_with_fashion_mnist() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let t = std::time::Instant::now();
    run(&bin, &one, &["threads=1", "workers=1"]);
    let t_one = t.elapsed().as_secs_f64();
    let launched = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = std::time::Instant::now();
    let log = run(&bin, &two, &["threads=2", "workers=2"]);
    let t_two = t.elapsed().as_secs_f64();
    eprintln!("one process: {t_one:.0} s; two workers: {t_two:.0} s");
    assert!(
        log.contains("2 workers of 1 libtorch thread(s) each"),
        "{log}"
    );

    let (compared, diffs) = compare_results(&one, &two).unwrap();
    assert!(compared >= 40, "too few result files compared: {compared}");
    // The preset as run differs in `threads` and `workers`, as it should.
    let diffs: Vec<_> = diffs
        .into_iter()
        .filter(|d| {
            !d.starts_with("run.json: /config_toml") && !d.starts_with("run.json: /overrides")
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );

    // Every stage computed once, by one worker (a worker logs "<stage>: running (<key>)").
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        if let Some(i) = line.find(": running (") {
            let stage = line[..i].rsplit(' ').next().unwrap_or_default().to_string();
            *runs.entry(stage).or_default() += 1;
        }
    }
    let twice: Vec<_> = runs.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "stages computed more than once: {twice:?}"
    );
    // run.json: every stage done in this run (the workers'), none merely cached.
    let run_json = common::json(&two.join("run.json"));
    let stages = run_json["stages"].as_array().unwrap();
    assert_eq!(stages.len(), runs.len(), "{runs:?}");
    for s in stages {
        assert_eq!(s["status"], "done", "{s}");
    }
    // run.json dates the invocation, the workers' time included, not the last pass alone.
    let total = run_json["total_wall_s"].as_f64().unwrap();
    assert!(
        total > 0.5 * t_two && total <= t_two,
        "run.json total_wall_s {total:.1} s for an invocation of {t_two:.1} s"
    );
    let started: u64 = (run_json["started"].as_str().unwrap())
        .strip_prefix("unix:")
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        started <= launched + 2,
        "run.json started {started}, the command at {launched}"
    );
    // The workers' bookkeeping is gone.
    assert!(!two.join("work/workers").exists());
    assert!(!two.join("work/claims").exists());
}
