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
//!
//! Both sides get the same images (written by Rust into a work folder that Python reads), and the
//! attack stages attack the same source model (trained once by Rust, untimed, and loaded into the
//! twin's network). Per stage and thread count the report gives the median wall time of each
//! side, images per second, the ratio Python / Rust (>= 1: Rust at least as fast), the share of
//! the machine's measured f32 matmul rate that the stage's nominal FLOPs reach, and the peak RSS
//! of each process during the stage (`/proc/self/clear_refs` resets the peak before a stage).
use anyhow::{anyhow, bail, Context, Result};
use nrf_attacks::{evaluate_grid, AdvTraining, AttackWork, Linf, PgdConfig, ThreatModel, L2};
use nrf_data::Dataset;
use nrf_features::relabel::{choose_targets, RelabelConfig, TargetRule};
use nrf_features::repmatch::{choose_starts, RepMatchConfig, StartMode};
use nrf_models::train::{epoch_order, step_on_device};
use nrf_models::{
    dataset_to_tensors, images_to_tensor, Arch, BatchPerturber, Model, ModelSpec, Sgd, TrainConfig,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use super::{loadavg, median, python_from_env, Hello, JsonWorker};

/// Default output file of `nrf bench --pipeline` (the markdown table goes next to it, `.md`).
pub const DEFAULT_OUT: &str = "results/bench-pipeline.json";
/// Environment variable naming the twin's folder (default: `experiments/twin` of this source
/// tree, fixed at compile time).
pub const TWIN_DIR_ENV: &str = "NRF_TWIN_DIR";
/// Side of the square f32 matrices of the matmul-rate measurement (2·n³ FLOPs per product).
const MATMUL_N: i64 = 2048;
/// Timed matrix products per thread count (the best one counts).
const MATMUL_REPS: usize = 3;
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
}

impl Stage {
    /// All stages, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::TrainStd,
        Stage::TrainRob,
        Stage::RepMatch,
        Stage::Relabel,
        Stage::RobustEval,
    ];
    /// The identifier shared with the Python side.
    pub fn name(self) -> &'static str {
        match self {
            Stage::TrainStd => "train_std",
            Stage::TrainRob => "train_rob",
            Stage::RepMatch => "rep_match",
            Stage::Relabel => "relabel",
            Stage::RobustEval => "robust_eval",
        }
    }
}

/// The amount of work of every stage, and how the benchmark runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// Timed runs of each stage per side and thread count (Rust and Python alternate).
    pub reps: usize,
    /// libtorch CPU thread counts.
    pub threads: Vec<i32>,
    /// Python interpreter with torch (`None`: Rust only).
    pub python: Option<PathBuf>,
    /// Run the twin's convolutions channels-last (the twin's default: faster on CPU there).
    pub python_channels_last: bool,
    /// Stages to run.
    pub stages: Vec<Stage>,
    /// Fashion-MNIST folder; synthetic images (with a note) when it is `None` or missing.
    pub data_dir: Option<PathBuf>,
    /// Training batch size (both training stages and the source model).
    pub batch_size: usize,
    /// Test images of the per-epoch accuracy curve of the training stages (0: none).
    pub curve_n: usize,
    /// Standard training: images and epochs.
    pub std_images: usize,
    /// See `std_images`.
    pub std_epochs: usize,
    /// Adversarial training: images, epochs, PGD steps and L2 radius (step 2.5·eps/steps).
    pub rob_images: usize,
    /// See `rob_images`.
    pub rob_epochs: usize,
    /// See `rob_images`.
    pub rob_steps: usize,
    /// See `rob_images`.
    pub rob_eps: f64,
    /// Representation matching: images, steps (cosine 0.2 -> 0.002, the spec's) and chunk size.
    pub rep_images: usize,
    /// See `rep_images`.
    pub rep_steps: usize,
    /// See `rep_images`.
    pub rep_batch: usize,
    /// Targeted PGD: images, steps of `relabel_step` inside L2 `relabel_eps`, chunk size.
    pub relabel_images: usize,
    /// See `relabel_images`.
    pub relabel_steps: usize,
    /// See `relabel_images`.
    pub relabel_eps: f64,
    /// See `relabel_images`.
    pub relabel_step: f64,
    /// See `relabel_images`.
    pub relabel_batch: usize,
    /// Robust evaluation: test images, PGD steps (2.5·eps/steps, random start), batch size. The
    /// attack stages attack a source model trained (untimed) for one epoch on the whole
    /// training set.
    pub eval_images: usize,
    /// See `eval_images`.
    pub eval_steps: usize,
    /// See `eval_images`.
    pub eval_batch: usize,
    /// L2 radii of the evaluation grid.
    pub eval_l2_eps: Vec<f64>,
    /// Linf radii of the evaluation grid.
    pub eval_linf_eps: Vec<f64>,
}

impl Default for PipelineConfig {
    /// The spec's hyper-parameters (../shared/spec/fashion-mnist.md) at sizes that take about a
    /// minute per side, stage round and thread count on a 2-core machine.
    fn default() -> Self {
        PipelineConfig {
            reps: 2,
            threads: vec![1, 2],
            python: Some(python_from_env()),
            python_channels_last: true,
            stages: Stage::ALL.to_vec(),
            data_dir: Some(PathBuf::from(nrf_data::idx::FASHION_MNIST_DIR)),
            batch_size: 128,
            curve_n: 2000,
            std_images: 10_000,
            std_epochs: 1,
            rob_images: 2000,
            rob_epochs: 1,
            rob_steps: 7,
            rob_eps: 1.0,
            rep_images: 500,
            rep_steps: 100,
            rep_batch: 500,
            relabel_images: 500,
            relabel_steps: 100,
            relabel_eps: 1.0,
            relabel_step: 0.1,
            relabel_batch: 500,
            eval_images: 500,
            eval_steps: 20,
            eval_batch: 500,
            eval_l2_eps: vec![0.25, 0.5, 1.0, 2.0],
            eval_linf_eps: vec![0.1],
        }
    }
}

impl PipelineConfig {
    /// `--quick`: a fifth of the work, one run per side.
    pub fn quick() -> Self {
        let d = PipelineConfig::default();
        PipelineConfig {
            reps: 1,
            curve_n: 500,
            std_images: 2000,
            rob_images: 400,
            rep_images: 100,
            rep_batch: 100,
            relabel_images: 100,
            relabel_batch: 100,
            eval_images: 100,
            eval_batch: 100,
            ..d
        }
    }
    /// A few seconds in all (for tests): tiny sizes, one thread, one run.
    pub fn tiny() -> Self {
        PipelineConfig {
            reps: 1,
            threads: vec![1],
            curve_n: 32,
            batch_size: 32,
            std_images: 96,
            rob_images: 32,
            rob_steps: 2,
            rep_images: 16,
            rep_steps: 3,
            rep_batch: 8,
            relabel_images: 16,
            relabel_steps: 3,
            relabel_batch: 8,
            eval_images: 16,
            eval_steps: 2,
            eval_batch: 8,
            eval_l2_eps: vec![0.5],
            eval_linf_eps: vec![],
            ..PipelineConfig::default()
        }
    }
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("reps", self.reps),
            ("batch_size", self.batch_size),
            ("std_images", self.std_images),
            ("std_epochs", self.std_epochs),
            ("rob_images", self.rob_images),
            ("rob_epochs", self.rob_epochs),
            ("rob_steps", self.rob_steps),
            ("rep_images", self.rep_images),
            ("rep_steps", self.rep_steps),
            ("rep_batch", self.rep_batch),
            ("relabel_images", self.relabel_images),
            ("relabel_steps", self.relabel_steps),
            ("relabel_batch", self.relabel_batch),
            ("eval_images", self.eval_images),
            ("eval_steps", self.eval_steps),
            ("eval_batch", self.eval_batch),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            bail!("bench --pipeline: {name} must be at least 1");
        }
        if self.threads.is_empty() || self.threads.iter().any(|&t| t < 1) {
            bail!(
                "bench --pipeline: thread counts must be at least 1, got {:?}",
                self.threads
            );
        }
        if self.stages.is_empty() {
            bail!("bench --pipeline: no stages to run");
        }
        if self.eval_l2_eps.is_empty() && self.eval_linf_eps.is_empty() {
            bail!("bench --pipeline: the evaluation grid is empty");
        }
        for (what, v) in [
            ("rob_eps", self.rob_eps),
            ("relabel_eps", self.relabel_eps),
            ("relabel_step", self.relabel_step),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("bench --pipeline: {what} must be positive and finite, got {v}");
            }
        }
        Ok(())
    }
    fn train_images(&self) -> usize {
        self.std_images
            .max(self.rob_images)
            .max(self.rep_images)
            .max(self.relabel_images)
            .max(2)
    }
    fn test_images(&self) -> usize {
        self.curve_n.max(self.eval_images)
    }
    fn grid(&self) -> Vec<(&'static str, f64)> {
        self.eval_l2_eps
            .iter()
            .map(|&e| ("L2", e))
            .chain(self.eval_linf_eps.iter().map(|&e| ("Linf", e)))
            .collect()
    }
    /// Images a stage processes (training: epochs · images; evaluation: images · grid points).
    pub fn images(&self, stage: Stage) -> usize {
        match stage {
            Stage::TrainStd => self.std_epochs * self.std_images,
            Stage::TrainRob => self.rob_epochs * self.rob_images,
            Stage::RepMatch => self.rep_images,
            Stage::Relabel => self.relabel_images,
            Stage::RobustEval => self.eval_images * self.grid().len(),
        }
    }
    fn train_config(&self, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            seed: SEED,
            ..TrainConfig::default()
        }
    }
}

/// Forward FLOPs per image of nrf's Fashion-MNIST CNN for input `[c, h, w]`, and those of its
/// first convolution (whose input gradient training does not need). Multiply-adds count 2.
pub fn fmnist_cnn_flops(in_shape: [i64; 3], classes: i64) -> (f64, f64) {
    let [c, h, w] = in_shape;
    // conv3x3 with padding 1: stride 1 keeps the size, stride 2 gives ceil(size / 2).
    let (h2, w2) = ((h + 1) / 2, (w + 1) / 2);
    let (h3, w3) = ((h2 + 1) / 2, (w2 + 1) / 2);
    let c1 = h * w * 16 * 9 * c;
    let macs =
        c1 + h2 * w2 * 32 * 9 * 16 + h3 * w3 * 64 * 9 * 32 + 64 * h3 * w3 * 256 + 256 * classes;
    (2.0 * macs as f64, 2.0 * c1 as f64)
}

/// Nominal FLOPs of a stage: forward = F per image; a training step adds the weight gradients
/// (F) and the input gradients except the first layer's (F − c1); an attack step is a forward and
/// an input-gradient backward (2F). Robust evaluation counts the full-batch loop (every
/// clean-correct example of the `attacked` attacked for every step), what the twin computes;
/// nrf's shrinking evaluation does less for the same result.
fn stage_flops(cfg: &PipelineConfig, stage: Stage, f: (f64, f64), attacked: u64) -> f64 {
    let (fwd, c1) = f;
    let train_row = 3.0 * fwd - c1;
    let curve = cfg.curve_n as f64 * fwd;
    match stage {
        Stage::TrainStd => cfg.std_epochs as f64 * (cfg.std_images as f64 * train_row + curve),
        Stage::TrainRob => {
            // The attack's steps, its final forward (best iterate), then the training step.
            let row = cfg.rob_steps as f64 * 2.0 * fwd + fwd + train_row;
            cfg.rob_epochs as f64 * (cfg.rob_images as f64 * row + curve)
        }
        // Steps, plus the target representation and the errors at the start and the end.
        Stage::RepMatch => cfg.rep_images as f64 * (cfg.rep_steps as f64 * 2.0 * fwd + 3.0 * fwd),
        // Steps, plus the final objective and the success check.
        Stage::Relabel => {
            cfg.relabel_images as f64 * (cfg.relabel_steps as f64 * 2.0 * fwd + 2.0 * fwd)
        }
        Stage::RobustEval => {
            let points = cfg.grid().len() as f64;
            points * cfg.eval_images as f64 * fwd
                + attacked as f64 * (cfg.eval_steps as f64 * 2.0 * fwd + fwd)
        }
    }
}

/// Best f32 matmul rate (GFLOP/s) of libtorch at the current thread count.
pub fn matmul_gflops() -> f64 {
    let opts = (Kind::Float, Device::Cpu);
    let a = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let b = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let _ = a.matmul(&b);
    let flops = 2.0 * (MATMUL_N as f64).powi(3);
    (0..MATMUL_REPS)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b);
            let s = t.elapsed().as_secs_f64();
            drop(c);
            flops / s / 1e9
        })
        .fold(0.0, f64::max)
}

/// Resets this process's peak-RSS mark (Linux `/proc/self/clear_refs`); false if impossible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak RSS (`VmHWM`) in KiB.
fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One timed run of a stage on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    /// Wall seconds.
    pub wall_s: f64,
    /// Peak RSS of the process during the stage, KiB (the process's peak so far when the mark
    /// could not be reset, see `rss_reset`).
    pub peak_rss_kb: Option<u64>,
    /// Whether the peak-RSS mark was reset before the stage.
    pub rss_reset: bool,
    /// A few result values (to compare the two sides: they must be similar, not equal).
    pub result: serde_json::Value,
}

/// One line of the table: a stage at a thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRow {
    /// The stage.
    pub stage: Stage,
    /// libtorch CPU threads.
    pub threads: i32,
    /// Images processed (see [`PipelineConfig::images`]).
    pub images: usize,
    /// Nominal FLOPs (see the module documentation).
    pub nominal_gflop: f64,
    /// Median Rust wall seconds.
    pub rust_s: f64,
    /// Median Python wall seconds.
    pub python_s: Option<f64>,
    /// `python_s / rust_s` (>= 1: Rust at least as fast).
    pub ratio: Option<f64>,
    /// Nominal GFLOP/s of the Rust side as a share of the matmul rate at this thread count.
    pub rust_share: f64,
    /// The same for Python.
    pub python_share: Option<f64>,
    /// Largest peak RSS of the Rust runs, MiB.
    pub rust_rss_mib: Option<f64>,
    /// Largest peak RSS of the Python runs, MiB.
    pub python_rss_mib: Option<f64>,
    /// Every Rust run.
    pub rust_runs: Vec<StageRun>,
    /// Every Python run.
    pub python_runs: Vec<StageRun>,
    /// Robust evaluation only: the work nrf's shrinking evaluation did (Rust side).
    pub attack_work: Option<AttackWork>,
}

/// The training loop's cost beyond its steps: the standard-training stage against the same
/// number of bare `train_step`s on one fixed batch (Rust only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopOverhead {
    /// libtorch CPU threads.
    pub threads: i32,
    /// Median wall seconds of the standard-training stage.
    pub stage_s: f64,
    /// Seconds of the same number of steps on a fixed batch, without the loop.
    pub steps_s: f64,
    /// `stage_s / steps_s − 1`.
    pub overhead: f64,
}

/// Everything `nrf bench --pipeline` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The configuration.
    pub config: PipelineConfig,
    /// The data: "fashion-mnist" or "synthetic".
    pub data: String,
    /// Whether the Rust side was an optimised build.
    pub release_build: bool,
    /// Python and torch versions of the twin (`None`: not run).
    pub python_version: Option<String>,
    /// See `python_version`.
    pub torch_version: Option<String>,
    /// libtorch version nrf was built against.
    pub libtorch_version: Option<String>,
    /// Forward FLOPs per image of the model.
    pub forward_flops: f64,
    /// Best f32 matmul GFLOP/s per thread count (`[threads, GFLOP/s]`).
    pub matmul_gflops: Vec<(i32, f64)>,
    /// The table.
    pub rows: Vec<PipelineRow>,
    /// The standard-training loop against its bare steps.
    pub loop_overhead: Vec<LoopOverhead>,
    /// Logical CPUs.
    pub cpus: usize,
    /// `/proc/loadavg` before and after.
    pub load_before: Option<String>,
    /// See `load_before`.
    pub load_after: Option<String>,
    /// Wall seconds of the whole benchmark.
    pub wall_s: f64,
    /// What the reader must know.
    pub notes: Vec<String>,
}

impl PipelineReport {
    /// Whole-pipeline totals per thread count: `(threads, rust_s, python_s, ratio)` over the
    /// stages both sides ran.
    pub fn totals(&self) -> Vec<(i32, f64, Option<f64>, Option<f64>)> {
        self.config
            .threads
            .iter()
            .map(|&t| {
                let rows: Vec<&PipelineRow> = self.rows.iter().filter(|r| r.threads == t).collect();
                let rust: f64 = rows.iter().map(|r| r.rust_s).sum();
                let py: Option<f64> = rows.iter().map(|r| r.python_s).sum();
                (t, rust, py, py.map(|p| p / rust))
            })
            .collect()
    }

    /// The markdown table with its header line and notes.
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
        };
        let mut s = format!(
            "nrf bench --pipeline: Fashion-MNIST CNN on {} data; median of {} run(s) per side (Rust and Python alternating); {} build, libtorch {}, Python {} with torch {} (channels-last: {}); {} CPUs\n\n",
            self.data,
            c.reps,
            if self.release_build { "release" } else { "DEBUG" },
            self.libtorch_version.as_deref().unwrap_or("?"),
            self.python_version.as_deref().unwrap_or("-"),
            self.torch_version.as_deref().unwrap_or("-"),
            c.python_channels_last,
            self.cpus,
        );
        s.push_str("| stage | work | threads | Rust s | Python s | ratio | Rust img/s | Python img/s | Rust % matmul | Python % matmul | Rust peak RSS MiB | Python peak RSS MiB |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let img = r.images as f64;
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {} | {} | {:.0} | {} | {:.1} | {} | {} | {} |\n",
                r.stage.name(),
                work_label(c, r.stage),
                r.threads,
                r.rust_s,
                opt(r.python_s, 2),
                opt(r.ratio, 2),
                img / r.rust_s,
                opt(r.python_s.map(|p| img / p), 0),
                100.0 * r.rust_share,
                opt(r.python_share.map(|v| 100.0 * v), 1),
                opt(r.rust_rss_mib, 0),
                opt(r.python_rss_mib, 0),
            ));
        }
        for (t, rust, py, ratio) in self.totals() {
            s.push_str(&format!(
                "| **whole pipeline** | all stages above | {t} | {rust:.2} | {} | {} | | | | | | |\n",
                opt(py, 2),
                opt(ratio, 2)
            ));
        }
        s.push_str("\nratio = Python s / Rust s (>= 1: Rust at least as fast). % matmul = the stage's nominal FLOPs per second as a share of the best f32 matmul rate measured at that thread count (");
        let m: Vec<String> = self
            .matmul_gflops
            .iter()
            .map(|(t, g)| format!("{t} thread(s): {g:.1} GFLOP/s"))
            .collect();
        s.push_str(&m.join(", "));
        s.push_str(&format!(
            "); forward pass {:.2} MFLOP per image. Robust evaluation's nominal FLOPs are the full-batch loop's.\n",
            self.forward_flops / 1e6
        ));
        for r in self.rows.iter().filter(|r| r.attack_work.is_some()) {
            if let Some(w) = &r.attack_work {
                s.push_str(&format!(
                    "Robust evaluation ({} threads): nrf attacks an example only until it is fooled: {:.1}% of the full-batch loop's forward + 2 x backward rows.\n",
                    r.threads,
                    100.0 * w.fraction_of_full()
                ));
            }
        }
        for o in &self.loop_overhead {
            s.push_str(&format!(
                "Training loop overhead ({} threads): standard-training stage {:.2} s vs {:.2} s for its steps on one fixed batch ({:+.1}%; includes the per-epoch curve and checkpoint).\n",
                o.threads,
                o.stage_s,
                o.steps_s,
                100.0 * o.overhead
            ));
        }
        for r in &self.rows {
            let first = |runs: &[StageRun]| runs.first().map(|x| x.result.to_string());
            if let (Some(a), Some(b)) = (first(&r.rust_runs), first(&r.python_runs)) {
                s.push_str(&format!(
                    "Results {} ({} threads): Rust {a}, Python {b}.\n",
                    r.stage.name(),
                    r.threads
                ));
            }
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

fn work_label(c: &PipelineConfig, stage: Stage) -> String {
    match stage {
        Stage::TrainStd => format!("{} img x {} ep", c.std_images, c.std_epochs),
        Stage::TrainRob => format!(
            "{} img x {} ep, PGD-{}",
            c.rob_images, c.rob_epochs, c.rob_steps
        ),
        Stage::RepMatch => format!("{} img x {} steps", c.rep_images, c.rep_steps),
        Stage::Relabel => format!("{} img x {} steps", c.relabel_images, c.relabel_steps),
        Stage::RobustEval => format!(
            "{} img x {} eps, PGD-{}",
            c.eval_images,
            c.grid().len(),
            c.eval_steps
        ),
    }
}

/// The stages' inputs, shared by both sides.
struct Inputs {
    train: Dataset,
    test_x: Tensor,
    test_y: Tensor,
    source: Model,
    spec: ModelSpec,
    rep_targets: Vec<usize>,
    relabel_indices: Vec<usize>,
}

fn synthetic(n: usize, seed: i64) -> Dataset {
    // Class-dependent bright band plus noise: learnable, deterministic.
    tch::manual_seed(seed);
    let d = 28 * 28;
    let labels: Vec<i64> = (0..n).map(|i| (i % 10) as i64).collect();
    let noise = Tensor::rand([n as i64, d as i64], (Kind::Float, Device::Cpu)) * 0.5;
    let mut images = Vec::<f32>::try_from(&noise.view([-1])).unwrap_or_default();
    for (i, &y) in labels.iter().enumerate() {
        let lo = i * d + y as usize * 78;
        images[lo..lo + 78].iter_mut().for_each(|v| *v += 0.5);
    }
    Dataset {
        name: "synthetic".into(),
        images,
        labels,
        shape: [1, 28, 28],
        num_classes: 10,
        class_names: vec![],
    }
}

/// The examples `idx` of `d` as a new dataset.
fn pick(d: &Dataset, idx: &[usize], name: &str) -> Dataset {
    let s = d.example_size();
    let mut images = Vec::with_capacity(idx.len() * s);
    for &i in idx {
        images.extend_from_slice(d.image(i));
    }
    Dataset {
        name: name.into(),
        images,
        labels: idx.iter().map(|&i| d.labels[i]).collect(),
        shape: d.shape,
        num_classes: d.num_classes,
        class_names: d.class_names.clone(),
    }
}

impl Inputs {
    fn new(cfg: &PipelineConfig, notes: &mut Vec<String>) -> Result<(Inputs, String)> {
        let (train_full, test_full, data) = match cfg.data_dir.as_deref().filter(|d| d.exists()) {
            Some(dir) => (
                nrf_data::idx::load_fashion_mnist(dir, nrf_data::Split::Train)?,
                nrf_data::idx::load_fashion_mnist(dir, nrf_data::Split::Test)?,
                "fashion-mnist".to_string(),
            ),
            None => {
                notes.push(format!(
                    "Fashion-MNIST not found ({}): synthetic images (a class-dependent band plus noise); the timings are still representative, the result values are not",
                    cfg.data_dir
                        .as_ref()
                        .map_or("no folder given".into(), |d| d.display().to_string())
                ));
                (
                    synthetic(cfg.train_images(), 1),
                    synthetic(cfg.test_images(), 2),
                    "synthetic".to_string(),
                )
            }
        };
        if train_full.shape != [1, 28, 28] {
            bail!(
                "bench --pipeline: expects 1x28x28 images, got {:?}",
                train_full.shape
            );
        }
        let n_train = cfg.train_images().min(train_full.len());
        let n_test = cfg.test_images().min(test_full.len());
        let mut ti = epoch_order(train_full.len(), SEED, 0);
        ti.truncate(n_train);
        let mut si = epoch_order(test_full.len(), SEED, 1);
        si.truncate(n_test);
        let train = pick(&train_full, &ti, "bench/train");
        let test = pick(&test_full, &si, "bench/test");
        let (test_x, test_y) = dataset_to_tensors(&test, Device::Cpu);
        let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], train.num_classes as i64);
        // The attack stages' source model: one epoch of standard training on the whole
        // training set (untimed), so that it classifies like a trained model (which decides how
        // many examples robust evaluation attacks).
        let mut source = Model::new(&spec, Device::Cpu, SEED as i64)?;
        nrf_models::train(
            &mut source,
            &train_full,
            &cfg.train_config(1),
            None,
            None,
            None,
        )
        .context("training the source model of the attack stages")?;
        let source_acc = nrf_models::accuracy(&source, &test_x, &test_y, 500);
        eprintln!(
            "nrf bench --pipeline: source model: 1 epoch on {} images, accuracy {source_acc:.3} on the test subset",
            train_full.len()
        );
        let rep_targets = (0..cfg.rep_images.min(train.len())).collect();
        let relabel_indices = (0..cfg.relabel_images.min(train.len())).collect();
        Ok((
            Inputs {
                train,
                test_x,
                test_y,
                source,
                spec,
                rep_targets,
                relabel_indices,
            },
            data,
        ))
    }

    fn rep_config(&self, cfg: &PipelineConfig) -> RepMatchConfig {
        RepMatchConfig {
            steps: cfg.rep_steps,
            step_start: 0.2,
            step_end: 0.002,
            batch_size: cfg.rep_batch,
            distance: nrf_attacks::Distance::L2Squared,
            start: StartMode::OtherImage,
            seed: SEED,
        }
    }

    fn relabel_config(&self, cfg: &PipelineConfig) -> RelabelConfig {
        RelabelConfig {
            rule: TargetRule::Random,
            eps: cfg.relabel_eps,
            steps: cfg.relabel_steps,
            step_size: cfg.relabel_step,
            batch_size: cfg.relabel_batch,
            seed: SEED,
        }
    }

    /// Writes what the Python side reads (see experiments/twin/bench_stages.py).
    fn write_for_python(&self, cfg: &PipelineConfig, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let write = |name: &str, bytes: &[u8]| {
            nrf_data::store::write_atomic(dir.join(name), bytes)
                .with_context(|| format!("writing {}", dir.join(name).display()))
        };
        write("train_x.f32", &f32s(&self.train.images))?;
        write("train_y.i64", &i64s(&self.train.labels))?;
        write(
            "test_x.f32",
            &f32s(&nrf_models::tensor_to_vec(&self.test_x)?),
        )?;
        write(
            "test_y.i64",
            &i64s(&Vec::<i64>::try_from(&self.test_y.contiguous())?),
        )?;
        let vars = self.source.vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        let (mut blob, mut manifest) = (Vec::new(), Vec::new());
        for name in names {
            let t = &vars[name];
            manifest.push(serde_json::json!([name, t.size(), blob.len()]));
            blob.extend(nrf_models::tensor_to_vec(t)?);
        }
        write("weights.f32", &f32s(&blob))?;
        write("weights.json", serde_json::to_string(&manifest)?.as_bytes())?;
        let rep = self.rep_config(cfg);
        let starts = choose_starts(&self.rep_targets, self.train.len(), rep.seed);
        let rc = self.relabel_config(cfg);
        let ys: Vec<i64> = self
            .relabel_indices
            .iter()
            .map(|&i| self.train.labels[i])
            .collect();
        let targets = choose_targets(&ys, self.train.num_classes as i64, rc.rule, rc.seed);
        let indices = serde_json::json!({
            "rep_targets": self.rep_targets,
            "rep_starts": starts,
            "relabel_indices": self.relabel_indices,
            "relabel_targets": targets,
        });
        write("indices.json", indices.to_string().as_bytes())
    }
}

/// The Rust side of one stage; returns a few result values and, for robust evaluation, the work.
fn run_rust_stage(
    stage: Stage,
    cfg: &PipelineConfig,
    inp: &Inputs,
    scratch: &Path,
) -> Result<(serde_json::Value, Option<AttackWork>)> {
    let curve = (cfg.curve_n > 0).then(|| {
        let n = (cfg.curve_n as i64).min(inp.test_x.size()[0]);
        (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n))
    });
    let curve = curve.as_ref().map(|(x, y)| (x, y));
    match stage {
        Stage::TrainStd | Stage::TrainRob => {
            let (n, epochs) = match stage {
                Stage::TrainStd => (cfg.std_images, cfg.std_epochs),
                _ => (cfg.rob_images, cfg.rob_epochs),
            };
            let data = pick(
                &inp.train,
                &(0..n.min(inp.train.len())).collect::<Vec<_>>(),
                "bench",
            );
            let adv = match stage {
                Stage::TrainRob => Some(AdvTraining::new(
                    Box::new(L2::new(cfg.rob_eps)?),
                    PgdConfig::new(cfg.rob_steps, 2.5 * cfg.rob_eps / cfg.rob_steps as f64)
                        .with_random_start(true)
                        .with_use_best(true),
                )?),
                _ => None,
            };
            let mut model = Model::new(&inp.spec, Device::Cpu, SEED as i64)?;
            let h = nrf_models::train(
                &mut model,
                &data,
                &cfg.train_config(epochs),
                adv.as_ref().map(|a| a as &dyn BatchPerturber),
                curve,
                Some(&scratch.join("ckpt")),
            )?;
            let last = h.last().ok_or_else(|| anyhow!("no epoch trained"))?;
            Ok((
                serde_json::json!({"train_loss": last.train_loss, "train_acc": last.train_acc}),
                None,
            ))
        }
        Stage::RepMatch => {
            let r = nrf_features::repmatch::build(
                &inp.source,
                &inp.train,
                &inp.rep_targets,
                &inp.rep_config(cfg),
                Device::Cpu,
                &scratch.join("chunks"),
                false,
            )?;
            Ok((
                serde_json::json!({"final_rel_err": r.summary.final_rel_err}),
                None,
            ))
        }
        Stage::Relabel => {
            let r = nrf_features::relabel::build(
                &inp.source,
                &inp.train,
                &inp.relabel_indices,
                &inp.relabel_config(cfg),
                Device::Cpu,
                &scratch.join("chunks"),
                false,
            )?;
            Ok((
                serde_json::json!({"success_rate": r.summary.success_rate}),
                None,
            ))
        }
        Stage::RobustEval => {
            let n = (cfg.eval_images as i64).min(inp.test_x.size()[0]);
            let (x, y) = (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n));
            let mut grid: Vec<(Box<dyn ThreatModel>, PgdConfig)> = Vec::new();
            for (norm, eps) in cfg.grid() {
                let threat: Box<dyn ThreatModel> = match norm {
                    "L2" => Box::new(L2::new(eps)?),
                    _ => Box::new(Linf::new(eps)?),
                };
                grid.push((threat, PgdConfig::eval(eps, cfg.eval_steps)));
            }
            tch::manual_seed(SEED as i64);
            let evals = evaluate_grid(&inp.source, &x, &y, &grid, cfg.eval_batch, false)?;
            Ok((
                serde_json::json!({"acc": evals.iter().map(|e| e.acc).collect::<Vec<_>>()}),
                None,
            ))
        }
    }
}

/// The work of the robust-evaluation stage (one more, untimed, evaluation).
fn eval_work(cfg: &PipelineConfig, inp: &Inputs) -> Result<AttackWork> {
    let n = (cfg.eval_images as i64).min(inp.test_x.size()[0]);
    let (x, y) = (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n));
    let mut total = AttackWork::default();
    tch::manual_seed(SEED as i64);
    for (norm, eps) in cfg.grid() {
        let threat: Box<dyn ThreatModel> = match norm {
            "L2" => Box::new(L2::new(eps)?),
            _ => Box::new(Linf::new(eps)?),
        };
        let out = nrf_attacks::robust_evaluation(
            &inp.source,
            &x,
            &y,
            threat.as_ref(),
            &PgdConfig::eval(eps, cfg.eval_steps),
            cfg.eval_batch,
            false,
        )?;
        total.add(&out.work);
    }
    Ok(total)
}

/// Seconds of `steps` bare training steps on one fixed batch of the standard stage's size.
fn bare_steps_s(cfg: &PipelineConfig, inp: &Inputs) -> Result<f64> {
    let model = Model::new(&inp.spec, Device::Cpu, SEED as i64)?;
    let mut sgd = Sgd::new(model.vs.trainable_variables(), 0.9, true, 5e-4);
    let n = cfg.std_images.min(inp.train.len());
    let bs = cfg.batch_size.min(n);
    let idx: Vec<usize> = (0..bs).collect();
    let x = images_to_tensor(&inp.train, &idx, Device::Cpu);
    let y = Tensor::from_slice(&idx.iter().map(|&i| inp.train.labels[i]).collect::<Vec<_>>());
    // Full batches only: the same number of example rows as the stage, near enough.
    let steps = cfg.std_epochs * n.div_ceil(bs);
    let t = Instant::now();
    for _ in 0..steps {
        let (loss, _) = step_on_device(&model, &mut sgd, &x, &y, 0.01, None)?;
        drop(loss);
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The twin's folder.
pub fn twin_dir() -> PathBuf {
    std::env::var_os(TWIN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/twin")))
}

/// The twin's stage worker (`bench_stages.py --serve`).
struct PyStages(JsonWorker);

impl std::ops::Deref for PyStages {
    type Target = JsonWorker;
    fn deref(&self) -> &JsonWorker {
        &self.0
    }
}

impl std::ops::DerefMut for PyStages {
    fn deref_mut(&mut self) -> &mut JsonWorker {
        &mut self.0
    }
}

impl PyStages {
    fn start(python: &Path) -> std::result::Result<(PyStages, Hello), String> {
        let script = twin_dir().join("bench_stages.py");
        if !script.exists() {
            return Err(format!(
                "{} does not exist (set {TWIN_DIR_ENV} to the twin's folder); Python column skipped",
                script.display()
            ));
        }
        let args: [&std::ffi::OsStr; 2] = [script.as_os_str(), "--serve".as_ref()];
        let (worker, hello) = JsonWorker::start(python, &args, "the twin could not be imported")?;
        Ok((PyStages(worker), hello))
    }

    fn stage(
        &mut self,
        stage: Stage,
        threads: i32,
        cfg: &PipelineConfig,
        inp: &Inputs,
    ) -> Result<StageRun> {
        let section = |epochs: usize, attack: Option<serde_json::Value>| {
            let t = cfg.train_config(epochs);
            let (lr, warmup) = match t.schedule {
                nrf_models::LrSchedule::CosineWarmup { lr, warmup } => (lr, warmup),
                _ => (0.05, 0.05),
            };
            serde_json::json!({
                "epochs": epochs, "batch_size": t.batch_size, "lr": lr, "schedule": "cosine",
                "warmup": warmup, "momentum": t.momentum, "nesterov": t.nesterov,
                "weight_decay": t.weight_decay, "crop_pad": 0, "milestones": [], "gamma": 0.1,
                "attack": attack,
            })
        };
        let params = match stage {
            Stage::TrainStd => serde_json::json!({
                "n": cfg.std_images, "curve_n": cfg.curve_n, "seed": SEED,
                "section": section(cfg.std_epochs, None),
            }),
            Stage::TrainRob => serde_json::json!({
                "n": cfg.rob_images, "curve_n": cfg.curve_n, "seed": SEED,
                "section": section(cfg.rob_epochs, Some(serde_json::json!({
                    "norm": "l2", "eps": cfg.rob_eps, "steps": cfg.rob_steps,
                    "step_factor": 2.5, "random_start": true,
                }))),
            }),
            Stage::RepMatch => {
                let r = inp.rep_config(cfg);
                serde_json::json!({"n": inp.rep_targets.len(), "section": {
                    "steps": r.steps, "step_start": r.step_start, "step_end": r.step_end,
                    "batch_size": r.batch_size, "distance": "l2_squared", "start": "other_image",
                }})
            }
            Stage::Relabel => serde_json::json!({
                "n": inp.relabel_indices.len(), "eps": cfg.relabel_eps,
                "steps": cfg.relabel_steps, "step_size": cfg.relabel_step,
                "batch_size": cfg.relabel_batch,
            }),
            Stage::RobustEval => serde_json::json!({
                "n": cfg.eval_images, "grid": cfg.grid(), "steps": cfg.eval_steps,
                "step_factor": 2.5, "batch_size": cfg.eval_batch, "seed": SEED,
            }),
        };
        let run: StageRun = self.request(serde_json::json!({
            "cmd": "stage", "stage": stage.name(), "threads": threads,
            "channels_last": cfg.python_channels_last, "params": params,
        }))?;
        if !(run.wall_s.is_finite() && run.wall_s >= 0.0) {
            bail!("`{}` returned a bad wall time {}", self.what, run.wall_s);
        }
        Ok(run)
    }
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
    let (mut python_version, mut torch_version) = (None, None);
    let mut py = match &cfg.python {
        None => {
            notes.push("Python not requested: Rust only".into());
            None
        }
        Some(p) => match PyStages::start(p) {
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
    if !reset_peak_rss() {
        notes.push("/proc/self/clear_refs could not be written: peak RSS is each process's peak so far, not per stage".into());
    }
    let flops = fmnist_cnn_flops([1, 28, 28], inp.train.num_classes as i64);
    let mut matmul = Vec::new();
    let mut rows = Vec::new();
    let mut loop_overhead = Vec::new();
    let mut counter = 0usize;
    let mut work_cache: Option<AttackWork> = None;
    for &threads in &cfg.threads {
        tch::set_num_threads(threads);
        let gf = matmul_gflops();
        eprintln!("nrf bench --pipeline: {threads} thread(s): f32 matmul {gf:.1} GFLOP/s");
        matmul.push((threads, gf));
        for &stage in &cfg.stages {
            let mut rust_runs = Vec::new();
            let mut python_runs = Vec::new();
            for rep in 0..cfg.reps {
                for python_turn in [rep % 2 == 1, rep % 2 == 0] {
                    if !python_turn {
                        counter += 1;
                        let scratch = work.join(format!("rust-{counter}"));
                        let reset = reset_peak_rss();
                        let t = Instant::now();
                        let (result, _) =
                            run_rust_stage(stage, cfg, &inp, &scratch).with_context(|| {
                                format!("Rust stage {} ({threads} threads)", stage.name())
                            })?;
                        let wall_s = t.elapsed().as_secs_f64();
                        rust_runs.push(StageRun {
                            wall_s,
                            peak_rss_kb: peak_rss_kb(),
                            rss_reset: reset,
                            result,
                        });
                        if scratch.exists() {
                            std::fs::remove_dir_all(&scratch)
                                .with_context(|| format!("removing {}", scratch.display()))?;
                        }
                    } else if let Some(p) = py.as_mut() {
                        match p.stage(stage, threads, cfg, &inp) {
                            Ok(r) => python_runs.push(r),
                            Err(e) => {
                                let note = format!("Python stopped answering at {} ({threads} threads): {e:#}; later Python cells are empty", stage.name());
                                eprintln!("nrf bench --pipeline: {note}");
                                notes.push(note);
                                py = None;
                                python_runs.clear();
                            }
                        }
                    }
                }
            }
            let rust_s = median(&rust_runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
            let python_s = (!python_runs.is_empty())
                .then(|| median(&python_runs.iter().map(|r| r.wall_s).collect::<Vec<_>>()));
            let attack_work = if stage == Stage::RobustEval {
                if work_cache.is_none() {
                    work_cache = Some(eval_work(cfg, &inp)?);
                }
                work_cache
            } else {
                None
            };
            let nominal = stage_flops(cfg, stage, flops, attack_work.map_or(0, |w| w.attacked));
            let share = |s: f64| nominal / s / 1e9 / gf;
            eprintln!(
                "nrf bench --pipeline: {:<12} {threads} thread(s): Rust {rust_s:.2} s, Python {}",
                stage.name(),
                python_s.map_or("n/a".into(), |p| format!("{p:.2} s"))
            );
            rows.push(PipelineRow {
                stage,
                threads,
                images: cfg.images(stage),
                nominal_gflop: nominal / 1e9,
                rust_s,
                python_s,
                ratio: python_s.map(|p| p / rust_s),
                rust_share: share(rust_s),
                python_share: python_s.map(share),
                rust_rss_mib: mib(&rust_runs),
                python_rss_mib: mib(&python_runs),
                rust_runs,
                python_runs,
                attack_work,
            });
            if stage == Stage::TrainStd {
                let steps_s = bare_steps_s(cfg, &inp)?;
                loop_overhead.push(LoopOverhead {
                    threads,
                    stage_s: rust_s,
                    steps_s,
                    overhead: rust_s / steps_s - 1.0,
                });
            }
        }
    }
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
    })
}

/// `nrf bench --pipeline [--quick] [--reps N] [--out PATH]`: runs the benchmark, writes the JSON
/// report to `out` and the markdown table next to it (`.md`), both atomically.
pub fn run(reps: Option<usize>, quick: bool, out: &Path) -> Result<PipelineReport> {
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
    run_config(&cfg, out)
}

/// [`run_pipeline`] for `cfg`, then writes `out` (JSON) and `out` with extension `.md`.
pub fn run_config(cfg: &PipelineConfig, out: &Path) -> Result<PipelineReport> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = out.file_stem().map_or("bench-pipeline".into(), |s| {
        s.to_string_lossy().into_owned()
    });
    let report = run_pipeline(cfg, &dir.join(format!(".{stem}-work")))?;
    nrf_data::store::write_json_atomic(out, &report)
        .with_context(|| format!("writing {}", out.display()))?;
    let md = out.with_extension("md");
    nrf_data::store::write_atomic(&md, report.to_markdown().as_bytes())
        .with_context(|| format!("writing {}", md.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::PYTHON_ENV;

    #[test]
    fn flops_of_the_fmnist_cnn() {
        let (f, c1) = fmnist_cnn_flops([1, 28, 28], 10);
        // 112,896 + 903,168 + 903,168 + 802,816 + 2,560 multiply-adds.
        assert_eq!(f, 2.0 * 2_724_608.0);
        assert_eq!(c1, 2.0 * 112_896.0);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let ok = PipelineConfig::tiny();
        assert!(ok.validate().is_ok());
        for bad in [
            PipelineConfig {
                reps: 0,
                ..ok.clone()
            },
            PipelineConfig {
                threads: vec![],
                ..ok.clone()
            },
            PipelineConfig {
                rep_steps: 0,
                ..ok.clone()
            },
            PipelineConfig {
                stages: vec![],
                ..ok.clone()
            },
            PipelineConfig {
                relabel_eps: f64::NAN,
                ..ok.clone()
            },
            PipelineConfig {
                eval_l2_eps: vec![],
                eval_linf_eps: vec![],
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    /// Tiny sizes end to end: every stage runs, the JSON and the markdown table are written.
    /// The Python side runs when NRF_PYTHON names a Python with torch (`cargo xtask test`);
    /// otherwise it is skipped with a note.
    #[test]
    fn tiny_pipeline_bench_writes_its_table() {
        let python = std::env::var_os(PYTHON_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if python.is_none() {
            eprintln!("{PYTHON_ENV} is not set: the Python side of the pipeline bench is skipped");
        }
        let cfg = PipelineConfig {
            python: python.clone(),
            data_dir: None,
            ..PipelineConfig::tiny()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bench-pipeline.json");
        let r = run_config(&cfg, &out).unwrap();
        assert_eq!(r.rows.len(), Stage::ALL.len());
        assert_eq!(r.data, "synthetic");
        for row in &r.rows {
            assert!(row.rust_s > 0.0 && row.rust_share > 0.0, "{row:?}");
            assert_eq!(row.rust_runs.len(), 1);
            assert_eq!(
                row.python_s.is_some(),
                python.is_some(),
                "{row:?} {:?}",
                r.notes
            );
        }
        let work = r.rows[4].attack_work.expect("robust evaluation's work");
        assert!(work.full_forward_rows >= work.forward_rows);
        let md = std::fs::read_to_string(out.with_extension("md")).unwrap();
        assert!(
            md.contains("| stage | work | threads | Rust s | Python s | ratio |"),
            "{md}"
        );
        assert!(md.contains("**whole pipeline**"), "{md}");
        let back: PipelineReport = nrf_data::store::read_json(&out).unwrap();
        assert_eq!(back.rows.len(), r.rows.len());
        assert!(!dir.path().join(".bench-pipeline-work").exists());
    }
}
