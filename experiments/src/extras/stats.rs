//! Pure computations shared by the extra experiments: distances, correlation, number formatting,
//! and the verdict helpers over the one uncertainty rule of [`nrf_results::uncertainty`] (Wilson
//! intervals, seed spread, margin > c SE), re-exported here. No data or model needed, so they
//! are unit-tested directly.
use anyhow::{bail, Result};
use nrf_data::batch::spans;
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
    for (lo, len) in spans(n, chunk) {
        let d = Tensor::cdist(&x.narrow(0, lo, len), &x, 2.0, None::<i64>);
        // Summing whole rows of the distance matrix counts every unordered pair twice (the
        // diagonal is zero), hence the division by n(n-1) below.
        total += d.sum(Kind::Double).double_value(&[]);
    }
    let pairs = (n * (n - 1)) as f64;
    Ok(total / pairs)
}

pub use nrf_results::uncertainty::{
    above_chance, binomial_se, combine_parts, correlation, pearson, wilson, Accuracy, Correlation,
    Margin,
};
pub use nrf_results::Verdict;

/// A section's verdict from the one rule of [`nrf_results::uncertainty`]: holds, partly, does not
/// hold, inconclusive; [`Verdict::NotApplicable`] ("n/a") for a question or an undetermined input.
pub fn section_verdict(v: Verdict) -> Verdict {
    match v {
        Verdict::Undetermined => Verdict::NotApplicable,
        v => v,
    }
}

/// Verdict for a claimed positive association measured by a correlation with its uncertainty
/// ([`correlation`]): holds when its 95% interval is above 0, does not hold when below,
/// inconclusive otherwise; "n/a" when the correlation is undefined or there are fewer than
/// three points.
pub fn correlation_verdict(c: Option<&Correlation>) -> Verdict {
    match c {
        Some(c) if c.k >= 3 => section_verdict(c.verdict()),
        _ => Verdict::NotApplicable,
    }
}

/// Verdict for a claim tested at several points, each decided by the one rule (e.g. above
/// chance at each radius): [`combine_parts`] ("holds" when every point holds, "partly" when some
/// do, "does not hold" when none does and some clearly fail, "inconclusive" when none is
/// decided), "n/a" without points.
pub fn points_verdict(parts: &[Verdict]) -> Verdict {
    if parts.is_empty() {
        Verdict::NotApplicable
    } else {
        section_verdict(combine_parts(parts))
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
