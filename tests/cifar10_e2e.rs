//! End-to-end: the `cifar10` preset's own code path through the real `nrf` binary, on a small
//! CIFAR-10 data set that the test writes in the binary version's exact on-disk layout
//! (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`, `batches.meta.txt`; records of one
//! label byte and 3072 pixel bytes, the 32x32 red plane, then green, then blue, row-major).
//!
//! Everything the preset does runs — ResNet-50 (bottleneck blocks, at a reduced width), crop +
//! flip augmentation, per-channel normalisation inside the model, the step learning-rate
//! schedule, relative-L2 representation matching, every stage and the report — only at toy sizes
//! (`--set` overrides; no stage is skipped).
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf); without it
//! the test says why and passes vacuously.
use std::path::Path;
use std::process::Command;

mod common;
use common::{check_run, hue, json, nrf_bin, Expect, Rng};

/// Images per training batch file (five files) and in the test file.
const PER_BATCH: usize = 50;
const TEST_N: usize = 100;

const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// One 32x32 RGB image of class `c` as CIFAR's 3072 planar bytes: a class colour, a class
/// stripe pattern (orientation and period), and noise.
fn cifar_image(c: usize, rng: &mut Rng) -> Vec<u8> {
    let base = hue(c, 10);
    let period = 2 + c % 5;
    let vertical = c.is_multiple_of(2);
    let mut out = vec![0u8; 3072];
    for ch in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let t = if vertical { x } else { y };
                let stripe = if (t / period).is_multiple_of(2) {
                    0.12
                } else {
                    -0.12
                };
                let v = base[ch] + stripe + 0.2 * (rng.uniform() - 0.5);
                out[ch * 1024 + y * 32 + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    out
}

/// Writes a CIFAR-10 binary-version folder: 5 training batches of `PER_BATCH` records, a test
/// batch of `TEST_N`, and batches.meta.txt.
fn write_cifar10(dir: &Path) {
    let mut rng = Rng(0x5eed_c1fa);
    let mut batch = |n: usize, offset: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(n * 3073);
        for i in 0..n {
            let label = (i + offset + (rng.next() % 3) as usize) % 10;
            bytes.push(label as u8);
            bytes.extend(cifar_image(label, &mut rng));
        }
        assert_eq!(bytes.len(), n * 3073);
        bytes
    };
    for b in 1..=5 {
        let bytes = batch(PER_BATCH, b);
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let bytes = batch(TEST_N, 7);
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    // As in the archive: one name per line and a trailing empty line.
    std::fs::write(dir.join("batches.meta.txt"), CLASSES.join("\n") + "\n\n").unwrap();
}

/// The toy sizes: every value the preset keeps is its own (ResNet-50 family, step schedule with
/// gamma 0.1, the paper's code's CIFAR transforms (crop 4, flip, jitter 0.25, rotation 2; none for
/// D_det), SGD 0.1 / 0.9 / 5e-4, mean/std, relative-L2 matching from other
/// images, the eval grid). One libtorch thread: on a shared 2-core machine two spinning threads
/// are several times slower than one.
const OVERRIDES: &[&str] = &[
    "threads=1",
    "model.arch.width=8",
    "train_std.epochs=6",
    "train_std.milestones=[4]",
    "train_std.batch_size=25",
    "train_rob.epochs=2",
    "train_rob.milestones=[1]",
    "train_rob.batch_size=25",
    "train_rob.attack.steps=2",
    "fresh.epochs=2",
    "fresh.milestones=[1]",
    "fresh.batch_size=20",
    "eval.robust_n=20",
    "eval.steps=2",
    "eval.batch_size=20",
    "rep_match.n=40",
    "rep_match.steps=5",
    "rep_match.batch_size=20",
    "relabel.n=40",
    "relabel.steps=3",
    "relabel.batch_size=20",
];

#[test]
fn cifar10_preset_runs_end_to_end_on_format_true_data() {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return;
    };
    let start = std::time::Instant::now();
    let (_guard, dir) = common::test_dir();
    let data = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    write_cifar10(&data);
    let results = dir.join("cifar10");
    let mut cmd = Command::new(&bin);
    cmd.args(["reproduce", "--quiet", "--preset", "cifar10", "--data-dir"])
        // The parent: the loader finds `cifar-10-batches-bin/` as the archive unpacks it.
        .arg(&dir)
        .arg("--results")
        .arg(&results);
    for o in OVERRIDES {
        cmd.args(["--set", o]);
    }
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nrf reproduce failed:\n{log}");
    eprintln!("cifar10 run: {:.1} s", start.elapsed().as_secs_f64());

    let run = json(&results.join("run.json"));
    assert_eq!(run["preset"], "cifar10");
    assert_eq!(
        run["overrides"].as_array().map(Vec::len),
        Some(OVERRIDES.len()),
        "run.json does not record the overrides: {run}"
    );
    check_run(
        &results,
        &Expect {
            num_classes: 10,
            shape: [3, 32, 32],
            rep_n: 40,
            relabel_n: 40,
            robust_n: 20,
            distance: "L2Relative",
        },
    );

    // The preset's own code path: ResNet-50 at the reduced width, normalisation inside the model
    // with the preset's mean / std, the paper's code's CIFAR transforms, the step schedule.
    let spec = json(&results.join("weights/C_std.json"));
    assert_eq!(spec["arch"]["type"], "resnet50", "{spec}");
    assert_eq!(spec["arch"]["width"], 8, "{spec}");
    assert_eq!(spec["mean"][0], 0.4914, "{spec}");
    assert_eq!(spec["std"][2], 0.201, "{spec}");
    let config = run["config_toml"].as_str().unwrap();
    for field in [
        "crop_pad = 4",
        "color_jitter = 0.25",
        "rotate_deg = 2.0",
        "augment = false",
    ] {
        assert!(config.contains(field), "{field}: {config}");
    }
    let c_std = json(&results.join("models/C_std.json"));
    assert_eq!(c_std["train_size"], 5 * PER_BATCH);
    assert_eq!(c_std["test_size"], TEST_N);
    let lrs: Vec<f64> = c_std["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lr"].as_f64().unwrap())
        .collect();
    assert_eq!(lrs.len(), 6);
    assert!(
        lrs[..4].iter().all(|&l| l == 0.1) && lrs[4..].iter().all(|&l| (l - 0.01).abs() < 1e-9),
        "not the step schedule (0.1, x0.1 after epoch 4): {lrs:?}"
    );
    // A simple signal: the standard model learns it (chance is 10%).
    let acc = c_std["std_acc"].as_f64().unwrap();
    assert!(acc > 0.3, "C_std did not learn the class colours: {acc}");
}

/// `nrf reproduce --preset cifar10` on `data`: its stderr, a failure without a panic.
fn failing_run(bin: &Path, data: &Path, results: &Path) -> String {
    common::failing_reproduce(bin, &["--preset", "cifar10"], data, results)
}

#[test]
fn broken_cifar10_files_are_clear_errors() {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return;
    };
    let (_guard, dir) = common::test_dir();
    let data = dir.join("data");
    let results = dir.join("r");
    std::fs::create_dir_all(&data).unwrap();
    write_cifar10(&data);
    let names = |err: &str, file: &str, what: &str| {
        let path = data.join(file).display().to_string();
        assert!(
            err.contains(&path) && err.contains(what),
            "the error does not name {path} and say {what:?}:\n{err}"
        );
    };

    // A record cut short.
    let batch3 = data.join("data_batch_3.bin");
    let good = std::fs::read(&batch3).unwrap();
    std::fs::write(&batch3, &good[..good.len() - 5]).unwrap();
    let err = failing_run(&bin, &data, &results);
    names(&err, "data_batch_3.bin", "3073-byte records");
    std::fs::write(&batch3, &good).unwrap();

    // A label byte outside 0..10.
    let test = data.join("test_batch.bin");
    let good = std::fs::read(&test).unwrap();
    let mut bad = good.clone();
    bad[3 * 3073] = 10;
    std::fs::write(&test, &bad).unwrap();
    let err = failing_run(&bin, &data, &results);
    names(&err, "test_batch.bin", "label 10 of example 3");
    std::fs::write(&test, &good).unwrap();

    // A missing batch: the OS error once, not twice.
    std::fs::remove_file(data.join("data_batch_5.bin")).unwrap();
    let err = failing_run(&bin, &data, &results);
    names(&err, "data_batch_5.bin", "cannot read");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
