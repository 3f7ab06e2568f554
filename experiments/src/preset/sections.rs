//! The sections of a preset: data, model, attack, training, evaluation, representation
//! matching and relabelling.
use super::validate::check;
use anyhow::Result;
use nrf_attacks::{Distance, Norm};
use nrf_features::repmatch::StartMode;
use nrf_models::{Arch, Init, Precision};
use nrf_results::eps_eq;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub dataset: DatasetName,
    /// Directory of the files; `--data-dir` overrides it.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Use only the first N training / test images (0 = all).
    #[serde(default)]
    pub train_limit: usize,
    #[serde(default)]
    pub test_limit: usize,
    /// Image side for image-folder datasets (pixels).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Images per class for image-folder datasets (None = all).
    #[serde(default)]
    pub max_per_class: Option<usize>,
}

/// `data.dataset`: the data sets nrf reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    FashionMnist,
    Mnist,
    Cifar10,
    RestrictedImagenet,
}

impl DatasetName {
    /// As preset files spell it: "fashion-mnist", "mnist", "cifar10", "restricted-imagenet".
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::RestrictedImagenet => "restricted-imagenet",
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As preset files spell it; an error lists the accepted names.
impl std::str::FromStr for DatasetName {
    type Err = serde::de::value::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use serde::de::IntoDeserializer;
        DatasetName::deserialize(s.into_deserializer())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub arch: Arch,
    /// Per-channel normalisation inside the model (defaults: mean 0, std 1).
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    #[serde(default)]
    pub std: Option<Vec<f64>>,
    /// Weight initialisation: "pytorch" (PyTorch's defaults, as the paper's code; the default)
    /// or "tch" (tch's defaults, ~2.45x wider conv/linear weights; for the ablation).
    #[serde(default)]
    pub init: Init,
    /// The arithmetic of its layers: "f32" (as the paper's code; the default) or "bf16"
    /// (bfloat16 convolutions and linear layers, f32 weights: faster on CPUs with bfloat16
    /// arithmetic; `model.arch` must be fmnist_cnn, and the extras' models of other
    /// architectures run in f32). Left out of serialised sections when f32.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSection {
    /// "l2" or "linf".
    pub norm: Norm,
    /// Radius in \[0, 1\] pixel units.
    pub eps: f64,
    pub steps: usize,
    /// Step size = step_factor * eps / steps.
    #[serde(default = "default_step_factor")]
    pub step_factor: f64,
    #[serde(default = "yes")]
    pub random_start: bool,
}

fn default_step_factor() -> f64 {
    2.5
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub schedule: Schedule,
    /// Warm-up as a fraction of all steps (cosine).
    #[serde(default)]
    pub warmup: f64,
    /// Epochs at which the learning rate is multiplied by `gamma` (step).
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Random-crop padding in pixels with horizontal flips (0 = no augmentation).
    #[serde(default)]
    pub crop_pad: i64,
    /// RandomResizedCrop (torchvision's defaults) with horizontal flips instead of `crop_pad`'s
    /// padded crop: the paper's code's ImageNet transforms.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resized_crop: bool,
    /// ColorJitter(j, j, j) after the crop and flip (the paper's code: 0.25 for CIFAR-10, 0.1
    /// for ImageNet; 0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub color_jitter: f64,
    /// RandomRotation(d) after the jitter, in degrees (the paper's code: 2 for CIFAR-10).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotate_deg: f64,
    /// PCA lighting noise (the paper's code: 0.05 for ImageNet; RGB images only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lighting: f64,
    /// Adversarial training (only for `train_rob`).
    #[serde(default)]
    pub attack: Option<AttackSection>,
    /// `[fresh]` only: how many seeds each fresh model of Figure 2 / Table 1 is trained with
    /// (absent = 1). Seed 0 is the model as with one seed (same stage, same cache key); seed k ≥ 1
    /// is the stage `train:<name>~s<k>` with its own seed. Never serialised, so it is in no cache
    /// key: changing it adds or drops stages and retrains nothing else.
    #[serde(default, skip_serializing)]
    pub seeds: Option<usize>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_gamma() -> f64 {
    0.1
}

/// A training section's learning-rate schedule; its parameters are the section's `lr`,
/// `warmup` (cosine) and `milestones` / `gamma` (step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warm-up then cosine to 0 ([`nrf_models::LrSchedule::CosineWarmup`]).
    Cosine,
    /// The rate times `gamma` at each milestone ([`nrf_models::LrSchedule::Step`]).
    Step,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Size of the fixed random test subset attacked (all models see the same images).
    pub robust_n: usize,
    /// PGD steps of the evaluation attack; step = step_factor * eps / steps, random start.
    pub steps: usize,
    #[serde(default = "default_step_factor")]
    pub step_factor: f64,
    pub l2_eps: Vec<f64>,
    #[serde(default)]
    pub linf_eps: Vec<f64>,
    /// The eps of the headline robust accuracy (the paper: half the robust model's training eps).
    pub headline_eps: f64,
    pub batch_size: usize,
    /// Test images (a fixed random subset) for the per-epoch test-accuracy curves of training;
    /// 0 = the whole test set. A model trained on few images uses fewer, the first
    /// [`EvalSection::curve_images`] of the subset, so that its curve costs at most a tenth of its
    /// training. Final standard accuracy always uses the whole test set. Part of every training
    /// stage's key.
    #[serde(default = "default_curve_n")]
    pub curve_n: usize,
    /// An AutoAttack-style ensemble at the headline threat model (L2, `headline_eps`), run after
    /// the PGD grid on every fully evaluated model: PGD, then each attack of the list on the
    /// examples still robust; an example is robust only if no attack fools it. Absent = PGD only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleSection>,
}

fn default_curve_n() -> usize {
    2000
}

/// `[eval] ensemble = { attacks = ["apgd-ce", "apgd-t"], steps = 100, targets = 9 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSection {
    /// The attacks after PGD, in order.
    pub attacks: Vec<EnsembleMember>,
    /// Steps of each APGD run (AutoAttack: 100).
    #[serde(default = "default_ensemble_steps")]
    pub steps: usize,
    /// Target classes of APGD-T (AutoAttack: 9 = every wrong class of a 10-class problem).
    #[serde(default = "default_ensemble_targets")]
    pub targets: usize,
    /// Random restarts of each APGD run (per target class for APGD-T).
    #[serde(default = "default_one")]
    pub restarts: usize,
    /// Queries of the Square attack: in the ensemble when it lists "square", and always for
    /// the black-box check of the gradient-masking checks (0 = no black-box check).
    #[serde(default = "default_square_queries")]
    pub square_queries: usize,
}

/// One attack of [`EnsembleSection::attacks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnsembleMember {
    /// APGD on the cross-entropy loss.
    #[serde(rename = "apgd-ce")]
    ApgdCe,
    /// APGD on the DLR loss.
    #[serde(rename = "apgd-dlr")]
    ApgdDlr,
    /// APGD-T: the targeted DLR loss towards the `targets` most likely wrong classes.
    #[serde(rename = "apgd-t")]
    ApgdT,
    /// The Square attack (black-box) with `square_queries` queries.
    #[serde(rename = "square")]
    Square,
}

fn default_ensemble_steps() -> usize {
    100
}
fn default_ensemble_targets() -> usize {
    9
}
fn default_one() -> usize {
    1
}
fn default_square_queries() -> usize {
    1000
}

/// The most test images a per-epoch curve evaluates, per training image of the epoch: a tenth of
/// the epoch's training work, a training step's forward and backward passes costing about three
/// forward passes (the curve's). Bounds the curve's overhead at ~10% of the pure step time.
pub const CURVE_IMAGES_PER_TRAINING_IMAGE: f64 = 0.3;

/// The most test images the curve measures per training image and epoch, on average over the
/// epochs, as a fraction (numerator, denominator): a fifth. A curve image's forward pass costs a
/// third to two fifths of a training image's step (measured on the CNN and the MLP, `cargo run
/// --release -p nrf-models --example loop_overhead`), so the curve takes 5-8% of the pure step
/// time and, with the loop's own ~3% (order, batching, sums), the per-epoch overhead stays below
/// 10% ([`EvalSection::curve_every`]).
pub const CURVE_IMAGES_PER_TRAINING_IMAGE_PER_EPOCH: (usize, usize) = (1, 5);

impl EvalSection {
    /// Test images behind the per-epoch accuracy curve of a model trained on `train_n` images,
    /// out of `test_n`: `curve_n` (0: all `test_n`), at most
    /// `CURVE_IMAGES_PER_TRAINING_IMAGE` (0.3) x `train_n` (rounded up), at least one. A 10,000-image
    /// model keeps the default 2,000; Figure 3's 3,000-image models use 900.
    pub fn curve_images(&self, test_n: usize, train_n: usize) -> usize {
        let cap = (CURVE_IMAGES_PER_TRAINING_IMAGE * train_n as f64).ceil() as usize;
        self.curve_subset(test_n).min(cap).max(1)
    }

    /// Every how many epochs the curve of `curve_images` test images is measured for a model
    /// trained on `train_n` images (and always after the last epoch): the fewest epochs that keep
    /// it at `CURVE_IMAGES_PER_TRAINING_IMAGE_PER_EPOCH` (a fifth) test images per training
    /// image and epoch, on average. 1 for every model on 10,000 images or more with the default
    /// 2,000 (the Figure 2 / Table 1 models, C_std, C_rob); 2 for Figure 3's 3,000-image models
    /// (900 images every other epoch) and the train-size extra's 1,000-image ones.
    pub fn curve_every(curve_images: usize, train_n: usize) -> usize {
        let per = CURVE_IMAGES_PER_TRAINING_IMAGE_PER_EPOCH;
        (curve_images * per.1)
            .div_ceil((train_n * per.0).max(1))
            .max(1)
    }

    /// Size of the fixed curve subset out of `test_n` test images: `curve_n`, 0 = all of them.
    pub fn curve_subset(&self, test_n: usize) -> usize {
        match self.curve_n {
            0 => test_n,
            k => k.min(test_n),
        }
    }

    /// The evaluation's PGD at radius `eps` (any norm): `steps` steps of
    /// `step_factor * eps / steps`, random start.
    pub fn pgd_at(&self, eps: f64) -> nrf_attacks::PgdConfig {
        let mut cfg = nrf_attacks::PgdConfig::eval(eps, self.steps);
        cfg.step_size = nrf_attacks::StepSize::Constant(self.step_factor * eps / self.steps as f64);
        cfg
    }

    /// The robust-accuracy grid: every `l2_eps`, then every `linf_eps`, with [`Self::pgd_at`].
    pub fn grid(&self) -> Result<Vec<(Box<dyn nrf_attacks::ThreatModel>, nrf_attacks::PgdConfig)>> {
        let mut grid: Vec<(Box<dyn nrf_attacks::ThreatModel>, nrf_attacks::PgdConfig)> = Vec::new();
        for &eps in &self.l2_eps {
            grid.push((Box::new(nrf_attacks::L2::new(eps)?), self.pgd_at(eps)));
        }
        for &eps in &self.linf_eps {
            grid.push((Box::new(nrf_attacks::Linf::new(eps)?), self.pgd_at(eps)));
        }
        Ok(grid)
    }
}

impl EnsembleSection {
    /// The attack of each member, in order.
    pub fn attacks(&self) -> Vec<nrf_attacks::EnsembleAttack> {
        use nrf_attacks::{ApgdConfig, ApgdLoss, EnsembleAttack, SquareConfig};
        self.attacks
            .iter()
            .map(|m| {
                let apgd = |loss| {
                    EnsembleAttack::Apgd(
                        ApgdConfig::new(loss, self.steps).with_restarts(self.restarts),
                    )
                };
                match m {
                    EnsembleMember::ApgdCe => apgd(ApgdLoss::CrossEntropy),
                    EnsembleMember::ApgdDlr => apgd(ApgdLoss::Dlr),
                    EnsembleMember::ApgdT => apgd(ApgdLoss::DlrTargeted {
                        targets: self.targets,
                    }),
                    EnsembleMember::Square => {
                        EnsembleAttack::Square(SquareConfig::new(self.square_queries.max(1)))
                    }
                }
            })
            .collect()
    }

    pub(super) fn validate(&self) -> Result<()> {
        check(
            !self.attacks.is_empty(),
            "eval.ensemble.attacks",
            "lists no attack (leave `ensemble` out for PGD only)".into(),
        )?;
        for (i, a) in self.attacks.iter().enumerate() {
            check(
                !self.attacks[..i].contains(a),
                "eval.ensemble.attacks",
                format!("{a:?} is listed twice"),
            )?;
        }
        check(
            self.steps >= 1,
            "eval.ensemble.steps",
            "must be at least 1".into(),
        )?;
        check(
            self.targets >= 1,
            "eval.ensemble.targets",
            "must be at least 1".into(),
        )?;
        check(
            (1..=1000).contains(&self.restarts),
            "eval.ensemble.restarts",
            format!(
                "must be in 1..=1000 (AutoAttack uses 1 to 5), got {}",
                self.restarts
            ),
        )?;
        check(
            self.square_queries >= 1 || !self.attacks.contains(&EnsembleMember::Square),
            "eval.ensemble.square_queries",
            "must be at least 1 when the ensemble lists \"square\"".into(),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepMatchSection {
    /// Number of training images made into D_R / D_NR.
    pub n: usize,
    pub steps: usize,
    /// Step size (L2 length in pixel space) cosine-decayed from step_start to step_end.
    pub step_start: f64,
    pub step_end: f64,
    pub batch_size: usize,
    /// "l2_squared" (the default), "l2_relative" or "cosine".
    #[serde(with = "DistanceSpelling", default = "default_distance")]
    pub distance: Distance,
    /// "other_image" (the default) or "noise".
    #[serde(default = "default_start")]
    pub start: StartMode,
    /// The paper's FakeReLU at the end of g (its code inverts representations with the
    /// robustness library's `fake_relu=True`: ReLU forward, identity backward, so that a unit
    /// dead at the current image still moves towards its target): true (the default); false
    /// back-propagates through the plain ReLU (nrf before session 40, the same keys).
    #[serde(default = "yes")]
    pub fake_relu: bool,
}

/// [`Distance`] as preset files spell it (its own serde spelling, "L2Squared", is in the cache
/// keys of the constructed data sets, so it stays).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Distance", rename_all = "snake_case")]
enum DistanceSpelling {
    L2Relative,
    L2Squared,
    Cosine,
}

fn default_distance() -> Distance {
    Distance::L2Squared
}
fn default_start() -> StartMode {
    StartMode::OtherImage
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelSection {
    pub n: usize,
    /// L2 radius of the targeted attack.
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub batch_size: usize,
    /// Further radii for D_rand / D_det variants (step size scaled with eps).
    #[serde(default)]
    pub extra_eps: Vec<f64>,
}

impl RelabelSection {
    /// The step size at radius `eps`: `step_size` scaled with the radius (as for `extra_eps`).
    pub fn step_at(&self, eps: f64) -> f64 {
        self.step_size * eps / self.eps
    }

    /// Whether Table 1 builds its D_rand / D_det at radius `eps` (`eps` or one of `extra_eps`).
    pub fn is_table1_radius(&self, eps: f64) -> bool {
        eps_eq(eps, self.eps) || self.extra_eps.iter().any(|&e| eps_eq(e, eps))
    }
}
