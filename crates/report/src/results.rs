//! The results schema: what the experiments write under `results/<preset>/` and the report reads.
//!
//! Layout of a results directory:
//! - `run.json` — [`RunInfo`]: configuration, machine, versions, seed, wall time per stage.
//! - `models/<name>.json` — [`ModelResult`]: one per trained model (training curve, accuracies;
//!   for the fresh models of Figure 2 / Table 1 with `[fresh] seeds` ≥ 2, every seed's numbers).
//! - `datasets/<name>.json` — [`ConstructedInfo`]: one per constructed dataset (D_R, D_NR, ...).
//! - `grids/<name>.png` — image grids of constructed datasets.
//! - `theory/theory.json` — [`TheorySummary`] (nrf-theory's typed output, re-exported here), and
//!   `theory/*.png`, the theory's figures ([`crate::theory_figures`]); both written by the theory
//!   stage of nrf-experiments.
//! - `sections/<name>.json` — [`Section`]: any further experiment (Figure 3, reviewers' questions),
//!   rendered generically: a statement, tables and plots.
//!
//! Every file is optional: a partial run gives a partial report that says what is missing.
use crate::uncertainty::{Accuracy, Margin};
use crate::verdict::ModelKind;
use crate::Verdict;
use anyhow::{bail, Result};
pub use nrf_theory::summary::{self as theory, TheorySummary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Machine description recorded with every run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// Host name of the machine.
    pub hostname: String,
    /// Operating system (e.g. "linux x86_64").
    pub os: String,
    /// CPU model name.
    pub cpu: String,
    /// Number of logical CPUs.
    pub cpus: usize,
    /// Threads libtorch was allowed to use.
    pub torch_threads: i64,
    /// `"cpu"` or `"cuda:0 (<name>)"`.
    pub device: String,
}

/// Status of one pipeline stage.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Computed in this run.
    Done,
    /// Loaded from the cache of an earlier run (same configuration hash).
    Cached,
    /// Failed; see `message`.
    Failed,
}

/// One pipeline stage (e.g. "train:C_std", "construct:D_R").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageInfo {
    /// Stage name, e.g. "train:C_std".
    pub name: String,
    /// Whether the stage was computed, loaded from cache, or failed.
    pub status: StageStatus,
    /// Wall time of the computation in seconds (for cached stages: the original computation's).
    pub wall_s: f64,
    /// Hash of the stage's configuration and inputs (cache key).
    pub key: String,
    /// Error or note (failed stages).
    #[serde(default)]
    pub message: Option<String>,
}

/// `run.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Preset name, e.g. "fmnist".
    pub preset: String,
    /// The preset file's full text, as used.
    pub config_toml: String,
    /// Master seed of the run.
    pub seed: u64,
    /// The machine the run used.
    pub machine: MachineInfo,
    /// libtorch version.
    pub torch_version: String,
    /// Version of nrf.
    pub nrf_version: String,
    /// Versions of key crates (tch, ...).
    pub crate_versions: BTreeMap<String, String>,
    /// RFC 3339 or unix-seconds strings.
    pub started: String,
    /// When the run finished (None while running or after a crash).
    pub finished: Option<String>,
    /// Every stage, in execution order.
    pub stages: Vec<StageInfo>,
    /// Wall time of the whole run in seconds.
    pub total_wall_s: f64,
    /// Stages the preset asks for that have not completed (empty when finished).
    #[serde(default)]
    pub missing: Vec<String>,
    /// The ε of the headline robust-accuracy number (Figure 2's "robust accuracy" column and the
    /// verdicts). Added by nrf-report; when absent the report falls back to the preset's
    /// `[eval] headline_eps` (see [`RunInfo::resolved_headline`]).
    #[serde(default)]
    pub headline_eps: Option<f64>,
    /// Number of classes of the dataset (chance level = 1 / num_classes). Added by nrf-report; when
    /// absent the preset's `[data] num_classes`, then 10, is used (see [`RunInfo::resolved_num_classes`]).
    #[serde(default)]
    pub num_classes: Option<usize>,
}

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

/// What a model is in the experiments: the one row of one of the paper's training sets in
/// Figure 2 / Table 1, a variant of such a row, or a model of an extra experiment. Written by
/// the producer that trains the model (`nrf-experiments`), read by the report, which places and
/// judges models by it and never by their names. In JSON: `{"main": "d_r"}`,
/// `{"variant": "d_det"}`, `{"extra": {"set": "d_det", "varies": "eps"}}`, `"other"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// The model of Figure 2 / Table 1 for its set (`C_std`, `C_rob`, `on_D_R`, `on_D_NR`,
    /// `on_D_rand`, `on_D_det`, `on_control`): what the claims are decided on.
    Main(ModelKind),
    /// Another Table 1 / Figure 2 model on a variant of the set (`on_D_det_eps2`: D_det at a
    /// further radius of `relabel.extra_eps`): listed after its set's row, with claims of its
    /// own (T1a / T1b for D_rand / D_det variants).
    Variant(ModelKind),
    /// A model an extra experiment trains for itself: not in Figure 2 / Table 1. `set` is the
    /// paper's set (or training) it stands in for, `varies` what the extra changes.
    Extra {
        /// The paper's set or training the model stands in for.
        set: ModelKind,
        /// What the extra changes from the paper's recipe.
        varies: Varies,
    },
    /// Outside the paper's experiments, role unknown: only a model read from a file written
    /// before `role` existed whose name is not one of the paper's (`legacy_role`, the fallback
    /// for such files). Producers never write it.
    Other,
}

impl ModelRole {
    /// The paper's set and whether the model is a variant, for a Figure 2 / Table 1 model; None
    /// for the extras' models.
    pub fn paper(self) -> Option<(ModelKind, bool)> {
        match self {
            ModelRole::Main(k) => Some((k, false)),
            ModelRole::Variant(k) => Some((k, true)),
            ModelRole::Extra { .. } | ModelRole::Other => None,
        }
    }
}

/// What an extra experiment's model changes from the paper's recipe ([`ModelRole::Extra`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Varies {
    /// The L2 radius of the targeted attack that builds D_rand / D_det (`eps_sensitivity`,
    /// models `es_*`), or of the adversarial training of a source model (`d_det_study`'s
    /// slightly robust source `dd_C_rob_eps*`).
    Eps,
    /// The number of training images (`train_size`, models `ts_*`).
    TrainSize,
    /// The architecture (`figure3`, models `f3_*`; `d_det_study`'s larger source model
    /// `dd_C_std_*`).
    Architecture,
    /// The distance of D_R's representation matching, cosine or squared L2
    /// (`cosine_ablation`, models `cos_*`).
    Distance,
    /// The weight initialisation (`init_ablation`, models `init_*`).
    Init,
    /// How D_det is built: source model, attack, loss, radius (`d_det_study`, models
    /// `dd_on_*`).
    Construction,
    /// The training images: as many as the control, none a target or start image of D_R /
    /// D_NR (`diversity` / `source_vs_target`'s independent model `C_indep`).
    HeldOutImages,
}

/// The role of a model read from a `models/<name>.json` written before [`ModelResult::role`]
/// existed, from its name by the naming convention of those runs: the paper's names
/// ([`ModelKind::base_name`]) are its main models, a paper name followed by `_<suffix>` a
/// variant (`on_D_det_eps2`), and every other name (the extras' own models, which carried a
/// prefix such as `f3_`, `es_`, `ts_`, `cos_`) [`ModelRole::Other`]. Used only when such a file
/// is read ([`ModelResultFile`]); everything written since records its role.
fn legacy_role(name: &str) -> ModelRole {
    for k in ModelKind::ALL {
        let base = k.base_name();
        if name == base {
            return ModelRole::Main(k);
        }
        if let Some(rest) = name.strip_prefix(base) {
            if rest.starts_with('_') && rest.len() > 1 {
                return ModelRole::Variant(k);
            }
        }
    }
    ModelRole::Other
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

/// Checks of a robustness evaluation in the spirit of AutoAttack's (Croce & Hein 2020): numbers
/// that should come out a certain way when the gradients the attacks follow are informative.
/// All on the same `n` evaluation images at (`norm`, `eps`), except the unbounded attack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalChecks {
    /// Norm of the checked threat model, e.g. "L2".
    pub norm: String,
    /// Its radius (the headline ε).
    pub eps: f64,
    /// Evaluation images.
    pub n: usize,
    /// PGD steps of the evaluation and its robust accuracy (the ensemble's first attack).
    pub pgd_steps: usize,
    /// See `pgd_steps`.
    pub pgd_acc: f64,
    /// The same PGD with more steps (step size scaled down alike) and its robust accuracy:
    /// more steps must not raise it.
    pub more_steps: usize,
    /// See `more_steps`.
    pub more_steps_acc: f64,
    /// Robust accuracy under the ensemble (worst case per example).
    pub ensemble_acc: f64,
    /// Steps and accuracy of an unbounded attack (only the [0, 1] box): should be near 0.
    pub unbounded_steps: usize,
    /// See `unbounded_steps`.
    pub unbounded_acc: f64,
    /// Largest absolute difference between the logits of two forward passes on the same
    /// images: 0 for a deterministic model.
    pub output_spread: f64,
    /// Queries and robust accuracy of the black-box Square attack alone (None: not run): it
    /// must not beat the white-box attacks.
    #[serde(default)]
    pub square_queries: usize,
    /// See `square_queries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub square_acc: Option<f64>,
}

impl EvalChecks {
    /// The flags raised, one sentence each (empty when every check passes). A difference counts
    /// only beyond two standard errors (the one margin rule of [`crate::uncertainty`], which
    /// treats the two accuracies as independent, so it is conservative for these paired ones).
    pub fn flags(&self) -> Vec<String> {
        let a = |v: f64| Accuracy::single(v, self.n);
        let mut out = Vec::new();
        let rise = Margin::between(&a(self.more_steps_acc), &a(self.pgd_acc));
        if rise.verdict() == Verdict::Holds {
            out.push(format!(
                "robust accuracy rises with more steps ({:.1}% with {} steps, {:.1}% with {}; m = \
                 {}): the attack gets stuck, a sign of gradient masking",
                100.0 * self.pgd_acc,
                self.pgd_steps,
                100.0 * self.more_steps_acc,
                self.more_steps,
                rise.text()
            ));
        }
        if self.unbounded_acc > (2.0 / self.n.max(1) as f64).max(0.01) {
            out.push(format!(
                "an unbounded attack ({} steps) leaves {:.1}% accuracy: the gradients do not lead \
                 to the decision boundary, a sign of gradient masking",
                self.unbounded_steps,
                100.0 * self.unbounded_acc
            ));
        }
        if self.output_spread > 1e-5 {
            out.push(format!(
                "the model's output is random (logits of two passes differ by up to {:.2e}): \
                 attacks need an expectation over the randomness",
                self.output_spread
            ));
        }
        if let Some(sq) = self.square_acc {
            let m = Margin::between(&a(self.ensemble_acc), &a(sq));
            if m.verdict() == Verdict::Holds {
                out.push(format!(
                    "the black-box Square attack ({} queries) beats the white-box attacks ({:.1}% \
                     vs {:.1}%; m = {}): the gradients mislead the attacks, a sign of gradient \
                     masking",
                    self.square_queries,
                    100.0 * sq,
                    100.0 * self.ensemble_acc,
                    m.text()
                ));
            }
        }
        let gap = Margin::between(&a(self.pgd_acc), &a(self.ensemble_acc));
        if gap.verdict() == Verdict::Holds {
            out.push(format!(
                "PGD overestimates the robust accuracy: the ensemble lowers it from {:.1}% to \
                 {:.1}% (m = {})",
                100.0 * self.pgd_acc,
                100.0 * self.ensemble_acc,
                gap.text()
            ));
        }
        out
    }
}

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

/// A table: headers and rows of cells (already formatted strings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// Caption shown above the table.
    pub caption: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows; each should have as many cells as there are headers.
    pub rows: Vec<Vec<String>>,
}

/// `sections/<name>.json`: a further experiment, rendered generically.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Section {
    /// Stable id, also the file name, e.g. "figure3", "eps_sensitivity".
    pub id: String,
    /// Heading of the section in the report.
    pub title: String,
    /// What the paper (or the reviewer) claims or asks.
    pub claim: String,
    /// One or two sentences stating what our result shows, including "no effect" or a contradiction.
    pub finding: String,
    /// "holds", "partly", "does not hold", or "n/a" (for questions, not claims).
    pub verdict: String,
    /// Tables of results.
    pub tables: Vec<Table>,
    /// Relative paths of plots / image grids under the results dir.
    pub images: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Helpers (added by nrf-report; they do not change the file format).
// ---------------------------------------------------------------------------------------------

/// Whether two ε values are the same threat-model budget (relative tolerance 1e-6).
pub fn eps_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Whether two norm names denote the same norm ("L2" = "l2", "Linf" = "linf" = "L∞").
pub fn norm_eq(a: &str, b: &str) -> bool {
    fn canon(s: &str) -> String {
        s.trim().to_ascii_lowercase().replace('∞', "inf")
    }
    canon(a) == canon(b)
}

/// The threat model of the headline robust-accuracy number.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// "L2" or "Linf".
    pub norm: String,
    /// Perturbation budget.
    pub eps: f64,
    /// Where the value came from, e.g. "run.json headline_eps".
    pub source: String,
}

fn config_value<'a>(config: &'a toml::Value, table: &str, key: &str) -> Option<&'a toml::Value> {
    config.get(table)?.get(key)
}

fn check_unit(what: &str, v: f64) -> Result<()> {
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        bail!("{what} = {v} is not a fraction in [0, 1]");
    }
    Ok(())
}

fn check_nonneg(what: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        bail!("{what} = {v} is not a finite non-negative number");
    }
    Ok(())
}

impl RunInfo {
    /// The preset text parsed as TOML (None when empty or not valid TOML).
    pub fn config(&self) -> Option<toml::Value> {
        if self.config_toml.trim().is_empty() {
            return None;
        }
        toml::from_str(&self.config_toml).ok()
    }

    /// The headline threat model: `headline_eps` from run.json, else `[eval] headline_eps` of the
    /// preset text. The norm is `[eval] headline_norm` of the preset, else "L2" (the paper's
    /// Figure 2 uses ℓ2). None when neither source gives an ε.
    pub fn resolved_headline(&self) -> Option<Headline> {
        let config = self.config();
        let norm = config
            .as_ref()
            .and_then(|c| config_value(c, "eval", "headline_norm"))
            .and_then(|v| v.as_str())
            .unwrap_or("L2")
            .to_string();
        if let Some(eps) = self.headline_eps.filter(|e| e.is_finite() && *e >= 0.0) {
            return Some(Headline {
                norm,
                eps,
                source: "run.json headline_eps".into(),
            });
        }
        let v = config_value(config.as_ref()?, "eval", "headline_eps")?;
        let eps = v.as_float().or_else(|| v.as_integer().map(|i| i as f64))?;
        (eps.is_finite() && eps >= 0.0).then(|| Headline {
            norm,
            eps,
            source: "preset [eval] headline_eps".into(),
        })
    }

    /// Number of classes and where it came from: `num_classes` from run.json, else
    /// `[data] num_classes` of the preset, else 10 (Fashion-MNIST and CIFAR-10 both have 10).
    pub fn resolved_num_classes(&self) -> (usize, &'static str) {
        if let Some(n) = self.num_classes.filter(|n| *n >= 2) {
            return (n, "run.json num_classes");
        }
        let from_config = self
            .config()
            .as_ref()
            .and_then(|c| config_value(c, "data", "num_classes"))
            .and_then(|v| v.as_integer())
            .filter(|n| *n >= 2);
        match from_config {
            Some(n) => (n as usize, "preset [data] num_classes"),
            None => (10, "assumed (run.json has no num_classes)"),
        }
    }

    /// Checks values a report relies on (finite, non-negative wall times).
    pub fn validate(&self) -> Result<()> {
        check_nonneg("total_wall_s", self.total_wall_s)?;
        for (i, s) in self.stages.iter().enumerate() {
            check_nonneg(&format!("stages[{i}] ({}).wall_s", s.name), s.wall_s)?;
        }
        if let Some(e) = self.headline_eps {
            check_nonneg("headline_eps", e)?;
        }
        Ok(())
    }
}

impl ModelResult {
    /// The robust-accuracy point at (`norm`, `eps`), if measured.
    pub fn robust_at(&self, norm: &str, eps: f64) -> Option<&RobustPoint> {
        self.robust
            .iter()
            .find(|p| norm_eq(&p.norm, norm) && eps_eq(p.eps, eps))
    }

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
    fn seed_values_robust(&self, norm: &str, eps: f64) -> Option<Vec<f64>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_and_classes_resolution() {
        let mut run = RunInfo::default();
        assert_eq!(run.resolved_headline(), None);
        assert_eq!(run.resolved_num_classes().0, 10);
        run.config_toml =
            "[eval]\nheadline_eps = 0.25\nheadline_norm = \"Linf\"\n[data]\nnum_classes = 9\n"
                .into();
        let h = run.resolved_headline().unwrap();
        assert_eq!((h.norm.as_str(), h.eps), ("Linf", 0.25));
        assert!(h.source.contains("preset"));
        assert_eq!(run.resolved_num_classes(), (9, "preset [data] num_classes"));
        run.headline_eps = Some(0.5);
        run.num_classes = Some(10);
        assert_eq!(run.resolved_headline().unwrap().eps, 0.5);
        assert_eq!(run.resolved_num_classes().0, 10);
        // Integer eps in the preset, and an unparsable preset.
        run.headline_eps = None;
        run.config_toml = "[eval]\nheadline_eps = 1\n".into();
        assert_eq!(run.resolved_headline().unwrap().eps, 1.0);
        run.config_toml = "not toml [".into();
        assert_eq!(run.resolved_headline(), None);
    }

    #[test]
    fn old_run_json_without_new_fields_parses() {
        let mut v = serde_json::to_value(RunInfo::default()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("headline_eps");
        o.remove("num_classes");
        o.remove("missing");
        let run: RunInfo = serde_json::from_value(v).unwrap();
        assert_eq!(run.headline_eps, None);
    }

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
        assert_eq!(m.train_acc(), Some((0.9, true)));
        assert!((m.gap().unwrap() - 0.4).abs() < 1e-12);
        m.final_train_acc = Some(0.95);
        assert_eq!(m.train_acc(), Some((0.95, false)));
    }

    fn seeded_model(accs: &[(f64, f64)]) -> ModelResult {
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

    #[test]
    fn roles_are_written_and_old_files_get_theirs_from_the_name() {
        let mut m = seeded_model(&[(0.78, 0.49)]);
        m.name = "es_on_D_det_eps4".into();
        m.role = ModelRole::Extra {
            set: ModelKind::DDet,
            varies: Varies::Eps,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["role"],
            serde_json::json!({"extra": {"set": "d_det", "varies": "eps"}})
        );
        let back: ModelResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        // The recorded role wins over the name, both ways.
        for (name, role, json) in [
            (
                "on_D_R",
                ModelRole::Extra {
                    set: ModelKind::DR,
                    varies: Varies::Distance,
                },
                serde_json::json!({"extra": {"set": "d_r", "varies": "distance"}}),
            ),
            (
                "anything",
                ModelRole::Main(ModelKind::DNR),
                serde_json::json!({"main": "d_nr"}),
            ),
            (
                "det_far",
                ModelRole::Variant(ModelKind::DDet),
                serde_json::json!({"variant": "d_det"}),
            ),
        ] {
            let mut v = serde_json::to_value(&m).unwrap();
            v["name"] = name.into();
            v["role"] = json;
            let read: ModelResult = serde_json::from_value(v).unwrap();
            assert_eq!(read.role, role, "{name}");
        }
        // A file written before `role` existed: the legacy naming convention, at reading only.
        let old_role = |name: &str| {
            let mut v = serde_json::to_value(&m).unwrap();
            v.as_object_mut().unwrap().remove("role");
            v["name"] = name.into();
            serde_json::from_value::<ModelResult>(v).unwrap().role
        };
        assert_eq!(old_role("on_D_R"), ModelRole::Main(ModelKind::DR));
        assert_eq!(old_role("C_rob"), ModelRole::Main(ModelKind::Rob));
        assert_eq!(old_role("on_control"), ModelRole::Main(ModelKind::Control));
        assert_eq!(old_role("on_D_NR"), ModelRole::Main(ModelKind::DNR));
        assert_eq!(old_role("on_D_rand"), ModelRole::Main(ModelKind::DRand));
        assert_eq!(
            old_role("on_D_det_eps2"),
            ModelRole::Variant(ModelKind::DDet)
        );
        assert_eq!(old_role("on_D_R_noise"), ModelRole::Variant(ModelKind::DR));
        for other in [
            "on_D_",
            "on_D_R~s1",
            "resnet",
            "es_on_D_det_eps4",
            "f3_mlp_on_D_det",
        ] {
            assert_eq!(old_role(other), ModelRole::Other, "{other}");
        }
        // Unknown roles are errors, not silently "other".
        let mut v = serde_json::to_value(&m).unwrap();
        v["role"] = serde_json::json!({"main": "d_x"});
        assert!(serde_json::from_value::<ModelResult>(v).is_err());
    }

    #[test]
    fn norms_and_eps_compare_loosely() {
        assert!(norm_eq("L2", "l2") && norm_eq("Linf", "L∞") && !norm_eq("L2", "Linf"));
        assert!(eps_eq(0.1 + 0.2, 0.3) && !eps_eq(0.25, 0.5));
    }
}

#[cfg(test)]
mod checks_tests {
    use super::*;

    #[test]
    fn eval_checks_flag_what_they_should_and_nothing_else() {
        let ok = EvalChecks {
            norm: "L2".into(),
            eps: 0.5,
            n: 1000,
            pgd_steps: 20,
            pgd_acc: 0.6,
            more_steps: 100,
            more_steps_acc: 0.59,
            ensemble_acc: 0.58,
            unbounded_steps: 100,
            unbounded_acc: 0.0,
            output_spread: 0.0,
            square_queries: 1000,
            square_acc: Some(0.6),
        };
        assert!(ok.flags().is_empty(), "{:?}", ok.flags());
        let bad = EvalChecks {
            more_steps_acc: 0.7,
            unbounded_acc: 0.2,
            output_spread: 0.1,
            ensemble_acc: 0.3,
            square_acc: Some(0.1),
            ..ok.clone()
        };
        let f = bad.flags();
        assert_eq!(f.len(), 5, "{f:?}");
        assert!(f[0].contains("rises with more steps"), "{f:?}");
        assert!(
            f[1].contains("unbounded") && f[2].contains("random"),
            "{f:?}"
        );
        assert!(
            f[3].contains("Square") && f[4].contains("overestimates"),
            "{f:?}"
        );
        // Within noise: a 1-point rise on 1000 images is not flagged.
        let noise = EvalChecks {
            more_steps_acc: 0.61,
            ..ok
        };
        assert!(noise.flags().is_empty(), "{:?}", noise.flags());
    }
}
