//! Models trained with several seeds: every seed's numbers ([`SeedRun`]) and their mean and
//! spread ([`SeedSummary`]), recorded in `models/<name>.json`.
use super::{eps_eq, norm_eq, ModelResult, RobustPoint};
use serde::{Deserialize, Serialize};

/// One seed of a model trained several times (see [`ModelResult::seeds`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeedRun {
    /// 0-based seed index: seed 0 is the model itself; seed k ≥ 1 was trained as the stage
    /// `train:<name>~s<k>` (weights `weights/<name>~s<k>`).
    pub seed: usize,
    /// The training seed (derived from the run's master seed and the stage name).
    pub train_seed: u64,
    /// Standard accuracy on the whole real test set (`test_size` images).
    pub std_acc: f64,
    /// Robust accuracy at every threat model of the evaluation grid.
    pub robust: Vec<RobustPoint>,
    /// Robust accuracy under the ensemble (see [`ModelResult::ensemble`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<RobustPoint>,
}

/// Mean and sample standard deviation (n − 1) of one number over seeds, as fractions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SeedStat {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds.
    pub sd: f64,
}

impl SeedStat {
    /// Mean and sample standard deviation of `v` (sd 0 for one value; NaN mean for none).
    pub fn of(v: &[f64]) -> SeedStat {
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        SeedStat {
            mean,
            sd: crate::uncertainty::sample_sd(v).unwrap_or(0.0),
        }
    }
}

/// [`SeedStat`] of the robust accuracy at one threat model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobustSeedStat {
    /// "L2" or "Linf".
    pub norm: String,
    /// Perturbation budget.
    pub eps: f64,
    /// Mean and spread over the seeds.
    #[serde(flatten)]
    pub stat: SeedStat,
}

/// Summary of [`ModelResult::seeds`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeedSummary {
    /// Number of seeds.
    pub n_seeds: usize,
    /// Standard accuracy over seeds.
    pub std_acc: SeedStat,
    /// Robust accuracy over seeds, at every threat model all seeds were evaluated at.
    pub robust: Vec<RobustSeedStat>,
}

impl ModelResult {
    /// Number of seeds the model was trained with (1 unless `seeds` lists two or more).
    pub fn n_seeds(&self) -> usize {
        if self.seeds.len() >= 2 {
            self.seeds.len()
        } else {
            1
        }
    }

    /// Records every seed's numbers (seed 0 first) and their summary; one seed or none clears
    /// both (the file then looks as before seeds existed).
    pub fn set_seeds(&mut self, runs: Vec<SeedRun>) {
        if runs.len() < 2 {
            self.seeds.clear();
            self.seed_summary = None;
            return;
        }
        self.seeds = runs;
        self.seed_summary = Some(self.summarise_seeds());
    }

    /// [`SeedSummary`] of `seeds` (as [`ModelResult::set_seeds`] stores it).
    pub fn summarise_seeds(&self) -> SeedSummary {
        let robust = self
            .robust
            .iter()
            .filter_map(|p| {
                let v = self.seed_values_robust(&p.norm, p.eps)?;
                Some(RobustSeedStat {
                    norm: p.norm.clone(),
                    eps: p.eps,
                    stat: SeedStat::of(&v),
                })
            })
            .collect();
        SeedSummary {
            n_seeds: self.seeds.len(),
            std_acc: SeedStat::of(&self.seeds.iter().map(|s| s.std_acc).collect::<Vec<_>>()),
            robust,
        }
    }

    /// Per-seed robust accuracies at (`norm`, `eps`), when every seed has that point.
    pub(super) fn seed_values_robust(&self, norm: &str, eps: f64) -> Option<Vec<f64>> {
        self.seeds
            .iter()
            .map(|s| {
                s.robust
                    .iter()
                    .find(|p| norm_eq(&p.norm, norm) && eps_eq(p.eps, eps))
                    .map(|p| p.acc)
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::uncertainty::Accuracy;
    use crate::verdict::ModelKind;
    use crate::ModelRole;

    pub(crate) fn seeded_model(accs: &[(f64, f64)]) -> ModelResult {
        let point = |acc: f64| RobustPoint {
            norm: "L2".into(),
            eps: 0.5,
            acc,
            steps: 20,
            n: 500,
            attack: None,
        };
        let mut m = ModelResult {
            name: "on_D_R".into(),
            role: ModelRole::Main(ModelKind::DR),
            arch: "fmnist_cnn".into(),
            trained_on: "D_R".into(),
            train_size: 1000,
            adversarial: None,
            epochs: vec![],
            curve_n: None,
            std_acc: accs[0].0,
            test_size: 10_000,
            ensemble: Vec::new(),
            checks: None,
            robust: vec![point(accs[0].1)],
            final_train_acc: Some(0.99),
            wall_s: 3.0,
            seeds: vec![],
            seed_summary: None,
        };
        m.set_seeds(
            accs.iter()
                .enumerate()
                .map(|(i, &(s, r))| SeedRun {
                    seed: i,
                    train_seed: 100 + i as u64,
                    std_acc: s,
                    ensemble: Vec::new(),
                    robust: vec![point(r)],
                })
                .collect(),
        );
        m
    }

    #[test]
    fn seeds_round_trip_and_summarise() {
        let m = seeded_model(&[(0.78, 0.49), (0.80, 0.51)]);
        assert_eq!(m.n_seeds(), 2);
        let s = m.seed_summary.as_ref().unwrap();
        assert_eq!(s.n_seeds, 2);
        assert!((s.std_acc.mean - 0.79).abs() < 1e-12);
        assert!((s.std_acc.sd - 0.02 / 2f64.sqrt()).abs() < 1e-12);
        assert!((s.robust[0].stat.mean - 0.50).abs() < 1e-12);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"seeds\"") && json.contains("\"seed_summary\""));
        let back: ModelResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back.seeds, m.seeds);
        let (bs, ms) = (back.seed_summary.as_ref().unwrap(), s);
        assert_eq!(bs.n_seeds, ms.n_seeds);
        assert!((bs.std_acc.sd - ms.std_acc.sd).abs() < 1e-15);
        assert_eq!(back.summarise_seeds().robust.len(), 1);
        back.validate().unwrap();
        // The verdicts' numbers: means over seeds, with the seeds' values.
        let a = back.std_accuracy();
        assert!((a.value - 0.79).abs() < 1e-12 && a.seeds.len() == 2 && a.n == 10_000);
        let r = back.robust_accuracy("l2", 0.5).unwrap();
        assert!((r.value - 0.50).abs() < 1e-12 && r.n == 500);
        assert!(back.robust_accuracy("L2", 1.0).is_none());
        // One seed: no seed fields in the file (an old reader and an old file agree).
        let one = seeded_model(&[(0.78, 0.49)]);
        assert_eq!(one.n_seeds(), 1);
        let json = serde_json::to_string(&one).unwrap();
        assert!(!json.contains("seed"), "{json}");
        assert_eq!(one.std_accuracy(), Accuracy::single(0.78, 10_000));
        // A file from before seeds existed parses.
        let mut v = serde_json::to_value(&one).unwrap();
        v.as_object_mut().unwrap().remove("seeds");
        let old: ModelResult = serde_json::from_value(v).unwrap();
        assert!(old.seeds.is_empty());
        // Bad per-seed values are named.
        let mut bad = m.clone();
        bad.seeds[1].robust[0].acc = 1.5;
        assert!(format!("{:#}", bad.validate().unwrap_err()).contains("seeds[1].robust[0].acc"));
        bad.seeds[1].robust[0].acc = 0.5;
        bad.seeds[1].seed = 0;
        assert!(format!("{:#}", bad.validate().unwrap_err()).contains("listed twice"));
    }
}
