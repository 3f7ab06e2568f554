//! `nrf bench --pipeline`: whole pipeline stages, each for a fixed amount of work, in Rust (nrf's
//! real stage functions, with their loops, batching and bookkeeping) and in the PyTorch twin
//! (`experiments/twin/bench_stages.py`, which calls `nrf_twin`'s stage functions), interleaved in
//! the same run (Rust, Python, then Python, Rust, ...) at each thread count.
//!
//! The stages ([`Stage`]):
//!
//! | stage | Rust | Python |
//! |---|---|---|
//! | standard training | `nrf_models::train` (per-epoch curve on `curve_n` test images, checkpoint) | `nrf_twin.train_model` (curve likewise) |
//! | PGD adversarial training | the same with `nrf_attacks::AdvTraining` (L2, random start, best iterate) | `train_model` with an `attack` |
//! | representation matching | `nrf_features::repmatch::build` (chunks stored and reloaded) | `nrf_twin.build_rep_match` |
//! | targeted-PGD construction | `nrf_features::relabel::build` | `nrf_twin.build_relabel` |
//! | robust evaluation | `nrf_attacks::evaluate_grid` | `nrf_twin.robust_accuracy` per grid point |
//! | ensemble evaluation | `nrf_attacks::ensemble_evaluation` (APGD-CE, then APGD-T on the survivors) | torchattacks' `APGD`, then `APGDT` on the survivors |
//!
//! Both sides get the same images (written by Rust into a work folder that Python reads), and the
//! attack stages attack the same source model (trained once by Rust, untimed, and loaded into the
//! twin's network). Per stage and thread count the report gives the median wall time of each
//! side, images per second, the ratio Python / Rust (>= 1: Rust at least as fast) with the 95%
//! interval of its run pairs and what it decides ([`SpeedVerdict`]: faster, slower or level),
//! the share of the machine's measured f32 matmul rate that the stage's nominal FLOPs reach, and
//! the peak RSS of each process during the stage (`/proc/self/clear_refs` resets the peak before
//! a stage).
use anyhow::{anyhow, bail, Context, Result};
use nrf_attacks::AttackWork;
use nrf_results::uncertainty::{ratio_interval, Interval};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

use super::worker::relevant_env;
use super::{loadavg, median, scratch_beside, write_report};

mod config;
mod python_side;
mod report;
mod rust_side;
#[cfg(test)]
mod tests;

pub use config::PipelineConfig;
use python_side::PyStages;
pub use report::{
    fmnist_cnn_flops, matmul_gflops, AsRun, LoopOverhead, PipelineReport, PipelineRow,
    PipelineTotal, SpeedVerdict, StageRun,
};
use report::{peak_rss_kb, reset_peak_rss, stage_flops};
use rust_side::{bare_steps_s, ensemble_rows, eval_work, run_rust_stage, Inputs};

/// Default output file of `nrf bench --pipeline` (the markdown table goes next to it, `.md`).
pub const DEFAULT_OUT: &str = "results/bench-pipeline.json";
/// Seed of the image subsets, the source model and every stage.
const SEED: u64 = 17;

/// One whole pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Standard training (C_std, the fresh models).
    TrainStd,
    /// L2 PGD adversarial training (C_rob).
    TrainRob,
    /// Representation matching (D_R, D_NR).
    RepMatch,
    /// Targeted L2 PGD and relabelling (D_rand, D_det).
    Relabel,
    /// Robust accuracy over an evaluation grid.
    RobustEval,
    /// Robust accuracy under APGD-CE, then APGD-T on the examples still robust (the ensemble
    /// that decides Figure 2's robustness claims, without its PGD member and checks).
    Ensemble,
}

impl Stage {
    /// All stages, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::TrainStd,
        Stage::TrainRob,
        Stage::RepMatch,
        Stage::Relabel,
        Stage::RobustEval,
        Stage::Ensemble,
    ];
    /// The identifier shared with the Python side.
    pub fn name(self) -> &'static str {
        match self {
            Stage::TrainStd => "train_std",
            Stage::TrainRob => "train_rob",
            Stage::RepMatch => "rep_match",
            Stage::Relabel => "relabel",
            Stage::RobustEval => "robust_eval",
            Stage::Ensemble => "ensemble",
        }
    }
    /// The stage called `name` (as [`Stage::name`]); the error lists the names.
    pub fn from_name(name: &str) -> Result<Stage> {
        Stage::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
                anyhow!(
                    "bench --pipeline: unknown stage `{name}` (the stages: {})",
                    names.join(", ")
                )
            })
    }
}

/// The `python / rust` wall-time ratio of each run pair (run `i` of each side, back to back).
fn pair_ratios(rust: &[StageRun], python: &[StageRun]) -> Vec<f64> {
    rust.iter()
        .zip(python)
        .map(|(r, p)| p.wall_s / r.wall_s)
        .collect()
}

/// The smallest and largest `python / rust` wall-time ratio over the run pairs; `None` with
/// fewer than two pairs (no spread to show).
fn pair_ratio_range(rust: &[StageRun], python: &[StageRun]) -> Option<(f64, f64)> {
    let ratios = pair_ratios(rust, python);
    if ratios.len() < 2 {
        return None;
    }
    let lo = ratios.iter().copied().reduce(f64::min)?;
    let hi = ratios.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

/// The 95% interval of the geometric-mean `python / rust` ratio over the run pairs
/// (`nrf_results::uncertainty::ratio_interval`); `None` with fewer than two pairs.
fn pair_ratio_interval(rust: &[StageRun], python: &[StageRun]) -> Option<Interval> {
    ratio_interval(&pair_ratios(rust, python)).map(|(_, iv)| iv)
}

fn mib(runs: &[StageRun]) -> Option<f64> {
    runs.iter()
        .filter_map(|r| r.peak_rss_kb)
        .max()
        .map(|kb| kb as f64 / 1024.0)
}

/// Runs the pipeline benchmark (progress on stderr); `work` is a scratch folder (removed at the
/// end).
pub fn run_pipeline(cfg: &PipelineConfig, work: &Path) -> Result<PipelineReport> {
    cfg.validate()?;
    let started = Instant::now();
    let load_before = loadavg();
    let release_build = !cfg!(debug_assertions);
    let mut notes = Vec::new();
    if !release_build {
        notes.push("this is a debug build of nrf: its timings understate Rust; run `cargo xtask nrf -- bench --pipeline` (a release build)".to_string());
    }
    let prev_threads = tch::get_num_threads();
    tch::set_num_threads(*cfg.threads.iter().max().unwrap_or(&1));
    eprintln!("nrf bench --pipeline: preparing the inputs and the source model");
    let (inp, data) = Inputs::new(cfg, &mut notes)?;
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let (py, python_version, torch_version) = start_python(cfg, &inp, work, &mut notes)?;
    if !reset_peak_rss() {
        notes.push("/proc/self/clear_refs could not be written: peak RSS is each process's peak so far, not per stage".into());
    }
    let flops = fmnist_cnn_flops([1, 28, 28], inp.train.num_classes as i64);
    let mut matmul = Vec::new();
    let mut rows = Vec::new();
    let mut loop_overhead = Vec::new();
    let mut b = Rounds {
        cfg,
        inp: &inp,
        work,
        flops,
        work_cache: None,
        counter: 0,
        py,
        notes,
    };
    for &threads in &cfg.threads {
        tch::set_num_threads(threads);
        let gf = matmul_gflops();
        eprintln!("nrf bench --pipeline: {threads} thread(s): f32 matmul {gf:.1} GFLOP/s");
        matmul.push((threads, gf));
        for &stage in &cfg.stages {
            let (rust_runs, python_runs) = b.alone(stage, threads)?;
            let row = b.row(stage, threads, false, gf, rust_runs, python_runs)?;
            if stage == Stage::TrainStd {
                let steps_s = bare_steps_s(cfg, &inp)?;
                loop_overhead.push(LoopOverhead {
                    threads,
                    stage_s: row.rust_s,
                    steps_s,
                    overhead: row.rust_s / steps_s - 1.0,
                });
            }
            rows.push(row);
        }
    }
    if cfg.side_by_side {
        if b.py.is_none() {
            b.notes
                .push("side by side: not run (it needs the twin, the process beside nrf's)".into());
        } else {
            tch::set_num_threads(1);
            let gf = match matmul.iter().find(|(t, _)| *t == 1) {
                Some(&(_, gf)) => gf,
                None => {
                    let gf = matmul_gflops();
                    matmul.push((1, gf));
                    gf
                }
            };
            eprintln!("nrf bench --pipeline: side by side, 1 thread each");
            for &stage in &cfg.stages {
                let (rust_runs, python_runs) = b.side_by_side(stage)?;
                if python_runs.is_empty() {
                    break;
                }
                rows.push(b.row(stage, 1, true, gf, rust_runs, python_runs)?);
            }
        }
    }
    let Rounds { py, mut notes, .. } = b;
    tch::set_num_threads(prev_threads);
    drop(py);
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))?;
    }
    if rows.iter().any(|r| r.python_s.is_some()) {
        notes.push("the two sides draw their own random starts and shuffles: result values agree statistically, not exactly".into());
    }
    Ok(PipelineReport {
        config: cfg.clone(),
        data,
        release_build,
        python_version,
        torch_version,
        libtorch_version: option_env!("NRF_TORCH_VERSION").map(str::to_string),
        forward_flops: flops.0,
        matmul_gflops: matmul,
        rows,
        loop_overhead,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_before,
        load_after: loadavg(),
        wall_s: started.elapsed().as_secs_f64(),
        notes,
        env: relevant_env(),
    })
}

/// Starts the twin's stage worker and hands it the inputs, unless `cfg` asks for no Python;
/// returns it (None when it cannot start or read the inputs: a note says why) with its Python
/// and torch versions.
fn start_python(
    cfg: &PipelineConfig,
    inp: &Inputs,
    work: &Path,
    notes: &mut Vec<String>,
) -> Result<(Option<PyStages>, Option<String>, Option<String>)> {
    let (mut python_version, mut torch_version) = (None, None);
    let py = match &cfg.python {
        None => {
            notes.push("Python not requested: Rust only".into());
            None
        }
        Some(p) => match PyStages::start(p, cfg.python_malloc_as_nrf) {
            Ok((mut py, hello)) => {
                python_version = hello.python;
                torch_version = hello.torch;
                let dir = work.join("inputs");
                inp.write_for_python(cfg, &dir)?;
                let setup: Result<serde_json::Value> = py.request(serde_json::json!({
                    "cmd": "setup", "dir": dir, "in_shape": [1, 28, 28],
                    "classes": inp.train.num_classes,
                }));
                match setup {
                    Ok(_) => Some(py),
                    Err(e) => {
                        notes.push(format!("the Python side could not read the inputs: {e:#}; Python column skipped"));
                        None
                    }
                }
            }
            Err(note) => {
                eprintln!("nrf bench --pipeline: {note}");
                notes.push(note);
                None
            }
        },
    };
    Ok((py, python_version, torch_version))
}

/// What the rounds of the benchmark share: the inputs, the scratch folder, the twin, the notes.
struct Rounds<'a> {
    cfg: &'a PipelineConfig,
    inp: &'a Inputs,
    /// Scratch folder: each Rust run gets a folder of its own under it.
    work: &'a Path,
    /// Forward FLOPs per image and of the first convolution ([`fmnist_cnn_flops`]).
    flops: (f64, f64),
    /// Robust evaluation's work (the same in every round: computed once).
    work_cache: Option<AttackWork>,
    /// Rust runs so far (numbers their scratch folders).
    counter: usize,
    /// The twin's stage worker; `None` when it is not run or stopped answering.
    py: Option<PyStages>,
    /// What the reader must know.
    notes: Vec<String>,
}

impl Rounds<'_> {
    /// The row of `stage` from its runs; `gf` is the matmul rate at `threads`.
    fn row(
        &mut self,
        stage: Stage,
        threads: i32,
        side_by_side: bool,
        gf: f64,
        rust_runs: Vec<StageRun>,
        python_runs: Vec<StageRun>,
    ) -> Result<PipelineRow> {
        let (cfg, inp) = (self.cfg, self.inp);
        let rust_s = median(&rust_runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
        let python_s = (!python_runs.is_empty())
            .then(|| median(&python_runs.iter().map(|r| r.wall_s).collect::<Vec<_>>()));
        let attack_work = if stage == Stage::RobustEval {
            if self.work_cache.is_none() {
                self.work_cache = Some(eval_work(cfg, inp)?);
            }
            self.work_cache
        } else {
            None
        };
        let attacked = match (stage, rust_runs.first()) {
            (Stage::Ensemble, Some(run)) => ensemble_rows(cfg, inp, &run.result)?,
            _ => attack_work.map_or(0, |w| w.attacked),
        };
        let nominal = stage_flops(cfg, stage, self.flops, attacked);
        let share = |s: f64| nominal / s / 1e9 / gf;
        eprintln!(
            "nrf bench --pipeline: {:<12} {threads} thread(s){}: Rust {rust_s:.2} s, Python {}",
            stage.name(),
            if side_by_side { " side by side" } else { "" },
            python_s.map_or("n/a".into(), |p| format!("{p:.2} s"))
        );
        Ok(PipelineRow {
            stage,
            threads,
            side_by_side,
            images: cfg.images(stage),
            nominal_gflop: nominal / 1e9,
            rust_s,
            python_s,
            ratio: python_s.map(|p| p / rust_s),
            ratio_range: pair_ratio_range(&rust_runs, &python_runs),
            ratio_interval: pair_ratio_interval(&rust_runs, &python_runs),
            rust_share: share(rust_s),
            python_share: python_s.map(share),
            rust_rss_mib: mib(&rust_runs),
            python_rss_mib: mib(&python_runs),
            rust_runs,
            python_runs,
            attack_work,
        })
    }

    /// Every repetition of `stage` at `threads` on both sides, one side at a time, alternating
    /// (Rust, Python, then Python, Rust, ...). A Python side that stops answering is dropped (a
    /// note says where) and its runs of the stage are forgotten.
    fn alone(&mut self, stage: Stage, threads: i32) -> Result<(Vec<StageRun>, Vec<StageRun>)> {
        let (cfg, inp) = (self.cfg, self.inp);
        let mut rust_runs = Vec::new();
        let mut python_runs = Vec::new();
        for rep in 0..cfg.reps {
            for python_turn in [rep % 2 == 1, rep % 2 == 0] {
                if !python_turn {
                    rust_runs.push(self.rust_run(stage, threads)?);
                } else if let Some(p) = self.py.as_mut() {
                    let run = p.stage(stage, threads, cfg, inp);
                    self.keep_python(run, &mut python_runs, |e| {
                        format!("Python stopped answering at {} ({threads} threads): {e:#}; later Python cells are empty", stage.name())
                    });
                }
            }
        }
        Ok((rust_runs, python_runs))
    }

    /// Every repetition of `stage` with both sides at once, one thread each: the twin's stage is
    /// started, nrf's runs meanwhile, then the twin's is awaited. Each side's time is its own
    /// stage's wall time; the side that finishes first leaves the other alone for the rest,
    /// which favours the slower side. A Python side that stops answering is dropped (a note says
    /// where) and the round's Python runs are forgotten (the caller then ends the round).
    fn side_by_side(&mut self, stage: Stage) -> Result<(Vec<StageRun>, Vec<StageRun>)> {
        let (cfg, inp) = (self.cfg, self.inp);
        let mut rust_runs = Vec::new();
        let mut python_runs = Vec::new();
        for _ in 0..cfg.reps {
            let Some(mut p) = self.py.take() else { break };
            let python = match p.start_stage(stage, 1, cfg, inp) {
                Ok(()) => {
                    rust_runs.push(self.rust_run(stage, 1)?);
                    p.finish_stage()
                }
                Err(e) => Err(e),
            };
            self.py = Some(p);
            self.keep_python(python, &mut python_runs, |e| {
                format!("Python stopped answering at {} (side by side): {e:#}; the side-by-side round ends there", stage.name())
            });
        }
        Ok((rust_runs, python_runs))
    }

    /// One timed Rust run of `stage` (at the thread count set), in a scratch folder of its own
    /// under `work` (`counter` numbers them), removed after it.
    fn rust_run(&mut self, stage: Stage, threads: i32) -> Result<StageRun> {
        self.counter += 1;
        let scratch = self.work.join(format!("rust-{}", self.counter));
        let reset = reset_peak_rss();
        let t = Instant::now();
        let (result, _) = run_rust_stage(stage, self.cfg, self.inp, &scratch)
            .with_context(|| format!("Rust stage {} ({threads} threads)", stage.name()))?;
        let wall_s = t.elapsed().as_secs_f64();
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing {}", scratch.display()))?;
        }
        Ok(StageRun {
            wall_s,
            peak_rss_kb: peak_rss_kb(),
            rss_reset: reset,
            result,
        })
    }

    /// Keeps the twin's `run`; when it failed, drops the twin, forgets the stage's Python runs
    /// and says so (`note` of the error: on stderr and in the notes).
    fn keep_python(
        &mut self,
        run: Result<StageRun>,
        python_runs: &mut Vec<StageRun>,
        note: impl FnOnce(&anyhow::Error) -> String,
    ) {
        match run {
            Ok(r) => python_runs.push(r),
            Err(e) => {
                let note = note(&e);
                eprintln!("nrf bench --pipeline: {note}");
                self.notes.push(note);
                self.py = None;
                python_runs.clear();
            }
        }
    }
}

/// What `nrf bench --pipeline` was asked for on its command line.
#[derive(Debug, Clone, Default)]
pub struct PipelineArgs {
    /// Runs per stage and side (`None`: the configuration's).
    pub reps: Option<usize>,
    /// A fifth of the work ([`PipelineConfig::quick`]).
    pub quick: bool,
    /// Stage names ([`Stage::name`]) to run, in this order (empty: all of them).
    pub stages: Vec<String>,
    /// Thread counts (empty: 1 and 2).
    pub threads: Vec<i32>,
    /// The side-by-side round ([`PipelineConfig::side_by_side`]).
    pub side_by_side: bool,
    /// Run the twin with glibc's default malloc, not nrf's settings
    /// ([`PipelineConfig::python_malloc_as_nrf`] off).
    pub python_default_malloc: bool,
}

/// `nrf bench --pipeline [--quick] [--reps N] [--stages S,..] [--threads T,..] [--no-side-by-side]
/// [--python-default-malloc] [--out PATH]`: runs
/// the benchmark, writes the JSON report to `out` and the markdown table next to it (`.md`), both
/// atomically.
pub fn run(args: &PipelineArgs, out: &Path) -> Result<PipelineReport> {
    let PipelineArgs {
        reps,
        quick,
        ref stages,
        ref threads,
        side_by_side,
        python_default_malloc,
    } = *args;
    let mut cfg = if quick {
        PipelineConfig::quick()
    } else {
        PipelineConfig::default()
    };
    if let Some(r) = reps {
        if r == 0 {
            bail!("--reps must be at least 1");
        }
        cfg.reps = r;
    }
    if !stages.is_empty() {
        cfg.stages = stages
            .iter()
            .map(|s| Stage::from_name(s))
            .collect::<Result<_>>()?;
    }
    cfg.side_by_side = side_by_side;
    cfg.python_malloc_as_nrf = !python_default_malloc;
    if !threads.is_empty() {
        cfg.threads = threads.clone();
    }
    run_config(&cfg, out)
}

/// [`run_pipeline`] for `cfg`, then writes `out` (JSON) and `out` with extension `.md`.
pub fn run_config(cfg: &PipelineConfig, out: &Path) -> Result<PipelineReport> {
    let work = scratch_beside(out, "bench-pipeline")?;
    let report = run_pipeline(cfg, &work)?;
    write_report(out, &report, &report.to_markdown())?;
    Ok(report)
}
