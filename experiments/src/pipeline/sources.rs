//! Source models brought by the preset (`[sources]`): TorchScript files or nrf checkpoints in
//! place of the trained C_std / C_rob.
use super::{Ctx, EvalLevel, ModelJob, TrainingSet};
use crate::construct_cmd::{LoadedModel, ModelFormat};
use crate::preset::{Preset, TrainSection};
use anyhow::{bail, Context, Result};
use nrf_models::{Classifier, RepRelu};
use nrf_results::{ModelResult, ModelRole};
use std::rc::Rc;
use tch::Tensor;

/// A source model named in the preset's `[sources]`: a TorchScript file or an nrf checkpoint
/// that stands for C_std or C_rob (it is not trained; see [`crate::preset::SourcesSection`]).
pub struct ExternalSource {
    /// The model it stands for: "C_std" or "C_rob".
    pub name: &'static str,
    /// Its preset field, e.g. "sources.c_rob".
    pub field: &'static str,
    /// The file and how to feed it.
    pub model: crate::construct_cmd::ExternalModel,
    /// SHA-256 (hex) of the file (a checkpoint's weights).
    pub sha256: String,
    /// What the stages that use the model key on, in place of a training stage's key: a hash
    /// of the file's SHA-256, its representation source and its normalisation (a checkpoint's:
    /// of its weights and spec), and the master seed.
    pub key: String,
    /// Its accuracy check on the first test images.
    pub check: crate::construct_cmd::ModelCheck,
    pub(super) classifier: Rc<LoadedModel>,
}

impl ExternalSource {
    /// Where the model came from, as results and metadata record it.
    pub fn provenance(&self) -> serde_json::Value {
        // As the preset gives it, and absolute (a relative path is from the run's folder).
        let absolute =
            std::fs::canonicalize(&self.model.path).unwrap_or_else(|_| self.model.path.clone());
        let mut v = self.model.provenance();
        let file_key = match self.model.format() {
            ModelFormat::TorchScript => "torchscript_absolute",
            ModelFormat::Checkpoint => "checkpoint_absolute",
        };
        v[file_key] = absolute.display().to_string().into();
        v["sha256"] = self.sha256.clone().into();
        v["field"] = self.field.into();
        v["check_accuracy"] = self.check.acc.into();
        v["check_n"] = self.check.n.into();
        v
    }
}

/// A shared [`ExternalSource`] model as a [`Classifier`] of its own.
struct SharedSource(Rc<LoadedModel>);

impl Classifier for SharedSource {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        self.0.forward_rep(x, train)
    }
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        self.0.forward_rep_with(x, train, relu)
    }
    fn has_fake_relu(&self) -> bool {
        self.0.has_fake_relu()
    }
    fn num_classes(&self) -> i64 {
        self.0.num_classes()
    }
    fn replica(&self) -> Option<Box<dyn Classifier + Send>> {
        self.0.replica()
    }
}

/// A named source model's file, before it is loaded: (model name, preset field, the file and
/// how to feed it, its SHA-256 and its content's fingerprint, [`ExternalModel::hashes`]).
///
/// [`ExternalModel::hashes`]: crate::construct_cmd::ExternalModel::hashes
type SourceFile = (
    &'static str,
    &'static str,
    crate::construct_cmd::ExternalModel,
    (String, String),
);

/// The files of the preset's `[sources]`, each with its SHA-256: a missing or unreadable file
/// is an error naming the field and the path (before the data are read).
pub(super) fn source_files(preset: &Preset) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for (name, field, s) in preset.sources.named() {
        let path = &s.model;
        let model = crate::construct_cmd::ExternalModel {
            path: path.clone(),
            rep: s.rep.clone(),
            mean: s.mean.clone(),
            std: s.std.clone(),
        };
        let noun = model.format().noun();
        for file in model.files() {
            if !file.is_file() {
                bail!(
                    "preset field `{field}.model`: {}: no such file (of the {noun} that stands \
                     for {name})",
                    file.display()
                );
            }
        }
        let hashes = model
            .hashes()
            .with_context(|| format!("preset field `{field}.model`"))?;
        out.push((name, field, model, hashes));
    }
    Ok(out)
}

impl Ctx {
    /// The source model the preset names (`[sources]`) for model `name`, if any.
    pub fn external(&self, name: &str) -> Option<&ExternalSource> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Model `name` as a classifier: the model file the preset names for it (`[sources]`),
    /// else the weights saved by [`Ctx::model_stage`].
    pub fn load_classifier(&self, name: &str) -> Result<Box<dyn Classifier>> {
        Ok(match self.external(name) {
            Some(s) => Box::new(SharedSource(s.classifier.clone())),
            None => Box::new(self.load_weights(name)?),
        })
    }

    /// SHA-256 of model `name`'s file (its TorchScript file or checkpoint, or its saved
    /// weights), for the metadata of what is built from it; and, for a model the preset names
    /// (`[sources]`), its provenance ([`ExternalSource::provenance`]).
    pub fn source_file(&self, name: &str) -> Result<(String, Option<serde_json::Value>)> {
        Ok(match self.external(name) {
            Some(s) => (s.sha256.clone(), Some(s.provenance())),
            None => (
                nrf_data::store::sha256_file(self.path(&format!("weights/{name}.safetensors")))?,
                None,
            ),
        })
    }

    /// The key that the stages built on model `name` use: its `[sources]` model's key
    /// ([`ExternalSource::key`]), else its training stage's key if that stage has completed with
    /// `section` on the whole training set (see [`Ctx::trained_key`]).
    pub fn source_key(&self, name: &str, section: &TrainSection) -> Option<String> {
        match self.external(name) {
            Some(s) => Some(s.key.clone()),
            None => {
                let set = TrainingSet {
                    name: "D",
                    data: &self.train,
                    key: &self.data_key,
                };
                // The role does not enter the training key (it decides seeds and evaluation).
                let job = ModelJob::new(&self.preset, name, ModelRole::Other, set, section);
                self.trained_key(&job)
            }
        }
    }

    /// The results entry of the model file that stands for `name` (`[sources]`), of role
    /// `role`: not trained; evaluated as a trained model is (stages `eval:<name>` and, with an
    /// `[eval] ensemble`, `ensemble:<name>`, keyed on [`ExternalSource::key`]), and written to
    /// `models/<name>.json` with its provenance under `source`. Returns the result and the key.
    pub fn external_model_stage(
        &mut self,
        name: &str,
        role: ModelRole,
    ) -> Result<(ModelResult, String)> {
        let Some(s) = self.external(name) else {
            bail!("{name}: no model file in the preset's [sources]");
        };
        let (key, model, provenance) = (s.key.clone(), s.model.clone(), s.provenance());
        let arch = match s.classifier.as_ref() {
            LoadedModel::Checkpoint(m) => format!(
                "nrf checkpoint {}, {}",
                model.path.display(),
                m.spec.arch.label()
            ),
            LoadedModel::TorchScript(_) => format!("TorchScript {}", model.path.display()),
        };
        let mut result = ModelResult {
            name: name.into(),
            role,
            arch,
            trained_on: "external".into(),
            train_size: 0,
            adversarial: None,
            epochs: Vec::new(),
            curve_n: None,
            std_acc: f64::NAN,
            test_size: self.test.len(),
            robust: Vec::new(),
            ensemble: Vec::new(),
            checks: None,
            final_train_acc: None,
            wall_s: 0.0,
            seeds: Vec::new(),
            seed_summary: None,
        };
        if self.cache.mode.defer_eval {
            tracing::info!("{name}: {} (not trained)", model.describe());
            return Ok((result, key));
        }
        // Not trained: the evaluation is its whole wall time.
        self.evaluate_into(&mut result, &key, EvalLevel::Full)?;
        tracing::info!(
            "{name} ({}): test accuracy {:.4}",
            model.describe(),
            result.std_acc
        );
        let mut json = serde_json::to_value(&result)?;
        json["source"] = provenance;
        self.cache
            .write_result(&format!("models/{name}.json"), &json)?;
        Ok((result, key))
    }
}
