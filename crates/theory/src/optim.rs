//! A small first-order minimiser: gradient descent with Barzilai–Borwein step sizes and an Armijo
//! backtracking safeguard (monotone). Used for the numerical checks of the closed forms.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, TheoryError};

/// Options of [`minimise`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GdOptions {
    /// Maximum number of accepted steps.
    pub max_iter: usize,
    /// Stop when the Euclidean norm of the gradient falls below this.
    pub grad_tol: f64,
    /// Step size of the first iteration.
    pub initial_step: f64,
}

impl Default for GdOptions {
    fn default() -> Self {
        Self {
            max_iter: 5_000,
            grad_tol: 1e-9,
            initial_step: 1e-2,
        }
    }
}

/// Why [`minimise`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The gradient norm fell below the tolerance.
    GradTol,
    /// No further decrease was possible at floating-point resolution (a numerical minimum, or a
    /// kink of a nonsmooth objective).
    Stalled,
    /// The iteration limit was reached.
    MaxIter,
}

/// Outcome of [`minimise`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GdReport {
    /// Final point.
    pub x: Vec<f64>,
    /// Objective at `x`.
    pub value: f64,
    /// Gradient norm at `x`.
    pub grad_norm: f64,
    /// Number of accepted steps.
    pub iterations: usize,
    /// Whether `grad_norm <= grad_tol` was reached.
    pub converged: bool,
    /// Why the iteration stopped.
    pub stop: StopReason,
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Minimises `f` from `x0`. `f` returns `Some((value, gradient))`, or `None` outside its domain
/// (the line search then shortens the step).
///
/// Never fails because of slow convergence: check [`GdReport::converged`]. Fails only when `f` is
/// undefined or non-finite at `x0`.
pub fn minimise<F>(mut f: F, x0: Vec<f64>, opts: GdOptions) -> Result<GdReport>
where
    F: FnMut(&[f64]) -> Option<(f64, Vec<f64>)>,
{
    if opts.grad_tol.is_nan()
        || opts.grad_tol <= 0.0
        || opts.initial_step.is_nan()
        || opts.initial_step <= 0.0
    {
        return Err(invalid(
            "GdOptions",
            "grad_tol and initial_step must be > 0",
        ));
    }
    let (mut fx, mut g) = f(&x0).ok_or_else(|| invalid("x0", "objective undefined at start"))?;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(invalid("x0", "objective or gradient not finite at start"));
    }
    let mut x = x0;
    let mut step = opts.initial_step;
    let mut iterations = 0;
    let mut xn = vec![0.0; x.len()];
    let mut stop = StopReason::MaxIter;
    while iterations < opts.max_iter {
        let gn = norm(&g);
        if gn <= opts.grad_tol {
            stop = StopReason::GradTol;
            break;
        }
        let g2 = gn * gn;
        let mut t = step;
        let mut accepted = None;
        for _ in 0..80 {
            for i in 0..x.len() {
                xn[i] = x[i] - t * g[i];
            }
            if let Some((fnew, gnew)) = f(&xn) {
                if fnew.is_finite()
                    && gnew.iter().all(|v| v.is_finite())
                    && fnew <= fx - 1e-4 * t * g2
                {
                    accepted = Some((fnew, gnew));
                    break;
                }
            }
            t *= 0.5;
        }
        let Some((fnew, gnew)) = accepted else {
            // No decrease possible at machine precision: we are at the numerical minimum.
            stop = StopReason::Stalled;
            break;
        };
        if fnew >= fx {
            // Accepted only because the required decrease is below round-off: stalled.
            stop = StopReason::Stalled;
            break;
        }
        let mut ss = 0.0;
        let mut sy = 0.0;
        for i in 0..x.len() {
            let s = xn[i] - x[i];
            ss += s * s;
            sy += s * (gnew[i] - g[i]);
        }
        step = if sy > 0.0 {
            (ss / sy).clamp(1e-12, 1e12)
        } else {
            (2.0 * t).min(1e12)
        };
        std::mem::swap(&mut x, &mut xn);
        fx = fnew;
        g = gnew;
        iterations += 1;
    }
    let grad_norm = norm(&g);
    if grad_norm <= opts.grad_tol {
        stop = StopReason::GradTol;
    }
    Ok(GdReport {
        stop,
        x,
        value: fx,
        grad_norm,
        iterations,
        converged: grad_norm <= opts.grad_tol,
    })
}

/// Like [`minimise`] but returns [`TheoryError::NoConvergence`] when the gradient tolerance is not met.
pub fn minimise_strict<F>(routine: &str, f: F, x0: Vec<f64>, opts: GdOptions) -> Result<GdReport>
where
    F: FnMut(&[f64]) -> Option<(f64, Vec<f64>)>,
{
    let r = minimise(f, x0, opts)?;
    if r.converged {
        Ok(r)
    } else {
        Err(TheoryError::NoConvergence {
            routine: routine.to_string(),
            reason: format!(
                "gradient norm {:.3e} > {:.1e} after {} iterations",
                r.grad_norm, opts.grad_tol, r.iterations
            ),
        })
    }
}

/// Probes whether `x` is a local minimum of `f` by evaluating `f(x + h·u)` for `n_dirs` random unit
/// directions `u` and each step length `h` in `steps`. Returns the largest decrease
/// `f(x) - f(x + h·u)` found (≤ 0 up to round-off at a local minimum, also a nonsmooth one, where
/// the gradient norm is not a usable criterion). Points where `f` is undefined are skipped.
pub fn descent_probe<F, R>(
    mut f: F,
    x: &[f64],
    steps: &[f64],
    n_dirs: usize,
    rng: &mut R,
) -> Result<f64>
where
    F: FnMut(&[f64]) -> Option<f64>,
    R: rand::Rng + ?Sized,
{
    let f0 = f(x).ok_or_else(|| invalid("x", "objective undefined at the probed point"))?;
    let mut best = f64::NEG_INFINITY;
    let mut y = vec![0.0; x.len()];
    for _ in 0..n_dirs {
        let mut u: Vec<f64> = (0..x.len())
            .map(|_| rng.sample(rand_distr::StandardNormal))
            .collect();
        let n = norm(&u).max(1e-300);
        u.iter_mut().for_each(|v| *v /= n);
        for &h in steps {
            for i in 0..x.len() {
                y[i] = x[i] + h * u[i];
            }
            if let Some(fy) = f(&y) {
                best = best.max(f0 - fy);
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_ill_conditioned_quadratic() {
        let a = [1.0, 100.0, 0.01];
        let f = |x: &[f64]| {
            let v: f64 = x
                .iter()
                .zip(a)
                .map(|(xi, ai)| 0.5 * ai * (xi - 1.0).powi(2))
                .sum();
            let g = x.iter().zip(a).map(|(xi, ai)| ai * (xi - 1.0)).collect();
            Some((v, g))
        };
        let r = minimise(f, vec![0.0; 3], GdOptions::default()).unwrap();
        assert!(r.converged, "{r:?}");
        assert!(r.x.iter().all(|x| (x - 1.0).abs() < 1e-6));
    }

    #[test]
    fn respects_domain() {
        // f(x) = x - ln x has its minimum at 1 and is undefined for x <= 0.
        let f = |x: &[f64]| (x[0] > 0.0).then(|| (x[0] - x[0].ln(), vec![1.0 - 1.0 / x[0]]));
        let r = minimise(
            f,
            vec![5.0],
            GdOptions {
                initial_step: 10.0,
                ..Default::default()
            },
        )
        .unwrap();
        assert!((r.x[0] - 1.0).abs() < 1e-6);
        assert!(minimise(f, vec![-1.0], GdOptions::default()).is_err());
    }
}
