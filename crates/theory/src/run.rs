//! [`run`]: every theory experiment, as the typed [`TheorySummary`] and the data of the four
//! figures ([`TheoryFigures`]). One function per artefact (the ε-constrained robust fits of
//! Figure 4, the risk table, Theorems 1, 2 and 3, `make_circles`) and a short orchestrator; no
//! file is written here (the theory stage of nrf-experiments draws the figures with nrf-report
//! and writes `theory.json`).

use std::time::Instant;

use ndarray::{array, Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::circles::{make_circles, CircleFeature, NormalisedFeature};
use crate::error::{invalid, Result};
use crate::figures::{
    CirclesFigure, Ellipses, FeatureCurve, Figure4, Figure4Panel, LabelledPoint, TheoryFigures,
    Thm1Figure, Thm1Panel, Thm3Figure,
};
use crate::gaussian::{empirical_adversarial_risk, GaussianModel, LabelledSamples};
use crate::linalg::{
    condition_number, frobenius, random_spd, rotation2, spd_from_eigenvalues, sym_eig,
};
use crate::optim::{DescentProbe, GdOptions};
use crate::summary::{
    Check, CirclesResults, CirclesRow, ConstrainedRow, Model2d, RiskRow, RunConfig, TheorySummary,
    Thm1Results, Thm1Row, Thm2CaseRow, Thm2Results, Thm3EpsRow, Thm3Results, Thm3Row,
};
use crate::thm1::{
    loss_increase_mc, minimise_vulnerability_fixed_trace, penalised_gain, vulnerability,
    vulnerability_paper, InnerSolver,
};
use crate::thm2::{
    anisotropy, best_fit_lambda, check_closed_form, constrained_descent_probe,
    fit_constrained_robust, lambda_for_rms_radius, robust_covariance_penalty, ConstrainedFit,
};
use crate::thm3::{alignment_cosine, worst_case_alignment};

/// What [`run`] computes: the summary (written to `theory.json`) and the figures' data.
#[derive(Debug, Clone, PartialEq)]
pub struct TheoryOutput {
    /// Every table and check. `files` is empty: the caller that writes the files fills it.
    pub summary: TheorySummary,
    /// The curves and points of Figure 4 and of the Theorem 1, Theorem 3 and `make_circles` plots.
    pub figures: TheoryFigures,
}

/// Runs every experiment with [`RunConfig::default`].
pub fn run(seed: u64) -> Result<TheoryOutput> {
    run_with(seed, &RunConfig::default())
}

/// [`run`] with explicit sizes.
pub fn run_with(seed: u64, cfg: &RunConfig) -> Result<TheoryOutput> {
    let start = Instant::now();
    validate(cfg)?;
    let mut laps = Laps::default();
    let model = figure4_model()?;
    let fits = robust_fits(seed, cfg, &model)?;
    let figure4 = figure4(&fits)?;
    laps.lap("constrained_robust_fits");
    let (risks, risk_check) = risk_table(seed, cfg, &model, &fits)?;
    laps.lap("risk_table");
    let thm1 = theorem1(seed, cfg)?;
    laps.lap("thm1");
    let (thm2, thm2_check) = theorem2(seed, cfg, fits.rows.clone())?;
    laps.lap("thm2_closed_form_checks");
    let thm3 = theorem3(seed, cfg, &model, &thm1, &fits.fits)?;
    laps.lap("thm3");
    let circles = circles_usefulness(seed, cfg)?;
    laps.lap("make_circles");

    let mut checks = fits.checks;
    checks.push(risk_check);
    checks.extend(thm1.checks);
    checks.push(thm2_check);
    checks.extend(thm3.checks);
    checks.push(circles.check);
    let summary = TheorySummary {
        seed,
        elapsed_s: start.elapsed().as_secs_f64(),
        section_seconds: laps.sections,
        files: Vec::new(),
        config: cfg.clone(),
        model_2d: model_2d(&model)?,
        risks,
        thm1: thm1.results,
        thm2,
        thm3: thm3.results,
        circles: circles.results,
        checks,
    };
    let figures = TheoryFigures {
        figure4,
        thm1: thm1.figure,
        thm3: thm3.figure,
        circles: circles.figure,
    };
    Ok(TheoryOutput { summary, figures })
}

fn validate(cfg: &RunConfig) -> Result<()> {
    if cfg.fig4_eps.first() != Some(&0.0) {
        return Err(invalid("fig4_eps", "must start with 0"));
    }
    if cfg.thm1_condition_numbers.is_empty() || cfg.thm1_dim < 2 {
        return Err(invalid(
            "thm1",
            "need a dimension >= 2 and at least one condition number",
        ));
    }
    Ok(())
}

/// Wall-clock seconds per section.
struct Laps {
    sections: Vec<(String, f64)>,
    since: Instant,
}

impl Default for Laps {
    fn default() -> Self {
        Self {
            sections: Vec::new(),
            since: Instant::now(),
        }
    }
}

impl Laps {
    fn lap(&mut self, name: &str) {
        self.sections
            .push((name.to_string(), self.since.elapsed().as_secs_f64()));
        self.since = Instant::now();
    }
}

fn rows(a: ArrayView2<f64>) -> Vec<Vec<f64>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

fn norm(v: &Array1<f64>) -> f64 {
    frobenius(v.view().insert_axis(Axis(0)))
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// The 2-D model of Figure 4: `Σ* = R(35°) diag(1, 0.05) R(35°)ᵀ`, `μ*` = 0.55 along the
/// high-variance and 0.3 along the low-variance eigenvector.
pub fn figure4_model() -> Result<GaussianModel> {
    let theta = 35f64.to_radians();
    let r = rotation2(theta);
    let sigma = r.dot(&Array2::from_diag(&array![1.0, 0.05])).dot(&r.t());
    let mu = r.dot(&array![0.55, 0.3]);
    GaussianModel::new(mu, sigma)
}

fn model_2d(model: &GaussianModel) -> Result<Model2d> {
    Ok(Model2d {
        mu: model.mu().to_vec(),
        sigma: rows(model.sigma().view()),
        sigma_eigenvalues: sym_eig(model.sigma().view())?.values.to_vec(),
        rotation: 35f64.to_radians(),
    })
}

fn geometric_spectrum(d: usize, kappa: f64, trace: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..d)
        .map(|i| kappa.powf(-(i as f64) / (d.max(2) - 1) as f64))
        .collect();
    let s: f64 = raw.iter().sum();
    raw.iter().map(|v| v * trace / s).collect()
}

/// Figure 4's sample, its standard MLE and the ε-constrained robust fits with their table rows.
struct RobustFits {
    samples: LabelledSamples,
    mle: GaussianModel,
    fits: Vec<ConstrainedFit>,
    rows: Vec<ConstrainedRow>,
    checks: Vec<Check>,
}

/// Gradient descent of the ε-constrained fits (each started from the fit at the previous ε).
const FIT_OPTIONS: GdOptions = GdOptions {
    max_iter: 400,
    grad_tol: 1e-7,
    initial_step: 1e-2,
};

/// The ε-constrained robust MLE on a sample of the 2-D model, one fit per ε of `cfg.fig4_eps`
/// (each started from the previous), with the λ of Theorem 2's closed form that matches it.
fn robust_fits(seed: u64, cfg: &RunConfig, model: &GaussianModel) -> Result<RobustFits> {
    let mut rng = rng_for(seed, 1);
    let samples = model.sample(cfg.fig4_samples, &mut rng)?;
    let mle = GaussianModel::fit_mle(&samples)?;
    let mut fits = Vec::new();
    let mut current = mle.clone();
    for &eps in &cfg.fig4_eps {
        let fit = fit_constrained_robust(&samples, eps, &current, FIT_OPTIONS)?;
        current = fit.model.clone();
        fits.push(fit);
    }
    let mut probe_rng = rng_for(seed, 7);
    let mut rows = Vec::new();
    let mut probes = Vec::new();
    for fit in &fits {
        let probe = constrained_descent_probe(&samples, fit, 24, &mut probe_rng)?;
        rows.push(constrained_row(&mle, fit, &probe)?);
        probes.push(probe);
    }
    let checks = constrained_checks(cfg, &mle, &fits, &rows, &probes);
    Ok(RobustFits {
        samples,
        mle,
        fits,
        rows,
        checks,
    })
}

fn constrained_row(
    mle: &GaussianModel,
    fit: &ConstrainedFit,
    probe: &DescentProbe,
) -> Result<ConstrainedRow> {
    let (rms_lambda, rms_rel_error) = if fit.eps > 0.0 {
        let l = lambda_for_rms_radius(mle.sigma().view(), fit.eps)?;
        let r = robust_covariance_penalty(mle.sigma().view(), l)?;
        let s = fit.model.sigma();
        (
            Some(l),
            Some(frobenius((&r - s).view()) / frobenius(s.view())),
        )
    } else {
        (None, None)
    };
    let s = fit.model.sigma();
    let (lam, rel) = if fit.eps == 0.0 {
        (
            f64::INFINITY,
            frobenius((s - mle.sigma()).view()) / frobenius(s.view()),
        )
    } else {
        best_fit_lambda(mle.sigma().view(), s.view())?
    };
    Ok(ConstrainedRow {
        eps: fit.eps,
        mu: fit.model.mu().to_vec(),
        sigma: rows(s.view()),
        sigma_eigenvalues: sym_eig(s.view())?.values.to_vec(),
        condition_number: condition_number("sigma", s.view())?,
        anisotropy: anisotropy(s.view())?,
        mu_shift_from_mle: norm(&(fit.model.mu() - mle.mu())),
        mean_multiplier: fit
            .mean_multiplier
            .is_finite()
            .then_some(fit.mean_multiplier),
        matched_lambda: lam.is_finite().then_some(lam),
        rms_lambda,
        rms_rel_error,
        matched_rel_error: rel,
        grad_norm: fit.report.grad_norm,
        descent_probe: probe.largest_decrease,
        iterations: fit.report.iterations,
    })
}

fn constrained_checks(
    cfg: &RunConfig,
    mle: &GaussianModel,
    fits: &[ConstrainedFit],
    rows: &[ConstrainedRow],
    probes: &[DescentProbe],
) -> Vec<Check> {
    let conds: Vec<f64> = rows.iter().map(|r| r.condition_number).collect();
    let shifts: Vec<f64> = rows.iter().map(|r| r.mu_shift_from_mle).collect();
    let mu_norm = norm(mle.mu());
    let max_shift = shifts.iter().cloned().fold(0.0, f64::max);
    let worst_grad = fits.iter().map(|f| f.report.grad_norm).fold(0.0, f64::max);
    let worst_probe = rows
        .iter()
        .map(|r| r.descent_probe)
        .fold(f64::NEG_INFINITY, f64::max);
    // A fit passes when no probed decrease exceeds the two evaluations' round-off bound by more
    // than a point stationary to the optimiser's gradient tolerance can show at the longest probe
    // step (`DescentProbe::is_local_minimum`); `allowed` is that bound at the worst fit.
    let worst = probes
        .iter()
        .max_by(|a, b| {
            let excess =
                |p: &DescentProbe| p.largest_excess - p.largest_step * FIT_OPTIONS.grad_tol;
            excess(a).total_cmp(&excess(b))
        })
        .copied();
    let polished = fits.iter().filter(|f| f.polish_moves > 0).count();
    vec![
        Check {
            name: "thm2_constrained_sigma_blends_to_identity".into(),
            passed: conds.windows(2).all(|w| w[1] < w[0]),
            detail: format!("condition numbers along eps {:?}: {conds:?}", cfg.fig4_eps),
        },
        Check {
            name: "thm2_constrained_mu_unchanged".into(),
            passed: max_shift < 0.05 * mu_norm,
            detail: format!(
                "max ‖μ_ε − μ_MLE‖ = {max_shift:.2e} (‖μ_MLE‖ = {mu_norm:.3}); shifts {shifts:?}"
            ),
        },
        Check {
            name: "thm2_constrained_fits_are_local_minima".into(),
            passed: probes
                .iter()
                .all(|p| p.is_local_minimum(FIT_OPTIONS.grad_tol)),
            detail: format!(
                "largest decrease found by probing 24 random directions per fit: {worst_probe:.2e}; \
                 worst fit: decrease beyond round-off {:.2e}, allowed {:.2e} (gradient tolerance \
                 {:.0e} × longest step); final gradient norms up to {worst_grad:.2e} (the sample \
                 objective has kinks; {polished} of {} fits polished past a kink)",
                worst.map_or(f64::NAN, |p| p.largest_excess),
                worst.map_or(f64::NAN, |p| p.largest_step * FIT_OPTIONS.grad_tol),
                FIT_OPTIONS.grad_tol,
                fits.len(),
            ),
        },
    ]
}

/// Figure 4: the sample, the fitted and closed-form ellipses per ε, and how Σ_ε and μ_ε change.
fn figure4(f: &RobustFits) -> Result<Figure4> {
    let mut panels = Vec::new();
    for (fit, row) in f.fits.iter().zip(&f.rows) {
        let closed_form = match row.matched_lambda {
            None => None,
            Some(l) => Some(Ellipses::of(
                f.mle.mu(),
                &robust_covariance_penalty(f.mle.sigma().view(), l)?,
            )?),
        };
        panels.push(Figure4Panel {
            eps: fit.eps,
            matched_lambda: row.matched_lambda,
            robust_mle: Ellipses::of(fit.model.mu(), fit.model.sigma())?,
            closed_form,
        });
    }
    let eig_ratio = |i: usize| -> Vec<(f64, f64)> {
        f.rows
            .iter()
            .map(|r| {
                let mean = r.sigma_eigenvalues.iter().sum::<f64>();
                (r.eps, r.sigma_eigenvalues[i] * 2.0 / mean)
            })
            .collect()
    };
    let mu0 = norm(f.mle.mu());
    Ok(Figure4 {
        samples: f
            .samples
            .x
            .rows()
            .into_iter()
            .zip(f.samples.y.iter())
            .map(|(r, &y)| LabelledPoint {
                x1: r[0],
                x2: r[1],
                y,
            })
            .collect(),
        panels,
        largest_eigenvalue: eig_ratio(1),
        smallest_eigenvalue: eig_ratio(0),
        mu_norm: f
            .fits
            .iter()
            .map(|fit| (fit.eps, norm(fit.model.mu()) / mu0))
            .collect(),
    })
}

/// Closed-form vs Monte-Carlo standard and adversarial risk of the MLE and robust classifiers.
fn risk_table(
    seed: u64,
    cfg: &RunConfig,
    model: &GaussianModel,
    fits: &RobustFits,
) -> Result<(Vec<RiskRow>, Check)> {
    let mut risks = Vec::new();
    let mut rng = rng_for(seed, 2);
    let test = model.sample(cfg.risk_mc_samples, &mut rng)?;
    let mut classifiers = vec![("MLE (eps=0)".to_string(), fits.mle.bayes_weights()?)];
    for fit in fits.fits.iter().skip(1) {
        classifiers.push((
            format!("robust eps={}", fit.eps),
            fit.model.bayes_weights()?,
        ));
    }
    let mut max_z = 0.0f64;
    for (name, w) in &classifiers {
        for eps in [0.0, 0.1, 0.2, 0.3, 0.5] {
            let cf = model.linear_adversarial_risk(w.view(), eps)?;
            let mc = empirical_adversarial_risk(&test, w.view(), eps)?;
            let se = (cf * (1.0 - cf) / test.len() as f64).sqrt().max(1e-12);
            max_z = max_z.max((cf - mc).abs() / se);
            risks.push(RiskRow {
                classifier: name.clone(),
                eps,
                closed_form: cf,
                monte_carlo: mc,
                std_err: se,
            });
        }
    }
    let check = Check {
        name: "risk_closed_form_matches_monte_carlo".into(),
        passed: max_z < 5.0,
        detail: format!(
            "largest |closed − MC| / s.e. = {max_z:.2} over {} rows",
            risks.len()
        ),
    };
    Ok((risks, check))
}

/// Theorem 1's results, checks and figure, and the spectra that Theorem 3 reuses.
struct Theorem1 {
    results: Thm1Results,
    checks: Vec<Check>,
    figure: Thm1Figure,
    /// Σ* with the largest condition number (Theorem 3's high-dimensional model).
    high_dim_sigma: Array2<f64>,
    /// That condition number.
    kappa_max: f64,
}

/// Theorem 1: vulnerability to the penalty adversary against anisotropy at fixed trace (closed
/// form and Monte Carlo), and the isotropic spectrum as the fixed-trace minimiser.
fn theorem1(seed: u64, cfg: &RunConfig) -> Result<Theorem1> {
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
    let mut thm1_rows = Vec::new();
    let mut max_z1 = 0.0f64;
    for &lambda in &lambdas {
        for (k, s) in &sigmas {
            let v = vulnerability(s.view(), lambda)?;
            let mc = loss_increase_mc(
                s.view(),
                lambda,
                cfg.thm1_mc_samples,
                InnerSolver::ClosedForm,
                &mut rng,
            )?;
            let ga = loss_increase_mc(
                s.view(),
                lambda,
                cfg.thm1_ga_samples,
                InnerSolver::GradientAscent,
                &mut rng,
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
    let figure = Thm1Figure {
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
    };
    let lam_rand = lambdas[0];
    let iso = Array2::<f64>::eye(d) * (trace / d as f64);
    let v_iso = vulnerability(iso.view(), lam_rand)?;
    let mut tried = 0;
    let mut not_below = 0;
    let mut attempts = 0;
    while tried < cfg.thm1_random_spectra && attempts < 100 * cfg.thm1_random_spectra.max(1) {
        attempts += 1;
        let s = random_spd(d, 0.3, 3.0, &mut rng);
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
    let eig_min = minimise_vulnerability_fixed_trace(d, trace, lam_rand, &mut rng)?;
    let dev = eig_min
        .iter()
        .map(|s| (s - trace / d as f64).abs())
        .fold(0.0, f64::max);
    checks.push(Check {
        name: "thm1_isotropic_minimises_fixed_trace".into(),
        passed: not_below == tried && tried > 0 && dev < 1e-4,
        detail: format!(
            "{not_below}/{tried} random trace-{trace} spectra at or above the isotropic value {v_iso:.4}; numerical minimiser max |σᵢ − k/d| = {dev:.2e}"
        ),
    });
    Ok(Theorem1 {
        results: Thm1Results {
            dim: d,
            trace,
            rows: thm1_rows,
            random_spectra: tried,
            random_spectra_not_below_isotropic: not_below,
            numerical_minimiser_eigenvalues: eig_min,
            numerical_minimiser_max_dev: dev,
        },
        checks,
        figure,
        high_dim_sigma: sigmas.last().expect("non-empty").1.clone(),
        kappa_max: kmax,
    })
}

/// Theorem 2: the closed form Σ_r against direct numerical minimisation of the penalty
/// objective on random (Σ*, λ); `constrained` (the ε-constrained fits) completes the results.
fn theorem2(
    seed: u64,
    cfg: &RunConfig,
    constrained: Vec<ConstrainedRow>,
) -> Result<(Thm2Results, Check)> {
    let mut rng = rng_for(seed, 4);
    let mut cases = Vec::new();
    for i in 0..cfg.thm2_cases {
        let dim = 2 + i % 4;
        let s = random_spd(dim, 0.05, 5.0, &mut rng);
        let lambda = (rand::Rng::gen_range(&mut rng, (0.1f64).ln()..(50.0f64).ln())).exp();
        let c = check_closed_form(
            s.view(),
            lambda,
            GdOptions {
                max_iter: 20_000,
                grad_tol: 1e-10,
                initial_step: 1e-2,
            },
        )?;
        cases.push(Thm2CaseRow {
            dim,
            condition_number: condition_number("sigma_star", s.view())?,
            lambda,
            rel_error: c.rel_error,
            objective_gap: c.objective_gap,
            iterations: c.iterations,
        });
    }
    let max_rel = cases.iter().map(|c| c.rel_error).fold(0.0, f64::max);
    let min_gap = cases
        .iter()
        .map(|c| c.objective_gap)
        .fold(f64::INFINITY, f64::min);
    let check = Check {
        name: "thm2_closed_form_matches_numerical_minimum".into(),
        passed: max_rel < 1e-5 && min_gap > -1e-10,
        detail: format!(
            "{} random (Σ*, λ): max rel. Frobenius error {max_rel:.2e}, min objective gap {min_gap:.2e}",
            cases.len()
        ),
    };
    let results = Thm2Results {
        closed_form_cases: cases,
        max_rel_error: max_rel,
        min_objective_gap: min_gap,
        constrained,
    };
    Ok((results, check))
}

/// Theorem 3's results, checks and figure.
struct Theorem3 {
    results: Thm3Results,
    checks: Vec<Check>,
    figure: Thm3Figure,
}

/// Theorem 3: alignment cos∠(Σ⁻¹μ, μ) along Theorem 2's closed form (decreasing λ), for random
/// μ in the high-dimensional model, and along the ε-constrained fits.
fn theorem3(
    seed: u64,
    cfg: &RunConfig,
    model: &GaussianModel,
    thm1: &Theorem1,
    fits: &[ConstrainedFit],
) -> Result<Theorem3> {
    let d = cfg.thm1_dim;
    let hd_sigma = &thm1.high_dim_sigma;
    let mut lambda_grid: Vec<f64> = vec![f64::INFINITY];
    lambda_grid.extend((0..=40).map(|k| 10f64.powf(3.0 - 5.0 * k as f64 / 40.0)));
    let mut sweep = Vec::new();
    for &lambda in &lambda_grid {
        let r2 = robust_covariance_penalty(model.sigma().view(), lambda)?;
        let rh = robust_covariance_penalty(hd_sigma.view(), lambda)?;
        sweep.push(Thm3Row {
            lambda: lambda.is_finite().then_some(lambda),
            cosine: alignment_cosine(r2.view(), model.mu().view())?,
            worst_case_cosine: worst_case_alignment(r2.view())?,
            worst_case_cosine_high_dim: worst_case_alignment(rh.view())?,
        });
    }
    let mono = |f: &dyn Fn(&Thm3Row) -> f64| sweep.windows(2).all(|w| f(&w[1]) > f(&w[0]));
    let first = &sweep[0];
    let last = sweep.last().expect("non-empty");
    let mut checks = vec![Check {
        name: "thm3_alignment_grows_as_lambda_decreases".into(),
        passed: mono(&|r| r.cosine) && mono(&|r| r.worst_case_cosine) && mono(&|r| r.worst_case_cosine_high_dim),
        detail: format!(
            "2-D cos: {:.4} (MLE) → {:.4} (λ = {:.0e}); worst case 2-D {:.4} → {:.4}; worst case d={d} {:.4} → {:.4}",
            first.cosine,
            last.cosine,
            last.lambda.unwrap_or(f64::INFINITY),
            first.worst_case_cosine,
            last.worst_case_cosine,
            first.worst_case_cosine_high_dim,
            last.worst_case_cosine_high_dim
        ),
    }];
    let mut rng = rng_for(seed, 5);
    let rh_list: Vec<Array2<f64>> = lambda_grid
        .iter()
        .map(|&l| robust_covariance_penalty(hd_sigma.view(), l))
        .collect::<Result<_>>()?;
    let mut mono_count = 0;
    let random_mu_tried = 200;
    for _ in 0..random_mu_tried {
        let mu = Array1::from_iter((0..d).map(|_| rand::Rng::gen_range(&mut rng, -1.0..1.0)));
        let cs: Vec<f64> = rh_list
            .iter()
            .map(|r| alignment_cosine(r.view(), mu.view()))
            .collect::<Result<_>>()?;
        if cs.windows(2).all(|w| w[1] >= w[0] - 1e-12) {
            mono_count += 1;
        }
    }
    let eps_sweep: Vec<Thm3EpsRow> = fits
        .iter()
        .map(|f| {
            Ok(Thm3EpsRow {
                eps: f.eps,
                cosine: alignment_cosine(f.model.sigma().view(), f.model.mu().view())?,
                worst_case_cosine: worst_case_alignment(f.model.sigma().view())?,
            })
        })
        .collect::<Result<_>>()?;
    checks.push(Check {
        name: "thm3_alignment_grows_with_eps_constrained".into(),
        passed: eps_sweep.windows(2).all(|w| w[1].cosine > w[0].cosine),
        detail: format!(
            "cos along eps {:?}: {:?}",
            cfg.fig4_eps,
            eps_sweep
                .iter()
                .map(|r| (r.cosine * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        ),
    });
    let finite: Vec<(f64, &Thm3Row)> = sweep
        .iter()
        .filter_map(|r| r.lambda.map(|l| (1.0 / l, r)))
        .collect();
    let figure = Thm3Figure {
        dim: d,
        kappa: thm1.kappa_max,
        cosine_2d: finite.iter().map(|(x, r)| (*x, r.cosine)).collect(),
        worst_2d: finite
            .iter()
            .map(|(x, r)| (*x, r.worst_case_cosine))
            .collect(),
        worst_high_dim: finite
            .iter()
            .map(|(x, r)| (*x, r.worst_case_cosine_high_dim))
            .collect(),
        eps_cosine: eps_sweep.iter().map(|r| (r.eps, r.cosine)).collect(),
        eps_worst: eps_sweep
            .iter()
            .map(|r| (r.eps, r.worst_case_cosine))
            .collect(),
    };
    Ok(Theorem3 {
        results: Thm3Results {
            lambda_sweep: sweep,
            eps_sweep,
            random_mu_monotone: mono_count,
            random_mu_tried,
        },
        checks,
        figure,
    })
}

/// `make_circles`' results, check and figure.
struct Circles {
    results: CirclesResults,
    check: Check,
    figure: CirclesFigure,
}

/// Reviewer 2: (robust) usefulness of x₁, x₂ and the radius on `make_circles`, exact and by a
/// numerical inner minimisation at every other ε.
fn circles_usefulness(seed: u64, cfg: &RunConfig) -> Result<Circles> {
    let mut rng = rng_for(seed, 6);
    let data = make_circles(
        cfg.circles_samples,
        cfg.circles_noise,
        cfg.circles_factor,
        true,
        &mut rng,
    )?;
    let mut crow = Vec::new();
    let mut normalisation = Vec::new();
    let mut max_diff = 0.0f64;
    let feats: Vec<NormalisedFeature> = CircleFeature::ALL
        .iter()
        .map(|&k| NormalisedFeature::fit(k, &data))
        .collect::<Result<_>>()?;
    for f in &feats {
        normalisation.push((f.kind.name().to_string(), f.mean, f.std));
        for (i, &eps) in cfg.circles_eps.iter().enumerate() {
            let ex = f.robust_usefulness(&data, eps)?;
            let num = if i % 2 == 0 {
                let n = f.robust_usefulness_numerical(&data, eps, 80)?;
                max_diff = max_diff.max((n - ex).abs());
                Some(n)
            } else {
                None
            };
            crow.push(CirclesRow {
                feature: f.kind.name().to_string(),
                eps,
                robust_usefulness: ex,
                robust_usefulness_numerical: num,
            });
        }
    }
    let check = Check {
        name: "circles_exact_matches_numerical_inner_min".into(),
        passed: max_diff < 1e-3,
        detail: format!("largest |exact − PGD| = {max_diff:.2e}"),
    };
    let y = data.signed_labels();
    let figure = CirclesFigure {
        n: data.len(),
        noise: cfg.circles_noise,
        factor: cfg.circles_factor,
        samples: data
            .x
            .rows()
            .into_iter()
            .zip(y.iter())
            .take(1500)
            .map(|(r, &y)| LabelledPoint {
                x1: r[0],
                x2: r[1],
                y,
            })
            .collect(),
        exact: feats
            .iter()
            .map(|f| FeatureCurve {
                feature: f.kind.name().to_string(),
                points: crow
                    .iter()
                    .filter(|r| r.feature == f.kind.name())
                    .map(|r| (r.eps, r.robust_usefulness))
                    .collect(),
            })
            .collect(),
        numerical: crow
            .iter()
            .filter_map(|r| r.robust_usefulness_numerical.map(|v| (r.eps, v)))
            .collect(),
    };
    let results = CirclesResults {
        n: data.len(),
        noise: cfg.circles_noise,
        factor: cfg.circles_factor,
        normalisation,
        rows: crow,
        max_abs_numerical_diff: max_diff,
    };
    Ok(Circles {
        results,
        check,
        figure,
    })
}
