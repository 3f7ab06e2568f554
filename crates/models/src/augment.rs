//! Augmentation of training batches: the paper's code's training transforms
//! (MadryLab/robustness `data_augmentation.py`, spec section 4) on whole batches `[N,C,H,W]` of
//! images in `[0, 1]`.
//!
//! - CIFAR-10 (`TRAIN_TRANSFORMS_DEFAULT(32)`): RandomCrop(32, padding 4), RandomHorizontalFlip,
//!   ColorJitter(.25, .25, .25), RandomRotation(2).
//! - ImageNet-style (`TRAIN_TRANSFORMS_IMAGENET`): RandomResizedCrop(224), RandomHorizontalFlip,
//!   ColorJitter(.1, .1, .1), PCA lighting noise 0.05.
//!
//! [`Transforms`] holds either (each step skipped at 0); [`Augment::CropFlip`] is the crop and
//! flip alone, as nrf had it before (kept for its cache keys and its draws). The library
//! applies torchvision's transforms to PIL images, which round to 8 bits after each step; here
//! every step computes in floating point, and RandomResizedCrop crops the stored (already
//! centre-cropped) image rather than the full-size file.
//!
//! ```
//! use nrf_models::augment::{augment_batch, Augment, Crop, Transforms};
//! use rand::SeedableRng;
//! let x = tch::Tensor::rand([4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
//! let cifar = Augment::Transforms(Transforms::CIFAR);
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let y = augment_batch(&x, &cifar, &mut rng);
//! assert_eq!(y.size(), x.size());
//! assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
//! assert_eq!(Transforms::CIFAR.crop, Crop::Pad { pad: 4 });
//! ```
use anyhow::{bail, Result};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Data augmentation applied to training batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Augment {
    /// No augmentation.
    #[default]
    None,
    /// Random crop after zero padding by `pad` pixels, and random horizontal flip
    /// ([`crop_flip`]).
    CropFlip { pad: i64 },
    /// The paper's code's training transforms, in its order ([`Transforms`]).
    Transforms(Transforms),
}

/// The crop of [`Transforms`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Crop {
    /// No crop.
    None,
    /// RandomCrop(side, padding `pad`): a window of the image's size from the zero-padded image.
    Pad { pad: i64 },
    /// RandomResizedCrop with torchvision's defaults: a window of 8-100% of the image's area
    /// and aspect ratio in \[3/4, 4/3\] (10 tries, then the centred largest window of an allowed
    /// ratio), resized back to the image's size (bilinear).
    Resized,
}

/// The robustness library's training transforms: crop, horizontal flip, ColorJitter,
/// RandomRotation, then PCA lighting noise; a step is skipped when its field is 0 / false.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transforms {
    pub crop: Crop,
    /// RandomHorizontalFlip (probability 1/2).
    pub flip: bool,
    /// ColorJitter(j, j, j): brightness, contrast and saturation factors uniform in
    /// \[max(0, 1 - j), 1 + j\], applied in a random order per image.
    pub color_jitter: f64,
    /// RandomRotation(d): an angle uniform in \[-d, d\] degrees about the centre, nearest
    /// pixel, zero fill.
    pub rotate_deg: f64,
    /// Lighting(std) with the ImageNet PCA ([`IMAGENET_PCA_EIGVAL`], [`IMAGENET_PCA_EIGVEC`]):
    /// adds `V (alpha * lambda)` to the RGB channels, `alpha ~ N(0, std^2)` per image
    /// (3-channel images only), then clamps to \[0, 1\]: the library does not clamp here, but
    /// its attacks clamp their iterates to \[0, 1\], and nrf's attacks take inputs there only
    /// (the shift's standard deviation is about 0.006 at 0.05).
    pub lighting: f64,
}

impl Transforms {
    /// `TRAIN_TRANSFORMS_DEFAULT(32)`, the paper's code's CIFAR-10 transforms.
    pub const CIFAR: Transforms = Transforms {
        crop: Crop::Pad { pad: 4 },
        flip: true,
        color_jitter: 0.25,
        rotate_deg: 2.0,
        lighting: 0.0,
    };
    /// `TRAIN_TRANSFORMS_IMAGENET`, the paper's code's (Restricted) ImageNet transforms.
    pub const IMAGENET: Transforms = Transforms {
        crop: Crop::Resized,
        flip: true,
        color_jitter: 0.1,
        rotate_deg: 0.0,
        lighting: 0.05,
    };
}

/// The eigenvalues of the ImageNet RGB covariance the library's Lighting uses.
pub const IMAGENET_PCA_EIGVAL: [f64; 3] = [0.2175, 0.0188, 0.0045];
/// Its eigenvectors (columns), row i for channel i.
pub const IMAGENET_PCA_EIGVEC: [[f64; 3]; 3] = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
];

impl Augment {
    /// Checks the values and that they fit images of `shape` `[C, H, W]`; `what` names the
    /// data in errors.
    pub fn check(&self, shape: &[usize], what: &str) -> Result<()> {
        let side = shape.get(1..3).map_or(0, |s| s[0].min(s[1])) as i64;
        let pad = match self {
            Augment::None => return Ok(()),
            Augment::CropFlip { pad } => *pad,
            Augment::Transforms(t) => {
                let finite = |v: f64, name: &str, max: f64| -> Result<()> {
                    if !(v.is_finite() && (0.0..=max).contains(&v)) {
                        bail!("augmentation: {name} must be in [0, {max}], got {v}");
                    }
                    Ok(())
                };
                finite(t.color_jitter, "color_jitter", 1e6)?;
                finite(t.rotate_deg, "rotate_deg", 180.0)?;
                finite(t.lighting, "lighting", 1e6)?;
                if t.lighting > 0.0 && shape.first() != Some(&3) {
                    bail!(
                        "augmentation: lighting noise needs RGB images; {what} has {} channel(s)",
                        shape.first().copied().unwrap_or(0)
                    );
                }
                match t.crop {
                    Crop::Pad { pad } => pad,
                    _ => 0,
                }
            }
        };
        if pad < 0 {
            bail!("augmentation: crop_pad must be >= 0, got {pad}");
        }
        if pad > side {
            bail!(
                "crop_pad {pad} is larger than the images' side ({side} px) of {what}: the random \
                 crops would be mostly padding"
            );
        }
        Ok(())
    }
}

/// `x` `[N,C,H,W]` augmented as `augment` says, its random draws from `rng`. Values that
/// [`Augment::check`] refuses (negative, NaN, infinite) count as 0 here instead of panicking;
/// a padded crop larger than the image is the caller's to refuse.
pub fn augment_batch(x: &Tensor, augment: &Augment, rng: &mut impl Rng) -> Tensor {
    match augment {
        Augment::None => x.shallow_clone(),
        Augment::CropFlip { pad } => crop_flip(x, *pad, rng),
        Augment::Transforms(t) => transforms(x, t, rng),
    }
}

/// Applies random crop (zero padding `pad`) and horizontal flip to a batch `[N,C,H,W]`.
///
/// Per image, in order: the row offset, the column offset (both uniform in `0..=2*pad`), then
/// the flip (probability 1/2) are drawn from `rng`. The crops are gathered with one indexing
/// operation (pure copies), not one small tensor per image.
pub fn crop_flip(x: &Tensor, pad: i64, rng: &mut impl Rng) -> Tensor {
    let s = x.size();
    let offsets: Vec<(i64, i64, bool)> = (0..s[0])
        .map(|_| {
            let (dy, dx) = (rng.gen_range(0..=2 * pad), rng.gen_range(0..=2 * pad));
            (dy, dx, rng.gen_bool(0.5))
        })
        .collect();
    gather_windows(x, pad, &offsets)
}

/// Each image's `H x W` window at `(dy, dx)` of `x` zero-padded by `pad`, mirrored when its flag
/// says so: one indexing operation.
fn gather_windows(x: &Tensor, pad: i64, windows: &[(i64, i64, bool)]) -> Tensor {
    let s = x.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let padded = if pad > 0 {
        x.constant_pad_nd([pad, pad, pad, pad])
    } else {
        x.shallow_clone()
    };
    let (mut rows, mut cols) = (
        Vec::with_capacity((n * h) as usize),
        Vec::with_capacity((n * w) as usize),
    );
    for &(dy, dx, flip) in windows {
        rows.extend((0..h).map(|r| dy + r));
        if flip {
            cols.extend((0..w).rev().map(|q| dx + q));
        } else {
            cols.extend((0..w).map(|q| dx + q));
        }
    }
    let dev = x.device();
    let rows = Tensor::from_slice(&rows).view([n, 1, h, 1]).to_device(dev);
    let cols = Tensor::from_slice(&cols).view([n, 1, 1, w]).to_device(dev);
    let img = Tensor::arange(n, (Kind::Int64, dev)).view([n, 1, 1, 1]);
    let chan = Tensor::arange(c, (Kind::Int64, dev)).view([1, c, 1, 1]);
    padded.index(&[Some(img), Some(chan), Some(rows), Some(cols)])
}

/// One image's draws for [`Transforms`], in the order they are drawn.
struct Draw {
    /// Crop window `(top, left, height, width)` in pixels (of the padded image for a padded
    /// crop).
    window: (i64, i64, i64, i64),
    flip: bool,
    /// The order of (brightness 0, contrast 1, saturation 2) and their factors.
    jitter_order: [usize; 3],
    jitter: [f64; 3],
    /// Degrees, counter-clockwise as shown.
    angle: f64,
    /// Lighting's alpha per eigenvector.
    alpha: [f64; 3],
}

fn draw(t: &Transforms, h: i64, w: i64, rng: &mut impl Rng) -> Draw {
    let window = match t.crop {
        Crop::None => (0, 0, h, w),
        Crop::Pad { pad } => {
            let pad = pad.max(0);
            (rng.gen_range(0..=2 * pad), rng.gen_range(0..=2 * pad), h, w)
        }
        Crop::Resized => resized_crop_window(h, w, rng),
    };
    let flip = t.flip && rng.gen_bool(0.5);
    let (mut jitter_order, mut jitter) = ([0, 1, 2], [1.0; 3]);
    if t.color_jitter > 0.0 && t.color_jitter.is_finite() {
        for i in (1..3).rev() {
            jitter_order.swap(i, rng.gen_range(0..=i));
        }
        let lo = (1.0 - t.color_jitter).max(0.0);
        for f in &mut jitter {
            *f = rng.gen_range(lo..=1.0 + t.color_jitter);
        }
    }
    let angle = if t.rotate_deg > 0.0 && t.rotate_deg.is_finite() {
        rng.gen_range(-t.rotate_deg..=t.rotate_deg)
    } else {
        0.0
    };
    let mut alpha = [0.0; 3];
    if t.lighting > 0.0 && t.lighting.is_finite() {
        for a in &mut alpha {
            *a = t.lighting * rng.sample::<f64, _>(StandardNormal);
        }
    }
    Draw {
        window,
        flip,
        jitter_order,
        jitter,
        angle,
        alpha,
    }
}

/// torchvision's `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio (3/4, 4/3):
/// `(top, left, height, width)`.
fn resized_crop_window(h: i64, w: i64, rng: &mut impl Rng) -> (i64, i64, i64, i64) {
    let area = (h * w) as f64;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(0.08..=1.0);
        let ratio = rng.gen_range(lo..=hi).exp();
        let cw = (target * ratio).sqrt().round() as i64;
        let ch = (target / ratio).sqrt().round() as i64;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            return (rng.gen_range(0..=h - ch), rng.gen_range(0..=w - cw), ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < 3.0 / 4.0 {
        (((w as f64) / (3.0 / 4.0)).round() as i64, w)
    } else if in_ratio > 4.0 / 3.0 {
        (h, ((h as f64) * (4.0 / 3.0)).round() as i64)
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

fn transforms(x: &Tensor, t: &Transforms, rng: &mut impl Rng) -> Tensor {
    let s = x.size();
    let (h, w) = (s[2], s[3]);
    let draws: Vec<Draw> = (0..s[0]).map(|_| draw(t, h, w, rng)).collect();
    let flips = || draws.iter().map(|d| d.flip);
    let mut y = match t.crop {
        Crop::Resized => resize_windows(
            x,
            &draws.iter().map(|d| d.window).collect::<Vec<_>>(),
            &flips().collect::<Vec<_>>(),
        ),
        Crop::Pad { pad } => {
            let windows: Vec<_> = (draws.iter())
                .map(|d| (d.window.0, d.window.1, d.flip))
                .collect();
            gather_windows(x, pad.max(0), &windows)
        }
        Crop::None if t.flip => {
            gather_windows(x, 0, &flips().map(|f| (0, 0, f)).collect::<Vec<_>>())
        }
        Crop::None => x.shallow_clone(),
    };
    if t.color_jitter > 0.0 {
        let jitters: Vec<_> = draws.iter().map(|d| (d.jitter_order, d.jitter)).collect();
        y = color_jitter(&y, &jitters);
    }
    if t.rotate_deg > 0.0 {
        y = rotate(&y, &draws.iter().map(|d| d.angle).collect::<Vec<_>>());
    }
    if t.lighting > 0.0 {
        y = lighting(&y, &draws.iter().map(|d| d.alpha).collect::<Vec<_>>());
    }
    y
}

/// A per-image value `[N, 1, 1, 1]` of `like`'s kind and device.
fn per_image(like: &Tensor, v: &[f64]) -> Tensor {
    Tensor::from_slice(v)
        .to_kind(like.kind())
        .view([v.len() as i64, 1, 1, 1])
        .to_device(like.device())
}

/// Each image's window `(top, left, height, width)` resized to the image's size (bilinear),
/// mirrored where `flips` says.
fn resize_windows(x: &Tensor, windows: &[(i64, i64, i64, i64)], flips: &[bool]) -> Tensor {
    let s = x.size();
    let (h, w) = (s[2] as f64, s[3] as f64);
    // Output (normalised, align_corners = false) -> the window's points in the input.
    let theta: Vec<f64> = (windows.iter().zip(flips))
        .flat_map(|(&(top, left, ch, cw), &flip)| {
            let sx = cw as f64 / w * if flip { -1.0 } else { 1.0 };
            let tx = (2 * left + cw) as f64 / w - 1.0;
            let ty = (2 * top + ch) as f64 / h - 1.0;
            [sx, 0.0, tx, 0.0, ch as f64 / h, ty]
        })
        .collect();
    sample(x, theta, 0)
}

/// ColorJitter with each image's order of (brightness 0, contrast 1, saturation 2) and factors,
/// as torchvision computes them: brightness `f x`, contrast `f x + (1 - f) mean(gray(x))`,
/// saturation `f x + (1 - f) gray(x)` (a single-channel image keeps its saturation), each
/// clamped to \[0, 1\]; gray = 0.299 R + 0.587 G + 0.114 B.
fn color_jitter(x: &Tensor, jitters: &[([usize; 3], [f64; 3])]) -> Tensor {
    let c = x.size()[1];
    let gray = |v: &Tensor| -> Tensor {
        if c == 3 {
            let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
                .to_kind(v.kind())
                .view([1, 3, 1, 1])
                .to_device(v.device());
            (v * w).sum_dim_intlist([1i64].as_slice(), true, v.kind())
        } else {
            v.shallow_clone()
        }
    };
    let blend = |a: &Tensor, b: &Tensor, f: &Tensor| -> Tensor {
        let rest: Tensor = 1.0 - f;
        (a * f + b * rest).clamp(0.0, 1.0)
    };
    let factor = |k: usize| per_image(x, &jitters.iter().map(|j| j.1[k]).collect::<Vec<_>>());
    let (fb, fc, fs) = (factor(0), factor(1), factor(2));
    let mut y = x.shallow_clone();
    for slot in 0..3 {
        let is = |k: usize| {
            let hit: Vec<f64> = (jitters.iter())
                .map(|j| f64::from(u8::from(j.0[slot] == k)))
                .collect();
            per_image(x, &hit).gt(0.5)
        };
        let bright = (&y * &fb).clamp(0.0, 1.0);
        let g = gray(&y);
        let mean = g.mean_dim([1i64, 2, 3].as_slice(), true, y.kind());
        let contrast = blend(&y, &mean, &fc);
        let saturation = if c == 3 {
            blend(&y, &g, &fs)
        } else {
            y.shallow_clone()
        };
        y = bright.where_self(&is(0), &contrast.where_self(&is(1), &saturation));
    }
    y
}

/// Each image rotated by its angle (degrees, counter-clockwise as shown) about its centre,
/// nearest pixel, zero fill: the output's point p samples the input at R(-a) p in pixels about
/// the centre, D R(-a) D^-1 in normalised coordinates (D = diag(2/W, 2/H)).
fn rotate(x: &Tensor, angles: &[f64]) -> Tensor {
    let s = x.size();
    let (h, w) = (s[2] as f64, s[3] as f64);
    let theta: Vec<f64> = (angles.iter())
        .flat_map(|a| {
            let (sin, cos) = a.to_radians().sin_cos();
            [cos, -sin * h / w, 0.0, sin * w / h, cos, 0.0]
        })
        .collect();
    sample(x, theta, 1)
}

/// The library's Lighting: each image's RGB channels shifted by `V (alpha * lambda)`, clamped to
/// \[0, 1\].
fn lighting(x: &Tensor, alphas: &[[f64; 3]]) -> Tensor {
    let shift: Vec<f64> = (alphas.iter())
        .flat_map(|alpha| {
            (0..3).map(|i| {
                (0..3)
                    .map(|j| IMAGENET_PCA_EIGVEC[i][j] * alpha[j] * IMAGENET_PCA_EIGVAL[j])
                    .sum::<f64>()
            })
        })
        .collect();
    let shift = Tensor::from_slice(&shift)
        .to_kind(x.kind())
        .view([alphas.len() as i64, 3, 1, 1])
        .to_device(x.device());
    (x + shift).clamp(0.0, 1.0)
}

/// `x` sampled at the affine grids `theta` (`[N, 2, 3]`, row-major, align_corners = false, zero
/// outside): bilinear (`mode` 0) or nearest (1).
fn sample(x: &Tensor, theta: Vec<f64>, mode: i64) -> Tensor {
    let n = x.size()[0];
    let theta = Tensor::from_slice(&theta)
        .to_kind(x.kind())
        .view([n, 2, 3])
        .to_device(x.device());
    let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
    x.grid_sampler(&grid, mode, 0, false)
}

#[cfg(test)]
mod tests;
