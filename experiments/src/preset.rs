//! Presets: every hyper-parameter of a reproduction in one TOML file, with units in comments.
//! Unknown keys and bad values are errors that name the field.
use anyhow::{bail, Context, Result};
use nrf_attacks::Distance;
use nrf_features::repmatch::StartMode;
use nrf_models::train::Augment;
use nrf_models::{Arch, Init, LrSchedule, TrainConfig};
use nrf_report::results::eps_eq;
use serde::{Deserialize, Serialize};
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// "fashion-mnist", "mnist", "cifar10" or "restricted-imagenet".
    pub dataset: String,
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
    pub norm: String,
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
    /// "cosine" (linear warm-up then cosine to 0) or "step".
    pub schedule: String,
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
}

fn default_curve_n() -> usize {
    2000
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
    /// "l2_squared", "l2_relative" or "cosine".
    #[serde(default = "default_distance")]
    pub distance: String,
    /// "other_image" or "noise".
    #[serde(default = "default_start")]
    pub start: String,
}

fn default_distance() -> String {
    "l2_squared".into()
}
fn default_start() -> String {
    "other_image".into()
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
            matches!(self.schedule.as_str(), "cosine" | "step"),
            &format!("{s}.schedule"),
            format!("must be \"cosine\" or \"step\", got {:?}", self.schedule),
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
            check(
                matches!(a.norm.as_str(), "l2" | "linf"),
                &format!("{s}.attack.norm"),
                format!("must be \"l2\" or \"linf\", got {:?}", a.norm),
            )?;
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
            schedule: match self.schedule.as_str() {
                "step" => LrSchedule::Step {
                    lr: self.lr,
                    milestones: self.milestones.clone(),
                    gamma: self.gamma,
                },
                _ => LrSchedule::CosineWarmup {
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

impl RepMatchSection {
    pub fn distance(&self) -> Distance {
        match self.distance.as_str() {
            "l2_relative" => Distance::L2Relative,
            "cosine" => Distance::Cosine,
            _ => Distance::L2Squared,
        }
    }
    pub fn start_mode(&self) -> StartMode {
        if self.start == "noise" {
            StartMode::Noise
        } else {
            StartMode::OtherImage
        }
    }
}

impl Preset {
    /// Parses and validates a preset; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Preset> {
        let p: Preset = toml::from_str(text)
            .with_context(|| format!("preset {origin}: invalid TOML or unknown/ill-typed field"))?;
        p.validate().with_context(|| format!("preset {origin}"))?;
        Ok(p)
    }

    /// A built-in preset by name, or a TOML file by path. Returns the preset and its text.
    pub fn load(name_or_path: &str) -> Result<(Preset, String)> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Ok((Preset::parse(text, name_or_path)?, text.to_string()));
        }
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
        Ok((Preset::parse(&text, &path.display().to_string())?, text))
    }

    /// Checks every value; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check(
            matches!(
                self.data.dataset.as_str(),
                "fashion-mnist" | "mnist" | "cifar10" | "restricted-imagenet"
            ),
            "data.dataset",
            format!(
                "must be one of fashion-mnist, mnist, cifar10, restricted-imagenet; got {:?}",
                self.data.dataset
            ),
        )?;
        check(
            self.threads >= 0,
            "threads",
            format!("must be >= 0, got {}", self.threads),
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
        check(
            matches!(r.distance.as_str(), "l2_squared" | "l2_relative" | "cosine"),
            "rep_match.distance",
            format!(
                "must be l2_squared, l2_relative or cosine; got {:?}",
                r.distance
            ),
        )?;
        check(
            matches!(r.start.as_str(), "other_image" | "noise"),
            "rep_match.start",
            format!("must be other_image or noise; got {:?}", r.start),
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
        if let (Some(m), Some(s)) = (&self.model.mean, &self.model.std) {
            check(
                m.len() == s.len(),
                "model.mean / model.std",
                "need the same length".into(),
            )?;
        }
        self.extras.validate()?;
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
