//! Independent runs of one preset read together: Figure 2 and Table 1 decided across runs.
//!
//! One run trains one C_std and one C_rob, builds each constructed set from them once, draws
//! its subsets (the constructions' images, the clean control, the robust-evaluation images)
//! once, and measures its fresh models' seed spread. Its error bars therefore cannot see how
//! much its numbers would move with other source models and other subsets: on Fashion-MNIST,
//! D_NR's robustness follows its source model (README, "D_NR's robustness is decided by its
//! source model"). Runs of the same preset that differ only in the master seed (`seed`) redraw
//! all of it; [`Replicates::load`] reads R such runs and
//!
//! - treats each run's number (its mean over its fresh seeds) as one seed of one model, so every
//!   accuracy, interval and margin across runs carries the run-to-run spread, and decides the
//!   report's claims on them with the report's own rules ([`crate::verdict`],
//!   [`crate::uncertainty`]: c·SE, Student's t at few runs);
//! - puts each run's own verdicts beside those across runs;
//! - measures how much one run's error bars miss ([`Spread`]): the runs' spread against what
//!   one run predicts for it (its fresh seeds' spread over k, plus the test sampling of a
//!   robust-evaluation subset, p(1 − p)/n · (1 − n/N)), decided by an F test.
//!
//! [`Replicates::write`] writes `replicates.json`, `replicates.md` and `replicates.png`;
//! `nrf combine --results R1 --results R2 ... --out DIR` runs both. [`compare`] puts two such
//! sets side by side (`nrf compare`): does an option change the results beyond the runs' spread?
//!
//! ```rust
//! use nrf_report::{demo::write_demo_results, replicates::Replicates, results::RunInfo};
//! use nrf_report::{read_json, write_json_atomic};
//!
//! let (a, b, out) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
//! write_demo_results(a.path())?;
//! write_demo_results(b.path())?;
//! // The second run: the same preset under another master seed.
//! let path = b.path().join("run.json");
//! let mut run: RunInfo = read_json(&path)?;
//! run.seed += 1;
//! write_json_atomic(&path, &run)?;
//! let r = Replicates::load(&[a.path().to_path_buf(), b.path().to_path_buf()])?;
//! assert_eq!(r.runs.len(), 2);
//! assert!(!r.verdicts.is_empty());
//! r.write(out.path())?;
//! assert!(out.path().join("replicates.md").exists());
//! # Ok::<(), anyhow::Error>(())
//! ```
use crate::io::{atomic_write, write_json_atomic};
use crate::load::Results;
use crate::plot::{bar_plot_with_errors, PlotOptions};
use crate::results::{run_time, Headline, ModelResult, RobustPoint, SeedRun};
use crate::uncertainty::{f_upper_tail, satterthwaite, Accuracy};
use crate::verdict::{figure2_verdicts, table1_verdicts, ClaimVerdict};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Preset keys (dotted) that may differ between replicates: the master seed, which makes them
/// replicates, and how a run used its machine and where it found the data.
pub const FREE_KEYS: [&str; 4] = ["seed", "threads", "workers", "data.dir"];

/// Where [`Replicates::write`] keeps each run's inputs: `runs/seed-K` in its output folder.
pub const KEPT_DIR: &str = "runs";

/// The runs' spread is flagged as more than one run predicts when the F test's p-value is
/// below this (one-sided, 5%).
pub const SPREAD_ALPHA: f64 = 0.05;

/// One run read by [`Replicates::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateRun {
    /// The results folder, as given.
    pub dir: String,
    /// Its master seed (`run.json` `seed`).
    pub seed: u64,
    /// nrf version that wrote it.
    pub nrf_version: String,
    /// When it (last) started, as run.json has it.
    pub started: String,
    /// None while running or after a crash.
    pub finished: Option<String>,
    /// CPU (or device) it ran on.
    pub machine: String,
    /// Fresh seeds of its Figure 2 / Table 1 models (the largest count among them).
    pub fresh_seeds: usize,
}

/// One number's spread across runs against what one run predicts for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The model.
    pub model: String,
    /// "std acc" or the headline threat model with its attack, e.g. "L2 ε=0.5 (ensemble)".
    pub number: String,
    /// Each run's value (its mean over its fresh seeds), in the order of the runs.
    pub runs: Vec<f64>,
    /// Sample standard deviation of `runs`.
    pub sd: f64,
    /// What one run predicts for that standard deviation: sqrt(mean over runs of s²/k + p(1 − p)/n
    /// · (1 − n/N)), s the run's fresh-seed spread over k seeds, n images of N (0 for the whole
    /// test set). None when one run predicts no spread at all (one model, the whole test set).
    pub predicted_sd: Option<f64>,
    /// Welch-Satterthwaite degrees of freedom of the predicted variance (None: known, no seeds).
    pub predicted_df: Option<f64>,
    /// P(F > sd² / predicted_sd²) with R − 1 and `predicted_df` degrees of freedom.
    pub p_value: Option<f64>,
}

impl Spread {
    /// "more than one run predicts" (p < [`SPREAD_ALPHA`]), "within it", or "one run shows none".
    pub fn words(&self) -> &'static str {
        match self.p_value {
            Some(p) if p < SPREAD_ALPHA => "more than one run predicts",
            Some(_) => "within what one run predicts",
            None => "one run shows none of it",
        }
    }
}

/// R runs of one preset read together (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replicates {
    /// The runs, in the order given.
    pub runs: Vec<ReplicateRun>,
    /// The headline threat model's norm and ε (the runs agree on it).
    pub headline: Option<(String, f64)>,
    /// Number of classes (chance = 1 / this).
    pub num_classes: usize,
    /// Figure 2 / Table 1 models across runs: each run's mean over its seeds is one seed here.
    pub models: Vec<ModelResult>,
    /// Standard and headline robust accuracy of every model: spread across runs against one run's.
    pub spreads: Vec<Spread>,
    /// Each run's own Figure 2 and Table 1 verdicts, in the order of the runs.
    pub per_run: Vec<Vec<ClaimVerdict>>,
    /// Figure 2 and Table 1 verdicts across runs.
    pub verdicts: Vec<ClaimVerdict>,
    /// What was left out and why (a model missing from a run, a file that could not be read).
    pub notes: Vec<String>,
}

/// Dotted keys whose values differ between two presets (tables compared key by key), leaving
/// out [`FREE_KEYS`].
fn differing_keys(a: &toml::Value, b: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if FREE_KEYS.contains(&prefix) {
        return;
    }
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => differing_keys(va, vb, &key, out),
                    _ if FREE_KEYS.contains(&key.as_str()) => {}
                    // A table only one side has: its keys, each set on one side only.
                    (Some(t), None) | (None, Some(t)) if t.is_table() => {
                        let empty = toml::Value::Table(Default::default());
                        differing_keys(t, &empty, &key, out)
                    }
                    _ => out.push(key),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(if prefix.is_empty() {
            "(the whole preset)".into()
        } else {
            prefix.to_string()
        }),
    }
}

/// The points of `points` that every model of `ms` has (`acc` finds them), with each model's
/// value there (its mean over seeds).
fn common_points(
    ms: &[&ModelResult],
    points: &[RobustPoint],
    acc: impl Fn(&ModelResult, &RobustPoint) -> Option<Accuracy>,
) -> Vec<(RobustPoint, Vec<f64>)> {
    points
        .iter()
        .filter_map(|p| {
            let vals: Option<Vec<f64>> = ms.iter().map(|m| acc(m, p).map(|a| a.value)).collect();
            vals.map(|v| (p.clone(), v))
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `ms` (one per run, the same model) as one model whose seeds are the runs: run i's seed is its
/// mean over its own seeds, `train_seed` its master seed.
///
/// Its robust points are counted on the whole test set (N images), not on a run's subset of n:
/// each run draws its own robust-evaluation subset, so the runs' spread already holds that
/// subset's sampling, p(1 − p)/n · (1 − n/N); what it does not hold is the test set's own,
/// p(1 − p)/N, and that is the binomial part an accuracy on N images adds (the two sum to one
/// run's p(1 − p)/n). Counted on n, the subset's sampling would be charged twice.
fn combine(ms: &[&ModelResult], seeds: &[u64]) -> ModelResult {
    let robust = common_points(ms, &ms[0].robust, |m, p| m.robust_accuracy(&p.norm, p.eps));
    let ensemble = common_points(ms, &ms[0].ensemble, |m, p| {
        m.ensemble_accuracy(&p.norm, p.eps)
    });
    let test_size = ms[0].test_size;
    let at = |points: &[(RobustPoint, Vec<f64>)], i: Option<usize>| -> Vec<RobustPoint> {
        points
            .iter()
            .map(|(p, v)| RobustPoint {
                acc: i.map_or_else(|| mean(v), |i| v[i]),
                n: p.n.max(test_size),
                ..p.clone()
            })
            .collect()
    };
    let std: Vec<f64> = ms.iter().map(|m| m.std_accuracy().value).collect();
    let runs: Vec<SeedRun> = (0..ms.len())
        .map(|i| SeedRun {
            seed: i,
            train_seed: seeds[i],
            std_acc: std[i],
            robust: at(&robust, Some(i)),
            ensemble: at(&ensemble, Some(i)),
        })
        .collect();
    let mut c = ModelResult {
        std_acc: mean(&std),
        robust: at(&robust, None),
        ensemble: at(&ensemble, None),
        epochs: Vec::new(),
        checks: None,
        final_train_acc: None,
        wall_s: ms.iter().map(|m| m.wall_s).sum::<f64>() / ms.len() as f64,
        seeds: Vec::new(),
        seed_summary: None,
        ..ms[0].clone()
    };
    c.set_seeds(runs);
    c
}

/// The spread of one number across runs (`accs`: each run's accuracy with its seeds) against
/// what one run predicts (see [`Spread::predicted_sd`]); `test_size` is N.
fn spread(model: &str, number: String, accs: &[Accuracy], test_size: usize) -> Spread {
    let runs: Vec<f64> = accs.iter().map(|a| a.value).collect();
    let r = runs.len() as f64;
    let sd = crate::uncertainty::sample_sd(&runs).unwrap_or(0.0);
    // Each run's seed part (s²/k, k), averaged over runs: the variance of a run's mean.
    let parts: Vec<(f64, usize)> = accs
        .iter()
        .map(|a| {
            (
                a.seed_sd().map_or(0.0, |s| s * s / a.n_seeds() as f64),
                a.n_seeds(),
            )
        })
        .collect();
    let seed_var: f64 = parts.iter().map(|(v, _)| v / r).sum();
    let p = mean(&runs);
    let n = accs[0].n as f64;
    let fpc = (1.0 - n / test_size.max(1) as f64).max(0.0);
    let sampling = p * (1.0 - p) / n.max(1.0) * fpc;
    let var = seed_var + sampling;
    let averaged: Vec<(f64, usize)> = parts.iter().map(|(v, k)| (v / r, *k)).collect();
    let df = satterthwaite(var, &averaged);
    let (predicted_sd, p_value) = if var > 0.0 {
        let f = sd * sd / var;
        (
            Some(var.sqrt()),
            Some(f_upper_tail(f, r - 1.0, df.unwrap_or(f64::INFINITY))),
        )
    } else {
        (None, None)
    };
    Spread {
        model: model.to_string(),
        number,
        runs,
        sd,
        predicted_sd,
        predicted_df: df,
        p_value,
    }
}

fn verdicts_of(models: &[ModelResult], h: Option<&Headline>, classes: usize) -> Vec<ClaimVerdict> {
    let mut v = figure2_verdicts(models, h, classes);
    v.extend(table1_verdicts(models, h, classes));
    v
}

impl Replicates {
    /// Reads the runs in `dirs` (two or more) and decides Figure 2 and Table 1 across them.
    /// Fails, naming the folder (and the preset keys), when a folder has no readable run.json,
    /// when two runs share a master seed (the same source models: not independent), or when
    /// their presets differ in anything but [`FREE_KEYS`]. A model that is not in every run is
    /// left out with a note.
    pub fn load(dirs: &[PathBuf]) -> Result<Replicates> {
        if dirs.len() < 2 {
            bail!(
                "combining runs needs two or more results folders (got {}): one run is its own report",
                dirs.len()
            );
        }
        let mut results = Vec::new();
        for d in dirs {
            let r = Results::load(d)?;
            let Some(run) = &r.run else {
                let why = r
                    .problems
                    .iter()
                    .find(|p| p.starts_with("run.json"))
                    .cloned()
                    .unwrap_or_else(|| "run.json is missing".into());
                bail!("{}: not a run's results folder: {why}", d.display());
            };
            if run.config().is_none() {
                bail!(
                    "{}: run.json has no readable preset (config_toml)",
                    d.display()
                );
            }
            results.push(r);
        }
        let run = |i: usize| results[i].run.as_ref().expect("checked above");
        for i in 1..results.len() {
            for j in 0..i {
                if run(i).seed == run(j).seed {
                    bail!(
                        "{} and {} have the same master seed {}: their source models and subsets are the same, so they are not independent runs (run one with `--set seed=K`)",
                        dirs[j].display(),
                        dirs[i].display(),
                        run(i).seed
                    );
                }
            }
            let mut keys = Vec::new();
            differing_keys(
                &run(0).config().expect("checked"),
                &run(i).config().expect("checked"),
                "",
                &mut keys,
            );
            if !keys.is_empty() {
                bail!(
                    "{} and {} ran different presets (they may differ only in {}): {}",
                    dirs[0].display(),
                    dirs[i].display(),
                    FREE_KEYS.join(", "),
                    keys.join(", ")
                );
            }
        }
        let headline = results[0].headline();
        let classes = results[0].num_classes().0;
        let mut notes = Vec::new();
        for (d, r) in dirs.iter().zip(&results) {
            if r.run.as_ref().is_some_and(|x| x.finished.is_none()) {
                notes.push(format!(
                    "{}: the run did not finish (run.json has no finish time); what it had written is combined",
                    d.display()
                ));
            }
            for p in &r.problems {
                notes.push(format!("{}: {p}", d.display()));
            }
        }
        let seeds: Vec<u64> = (0..results.len()).map(|i| run(i).seed).collect();
        let mut models = Vec::new();
        let mut spreads = Vec::new();
        // Every Figure 2 / Table 1 model of any run, in the order the runs first list them.
        let mut paper_models: Vec<&ModelResult> = Vec::new();
        for m in results
            .iter()
            .flat_map(|r| &r.models)
            .filter(|m| m.role.paper().is_some())
        {
            if paper_models.iter().all(|p| p.name != m.name) {
                paper_models.push(m);
            }
        }
        for m0 in paper_models {
            let ms: Vec<Option<&ModelResult>> = results
                .iter()
                .map(|r| r.model(&m0.name).filter(|m| m.role == m0.role))
                .collect();
            let missing: Vec<String> = dirs
                .iter()
                .zip(&ms)
                .filter(|(_, m)| m.is_none())
                .map(|(d, _)| d.display().to_string())
                .collect();
            if !missing.is_empty() {
                notes.push(format!(
                    "{} is left out: not in {}",
                    m0.name,
                    missing.join(", ")
                ));
                continue;
            }
            let ms: Vec<&ModelResult> = ms.into_iter().flatten().collect();
            let std: Vec<Accuracy> = ms.iter().map(|m| m.std_accuracy()).collect();
            spreads.push(spread(&m0.name, "std acc".into(), &std, m0.test_size));
            if let Some(h) = &headline {
                let rob: Option<Vec<(Accuracy, &str)>> = ms
                    .iter()
                    .map(|m| m.decisive_robust_accuracy(&h.norm, h.eps))
                    .collect();
                if let Some(rob) = rob {
                    let attacks: BTreeSet<&str> = rob.iter().map(|(_, a)| *a).collect();
                    let attack = attacks.into_iter().collect::<Vec<_>>().join(" / ");
                    let accs: Vec<Accuracy> = rob.into_iter().map(|(a, _)| a).collect();
                    let number = format!("{} ε={} ({attack})", h.norm, h.eps);
                    spreads.push(spread(&m0.name, number, &accs, m0.test_size));
                }
            }
            models.push(combine(&ms, &seeds));
        }
        let per_run = results
            .iter()
            .map(|r| verdicts_of(&r.models, r.headline().as_ref(), r.num_classes().0))
            .collect();
        let verdicts = verdicts_of(&models, headline.as_ref(), classes);
        let runs = dirs
            .iter()
            .zip(&results)
            .map(|(d, r)| {
                let info = r.run.as_ref().expect("checked");
                ReplicateRun {
                    dir: d.display().to_string(),
                    seed: info.seed,
                    nrf_version: info.nrf_version.clone(),
                    started: info.started.clone(),
                    finished: info.finished.clone(),
                    machine: format!("{} ({})", info.machine.cpu, info.machine.device),
                    fresh_seeds: r
                        .models
                        .iter()
                        .filter(|m| m.role.paper().is_some())
                        .map(|m| m.n_seeds())
                        .max()
                        .unwrap_or(1),
                }
            })
            .collect();
        Ok(Replicates {
            runs,
            headline: headline.map(|h| (h.norm, h.eps)),
            num_classes: classes,
            models,
            spreads,
            per_run,
            verdicts,
            notes,
        })
    }

    fn headline(&self) -> Option<Headline> {
        self.headline.as_ref().map(|(norm, eps)| Headline {
            norm: norm.clone(),
            eps: *eps,
            source: "the runs".into(),
        })
    }

    /// The verdicts across runs and each run's, as a markdown table.
    fn claims_table(&self) -> String {
        let mut s = String::from("| claim |");
        for r in &self.runs {
            let _ = write!(s, " seed {} |", r.seed);
        }
        s.push_str(" across runs |\n|---|");
        s.push_str(&"---|".repeat(self.runs.len() + 1));
        s.push('\n');
        for v in &self.verdicts {
            let _ = write!(s, "| {} |", v.id);
            for run in &self.per_run {
                let own = run
                    .iter()
                    .find(|c| c.id == v.id)
                    .map_or("—".to_string(), |c| c.verdict.as_str().to_string());
                let _ = write!(s, " {own} |");
            }
            let _ = writeln!(s, " **{}** |", v.verdict_text());
        }
        s
    }

    /// The report as markdown (what `replicates.md` holds).
    pub fn markdown(&self) -> String {
        let h = self.headline();
        let head = h
            .as_ref()
            .map_or("the headline ε (unknown)".to_string(), |h| {
                format!("{} ε={}", h.norm, h.eps)
            });
        let mut s = format!(
            "# Figure 2 and Table 1 across {} independent runs\n\n",
            self.runs.len()
        );
        s.push_str(
            "Runs of one preset that differ only in the master seed (also allowed to differ: ",
        );
        s.push_str(&FREE_KEYS[1..].join(", "));
        s.push_str("), so each drew its own source models (C_std, C_rob), subsets and fresh models. Each run's number is its mean over its fresh seeds; across runs these are the seeds of one model, so every interval and margin below carries the run-to-run spread, which one run's report cannot see. A robust accuracy across runs is counted on the whole test set: each run drew its own robust-evaluation subset, so the runs' spread already holds the subset's sampling, and only the test set's own is added to it. Claims are decided by the report's rules: a margin holds when it exceeds c SE, c = 2 or Student's t at its Welch-Satterthwaite degrees of freedom (few runs need a large c). Robust accuracy at ");
        s.push_str(&head);
        s.push_str(", under the attack ensemble where it ran, else PGD.\n\n## Runs\n\n| master seed | folder | fresh seeds | nrf | started | finished | machine |\n|---:|---|---:|---|---|---|---|\n");
        for r in &self.runs {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                r.seed,
                r.dir,
                r.fresh_seeds,
                r.nrf_version,
                run_time(&r.started),
                r.finished
                    .as_deref()
                    .map_or("not finished".into(), run_time),
                r.machine
            );
        }
        let _ = writeln!(
            s,
            "\nWhat `nrf combine` reads of each run (run.json, models/, datasets/; no weights) is kept in `{KEPT_DIR}/seed-K/` beside this file, so the combination can be re-decided, or extended with more runs, without the runs' folders: `nrf combine --results {KEPT_DIR}/seed-{} ... --results NEW_RUN --out DIR`.",
            self.runs.first().map_or(0, |r| r.seed)
        );
        s.push_str("\n## Claims\n\n");
        s.push_str(&self.claims_table());
        s.push_str("\nThe evidence across runs:\n\n");
        for v in &self.verdicts {
            let _ = writeln!(s, "- **{}** ({}): {}", v.id, v.claim, v.evidence);
        }
        s.push_str("\n![Figure 2 and Table 1 across runs](replicates.png)\n\n## Each run's numbers and their spread\n\n");
        s.push_str("Each run's value is its mean over its fresh seeds. *Predicted sd*: what one run predicts for the spread of that value between runs, from what it measures: its fresh seeds' spread s over k seeds (s²/k, averaged over the runs) and, for a robust-evaluation subset of n of the N test images, its sampling, p(1 − p)/n · (1 − n/N). The F test asks whether the runs spread more than that (p < 0.05: the source models and subsets, one per run, add variation one run's error bars leave out; with few runs only a large excess shows).\n\n| model | number |");
        for r in &self.runs {
            let _ = write!(s, " seed {} |", r.seed);
        }
        s.push_str(" across runs | sd | predicted sd | F test |\n|---|---|");
        s.push_str(&"---:|".repeat(self.runs.len() + 4));
        s.push('\n');
        for sp in &self.spreads {
            let _ = write!(s, "| {} | {} |", sp.model, sp.number);
            for v in &sp.runs {
                let _ = write!(s, " {:.1}% |", v * 100.0);
            }
            let across = self
                .models
                .iter()
                .find(|m| m.name == sp.model)
                .and_then(|m| {
                    if sp.number == "std acc" {
                        Some(m.std_accuracy())
                    } else {
                        h.as_ref()
                            .and_then(|h| m.decisive_robust_accuracy(&h.norm, h.eps))
                            .map(|(a, _)| a)
                    }
                })
                .map_or("—".into(), |a| {
                    let i = a.interval();
                    format!(
                        "{:.1}% [{:.1}, {:.1}]",
                        a.value * 100.0,
                        i.lo * 100.0,
                        i.hi * 100.0
                    )
                });
            let predicted = sp
                .predicted_sd
                .map_or("—".into(), |p| format!("{:.1}", p * 100.0));
            let test = match sp.p_value {
                Some(p) => format!("p = {p:.3}: {}", sp.words()),
                None => sp.words().to_string(),
            };
            let _ = writeln!(
                s,
                " {across} | {:.1} | {predicted} | {test} |",
                sp.sd * 100.0
            );
        }
        let tested: Vec<&Spread> = self
            .spreads
            .iter()
            .filter(|sp| sp.p_value.is_some())
            .collect();
        let flagged = tested
            .iter()
            .filter(|sp| sp.p_value.is_some_and(|p| p < SPREAD_ALPHA))
            .count();
        let _ = writeln!(
            s,
            "\n{flagged} of {} numbers tested spread more than one run predicts; {:.1} would by chance alone (5% each).",
            tested.len(),
            SPREAD_ALPHA * tested.len() as f64
        );
        if !self.notes.is_empty() {
            s.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Standard and headline robust accuracy of every model across runs, with 95% intervals.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let h = self.headline();
        let mut cats = Vec::new();
        let (mut std_v, mut rob_v, mut std_e, mut rob_e) = (vec![], vec![], vec![], vec![]);
        let bar = |a: Option<&Accuracy>| match a {
            Some(a) if a.value.is_finite() => {
                let i = a.interval();
                (a.value, (i.lo, i.hi))
            }
            _ => (f64::NAN, (f64::NAN, f64::NAN)),
        };
        for m in &self.models {
            cats.push(m.name.clone());
            let (v, e) = bar(Some(&m.std_accuracy()));
            std_v.push(v);
            std_e.push(e);
            let rob = h
                .as_ref()
                .and_then(|h| m.decisive_robust_accuracy(&h.norm, h.eps))
                .map(|(a, _)| a);
            let (v, e) = bar(rob.as_ref());
            rob_v.push(v);
            rob_e.push(e);
        }
        let head = h.as_ref().map_or("headline ε".to_string(), |h| {
            format!("{} ε={}", h.norm, h.eps)
        });
        bar_plot_with_errors(
            path,
            &format!(
                "Figure 2 and Table 1 across {} runs (master seeds {})",
                self.runs.len(),
                self.runs
                    .iter()
                    .map(|r| r.seed.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "Test accuracy (mean over runs, 95% interval)",
            &cats,
            &[
                ("Standard acc.".to_string(), std_v),
                (format!("Robust acc. ({head})"), rob_v),
            ],
            &[std_e, rob_e],
            &PlotOptions {
                width: 1400,
                hlines: vec![(1.0 / self.num_classes as f64, "chance".into())],
                ..PlotOptions::accuracy()
            },
        )
    }

    /// Writes `replicates.json`, `replicates.md` and `replicates.png` into `out` (created),
    /// each atomically, and keeps every run's inputs beside them ([`Replicates::keep_runs`]).
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        self.keep_runs(&out.join(KEPT_DIR))?;
        write_json_atomic(out.join("replicates.json"), self)?;
        self.plot(&out.join("replicates.png"))
            .with_context(|| format!("drawing {}", out.join("replicates.png").display()))?;
        atomic_write(out.join("replicates.md"), self.markdown().as_bytes())
    }

    /// Copies what [`Replicates::load`] reads of each run (`run.json`, `models/*.json`,
    /// `datasets/*.json`: about 100 kB a run, no weights) into `kept/seed-K`, so that the
    /// combination can be re-decided, or extended with more runs, after the runs' folders are
    /// gone: `nrf combine --results OUT/runs/seed-0 --results OUT/runs/seed-1 --results NEW`.
    /// A run read from its own kept copy is left as it is. Fails naming the file it could not
    /// copy.
    pub fn keep_runs(&self, kept: &Path) -> Result<()> {
        for r in &self.runs {
            let src = Path::new(&r.dir);
            let dst = kept.join(format!("seed-{}", r.seed));
            let same = match (src.canonicalize(), dst.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if same {
                continue;
            }
            // The files Results::load reads, listed the way it lists them.
            let mut files = vec![PathBuf::from("run.json")];
            let mut problems = Vec::new();
            for sub in ["models", "datasets"] {
                let listed = crate::load::list(&src.join(sub), &mut problems);
                files.extend(
                    listed
                        .iter()
                        .filter(|p| p.extension().is_some_and(|e| e == "json"))
                        .filter_map(|p| p.file_name().map(|f| Path::new(sub).join(f))),
                );
            }
            if !problems.is_empty() {
                bail!("keeping run {}: {}", r.seed, problems.join("; "));
            }
            // Into a fresh folder beside `seed-K`, which then replaces it whole: a copy
            // killed half-way leaves the old copy (or none), never run.json of one run beside
            // the models of another, and files the run no longer has do not stay.
            let tmp = kept.join(format!(".seed-{}.tmp-{}", r.seed, std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            for f in files {
                let from = src.join(&f);
                let bytes = std::fs::read(&from).with_context(|| {
                    format!("keeping run {}: reading {}", r.seed, from.display())
                })?;
                atomic_write(tmp.join(&f), &bytes).with_context(|| {
                    format!("keeping run {}: writing {}", r.seed, tmp.join(&f).display())
                })?;
            }
            if dst.exists() {
                std::fs::remove_dir_all(&dst).with_context(|| {
                    format!("keeping run {}: removing the old {}", r.seed, dst.display())
                })?;
            }
            std::fs::rename(&tmp, &dst).with_context(|| {
                format!(
                    "keeping run {}: moving {} to {}",
                    r.seed,
                    tmp.display(),
                    dst.display()
                )
            })?;
        }
        Ok(())
    }

    /// The claims whose verdict differs between runs (each run decided on its own).
    pub fn unstable_claims(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .filter(|v| {
                let mut own = self
                    .per_run
                    .iter()
                    .filter_map(|r| r.iter().find(|c| c.id == v.id).map(|c| c.verdict));
                own.next()
                    .is_some_and(|first| own.any(|other| other != first))
            })
            .map(|v| v.id.clone())
            .collect()
    }
}

pub mod compare;
#[cfg(test)]
mod tests;
