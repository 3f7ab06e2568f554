//! Bad-input probes of `nrf reproduce` (issue 16, item 7), each failing before its fix: the
//! results folder checked (and nothing in it overwritten) before the data loads, the data's
//! splits and the model's normalisation checked when the data is read, messages that name the
//! path and say the OS error once, the install hint only for missing files.
use nrf_data::idx::{self, IdxImages};
use nrf_data::Split;
use nrf_experiments::preset::Preset;
use std::path::Path;

fn sets(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn smoke(overrides: &[&str]) -> (Preset, String) {
    Preset::load_with_overrides("smoke", &sets(overrides)).unwrap()
}

/// A Fashion-MNIST-shaped folder: `n` images of `side` x `side` per split (test: `test_side`).
fn fake_fmnist(dir: &Path, n: usize, side: usize, test_side: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (split, s) in [(Split::Train, side), (Split::Test, test_side)] {
        let (img, lab) = idx::idx_file_names(split);
        let images = IdxImages {
            count: n,
            rows: s,
            cols: s,
            pixels: (0..n * s * s).map(|i| (i * 7 % 256) as u8).collect(),
        };
        idx::write_idx_images(dir.join(img), &images, false).unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        idx::write_idx_labels(dir.join(lab), &labels, false).unwrap();
    }
}

fn reproduce(p: Preset, text: String, results: &Path, data: &Path) -> String {
    let e = nrf_experiments::reproduce(p, text, results.to_path_buf(), Some(data), false)
        .expect_err("the run should be refused");
    format!("{e:#}")
}

/// Counts how often `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn a_results_folder_of_another_preset_is_refused_before_the_data_loads() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let old = serde_json::json!({ "preset": "cifar10", "config_toml": "" }).to_string();
    std::fs::write(results.join("run.json"), &old).unwrap();
    std::fs::write(results.join("report.md"), "old report").unwrap();
    let (p, text) = smoke(&[]);
    // The data folder does not exist: the results folder must be refused first.
    let e = reproduce(p, text, &results, &dir.path().join("no-data"));
    assert!(e.contains("holds the results of preset \"cifar10\""), "{e}");
    assert!(e.contains("--results DIR"), "{e}");
    assert!(!e.contains("no-data"), "the data was loaded first: {e}");
    assert_eq!(
        std::fs::read_to_string(results.join("run.json")).unwrap(),
        old
    );
    assert_eq!(
        std::fs::read_to_string(results.join("report.md")).unwrap(),
        "old report"
    );
}

#[test]
fn results_that_is_a_file_is_refused_before_the_data_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("results.txt");
    std::fs::write(&file, "x").unwrap();
    let (p, text) = smoke(&[]);
    let e = reproduce(p, text, &file, &dir.path().join("no-data"));
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains("is a file, not a folder"), "{e}");
    assert!(!e.contains("no-data"), "{e}");
}

#[test]
fn train_and_test_splits_must_agree_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fmnist");
    fake_fmnist(&data, 12, 28, 32);
    let (p, _) = smoke(&[]);
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&data)).unwrap_err()
    );
    assert!(e.contains(&data.display().to_string()), "{e}");
    assert!(e.contains("28x28") && e.contains("32x32"), "{e}");
    fake_fmnist(&data, 0, 28, 28);
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&data)).unwrap_err()
    );
    assert!(e.contains("holds no image"), "{e}");
    fake_fmnist(&data, 12, 28, 28);
    nrf_experiments::pipeline::load_data(&p, Some(&data)).unwrap();
}

#[test]
fn mean_std_of_the_wrong_length_fails_at_load_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fmnist");
    fake_fmnist(&data, 12, 28, 28);
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let (p0, t0) = smoke(&[]);
    let old = serde_json::json!({ "preset": "smoke", "config_toml": t0 }).to_string();
    std::fs::write(results.join("run.json"), &old).unwrap();
    let _ = p0;
    let (p, text) = smoke(&["model.mean=[0.5, 0.5, 0.5]", "model.std=[0.2, 0.2, 0.2]"]);
    let e = reproduce(p, text, &results, &data);
    assert!(e.contains("`model.mean`"), "{e}");
    assert!(e.contains("have 1 channel"), "{e}");
    assert!(!e.contains("model spec"), "{e}");
    assert_eq!(
        std::fs::read_to_string(results.join("run.json")).unwrap(),
        old
    );
    assert!(!results.join("report.html").exists());
    assert!(!results.join("report.md").exists());
}

#[test]
fn the_install_hint_is_for_missing_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = smoke(&[]);
    let hint = "apt-get install";
    // Missing folder and missing files: the hint.
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&dir.path().join("none"))).unwrap_err()
    );
    assert!(e.contains(hint), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&empty)).unwrap_err()
    );
    assert!(
        e.contains(hint) && e.contains("train-images-idx3-ubyte"),
        "{e}"
    );
    // A corrupt file: no hint, the file named.
    let data = dir.path().join("fmnist");
    fake_fmnist(&data, 4, 28, 28);
    let (img, _) = idx::idx_file_names(Split::Train);
    std::fs::write(data.join(img), b"\x00\x00\x08\x03short").unwrap();
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&data)).unwrap_err()
    );
    assert!(!e.contains(hint), "{e}");
    assert!(e.contains(&data.join(img).display().to_string()), "{e}");
    // A data dir that is a file: said so, no hint.
    let file = dir.path().join("fashion.tar.gz");
    std::fs::write(&file, "x").unwrap();
    let e = format!(
        "{:#}",
        nrf_experiments::pipeline::load_data(&p, Some(&file)).unwrap_err()
    );
    assert!(e.contains("is a file, not a directory"), "{e}");
    assert!(!e.contains(hint), "{e}");
}

#[test]
fn a_stage_directory_error_names_the_directory_and_says_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fmnist");
    fake_fmnist(&data, 40, 28, 28);
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    // `work` is a file, so no stage can create its work folder.
    std::fs::write(results.join("work"), "in the way").unwrap();
    let (p, text) = smoke(&["threads=1", "eval.robust_n=8", "eval.curve_n=8"]);
    let e = reproduce(p, text, &results, &data);
    assert!(e.contains("stage train:C_std: creating"), "{e}");
    assert!(
        e.contains(&results.join("work").display().to_string()),
        "{e}"
    );
    assert_eq!(count(&e, "os error 20"), 1, "{e}");
}
