//! Pure computations shared by the extra experiments: distances, correlation, significance rules
//! and number formatting. No data or model needed, so they are unit-tested directly.
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Euclidean distance between two equally long vectors.
pub fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// Mean Euclidean distance over all unordered pairs of the rows of `rows` (`[n, ...]`, flattened
/// per row). Computed with `cdist` in chunks of rows, so memory stays `O(chunk * n)`.
/// Errors for fewer than two rows and for non-finite values.
pub fn mean_pairwise_l2(rows: &Tensor) -> Result<f64> {
    let n = rows.size().first().copied().unwrap_or(0);
    if n < 2 {
        bail!("mean pairwise distance needs at least two rows, got {n}");
    }
    let x = rows.reshape([n, -1]).to_kind(Kind::Double);
    if x.isfinite().logical_not().any().int64_value(&[]) != 0 {
        bail!("mean pairwise distance: the rows contain NaN or infinite values");
    }
    let chunk = 512;
    let mut total = 0.0;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + chunk).min(n);
        let d = Tensor::cdist(&x.narrow(0, lo, hi - lo), &x, 2.0, None::<i64>);
        // Summing whole rows of the distance matrix counts every unordered pair twice (the
        // diagonal is zero), hence the division by n(n-1) below.
        total += d.sum(Kind::Double).double_value(&[]);
        lo = hi;
    }
    let pairs = (n * (n - 1)) as f64;
    Ok(total / pairs)
}

/// Pearson correlation of `xs` and `ys`. None for fewer than two points, different lengths,
/// non-finite values or zero variance in either.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 || ys.len() != n || xs.iter().chain(ys).any(|v| !v.is_finite()) {
        return None;
    }
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 1e-18 || syy <= 1e-18 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Standard error of an accuracy `p` measured on `n` examples.
pub fn binomial_se(p: f64, n: usize) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    (p.clamp(0.0, 1.0) * (1.0 - p.clamp(0.0, 1.0)) / n as f64).sqrt()
}

/// Whether accuracy `acc` on `n` examples is above `chance` by more than two standard errors
/// (of a classifier at chance), i.e. not explainable by sampling noise.
pub fn above_chance(acc: f64, chance: f64, n: usize) -> bool {
    acc - chance > 2.0 * binomial_se(chance, n).max(1e-12)
}

/// Whether accuracy `a` exceeds accuracy `b` (both on `n` examples) by more than two standard
/// errors of their difference (treated as independent; a conservative two-sigma rule).
pub fn clearly_above(a: f64, b: f64, n: usize) -> bool {
    let se = (binomial_se(a, n).powi(2) + binomial_se(b, n).powi(2)).sqrt();
    a - b > 2.0 * se.max(1.0 / n.max(1) as f64)
}

/// Verdict for a claimed positive association measured by a correlation `r` over `k` points:
/// "holds" for r >= 0.5, "partly" for 0 < r < 0.5, "does not hold" for r <= 0, "n/a" when r is
/// undefined or there are fewer than three points.
pub fn correlation_verdict(r: Option<f64>, k: usize) -> &'static str {
    match r {
        Some(r) if k >= 3 && r >= 0.5 => "holds",
        Some(r) if k >= 3 && r > 0.0 => "partly",
        Some(_) if k >= 3 => "does not hold",
        _ => "n/a",
    }
}

/// Verdict for a claim tested at `total` points of which `above` support it: "holds" when all
/// do, "partly" when some do, "does not hold" when none does, "n/a" without points.
pub fn share_verdict(above: usize, total: usize) -> &'static str {
    if total == 0 {
        "n/a"
    } else if above == total {
        "holds"
    } else if above > 0 {
        "partly"
    } else {
        "does not hold"
    }
}

/// Words for a correlation coefficient.
pub fn correlation_words(r: f64) -> &'static str {
    let a = r.abs();
    let strength = if a >= 0.7 {
        "strong"
    } else if a >= 0.4 {
        "moderate"
    } else if a >= 0.1 {
        "weak"
    } else {
        return "no clear";
    };
    match (strength, r > 0.0) {
        ("strong", true) => "a strong positive",
        ("strong", false) => "a strong negative",
        ("moderate", true) => "a moderate positive",
        ("moderate", false) => "a moderate negative",
        (_, true) => "a weak positive",
        (_, false) => "a weak negative",
    }
}

/// How a series of values changes over an increasing parameter: "rises", "falls" or "is flat"
/// (first-to-last change within `tol`), with "non-monotonically" added when the steps disagree
/// in sign by more than `tol`.
pub fn trend_words(values: &[f64], tol: f64) -> &'static str {
    if values.len() < 2 {
        return "is a single point";
    }
    let change = values[values.len() - 1] - values[0];
    let ups = values.windows(2).any(|w| w[1] - w[0] > tol);
    let downs = values.windows(2).any(|w| w[0] - w[1] > tol);
    if change.abs() <= tol {
        if ups || downs {
            "ends where it starts (non-monotonically)"
        } else {
            "is flat"
        }
    } else if change > 0.0 {
        if downs {
            "rises (non-monotonically)"
        } else {
            "rises"
        }
    } else if ups {
        "falls (non-monotonically)"
    } else {
        "falls"
    }
}

/// A fraction as a percentage with one decimal, e.g. "42.0%".
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "—".into()
    }
}

/// A number with three significant decimals, or "—" when not finite.
pub fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "—".into()
    }
}

/// A difference of fractions in percentage points with one decimal, e.g. "12.5".
pub fn points(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", v * 100.0)
    } else {
        "—".into()
    }
}

/// Words comparing a quantity to a reference by their `ratio`: "lower" below `1 - tol`,
/// "higher" above `1 + tol`, otherwise "about the same".
pub fn ratio_words(ratio: f64, tol: f64) -> &'static str {
    if !ratio.is_finite() {
        "not comparable"
    } else if ratio < 1.0 - tol {
        "lower"
    } else if ratio > 1.0 + tol {
        "higher"
    } else {
        "about the same"
    }
}

/// Mean of the finite values (NaN when there are none).
pub fn mean(values: &[f64]) -> f64 {
    let f: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}
