//! `nrf gpu-check` (and `cargo xtask gpu-check`): the `cifar10` preset's code path at toy sizes
//! on CUDA and on the CPU, on a small synthetic data set in CIFAR-10's binary layout, and its
//! first numbers side by side. On a machine where libtorch sees no CUDA device it says so and
//! stops (successfully: there is nothing to check).
//!
//! The two runs are two `nrf reproduce` processes of this binary: the CUDA one as is (the
//! pipeline takes `Device::cuda_if_available()`), the CPU one with `CUDA_VISIBLE_DEVICES=""`.
//! CPU and CUDA draw different random numbers (initialisation, shuffles, random starts), so the
//! numbers agree statistically, not bit for bit: the check fails on a missing or non-finite
//! number, a run that did not use the device it should have, or a difference beyond
//! [`TOLERANCE`].
use anyhow::{bail, Context, Result};
use nrf_data::cifar::{write_cifar_batch, CIFAR_IMAGE_BYTES};
use nrf_results::{ConstructedInfo, ModelResult};
use std::path::Path;
use std::process::Command;

/// Largest accepted |CUDA − CPU| of an accuracy or success rate (absolute), and of a first-epoch
/// training loss or representation error (relative). Toy runs on 64-image evaluation subsets
/// are noisy; a device bug (wrong tensors, no learning) shows up far beyond this.
pub const TOLERANCE: f64 = 0.25;

/// The `--set` overrides of the toy CIFAR-10 run: every stage of the preset, minutes on a CPU.
pub const TOY_SETS: &[&str] = &[
    "model.arch.width=4",
    "train_std.epochs=1",
    "train_std.milestones=[]",
    "train_std.batch_size=64",
    "train_rob.epochs=1",
    "train_rob.milestones=[]",
    "train_rob.batch_size=64",
    "train_rob.attack.steps=2",
    "fresh.epochs=1",
    "fresh.milestones=[]",
    "fresh.batch_size=64",
    "eval.robust_n=64",
    "eval.steps=3",
    "eval.batch_size=128",
    "eval.curve_n=100",
    "rep_match.n=64",
    "rep_match.steps=5",
    "rep_match.batch_size=64",
    "relabel.n=64",
    "relabel.steps=5",
    "relabel.batch_size=64",
    "theory.skip=true",
];

/// Writes a synthetic CIFAR-10 in the binary version's layout under `dir`: `data_batch_1..5.bin`
/// (`n_train` records split over the five), `test_batch.bin` (`n_test`), `batches.meta.txt`.
/// Each class has its own colour and stripe pattern under uniform noise, so a model can learn it.
pub fn write_synthetic_cifar10(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    };
    let mut records = |n: usize| -> (Vec<u8>, Vec<u8>) {
        let mut images = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let y = (i % 10) as u8;
            labels.push(y);
            for ch in 0..3usize {
                let base = 40 + 18 * ((y as usize + 3 * ch) % 10);
                for r in 0..32usize {
                    for c in 0..32usize {
                        let stripe = if ((r + c * (y as usize % 3)) / (1 + y as usize / 3))
                            .is_multiple_of(2)
                        {
                            30
                        } else {
                            0
                        };
                        let noise = (next() % 60) as usize;
                        images.push((base + stripe + noise).min(255) as u8);
                    }
                }
            }
        }
        (images, labels)
    };
    let per = n_train.div_ceil(5);
    let mut left = n_train;
    for k in 1..=5 {
        let n = per.min(left);
        left -= n;
        let (x, y) = records(n);
        write_cifar_batch(dir.join(format!("data_batch_{k}.bin")), &x, &y)?;
    }
    let (x, y) = records(n_test);
    write_cifar_batch(dir.join("test_batch.bin"), &x, &y)?;
    std::fs::write(
        dir.join("batches.meta.txt"),
        nrf_data::cifar::CIFAR10_CLASSES.join("\n") + "\n",
    )?;
    Ok(())
}

/// What the check found.
#[derive(Debug)]
pub enum Outcome {
    /// libtorch sees no CUDA device.
    NoGpu,
    /// Both runs finished; the comparison table and whether every row is within tolerance.
    Compared { table: String, ok: bool },
}

/// Whether libtorch sees a CUDA device, in words.
pub fn cuda_status() -> (bool, String) {
    let available = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    let visible = std::env::var("CUDA_VISIBLE_DEVICES")
        .map(|v| format!(", CUDA_VISIBLE_DEVICES={v:?}"))
        .unwrap_or_default();
    (
        available && count > 0,
        format!("libtorch: CUDA available {available}, {count} device(s){visible}"),
    )
}

/// Runs the check in `work` (data, `cuda/`, `cpu/` results), spawning `nrf` = `exe`.
/// `without_gpu` (for testing the check itself on a machine without one): the "CUDA" run runs
/// wherever libtorch puts it, so two CPU runs are compared.
pub fn run(exe: &Path, work: &Path, without_gpu: bool) -> Result<Outcome> {
    let (gpu, _) = cuda_status();
    if !gpu && !without_gpu {
        return Ok(Outcome::NoGpu);
    }
    let data = work.join("data");
    write_synthetic_cifar10(&data, 500, 200, 1)?;
    let cuda = work.join("cuda");
    let cpu = work.join("cpu");
    reproduce(exe, &data, &cuda, false, !gpu)?;
    reproduce(exe, &data, &cpu, true, false)?;
    let (table, ok) = compare(&cuda, &cpu)?;
    Ok(Outcome::Compared { table, ok })
}

/// One toy `nrf reproduce --preset cifar10` into `results` (fresh), on the CPU if `cpu_only`;
/// checks that it ran on the CPU / on CUDA (unless `any_device`).
fn reproduce(
    exe: &Path,
    data: &Path,
    results: &Path,
    cpu_only: bool,
    any_device: bool,
) -> Result<()> {
    if results.exists() {
        std::fs::remove_dir_all(results)
            .with_context(|| format!("removing the old {}", results.display()))?;
    }
    let mut cmd = Command::new(exe);
    cmd.args(["reproduce", "--preset", "cifar10", "--quiet", "--data-dir"])
        .arg(data)
        .arg("--results")
        .arg(results);
    for s in TOY_SETS {
        cmd.arg("--set").arg(s);
    }
    if cpu_only {
        cmd.env("CUDA_VISIBLE_DEVICES", "");
    }
    let what = if cpu_only { "CPU" } else { "CUDA" };
    eprintln!(
        "nrf gpu-check: the toy cifar10 run on {what} -> {}",
        results.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!(
            "the toy cifar10 run on {what} failed ({status}); see its output above and {}/run.json",
            results.display()
        );
    }
    let run: serde_json::Value = nrf_data::store::read_json(results.join("run.json"))?;
    let device = run["machine"]["device"].as_str().unwrap_or("?").to_string();
    if !any_device && cpu_only != (device == "cpu") {
        bail!("the {what} run ran on {device:?}");
    }
    Ok(())
}

/// One compared number: (what, CUDA value, CPU value, relative?).
type Row = (String, f64, f64, bool);

/// The first numbers of the two results folders side by side; whether all are within
/// [`TOLERANCE`].
pub fn compare(cuda: &Path, cpu: &Path) -> Result<(String, bool)> {
    let mut rows: Vec<Row> = Vec::new();
    for model in [
        "C_std",
        "C_rob",
        "on_D_R",
        "on_D_NR",
        "on_control",
        "on_D_rand",
        "on_D_det",
    ] {
        let read = |dir: &Path| -> Result<ModelResult> {
            let p = dir.join(format!("models/{model}.json"));
            nrf_data::store::read_json(&p).with_context(|| format!("reading {}", p.display()))
        };
        let (a, b) = (read(cuda)?, read(cpu)?);
        let loss = |m: &ModelResult| m.epochs.first().map_or(f64::NAN, |e| e.train_loss);
        rows.push((
            format!("{model}: epoch 1 train loss"),
            loss(&a),
            loss(&b),
            true,
        ));
        rows.push((
            format!("{model}: test accuracy"),
            a.std_acc,
            b.std_acc,
            false,
        ));
        for (pa, pb) in a.robust.iter().zip(&b.robust) {
            if pa.norm == pb.norm && pa.eps == pb.eps {
                rows.push((
                    format!("{model}: robust accuracy {} {}", pa.norm, pa.eps),
                    pa.acc,
                    pb.acc,
                    false,
                ));
            }
        }
    }
    for set in ["D_R", "D_NR", "D_rand", "D_det"] {
        let read = |dir: &Path| -> Result<ConstructedInfo> {
            let p = dir.join(format!("datasets/{set}.json"));
            nrf_data::store::read_json(&p).with_context(|| format!("reading {}", p.display()))
        };
        let (a, b) = (read(cuda)?, read(cpu)?);
        if let (Some(x), Some(y)) = (a.final_rel_err, b.final_rel_err) {
            rows.push((format!("{set}: final representation error"), x, y, true));
        }
        if let (Some(x), Some(y)) = (a.success_rate, b.success_rate) {
            rows.push((format!("{set}: attack success"), x, y, false));
        }
    }
    Ok(table(&rows))
}

fn table(rows: &[Row]) -> (String, bool) {
    let mut ok = true;
    let mut s = String::from(
        "| number | CUDA | CPU | difference | within tolerance |\n|---|---:|---:|---:|---|\n",
    );
    for (what, a, b, relative) in rows {
        let diff = if *relative {
            (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
        } else {
            (a - b).abs()
        };
        let good = a.is_finite() && b.is_finite() && diff <= TOLERANCE;
        ok &= good;
        s += &format!(
            "| {what} | {a:.4} | {b:.4} | {diff:.4}{} | {} |\n",
            if *relative { " (relative)" } else { "" },
            if good { "yes" } else { "NO" }
        );
    }
    (s, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_cifar10_loads_with_every_class() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_cifar10(dir.path(), 103, 20, 3).unwrap();
        let train = nrf_data::cifar::load_cifar10(dir.path(), nrf_data::Split::Train).unwrap();
        let test = nrf_data::cifar::load_cifar10(dir.path(), nrf_data::Split::Test).unwrap();
        assert_eq!(train.len(), 103);
        assert_eq!(test.len(), 20);
        assert_eq!(train.shape, [3, 32, 32]);
        for c in 0..10 {
            assert!(train.labels.iter().any(|&y| y as usize == c), "class {c}");
        }
        // The classes differ in their mean colour (a signal to learn).
        let mean = |c: usize| -> f64 {
            let idx: Vec<usize> = (0..train.len())
                .filter(|&i| train.labels[i] as usize == c)
                .collect();
            let per = 3 * 32 * 32;
            let sum: f64 = idx
                .iter()
                .map(|&i| {
                    train.images[i * per..i * per + 1024]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                })
                .sum();
            sum / (idx.len() * 1024) as f64
        };
        assert!((mean(0) - mean(1)).abs() > 0.03, "{} {}", mean(0), mean(1));
    }

    #[test]
    fn the_table_flags_divergence_and_nan() {
        let rows = vec![
            ("a".to_string(), 0.80, 0.78, false),
            ("loss".to_string(), 2.0, 2.1, true),
        ];
        let (t, ok) = table(&rows);
        assert!(ok, "{t}");
        let (t, ok) = table(&[("acc".to_string(), 0.10, 0.80, false)]);
        assert!(!ok && t.contains("NO"), "{t}");
        let (_, ok) = table(&[("loss".to_string(), f64::NAN, 2.0, true)]);
        assert!(!ok);
    }
}
