//! `nrf bench --end-to-end`: the whole Figure 2 / Table 1 pipeline as each side runs it on this
//! machine, nrf against its PyTorch twin, alternating in the same run.
//!
//! `nrf bench --pipeline` times each stage for a fixed amount of work with both sides in the same
//! configuration (1 thread, 2 threads, side by side). What a user of a 2-core machine waits for is
//! different: nrf's `reproduce` runs its stages on `workers` processes that share the stage cache
//! (two 1-thread workers in the default presets), waits where a stage needs another's output,
//! loads data, writes artefacts and the report; the twin (`experiments/twin/nrf_twin.py`) runs
//! the same stages one after the other in one process at the preset's `threads`. This benchmark
//! runs both, whole, from empty folders, on one preset file that both read:
//!
//! - the preset (default `fashion-mnist` at [`DEFAULT_SETS`], the core at session 9's reduced
//!   sizes, ~5.5-12 min a side on the 2-core VMs measured) with what the twin does not compute switched off on nrf's side:
//!   the extras and Section 4's theory ([`CORE_ONLY`]) and the ensemble evaluation (`[eval]
//!   ensemble` removed: the twin evaluates with PGD only), so both compute the same 24 stages;
//! - runs alternate nrf, twin, then twin, nrf, ... (`reps` of each), so the machine's drift
//!   falls on both sides; each side's median, the ratio twin / nrf of the medians and the 95%
//!   interval of the geometric-mean ratio over the run pairs (run `i` of each side), and what it
//!   decides ([`SpeedVerdict`]);
//! - the twin runs with nrf's allocator settings ([`nrf_models::runtime::malloc_env`]) and
//!   channels-last, as in `nrf bench --pipeline`;
//! - the last pair's numbers are compared row by row by `nrf_twin.py compare` (binomial errors
//!   and seed spread), so a faster side that computed something else would show.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use nrf_experiments::bench::end_to_end::{run, EndToEndArgs};
//! let report = run(&EndToEndArgs::default(), "results/bench-end-to-end.json".as_ref())?;
//! println!("{}", report.to_markdown());
//! # Ok(()) }
//! ```
use anyhow::{bail, Context, Result};
use nrf_results::uncertainty::{ratio_interval, Interval};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::pipeline::SpeedVerdict;
use super::worker::relevant_env;
use super::{
    loadavg, median, python_from_env, scratch_beside, set_unless_exported, twin_dir, write_report,
    TWIN_DIR_ENV,
};
use crate::preset::Preset;

/// Default output file (the markdown table goes next to it, `.md`).
pub const DEFAULT_OUT: &str = "results/bench-end-to-end.json";
/// Default preset.
pub const DEFAULT_PRESET: &str = "fashion-mnist";
/// Default overrides: the default preset's core at session 9's reduced sizes (docs/performance.md,
/// "Workers"), about 5.5 minutes a side on a quiet 2-core machine. `--set` replaces them; another
/// preset runs without them ([`EndToEndArgs::with_preset`]).
pub const DEFAULT_SETS: &[&str] = &[
    "rep_match.n=2000",
    "relabel.n=2000",
    "train_rob.epochs=1",
    "fresh.epochs=5",
    "fresh.seeds=2",
    "eval.robust_n=300",
];
/// Always applied on top: nrf computes only what the twin computes.
pub const CORE_ONLY: &[&str] = &["extras.enabled=false", "theory.skip=true"];
/// The twin's pipeline script, in the twin's folder.
pub const TWIN_SCRIPT: &str = "nrf_twin.py";

/// What `nrf bench --end-to-end` was asked for.
#[derive(Debug, Clone)]
pub struct EndToEndArgs {
    /// Built-in preset name or preset file.
    pub preset: String,
    /// `KEY=VALUE` overrides (default [`DEFAULT_SETS`]); [`CORE_ONLY`] is added to them.
    pub sets: Vec<String>,
    /// Runs per side.
    pub reps: usize,
}

impl Default for EndToEndArgs {
    fn default() -> Self {
        EndToEndArgs {
            preset: DEFAULT_PRESET.into(),
            sets: DEFAULT_SETS.iter().map(|s| s.to_string()).collect(),
            reps: 3,
        }
    }
}

impl EndToEndArgs {
    /// Runs `preset`: [`DEFAULT_SETS`] are the default preset's reduced sizes, so another preset
    /// runs as it is (until `sets` is given).
    pub fn with_preset(&mut self, preset: String) {
        if preset != DEFAULT_PRESET {
            self.sets.clear();
        }
        self.preset = preset;
    }

    /// Every override applied: `sets`, then [`CORE_ONLY`].
    pub fn applied_sets(&self) -> Vec<String> {
        let core = CORE_ONLY.iter().map(|s| s.to_string());
        self.sets.iter().cloned().chain(core).collect()
    }
}

/// The preset both sides run: `args`' preset with its overrides and [`CORE_ONLY`] applied and
/// `[eval] ensemble` removed, as TOML text (validated by nrf's own parser), with the parsed
/// preset.
pub fn core_preset(args: &EndToEndArgs) -> Result<(Preset, String)> {
    let sets = args.applied_sets();
    let (_, text) = Preset::load_with_overrides(&args.preset, &sets)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("preset {}: the effective text is not TOML", args.preset))?;
    if let Some(eval) = doc.get_mut("eval").and_then(|e| e.as_table_like_mut()) {
        eval.remove("ensemble");
    }
    let text = format!(
        "# nrf bench --end-to-end: preset {} with {}; [eval] ensemble removed (the twin \
         evaluates with PGD only)\n{doc}",
        args.preset,
        sets.iter()
            .map(|s| format!("--set {s}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let preset = Preset::parse(&text, &format!("{} (end-to-end core)", args.preset))?;
    Ok((preset, text))
}

/// One side's whole-pipeline runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideRuns {
    /// How the side ran (command, processes, threads).
    pub how: String,
    /// Wall seconds of each run, in the order run.
    pub wall_s: Vec<f64>,
    /// Median of `wall_s`.
    pub median_s: f64,
}

/// The report of `nrf bench --end-to-end`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndToEndReport {
    /// Preset asked for.
    pub preset: String,
    /// Overrides applied ([`CORE_ONLY`] included).
    pub sets: Vec<String>,
    /// The preset file both sides read.
    pub preset_text: String,
    /// Stages of the core per run, as nrf plans them.
    pub stages: usize,
    /// nrf's `reproduce`.
    pub nrf: SideRuns,
    /// The twin's `nrf_twin.py`.
    pub twin: SideRuns,
    /// `twin.median_s / nrf.median_s` (>= 1: nrf at least as fast).
    pub ratio: f64,
    /// 95% interval of the geometric-mean ratio over the run pairs.
    pub ratio_interval: Option<Interval>,
    /// What the interval decides.
    pub verdict: SpeedVerdict,
    /// The last pair's `nrf_twin.py compare` summary ("k of n rows agree, m disagree").
    pub agreement: Option<String>,
    /// `/proc/loadavg` before and after.
    pub load_before: Option<String>,
    /// See `load_before`.
    pub load_after: Option<String>,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Exported variables that change speed.
    pub env: Vec<(String, String)>,
    /// Wall seconds of the whole benchmark.
    pub wall_s: f64,
    /// What the reader must know.
    pub notes: Vec<String>,
}

impl EndToEndReport {
    /// The markdown table with its header and notes.
    pub fn to_markdown(&self) -> String {
        let runs = |s: &SideRuns| {
            s.wall_s
                .iter()
                .map(|w| format!("{w:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = format!(
            "nrf bench --end-to-end: preset {} ({} stages: the Figure 2 / Table 1 core, PGD evaluation only; {}), each side whole from an empty folder, {} run(s) each, alternating (nrf, twin, then twin, nrf, ...); {} CPUs\n\n",
            self.preset,
            self.stages,
            self.sets
                .iter()
                .map(|s| format!("--set {s}"))
                .collect::<Vec<_>>()
                .join(" "),
            self.nrf.wall_s.len(),
            self.cpus
        );
        s.push_str("| side | how it runs | runs (s, in order) | median s |\n|---|---|---|---:|\n");
        for (name, side) in [("nrf", &self.nrf), ("twin", &self.twin)] {
            s.push_str(&format!(
                "| {name} | {} | {} | {:.1} |\n",
                side.how,
                runs(side),
                side.median_s
            ));
        }
        let iv = self.ratio_interval.map_or("n/a (one pair)".into(), |iv| {
            format!("{:.2}-{:.2}", iv.lo, iv.hi)
        });
        s.push_str(&format!(
            "\n**twin / nrf: {:.2}x** (95% interval of the paired runs {iv}): {}.\n",
            self.ratio,
            match self.verdict {
                SpeedVerdict::Faster => "nrf faster",
                SpeedVerdict::Slower => "nrf slower",
                SpeedVerdict::Level => "level (no difference resolved)",
                SpeedVerdict::Undecided => "not decided (one pair)",
            }
        ));
        s.push_str(&format!(
            "\nResults of the last pair (`nrf_twin.py compare`): {}.\n",
            self.agreement.as_deref().unwrap_or("not compared")
        ));
        s.push_str(&format!(
            "\nLoad average before: {}; after: {}. Whole benchmark {:.1} min.\n",
            self.load_before.as_deref().unwrap_or("?"),
            self.load_after.as_deref().unwrap_or("?"),
            self.wall_s / 60.0
        ));
        if !self.env.is_empty() {
            let kv: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("Exported: {}.\n", kv.join(", ")));
        }
        for n in &self.notes {
            s.push_str(&format!("Note: {n}\n"));
        }
        s
    }
}

/// Runs `cmd` to the end with its output in `log`; the error names the side and the log.
fn timed(side: &str, mut cmd: Command, log: &Path) -> Result<f64> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let t = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("starting {side}: {cmd:?}"))?;
    let wall = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "{side} failed ({status}); its output is in {} (the work folder is kept)",
            log.display()
        );
    }
    Ok(wall)
}

/// `nrf bench --end-to-end`: runs the benchmark (progress on stderr), writes `out` (JSON) and
/// the markdown next to it (`.md`), atomically. The scratch folder (`.<stem>-work` next to `out`)
/// is removed when every run succeeded and kept, with the logs, when one failed.
pub fn run(args: &EndToEndArgs, out: &Path) -> Result<EndToEndReport> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let work = scratch_beside(out, "bench-end-to-end")?;
    let (preset, text) = core_preset(args)?;
    let script = twin_dir().join(TWIN_SCRIPT);
    if !script.is_file() {
        bail!(
            "{} does not exist (set {TWIN_DIR_ENV} to the twin's folder)",
            script.display()
        );
    }
    let python = python_from_env();
    let exe = std::env::current_exe().context("finding the nrf binary")?;
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let preset_file = work.join("preset.toml");
    nrf_data::store::write_atomic(&preset_file, text.as_bytes())
        .with_context(|| format!("writing {}", preset_file.display()))?;
    let opts = crate::plan::PlanOptions {
        gflops: Some(1.0),
        data_dir: None,
        untimed_sources: true,
    };
    let stages = crate::plan::plan(&preset, &opts).map_or(0, |p| p.stages.len());

    let started = Instant::now();
    let load_before = loadavg();
    let malloc = nrf_models::runtime::malloc_env();
    let (mut nrf_s, mut twin_s) = (Vec::new(), Vec::new());
    let total = 2 * args.reps;
    let mut last = (PathBuf::new(), PathBuf::new());
    for rep in 0..args.reps {
        let order = if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for twin_turn in order {
            let done = nrf_s.len() + twin_s.len();
            let (name, folder) = if twin_turn {
                ("twin", work.join(format!("twin-{rep}")))
            } else {
                ("nrf", work.join(format!("nrf-{rep}")))
            };
            eprintln!(
                "nrf bench --end-to-end: run {}/{total}: {name} ({:.1} min elapsed{})",
                done + 1,
                started.elapsed().as_secs_f64() / 60.0,
                if done > 0 {
                    format!(
                        ", ~{:.0} min left",
                        started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64
                            / 60.0
                    )
                } else {
                    String::new()
                }
            );
            let log = work.join(format!("{name}-{rep}.log"));
            let wall = if twin_turn {
                let mut cmd = Command::new(&python);
                cmd.arg(&script)
                    .arg("--preset")
                    .arg(&preset_file)
                    .arg("--out")
                    .arg(&folder)
                    .arg("--fresh");
                set_unless_exported(&mut cmd, &malloc);
                let w = timed("the twin", cmd, &log)?;
                twin_s.push(w);
                last.1 = folder;
                w
            } else {
                let mut cmd = Command::new(&exe);
                cmd.args(["reproduce", "--quiet", "--preset"])
                    .arg(&preset_file)
                    .arg("--results")
                    .arg(&folder);
                let w = timed("nrf", cmd, &log)?;
                nrf_s.push(w);
                last.0 = folder;
                w
            };
            eprintln!("nrf bench --end-to-end: {name}: {wall:.1} s");
        }
    }
    let mut notes = Vec::new();
    let agreement = compare(&python, &script, &last.0, &last.1, &work).unwrap_or_else(|e| {
        notes.push(format!("the last pair could not be compared: {e:#}"));
        None
    });
    let kept = out.with_extension("comparison.md");
    if agreement.is_some() {
        let text = std::fs::read(last.1.join("comparison.md"))
            .with_context(|| format!("reading {}", last.1.join("comparison.md").display()))?;
        nrf_data::store::write_atomic(&kept, &text)
            .with_context(|| format!("keeping the comparison as {}", kept.display()))?;
        notes.push(format!(
            "the last pair's comparison, row by row: {}",
            kept.display()
        ));
    }
    // Both sides take their thread count from the preset file (0: libtorch's default).
    let threads = match preset.threads {
        t if t > 0 => t.to_string(),
        _ => "libtorch's default".into(),
    };
    let pairs: Vec<f64> = nrf_s.iter().zip(&twin_s).map(|(n, t)| t / n).collect();
    let ratio_interval = ratio_interval(&pairs).map(|(_, iv)| iv);
    let (nrf_m, twin_m) = (median(&nrf_s), median(&twin_s));
    let report = EndToEndReport {
        preset: args.preset.clone(),
        sets: args.applied_sets(),
        preset_text: text,
        stages,
        nrf: SideRuns {
            how: format!(
                "`nrf reproduce`: {} worker process(es), {threads} libtorch thread(s) in all",
                preset.workers.max(1)
            ),
            wall_s: nrf_s,
            median_s: nrf_m,
        },
        twin: SideRuns {
            how: format!(
                "`{TWIN_SCRIPT}`: 1 process, {threads} torch thread(s), channels-last, nrf's malloc settings"
            ),
            wall_s: twin_s,
            median_s: twin_m,
        },
        ratio: twin_m / nrf_m,
        ratio_interval,
        verdict: SpeedVerdict::of(ratio_interval),
        agreement,
        load_before,
        load_after: loadavg(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        env: relevant_env(),
        wall_s: started.elapsed().as_secs_f64(),
        notes,
    };
    write_report(out, &report, &report.to_markdown())?;
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(report)
}

/// `nrf_twin.py compare` on one pair's folders: its summary line.
fn compare(
    python: &Path,
    script: &Path,
    nrf: &Path,
    twin: &Path,
    work: &Path,
) -> Result<Option<String>> {
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("compare")
        .arg("--nrf")
        .arg(nrf)
        .arg("--twin")
        .arg(twin);
    timed("the comparison", cmd, &work.join("compare.log"))?;
    let file = twin.join("comparison.json");
    let c: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("parsing {}", file.display()))?;
    Ok(agreement(&c))
}

/// The summary of a `comparison.json`: "k of n rows agree, m disagree", with the rows that
/// disagree (model, number, nrf and twin in %).
fn agreement(c: &serde_json::Value) -> Option<String> {
    let s = &c["summary"];
    let (a, n) = (s["agree"].as_u64()?, s["rows"].as_u64()?);
    let mut line = format!(
        "{a} of {n} rows agree, {} disagree",
        s["disagree"].as_u64().unwrap_or(0)
    );
    let off: Vec<String> = c["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["verdict"] == "disagree")
        .map(|r| {
            let pct = |k: &str| {
                r[k].as_f64()
                    .map_or("?".into(), |v| format!("{:.1}%", 100.0 * v))
            };
            format!(
                "{} {}: nrf {} vs twin {}",
                r["model"].as_str().unwrap_or("?"),
                r["metric"].as_str().unwrap_or("?"),
                pct("nrf"),
                pct("twin")
            )
        })
        .collect();
    if !off.is_empty() {
        line.push_str(&format!(" ({})", off.join("; ")));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_preset_has_no_ensemble_extras_or_theory() {
        let (p, text) = core_preset(&EndToEndArgs::default()).unwrap();
        assert!(p.eval.ensemble.is_none(), "{text}");
        assert!(!p.extras.enabled);
        assert!(p.theory.skip);
        assert_eq!(
            (p.rep_match.n, p.relabel.n, p.fresh.epochs),
            (2000, 2000, 5)
        );
        // What both sides read is a preset nrf accepts as a file.
        let again = Preset::parse(&text, "again").unwrap();
        assert!(again.eval.ensemble.is_none());
        // The built-in default has an ensemble: it was removed, not absent.
        assert!(Preset::load(DEFAULT_PRESET)
            .unwrap()
            .0
            .eval
            .ensemble
            .is_some());
    }

    #[test]
    fn the_default_sizes_belong_to_the_default_preset() {
        let mut a = EndToEndArgs::default();
        a.with_preset(DEFAULT_PRESET.into());
        assert_eq!(a.sets.len(), DEFAULT_SETS.len());
        a.with_preset("smoke".into());
        assert!(a.sets.is_empty(), "{:?}", a.sets);
        let (p, _) = core_preset(&a).unwrap();
        let (smoke, _) = Preset::load("smoke").unwrap();
        assert_eq!(p.rep_match.n, smoke.rep_match.n);
        assert!(p.eval.ensemble.is_none() && !p.extras.enabled && p.theory.skip);
    }

    #[test]
    fn bad_overrides_and_reps_are_named() {
        let args = EndToEndArgs {
            sets: vec!["rep_match.nn=3".into()],
            ..EndToEndArgs::default()
        };
        let e = core_preset(&args).unwrap_err();
        assert!(format!("{e:#}").contains("rep_match.nn"), "{e:#}");
        let args = EndToEndArgs {
            reps: 0,
            ..EndToEndArgs::default()
        };
        let e = run(&args, Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(format!("{e:#}").contains("--reps"), "{e:#}");
    }

    #[test]
    fn the_agreement_names_the_rows_that_disagree() {
        let c = serde_json::json!({
            "summary": {"rows": 3, "agree": 2, "disagree": 1, "missing": 0},
            "rows": [
                {"model": "C_std", "metric": "std acc", "verdict": "agree", "nrf": 0.9, "twin": 0.9},
                {"model": "on_D_NR", "metric": "L2 eps 0.5", "verdict": "disagree",
                 "nrf": 0.173, "twin": 0.237},
            ]
        });
        assert_eq!(
            agreement(&c).unwrap(),
            "2 of 3 rows agree, 1 disagree (on_D_NR L2 eps 0.5: nrf 17.3% vs twin 23.7%)"
        );
        assert_eq!(agreement(&serde_json::json!({})), None);
    }

    #[test]
    fn the_table_says_what_was_decided() {
        let side = |how: &str, w: Vec<f64>| SideRuns {
            how: how.into(),
            median_s: median(&w),
            wall_s: w,
        };
        let r = EndToEndReport {
            preset: "fashion-mnist".into(),
            sets: vec!["extras.enabled=false".into()],
            preset_text: String::new(),
            stages: 24,
            nrf: side("nrf", vec![300.0, 310.0]),
            twin: side("twin", vec![420.0, 430.0]),
            ratio: 425.0 / 305.0,
            ratio_interval: Some(Interval { lo: 1.3, hi: 1.5 }),
            verdict: SpeedVerdict::Faster,
            agreement: Some("16 of 18 rows agree, 2 disagree".into()),
            load_before: None,
            load_after: None,
            cpus: 2,
            env: vec![],
            wall_s: 1500.0,
            notes: vec!["n".into()],
        };
        let md = r.to_markdown();
        for want in [
            "24 stages",
            "300.0 310.0",
            "**twin / nrf: 1.39x**",
            "1.30-1.50",
            "nrf faster",
            "16 of 18 rows agree",
            "Note: n",
        ] {
            assert!(md.contains(want), "{want:?} not in\n{md}");
        }
    }
}
