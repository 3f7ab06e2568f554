//! Range checks of the sections (errors name the field), and the training section's
//! [`TrainConfig`].
use super::sections::{ModelSection, Schedule, TrainSection};
use anyhow::{bail, Result};
use nrf_attacks::{AdvTraining, PgdConfig};
use nrf_models::augment::{Augment, Crop, Transforms};
use nrf_models::{LrSchedule, TrainConfig};

/// `name` names the default results folder (`results/<name>`): one plain folder name.
pub(super) fn check_name(name: &str) -> Result<()> {
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
        arch_sizes(&self.arch, "model.arch")?;
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

/// The architecture's sizes ([`nrf_models::Arch::validate`]), the error naming `field`.
pub(super) fn arch_sizes(arch: &nrf_models::Arch, field: &str) -> Result<()> {
    arch.validate()
        .map_err(|e| anyhow::anyhow!("preset field `{field}`: {e}"))
}

pub(super) fn check(cond: bool, field: &str, msg: String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        bail!("preset field `{field}`: {msg}")
    }
}

pub(super) fn positive(v: f64, field: &str) -> Result<()> {
    check(
        v > 0.0 && v.is_finite(),
        field,
        format!("must be positive and finite, got {v}"),
    )
}

impl TrainSection {
    pub(super) fn validate(&self, s: &str) -> Result<()> {
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
        for (field, v, max) in [
            ("color_jitter", self.color_jitter, 1e6),
            ("rotate_deg", self.rotate_deg, 180.0),
            ("lighting", self.lighting, 1e6),
        ] {
            check(
                v.is_finite() && (0.0..=max).contains(&v),
                &format!("{s}.{field}"),
                format!("must be in [0, {max}], got {v}"),
            )?;
        }
        check(
            !(self.resized_crop && self.crop_pad > 0),
            &format!("{s}.resized_crop"),
            format!(
                "a resized crop replaces the padded one: set crop_pad = 0 (it is {})",
                self.crop_pad
            ),
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

    /// The augmentation these fields ask for: the crop and flip alone as before (the same cache
    /// keys), the paper's code's transforms as soon as a jitter, rotation, lighting or resized
    /// crop is asked for.
    pub fn augment(&self) -> Augment {
        let library = self.resized_crop
            || self.color_jitter > 0.0
            || self.rotate_deg > 0.0
            || self.lighting > 0.0;
        if !library {
            return if self.crop_pad > 0 {
                Augment::CropFlip { pad: self.crop_pad }
            } else {
                Augment::None
            };
        }
        Augment::Transforms(Transforms {
            crop: if self.resized_crop {
                Crop::Resized
            } else if self.crop_pad > 0 {
                Crop::Pad { pad: self.crop_pad }
            } else {
                Crop::None
            },
            flip: self.resized_crop || self.crop_pad > 0,
            color_jitter: self.color_jitter,
            rotate_deg: self.rotate_deg,
            lighting: self.lighting,
        })
    }

    /// The section's adversary (`attack`: PGD with a random start as set, its best iterate kept),
    /// or None for standard training.
    pub fn adversary(&self) -> Result<Option<AdvTraining>> {
        let Some(a) = &self.attack else {
            return Ok(None);
        };
        let threat = a.norm.ball(a.eps)?;
        let pgd = PgdConfig::new(a.steps, a.step_factor * a.eps / a.steps as f64)
            .with_random_start(a.random_start)
            .with_use_best(true);
        Ok(Some(AdvTraining::new(threat, pgd)?))
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
            augment: self.augment(),
            seed,
            curve_every: 1,
            progress,
            stop_after: None,
        }
    }
}
