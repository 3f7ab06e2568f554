//! nrf vs its PyTorch fidelity twin (experiments/twin/nrf_twin.py) on the smoke preset: both run
//! Figure 2 and Table 1 from the same preset file, then `nrf_twin.py compare` writes the
//! comparison. The test checks that the comparison covers every Figure 2 / Table 1 row and that
//! the standard accuracies of C_std and C_rob agree under the comparison's stated rule.
//!
//! The preset is the smoke preset with its extras and theory switched off (they are not part of
//! the comparison and would only add run time). Needs the `nrf` binary (NRF_BIN, set by
//! `cargo xtask test`, or target/debug/nrf), the torch environment's python (NRF_PYTHON, set by
//! `cargo xtask test`) and the real Fashion-MNIST files; without them the test says why and
//! passes vacuously.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Seeds per fresh model in the twin (enough for a spread, few enough for a short test).
const FRESH_SEEDS: &str = "2";
/// Seeds for C_std and C_rob in the twin: nrf has one of each, and the rule needs their
/// seed-to-seed spread. On the smoke preset (2000 images, 125 steps) C_std's test accuracy varies
/// by ~3 points (sd) between seeds, and adversarial training now and then stays at chance (1 of
/// 13 twin seeds measured; 0 of 7 nrf seeds), which the spread then shows.
const SOURCE_SEEDS: &str = "3";
/// torch threads of the twin (the machine the suite targets has 2 cores).
const TWIN_THREADS: &str = "2";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn nrf_bin() -> Option<PathBuf> {
    let p = std::env::var_os("NRF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/nrf"));
    p.exists().then_some(p)
}

fn python() -> Option<PathBuf> {
    std::env::var_os("NRF_PYTHON")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn data_present() -> bool {
    Path::new(nrf::data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
}

/// The nrf binary and the torch environment's python, or `None` (the test is skipped, saying
/// so) when either or Fashion-MNIST is missing.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let found = match (nrf_bin(), python(), data_present()) {
        (Some(bin), Some(py), true) => Some((bin, py)),
        _ => None,
    };
    if found.is_none() {
        eprintln!(
            "SKIPPED: needs the nrf binary and NRF_PYTHON (run through `cargo xtask test`) and \
             Fashion-MNIST (apt-get install dataset-fashion-mnist)"
        );
    }
    found
}

/// Runs `cmd`, fails the test (with its output) unless it succeeds, and returns its output.
fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn twin_and_nrf_agree_on_the_smoke_preset() {
    let Some((bin, py)) = prerequisites() else {
        return;
    };
    let start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (preset, text) = nrf::experiments::preset::Preset::load("smoke").unwrap();
    let mut core = text.replacen("enabled = true", "enabled = false", 1);
    assert_ne!(
        core, text,
        "the smoke preset's `[extras] enabled = true` line changed"
    );
    if !core.contains("[theory]") {
        core.push_str("\n[theory]\nskip = true\n");
    }
    let preset_path = dir.path().join("smoke-core.toml");
    std::fs::write(&preset_path, core).unwrap();
    let results = dir.path().join("nrf");

    run(
        Command::new(&bin)
            .args(["reproduce", "--quiet", "--preset"])
            .arg(&preset_path)
            .arg("--results")
            .arg(&results),
        "nrf reproduce",
    );
    let nrf_s = start.elapsed().as_secs_f64();
    let script = root().join("experiments/twin/nrf_twin.py");
    let twin_dir = results.join("twin");
    run(
        Command::new(&py)
            .arg(&script)
            .arg("--preset")
            .arg(&preset_path)
            .arg("--out")
            .arg(&twin_dir)
            .args(["--seeds", FRESH_SEEDS, "--source-seeds", SOURCE_SEEDS])
            .args(["--threads", TWIN_THREADS])
            .env_remove("PYTHONPATH"),
        "the twin",
    );
    let twin_s = start.elapsed().as_secs_f64() - nrf_s;
    run(
        Command::new(&py)
            .arg(&script)
            .arg("compare")
            .arg("--nrf")
            .arg(&results)
            .arg("--twin")
            .arg(&twin_dir),
        "nrf_twin.py compare",
    );
    eprintln!(
        "nrf {nrf_s:.0} s, twin {twin_s:.0} s, total {:.0} s",
        start.elapsed().as_secs_f64()
    );

    check_comparison(&twin_dir, &preset);
}

/// The comparison states its rule, was made on the same configuration, has every Figure 2 /
/// Table 1 number on both sides, and nrf and the twin agree on the source models' accuracy.
fn check_comparison(twin_dir: &Path, preset: &nrf::experiments::preset::Preset) {
    let md = std::fs::read_to_string(twin_dir.join("comparison.md")).unwrap();
    assert!(
        md.contains("Rule:"),
        "comparison.md does not state its rule"
    );
    let text = std::fs::read_to_string(twin_dir.join("comparison.json")).unwrap();
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        c["preset_check"], "checked",
        "the comparison did not check nrf's preset against the twin's"
    );
    assert!(
        c["preset_mismatch"].as_array().unwrap().is_empty(),
        "nrf and the twin ran different configurations: {}",
        c["preset_mismatch"]
    );
    let rows = c["rows"].as_array().unwrap();
    let row = |model: &str, metric: &str| {
        rows.iter()
            .find(|r| r["model"] == model && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no row for {model} / {metric} in comparison.json"))
    };
    let mut models: Vec<String> = [
        "C_std",
        "C_rob",
        "on_D_R",
        "on_D_NR",
        "on_control",
        "on_D_rand",
        "on_D_det",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for &eps in &preset.relabel.extra_eps {
        let tag = nrf::experiments::table1::eps_tag(eps);
        models.push(format!("on_D_rand_eps{tag}"));
        models.push(format!("on_D_det_eps{tag}"));
    }
    let headline = format!("L2 eps {}", preset.eval.headline_eps);
    for m in &models {
        for metric in ["std acc", headline.as_str()] {
            let r = row(m, metric);
            let v = r["verdict"].as_str().unwrap();
            assert!(
                v == "agree" || v == "disagree",
                "{m} / {metric}: {v} (both sides should have it)"
            );
            for side in ["nrf", "twin", "tolerance"] {
                let x = r[side].as_f64().unwrap();
                assert!(x.is_finite() && x >= 0.0, "{m} / {metric}: {side} = {x}");
            }
        }
    }
    for m in ["C_std", "C_rob"] {
        let r = row(m, "std acc");
        assert_eq!(
            r["verdict"], "agree",
            "{m}: nrf and the twin disagree on standard accuracy under the rule `{}`: {r}",
            c["rule"]
        );
    }
}

/// `nrf bench --end-to-end` on the smoke preset at one run per side: both sides run whole from
/// the same preset file (nrf's without the ensemble, extras and theory), the report has one time
/// per side and a ratio, the last pair's comparison is summarised and kept next to the report, and
/// the work folder is gone. Timings are not asserted (never in a test).
#[test]
fn end_to_end_bench_runs_both_pipelines_and_compares_them() {
    let Some((bin, py)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e2e.json");
    run(
        Command::new(&bin)
            .args(["bench", "--end-to-end", "--preset", "smoke", "--reps", "1"])
            .args(["--set", "fresh.seeds=1", "--set", "train_std.epochs=2"])
            .args(["--set", "train_rob.epochs=1", "--out"])
            .arg(&out)
            .env("NRF_PYTHON", &py)
            .env("NRF_TWIN_DIR", root().join("experiments/twin"))
            .env_remove("PYTHONPATH"),
        "nrf bench --end-to-end",
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for side in ["nrf", "twin"] {
        let runs = r[side]["wall_s"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{side}: {runs:?}");
        assert!(runs[0].as_f64().unwrap() > 0.0);
    }
    assert!(r["ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(r["verdict"], "undecided", "one pair decides nothing");
    let text = r["preset_text"].as_str().unwrap();
    let p = nrf::experiments::preset::Preset::parse(text, "the report's preset").unwrap();
    assert!(p.eval.ensemble.is_none() && !p.extras.enabled && p.theory.skip);
    let agreement = r["agreement"].as_str().expect("the pair was not compared");
    assert!(agreement.contains("rows agree"), "{agreement}");
    let kept = dir.path().join("e2e.comparison.md");
    assert!(
        std::fs::read_to_string(&kept).unwrap().contains("Rule:"),
        "{} is not the comparison",
        kept.display()
    );
    assert!(std::fs::read_to_string(out.with_extension("md"))
        .unwrap()
        .contains("twin / nrf"));
    assert!(!dir.path().join(".e2e-work").exists(), "work folder left");
}

/// The twin resumes a run with another seed count: with more seeds it trains only the missing
/// ones (the first seed's record and the source models stay as they were), with fewer it uses
/// the first ones and keeps the rest in `per_seed_unused`. This is how a disagreement on a fresh
/// model is settled with more seeds on both sides (nrf's `reproduce --set fresh.seeds=K` does
/// the same: each seed is its own stage).
#[test]
fn twin_resumes_with_more_or_fewer_seeds() {
    let Some((_, py)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("twin");
    let tiny = [
        "data.train_limit=400",
        "data.test_limit=200",
        "train_std.epochs=1",
        "train_rob.epochs=1",
        "rep_match.n=40",
        "rep_match.steps=4",
        "relabel.n=40",
        "relabel.steps=4",
        "fresh.epochs=1",
        "eval.robust_n=20",
        "eval.steps=2",
    ];
    let twin = |seeds: &str| -> serde_json::Value {
        let mut cmd = Command::new(&py);
        cmd.arg(root().join("experiments/twin/nrf_twin.py"))
            .args(["--preset", "smoke", "--out"])
            .arg(&out)
            .args(["--seeds", seeds, "--threads", TWIN_THREADS]);
        for s in tiny {
            cmd.args(["--set", s]);
        }
        run(
            cmd.env_remove("PYTHONPATH"),
            &format!("the twin, {seeds} seed(s)"),
        );
        serde_json::from_str(&std::fs::read_to_string(out.join("twin.json")).unwrap()).unwrap()
    };
    let one = twin("1");
    let two = twin("2");
    let back = twin("1");
    for m in ["on_control", "on_D_R", "on_D_rand"] {
        let seeds = |doc: &serde_json::Value, key: &str| {
            doc["models"][m][key]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(seeds(&one, "per_seed").len(), 1, "{m}: first run");
        let grown = seeds(&two, "per_seed");
        assert_eq!(grown.len(), 2, "{m}: the second seed was not added");
        assert_eq!(
            grown[0],
            seeds(&one, "per_seed")[0],
            "{m}: seed 0 was retrained"
        );
        assert_eq!(
            seeds(&back, "per_seed"),
            grown[..1],
            "{m}: back to one seed"
        );
        assert_eq!(
            seeds(&back, "per_seed_unused"),
            grown[1..],
            "{m}: seed 1 was lost"
        );
        assert_eq!(
            two["models"][m]["std_acc_spread"]
                .as_f64()
                .map(|s| s >= 0.0),
            Some(true)
        );
    }
    // The source models and the constructed sets were reused, not recomputed.
    for stage in [
        "train:C_std",
        "train:C_rob",
        "construct:D_R",
        "construct:D_rand",
    ] {
        assert_eq!(
            one["timings"][stage], back["timings"][stage],
            "{stage} ran again on a resume"
        );
    }
    assert!(two["timings"]["train:on_control#1"].is_number());
}

/// The comparison's rule is a calibrated test: when nrf and the twin are the same (both sides'
/// seeds drawn from one Gaussian, each side's accuracies measured on its own n test images),
/// about 5% of rows disagree from 3 seeds a side on, and at most ~8% at 2 (where the
/// Welch-Satterthwaite degrees of freedom come from a 2-seed spread). The rule before session 25,
/// 2·sqrt(se² + se² + max sd²), gives 0.5% at 8 seeds here (and 12.7% at 2 seeds when the seed
/// spread dominates), and fails this test.
#[test]
fn compare_rule_disagrees_by_chance_about_five_percent() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: needs NRF_PYTHON (run through `cargo xtask test`)");
        return;
    };
    let code = r#"
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from twin_compare import tolerance
rng = np.random.default_rng(7)
rows, n, p, sd = 10000, 1000, 0.6, 0.03
for k in (2, 3, 8):
    alarms = 0
    for _ in range(rows):
        a = p + sd * rng.standard_normal(k) + rng.binomial(n, p) / n - p
        b = p + sd * rng.standard_normal(k) + rng.binomial(n, p) / n - p
        se_a = np.sqrt(a.mean() * (1 - a.mean()) / n)
        se_b = np.sqrt(b.mean() * (1 - b.mean()) / n)
        tol = tolerance(se_a, se_b, a.std(ddof=1), k, b.std(ddof=1), k)[0]
        alarms += abs(a.mean() - b.mean()) > tol
    print(k, alarms / rows)
"#;
    let out = run(
        Command::new(&py)
            .args(["-c", code])
            .arg(root().join("experiments/twin"))
            .env_remove("PYTHONPATH"),
        "the rule's simulation",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let (k, rate) = line.split_once(' ').unwrap();
        let rate: f64 = rate.parse().unwrap();
        // 10,000 rows: the rate's standard error is 0.22 points.
        let upper = if k == "2" { 0.085 } else { 0.065 };
        assert!(
            (0.035..=upper).contains(&rate),
            "{k} seeds a side: {:.1}% of rows disagree by chance",
            100.0 * rate
        );
    }
}

/// The twin implements the crop and flip only: a preset asking for the paper's code's other
/// transforms (nrf-models `augment`) is refused naming the field, not run without them.
#[test]
fn twin_refuses_augmentations_it_does_not_implement() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: needs NRF_PYTHON (run through `cargo xtask test`)");
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(py)
        .arg(root().join("experiments/twin/nrf_twin.py"))
        .args([
            "--preset",
            "smoke",
            "--set",
            "fresh.color_jitter=0.25",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fresh.color_jitter"), "{stderr}");
}
