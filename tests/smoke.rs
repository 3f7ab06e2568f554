//! End-to-end: the `smoke` preset through the real `nrf` binary, killed during the D_R
//! construction and run again. The second run must resume (cached stages, reused chunks) and
//! finish with sane result files and a report; a third, with a changed `[eval]`, must only
//! re-evaluate.
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf) and the real
//! Fashion-MNIST files; without them the test says why and passes vacuously.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn chunks_of(results: &Path, stage: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(results.join("work")) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(stage))
        .map(|e| {
            // The stored chunks (the folder also holds their number, `n_chunks`).
            std::fs::read_dir(e.path().join("chunks"))
                .map(|d| {
                    d.filter_map(|f| f.ok())
                        .filter(|f| f.file_name().to_string_lossy().starts_with("chunk_"))
                        .count()
                })
                .unwrap_or(0)
        })
        .sum()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn smoke_preset_survives_a_kill_during_d_r_and_resumes() {
    let (Some(bin), true) = (nrf_bin(), data_present()) else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`) and Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("smoke");
    let args = [
        "reproduce",
        "--preset",
        "smoke",
        "--quiet",
        "--results",
        results.to_str().unwrap(),
    ];

    kill_during_d_r(&bin, &args, &results);
    resume(&bin, &args);
    check_result_files(&results);
    check_plan_names_the_run(&bin, &results);
    check_fresh_seeds(&results);
    check_sources_and_sets(&results);
    check_extras(&results);
    check_roles(&results);
    check_d_det_study_and_ensemble(&results);
    check_figure3_and_report(&results);
    rerun_with_changed_eval(&bin, dir.path(), &results);
    train_repeats_the_runs_c_std(&bin, dir.path(), &results);
    a_checkpoint_source_repeats_the_run(&bin, dir.path(), &results);
    fresh_repeats_the_runs_models(&bin, dir.path(), &results);
}

/// Run 1: started, and killed as soon as D_R has stored a chunk (the source models are done).
fn kill_during_d_r(bin: &Path, args: &[&str], results: &Path) {
    // Run 1: kill it as soon as D_R has stored at least one chunk.
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if chunks_of(results, "construct_D_R-") >= 1 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("nrf exited ({status}) before D_R construction started");
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "D_R construction never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = chunks_of(results, "construct_D_R-");
    assert!(done_before >= 1);
    assert!(
        results.join("models/C_std.json").exists() && results.join("models/C_rob.json").exists()
    );
}

/// Run 2: the same command resumes: the source models cached, D_R from its chunks.
fn resume(bin: &Path, args: &[&str]) {
    // Run 2: resumes.
    let out = Command::new(bin).args(args).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second run failed:\n{log}");
    assert!(
        log.contains("train:C_std: cached"),
        "C_std was not taken from the cache:\n{log}"
    );
    assert!(
        log.contains("train:C_rob: cached"),
        "C_rob was not taken from the cache:\n{log}"
    );
    assert!(
        log.contains("rep-matching: resuming"),
        "D_R construction did not resume from its chunks:\n{log}"
    );
}

/// run.json is finished; every Figure 2 / Table 1 model has sane accuracies and a curve.
fn check_result_files(results: &Path) {
    // Result files with sane values.
    let run = json(&results.join("run.json"));
    assert!(
        run["finished"].is_string(),
        "run.json not marked finished: {run}"
    );
    assert!(run["missing"].as_array().unwrap().is_empty());
    for m in [
        "C_std",
        "C_rob",
        "on_D_R",
        "on_D_NR",
        "on_D_rand",
        "on_D_det",
        "on_control",
    ] {
        let r = json(&results.join(format!("models/{m}.json")));
        let acc = r["std_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{m}: std_acc {acc}");
        let robust = r["robust"].as_array().unwrap();
        assert!(!robust.is_empty(), "{m}: no robust accuracy");
        for p in robust {
            let a = p["acc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{m}: robust acc {a}");
            assert!(
                a <= acc + 1e-9 || p["n"].as_u64().unwrap() < 1000,
                "{m}: robust acc above std acc"
            );
        }
        assert!(!r["epochs"].as_array().unwrap().is_empty());
    }
}

/// `nrf plan` names exactly the stages the run recorded.
fn check_plan_names_the_run(bin: &Path, results: &Path) {
    let run = json(&results.join("run.json"));
    // `nrf plan` prices exactly the stages the run ran (each seed k >= 1 as `<stage>~s<k>`; the
    // theory is not network work and is left out of the plan).
    let out = Command::new(bin)
        .args(["plan", "--preset", "smoke", "--gflops", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nrf plan failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut planned = std::collections::BTreeSet::new();
    for s in plan["stages"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        planned.insert(name.to_string());
        for k in 1..s["seeds"].as_u64().unwrap() {
            planned.insert(format!("{name}~s{k}"));
        }
    }
    let ran: std::collections::BTreeSet<String> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .filter(|n| n != "theory")
        .collect();
    assert_eq!(
        planned.difference(&ran).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "planned but not run"
    );
    assert_eq!(
        ran.difference(&planned).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "run but not planned"
    );
}

/// The fresh models carry every seed; the source and extra models one.
fn check_fresh_seeds(results: &Path) {
    // `[fresh] seeds = 2`: the Figure 2 / Table 1 fresh models carry both seeds' numbers (seed 0
    // is the model itself), the source models and the extras' own models one.
    for m in ["on_D_R", "on_D_NR", "on_control", "on_D_rand", "on_D_det"] {
        let r = json(&results.join(format!("models/{m}.json")));
        let seeds = r["seeds"]
            .as_array()
            .unwrap_or_else(|| panic!("{m}: no seeds: {r}"));
        assert_eq!(seeds.len(), 2, "{m}: {r}");
        assert_eq!(
            seeds[0]["std_acc"], r["std_acc"],
            "{m}: seed 0 is the model itself"
        );
        assert_eq!(
            seeds[1]["robust"].as_array().unwrap().len(),
            r["robust"].as_array().unwrap().len()
        );
        assert_eq!(r["seed_summary"]["n_seeds"], 2, "{m}");
        assert!(
            results.join(format!("weights/{m}~s1.safetensors")).exists(),
            "{m}~s1 weights"
        );
    }
    for m in ["C_std", "C_rob", "cos_on_D_R_cos", "ts_on_D_det_n600"] {
        let r = json(&results.join(format!("models/{m}.json")));
        assert!(r.get("seeds").is_none(), "{m} has seeds: {r}");
    }
}

/// The source models learned; the constructions did what they are for.
fn check_sources_and_sets(results: &Path) {
    // The standard model learned something even in the smoke preset.
    assert!(
        json(&results.join("models/C_std.json"))["std_acc"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    for d in ["D_rand", "D_det"] {
        let r = json(&results.join(format!("datasets/{d}.json")));
        let s = r["success_rate"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&s), "{d}: attack success rate {s}");
    }
    for d in ["D_R", "D_NR"] {
        let r = json(&results.join(format!("datasets/{d}.json")));
        let (a, b) = (
            r["init_rel_err"].as_f64().unwrap(),
            r["final_rel_err"].as_f64().unwrap(),
        );
        assert!(
            b < a,
            "{d}: representation error did not decrease ({a} -> {b})"
        );
        assert!(results.join(format!("data/{d}.safetensors")).exists());
        assert!(results.join(format!("grids/{d}.png")).exists());
    }
}

/// Every extra wrote its section (finding, verdict, table, images) and its models.
fn check_extras(results: &Path) {
    // The reviewers' questions and Figure 3 (issue 8), all enabled in the smoke preset.
    for id in nrf_experiments::extras::SECTION_IDS {
        let s = json(&results.join(format!("sections/{id}.json")));
        assert_eq!(s["id"], id);
        assert!(
            !s["finding"].as_str().unwrap_or("").is_empty(),
            "{id}: empty finding"
        );
        let verdict = s["verdict"].as_str().unwrap_or("");
        assert!(
            ["holds", "partly", "does not hold", "inconclusive", "n/a"].contains(&verdict),
            "{id}: verdict {verdict:?}"
        );
        assert!(
            !s["tables"][0]["rows"].as_array().unwrap().is_empty(),
            "{id}: empty table"
        );
        for img in s["images"].as_array().unwrap() {
            let p = results.join(img.as_str().unwrap());
            assert!(p.exists(), "{id}: missing image {}", p.display());
        }
    }
    for m in [
        "C_indep",
        "cos_on_D_R_cos",
        "f3_mlp_64_on_D_det",
        "ts_on_D_det_n600",
        "ts_on_clean_n600",
        "es_on_D_det_eps0p5",
        "dd_C_std_resnet18_w4",
        "dd_C_rob_eps0p25",
        "dd_on_D_det_dd_eot",
        "dd_on_D_det_dd_all",
    ] {
        assert!(
            results.join(format!("models/{m}.json")).exists(),
            "models/{m}.json missing"
        );
    }
}

/// Every model's role, as the report reads it.
fn check_roles(results: &Path) {
    // Every model records its role, which the report reads instead of the name: the paper's
    // models as main models of their sets, the extras' own as extras, with what they vary.
    for (m, role) in [
        ("C_std", serde_json::json!({"main": "std"})),
        ("C_rob", serde_json::json!({"main": "rob"})),
        ("on_D_R", serde_json::json!({"main": "d_r"})),
        ("on_D_NR", serde_json::json!({"main": "d_nr"})),
        ("on_D_rand", serde_json::json!({"main": "d_rand"})),
        ("on_D_det", serde_json::json!({"main": "d_det"})),
        ("on_control", serde_json::json!({"main": "control"})),
        (
            "cos_on_D_R_cos",
            serde_json::json!({"extra": {"set": "d_r", "varies": "distance"}}),
        ),
        (
            "ts_on_D_det_n600",
            serde_json::json!({"extra": {"set": "d_det", "varies": "train_size"}}),
        ),
        (
            "es_on_D_det_eps0p5",
            serde_json::json!({"extra": {"set": "d_det", "varies": "eps"}}),
        ),
        (
            "dd_C_rob_eps0p25",
            serde_json::json!({"extra": {"set": "rob", "varies": "eps"}}),
        ),
        (
            "dd_on_D_det_dd_eot",
            serde_json::json!({"extra": {"set": "d_det", "varies": "construction"}}),
        ),
        (
            "f3_fmnist_cnn_on_D_det",
            serde_json::json!({"extra": {"set": "d_det", "varies": "architecture"}}),
        ),
    ] {
        let j = json(&results.join(format!("models/{m}.json")));
        assert_eq!(j["role"], role, "{m}: role");
    }
}

/// The D_det study's sets, and the ensemble with its checks on Figure 2's models.
fn check_d_det_study_and_ensemble(results: &Path) {
    // D_det: what it takes: six rebuilt sets, each attacked with what its row says.
    let dd = json(&results.join("sections/d_det_study.json"));
    let rows = dd["tables"][0]["rows"].as_array().unwrap();
    assert!(rows.len() >= 6, "d_det_study: {} rows", rows.len());
    let eot = json(&results.join("datasets/D_det_dd_eot.json"));
    assert_eq!(eot["source_model"], "C_std");
    let all = json(&results.join("datasets/D_det_dd_all.json"));
    assert_eq!(all["source_model"], "dd_C_rob_eps0p25");
    assert!((all["epsilon"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    // [eval] ensemble: every fully evaluated model has its worst case over PGD and APGD, no
    // higher than PGD's alone.
    for m in ["C_std", "C_rob", "on_D_R"] {
        let j = json(&results.join(format!("models/{m}.json")));
        let ens = &j["ensemble"][0];
        assert!(
            ens["attack"].as_str().unwrap_or("").contains("APGD-T"),
            "{m}: no ensemble point: {j}"
        );
        let pgd = j["robust"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["norm"] == "L2" && p["eps"] == ens["eps"])
            .unwrap_or_else(|| panic!("{m}: no PGD point at the ensemble's eps"));
        // Its PGD draws other random starts than the grid's: 3 of the 100 images of slack.
        assert!(
            ens["acc"].as_f64().unwrap() <= pgd["acc"].as_f64().unwrap() + 0.03,
            "{m}: the ensemble is weaker than PGD alone"
        );
        let c = &j["checks"];
        assert!(
            c["more_steps"].as_u64() > c["pgd_steps"].as_u64() && c["unbounded_acc"].is_number(),
            "{m}: no gradient-masking checks: {c}"
        );
    }
}

/// Figure 3's subset, the theory and the report's sections.
fn check_figure3_and_report(results: &Path) {
    // extras.figure3_n = 200: Figure 3's models train on the first 200 images of the sets.
    // extras.figure3_seeds defaults to [fresh] seeds (2): every point is a mean over 2 models.
    for m in ["f3_fmnist_cnn_on_D_det", "f3_fmnist_cnn_on_control"] {
        let j = json(&results.join(format!("models/{m}.json")));
        assert_eq!(j["train_size"], 200, "{m}: train_size");
        let seeds = j["seeds"].as_array().map_or(0, Vec::len);
        assert_eq!(seeds, 2, "{m}: seeds");
    }
    let f3 = json(&results.join("sections/figure3.json"));
    let transfer = f3["tables"][0]["rows"][0][4].as_str().unwrap_or_default();
    assert!(
        transfer.contains("(seeds "),
        "Figure 3's transfer without its seeds: {transfer}"
    );
    assert!(results.join("theory/theory.json").exists());
    let html = std::fs::read_to_string(results.join("report.html")).unwrap();
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    for section in ["Figure 2", "Table 1"] {
        assert!(
            html.contains(section) && md.contains(section),
            "report lacks {section}"
        );
    }
    assert!(
        md.contains("Robust acc (ensemble)") && md.contains("decided on it"),
        "Figure 2 lacks the ensemble column"
    );
    assert!(
        md.contains("Evaluation checks (gradient masking)"),
        "the report lacks the gradient-masking checks"
    );
}

/// Run 3: a changed [eval] re-evaluates every model without retraining or rebuilding any.
fn rerun_with_changed_eval(bin: &Path, dir: &Path, results: &Path) {
    // Run 3: a changed [eval] re-evaluates every model without retraining or rebuilding any.
    let (_, text) = nrf::experiments::preset::Preset::load("smoke").unwrap();
    let changed = text.replacen("l2_eps = [0.5, 1.0]", "l2_eps = [0.5, 1.0, 2.0]", 1);
    assert_ne!(changed, text, "the smoke preset's l2_eps line changed");
    let preset = dir.join("smoke-eval.toml");
    std::fs::write(&preset, changed).unwrap();
    let out = Command::new(bin)
        .args(["reproduce", "--quiet", "--preset"])
        .arg(&preset)
        .arg("--results")
        .arg(results)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "third run failed:\n{log}");
    assert!(
        log.contains("eval:C_std: running"),
        "C_std not re-evaluated:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !(line.contains("running") && (line.contains("train:") || line.contains("construct:"))),
            "a changed [eval] retrained or rebuilt something: {line}"
        );
    }
    let c_std = json(&results.join("models/C_std.json"));
    assert!(
        c_std["robust"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["eps"].as_f64() == Some(2.0)),
        "C_std has no robust accuracy at the new eps 2.0: {c_std}"
    );
}

/// `nrf train` trains C_std as the run did (same weights, bit for bit: same spec, section and
/// stage seed, same threads), and honours the preset's model section and its own options.
fn train_repeats_the_runs_c_std(bin: &Path, dir: &Path, results: &Path) {
    let train = |extra: &[&str], stem: &Path| -> serde_json::Value {
        let out = Command::new(bin)
            .args(["train", "--preset", "smoke", "--robust-n", "50", "--save"])
            .arg(stem)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nrf train {extra:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let stem = dir.join("c_std");
    let r = train(&[], &stem);
    assert_eq!(r["model"], "C_std");
    assert_eq!(r["init"], "pytorch");
    let run_c_std = json(&results.join("models/C_std.json"));
    let (a, b) = (r["test_acc"].as_f64(), run_c_std["std_acc"].as_f64());
    assert!(
        matches!((a, b), (Some(a), Some(b)) if (a - b).abs() <= 0.002),
        "{r}\n{run_c_std}"
    );
    let ours = std::fs::read(stem.with_extension("safetensors")).unwrap();
    let run = std::fs::read(results.join("weights/C_std.safetensors")).unwrap();
    assert!(ours == run, "nrf train's C_std differs from the run's");

    // The preset's model section (its initialisation and precision: bfloat16 end to end, from
    // training to the saved spec) and the seed and epochs asked for.
    let stem = dir.join("c_std_tch_bf16");
    let args = ["--set", "model.init=tch", "--set", "model.precision=bf16"];
    let r = train(
        &[&args[..], &["--seed", "5", "--epochs", "1"]].concat(),
        &stem,
    );
    assert_eq!(
        (r["init"].as_str(), r["seed"].as_u64()),
        (Some("tch"), Some(5))
    );
    assert_eq!(
        (r["precision"].as_str(), r["epochs"].as_u64()),
        (Some("bf16"), Some(1))
    );
    // One epoch of the smoke preset's 2,000 images learns (chance is 10%).
    assert!(r["test_acc"].as_f64().is_some_and(|a| a > 0.3), "{r}");
    let side = json(&stem.with_extension("json"));
    assert_eq!(
        (side["init"].as_str(), side["precision"].as_str()),
        (Some("tch"), Some("bf16"))
    );
    let ours = std::fs::read(stem.with_extension("safetensors")).unwrap();
    assert!(ours != run);
}

/// A run driven from an nrf checkpoint of C_std (`[sources]`, here the run's own weights) is not
/// trained and repeats the run that trained it: the same evaluation, the same D_NR / D_det bit
/// for bit (FakeReLU included: an nrf model), the same fresh models on them.
fn a_checkpoint_source_repeats_the_run(bin: &Path, dir: &Path, results: &Path) {
    let copy = dir.join("from-checkpoint");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(results)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let weights = results.join("weights/C_std.safetensors");
    let out = Command::new(bin)
        .args(["reproduce", "--quiet", "--preset"])
        // The third run's preset (its [eval]), so that only what depends on C_std runs.
        .arg(dir.join("smoke-eval.toml"))
        .args(["--set", "extras.enabled=false", "--set", "theory.skip=true"])
        .arg("--set")
        .arg(format!("sources.c_std.model={}", weights.display()))
        .arg("--results")
        .arg(&copy)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run from a checkpoint failed:\n{log}");
    for line in log.lines() {
        assert!(
            !(line.contains("running") && line.contains("train:C_std")),
            "C_std trained although [sources] names its checkpoint: {line}"
        );
    }
    assert!(log.contains("construct:D_NR: running"), "{log}");
    let (ours, run) = (
        json(&copy.join("models/C_std.json")),
        json(&results.join("models/C_std.json")),
    );
    assert_eq!(ours["trained_on"], "external");
    assert_eq!(ours["source"]["format"], "checkpoint");
    assert_eq!(
        ours["source"]["sha256"].as_str().unwrap(),
        nrf::data::store::sha256_file(&weights).unwrap()
    );
    assert_eq!(
        (&ours["std_acc"], &ours["robust"]),
        (&run["std_acc"], &run["robust"])
    );
    for set in ["D_NR", "D_det"] {
        let load = |r: &Path| nrf::data::load_constructed(r.join("data").join(set)).unwrap();
        let (a, b) = (load(&copy), load(results));
        assert!(
            a.dataset.images == b.dataset.images && a.dataset.labels == b.dataset.labels,
            "{set} from the checkpoint differs from the run's"
        );
        assert_eq!(a.metadata.extra["source_model"]["format"], "checkpoint");
        let m = |r: &Path| json(&r.join(format!("models/on_{set}.json")));
        assert_eq!(m(&copy)["std_acc"], m(results)["std_acc"], "on_{set}");
    }
}

/// `nrf fresh` on the run's stored D_NR, with the run's preset and its models' name, trains and
/// evaluates the run's `on_D_NR` models: every seed's numbers as the run recorded them.
fn fresh_repeats_the_runs_models(bin: &Path, dir: &Path, results: &Path) {
    let out = Command::new(bin)
        .args(["fresh", "--no-ensemble", "--name", "on_D_NR", "--preset"])
        .arg(dir.join("smoke-eval.toml"))
        .arg("--data")
        .arg(results.join("data/D_NR.safetensors"))
        .arg("--save")
        .arg(dir.join("fresh"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nrf fresh failed:\n{log}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = json(&results.join("models/on_D_NR.json"));
    let (ours, theirs) = (
        r["seeds"].as_array().unwrap(),
        run["seeds"].as_array().unwrap(),
    );
    assert_eq!(ours.len(), theirs.len(), "{r}");
    for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a["train_seed"], b["train_seed"], "seed {k}");
        assert_eq!(a["eval"]["std_acc"], b["std_acc"], "seed {k}: {a}\n{b}");
        let points = |v: &serde_json::Value| -> Vec<[serde_json::Value; 5]> {
            let f = ["norm", "eps", "acc", "steps", "n"];
            (v.as_array().unwrap().iter())
                .map(|p| f.map(|k| p[k].clone()))
                .collect()
        };
        assert_eq!(
            points(&a["eval"]["robust"]),
            points(&b["robust"]),
            "seed {k}"
        );
        let name = if k == 0 {
            "on_D_NR".into()
        } else {
            format!("on_D_NR~s{k}")
        };
        let weights = |d: &Path| std::fs::read(d.join(format!("{name}.safetensors"))).unwrap();
        assert!(
            weights(&dir.join("fresh")) == weights(&results.join("weights")),
            "{name}: nrf fresh's weights differ from the run's"
        );
    }
    assert_eq!(r["set"]["method"], "non_robust_features");
    assert!(log.contains("| standard |"), "{log}");
}

#[test]
fn a_bad_preset_value_names_the_field() {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = nrf::experiments::preset::Preset::load("smoke").unwrap();
    for (from, to, field) in [
        ("steps = 40", "steps = 0", "rep_match.steps"),
        (
            "headline_eps = 0.5",
            "headline_eps = 0.7",
            "eval.headline_eps",
        ),
        ("lr = 0.05", "lr = -1.0", "train_std.lr"),
        (
            "distance = \"l2_squared\"",
            "distance = \"l3\"",
            "rep_match.distance",
        ),
        ("epochs = 4", "epochz = 4", "epochz"),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text, "{from} not found in the smoke preset");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, bad).unwrap();
        let out = Command::new(&bin)
            .args([
                "reproduce",
                "--quiet",
                "--preset",
                path.to_str().unwrap(),
                "--results",
            ])
            .arg(dir.path().join("r"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(field),
            "error for {field} does not name it:\n{err}"
        );
        assert!(
            err.contains("bad.toml"),
            "error does not name the file:\n{err}"
        );
    }
}
