//! Two sets of replicates (`nrf combine` outputs) side by side: does an option change the
//! results beyond the run-to-run spread?
//!
//! A set is one preset run under several master seeds and combined ([`Replicates`]). Two sets
//! whose presets differ in one option (`model.precision`, `model.init`, a batch size) answer
//! whether that option moves Figure 2 and Table 1: for every number both sets combined (each
//! model's standard accuracy and headline robust accuracy) the change, other − base, with its
//! 95% interval, and every claim's verdict in both sets.
//!
//! When both sets ran the same master seeds the change is taken run by run (paired: a seed's
//! runs share their subsets and initial weights, so what they share cancels), its interval
//! Student's t at k − 1 degrees of freedom over the k seeds. When their seeds only overlap, it is
//! paired on the seeds both ran if there are at least [`MIN_COMMON_SEEDS`] of them (the others'
//! runs left out of the change, not of the sets' means); otherwise it comes from the two sets'
//! means (Welch: each set's spread over its runs, Welch-Satterthwaite degrees of freedom). A number
//! "differs" when its interval leaves out zero. With many numbers some differ by chance (5% of
//! them at no change at all); the report says how many to expect.
//!
//! `nrf compare --base A --other B --out DIR` writes `comparison.md`, `comparison.json` and
//! `comparison.png`.
use super::{differing_keys, mean, Replicates, KEPT_DIR};
use crate::io::{atomic_write, read_json, write_json_atomic};
use crate::plot::{bar_plot_with_errors, PlotOptions};
use crate::results::RunInfo;
use crate::uncertainty::{sample_sd, satterthwaite, student_t95, t95_at};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The chance that a number with no true change "differs" (its 95% interval leaves out zero).
pub const CHANGE_ALPHA: f64 = 0.05;

/// The fewest master seeds two sets that ran different seeds must share for the change to be
/// paired on them (2 degrees of freedom; with one, Student's t at 1 is 12.7 and Welch's interval
/// over all the runs is the narrower).
pub const MIN_COMMON_SEEDS: usize = 3;

/// One set of replicates as compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Its folder (what `nrf combine --out` wrote), as given.
    pub dir: String,
    /// The master seeds of its runs, in its order.
    pub seeds: Vec<u64>,
}

/// A preset key whose value differs between the two sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyChange {
    /// The dotted key, e.g. `model.precision`.
    pub key: String,
    /// Its value in the base set's preset (TOML), or "(not set: the default)".
    pub base: String,
    /// Its value in the other set's preset.
    pub other: String,
}

/// One number's change between the sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumberChange {
    /// The model.
    pub model: String,
    /// "std acc" or the headline threat model with its attack.
    pub number: String,
    /// Mean over the base set's runs.
    pub base: f64,
    /// Mean over the other set's runs.
    pub other: f64,
    /// other − base: the mean of the per-seed differences when paired (the difference of the
    /// means when both sets ran the same seeds), else the difference of the means.
    pub change: f64,
    /// Half-width of its 95% interval.
    pub half: f64,
    /// Degrees of freedom of that interval.
    pub df: f64,
    /// Whether the interval leaves out zero.
    pub differs: bool,
}

impl NumberChange {
    /// "+1.2 ± 0.8 points".
    pub fn text(&self) -> String {
        format!(
            "{:+.1} ± {:.1} points",
            self.change * 100.0,
            self.half * 100.0
        )
    }
}

/// One claim's verdict in both sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimChange {
    /// The claim's id.
    pub id: String,
    /// Its verdict across the base set's runs, with its margin.
    pub base: String,
    /// Its verdict across the other set's runs.
    pub other: String,
    /// Whether the verdicts (without their margins) are the same.
    pub same: bool,
}

/// Two sets of replicates compared (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The reference set.
    pub base: Side,
    /// The set compared with it.
    pub other: Side,
    /// What differs between their presets (their master seeds, threads, workers and data
    /// folder aside).
    pub keys: Vec<KeyChange>,
    /// Whether the changes are taken seed by seed (on [`Comparison::paired_seeds`]).
    pub paired: bool,
    /// The master seeds the changes are paired on: every seed when both sets ran the same ones,
    /// the seeds both ran when they overlap in at least [`MIN_COMMON_SEEDS`]; empty for Welch.
    #[serde(default)]
    pub paired_seeds: Vec<u64>,
    /// Every number both sets combined.
    pub numbers: Vec<NumberChange>,
    /// Every claim both sets decided.
    pub claims: Vec<ClaimChange>,
}

/// The master seeds a change between sets with these seeds is paired on (in `base`'s order):
/// all of them when both ran the same seeds (at least two), those both ran when there are at
/// least [`MIN_COMMON_SEEDS`], else none (Welch's interval).
pub fn paired_seeds(base: &[u64], other: &[u64]) -> Vec<u64> {
    let common: Vec<u64> = base.iter().copied().filter(|s| other.contains(s)).collect();
    let same = common.len() == base.len() && common.len() == other.len();
    if (same && common.len() >= 2) || common.len() >= MIN_COMMON_SEEDS {
        common
    } else {
        Vec::new()
    }
}

/// other − base with its 95% interval, its degrees of freedom and whether it is paired: paired
/// on [`paired_seeds`] (each side `(seed, value)`), else Welch's over every run. None when
/// either side has fewer than two runs.
pub fn change_interval(base: &[(u64, f64)], other: &[(u64, f64)]) -> Option<(f64, f64, f64, bool)> {
    if base.len() < 2 || other.len() < 2 {
        return None;
    }
    let seeds = |x: &[(u64, f64)]| x.iter().map(|p| p.0).collect::<Vec<u64>>();
    let common = paired_seeds(&seeds(base), &seeds(other));
    let value = |x: &[(u64, f64)], s: u64| x.iter().find(|p| p.0 == s).map(|p| p.1);
    let paired: Option<Vec<f64>> = (!common.is_empty())
        .then(|| {
            common
                .iter()
                .map(|&s| Some(value(other, s)? - value(base, s)?))
                .collect()
        })
        .flatten();
    Some(match paired {
        Some(d) => {
            let k = d.len();
            let se = sample_sd(&d)? / (k as f64).sqrt();
            let df = (k - 1) as f64;
            (mean(&d), student_t95(k - 1) * se, df, true)
        }
        None => {
            let b: Vec<f64> = base.iter().map(|x| x.1).collect();
            let o: Vec<f64> = other.iter().map(|x| x.1).collect();
            let vb = sample_sd(&b)?.powi(2) / b.len() as f64;
            let vo = sample_sd(&o)?.powi(2) / o.len() as f64;
            let se2 = vb + vo;
            let df = satterthwaite(se2, &[(vb, b.len()), (vo, o.len())]).unwrap_or(f64::INFINITY);
            (mean(&o) - mean(&b), t95_at(df) * se2.sqrt(), df, false)
        }
    })
}

/// The value at a dotted `key` of a TOML table, as TOML text.
fn value_at(v: &toml::Value, key: &str) -> String {
    key.split('.')
        .try_fold(v, |v, k| v.get(k))
        .map_or("(not set: the default)".into(), |v| v.to_string())
}

/// The preset of a set: its first run's, as kept in `dir/runs/seed-K/run.json`.
fn preset_of(dir: &Path, r: &Replicates) -> Result<toml::Value> {
    let seed = r
        .runs
        .first()
        .map(|x| x.seed)
        .context("no runs in replicates.json")?;
    let path = dir
        .join(KEPT_DIR)
        .join(format!("seed-{seed}"))
        .join("run.json");
    let run: RunInfo = read_json(&path)?;
    run.config()
        .with_context(|| format!("{}: no readable preset (config_toml)", path.display()))
}

impl Comparison {
    /// Reads `base/replicates.json` and `other/replicates.json` (two `nrf combine` outputs, each
    /// with its kept runs) and compares them. Fails naming the file it could not read, or when
    /// a set has fewer than two runs or their headline threat models differ.
    pub fn load(base: &Path, other: &Path) -> Result<Comparison> {
        let read = |d: &Path| -> Result<Replicates> {
            read_json(d.join("replicates.json"))
                .with_context(|| format!("{}: not an `nrf combine` output", d.display()))
        };
        let (a, b) = (read(base)?, read(other)?);
        for (d, r) in [(base, &a), (other, &b)] {
            if r.runs.len() < 2 {
                bail!(
                    "{}: {} run(s); a set needs two or more to have a spread",
                    d.display(),
                    r.runs.len()
                );
            }
        }
        if a.headline != b.headline {
            bail!(
                "{} and {} use different headline threat models ({:?} and {:?}): their numbers do not compare",
                base.display(),
                other.display(),
                a.headline,
                b.headline
            );
        }
        let (pa, pb) = (preset_of(base, &a)?, preset_of(other, &b)?);
        let mut names = Vec::new();
        differing_keys(&pa, &pb, "", &mut names);
        let keys = names
            .into_iter()
            .map(|key| KeyChange {
                base: value_at(&pa, &key),
                other: value_at(&pb, &key),
                key,
            })
            .collect();
        let seeds = |r: &Replicates| r.runs.iter().map(|x| x.seed).collect::<Vec<u64>>();
        // Every number's runs are the sets' runs, so each is paired on these seeds or on none.
        let common = paired_seeds(&seeds(&a), &seeds(&b));
        let mut numbers = Vec::new();
        let mut paired = true;
        for sa in &a.spreads {
            let Some(sb) = b
                .spreads
                .iter()
                .find(|s| s.model == sa.model && s.number == sa.number)
            else {
                continue;
            };
            let with_seeds = |r: &Replicates, v: &[f64]| -> Vec<(u64, f64)> {
                seeds(r).into_iter().zip(v.iter().copied()).collect()
            };
            let (xa, xb) = (with_seeds(&a, &sa.runs), with_seeds(&b, &sb.runs));
            let Some((change, half, df, p)) = change_interval(&xa, &xb) else {
                continue;
            };
            paired &= p;
            numbers.push(NumberChange {
                model: sa.model.clone(),
                number: sa.number.clone(),
                base: mean(&sa.runs),
                other: mean(&sb.runs),
                change,
                half,
                df,
                differs: change.abs() > half,
            });
        }
        let claims = a
            .verdicts
            .iter()
            .filter_map(|va| {
                let vb = b.verdicts.iter().find(|v| v.id == va.id)?;
                Some(ClaimChange {
                    id: va.id.clone(),
                    base: va.verdict_text(),
                    other: vb.verdict_text(),
                    same: va.verdict == vb.verdict,
                })
            })
            .collect();
        let paired = paired && !numbers.is_empty();
        Ok(Comparison {
            base: Side {
                dir: base.display().to_string(),
                seeds: seeds(&a),
            },
            other: Side {
                dir: other.display().to_string(),
                seeds: seeds(&b),
            },
            keys,
            paired,
            paired_seeds: if paired { common } else { Vec::new() },
            numbers,
            claims,
        })
    }

    /// The comparison as markdown (what `comparison.md` holds).
    pub fn markdown(&self) -> String {
        let seeds = |s: &[u64]| {
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "# `{}` against `{}`\n\nBase: `{}`, master seeds {}. Other: `{}`, master seeds {}.\n\n",
            self.other.dir,
            self.base.dir,
            self.base.dir,
            seeds(&self.base.seeds),
            self.other.dir,
            seeds(&self.other.seeds)
        );
        if self.keys.is_empty() {
            s.push_str("Their presets are the same (master seeds, threads, workers and the data folder aside): the two sets are replicates of one another.\n");
        } else {
            s.push_str(
                "What differs between their presets:\n\n| key | base | other |\n|---|---|---|\n",
            );
            for k in &self.keys {
                let _ = writeln!(s, "| `{}` | `{}` | `{}` |", k.key, k.base, k.other);
            }
        }
        let same_seeds = self.paired_seeds.len() == self.base.seeds.len()
            && self.paired_seeds.len() == self.other.seeds.len();
        let how = if self.paired && same_seeds {
            "taken seed by seed (both sets ran the same master seeds: a seed's runs share their subsets and initial weights), its 95% interval Student's t over the seeds".to_string()
        } else if self.paired {
            format!(
                "taken seed by seed on the master seeds both sets ran ({}: a seed's runs share their subsets and initial weights; the other runs count in the sets' means, not in the change), its 95% interval Student's t over those seeds",
                seeds(&self.paired_seeds)
            )
        } else {
            "the difference of the sets' means, its 95% interval Welch's (each set's spread over its runs)".to_string()
        };
        let _ = write!(
            s,
            "\n## Numbers\n\nEach run's value is its mean over its fresh seeds; a set's is the mean over its runs. The change, other − base, is {how}; a number *differs* when that interval leaves out zero.\n\n| model | number | base | other | other − base (95%) | df | |\n|---|---|---:|---:|---:|---:|---|\n"
        );
        for n in &self.numbers {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1}% | {:.1}% | {} | {} | {} |",
                n.model,
                n.number,
                n.base * 100.0,
                n.other * 100.0,
                n.text(),
                if n.df.is_finite() {
                    format!("{:.1}", n.df)
                } else {
                    "—".into()
                },
                if n.differs {
                    "**differs**"
                } else {
                    "within the spread"
                }
            );
        }
        let differ = self.numbers.iter().filter(|n| n.differs).count();
        let _ = writeln!(
            s,
            "\n{differ} of {} numbers differ; {:.1} would by chance alone if the option changed nothing ({:.0}% each).",
            self.numbers.len(),
            CHANGE_ALPHA * self.numbers.len() as f64,
            CHANGE_ALPHA * 100.0
        );
        s.push_str("\n![other − base](comparison.png)\n\n## Claims\n\nEach set's verdicts across its runs (the report's rules, the runs' spread as the error).\n\n| claim | base | other | |\n|---|---|---|---|\n");
        for c in &self.claims {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.id,
                c.base,
                c.other,
                if c.same { "same" } else { "**changed**" }
            );
        }
        let changed = self.claims.iter().filter(|c| !c.same).count();
        let _ = writeln!(s, "\n{changed} of {} verdicts changed.", self.claims.len());
        s
    }

    /// Each model's change in standard and headline robust accuracy with its 95% interval.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let mut models: Vec<String> = Vec::new();
        for n in &self.numbers {
            if !models.contains(&n.model) {
                models.push(n.model.clone());
            }
        }
        let series_of = |std: bool| {
            let mut vals = Vec::new();
            let mut errs = Vec::new();
            for m in &models {
                let n = self
                    .numbers
                    .iter()
                    .find(|n| &n.model == m && (n.number == "std acc") == std);
                vals.push(n.map_or(f64::NAN, |n| n.change));
                errs.push(n.map_or((f64::NAN, f64::NAN), |n| {
                    (n.change - n.half, n.change + n.half)
                }));
            }
            (vals, errs)
        };
        let (sv, se) = series_of(true);
        let (rv, re) = series_of(false);
        let rob_name = self
            .numbers
            .iter()
            .find(|n| n.number != "std acc")
            .map_or("robust acc.".to_string(), |n| {
                format!("robust acc., {}", n.number)
            });
        let reach = self
            .numbers
            .iter()
            .map(|n| n.change.abs() + n.half)
            .filter(|v| v.is_finite())
            .fold(0.01, f64::max)
            * 1.15;
        let name = |d: &str| {
            Path::new(d)
                .file_name()
                .map_or(d.to_string(), |f| f.to_string_lossy().into_owned())
        };
        bar_plot_with_errors(
            path,
            &format!(
                "{} − {} (95% interval{})",
                name(&self.other.dir),
                name(&self.base.dir),
                if self.paired { ", paired by seed" } else { "" }
            ),
            "Change in test accuracy (percentage points)",
            &models,
            &[("standard acc.".to_string(), sv), (rob_name, rv)],
            &[se, re],
            &PlotOptions {
                width: 1400,
                y_range: Some((-reach, reach)),
                percent_y: true,
                hlines: vec![(0.0, String::new())],
                ..PlotOptions::default()
            },
        )
    }

    /// Writes `comparison.json`, `comparison.md` and `comparison.png` into `out` (created), each
    /// atomically.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        write_json_atomic(out.join("comparison.json"), self)?;
        self.plot(&out.join("comparison.png"))
            .with_context(|| format!("drawing {}", out.join("comparison.png").display()))?;
        atomic_write(out.join("comparison.md"), self.markdown().as_bytes())
    }
}
