//! `datasets/<name>.json`: a constructed dataset's summary ([`ConstructedInfo`]).
use super::{check_nonneg, check_unit};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// `datasets/<name>.json`: a constructed dataset's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConstructedInfo {
    /// "D_R", "D_NR", "D_rand", "D_det", or a variant name like "D_det_eps2".
    pub name: String,
    /// "robust_features", "non_robust_features", "random_target", "deterministic_target".
    pub method: String,
    /// Model used to build it ("C_rob" / "C_std").
    pub source_model: String,
    /// Number of examples.
    pub n: usize,
    /// Perturbation budget (targeted attacks); None for representation matching.
    pub epsilon: Option<f64>,
    /// Optimisation steps per example.
    pub steps: usize,
    /// Step size (initial step size for schedules).
    pub step_size: f64,
    /// Targeted attacks: fraction classified as the target by the source model.
    pub success_rate: Option<f64>,
    /// Representation matching: mean relative error ||g(x_r)-g(x)|| / ||g(x)|| at start / end.
    pub init_rel_err: Option<f64>,
    /// See `init_rel_err`.
    pub final_rel_err: Option<f64>,
    /// Mean L2 pixel distance from the result to the target image x / to the start x0.
    pub mean_dist_to_x: Option<f64>,
    /// See `mean_dist_to_x`.
    pub mean_dist_to_x0: Option<f64>,
    /// Relative path of an image grid under the results dir, e.g. "grids/D_R.png".
    pub grid: Option<String>,
    /// Relative path of the stored dataset (safetensors).
    pub file: Option<String>,
    /// Construction wall time in seconds.
    pub wall_s: f64,
}

impl ConstructedInfo {
    /// Checks rates are fractions in [0, 1] and errors / distances are finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.success_rate {
            check_unit("success_rate", r)?;
        }
        for (name, v) in [
            ("epsilon", self.epsilon),
            ("init_rel_err", self.init_rel_err),
            ("final_rel_err", self.final_rel_err),
            ("mean_dist_to_x", self.mean_dist_to_x),
            ("mean_dist_to_x0", self.mean_dist_to_x0),
        ] {
            if let Some(v) = v {
                check_nonneg(name, v)?;
            }
        }
        check_nonneg("step_size", self.step_size)?;
        check_nonneg("wall_s", self.wall_s)
    }
}
