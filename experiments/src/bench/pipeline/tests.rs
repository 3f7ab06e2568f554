use super::*;
use crate::bench::PYTHON_ENV;
use std::path::PathBuf;

#[test]
fn flops_of_the_fmnist_cnn() {
    let (f, c1) = fmnist_cnn_flops([1, 28, 28], 10);
    // 112,896 + 903,168 + 903,168 + 802,816 + 2,560 multiply-adds.
    assert_eq!(f, 2.0 * 2_724_608.0);
    assert_eq!(c1, 2.0 * 112_896.0);
}

#[test]
fn bad_configs_are_rejected() {
    let ok = PipelineConfig::tiny();
    assert!(ok.validate().is_ok());
    for bad in [
        PipelineConfig {
            reps: 0,
            ..ok.clone()
        },
        PipelineConfig {
            threads: vec![],
            ..ok.clone()
        },
        PipelineConfig {
            rep_steps: 0,
            ..ok.clone()
        },
        PipelineConfig {
            stages: vec![],
            ..ok.clone()
        },
        PipelineConfig {
            relabel_eps: f64::NAN,
            ..ok.clone()
        },
        PipelineConfig {
            eval_l2_eps: vec![],
            eval_linf_eps: vec![],
            ..ok.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

/// A timed run of `wall_s` seconds with nothing else recorded.
fn run(wall_s: f64) -> StageRun {
    StageRun {
        wall_s,
        peak_rss_kb: None,
        rss_reset: false,
        result: serde_json::Value::Null,
    }
}

#[test]
fn stages_are_named_and_run_pairs_give_the_ratio_range() {
    for stage in Stage::ALL {
        assert_eq!(Stage::from_name(stage.name()).unwrap(), stage);
    }
    let e = format!("{:#}", Stage::from_name("train").unwrap_err());
    assert!(
        e.contains("unknown stage `train`") && e.contains("train_rob"),
        "{e}"
    );
    let rust = [run(2.0), run(4.0), run(3.0)];
    let python = [run(3.0), run(2.0), run(3.0)];
    assert_eq!(pair_ratio_range(&rust, &python), Some((0.5, 1.5)));
    assert_eq!(pair_ratio_range(&rust, &[]), None);
    // One pair (Python stopped answering after its first run): no spread to show.
    assert_eq!(pair_ratio_range(&rust, &python[..1]), None);
    assert_eq!(pair_ratio_interval(&rust, &python[..1]), None);
    // Ratios 1.5, 0.5, 1: the interval contains 1 (level); consistent pairs decide.
    let iv = pair_ratio_interval(&rust, &python);
    assert!(iv.is_some_and(|iv| iv.lo < 1.0 && iv.hi > 1.0), "{iv:?}");
    assert_eq!(SpeedVerdict::of(iv), SpeedVerdict::Level);
    let faster = [run(2.4), run(2.5), run(2.6)];
    let two = vec![run(2.0); 3];
    assert_eq!(
        SpeedVerdict::of(pair_ratio_interval(&two, &faster)),
        SpeedVerdict::Faster
    );
    assert_eq!(
        SpeedVerdict::of(pair_ratio_interval(&faster, &two)),
        SpeedVerdict::Slower
    );
    assert_eq!(SpeedVerdict::of(None).to_string(), "n/a");
}

/// Tiny sizes end to end: every stage runs, the JSON and the markdown table are written.
/// The Python side runs when NRF_PYTHON names a Python with torch (`cargo xtask test`);
/// otherwise it is skipped with a note.
#[test]
fn tiny_pipeline_bench_writes_its_table() {
    let python = std::env::var_os(PYTHON_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if python.is_none() {
        eprintln!("{PYTHON_ENV} is not set: the Python side of the pipeline bench is skipped");
    }
    let cfg = PipelineConfig {
        python: python.clone(),
        data_dir: None,
        ..PipelineConfig::tiny()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench-pipeline.json");
    let r = run_config(&cfg, &out).unwrap();
    // One round at 1 thread, then (with the twin) the side-by-side round.
    let rounds = if python.is_some() { 2 } else { 1 };
    assert_eq!(r.rows.len(), rounds * Stage::ALL.len());
    for (i, row) in r.rows.iter().enumerate() {
        assert_eq!(row.side_by_side, i >= Stage::ALL.len(), "{row:?}");
        assert_eq!(row.stage, Stage::ALL[i % Stage::ALL.len()]);
    }
    assert_eq!(r.totals().len(), rounds);
    assert_eq!(
        r.notes
            .iter()
            .any(|n| n.starts_with("side by side: not run")),
        python.is_none()
    );
    assert_eq!(r.data, "synthetic");
    for row in &r.rows {
        assert!(row.rust_s > 0.0 && row.rust_share > 0.0, "{row:?}");
        assert_eq!(row.rust_runs.len(), 1);
        assert_eq!(
            row.python_s.is_some(),
            python.is_some(),
            "{row:?} {:?}",
            r.notes
        );
    }
    let work = r.rows[4].attack_work.expect("robust evaluation's work");
    assert!(work.full_forward_rows >= work.forward_rows);
    // The ensemble: the accuracy after APGD-CE, then after APGD-T, never rising.
    let ensembles = r.rows.iter().filter(|r| r.stage == Stage::Ensemble);
    let runs = ensembles.flat_map(|e| e.rust_runs.iter().chain(&e.python_runs));
    for run in runs {
        let after: Vec<f64> = serde_json::from_value(run.result["after"].clone()).unwrap();
        assert!(after.len() == 2 && after[1] <= after[0], "{:?}", run.result);
    }
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert!(
        md.contains("| stage | work | threads | Rust s | Python s | ratio |"),
        "{md}"
    );
    assert!(md.contains("**whole pipeline**"), "{md}");
    // The twin ran with nrf's malloc settings (the default), and the header says so.
    assert!(r.config.python_malloc_as_nrf);
    assert!(md.contains("malloc: nrf's settings"), "{md}");
    if python.is_some() {
        assert!(
            md.contains("| ensemble | 8 img, APGD-CE + APGD-T 3 steps, L2 0.5 | 1 side by side |"),
            "{md}"
        );
    }
    // A markdown path for the JSON report would be overwritten by the table: refused.
    let e = format!(
        "{:#}",
        run_config(&cfg, &dir.path().join("b.md")).unwrap_err()
    );
    assert!(e.contains("b.md") && e.contains(".json"), "{e}");
    let back: PipelineReport = nrf_data::store::read_json(&out).unwrap();
    assert_eq!(back.rows.len(), r.rows.len());
    assert!(!dir.path().join(".bench-pipeline-work").exists());
}

/// The whole pipeline's interval comes from each run pair's sums over the stages.
#[test]
fn whole_pipeline_interval_is_of_the_pairs_sums() {
    let report = two_round_report(&[]);
    let t = &report.totals()[0];
    assert_eq!((t.threads, t.rust_s, t.python_s), (2, 4.0, Some(8.0)));
    let iv = t.ratio_interval.unwrap();
    assert!(
        (iv.lo - 2.0).abs() < 1e-12 && (iv.hi - 2.0).abs() < 1e-12,
        "{iv:?}"
    );
    assert_eq!(SpeedVerdict::of(t.ratio_interval), SpeedVerdict::Faster);
    assert!(report.to_markdown().contains(
        "| **whole pipeline** | all stages above | 2 | 4.00 | 8.00 | 2.00 | 2.00-2.00 | faster |"
    ));
    // No side-by-side round: one total, no "as run" line.
    assert_eq!(report.totals().len(), 1);
    assert!(report.as_run().is_none());
    assert!(!report.to_markdown().contains("As run"));
}

/// The side-by-side round has its own total, and "as run" compares half its Rust seconds (two
/// workers finish two stages in that time) with the twin's 2-thread seconds.
#[test]
fn side_by_side_round_and_the_as_run_ratio() {
    // Side by side, pair sums: Rust 6, 8, 10 s; Python 9, 12, 15 s.
    let report = two_round_report(&[
        (Stage::TrainStd, &[2.0, 4.0, 6.0], &[3.0, 6.0, 9.0]),
        (Stage::RepMatch, &[4.0, 4.0, 4.0], &[6.0, 6.0, 6.0]),
    ]);
    let totals = report.totals();
    assert_eq!(totals.len(), 2);
    let side = &totals[1];
    assert!(side.side_by_side && side.threads == 1);
    assert_eq!((side.rust_s, side.python_s), (8.0, Some(12.0)));
    let iv = side.ratio_interval.unwrap();
    assert!((iv.lo - 1.5).abs() < 1e-12 && (iv.hi - 1.5).abs() < 1e-12);
    // As run: the twin's 2-thread pair sums 6, 8, 10 s over half of nrf's 6, 8, 10 s: 2x.
    let a = report.as_run().unwrap();
    assert_eq!((a.rust_s, a.python_s, a.ratio), (4.0, 8.0, 2.0));
    let iv = a.ratio_interval.unwrap();
    assert!((iv.lo - 2.0).abs() < 1e-12 && (iv.hi - 2.0).abs() < 1e-12);
    let md = report.to_markdown();
    assert!(
        md.contains("| **whole pipeline** | all stages above | 1 side by side | 8.00 | 12.00 | 1.50 | 1.50-1.50 | faster |"),
        "{md}"
    );
    assert!(
        md.contains("| train_std | 10000 img x 1 ep | 1 side by side |"),
        "{md}"
    );
    assert!(md.contains("As run on 2 cores"), "{md}");
    assert!(
        md.contains("Results train_std (side by side, 1 thread each): "),
        "{md}"
    );
    assert!(md.contains("Results train_std (2 threads): "), "{md}");
    assert!(md.contains(": 2.00x (2.00-2.00;"), "{md}");
    // A side-by-side stage without its 2-thread row leaves "as run" undecided.
    let partial = two_round_report(&[(Stage::Ensemble, &[1.0, 1.0], &[1.0, 1.0])]);
    assert!(partial.as_run().is_none());
}

/// A report with a 2-thread round of train_std and rep_match (pair sums: Rust 3, 4, 5 s;
/// Python 6, 8, 10 s) and the side-by-side rows `side` (stage, Rust runs, Python runs).
fn two_round_report(side: &[(Stage, &[f64], &[f64])]) -> PipelineReport {
    let row = |stage: Stage, side_by_side: bool, rust: &[f64], python: &[f64]| PipelineRow {
        stage,
        threads: if side_by_side { 1 } else { 2 },
        side_by_side,
        images: 1,
        nominal_gflop: 1.0,
        rust_s: median(rust),
        python_s: Some(median(python)),
        ratio: Some(median(python) / median(rust)),
        ratio_range: None,
        ratio_interval: None,
        rust_share: 0.5,
        python_share: None,
        rust_rss_mib: None,
        python_rss_mib: None,
        rust_runs: rust.iter().map(|&s| run(s)).collect(),
        python_runs: python.iter().map(|&s| run(s)).collect(),
        attack_work: None,
    };
    let mut rows = vec![
        row(Stage::TrainStd, false, &[1.0, 2.0, 3.0], &[5.0, 2.0, 1.0]),
        row(Stage::RepMatch, false, &[2.0, 2.0, 2.0], &[1.0, 6.0, 9.0]),
    ];
    rows.extend(side.iter().map(|(st, r, p)| row(*st, true, r, p)));
    PipelineReport {
        config: PipelineConfig {
            threads: vec![2],
            ..PipelineConfig::default()
        },
        data: "synthetic".into(),
        release_build: true,
        python_version: None,
        torch_version: None,
        libtorch_version: None,
        forward_flops: 1.0,
        matmul_gflops: vec![(2, 1.0)],
        rows,
        loop_overhead: vec![],
        cpus: 2,
        load_before: None,
        load_after: None,
        wall_s: 1.0,
        notes: vec![],
        env: vec![],
    }
}
