//! Reviewer 2's `make_circles` question: usefulness and robust usefulness of simple features.
//!
//! [`make_circles`] follows scikit-learn's semantics: `n/2` (floor) points evenly spaced on the outer
//! unit circle (`linspace(0, 2π, n_out, endpoint=False)`), the remaining points on the inner circle
//! of radius `factor`, optional shuffling, then i.i.d. Gaussian noise of standard deviation `noise`
//! on each coordinate. Labels follow scikit-learn (`0` outer, `1` inner); for the usefulness
//! definitions we use the signed label `y = +1` for the outer and `y = -1` for the inner circle, so
//! that the centred radius is positively useful.
//!
//! Features are normalised on the data (`E f = 0`, `E f² = 1`): `f(x) = (g(x) - m)/s` for the raw
//! feature `g ∈ {x₁, x₂, ‖x‖}`. Usefulness is `ρ = E[y f(x)]`; robust usefulness at radius ε is
//! `γ(ε) = E[inf_{‖δ‖₂≤ε} y f(x+δ)]`. For a coordinate feature the infimum is `y f(x) - ε/s`;
//! for the radius it moves the point radially, giving `(max(‖x‖-ε, 0) - m)/s` for `y = +1` and
//! `-(‖x‖+ε-m)/s` for `y = -1`.

use ndarray::{Array1, Array2, ArrayView1, Axis};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{check_nonneg, invalid, Result};
use crate::stats::mean_std;

/// A `make_circles` data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Circles {
    /// `n×2` points.
    pub x: Array2<f64>,
    /// scikit-learn labels: `0` outer circle, `1` inner circle.
    pub label: Vec<u8>,
}

impl Circles {
    /// Signed labels `y = +1` (outer) / `-1` (inner).
    pub fn signed_labels(&self) -> Array1<f64> {
        Array1::from_iter(self.label.iter().map(|&l| if l == 0 { 1.0 } else { -1.0 }))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.label.len()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
    }
}

/// Seeded `sklearn.datasets.make_circles(n_samples, shuffle, noise, factor)`.
///
/// Not bit-identical to scikit-learn (different random generator), same distribution.
pub fn make_circles<R: Rng + ?Sized>(
    n_samples: usize,
    noise: f64,
    factor: f64,
    shuffle: bool,
    rng: &mut R,
) -> Result<Circles> {
    if n_samples < 2 {
        return Err(invalid("n_samples", "must be at least 2"));
    }
    check_nonneg("noise", noise)?;
    if !(0.0..1.0).contains(&factor) {
        return Err(invalid(
            "factor",
            format!("must be in [0, 1), got {factor}"),
        ));
    }
    let n_out = n_samples / 2;
    let n_in = n_samples - n_out;
    let mut pts: Vec<([f64; 2], u8)> = Vec::with_capacity(n_samples);
    for k in 0..n_out {
        let t = std::f64::consts::TAU * k as f64 / n_out as f64;
        pts.push(([t.cos(), t.sin()], 0));
    }
    for k in 0..n_in {
        let t = std::f64::consts::TAU * k as f64 / n_in as f64;
        pts.push(([factor * t.cos(), factor * t.sin()], 1));
    }
    if shuffle {
        pts.shuffle(rng);
    }
    let normal = Normal::new(0.0, noise.max(f64::MIN_POSITIVE))
        .map_err(|e| invalid("noise", e.to_string()))?;
    let mut x = Array2::<f64>::zeros((n_samples, 2));
    let mut label = Vec::with_capacity(n_samples);
    for (i, (p, l)) in pts.into_iter().enumerate() {
        for j in 0..2 {
            x[[i, j]] = p[j] + if noise > 0.0 { normal.sample(rng) } else { 0.0 };
        }
        label.push(l);
    }
    Ok(Circles { x, label })
}

/// The three raw features of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CircleFeature {
    /// First coordinate `x₁`.
    X1,
    /// Second coordinate `x₂`.
    X2,
    /// Radius `‖x‖₂` (centred: `r = ‖x‖ - E‖x‖`).
    Radius,
}

impl CircleFeature {
    /// All features, in table order.
    pub const ALL: [CircleFeature; 3] =
        [CircleFeature::X1, CircleFeature::X2, CircleFeature::Radius];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            CircleFeature::X1 => "x1",
            CircleFeature::X2 => "x2",
            CircleFeature::Radius => "radius",
        }
    }

    fn raw(self, p: ArrayView1<f64>) -> f64 {
        self.raw2([p[0], p[1]])
    }

    fn raw2(self, p: [f64; 2]) -> f64 {
        match self {
            CircleFeature::X1 => p[0],
            CircleFeature::X2 => p[1],
            CircleFeature::Radius => (p[0] * p[0] + p[1] * p[1]).sqrt(),
        }
    }

    /// Gradient of the raw feature (a subgradient `0` at the origin for the radius).
    fn raw_grad(self, p: [f64; 2]) -> [f64; 2] {
        match self {
            CircleFeature::X1 => [1.0, 0.0],
            CircleFeature::X2 => [0.0, 1.0],
            CircleFeature::Radius => {
                let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
                if r == 0.0 {
                    [0.0, 0.0]
                } else {
                    [p[0] / r, p[1] / r]
                }
            }
        }
    }
}

/// A feature normalised on a data set: `f(x) = (g(x) - mean)/std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalisedFeature {
    /// Which raw feature.
    pub kind: CircleFeature,
    /// `E g(x)` on the data.
    pub mean: f64,
    /// Standard deviation of `g(x)` on the data.
    pub std: f64,
}

impl NormalisedFeature {
    /// Fits mean and standard deviation on `data`.
    pub fn fit(kind: CircleFeature, data: &Circles) -> Result<Self> {
        let vals: Vec<f64> = data.x.axis_iter(Axis(0)).map(|p| kind.raw(p)).collect();
        let (mean, std) = mean_std(&vals).ok_or_else(|| invalid("data", "is empty"))?;
        if std.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(invalid(
                "data",
                format!("feature {} is constant", kind.name()),
            ));
        }
        Ok(Self { kind, mean, std })
    }

    /// `f(x)`.
    pub fn eval(&self, p: ArrayView1<f64>) -> f64 {
        (self.kind.raw(p) - self.mean) / self.std
    }

    /// Usefulness `ρ = E[y f(x)]`.
    pub fn usefulness(&self, data: &Circles) -> f64 {
        let y = data.signed_labels();
        let s: f64 = data
            .x
            .axis_iter(Axis(0))
            .zip(y.iter())
            .map(|(p, &yi)| yi * self.eval(p))
            .sum();
        s / data.len() as f64
    }

    /// Exact `inf_{‖δ‖≤ε} y f(x+δ)` for one point.
    pub fn worst_case(&self, p: ArrayView1<f64>, y: f64, eps: f64) -> f64 {
        match self.kind {
            CircleFeature::X1 | CircleFeature::X2 => y * self.eval(p) - eps / self.std,
            CircleFeature::Radius => {
                let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
                let moved = if y > 0.0 { (r - eps).max(0.0) } else { r + eps };
                y * (moved - self.mean) / self.std
            }
        }
    }

    /// Robust usefulness `γ(ε) = E[inf_{‖δ‖≤ε} y f(x+δ)]`, exact.
    pub fn robust_usefulness(&self, data: &Circles, eps: f64) -> Result<f64> {
        check_nonneg("eps", eps)?;
        let y = data.signed_labels();
        let s: f64 = data
            .x
            .axis_iter(Axis(0))
            .zip(y.iter())
            .map(|(p, &yi)| self.worst_case(p, yi, eps))
            .sum();
        Ok(s / data.len() as f64)
    }

    /// Numerical `inf_{‖δ‖≤ε} y f(x+δ)` by projected normalised-gradient descent (ℓ2 PGD with a
    /// geometrically shrinking step from `ε/2`, `steps` iterations, best iterate kept), without
    /// using the closed form.
    pub fn worst_case_numerical(&self, p: ArrayView1<f64>, y: f64, eps: f64, steps: usize) -> f64 {
        let h =
            |d: [f64; 2]| y * (self.kind.raw2([p[0] + d[0], p[1] + d[1]]) - self.mean) / self.std;
        let mut delta = [0.0, 0.0];
        let mut best = h(delta);
        let mut alpha = 0.5 * eps;
        for _ in 0..steps {
            let g = self.kind.raw_grad([p[0] + delta[0], p[1] + delta[1]]);
            let g = [y * g[0] / self.std, y * g[1] / self.std];
            let gn = (g[0] * g[0] + g[1] * g[1]).sqrt();
            if gn == 0.0 {
                break;
            }
            delta[0] -= alpha * g[0] / gn;
            delta[1] -= alpha * g[1] / gn;
            let dn = (delta[0] * delta[0] + delta[1] * delta[1]).sqrt();
            if dn > eps {
                delta[0] *= eps / dn;
                delta[1] *= eps / dn;
            }
            best = best.min(h(delta));
            alpha *= 0.85;
        }
        best
    }

    /// Robust usefulness by numerical inner minimisation ([`Self::worst_case_numerical`]).
    pub fn robust_usefulness_numerical(
        &self,
        data: &Circles,
        eps: f64,
        steps: usize,
    ) -> Result<f64> {
        check_nonneg("eps", eps)?;
        let y = data.signed_labels();
        let s: f64 = data
            .x
            .axis_iter(Axis(0))
            .zip(y.iter())
            .map(|(p, &yi)| self.worst_case_numerical(p, yi, eps, steps))
            .sum();
        Ok(s / data.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sklearn_layout_without_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let c = make_circles(7, 0.0, 0.5, false, &mut rng).unwrap();
        assert_eq!(c.label, vec![0, 0, 0, 1, 1, 1, 1]);
        assert!((c.x[[0, 0]] - 1.0).abs() < 1e-15 && c.x[[0, 1]].abs() < 1e-15);
        assert!((c.x[[3, 0]] - 0.5).abs() < 1e-15);
        // Second inner point at angle 2π/4.
        assert!(c.x[[4, 0]].abs() < 1e-15 && (c.x[[4, 1]] - 0.5).abs() < 1e-15);
        for (i, &l) in c.label.iter().enumerate() {
            let r = c.x.row(i).dot(&c.x.row(i)).sqrt();
            assert!((r - if l == 0 { 1.0 } else { 0.5 }).abs() < 1e-12);
        }
        assert!(make_circles(10, 0.1, 1.0, true, &mut rng).is_err());
        assert!(make_circles(10, -0.1, 0.5, true, &mut rng).is_err());
        assert!(make_circles(1, 0.1, 0.5, true, &mut rng).is_err());
    }

    #[test]
    fn features_are_normalised_and_radius_is_useful() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let c = make_circles(4000, 0.1, 0.5, true, &mut rng).unwrap();
        for k in CircleFeature::ALL {
            let f = NormalisedFeature::fit(k, &c).unwrap();
            let vals: Vec<f64> = c.x.axis_iter(Axis(0)).map(|p| f.eval(p)).collect();
            let (m, s) = mean_std(&vals).unwrap();
            assert!(m.abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        }
        let r = NormalisedFeature::fit(CircleFeature::Radius, &c).unwrap();
        assert!(r.usefulness(&c) > 0.8);
        let x1 = NormalisedFeature::fit(CircleFeature::X1, &c).unwrap();
        assert!(x1.usefulness(&c).abs() < 0.05);
    }

    #[test]
    fn exact_worst_case_matches_numerical() {
        let mut rng = ChaCha8Rng::seed_from_u64(43);
        let c = make_circles(400, 0.1, 0.5, true, &mut rng).unwrap();
        for k in CircleFeature::ALL {
            let f = NormalisedFeature::fit(k, &c).unwrap();
            let mut prev = f64::INFINITY;
            for eps in [0.0, 0.1, 0.3, 0.8] {
                let ex = f.robust_usefulness(&c, eps).unwrap();
                let num = f.robust_usefulness_numerical(&c, eps, 100).unwrap();
                // The numerical infimum can only be larger (it is a feasible point) and close.
                assert!(
                    num >= ex - 1e-9 && num - ex < 1e-3,
                    "{k:?} eps {eps}: {ex} vs {num}"
                );
                assert!(ex <= prev + 1e-12);
                prev = ex;
            }
        }
    }
}
