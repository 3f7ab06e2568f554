//! `nrf plan` from the command line: the paper's presets print every stage and a total, the
//! JSON form carries the same numbers, and bad input is an error naming the field.
use std::process::Command;

fn nrf(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nrf"))
        .args(args)
        .output()
        .expect("running nrf");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The hours of the `total:` line.
fn total_hours(text: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("total:"))
        .unwrap_or_else(|| panic!("no total line in:\n{text}"));
    let before = line.split(" hours").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn cifar10_plan_prints_its_stages_and_a_total() {
    // Measured here (a few seconds on the CPU): whatever the rate, a positive total.
    let (ok, out, err) = nrf(&["plan", "--preset", "cifar10"]);
    assert!(ok, "{err}");
    for stage in [
        "train:C_std",
        "train:C_rob",
        "construct:D_R",
        "construct:D_NR",
        "construct:D_rand",
        "construct:D_det",
        "train:on_D_R",
        "eval:on_control",
    ] {
        assert!(out.contains(stage), "{stage} missing:\n{out}");
    }
    assert!(out.contains("measured on"), "{out}");
    assert!(out.contains("resnet50(w=64)"), "{out}");
    assert!(total_hours(&out) > 0.0, "{out}");

    // At a given rate the total is the FLOPs over it: twice the rate, half the hours.
    let (ok, fast, err) = nrf(&["plan", "--preset", "cifar10", "--gflops", "100000"]);
    assert!(ok, "{err}");
    let (_, slow, _) = nrf(&["plan", "--preset", "cifar10", "--gflops", "50000"]);
    let (f, s) = (total_hours(&fast), total_hours(&slow));
    assert!(f > 0.0 && (s / f - 2.0).abs() < 0.01, "{f} h vs {s} h");
    assert!(fast.contains("(--gflops)"), "{fast}");
}

#[test]
fn json_and_overrides() {
    let (ok, out, err) = nrf(&[
        "plan",
        "--preset",
        "cifar10",
        "--gflops",
        "1000",
        "--set",
        "train_std.epochs=1",
        "--set",
        "train_std.milestones=[]",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["overrides"][0], "train_std.epochs=1");
    let stages = v["stages"].as_array().unwrap();
    let c_std = stages.iter().find(|s| s["name"] == "train:C_std").unwrap();
    // One epoch of 50k images: 50k training backward passes.
    assert_eq!(c_std["train_backward"].as_f64().unwrap(), 50_000.0);
    let sum: f64 = stages.iter().map(|s| s["flops"].as_f64().unwrap()).sum();
    let total = v["total_flops"].as_f64().unwrap();
    assert!((sum - total).abs() <= 1e-9 * total);
    assert!((v["total_seconds"].as_f64().unwrap() - total / 1e12).abs() < 1e-6 * total / 1e12);
}

#[test]
fn restricted_imagenet_costs_more_than_cifar10() {
    let (ok, ri, err) = nrf(&[
        "plan",
        "--preset",
        "restricted-imagenet",
        "--gflops",
        "1000",
    ]);
    assert!(ok, "{err}");
    let (_, c10, _) = nrf(&["plan", "--preset", "cifar10", "--gflops", "1000"]);
    assert!(total_hours(&ri) > total_hours(&c10), "{ri}\n{c10}");
    assert!(ri.contains("3x224x224"), "{ri}");
}

#[test]
fn bad_input_names_the_field() {
    let (ok, _, err) = nrf(&["plan", "--preset", "cifar10", "--gflops", "0"]);
    assert!(!ok);
    assert!(err.contains("--gflops"), "{err}");
    let (ok, _, err) = nrf(&["plan", "--preset", "cifar10", "--gflops", "fast"]);
    assert!(!ok);
    assert!(err.contains("--gflops"), "{err}");
    let (ok, _, err) = nrf(&["plan", "--preset", "no-such-preset", "--gflops", "1"]);
    assert!(!ok);
    assert!(err.contains("no-such-preset"), "{err}");
    let (ok, _, err) = nrf(&["plan", "--preset", "cifar10", "--set", "rep_match.nn=3"]);
    assert!(!ok);
    assert!(err.contains("rep_match.nn"), "{err}");
}
