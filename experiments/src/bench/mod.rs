//! `nrf bench`: times the three hot steps of the pipeline in Rust (tch) and the same computation
//! in PyTorch-in-Python, in the same run, and prints a table of the ratios. `nrf bench
//! --pipeline` ([`pipeline`]) times whole stages instead, against the PyTorch twin.
//!
//! The rows, all on the Fashion-MNIST CNN ([`nrf_models::Arch::FmnistCnn`]) at one batch size:
//!
//! - [`Row::TrainStep`]: one training step, [`nrf_models::train::train_step`] with
//!   [`nrf_models::Sgd`] (momentum 0.9, Nesterov, weight decay 5e-4) and cross-entropy.
//! - [`Row::PgdL2Step`]: one step of [`nrf_attacks::pgd()`] with the [`L2`](nrf_attacks::L2) threat model and the
//!   untargeted cross-entropy objective (input gradient, normalised step, projection, clamp),
//!   measured as a run of `pgd_steps` steps divided by `pgd_steps`.
//! - [`Row::RepMatchStep`]: one representation-matching step (gradient of `‖g(z) − g(x)‖²` w.r.t.
//!   `z`, normalised step, clamp), the machinery of `nrf_features::repmatch`, measured likewise.
//!
//! The Python side is `experiments/twin/bench_steps.py` (read at run time from the twin's folder,
//! [`twin_dir`], like the stage twin of [`pipeline`]), started once as a subprocess with the
//! interpreter named by the `NRF_PYTHON` environment variable (falling back to `python3`); it answers timing requests on stdin/stdout, so Rust and Python repetitions
//! alternate one by one and both see the same machine load. Before timing, both sides compute
//! the steps on small deterministic inputs and the results are compared, which shows that
//! the two sides run the same computation.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let cfg = nrf_experiments::bench::BenchConfig::quick();
//! let report = nrf_experiments::bench::run_config(&cfg)?;
//! println!("{}", report.to_markdown());
//! # Ok(()) }
//! ```
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod end_to_end;
pub mod pipeline;
mod report;
mod steps;
#[cfg(test)]
mod tests;
mod worker;

pub use report::{median, BenchReport, BenchRow, CheckResult, PythonInfo};
pub(crate) use report::{scratch_beside, write_report};
pub use steps::{det_uniform, CheckValues, Steps};
pub(crate) use worker::{loadavg, set_unless_exported, Hello, JsonWorker};
pub use worker::{python_from_env, twin_dir, TWIN_DIR_ENV};
use worker::{relevant_env, torch_base_version, PyBench};

/// The Python twin of the steps, in the twin's folder ([`twin_dir`]).
pub const PYTHON_SCRIPT: &str = "bench_steps.py";
/// Environment variable naming the Python interpreter (set by `cargo xtask bench`).
pub const PYTHON_ENV: &str = "NRF_PYTHON";
/// Interpreter used when [`PYTHON_ENV`] is not set.
pub const PYTHON_FALLBACK: &str = "python3";
/// Default output file of `nrf bench`.
pub const DEFAULT_OUT: &str = "results/bench.json";

/// Learning rate of the timed training step (the fashion-mnist preset's peak learning rate).
pub const LR: f64 = 0.05;
/// SGD momentum.
pub const MOMENTUM: f64 = 0.9;
/// SGD weight decay.
pub const WEIGHT_DECAY: f64 = 5e-4;
/// L2 radius of the timed PGD attack (the robust model's training radius).
pub const PGD_EPS: f64 = 1.0;
/// PGD step size is `PGD_STEP_FACTOR * PGD_EPS / steps`.
pub const PGD_STEP_FACTOR: f64 = 2.5;
/// Representation-matching step sizes: cosine decay from the first to the second.
pub const REP_STEPS: (f64, f64) = (0.2, 0.002);
/// Input shape of the Fashion-MNIST CNN.
pub const IN_SHAPE: [i64; 3] = [1, 28, 28];
/// Number of classes.
pub const CLASSES: i64 = 10;
/// Batch size and PGD steps of the Rust-vs-Python agreement check (small: it only checks values).
const CHECK_BATCH: i64 = 16;
const CHECK_STEPS: usize = 3;
/// Relative tolerance of the agreement check (both sides run the same libtorch kernels).
const CHECK_RTOL: f64 = 1e-3;

/// One timed computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Row {
    /// SGD training step: forward, cross-entropy, backward, update.
    TrainStep,
    /// One L2 PGD step with the untargeted cross-entropy objective.
    PgdL2Step,
    /// One representation-matching step (`‖g(z) − g(x)‖²`, unconstrained, clamp to `[0, 1]`).
    RepMatchStep,
}

impl Row {
    /// All rows, in table order.
    pub const ALL: [Row; 3] = [Row::TrainStep, Row::PgdL2Step, Row::RepMatchStep];
    /// The identifier shared with the Python script.
    pub fn name(self) -> &'static str {
        match self {
            Row::TrainStep => "train_step",
            Row::PgdL2Step => "pgd_l2_step",
            Row::RepMatchStep => "rep_match_step",
        }
    }
    /// Description for the table.
    pub fn label(self) -> &'static str {
        match self {
            Row::TrainStep => "train step (SGD Nesterov wd, CE, fwd+bwd+update)",
            Row::PgdL2Step => "PGD L2 step (untargeted CE)",
            Row::RepMatchStep => "rep-matching step (||g(z)-g(x)||^2)",
        }
    }
}

/// What `nrf bench` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Timed repetitions per row, thread count and language. Rust and Python repetitions
    /// alternate one by one (the first of each pair alternates too), so both see the same load.
    pub reps: usize,
    /// Untimed repetitions of each side before the timed ones.
    pub warmup: usize,
    /// libtorch CPU thread counts to time.
    pub threads: Vec<i32>,
    /// Batch size.
    pub batch: i64,
    /// Steps per timed PGD / representation-matching run (the reported time is per step).
    pub pgd_steps: usize,
    /// Python interpreter (`None`: Rust only).
    pub python: Option<PathBuf>,
    /// Rows to time.
    pub rows: Vec<Row>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            reps: 10,
            warmup: 2,
            threads: vec![1, 2],
            batch: 128,
            pgd_steps: 10,
            python: Some(python_from_env()),
            rows: Row::ALL.to_vec(),
        }
    }
}

impl BenchConfig {
    /// `--quick`: 3 repetitions, one warm-up, 2-step PGD runs.
    pub fn quick() -> Self {
        BenchConfig {
            reps: 3,
            warmup: 1,
            pgd_steps: 2,
            ..Default::default()
        }
    }
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.reps == 0 || self.batch < 1 || self.pgd_steps == 0 {
            bail!(
                "bench: reps ({}), batch ({}) and pgd_steps ({}) must be at least 1",
                self.reps,
                self.batch,
                self.pgd_steps
            );
        }
        if self.threads.is_empty() || self.threads.iter().any(|&t| t < 1) {
            bail!(
                "bench: thread counts must be at least 1, got {:?}",
                self.threads
            );
        }
        if self.rows.is_empty() {
            bail!("bench: no rows to time");
        }
        Ok(())
    }
}

fn python_failed(
    py: &mut Option<PyBench>,
    notes: &mut Vec<String>,
    row: Row,
    threads: i32,
    e: anyhow::Error,
) {
    let note = format!(
        "Python stopped answering at {} ({threads} threads): {e:#}; later Python cells are empty",
        row.name()
    );
    eprintln!("nrf bench: {note}");
    notes.push(note);
    *py = None;
}

/// Runs the benchmark described by `cfg` (progress on stderr) and returns the report.
pub fn run_config(cfg: &BenchConfig) -> Result<BenchReport> {
    cfg.validate()?;
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let load_before = loadavg();
    let release_build = !cfg!(debug_assertions);
    let libtorch_version = option_env!("NRF_TORCH_VERSION").map(str::to_string);
    let mut notes = Vec::new();
    if !release_build {
        notes.push("this is a debug build of nrf: its timings understate Rust; run `cargo xtask bench` (a release build)".to_string());
    }
    let prev_threads = tch::get_num_threads();
    let (mut py, python) = start_python(cfg, libtorch_version.as_deref(), &mut notes);
    let check = agreement_check(&mut py, &mut notes)?;
    let mut steps = Steps::new(cfg.batch, cfg.pgd_steps)?;
    let mut rows = Vec::new();
    for &row in &cfg.rows {
        for &threads in &cfg.threads {
            rows.push(time_row(
                cfg, &mut steps, &mut py, &mut notes, row, threads,
            )?);
        }
    }
    tch::set_num_threads(prev_threads);
    drop(py);
    Ok(BenchReport {
        config: cfg.clone(),
        release_build,
        libtorch_version,
        rustc_version: option_env!("NRF_RUSTC_VERSION").map(str::to_string),
        python,
        check,
        rows,
        env: relevant_env(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_before,
        load_after: loadavg(),
        started_unix,
        wall_s: started.elapsed().as_secs_f64(),
        notes,
    })
}

/// Starts the Python side unless `cfg` asks for none; when it cannot start (or its torch is not
/// the libtorch nrf was built against) a note says so, and without it the Python column is empty.
fn start_python(
    cfg: &BenchConfig,
    libtorch_version: Option<&str>,
    notes: &mut Vec<String>,
) -> (Option<PyBench>, PythonInfo) {
    let mut python = PythonInfo {
        interpreter: cfg
            .python
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        python_version: None,
        torch_version: None,
    };
    let py = match &cfg.python {
        None => {
            notes.push("Python not requested: Rust only".into());
            None
        }
        Some(p) => match PyBench::start(p) {
            Ok((py, hello)) => {
                python.python_version = hello.python;
                python.torch_version = hello.torch;
                notes.push("the Python side runs with nrf's glibc malloc settings (activation buffers kept mapped between steps; `MALLOC_*` exported before the run wins); before session 19 it ran with glibc's defaults".into());
                Some(py)
            }
            Err(note) => {
                eprintln!("nrf bench: {note}");
                notes.push(note);
                None
            }
        },
    };
    if let (Some(pv), Some(rv)) = (&python.torch_version, libtorch_version) {
        if torch_base_version(pv) != torch_base_version(rv) {
            notes.push(format!("Python's torch {pv} differs from the libtorch {rv} that nrf was built against: the ratio compares different builds"));
        }
    }
    (py, python)
}

/// The same-computation check (one thread, deterministic weights and inputs); a Python side
/// whose check fails is dropped (its column stays empty).
fn agreement_check(
    py: &mut Option<PyBench>,
    notes: &mut Vec<String>,
) -> Result<Option<CheckResult>> {
    let Some(p) = py.as_mut() else {
        return Ok(None);
    };
    tch::set_num_threads(1);
    let rust = CheckValues::rust(CHECK_BATCH, CHECK_STEPS)?;
    match p.check() {
        Ok(pyv) => {
            let (max_rel_diff, same_correct) = rust.compare(&pyv);
            let agree = max_rel_diff <= CHECK_RTOL && same_correct;
            if !agree {
                notes.push(format!("Rust and Python steps give different values on the same weights and inputs (max relative difference {max_rel_diff:.2e}): rust {rust:?}, python {pyv:?}"));
            }
            Ok(Some(CheckResult {
                rust,
                python: pyv,
                max_rel_diff,
                agree,
            }))
        }
        Err(e) => {
            notes.push(format!(
                "the Python agreement check failed: {e:#}; Python column skipped"
            ));
            *py = None;
            Ok(None)
        }
    }
}

/// One line of the table: `row` at `threads`, warm-ups first, then Rust and Python repetitions
/// alternating (the first of each pair alternates too).
fn time_row(
    cfg: &BenchConfig,
    steps: &mut Steps,
    py: &mut Option<PyBench>,
    notes: &mut Vec<String>,
    row: Row,
    threads: i32,
) -> Result<BenchRow> {
    tch::set_num_threads(threads);
    let rust_what = || format!("timing {} in Rust ({threads} threads)", row.name());
    steps.time(row, cfg.warmup, 0).with_context(rust_what)?;
    if let Some(p) = py.as_mut() {
        if let Err(e) = p.time(row, threads, cfg.warmup, 0, cfg) {
            python_failed(py, notes, row, threads, e);
        }
    }
    let mut rust_samples = Vec::new();
    let mut python_samples = Vec::new();
    for i in 0..cfg.reps {
        for python_turn in [i % 2 == 1, i % 2 == 0] {
            if !python_turn {
                rust_samples.extend(steps.time(row, 0, 1).with_context(rust_what)?);
            } else if let Some(p) = py.as_mut() {
                match p.time(row, threads, 0, 1, cfg) {
                    Ok(t) => python_samples.extend(t),
                    Err(e) => python_failed(py, notes, row, threads, e),
                }
            }
        }
    }
    if py.is_none() {
        python_samples.clear();
    }
    let rust_ms = median(&rust_samples);
    let python_ms = (!python_samples.is_empty() && py.is_some()).then(|| median(&python_samples));
    let ratio = python_ms.map(|p| p / rust_ms);
    let ratio_paired = python_ms.map(|_| {
        let r: Vec<f64> = python_samples
            .iter()
            .zip(&rust_samples)
            .map(|(p, r)| p / r)
            .collect();
        median(&r)
    });
    eprintln!(
        "nrf bench: {:<15} threads {threads}: Rust {rust_ms:.2} ms, Python {}",
        row.name(),
        python_ms.map_or("n/a".to_string(), |v| format!("{v:.2} ms"))
    );
    Ok(BenchRow {
        row,
        label: row.label().into(),
        threads,
        rust_ms,
        python_ms,
        ratio,
        ratio_paired,
        rust_samples_ms: rust_samples,
        python_samples_ms: python_samples,
    })
}

/// `nrf bench [--reps N] [--quick] [--out PATH]`: runs the benchmark, writes the report to `out`
/// (atomically) and returns it.
pub fn run(reps: Option<usize>, quick: bool, out: &Path) -> Result<BenchReport> {
    let mut cfg = if quick {
        BenchConfig::quick()
    } else {
        BenchConfig::default()
    };
    if let Some(r) = reps {
        if r == 0 {
            bail!("--reps must be at least 1");
        }
        cfg.reps = r;
    }
    let report = run_config(&cfg)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    nrf_data::store::write_json_atomic(out, &report)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(report)
}
