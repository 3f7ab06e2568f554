use super::*;

/// An interrupted harness resumes its killed run only with the same arguments; otherwise
/// (or without a state) the killed run starts afresh.
#[test]
fn an_interrupted_harness_resumes_only_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChaosConfig {
        bin: PathBuf::from("nrf"),
        preset: "smoke".into(),
        set: vec!["fresh.seeds=1".into()],
        kills: 3,
        seed: 7,
        work: dir.path().to_path_buf(),
    };
    let (chaos, log, state) = (
        dir.path().join("chaos"),
        dir.path().join("chaos.log"),
        dir.path().join("chaos-state.json"),
    );
    let fill = || {
        std::fs::create_dir_all(&chaos).unwrap();
        std::fs::write(chaos.join("run.json"), "{}").unwrap();
        std::fs::write(&log, "old log").unwrap();
    };
    let kill = Kill {
        at_s: 1.0,
        at_fraction: 0.1,
        after_s: 0.5,
        doing: "training".into(),
    };
    let write_state = |c: &ChaosConfig| {
        let s = ChaosState {
            preset: c.preset.clone(),
            set: c.set.clone(),
            seed: c.seed,
            kills: c.kills,
            done: vec![kill.clone()],
        };
        nrf_data::store::write_json_atomic(&state, &s).unwrap();
    };
    // No state: afresh.
    fill();
    assert!(resume_or_reset(&cfg, &chaos, &log, &state)
        .unwrap()
        .is_empty());
    assert!(!chaos.exists() && !log.exists());
    // Same arguments: the kills made so far, folder and log kept.
    fill();
    write_state(&cfg);
    assert_eq!(
        resume_or_reset(&cfg, &chaos, &log, &state).unwrap(),
        vec![kill.clone()]
    );
    assert!(chaos.join("run.json").exists() && log.exists());
    // Another seed: afresh, state removed.
    let other = ChaosConfig {
        seed: 8,
        ..cfg.clone()
    };
    assert!(resume_or_reset(&other, &chaos, &log, &state)
        .unwrap()
        .is_empty());
    assert!(!chaos.exists() && !state.exists());
    // A damaged state: afresh.
    fill();
    std::fs::write(&state, "{not json").unwrap();
    assert!(resume_or_reset(&cfg, &chaos, &log, &state)
        .unwrap()
        .is_empty());
    assert!(!chaos.exists());
}

#[test]
fn volatile_keys_are_ignored_and_real_differences_named() {
    let a =
        serde_json::json!({"acc": 0.5, "wall_s": 3.0, "curve": [1, 2, {"x": 1, "started": "a"}]});
    let b =
        serde_json::json!({"acc": 0.5, "wall_s": 9.0, "curve": [1, 2, {"x": 1, "started": "b"}]});
    assert_eq!(
        first_difference(&strip_volatile(&a), &strip_volatile(&b), ""),
        None
    );
    let c = serde_json::json!({"acc": 0.5, "wall_s": 3.0, "curve": [1, 2, {"x": 2}]});
    let d = first_difference(&strip_volatile(&a), &strip_volatile(&c), "").unwrap();
    assert!(d.starts_with("/curve/2/x"), "{d}");
}

#[test]
fn compare_results_finds_missing_changed_and_extra_files() {
    let dir = tempfile::tempdir().unwrap();
    let (r, k) = (dir.path().join("r"), dir.path().join("k"));
    for d in [&r, &k] {
        std::fs::create_dir_all(d.join("models")).unwrap();
        std::fs::create_dir_all(d.join("work")).unwrap();
        std::fs::write(d.join("models/a.json"), r#"{"acc": 1, "wall_s": 2}"#).unwrap();
        std::fs::write(d.join("work/scratch.json"), "not compared").unwrap();
    }
    std::fs::write(k.join("models/a.json"), r#"{"acc": 1, "wall_s": 5}"#).unwrap();
    assert_eq!(compare_results(&r, &k).unwrap(), (1, vec![]));
    std::fs::write(r.join("models/b.safetensors"), b"xy").unwrap();
    std::fs::write(k.join("models/b.safetensors"), b"xz").unwrap();
    std::fs::write(k.join("models/c.json"), "{}").unwrap();
    let (n, d) = compare_results(&r, &k).unwrap();
    assert_eq!(n, 2);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d
        .iter()
        .any(|x| x.contains("c.json: only in the killed run")));
    assert!(d.iter().any(|x| x.contains("b.safetensors: bytes differ")));
}
