//! Bring your own model: a Fashion-MNIST CNN trained in plain PyTorch and exported with
//! TorchScript (experiments/python/export_example.py, in both shapes nrf accepts) is used by
//! `nrf construct` to build a small D_R (its representation error must fall) and a D_det, and by
//! `nrf eval` (its accuracy must match PyTorch's); a badly normalised model is refused before
//! anything is built.
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf), the torch
//! environment's python (NRF_PYTHON) and the real Fashion-MNIST files; without them the test says
//! why and passes vacuously.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn output(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"))
}

fn ok_json(cmd: &mut Command, what: &str) -> serde_json::Value {
    let out = output(cmd, what);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The JSON is the last thing printed (a pretty-printed object, or one line).
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("{what}: no JSON in {text}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// The nrf binary and the torch environment's python, when they and the Fashion-MNIST files are
/// there; else says what is missing (the test then passes vacuously).
fn needs() -> Option<(PathBuf, PathBuf)> {
    let (Some(nrf), Some(py)) = (nrf_bin(), python()) else {
        eprintln!("skipped: needs NRF_BIN (or target/debug/nrf) and NRF_PYTHON (`cargo xtask test` sets both)");
        return None;
    };
    if !Path::new(nrf::data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("skipped: no Fashion-MNIST files");
        return None;
    }
    Some((nrf, py))
}

#[test]
fn a_torchscript_model_builds_d_r_and_d_det_and_is_evaluated() {
    let Some((nrf, py)) = needs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let exported = ok_json(
        Command::new(&py)
            .arg(root().join("experiments/python/export_example.py"))
            .arg(d)
            .args(["--epochs", "2", "--n", "10000"]),
        "export_example.py",
    );
    let torch_acc = exported["test_acc"].as_f64().unwrap();
    assert!(
        torch_acc > 0.6,
        "the PyTorch model did not train: {exported}"
    );

    let nrf_cmd = |model: &str, extra: &[&str]| {
        let mut c = Command::new(&nrf);
        c.arg("--log")
            .arg("warn")
            .args(extra)
            .arg("--model")
            .arg(d.join(model))
            .args(["--set", "eval.robust_n=200", "--set", "threads=2"]);
        c
    };

    d_r_from_the_tuple_export(&nrf_cmd, d);
    d_det_from_the_method_export(&nrf_cmd, d);
    a_released_style_set_trains_as_the_set_it_came_from(&nrf, &py, d);
    eval_gives_pytorchs_accuracy(&nrf_cmd, torch_acc);
    a_wrong_normalisation_is_refused(&nrf_cmd, d);
}

/// How the checks below start `nrf`: the model file (in the test's folder) and the subcommand.
type NrfCmd<'a> = dyn Fn(&str, &[&str]) -> Command + 'a;

/// D_R from the tuple-shaped export: the representation error falls.
fn d_r_from_the_tuple_export(nrf_cmd: &NrfCmd, d: &Path) {
    // D_R from the tuple-shaped export: the representation error falls.
    let r = ok_json(
        &mut nrf_cmd(
            "tuple.pt",
            &[
                "construct",
                "--kind",
                "d_r",
                "--n",
                "200",
                "--out",
                d.join("built").to_str().unwrap(),
                "--set",
                "rep_match.steps=60",
                "--set",
                "rep_match.batch_size=100",
            ],
        ),
        "nrf construct d_r",
    );
    let (init, fin) = (
        r["summary"]["init_rel_err"].as_f64().unwrap(),
        r["summary"]["final_rel_err"].as_f64().unwrap(),
    );
    eprintln!("D_R from a TorchScript model: relative representation error {init:.3} -> {fin:.3}");
    assert!(
        fin < 0.5 * init,
        "the representation error barely fell: {init} -> {fin}"
    );
    assert!(d.join("built/D_R.safetensors").exists());
}

/// D_det from the method-shaped export.
fn d_det_from_the_method_export(nrf_cmd: &NrfCmd, d: &Path) {
    // D_det from the method-shaped export.
    let det = ok_json(
        &mut nrf_cmd(
            "method.pt",
            &[
                "construct",
                "--rep",
                "method:features",
                "--kind",
                "d_det",
                "--n",
                "100",
                "--out",
                d.join("built").to_str().unwrap(),
                "--set",
                "relabel.steps=20",
            ],
        ),
        "nrf construct d_det",
    );
    assert!(
        det["summary"]["success_rate"].as_f64().unwrap() > 0.0,
        "{det}"
    );
    assert!(d.join("built/D_det.safetensors").exists());
}

/// The D_R just built, saved as the paper's sets were released (`torch.save`d lists of tensors)
/// and imported with experiments/python/import_released.py, is the same set to `nrf fresh`: the
/// same models, the same numbers. A label file that does not fit is refused, naming it.
fn a_released_style_set_trains_as_the_set_it_came_from(nrf: &Path, py: &Path, d: &Path) {
    let rel = d.join("released");
    std::fs::create_dir_all(&rel).unwrap();
    let script = format!(
        "import sys, torch\nsys.path.insert(0, {lib:?})\nfrom nrf_torch import load_constructed\n\
         ds, _ = load_constructed({set:?})\nx, y = ds.tensors\n\
         torch.save(list(x.chunk(3)), {ims:?})\ntorch.save(list(y.chunk(3)), {lab:?})\n\
         torch.save(y[:-1], {short:?})\n\
         torch.save((x * 255).round().permute(0, 2, 3, 1), {nhwc:?})\n",
        lib = root().join("experiments/python"),
        set = d.join("built/D_R.safetensors"),
        ims = rel.join("CIFAR_ims"),
        lab = rel.join("CIFAR_lab"),
        short = rel.join("short_lab"),
        nhwc = rel.join("nhwc_255"),
    );
    let out = output(
        Command::new(py).args(["-c", &script]),
        "saving a released-style set",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let import_from = |images: &str, labels: &str, stem: &str| {
        let mut c = Command::new(py);
        c.arg(root().join("experiments/python/import_released.py"))
            .arg("--images")
            .arg(rel.join(images))
            .arg("--labels")
            .arg(rel.join(labels))
            .args(["--name", "D_R", "--out"])
            .arg(d.join(stem));
        c
    };
    let import = |labels: &str, stem: &str| import_from("CIFAR_ims", labels, stem);
    let imported = ok_json(
        &mut import("CIFAR_lab", "imported/D_R"),
        "import_released.py",
    );
    assert_eq!(imported["scaled_by"], 1.0, "{imported}");
    // Whole numbers up to 255, channels last: divided by 255 and transposed, both recorded.
    let other = ok_json(
        &mut import_from("nhwc_255", "CIFAR_lab", "imported/nhwc"),
        "import_released.py (NHWC, 0-255)",
    );
    assert_eq!(
        (&other["scaled_by"], other["layout"].as_str()),
        (&serde_json::json!(255.0), Some("NHWC (transposed)")),
        "{other}"
    );
    assert_eq!(other["shape"], imported["shape"], "{other}");
    let bad = output(
        &mut import("short_lab", "imported/bad"),
        "import_released.py",
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("short_lab") && err.contains("labels for"),
        "{err}"
    );
    let fresh = |set: &Path| {
        ok_json(
            Command::new(nrf)
                .args([
                    "--log",
                    "warn",
                    "fresh",
                    "--no-ensemble",
                    "--seeds",
                    "2",
                    "--data",
                ])
                .arg(set)
                .args(["--set", "fresh.epochs=2", "--set", "eval.robust_n=100"]),
            "nrf fresh",
        )
    };
    let (a, b) = (
        fresh(&d.join("built/D_R.safetensors")),
        fresh(&d.join("imported/D_R.safetensors")),
    );
    assert_eq!(
        (&b["set"]["name"], &b["set"]["method"]),
        (&a["set"]["name"], &a["set"]["method"])
    );
    assert_eq!(a["name"], "on_D_R");
    for k in 0..2 {
        let (sa, sb) = (&a["seeds"][k], &b["seeds"][k]);
        assert_eq!(sa["eval"]["std_acc"], sb["eval"]["std_acc"], "seed {k}");
        assert_eq!(sa["eval"]["robust"], sb["eval"]["robust"], "seed {k}");
    }
    assert_ne!(a["seeds"][0]["train_seed"], a["seeds"][1]["train_seed"]);
}

/// `nrf eval` of the export that expects normalised inputs, told the normalisation: PyTorch's
/// accuracy (same weights, same test set).
fn eval_gives_pytorchs_accuracy(nrf_cmd: &NrfCmd, torch_acc: f64) {
    // nrf eval of the export that expects normalised inputs, told the normalisation: PyTorch's
    // accuracy (same weights, same test set).
    // The default preset's ensemble, shortened: its results and checks come with the grid's.
    let e = ok_json(
        &mut nrf_cmd(
            "normalised.pt",
            &[
                "eval",
                "--mean",
                "0.2860",
                "--std",
                "0.3530",
                "--set",
                "eval.ensemble.steps=3",
                "--set",
                "eval.ensemble.targets=2",
                "--set",
                "eval.ensemble.square_queries=10",
            ],
        ),
        "nrf eval",
    );
    let nrf_acc = e["std_acc"].as_f64().unwrap();
    assert!(
        (nrf_acc - torch_acc).abs() < 0.005,
        "nrf eval {nrf_acc} vs PyTorch {torch_acc}"
    );
    let lo_hi = |v: &serde_json::Value| (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
    let (lo, hi) = lo_hi(&e["std_acc_interval"]);
    assert!(lo < nrf_acc && nrf_acc < hi, "{e}");
    assert_eq!(e["name"], "normalised", "{e}");
    let grid = e["robust"].as_array().unwrap();
    assert!(!grid.is_empty(), "{e}");
    for p in grid {
        assert_eq!(p["n"], 200, "{p}");
        let (lo, hi) = lo_hi(&p["interval"]);
        let acc = p["acc"].as_f64().unwrap();
        assert!(lo <= acc && acc <= hi, "{p}");
    }
    // The ensemble: PGD, then each APGD attack on what is left; the accuracy after each attack
    // never rises, and the last is the ensemble's. Its checks come with it.
    let ens = &e["ensemble"];
    let after: Vec<f64> = ens["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[1].as_f64().unwrap())
        .collect();
    assert_eq!(after.len(), 3, "PGD, APGD-CE, APGD-T: {e}");
    assert!(after.windows(2).all(|w| w[1] <= w[0]), "{e}");
    assert_eq!(ens["robust"]["acc"].as_f64(), after.last().copied(), "{e}");
    assert_eq!(ens["checks"]["pgd_acc"].as_f64(), Some(after[0]), "{e}");
    assert!(ens["flags"].is_array(), "{e}");
}

/// A wildly wrong normalisation (every input ~ -100): refused before anything is built, with
/// the reason.
fn a_wrong_normalisation_is_refused(nrf_cmd: &NrfCmd, d: &Path) {
    // A wildly wrong normalisation (every input ~ -100): refused before anything is built,
    // with the reason.
    let out = output(
        &mut nrf_cmd(
            "tuple.pt",
            &[
                "construct",
                "--kind",
                "d_r",
                "--n",
                "10",
                "--out",
                d.join("refused").to_str().unwrap(),
                "--mean",
                "100",
                "--std",
                "1",
            ],
        ),
        "nrf construct (bad normalisation)",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a near-chance model was accepted");
    assert!(
        err.contains("near chance") && err.contains("--mean"),
        "{err}"
    );
    assert!(!d.join("refused/D_R.safetensors").exists());
}

/// Modules that run without gradients but fail under attack — one normalises its input in
/// place, one fixes the batch size — are refused when loaded, with an error that says why, not
/// a panic in the middle of an attack.
#[test]
fn a_model_that_cannot_be_attacked_is_refused_when_loaded() {
    let Some((nrf, py)) = needs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = r#"
import sys, torch
class InPlace(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)
    def forward(self, x):
        x.sub_(0.5)
        f = x.flatten(1)
        return self.fc(f), f
class FixedBatch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)
    def forward(self, x):
        f = x.view(2, 784)
        return self.fc(f), f
torch.jit.script(InPlace()).save(sys.argv[1] + "/inplace.pt")
torch.jit.script(FixedBatch()).save(sys.argv[1] + "/fixed.pt")
"#;
    // torch.jit.script reads the classes' source: a file, not `python -c`.
    std::fs::write(d.join("modules.py"), script).unwrap();
    let out = output(
        Command::new(&py).arg(d.join("modules.py")).arg(d),
        "scripting the modules",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["inplace.pt", "fixed.pt"] {
        let out = output(
            Command::new(&nrf)
                .args(["--log", "warn", "eval", "--no-ensemble", "--model"])
                .arg(d.join(file)),
            "nrf eval",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(!err.contains("panicked"), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains("fails as the attacks run it"),
            "{file}: {err}"
        );
    }
}
