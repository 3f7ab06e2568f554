//! nrf-attacks: threat models (L2, L∞, L1, unconstrained), projected gradient ascent on any
//! differentiable per-example objective, cross-entropy attacks (PGD, FGSM), representation
//! matching (the machinery behind D_R / D_NR), robust evaluation and gradient-masking checks.
//!
//! The design follows MadryLab/robustness `attack_steps.py`: a [`ThreatModel`] provides a random
//! start, a steepest-ascent step and a projection; [`pgd()`] only calls those, so it knows nothing
//! about norms. Targeted attacks negate the objective; the ball's centre may differ from the start
//! point. All inputs live in `[0, 1]` with the batch dimension first.
//!
//! ```rust
//! use nrf_attacks::{pgd_attack, robust_accuracy, PgdConfig, ThreatModel, L2};
//! use nrf_models::Classifier;
//! use tch::{Device, Kind, Tensor};
//!
//! /// A linear classifier on flattened inputs: logits = x·W + b.
//! struct Linear { w: Tensor, b: Tensor }
//! impl Classifier for Linear {
//!     fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
//!         let rep = x.reshape([x.size()[0], -1]);
//!         (rep.matmul(&self.w) + &self.b, rep)
//!     }
//!     fn num_classes(&self) -> i64 { 2 }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! tch::manual_seed(0);
//! let opts = (Kind::Float, Device::Cpu);
//! let model = Linear {
//!     w: Tensor::from_slice(&[1.0f32, -1.0, -1.0, 1.0]).view([2, 2]),
//!     b: Tensor::zeros([2], opts),
//! };
//! // Class 0 iff x0 > x1: two correctly classified points close to the boundary.
//! let x = Tensor::from_slice(&[0.6f32, 0.4, 0.3, 0.5]).view([2, 2]);
//! let y = Tensor::from_slice(&[0i64, 1]);
//! let threat = L2::new(0.5)?;
//! let cfg = PgdConfig::new(10, 0.1);
//! let x_adv = pgd_attack(&model, &x, &y, &threat, &cfg, None)?;
//! // Inside the ball, and the attack crossed the boundary for both points.
//! assert!(threat.distance(&x_adv, &x).max().double_value(&[]) <= 0.5 + 1e-5);
//! let acc = robust_accuracy(&model, &x, &y, &threat, &PgdConfig::eval(0.5, 20), 2, false)?;
//! assert_eq!(acc, 0.0);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod apgd;
pub mod attack;
pub mod eval;
pub mod objectives;
pub mod pgd;
pub mod square;
pub mod threat;

pub use apgd::{
    apgd, dlr_loss, dlr_loss_targeted, ensemble_evaluation, ApgdConfig, ApgdLoss, ApgdOutput,
    EnsembleAttack, EnsembleEval,
};
pub use attack::{fgsm, pgd_attack, AdvTraining};
pub use eval::{
    accuracy, batch_rows, evaluate_grid, evaluate_grid_slice, robust_accuracy, robust_evaluation,
    sanity_check, unbounded_attack_accuracy, AttackWork, RobustOutcome, RobustPoint,
};
pub use objectives::{
    cross_entropy, margin, rep_distance, rep_match, targeted_ce, untargeted_ce, untargeted_margin,
    Distance,
};
pub use pgd::{
    accelerator_rows_per_pass, first_iterate, logits_by_rows, pgd, pgd_by_rows, pgd_by_rows_on,
    pgd_from_first, row_blocks, rows_per_pass, IterateHook, Objective, PgdConfig, PgdOutput,
    StepSize, ACCELERATOR_VALUES_PER_PASS, CPU_ROWS_PER_PASS, MIN_ROWS_PER_WORKER,
    ROWS_PER_PASS_ENV,
};
pub use square::{square, SquareConfig};
pub use threat::{per_example_norm, Linf, Norm, ThreatModel, ThreatSpec, Unconstrained, L1, L2};
