//! `models/<name>.json`: one trained model ([`ModelResult`]): its training curve, its
//! accuracies and its robust accuracy at every threat model.
use super::{
    check_nonneg, check_unit, eps_eq, norm_eq, EvalChecks, ModelRole, SeedRun, SeedSummary,
};
use crate::uncertainty::Accuracy;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::role::legacy_role;

/// One epoch of training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Accuracy on the (possibly adversarial) training batches seen during the epoch.
    pub train_acc: f64,
    /// Accuracy on the real test set (or its evaluation subset), when measured.
    pub test_acc: Option<f64>,
    /// Wall time of the epoch in seconds.
    pub wall_s: f64,
}

/// Robust accuracy at one threat model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobustPoint {
    /// "L2" or "Linf".
    pub norm: String,
    /// Perturbation budget (pixels in [0, 1]).
    pub eps: f64,
    /// Fraction of the evaluation subset still correct under attack, in [0, 1].
    pub acc: f64,
    /// Number of attack steps.
    pub steps: usize,
    /// Number of evaluated examples.
    pub n: usize,
    /// The attacks behind the number when it is not the PGD grid's: an ensemble's worst case
    /// per example, e.g. "PGD-20 + APGD-CE 100 steps x1 + APGD-T(9 targets) 100 steps x1".
    /// Absent for PGD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
}

/// `models/<name>.json`: one trained model and its evaluation on the real test set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "ModelResultFile")]
pub struct ModelResult {
    /// Identifier, e.g. "C_std", "C_rob", "on_D_R", "on_D_NR", "on_D_rand", "on_D_det",
    /// "on_control": the model's name in tables and its files' names (`weights/<name>`). The
    /// report never reads a role from it: see `role`.
    pub name: String,
    /// What the model is in the experiments (which of the paper's sets, main model or variant,
    /// or an extra's model). Files written before the field existed get it from their name
    /// (`legacy_role`) when read.
    pub role: ModelRole,
    /// Architecture, e.g. "fmnist_cnn".
    pub arch: String,
    /// Training set identifier, e.g. "D", "D_R", "D_NR", "D_rand", "D_det", "D_control".
    pub trained_on: String,
    /// Number of training examples.
    pub train_size: usize,
    /// e.g. Some("L2 PGD eps=1.0, 7 steps") for adversarial training.
    pub adversarial: Option<String>,
    /// Per-epoch training metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Test images behind every epoch's `test_acc` (a fixed random subset of the test set, the
    /// same first images for every model). Absent in files written before it was recorded: those
    /// used the preset's `eval.curve_n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve_n: Option<usize>,
    /// Standard accuracy on the whole real test set, in [0, 1].
    pub std_acc: f64,
    /// Size of the real test set used for `std_acc`.
    pub test_size: usize,
    /// Robust accuracy on the fixed evaluation subset.
    pub robust: Vec<RobustPoint>,
    /// Robust accuracy under the `[eval] ensemble` of attacks (PGD, then APGD variants on the
    /// examples still robust) at the headline threat model; empty when the preset has none.
    /// Claims about robustness are decided on it when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<RobustPoint>,
    /// Gradient-masking checks at the headline threat model, run with the ensemble (absent
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<EvalChecks>,
    /// Accuracy on the training set it was trained on (for the generalisation gap).
    #[serde(default)]
    pub final_train_acc: Option<f64>,
    /// Training wall time in seconds.
    pub wall_s: f64,
    /// Every seed's numbers when the model was trained with several seeds (`[fresh] seeds` ≥ 2;
    /// seed 0 first, which is this model itself: its weights are `weights/<name>` and its numbers
    /// are `std_acc` / `robust` above). Empty (and absent from the file) for one seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SeedRun>,
    /// Mean and sample standard deviation over `seeds` (absent for one seed). Written with
    /// `seeds` by [`ModelResult::set_seeds`]; the report recomputes it from `seeds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_summary: Option<SeedSummary>,
}

/// A `models/<name>.json` as read: [`ModelResult`]'s fields with `role` optional, so that files
/// written before it existed still parse (their role comes from [`legacy_role`]). Each field is
/// documented on [`ModelResult`]; the defaults here are the ones reading applies.
#[derive(Deserialize)]
struct ModelResultFile {
    name: String,
    #[serde(default)]
    role: Option<ModelRole>,
    arch: String,
    trained_on: String,
    train_size: usize,
    adversarial: Option<String>,
    epochs: Vec<EpochMetrics>,
    #[serde(default)]
    curve_n: Option<usize>,
    std_acc: f64,
    test_size: usize,
    robust: Vec<RobustPoint>,
    #[serde(default)]
    ensemble: Vec<RobustPoint>,
    #[serde(default)]
    checks: Option<EvalChecks>,
    #[serde(default)]
    final_train_acc: Option<f64>,
    wall_s: f64,
    #[serde(default)]
    seeds: Vec<SeedRun>,
    #[serde(default)]
    seed_summary: Option<SeedSummary>,
}

impl From<ModelResultFile> for ModelResult {
    fn from(f: ModelResultFile) -> ModelResult {
        ModelResult {
            role: f.role.unwrap_or_else(|| legacy_role(&f.name)),
            name: f.name,
            arch: f.arch,
            trained_on: f.trained_on,
            train_size: f.train_size,
            adversarial: f.adversarial,
            epochs: f.epochs,
            curve_n: f.curve_n,
            std_acc: f.std_acc,
            test_size: f.test_size,
            robust: f.robust,
            ensemble: f.ensemble,
            checks: f.checks,
            final_train_acc: f.final_train_acc,
            wall_s: f.wall_s,
            seeds: f.seeds,
            seed_summary: f.seed_summary,
        }
    }
}

impl ModelResult {
    /// The robust-accuracy point at (`norm`, `eps`), if measured.
    pub fn robust_at(&self, norm: &str, eps: f64) -> Option<&RobustPoint> {
        self.robust
            .iter()
            .find(|p| norm_eq(&p.norm, norm) && eps_eq(p.eps, eps))
    }

    /// Standard accuracy with its uncertainty: over `test_size` images, the mean over seeds when
    /// there are several (see [`crate::uncertainty`]).
    pub fn std_accuracy(&self) -> Accuracy {
        if self.n_seeds() >= 2 {
            let v: Vec<f64> = self.seeds.iter().map(|s| s.std_acc).collect();
            Accuracy::with_seeds(&v, self.test_size)
        } else {
            Accuracy::single(self.std_acc, self.test_size)
        }
    }

    /// Robust accuracy at (`norm`, `eps`) with its uncertainty (over the evaluation subset's `n`
    /// images; the mean over seeds when every seed has the point). None when not measured.
    pub fn robust_accuracy(&self, norm: &str, eps: f64) -> Option<Accuracy> {
        let p = self.robust_at(norm, eps)?;
        match self.seed_values_robust(norm, eps) {
            Some(v) if self.n_seeds() >= 2 => Some(Accuracy::with_seeds(&v, p.n)),
            _ => Some(Accuracy::single(p.acc, p.n)),
        }
    }

    /// Robust accuracy under the ensemble at (`norm`, `eps`) with its uncertainty (the mean
    /// over seeds when every seed has it). None when no ensemble was run there.
    pub fn ensemble_accuracy(&self, norm: &str, eps: f64) -> Option<Accuracy> {
        let find = |v: &[RobustPoint]| {
            v.iter()
                .find(|p| norm_eq(&p.norm, norm) && eps_eq(p.eps, eps))
                .cloned()
        };
        let p = find(&self.ensemble)?;
        let per_seed: Option<Vec<f64>> = self
            .seeds
            .iter()
            .map(|s| find(&s.ensemble).map(|q| q.acc))
            .collect();
        match per_seed {
            Some(v) if self.n_seeds() >= 2 => Some(Accuracy::with_seeds(&v, p.n)),
            _ => Some(Accuracy::single(p.acc, p.n)),
        }
    }

    /// The robust accuracy a claim is decided on at (`norm`, `eps`): the ensemble's where it was
    /// run, else PGD's; with the name of the attack.
    pub fn decisive_robust_accuracy(
        &self,
        norm: &str,
        eps: f64,
    ) -> Option<(Accuracy, &'static str)> {
        match self.ensemble_accuracy(norm, eps) {
            Some(a) => Some((a, "ensemble")),
            None => self.robust_accuracy(norm, eps).map(|a| (a, "PGD")),
        }
    }

    /// The last test accuracy recorded in the training curve.
    pub fn last_epoch_test_acc(&self) -> Option<f64> {
        self.epochs.iter().rev().find_map(|e| e.test_acc)
    }

    /// Final training accuracy: `final_train_acc` (measured on the whole training set) when
    /// present, else the last epoch's running `train_acc`. The flag is true in the second case.
    pub fn train_acc(&self) -> Option<(f64, bool)> {
        match self.final_train_acc {
            Some(a) => Some((a, false)),
            None => self.epochs.last().map(|e| (e.train_acc, true)),
        }
    }

    /// Generalisation gap: training accuracy ([`ModelResult::train_acc`]) minus `std_acc`.
    pub fn gap(&self) -> Option<f64> {
        self.train_acc().map(|(a, _)| a - self.std_acc)
    }

    /// Checks every accuracy is a fraction in [0, 1] and every ε / wall time is finite and
    /// non-negative; the error names the field.
    pub fn validate(&self) -> Result<()> {
        check_unit("std_acc", self.std_acc)?;
        if let Some(a) = self.final_train_acc {
            check_unit("final_train_acc", a)?;
        }
        check_nonneg("wall_s", self.wall_s)?;
        if self.curve_n == Some(0) {
            bail!("curve_n is 0: a per-epoch curve measures at least one test image");
        }
        for (i, e) in self.epochs.iter().enumerate() {
            check_unit(&format!("epochs[{i}].train_acc"), e.train_acc)?;
            if let Some(a) = e.test_acc {
                check_unit(&format!("epochs[{i}].test_acc"), a)?;
            }
        }
        for (i, p) in self.robust.iter().enumerate() {
            check_unit(&format!("robust[{i}].acc"), p.acc)?;
            check_nonneg(&format!("robust[{i}].eps"), p.eps)?;
        }
        for (i, p) in self.ensemble.iter().enumerate() {
            check_unit(&format!("ensemble[{i}].acc"), p.acc)?;
            check_nonneg(&format!("ensemble[{i}].eps"), p.eps)?;
        }
        for (i, s) in self.seeds.iter().enumerate() {
            check_unit(&format!("seeds[{i}].std_acc"), s.std_acc)?;
            for (j, p) in s.robust.iter().enumerate() {
                check_unit(&format!("seeds[{i}].robust[{j}].acc"), p.acc)?;
            }
            if self.seeds[..i].iter().any(|o| o.seed == s.seed) {
                bail!("seeds[{i}].seed = {} is listed twice", s.seed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut m = ModelResult {
            name: "m".into(),
            role: ModelRole::Other,
            arch: "a".into(),
            trained_on: "D".into(),
            train_size: 1,
            adversarial: None,
            epochs: vec![],
            curve_n: None,
            std_acc: 0.5,
            test_size: 1,
            ensemble: Vec::new(),
            checks: None,
            robust: vec![RobustPoint {
                norm: "l2".into(),
                eps: 0.5000000001,
                acc: 0.2,
                steps: 1,
                n: 1,
                attack: None,
            }],
            final_train_acc: None,
            wall_s: 1.0,
            seeds: vec![],
            seed_summary: None,
        };
        assert!(m.validate().is_ok());
        assert_eq!(m.robust_at("L2", 0.5).unwrap().acc, 0.2);
        assert!(m.robust_at("Linf", 0.5).is_none());
        m.robust[0].acc = f64::NAN;
        assert!(format!("{:#}", m.validate().unwrap_err()).contains("robust[0].acc"));
        m.robust[0].acc = 0.2;
        m.epochs.push(EpochMetrics {
            epoch: 1,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 1.2,
            test_acc: None,
            wall_s: 1.0,
        });
        assert!(format!("{:#}", m.validate().unwrap_err()).contains("epochs[0].train_acc"));
        m.epochs[0].train_acc = 0.9;
        m.curve_n = Some(0);
        assert!(format!("{:#}", m.validate().unwrap_err()).contains("curve_n"));
        m.curve_n = Some(900);
        assert!(m.validate().is_ok());
        assert_eq!(m.train_acc(), Some((0.9, true)));
        assert!((m.gap().unwrap() - 0.4).abs() < 1e-12);
        m.final_train_acc = Some(0.95);
        assert_eq!(m.train_acc(), Some((0.95, false)));
    }
}
