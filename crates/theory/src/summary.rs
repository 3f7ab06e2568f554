//! The theory's typed output: [`TheorySummary`] and its tables, written to `theory/theory.json`
//! and rendered by nrf-report. Plain serde data (numbers, strings, vectors): no ndarray, nothing
//! to compute, so a reader needs none of the crate's internals.

use serde::{Deserialize, Serialize};

/// Sizes of the experiments. [`RunConfig::default`] is what [`crate::run`] uses.
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

/// Monte-Carlo estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McEstimate {
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean.
    pub std_err: f64,
    /// Number of samples.
    pub n: usize,
}
