//! A small first-order minimiser: gradient descent with Barzilai–Borwein step sizes and an Armijo
//! backtracking safeguard (monotone). Used for the numerical checks of the closed forms. For
//! piecewise-smooth objectives, on whose kinks gradient descent can stall: gradient sampling
//! ([`gradient_sampling`], with [`min_norm_in_hull`]) and a random-direction local-minimum probe
//! ([`descent_probe`]) that allows for the objective's round-off.

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

/// Outcome of [`descent_probe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DescentProbe {
    /// Largest decrease `f(x) - f(x + h·u)` found (`-inf` when no probed point was defined).
    pub largest_decrease: f64,
    /// Largest decrease beyond round-off, `f(x) - f(x + h·u) - (noise(x) + noise(x + h·u))`: a
    /// positive value is a decrease that the two evaluations' rounding cannot explain.
    pub largest_excess: f64,
    /// The longest step probed (the largest of `steps`).
    pub largest_step: f64,
}

impl DescentProbe {
    /// Whether the probe found no descent beyond what a point that is stationary to within
    /// `grad_tol` may show: at such a point `f(x + h·u) ≥ f(x) - h·grad_tol` to first order (the
    /// curvature term is ≥ 0 at a minimum), so the allowance is `grad_tol` times the longest step,
    /// on top of the evaluations' round-off already taken out of
    /// [`largest_excess`](Self::largest_excess).
    pub fn is_local_minimum(&self, grad_tol: f64) -> bool {
        self.largest_excess <= self.largest_step * grad_tol
    }
}

/// Probes whether `x` is a local minimum of `f` by evaluating `f(x + h·u)` for `n_dirs` random unit
/// directions `u` and each step length `h` in `steps`. Returns the largest decrease found, also
/// net of round-off (≤ 0 at a local minimum, also a nonsmooth one, where the gradient norm is not
/// a usable criterion): `f` returns `Some((value, noise))`, `noise` a bound on the rounding error
/// of `value`. Points where `f` is undefined are skipped.
pub fn descent_probe<F, R>(
    mut f: F,
    x: &[f64],
    steps: &[f64],
    n_dirs: usize,
    rng: &mut R,
) -> Result<DescentProbe>
where
    F: FnMut(&[f64]) -> Option<(f64, f64)>,
    R: rand::Rng + ?Sized,
{
    let (f0, n0) = f(x).ok_or_else(|| invalid("x", "objective undefined at the probed point"))?;
    let mut out = DescentProbe {
        largest_decrease: f64::NEG_INFINITY,
        largest_excess: f64::NEG_INFINITY,
        largest_step: steps.iter().cloned().fold(0.0, f64::max),
    };
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
            if let Some((fy, ny)) = f(&y) {
                out.largest_decrease = out.largest_decrease.max(f0 - fy);
                out.largest_excess = out.largest_excess.max(f0 - fy - (n0 + ny));
            }
        }
    }
    Ok(out)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Coefficients `μ` (summing to 1) of the point of least norm in the affine hull of
/// `points[s[..]]`, by Gram–Schmidt (twice) on the differences to the first point, not by normal
/// equations. `None` when the points are affinely dependent to working precision.
fn affine_min_norm(points: &[Vec<f64>], s: &[usize]) -> Option<Vec<f64>> {
    let p0 = &points[s[0]];
    let k = s.len() - 1;
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    let mut r = vec![vec![0.0; k]; k];
    for j in 0..k {
        let mut v: Vec<f64> = points[s[j + 1]]
            .iter()
            .zip(p0)
            .map(|(a, b)| a - b)
            .collect();
        let size = dot(&v, &v).sqrt();
        for _ in 0..2 {
            for (i, qi) in q.iter().enumerate() {
                let c = dot(qi, &v);
                r[i][j] += c;
                v.iter_mut().zip(qi).for_each(|(vi, qv)| *vi -= c * qv);
            }
        }
        let nv = dot(&v, &v).sqrt();
        if nv.is_nan() || nv <= 1e-10 * size {
            return None;
        }
        r[j][j] = nv;
        v.iter_mut().for_each(|vi| *vi /= nv);
        q.push(v);
    }
    // p0 + Dα is least when Dα = −QQᵀp0, i.e. Rα = −Qᵀp0.
    let mut alpha: Vec<f64> = q.iter().map(|qi| -dot(qi, p0)).collect();
    for i in (0..k).rev() {
        let tail: f64 = (i + 1..k).map(|j| r[i][j] * alpha[j]).sum();
        alpha[i] = (alpha[i] - tail) / r[i][i];
    }
    let mut mu = vec![1.0 - alpha.iter().sum::<f64>()];
    mu.extend(alpha);
    Some(mu)
}

/// The point of least norm in the convex hull of `points` (Wolfe's algorithm, 1976).
pub fn min_norm_in_hull(points: &[Vec<f64>]) -> Vec<f64> {
    let Some(first) = points.first() else {
        return Vec::new();
    };
    let combine = |s: &[usize], lam: &[f64]| {
        let mut x = vec![0.0; first.len()];
        for (&i, &l) in s.iter().zip(lam) {
            x.iter_mut()
                .zip(&points[i])
                .for_each(|(xi, pi)| *xi += l * pi);
        }
        x
    };
    let argmin = |key: &dyn Fn(&[f64]) -> f64| {
        (0..points.len())
            .min_by(|&a, &b| key(&points[a]).total_cmp(&key(&points[b])))
            .expect("points is not empty")
    };
    let largest = points.iter().map(|p| dot(p, p)).fold(0.0, f64::max);
    let i0 = argmin(&|p| dot(p, p));
    let (mut s, mut lam) = (vec![i0], vec![1.0]);
    let mut x = points[i0].clone();
    for _ in 0..10 * points.len() + 10 {
        let j = argmin(&|p| dot(p, &x));
        // Optimal when no point lies beyond the plane through x orthogonal to x.
        if dot(&x, &x) - dot(&points[j], &x) <= 1e-14 * largest || s.contains(&j) {
            break;
        }
        s.push(j);
        lam.push(0.0);
        loop {
            let Some(mu) = affine_min_norm(points, &s) else {
                // The new point is (numerically) in the affine hull already: x is optimal.
                s.pop();
                lam.pop();
                return combine(&s, &lam);
            };
            if mu.iter().all(|&m| m > 0.0) {
                lam = mu;
                break;
            }
            // Move from lam toward mu until a coefficient reaches 0; drop that point.
            let (theta, out) = lam
                .iter()
                .zip(&mu)
                .enumerate()
                .filter(|(_, (_, &m))| m <= 0.0)
                .map(|(k, (&l, &m))| (l / (l - m), k))
                .fold(
                    (f64::INFINITY, usize::MAX),
                    |a, b| if b.0 < a.0 { b } else { a },
                );
            if out == s.len() - 1 {
                // The point just added leaves at once: no progress is possible, x is optimal.
                return x;
            }
            let (mut s2, mut lam2) = (Vec::new(), Vec::new());
            for (k, (&i, (&l, &m))) in s.iter().zip(lam.iter().zip(&mu)).enumerate() {
                let v = l + theta * (m - l);
                if k != out && v > 0.0 {
                    s2.push(i);
                    lam2.push(v);
                }
            }
            let total: f64 = lam2.iter().sum();
            if s2.is_empty() || total.is_nan() || total <= 0.0 {
                return x;
            }
            lam2.iter_mut().for_each(|l| *l /= total);
            (s, lam) = (s2, lam2);
        }
        x = combine(&s, &lam);
    }
    x
}

/// Options of [`gradient_sampling`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// First sampling radius.
    pub initial_radius: f64,
    /// Stop once the radius falls below this.
    pub min_radius: f64,
    /// The radius shrinks tenfold once the least-norm sampled gradient is below this.
    pub stationarity_tol: f64,
    /// Most iterations.
    pub max_iter: usize,
}

/// Outcome of [`gradient_sampling`].
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingReport {
    /// Final point.
    pub x: Vec<f64>,
    /// Objective at `x`.
    pub value: f64,
    /// Accepted steps.
    pub moves: usize,
    /// Whether the least-norm sampled gradient met `stationarity_tol` at `min_radius`.
    pub stationary: bool,
}

/// Minimises a piecewise-smooth `f` by gradient sampling (Burke, Lewis & Overton, 2005): the
/// search direction is minus the least-norm element of the convex hull of the gradients at `x`
/// and at `x.len() + 1` random points within `radius` of it, with an Armijo backtracking line
/// search; the radius shrinks tenfold when that element is shorter than `stationarity_tol` or
/// the line search fails.
///
/// [`minimise`] stalls on a kink: the gradient of the side it stands on points across it, while
/// the descent directions run along it. Gradients sampled on both sides of the kink have a short
/// convex combination that does: the direction along the kink, and at a minimum on the kink none
/// is long. The result is a point whose sampled generalised gradient is within `stationarity_tol`
/// of zero at radius `min_radius`, or where `max_iter` ran out.
///
/// `f` returns `Some((value, gradient))`, or `None` outside its domain (a sample there is drawn
/// again closer in; a step there is shortened). Fails only when `f` is undefined at `x0`.
pub fn gradient_sampling<F, R>(
    mut f: F,
    x0: Vec<f64>,
    opts: SamplingOptions,
    rng: &mut R,
) -> Result<SamplingReport>
where
    F: FnMut(&[f64]) -> Option<(f64, Vec<f64>)>,
    R: rand::Rng + ?Sized,
{
    if !(opts.initial_radius > 0.0 && opts.min_radius > 0.0 && opts.stationarity_tol > 0.0) {
        return Err(invalid(
            "SamplingOptions",
            "radii and stationarity_tol must be > 0",
        ));
    }
    let finite = |(v, g): &(f64, Vec<f64>)| v.is_finite() && g.iter().all(|x| x.is_finite());
    let (mut fx, mut gx) = f(&x0)
        .filter(finite)
        .ok_or_else(|| invalid("x0", "objective undefined at start"))?;
    let p = x0.len();
    let mut x = x0;
    let mut radius = opts.initial_radius;
    let mut moves = 0;
    let mut stationary = false;
    let mut y = vec![0.0; p];
    for _ in 0..opts.max_iter {
        let mut grads = vec![gx.clone()];
        while grads.len() < p + 2 {
            // Uniform in the ball of the current radius.
            let u: Vec<f64> = (0..p)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect();
            let n = norm(&u).max(1e-300);
            let rad = radius * rng.gen::<f64>().powf(1.0 / p as f64) / n;
            let mut found = None;
            for shrink in 0..20 {
                let scale = rad * 0.5f64.powi(shrink);
                y.iter_mut()
                    .zip(&x)
                    .zip(&u)
                    .for_each(|((yi, xi), ui)| *yi = xi + scale * ui);
                if let Some(e) = f(&y).filter(finite) {
                    found = Some(e.1);
                    break;
                }
            }
            match found {
                Some(g) => grads.push(g),
                None => break,
            }
        }
        let g = min_norm_in_hull(&grads);
        let gn2 = dot(&g, &g);
        if gn2.sqrt() <= opts.stationarity_tol {
            if radius <= opts.min_radius {
                stationary = true;
                break;
            }
            radius *= 0.1;
            continue;
        }
        // Armijo along −g, from the unit step (g has the objective's gradient scale).
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            y.iter_mut()
                .zip(&x)
                .zip(&g)
                .for_each(|((yi, xi), gi)| *yi = xi - t * gi);
            if let Some(e) = f(&y).filter(finite) {
                if e.0 < fx - 1e-6 * t * gn2 {
                    accepted = Some(e);
                    break;
                }
            }
            t *= 0.5;
        }
        match accepted {
            Some((fy, gy)) => {
                std::mem::swap(&mut x, &mut y);
                (fx, gx) = (fy, gy);
                moves += 1;
            }
            None if radius <= opts.min_radius => break,
            None => radius *= 0.1,
        }
    }
    Ok(SamplingReport {
        x,
        value: fx,
        moves,
        stationary,
    })
}

#[cfg(test)]
mod tests;
