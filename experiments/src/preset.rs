//! Presets: every hyper-parameter of a reproduction in one TOML file, with units in comments.
//! Unknown keys and bad values are errors that name the field. Enum-valued fields are typed
//! (serde refuses a bad value, listing the accepted spellings); what `validate` checks is ranges.
use anyhow::{bail, Context, Result};
use nrf_attacks::{Distance, Norm};
use nrf_features::repmatch::StartMode;
use nrf_models::train::Augment;
use nrf_models::{Arch, Init, LrSchedule, TrainConfig};
use nrf_report::results::eps_eq;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The presets shipped with nrf (embedded in the binary).
pub const BUILTIN: [(&str, &str); 5] = [
    ("smoke", include_str!("../presets/smoke.toml")),
    (
        "fashion-mnist",
        include_str!("../presets/fashion-mnist.toml"),
    ),
    (
        "fashion-mnist-full",
        include_str!("../presets/fashion-mnist-full.toml"),
    ),
    ("cifar10", include_str!("../presets/cifar10.toml")),
    (
        "restricted-imagenet",
        include_str!("../presets/restricted-imagenet.toml"),
    ),
];

/// A whole reproduction's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    /// Master seed; every stage derives its own seed from it and records it.
    pub seed: u64,
    /// libtorch CPU threads (0 = leave libtorch's default).
    #[serde(default)]
    pub threads: i32,
    /// Worker processes on a CPU (default 1): `threads` is split between them, and they share
    /// the pipeline's stages (see [`crate::workers`]); the results do not depend on it.
    #[serde(default = "one")]
    pub workers: usize,
    pub data: DataSection,
    pub model: ModelSection,
    pub train_std: TrainSection,
    pub train_rob: TrainSection,
    pub eval: EvalSection,
    pub rep_match: RepMatchSection,
    pub relabel: RelabelSection,
    pub fresh: TrainSection,
    #[serde(default)]
    pub theory: TheorySection,
    #[serde(default)]
    pub extras: ExtrasSection,
    /// Bring your own model: TorchScript files in place of the trained C_std / C_rob as the
    /// source models of the constructions (absent = both trained from the preset, as the paper).
    #[serde(default, skip_serializing_if = "SourcesSection::is_empty")]
    pub sources: SourcesSection,
    /// The command-line overrides (`--set KEY=VALUE`) applied by
    /// [`Preset::load_with_overrides`], as given; recorded in run.json's `overrides`. Not a
    /// preset field (a preset file that has it is rejected) and in no cache key: stage keys
    /// come from the values the overrides set.
    #[serde(skip)]
    pub overrides: Vec<String>,
}

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSection {
    /// "l2" or "linf".
    pub norm: Norm,
    /// Radius in [0,1] pixel units.
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

fn default_gamma() -> f64 {
    0.1
}

/// A training section's learning-rate schedule; its parameters are the section's `lr`,
/// `warmup` (cosine) and `milestones` / `gamma` (step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warm-up then cosine to 0 ([`LrSchedule::CosineWarmup`]).
    Cosine,
    /// The rate times `gamma` at each milestone ([`LrSchedule::Step`]).
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
    /// 0 = the whole test set. Final standard accuracy always uses the whole test set. Part of
    /// every training stage's key.
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

fn one() -> usize {
    1
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

impl EvalSection {
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

    fn validate(&self) -> Result<()> {
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
            self.restarts >= 1,
            "eval.ensemble.restarts",
            "must be at least 1".into(),
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TheorySection {
    #[serde(default)]
    pub skip: bool,
}

/// The further experiments of `experiments/src/extras`: Figure 3 and the reviewers' questions.
/// Each writes `sections/<id>.json`; each is switched on separately (and all need `enabled`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtrasSection {
    /// Master switch: without it no extra runs.
    #[serde(default)]
    pub enabled: bool,
    /// Figure 3 (section `figure3`): models of each of `figure3_archs` trained on D_det and on
    /// the clean control; transfer of targeted attacks on C_std to the latter.
    #[serde(default)]
    pub figure3: bool,
    /// At least three architectures (Pearson correlation over them).
    #[serde(default)]
    pub figure3_archs: Vec<Arch>,
    /// L2 radius of Figure 3's D_det / D_rand and of its transferred attacks (default:
    /// `relabel.eps`; step size scaled as for `relabel.extra_eps`).
    #[serde(default)]
    pub figure3_eps: Option<f64>,
    /// Images in each of Figure 3's training sets: the first `figure3_n` of Table 1's D_det /
    /// D_rand at `figure3_eps` and of the clean control (default and at most: `relabel.n`).
    /// Smaller keeps the larger architectures affordable; the sets are subsets, not rebuilt.
    #[serde(default)]
    pub figure3_n: Option<usize>,
    /// L2 radii of D_rand / D_det for section `eps_sensitivity` (empty = that extra is off).
    #[serde(default)]
    pub eps_sensitivity: Vec<f64>,
    /// Training-set sizes of D_rand / D_det for section `train_size` (empty = that extra is off).
    #[serde(default)]
    pub train_sizes: Vec<usize>,
    /// Section `diversity`: mean pairwise distances of D, D_R, D_NR per class.
    #[serde(default)]
    pub diversity: bool,
    /// At most this many images per class in the pairwise distances (0 = all).
    #[serde(default)]
    pub diversity_max_per_class: usize,
    /// Section `source_vs_target`: is x_r closer to its start x0 or its target x?
    #[serde(default)]
    pub source_vs_target: bool,
    /// Section `overfitting`: train / test accuracy curves and generalisation gaps.
    #[serde(default)]
    pub overfitting: bool,
    /// Section `cosine_ablation`: D_R rebuilt with the other representation distance.
    #[serde(default)]
    pub cosine_ablation: bool,
    /// Section `init_ablation`: fresh models on D_R, D_NR and the clean control with the other
    /// weight initialisation than `model.init` (PyTorch's vs tch's defaults).
    #[serde(default)]
    pub init_ablation: bool,
    /// The independent standard model of `diversity` and `source_vs_target`.
    #[serde(default)]
    pub independent_model: IndependentModel,
    /// Section `d_det_study`: D_det rebuilt with the recipes replications used to make it work
    /// (absent = off).
    #[serde(default)]
    pub d_det_study: Option<DDetStudy>,
}

/// `[extras.d_det_study]`: "D_det: what it takes". Each variant rebuilds D_det from the first
/// `n` images of Table 1's subset, changing one thing of the paper's recipe (and one variant all
/// of them), and trains `seeds` fresh models (the `fresh` settings) on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DDetStudy {
    /// Images per rebuilt D_det (at most `relabel.n`).
    pub n: usize,
    /// Fresh models per variant (default: `[fresh] seeds`).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// A larger standard source model: its architecture ...
    pub source_arch: Arch,
    /// ... and its epochs (the rest as `train_std`).
    pub source_epochs: usize,
    /// A slightly robust source model: `train_rob` at this L2 radius ...
    pub robust_source_eps: f64,
    /// ... for this many epochs.
    pub robust_source_epochs: usize,
    /// The EOT variant's transformations.
    pub eot: nrf_features::targeted::Eot,
    /// The margin-loss variant's steps (step size `relabel.step_size`: more steps, same step).
    pub margin_steps: usize,
    /// The radius of the variant that combines the slightly robust source, the margin loss and
    /// EOT (step size scaled as for `relabel.extra_eps`, `relabel.steps` steps).
    pub combined_eps: f64,
}

impl DDetStudy {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let f = "extras.d_det_study";
        check(
            self.n >= 20,
            &format!("{f}.n"),
            format!(
                "{} images are too few to train a model on (at least 20)",
                self.n
            ),
        )?;
        if let Some(s) = self.seeds {
            check(s >= 1, &format!("{f}.seeds"), "must be at least 1".into())?;
        }
        check(
            self.source_epochs >= 1,
            &format!("{f}.source_epochs"),
            "must be at least 1".into(),
        )?;
        check(
            self.robust_source_epochs >= 1,
            &format!("{f}.robust_source_epochs"),
            "must be at least 1".into(),
        )?;
        positive(self.robust_source_eps, &format!("{f}.robust_source_eps"))?;
        positive(self.combined_eps, &format!("{f}.combined_eps"))?;
        check(
            self.margin_steps >= 1,
            &format!("{f}.margin_steps"),
            "must be at least 1".into(),
        )?;
        nrf_features::targeted::TargetedAttack {
            loss: nrf_features::targeted::TargetLoss::CrossEntropy,
            eot: Some(self.eot),
        }
        .validate()
        .map_err(|e| anyhow::anyhow!("preset field `{f}.eot`: {e}"))
    }
}

/// `[sources]`: bring your own model. A TorchScript file named here replaces the trained model
/// of that role as the source of the constructions: `c_rob` builds D_R, `c_std` builds D_NR,
/// D_rand and D_det. That model is not trained: its results entry (`models/C_rob.json` /
/// `models/C_std.json`) is the file's model, evaluated as a trained one would be, and recording
/// the file and its SHA-256; the stages that depend on it key on that SHA-256, so replacing the
/// file recomputes them (and nothing else). Before any stage runs the file is loaded and its
/// accuracy checked on the first few hundred test images (near chance stops the run: usually an
/// input-normalisation mismatch). The options are `nrf construct --model`'s.
///
/// ```toml
/// [sources.c_rob]
/// model = "robust.pt"      # the TorchScript file (a relative path is from the working folder)
/// rep = "method:features"  # g(x): "tuple" (forward returns (logits, g(x)); the default) or
///                          # "method:<name>" (forward returns the logits, <name>(x) g(x))
/// mean = [0.2860]          # per-channel input normalisation applied before the model, when
/// std = [0.3530]           # it does not normalise itself (both or neither; default: neither)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// In place of the trained standard model C_std (D_NR, D_rand, D_det).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_std: Option<SourceModel>,
    /// In place of the adversarially trained C_rob (D_R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_rob: Option<SourceModel>,
}

/// One TorchScript source model of [`SourcesSection`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceModel {
    /// The TorchScript file (`nrf construct --model`).
    pub model: PathBuf,
    /// Where g(x) comes from: `"tuple"` (the default) or `"method:<name>"` (`--rep`).
    #[serde(default = "default_rep", with = "rep_spelling")]
    pub rep: nrf_models::RepSource,
    /// Per-channel mean / std applied before the model (`--mean` / `--std`; empty: none).
    #[serde(default)]
    pub mean: Vec<f64>,
    /// See `mean`.
    #[serde(default)]
    pub std: Vec<f64>,
}

fn default_rep() -> nrf_models::RepSource {
    nrf_models::RepSource::Tuple
}

/// [`nrf_models::RepSource`] as `--rep` spells it (`"tuple"`, `"method:<name>"`).
mod rep_spelling {
    use nrf_models::RepSource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &RepSource, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&r.spelling())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RepSource, D::Error> {
        let s = String::deserialize(d)?;
        RepSource::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl SourcesSection {
    /// No source named: the pipeline trains both, as the paper.
    pub fn is_empty(&self) -> bool {
        self.c_std.is_none() && self.c_rob.is_none()
    }

    /// The named sources: (model name "C_std" / "C_rob", preset field, the source).
    pub fn named(&self) -> Vec<(&'static str, &'static str, &SourceModel)> {
        [
            ("C_std", "sources.c_std", &self.c_std),
            ("C_rob", "sources.c_rob", &self.c_rob),
        ]
        .into_iter()
        .filter_map(|(name, field, s)| s.as_ref().map(|s| (name, field, s)))
        .collect()
    }

    /// The named source of model `name` ("C_std" / "C_rob"), if any.
    pub fn of(&self, name: &str) -> Option<&SourceModel> {
        match name {
            "C_std" => self.c_std.as_ref(),
            "C_rob" => self.c_rob.as_ref(),
            _ => None,
        }
    }

    /// Checks the values (the files themselves are read when a run starts); errors name the
    /// field.
    pub fn validate(&self) -> Result<()> {
        for (_, f, s) in self.named() {
            check(
                !s.model.as_os_str().is_empty(),
                &format!("{f}.model"),
                "must name a TorchScript file".into(),
            )?;
            check(
                s.mean.len() == s.std.len(),
                &format!("{f}.mean / {f}.std"),
                format!(
                    "give both (one value per image channel) or neither: mean has {} values, std \
                     {}",
                    s.mean.len(),
                    s.std.len()
                ),
            )?;
            for &v in &s.mean {
                check(
                    v.is_finite(),
                    &format!("{f}.mean"),
                    format!("must be finite, got {:?}", s.mean),
                )?;
            }
            for &v in &s.std {
                check(
                    v > 0.0 && v.is_finite(),
                    &format!("{f}.std"),
                    format!("must be positive and finite, got {:?}", s.std),
                )?;
            }
        }
        Ok(())
    }
}

/// Which model plays the independent standard model in the extras.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndependentModel {
    /// The fresh model on the clean control subset (already trained, so free; but it was
    /// trained on the target images of D_R / D_NR).
    #[default]
    #[serde(rename = "on_control")]
    OnControl,
    /// An extra fresh model (`fresh` settings) on as many held-out training images as the
    /// control, none of them a target or start image of D_R / D_NR.
    #[serde(rename = "C_indep")]
    CIndep,
}

impl ExtrasSection {
    /// Checks the extras' values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.figure3 {
            check(
                self.figure3_archs.len() >= 3,
                "extras.figure3_archs",
                format!(
                    "figure3 needs at least 3 architectures (a correlation over them), got {}",
                    self.figure3_archs.len()
                ),
            )?;
        }
        for (i, a) in self.figure3_archs.iter().enumerate() {
            check(
                !self.figure3_archs[..i].contains(a),
                "extras.figure3_archs",
                format!("{} is listed twice", a.label()),
            )?;
        }
        for (i, &n) in self.train_sizes.iter().enumerate() {
            check(
                n >= 20,
                "extras.train_sizes",
                format!("{n} images are too few to train a model on (at least 20)"),
            )?;
            check(
                !self.train_sizes[..i].contains(&n),
                "extras.train_sizes",
                format!("{n} is listed twice"),
            )?;
        }
        if let Some(eps) = self.figure3_eps {
            positive(eps, "extras.figure3_eps")?;
        }
        if let Some(n) = self.figure3_n {
            check(
                n >= 20,
                "extras.figure3_n",
                format!("{n} images are too few to train a model on (at least 20)"),
            )?;
        }
        for (i, v) in self.eps_sensitivity.iter().enumerate() {
            positive(*v, "extras.eps_sensitivity")?;
            check(
                !self.eps_sensitivity[..i].contains(v),
                "extras.eps_sensitivity",
                format!("{v} is listed twice"),
            )?;
        }
        if let Some(d) = &self.d_det_study {
            d.validate()?;
        }
        Ok(())
    }
}

/// `name` names the default results folder (`results/<name>`): one plain folder name.
fn check_name(name: &str) -> Result<()> {
    check(
        !name.trim().is_empty(),
        "name",
        "must not be empty (it names the results folder results/<name>)".into(),
    )?;
    check(
        name != "." && name != ".." && !name.contains(['/', '\\']),
        "name",
        format!(
            "{name:?} is not a folder name (it names the results folder results/<name>): no \
             '/' or '\\', not '.' or '..'"
        ),
    )?;
    check(
        !name.chars().any(char::is_control) && name.trim() == name,
        "name",
        format!("{name:?} has control characters or leading / trailing spaces"),
    )
}

impl ModelSection {
    /// Checks `mean` / `std`: both or neither, the same length, finite, `std` positive.
    pub fn validate(&self) -> Result<()> {
        match (&self.mean, &self.std) {
            (None, None) => Ok(()),
            (Some(_), None) | (None, Some(_)) => {
                let (has, lacks) = if self.mean.is_some() {
                    ("mean", "std")
                } else {
                    ("std", "mean")
                };
                bail!(
                    "preset field `model.{lacks}`: missing while `model.{has}` is set; give \
                     both (one value per image channel) or neither"
                )
            }
            (Some(m), Some(s)) => {
                check(
                    !m.is_empty() && m.len() == s.len(),
                    "model.mean / model.std",
                    format!(
                        "need the same length, one value per image channel (model.mean has {}, \
                         model.std {})",
                        m.len(),
                        s.len()
                    ),
                )?;
                for &v in m {
                    check(
                        v.is_finite(),
                        "model.mean",
                        format!("must be finite, got {m:?}"),
                    )?;
                }
                for &v in s {
                    check(
                        v > 0.0 && v.is_finite(),
                        "model.std",
                        format!("must be positive and finite (the model divides by it), got {s:?}"),
                    )?;
                }
                Ok(())
            }
        }
    }

    /// Checks `mean` / `std` against the data's number of image channels (when the data is
    /// read, before anything is written).
    pub fn check_channels(&self, channels: usize, dataset: &str) -> Result<()> {
        for (field, v) in [("model.mean", &self.mean), ("model.std", &self.std)] {
            if let Some(v) = v {
                check(
                    v.len() == channels,
                    field,
                    format!(
                        "has {} value{} but the images of {dataset} have {channels} channel{}",
                        v.len(),
                        if v.len() == 1 { "" } else { "s" },
                        if channels == 1 { "" } else { "s" }
                    ),
                )?;
            }
        }
        Ok(())
    }
}

fn check(cond: bool, field: &str, msg: String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        bail!("preset field `{field}`: {msg}")
    }
}

fn positive(v: f64, field: &str) -> Result<()> {
    check(
        v > 0.0 && v.is_finite(),
        field,
        format!("must be positive and finite, got {v}"),
    )
}

impl TrainSection {
    fn validate(&self, s: &str) -> Result<()> {
        check(
            self.epochs >= 1,
            &format!("{s}.epochs"),
            "must be at least 1".into(),
        )?;
        check(
            self.batch_size >= 1,
            &format!("{s}.batch_size"),
            "must be at least 1".into(),
        )?;
        positive(self.lr, &format!("{s}.lr"))?;
        check(
            self.gamma > 0.0 && self.gamma <= 1.0,
            &format!("{s}.gamma"),
            format!(
                "must be in (0, 1] (the learning rate is multiplied by it at each milestone; \
                 0 or less would stop or reverse training, above 1 raise the rate), got {}",
                self.gamma
            ),
        )?;
        for (i, &m) in self.milestones.iter().enumerate() {
            check(
                i == 0 || self.milestones[i - 1] < m,
                &format!("{s}.milestones"),
                format!(
                    "must be increasing epochs, each once; got {:?}",
                    self.milestones
                ),
            )?;
            check(
                m >= 1 && m < self.epochs,
                &format!("{s}.milestones"),
                format!(
                    "epoch {m} is not within training ({s}.epochs = {}): a milestone must be \
                     in 1..{} to take effect (`--set {s}.milestones=[]` for none)",
                    self.epochs, self.epochs
                ),
            )?;
        }
        check(
            self.milestones.is_empty() || self.schedule == Schedule::Step,
            &format!("{s}.milestones"),
            format!(
                "only the \"step\" schedule has milestones (the schedule is {})",
                serde_json::json!(self.schedule)
            ),
        )?;
        check(
            (0.0..1.0).contains(&self.warmup),
            &format!("{s}.warmup"),
            format!("must be in [0, 1), got {}", self.warmup),
        )?;
        check(
            (0.0..1.0).contains(&self.momentum),
            &format!("{s}.momentum"),
            format!("must be in [0, 1), got {}", self.momentum),
        )?;
        check(
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            &format!("{s}.weight_decay"),
            format!("must be >= 0, got {}", self.weight_decay),
        )?;
        check(
            self.crop_pad >= 0,
            &format!("{s}.crop_pad"),
            format!("must be >= 0, got {}", self.crop_pad),
        )?;
        if let Some(a) = &self.attack {
            positive(a.eps, &format!("{s}.attack.eps"))?;
            check(
                a.steps >= 1,
                &format!("{s}.attack.steps"),
                "must be at least 1".into(),
            )?;
            positive(a.step_factor, &format!("{s}.attack.step_factor"))?;
        }
        Ok(())
    }

    /// The training configuration with `seed`.
    pub fn config(&self, seed: u64, progress: bool) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            schedule: match self.schedule {
                Schedule::Step => LrSchedule::Step {
                    lr: self.lr,
                    milestones: self.milestones.clone(),
                    gamma: self.gamma,
                },
                Schedule::Cosine => LrSchedule::CosineWarmup {
                    lr: self.lr,
                    warmup: self.warmup,
                },
            },
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            augment: if self.crop_pad > 0 {
                Augment::CropFlip { pad: self.crop_pad }
            } else {
                Augment::None
            },
            seed,
            progress,
            stop_after: None,
        }
    }
}

impl Preset {
    /// Parses and validates a preset; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Preset> {
        let p: Preset = toml::from_str(text).map_err(|e| {
            let what = match field_at(text, e.span()) {
                Some(f) => format!("preset {origin}: in preset field `{f}`"),
                None => format!("preset {origin}: invalid TOML or unknown/ill-typed field"),
            };
            anyhow::Error::new(e).context(what)
        })?;
        p.validate().with_context(|| format!("preset {origin}"))?;
        Ok(p)
    }

    /// A built-in preset by name, or a TOML file by path. Returns the preset and its text.
    pub fn load(name_or_path: &str) -> Result<(Preset, String)> {
        Preset::load_with_overrides(name_or_path, &[])
    }

    /// [`Preset::load`] with command-line overrides (`nrf reproduce --set KEY=VALUE`): each
    /// `KEY=VALUE` sets the dotted key (`rep_match.n`, `model.arch.width`) in the preset's TOML
    /// document before it is deserialised and validated, so an override is checked exactly as
    /// the same value in the file (an unknown key or a bad value is an error naming the key).
    /// VALUE is a TOML value; what is not valid TOML is taken as a string (`model.init=tch`),
    /// as `experiments/twin/twin_data.py` does. A missing table on the way is created
    /// (`extras.figure3_n` without an `[extras]` section). A key the preset does not read
    /// (say `model.arch.width` with `type = "fmnist_cnn"`, which serde would ignore) is an
    /// error too.
    ///
    /// Returns the preset, with [`Preset::overrides`] set, and the effective preset text: the
    /// file's text unchanged without overrides; with them, the same document (comments kept)
    /// with the overrides applied, each changed line marked `# --set (was: ...)` and the list
    /// of overrides in a comment at the top. That text is what run.json's `config_toml`
    /// records, so it always holds the values the run used.
    pub fn load_with_overrides(
        name_or_path: &str,
        overrides: &[String],
    ) -> Result<(Preset, String)> {
        let (text, origin) =
            if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
                (text.to_string(), name_or_path.to_string())
            } else {
                let path = Path::new(name_or_path);
                if !path.exists() {
                    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    bail!(
                        "no preset named {name_or_path:?} (built in: {}) and no such file",
                        names.join(", ")
                    );
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading preset {}", path.display()))?;
                (text, path.display().to_string())
            };
        Preset::parse_with_overrides(&text, &origin, overrides)
    }

    /// [`Preset::load_with_overrides`] of a preset's text; `origin` names it in errors.
    pub fn parse_with_overrides(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<(Preset, String)> {
        if overrides.is_empty() {
            return Ok((Preset::parse(text, origin)?, text.to_string()));
        }
        let effective = overriding::apply(text, origin, overrides)?;
        let with = overrides
            .iter()
            .map(|o| format!("--set {o}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut p: Preset = match toml::from_str(&effective) {
            Ok(p) => p,
            Err(e) => {
                let to_blame = overriding::blame(&effective, e.span(), overrides);
                let what = if to_blame.is_empty() {
                    format!("preset {origin} with {with}")
                } else {
                    format!("preset {origin}: {}", to_blame.join(" "))
                };
                let field = match field_at(&effective, e.span()) {
                    Some(f) => format!("in preset field `{f}`"),
                    None => "unknown or ill-typed field".into(),
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "{what}: {field} (the line shown is in the preset with the overrides applied)"
                )));
            }
        };
        overriding::check_read(&p, overrides).with_context(|| format!("preset {origin}"))?;
        p.validate()
            .with_context(|| format!("preset {origin} with {with}"))?;
        p.overrides = overrides.to_vec();
        Ok((p, effective))
    }

    /// Checks every value; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        check(
            self.threads >= 0,
            "threads",
            format!("must be >= 0, got {}", self.threads),
        )?;
        check(
            (1..=64).contains(&self.workers),
            "workers",
            format!("must be between 1 and 64, got {}", self.workers),
        )?;
        self.train_std.validate("train_std")?;
        self.train_rob.validate("train_rob")?;
        check(
            self.train_rob.attack.is_some(),
            "train_rob.attack",
            "the robust model needs an attack section".into(),
        )?;
        self.fresh.validate("fresh")?;
        check(
            self.fresh.seeds.is_none_or(|n| n >= 1),
            "fresh.seeds",
            format!("must be at least 1, got {}", self.fresh.seeds.unwrap_or(0)),
        )?;
        for (s, section) in [
            ("train_std", &self.train_std),
            ("train_rob", &self.train_rob),
        ] {
            check(
                section.seeds.is_none(),
                &format!("{s}.seeds"),
                "only the [fresh] section trains several seeds".into(),
            )?;
        }
        let e = &self.eval;
        check(
            e.robust_n >= 1,
            "eval.robust_n",
            "must be at least 1".into(),
        )?;
        check(e.steps >= 1, "eval.steps", "must be at least 1".into())?;
        check(
            e.batch_size >= 1,
            "eval.batch_size",
            "must be at least 1".into(),
        )?;
        positive(e.step_factor, "eval.step_factor")?;
        check(
            !e.l2_eps.is_empty(),
            "eval.l2_eps",
            "needs at least one radius".into(),
        )?;
        for v in e.l2_eps.iter().chain(&e.linf_eps) {
            positive(*v, "eval.l2_eps / eval.linf_eps")?;
        }
        check(
            e.l2_eps.contains(&e.headline_eps),
            "eval.headline_eps",
            format!(
                "{} must be one of eval.l2_eps {:?}",
                e.headline_eps, e.l2_eps
            ),
        )?;
        if let Some(ens) = &e.ensemble {
            ens.validate()?;
        }
        let r = &self.rep_match;
        check(r.n >= 1, "rep_match.n", "must be at least 1".into())?;
        check(r.steps >= 1, "rep_match.steps", "must be at least 1".into())?;
        check(
            r.batch_size >= 1,
            "rep_match.batch_size",
            "must be at least 1".into(),
        )?;
        positive(r.step_start, "rep_match.step_start")?;
        check(
            r.step_end >= 0.0 && r.step_end <= r.step_start,
            "rep_match.step_end",
            format!("must be in [0, step_start], got {}", r.step_end),
        )?;
        let l = &self.relabel;
        check(l.n >= 1, "relabel.n", "must be at least 1".into())?;
        check(l.steps >= 1, "relabel.steps", "must be at least 1".into())?;
        check(
            l.batch_size >= 1,
            "relabel.batch_size",
            "must be at least 1".into(),
        )?;
        positive(l.eps, "relabel.eps")?;
        positive(l.step_size, "relabel.step_size")?;
        for v in &l.extra_eps {
            positive(*v, "relabel.extra_eps")?;
        }
        self.model.validate()?;
        self.extras.validate()?;
        self.sources.validate()?;
        check(
            self.sources.is_empty() || !self.extras.enabled,
            "extras.enabled",
            "the extras need nrf's own C_std / C_rob (their weights and training records), so \
             they do not run with a TorchScript source model ([sources]): set \
             `extras.enabled = false`"
                .into(),
        )?;
        Ok(())
    }

    /// Checks the results folder before anything is loaded or written: it is a folder (or does
    /// not exist yet), and when it holds a run.json that run is of this preset (same `name`
    /// and `data.dataset`): a folder is one preset's results, which the stage cache, run.json
    /// and the report would otherwise mix. The message says how to proceed.
    pub fn check_results_folder(&self, results: &Path) -> Result<()> {
        if results.exists() && !results.is_dir() {
            bail!(
                "--results {}: is a file, not a folder: give a folder for the results",
                results.display()
            );
        }
        let run = results.join("run.json");
        if !run.exists() {
            return Ok(());
        }
        let how = format!(
            "give this run another folder (--results DIR), or move {} away (or delete it) to \
             start afresh there",
            results.display()
        );
        let text = std::fs::read_to_string(&run)
            .with_context(|| format!("reading {} (the run this folder holds)", run.display()))?;
        let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else {
            bail!(
                "{} is not an nrf run record (not JSON), so {} may hold something else: {how}",
                run.display(),
                results.display()
            );
        };
        let old_name = old.get("preset").and_then(|v| v.as_str()).unwrap_or("");
        let old_dataset = old
            .get("config_toml")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("data")?.get("dataset")?.as_str().map(str::to_string));
        if old_name != self.name {
            bail!(
                "{} holds the results of preset {old_name:?} (its run.json), not of preset {:?}: \
                 {how}",
                results.display(),
                self.name
            );
        }
        if let Some(d) = old_dataset.filter(|d| d != self.data.dataset.as_str()) {
            bail!(
                "{} holds the results of preset {:?} on data set {d:?} (its run.json), but this \
                 preset {:?} uses {:?}: {how}",
                results.display(),
                self.name,
                self.name,
                self.data.dataset
            );
        }
        Ok(())
    }

    /// Seeds of each fresh model of Figure 2 / Table 1 (`[fresh] seeds`, default 1).
    pub fn fresh_seeds(&self) -> usize {
        self.fresh.seeds.unwrap_or(1).max(1)
    }

    /// A seed for `stage`, derived from the master seed.
    pub fn stage_seed(&self, stage: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stage.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        (h ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
    }
}

/// The dotted key (`train_rob.attack.norm`) of the innermost field of preset `text` at `span`,
/// where deserialising it failed: toml's message shows the line but not the whole key.
fn field_at(text: &str, span: Option<Range<usize>>) -> Option<String> {
    use toml_edit::{ImDocument, Item, TableLike};
    fn within(table: &dyn TableLike, span: &Range<usize>) -> Option<Vec<String>> {
        let holds =
            |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= span.start && span.end <= s.end);
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let mut path = vec![name.to_string()];
            match item {
                // A table of its own: search its fields (its header is its key).
                Item::Table(t) => {
                    if let Some(sub) = within(t, span) {
                        path.extend(sub);
                        return Some(path);
                    }
                    if holds(key.span()) || holds(t.span()) {
                        return Some(path);
                    }
                }
                Item::Value(v) if holds(key.span()) || holds(v.span()) => {
                    if let Some(sub) = v.as_inline_table().and_then(|t| within(t, span)) {
                        path.extend(sub);
                    }
                    return Some(path);
                }
                _ => {}
            }
        }
        None
    }
    let doc = ImDocument::parse(text).ok()?;
    within(doc.as_table(), &span?).map(|p| p.join("."))
}

/// The `--set KEY=VALUE` machinery of [`Preset::load_with_overrides`].
mod overriding {
    use super::Preset;
    use anyhow::{bail, Context, Result};
    use std::ops::Range;
    use toml_edit::{DocumentMut, ImDocument, Item, Key, Table, TableLike, Value};

    /// The comment on each line an override changed.
    const MARK: &str = "# --set";

    /// Fields that are read but never serialised (so absent from the serialised preset that
    /// [`check_read`] compares the overrides with).
    const NOT_SERIALISED: [&str; 3] = ["train_std.seeds", "train_rob.seeds", "fresh.seeds"];

    /// One `KEY=VALUE`: the dotted key's parts and the value (TOML, else the string VALUE).
    pub(super) fn parse(text: &str) -> Result<(Vec<String>, Value)> {
        let Some((key, raw)) = text.split_once('=') else {
            bail!("--set {text}: expected KEY=VALUE with a dotted KEY, e.g. --set rep_match.n=64");
        };
        let keys: Vec<String> = Key::parse(key.trim())
            .ok()
            .filter(|k| !k.is_empty())
            .with_context(|| {
                format!("--set {text}: `{key}` is not a dotted key such as rep_match.n")
            })?
            .iter()
            .map(|k| k.get().to_string())
            .collect();
        let value = raw
            .trim()
            .parse::<Value>()
            .unwrap_or_else(|_| Value::from(raw));
        Ok((keys, value))
    }

    /// `text` with every override applied in order (comments and layout kept), each changed
    /// value marked, and the overrides listed in a comment at the top.
    pub(super) fn apply(text: &str, origin: &str, overrides: &[String]) -> Result<String> {
        let mut doc: DocumentMut = text
            .parse()
            .with_context(|| format!("preset {origin}: invalid TOML"))?;
        for o in overrides {
            let (keys, value) = parse(o)?;
            let note = match was(doc.as_table(), &keys) {
                None => format!("  {MARK} (new)"),
                Some(Some(v)) => format!("  {MARK} (was: {v})"),
                Some(None) => format!("  {MARK}"),
            };
            set(doc.as_table_mut(), o, &keys, value)?;
            mark(doc.as_table_mut(), &keys, &note);
        }
        let mut out = String::from("# The preset as run: the command-line overrides\n");
        for o in overrides {
            let line: String = o
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            out += &format!("#   --set {line}\n");
        }
        out += "# applied to the preset below (the values they changed are marked `# --set`).\n";
        out += &doc.to_string();
        Ok(out)
    }

    /// What the override of `keys` replaces, seen from the first value on its way (the value
    /// itself, or the inline table holding it): None when nothing is there yet, Some(None) when
    /// it is not shown on one line.
    fn was(root: &Table, keys: &[String]) -> Option<Option<String>> {
        let mut t = root;
        for k in keys {
            match t.get(k)? {
                Item::Table(sub) => t = sub,
                Item::Value(v) => {
                    let mut v = v.clone();
                    *v.decor_mut() = Default::default();
                    let s = v.to_string();
                    return Some((!s.contains('\n') && s.len() <= 80).then_some(s));
                }
                _ => return Some(None),
            }
        }
        Some(None)
    }

    /// Sets `keys` to `value`, creating missing tables on the way; an existing value keeps its
    /// place and layout.
    fn set(root: &mut Table, text: &str, keys: &[String], value: Value) -> Result<()> {
        let (leaf, parents) = keys.split_last().context("an empty key")?;
        let mut table: &mut dyn TableLike = root;
        let mut inline = false;
        for (i, k) in parents.iter().enumerate() {
            if !table.contains_key(k) {
                table.insert(k, Item::Table(Table::new()));
            }
            inline = table.get(k).is_some_and(Item::is_inline_table);
            table = table
                .get_mut(k)
                .and_then(Item::as_table_like_mut)
                .with_context(|| {
                    format!(
                        "--set {text}: `{}` is not a table, so it has no field `{}`",
                        keys[..=i].join("."),
                        keys[i + 1]
                    )
                })?;
        }
        match table.get_mut(leaf) {
            Some(Item::Value(old)) => {
                let decor = old.decor().clone();
                *old = value;
                *old.decor_mut() = decor;
            }
            _ => {
                table.insert(leaf, Item::Value(value));
                if inline {
                    // Re-space `{ a = 1, b = 2 }` (a table of its own keeps its comments).
                    table.fmt();
                }
            }
        }
        Ok(())
    }

    /// Puts `note` after the first value on the way to `keys` (a line of its own in the file),
    /// unless an earlier override marked it already.
    fn mark(root: &mut Table, keys: &[String], note: &str) {
        let mut t = root;
        for k in keys {
            match t.get_mut(k) {
                Some(Item::Table(sub)) => t = sub,
                Some(Item::Value(v)) => {
                    let marked = v
                        .decor()
                        .suffix()
                        .and_then(|s| s.as_str())
                        .is_some_and(|s| s.trim_start().starts_with(MARK));
                    if !marked {
                        v.decor_mut().set_suffix(note);
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// The overrides (as `--set KEY=VALUE`) whose key or value lies at `span` of the effective
    /// preset `text`, where deserialising it failed; not those a later override replaced.
    pub(super) fn blame(
        text: &str,
        span: Option<Range<usize>>,
        overrides: &[String],
    ) -> Vec<String> {
        let (Some(span), Ok(doc)) = (span, ImDocument::parse(text)) else {
            return vec![];
        };
        let keys: Vec<Option<Vec<String>>> = overrides
            .iter()
            .map(|o| parse(o).ok().map(|(k, _)| k))
            .collect();
        // Set again later (the key or a table above it): not what the preset holds.
        let replaced = |i: usize, k: &[String]| {
            keys[i + 1..]
                .iter()
                .flatten()
                .any(|later| k.starts_with(later))
        };
        overrides
            .iter()
            .zip(&keys)
            .enumerate()
            .filter(|(i, (_, k))| {
                k.as_ref().is_some_and(|k| {
                    !replaced(*i, k)
                        && spans(doc.as_table(), k)
                            .iter()
                            .any(|s| s.start <= span.end && span.start <= s.end)
                })
            })
            .map(|(_, (o, _))| format!("--set {o}"))
            .collect()
    }

    /// The spans of the keys on the way to `keys` and of its value.
    fn spans(root: &Table, keys: &[String]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut t: &dyn TableLike = root;
        for (i, k) in keys.iter().enumerate() {
            let Some((key, item)) = t.get_key_value(k) else {
                break;
            };
            out.extend(key.span());
            match item.as_table_like() {
                Some(sub) if i + 1 < keys.len() => t = sub,
                _ => {
                    out.extend(item.span());
                    break;
                }
            }
        }
        out
    }

    /// Errors when an override set a key that the deserialised preset does not hold, i.e. that
    /// serde ignored (a field of another architecture `type` than the one chosen, say).
    pub(super) fn check_read(p: &Preset, overrides: &[String]) -> Result<()> {
        let Ok(read) = toml::Value::try_from(p) else {
            return Ok(());
        };
        for o in overrides {
            let (keys, value) = parse(o)?;
            if NOT_SERIALISED.contains(&keys.join(".").as_str()) {
                continue;
            }
            let mut at = &read;
            for (i, k) in keys.iter().enumerate() {
                match at.get(k.as_str()) {
                    Some(v) => at = v,
                    None => bail!(
                        "--set {o}: the preset has no field `{}` (the table it is in ignores \
                         it, e.g. a field that the chosen architecture `type` does not take)",
                        keys[..=i].join(".")
                    ),
                }
            }
            if let Some(sub) = unread(&value, at) {
                bail!(
                    "--set {o}: the preset has no field `{}.{sub}` (the table it is in ignores \
                     it, e.g. a field that the chosen architecture `type` does not take)",
                    keys.join(".")
                );
            }
        }
        Ok(())
    }

    /// The first key of `set` (a value an override set) that `read` (the value the preset
    /// holds there) lacks, as a dotted path below it.
    fn unread(set: &Value, read: &toml::Value) -> Option<String> {
        match (set, read) {
            (Value::InlineTable(t), toml::Value::Table(r)) => {
                t.iter().find_map(|(k, v)| match r.get(k) {
                    None => Some(k.to_string()),
                    Some(rv) => unread(v, rv).map(|p| format!("{k}.{p}")),
                })
            }
            (Value::Array(a), toml::Value::Array(r)) => a
                .iter()
                .zip(r)
                .enumerate()
                .find_map(|(i, (v, rv))| unread(v, rv).map(|p| format!("{i}.{p}"))),
            _ => None,
        }
    }
}

/// What the preset fuzz target runs on one input: `text` as a preset, then, if its first line
/// is `# --set K=V; K=V`, with those overrides. Never panics (an `Err` is fine).
pub fn parse_fuzz_input(text: &str) -> Result<()> {
    let _ = Preset::parse(text, "fuzz");
    let sets: Vec<String> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# --set "))
        .map(|l| l.split(';').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if !sets.is_empty() {
        let (p, effective) = Preset::parse_with_overrides(text, "fuzz", &sets)?;
        // The effective text parses to the same preset.
        let again = Preset::parse(&effective, "fuzz-effective")?;
        anyhow::ensure!(
            serde_json::to_value(&again)? == serde_json::to_value(&p)?,
            "the effective preset text differs from the preset it records"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The error of loading `smoke` with `overrides`, with its whole chain.
    fn err(overrides: &[&str]) -> String {
        let e = Preset::load_with_overrides("smoke", &sets(overrides))
            .expect_err("the overrides should be refused");
        format!("{e:#}")
    }

    #[test]
    fn no_overrides_is_the_file_unchanged() {
        let (p, text) = Preset::load_with_overrides("smoke", &[]).unwrap();
        assert_eq!(text, BUILTIN[0].1);
        assert!(p.overrides.is_empty());
        // `overrides` is not a preset field.
        let text = format!("overrides = [\"seed=1\"]\n{}", BUILTIN[0].1);
        let e = format!("{:#}", Preset::parse(&text, "x").unwrap_err());
        assert!(e.contains("unknown field `overrides`"), "{e}");
    }

    #[test]
    fn nested_keys_are_set() {
        let o = sets(&[
            "rep_match.n=64",
            "train_std.epochs=1",
            "model.arch.type=resnet18",
            "model.arch.width=8",
            "train_rob.attack.steps=1",
            "extras.enabled=false",
            "eval.l2_eps=[0.25, 0.5]",
            "relabel.eps=2",
        ]);
        let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
        assert_eq!(p.rep_match.n, 64);
        assert_eq!(p.train_std.epochs, 1);
        assert_eq!(p.model.arch, Arch::ResNet18 { width: 8 });
        assert_eq!(p.train_rob.attack.as_ref().unwrap().steps, 1);
        assert_eq!(p.train_rob.attack.as_ref().unwrap().eps, 1.0);
        assert!(!p.extras.enabled);
        assert_eq!(p.eval.l2_eps, vec![0.25, 0.5]);
        assert_eq!(p.relabel.eps, 2.0);
        assert_eq!(p.overrides, o);
        // Untouched values stay.
        assert_eq!(p.rep_match.steps, 40);
        assert_eq!(p.train_rob.epochs, 4);
        // The effective text is the preset as run: it parses to the same values, keeps the
        // file's comments, lists the overrides and marks what they changed.
        let again = Preset::parse(&text, "effective").unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&p).unwrap()
        );
        assert!(text.contains("#   --set rep_match.n=64\n"), "{text}");
        assert!(text.contains("n = 64  # --set (was: 300)"), "{text}");
        assert!(text.contains("# first 2000 training images"), "{text}");
        assert!(
            text.contains(r#"# --set (was: { type = "fmnist_cnn" })"#),
            "{text}"
        );
        // The same key twice: the last wins, the mark still names the file's value.
        let (p, text) =
            Preset::load_with_overrides("smoke", &sets(&["rep_match.n=64", "rep_match.n=32"]))
                .unwrap();
        assert_eq!(p.rep_match.n, 32);
        assert!(text.contains("n = 32  # --set (was: 300)"), "{text}");
    }

    #[test]
    fn new_keys_and_sections_are_created() {
        // smoke has no `eval.curve_n`, no `data.max_per_class` and no [theory] section.
        let o = sets(&[
            "eval.curve_n=500",
            "data.max_per_class=7",
            "theory.skip=true",
        ]);
        let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
        assert_eq!(p.eval.curve_n, 500);
        assert_eq!(p.data.max_per_class, Some(7));
        assert!(p.theory.skip);
        assert!(text.contains("curve_n = 500  # --set (new)"), "{text}");
        assert!(text.contains("[theory]"), "{text}");
        // A new key in an inline table.
        let o = sets(&["model.arch.type=mlp", "model.arch.hidden=[8]"]);
        let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
        assert_eq!(p.model.arch, Arch::Mlp { hidden: vec![8] });
        assert!(
            text.contains(
                r#"arch = { type = "mlp", hidden = [8] }  # --set (was: { type = "fmnist_cnn" })"#
            ),
            "{text}"
        );
        // A preset without [extras]: `extras.figure3_n` creates the section.
        let cut = BUILTIN[0].1.find("[extras]").unwrap();
        let base = &BUILTIN[0].1[..cut];
        let (p, text) =
            Preset::parse_with_overrides(base, "cut", &sets(&["extras.figure3_n=100"])).unwrap();
        assert_eq!(p.extras.figure3_n, Some(100));
        assert!(!p.extras.enabled);
        assert!(text.contains("[extras]"), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_them() {
        let e = err(&["rep_match.n=64", "rep_match.nn=64"]);
        assert!(e.contains("--set rep_match.nn=64"), "{e}");
        assert!(e.contains("unknown field `nn`"), "{e}");
        assert!(
            !e.contains("rep_match.n=64 "),
            "only the culprit is named: {e}"
        );
        // An override that a later one of the same key replaced is not blamed.
        let e = err(&["rep_match.n=64", "rep_match.n=abc"]);
        assert!(e.contains("preset smoke: --set rep_match.n=abc:"), "{e}");
        let e = err(&["nosuch.key=1"]);
        assert!(e.contains("--set nosuch.key=1"), "{e}");
        assert!(e.contains("unknown field `nosuch`"), "{e}");
        let e = err(&["train_rob.attack.nrom=\"l2\""]);
        assert!(e.contains("--set train_rob.attack.nrom"), "{e}");
        // A key serde would silently ignore (fmnist_cnn takes no width) is refused too.
        let e = err(&["model.arch.width=8"]);
        assert!(e.contains("model.arch.width"), "{e}");
        let e = err(&["model.arch={ type = \"fmnist_cnn\", width = 8 }"]);
        assert!(e.contains("model.arch.width"), "{e}");
        // Going into a value that is not a table.
        let e = err(&["seed.x=1"]);
        assert!(e.contains("`seed` is not a table"), "{e}");
        // `fresh.seeds` is read although never serialised: no false alarm.
        let (p, _) = Preset::load_with_overrides("smoke", &sets(&["fresh.seeds=3"])).unwrap();
        assert_eq!(p.fresh_seeds(), 3);
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let e = err(&["rep_match.n=abc"]);
        assert!(e.contains("--set rep_match.n=abc"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
        let e = err(&["train_std.epochs=1.5"]);
        assert!(e.contains("--set train_std.epochs=1.5"), "{e}");
        let e = err(&["model.arch.type=resnet99"]);
        assert!(e.contains("--set model.arch.type=resnet99"), "{e}");
        // Values serde accepts but validate() refuses: validate's message names the field.
        let e = err(&["rep_match.n=0"]);
        assert!(e.contains("`rep_match.n`"), "{e}");
        assert!(e.contains("--set rep_match.n=0"), "{e}");
        let e = err(&["eval.headline_eps=0.75"]);
        assert!(e.contains("`eval.headline_eps`"), "{e}");
        let e = err(&["train_rob.schedule=linear"]);
        assert!(e.contains("`train_rob.schedule`"), "{e}");
    }

    /// Issue 12, item 2: an enum-valued field refuses a bad value, naming the field and the
    /// accepted spellings, both in a preset file and through `--set`.
    #[test]
    fn bad_enum_values_name_the_field_and_the_choices() {
        let cases: [(&str, &str, &[&str]); 11] = [
            (
                "data.dataset=imagenet",
                "data.dataset",
                &["fashion-mnist", "mnist", "cifar10", "restricted-imagenet"],
            ),
            ("model.init=xavier", "model.init", &["pytorch", "tch"]),
            (
                "model.arch.type=resnet99",
                "model.arch",
                &["fmnist_cnn", "resnet18", "vgg16"],
            ),
            (
                "train_std.schedule=linear",
                "train_std.schedule",
                &["cosine", "step"],
            ),
            (
                "fresh.schedule=Cosine",
                "fresh.schedule",
                &["cosine", "step"],
            ),
            (
                "train_rob.attack.norm=l3",
                "train_rob.attack.norm",
                &["l2", "linf"],
            ),
            (
                "rep_match.distance=L2Squared",
                "rep_match.distance",
                &["l2_relative", "l2_squared", "cosine"],
            ),
            (
                "rep_match.start=zeros",
                "rep_match.start",
                &["other_image", "noise"],
            ),
            (
                "extras.independent_model=none",
                "extras.independent_model",
                &["on_control", "C_indep"],
            ),
            (
                "eval.ensemble.attacks=[\"apgd\"]",
                "eval.ensemble.attacks",
                &["apgd-ce", "apgd-t", "square"],
            ),
            (
                "extras.d_det_study.source_arch.type=x",
                "extras.d_det_study.source_arch",
                &["resnet18"],
            ),
        ];
        for (set, field, choices) in cases {
            let e = err(&[set]);
            assert!(e.contains(&format!("--set {set}")), "{set}: {e}");
            assert!(e.contains(&format!("field `{field}")), "{set}: {e}");
            for c in choices {
                assert!(e.contains(&format!("`{c}`")), "{set}: {c} not listed: {e}");
            }
        }
        // The same in a preset file, where toml's message shows only the line `norm = ...`.
        let file = |from: &str, to: &str| {
            let text = BUILTIN[0].1.replacen(from, to, 1);
            assert_ne!(text, BUILTIN[0].1, "{from}");
            format!("{:#}", Preset::parse(&text, "t").unwrap_err())
        };
        let e = file("norm = \"l2\"", "norm = \"L2\"");
        assert!(e.contains("preset field `train_rob.attack.norm`"), "{e}");
        assert!(e.contains("`l2`") && e.contains("`linf`"), "{e}");
        let e = file("start = \"other_image\"", "start = \"image\"");
        assert!(e.contains("preset field `rep_match.start`"), "{e}");
        let e = file("dataset = \"fashion-mnist\"", "dataset = \"fmnist\"");
        assert!(e.contains("preset field `data.dataset`"), "{e}");
        assert!(e.contains("`restricted-imagenet`"), "{e}");
        // Other serde errors name their field too.
        let e = file("steps = 40", "steps = -40");
        assert!(e.contains("preset field `rep_match.steps`"), "{e}");
        let e = file("[relabel]\n", "[relabel]\nnn = 1\n");
        assert!(e.contains("unknown field `nn`"), "{e}");
    }

    /// The enum fields serialise as the preset files spell them (stage keys and saved presets
    /// compare serialised presets): every shipped preset's value, and each default.
    #[test]
    fn enum_fields_serialise_as_the_files_spell_them() {
        let paths = [
            "data.dataset",
            "model.init",
            "train_std.schedule",
            "train_rob.schedule",
            "fresh.schedule",
            "train_rob.attack.norm",
            "rep_match.distance",
            "rep_match.start",
        ];
        let at = |v: &serde_json::Value, path: &str| {
            path.split('.')
                .try_fold(v, |v, k| v.get(k))
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        for (name, text) in BUILTIN {
            let (p, _) = Preset::load(name).unwrap();
            let serialised = serde_json::to_value(&p).unwrap();
            let file = serde_json::to_value(text.parse::<toml::Table>().unwrap()).unwrap();
            for path in paths {
                let (s, f) = (at(&serialised, path), at(&file, path));
                assert!(s.is_string(), "{name} {path}: {s}");
                assert!(
                    f.is_null() || f == s,
                    "{name} {path}: file {f}, serialised {s}"
                );
            }
        }
        // The defaults of `rep_match.distance` / `start` and `model.init`.
        let text = BUILTIN[0]
            .1
            .replacen("distance = \"l2_squared\"\n", "", 1)
            .replacen("start = \"other_image\"\n", "", 1)
            .replacen("init = \"pytorch\"", "", 1);
        let p = serde_json::to_value(Preset::parse(&text, "t").unwrap()).unwrap();
        assert_eq!(at(&p, "rep_match.distance"), "l2_squared");
        assert_eq!(at(&p, "rep_match.start"), "other_image");
        assert_eq!(at(&p, "model.init"), "pytorch");
        for d in [
            DatasetName::FashionMnist,
            DatasetName::Mnist,
            DatasetName::Cifar10,
            DatasetName::RestrictedImagenet,
        ] {
            assert_eq!(serde_json::json!(d), d.as_str());
            assert_eq!(d.as_str().parse::<DatasetName>().unwrap(), d);
        }
        let e = "imagenet".parse::<DatasetName>().unwrap_err().to_string();
        assert!(e.contains("`fashion-mnist`"), "{e}");
    }

    #[test]
    fn values_are_toml_else_strings() {
        let o = sets(&[
            "model.init=tch",
            "rep_match.distance=\"cosine\"",
            "name=smoke-small",
            "data.dir=/tmp/some where",
            "extras.independent_model=C_indep",
            "seed=7",
            "relabel.step_size=1e-1",
        ]);
        let (p, _) = Preset::load_with_overrides("smoke", &o).unwrap();
        assert_eq!(p.model.init, Init::Tch);
        assert_eq!(p.rep_match.distance, Distance::Cosine);
        assert_eq!(p.name, "smoke-small");
        assert_eq!(p.data.dir, Some(PathBuf::from("/tmp/some where")));
        assert_eq!(p.extras.independent_model, IndependentModel::CIndep);
        assert_eq!(p.seed, 7);
        assert_eq!(p.relabel.step_size, 0.1);
        // A bare word is a string, so a number field refuses it naming the key.
        let e = err(&["seed=seven"]);
        assert!(e.contains("--set seed=seven"), "{e}");
    }

    #[test]
    fn malformed_sets_are_errors() {
        let e = err(&["rep_match.n"]);
        assert!(e.contains("--set rep_match.n: expected KEY=VALUE"), "{e}");
        let e = err(&["=5"]);
        assert!(e.contains("not a dotted key"), "{e}");
        let e = err(&["rep_match..n=5"]);
        assert!(e.contains("not a dotted key"), "{e}");
    }

    // Issue 16, item 7: values that were never validated.

    #[test]
    fn gamma_must_be_in_zero_one() {
        for v in ["-0.1", "0", "nan", "inf", "2"] {
            let e = err(&["train_std.schedule=step", &format!("train_std.gamma={v}")]);
            assert!(e.contains("`train_std.gamma`"), "{v}: {e}");
        }
        let e = err(&["fresh.gamma=-1"]);
        assert!(e.contains("`fresh.gamma`") && e.contains("(0, 1]"), "{e}");
        Preset::load_with_overrides("smoke", &sets(&["train_std.gamma=1"])).unwrap();
    }

    #[test]
    fn milestones_must_increase_within_training() {
        let step = "train_std.schedule=step";
        let e = err(&[step, "train_std.milestones=[3, 1]"]);
        assert!(
            e.contains("`train_std.milestones`") && e.contains("increasing"),
            "{e}"
        );
        let e = err(&[step, "train_std.milestones=[2, 2]"]);
        assert!(e.contains("increasing"), "{e}");
        // smoke trains 4 epochs: a milestone at 4 or later never takes effect.
        let e = err(&[step, "train_std.milestones=[2, 4]"]);
        assert!(e.contains("epoch 4 is not within training"), "{e}");
        assert!(e.contains("train_std.milestones=[]"), "{e}");
        let e = err(&[step, "train_std.milestones=[0]"]);
        assert!(e.contains("epoch 0"), "{e}");
        // Milestones are the step schedule's.
        let e = err(&["train_std.milestones=[2]"]);
        assert!(e.contains("only the \"step\" schedule"), "{e}");
        Preset::load_with_overrides("smoke", &sets(&[step, "train_std.milestones=[1, 3]"]))
            .unwrap();
        // The shipped presets are valid, and shrinking cifar10's epochs names the milestones.
        for (name, _) in BUILTIN {
            Preset::load(name).unwrap();
        }
        let e = format!(
            "{:#}",
            Preset::load_with_overrides("cifar10", &sets(&["train_std.epochs=2"])).unwrap_err()
        );
        assert!(
            e.contains("`train_std.milestones`") && e.contains("epoch 50"),
            "{e}"
        );
    }

    #[test]
    fn mean_and_std_are_checked_naming_the_field() {
        let e = err(&["model.mean=[0.5]", "model.std=[0.0]"]);
        assert!(e.contains("`model.std`") && e.contains("positive"), "{e}");
        let e = err(&["model.mean=[0.5]", "model.std=[-1.0]"]);
        assert!(e.contains("`model.std`"), "{e}");
        let e = err(&["model.mean=[nan]", "model.std=[1.0]"]);
        assert!(e.contains("`model.mean`"), "{e}");
        let e = err(&["model.mean=[0.5]"]);
        assert!(
            e.contains("`model.std`: missing while `model.mean` is set"),
            "{e}"
        );
        let e = err(&["model.std=[0.5]"]);
        assert!(
            e.contains("`model.mean`: missing while `model.std` is set"),
            "{e}"
        );
        let e = err(&["model.mean=[0.5, 0.5]", "model.std=[0.5]"]);
        assert!(e.contains("model.mean has 2, model.std 1"), "{e}");
        let e = err(&["model.mean=[]", "model.std=[]"]);
        assert!(e.contains("model.mean / model.std"), "{e}");
        // Against the data's channels (checked when the data is read).
        let (p, _) = Preset::load_with_overrides(
            "smoke",
            &sets(&["model.mean=[0.5, 0.5, 0.5]", "model.std=[0.2, 0.2, 0.2]"]),
        )
        .unwrap();
        let e = p
            .model
            .check_channels(1, "fashion-mnist/train")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model.mean`") && e.contains("3 values"), "{e}");
        assert!(e.contains("fashion-mnist/train have 1 channel"), "{e}");
        p.model.check_channels(3, "x").unwrap();
    }

    #[test]
    fn sources_name_torchscript_files_typed_and_checked() {
        // No preset names one, and an empty [sources] serialises to nothing (no cache key or
        // recorded preset changes).
        for (name, text) in BUILTIN {
            let p = Preset::parse(text, name).unwrap();
            assert!(p.sources.is_empty(), "{name}");
            assert!(!toml::to_string(&p).unwrap().contains("sources"), "{name}");
        }
        let off = ["extras.enabled=false"];
        let with = |more: &[&str]| -> Preset {
            let v: Vec<&str> = off.iter().chain(more).copied().collect();
            Preset::load_with_overrides("smoke", &sets(&v)).unwrap().0
        };
        let p = with(&["sources.c_rob.model=robust.pt"]);
        let s = p.sources.c_rob.as_ref().unwrap();
        assert_eq!(s.model, PathBuf::from("robust.pt"));
        assert_eq!(s.rep, nrf_models::RepSource::Tuple);
        assert!(s.mean.is_empty() && s.std.is_empty());
        assert!(p.sources.c_std.is_none());
        assert_eq!(p.sources.named().len(), 1);
        let p = with(&[
            "sources.c_std.model=std.pt",
            "sources.c_std.rep=method:features",
            "sources.c_std.mean=[0.286]",
            "sources.c_std.std=[0.353]",
        ]);
        let s = p.sources.of("C_std").unwrap();
        assert_eq!(s.rep, nrf_models::RepSource::Method("features".into()));
        assert_eq!((s.mean.clone(), s.std.clone()), (vec![0.286], vec![0.353]));
        // Serialised as written (run.json's preset, `--set` checks).
        let back = toml::to_string(&p).unwrap();
        assert!(back.contains("rep = \"method:features\""), "{back}");

        let e = err(&["extras.enabled=false", "sources.c_rob.modle=x.pt"]);
        assert!(e.contains("modle"), "{e}");
        let e = err(&["extras.enabled=false", "sources.c_mid.model=x.pt"]);
        assert!(e.contains("c_mid"), "{e}");
        let e = err(&[
            "extras.enabled=false",
            "sources.c_rob.model=x.pt",
            "sources.c_rob.rep=layer4",
        ]);
        assert!(
            e.contains("sources.c_rob.rep") && e.contains("method:<name>"),
            "{e}"
        );
        let e = err(&[
            "extras.enabled=false",
            "sources.c_rob.model=x.pt",
            "sources.c_rob.mean=[0.5]",
        ]);
        assert!(
            e.contains("`sources.c_rob.mean / sources.c_rob.std`"),
            "{e}"
        );
        let e = err(&[
            "extras.enabled=false",
            "sources.c_rob.model=x.pt",
            "sources.c_rob.mean=[0.5]",
            "sources.c_rob.std=[0.0]",
        ]);
        assert!(e.contains("`sources.c_rob.std`"), "{e}");
        let e = err(&["sources.c_rob.model=x.pt"]);
        assert!(e.contains("`extras.enabled`"), "{e}");
    }

    #[test]
    fn name_must_be_a_folder_name() {
        for bad in ["", " ", "a/b", "../up", "..", ".", "a\\b", "x\ny", " lead"] {
            let text = BUILTIN[0]
                .1
                .replacen("name = \"smoke\"", &format!("name = {bad:?}"), 1);
            let e = format!("{:#}", Preset::parse(&text, "t").unwrap_err());
            assert!(e.contains("`name`"), "{bad:?}: {e}");
        }
        for good in ["smoke-2", "my run", "a.b"] {
            let text = BUILTIN[0]
                .1
                .replacen("name = \"smoke\"", &format!("name = {good:?}"), 1);
            Preset::parse(&text, "t").unwrap();
        }
    }

    #[test]
    fn a_results_folder_of_another_preset_is_refused() {
        let (smoke, _) = Preset::load("smoke").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r");
        // Absent or empty: fine.
        smoke.check_results_folder(&results).unwrap();
        std::fs::create_dir(&results).unwrap();
        smoke.check_results_folder(&results).unwrap();
        let run = |preset: &str, toml: &str| {
            let v = serde_json::json!({ "preset": preset, "config_toml": toml });
            std::fs::write(results.join("run.json"), v.to_string()).unwrap();
        };
        run("smoke", BUILTIN[0].1);
        smoke.check_results_folder(&results).unwrap();
        run("cifar10", BUILTIN[3].1);
        let e = smoke
            .check_results_folder(&results)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&results.display().to_string()), "{e}");
        assert!(
            e.contains("preset \"cifar10\"") && e.contains("not of preset \"smoke\""),
            "{e}"
        );
        assert!(
            e.contains("--results DIR") && e.contains("start afresh"),
            "{e}"
        );
        // Same name, other data set.
        run("smoke", &BUILTIN[0].1.replace("fashion-mnist", "mnist"));
        let e = smoke
            .check_results_folder(&results)
            .unwrap_err()
            .to_string();
        assert!(e.contains("on data set \"mnist\""), "{e}");
        std::fs::write(results.join("run.json"), "{ garbage").unwrap();
        let e = smoke
            .check_results_folder(&results)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an nrf run record"), "{e}");
        // A file given as the folder.
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = smoke.check_results_folder(&file).unwrap_err().to_string();
        assert!(e.contains("is a file, not a folder"), "{e}");
    }

    /// Issue 16, item 5: the preset parser on arbitrary and mutated text never panics and
    /// answers quickly (the `fuzz/` workspace's `preset` target runs the same under libFuzzer).
    #[test]
    fn arbitrary_preset_text_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let start = std::time::Instant::now();
        let mut cases = 0;
        while cases < 400 && start.elapsed().as_secs_f64() < 4.0 {
            let base = BUILTIN[rng.gen_range(0..BUILTIN.len())].1.as_bytes();
            let mut b: Vec<u8> = match rng.gen_range(0..3) {
                0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
                _ => base.to_vec(),
            };
            for _ in 0..rng.gen_range(0..6) {
                if b.is_empty() {
                    break;
                }
                let i = rng.gen_range(0..b.len());
                match rng.gen_range(0..4) {
                    0 => b[i] = rng.gen(),
                    1 => b[i] = b"0123456789-.=[]{}\"\n ,"[rng.gen_range(0..21)],
                    2 => {
                        b.truncate(i);
                    }
                    _ => {
                        let j = rng.gen_range(0..b.len());
                        let chunk = b[j..(j + 40).min(b.len())].to_vec();
                        b.splice(i..i, chunk);
                    }
                }
            }
            let text = String::from_utf8_lossy(&b);
            let one = std::time::Instant::now();
            let _ = parse_fuzz_input(&text);
            assert!(one.elapsed().as_secs_f64() < 1.0, "slow on {text:?}");
            cases += 1;
        }
        assert!(cases >= 50, "only {cases} cases in the time");
    }
}
