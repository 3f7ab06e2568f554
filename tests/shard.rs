//! Sharding (`nrf reproduce --shard k/n`, docs/cluster.md) on the smoke preset, shrunk with
//! `--set` and without its `[eval] ensemble` (not sharded, and most of the time of the two
//! ordinary runs): the source models are trained once (`--only sources`) and the folder copied; one copy
//! runs unsharded, the other as 3 shard jobs, `--only train`, 3 shard jobs again (the fresh
//! models' evaluations) and an ordinary run. The merged D_R, D_NR, D_rand and D_det files must
//! equal the unsharded ones byte for byte, and every robust evaluation (C_std, C_rob and the
//! fresh models, sharded) must give the same numbers. Missing and duplicate slices, bad
//! `--shard` values and shard jobs without trained source models must fail with clear errors.
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf) and the real
//! Fashion-MNIST files; without them the test says why and passes vacuously.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use nrf::features::chunks::{check_slices, merge_slices, write_slice, Shard};
use tch::Tensor;

fn nrf_bin() -> Option<PathBuf> {
    let p = std::env::var_os("NRF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/nrf"));
    p.exists().then_some(p)
}

fn data_present() -> bool {
    Path::new(nrf::data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
}

/// The smoke preset at a few seconds per stage: 3 chunks per construction, 3 batches per
/// robust evaluation, so that 3 shards each get one.
const SETS: &[&str] = &[
    "data.train_limit=600",
    "data.test_limit=200",
    "train_std.epochs=1",
    "train_rob.epochs=1",
    "eval.robust_n=60",
    "eval.batch_size=20",
    "eval.steps=3",
    "rep_match.n=90",
    "rep_match.batch_size=30",
    "rep_match.steps=8",
    "relabel.n=90",
    "relabel.batch_size=30",
    "relabel.steps=5",
    "fresh.epochs=1",
    "fresh.seeds=2",
    "extras.enabled=false",
    "theory.skip=true",
];

const SETS_BUILT: [&str; 4] = ["D_NR", "D_R", "D_rand", "D_det"];

/// The smoke preset without its ensemble line, as a file in `dir`.
fn smoke_preset(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/presets/smoke.toml"),
    )
    .unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("ensemble"))
        .collect();
    assert!(
        kept.len() < text.lines().count(),
        "smoke.toml has no ensemble line"
    );
    let path = dir.join("smoke-no-ensemble.toml");
    std::fs::write(&path, kept.join("\n")).unwrap();
    path
}

fn nrf(bin: &Path, preset: &Path, results: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(["reproduce", "--quiet", "--preset"])
        .arg(preset)
        .arg("--results")
        .arg(results);
    for s in SETS {
        cmd.args(["--set", s]);
    }
    cmd.args(extra).output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn fails(out: Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} should fail");
    assert!(!text.contains("panicked"), "{what} panicked:\n{text}");
    text
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The slice folders under `results/work/` whose stage name starts with `stage`.
fn slice_dirs(results: &Path, stage: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(results.join("work")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(stage))
        .flat_map(|e| [e.path().join("slices"), e.path().join("chunks/slices")])
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The evaluated models' stage outputs (test accuracy and the robust grid), by model.
fn evals(results: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(results.join("stages")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(model) = name
            .strip_prefix("eval_")
            .and_then(|n| n.strip_suffix(".json"))
        {
            let rec = json(&results.join("stages").join(&name));
            let out = &rec["output"];
            v.push((
                model.to_string(),
                serde_json::json!([rec["key"], out["std_acc"], out["robust"]]),
            ));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn sharded_build_equals_the_unsharded_one() {
    let (Some(bin), true) = (nrf_bin(), data_present()) else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`) and Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("unsharded");
    let b = dir.path().join("sharded");
    let preset = smoke_preset(dir.path());

    bad_shard_arguments_are_refused(&bin, &preset, &a);

    // The source models once; both folders start from them.
    ok(
        nrf(&bin, &preset, &a, &["--only", "sources"]),
        "--only sources",
    );
    assert!(a.join("weights/C_rob.safetensors").exists());
    assert!(
        !a.join("models/C_std.json").exists(),
        "--only sources evaluated"
    );
    copy_dir(&a, &b);
    let t_sources = t0.elapsed().as_secs_f64();

    // A: unsharded.
    ok(nrf(&bin, &preset, &a, &[]), "unsharded run");
    let t_unsharded = t0.elapsed().as_secs_f64() - t_sources;

    three_shard_jobs_store_slices(&bin, &preset, &b);
    slices_are_kept_and_checked(&bin, &preset, &b, dir.path());

    merge_train_and_shard_the_evaluations(&bin, &preset, &b);

    the_sharded_results_equal_the_unsharded(&a, &b);
    eprintln!(
        "shard test: sources {t_sources:.0}s, unsharded run {t_unsharded:.0}s, total {:.0}s",
        t0.elapsed().as_secs_f64()
    );
}

/// Bad `--shard` values (clap's error, no panic, nothing run), a shard job before the source
/// models are trained (it says what to run first) and `--shard` with `--only`.
fn bad_shard_arguments_are_refused(bin: &Path, preset: &Path, a: &Path) {
    // Bad --shard values: clap's error, no panic, nothing run.
    for bad in ["4/3", "0/3", "x", "3", "1/0", "2/3/4"] {
        let err = fails(
            nrf(bin, preset, a, &["--shard", bad]),
            &format!("--shard {bad}"),
        );
        assert!(err.contains("k/n"), "--shard {bad}: {err}");
    }
    // A shard job before the source models are trained says what to run first.
    let err = fails(
        nrf(bin, preset, a, &["--shard", "1/3"]),
        "shard before training",
    );
    assert!(
        err.contains("--only sources") && err.contains("C_std"),
        "{err}"
    );
    let err = fails(
        nrf(bin, preset, a, &["--shard", "1/3", "--only", "train"]),
        "--shard with --only",
    );
    assert!(err.contains("do not go together"), "{err}");
}

/// 3 shard jobs: C_std / C_rob evaluation and every construction, a slice each; no result
/// written.
fn three_shard_jobs_store_slices(bin: &Path, preset: &Path, b: &Path) {
    // B: 3 shard jobs: C_std / C_rob evaluation and every construction, a slice each.
    for k in 1..=3 {
        let out = ok(
            nrf(bin, preset, b, &["--shard", &format!("{k}/3")]),
            &format!("shard {k}/3"),
        );
        assert!(out.contains("slices stored"), "{out}");
        assert!(!b.join("data/D_R.safetensors").exists());
    }
    for stage in [
        "construct_D_NR-",
        "construct_D_R-",
        "construct_D_rand-",
        "construct_D_det-",
        "eval_C_std-",
        "eval_C_rob-",
    ] {
        let dirs = slice_dirs(b, stage);
        assert_eq!(dirs.len(), 1, "{stage}: {dirs:?}");
        assert_eq!(
            files_in(&dirs[0]),
            [
                "slice-1of3.safetensors",
                "slice-2of3.safetensors",
                "slice-3of3.safetensors"
            ],
            "{stage}"
        );
    }
    assert!(
        !b.join("models/C_std.json").exists(),
        "a shard job wrote a result"
    );
}

/// A shard run again recomputes nothing (a leftover temporary file ignored); `nrf shards` and the
/// merging run name a missing slice, `nrf shards` a duplicate one.
fn slices_are_kept_and_checked(bin: &Path, preset: &Path, b: &Path, dir: &Path) {
    // A shard run again finds its slices and recomputes nothing (bytes unchanged).
    let d_r = slice_dirs(b, "construct_D_R-").remove(0);
    let before = std::fs::read(d_r.join("slice-2of3.safetensors")).unwrap();
    // A leftover temporary file of an interrupted write is ignored.
    std::fs::write(d_r.join("slice-2of3.safetensors.tmp999"), b"partial").unwrap();
    let out = ok(nrf(bin, preset, b, &["--shard", "2/3"]), "shard 2/3 again");
    assert!(out.contains("slices stored"), "{out}");
    assert_eq!(
        before,
        std::fs::read(d_r.join("slice-2of3.safetensors")).unwrap()
    );
    let checked = ok(
        Command::new(bin)
            .args(["shards", "--results"])
            .arg(b)
            .output()
            .unwrap(),
        "nrf shards",
    );
    assert!(
        checked.contains("construct_D_R-") && checked.contains("complete, 3 slices"),
        "{checked}"
    );

    // A missing slice: `nrf shards` and the next ordinary run name the shard and the file.
    let moved = dir.join("slice-2of3.safetensors");
    std::fs::rename(d_r.join("slice-2of3.safetensors"), &moved).unwrap();
    let err = fails(
        Command::new(bin)
            .args(["shards", "--results"])
            .arg(b)
            .output()
            .unwrap(),
        "nrf shards with a missing slice",
    );
    assert!(
        err.contains("shard 2/3") && err.contains("slice-2of3.safetensors"),
        "{err}"
    );
    let err = fails(
        nrf(bin, preset, b, &["--only", "train"]),
        "merge with a missing slice",
    );
    assert!(
        err.contains("construct:D_R") && err.contains("shard 2/3") && err.contains("missing"),
        "{err}"
    );
    // A duplicate: a slice of another shard count over the same chunks.
    std::fs::rename(&moved, d_r.join("slice-2of3.safetensors")).unwrap();
    let tensors =
        nrf::models::checkpoint::read_tensors(&d_r.join("slice-1of3.safetensors")).unwrap();
    let data: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(n, _)| !n.starts_with("slice_"))
        .collect();
    let total = 3;
    let dup = write_slice(
        d_r.parent().unwrap(),
        Shard::new(1, 2).unwrap(),
        0..1,
        total,
        &[30],
        1,
        data,
    )
    .unwrap();
    let err = fails(
        Command::new(bin)
            .args(["shards", "--results"])
            .arg(b)
            .output()
            .unwrap(),
        "nrf shards with a duplicate slice",
    );
    assert!(
        err.contains("duplicate")
            && err.contains("slice-1of2.safetensors")
            && err.contains("slice-1of3.safetensors"),
        "{err}"
    );
    std::fs::remove_file(dup).unwrap();
}

/// Merge the constructions and train the fresh models (their evaluations deferred), shard their
/// evaluations, and merge everything in the ordinary run.
fn merge_train_and_shard_the_evaluations(bin: &Path, preset: &Path, b: &Path) {
    // Merge the constructions, train the fresh models (their evaluations deferred) ...
    ok(nrf(bin, preset, b, &["--only", "train"]), "--only train");
    for set in SETS_BUILT {
        assert!(
            b.join(format!("data/{set}.safetensors")).exists(),
            "{set} not merged"
        );
    }
    assert!(
        slice_dirs(b, "construct_").is_empty(),
        "construction slices left after the merge"
    );
    // ... then shard their evaluations ...
    for k in 1..=3 {
        ok(
            nrf(bin, preset, b, &["--shard", &format!("{k}/3")]),
            &format!("second shard {k}/3"),
        );
    }
    for model in ["on_D_R-", "on_D_R~s1-", "on_D_det-", "on_control-"] {
        let dirs = slice_dirs(b, &format!("eval_{model}"));
        assert_eq!(dirs.len(), 1, "eval_{model}: {dirs:?}");
        assert_eq!(files_in(&dirs[0]).len(), 3, "eval_{model}");
    }
    // ... and merge everything in the ordinary run.
    ok(nrf(bin, preset, b, &[]), "merging run");
    assert!(
        slice_dirs(b, "").is_empty(),
        "slices left after the merging run"
    );
}

/// Byte for byte: the constructed sets and the fresh models trained on them; every evaluation
/// with the same stage key, test accuracy and robust grid.
fn the_sharded_results_equal_the_unsharded(a: &Path, b: &Path) {
    // Byte for byte: the constructed sets and the fresh models trained on them.
    for set in SETS_BUILT {
        let (fa, fb) = (
            std::fs::read(a.join(format!("data/{set}.safetensors"))).unwrap(),
            std::fs::read(b.join(format!("data/{set}.safetensors"))).unwrap(),
        );
        assert!(
            fa == fb,
            "{set}: the sharded build differs from the unsharded one"
        );
        let wa = std::fs::read(a.join(format!("weights/on_{set}.safetensors"))).unwrap();
        let wb = std::fs::read(b.join(format!("weights/on_{set}.safetensors"))).unwrap();
        assert!(wa == wb, "on_{set}: weights differ");
    }
    // Every evaluation: the same stage key, test accuracy and robust grid.
    let (ea, eb) = (evals(a), evals(b));
    let names: Vec<&str> = ea.iter().map(|(n, _)| n.as_str()).collect();
    for m in [
        "C_std",
        "C_rob",
        "on_D_R",
        "on_D_R~s1",
        "on_D_NR",
        "on_D_rand",
        "on_D_det",
        "on_control",
    ] {
        assert!(names.contains(&m), "no evaluation of {m}: {names:?}");
    }
    assert_eq!(
        ea, eb,
        "the sharded evaluations differ from the unsharded ones"
    );
    let robust = &ea.iter().find(|(n, _)| n == "C_rob").unwrap().1[2];
    assert_eq!(robust.as_array().map(|r| r.len()), Some(3), "{robust}");
    for (name, model_a) in ["C_std", "C_rob", "on_D_R", "on_D_det"]
        .map(|m| (m, json(&a.join(format!("models/{m}.json")))))
    {
        let model_b = json(&b.join(format!("models/{name}.json")));
        assert_eq!(model_a["robust"], model_b["robust"], "{name}");
    }
}

/// The slice checks without the pipeline: missing and duplicate shards, a damaged file, a name
/// that does not match the content, and a merge in unit order.
#[test]
fn slice_checks_name_the_missing_and_duplicate_shard() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let total = 5; // units of 2 rows, the last of 1
    let rows =
        |u: std::ops::Range<usize>| -> Vec<i64> { u.map(|i| if i == 4 { 1 } else { 2 }).collect() };
    let slice = |s: Shard| {
        let u = s.range(total);
        let r = rows(u.clone());
        let n: i64 = r.iter().sum();
        let lo: i64 = rows(0..u.start).iter().sum();
        let t = Tensor::arange_start(lo, lo + n, (tch::Kind::Int64, tch::Device::Cpu));
        write_slice(d, s, u, total, &r, r.len(), vec![("x".into(), t)]).unwrap()
    };
    assert!(merge_slices(d, total, "t").unwrap().is_none());
    assert_eq!(Shard::new(1, 3).unwrap().range(total), 0..1);
    assert_eq!(Shard::new(3, 3).unwrap().range(total), 3..5);
    assert_eq!(Shard::new(3, 8).unwrap().range(2), 0..0);
    assert_eq!(Shard::new(4, 8).unwrap().range(2), 0..1);
    assert!(Shard::new(0, 3).is_err() && Shard::new(4, 3).is_err());
    assert_eq!("2/3".parse::<Shard>().unwrap(), Shard::new(2, 3).unwrap());
    for bad in ["4/3", "0/3", "x", "3", "2/", "/3", "1/0"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    slice(Shard::new(1, 3).unwrap());
    slice(Shard::new(3, 3).unwrap());
    let err = format!("{:#}", merge_slices(d, total, "stage").err().unwrap());
    assert!(
        err.contains("shard 2/3")
            && err.contains("slice-2of3.safetensors")
            && err.contains("missing"),
        "{err}"
    );
    let err = format!("{:#}", check_slices(d, "stage").err().unwrap());
    assert!(err.contains("shard 2/3"), "{err}");
    slice(Shard::new(2, 3).unwrap());
    let m = merge_slices(d, total, "stage").unwrap().unwrap();
    assert_eq!(m.shards, 3);
    assert_eq!(
        Vec::<i64>::try_from(&m.get("x").unwrap()).unwrap(),
        (0..9).collect::<Vec<_>>()
    );
    assert_eq!(check_slices(d, "stage").unwrap(), Some((3, 5)));
    // Another stage size: refused.
    let err = format!("{:#}", merge_slices(d, 6, "stage").err().unwrap());
    assert!(err.contains("another configuration"), "{err}");
    // A duplicate of another shard count.
    let dup = slice(Shard::new(2, 2).unwrap());
    let err = format!("{:#}", merge_slices(d, total, "stage").err().unwrap());
    assert!(
        err.contains("duplicate") && err.contains("slice-2of2") && err.contains("slice-2of3"),
        "{err}"
    );
    std::fs::remove_file(dup).unwrap();
    // A file whose name and content disagree, and a damaged file.
    let p1 = nrf::features::chunks::slice_path(d, Shard::new(1, 3).unwrap());
    let p2 = nrf::features::chunks::slice_path(d, Shard::new(2, 3).unwrap());
    let kept = std::fs::read(&p2).unwrap();
    std::fs::copy(&p1, &p2).unwrap();
    let err = format!("{:#}", merge_slices(d, total, "stage").err().unwrap());
    assert!(
        err.contains("holds shard 1/3") && err.contains("slice-2of3"),
        "{err}"
    );
    std::fs::write(&p2, &kept[..kept.len() / 2]).unwrap();
    assert!(merge_slices(d, total, "stage").is_err());
    std::fs::write(&p2, b"garbage").unwrap();
    let err = format!("{:#}", merge_slices(d, total, "stage").err().unwrap());
    assert!(err.contains("slice-2of3"), "{err}");
}
