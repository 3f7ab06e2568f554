//! What `nrf bench --pipeline` runs: the amount of work of every stage ([`PipelineConfig`]).
use super::{Stage, SEED};
use crate::bench::python_from_env;
use anyhow::{bail, Result};
use nrf_models::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The amount of work of every stage, and how the benchmark runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// Timed runs of each stage per side and thread count (Rust and Python alternate).
    pub reps: usize,
    /// libtorch CPU thread counts of the rounds where one side runs at a time.
    pub threads: Vec<i32>,
    /// A last round with both sides at once, one libtorch thread each, so that each runs
    /// beside another busy process, as each of nrf's two 1-thread workers does in its pipeline
    /// (needs the twin; absent in older reports: false).
    #[serde(default)]
    pub side_by_side: bool,
    /// Python interpreter with torch (`None`: Rust only).
    pub python: Option<PathBuf>,
    /// Run the twin's convolutions channels-last (the twin's default: faster on CPU there).
    pub python_channels_last: bool,
    /// Start the twin with nrf's glibc malloc settings ([`nrf_models::runtime::malloc_env`]:
    /// activation buffers stay mapped between steps, as `nrf` keeps them), so that the two sides
    /// differ in their code, not their allocator. Default on since session 19; older reports ran
    /// the twin with glibc's defaults (absent: false), unless `MALLOC_*` was exported.
    #[serde(default)]
    pub python_malloc_as_nrf: bool,
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
    /// The ensemble evaluation (AutoAttack's flow): test images, then APGD-CE and APGD-T
    /// (every other class as a target) of `ens_steps` steps each at L2 radius `ens_eps`, each
    /// on the examples still robust. Older reports have no such fields: the defaults.
    #[serde(default = "default_ens_images")]
    pub ens_images: usize,
    /// See `ens_images`.
    #[serde(default = "default_ens_steps")]
    pub ens_steps: usize,
    /// See `ens_images`.
    #[serde(default = "default_ens_eps")]
    pub ens_eps: f64,
}

fn default_ens_images() -> usize {
    200
}

fn default_ens_steps() -> usize {
    50
}

fn default_ens_eps() -> f64 {
    0.5
}

impl Default for PipelineConfig {
    /// The spec's hyper-parameters (../shared/spec/fashion-mnist.md) at sizes that take about a
    /// minute per side, stage round and thread count on a 2-core machine.
    fn default() -> Self {
        PipelineConfig {
            reps: 5,
            threads: vec![1, 2],
            side_by_side: true,
            python: Some(python_from_env()),
            python_channels_last: true,
            python_malloc_as_nrf: true,
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
            ens_images: default_ens_images(),
            ens_steps: default_ens_steps(),
            ens_eps: default_ens_eps(),
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
            ens_images: 40,
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
            ens_images: 8,
            ens_steps: 3,
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
            ("ens_images", self.ens_images),
            ("ens_steps", self.ens_steps),
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
            ("ens_eps", self.ens_eps),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("bench --pipeline: {what} must be positive and finite, got {v}");
            }
        }
        Ok(())
    }
    pub(super) fn train_images(&self) -> usize {
        self.std_images
            .max(self.rob_images)
            .max(self.rep_images)
            .max(self.relabel_images)
            .max(2)
    }
    pub(super) fn test_images(&self) -> usize {
        self.curve_n.max(self.eval_images).max(self.ens_images)
    }
    pub(super) fn grid(&self) -> Vec<(&'static str, f64)> {
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
            Stage::Ensemble => self.ens_images,
        }
    }
    pub(super) fn train_config(&self, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            seed: SEED,
            ..TrainConfig::default()
        }
    }
}
