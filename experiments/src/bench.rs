//! `nrf bench`: times the three hot steps of the pipeline in Rust (tch) and the same computation
//! in PyTorch-in-Python, in the same run, and prints a table of the ratios. `nrf bench
//! --pipeline` ([`pipeline`]) times whole stages instead, against the PyTorch twin.
//!
//! The rows, all on the Fashion-MNIST CNN ([`nrf_models::Arch::FmnistCnn`]) at one batch size:
//!
//! - [`Row::TrainStep`]: one training step, [`nrf_models::train::train_step`] with
//!   [`nrf_models::Sgd`] (momentum 0.9, Nesterov, weight decay 5e-4) and cross-entropy.
//! - [`Row::PgdL2Step`]: one step of [`nrf_attacks::pgd()`] with the [`L2`] threat model and the
//!   untargeted cross-entropy objective (input gradient, normalised step, projection, clamp),
//!   measured as a run of `pgd_steps` steps divided by `pgd_steps`.
//! - [`Row::RepMatchStep`]: one representation-matching step (gradient of `‖g(z) − g(x)‖²` w.r.t.
//!   `z`, normalised step, clamp), the machinery of `nrf_features::repmatch`, measured likewise.
//!
//! The Python side is `experiments/python/bench.py` (compiled into the binary), started once as a
//! subprocess with the interpreter named by the `NRF_PYTHON` environment variable (falling back to
//! `python3`); it answers timing requests on stdin/stdout, so Rust and Python repetitions
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
use anyhow::{anyhow, bail, Context, Result};
use nrf_attacks::{
    pgd, rep_match, untargeted_ce, Distance, PgdConfig, PgdOutput, StepSize, Unconstrained, L2,
};
use nrf_models::{Arch, Model, ModelSpec, Sgd};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub mod pipeline;

/// The Python twin of this module, run with `python -c`.
pub const PYTHON_SCRIPT: &str = include_str!("../python/bench.py");
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

/// Deterministic pseudo-random numbers in `[0, 1)`: `frac(43758.5453 · sin(12.9898 · (j + 1) +
/// 78.233 · seed))` for `j = 0..n`, computed in `f64` and returned as `f32`. The Python script
/// uses the same formula and libtorch ops, so both sides get bit-identical weights and inputs.
pub fn det_uniform(n: i64, seed: f64) -> Tensor {
    let v = ((Tensor::arange(n, (Kind::Double, Device::Cpu)) + 1.0) * 12.9898 + seed * 78.233)
        .sin()
        * 43758.5453;
    (&v - v.floor()).to_kind(Kind::Float)
}

/// Overwrites every parameter as PyTorch's default initialisation would, but deterministically:
/// uniform in `±1/sqrt(fan_in)` (fan-in of the layer's weight), parameters sorted by name.
fn det_init(model: &mut Model) -> Result<()> {
    let vars = model.vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let _g = tch::no_grad_guard();
    for (k, name) in names.into_iter().enumerate() {
        let mut p = vars[name].shallow_clone();
        let weight_name = match name.strip_suffix("bias") {
            Some(stem) => format!("{stem}weight"),
            None => name.clone(),
        };
        let w = vars
            .get(&weight_name)
            .ok_or_else(|| anyhow!("bench: no weight {weight_name} for {name}"))?;
        let fan_in = w.numel() as i64 / w.size()[0];
        let n = p.numel() as i64;
        let v = (det_uniform(n, 10.0 + k as f64) * 2.0 - 1.0) * (1.0 / (fan_in as f64).sqrt());
        p.copy_(&v.view(p.size().as_slice()));
    }
    Ok(())
}

/// The three computations on one batch. Used by `nrf bench` and by the criterion benches.
pub struct Steps {
    train_model: Model,
    sgd: Sgd,
    attack_model: Model,
    x: Tensor,
    y: Tensor,
    x0: Tensor,
    target_rep: Tensor,
    /// PGD / representation-matching steps per call of [`Steps::run`].
    pub pgd_steps: usize,
}

impl Steps {
    /// Builds the model (deterministic weights, see [`det_uniform`]; the same for training and
    /// for the attacks) and a batch of `batch` deterministic pseudo-random images in `[0, 1]`
    /// with labels, plus start images for representation matching; `pgd_steps` steps per PGD /
    /// representation-matching call. The Python script builds exactly the same tensors.
    pub fn new(batch: i64, pgd_steps: usize) -> Result<Steps> {
        if batch < 1 || pgd_steps < 1 {
            bail!("bench: batch ({batch}) and pgd_steps ({pgd_steps}) must be at least 1");
        }
        let spec = ModelSpec::new(Arch::FmnistCnn, IN_SHAPE, CLASSES);
        let mut train_model = Model::new(&spec, Device::Cpu, 0)?;
        let mut attack_model = Model::new(&spec, Device::Cpu, 0)?;
        det_init(&mut train_model)?;
        det_init(&mut attack_model)?;
        let shape = [batch, IN_SHAPE[0], IN_SHAPE[1], IN_SHAPE[2]];
        let n = shape.iter().product::<i64>();
        let x = det_uniform(n, 1.0).view(shape);
        let x0 = det_uniform(n, 2.0).view(shape);
        let y = (det_uniform(batch, 3.0) * CLASSES as f64)
            .floor()
            .to_kind(Kind::Int64);
        let sgd = Sgd::new(
            train_model.vs.trainable_variables(),
            MOMENTUM,
            true,
            WEIGHT_DECAY,
        );
        let target_rep =
            tch::no_grad(|| nrf_models::Classifier::forward_rep(&attack_model, &x, false).1);
        Ok(Steps {
            train_model,
            sgd,
            attack_model,
            x,
            y,
            x0,
            target_rep,
            pgd_steps,
        })
    }

    /// One training step; returns `(loss, correct)` (computed before the update).
    pub fn train_step(&mut self) -> Result<(f64, i64)> {
        nrf_models::train::train_step(&self.train_model, &mut self.sgd, &self.x, &self.y, LR, None)
    }

    /// An L2 PGD run of [`Steps::pgd_steps`] steps (last iterate, no random start).
    pub fn pgd_l2(&self) -> Result<PgdOutput> {
        let threat = L2::new(PGD_EPS)?;
        let cfg = PgdConfig::new(
            self.pgd_steps,
            PGD_STEP_FACTOR * PGD_EPS / self.pgd_steps as f64,
        )
        .with_use_best(false);
        let mut obj = untargeted_ce(&self.attack_model, &self.y);
        pgd(&threat, &self.x, &self.x, &cfg, &mut obj, None)
    }

    /// A representation-matching run of [`Steps::pgd_steps`] steps from the start images towards
    /// the representation of the batch (as `nrf_features::repmatch::build` does per chunk).
    pub fn rep_match(&self) -> Result<PgdOutput> {
        let cfg = PgdConfig::new(self.pgd_steps, REP_STEPS.0)
            .with_step_size(StepSize::Cosine {
                start: REP_STEPS.0,
                end: REP_STEPS.1,
            })
            .with_use_best(false);
        let mut obj = rep_match(&self.attack_model, &self.target_rep, Distance::L2Squared);
        pgd(&Unconstrained, &self.x0, &self.x0, &cfg, &mut obj, None)
    }

    /// Runs `row` once.
    pub fn run(&mut self, row: Row) -> Result<()> {
        match row {
            Row::TrainStep => self.train_step().map(|_| ()),
            Row::PgdL2Step => self.pgd_l2().map(|_| ()),
            Row::RepMatchStep => self.rep_match().map(|_| ()),
        }
    }

    /// Steps done by one call of [`Steps::run`] for `row`.
    pub fn steps_per_call(&self, row: Row) -> usize {
        match row {
            Row::TrainStep => 1,
            _ => self.pgd_steps,
        }
    }

    /// Milliseconds per step of `row` for `reps` repetitions after `warmup` untimed ones.
    pub fn time(&mut self, row: Row, warmup: usize, reps: usize) -> Result<Vec<f64>> {
        for _ in 0..warmup {
            self.run(row)?;
        }
        let per = self.steps_per_call(row) as f64;
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                self.run(row)?;
                Ok(t.elapsed().as_secs_f64() * 1e3 / per)
            })
            .collect()
    }
}

/// Values both sides compute on deterministic weights and inputs; equal values show that the
/// Rust and Python steps are the same computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckValues {
    /// Loss of the first training step.
    pub train_loss_1: f64,
    /// Correct predictions of the first training step.
    pub train_correct_1: i64,
    /// Loss of the second training step (after one SGD update).
    pub train_loss_2: f64,
    /// Mean final objective of the PGD run.
    pub pgd_objective_mean: f64,
    /// Mean final objective of the representation-matching run.
    pub rep_match_objective_mean: f64,
}

impl CheckValues {
    /// The check values of the Rust steps (batch and steps as given; one thread recommended).
    pub fn rust(batch: i64, pgd_steps: usize) -> Result<CheckValues> {
        let mut s = Steps::new(batch, pgd_steps)?;
        let (train_loss_1, train_correct_1) = s.train_step()?;
        let (train_loss_2, _) = s.train_step()?;
        let mean = |o: PgdOutput| {
            o.objective
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        Ok(CheckValues {
            train_loss_1,
            train_correct_1,
            train_loss_2,
            pgd_objective_mean: mean(s.pgd_l2()?),
            rep_match_objective_mean: mean(s.rep_match()?),
        })
    }

    /// Largest relative difference over the float values, and whether the correct counts agree.
    pub fn compare(&self, other: &CheckValues) -> (f64, bool) {
        let pairs = [
            (self.train_loss_1, other.train_loss_1),
            (self.train_loss_2, other.train_loss_2),
            (self.pgd_objective_mean, other.pgd_objective_mean),
            (
                self.rep_match_objective_mean,
                other.rep_match_objective_mean,
            ),
        ];
        let worst = pairs
            .iter()
            .map(|&(a, b)| rel_diff(a, b))
            .fold(0.0, f64::max);
        (worst, self.train_correct_1 == other.train_correct_1)
    }
}

fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else if !(a.is_finite() && b.is_finite()) {
        f64::INFINITY
    } else {
        (a - b).abs() / a.abs().max(b.abs()).max(1e-6)
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

/// The interpreter from [`PYTHON_ENV`], else [`PYTHON_FALLBACK`].
pub fn python_from_env() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PYTHON_FALLBACK))
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Row identifier (`train_step`, `pgd_l2_step`, `rep_match_step`).
    pub row: Row,
    /// Description.
    pub label: String,
    /// libtorch CPU threads.
    pub threads: i32,
    /// Median milliseconds per step in Rust.
    pub rust_ms: f64,
    /// Median milliseconds per step in Python (`None` when Python was not available).
    pub python_ms: Option<f64>,
    /// `python_ms / rust_ms`: at least 1 means Rust is at least as fast.
    pub ratio: Option<f64>,
    /// Median over the repetitions of Python time / Rust time of the same pair (robust to
    /// load changes during the run).
    pub ratio_paired: Option<f64>,
    /// All Rust samples (ms per step).
    pub rust_samples_ms: Vec<f64>,
    /// All Python samples (ms per step).
    pub python_samples_ms: Vec<f64>,
}

/// The Python side of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonInfo {
    /// The interpreter asked for.
    pub interpreter: String,
    /// Python version, when it started.
    pub python_version: Option<String>,
    /// torch version, when it could be imported.
    pub torch_version: Option<String>,
}

/// The result of the Rust-vs-Python agreement check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Rust values.
    pub rust: CheckValues,
    /// Python values.
    pub python: CheckValues,
    /// Largest relative difference of the float values.
    pub max_rel_diff: f64,
    /// Whether all values agree (relative tolerance 1e-3, equal correct counts).
    pub agree: bool,
}

/// Everything `nrf bench` measured; written to `results/bench.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The configuration.
    pub config: BenchConfig,
    /// Whether the Rust side was an optimised build (timings of a debug build mean little).
    pub release_build: bool,
    /// libtorch version the binary was built against.
    pub libtorch_version: Option<String>,
    /// rustc version.
    pub rustc_version: Option<String>,
    /// The Python side.
    pub python: PythonInfo,
    /// Rust-vs-Python agreement on deterministic inputs (absent without Python).
    pub check: Option<CheckResult>,
    /// The table.
    pub rows: Vec<BenchRow>,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Environment variables that change libtorch's threading or glibc's allocator (inherited by
    /// the Python side too), e.g. `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`, `OMP_NUM_THREADS`.
    pub env: Vec<(String, String)>,
    /// `/proc/loadavg` before and after the run (Linux only).
    pub load_before: Option<String>,
    /// See `load_before`.
    pub load_after: Option<String>,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Wall time of the whole run in seconds.
    pub wall_s: f64,
    /// Anything the reader of the table must know (missing Python, version mismatch, ...).
    pub notes: Vec<String>,
}

impl BenchReport {
    /// The markdown table (with a header line and the notes).
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "nrf bench: Fashion-MNIST CNN, batch {}, median of {} reps after {} warm-up (Rust and Python reps alternating), PGD runs of {} steps; {} build, libtorch {}, Python {} with torch {}; {} CPUs\n\n",
            c.batch,
            c.reps,
            c.warmup,
            c.pgd_steps,
            if self.release_build { "release" } else { "DEBUG" },
            self.libtorch_version.as_deref().unwrap_or("?"),
            self.python.python_version.as_deref().unwrap_or("-"),
            self.python.torch_version.as_deref().unwrap_or("-"),
            self.cpus,
        );
        s.push_str("| row | threads | Rust ms | Python ms | ratio |\n|---|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let py = r.python_ms.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            let ratio = r.ratio.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            s.push_str(&format!(
                "| {} | {} | {:.2} | {} | {} |\n",
                r.label, r.threads, r.rust_ms, py, ratio
            ));
        }
        s.push_str("\nratio = Python ms / Rust ms (>= 1: Rust at least as fast). ms per step; PGD and rep-matching runs divided by their steps.\n");
        if let Some(ch) = &self.check {
            s.push_str(&format!(
                "Same computation check (deterministic weights, batch {CHECK_BATCH}, {CHECK_STEPS} steps): {} (max relative difference {:.1e}).\n",
                if ch.agree { "Rust and Python agree" } else { "MISMATCH" },
                ch.max_rel_diff
            ));
        }
        if !self.env.is_empty() {
            let e: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("Environment (both sides): {}.\n", e.join(" ")));
        }
        if let (Some(a), Some(b)) = (&self.load_before, &self.load_after) {
            s.push_str(&format!("Load average before: {a}; after: {b}.\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("Note: {n}\n"));
        }
        s
    }
}

/// Median of `v` (NaN for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// A Python subprocess speaking a line-delimited JSON protocol (one request per line on its stdin,
/// one JSON answer per line on its stdout; the first line is a [`Hello`]): `bench.py --serve`
/// here, the twin's `bench_stages.py --serve` for `nrf bench --pipeline`.
pub(crate) struct JsonWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub(crate) what: String,
}

/// The worker's first line: whether torch (and what it needs) imported.
#[derive(Deserialize)]
pub(crate) struct Hello {
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) python: Option<String>,
    pub(crate) torch: Option<String>,
}

impl JsonWorker {
    /// Starts `python ARGS` and reads its hello; `Err` carries a note for the reader (the
    /// Python column is then skipped). `unavailable` says what a failed import means.
    pub(crate) fn start(
        python: &Path,
        args: &[&std::ffi::OsStr],
        unavailable: &str,
    ) -> std::result::Result<(JsonWorker, Hello), String> {
        let what = python.display().to_string();
        let mut child = Command::new(python)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start the Python interpreter `{what}` ({e}); set {PYTHON_ENV} to a Python with torch (`cargo xtask bench` does); Python column skipped"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| format!("`{what}`: no stdout"))?,
        );
        let mut py = JsonWorker {
            child,
            stdin,
            stdout,
            what,
        };
        let hello: Hello = py.read().map_err(|e| {
            format!(
                "the Python interpreter `{}` did not answer: {e:#}; Python column skipped",
                py.what
            )
        })?;
        if !hello.ok {
            return Err(format!(
                "{}; {unavailable}. Set {PYTHON_ENV} to a Python with torch (`cargo xtask bench` does)",
                hello.error.as_deref().unwrap_or("torch could not be imported")
            ));
        }
        Ok((py, hello))
    }

    pub(crate) fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from `{}`", self.what))?;
        if n == 0 {
            let status = self
                .child
                .try_wait()
                .ok()
                .flatten()
                .map_or("still running".to_string(), |s| s.to_string());
            bail!(
                "`{}` closed its output (exit status: {status}; see its messages above)",
                self.what
            );
        }
        let v: serde_json::Value = serde_json::from_str(line.trim()).with_context(|| {
            format!(
                "`{}` answered something that is not JSON: {:?}",
                self.what,
                line.trim()
            )
        })?;
        if let Some(e) = v
            .get("error")
            .and_then(|e| e.as_str())
            .filter(|_| v.get("ok").is_none())
        {
            bail!("`{}` reported: {e}", self.what);
        }
        serde_json::from_value(v)
            .with_context(|| format!("unexpected answer from `{}`: {}", self.what, line.trim()))
    }

    pub(crate) fn request<T: serde::de::DeserializeOwned>(
        &mut self,
        req: serde_json::Value,
    ) -> Result<T> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("`{}` is closed", self.what))?;
        writeln!(stdin, "{req}")
            .and_then(|_| stdin.flush())
            .with_context(|| format!("writing to `{}`", self.what))?;
        self.read()
    }
}

/// The step benchmark's worker (`bench.py --serve`).
struct PyBench(JsonWorker);

impl std::ops::Deref for PyBench {
    type Target = JsonWorker;
    fn deref(&self) -> &JsonWorker {
        &self.0
    }
}

impl std::ops::DerefMut for PyBench {
    fn deref_mut(&mut self) -> &mut JsonWorker {
        &mut self.0
    }
}

impl PyBench {
    /// Starts the interpreter; `Err` carries a note for the reader.
    fn start(python: &Path) -> std::result::Result<(PyBench, Hello), String> {
        let args: [&std::ffi::OsStr; 3] =
            ["-c".as_ref(), PYTHON_SCRIPT.as_ref(), "--serve".as_ref()];
        let (worker, hello) = JsonWorker::start(python, &args, "PyTorch-in-Python was not timed")?;
        Ok((PyBench(worker), hello))
    }

    fn time(
        &mut self,
        row: Row,
        threads: i32,
        warmup: usize,
        reps: usize,
        cfg: &BenchConfig,
    ) -> Result<Vec<f64>> {
        #[derive(Deserialize)]
        struct Times {
            times_ms: Vec<f64>,
        }
        let req = serde_json::json!({"cmd": "time", "row": row.name(), "threads": threads, "warmup": warmup, "reps": reps, "batch": cfg.batch, "pgd_steps": cfg.pgd_steps});
        let t: Times = self.request(req)?;
        if t.times_ms.len() != reps || t.times_ms.iter().any(|v| !v.is_finite() || *v < 0.0) {
            bail!(
                "`{}` returned {} timings for {reps} repetitions, or bad values: {:?}",
                self.what,
                t.times_ms.len(),
                t.times_ms
            );
        }
        Ok(t.times_ms)
    }

    fn check(&mut self) -> Result<CheckValues> {
        #[derive(Deserialize)]
        struct Check {
            check: CheckValues,
        }
        let c: Check = self.request(serde_json::json!({"cmd": "check", "threads": 1, "batch": CHECK_BATCH, "pgd_steps": CHECK_STEPS}))?;
        Ok(c.check)
    }
}

impl Drop for JsonWorker {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", serde_json::json!({"cmd": "quit"}));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn relevant_env() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("MALLOC_")
                || k == "GLIBC_TUNABLES"
                || k.starts_with("OMP_")
                || k.starts_with("MKL_")
                || k.starts_with("KMP_")
                || k == "LD_PRELOAD"
        })
        .collect();
    v.sort();
    v
}

fn torch_base_version(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
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

    let mut python = PythonInfo {
        interpreter: cfg
            .python
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        python_version: None,
        torch_version: None,
    };
    let mut py = match &cfg.python {
        None => {
            notes.push("Python not requested: Rust only".into());
            None
        }
        Some(p) => match PyBench::start(p) {
            Ok((py, hello)) => {
                python.python_version = hello.python;
                python.torch_version = hello.torch;
                Some(py)
            }
            Err(note) => {
                eprintln!("nrf bench: {note}");
                notes.push(note);
                None
            }
        },
    };
    if let (Some(pv), Some(rv)) = (&python.torch_version, &libtorch_version) {
        if torch_base_version(pv) != torch_base_version(rv) {
            notes.push(format!("Python's torch {pv} differs from the libtorch {rv} that nrf was built against: the ratio compares different builds"));
        }
    }

    // Same computation check.
    let mut check = None;
    if let Some(p) = py.as_mut() {
        tch::set_num_threads(1);
        let rust = CheckValues::rust(CHECK_BATCH, CHECK_STEPS)?;
        match p.check() {
            Ok(pyv) => {
                let (max_rel_diff, same_correct) = rust.compare(&pyv);
                let agree = max_rel_diff <= CHECK_RTOL && same_correct;
                if !agree {
                    notes.push(format!("Rust and Python steps give different values on the same weights and inputs (max relative difference {max_rel_diff:.2e}): rust {rust:?}, python {pyv:?}"));
                }
                check = Some(CheckResult {
                    rust,
                    python: pyv,
                    max_rel_diff,
                    agree,
                });
            }
            Err(e) => {
                notes.push(format!(
                    "the Python agreement check failed: {e:#}; Python column skipped"
                ));
                py = None;
            }
        }
    }

    let mut steps = Steps::new(cfg.batch, cfg.pgd_steps)?;
    let mut rows = Vec::new();
    for &row in &cfg.rows {
        for &threads in &cfg.threads {
            tch::set_num_threads(threads);
            let rust_what = || format!("timing {} in Rust ({threads} threads)", row.name());
            steps.time(row, cfg.warmup, 0).with_context(rust_what)?;
            if let Some(p) = py.as_mut() {
                if let Err(e) = p.time(row, threads, cfg.warmup, 0, cfg) {
                    python_failed(&mut py, &mut notes, row, threads, e);
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
                            Err(e) => python_failed(&mut py, &mut notes, row, threads, e),
                        }
                    }
                }
            }
            if py.is_none() {
                python_samples.clear();
            }
            let rust_ms = median(&rust_samples);
            let python_ms =
                (!python_samples.is_empty() && py.is_some()).then(|| median(&python_samples));
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
            rows.push(BenchRow {
                row,
                label: row.label().into(),
                threads,
                rust_ms,
                python_ms,
                ratio,
                ratio_paired,
                rust_samples_ms: rust_samples,
                python_samples_ms: python_samples,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(python: Option<PathBuf>) -> BenchConfig {
        BenchConfig {
            reps: 2,
            warmup: 0,
            threads: vec![1],
            batch: 4,
            pgd_steps: 1,
            python,
            rows: Row::ALL.to_vec(),
        }
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bad_configs_are_rejected() {
        for cfg in [
            BenchConfig {
                reps: 0,
                ..tiny(None)
            },
            BenchConfig {
                threads: vec![0],
                ..tiny(None)
            },
            BenchConfig {
                threads: vec![],
                ..tiny(None)
            },
            BenchConfig {
                batch: 0,
                ..tiny(None)
            },
            BenchConfig {
                pgd_steps: 0,
                ..tiny(None)
            },
            BenchConfig {
                rows: vec![],
                ..tiny(None)
            },
        ] {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
        assert!(tiny(None).validate().is_ok());
        assert!(run(Some(0), true, Path::new("unused.json")).is_err());
    }

    #[test]
    fn check_values_are_deterministic_and_sensitive() {
        tch::set_num_threads(1);
        let a = CheckValues::rust(4, 2).unwrap();
        let b = CheckValues::rust(4, 2).unwrap();
        assert_eq!(a.compare(&b), (0.0, true));
        assert!(
            a.train_loss_1.is_finite()
                && a.pgd_objective_mean.is_finite()
                && a.rep_match_objective_mean.is_finite()
        );
        // One SGD step on the same batch changes the loss; a PGD ascent increases the CE.
        assert!(a.train_loss_2 != a.train_loss_1);
        let c = CheckValues {
            pgd_objective_mean: a.pgd_objective_mean * 1.01,
            ..a.clone()
        };
        assert!(a.compare(&c).0 > CHECK_RTOL);
    }

    #[test]
    fn missing_python_gives_rust_only_rows_and_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny(Some(dir.path().join("no-such-python")));
        let r = run_config(&cfg).unwrap();
        assert_eq!(r.rows.len(), 3);
        for row in &r.rows {
            assert_eq!(row.rust_samples_ms.len(), 2);
            assert!(row.rust_ms > 0.0 && row.rust_ms.is_finite());
            assert_eq!((row.python_ms, row.ratio), (None, None));
        }
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("no-such-python") && n.contains(PYTHON_ENV)),
            "{:?}",
            r.notes
        );
        let md = r.to_markdown();
        assert!(md.contains("| row | threads | Rust ms | Python ms | ratio |"));
        assert_eq!(md.matches("| n/a | n/a |").count(), 3, "{md}");
    }

    /// With a Python that has torch (NRF_PYTHON, as `cargo xtask test` may set), both columns are
    /// filled and the two sides agree on the deterministic check; otherwise the note explains.
    #[test]
    fn python_side_agrees_or_explains() {
        let cfg = tiny(Some(python_from_env()));
        let out = tempfile::tempdir().unwrap();
        let r = run_config(&cfg).unwrap();
        let path = out.path().join("bench.json");
        nrf_data::store::write_json_atomic(&path, &r).unwrap();
        let back: BenchReport = nrf_data::store::read_json(&path).unwrap();
        assert_eq!(back.rows.len(), r.rows.len());
        match &r.check {
            Some(c) => {
                assert!(c.agree, "Rust and Python disagree: {c:?}");
                for row in &r.rows {
                    assert!(
                        row.python_ms.is_some() && row.ratio.unwrap() > 0.0,
                        "{row:?}"
                    );
                    assert_eq!(row.python_samples_ms.len(), 2);
                }
            }
            None => {
                assert!(!r.notes.is_empty() && r.rows.iter().all(|row| row.python_ms.is_none()))
            }
        }
    }
}
