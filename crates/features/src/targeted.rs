//! The targeted attack that builds D_rand / D_det, and the stronger variants that replications
//! of Table 1 used to make D_det work: a margin loss instead of the cross-entropy, and an
//! expectation over transformations (EOT), the gradient averaged over random shifts and flips of
//! each image so that the planted features survive small changes of the image.
//!
//! [`TargetedAttack::default`] is the paper's attack (targeted cross-entropy, no EOT);
//! [`crate::relabel::build`] uses it.
use anyhow::{bail, Result};
use nrf_attacks::objectives::cross_entropy;
use nrf_models::Classifier;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The loss the targeted attack maximises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetLoss {
    /// Minus the cross-entropy of the target (the paper's attack).
    #[default]
    CrossEntropy,
    /// The DLR-scaled targeted margin `(z_t - max_{j != t} z_j) / (z_pi1 - (z_pi3 + z_pi4) / 2)`
    /// (z sorted decreasingly; Croce & Hein 2020's scale): it keeps pushing after the target is
    /// reached and does not depend on the logits' scale. Needs at least 4 classes.
    Margin,
}

/// Expectation over transformations: each attack step averages the loss over `samples` random
/// copies of each image, shifted by up to `max_shift` pixels in each direction (zeros enter at
/// the border) and, if `flip`, mirrored left-right with probability 1/2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eot {
    pub samples: usize,
    #[serde(default)]
    pub max_shift: i64,
    #[serde(default)]
    pub flip: bool,
}

/// What the targeted attack optimises; the default is the paper's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetedAttack {
    #[serde(default)]
    pub loss: TargetLoss,
    #[serde(default)]
    pub eot: Option<Eot>,
}

impl TargetedAttack {
    /// True for the paper's attack.
    pub fn is_paper(&self) -> bool {
        *self == TargetedAttack::default()
    }

    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(e) = &self.eot {
            if e.samples == 0 {
                bail!("eot.samples must be at least 1");
            }
            if !(0..=8).contains(&e.max_shift) {
                bail!("eot.max_shift must be in 0..=8 pixels, got {}", e.max_shift);
            }
            if e.max_shift == 0 && !e.flip {
                bail!("eot with max_shift 0 and no flip transforms nothing");
            }
        }
        Ok(())
    }

    /// A short description, e.g. "margin, EOT 8 (shift 2, flip)".
    pub fn describe(&self) -> String {
        let loss = match self.loss {
            TargetLoss::CrossEntropy => "cross-entropy",
            TargetLoss::Margin => "DLR-scaled margin",
        };
        match &self.eot {
            None => loss.to_string(),
            Some(e) => format!(
                "{loss}, EOT over {} copies (shift <= {} px{})",
                e.samples,
                e.max_shift,
                if e.flip { ", flip" } else { "" }
            ),
        }
    }
}

/// The DLR-scaled targeted margin of `logits` `[N, C]` towards `target` `[N]` (to maximise):
/// positive iff the model predicts the target.
pub fn targeted_margin(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let classes = logits.size().get(1).copied().unwrap_or(0);
    if classes < 4 {
        bail!("the margin loss needs at least 4 classes, got {classes}");
    }
    Ok(margin_of(logits, target))
}

/// [`targeted_margin`] for logits known to have at least 4 classes.
fn margin_of(logits: &Tensor, target: &Tensor) -> Tensor {
    let idx = target.view([-1, 1]);
    let zt = logits.gather(1, &idx, false).squeeze_dim(1);
    let others = logits
        .scatter_value(1, &idx, f64::NEG_INFINITY)
        .amax([1i64].as_slice(), false);
    let (sorted, _) = logits.sort(1, true);
    let scale = sorted.select(1, 0) - (sorted.select(1, 2) + sorted.select(1, 3)) * 0.5 + 1e-12;
    (zt - others) / scale
}

/// `x` `[N,C,H,W]` shifted per image by `(dx, dy)` pixels (zeros enter at the border) and
/// mirrored left-right where `flip`: one differentiable resampling at pixel centres, so the
/// values are moved exactly, not interpolated.
pub fn shift_flip(x: &Tensor, dx: &[i64], dy: &[i64], flip: &[bool]) -> Tensor {
    let size = x.size();
    let (n, h, w) = (size[0], size[2] as f64, size[3] as f64);
    let mut theta = Vec::with_capacity(6 * n as usize);
    for i in 0..n as usize {
        let sx = if flip[i] { -1.0f32 } else { 1.0 };
        // grid_sample maps output coordinates to input ones: x_in = sx x_out + tx (in [-1, 1]).
        theta.extend_from_slice(&[
            sx,
            0.0,
            (-2.0 * dx[i] as f64 / w) as f32,
            0.0,
            1.0,
            (-2.0 * dy[i] as f64 / h) as f32,
        ]);
    }
    let theta = Tensor::from_slice(&theta)
        .view([n, 2, 3])
        .to_device(x.device())
        .to_kind(x.kind());
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    // bilinear (0) with zeros padding (0); at integer shifts every sample hits a pixel centre.
    x.grid_sampler(&grid, 0, 0, false)
}

/// The objective (`x -> [N]`, to maximise) of `attack` towards `target` on `model` in
/// evaluation mode. EOT draws its transformations from a ChaCha8 stream seeded with `seed`, a
/// new draw per call (per attack step), so a construction is reproducible. Check the attack
/// against the model's classes first ([`check_classes`]).
pub fn targeted_objective<'a>(
    model: &'a dyn Classifier,
    target: &'a Tensor,
    attack: &TargetedAttack,
    seed: u64,
) -> impl FnMut(&Tensor) -> Tensor + 'a {
    let attack = *attack;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let loss = move |logits: &Tensor| match attack.loss {
        TargetLoss::CrossEntropy => -cross_entropy(logits, target),
        TargetLoss::Margin => margin_of(logits, target),
    };
    move |x: &Tensor| match attack.eot {
        None => loss(&model.logits(x, false)),
        Some(e) => {
            let n = x.size()[0] as usize;
            let mut total: Option<Tensor> = None;
            for _ in 0..e.samples {
                let mut dx = Vec::with_capacity(n);
                let mut dy = Vec::with_capacity(n);
                let mut fl = Vec::with_capacity(n);
                for _ in 0..n {
                    dx.push(rng.gen_range(-e.max_shift..=e.max_shift));
                    dy.push(rng.gen_range(-e.max_shift..=e.max_shift));
                    fl.push(e.flip && rng.gen_bool(0.5));
                }
                let v = loss(&model.logits(&shift_flip(x, &dx, &dy, &fl), false));
                total = Some(match total {
                    None => v,
                    Some(t) => t + v,
                });
            }
            total.expect("eot.samples >= 1 (validated)") / e.samples as f64
        }
    }
}

/// Errors when `attack` cannot run on a `classes`-way model.
pub fn check_classes(attack: &TargetedAttack, classes: usize) -> Result<()> {
    attack.validate()?;
    if attack.loss == TargetLoss::Margin && classes < 4 {
        bail!("the margin loss needs at least 4 classes, the data have {classes}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn shift_moves_pixels_exactly_and_flip_mirrors() {
        let x = Tensor::arange(2 * 16, (Kind::Float, tch::Device::Cpu)).view([2, 1, 4, 4]);
        let y = shift_flip(&x, &[1, 0], &[0, -1], &[false, true]);
        // image 0 shifted right by one: column 0 is zero, column c+1 holds column c.
        let a = x.get(0).get(0);
        let b = y.get(0).get(0);
        assert_eq!(b.select(1, 0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let diff = (b.narrow(1, 1, 3) - a.narrow(1, 0, 3)).abs().max();
        assert!(diff.double_value(&[]) < 1e-5);
        // image 1 mirrored and shifted up by one: row r holds mirrored row r+1, last row zero.
        let a = x.get(1).get(0).flip([1i64].as_slice());
        let b = y.get(1).get(0);
        let diff = (b.narrow(0, 0, 3) - a.narrow(0, 1, 3)).abs().max();
        assert!(diff.double_value(&[]) < 1e-5);
        assert_eq!(b.select(0, 3).abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn margin_is_positive_iff_target_is_predicted() {
        let z = Tensor::from_slice(&[3.0f32, 1.0, 0.5, 0.0, 2.0, 1.0, 0.5, 0.0]).view([2, 4]);
        let t = Tensor::from_slice(&[0i64, 1]);
        let m = targeted_margin(&z, &t).unwrap();
        assert!(m.double_value(&[0]) > 0.0);
        assert!(m.double_value(&[1]) < 0.0);
        // scale invariance
        let m2 = targeted_margin(&(&z * 10.0), &t).unwrap();
        assert!((m - m2).abs().max().double_value(&[]) < 1e-5);
        assert!(targeted_margin(&z.narrow(1, 0, 3), &t).is_err());
    }

    #[test]
    fn bad_eot_is_refused() {
        let a = TargetedAttack {
            loss: TargetLoss::Margin,
            eot: Some(Eot {
                samples: 0,
                max_shift: 2,
                flip: false,
            }),
        };
        assert!(a.validate().is_err());
        assert!(check_classes(&TargetedAttack::default(), 2).is_ok());
        assert!(check_classes(
            &TargetedAttack {
                loss: TargetLoss::Margin,
                eot: None
            },
            3
        )
        .is_err());
    }
}
