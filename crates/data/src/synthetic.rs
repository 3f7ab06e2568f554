//! Small seeded synthetic datasets of feature vectors (not images): scikit-learn's
//! `make_circles` and the two-Gaussian model of the paper's Section 4.

use rand_distr::{Distribution, StandardNormal};

use crate::batch::seeded_rng;
use crate::error::{DataError, Result};
use crate::rng::{partial_shuffle, uniform_below};

/// A dataset of `len()` feature vectors of dimension `dim`, row-major, with integer labels.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularDataset {
    /// `len() * dim` features, row-major.
    pub features: Vec<f64>,
    /// One label per row (see the constructor for the convention: 0/1 or -1/+1).
    pub labels: Vec<i64>,
    /// Features per row.
    pub dim: usize,
}

impl TabularDataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
    /// Labels mapped 0 -> -1 and anything else -> +1 (for datasets labelled 0/1).
    pub fn labels_pm1(&self) -> Vec<i64> {
        self.labels
            .iter()
            .map(|&l| if l == 0 { -1 } else { 1 })
            .collect()
    }
    /// Labels mapped -1 -> 0 and anything else -> 1 (for datasets labelled -1/+1).
    pub fn labels_01(&self) -> Vec<i64> {
        self.labels
            .iter()
            .map(|&l| if l == -1 { 0 } else { 1 })
            .collect()
    }
}

/// scikit-learn's `make_circles` (with `shuffle=True`): `n / 2` points evenly spaced on the unit
/// circle (label **0**) and the other `n - n / 2` on the circle of radius `factor` (label
/// **1**), plus Gaussian noise of standard deviation `noise` on each coordinate; rows shuffled.
/// Labels are 0/1 as in scikit-learn; use [`TabularDataset::labels_pm1`] for -1/+1.
/// Deterministic given `seed` (but not the same numbers as scikit-learn's generator).
///
/// Fails when `factor` is not in `[0, 1)` or `noise` is negative or not finite.
pub fn make_circles(n: usize, noise: f64, factor: f64, seed: u64) -> Result<TabularDataset> {
    if !(0.0..1.0).contains(&factor) {
        return Err(DataError::invalid(
            "make_circles: factor",
            format!("{factor} is not in [0, 1)"),
        ));
    }
    if !noise.is_finite() || noise < 0.0 {
        return Err(DataError::invalid(
            "make_circles: noise",
            format!("{noise} is not a finite non-negative number"),
        ));
    }
    let n_out = n / 2;
    let n_in = n - n_out;
    let mut rows: Vec<([f64; 2], i64)> = Vec::with_capacity(n);
    for i in 0..n_out {
        let t = 2.0 * std::f64::consts::PI * i as f64 / n_out as f64;
        rows.push(([t.cos(), t.sin()], 0));
    }
    for i in 0..n_in {
        let t = 2.0 * std::f64::consts::PI * i as f64 / n_in as f64;
        rows.push(([factor * t.cos(), factor * t.sin()], 1));
    }
    let mut rng = seeded_rng(seed, 0);
    partial_shuffle(&mut rows, n, &mut rng);
    let mut features = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for (x, y) in rows {
        for v in x {
            let e: f64 = StandardNormal.sample(&mut rng);
            features.push(v + noise * e);
        }
        labels.push(y);
    }
    Ok(TabularDataset {
        features,
        labels,
        dim: 2,
    })
}

/// The covariance of the two-Gaussian model.
#[derive(Debug, Clone, PartialEq)]
pub enum Covariance {
    /// A diagonal covariance given by its variances (all > 0).
    Diagonal(Vec<f64>),
    /// A full `d x d` covariance, row-major; must be symmetric positive definite.
    Full(Vec<f64>),
}

/// Lower-triangular Cholesky factor `L` (row-major, `L Lᵀ = a`) of a symmetric positive
/// definite `d x d` matrix.
fn cholesky(a: &[f64], d: usize) -> Result<Vec<f64>> {
    let what = "two_gaussians: covariance";
    for i in 0..d {
        for j in 0..i {
            let (x, y) = (a[i * d + j], a[j * d + i]);
            if (x - y).abs() > 1e-9 * (1.0 + x.abs().max(y.abs())) {
                return Err(DataError::invalid(
                    what,
                    format!("not symmetric: entry ({i},{j}) = {x} but ({j},{i}) = {y}"),
                ));
            }
        }
    }
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if !(v > 0.0 && v.is_finite()) {
                    return Err(DataError::invalid(
                        what,
                        format!("not positive definite (pivot {i} is {v})"),
                    ));
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Ok(l)
}

/// The robust-features model of the paper's Section 4: `y` uniform on **{-1, +1}** (labels are
/// -1/+1; use [`TabularDataset::labels_01`] for 0/1) and `x ~ N(y * mu, cov)`. Deterministic
/// given `seed`. Fails when `cov`'s size does not match `mu`, when a variance is not positive,
/// or when a full covariance is not symmetric positive definite.
pub fn two_gaussians(n: usize, mu: &[f64], cov: &Covariance, seed: u64) -> Result<TabularDataset> {
    let d = mu.len();
    if d == 0 {
        return Err(DataError::invalid("two_gaussians: mu", "is empty"));
    }
    if mu.iter().any(|v| !v.is_finite()) {
        return Err(DataError::invalid(
            "two_gaussians: mu",
            "has a non-finite entry",
        ));
    }
    // Lower-triangular factor, row-major.
    let l = match cov {
        Covariance::Diagonal(var) => {
            if var.len() != d {
                return Err(DataError::invalid(
                    "two_gaussians: covariance",
                    format!("{} variances for dimension {d}", var.len()),
                ));
            }
            if let Some(v) = var.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
                return Err(DataError::invalid(
                    "two_gaussians: covariance",
                    format!("variance {v} is not positive and finite"),
                ));
            }
            let mut l = vec![0.0; d * d];
            for i in 0..d {
                l[i * d + i] = var[i].sqrt();
            }
            l
        }
        Covariance::Full(a) => {
            if a.len() != d * d {
                return Err(DataError::invalid(
                    "two_gaussians: covariance",
                    format!("{} entries for a {d}x{d} matrix", a.len()),
                ));
            }
            cholesky(a, d)?
        }
    };
    let mut rng = seeded_rng(seed, 0);
    let mut features = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    let mut z = vec![0.0; d];
    for _ in 0..n {
        let y: i64 = if uniform_below(&mut rng, 2) == 0 {
            -1
        } else {
            1
        };
        for zi in z.iter_mut() {
            *zi = StandardNormal.sample(&mut rng);
        }
        for i in 0..d {
            let noise: f64 = (0..=i).map(|k| l[i * d + k] * z[k]).sum();
            features.push(y as f64 * mu[i] + noise);
        }
        labels.push(y);
    }
    Ok(TabularDataset {
        features,
        labels,
        dim: d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circles_have_sklearn_layout() {
        let c = make_circles(101, 0.0, 0.5, 3).unwrap();
        assert_eq!(c.len(), 101);
        assert_eq!(c.dim, 2);
        let zeros = c.labels.iter().filter(|&&l| l == 0).count();
        assert_eq!(zeros, 50, "n/2 outer points labelled 0");
        for i in 0..c.len() {
            let r = c.row(i).iter().map(|v| v * v).sum::<f64>().sqrt();
            let expected = if c.labels[i] == 0 { 1.0 } else { 0.5 };
            assert!((r - expected).abs() < 1e-12, "row {i}: radius {r}");
        }
        // Shuffled: the labels are not all 0 then all 1.
        assert!(c.labels[..50].contains(&1));
        assert_eq!(c, make_circles(101, 0.0, 0.5, 3).unwrap());
        assert_ne!(c, make_circles(101, 0.0, 0.5, 4).unwrap());
        assert_eq!(c.labels_pm1().iter().filter(|&&l| l == -1).count(), 50);
    }

    #[test]
    fn circles_noise_has_the_requested_spread() {
        let c = make_circles(4000, 0.1, 0.3, 1).unwrap();
        // Radial deviation of outer points ~ N(0, 0.1^2) to first order.
        let dev: Vec<f64> = (0..c.len())
            .filter(|&i| c.labels[i] == 0)
            .map(|i| c.row(i).iter().map(|v| v * v).sum::<f64>().sqrt() - 1.0)
            .collect();
        let var = dev.iter().map(|d| d * d).sum::<f64>() / dev.len() as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.01, "radial std {}", var.sqrt());
    }

    #[test]
    fn circles_reject_bad_arguments() {
        let e = make_circles(10, 0.1, 1.0, 0).unwrap_err().to_string();
        assert!(e.contains("factor"), "{e}");
        let e = make_circles(10, -0.1, 0.5, 0).unwrap_err().to_string();
        assert!(e.contains("noise"), "{e}");
        assert!(make_circles(10, f64::NAN, 0.5, 0).is_err());
        assert!(make_circles(0, 0.1, 0.5, 0).unwrap().is_empty());
    }

    fn moments(t: &TabularDataset, sign: i64) -> (Vec<f64>, Vec<f64>) {
        let d = t.dim;
        let rows: Vec<&[f64]> = (0..t.len())
            .filter(|&i| t.labels[i] == sign)
            .map(|i| t.row(i))
            .collect();
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let mut cov = vec![0.0; d * d];
        for r in &rows {
            for a in 0..d {
                for b in 0..d {
                    cov[a * d + b] += (r[a] - mean[a]) * (r[b] - mean[b]) / n;
                }
            }
        }
        (mean, cov)
    }

    #[test]
    fn gaussians_match_their_parameters() {
        let mu = [1.0, -2.0];
        let full = [2.0, 0.8, 0.8, 0.5];
        let t = two_gaussians(20000, &mu, &Covariance::Full(full.to_vec()), 11).unwrap();
        assert_eq!(t.dim, 2);
        let pos = t.labels.iter().filter(|&&l| l == 1).count();
        assert!(t.labels.iter().all(|&l| l == 1 || l == -1));
        assert!((pos as f64 / 20000.0 - 0.5).abs() < 0.02, "{pos} positives");
        for sign in [-1i64, 1] {
            let (m, c) = moments(&t, sign);
            for j in 0..2 {
                assert!(
                    (m[j] - sign as f64 * mu[j]).abs() < 0.05,
                    "mean {m:?} for y={sign}"
                );
            }
            for k in 0..4 {
                assert!((c[k] - full[k]).abs() < 0.08, "cov {c:?} vs {full:?}");
            }
        }
        let diag = two_gaussians(20000, &mu, &Covariance::Diagonal(vec![4.0, 0.25]), 12).unwrap();
        let (_, c) = moments(&diag, 1);
        assert!(
            (c[0] - 4.0).abs() < 0.2 && (c[3] - 0.25).abs() < 0.02 && c[1].abs() < 0.05,
            "{c:?}"
        );
        assert_eq!(
            t,
            two_gaussians(20000, &mu, &Covariance::Full(full.to_vec()), 11).unwrap()
        );
        assert_eq!(
            diag.labels_01().iter().filter(|&&l| l == 0).count(),
            diag.labels.iter().filter(|&&l| l == -1).count()
        );
    }

    #[test]
    fn gaussians_reject_bad_covariances() {
        let mu = [0.0, 0.0];
        for (cov, needle) in [
            (
                Covariance::Full(vec![1.0, 2.0, 2.0, 1.0]),
                "positive definite",
            ),
            (Covariance::Full(vec![1.0, 0.1, 0.2, 1.0]), "symmetric"),
            (Covariance::Full(vec![1.0]), "entries"),
            (Covariance::Diagonal(vec![1.0, 0.0]), "variance"),
            (Covariance::Diagonal(vec![1.0]), "variances"),
        ] {
            let e = two_gaussians(5, &mu, &cov, 0).unwrap_err().to_string();
            assert!(e.contains("covariance") && e.contains(needle), "{e}");
        }
        assert!(two_gaussians(5, &[], &Covariance::Diagonal(vec![]), 0).is_err());
    }
}
