//! D_rand and D_det: each training image is pushed by a targeted L2 PGD attack on a standard
//! model towards a class t and relabelled t. D_rand draws t uniformly over all classes;
//! D_det uses t = (y + 1) mod C. What remains useful for the real test set is then only the
//! non-robust features the attack planted.
use crate::chunks::{run_chunks, ChunkOut};
use crate::targeted::{check_classes, targeted_objective, TargetedAttack};
use anyhow::{bail, Result};
use nrf_attacks::{per_example_norm, pgd, pgd_by_rows, PgdConfig, L2};
use nrf_models::{images_to_tensor, Classifier};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How the new label t is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetRule {
    /// t uniform over all classes (t = y possible, as in the released code of others).
    Random,
    /// t = (y + 1) mod C.
    Deterministic,
}

/// Hyper-parameters of the targeted attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelabelConfig {
    pub rule: TargetRule,
    /// L2 radius in \[0, 1\] pixel space.
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub batch_size: usize,
    pub seed: u64,
}

/// Statistics columns of the stored `stats` tensor.
pub const STAT_COLUMNS: [&str; 4] = ["source_label", "target", "success", "dist_to_x"];

/// Summary of a construction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelabelSummary {
    pub n: usize,
    /// Fraction that the source model classifies as the target t.
    pub success_rate: f64,
    /// Fraction with t = y (only possible for D_rand).
    pub target_equals_label: f64,
    pub mean_dist_to_x: f64,
    /// Chunks this process computed (the rest were loaded from an earlier, interrupted run):
    /// for the log only, never saved, since a resumed run's count differs from an uninterrupted
    /// run's while its data set does not.
    #[serde(skip)]
    pub chunks_computed: usize,
}

/// The output dataset: adversarial images with their new labels t.
pub struct Relabelled {
    pub images: Tensor,
    pub labels: Tensor,
    pub stats: Tensor,
    pub summary: RelabelSummary,
}

/// The targets t for the labels `y` under `rule`.
pub fn choose_targets(labels: &[i64], classes: i64, rule: TargetRule, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    labels
        .iter()
        .map(|&y| match rule {
            TargetRule::Random => rng.gen_range(0..classes),
            TargetRule::Deterministic => (y + 1) % classes,
        })
        .collect()
}

/// Builds the relabelled dataset from the examples `indices` of `data` with the paper's
/// targeted attack (cross-entropy, no EOT).
pub fn build(
    model: &dyn Classifier,
    data: &nrf_data::Dataset,
    indices: &[usize],
    cfg: &RelabelConfig,
    device: Device,
    work_dir: &Path,
    progress: bool,
) -> Result<Relabelled> {
    let paper = TargetedAttack::default();
    build_with(
        model, data, indices, cfg, &paper, device, work_dir, progress,
    )
}

/// [`build`] with another targeted attack (a margin loss, EOT: see [`crate::targeted`]). EOT's
/// random transformations of chunk k are drawn from a stream seeded by `cfg.seed` and k, so a
/// resumed construction equals an uninterrupted one.
#[allow(clippy::too_many_arguments)] // build's arguments plus the attack
pub fn build_with(
    model: &dyn Classifier,
    data: &nrf_data::Dataset,
    indices: &[usize],
    cfg: &RelabelConfig,
    attack: &TargetedAttack,
    device: Device,
    work_dir: &Path,
    progress: bool,
) -> Result<Relabelled> {
    if cfg.batch_size == 0 || cfg.steps == 0 {
        bail!("relabel construction: steps and batch_size must be at least 1");
    }
    check_classes(attack, data.num_classes)?;
    let threat = L2::new(cfg.eps)?;
    let pgd_cfg = PgdConfig::new(cfg.steps, cfg.step_size)
        .with_use_best(true)
        .with_random_start(false);
    let ys: Vec<i64> = indices.iter().map(|&i| data.labels[i]).collect();
    let targets = choose_targets(&ys, data.num_classes as i64, cfg.rule, cfg.seed);
    let n_chunks = indices.len().div_ceil(cfg.batch_size);
    let label = match cfg.rule {
        TargetRule::Random => "D_rand",
        TargetRule::Deterministic => "D_det",
    };
    let (out, computed) = run_chunks(work_dir, n_chunks, label, progress, |k| {
        let lo = k * cfg.batch_size;
        let hi = (lo + cfg.batch_size).min(indices.len());
        let x = images_to_tensor(data, &indices[lo..hi], device);
        let t = Tensor::from_slice(&targets[lo..hi]).to_device(device);
        let eot_seed = cfg.seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let res = if attack.eot.is_none() {
            // In blocks of rows (faster on the CPU, on as many cores as the stage has threads;
            // the same images bit for bit). EOT draws its transformations for the whole chunk at
            // every step, so it runs on the whole chunk.
            pgd_by_rows(&pgd_cfg, model, [&x, &t], |m, [xb, tb]| {
                let mut obj = targeted_objective(m, &tb, attack, eot_seed);
                pgd(&threat, &xb, &xb, &pgd_cfg, &mut obj, None)
            })?
        } else {
            let mut obj = targeted_objective(model, &t, attack, eot_seed);
            pgd(&threat, &x, &x, &pgd_cfg, &mut obj, None)?
        };
        let xa = res.x.detach();
        let pred = tch::no_grad(|| model.logits(&xa, false).argmax(-1, false));
        let stats = Tensor::stack(
            &[
                Tensor::from_slice(&ys[lo..hi])
                    .to_device(device)
                    .to_kind(Kind::Float),
                t.to_kind(Kind::Float),
                pred.eq_tensor(&t).to_kind(Kind::Float),
                per_example_norm(&(&xa - &x), 2.0).to_kind(Kind::Float),
            ],
            1,
        );
        Ok(ChunkOut {
            images: xa.to_device(Device::Cpu),
            labels: t.to_device(Device::Cpu),
            stats: stats.to_device(Device::Cpu),
        })
    })?;
    let mean = |c: i64| out.stats.select(1, c).mean(Kind::Double).double_value(&[]);
    let same = out
        .stats
        .select(1, 0)
        .eq_tensor(&out.stats.select(1, 1))
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let summary = RelabelSummary {
        n: indices.len(),
        success_rate: mean(2),
        target_equals_label: same,
        mean_dist_to_x: mean(3),
        chunks_computed: computed,
    };
    Ok(Relabelled {
        images: out.images,
        labels: out.labels,
        stats: out.stats,
        summary,
    })
}
