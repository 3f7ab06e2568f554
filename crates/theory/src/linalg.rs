//! Small dense linear algebra for symmetric matrices (no LAPACK).
//!
//! Everything here is meant for the small dimensions of the theory experiments (d up to a few
//! tens): a cyclic Jacobi symmetric eigendecomposition, Cholesky factorisation, SPD inverse and
//! log-determinant, matrix functions in the eigenbasis, and random SPD matrices.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::error::{invalid, Result, TheoryError};

/// Eigendecomposition `A = Q diag(values) Qᵀ` of a symmetric matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct SymEig {
    /// Eigenvalues in ascending order.
    pub values: Array1<f64>,
    /// Orthonormal eigenvectors, one per column, in the order of `values`.
    pub vectors: Array2<f64>,
}

impl SymEig {
    /// Returns `Q diag(f(values)) Qᵀ`, the matrix function `f(A)`.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Array2<f64> {
        let d = self.values.len();
        let fv: Vec<f64> = self.values.iter().map(|&v| f(v)).collect();
        let q = &self.vectors;
        let mut out = Array2::<f64>::zeros((d, d));
        for i in 0..d {
            for j in i..d {
                let mut s = 0.0;
                for (k, &fk) in fv.iter().enumerate() {
                    s += q[[i, k]] * fk * q[[j, k]];
                }
                out[[i, j]] = s;
                out[[j, i]] = s;
            }
        }
        out
    }

    /// Smallest eigenvalue.
    pub fn min(&self) -> f64 {
        self.values[0]
    }

    /// Largest eigenvalue.
    pub fn max(&self) -> f64 {
        self.values[self.values.len() - 1]
    }

    /// Coordinates `Qᵀ v` of a vector in the eigenbasis.
    pub fn to_basis(&self, v: ArrayView1<f64>) -> Array1<f64> {
        self.vectors.t().dot(&v)
    }
}

/// Checks that `a` is a non-empty square matrix with finite entries.
pub fn check_square(field: &str, a: ArrayView2<f64>) -> Result<usize> {
    let (r, c) = a.dim();
    if r == 0 || r != c {
        return Err(invalid(
            field,
            format!("must be a non-empty square matrix, got shape {r}x{c}"),
        ));
    }
    if let Some(bad) = a.iter().find(|x| !x.is_finite()) {
        return Err(invalid(
            field,
            format!("contains a non-finite entry ({bad})"),
        ));
    }
    Ok(r)
}

/// Checks that `a` is square, finite and symmetric up to a relative tolerance of 1e-9.
pub fn check_symmetric(field: &str, a: ArrayView2<f64>) -> Result<usize> {
    let d = check_square(field, a)?;
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    for i in 0..d {
        for j in (i + 1)..d {
            if (a[[i, j]] - a[[j, i]]).abs() > 1e-9 * scale {
                return Err(invalid(
                    field,
                    format!(
                        "must be symmetric, but entry ({i},{j}) = {} differs from ({j},{i}) = {}",
                        a[[i, j]],
                        a[[j, i]]
                    ),
                ));
            }
        }
    }
    Ok(d)
}

/// Checks that `v` is a finite vector of length `d`.
pub fn check_vector(field: &str, v: ArrayView1<f64>, d: usize) -> Result<()> {
    if v.len() != d {
        return Err(invalid(
            field,
            format!("must have length {d}, got {}", v.len()),
        ));
    }
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(invalid(
            field,
            format!("contains a non-finite entry ({bad})"),
        ));
    }
    Ok(())
}

/// Symmetric eigendecomposition by the cyclic Jacobi method.
///
/// `a` must be symmetric (checked). Eigenvalues are returned in ascending order with matching
/// orthonormal eigenvector columns. Accurate to a few ulps of `‖A‖` for the small matrices used here.
pub fn sym_eig(a: ArrayView2<f64>) -> Result<SymEig> {
    let d = check_symmetric("matrix", a)?;
    let mut m = a.to_owned();
    // Symmetrise exactly so round-off asymmetry does not accumulate.
    for i in 0..d {
        for j in (i + 1)..d {
            let s = 0.5 * (m[[i, j]] + m[[j, i]]);
            m[[i, j]] = s;
            m[[j, i]] = s;
        }
    }
    let mut q = Array2::<f64>::eye(d);
    let norm: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut converged = d == 1 || norm == 0.0;
    for _sweep in 0..100 {
        if converged {
            break;
        }
        let mut off = 0.0;
        for i in 0..d {
            for j in (i + 1)..d {
                off += m[[i, j]] * m[[i, j]];
            }
        }
        if off.sqrt() <= 1e-15 * norm {
            converged = true;
            break;
        }
        for p in 0..d {
            for r in (p + 1)..d {
                let apr = m[[p, r]];
                if apr.abs() <= 1e-300 {
                    continue;
                }
                let app = m[[p, p]];
                let arr = m[[r, r]];
                let theta = (arr - app) / (2.0 * apr);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let mkp = m[[k, p]];
                    let mkr = m[[k, r]];
                    m[[k, p]] = c * mkp - s * mkr;
                    m[[k, r]] = s * mkp + c * mkr;
                }
                for k in 0..d {
                    let mpk = m[[p, k]];
                    let mrk = m[[r, k]];
                    m[[p, k]] = c * mpk - s * mrk;
                    m[[r, k]] = s * mpk + c * mrk;
                }
                for k in 0..d {
                    let qkp = q[[k, p]];
                    let qkr = q[[k, r]];
                    q[[k, p]] = c * qkp - s * qkr;
                    q[[k, r]] = s * qkp + c * qkr;
                }
            }
        }
    }
    if !converged {
        return Err(TheoryError::NoConvergence {
            routine: "Jacobi eigendecomposition".into(),
            reason: "off-diagonal mass still large after 100 sweeps".into(),
        });
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| m[[i, i]].total_cmp(&m[[j, j]]));
    let values = Array1::from_iter(order.iter().map(|&i| m[[i, i]]));
    let mut vectors = Array2::<f64>::zeros((d, d));
    for (new, &old) in order.iter().enumerate() {
        vectors.column_mut(new).assign(&q.column(old));
    }
    Ok(SymEig { values, vectors })
}

/// Lower-triangular Cholesky factor `L` with `A = L Lᵀ`; fails with [`TheoryError::NotSpd`].
pub fn cholesky(field: &str, a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let d = check_symmetric(field, a)?;
    let mut l = Array2::<f64>::zeros((d, d));
    for j in 0..d {
        let mut s = a[[j, j]];
        for k in 0..j {
            s -= l[[j, k]] * l[[j, k]];
        }
        if !s.is_finite() || s <= 0.0 || s.is_nan() {
            return Err(TheoryError::NotSpd {
                field: field.to_string(),
                reason: format!("Cholesky pivot {j} is {s}"),
            });
        }
        let ljj = s.sqrt();
        l[[j, j]] = ljj;
        for i in (j + 1)..d {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / ljj;
        }
    }
    Ok(l)
}

/// Checks that `a` is symmetric positive definite (via Cholesky) and returns its dimension.
pub fn check_spd(field: &str, a: ArrayView2<f64>) -> Result<usize> {
    cholesky(field, a).map(|l| l.nrows())
}

/// Solves `L Lᵀ x = b` given the Cholesky factor `L`.
pub fn cholesky_solve(l: ArrayView2<f64>, b: ArrayView1<f64>) -> Array1<f64> {
    let d = l.nrows();
    let mut y = Array1::<f64>::zeros(d);
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= l[[i, k]] * y[k];
        }
        y[i] = s / l[[i, i]];
    }
    let mut x = Array1::<f64>::zeros(d);
    for i in (0..d).rev() {
        let mut s = y[i];
        for k in (i + 1)..d {
            s -= l[[k, i]] * x[k];
        }
        x[i] = s / l[[i, i]];
    }
    x
}

/// Inverse of an SPD matrix via Cholesky.
pub fn spd_inverse(field: &str, a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let l = cholesky(field, a)?;
    let d = l.nrows();
    let mut inv = Array2::<f64>::zeros((d, d));
    let mut e = Array1::<f64>::zeros(d);
    for j in 0..d {
        e.fill(0.0);
        e[j] = 1.0;
        let col = cholesky_solve(l.view(), e.view());
        inv.column_mut(j).assign(&col);
    }
    // Symmetrise round-off.
    for i in 0..d {
        for j in (i + 1)..d {
            let s = 0.5 * (inv[[i, j]] + inv[[j, i]]);
            inv[[i, j]] = s;
            inv[[j, i]] = s;
        }
    }
    Ok(inv)
}

/// Solves `A x = b` for SPD `A`.
pub fn spd_solve(field: &str, a: ArrayView2<f64>, b: ArrayView1<f64>) -> Result<Array1<f64>> {
    let l = cholesky(field, a)?;
    check_vector("rhs", b, l.nrows())?;
    Ok(cholesky_solve(l.view(), b))
}

/// `ln |A|` of an SPD matrix via Cholesky.
pub fn spd_log_det(field: &str, a: ArrayView2<f64>) -> Result<f64> {
    let l = cholesky(field, a)?;
    Ok(2.0 * l.diag().iter().map(|x| x.ln()).sum::<f64>())
}

/// Principal square root of a symmetric positive semi-definite matrix (in its eigenbasis).
pub fn sym_sqrt(field: &str, a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let e = sym_eig(a).map_err(|err| rename(err, field))?;
    let scale = e.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if e.min() < -1e-12 * scale.max(1.0) {
        return Err(TheoryError::NotSpd {
            field: field.to_string(),
            reason: format!("negative eigenvalue {} in square root", e.min()),
        });
    }
    Ok(e.map(|v| v.max(0.0).sqrt()))
}

/// Condition number `λ_max / λ_min` of an SPD matrix.
pub fn condition_number(field: &str, a: ArrayView2<f64>) -> Result<f64> {
    check_spd(field, a)?;
    let e = sym_eig(a)?;
    Ok(e.max() / e.min())
}

/// Frobenius norm.
pub fn frobenius(a: ArrayView2<f64>) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Trace.
pub fn trace(a: ArrayView2<f64>) -> f64 {
    a.diag().sum()
}

/// 2-D rotation matrix by `theta` radians.
pub fn rotation2(theta: f64) -> Array2<f64> {
    let (s, c) = theta.sin_cos();
    ndarray::array![[c, -s], [s, c]]
}

/// A Haar-ish random orthogonal `d×d` matrix (Gram–Schmidt of a Gaussian matrix).
pub fn random_orthogonal<R: Rng + ?Sized>(d: usize, rng: &mut R) -> Array2<f64> {
    loop {
        let mut q = Array2::<f64>::zeros((d, d));
        for x in q.iter_mut() {
            *x = rng.sample(StandardNormal);
        }
        let mut ok = true;
        for j in 0..d {
            for k in 0..j {
                let dot: f64 = (0..d).map(|i| q[[i, j]] * q[[i, k]]).sum();
                for i in 0..d {
                    q[[i, j]] -= dot * q[[i, k]];
                }
            }
            let n: f64 = (0..d).map(|i| q[[i, j]] * q[[i, j]]).sum::<f64>().sqrt();
            if n < 1e-8 {
                ok = false;
                break;
            }
            for i in 0..d {
                q[[i, j]] /= n;
            }
        }
        if ok {
            return q;
        }
    }
}

/// `Q diag(eigenvalues) Qᵀ` for a random orthogonal `Q`.
pub fn spd_from_eigenvalues<R: Rng + ?Sized>(eigenvalues: &[f64], rng: &mut R) -> Array2<f64> {
    let d = eigenvalues.len();
    let q = random_orthogonal(d, rng);
    let e = SymEig {
        values: Array1::from_vec(eigenvalues.to_vec()),
        vectors: q,
    };
    e.map(|v| v)
}

/// A random SPD matrix with eigenvalues drawn log-uniformly from `[lo, hi]`.
pub fn random_spd<R: Rng + ?Sized>(d: usize, lo: f64, hi: f64, rng: &mut R) -> Array2<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    let eig: Vec<f64> = (0..d)
        .map(|_| (a + (b - a) * rng.gen::<f64>()).exp())
        .collect();
    spd_from_eigenvalues(&eig, rng)
}

fn rename(err: TheoryError, field: &str) -> TheoryError {
    match err {
        TheoryError::InvalidInput { reason, .. } => TheoryError::InvalidInput {
            field: field.to_string(),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn jacobi_reconstructs_and_is_orthonormal() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for d in 1..8 {
            let a = random_spd(d, 0.01, 10.0, &mut rng) - Array2::<f64>::eye(d) * 2.0;
            let e = sym_eig(a.view()).unwrap();
            let back = e.map(|v| v);
            assert!(frobenius((&back - &a).view()) < 1e-12 * frobenius(a.view()).max(1.0));
            let qtq = e.vectors.t().dot(&e.vectors);
            assert!(frobenius((&qtq - &Array2::<f64>::eye(d)).view()) < 1e-12);
            for w in e.values.windows(2) {
                assert!(w[0] <= w[1]);
            }
        }
    }

    #[test]
    fn known_eigenvalues() {
        let a = array![[2.0, 1.0], [1.0, 2.0]];
        let e = sym_eig(a.view()).unwrap();
        assert!((e.values[0] - 1.0).abs() < 1e-14 && (e.values[1] - 3.0).abs() < 1e-14);
    }

    #[test]
    fn cholesky_inverse_logdet() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let a = random_spd(5, 0.1, 4.0, &mut rng);
        let inv = spd_inverse("a", a.view()).unwrap();
        let id = a.dot(&inv);
        assert!(frobenius((&id - &Array2::<f64>::eye(5)).view()) < 1e-10);
        let e = sym_eig(a.view()).unwrap();
        let ld: f64 = e.values.iter().map(|v| v.ln()).sum();
        assert!((spd_log_det("a", a.view()).unwrap() - ld).abs() < 1e-10);
        let s = sym_sqrt("a", a.view()).unwrap();
        assert!(frobenius((&s.dot(&s) - &a).view()) < 1e-10);
    }

    #[test]
    fn rejects_bad_matrices() {
        let not_spd = array![[1.0, 2.0], [2.0, 1.0]];
        assert!(matches!(
            cholesky("s", not_spd.view()),
            Err(TheoryError::NotSpd { .. })
        ));
        let asym = array![[1.0, 0.5], [0.0, 1.0]];
        assert!(matches!(
            check_spd("s", asym.view()),
            Err(TheoryError::InvalidInput { .. })
        ));
        let nan = array![[1.0, f64::NAN], [f64::NAN, 1.0]];
        assert!(check_spd("s", nan.view()).is_err());
        let rect = Array2::<f64>::zeros((2, 3));
        assert!(check_square("s", rect.view()).is_err());
    }
}
