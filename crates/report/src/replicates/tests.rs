use super::*;
use crate::demo::demo_models;
use crate::io::read_json;
use crate::results::RunInfo;
use crate::uncertainty::sample_sd;

/// A results folder holding the demo models with `shift(name)` added to every accuracy of
/// the model `name` (each of its seeds alike), under master seed `seed`.
fn write_run(dir: &Path, seed: u64, shift: impl Fn(&str) -> f64) -> PathBuf {
    crate::demo::write_demo_results(dir).unwrap();
    let path = dir.join("run.json");
    let mut run: RunInfo = read_json(&path).unwrap();
    run.seed = seed;
    write_json_atomic(&path, &run).unwrap();
    for mut m in demo_models() {
        let d = shift(&m.name);
        let bump = |a: &mut f64| *a = (*a + d).clamp(0.0, 1.0);
        bump(&mut m.std_acc);
        m.robust.iter_mut().for_each(|p| bump(&mut p.acc));
        for s in &mut m.seeds {
            bump(&mut s.std_acc);
            s.robust.iter_mut().for_each(|p| bump(&mut p.acc));
        }
        if m.seeds.len() >= 2 {
            m.seed_summary = Some(m.summarise_seeds());
        }
        write_json_atomic(dir.join("models").join(format!("{}.json", m.name)), &m).unwrap();
    }
    dir.to_path_buf()
}

/// One run per shift, `root/run{i}` under master seed 10 + i, every accuracy moved by `shifts[i]`.
fn shifted_runs(root: &Path, shifts: &[f64]) -> Vec<PathBuf> {
    shifts
        .iter()
        .enumerate()
        .map(|(i, d)| write_run(&root.join(format!("run{i}")), 10 + i as u64, |_| *d))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn runs_become_the_seeds_of_one_model() {
    let t = tempfile::tempdir().unwrap();
    let shifts = [0.0, 0.02, -0.01];
    let dirs = shifted_runs(t.path(), &shifts);
    let r = Replicates::load(&dirs).unwrap();
    assert_eq!(r.runs.len(), 3);
    assert_eq!(
        r.runs.iter().map(|x| x.seed).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(r.headline, Some(("L2".to_string(), 0.5)));
    // on_D_R has two seeds in every run: each run contributes its mean over them.
    let demo = demo_models();
    let dr0 = demo.iter().find(|m| m.name == "on_D_R").unwrap();
    let own_mean = dr0.std_accuracy().value;
    assert_eq!(r.runs[0].fresh_seeds, 2);
    let dr = r.models.iter().find(|m| m.name == "on_D_R").unwrap();
    assert_eq!(dr.n_seeds(), 3);
    for (i, d) in shifts.iter().enumerate() {
        assert!(close(dr.seeds[i].std_acc, own_mean + d), "run {i}");
        assert_eq!(dr.seeds[i].train_seed, 10 + i as u64);
    }
    let a = dr.std_accuracy();
    assert!(close(a.value, own_mean + 0.01 / 3.0));
    assert!(close(a.seed_sd().unwrap(), sample_sd(&shifts).unwrap()));
    // Every grid point is carried over; the single-seed models become 3-"seed" models too.
    assert_eq!(dr.robust.len(), dr0.robust.len());
    let c_std = r.models.iter().find(|m| m.name == "C_std").unwrap();
    assert_eq!(c_std.n_seeds(), 3);
    assert!(c_std.epochs.is_empty() && c_std.checks.is_none());
    // The verdicts across runs are the report's rules on those models.
    let again = verdicts_of(&r.models, r.headline().as_ref(), 10);
    assert_eq!(r.verdicts, again);
    assert_eq!(r.per_run.len(), 3);
    assert!(r.verdicts.iter().any(|v| v.id == "F2a"));
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // Spreads: the sd of the runs' values, one entry per model and number.
    let sp = r
        .spreads
        .iter()
        .find(|s| s.model == "on_D_R" && s.number == "std acc")
        .unwrap();
    assert!(close(sp.sd, sample_sd(&shifts).unwrap()));
    // One run predicts its 2 seeds' spread over 2 (the same in every run), no sampling part
    // (the whole test set).
    let s0 = dr0.std_accuracy().seed_sd().unwrap();
    assert!(close(sp.predicted_sd.unwrap(), (s0 * s0 / 2.0).sqrt()));
    // C_std's standard accuracy: one model on the whole test set, one run shows no spread.
    let c = r
        .spreads
        .iter()
        .find(|s| s.model == "C_std" && s.number == "std acc")
        .unwrap();
    assert!(c.predicted_sd.is_none() && c.p_value.is_none());
    assert_eq!(c.words(), "one run shows none of it");
    // Its robust accuracy: 1000 of 10000 test images, the sampling part only (known: no df).
    let c = r
        .spreads
        .iter()
        .find(|s| s.model == "C_std" && s.number.starts_with("L2 ε=0.5"))
        .unwrap();
    let p = mean(&c.runs);
    assert!(close(
        c.predicted_sd.unwrap(),
        (p * (1.0 - p) / 1000.0 * 0.9).sqrt()
    ));
    assert!(c.predicted_df.is_none() && c.p_value.is_some());
    // Written: three files, the markdown with every run's column and the claims.
    let out = t.path().join("out");
    r.write(&out).unwrap();
    let md = std::fs::read_to_string(out.join("replicates.md")).unwrap();
    assert!(
        md.contains("| claim | seed 10 | seed 11 | seed 12 | across runs |"),
        "{md}"
    );
    assert!(md.contains("F2a") && md.contains("replicates.png"));
    let tested = r.spreads.iter().filter(|s| s.p_value.is_some()).count();
    assert!(
        md.contains(&format!(
            "numbers tested spread more than one run predicts; {:.1} would",
            0.05 * tested as f64
        )),
        "{md}"
    );
    let back: Replicates = read_json(out.join("replicates.json")).unwrap();
    assert_eq!(back.verdicts, r.verdicts);
    assert!(out.join("replicates.png").metadata().unwrap().len() > 1000);
    // Each run's inputs are kept: combined from the kept copies alone, the same verdicts.
    for (i, d) in dirs.iter().enumerate() {
        let kept = out.join(KEPT_DIR).join(format!("seed-{}", 10 + i));
        for f in ["run.json", "models/on_D_R.json", "models/C_std.json"] {
            assert_eq!(
                std::fs::read(kept.join(f)).unwrap(),
                std::fs::read(d.join(f)).unwrap(),
                "{f}"
            );
        }
        assert!(!kept.join("weights").exists());
    }
    let kept: Vec<PathBuf> = (10..13)
        .map(|s| out.join(KEPT_DIR).join(format!("seed-{s}")))
        .collect();
    let again = Replicates::load(&kept).unwrap();
    assert_eq!(again.verdicts, r.verdicts);
    assert_eq!(again.models, r.models);
    // Re-written into the same folder, from its own kept copies: they stay as they were.
    again.write(&out).unwrap();
    let back: Replicates = read_json(out.join("replicates.json")).unwrap();
    assert_eq!(back.verdicts, r.verdicts);
    assert!(out.join(KEPT_DIR).join("seed-12/run.json").is_file());
}

#[test]
fn a_robust_subset_s_sampling_is_not_counted_twice_across_runs() {
    let t = tempfile::tempdir().unwrap();
    let shifts = [0.0, 0.03, -0.02];
    let dirs = shifted_runs(t.path(), &shifts);
    let r = Replicates::load(&dirs).unwrap();
    // One run measures C_std's robust accuracy on a 1000-image subset of the 10000 test images.
    let demo = demo_models();
    let own = demo.iter().find(|m| m.name == "C_std").unwrap();
    assert_eq!(own.robust_accuracy("L2", 0.5).unwrap().n, 1000);
    // Across runs (each its own subset) it counts on all 10000: the runs' spread holds the
    // subset's sampling; only the test set's own is added.
    let c = r.models.iter().find(|m| m.name == "C_std").unwrap();
    let a = c.robust_accuracy("L2", 0.5).unwrap();
    assert_eq!(a.n, 10000);
    let runs: Vec<f64> = c.seeds.iter().map(|s| s.robust[1].acc).collect();
    assert!(close(c.seeds[1].robust[1].eps, 0.5));
    let s = sample_sd(&runs).unwrap();
    let expect = (s * s / 3.0 + crate::uncertainty::binomial_se(a.value, 10000).powi(2)).sqrt();
    assert!(close(a.se(), expect), "{} vs {expect}", a.se());
    assert!(a.se() < Accuracy::with_seeds(&runs, 1000).se());
    // Standard accuracy was on the whole test set already: unchanged.
    assert_eq!(c.std_accuracy().n, 10000);
}

/// on_D_R's standard-accuracy spread over three runs whose on_D_R is shifted by `step` x run.
fn on_d_r_spread(root: &Path, step: f64) -> Spread {
    let dirs: Vec<PathBuf> = (0..3u64)
        .map(|i| {
            let shift = move |name: &str| {
                if name == "on_D_R" {
                    step * i as f64
                } else {
                    0.0
                }
            };
            write_run(&root.join(format!("{step}-{i}")), i, shift)
        })
        .collect();
    let r = Replicates::load(&dirs).unwrap();
    r.spreads
        .into_iter()
        .find(|s| s.model == "on_D_R" && s.number == "std acc")
        .unwrap()
}

#[test]
fn the_f_test_flags_runs_that_spread_more_than_one_run_predicts() {
    let t = tempfile::tempdir().unwrap();
    // on_D_R's two seeds differ by 0.012 in every run (the demo's); its runs by 0.1.
    let sp = on_d_r_spread(t.path(), 0.1);
    assert!(sp.p_value.unwrap() < SPREAD_ALPHA, "{sp:?}");
    assert_eq!(sp.words(), "more than one run predicts");
    // Runs that differ by less than the seeds do: within.
    let sp = on_d_r_spread(t.path(), 0.001);
    assert!(sp.p_value.unwrap() > 0.5, "{sp:?}");
    assert_eq!(sp.words(), "within what one run predicts");
}

#[test]
fn runs_that_are_not_replicates_are_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let a = write_run(&t.path().join("a"), 1, |_| 0.0);
    let b = write_run(&t.path().join("b"), 1, |_| 0.0);
    let err = |dirs: &[PathBuf]| format!("{:#}", Replicates::load(dirs).unwrap_err());
    // One run.
    assert!(err(std::slice::from_ref(&a)).contains("two or more"));
    // The same master seed.
    let e = err(&[a.clone(), b.clone()]);
    assert!(
        e.contains("same master seed 1") && e.contains("not independent"),
        "{e}"
    );
    // Another preset: the differing key is named; the free keys are not.
    let path = b.join("run.json");
    let mut run: RunInfo = read_json(&path).unwrap();
    run.seed = 2;
    run.config_toml = format!(
        "threads = 4\n{}",
        run.config_toml
            .replace("headline_eps = 0.5", "headline_eps = 0.25")
    );
    write_json_atomic(&path, &run).unwrap();
    let e = err(&[a.clone(), b.clone()]);
    assert!(e.ends_with("data.dir): eval.headline_eps"), "{e}");
    // Free keys alone may differ.
    run.config_toml = run
        .config_toml
        .replace("headline_eps = 0.25", "headline_eps = 0.5");
    write_json_atomic(&path, &run).unwrap();
    assert!(Replicates::load(&[a.clone(), b.clone()]).is_ok());
    // A folder that is not a run's.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err(&[a.clone(), empty.clone()]);
    assert!(
        e.contains("empty") && e.contains("run.json is missing"),
        "{e}"
    );
    std::fs::write(empty.join("run.json"), "{ not json").unwrap();
    let e = err(&[a.clone(), empty]);
    assert!(e.contains("run.json:"), "{e}");
    assert!(err(&[a, t.path().join("nowhere")]).contains("nowhere"));
}

#[test]
fn a_model_missing_from_a_run_is_left_out_with_a_note() {
    let t = tempfile::tempdir().unwrap();
    let a = write_run(&t.path().join("a"), 1, |_| 0.0);
    let b = write_run(&t.path().join("b"), 2, |_| 0.01);
    std::fs::remove_file(b.join("models").join("on_D_NR.json")).unwrap();
    let r = Replicates::load(&[a, b.clone()]).unwrap();
    assert!(r.models.iter().all(|m| m.name != "on_D_NR"));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("on_D_NR is left out") && n.contains(&b.display().to_string())),
        "{:?}",
        r.notes
    );
    // Claims that need it are undetermined across runs, not decided without it.
    let f2b = r.verdicts.iter().find(|v| v.id == "F2b").unwrap();
    assert_eq!(f2b.verdict, crate::Verdict::Undetermined);
    assert!(r.markdown().contains("## Notes"));
    // The same when the first run is the one without it.
    let r = Replicates::load(&[b.clone(), t.path().join("a")]).unwrap();
    assert!(r.models.iter().all(|m| m.name != "on_D_NR"));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("on_D_NR is left out") && n.contains(&b.display().to_string())),
        "{:?}",
        r.notes
    );
}

#[test]
fn an_unfinished_run_is_noted() {
    let t = tempfile::tempdir().unwrap();
    let a = write_run(&t.path().join("a"), 1, |_| 0.0);
    let b = write_run(&t.path().join("b"), 2, |_| 0.01);
    let path = b.join("run.json");
    let mut run: RunInfo = read_json(&path).unwrap();
    run.finished = None;
    write_json_atomic(&path, &run).unwrap();
    let r = Replicates::load(&[a, b.clone()]).unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("did not finish") && n.contains(&b.display().to_string())),
        "{:?}",
        r.notes
    );
    assert!(r.markdown().contains("not finished"));
}

#[test]
fn unstable_claims_are_those_whose_runs_disagree() {
    let t = tempfile::tempdir().unwrap();
    let a = write_run(&t.path().join("a"), 1, |_| 0.0);
    // The second run's D_R model loses all robustness: F2a cannot hold there.
    let b = write_run(&t.path().join("b"), 2, |n| {
        if n == "on_D_R" {
            -0.6
        } else {
            0.0
        }
    });
    let r = Replicates::load(&[a.clone(), b]).unwrap();
    let own = |i: usize| r.per_run[i].iter().find(|c| c.id == "F2a").unwrap().verdict;
    assert_ne!(own(0), own(1));
    assert!(r.unstable_claims().contains(&"F2a".to_string()));
    let c = write_run(&t.path().join("c"), 3, |_| 0.0);
    let r = Replicates::load(&[a, c]).unwrap();
    assert!(r.unstable_claims().is_empty());
}

#[test]
fn change_interval_is_paired_on_the_same_seeds_else_welch() {
    use super::compare::change_interval;
    // Paired: differences 0.02 and 0.04, mean 0.03, SE 0.01, t(1) = 12.706.
    let (c, half, df, paired) =
        change_interval(&[(0, 0.30), (1, 0.40)], &[(1, 0.44), (0, 0.32)]).unwrap();
    assert!(paired && close(c, 0.03) && close(df, 1.0));
    assert!((half - 0.12706).abs() < 1e-6, "{half}");
    // Other seeds: Welch. Each side's variance of the mean 0.0025, SE² 0.005, df 2, t(2) = 4.303.
    let (c, half, df, paired) =
        change_interval(&[(0, 0.30), (1, 0.40)], &[(2, 0.50), (3, 0.60)]).unwrap();
    assert!(!paired && close(c, 0.2) && close(df, 2.0));
    assert!((half - 4.303 * 0.005f64.sqrt()).abs() < 1e-9, "{half}");
    // One run has no spread.
    assert!(change_interval(&[(0, 0.3)], &[(0, 0.4), (1, 0.5)]).is_none());
    // Overlapping seeds, three in common: paired on them (differences 0.02, 0.04, 0.06: mean
    // 0.04, sd 0.02, SE 0.02/sqrt(3), t(2) = 4.303); seed 3's and seed 9's runs left out.
    let base = [(0, 0.30), (1, 0.40), (2, 0.50), (3, 0.90)];
    let other = [(2, 0.56), (9, 0.10), (1, 0.44), (0, 0.32)];
    let (c, half, df, paired) = change_interval(&base, &other).unwrap();
    assert!(paired && close(c, 0.04) && close(df, 2.0), "{c} {df}");
    assert!((half - 4.303 * 0.02 / 3f64.sqrt()).abs() < 1e-9, "{half}");
    // One seed in common is too few to pair on: Welch over every run.
    let (_, _, _, paired) =
        change_interval(&[(0, 0.30), (1, 0.40)], &[(1, 0.44), (2, 0.50)]).unwrap();
    assert!(!paired);
}

#[test]
fn changes_are_paired_on_the_same_seeds_or_on_enough_common_ones() {
    use super::compare::{paired_seeds, MIN_COMMON_SEEDS};
    assert_eq!(MIN_COMMON_SEEDS, 3);
    assert_eq!(paired_seeds(&[0, 1], &[1, 0]), vec![0, 1]);
    assert_eq!(paired_seeds(&[0, 1, 2, 3], &[0, 1, 2, 4]), vec![0, 1, 2]);
    assert_eq!(paired_seeds(&[3, 0, 1, 2], &[0, 1, 2]), vec![0, 1, 2]);
    assert!(paired_seeds(&[0, 1, 5], &[0, 1, 2]).is_empty());
    assert!(paired_seeds(&[0, 1], &[2, 3]).is_empty());
}

/// `nrf combine` of runs under `seeds`, each run's accuracies moved by `shift(i, model)`, with
/// `extra` appended to every run's preset; returns the combined folder.
fn combined_set(
    root: &Path,
    seeds: &[u64],
    extra: &str,
    shift: impl Fn(usize, &str) -> f64,
) -> PathBuf {
    let dirs: Vec<PathBuf> = seeds
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let d = write_run(&root.join(format!("run{s}")), s, |m| shift(i, m));
            let path = d.join("run.json");
            let mut run: RunInfo = read_json(&path).unwrap();
            run.config_toml.push_str(extra);
            write_json_atomic(&path, &run).unwrap();
            d
        })
        .collect();
    let out = root.join("combined");
    Replicates::load(&dirs).unwrap().write(&out).unwrap();
    out
}

#[test]
fn a_comparison_names_the_option_and_finds_the_number_it_moved() {
    use super::compare::Comparison;
    let t = tempfile::tempdir().unwrap();
    let noise = [0.0, 0.02, -0.01];
    let base = combined_set(&t.path().join("f32"), &[10, 11, 12], "", |i, _| noise[i]);
    // The option moves on_D_R by 5 ± 1 points and nothing else.
    let moved = [0.05, 0.06, 0.04];
    let other = combined_set(
        &t.path().join("bf16"),
        &[10, 11, 12],
        "\n[model]\nprecision = \"bf16\"\n",
        |i, m| noise[i] + if m == "on_D_R" { moved[i] } else { 0.0 },
    );
    let c = Comparison::load(&base, &other).unwrap();
    assert_eq!(c.keys.len(), 1, "{:?}", c.keys);
    assert_eq!(c.keys[0].key, "model.precision");
    assert_eq!(c.keys[0].base, "(not set: the default)");
    assert_eq!(c.keys[0].other, "\"bf16\"");
    assert!(c.paired);
    assert_eq!(c.base.seeds, [10, 11, 12]);
    for n in &c.numbers {
        if n.model == "on_D_R" {
            assert!(close(n.change, 0.05) && n.differs, "{n:?}");
            assert!(close(n.half, 4.303 * 0.01 / 3f64.sqrt()), "{n:?}");
        } else {
            assert!(close(n.change, 0.0) && !n.differs, "{n:?}");
        }
    }
    assert!(c
        .numbers
        .iter()
        .any(|n| n.model == "on_D_R" && n.number != "std acc"));
    assert!(c.claims.iter().any(|x| x.id == "F2a"));
    let out = t.path().join("cmp");
    c.write(&out).unwrap();
    for f in ["comparison.md", "comparison.json", "comparison.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let md = c.markdown();
    assert!(md.contains("`model.precision`") && md.contains("**differs**"));
    let back: Comparison = read_json(out.join("comparison.json")).unwrap();
    assert_eq!(back, c);

    // Other master seeds: the sets' means, Welch's interval.
    let later = combined_set(&t.path().join("later"), &[20, 21], "", |i, _| noise[i]);
    let c = Comparison::load(&base, &later).unwrap();
    assert!(!c.paired && c.keys.is_empty() && c.paired_seeds.is_empty());
    assert!(c.markdown().contains("replicates of one another"));
    // Overlapping master seeds: paired on the three both ran; seed 13's run (far off) counts in
    // the other set's means but not in the change.
    let shifts = [0.0, 0.02, -0.01, -0.3];
    let more = combined_set(&t.path().join("more"), &[10, 11, 12, 13], "", |i, _| {
        shifts[i]
    });
    let c = Comparison::load(&base, &more).unwrap();
    assert!(
        c.paired && c.paired_seeds == [10, 11, 12],
        "{:?}",
        c.paired_seeds
    );
    for n in &c.numbers {
        assert!(close(n.change, 0.0) && !n.differs, "{n:?}");
        assert!(n.other <= n.base, "{n:?}");
    }
    assert!(c.numbers.iter().any(|n| n.other - n.base < -0.05));
    assert!(c.markdown().contains("both sets ran (10, 11, 12:"));
    // A folder that is not a combination is named.
    let e = Comparison::load(&base, t.path()).unwrap_err();
    assert!(format!("{e:#}").contains(&t.path().display().to_string()));
}
