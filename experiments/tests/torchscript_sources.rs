//! A preset's `[sources]`: TorchScript files as the source models of the constructions. A small
//! Fashion-MNIST CNN is trained briefly in plain PyTorch and exported
//! (experiments/python/export_example.py); the smoke preset at toy sizes (`--set` overrides)
//! names that export as C_std (the variant that expects normalised inputs, with its mean / std)
//! and as C_rob (the variant whose representation is a method), and runs through the library.
//! Neither is trained: their results entries are the TorchScript model's (C_std's accuracy is
//! PyTorch's), D_R / D_NR / D_rand / D_det record the file and its SHA-256, and replacing C_std's
//! file recomputes what depends on it and nothing else. A missing file and a wrong
//! normalisation stop the run before any stage, naming the preset field.
//!
//! Needs the torch environment's python (NRF_PYTHON, set by `cargo xtask test`) and the real
//! Fashion-MNIST files; without them the test says why and passes vacuously.
mod common;

use common::stages;

/// Stage name -> (status, key), as [`stages`] reads them.
type Stages = std::collections::BTreeMap<String, (String, String)>;
use nrf_experiments::preset::Preset;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The smoke preset at toy sizes, Figure 2 and Table 1 only (its first 1000 test images: C_std's
/// accuracy is compared with PyTorch's on them). The ensemble stays, with few steps.
const TINY: &[&str] = &[
    "data.train_limit=500",
    "eval.robust_n=20",
    "eval.steps=1",
    "eval.l2_eps=[0.5]",
    "eval.linf_eps=[]",
    "eval.curve_n=100",
    "eval.ensemble.steps=2",
    "eval.ensemble.targets=2",
    "eval.ensemble.square_queries=5",
    "rep_match.n=20",
    "rep_match.steps=10",
    "rep_match.batch_size=20",
    "relabel.n=20",
    "relabel.steps=2",
    "fresh.epochs=1",
    "fresh.seeds=1",
    "fresh.batch_size=10",
    "extras.enabled=false",
    "theory.skip=true",
    "threads=1",
    "name=smoke-sources",
];

/// The extras on top of [`TINY`] (the smoke preset's own, at sizes that fit its 20-image sets).
const EXTRAS: &[&str] = &[
    "extras.enabled=true",
    "extras.train_sizes=[20]",
    "extras.figure3_n=20",
    "extras.figure3_archs=[{type = \"fmnist_cnn\"}, {type = \"mlp\", hidden = [16]}, \
     {type = \"mlp\", hidden = [32]}]",
    "extras.d_det_study.n=20",
    "extras.d_det_study.margin_steps=2",
    "extras.diversity_max_per_class=5",
];

fn python() -> Option<PathBuf> {
    std::env::var_os("NRF_PYTHON")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Trains and exports the example model into `out`; returns PyTorch's accuracy on the whole
/// test set and on its first 1000 images.
fn export(py: &Path, out: &Path, args: &[&str]) -> (f64, f64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/export_example.py");
    let o = Command::new(py)
        .arg(script)
        .arg(out)
        .args(args)
        .output()
        .expect("starting python");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "export_example.py failed:\n{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (
        v["test_acc"].as_f64().unwrap(),
        v["test_acc_1000"].as_f64().unwrap(),
    )
}

fn reproduce(results: &Path, sets: &[String]) -> anyhow::Result<serde_json::Value> {
    let (preset, text) = Preset::load_with_overrides("smoke", sets)?;
    nrf_experiments::reproduce(preset, text, results.to_path_buf(), None, false)?;
    Ok(json(&results.join("run.json")))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn sha256(p: &Path) -> String {
    nrf_data::store::sha256_file(p).unwrap()
}

/// The SHA-256 and file a constructed set's metadata records for its source model.
fn set_source(results: &Path, set: &str) -> (String, String) {
    let ds = nrf_data::store::load_constructed(results.join(format!("data/{set}"))).unwrap();
    let m = &ds.metadata;
    let file = m.extra["source_model"]["torchscript"]
        .as_str()
        .unwrap_or_else(|| panic!("{set}: no source_model in {:?}", m.extra))
        .to_string();
    (m.source_model_sha256.clone().unwrap(), file)
}

#[test]
fn a_preset_builds_the_constructions_from_torchscript_sources() {
    let Some(py) = python() else {
        eprintln!(
            "SKIPPED: needs NRF_PYTHON (the torch environment's python; `cargo xtask test` sets it)"
        );
        return;
    };
    if !Path::new(nrf_data::idx::FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("SKIPPED: needs Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    }
    let start = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (whole, torch_acc) = export(&py, &d.join("a"), &["--epochs", "3", "--n", "4000"]);
    assert!(whole > 0.6, "the PyTorch model did not train: {whole}");
    // C_std: the export that expects normalised inputs (its own file, replaced below).
    let std_pt = d.join("c_std.pt");
    std::fs::copy(d.join("a/normalised.pt"), &std_pt).unwrap();
    let rob_pt = d.join("a/method.pt");
    let named = |std_file: &Path| -> Vec<String> {
        let mut v: Vec<String> = TINY.iter().map(|s| s.to_string()).collect();
        v.extend([
            format!("sources.c_std.model={}", std_file.display()),
            "sources.c_std.mean=[0.2860]".into(),
            "sources.c_std.std=[0.3530]".into(),
            format!("sources.c_rob.model={}", rob_pt.display()),
            "sources.c_rob.rep=method:features".into(),
        ]);
        v
    };
    let sets = named(&std_pt);
    plan_prices_the_sources(&sets);
    let results = d.join("r");

    let first = reproduce(&results, &sets).unwrap();
    let s1 = stages(&first);
    // Neither source is trained; both are evaluated like trained models (ensemble included).
    for name in ["train:C_std", "train:C_rob"] {
        assert!(!s1.contains_key(name), "{name} ran: {s1:?}");
    }
    for name in [
        "eval:C_std",
        "eval:C_rob",
        "ensemble:C_std",
        "ensemble:C_rob",
        "construct:D_R",
        "construct:D_NR",
        "construct:D_rand",
        "construct:D_det",
        "train:on_D_R",
        "train:on_D_det",
    ] {
        assert_eq!(s1[name].0, "done", "{name}");
    }
    assert!(!results.join("weights/C_std.safetensors").exists());
    assert!(!results.join("weights/C_rob.safetensors").exists());
    let (std_sha, rob_sha) = (sha256(&std_pt), sha256(&rob_pt));
    // The results entries are the TorchScript models, with their provenance.
    for (name, file, sha) in [("C_std", &std_pt, &std_sha), ("C_rob", &rob_pt, &rob_sha)] {
        let m = json(&results.join(format!("models/{name}.json")));
        assert_eq!(
            m["source"]["torchscript"],
            file.display().to_string(),
            "{m}"
        );
        assert_eq!(m["source"]["sha256"], sha.as_str(), "{m}");
        let absolute = std::fs::canonicalize(file).unwrap();
        assert_eq!(
            m["source"]["torchscript_absolute"],
            absolute.display().to_string()
        );
        assert_eq!(m["trained_on"], "external", "{m}");
        assert!(!m["robust"].as_array().unwrap().is_empty(), "{m}");
        assert!(!m["ensemble"].as_array().unwrap().is_empty(), "{m}");
    }
    let c_std = json(&results.join("models/C_std.json"));
    let nrf_acc = c_std["std_acc"].as_f64().unwrap();
    assert!(
        (nrf_acc - torch_acc).abs() < 0.005,
        "C_std's accuracy {nrf_acc} is not the TorchScript model's {torch_acc} (first 1000 test \
         images)"
    );
    let c_rob = json(&results.join("models/C_rob.json"));
    assert_eq!(c_rob["source"]["representation"], "method:features");
    // Every construction names its source file and SHA-256.
    let shown = |p: &Path| p.display().to_string();
    assert_eq!(
        set_source(&results, "D_R"),
        (rob_sha.clone(), shown(&rob_pt))
    );
    for set in ["D_NR", "D_rand", "D_det"] {
        assert_eq!(
            set_source(&results, set),
            (std_sha.clone(), shown(&std_pt)),
            "{set}"
        );
    }
    report_names_the_untrained_models(&results);
    nrf_eval_gives_the_runs_numbers(&results, &sets, &std_pt);
    let s2 = editing_c_std_recomputes_what_depends_on_it(&py, &std_pt, &results, &sets, &s1);
    assert_eq!(set_source(&results, "D_R").0, rob_sha);
    let first_s = start.elapsed().as_secs_f64();
    the_extras_run_on_the_sources(&results, &sets, &s2);
    let extras_s = start.elapsed().as_secs_f64() - first_s;
    bad_sources_stop_before_any_stage(d, &named(&std_pt));
    eprintln!(
        "two runs with TorchScript sources in {first_s:.1}s (C_std: nrf {nrf_acc:.4}, PyTorch \
         {torch_acc:.4}), the extras on them in {extras_s:.1}s; whole test {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

/// `nrf eval` of C_std's file on the same preset, seeded by the name C_std: the numbers the run
/// recorded for its C_std (the same test images — another subset of 20 changes them — the same
/// settings and seeds, one thread), the ensemble and its checks included; every accuracy inside
/// its 95% interval.
fn nrf_eval_gives_the_runs_numbers(results: &Path, sets: &[String], std_pt: &Path) {
    use nrf_experiments::construct_cmd::{eval, EvalOptions, ExternalModel};
    let (preset, _) = Preset::load_with_overrides("smoke", sets).unwrap();
    let model = ExternalModel {
        path: std_pt.to_path_buf(),
        rep: nrf_models::RepSource::parse("tuple").unwrap(),
        mean: vec![0.2860],
        std: vec![0.3530],
    };
    let opts = EvalOptions {
        name: Some("C_std".into()),
        ensemble: true,
    };
    let e = eval(&preset, &model, None, &opts).unwrap();
    let run = json(&results.join("models/C_std.json"));
    assert_eq!(e.std_acc, run["std_acc"].as_f64().unwrap());
    let (lo, hi) = e.std_acc_interval;
    assert!(lo < e.std_acc && e.std_acc < hi, "{lo} {} {hi}", e.std_acc);
    let grid = run["robust"].as_array().unwrap();
    assert_eq!(e.robust.len(), grid.len());
    for (mine, theirs) in e.robust.iter().zip(grid) {
        let p = &mine.point;
        assert_eq!(p.acc, theirs["acc"].as_f64().unwrap(), "{theirs}");
        assert_eq!(p.eps, theirs["eps"].as_f64().unwrap());
        assert_eq!(p.n, preset.eval.robust_n);
        assert!(mine.interval.0 <= p.acc && p.acc <= mine.interval.1);
    }
    let ens = e
        .ensemble
        .as_ref()
        .expect("the smoke preset has an ensemble");
    let p = &ens.robust.point;
    assert_eq!(p.acc, run["ensemble"][0]["acc"].as_f64().unwrap());
    assert!(
        p.attack.as_deref().is_some_and(|a| a.contains("APGD")),
        "{p:?}"
    );
    assert_eq!(serde_json::to_value(&ens.checks).unwrap(), run["checks"]);
    assert!(e.markdown().contains("| C_std |"), "{}", e.markdown());
    // Without the ensemble: the same grid, nothing else.
    let opts = EvalOptions {
        ensemble: false,
        ..opts
    };
    let plain = eval(&preset, &model, None, &opts).unwrap();
    assert!(plain.ensemble.is_none());
    assert_eq!(plain.robust[0].point.acc, e.robust[0].point.acc);
}

/// Editing C_std's file (its weights moved a little, in PyTorch) recomputes what depends on it,
/// and nothing else; returns the second run's stages.
fn editing_c_std_recomputes_what_depends_on_it(
    py: &Path,
    std_pt: &Path,
    results: &Path,
    sets: &[String],
    s1: &Stages,
) -> Stages {
    let std_sha = sha256(std_pt);
    let edit = [
        "import sys, torch",
        "m = torch.jit.load(sys.argv[1])",
        "torch.manual_seed(1)",
        "with torch.no_grad():",
        "    for p in m.parameters():",
        "        p.add_(1e-3 * torch.randn_like(p))",
        "m.save(sys.argv[1])",
    ]
    .join("\n");
    let o = Command::new(py)
        .args(["-c", &edit])
        .arg(std_pt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new_sha = sha256(std_pt);
    assert_ne!(new_sha, std_sha);
    let second = reproduce(results, sets).unwrap();
    let s2 = stages(&second);
    // What C_std's file decides: its own evaluation, the sets built from it and everything
    // downstream of them (their fresh models, their evaluations).
    let on_c_std = |n: &str| {
        n.ends_with(":C_std") || ["D_NR", "D_rand", "D_det"].iter().any(|s| n.contains(s))
    };
    for (name, (status, key)) in &s2 {
        if on_c_std(name) {
            assert_eq!(status, "done", "{name} depends on C_std's file");
            assert_ne!(key, &s1[name].1, "{name}");
        } else {
            assert_eq!(status, "cached", "{name} does not depend on C_std's file");
            assert_eq!(key, &s1[name].1, "{name}");
        }
    }
    assert_eq!(s2.len(), s1.len());
    for name in [
        "eval:C_std",
        "ensemble:C_std",
        "construct:D_NR",
        "construct:D_det",
        "train:on_D_rand",
        "eval:C_rob",
        "construct:D_R",
        "train:on_D_R",
    ] {
        assert!(s2.contains_key(name), "{name}");
    }
    assert_eq!(set_source(results, "D_NR").0, new_sha);
    s2
}

/// The extras run on TorchScript sources too (at toy sizes): the paper's stages stay cached
/// (`before`: their stages), every section is written, Figure 3's transfer attacks the TorchScript
/// C_std, and the over-fitting section says why it does not list C_std (nrf did not train it).
fn the_extras_run_on_the_sources(results: &Path, sets: &[String], before: &Stages) {
    let mut with_extras: Vec<String> = sets
        .iter()
        .filter(|s| !s.starts_with("extras.enabled"))
        .cloned()
        .collect();
    with_extras.extend(EXTRAS.iter().map(|s| s.to_string()));
    let third = reproduce(results, &with_extras).unwrap();
    let s3 = stages(&third);
    for (name, (_, key)) in before {
        assert_eq!(s3[name], ("cached".to_string(), key.clone()), "{name}");
    }
    for section in nrf_experiments::extras::SECTION_IDS {
        let f = results.join(format!("sections/{section}.json"));
        assert!(f.exists(), "{section}: no section with TorchScript sources");
    }
    assert_eq!(s3["extras:figure3_transfer"].0, "done");
    let over = json(&results.join("sections/overfitting.json"));
    let finding = over["finding"].as_str().unwrap();
    assert!(
        finding.contains("Not listed: C_std, a source model from a file"),
        "{finding}"
    );
}

/// A missing file or a wrong normalisation stops the run before any stage (no run.json), naming
/// the preset field; `sets` names working sources.
/// `nrf plan` measures each TorchScript source against the preset's architecture and prices
/// every stage that runs on it at that ratio.
fn plan_prices_the_sources(sets: &[String]) {
    use nrf_experiments::plan::{plan, PlanOptions};
    let opts = PlanOptions {
        gflops: Some(10.0),
        ..Default::default()
    };
    let (p, _) = Preset::load_with_overrides("smoke", sets).unwrap();
    let with = plan(&p, &opts).unwrap();
    let own_sets: Vec<String> = sets
        .iter()
        .filter(|s| !s.starts_with("sources."))
        .cloned()
        .collect();
    let (own, _) = Preset::load_with_overrides("smoke", &own_sets).unwrap();
    let without = plan(&own, &opts).unwrap();
    assert_eq!(with.sources.len(), 2, "{:?}", with.sources);
    for s in &with.sources {
        assert!(
            s.relative_cost > 0.0 && s.relative_cost.is_finite(),
            "{s:?}"
        );
        assert!(s.params.unwrap() > 0, "{s:?}");
        eprintln!("plan: {} = {}: {}", s.model, s.file, s.detail);
    }
    let flops = |plan: &nrf_experiments::plan::Plan, name: &str| {
        let s = plan.stages.iter().find(|s| s.name == name).unwrap();
        (s.flops, s.source.clone())
    };
    for (stage, source) in [
        ("construct:D_R", "C_rob"),
        ("construct:D_NR", "C_std"),
        ("construct:D_det", "C_std"),
        ("eval:C_std", "C_std"),
    ] {
        let (f, on) = flops(&with, stage);
        assert_eq!(on.as_deref(), Some(source), "{stage}");
        let ratio = with.sources.iter().find(|s| s.model == source).unwrap();
        let expected = ratio.relative_cost * flops(&without, stage).0;
        assert!(
            (f - expected).abs() <= 1e-9 * expected,
            "{stage}: {f} vs {expected}"
        );
    }
    assert_eq!(
        flops(&with, "train:on_D_R"),
        flops(&without, "train:on_D_R")
    );
    assert!(with.to_text().contains("(TorchScript)"));
}

fn bad_sources_stop_before_any_stage(d: &Path, sets: &[String]) {
    // A missing file: an error naming the field and the path, before any stage (no run.json).
    let missing = d.join("nope.pt");
    let mut bad = sets.to_vec();
    bad.push(format!("sources.c_rob.model={}", missing.display()));
    let fresh = d.join("r-missing");
    let e = format!("{:#}", reproduce(&fresh, &bad).unwrap_err());
    assert!(
        e.contains("`sources.c_rob.model`") && e.contains("nope.pt") && e.contains("no such file"),
        "{e}"
    );
    assert!(!fresh.join("run.json").exists());
    assert!(!fresh.join("stages").exists());
    // A wrong normalisation: near chance on the test images, stopped before any stage.
    let mut bad = sets.to_vec();
    bad.extend([
        "sources.c_std.mean=[100.0]".into(),
        "sources.c_std.std=[1.0]".into(),
    ]);
    let fresh = d.join("r-chance");
    let e = format!("{:#}", reproduce(&fresh, &bad).unwrap_err());
    assert!(
        e.contains("near chance") && e.contains("`sources.c_std.mean`"),
        "{e}"
    );
    assert!(!fresh.join("run.json").exists());
}

/// The report was written from the results, and Figure 2's table says which models the run did
/// not train, and from which file.
fn report_names_the_untrained_models(results: &Path) {
    let report = std::fs::read_to_string(results.join("report.md")).unwrap();
    for name in ["C_std", "C_rob"] {
        assert!(
            report.contains(&format!("{name} (not trained here: TorchScript ")),
            "report.md does not say {name} is an external model"
        );
    }
}
