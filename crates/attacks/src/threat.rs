//! Threat models: the set of allowed perturbations around a centre point.
//!
//! A threat model knows three things (as in MadryLab/robustness `attack_steps.py`): how to draw a
//! random starting point inside its ball, how to take one steepest-ascent step for its norm, and
//! how to project a point back into the ball (and into the image box `[0, 1]`). The PGD loop in
//! [`crate::pgd()`] only calls these three methods, so it knows nothing about norms.
//!
//! All methods are per-example: the first dimension is the batch, every other dimension (any
//! number of them, any shape) belongs to one example and norms are taken over all of them.

use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Added to per-example gradient norms before dividing, so a zero gradient gives a zero step.
pub const GRAD_NORM_EPS: f64 = 1e-12;

/// The set of allowed perturbations around a centre point.
///
/// Implementations must be per-example (batch dimension first) and must keep every point they
/// return inside `[0, 1]`.
pub trait ThreatModel: fmt::Debug + Send + Sync {
    /// A random point of the ball around `center`, clamped to `[0, 1]`.
    fn random_start(&self, center: &Tensor) -> Tensor;
    /// One steepest-ascent step of length `step_size` (measured in this threat model's norm) from
    /// `x` along `grad`. Not projected.
    fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor;
    /// Projects `x` into the ball of radius [`eps`](ThreatModel::eps) around `center` and into
    /// `[0, 1]`. Points already inside stay where they are.
    fn project(&self, x: &Tensor, center: &Tensor) -> Tensor;
    /// Per-example distance `‖x − center‖` in this threat model's norm, shape `[N]`.
    fn distance(&self, x: &Tensor, center: &Tensor) -> Tensor;
    /// Radius of the ball (`f64::INFINITY` for [`Unconstrained`]).
    fn eps(&self) -> f64;
    /// Short name of the norm: `"L2"`, `"Linf"`, `"L1"` or `"unconstrained"`.
    fn name(&self) -> &'static str;
    /// Checks the parameters (e.g. `eps` must be a non-negative number).
    fn validate(&self) -> Result<()> {
        let eps = self.eps();
        if eps.is_nan() || eps < 0.0 {
            bail!(
                "{} threat model: eps must be a non-negative number, got {eps}",
                self.name()
            );
        }
        Ok(())
    }
    /// One-line description, e.g. `"L2 eps=0.5"`.
    fn describe(&self) -> String {
        format!("{} eps={}", self.name(), self.eps())
    }
}

/// Shape `[N, 1, 1, ...]` with as many dimensions as `x`: broadcasts a per-example value.
pub(crate) fn per_example_shape(x: &Tensor) -> Vec<i64> {
    let mut s = vec![1i64; x.dim().max(1)];
    s[0] = x.size()[0];
    s
}

/// `x` viewed as `[N, D]` (D = product of the non-batch dimensions; 1 for a 1-D `x`).
pub(crate) fn flat(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    x.reshape([n, -1])
}

/// Per-example Lp norm over all non-batch dimensions, shape `[N]`.
pub fn per_example_norm(x: &Tensor, p: f64) -> Tensor {
    let f = flat(x);
    if p.is_infinite() {
        f.abs().amax([1i64].as_slice(), false)
    } else if p == 1.0 {
        f.abs()
            .sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)
    } else {
        f.norm_scalaropt_dim(p, [1i64].as_slice(), false)
    }
}

fn check_eps(name: &str, eps: f64) -> Result<()> {
    if eps.is_nan() || eps < 0.0 {
        bail!("{name} threat model: eps must be a non-negative number, got {eps}");
    }
    Ok(())
}

/// Normalised-gradient step: `x + step_size · g / (‖g‖₂ + 1e-12)` per example.
fn l2_step(x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
    let norm = per_example_norm(grad, 2.0).view(per_example_shape(grad).as_slice());
    x + grad / (norm + GRAD_NORM_EPS) * step_size
}

/// Euclidean ball `‖x − center‖₂ ≤ eps`, intersected with `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct L2 {
    /// Radius.
    pub eps: f64,
}

impl L2 {
    /// An L2 ball of radius `eps`; errors for negative or NaN `eps`.
    pub fn new(eps: f64) -> Result<L2> {
        check_eps("L2", eps)?;
        Ok(L2 { eps })
    }
}

impl ThreatModel for L2 {
    /// Uniform in the ball: a Gaussian direction and radius `eps · U^(1/d)`. The robustness
    /// library's `L2Step.random_perturb` renormalises uniform noise to length `eps`, a point on
    /// the sphere: the two differ by the radius alone, by `eps / (d + 1)` on average (0.13% of
    /// `eps` for 784 pixels, 0.03% for 3,072).
    fn random_start(&self, center: &Tensor) -> Tensor {
        let shape = per_example_shape(center);
        let d = flat(center).size()[1] as f64;
        let dir = center.randn_like();
        let dir = &dir / (per_example_norm(&dir, 2.0).view(shape.as_slice()) + GRAD_NORM_EPS);
        let u = Tensor::rand(shape.as_slice(), (center.kind(), center.device()));
        let radius = u.pow_tensor_scalar(1.0 / d) * self.eps;
        (center + dir * radius).clamp(0.0, 1.0)
    }
    fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        l2_step(x, grad, step_size)
    }
    fn project(&self, x: &Tensor, center: &Tensor) -> Tensor {
        let delta = x - center;
        let norm = per_example_norm(&delta, 2.0).view(per_example_shape(x).as_slice());
        // min(1, eps / ‖δ‖); a zero δ gives eps / 1e-30 → clamped to 1.
        let factor = (norm.clamp_min(1e-30).reciprocal() * self.eps).clamp_max(1.0);
        (center + delta * factor).clamp(0.0, 1.0)
    }
    fn distance(&self, x: &Tensor, center: &Tensor) -> Tensor {
        per_example_norm(&(x - center), 2.0)
    }
    fn eps(&self) -> f64 {
        self.eps
    }
    fn name(&self) -> &'static str {
        "L2"
    }
}

/// Box `‖x − center‖∞ ≤ eps`, intersected with `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Linf {
    /// Radius.
    pub eps: f64,
}

impl Linf {
    /// An L∞ ball of radius `eps`; errors for negative or NaN `eps`.
    pub fn new(eps: f64) -> Result<Linf> {
        check_eps("Linf", eps)?;
        Ok(Linf { eps })
    }
}

impl ThreatModel for Linf {
    /// Uniform in the box: `center + U(−eps, eps)` per coordinate.
    fn random_start(&self, center: &Tensor) -> Tensor {
        let noise = (center.rand_like() * 2.0 - 1.0) * self.eps;
        (center + noise).clamp(0.0, 1.0)
    }
    /// Signed-gradient step.
    fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        x + grad.sign() * step_size
    }
    fn project(&self, x: &Tensor, center: &Tensor) -> Tensor {
        let delta = if self.eps.is_finite() {
            (x - center).clamp(-self.eps, self.eps)
        } else {
            x - center
        };
        (center + delta).clamp(0.0, 1.0)
    }
    fn distance(&self, x: &Tensor, center: &Tensor) -> Tensor {
        per_example_norm(&(x - center), f64::INFINITY)
    }
    fn eps(&self) -> f64 {
        self.eps
    }
    fn name(&self) -> &'static str {
        "Linf"
    }
}

/// Cross-polytope `‖x − center‖₁ ≤ eps`, intersected with `[0, 1]`.
///
/// The step is the sparse "top-k" ascent step (Tramèr & Boneh 2019): it moves the
/// `k = max(1, ceil(sparsity · d))` coordinates with the largest gradient magnitude (ignoring
/// coordinates stuck at the box boundary with the gradient pushing outwards) by
/// `step_size / k` each, in the gradient's sign. With `k = 1` this is the exact steepest-ascent
/// step for L1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct L1 {
    /// Radius.
    pub eps: f64,
    /// Fraction of coordinates moved per step, in `(0, 1]`.
    pub sparsity: f64,
}

impl L1 {
    /// Default fraction of coordinates moved per step.
    pub const DEFAULT_SPARSITY: f64 = 0.01;

    /// An L1 ball of radius `eps` with the default step sparsity.
    pub fn new(eps: f64) -> Result<L1> {
        Self::with_sparsity(eps, Self::DEFAULT_SPARSITY)
    }
    /// An L1 ball whose steps move a fraction `sparsity` of the coordinates.
    pub fn with_sparsity(eps: f64, sparsity: f64) -> Result<L1> {
        let t = L1 { eps, sparsity };
        t.validate()?;
        Ok(t)
    }
    fn k(&self, d: i64) -> i64 {
        ((self.sparsity * d as f64).ceil() as i64).clamp(1, d.max(1))
    }
}

impl ThreatModel for L1 {
    /// Uniform in the cross-polytope: exponential spacings (uniform on the simplex with slack)
    /// times random signs times `eps`.
    fn random_start(&self, center: &Tensor) -> Tensor {
        let f = flat(center);
        let (n, d) = (f.size()[0], f.size()[1]);
        let mut e = Tensor::empty([n, d + 1], (center.kind(), center.device()));
        let _ = e.exponential_(1.0);
        let total = e.sum_dim_intlist([1i64].as_slice(), true, None::<Kind>);
        let mag = e.narrow(1, 0, d) / total;
        let signs = f.rand_like().gt(0.5).to_kind(center.kind()) * 2.0 - 1.0;
        let delta = (mag * signs * self.eps).view(center.size().as_slice());
        (center + delta).clamp(0.0, 1.0)
    }
    fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        let g = flat(grad);
        let xf = flat(x);
        let d = g.size()[1];
        let k = self.k(d);
        // Coordinates that cannot move in the ascent direction are left out of the top-k.
        let stuck = xf
            .le(0.0)
            .logical_and(&g.lt(0.0))
            .logical_or(&xf.ge(1.0).logical_and(&g.gt(0.0)));
        let score = g.abs().masked_fill(&stuck, 0.0);
        let (_, idx) = score.topk(k, 1, true, false);
        let chosen = g.sign().gather(1, &idx, false)
            * score.gather(1, &idx, false).gt(0.0).to_kind(g.kind());
        let step = g.zeros_like().scatter(1, &idx, &chosen) * (step_size / k as f64);
        x + step.view(grad.size().as_slice())
    }
    /// Exact Euclidean projection onto the L1 ball (sort-based, Duchi et al. 2008), then the
    /// `[0, 1]` clamp (which can only shrink `|x − center|` coordinate-wise).
    fn project(&self, x: &Tensor, center: &Tensor) -> Tensor {
        if self.eps == 0.0 {
            return center.clamp(0.0, 1.0);
        }
        if self.eps.is_infinite() {
            return x.clamp(0.0, 1.0);
        }
        let delta = flat(&(x - center));
        let (n, d) = (delta.size()[0], delta.size()[1]);
        let abs = delta.abs();
        let l1 = abs.sum_dim_intlist([1i64].as_slice(), true, None::<Kind>);
        let (sorted, _) = abs.sort(1, true);
        let css = sorted.cumsum(1, None::<Kind>) - self.eps;
        let ranks = Tensor::arange_start(1, d + 1, (delta.kind(), delta.device())).view([1, d]);
        let cond = (&sorted - &css / &ranks).gt(0.0);
        let rho = cond
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Int64)
            .clamp_min(1);
        let theta = (css.gather(1, &(&rho - 1), false) / rho.to_kind(delta.kind())).clamp_min(0.0);
        let shrunk = delta.sign() * (&abs - theta).clamp_min(0.0);
        let out = shrunk.where_self(&l1.gt(self.eps).expand([n, d], false), &delta);
        (center + out.view(x.size().as_slice())).clamp(0.0, 1.0)
    }
    fn distance(&self, x: &Tensor, center: &Tensor) -> Tensor {
        per_example_norm(&(x - center), 1.0)
    }
    fn eps(&self) -> f64 {
        self.eps
    }
    fn name(&self) -> &'static str {
        "L1"
    }
    fn validate(&self) -> Result<()> {
        check_eps("L1", self.eps)?;
        if !(self.sparsity > 0.0 && self.sparsity <= 1.0) {
            bail!(
                "L1 threat model: sparsity must be in (0, 1], got {}",
                self.sparsity
            );
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("L1 eps={} sparsity={}", self.eps, self.sparsity)
    }
}

/// No ball at all: only the image box `[0, 1]` (`eps = ∞`). Steps are normalised-gradient (L2)
/// steps, as used to build D_R / D_NR by representation matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unconstrained;

impl ThreatModel for Unconstrained {
    /// A uniformly random image in `[0, 1]^d` (the centre is only used for shape and device).
    fn random_start(&self, center: &Tensor) -> Tensor {
        center.rand_like()
    }
    fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        l2_step(x, grad, step_size)
    }
    fn project(&self, x: &Tensor, _center: &Tensor) -> Tensor {
        x.clamp(0.0, 1.0)
    }
    /// The L2 distance (for diagnostics; it is never constrained).
    fn distance(&self, x: &Tensor, center: &Tensor) -> Tensor {
        per_example_norm(&(x - center), 2.0)
    }
    fn eps(&self) -> f64 {
        f64::INFINITY
    }
    fn name(&self) -> &'static str {
        "unconstrained"
    }
    fn describe(&self) -> String {
        "unconstrained (box [0,1] only)".to_string()
    }
}

/// The norm of an adversarial-training attack's ball, as configuration files spell it: "l2" or
/// "linf" (a preset's `attack.norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// [`L2`] ball.
    L2,
    /// [`Linf`] ball.
    Linf,
}

impl Norm {
    /// The ball of radius `eps` (validated).
    pub fn ball(self, eps: f64) -> Result<Box<dyn ThreatModel>> {
        Ok(match self {
            Norm::L2 => Box::new(L2::new(eps)?),
            Norm::Linf => Box::new(Linf::new(eps)?),
        })
    }
}

/// A serialisable description of a threat model (for configuration files and result records).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "norm", rename_all = "lowercase")]
pub enum ThreatSpec {
    /// [`L2`] ball.
    L2 {
        /// Radius.
        eps: f64,
    },
    /// [`Linf`] ball.
    Linf {
        /// Radius.
        eps: f64,
    },
    /// [`L1`] ball.
    L1 {
        /// Radius.
        eps: f64,
        /// Fraction of coordinates moved per step ([`L1::DEFAULT_SPARSITY`] if absent).
        #[serde(default = "default_sparsity")]
        sparsity: f64,
    },
    /// [`Unconstrained`].
    Unconstrained,
}

fn default_sparsity() -> f64 {
    L1::DEFAULT_SPARSITY
}

impl ThreatSpec {
    /// Builds (and validates) the threat model.
    pub fn build(&self) -> Result<Box<dyn ThreatModel>> {
        Ok(match *self {
            ThreatSpec::L2 { eps } => Box::new(L2::new(eps)?),
            ThreatSpec::Linf { eps } => Box::new(Linf::new(eps)?),
            ThreatSpec::L1 { eps, sparsity } => Box::new(L1::with_sparsity(eps, sparsity)?),
            ThreatSpec::Unconstrained => Box::new(Unconstrained),
        })
    }
}
