//! `run_all`: every theory experiment, its JSON tables and its plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{array, Array1, Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::circles::{make_circles, CircleFeature, NormalisedFeature};
use crate::error::{invalid, Result, TheoryError};
use crate::gaussian::{empirical_adversarial_risk, GaussianModel};
use crate::io::write_json;
use crate::linalg::{
    condition_number, frobenius, random_spd, rotation2, spd_from_eigenvalues, sym_eig,
};
use crate::optim::GdOptions;
use crate::plots::{
    plot_figure4, plot_panels, Curve, CurveStyle, EllipseFit, Figure4Data, Figure4Panel,
    LegendCorner, LineChart, Panel, ScatterChart,
};
use crate::thm1::{
    loss_increase_mc, minimise_vulnerability_fixed_trace, penalised_gain, vulnerability,
    vulnerability_paper, InnerSolver, McEstimate,
};
use crate::thm2::{
    anisotropy, best_fit_lambda, check_closed_form, constrained_descent_probe,
    fit_constrained_robust, lambda_for_rms_radius, robust_covariance_penalty,
};
use crate::thm3::{alignment_cosine, worst_case_alignment};

/// Sizes of the experiments. [`RunConfig::default`] is what [`run_all`] uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Monte-Carlo samples for the risk table.
    pub risk_mc_samples: usize,
    /// Dimension of the Theorem 1 study.
    pub thm1_dim: usize,
    /// Condition numbers of the Theorem 1 spectra (all with trace = dimension).
    pub thm1_condition_numbers: Vec<f64>,
    /// Monte-Carlo samples with the closed-form adversary.
    pub thm1_mc_samples: usize,
    /// Monte-Carlo samples with the gradient-ascent adversary.
    pub thm1_ga_samples: usize,
    /// Random fixed-trace spectra compared with the isotropic one.
    pub thm1_random_spectra: usize,
    /// Random (Σ*, λ) cases for the Theorem 2 closed-form check.
    pub thm2_cases: usize,
    /// Samples of the 2-D Figure 4 model used for the constrained robust fits.
    pub fig4_samples: usize,
    /// Radii of the constrained robust fits (must start with 0).
    pub fig4_eps: Vec<f64>,
    /// `make_circles` sample size.
    pub circles_samples: usize,
    /// `make_circles` noise.
    pub circles_noise: f64,
    /// `make_circles` inner-circle factor.
    pub circles_factor: f64,
    /// Radii for the usefulness table.
    pub circles_eps: Vec<f64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            risk_mc_samples: 100_000,
            thm1_dim: 10,
            thm1_condition_numbers: vec![1.0, 2.0, 5.0, 10.0, 20.0],
            thm1_mc_samples: 20_000,
            thm1_ga_samples: 200,
            thm1_random_spectra: 200,
            thm2_cases: 24,
            fig4_samples: 800,
            fig4_eps: vec![0.0, 0.25, 0.5, 1.0, 2.0],
            circles_samples: 4_000,
            circles_noise: 0.1,
            circles_factor: 0.5,
            circles_eps: (0..=12).map(|k| k as f64 / 20.0).collect(),
        }
    }
}

/// One pass/fail statement about a claim, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short identifier.
    pub name: String,
    /// Whether the numbers support the claim.
    pub passed: bool,
    /// Human-readable evidence.
    pub detail: String,
}

/// Standard and adversarial risk of one linear classifier at one radius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskRow {
    /// Which classifier (`"MLE (eps=0)"` or `"robust eps=…"`).
    pub classifier: String,
    /// Attack radius.
    pub eps: f64,
    /// Closed form `Φ(-(μᵀw - ε‖w‖)/√(wᵀΣw))`.
    pub closed_form: f64,
    /// Monte-Carlo estimate with explicit worst-case perturbations.
    pub monte_carlo: f64,
    /// Binomial standard error of the Monte-Carlo estimate.
    pub std_err: f64,
}

/// Parameters of the 2-D model used for Figure 4, the risk table and Theorem 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model2d {
    /// `μ*`.
    pub mu: Vec<f64>,
    /// `Σ*` rows.
    pub sigma: Vec<Vec<f64>>,
    /// Eigenvalues of `Σ*`.
    pub sigma_eigenvalues: Vec<f64>,
    /// Rotation angle (radians) of the eigenbasis.
    pub rotation: f64,
}

/// One Theorem 1 row: a fixed-trace spectrum at one λ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm1Row {
    /// Condition number of `Σ*`.
    pub condition_number: f64,
    /// Penalty λ.
    pub lambda: f64,
    /// `½(tr[(I+(λΣ*-I)⁻¹)²] - d)`.
    pub vulnerability: f64,
    /// The paper's form without the ½.
    pub vulnerability_paper: f64,
    /// Monte-Carlo loss increase with the closed-form `δ*`.
    pub mc_closed_form: McEstimate,
    /// Monte-Carlo loss increase with `δ` found by gradient ascent.
    pub mc_gradient_ascent: McEstimate,
    /// Adversary's penalised net gain `½Σ 1/(λσᵢ-1)`.
    pub penalised_gain: f64,
}

/// Theorem 1 results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm1Results {
    /// Dimension.
    pub dim: usize,
    /// Fixed trace `k`.
    pub trace: f64,
    /// Rows (spectra × λ).
    pub rows: Vec<Thm1Row>,
    /// Random fixed-trace spectra tried.
    pub random_spectra: usize,
    /// Of those, how many had vulnerability ≥ the isotropic one.
    pub random_spectra_not_below_isotropic: usize,
    /// Eigenvalues found by numerically minimising the vulnerability at fixed trace.
    pub numerical_minimiser_eigenvalues: Vec<f64>,
    /// `max |σᵢ - k/d|` of that minimiser.
    pub numerical_minimiser_max_dev: f64,
}

/// Theorem 2: closed form vs direct minimisation of the penalty objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm2CaseRow {
    /// Dimension.
    pub dim: usize,
    /// Condition number of `Σ*`.
    pub condition_number: f64,
    /// λ.
    pub lambda: f64,
    /// Relative Frobenius error.
    pub rel_error: f64,
    /// `J(numerical) - J(closed form)`.
    pub objective_gap: f64,
    /// Optimiser iterations.
    pub iterations: usize,
}

/// Theorem 2: one ε-constrained robust fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstrainedRow {
    /// Radius ε.
    pub eps: f64,
    /// Fitted `μ`.
    pub mu: Vec<f64>,
    /// Fitted `Σ` rows.
    pub sigma: Vec<Vec<f64>>,
    /// Eigenvalues of the fitted `Σ`.
    pub sigma_eigenvalues: Vec<f64>,
    /// Condition number.
    pub condition_number: f64,
    /// `‖Σ/(trΣ/d) - I‖_F`.
    pub anisotropy: f64,
    /// `‖μ_ε - μ_MLE‖`.
    pub mu_shift_from_mle: f64,
    /// Mean trust-region multiplier (`None` for ε = 0, where it is infinite).
    pub mean_multiplier: Option<f64>,
    /// λ whose closed form is closest (`None` = ∞ for ε = 0).
    pub matched_lambda: Option<f64>,
    /// Relative Frobenius error of that closed form.
    pub matched_rel_error: f64,
    /// λ at which the penalty adversary's RMS perturbation equals ε ([`crate::thm2::lambda_for_rms_radius`]).
    pub rms_lambda: Option<f64>,
    /// Relative Frobenius error of the closed form at `rms_lambda`.
    pub rms_rel_error: Option<f64>,
    /// Optimiser gradient norm at the end (not zero at a kink of the sample objective).
    pub grad_norm: f64,
    /// Largest objective decrease found by random probing around the fit (≤ ~0: local minimum).
    pub descent_probe: f64,
    /// Optimiser iterations.
    pub iterations: usize,
}

/// Theorem 2 results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm2Results {
    /// Closed form vs numerical rows.
    pub closed_form_cases: Vec<Thm2CaseRow>,
    /// Largest relative error.
    pub max_rel_error: f64,
    /// Most negative objective gap (negative would contradict optimality).
    pub min_objective_gap: f64,
    /// Constrained robust fits on the 2-D sample.
    pub constrained: Vec<ConstrainedRow>,
}

/// One Theorem 3 row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm3Row {
    /// λ (`None` = ∞, the standard MLE).
    pub lambda: Option<f64>,
    /// cos∠(Σ_r⁻¹μ*, μ*) for the 2-D model.
    pub cosine: f64,
    /// Worst case over μ (Kantorovich) for the 2-D model.
    pub worst_case_cosine: f64,
    /// Worst case over μ for the d-dimensional Theorem 1 model with the largest condition number.
    pub worst_case_cosine_high_dim: f64,
}

/// Theorem 3 along the ε-constrained fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm3EpsRow {
    /// Radius.
    pub eps: f64,
    /// cos∠(Σ_ε⁻¹μ_ε, μ_ε).
    pub cosine: f64,
    /// Worst case over μ for Σ_ε.
    pub worst_case_cosine: f64,
}

/// Theorem 3 results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thm3Results {
    /// λ sweep (decreasing λ = increasing robustness), closed-form Σ_r.
    pub lambda_sweep: Vec<Thm3Row>,
    /// ε sweep with the numerically fitted constrained robust MLE.
    pub eps_sweep: Vec<Thm3EpsRow>,
    /// Random μ in the high-dimensional model for which cos increased at every λ step.
    pub random_mu_monotone: usize,
    /// Random μ tried.
    pub random_mu_tried: usize,
}

/// One `make_circles` table row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CirclesRow {
    /// Feature name (`x1`, `x2`, `radius`).
    pub feature: String,
    /// Radius ε (0 = plain usefulness ρ).
    pub eps: f64,
    /// Exact `E[inf y f(x+δ)]`.
    pub robust_usefulness: f64,
    /// Numerical inner minimisation (PGD), when computed.
    pub robust_usefulness_numerical: Option<f64>,
}

/// `make_circles` results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CirclesResults {
    /// Samples.
    pub n: usize,
    /// Noise.
    pub noise: f64,
    /// Factor.
    pub factor: f64,
    /// Normalisation `(feature, mean, std)`.
    pub normalisation: Vec<(String, f64, f64)>,
    /// Table.
    pub rows: Vec<CirclesRow>,
    /// Largest |exact - numerical|.
    pub max_abs_numerical_diff: f64,
}

/// Everything `run_all` computed; also written to `theory.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheorySummary {
    /// Seed.
    pub seed: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Wall-clock seconds per section.
    pub section_seconds: Vec<(String, f64)>,
    /// Files written (names inside `out_dir`).
    pub files: Vec<String>,
    /// Configuration.
    pub config: RunConfig,
    /// The 2-D model.
    pub model_2d: Model2d,
    /// Risk table.
    pub risks: Vec<RiskRow>,
    /// Theorem 1.
    pub thm1: Thm1Results,
    /// Theorem 2.
    pub thm2: Thm2Results,
    /// Theorem 3.
    pub thm3: Thm3Results,
    /// `make_circles`.
    pub circles: CirclesResults,
    /// Claim checks.
    pub checks: Vec<Check>,
}

impl TheorySummary {
    /// True when every check passed.
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn rows(a: ArrayView2<f64>) -> Vec<Vec<f64>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
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

fn geometric_spectrum(d: usize, kappa: f64, trace: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..d)
        .map(|i| kappa.powf(-(i as f64) / (d.max(2) - 1) as f64))
        .collect();
    let s: f64 = raw.iter().sum();
    raw.iter().map(|v| v * trace / s).collect()
}

/// Runs every experiment with [`RunConfig::default`] and writes `theory.json`, `figure4.png/.svg`,
/// `thm1_vulnerability.png/.svg`, `thm3_alignment.png/.svg` and `circles_usefulness.png/.svg` into
/// `out_dir` (created if missing), each atomically.
pub fn run_all(out_dir: &Path, seed: u64) -> Result<TheorySummary> {
    run_all_with(out_dir, seed, &RunConfig::default())
}

/// [`run_all`] with explicit sizes.
pub fn run_all_with(out_dir: &Path, seed: u64, cfg: &RunConfig) -> Result<TheorySummary> {
    let start = Instant::now();
    if cfg.fig4_eps.first() != Some(&0.0) {
        return Err(invalid("fig4_eps", "must start with 0"));
    }
    if cfg.thm1_condition_numbers.is_empty() || cfg.thm1_dim < 2 {
        return Err(invalid(
            "thm1",
            "need a dimension >= 2 and at least one condition number",
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| TheoryError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut checks = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut sections: Vec<(String, f64)> = Vec::new();
    let mut lap_start = Instant::now();
    let mut lap = |name: &str| {
        sections.push((name.to_string(), lap_start.elapsed().as_secs_f64()));
        lap_start = Instant::now();
    };

    // ---------------------------------------------------------------- 2-D model and robust fits
    let model = figure4_model()?;
    let e2 = sym_eig(model.sigma().view())?;
    let model_2d = Model2d {
        mu: model.mu().to_vec(),
        sigma: rows(model.sigma().view()),
        sigma_eigenvalues: e2.values.to_vec(),
        rotation: 35f64.to_radians(),
    };
    let mut rng = rng_for(seed, 1);
    let fig_samples = model.sample(cfg.fig4_samples, &mut rng)?;
    let mle = GaussianModel::fit_mle(&fig_samples)?;
    let mut fits = Vec::new();
    let mut current = mle.clone();
    for &eps in &cfg.fig4_eps {
        let fit = fit_constrained_robust(
            &fig_samples,
            eps,
            &current,
            GdOptions {
                max_iter: 400,
                grad_tol: 1e-7,
                initial_step: 1e-2,
            },
        )?;
        current = fit.model.clone();
        fits.push(fit);
    }
    let mut constrained_rows = Vec::new();
    let mut probe_rng = rng_for(seed, 7);
    for fit in &fits {
        let probe = constrained_descent_probe(&fig_samples, fit, 24, &mut probe_rng)?;
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
        constrained_rows.push(ConstrainedRow {
            eps: fit.eps,
            mu: fit.model.mu().to_vec(),
            sigma: rows(s.view()),
            sigma_eigenvalues: sym_eig(s.view())?.values.to_vec(),
            condition_number: condition_number("sigma", s.view())?,
            anisotropy: anisotropy(s.view())?,
            mu_shift_from_mle: frobenius(
                (fit.model.mu() - mle.mu())
                    .view()
                    .insert_axis(ndarray::Axis(0)),
            ),
            mean_multiplier: fit
                .mean_multiplier
                .is_finite()
                .then_some(fit.mean_multiplier),
            matched_lambda: lam.is_finite().then_some(lam),
            rms_lambda,
            rms_rel_error,
            matched_rel_error: rel,
            grad_norm: fit.report.grad_norm,
            descent_probe: probe,
            iterations: fit.report.iterations,
        });
    }
    {
        let conds: Vec<f64> = constrained_rows
            .iter()
            .map(|r| r.condition_number)
            .collect();
        let shifts: Vec<f64> = constrained_rows
            .iter()
            .map(|r| r.mu_shift_from_mle)
            .collect();
        let mu_norm = frobenius(mle.mu().view().insert_axis(ndarray::Axis(0)));
        checks.push(Check {
            name: "thm2_constrained_sigma_blends_to_identity".into(),
            passed: conds.windows(2).all(|w| w[1] < w[0]),
            detail: format!("condition numbers along eps {:?}: {conds:?}", cfg.fig4_eps),
        });
        let max_shift = shifts.iter().cloned().fold(0.0, f64::max);
        checks.push(Check {
            name: "thm2_constrained_mu_unchanged".into(),
            passed: max_shift < 0.05 * mu_norm,
            detail: format!(
                "max ‖μ_ε − μ_MLE‖ = {max_shift:.2e} (‖μ_MLE‖ = {mu_norm:.3}); shifts {shifts:?}"
            ),
        });
        let worst_grad = fits.iter().map(|f| f.report.grad_norm).fold(0.0, f64::max);
        let worst_probe = constrained_rows
            .iter()
            .map(|r| r.descent_probe)
            .fold(f64::NEG_INFINITY, f64::max);
        checks.push(Check {
            name: "thm2_constrained_fits_are_local_minima".into(),
            passed: worst_probe < 1e-9,
            detail: format!(
                "largest decrease found by probing 24 random directions per fit: {worst_probe:.2e} \
                 (final gradient norms up to {worst_grad:.2e}; the sample objective has kinks)"
            ),
        });
    }

    lap("constrained_robust_fits");
    // ---------------------------------------------------------------- risk table
    let mut risks = Vec::new();
    {
        let mut rng = rng_for(seed, 2);
        let test = model.sample(cfg.risk_mc_samples, &mut rng)?;
        let mut classifiers = vec![("MLE (eps=0)".to_string(), mle.bayes_weights()?)];
        for fit in fits.iter().skip(1) {
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
        checks.push(Check {
            name: "risk_closed_form_matches_monte_carlo".into(),
            passed: max_z < 5.0,
            detail: format!(
                "largest |closed − MC| / s.e. = {max_z:.2} over {} rows",
                risks.len()
            ),
        });
    }

    lap("risk_table");
    // ---------------------------------------------------------------- Theorem 1
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
    checks.push(Check {
        name: "thm1_monte_carlo_matches_closed_form".into(),
        passed: max_z1 < 4.5,
        detail: format!("largest |MC − closed form| / s.e. = {max_z1:.2} (closed-form and gradient-ascent adversaries)"),
    });
    let increasing = lambdas.iter().all(|&l| {
        let v: Vec<f64> = thm1_rows
            .iter()
            .filter(|r| r.lambda == l)
            .map(|r| r.vulnerability)
            .collect();
        v.windows(2).all(|w| w[1] > w[0])
    });
    checks.push(Check {
        name: "thm1_vulnerability_grows_with_anisotropy".into(),
        passed: increasing,
        detail: "vulnerability increases with the condition number at fixed trace and λ".into(),
    });
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
    let thm1 = Thm1Results {
        dim: d,
        trace,
        rows: thm1_rows,
        random_spectra: tried,
        random_spectra_not_below_isotropic: not_below,
        numerical_minimiser_eigenvalues: eig_min,
        numerical_minimiser_max_dev: dev,
    };

    lap("thm1");
    // ---------------------------------------------------------------- Theorem 2 closed form
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
    checks.push(Check {
        name: "thm2_closed_form_matches_numerical_minimum".into(),
        passed: max_rel < 1e-5 && min_gap > -1e-10,
        detail: format!(
            "{} random (Σ*, λ): max rel. Frobenius error {max_rel:.2e}, min objective gap {min_gap:.2e}",
            cases.len()
        ),
    });
    let thm2 = Thm2Results {
        closed_form_cases: cases,
        max_rel_error: max_rel,
        min_objective_gap: min_gap,
        constrained: constrained_rows.clone(),
    };

    lap("thm2_closed_form_checks");
    // ---------------------------------------------------------------- Theorem 3
    let hd_sigma = &sigmas.last().expect("non-empty").1;
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
    checks.push(Check {
        name: "thm3_alignment_grows_as_lambda_decreases".into(),
        passed: mono(&|r| r.cosine) && mono(&|r| r.worst_case_cosine) && mono(&|r| r.worst_case_cosine_high_dim),
        detail: format!(
            "2-D cos: {:.4} (MLE) → {:.4} (λ = {:.0e}); worst case 2-D {:.4} → {:.4}; worst case d={d} {:.4} → {:.4}",
            sweep[0].cosine,
            sweep.last().expect("non-empty").cosine,
            sweep.last().and_then(|r| r.lambda).unwrap_or(f64::INFINITY),
            sweep[0].worst_case_cosine,
            sweep.last().expect("non-empty").worst_case_cosine,
            sweep[0].worst_case_cosine_high_dim,
            sweep.last().expect("non-empty").worst_case_cosine_high_dim
        ),
    });
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
    let thm3 = Thm3Results {
        lambda_sweep: sweep,
        eps_sweep,
        random_mu_monotone: mono_count,
        random_mu_tried,
    };

    lap("thm3");
    // ---------------------------------------------------------------- make_circles
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
    checks.push(Check {
        name: "circles_exact_matches_numerical_inner_min".into(),
        passed: max_diff < 1e-3,
        detail: format!("largest |exact − PGD| = {max_diff:.2e}"),
    });
    let circles = CirclesResults {
        n: data.len(),
        noise: cfg.circles_noise,
        factor: cfg.circles_factor,
        normalisation,
        rows: crow,
        max_abs_numerical_diff: max_diff,
    };

    lap("make_circles");
    // ---------------------------------------------------------------- plots
    let mu0 = frobenius(mle.mu().view().insert_axis(ndarray::Axis(0)));
    let mut fig_panels = Vec::new();
    for (f, r) in fits.iter().zip(&constrained_rows) {
        let closed_form = match r.matched_lambda {
            None => None,
            Some(l) => Some(EllipseFit {
                label: format!("Thm 2 closed form, λ = {l:.3}"),
                mu: mle.mu().clone(),
                sigma: robust_covariance_penalty(mle.sigma().view(), l)?,
            }),
        };
        fig_panels.push(Figure4Panel {
            title: match r.matched_lambda {
                None => "ε = 0: standard MLE".to_string(),
                Some(l) => format!("ε = {}  (matched λ = {l:.3})", f.eps),
            },
            numerical: EllipseFit {
                label: "robust MLE, 1-σ (numerical)".into(),
                mu: f.model.mu().clone(),
                sigma: f.model.sigma().clone(),
            },
            closed_form,
        });
    }
    let summary_chart = LineChart {
        title: "Σ_ε eigenvalues / (tr Σ_ε / 2) and ‖μ_ε‖ / ‖μ_MLE‖".into(),
        x_label: "ε".into(),
        y_label: "ratio (1 = isotropic / unchanged)".into(),
        curves: vec![
            Curve {
                label: "largest eigenvalue / mean".into(),
                points: constrained_rows
                    .iter()
                    .map(|r| {
                        (
                            r.eps,
                            r.sigma_eigenvalues[1] * 2.0 / r.sigma_eigenvalues.iter().sum::<f64>(),
                        )
                    })
                    .collect(),
                style: CurveStyle::LineMarkers,
            },
            Curve {
                label: "smallest eigenvalue / mean".into(),
                points: constrained_rows
                    .iter()
                    .map(|r| {
                        (
                            r.eps,
                            r.sigma_eigenvalues[0] * 2.0 / r.sigma_eigenvalues.iter().sum::<f64>(),
                        )
                    })
                    .collect(),
                style: CurveStyle::LineMarkers,
            },
            Curve {
                label: "‖μ_ε‖ / ‖μ_MLE‖".into(),
                points: fits
                    .iter()
                    .map(|f| {
                        (
                            f.eps,
                            frobenius(f.model.mu().view().insert_axis(ndarray::Axis(0))) / mu0,
                        )
                    })
                    .collect(),
                style: CurveStyle::LineMarkers,
            },
        ],
        log_x: false,
        reference_y: Some(1.0),
        legend: LegendCorner::UpperRight,
    };
    let fig4 = Figure4Data {
        x: fig_samples.x.clone(),
        y: fig_samples.y.clone(),
        panels: fig_panels,
        summary: summary_chart,
    };
    files.extend(plot_figure4(
        &out_dir.join("figure4.png"),
        Some(&out_dir.join("figure4.svg")),
        &fig4,
    )?);

    let mut vul_panels = Vec::new();
    for &lambda in &lambdas {
        let sel: Vec<&Thm1Row> = thm1.rows.iter().filter(|r| r.lambda == lambda).collect();
        vul_panels.push(Panel::Lines(LineChart {
            title: format!("d = {d}, tr Σ* = {trace}, λ = {lambda:.2}"),
            x_label: "condition number κ(Σ*)".into(),
            y_label: "E[NLL(x+δ*) − NLL(x)]".into(),
            curves: vec![
                Curve {
                    label: "closed form ½(tr[(I+(λΣ*−I)⁻¹)²] − d)".into(),
                    points: sel
                        .iter()
                        .map(|r| (r.condition_number, r.vulnerability))
                        .collect(),
                    style: CurveStyle::LineMarkers,
                },
                Curve {
                    label: "Monte Carlo, closed-form δ*".into(),
                    points: sel
                        .iter()
                        .map(|r| (r.condition_number, r.mc_closed_form.mean))
                        .collect(),
                    style: CurveStyle::Markers,
                },
                Curve {
                    label: "Monte Carlo, gradient-ascent δ".into(),
                    points: sel
                        .iter()
                        .map(|r| (r.condition_number, r.mc_gradient_ascent.mean))
                        .collect(),
                    style: CurveStyle::Markers,
                },
            ],
            log_x: false,
            reference_y: None,
            legend: LegendCorner::UpperLeft,
        }));
    }
    files.extend(plot_panels(
        &out_dir.join("thm1_vulnerability.png"),
        Some(&out_dir.join("thm1_vulnerability.svg")),
        "Theorem 1: loss increase under the penalty adversary grows with anisotropy (fixed trace)",
        &vul_panels,
    )?);

    let finite: Vec<(f64, &Thm3Row)> = thm3
        .lambda_sweep
        .iter()
        .filter_map(|r| r.lambda.map(|l| (l, r)))
        .collect();
    let thm3_panels = vec![
        Panel::Lines(LineChart {
            title: "Theorem 2 closed form Σ_r(λ)".into(),
            x_label: "1/λ (more robust →)".into(),
            y_label: "cosine(∇ₓf, μ)".into(),
            curves: vec![
                Curve {
                    label: "2-D model, μ = μ*".into(),
                    points: finite.iter().map(|(l, r)| (1.0 / l, r.cosine)).collect(),
                    style: CurveStyle::Line,
                },
                Curve {
                    label: "2-D model, worst μ (Kantorovich)".into(),
                    points: finite
                        .iter()
                        .map(|(l, r)| (1.0 / l, r.worst_case_cosine))
                        .collect(),
                    style: CurveStyle::Line,
                },
                Curve {
                    label: format!("d = {d}, κ = {kmax}, worst μ"),
                    points: finite
                        .iter()
                        .map(|(l, r)| (1.0 / l, r.worst_case_cosine_high_dim))
                        .collect(),
                    style: CurveStyle::Line,
                },
            ],
            log_x: true,
            reference_y: None,
            legend: LegendCorner::UpperLeft,
        }),
        Panel::Lines(LineChart {
            title: "ε-constrained robust MLE (numerical, 2-D sample)".into(),
            x_label: "ε".into(),
            y_label: "cosine(∇ₓf, μ)".into(),
            curves: vec![
                Curve {
                    label: "μ = fitted μ_ε".into(),
                    points: thm3.eps_sweep.iter().map(|r| (r.eps, r.cosine)).collect(),
                    style: CurveStyle::LineMarkers,
                },
                Curve {
                    label: "worst μ (Kantorovich)".into(),
                    points: thm3
                        .eps_sweep
                        .iter()
                        .map(|r| (r.eps, r.worst_case_cosine))
                        .collect(),
                    style: CurveStyle::LineMarkers,
                },
            ],
            log_x: false,
            reference_y: Some(1.0),
            legend: LegendCorner::LowerRight,
        }),
    ];
    files.extend(plot_panels(
        &out_dir.join("thm3_alignment.png"),
        Some(&out_dir.join("thm3_alignment.svg")),
        "Theorem 3: robust input gradients align with the inter-class direction μ",
        &thm3_panels,
    )?);

    let y = data.signed_labels();
    let scatter: Vec<(f64, f64, f64)> = data
        .x
        .rows()
        .into_iter()
        .zip(y.iter())
        .take(1500)
        .map(|(r, &yy)| (r[0], r[1], yy))
        .collect();
    let mut curves = Vec::new();
    for f in &feats {
        let name = match f.kind {
            CircleFeature::X1 => "f = x₁ (normalised)",
            CircleFeature::X2 => "f = x₂ (normalised)",
            CircleFeature::Radius => "f = ‖x‖ − E‖x‖ (normalised)",
        };
        curves.push(Curve {
            label: format!("{name}, exact"),
            points: circles
                .rows
                .iter()
                .filter(|r| r.feature == f.kind.name())
                .map(|r| (r.eps, r.robust_usefulness))
                .collect(),
            style: CurveStyle::Line,
        });
    }
    curves.push(Curve {
        label: "numerical inner min (PGD), all three".into(),
        points: circles
            .rows
            .iter()
            .filter_map(|r| r.robust_usefulness_numerical.map(|v| (r.eps, v)))
            .collect(),
        style: CurveStyle::Markers,
    });
    let circle_panels = vec![
        Panel::Scatter(ScatterChart {
            title: format!(
                "make_circles(n = {}, noise = {}, factor = {})",
                data.len(),
                cfg.circles_noise,
                cfg.circles_factor
            ),
            x_label: "x₁".into(),
            y_label: "x₂".into(),
            points: scatter,
            class_names: ("outer circle, y = +1".into(), "inner circle, y = −1".into()),
        }),
        Panel::Lines(LineChart {
            title: "robust usefulness γ(ε) = E[inf‖δ‖≤ε y·f(x+δ)]".into(),
            x_label: "ε (L2 radius)".into(),
            y_label: "γ(ε)   (ε = 0: usefulness ρ)".into(),
            curves,
            log_x: false,
            reference_y: Some(0.0),
            legend: LegendCorner::LowerLeft,
        }),
    ];
    files.extend(plot_panels(
        &out_dir.join("circles_usefulness.png"),
        Some(&out_dir.join("circles_usefulness.svg")),
        "Reviewer 2: usefulness of x₁, x₂ and the radius on make_circles",
        &circle_panels,
    )?);

    lap("plots");
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.push("theory.json".into());
    let mut summary = TheorySummary {
        seed,
        elapsed_s: 0.0,
        section_seconds: sections,
        files: names,
        config: cfg.clone(),
        model_2d,
        risks,
        thm1,
        thm2,
        thm3,
        circles,
        checks,
    };
    summary.elapsed_s = start.elapsed().as_secs_f64();
    write_json(&out_dir.join("theory.json"), &summary)?;
    Ok(summary)
}
