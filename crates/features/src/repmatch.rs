//! D_R and D_NR: images synthesised so that a model's representation g matches the one of a real
//! image. For every target (x, y): start at x0 (another, randomly chosen training image, or
//! noise), minimise `dist(g(z), g(x))` over z in \[0, 1\] by normalised-gradient steps (PGD with the
//! unconstrained threat model, i.e. the clamp to \[0, 1\] only: the same machinery as the attacks),
//! keep the last iterate and the label y. D_R uses a robust model, D_NR a standard one.
use crate::chunks::{run_chunks, ChunkOut};
use anyhow::{bail, Result};
use nrf_attacks::{
    per_example_norm, pgd, pgd_by_rows, rep_distance, rep_match, Distance, PgdConfig, StepSize,
    Unconstrained,
};
use nrf_models::{images_to_tensor, Classifier, RepRelu};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Where the optimisation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// Another training image, drawn uniformly, never the target itself (the paper).
    OtherImage,
    /// Uniform noise in \[0, 1\] (the appendix variant).
    Noise,
}

/// Hyper-parameters of representation matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepMatchConfig {
    /// Normalised-gradient steps.
    pub steps: usize,
    /// Step size (L2 length of each step in pixel space), cosine-decayed from `step_start` to `step_end`.
    pub step_start: f64,
    pub step_end: f64,
    /// Examples optimised together (also the resume granularity).
    pub batch_size: usize,
    /// Distance in representation space.
    pub distance: Distance,
    pub start: StartMode,
    /// Seed of the start-image choice.
    pub seed: u64,
    /// How the gradient passes the ReLU that ends g: [`RepRelu::Fake`] is the paper's
    /// inversion (the robustness library's `fake_relu=True`). Written into the configuration
    /// (and so into the keys built from it) only when it is FakeReLU: a set built with the plain
    /// ReLU keeps the key it had before this field existed.
    #[serde(default, skip_serializing_if = "is_plain_relu")]
    pub relu: RepRelu,
}

fn is_plain_relu(r: &RepRelu) -> bool {
    *r == RepRelu::Relu
}

/// Per-example statistics, in the column order of the stored `stats` tensor.
pub const STAT_COLUMNS: [&str; 5] = [
    "start_index",
    "init_rel_err",
    "final_rel_err",
    "dist_to_x",
    "dist_to_x0",
];

/// Summary of a construction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepMatchSummary {
    pub n: usize,
    pub init_rel_err: f64,
    pub final_rel_err: f64,
    pub mean_dist_to_x: f64,
    pub mean_dist_to_x0: f64,
    /// Chunks this process computed (the rest were loaded from an earlier, interrupted run):
    /// for the log only, never saved, since a resumed run's count differs from an uninterrupted
    /// run's while its data set does not.
    #[serde(skip)]
    pub chunks_computed: usize,
}

/// The output: images, labels (those of the targets), starts and statistics.
pub struct RepMatched {
    pub images: Tensor,
    pub labels: Tensor,
    /// Index into the training set of each start image (-1 for noise).
    pub start_indices: Vec<i64>,
    pub stats: Tensor,
    pub summary: RepMatchSummary,
}

/// Chooses, for each target index, a start index from `0..n` different from it.
pub fn choose_starts(targets: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    targets
        .iter()
        .map(|&t| loop {
            let j = rng.gen_range(0..n);
            if j != t || n == 1 {
                break j;
            }
        })
        .collect()
}

/// Builds representation-matched images for `targets` (indices into `data`) with `model`.
/// Chunks are stored under `work_dir`, so an interrupted run resumes.
pub fn build(
    model: &dyn Classifier,
    data: &nrf_data::Dataset,
    targets: &[usize],
    cfg: &RepMatchConfig,
    device: Device,
    work_dir: &Path,
    progress: bool,
) -> Result<RepMatched> {
    if cfg.steps == 0 || cfg.batch_size == 0 {
        bail!("representation matching: steps and batch_size must be at least 1");
    }
    if targets.iter().any(|&t| t >= data.len()) {
        bail!(
            "representation matching: a target index is outside the dataset ({} examples)",
            data.len()
        );
    }
    if cfg.relu == RepRelu::Fake && !model.has_fake_relu() {
        tracing::warn!(
            "representation matching: the model computes its own ReLUs (a TorchScript model), so \
             the paper's FakeReLU cannot be applied at the end of its representation: units dead \
             at an iterate get no gradient towards their targets"
        );
    }
    let starts = choose_starts(targets, data.len(), cfg.seed);
    let pgd_cfg = PgdConfig::new(cfg.steps, cfg.step_start)
        .with_step_size(StepSize::Cosine {
            start: cfg.step_start,
            end: cfg.step_end,
        })
        .with_use_best(false);
    let n_chunks = targets.len().div_ceil(cfg.batch_size);
    let (out, computed) = run_chunks(work_dir, n_chunks, "rep-matching", progress, |k| {
        let lo = k * cfg.batch_size;
        let hi = (lo + cfg.batch_size).min(targets.len());
        let x = images_to_tensor(data, &targets[lo..hi], device);
        let x0 = match cfg.start {
            StartMode::OtherImage => images_to_tensor(data, &starts[lo..hi], device),
            StartMode::Noise => {
                tch::manual_seed(cfg.seed as i64 + k as i64);
                x.rand_like()
            }
        };
        let target_rep = tch::no_grad(|| model.forward_rep(&x, false).1);
        let rel = |z: &Tensor| {
            tch::no_grad(|| {
                rep_distance(
                    &model.forward_rep(z, false).1,
                    &target_rep,
                    Distance::L2Relative,
                )
            })
        };
        let init = rel(&x0);
        // In blocks of rows (faster on the CPU, on as many cores as the stage has threads; the
        // same images bit for bit).
        let res = pgd_by_rows(&pgd_cfg, model, [&x0, &target_rep], |m, [x0b, tb]| {
            let mut obj = rep_match(m, &tb, cfg.distance, cfg.relu);
            pgd(&Unconstrained, &x0b, &x0b, &pgd_cfg, &mut obj, None)
        })?;
        let z = res.x;
        let fin = rel(&z);
        let start_col = match cfg.start {
            StartMode::OtherImage => {
                Tensor::from_slice(&starts[lo..hi].iter().map(|&s| s as f32).collect::<Vec<_>>())
                    .to_device(device)
            }
            StartMode::Noise => Tensor::full([(hi - lo) as i64], -1.0, (Kind::Float, device)),
        };
        let stats = Tensor::stack(
            &[
                start_col,
                init.to_kind(Kind::Float),
                fin.to_kind(Kind::Float),
                per_example_norm(&(&z - &x), 2.0),
                per_example_norm(&(&z - &x0), 2.0),
            ],
            1,
        );
        let labels = Tensor::from_slice(
            &targets[lo..hi]
                .iter()
                .map(|&i| data.labels[i])
                .collect::<Vec<_>>(),
        );
        Ok(ChunkOut {
            images: z.detach().to_device(Device::Cpu),
            labels,
            stats: stats.to_device(Device::Cpu),
        })
    })?;
    let mean = |c: i64| out.stats.select(1, c).mean(Kind::Double).double_value(&[]);
    let summary = RepMatchSummary {
        n: targets.len(),
        init_rel_err: mean(1),
        final_rel_err: mean(2),
        mean_dist_to_x: mean(3),
        mean_dist_to_x0: mean(4),
        chunks_computed: computed,
    };
    let start_indices = Vec::<f32>::try_from(&out.stats.select(1, 0).contiguous())?
        .into_iter()
        .map(|v| v as i64)
        .collect();
    Ok(RepMatched {
        images: out.images,
        labels: out.labels,
        start_indices,
        stats: out.stats,
        summary,
    })
}
