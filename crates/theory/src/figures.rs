//! The data of the theory's figures: every curve and point, ready to draw. Nothing here draws:
//! nrf-report draws these with its plotting stack (`nrf_report::theory_figures`), where every
//! other figure of the report is drawn.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::linalg::sym_eig;

/// The four figures of [`crate::run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoryFigures {
    /// Figure 4: the ε-constrained robust MLE in the 2-D model.
    pub figure4: Figure4,
    /// Theorem 1: vulnerability against the condition number.
    pub thm1: Thm1Figure,
    /// Theorem 3: alignment of input gradients with μ.
    pub thm3: Thm3Figure,
    /// Reviewer 2: usefulness of simple features on `make_circles`.
    pub circles: CirclesFigure,
}

/// A 2-D sample point with its label `y = ±1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelledPoint {
    /// First coordinate.
    pub x1: f64,
    /// Second coordinate.
    pub x2: f64,
    /// Label, `+1` or `-1`.
    pub y: f64,
}

/// A Gaussian fit as its 1-σ ellipses around `+μ` and `-μ`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ellipses {
    /// Class mean `μ` (the other class is at `-μ`).
    pub mu: (f64, f64),
    /// Closed outline of the 1-σ ellipse around `+μ`.
    pub plus: Vec<(f64, f64)>,
    /// Closed outline of the 1-σ ellipse around `-μ`.
    pub minus: Vec<(f64, f64)>,
}

impl Ellipses {
    /// The 1-σ ellipses of `N(±μ, Σ)` (2-D), each as 241 points around the outline.
    pub fn of(mu: &Array1<f64>, sigma: &Array2<f64>) -> Result<Self> {
        let e = sym_eig(sigma.view())?;
        let outline = |sign: f64| -> Vec<(f64, f64)> {
            (0..=240)
                .map(|k| {
                    let t = std::f64::consts::TAU * k as f64 / 240.0;
                    let a = e.values[0].max(0.0).sqrt() * t.cos();
                    let b = e.values[1].max(0.0).sqrt() * t.sin();
                    let q = &e.vectors;
                    (
                        sign * mu[0] + q[[0, 0]] * a + q[[0, 1]] * b,
                        sign * mu[1] + q[[1, 0]] * a + q[[1, 1]] * b,
                    )
                })
                .collect()
        };
        Ok(Self {
            mu: (mu[0], mu[1]),
            plus: outline(1.0),
            minus: outline(-1.0),
        })
    }
}

/// One ε of Figure 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure4Panel {
    /// Radius ε (0: the standard MLE).
    pub eps: f64,
    /// λ whose Theorem 2 closed form is closest to the fit (`None` for ε = 0).
    pub matched_lambda: Option<f64>,
    /// The numerically fitted ε-constrained robust MLE.
    pub robust_mle: Ellipses,
    /// Theorem 2's closed form at `matched_lambda` around the standard MLE's mean, if any.
    pub closed_form: Option<Ellipses>,
}

/// Figure 4: the 2-D sample, one panel per ε, and how the fit changes with ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure4 {
    /// The sample the fits are computed on.
    pub samples: Vec<LabelledPoint>,
    /// One panel per ε.
    pub panels: Vec<Figure4Panel>,
    /// (ε, largest eigenvalue of Σ_ε / (tr Σ_ε / 2)).
    pub largest_eigenvalue: Vec<(f64, f64)>,
    /// (ε, smallest eigenvalue of Σ_ε / (tr Σ_ε / 2)).
    pub smallest_eigenvalue: Vec<(f64, f64)>,
    /// (ε, ‖μ_ε‖ / ‖μ_MLE‖).
    pub mu_norm: Vec<(f64, f64)>,
}

/// Theorem 1 at one λ: loss increase against the condition number κ(Σ*).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm1Panel {
    /// Penalty λ.
    pub lambda: f64,
    /// (κ, closed-form vulnerability).
    pub closed_form: Vec<(f64, f64)>,
    /// (κ, Monte-Carlo loss increase with the closed-form δ*).
    pub mc_closed_form: Vec<(f64, f64)>,
    /// (κ, Monte-Carlo loss increase with δ found by gradient ascent).
    pub mc_gradient_ascent: Vec<(f64, f64)>,
}

/// Theorem 1's figure: one panel per λ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm1Figure {
    /// Dimension d.
    pub dim: usize,
    /// Fixed trace of Σ*.
    pub trace: f64,
    /// One panel per λ.
    pub panels: Vec<Thm1Panel>,
}

/// Theorem 3's figure: cosine(∇ₓf, μ) along Theorem 2's closed form (against 1/λ) and along the
/// ε-constrained fits (against ε).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm3Figure {
    /// Dimension of the high-dimensional model.
    pub dim: usize,
    /// Its condition number.
    pub kappa: f64,
    /// (1/λ, cosine) in the 2-D model with μ = μ*.
    pub cosine_2d: Vec<(f64, f64)>,
    /// (1/λ, worst-case cosine over μ) in the 2-D model.
    pub worst_2d: Vec<(f64, f64)>,
    /// (1/λ, worst-case cosine over μ) in the d-dimensional model.
    pub worst_high_dim: Vec<(f64, f64)>,
    /// (ε, cosine with the fitted μ_ε).
    pub eps_cosine: Vec<(f64, f64)>,
    /// (ε, worst-case cosine over μ for Σ_ε).
    pub eps_worst: Vec<(f64, f64)>,
}

/// One feature's robust usefulness γ(ε).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCurve {
    /// Feature name (`x1`, `x2`, `radius`).
    pub feature: String,
    /// (ε, exact γ(ε)).
    pub points: Vec<(f64, f64)>,
}

/// Reviewer 2's figure: the `make_circles` sample and the features' robust usefulness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CirclesFigure {
    /// Sample size.
    pub n: usize,
    /// Noise.
    pub noise: f64,
    /// Inner-circle factor.
    pub factor: f64,
    /// The first points of the sample (at most 1,500).
    pub samples: Vec<LabelledPoint>,
    /// Exact γ(ε) per feature.
    pub exact: Vec<FeatureCurve>,
    /// (ε, γ(ε)) by the numerical inner minimisation, all features.
    pub numerical: Vec<(f64, f64)>,
}
