//! # nrf-theory
//!
//! The robust-features Gaussian model of section 4 of *"Adversarial Examples Are Not Bugs, They
//! Are Features"* (Ilyas et al., 2019), in pure Rust on `ndarray` (no LAPACK, no libtorch).
//!
//! * [`gaussian`]: the model `y ~ Unif{±1}`, `x ~ N(y·μ, Σ)`; sampling, maximum likelihood, the
//!   Bayes classifier `sign(wᵀx)` with `w = Σ⁻¹μ`, closed-form standard and ℓ2-adversarial risks.
//! * [`thm1`]: the quadratic-penalty adversary `δ* = (λΣ - I)⁻¹v` and the vulnerability
//!   `½(tr[(I + (λΣ* - I)⁻¹)²] - d)` (Theorem 1; the paper omits the ½).
//! * [`thm2`]: the robust covariance `Σ_r = ½Σ* + I/λ + sqrt(Σ*/λ + Σ*²/4)` (Theorem 2), its
//!   numerical check, and the ε-constrained robust MLE fitted numerically.
//! * [`thm3`]: alignment `cos∠(Σ⁻¹μ, μ)` of input gradients with the inter-class direction.
//! * [`circles`]: a seeded `make_circles` and (robust) usefulness of simple features.
//! * [`run`]: every experiment, as the typed [`TheorySummary`] (the tables and checks of
//!   `theory.json`, in [`summary`]) and the data of the figures ([`figures`]: every curve and
//!   point). Nothing here draws or writes files: the theory stage of nrf-experiments draws the
//!   figures with nrf-report's plotting stack and writes `theory.json`.
//!
//! Derivations and the paper-vs-derived discussion are in `docs/theory.md` of the workspace.
//!
//! ## Example
//!
//! ```rust
//! use ndarray::array;
//! use nrf_theory::{thm1, thm2, thm3, GaussianModel};
//! use rand::SeedableRng;
//!
//! # fn main() -> nrf_theory::Result<()> {
//! // An anisotropic 2-D model.
//! let sigma = array![[1.0, 0.0], [0.0, 0.05]];
//! let model = GaussianModel::new(array![0.5, 0.3], sigma.clone())?;
//!
//! // Closed-form risks of the Bayes classifier.
//! let w = model.bayes_weights()?;
//! let clean = model.linear_risk(w.view())?;
//! let adv = model.linear_adversarial_risk(w.view(), 0.3)?;
//! assert!(adv > clean);
//!
//! // Fit from samples.
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let fit = GaussianModel::fit_mle(&model.sample(5_000, &mut rng)?)?;
//! assert!((fit.mu()[0] - 0.5).abs() < 0.1);
//!
//! // Theorem 1: vulnerability at penalty lambda (needs lambda > 1/sigma_min = 20).
//! let v = thm1::vulnerability(sigma.view(), 40.0)?;
//! let v_iso = thm1::vulnerability((ndarray::Array2::<f64>::eye(2) * 0.525).view(), 40.0)?;
//! assert!(v > v_iso); // same trace, the isotropic covariance is less vulnerable
//!
//! // Theorem 2 and 3: the robust covariance is better conditioned, gradients align with mu.
//! let sigma_r = thm2::robust_covariance_penalty(sigma.view(), 2.0)?;
//! let c_std = thm3::alignment_cosine(sigma.view(), model.mu().view())?;
//! let c_rob = thm3::alignment_cosine(sigma_r.view(), model.mu().view())?;
//! assert!(c_rob > c_std);
//!
//! // Everything at once (tables, checks and the figures' data):
//! // let out = nrf_theory::run(0)?;
//! // assert!(out.summary.all_passed());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod circles;
pub mod error;
pub mod figures;
pub mod gaussian;
pub mod linalg;
pub mod optim;
mod run;
pub mod stats;
pub mod summary;
pub mod thm1;
pub mod thm2;
pub mod thm3;

pub use error::{Result, TheoryError};
pub use figures::TheoryFigures;
pub use gaussian::{GaussianModel, LabelledSamples};
pub use run::{figure4_model, run, run_with, TheoryOutput};
pub use summary::{
    Check, CirclesResults, CirclesRow, ConstrainedRow, Model2d, RiskRow, RunConfig, TheorySummary,
    Thm1Results, Thm1Row, Thm2CaseRow, Thm2Results, Thm3EpsRow, Thm3Results, Thm3Row,
};
