//! The Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based
//! black-box attack — random square-shaped updates accepted when they lower the margin — for L∞
//! and L2. It uses no gradient, so it is the black-box check of an evaluation: a model that
//! resists gradient attacks but falls to Square masks its gradients.
//!
//! Ported from the reference implementations (fra31/auto-attack `square.py`, torchattacks
//! `Square`) for the untargeted margin loss: the initialisation (L∞: vertical stripes of ±eps;
//! L2: a grid of the "meta-pseudo-Gaussian" windows), the window-size schedule `p` (halved at
//! 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 rescaled queries), one window
//! position per query for the whole batch, an update kept per example only when it lowers the
//! margin (or misclassifies), and examples dropped once misclassified.
use anyhow::{bail, Context, Result};
use nrf_models::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::apgd::ApgdOutput;
use crate::objectives::margin;
use crate::pgd::logits_by_rows;
use crate::threat::ThreatModel;

/// Configuration of a Square run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SquareConfig {
    /// Queries (forward passes per example) at most (AutoAttack: 5000).
    pub queries: usize,
    /// Initial fraction of pixels a window covers (AutoAttack: 0.8).
    pub p_init: f64,
    /// Seed of torch's generator for the random windows and signs.
    pub seed: u64,
}

impl SquareConfig {
    /// `queries` queries, p_init 0.8, seed 0.
    pub fn new(queries: usize) -> SquareConfig {
        SquareConfig {
            queries,
            p_init: 0.8,
            seed: 0,
        }
    }
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.queries == 0 {
            bail!("Square config: queries must be at least 1");
        }
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            bail!(
                "Square config: p_init must be in (0, 1], got {}",
                self.p_init
            );
        }
        Ok(())
    }
    /// One-line description.
    pub fn describe(&self) -> String {
        format!("Square {} queries", self.queries)
    }
}

/// The window fraction at query `it` of `queries` (the references' schedule, rescaled to
/// 10,000 queries).
pub fn p_selection(p_init: f64, it: usize, queries: usize) -> f64 {
    let it = (it as f64 / queries as f64 * 10_000.0) as usize;
    let div = match it {
        0..=10 => 1.0,
        11..=50 => 2.0,
        51..=200 => 4.0,
        201..=500 => 8.0,
        501..=1000 => 16.0,
        1001..=2000 => 32.0,
        2001..=4000 => 64.0,
        4001..=6000 => 128.0,
        6001..=8000 => 256.0,
        _ => 512.0,
    };
    p_init / div
}

/// The references' `eta_rectangles(x, y)`: concentric rectangles weighted 1/(k+1)², unit norm.
fn eta_rectangles(x: usize, y: usize) -> Vec<f64> {
    let mut d = vec![0.0; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc as i64 - 1, yc as i64 - 1);
    for k in 0..xc.max(yc) {
        let w = 1.0 / ((k + 1) as f64).powi(2);
        let (r0, r1) = (
            c0.max(0) as usize,
            ((c0 + 2 * k as i64 + 1).min(x as i64)).max(0) as usize,
        );
        let (q0, q1) = (
            c1.max(0) as usize,
            ((c1 + 2 * k as i64 + 1).min(y as i64)).max(0) as usize,
        );
        for r in r0..r1 {
            for q in q0..q1 {
                d[r * y + q] += w;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    d.iter().map(|v| v / norm).collect()
}

/// The references' `eta(s)`: an `s × s` window, `+` rectangles in its top half and `-` in its
/// bottom half, unit norm, transposed with probability 1/2.
fn eta(s: usize, transpose: bool) -> Tensor {
    let top = eta_rectangles(s / 2, s);
    let bottom = eta_rectangles(s - s / 2, s);
    let mut d: Vec<f64> = top
        .into_iter()
        .chain(bottom.into_iter().map(|v| -v))
        .collect();
    let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    d.iter_mut().for_each(|v| *v /= norm);
    let t = Tensor::from_slice(&d.iter().map(|&v| v as f32).collect::<Vec<_>>())
        .view([s as i64, s as i64]);
    if transpose {
        t.transpose(0, 1).contiguous()
    } else {
        t
    }
}

fn coin() -> bool {
    Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0]) > 0.5
}

/// An integer in `[lo, hi)` as the references draw it (`lo + (hi - lo) · U[0, 1)`, floored); `lo`
/// when `hi <= lo`.
fn random_int(lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    let u = Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0]);
    lo + ((hi - lo) as f64 * u) as i64
}

/// ±1 with equal probability, of `shape`, on `like`'s device and kind.
fn random_sign(shape: &[i64], like: &Tensor) -> Tensor {
    (Tensor::rand(shape, (Kind::Float, like.device())) * 2.0 - 1.0)
        .sign()
        .to_kind(like.kind())
}

fn l2_norm_4d(t: &Tensor) -> Tensor {
    let n = t.size()[0];
    t.reshape([n, -1])
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)
        .sqrt()
        .view([n, 1, 1, 1])
}

/// Square on `(x, y)` (images `[N, C, H, W]` in [0, 1]) within `threat` (L2 or L∞). Examples
/// misclassified clean are fooled from the start and not attacked. Returns the per-example
/// fooled mask and, for fooled examples, the image that fooled the model.
pub fn square(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &SquareConfig,
) -> Result<ApgdOutput> {
    let what = format!("{} ({})", cfg.describe(), threat.describe());
    cfg.validate().with_context(|| what.clone())?;
    threat.validate().with_context(|| what.clone())?;
    let linf = match threat.name() {
        "Linf" => true,
        "L2" => false,
        other => bail!("{what}: {other} threat models are not supported (L2 and Linf are)"),
    };
    if x.dim() != 4 {
        bail!("{what}: images must be [N, C, H, W], got {:?}", x.size());
    }
    tch::manual_seed(cfg.seed as i64);
    let eps = threat.eps();
    let x = x.detach();
    let margin_of = |xb: &Tensor, yb: &Tensor| -> Tensor {
        // The references' margin z_y - max_{j != y} z_j: positive while correct.
        -margin(&logits_by_rows(model, xb), yb)
    };
    let _g = tch::no_grad_guard();
    // Initialisation.
    let mut x_best = if linf {
        init_linf(&x, eps)
    } else {
        init_l2(&x, eps)
    };
    let mut margin_min = margin_of(&x_best, y);
    // Clean-wrong examples are fooled from the start (the references attack only clean-correct
    // ones and return them unchanged).
    let clean_wrong = margin_of(&x, y).le(0.0);
    margin_min = margin_min.masked_fill(&clean_wrong, -1.0);
    for i in 0..cfg.queries {
        let idx = margin_min.gt(0.0).nonzero().squeeze_dim(1);
        if idx.numel() == 0 {
            break;
        }
        let x_curr = x.index_select(0, &idx);
        let x_best_curr = x_best.index_select(0, &idx);
        let y_curr = y.index_select(0, &idx);
        let m_curr = margin_min.index_select(0, &idx);
        let p = p_selection(cfg.p_init, i, cfg.queries);
        let x_new = if linf {
            linf_candidate(&x, &x_curr, &x_best_curr, p, eps)
        } else {
            l2_candidate(&x, &x_curr, &x_best_curr, idx.size()[0], p, eps)
        };
        let m_new = margin_of(&x_new, &y_curr);
        let improved = m_new.lt_tensor(&m_curr);
        let m_keep = m_new.where_self(&improved, &m_curr);
        margin_min = margin_min.index_copy(0, &idx, &m_keep);
        let imp4 = improved.view([-1, 1, 1, 1]);
        let x_keep = x_new.where_self(&imp4, &x_best_curr);
        x_best = x_best.index_copy(0, &idx, &x_keep);
    }
    let fooled = margin_min.le(0.0);
    // Clean-wrong examples keep their clean image; the others their best point.
    let x_out = x.where_self(&clean_wrong.view([-1, 1, 1, 1]), &x_best);
    Ok(ApgdOutput { x: x_out, fooled })
}

/// The L∞ initialisation of the clean images `x` (`[N, C, H, W]`): vertical stripes of ±`eps`
/// (one sign per example, channel and column), clamped to [0, 1].
fn init_linf(x: &Tensor, eps: f64) -> Tensor {
    let (n, c, w) = (x.size()[0], x.size()[1], x.size()[3]);
    (x + random_sign(&[n, c, 1, w], x) * eps).clamp(0.0, 1.0)
}

/// The L2 initialisation of the clean images `x` (`[N, C, H, W]`): a grid of `eta` windows with
/// random orientations and signs, scaled to L2 norm `eps`, clamped to [0, 1].
fn init_l2(x: &Tensor, eps: f64) -> Tensor {
    let (n, c, h, w) = (x.size()[0], x.size()[1], x.size()[2], x.size()[3]);
    let delta = x.zeros_like();
    let s = (h / 5).max(1);
    let sp = (h - s * 5).max(0) / 2;
    let mut vh = sp;
    for _ in 0..h / s {
        let mut vw = sp;
        for _ in 0..w / s {
            if vh + s <= h && vw + s <= w {
                let window = eta(s as usize, coin())
                    .to_kind(x.kind())
                    .to_device(x.device())
                    .view([1, 1, s, s])
                    * random_sign(&[n, c, 1, 1], x);
                let mut slot = delta.narrow(2, vh, s).narrow(3, vw, s);
                let _ = slot.g_add_(&window);
            }
            vw += s;
        }
        vh += s;
    }
    (x + &delta / (l2_norm_4d(&delta) + 1e-12) * eps).clamp(0.0, 1.0)
}

/// One L∞ query's candidates: `x_best_curr` plus ±2·`eps` (one sign per channel) in one random
/// square window (side from the window fraction `p`), projected onto the `eps`-ball around
/// `x_curr` and [0, 1]. `x` is the clean batch (its shape, kind and device).
fn linf_candidate(x: &Tensor, x_curr: &Tensor, x_best_curr: &Tensor, p: f64, eps: f64) -> Tensor {
    let (c, h, w) = (x.size()[1], x.size()[2], x.size()[3]);
    let n_features = (c * h * w) as f64;
    let s = ((p * n_features / c as f64).sqrt().round() as i64).clamp(1, h.min(w));
    let (vh, vw) = (random_int(0, h - s), random_int(0, w - s));
    let new_deltas = Tensor::zeros([c, h, w], (x.kind(), x.device()));
    let mut slot = new_deltas.narrow(1, vh, s).narrow(2, vw, s);
    slot.copy_(&(random_sign(&[c, 1, 1], x) * (2.0 * eps)).expand([c, s, s], false));
    let moved = x_best_curr + new_deltas.unsqueeze(0);
    moved
        .maximum(&(x_curr - eps))
        .minimum(&(x_curr + eps))
        .clamp(0.0, 1.0)
}

/// One L2 query's candidates for the `m` examples still attacked: the perturbation
/// `x_best_curr - x_curr` with one random window (odd side from the window fraction `p`)
/// replaced by a fresh `eta` window and a second one zeroed, rescaled to L2 norm `eps` and
/// clamped to [0, 1]. `x` is the clean batch (its shape, kind and device).
fn l2_candidate(
    x: &Tensor,
    x_curr: &Tensor,
    x_best_curr: &Tensor,
    m: i64,
    p: f64,
    eps: f64,
) -> Tensor {
    let (c, h, w) = (x.size()[1], x.size()[2], x.size()[3]);
    let n_features = (c * h * w) as f64;
    let mut s = ((p * n_features / c as f64).sqrt().round() as i64)
        .max(3)
        .min(h.min(w));
    if s % 2 == 0 {
        s = (s + 1).min(h.min(w));
    }
    let delta_curr = x_best_curr - x_curr;
    let (vh, vw) = (random_int(0, h - s), random_int(0, w - s));
    let (vh2, vw2) = (random_int(0, h - s), random_int(0, w - s));
    let window = |t: &Tensor, a: i64, b: i64| t.narrow(2, a, s).narrow(3, b, s);
    let norms_window_1 = window(&delta_curr, vh, vw)
        .square()
        .sum_dim_intlist([-2i64, -1].as_slice(), true, None::<Kind>)
        .sqrt();
    let mask = x_curr.zeros_like();
    let _ = window(&mask, vh, vw).fill_(1.0);
    let _ = window(&mask, vh2, vw2).fill_(1.0);
    let norms_image = l2_norm_4d(&delta_curr);
    let norms_windows = l2_norm_4d(&(&delta_curr * &mask));
    let mut new_deltas = eta(s as usize, coin())
        .to_kind(x.kind())
        .to_device(x.device())
        .view([1, 1, s, s])
        * random_sign(&[m, c, 1, 1], x);
    new_deltas += window(&delta_curr, vh, vw) / (norms_window_1 + 1e-12);
    let scale = ((norms_image.square().neg() + eps * eps).clamp_min(0.0) / c as f64
        + norms_windows.square())
    .sqrt();
    let new_norm = new_deltas
        .square()
        .sum_dim_intlist([-2i64, -1].as_slice(), true, None::<Kind>)
        .sqrt();
    let new_deltas = &new_deltas / (new_norm + 1e-12) * scale;
    let delta_next = delta_curr.copy();
    let _ = window(&delta_next, vh2, vw2).fill_(0.0);
    window(&delta_next, vh, vw).copy_(&new_deltas);
    (x_curr + &delta_next / (l2_norm_4d(&delta_next) + 1e-12) * eps).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_schedule_halves_as_in_the_references() {
        assert_eq!(p_selection(0.8, 0, 10_000), 0.8);
        assert_eq!(p_selection(0.8, 10, 10_000), 0.8);
        assert_eq!(p_selection(0.8, 11, 10_000), 0.4);
        assert_eq!(p_selection(0.8, 9000, 10_000), 0.8 / 512.0);
        // Rescaled: query 100 of 1000 is query 1000 of 10,000.
        assert_eq!(p_selection(0.8, 100, 1000), 0.8 / 16.0);
    }

    #[test]
    fn eta_windows_have_unit_norm_and_opposite_halves() {
        for s in [3usize, 5, 6, 9] {
            let t = eta(s, false);
            let norm = t.square().sum(Kind::Double).double_value(&[]).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "s={s}: norm {norm}");
            let top = t
                .narrow(0, 0, (s / 2) as i64)
                .sum(Kind::Double)
                .double_value(&[]);
            let bottom = t
                .narrow(0, (s / 2) as i64, (s - s / 2) as i64)
                .sum(Kind::Double)
                .double_value(&[]);
            assert!(top > 0.0 && bottom < 0.0, "s={s}: {top} {bottom}");
        }
    }
}
