//! `--set` overrides end to end, through the library (no binary): the overridden preset drives
//! the stage keys (a cached stage is reused exactly when its inputs are unchanged), and run.json
//! records the overrides and the preset text with them applied. The smoke preset cut down to a
//! few seconds by overrides; needs the Fashion-MNIST files (skipped with a message without them).
mod common;

use common::stages;
use nrf_experiments::preset::Preset;
use std::path::Path;

/// The smoke preset at toy sizes, Figure 2 and Table 1 only.
const TINY: [&str; 22] = [
    "data.train_limit=500",
    "data.test_limit=200",
    "train_std.epochs=1",
    "train_rob.epochs=1",
    "train_rob.attack.steps=1",
    "eval.robust_n=20",
    "eval.steps=1",
    "eval.l2_eps=[0.5]",
    "eval.linf_eps=[]",
    "eval.curve_n=100",
    "rep_match.n=20",
    "rep_match.steps=2",
    "rep_match.batch_size=20",
    "relabel.n=20",
    "relabel.steps=2",
    "fresh.epochs=1",
    "fresh.seeds=1",
    "fresh.batch_size=10",
    "extras.enabled=false",
    "theory.skip=true",
    "threads=1",
    "name=smoke-tiny",
];

fn run(results: &Path, sets: &[String]) -> serde_json::Value {
    let (preset, text) = Preset::load_with_overrides("smoke", sets).unwrap();
    nrf_experiments::reproduce(preset, text, results.to_path_buf(), None, false).unwrap();
    let text = std::fs::read_to_string(results.join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn overrides_drive_stage_keys_and_are_recorded() {
    if !Path::new(nrf_data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("SKIPPED: needs Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r");
    let tiny: Vec<String> = TINY.iter().map(|s| s.to_string()).collect();

    let first = run(&results, &tiny);
    let first_stages = stages(&first);
    assert_eq!(first_stages["train:C_std"].0, "done");
    // run.json records the overrides, and its preset text is the preset as run.
    assert_eq!(first["overrides"], serde_json::json!(tiny));
    let recorded = Preset::parse(first["config_toml"].as_str().unwrap(), "run.json").unwrap();
    assert_eq!(recorded.rep_match.n, 20);
    assert_eq!(recorded.fresh.epochs, 1);
    assert!(!recorded.extras.enabled);

    // Only the fresh models' recipe changes: every stage before them is reused, the fresh
    // models (and their evaluations) are recomputed under new keys.
    let mut more = tiny.clone();
    more.push("fresh.epochs=2".into());
    let second = run(&results, &more);
    assert_eq!(second["overrides"], serde_json::json!(more));
    let recorded = Preset::parse(second["config_toml"].as_str().unwrap(), "run.json").unwrap();
    assert_eq!(recorded.fresh.epochs, 2);
    let second_stages = stages(&second);
    for (name, (status, key)) in &second_stages {
        let before = first_stages.get(name).map(|(_, k)| k);
        let expected = if before == Some(key) {
            "cached"
        } else {
            "done"
        };
        assert_eq!(status, expected, "stage {name}");
    }
    for name in [
        "train:C_std",
        "train:C_rob",
        "construct:D_R",
        "construct:D_det",
    ] {
        assert_eq!(
            second_stages[name].1, first_stages[name].1,
            "{name} must keep its key"
        );
        assert_eq!(second_stages[name].0, "cached", "{name}");
    }
    for name in ["train:on_D_R", "train:on_D_rand", "train:on_control"] {
        assert_ne!(second_stages[name].1, first_stages[name].1, "{name}");
        assert_eq!(second_stages[name].0, "done", "{name}");
    }
}
