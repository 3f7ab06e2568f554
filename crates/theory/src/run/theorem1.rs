//! Theorem 1 (section `thm1`): vulnerability to the penalty adversary against anisotropy at fixed
//! trace, and the isotropic spectrum as the fixed-trace minimiser.

use ndarray::Array2;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::figures::{Thm1Figure, Thm1Panel};
use crate::linalg::{random_spd, spd_from_eigenvalues};
use crate::summary::{Check, RunConfig, Thm1Results, Thm1Row};
use crate::thm1::{
    loss_increase_mc, minimise_vulnerability_fixed_trace, penalised_gain, vulnerability,
    vulnerability_paper, InnerSolver,
};

use super::rng_for;

fn geometric_spectrum(d: usize, kappa: f64, trace: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..d)
        .map(|i| kappa.powf(-(i as f64) / (d.max(2) - 1) as f64))
        .collect();
    let s: f64 = raw.iter().sum();
    raw.iter().map(|v| v * trace / s).collect()
}

/// Theorem 1's results, checks and figure, and the spectra that Theorem 3 reuses.
pub(super) struct Theorem1 {
    pub(super) results: Thm1Results,
    pub(super) checks: Vec<Check>,
    pub(super) figure: Thm1Figure,
    /// Σ* with the largest condition number (Theorem 3's high-dimensional model).
    pub(super) high_dim_sigma: Array2<f64>,
    /// That condition number.
    pub(super) kappa_max: f64,
}

/// Theorem 1: vulnerability to the penalty adversary against anisotropy at fixed trace (closed
/// form and Monte Carlo), and the isotropic spectrum as the fixed-trace minimiser.
pub(super) fn theorem1(seed: u64, cfg: &RunConfig) -> Result<Theorem1> {
    let d = cfg.thm1_dim;
    let trace = d as f64;
    let mut rng = rng_for(seed, 3);
    let sigmas: Vec<(f64, Array2<f64>)> = cfg
        .thm1_condition_numbers
        .iter()
        .map(|&k| {
            (
                k,
                spd_from_eigenvalues(&geometric_spectrum(d, k, trace), &mut rng),
            )
        })
        .collect();
    let kmax = cfg
        .thm1_condition_numbers
        .iter()
        .cloned()
        .fold(1.0, f64::max);
    let smin_worst = geometric_spectrum(d, kmax, trace)
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let lambdas = [1.5 / smin_worst, 3.0 / smin_worst];
    let (thm1_rows, max_z1) = monte_carlo_rows(cfg, &sigmas, &lambdas, &mut rng)?;
    let mut checks = vec![Check {
        name: "thm1_monte_carlo_matches_closed_form".into(),
        passed: max_z1 < 4.5,
        detail: format!("largest |MC − closed form| / s.e. = {max_z1:.2} (closed-form and gradient-ascent adversaries)"),
    }];
    let at = |l: f64| thm1_rows.iter().filter(move |r| r.lambda == l);
    let increasing = lambdas.iter().all(|&l| {
        let v: Vec<f64> = at(l).map(|r| r.vulnerability).collect();
        v.windows(2).all(|w| w[1] > w[0])
    });
    checks.push(Check {
        name: "thm1_vulnerability_grows_with_anisotropy".into(),
        passed: increasing,
        detail: "vulnerability increases with the condition number at fixed trace and λ".into(),
    });
    let figure = thm1_figure(d, trace, &lambdas, &thm1_rows);
    let iso = isotropic_minimum(cfg, d, trace, lambdas[0], &mut rng)?;
    checks.push(iso.check);
    Ok(Theorem1 {
        results: Thm1Results {
            dim: d,
            trace,
            rows: thm1_rows,
            random_spectra: iso.tried,
            random_spectra_not_below_isotropic: iso.not_below,
            numerical_minimiser_eigenvalues: iso.eigenvalues,
            numerical_minimiser_max_dev: iso.max_dev,
        },
        checks,
        figure,
        high_dim_sigma: sigmas.last().expect("non-empty").1.clone(),
        kappa_max: kmax,
    })
}

/// Closed-form vulnerability and its Monte-Carlo estimates (closed-form and gradient-ascent
/// adversaries) per (λ, Σ*), with the largest |MC − closed form| / s.e.
fn monte_carlo_rows(
    cfg: &RunConfig,
    sigmas: &[(f64, Array2<f64>)],
    lambdas: &[f64],
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<Thm1Row>, f64)> {
    let mut thm1_rows = Vec::new();
    let mut max_z1 = 0.0f64;
    for &lambda in lambdas {
        for (k, s) in sigmas {
            let v = vulnerability(s.view(), lambda)?;
            let mc = loss_increase_mc(
                s.view(),
                lambda,
                cfg.thm1_mc_samples,
                InnerSolver::ClosedForm,
                rng,
            )?;
            let ga = loss_increase_mc(
                s.view(),
                lambda,
                cfg.thm1_ga_samples,
                InnerSolver::GradientAscent,
                rng,
            )?;
            max_z1 = max_z1
                .max((mc.mean - v).abs() / mc.std_err.max(1e-300))
                .max((ga.mean - v).abs() / ga.std_err.max(1e-300));
            thm1_rows.push(Thm1Row {
                condition_number: *k,
                lambda,
                vulnerability: v,
                vulnerability_paper: vulnerability_paper(s.view(), lambda)?,
                mc_closed_form: mc,
                mc_gradient_ascent: ga,
                penalised_gain: penalised_gain(s.view(), lambda)?,
            });
        }
    }
    Ok((thm1_rows, max_z1))
}

/// Theorem 1's figure: one panel per λ, vulnerability against the condition number.
fn thm1_figure(d: usize, trace: f64, lambdas: &[f64], thm1_rows: &[Thm1Row]) -> Thm1Figure {
    let at = |l: f64| thm1_rows.iter().filter(move |r| r.lambda == l);
    Thm1Figure {
        dim: d,
        trace,
        panels: lambdas
            .iter()
            .map(|&lambda| Thm1Panel {
                lambda,
                closed_form: at(lambda)
                    .map(|r| (r.condition_number, r.vulnerability))
                    .collect(),
                mc_closed_form: at(lambda)
                    .map(|r| (r.condition_number, r.mc_closed_form.mean))
                    .collect(),
                mc_gradient_ascent: at(lambda)
                    .map(|r| (r.condition_number, r.mc_gradient_ascent.mean))
                    .collect(),
            })
            .collect(),
    }
}

/// The isotropic spectrum as the fixed-trace minimiser: random trace-`trace` spectra against it,
/// and a numerical minimiser's eigenvalues.
struct IsotropicMinimum {
    tried: usize,
    not_below: usize,
    eigenvalues: Vec<f64>,
    max_dev: f64,
    check: Check,
}

/// Counts the random spectra at or above the isotropic vulnerability and runs the numerical
/// fixed-trace minimiser; `lam_rand` is the smaller λ of the sweep.
fn isotropic_minimum(
    cfg: &RunConfig,
    d: usize,
    trace: f64,
    lam_rand: f64,
    rng: &mut ChaCha8Rng,
) -> Result<IsotropicMinimum> {
    let iso = Array2::<f64>::eye(d) * (trace / d as f64);
    let v_iso = vulnerability(iso.view(), lam_rand)?;
    let mut tried = 0;
    let mut not_below = 0;
    let mut attempts = 0;
    while tried < cfg.thm1_random_spectra && attempts < 100 * cfg.thm1_random_spectra.max(1) {
        attempts += 1;
        let s = random_spd(d, 0.3, 3.0, rng);
        let s = &s * (trace / s.diag().sum());
        match vulnerability(s.view(), lam_rand) {
            Ok(v) => {
                tried += 1;
                if v >= v_iso - 1e-12 {
                    not_below += 1;
                }
            }
            Err(_) => continue,
        }
    }
    let eig_min = minimise_vulnerability_fixed_trace(d, trace, lam_rand, rng)?;
    let dev = eig_min
        .iter()
        .map(|s| (s - trace / d as f64).abs())
        .fold(0.0, f64::max);
    let check = Check {
        name: "thm1_isotropic_minimises_fixed_trace".into(),
        passed: not_below == tried && tried > 0 && dev < 1e-4,
        detail: format!(
            "{not_below}/{tried} random trace-{trace} spectra at or above the isotropic value {v_iso:.4}; numerical minimiser max |σᵢ − k/d| = {dev:.2e}"
        ),
    };
    Ok(IsotropicMinimum {
        tried,
        not_below,
        eigenvalues: eig_min,
        max_dev: dev,
        check,
    })
}
