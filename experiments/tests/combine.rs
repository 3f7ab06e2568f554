//! `nrf combine`: two runs of one preset under different master seeds give replicates.md /
//! .json / .png and the claims table on stdout; runs that are not replicates, and a folder a run
//! holds, are refused with a message naming them.
use nrf_experiments::lock::ResultsLock;
use nrf_report::{demo::write_demo_results, read_json, results::RunInfo, write_json_atomic};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run_with_seed(dir: &Path, seed: u64) -> PathBuf {
    write_demo_results(dir).unwrap();
    let path = dir.join("run.json");
    let mut run: RunInfo = read_json(&path).unwrap();
    run.seed = seed;
    write_json_atomic(&path, &run).unwrap();
    dir.to_path_buf()
}

fn combine(runs: &[&Path], out: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nrf"));
    cmd.arg("combine").arg("--out").arg(out);
    for r in runs {
        cmd.arg("--results").arg(r);
    }
    cmd.output().unwrap()
}

#[test]
fn combine_writes_the_report_across_runs_and_refuses_what_is_not_one() {
    let t = tempfile::tempdir().unwrap();
    let a = run_with_seed(&t.path().join("a"), 1);
    let b = run_with_seed(&t.path().join("b"), 2);
    let out = t.path().join("out");
    let o = combine(&[&a, &b], &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("| claim | seed 1 | seed 2 | across runs |"),
        "{stdout}"
    );
    for f in ["replicates.md", "replicates.json", "replicates.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The same master seed twice: refused, naming both folders.
    let c = run_with_seed(&t.path().join("c"), 1);
    let o = combine(&[&a, &c], &t.path().join("out2"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("same master seed 1")
            && err.contains(&a.display().to_string())
            && err.contains(&c.display().to_string()),
        "{err}"
    );
    assert!(
        !t.path().join("out2").exists(),
        "a refused combine wrote its output"
    );
    // A folder a run holds: refused, naming it.
    let held = ResultsLock::acquire(&b, "nrf reproduce").unwrap();
    let o = combine(&[&a, &b], &t.path().join("out3"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("results folder {} is in use", b.display())),
        "{err}"
    );
    drop(held);
}

#[test]
fn compare_sets_two_combinations_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let a = run_with_seed(&t.path().join("a"), 1);
    let b = run_with_seed(&t.path().join("b"), 2);
    let set = t.path().join("set");
    assert!(combine(&[&a, &b], &set).status.success());
    let compare = |other: &Path, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_nrf"))
            .arg("compare")
            .arg("--base")
            .arg(&set)
            .arg("--other")
            .arg(other)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    // A set against itself: the same preset, no number moves, no verdict changes.
    let out = t.path().join("cmp");
    let o = compare(&set, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("replicates of one another"), "{stdout}");
    for what in ["numbers differ", "verdicts changed"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("0 of ") && l.contains(what)),
            "{what}: {stdout}"
        );
    }
    assert!(!stdout.contains("**differs**") && !stdout.contains("**changed**"));
    for f in ["comparison.md", "comparison.json", "comparison.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // A run's folder is not a combination: refused, naming it.
    let o = compare(&a, &t.path().join("cmp2"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&a.display().to_string()), "{err}");
}
