//! Uncertainty of every number a verdict uses, and the one decision rule built on it.
//!
//! # The rule (the only place it is defined)
//!
//! **An accuracy** p measured on n images (a test set, the robust-evaluation subset, a set of
//! transferred adversarial examples) gets the 95% **Wilson score interval** [`wilson`]; its
//! standard error is the interval's half-width over z = 1.96 ([`binomial_se`]): about
//! sqrt(p(1−p)/n) away from 0 and 1, and never 0 (0 correct out of 500 is not "exactly 0%").
//!
//! **Seeds.** A model trained with k ≥ 2 seeds (the `[fresh] seeds` preset setting) is
//! represented by the mean p̄ over its seeds. All seeds are evaluated on the same images, so the
//! binomial error does not average out; the seed-to-seed sample standard deviation s adds the
//! training noise of the mean:
//!
//! > SE(p̄)² = binomial_se(p̄, n)² + s² / k
//!
//! and the interval is p̄ ± c·SE on each side, with the binomial part of SE from that side of
//! the Wilson interval and c = max(z, [`student_t95`]`(df)`) at the Welch-Satterthwaite degrees of
//! freedom below (so one seed gives exactly the Wilson interval).
//!
//! **A margin** is a signed sum of accuracies and constants, m = Σ ± a_i + c (e.g. m =
//! rob(on_D_R) − rob(on_control)); its standard error is
//!
//! > SE(m) = sqrt(Σ SE(a_i)²)
//!
//! treating the accuracies as independent. Models evaluated on the same images make correlated
//! errors, which makes the true SE of a difference smaller: the rule is conservative.
//!
//! **Degrees of freedom.** A seed spread s is estimated from k − 1 degrees of freedom, so a
//! margin whose SE rests on seed spreads is a t statistic, not a z one. Its degrees of freedom
//! are Welch-Satterthwaite's, the binomial parts counted as known:
//!
//! > df = SE(m)⁴ / Σ_i (s_i²/k_i)² / (k_i − 1)
//!
//! (none when no accuracy has seeds), and the margin needs c = max(2, [`student_t95`]`(df)`)
//! standard errors ([`Margin::critical`]; t interpolated in 1/df between whole df): 2 where the
//! spread is well known or the binomial errors dominate, up to 4.30 for a margin that rests on
//! the spread of three seeds (2 degrees of freedom). Taking the spread as known (c = 2 always,
//! the rule until session 25) decided a margin between two 3-seed models whose spread dominates
//! with 5.8% one-sided error (9.2% when it rests on one model's), where 2.5% is meant; with t it
//! is 1.7% (Welch-Satterthwaite errs on the safe side at so few seeds; simulated).
//!
//! **Decision** ([`Margin::verdict`]): the claim **holds** when m > c·SE(m) (one-sided, about
//! 97.5%), **does not hold** when m < −c·SE(m), and is **inconclusive** otherwise. A claim with
//! two parts is **partly** true when one part holds and the other does not ([`combine_parts`]).
//!
//! **Above chance** (the one rule for it, [`above_chance`]): the accuracy's interval lies above
//! 1/C (its lower bound > 1/C: holds), below it (upper bound < 1/C: does not hold), or contains it
//! (inconclusive). This is the margin rule against a constant, with the Wilson interval's
//! asymmetry near 0 and 1.
//!
//! **A correlation** r over k points ([`correlation`]) is decided on Fisher's z = atanh(r):
//! SE(z)² = 1/(k−3) (the points' sampling) + the measurement error of the points propagated to r
//! (delta method, ∂r/∂x_i and ∂r/∂y_i) over (1−r²)². Its interval is tanh(z ± 2·SE(z)); the claim
//! "positive correlation" holds when the interval is above 0, does not hold when below, and is
//! inconclusive otherwise (always with 3 or fewer points).
//!
//! **A speed ratio** (the benchmark's Python s / Rust s over k run pairs, each pair run back to
//! back) is decided on the logarithms of the paired ratios: their mean ± Student's t (k − 1
//! degrees of freedom) · s/√k, exponentiated, is the 95% interval of the geometric-mean ratio
//! ([`ratio_interval`]); a side is faster only where the whole interval says so, level
//! ("within the noise") where it contains 1, and nothing is decided from a single pair.
use crate::Verdict;
use serde::{Deserialize, Serialize};

/// The 97.5% quantile of the standard normal distribution: a 95% two-sided interval is ±Z95
/// standard errors.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A margin must exceed this many standard errors to decide a claim (one-sided, ~97.5%).
pub const MARGIN_SIGMAS: f64 = 2.0;

/// A closed interval (of fractions, for accuracies).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// Whether `v` lies in the interval (bounds included).
    pub fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// The 95% Wilson score interval of a proportion `p` observed on `n` trials. `p` is clamped to
/// [0, 1]; `n = 0` (or a non-finite `p`) gives [0, 1], i.e. no information.
pub fn wilson(p: f64, n: usize) -> Interval {
    if n == 0 || !p.is_finite() {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let p = p.clamp(0.0, 1.0);
    let n = n as f64;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
    }
}

/// The standard error of a proportion `p` on `n` trials: the Wilson interval's half-width over
/// [`Z95`] (≈ sqrt(p(1−p)/n) away from 0 and 1; positive at 0 and 1; 0.255 for `n = 0`).
pub fn binomial_se(p: f64, n: usize) -> f64 {
    let w = wilson(p, n);
    (w.hi - w.lo) / (2.0 * Z95)
}

/// Mean of `v` (NaN when empty).
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The 97.5% quantile of Student's t distribution with `df` degrees of freedom: a 95% two-sided
/// interval of the mean of `df + 1` values is ± this many standard errors. Tabulated to 30
/// degrees of freedom, then the Cornish-Fisher expansion around [`Z95`] (within 0.001 of the
/// exact value there); NaN for `df = 0`.
pub fn student_t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, n) = (Z95, df as f64);
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// The geometric mean of positive `ratios` (one per run pair) and its 95% interval: the mean of
/// their logarithms ± [`student_t95`]`(k − 1)` · s/√k, exponentiated. None for fewer than two
/// ratios or one that is not positive and finite.
pub fn ratio_interval(ratios: &[f64]) -> Option<(f64, Interval)> {
    if ratios.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return None;
    }
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let sd = sample_sd(&logs)?;
    let m = mean(&logs);
    let half = student_t95(logs.len() - 1) * sd / (logs.len() as f64).sqrt();
    Some((
        m.exp(),
        Interval {
            lo: (m - half).exp(),
            hi: (m + half).exp(),
        },
    ))
}

/// Sample standard deviation (n − 1 in the denominator); None for fewer than two values.
pub fn sample_sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = mean(v);
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (v.len() - 1) as f64).sqrt())
}

/// An accuracy with what its uncertainty needs: the value (the mean over seeds when there are
/// several), the number of images each evaluation used, and the per-seed values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// The accuracy (a fraction): the single measurement, or the mean over `seeds`.
    pub value: f64,
    /// Images each evaluation used.
    pub n: usize,
    /// Per-seed values when the model was trained with two or more seeds (else empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<f64>,
}

impl Accuracy {
    /// One measurement of `value` on `n` images.
    pub fn single(value: f64, n: usize) -> Accuracy {
        Accuracy {
            value,
            n,
            seeds: Vec::new(),
        }
    }

    /// The mean of `values` (one per seed) on `n` images each; one value is [`Accuracy::single`].
    pub fn with_seeds(values: &[f64], n: usize) -> Accuracy {
        if values.len() < 2 {
            return Accuracy::single(values.first().copied().unwrap_or(f64::NAN), n);
        }
        Accuracy {
            value: mean(values),
            n,
            seeds: values.to_vec(),
        }
    }

    /// Number of seeds (1 for a single measurement).
    pub fn n_seeds(&self) -> usize {
        self.seeds.len().max(1)
    }

    /// Sample standard deviation over seeds (None with fewer than two).
    pub fn seed_sd(&self) -> Option<f64> {
        sample_sd(&self.seeds)
    }

    /// Variance of the mean added by the seed spread: s² / k (0 for one seed).
    fn seed_var(&self) -> f64 {
        self.seed_sd()
            .map(|s| s * s / self.n_seeds() as f64)
            .unwrap_or(0.0)
    }

    /// Standard error: sqrt(binomial_se(value, n)² + s² / k) (see the module docs).
    pub fn se(&self) -> f64 {
        (binomial_se(self.value, self.n).powi(2) + self.seed_var()).sqrt()
    }

    /// The 95% interval: p̄ ± c·SE on each side, the binomial part of SE from that side of the
    /// Wilson interval on `n` images, c = max(z, t95) at the Welch-Satterthwaite degrees of
    /// freedom of the seed spread (the module docs); the Wilson interval for one seed; within
    /// [0, 1].
    pub fn interval(&self) -> Interval {
        let w = wilson(self.value, self.n);
        if !self.value.is_finite() {
            return w;
        }
        let v = self.seed_var();
        let c = |half: f64| {
            let var = (half / Z95).powi(2) + v;
            let df = satterthwaite(var, &[(v, self.n_seeds())]);
            (Z95.max(df.map_or(Z95, t95_at)), var.sqrt())
        };
        let ((c_lo, se_lo), (c_hi, se_hi)) = (c(self.value - w.lo), c(w.hi - self.value));
        Interval {
            lo: (self.value - c_lo * se_lo).max(0.0),
            hi: (self.value + c_hi * se_hi).min(1.0),
        }
    }

    /// "49.0% [44.6, 53.4]": the value and its 95% interval, in percent.
    pub fn short(&self) -> String {
        if !self.value.is_finite() {
            return "—".into();
        }
        let i = self.interval();
        format!(
            "{:.1}% [{:.1}, {:.1}]",
            self.value * 100.0,
            i.lo * 100.0,
            i.hi * 100.0
        )
    }

    /// [`Accuracy::short`] for one seed; with several, "49.0% ± 1.3 [44.4, 53.6] (seeds 48.1,
    /// 49.9)": the mean ± the sample standard deviation over seeds, the interval, every seed.
    pub fn text(&self) -> String {
        match self.seed_sd() {
            Some(sd) if self.value.is_finite() => {
                let i = self.interval();
                let each: Vec<String> = self
                    .seeds
                    .iter()
                    .map(|v| format!("{:.1}", v * 100.0))
                    .collect();
                format!(
                    "{:.1}% ± {:.1} [{:.1}, {:.1}] (seeds {})",
                    self.value * 100.0,
                    sd * 100.0,
                    i.lo * 100.0,
                    i.hi * 100.0,
                    each.join(", ")
                )
            }
            _ => self.short(),
        }
    }
}

/// Welch-Satterthwaite degrees of freedom of a variance `var` whose estimated parts are
/// `seed_parts` (s²/k, k): var² / Σ (s²/k)² / (k − 1), the other parts counted as known. None when
/// no part is estimated (every k < 2 or every s = 0).
pub fn satterthwaite(var: f64, seed_parts: &[(f64, usize)]) -> Option<f64> {
    let denom: f64 = seed_parts
        .iter()
        .filter(|(v, k)| *k >= 2 && *v > 0.0)
        .map(|(v, k)| v * v / (*k - 1) as f64)
        .sum();
    (denom > 0.0 && var.is_finite()).then(|| var * var / denom)
}

/// [`student_t95`] at a fractional `df` (at least 1): linear in 1/df between the whole numbers
/// around it, the usual interpolation of t tables.
pub fn t95_at(df: f64) -> f64 {
    let df = df.max(1.0);
    let lo = df.floor();
    let a = student_t95(lo as usize);
    if df == lo || lo >= 1e9 {
        return a;
    }
    let b = student_t95(lo as usize + 1);
    a + (b - a) * (1.0 / lo - 1.0 / df) / (1.0 / lo - 1.0 / (lo + 1.0))
}

/// A margin m and its standard error (see the module docs), as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margin {
    /// The margin; positive supports the claim.
    pub m: f64,
    /// Its standard error.
    pub se: f64,
    /// Welch-Satterthwaite degrees of freedom of `se` when seed spreads are part of it (None:
    /// binomial errors only, known). Absent in files from before session 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<f64>,
}

impl Margin {
    /// m = Σ sign_i · a_i + offset, SE = sqrt(Σ SE(a_i)²), with the Welch-Satterthwaite degrees
    /// of freedom of the seed spreads in it. `terms`: (sign, accuracy), sign ±1.
    pub fn of(terms: &[(f64, &Accuracy)], offset: f64) -> Margin {
        let m = terms.iter().map(|(s, a)| s * a.value).sum::<f64>() + offset;
        let var = terms.iter().map(|(_, a)| a.se().powi(2)).sum::<f64>();
        let parts: Vec<(f64, usize)> = terms
            .iter()
            .map(|(_, a)| (a.seed_var(), a.n_seeds()))
            .collect();
        Margin {
            m,
            se: var.sqrt(),
            df: satterthwaite(var, &parts),
        }
    }

    /// A margin `m` with a known standard error `se` (no seed spread in it).
    pub fn known(m: f64, se: f64) -> Margin {
        Margin { m, se, df: None }
    }

    /// How many standard errors the margin needs to decide the claim: max(2, t95(df)) (2 when
    /// no seed spread is part of SE).
    pub fn critical(&self) -> f64 {
        self.df
            .map_or(MARGIN_SIGMAS, |df| MARGIN_SIGMAS.max(t95_at(df)))
    }

    /// m = a − b.
    pub fn between(a: &Accuracy, b: &Accuracy) -> Margin {
        Margin::of(&[(1.0, a), (-1.0, b)], 0.0)
    }

    /// m = a − level (a constant).
    pub fn above(a: &Accuracy, level: f64) -> Margin {
        Margin::of(&[(1.0, a)], -level)
    }

    /// m = level − a.
    pub fn below(a: &Accuracy, level: f64) -> Margin {
        Margin::of(&[(-1.0, a)], level)
    }

    /// The margin in standard errors (±infinity for a zero SE, NaN for a NaN margin).
    pub fn z(&self) -> f64 {
        if self.se > 0.0 {
            self.m / self.se
        } else if self.m == 0.0 {
            0.0
        } else {
            self.m.signum() * f64::INFINITY
        }
    }

    /// Holds when m > c·SE, does not hold when m < −c·SE ([`Margin::critical`]: c = 2, or
    /// Student's t for a margin resting on few seeds), inconclusive otherwise; undetermined when
    /// m or SE is not a number.
    pub fn verdict(&self) -> Verdict {
        if !self.m.is_finite() || self.se.is_nan() {
            return Verdict::Undetermined;
        }
        let c = self.critical();
        if self.m > c * self.se {
            Verdict::Holds
        } else if self.m < -c * self.se {
            Verdict::DoesNotHold
        } else {
            Verdict::Inconclusive
        }
    }

    /// "+11.4 ± 3.1 points": the margin ± one standard error, in percentage points; "+3.8 ± 1.6
    /// points, needs 4.30 SE" when the margin rests on few seeds ([`Margin::critical`] above 2).
    pub fn text(&self) -> String {
        let base = format!("{:+.1} ± {:.1} points", self.m * 100.0, self.se * 100.0);
        let c = self.critical();
        if c > MARGIN_SIGMAS {
            format!("{base}, needs {c:.2} SE")
        } else {
            base
        }
    }
}

/// The one "above chance" rule: holds when the accuracy's 95% interval
/// ([`Accuracy::interval`]) lies above `chance` (lower bound > chance), does not hold when it lies
/// below (upper bound < chance), inconclusive when it contains chance.
pub fn above_chance(acc: &Accuracy, chance: f64) -> Verdict {
    if !acc.value.is_finite() {
        return Verdict::Undetermined;
    }
    let i = acc.interval();
    if i.lo > chance {
        Verdict::Holds
    } else if i.hi < chance {
        Verdict::DoesNotHold
    } else {
        Verdict::Inconclusive
    }
}

/// A claim made of parts: holds when every part holds; partly when some part holds; does not
/// hold when none holds and some part does not hold; inconclusive when no part is decided;
/// undetermined when a part is (or there are no parts).
pub fn combine_parts(parts: &[Verdict]) -> Verdict {
    if parts.is_empty() || parts.contains(&Verdict::Undetermined) {
        return Verdict::Undetermined;
    }
    let holds = parts.iter().filter(|v| **v == Verdict::Holds).count();
    if holds == parts.len() {
        Verdict::Holds
    } else if holds > 0 {
        Verdict::Partly
    } else if parts.contains(&Verdict::DoesNotHold) {
        Verdict::DoesNotHold
    } else {
        Verdict::Inconclusive
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised incomplete beta function I_x(a, b) (a, b > 0, x in [0, 1]): the continued
/// fraction of Numerical Recipes (modified Lentz), on the side where it converges fast.
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    const TINY: f64 = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = if d.abs() < TINY { TINY } else { d };
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for num in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = if d.abs() < TINY { TINY } else { d };
            c = 1.0 + num / c;
            c = if c.abs() < TINY { TINY } else { c };
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * h / a
}

/// P(F > `f`) for Fisher's F distribution with `d1` and `d2` degrees of freedom (fractional df
/// allowed, e.g. Welch-Satterthwaite's; `d2` = ∞ gives χ²(d1)/d1): the p-value of a variance
/// ratio. 1 for f ≤ 0; NaN for a df that is not positive or a NaN `f`.
pub fn f_upper_tail(f: f64, d1: f64, d2: f64) -> f64 {
    if f.is_nan() || d1.is_nan() || d2.is_nan() || d1 <= 0.0 || d2 <= 0.0 {
        return f64::NAN;
    }
    if f <= 0.0 {
        return 1.0;
    }
    if f.is_infinite() {
        return 0.0;
    }
    if d2.is_infinite() {
        // χ²(d1) / d1: P(χ² > d1·f) = Q(d1/2, d1·f/2), the limit of the expression below.
        return 1.0 - incomplete_gamma_p(d1 / 2.0, d1 * f / 2.0);
    }
    incomplete_beta(d2 / (d2 + d1 * f), d2 / 2.0, d1 / 2.0)
}

/// The regularised lower incomplete gamma function P(a, x) (series for x < a + 1, else the
/// continued fraction; Numerical Recipes).
fn incomplete_gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        return sum * front;
    }
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let (mut c, mut d) = (1.0 / TINY, 1.0 / b);
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        d = if d.abs() < TINY { TINY } else { d };
        c = b + an / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    1.0 - front * h
}

/// Pearson correlation of `xs` and `ys`. None for fewer than two points, different lengths,
/// non-finite values or zero variance in either.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 || ys.len() != n || xs.iter().chain(ys).any(|v| !v.is_finite()) {
        return None;
    }
    let mx = mean(xs);
    let my = mean(ys);
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

/// A correlation with its uncertainty (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// Pearson r of the values.
    pub r: f64,
    /// Number of points.
    pub k: usize,
    /// Standard error of Fisher's z = atanh(r) (infinite for k ≤ 3).
    pub se_z: f64,
    /// tanh(z ± 2·SE(z)).
    pub interval: Interval,
}

impl Correlation {
    /// The claim "positive correlation": holds when the interval is above 0, does not hold when
    /// it is below 0, inconclusive otherwise.
    pub fn verdict(&self) -> Verdict {
        if self.interval.lo > 0.0 {
            Verdict::Holds
        } else if self.interval.hi < 0.0 {
            Verdict::DoesNotHold
        } else {
            Verdict::Inconclusive
        }
    }

    /// "r = −0.51 [−0.98, 0.80]".
    pub fn text(&self) -> String {
        format!(
            "r = {:.2} [{:.2}, {:.2}]",
            self.r, self.interval.lo, self.interval.hi
        )
    }
}

/// The correlation of the values of `xs` and `ys` with the uncertainty of a sample of k points
/// and of each point's own measurement error (SEs of the accuracies). None when [`pearson`] is.
pub fn correlation(xs: &[Accuracy], ys: &[Accuracy]) -> Option<Correlation> {
    let xv: Vec<f64> = xs.iter().map(|a| a.value).collect();
    let yv: Vec<f64> = ys.iter().map(|a| a.value).collect();
    let r = pearson(&xv, &yv)?;
    let k = xv.len();
    let (mx, my) = (mean(&xv), mean(&yv));
    let sxx: f64 = xv.iter().map(|x| (x - mx) * (x - mx)).sum();
    let syy: f64 = yv.iter().map(|y| (y - my) * (y - my)).sum();
    let norm = (sxx * syy).sqrt();
    // Delta method: dr/dx_i = (y_i − ȳ)/sqrt(Sxx Syy) − r (x_i − x̄)/Sxx, and symmetrically.
    let mut var_r = 0.0;
    for i in 0..k {
        let dx = (yv[i] - my) / norm - r * (xv[i] - mx) / sxx;
        let dy = (xv[i] - mx) / norm - r * (yv[i] - my) / syy;
        var_r += dx * dx * xs[i].se().powi(2) + dy * dy * ys[i].se().powi(2);
    }
    // Fisher's z is infinite at |r| = 1: keep r just inside.
    let rc = r.clamp(-0.999_999, 0.999_999);
    let z = rc.atanh();
    let sampling = if k > 3 {
        1.0 / (k - 3) as f64
    } else {
        f64::INFINITY
    };
    let se_z = (sampling + var_r / (1.0 - rc * rc).powi(2)).sqrt();
    let interval = if se_z.is_finite() {
        Interval {
            lo: (z - MARGIN_SIGMAS * se_z).tanh(),
            hi: (z + MARGIN_SIGMAS * se_z).tanh(),
        }
    } else {
        Interval { lo: -1.0, hi: 1.0 }
    };
    Some(Correlation {
        r,
        k,
        se_z,
        interval,
    })
}

#[cfg(test)]
mod tests;
