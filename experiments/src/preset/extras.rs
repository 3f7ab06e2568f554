//! The `[theory]`, `[extras]` and `[sources]` sections.
use super::validate::{check, positive};
use anyhow::Result;
use nrf_models::Arch;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TheorySection {
    #[serde(default)]
    pub skip: bool,
}

/// The further experiments of `experiments/src/extras`: Figure 3 and the reviewers' questions.
/// Each writes `sections/<id>.json`; each is switched on separately (and all need `enabled`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtrasSection {
    /// Master switch: without it no extra runs.
    #[serde(default)]
    pub enabled: bool,
    /// Figure 3 (section `figure3`): models of each of `figure3_archs` trained on D_det and on
    /// the clean control; transfer of targeted attacks on C_std to the latter.
    #[serde(default)]
    pub figure3: bool,
    /// At least three architectures (Pearson correlation over them).
    #[serde(default)]
    pub figure3_archs: Vec<Arch>,
    /// L2 radius of Figure 3's D_det / D_rand and of its transferred attacks (default:
    /// `relabel.eps`; step size scaled as for `relabel.extra_eps`).
    #[serde(default)]
    pub figure3_eps: Option<f64>,
    /// Images in each of Figure 3's training sets: the first `figure3_n` of Table 1's D_det /
    /// D_rand at `figure3_eps` and of the clean control (default and at most: `relabel.n`).
    /// Smaller keeps the larger architectures affordable; the sets are subsets, not rebuilt.
    #[serde(default)]
    pub figure3_n: Option<usize>,
    /// Seeds of each of Figure 3's own models (default: `[fresh] seeds`): every point is the
    /// mean over its seeds and its uncertainty includes their spread, as Figure 2's. The Figure 2
    /// / Table 1 models Figure 3 reuses keep `[fresh] seeds`.
    #[serde(default)]
    pub figure3_seeds: Option<usize>,
    /// L2 radii of D_rand / D_det for section `eps_sensitivity` (empty = that extra is off).
    #[serde(default)]
    pub eps_sensitivity: Vec<f64>,
    /// Training-set sizes of D_rand / D_det for section `train_size` (empty = that extra is off).
    #[serde(default)]
    pub train_sizes: Vec<usize>,
    /// Section `diversity`: mean pairwise distances of D, D_R, D_NR per class.
    #[serde(default)]
    pub diversity: bool,
    /// At most this many images per class in the pairwise distances (0 = all).
    #[serde(default)]
    pub diversity_max_per_class: usize,
    /// Section `source_vs_target`: is x_r closer to its start x0 or its target x?
    #[serde(default)]
    pub source_vs_target: bool,
    /// Section `overfitting`: train / test accuracy curves and generalisation gaps.
    #[serde(default)]
    pub overfitting: bool,
    /// Section `cosine_ablation`: D_R rebuilt with the other representation distance.
    #[serde(default)]
    pub cosine_ablation: bool,
    /// Section `init_ablation`: fresh models on D_R, D_NR and the clean control with the other
    /// weight initialisation than `model.init` (PyTorch's vs tch's defaults).
    #[serde(default)]
    pub init_ablation: bool,
    /// The independent standard model of `diversity` and `source_vs_target`.
    #[serde(default)]
    pub independent_model: IndependentModel,
    /// Section `d_det_study`: D_det rebuilt with the recipes replications used to make it work
    /// (absent = off).
    #[serde(default)]
    pub d_det_study: Option<DDetStudy>,
}

/// `[extras.d_det_study]`: "D_det: what it takes". Each variant rebuilds D_det from the first
/// `n` images of Table 1's subset, changing one thing of the paper's recipe (and one variant all
/// of them), and trains `seeds` fresh models (the `fresh` settings) on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DDetStudy {
    /// Images per rebuilt D_det (at most `relabel.n`).
    pub n: usize,
    /// Fresh models per variant (default: `[fresh] seeds`).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// A larger standard source model: its architecture ...
    pub source_arch: Arch,
    /// ... and its epochs (the rest as `train_std`).
    pub source_epochs: usize,
    /// A slightly robust source model: `train_rob` at this L2 radius ...
    pub robust_source_eps: f64,
    /// ... for this many epochs.
    pub robust_source_epochs: usize,
    /// The EOT variant's transformations.
    pub eot: nrf_features::targeted::Eot,
    /// The margin-loss variant's steps (step size `relabel.step_size`: more steps, same step).
    pub margin_steps: usize,
    /// The radius of the variant that combines the slightly robust source, the margin loss and
    /// EOT (step size scaled as for `relabel.extra_eps`, `relabel.steps` steps).
    pub combined_eps: f64,
}

impl DDetStudy {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let f = "extras.d_det_study";
        super::validate::arch_sizes(&self.source_arch, &format!("{f}.source_arch"))?;
        check(
            self.n >= 20,
            &format!("{f}.n"),
            format!(
                "{} images are too few to train a model on (at least 20)",
                self.n
            ),
        )?;
        if let Some(s) = self.seeds {
            check(s >= 1, &format!("{f}.seeds"), "must be at least 1".into())?;
        }
        check(
            self.source_epochs >= 1,
            &format!("{f}.source_epochs"),
            "must be at least 1".into(),
        )?;
        check(
            self.robust_source_epochs >= 1,
            &format!("{f}.robust_source_epochs"),
            "must be at least 1".into(),
        )?;
        positive(self.robust_source_eps, &format!("{f}.robust_source_eps"))?;
        positive(self.combined_eps, &format!("{f}.combined_eps"))?;
        check(
            self.margin_steps >= 1,
            &format!("{f}.margin_steps"),
            "must be at least 1".into(),
        )?;
        nrf_features::targeted::TargetedAttack {
            loss: nrf_features::targeted::TargetLoss::CrossEntropy,
            eot: Some(self.eot),
        }
        .validate()
        .map_err(|e| anyhow::anyhow!("preset field `{f}.eot`: {e}"))
    }
}

/// `[sources]`: bring your own model. A model file named here replaces the trained model of
/// that role as the source of the constructions: `c_rob` builds D_R, `c_std` builds D_NR,
/// D_rand and D_det. The file is a TorchScript module, or an nrf checkpoint (a name ending in
/// `.safetensors`, its spec beside it as `.json`: `nrf train --save`, another run's
/// `weights/`), which is an nrf model like a trained one (the paper's FakeReLU applies to it).
/// That model is not trained: its results entry (`models/C_rob.json` / `models/C_std.json`) is
/// the file's model, evaluated as a trained one would be, and recording the file and its
/// SHA-256; the stages that depend on it key on the file's content, so replacing the file
/// recomputes them (and nothing else). Before any stage runs the file is loaded and its
/// accuracy checked on the first few hundred test images (near chance stops the run: usually an
/// input-normalisation mismatch). The options are `nrf construct --model`'s.
///
/// ```toml
/// [sources.c_rob]
/// model = "robust.pt"      # the TorchScript file (a relative path is from the working folder)
/// rep = "method:features"  # g(x): "tuple" (forward returns (logits, g(x)); the default) or
///                          # "method:<name>" (forward returns the logits, <name>(x) g(x))
/// mean = [0.2860]          # per-channel input normalisation applied before the model, when
/// std = [0.3530]           # it does not normalise itself (both or neither; default: neither)
///
/// [sources.c_std]
/// model = "C_std.safetensors"   # an nrf checkpoint: no rep / mean / std (its spec has them)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// In place of the trained standard model C_std (D_NR, D_rand, D_det).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_std: Option<SourceModel>,
    /// In place of the adversarially trained C_rob (D_R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_rob: Option<SourceModel>,
}

/// One source model of [`SourcesSection`]: a TorchScript file or an nrf checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceModel {
    /// The TorchScript file or nrf checkpoint (`<stem>.safetensors`; `nrf construct --model`).
    pub model: PathBuf,
    /// Where g(x) comes from: `"tuple"` (the default) or `"method:<name>"` (`--rep`).
    /// TorchScript only.
    #[serde(default = "default_rep", with = "rep_spelling")]
    pub rep: nrf_models::RepSource,
    /// Per-channel mean / std applied before the model (`--mean` / `--std`; empty: none).
    /// TorchScript only.
    #[serde(default)]
    pub mean: Vec<f64>,
    /// See `mean`.
    #[serde(default)]
    pub std: Vec<f64>,
}

fn default_rep() -> nrf_models::RepSource {
    nrf_models::RepSource::Tuple
}

/// [`nrf_models::RepSource`] as `--rep` spells it (`"tuple"`, `"method:<name>"`).
mod rep_spelling {
    use nrf_models::RepSource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &RepSource, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&r.spelling())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RepSource, D::Error> {
        let s = String::deserialize(d)?;
        RepSource::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl SourcesSection {
    /// No source named: the pipeline trains both, as the paper.
    pub fn is_empty(&self) -> bool {
        self.c_std.is_none() && self.c_rob.is_none()
    }

    /// The named sources: (model name "C_std" / "C_rob", preset field, the source).
    pub fn named(&self) -> Vec<(&'static str, &'static str, &SourceModel)> {
        [
            ("C_std", "sources.c_std", &self.c_std),
            ("C_rob", "sources.c_rob", &self.c_rob),
        ]
        .into_iter()
        .filter_map(|(name, field, s)| s.as_ref().map(|s| (name, field, s)))
        .collect()
    }

    /// The named source of model `name` ("C_std" / "C_rob"), if any.
    pub fn of(&self, name: &str) -> Option<&SourceModel> {
        match name {
            "C_std" => self.c_std.as_ref(),
            "C_rob" => self.c_rob.as_ref(),
            _ => None,
        }
    }

    /// Checks the values (the files themselves are read when a run starts); errors name the
    /// field.
    pub fn validate(&self) -> Result<()> {
        for (_, f, s) in self.named() {
            check(
                !s.model.as_os_str().is_empty(),
                &format!("{f}.model"),
                "must name a TorchScript file or an nrf checkpoint".into(),
            )?;
            if nrf_models::ModelFormat::of(&s.model) == nrf_models::ModelFormat::Checkpoint {
                check(
                    s.rep == default_rep() && s.mean.is_empty() && s.std.is_empty(),
                    &format!("{f}.rep / {f}.mean / {f}.std"),
                    format!(
                        "{} is an nrf checkpoint, which brings its own representation and \
                         normalisation (its spec): leave these out",
                        s.model.display()
                    ),
                )?;
            }
            check(
                s.mean.len() == s.std.len(),
                &format!("{f}.mean / {f}.std"),
                format!(
                    "give both (one value per image channel) or neither: mean has {} values, std \
                     {}",
                    s.mean.len(),
                    s.std.len()
                ),
            )?;
            for &v in &s.mean {
                check(
                    v.is_finite(),
                    &format!("{f}.mean"),
                    format!("must be finite, got {:?}", s.mean),
                )?;
            }
            for &v in &s.std {
                check(
                    v > 0.0 && v.is_finite(),
                    &format!("{f}.std"),
                    format!("must be positive and finite, got {:?}", s.std),
                )?;
            }
        }
        Ok(())
    }
}

/// Which model plays the independent standard model in the extras.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndependentModel {
    /// The fresh model on the clean control subset (already trained, so free; but it was
    /// trained on the target images of D_R / D_NR).
    #[default]
    #[serde(rename = "on_control")]
    OnControl,
    /// An extra fresh model (`fresh` settings) on as many held-out training images as the
    /// control, none of them a target or start image of D_R / D_NR.
    #[serde(rename = "C_indep")]
    CIndep,
}

impl ExtrasSection {
    /// Checks the extras' values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.figure3 {
            check(
                self.figure3_archs.len() >= 3,
                "extras.figure3_archs",
                format!(
                    "figure3 needs at least 3 architectures (a correlation over them), got {}",
                    self.figure3_archs.len()
                ),
            )?;
        }
        for (i, a) in self.figure3_archs.iter().enumerate() {
            super::validate::arch_sizes(a, "extras.figure3_archs")?;
            check(
                !self.figure3_archs[..i].contains(a),
                "extras.figure3_archs",
                format!("{} is listed twice", a.label()),
            )?;
        }
        for (i, &n) in self.train_sizes.iter().enumerate() {
            check(
                n >= 20,
                "extras.train_sizes",
                format!("{n} images are too few to train a model on (at least 20)"),
            )?;
            check(
                !self.train_sizes[..i].contains(&n),
                "extras.train_sizes",
                format!("{n} is listed twice"),
            )?;
        }
        if let Some(eps) = self.figure3_eps {
            positive(eps, "extras.figure3_eps")?;
        }
        if let Some(s) = self.figure3_seeds {
            check(
                s >= 1,
                "extras.figure3_seeds",
                format!("must be at least 1, got {s}"),
            )?;
        }
        if let Some(n) = self.figure3_n {
            check(
                n >= 20,
                "extras.figure3_n",
                format!("{n} images are too few to train a model on (at least 20)"),
            )?;
        }
        for (i, v) in self.eps_sensitivity.iter().enumerate() {
            positive(*v, "extras.eps_sensitivity")?;
            check(
                !self.eps_sensitivity[..i].contains(v),
                "extras.eps_sensitivity",
                format!("{v} is listed twice"),
            )?;
        }
        if let Some(d) = &self.d_det_study {
            d.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
