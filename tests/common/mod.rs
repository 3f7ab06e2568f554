//! Shared by the end-to-end tests of the paper's own settings (`cifar10_e2e`,
//! `restricted_imagenet_e2e`): the `nrf` binary, a small seeded RNG, and the checks every full
//! run must pass.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// The `nrf` binary: NRF_BIN (set by `cargo xtask test`), else target/debug/nrf.
pub fn nrf_bin() -> Option<PathBuf> {
    let p = std::env::var_os("NRF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/nrf"));
    p.exists().then_some(p)
}

/// The `nrf` binary ([`nrf_bin`]) when it and the real Fashion-MNIST files are both there; else
/// `None`, having said which is missing (the test then passes vacuously).
pub fn nrf_bin_with_fashion_mnist() -> Option<PathBuf> {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return None;
    };
    if !Path::new(nrf::data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("SKIPPED: needs Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return None;
    }
    Some(bin)
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Lists every file below `dir` (relative paths), for failure messages.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A class's colour: `k` of `n` hues around the colour wheel, at mid brightness.
pub fn hue(k: usize, n: usize) -> [f32; 3] {
    let h = 6.0 * k as f32 / n as f32;
    let f = |off: f32| {
        let x = (h + off).rem_euclid(6.0);
        (x - 3.0).abs().clamp(1.0, 2.0) - 1.0
    };
    [0.2 + 0.6 * f(0.0), 0.2 + 0.6 * f(4.0), 0.2 + 0.6 * f(2.0)]
}

/// What a run of a preset at toy sizes must have produced.
pub struct Expect {
    pub num_classes: usize,
    /// [C, H, W] of the images (and of every model's input).
    pub shape: [usize; 3],
    /// `rep_match.n`, `relabel.n`, `eval.robust_n`.
    pub rep_n: usize,
    pub relabel_n: usize,
    pub robust_n: usize,
    /// The representation distance of D_R / D_NR as recorded in the stored sets.
    pub distance: &'static str,
}

/// The models of Figure 2 and Table 1.
pub const MODELS: [&str; 7] = [
    "C_std",
    "C_rob",
    "on_D_R",
    "on_D_NR",
    "on_D_rand",
    "on_D_det",
    "on_control",
];

/// The checks every finished run of a preset without extras passes (as tests/smoke.rs does for
/// Fashion-MNIST): run.json, every model's and constructed set's results and files, the image
/// grids (in colour for RGB data), the theory, and every report section.
pub fn check_run(results: &Path, e: &Expect) {
    let files = tree(results).join("\n");
    let run = json(&results.join("run.json"));
    assert!(
        run["finished"].is_string(),
        "run.json not marked finished: {run}"
    );
    assert_eq!(run["missing"].as_array().map(Vec::len), Some(0), "{run}");
    assert_eq!(run["num_classes"], e.num_classes);
    check_models(results, e, &files);
    check_sets(results, e);
    check_report(results, &files);
}

/// Every Figure 2 / Table 1 model: its role, accuracies, weights and stage records.
fn check_models(results: &Path, e: &Expect, files: &str) {
    // Each model's role (what the report reads), in the order of MODELS.
    let kinds = ["std", "rob", "d_r", "d_nr", "d_rand", "d_det", "control"];
    for (m, kind) in MODELS.into_iter().zip(kinds) {
        let r = json(&results.join(format!("models/{m}.json")));
        assert_eq!(r["role"], serde_json::json!({ "main": kind }), "{m}: role");
        let acc = r["std_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{m}: std_acc {acc}");
        let robust = r["robust"].as_array().unwrap();
        // Every L2 and Linf radius of the preset's grid.
        assert!(robust.len() >= 2, "{m}: robust accuracy missing: {r}");
        for p in robust {
            let a = p["acc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{m}: robust acc {a}");
            assert_eq!(p["n"], e.robust_n, "{m}: {p}");
        }
        assert!(!r["epochs"].as_array().unwrap().is_empty(), "{m}: {r}");
        let spec = json(&results.join(format!("weights/{m}.json")));
        assert_eq!(spec["in_shape"], serde_json::json!(e.shape), "{m}: {spec}");
        assert_eq!(spec["num_classes"], e.num_classes, "{m}: {spec}");
        assert!(
            results.join(format!("weights/{m}.safetensors")).exists(),
            "{m}: no weights in\n{files}"
        );
        let stem = m.replace("on_", "train_on_");
        let stage = if m.starts_with("C_") {
            format!("train_{m}")
        } else {
            stem
        };
        assert!(
            results.join(format!("stages/{stage}.json")).exists()
                && results.join(format!("stages/eval_{m}.json")).exists(),
            "{m}: stage records missing in\n{files}"
        );
    }
}

/// The four constructed sets: sizes, shapes, what each construction did, and their image grids.
fn check_sets(results: &Path, e: &Expect) {
    for (d, n) in [
        ("D_R", e.rep_n),
        ("D_NR", e.rep_n),
        ("D_rand", e.relabel_n),
        ("D_det", e.relabel_n),
    ] {
        let r = json(&results.join(format!("datasets/{d}.json")));
        assert_eq!(r["n"], n, "{d}: {r}");
        let set = nrf::data::load_constructed(results.join(format!("data/{d}")))
            .unwrap_or_else(|err| panic!("{d}: {err}"));
        assert_eq!(set.dataset.len(), n, "{d}");
        assert_eq!(set.dataset.shape, e.shape, "{d}");
        assert_eq!(set.dataset.num_classes, e.num_classes, "{d}");
        set.dataset
            .validate(d)
            .unwrap_or_else(|err| panic!("{d}: {err}"));
        if d == "D_R" || d == "D_NR" {
            let (a, b) = (
                r["init_rel_err"].as_f64().unwrap(),
                r["final_rel_err"].as_f64().unwrap(),
            );
            assert!(
                b < a,
                "{d}: representation error did not decrease ({a} -> {b})"
            );
            let distance = &set.metadata.extra["config"]["distance"];
            assert_eq!(distance, e.distance, "{d}: matched with {distance}");
        } else {
            let s = r["success_rate"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&s), "{d}: attack success rate {s}");
        }
        let grid = image::open(results.join(format!("grids/{d}.png")))
            .unwrap_or_else(|err| panic!("grids/{d}.png: {err}"))
            .to_rgb8();
        let coloured = grid.pixels().filter(|p| p[0].abs_diff(p[1]) > 40).count();
        assert_eq!(
            coloured > 100,
            e.shape[0] == 3,
            "grids/{d}.png: {coloured} coloured pixels for {} channels",
            e.shape[0]
        );
    }
}

/// The theory, the plots and the report's sections.
fn check_report(results: &Path, files: &str) {
    assert!(results.join("theory/theory.json").exists(), "{files}");
    for plot in [
        "figure2",
        "table1",
        "robust_L2",
        "robust_Linf",
        "training_curves",
    ] {
        assert!(
            results.join(format!("plots/{plot}.png")).exists(),
            "plots/{plot}.png missing in\n{files}"
        );
    }
    let html = std::fs::read_to_string(results.join("report.html")).unwrap();
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    for section in [
        "Summary of verdicts",
        "Figure 2",
        "Table 1",
        "Robust accuracy vs",
        "Constructed datasets",
        "Training curves",
        "Theory (Section 4",
        "Run info",
    ] {
        assert!(
            html.contains(section) && md.contains(section),
            "report lacks {section}"
        );
    }
    // The only section without results: the extras, which these presets leave off.
    let missing: Vec<&str> = md.lines().filter(|l| l.contains("*(missing)*")).collect();
    assert!(
        missing.len() == 1 && missing[0].contains("Further experiments"),
        "report sections missing: {missing:?}"
    );
    for m in MODELS {
        assert!(md.contains(&format!("`{m}`")), "report.md lacks {m}");
    }
}

/// A fresh temporary folder (removed when the guard drops); kept, and named on stderr, when
/// NRF_E2E_KEEP is set, to look at the run afterwards.
pub fn test_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    if std::env::var_os("NRF_E2E_KEEP").is_some() {
        eprintln!("keeping {}", path.display());
        let _ = dir.keep();
        return (None, path);
    }
    (Some(dir), path)
}

/// Runs `nrf reproduce --quiet ARGS --data-dir DATA --results RESULTS`, which must fail without a
/// panic, and returns its stderr.
pub fn failing_reproduce(bin: &Path, args: &[&str], data: &Path, results: &Path) -> String {
    let out = std::process::Command::new(bin)
        .args(["reproduce", "--quiet"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--results")
        .arg(results)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "nrf accepted broken data:\n{err}");
    assert!(!err.contains("panicked"), "a panic, not an error:\n{err}");
    err
}
