use super::*;

fn tiny(python: Option<PathBuf>) -> BenchConfig {
    BenchConfig {
        reps: 2,
        warmup: 0,
        threads: vec![1],
        batch: 4,
        pgd_steps: 1,
        python,
        rows: Row::ALL.to_vec(),
    }
}

#[test]
fn median_odd_even_empty() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert!(median(&[]).is_nan());
}

#[test]
fn bad_configs_are_rejected() {
    for cfg in [
        BenchConfig {
            reps: 0,
            ..tiny(None)
        },
        BenchConfig {
            threads: vec![0],
            ..tiny(None)
        },
        BenchConfig {
            threads: vec![],
            ..tiny(None)
        },
        BenchConfig {
            batch: 0,
            ..tiny(None)
        },
        BenchConfig {
            pgd_steps: 0,
            ..tiny(None)
        },
        BenchConfig {
            rows: vec![],
            ..tiny(None)
        },
    ] {
        assert!(cfg.validate().is_err(), "{cfg:?}");
    }
    assert!(tiny(None).validate().is_ok());
    assert!(run(Some(0), true, Path::new("unused.json")).is_err());
}

#[test]
fn check_values_are_deterministic_and_sensitive() {
    tch::set_num_threads(1);
    let a = CheckValues::rust(4, 2).unwrap();
    let b = CheckValues::rust(4, 2).unwrap();
    assert_eq!(a.compare(&b), (0.0, true));
    assert!(
        a.train_loss_1.is_finite()
            && a.pgd_objective_mean.is_finite()
            && a.rep_match_objective_mean.is_finite()
    );
    // One SGD step on the same batch changes the loss; a PGD ascent increases the CE.
    assert!(a.train_loss_2 != a.train_loss_1);
    let c = CheckValues {
        pgd_objective_mean: a.pgd_objective_mean * 1.01,
        ..a.clone()
    };
    assert!(a.compare(&c).0 > CHECK_RTOL);
}

#[test]
fn missing_python_gives_rust_only_rows_and_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(Some(dir.path().join("no-such-python")));
    let r = run_config(&cfg).unwrap();
    assert_eq!(r.rows.len(), 3);
    for row in &r.rows {
        assert_eq!(row.rust_samples_ms.len(), 2);
        assert!(row.rust_ms > 0.0 && row.rust_ms.is_finite());
        assert_eq!((row.python_ms, row.ratio), (None, None));
    }
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("no-such-python") && n.contains(PYTHON_ENV)),
        "{:?}",
        r.notes
    );
    let md = r.to_markdown();
    assert!(md.contains("| row | threads | Rust ms | Python ms | ratio |"));
    assert_eq!(md.matches("| n/a | n/a |").count(), 3, "{md}");
}

/// With a Python that has torch (NRF_PYTHON, as `cargo xtask test` may set), both columns are
/// filled and the two sides agree on the deterministic check; otherwise the note explains.
#[test]
fn python_side_agrees_or_explains() {
    let cfg = tiny(Some(python_from_env()));
    let out = tempfile::tempdir().unwrap();
    let r = run_config(&cfg).unwrap();
    let path = out.path().join("bench.json");
    nrf_data::store::write_json_atomic(&path, &r).unwrap();
    let back: BenchReport = nrf_data::store::read_json(&path).unwrap();
    assert_eq!(back.rows.len(), r.rows.len());
    match &r.check {
        Some(c) => {
            assert!(c.agree, "Rust and Python disagree: {c:?}");
            for row in &r.rows {
                assert!(
                    row.python_ms.is_some() && row.ratio.unwrap() > 0.0,
                    "{row:?}"
                );
                assert_eq!(row.python_samples_ms.len(), 2);
            }
        }
        None => {
            assert!(!r.notes.is_empty() && r.rows.iter().all(|row| row.python_ms.is_none()))
        }
    }
}

/// The Python workers start with nrf's glibc malloc settings (unless the variable is exported
/// here, where the exported value wins), and with nothing added when asked for nothing.
#[test]
fn python_workers_get_nrfs_malloc_settings() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.py");
    std::fs::write(
        &script,
        "import json, os\nprint(json.dumps({\"ok\": True, \"python\": os.environ.get(\"MALLOC_MMAP_THRESHOLD_\"), \"torch\": os.environ.get(\"MALLOC_TRIM_THRESHOLD_\")}), flush=True)\n",
    )
    .unwrap();
    let args = [script.as_os_str()];
    let python = python_from_env();
    let env = nrf_models::runtime::malloc_env();
    let (_w, hello) = worker::JsonWorker::start(&python, &args, &env, "-").unwrap();
    let want = |k: &str, v: &str| std::env::var(k).unwrap_or_else(|_| v.to_string());
    assert_eq!(
        hello.python.as_deref(),
        Some(want("MALLOC_MMAP_THRESHOLD_", "33554432").as_str())
    );
    assert_eq!(
        hello.torch.as_deref(),
        Some(want("MALLOC_TRIM_THRESHOLD_", "1073741824").as_str())
    );
    let (_w, hello) = worker::JsonWorker::start(&python, &args, &[], "-").unwrap();
    assert_eq!(
        hello.python,
        std::env::var("MALLOC_MMAP_THRESHOLD_").ok(),
        "nothing added"
    );
}
