//! The pipeline's machinery: loaded data, stage caching keyed by a hash of each stage's
//! configuration and inputs, model training + evaluation, constructed-dataset stages, and the
//! run record (`run.json`). Every artefact is written atomically; an interrupted run resumes.
use crate::preset::{DatasetName, EnsembleSection, EvalSection, Preset, TrainSection};
use crate::records;
use anyhow::{bail, Context, Result};
use nrf_attacks::{ensemble_evaluation, evaluate_grid, AdvTraining, EnsembleAttack, PgdConfig, L2};
use nrf_data::store::write_json_atomic;
use nrf_data::{Dataset, Split};
use nrf_features::chunks::{self, Shard, SliceWritten};
use nrf_models::{dataset_to_tensors, load_model, save_model, Classifier, Model, ModelSpec};
use nrf_report::results::{
    ConstructedInfo, EpochMetrics, EvalChecks, MachineInfo, ModelResult, ModelRole, RobustPoint,
    RunInfo, SeedRun, StageInfo, StageStatus,
};
use nrf_report::ModelKind;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;
use tch::{Device, Tensor};

/// The results' robust points of a grid evaluation (after its gradient-masking warnings).
fn robust_points(evals: Vec<nrf_attacks::RobustEval>) -> Vec<RobustPoint> {
    for w in nrf_attacks::sanity_check(&evals) {
        tracing::warn!("gradient-masking check: {w}");
    }
    evals
        .into_iter()
        .map(|r| RobustPoint {
            norm: r.norm,
            eps: r.eps,
            acc: r.acc,
            steps: r.steps,
            n: r.n,
            attack: None,
        })
        .collect()
}

/// The state of one reproduction run.
pub struct Ctx {
    pub preset: Preset,
    pub results: PathBuf,
    pub device: Device,
    pub progress: bool,
    pub train: Dataset,
    pub test: Dataset,
    pub test_x: Tensor,
    pub test_y: Tensor,
    /// The fixed evaluation subset for robust accuracy.
    pub robust_x: Tensor,
    pub robust_y: Tensor,
    /// The fixed test subset of the per-epoch accuracy curves (`eval.curve_n`).
    pub curve_x: Tensor,
    pub curve_y: Tensor,
    /// Fingerprint of the training set (part of every cache key).
    pub data_key: String,
    pub run: RunInfo,
    /// How this process takes part in the run ([`Mode`]).
    pub mode: Mode,
    /// The source models the preset names (`[sources]`): TorchScript files in place of the
    /// trained C_std / C_rob, loaded and checked when the context is made.
    pub sources: Vec<ExternalSource>,
    started: Instant,
    /// The files the running stages write, for their records ([`records`]).
    outputs: records::Outputs,
}

/// A source model named in the preset's `[sources]`: a TorchScript file that stands for C_std
/// or C_rob (it is not trained; see [`crate::preset::SourcesSection`]).
pub struct ExternalSource {
    /// The model it stands for: "C_std" or "C_rob".
    pub name: &'static str,
    /// Its preset field, e.g. "sources.c_rob".
    pub field: &'static str,
    /// The file and how to feed it.
    pub model: crate::construct_cmd::ExternalModel,
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    /// What the stages that use the model key on, in place of a training stage's key: a hash
    /// of the file's SHA-256, its representation source and its normalisation.
    pub key: String,
    /// Its accuracy check on the first test images.
    pub check: crate::construct_cmd::ModelCheck,
    classifier: Rc<nrf_models::TorchScriptClassifier>,
}

impl ExternalSource {
    /// Where the model came from, as results and metadata record it.
    pub fn provenance(&self) -> serde_json::Value {
        // As the preset gives it, and absolute (a relative path is from the run's folder).
        let absolute =
            std::fs::canonicalize(&self.model.path).unwrap_or_else(|_| self.model.path.clone());
        serde_json::json!({
            "torchscript": self.model.path.display().to_string(),
            "torchscript_absolute": absolute.display().to_string(),
            "sha256": self.sha256,
            "field": self.field,
            "representation": self.model.rep.spelling(),
            "mean": self.model.mean,
            "std": self.model.std,
            "check_accuracy": self.check.acc,
            "check_n": self.check.n,
        })
    }
}

/// A shared [`ExternalSource`] model as a [`Classifier`] of its own.
struct SharedSource(Rc<nrf_models::TorchScriptClassifier>);

impl Classifier for SharedSource {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        self.0.forward_rep(x, train)
    }
    fn num_classes(&self) -> i64 {
        self.0.num_classes()
    }
}

/// A named source model's file, before it is loaded: (model name, preset field, the file and
/// how to feed it, its SHA-256).
type SourceFile = (
    &'static str,
    &'static str,
    crate::construct_cmd::ExternalModel,
    String,
);

/// The files of the preset's `[sources]`, each with its SHA-256: a missing or unreadable file
/// is an error naming the field and the path (before the data are read).
fn source_files(preset: &Preset) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for (name, field, s) in preset.sources.named() {
        let path = &s.model;
        let shown = path.display();
        if !path.is_file() {
            bail!(
                "preset field `{field}.model`: {shown}: no such file (the TorchScript model that \
                 stands for {name})"
            );
        }
        let sha = nrf_data::store::sha256_file(path)
            .with_context(|| format!("preset field `{field}.model`: cannot read {shown}"))?;
        let model = crate::construct_cmd::ExternalModel {
            path: path.clone(),
            rep: s.rep.clone(),
            mean: s.mean.clone(),
            std: s.std.clone(),
        };
        out.push((name, field, model, sha));
    }
    Ok(out)
}

/// How a process takes part in a run: the whole run (the default), one shard of every
/// construction and robust evaluation (`--shard k/n`), or training only (evaluations deferred).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// A shard job: stages that are not cached are not run; every construction and robust
    /// evaluation computes only the shard's slice ([`nrf_features::chunks`]); nothing else is
    /// written (no run.json, no stage records, no models/ or data/ files).
    pub shard: Option<Shard>,
    /// Train models but leave their evaluation (and models/<name>.json) to a later run, whose
    /// robust evaluations a job array can then shard.
    pub defer_eval: bool,
    /// One of the worker processes of a run ([`crate::workers`]): a stage another worker has
    /// claimed is not waited for ([`crate::workers::Deferred`]); run.json is the parent's.
    pub worker: Option<crate::workers::Worker>,
}

/// How much evaluation a model gets in [`Ctx::model_stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalLevel {
    /// Standard accuracy on the whole test set and the preset's robust-accuracy grid.
    Full,
    /// Standard accuracy only (models whose robustness no table reports: it saves the PGD grid).
    Standard,
}

/// Output of a `train:<name>` stage.
#[derive(Serialize, Deserialize)]
struct Trained {
    arch: String,
    train_size: usize,
    adversarial: Option<String>,
    epochs: Vec<EpochMetrics>,
    final_train_acc: f64,
    wall_s: f64,
}

/// Output of an `eval:<name>` stage.
#[derive(Serialize, Deserialize)]
struct Evaluated {
    std_acc: f64,
    robust: Vec<RobustPoint>,
    wall_s: f64,
}

/// Output of an `ensemble:<name>` stage.
#[derive(Serialize, Deserialize)]
struct Ensembled {
    point: RobustPoint,
    /// Per attack in order: its description and the robust accuracy after it.
    after: Vec<(String, f64)>,
    checks: EvalChecks,
    wall_s: f64,
}

/// SHA-256 (hex, 16 chars) of the JSON of `v`.
pub fn hash_key(v: &impl Serialize) -> String {
    let json = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

fn dataset_fingerprint(d: &Dataset) -> String {
    let mut h = Sha256::new();
    h.update(d.name.as_bytes());
    for v in &d.images {
        h.update(v.to_le_bytes());
    }
    for l in &d.labels {
        h.update(l.to_le_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Loads the preset's dataset (`data_dir` overrides the preset's directory).
pub fn load_data(p: &Preset, data_dir: Option<&Path>) -> Result<(Dataset, Dataset)> {
    let dir: PathBuf = match (data_dir, &p.data.dir) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!(
            "preset {}: dataset {} needs --data-dir (no data.dir in the preset)",
            p.name,
            p.data.dataset
        ),
    };
    let load = |split| -> Result<Dataset> {
        Ok(match p.data.dataset {
            DatasetName::FashionMnist => nrf_data::idx::load_fashion_mnist(&dir, split)?,
            DatasetName::Mnist => nrf_data::idx::load_mnist(&dir, split)?,
            DatasetName::Cifar10 => nrf_data::cifar::load_cifar10(&dir, split)?,
            DatasetName::RestrictedImagenet => {
                let size = p.data.image_size.unwrap_or(224);
                nrf_data::folder::load_restricted_imagenet(&dir, split, size, p.data.max_per_class)?
            }
        })
    };
    // The install hint only when files are missing (not for a damaged or unreadable file).
    let hint = |e: &anyhow::Error| {
        let missing = e
            .downcast_ref::<nrf_data::DataError>()
            .is_some_and(nrf_data::DataError::is_not_found);
        if missing && p.data.dataset == DatasetName::FashionMnist {
            " (install it with: apt-get install -y dataset-fashion-mnist)"
        } else {
            ""
        }
    };
    let mut train = load(Split::Train).map_err(|e| {
        let context = format!(
            "loading the {} training set from {}{}",
            p.data.dataset,
            dir.display(),
            hint(&e)
        );
        e.context(context)
    })?;
    let mut test = load(Split::Test).map_err(|e| {
        let context = format!(
            "loading the {} test set from {}{}",
            p.data.dataset,
            dir.display(),
            hint(&e)
        );
        e.context(context)
    })?;
    // The two splits must go together, and the model's normalisation must fit the images.
    let (train_src, test_src) = if p.data.dataset == DatasetName::RestrictedImagenet {
        (dir.join("train"), dir.join("val"))
    } else {
        (dir.clone(), dir.clone())
    };
    nrf_data::check_splits(&train, &train_src, &test, &test_src)?;
    p.model
        .check_channels(train.shape[0], &train.name)
        .with_context(|| format!("preset {}", p.name))?;
    if p.data.train_limit > 0 && p.data.train_limit < train.len() {
        train = train.subset(&(0..p.data.train_limit).collect::<Vec<_>>());
    }
    if p.data.test_limit > 0 && p.data.test_limit < test.len() {
        test = test.subset(&(0..p.data.test_limit).collect::<Vec<_>>());
    }
    Ok((train, test))
}

fn machine_info(device: Device) -> MachineInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    MachineInfo {
        hostname: read("/etc/hostname").trim().to_string(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        cpu,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        torch_threads: tch::get_num_threads() as i64,
        device: match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        },
    }
}

fn now() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix:{s}")
}

impl Ctx {
    /// Loads data, prepares the evaluation tensors and the run record.
    pub fn new(
        preset: Preset,
        preset_text: String,
        results: PathBuf,
        data_dir: Option<&Path>,
        progress: bool,
    ) -> Result<Ctx> {
        Self::with_mode(
            preset,
            preset_text,
            results,
            data_dir,
            progress,
            Mode::default(),
        )
    }

    /// [`Ctx::new`] for a process in `mode` (a shard job writes no run.json).
    pub fn with_mode(
        preset: Preset,
        preset_text: String,
        results: PathBuf,
        data_dir: Option<&Path>,
        progress: bool,
        mode: Mode,
    ) -> Result<Ctx> {
        if preset.threads > 0 {
            tch::set_num_threads(preset.threads);
        }
        let device = Device::cuda_if_available();
        let files = source_files(&preset)?;
        let (train, test) = load_data(&preset, data_dir)?;
        tracing::info!(
            "data: {} train / {} test images of shape {:?} on {:?}",
            train.len(),
            test.len(),
            train.shape,
            device
        );
        // The named source models: loaded and checked on real test images before any stage.
        let mut sources = Vec::new();
        for (name, field, model, sha256) in files {
            let how = format!("as `{field}.mean` / `{field}.std`");
            let (classifier, check) =
                crate::construct_cmd::load_checked_with(&model, &test, device, &how)
                    .with_context(|| format!("preset field `{field}` ({name})"))?;
            tracing::info!(
                "{name}: the TorchScript model {} (sha256 {sha256}), accuracy {:.1}% on the \
                 first {} test images (chance {:.1}%)",
                model.path.display(),
                100.0 * check.acc,
                check.n,
                100.0 * check.chance
            );
            let key = hash_key(&(
                "torchscript",
                &sha256,
                model.rep.spelling(),
                &model.mean,
                &model.std,
            ));
            sources.push(ExternalSource {
                name,
                field,
                model,
                sha256,
                key,
                check,
                classifier: Rc::new(classifier),
            });
        }
        let (test_x, test_y) = dataset_to_tensors(&test, device);
        // A fixed random subset of k test images (seeded by `stage`), as tensors.
        let test_subset = |k: usize, stage: &str| -> Result<(Tensor, Tensor)> {
            let sub = nrf_data::batch::random_subset(
                test.len(),
                k.min(test.len()),
                preset.stage_seed(stage),
            )?;
            let idx = Tensor::from_slice(&sub.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device);
            Ok((test_x.index_select(0, &idx), test_y.index_select(0, &idx)))
        };
        let (robust_x, robust_y) = test_subset(preset.eval.robust_n, "eval-subset")?;
        let (curve_x, curve_y) = match preset.eval.curve_n {
            0 => (test_x.shallow_clone(), test_y.shallow_clone()),
            k => test_subset(k, "curve-subset")?,
        };
        let data_key = hash_key(&(dataset_fingerprint(&train), dataset_fingerprint(&test)));
        std::fs::create_dir_all(&results)
            .with_context(|| format!("creating {}", results.display()))?;
        let mut crate_versions = std::collections::BTreeMap::new();
        crate_versions.insert("tch".into(), "0.26.0".into());
        crate_versions.insert(
            "rustc".into(),
            option_env!("NRF_RUSTC_VERSION").unwrap_or("unknown").into(),
        );
        let run = RunInfo {
            preset: preset.name.clone(),
            config_toml: preset_text,
            seed: preset.seed,
            machine: machine_info(device),
            torch_version: option_env!("NRF_TORCH_VERSION").unwrap_or("unknown").into(),
            nrf_version: env!("CARGO_PKG_VERSION").into(),
            crate_versions,
            started: now(),
            headline_eps: Some(preset.eval.headline_eps),
            num_classes: Some(train.num_classes),
            ..RunInfo::default()
        };
        let ctx = Ctx {
            preset,
            results,
            device,
            progress,
            train,
            test,
            test_x,
            test_y,
            robust_x,
            robust_y,
            curve_x,
            curve_y,
            data_key,
            run,
            mode,
            sources,
            started: Instant::now(),
            outputs: records::Outputs::default(),
        };
        // run.json is written with the first stage's record (see [`Ctx::record`]), not here: a
        // run that fails before any stage leaves the folder's run.json as it was.
        Ok(ctx)
    }

    /// A path under the results directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.results.join(rel)
    }

    /// Writes run.json: [`RunInfo`] and `overrides`, the run's `--set KEY=VALUE` strings
    /// ([`Preset::overrides`]; `config_toml` is the preset text with them applied).
    pub fn save_run(&mut self) -> Result<()> {
        if self.mode.shard.is_some() {
            // n shard jobs at once: run.json is the ordinary run's.
            return Ok(());
        }
        if let Some(w) = self.mode.worker {
            // The parent's last pass writes run.json; it marks the stages listed here as done.
            let file = crate::workers::stages_file(&self.results, w);
            let ran: Vec<&StageInfo> = (self.run.stages.iter())
                .filter(|s| s.status == StageStatus::Done)
                .collect();
            return Ok(write_json_atomic(file, &ran)?);
        }
        #[derive(Serialize)]
        struct RunJson<'a> {
            #[serde(flatten)]
            run: &'a RunInfo,
            overrides: &'a [String],
        }
        self.run.total_wall_s = self.started.elapsed().as_secs_f64();
        let record = RunJson {
            run: &self.run,
            overrides: &self.preset.overrides,
        };
        write_json_atomic(self.path("run.json"), &record)?;
        Ok(())
    }

    /// The key of stage `name` for `key_input` and the path of its record.
    fn stage_key(&self, name: &str, key_input: &impl Serialize) -> (String, PathBuf) {
        let key = hash_key(&(name, key_input, &self.data_key));
        let record = self.path(&format!("stages/{}.json", name.replace(':', "_")));
        (key, record)
    }

    /// The cache key of a set of training images (a clean subset of D), for models trained on
    /// it: the same indices always give the same key, so such models are shared across modules.
    pub fn subset_key(&self, indices: &[usize]) -> String {
        hash_key(&(&self.data_key, indices))
    }

    /// The cached output of stage `name` if a completed record with the key of `key_input`
    /// exists (see [`Ctx::stage`]); records nothing and runs nothing.
    pub fn cached<T: DeserializeOwned>(
        &self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Option<(T, f64, String)> {
        let (key, record_path) = self.stage_key(name, key_input);
        // A damaged record, or one whose files are damaged, is not used (a warning names it).
        records::read::<T>(&self.results, &record_path, &key, &self.outputs)
            .map(|rec| (rec.output, rec.wall_s, key))
    }

    /// Runs `f` unless a completed record of stage `name` with the same key exists. `key_input`
    /// must contain everything the stage's output depends on (configuration and input keys).
    /// `f` gets a work directory private to this key (checkpoints, chunks).
    pub fn stage<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
        f: impl FnOnce(&mut Ctx, &Path) -> Result<T>,
    ) -> Result<(T, String)> {
        let (key, record_path) = self.stage_key(name, key_input);
        if let Some(found) = self.cached_stage::<T>(name, key_input)? {
            return Ok(found);
        }
        // A worker computes a stage only while it holds the stage's claim; one that another
        // worker holds is left to it (the job is tried again later).
        let _claim = match self.mode.worker {
            None => None,
            Some(_) => match crate::workers::try_claim(&self.results, name)? {
                None => return Err(crate::workers::Deferred { stage: name.into() }.into()),
                Some(claim) => {
                    // Finished by another worker between the look into the cache and the claim.
                    if let Some(found) = self.cached_stage::<T>(name, key_input)? {
                        return Ok(found);
                    }
                    Some(claim)
                }
            },
        };
        let work = self.work_dir(name, &key);
        if let Some(shard) = self.mode.shard {
            // A shard job computes its slice of the stage (the closure ends in `SliceWritten`)
            // and records nothing: the stage is done when an ordinary run merges the slices.
            if name.starts_with("train:") {
                bail!(
                    "shard {shard}: stage {name} has not run (key {key}); a shard job only \
                     builds slices of constructions and robust evaluations: train first with \
                     `nrf reproduce --only sources` (or `--only train`) on the same preset, \
                     --set values and --results"
                );
            }
            tracing::info!("{name}: shard {shard} ({key})");
            std::fs::create_dir_all(&work)
                .with_context(|| format!("stage {name}: creating {}", work.display()))?;
            return match chunks::with_shard(shard, || f(self, &work)) {
                Err(e) if chunks::is_slice_written(&e) => Err(e),
                Err(e) => Err(e.context(format!("stage {name}, shard {shard}"))),
                Ok(_) => bail!("stage {name} ran whole in shard {shard}: it has no slices"),
            };
        }
        tracing::info!("{name}: running ({key})");
        std::fs::create_dir_all(&work)
            .with_context(|| format!("stage {name}: creating {}", work.display()))?;
        let start = Instant::now();
        self.outputs.begin();
        let result = f(self, &work);
        let files = self.outputs.end();
        match result {
            Ok(output) => {
                let wall_s = start.elapsed().as_secs_f64();
                records::write(
                    &self.results,
                    &record_path,
                    &key,
                    wall_s,
                    &output,
                    &files,
                    &self.outputs,
                )?;
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Done,
                    wall_s,
                    key: key.clone(),
                    message: None,
                })?;
                tracing::info!("{name}: done in {wall_s:.1}s");
                let _ = std::fs::remove_dir_all(&work);
                Ok((output, key))
            }
            // Not a failure: a stage this one needs is another worker's (tried again later).
            Err(e) if crate::workers::is_deferred(&e) => Err(e),
            Err(e) => {
                let wall_s = start.elapsed().as_secs_f64();
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Failed,
                    wall_s,
                    key,
                    message: Some(format!("{e:#}")),
                })?;
                Err(e.context(format!("stage {name}")))
            }
        }
    }

    /// [`Ctx::cached`], recorded in run.json as cached.
    fn cached_stage<T: DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Result<Option<(T, String)>> {
        let Some((output, wall_s, key)) = self.cached::<T>(name, key_input) else {
            return Ok(None);
        };
        if self.mode.worker.is_some() {
            // Workers walk cached stages again and again (see crate::workers).
            tracing::debug!("{name}: cached ({key})");
        } else {
            tracing::info!("{name}: cached ({key})");
        }
        self.record(StageInfo {
            name: name.into(),
            status: StageStatus::Cached,
            wall_s,
            key: key.clone(),
            message: None,
        })?;
        Ok(Some((output, key)))
    }

    /// `items` in the order this process takes them: as they are in an ordinary run, in the
    /// worker's own order in a worker ([`crate::workers::order`]).
    pub fn worker_order<T>(&self, items: Vec<T>) -> Vec<T> {
        crate::workers::order(self.mode.worker, items)
    }

    /// The work folder of stage `name` with key `key`: unfinished work (checkpoints, chunks,
    /// shard slices), removed when the stage completes.
    pub fn work_dir(&self, name: &str, key: &str) -> PathBuf {
        self.path(&format!("work/{}-{key}", name.replace(':', "_")))
    }

    fn record(&mut self, info: StageInfo) -> Result<()> {
        // A stage computed in this run and met again (another module reusing it, a worker's
        // job walked again) stays recorded as done.
        let computed = |s: &StageInfo| {
            s.name == info.name && s.key == info.key && s.status == StageStatus::Done
        };
        if info.status == StageStatus::Cached && self.run.stages.iter().any(computed) {
            return Ok(());
        }
        self.run.stages.retain(|s| s.name != info.name);
        self.run.stages.push(info);
        self.save_run()
    }

    /// Standard accuracy on the whole real test set.
    pub fn standard_accuracy(&self, model: &dyn Classifier) -> f64 {
        nrf_models::accuracy(
            model,
            &self.test_x,
            &self.test_y,
            self.preset.eval.batch_size as i64,
        )
    }

    /// The stage `ensemble:<name>`: robust accuracy of the trained model `name` under the
    /// `[eval] ensemble` at the headline threat model (L2, `headline_eps`) on the evaluation
    /// subset: PGD as in the grid, then every APGD attack of the ensemble on the examples still
    /// robust; and the gradient-masking checks ([`EvalChecks`]: PGD with 5x the steps, an
    /// unbounded attack, two forward passes). Cached on the weights' key and the evaluation
    /// settings.
    fn ensemble_stage(
        &mut self,
        name: &str,
        train_key: &str,
        ens: &EnsembleSection,
    ) -> Result<(Vec<RobustPoint>, Option<EvalChecks>)> {
        let e = self.preset.eval.clone();
        let key = (train_key, "ensemble", &e);
        let stage = format!("ensemble:{name}");
        let (out, _) = self.stage(&stage, &key, |ctx, _| {
            let start = Instant::now();
            tch::manual_seed(ctx.preset.stage_seed(&stage) as i64);
            let model = ctx.load_classifier(name)?;
            let model = model.as_ref();
            let eps = e.headline_eps;
            let threat = L2::new(eps)?;
            let pgd = e.pgd_at(eps);
            let mut attacks = vec![EnsembleAttack::Pgd(pgd)];
            attacks.extend(ens.attacks());
            let r = ensemble_evaluation(
                model,
                &ctx.robust_x,
                &ctx.robust_y,
                &threat,
                &attacks,
                e.batch_size,
            )?;
            // Gradient-masking checks (AutoAttack's spirit): more PGD steps must not raise the
            // robust accuracy, an unbounded attack must reach ~0, the output must not be random.
            let more_steps = 5 * e.steps;
            let mut more = pgd;
            more.steps = more_steps;
            more.step_size =
                nrf_attacks::StepSize::Constant(e.step_factor * eps / more_steps as f64);
            let more_acc = nrf_attacks::robust_evaluation(
                model,
                &ctx.robust_x,
                &ctx.robust_y,
                &threat,
                &more,
                e.batch_size,
                false,
            )?
            .acc;
            let unbounded_steps = 100;
            let unbounded = nrf_attacks::unbounded_attack_accuracy(
                model,
                &ctx.robust_x,
                &ctx.robust_y,
                unbounded_steps,
                e.batch_size,
            )?;
            let output_spread = tch::no_grad(|| {
                let a = model.logits(&ctx.robust_x, false);
                let b = model.logits(&ctx.robust_x, false);
                (a - b).abs().max().double_value(&[])
            });
            // The black-box check: Square alone must not beat the white-box attacks.
            let square_acc = if ens.square_queries > 0 {
                let cfg = nrf_attacks::SquareConfig::new(ens.square_queries);
                let fooled =
                    nrf_attacks::square(model, &ctx.robust_x, &ctx.robust_y, &threat, &cfg)?.fooled;
                Some(
                    1.0 - fooled
                        .to_kind(tch::Kind::Double)
                        .mean(tch::Kind::Double)
                        .double_value(&[]),
                )
            } else {
                None
            };
            let n = ctx.robust_y.size()[0] as usize;
            let checks = EvalChecks {
                square_queries: ens.square_queries,
                square_acc,
                norm: "L2".into(),
                eps,
                n,
                pgd_steps: e.steps,
                pgd_acc: r.after[0].1,
                more_steps,
                more_steps_acc: more_acc,
                ensemble_acc: r.acc,
                unbounded_steps,
                unbounded_acc: unbounded,
                output_spread,
            };
            for f in checks.flags() {
                tracing::warn!("{stage}: {f}");
            }
            let steps: Vec<String> = r
                .after
                .iter()
                .zip(&r.fooled_by)
                .map(|((a, acc), k)| format!("{a}: {acc:.4} ({k} more fooled)"))
                .collect();
            tracing::info!("{stage}: L2 eps {eps}: {}", steps.join(" -> "));
            Ok(Ensembled {
                point: RobustPoint {
                    norm: "L2".into(),
                    eps,
                    acc: r.acc,
                    steps: ens.steps,
                    n: ctx.robust_y.size()[0] as usize,
                    attack: Some(
                        attacks
                            .iter()
                            .map(|a| a.describe())
                            .collect::<Vec<_>>()
                            .join(" + "),
                    ),
                },
                after: r.after,
                checks,
                wall_s: start.elapsed().as_secs_f64(),
            })
        })?;
        Ok((vec![out.point], Some(out.checks)))
    }

    /// Standard accuracy on the whole test set and robust accuracy on the evaluation subset.
    pub fn evaluate(&self, model: &dyn Classifier) -> Result<(f64, Vec<RobustPoint>)> {
        let e = &self.preset.eval;
        let std_acc = self.standard_accuracy(model);
        let grid = e.grid()?;
        let evals = evaluate_grid(
            model,
            &self.robust_x,
            &self.robust_y,
            &grid,
            e.batch_size,
            self.progress,
        )?;
        Ok((std_acc, robust_points(evals)))
    }

    /// The evaluation subset's batches of `[eval] batch_size` (the units of an evaluation's
    /// shard slices).
    fn eval_batches(&self) -> (usize, usize) {
        let n = self.robust_y.size()[0] as usize;
        let bs = self.preset.eval.batch_size.max(1);
        (n, n.div_ceil(bs))
    }

    /// Shard `shard` of [`Ctx::evaluate`]'s robust-accuracy grid: the robust mask of the shard's
    /// batches at every grid point (`[rows, grid points]`, uint8), stored as the shard's slice
    /// in `work`; returns [`SliceWritten`]. A slice already stored is checked and kept.
    fn evaluate_slice(
        &self,
        model: &dyn Classifier,
        work: &Path,
        shard: Shard,
    ) -> Result<SliceWritten> {
        let (n, n_batches) = self.eval_batches();
        if let Some(path) = chunks::check_existing_slice(work, shard, n_batches)? {
            return Ok(SliceWritten {
                shard,
                path,
                computed: 0,
            });
        }
        let e = &self.preset.eval;
        let grid = e.grid()?;
        let batches = shard.range(n_batches);
        let rows = nrf_attacks::batch_rows(n, e.batch_size, batches.clone());
        let masks = nrf_attacks::evaluate_grid_slice(
            model,
            &self.robust_x,
            &self.robust_y,
            &grid,
            e.batch_size,
            batches.clone(),
            self.progress,
        )?;
        let robust = if masks.is_empty() {
            Tensor::zeros([rows.len() as i64, 0], (tch::Kind::Uint8, Device::Cpu))
        } else {
            Tensor::stack(&masks, 1).to_kind(tch::Kind::Uint8)
        };
        let unit_rows: Vec<i64> = batches
            .clone()
            .map(|b| nrf_attacks::batch_rows(n, e.batch_size, b..b + 1).len() as i64)
            .collect();
        let tensors = if rows.is_empty() {
            Vec::new()
        } else {
            vec![("robust".to_string(), robust)]
        };
        let path = chunks::write_slice(
            work,
            shard,
            batches.clone(),
            n_batches,
            &unit_rows,
            batches.len(),
            tensors,
        )?;
        Ok(SliceWritten {
            shard,
            path,
            computed: batches.len(),
        })
    }

    /// [`Ctx::evaluate`], from the shard slices in `work` when there are any (all of them must
    /// be: see [`chunks::merge_slices`]); equal to the whole-set evaluation bit for bit on CPU.
    fn evaluate_or_merge(
        &self,
        model: &dyn Classifier,
        work: &Path,
        what: &str,
    ) -> Result<(f64, Vec<RobustPoint>)> {
        let (n, n_batches) = self.eval_batches();
        let Some(merged) = chunks::merge_slices(work, n_batches, what)? else {
            return self.evaluate(model);
        };
        let grid = self.preset.eval.grid()?;
        let robust = merged.get("robust")?;
        if robust.size() != [n as i64, grid.len() as i64] {
            bail!(
                "{what}: the merged slices hold robust masks of shape {:?}, expected [{n}, {}]",
                robust.size(),
                grid.len()
            );
        }
        tracing::info!("{what}: merged {} shard slices", merged.shards);
        let std_acc = self.standard_accuracy(model);
        let evals = grid
            .iter()
            .enumerate()
            .map(|(g, (threat, cfg))| {
                let count = robust
                    .select(1, g as i64)
                    .to_kind(tch::Kind::Int64)
                    .sum(tch::Kind::Int64)
                    .int64_value(&[]);
                // As the whole-set evaluation: robust rows over rows.
                let acc = if n == 0 { 0.0 } else { count as f64 / n as f64 };
                tracing::info!(
                    norm = threat.name(),
                    eps = threat.eps(),
                    steps = cfg.steps,
                    acc,
                    "robust accuracy"
                );
                nrf_attacks::RobustEval {
                    norm: threat.name().to_string(),
                    eps: threat.eps(),
                    steps: cfg.steps,
                    acc,
                    n,
                }
            })
            .collect();
        Ok((std_acc, robust_points(evals)))
    }

    /// Trains (or resumes, or loads from cache) model `name`, whose role in the experiments is
    /// `role` (recorded in its result; it decides its seeds, [`Ctx::seeds_for`], and whether it
    /// gets the ensemble, [`claims_robustness`]), on `data` and evaluates it at `level`.
    /// Training and evaluation are two cached stages, `train:<name>` and `eval:<name>`:
    /// changing `[eval]` re-evaluates without retraining. The weights go to `weights/<name>`, the
    /// result to `models/<name>.json`. Returns the result and the training stage's key (what
    /// depends on the weights keys on it).
    ///
    /// The fresh models of Figure 2 / Table 1 ([`Ctx::seeds_for`]) are trained with every seed
    /// of `[fresh] seeds`: seed 0 is the model itself (its stages and keys are the same as with
    /// one seed), seed k ≥ 1 the stages `train:<name>~s<k>` / `eval:<name>~s<k>` (weights
    /// `weights/<name>~s<k>`); `models/<name>.json` then carries every seed's numbers. The
    /// returned key is seed 0's, whose weights are what later stages load.
    #[allow(clippy::too_many_arguments)] // the model (name, role), its data (set, data, key), how
    pub fn model_stage(
        &mut self,
        name: &str,
        role: ModelRole,
        trained_on: &str,
        data: &Dataset,
        data_key: &str,
        section: &TrainSection,
        level: EvalLevel,
    ) -> Result<(ModelResult, String)> {
        let seeds = self.seeds_for(role);
        // Seed k's model is `name~s<k>` (seed 0's is `name`); a worker takes them in its order.
        let mut runs: Vec<Option<(ModelResult, String, u64)>> = (0..seeds).map(|_| None).collect();
        for k in self.worker_order((0..seeds).collect()) {
            let seeded = match k {
                0 => name.to_string(),
                k => format!("{name}~s{k}"),
            };
            let run = self.train_eval(&seeded, role, trained_on, data, data_key, section, level)?;
            runs[k] = Some(run);
        }
        let mut runs = runs.into_iter().flatten();
        let (mut result, train_key, seed) = runs.next().expect("seed 0 is trained");
        if self.mode.defer_eval {
            // Training only: models/<name>.json is written by the run that evaluates.
            return Ok((result, train_key));
        }
        if seeds >= 2 {
            let mut all = vec![SeedRun {
                seed: 0,
                train_seed: seed,
                std_acc: result.std_acc,
                robust: result.robust.clone(),
                ensemble: result.ensemble.clone(),
            }];
            for (k, (r, _, s)) in runs.enumerate() {
                all.push(SeedRun {
                    seed: k + 1,
                    train_seed: s,
                    std_acc: r.std_acc,
                    robust: r.robust,
                    ensemble: r.ensemble,
                });
            }
            result.set_seeds(all);
            if let Some(sum) = &result.seed_summary {
                tracing::info!(
                    "{name}: {seeds} seeds, test accuracy {:.4} ± {:.4} (mean ± sd)",
                    sum.std_acc.mean,
                    sum.std_acc.sd
                );
            }
        }
        write_json_atomic(self.path(&format!("models/{name}.json")), &result)?;
        Ok((result, train_key))
    }

    /// The stage `eval:<name>` of the trained model `name` (training key `train_key`) at
    /// `level`: the result and whether it is a full evaluation. Its robust-accuracy grid is
    /// sharded in shard jobs ([`Mode::shard`]) and merged from their slices by the next run.
    fn eval_stage(
        &mut self,
        name: &str,
        train_key: &str,
        level: EvalLevel,
    ) -> Result<(Evaluated, bool)> {
        // A standard-only request is met by a full evaluation of the same weights, so extras
        // that reuse a Figure 2 / Table 1 model never replace its robust numbers.
        let eval_name = format!("eval:{name}");
        // The ensemble is its own stage: adding one to a preset does not redo the PGD grid.
        let eval_cfg = EvalSection {
            ensemble: None,
            ..self.preset.eval.clone()
        };
        let full_key = (train_key, EvalLevel::Full, &eval_cfg);
        let std_key = (train_key, EvalLevel::Standard, eval_cfg.batch_size);
        let reuse = match level {
            EvalLevel::Standard => self.cached::<Evaluated>(&eval_name, &full_key),
            EvalLevel::Full => None,
        };
        // A standard-only request met by a full evaluation keeps the full results, the
        // ensemble's included (its stage is then cached too).
        let full = level == EvalLevel::Full || reuse.is_some();
        let evaluated = match reuse {
            Some((e, _, _)) => {
                tracing::info!("{eval_name}: cached (full evaluation)");
                e
            }
            None => {
                let run = |ctx: &mut Ctx, work: &Path| -> Result<Evaluated> {
                    let start = Instant::now();
                    // PGD's random starts: the same numbers whether or not training ran first.
                    tch::manual_seed(ctx.preset.stage_seed(&format!("eval:{name}")) as i64);
                    let model = ctx.load_classifier(name)?;
                    let model = model.as_ref();
                    let (std_acc, robust) = match (level, ctx.mode.shard) {
                        // A shard job: the shard's slice of the grid, merged by a later run.
                        (EvalLevel::Full, Some(shard)) => {
                            return Err(ctx.evaluate_slice(model, work, shard)?.into())
                        }
                        (EvalLevel::Full, None) => {
                            ctx.evaluate_or_merge(model, work, &format!("eval:{name}"))?
                        }
                        (EvalLevel::Standard, _) => (ctx.standard_accuracy(model), Vec::new()),
                    };
                    Ok(Evaluated {
                        std_acc,
                        robust,
                        wall_s: start.elapsed().as_secs_f64(),
                    })
                };
                match level {
                    EvalLevel::Full => self.stage(&eval_name, &full_key, run)?.0,
                    EvalLevel::Standard => self.stage(&eval_name, &std_key, run)?.0,
                }
            }
        };
        Ok((evaluated, full))
    }

    /// The training key of model `name` (as [`Ctx::model_stage`] trains it on `data` with
    /// `data_key` and `section`) if its training stage has completed; runs nothing.
    pub fn trained_key(
        &self,
        name: &str,
        data: &Dataset,
        data_key: &str,
        section: &TrainSection,
    ) -> Option<String> {
        let spec = self.model_spec(data);
        let seed = self.preset.stage_seed(&format!("train:{name}"));
        let cfg = section.config(seed, self.progress);
        let curve_n = self.preset.eval.curve_n;
        let key_input = (&spec, &cfg, section, data_key, curve_n);
        self.cached::<Trained>(&format!("train:{name}"), &key_input)
            .map(|(_, _, key)| key)
    }

    /// The full evaluation of the trained model `name` (training key `train_key`), as
    /// [`Ctx::model_stage`] runs it; in a shard job its slice (the error [`SliceWritten`]).
    pub fn evaluate_stage(&mut self, name: &str, train_key: &str) -> Result<()> {
        self.eval_stage(name, train_key, EvalLevel::Full)
            .map(|_| ())
    }

    /// How many seeds a model of role `role` is trained with: `[fresh] seeds` for the fresh
    /// models of Figure 2 / Table 1 (`on_D_R`, `on_D_NR`, `on_control`, `on_D_rand`, `on_D_det`
    /// and their variants such as `on_D_det_eps2`: the models the report's Figure 2 / Table 1
    /// tables and verdicts use), 1 for every other model (`C_std`, `C_rob`, and the extras' own
    /// models). Decided by the role, so an extra that reuses a Figure 2 / Table 1 model (under
    /// its name and role) gets (and rewrites) all its seeds.
    pub fn seeds_for(&self, role: ModelRole) -> usize {
        seeds_for(role, self.preset.fresh_seeds())
    }

    /// [`Ctx::model_stage`] for one seed: trains and evaluates `name` (cached stages) without
    /// writing `models/<name>.json`. Returns the result, the training key and the training seed.
    #[allow(clippy::too_many_arguments)] // Ctx::model_stage's arguments
    fn train_eval(
        &mut self,
        name: &str,
        role: ModelRole,
        trained_on: &str,
        data: &Dataset,
        data_key: &str,
        section: &TrainSection,
        level: EvalLevel,
    ) -> Result<(ModelResult, String, u64)> {
        let spec = self.model_spec(data);
        let seed = self.preset.stage_seed(&format!("train:{name}"));
        let cfg = section.config(seed, self.progress);
        let curve_n = self.preset.eval.curve_n;
        let key_input = (&spec, &cfg, section, data_key, curve_n);
        let (trained, train_key) =
            self.stage(&format!("train:{name}"), &key_input, |ctx, work| {
                let start = Instant::now();
                let mut model = Model::new(&spec, ctx.device, seed as i64)?;
                let adv = match &section.attack {
                    Some(a) => {
                        let threat = a.norm.ball(a.eps)?;
                        let pgd = PgdConfig::new(a.steps, a.step_factor * a.eps / a.steps as f64)
                            .with_random_start(a.random_start)
                            .with_use_best(true);
                        Some(AdvTraining::new(threat, pgd)?)
                    }
                    None => None,
                };
                tracing::info!(
                    "training {name} ({}) on {trained_on}: {} images, {} epochs{}",
                    spec.arch.label(),
                    data.len(),
                    cfg.epochs,
                    adv.as_ref()
                        .map(|a| format!(
                            ", adversarial: {}",
                            nrf_models::BatchPerturber::describe(a)
                        ))
                        .unwrap_or_default()
                );
                let perturber = adv.as_ref().map(|a| a as &dyn nrf_models::BatchPerturber);
                let (tx, ty) = (ctx.curve_x.shallow_clone(), ctx.curve_y.shallow_clone());
                let history = nrf_models::train(
                    &mut model,
                    data,
                    &cfg,
                    perturber,
                    Some((&tx, &ty)),
                    Some(&work.join("ckpt")),
                )?;
                ctx.save_weights(&model, name)?;
                let final_train_acc = {
                    let (x, y) = dataset_to_tensors(data, ctx.device);
                    nrf_models::accuracy(&model, &x, &y, ctx.preset.eval.batch_size as i64)
                };
                let train_wall: f64 = history.iter().map(|h| h.wall_s).sum();
                Ok(Trained {
                    arch: spec.arch.label(),
                    train_size: data.len(),
                    adversarial: adv.as_ref().map(nrf_models::BatchPerturber::describe),
                    epochs: history
                        .iter()
                        .map(|h| EpochMetrics {
                            epoch: h.epoch,
                            lr: h.lr,
                            train_loss: h.train_loss,
                            train_acc: h.train_acc,
                            test_acc: h.test_acc,
                            wall_s: h.wall_s,
                        })
                        .collect(),
                    final_train_acc,
                    wall_s: start.elapsed().as_secs_f64().max(train_wall),
                })
            })?;

        if self.mode.defer_eval {
            tracing::info!("{name}: trained; its evaluation is left to a later run");
            let result = ModelResult {
                name: name.into(),
                role,
                arch: trained.arch,
                trained_on: trained_on.into(),
                train_size: trained.train_size,
                adversarial: trained.adversarial,
                epochs: trained.epochs,
                std_acc: f64::NAN,
                test_size: self.test.len(),
                robust: Vec::new(),
                ensemble: Vec::new(),
                checks: None,
                final_train_acc: Some(trained.final_train_acc),
                wall_s: trained.wall_s,
                seeds: Vec::new(),
                seed_summary: None,
            };
            return Ok((result, train_key, seed));
        }
        let (evaluated, full) = self.eval_stage(name, &train_key, level)?;
        let (ensemble, checks) = match (full, self.preset.eval.ensemble.clone()) {
            (true, Some(ens)) if claims_robustness(role) => {
                self.ensemble_stage(name, &train_key, &ens)?
            }
            _ => (Vec::new(), None),
        };
        let result = ModelResult {
            name: name.into(),
            role,
            arch: trained.arch,
            trained_on: trained_on.into(),
            train_size: trained.train_size,
            adversarial: trained.adversarial,
            epochs: trained.epochs,
            std_acc: evaluated.std_acc,
            test_size: self.test.len(),
            robust: evaluated.robust,
            ensemble,
            checks,
            final_train_acc: Some(trained.final_train_acc),
            wall_s: trained.wall_s + evaluated.wall_s,
            seeds: Vec::new(),
            seed_summary: None,
        };
        match result
            .robust
            .iter()
            .find(|r| r.norm == "L2" && r.eps == self.preset.eval.headline_eps)
        {
            Some(r) => tracing::info!(
                "{name}: test accuracy {:.4}, L2 eps {} robust accuracy {:.4}",
                result.std_acc,
                self.preset.eval.headline_eps,
                r.acc
            ),
            None => tracing::info!("{name}: test accuracy {:.4}", result.std_acc),
        }
        Ok((result, train_key, seed))
    }

    /// Trains model `model` (role `role`) with the preset's `fresh` settings on the stored
    /// constructed set `set` (built by the stage with key `set_key`); see [`Ctx::model_stage`].
    pub fn fresh_model(
        &mut self,
        model: &str,
        role: ModelRole,
        set: &str,
        set_key: &str,
        level: EvalLevel,
    ) -> Result<(ModelResult, String)> {
        let ds = self.load_constructed(set)?.dataset;
        let fresh = self.preset.fresh.clone();
        self.model_stage(model, role, set, &ds, set_key, &fresh, level)
    }

    /// The model spec for images shaped like `data`.
    pub fn model_spec(&self, data: &Dataset) -> ModelSpec {
        let [c, h, w] = data.shape;
        let mut spec = ModelSpec::new(
            self.preset.model.arch.clone(),
            [c as i64, h as i64, w as i64],
            data.num_classes as i64,
        )
        .with_init(self.preset.model.init);
        if let (Some(m), Some(s)) = (&self.preset.model.mean, &self.preset.model.std) {
            spec = spec.with_normalization(m.clone(), s.clone());
        }
        spec
    }

    /// Saves the weights of model `name` (`weights/<name>`), noted as an output of the running
    /// stage (its record checks them: see [`records`]).
    pub fn save_weights(&self, model: &Model, name: &str) -> Result<()> {
        let stem = self.path(&format!("weights/{name}"));
        save_model(model, &stem)?;
        let (st, js) = nrf_models::checkpoint::paths(&stem);
        self.outputs.note(st);
        self.outputs.note(js);
        Ok(())
    }

    /// Loads the weights saved by [`Ctx::model_stage`]. A model the preset names in `[sources]`
    /// has none (see [`Ctx::load_classifier`]): an error that says so.
    pub fn load_weights(&self, name: &str) -> Result<Model> {
        if let Some(s) = self.external(name) {
            bail!(
                "{name} is the TorchScript model {} (preset field `{}`), not a model nrf \
                 trained: this step needs nrf's own weights of {name}",
                s.model.path.display(),
                s.field
            );
        }
        let mut m = load_model(&self.path(&format!("weights/{name}")), self.device)?;
        m.vs.freeze();
        Ok(m)
    }

    /// The source model the preset names (`[sources]`) for model `name`, if any.
    pub fn external(&self, name: &str) -> Option<&ExternalSource> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Model `name` as a classifier: the TorchScript model the preset names for it
    /// (`[sources]`), else the weights saved by [`Ctx::model_stage`].
    pub fn load_classifier(&self, name: &str) -> Result<Box<dyn Classifier>> {
        Ok(match self.external(name) {
            Some(s) => Box::new(SharedSource(s.classifier.clone())),
            None => Box::new(self.load_weights(name)?),
        })
    }

    /// SHA-256 of model `name`'s file (its TorchScript file, or its saved weights), for the
    /// metadata of what is built from it; and, for a TorchScript source, its provenance
    /// ([`ExternalSource::provenance`]).
    pub fn source_file(&self, name: &str) -> Result<(String, Option<serde_json::Value>)> {
        Ok(match self.external(name) {
            Some(s) => (s.sha256.clone(), Some(s.provenance())),
            None => (
                nrf_data::store::sha256_file(self.path(&format!("weights/{name}.safetensors")))?,
                None,
            ),
        })
    }

    /// The key that the stages built on model `name` use: its TorchScript source's key
    /// ([`ExternalSource::key`]), else its training stage's key if that stage has completed with
    /// `section` on the whole training set (see [`Ctx::trained_key`]).
    pub fn source_key(&self, name: &str, section: &TrainSection) -> Option<String> {
        match self.external(name) {
            Some(s) => Some(s.key.clone()),
            None => self.trained_key(name, &self.train, &self.data_key, section),
        }
    }

    /// The results entry of the TorchScript model that stands for `name` (`[sources]`), of role
    /// `role`: not trained; evaluated as a trained model is (stages `eval:<name>` and, with an
    /// `[eval] ensemble`, `ensemble:<name>`, keyed on [`ExternalSource::key`]), and written to
    /// `models/<name>.json` with its provenance under `source`. Returns the result and the key.
    pub fn external_model_stage(
        &mut self,
        name: &str,
        role: ModelRole,
    ) -> Result<(ModelResult, String)> {
        let (key, path, provenance) = match self.external(name) {
            Some(s) => (s.key.clone(), s.model.path.clone(), s.provenance()),
            None => bail!("{name}: no TorchScript source in the preset's [sources]"),
        };
        let mut result = ModelResult {
            name: name.into(),
            role,
            arch: format!("TorchScript {}", path.display()),
            trained_on: "external".into(),
            train_size: 0,
            adversarial: None,
            epochs: Vec::new(),
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
        if self.mode.defer_eval {
            tracing::info!(
                "{name}: the TorchScript model {} (not trained)",
                path.display()
            );
            return Ok((result, key));
        }
        let (evaluated, full) = self.eval_stage(name, &key, EvalLevel::Full)?;
        let (ensemble, checks) = match (full, self.preset.eval.ensemble.clone()) {
            (true, Some(ens)) if claims_robustness(role) => {
                self.ensemble_stage(name, &key, &ens)?
            }
            _ => (Vec::new(), None),
        };
        result.std_acc = evaluated.std_acc;
        result.robust = evaluated.robust;
        result.ensemble = ensemble;
        result.checks = checks;
        result.wall_s = evaluated.wall_s;
        tracing::info!(
            "{name} (TorchScript {}): test accuracy {:.4}",
            path.display(),
            result.std_acc
        );
        let mut json = serde_json::to_value(&result)?;
        json["source"] = provenance;
        write_json_atomic(self.path(&format!("models/{name}.json")), &json)?;
        Ok((result, key))
    }

    /// Stores a constructed dataset under `data/<name>` and its summary under `datasets/<name>.json`.
    pub fn store_constructed(
        &self,
        ds: &nrf_data::store::ConstructedDataset,
        info: &ConstructedInfo,
    ) -> Result<()> {
        let (st, js) =
            nrf_data::store::save_constructed(self.path(&format!("data/{}", info.name)), ds)?;
        // The data and its side file are what later stages read (the summary is the report's,
        // and records a wall time: listing it would make the stage record differ between two
        // runs with the same results).
        self.outputs.note(st);
        self.outputs.note(js);
        write_json_atomic(self.path(&format!("datasets/{}.json", info.name)), info)?;
        Ok(())
    }

    /// Loads a constructed dataset stored by [`Ctx::store_constructed`].
    pub fn load_constructed(&self, name: &str) -> Result<nrf_data::store::ConstructedDataset> {
        Ok(nrf_data::store::load_constructed(
            self.path(&format!("data/{name}")),
        )?)
    }

    /// Marks the run finished (or lists what is missing) and writes run.json.
    pub fn finish(&mut self, missing: Vec<String>) -> Result<()> {
        self.run.missing = missing;
        if self.run.missing.is_empty() {
            self.run.finished = Some(now());
        }
        self.save_run()
    }
}

/// How many seeds a model of role `role` is trained with when `[fresh] seeds` is
/// `fresh_seeds` ([`Ctx::seeds_for`]; the planner's rule too): the fresh models of Figure 2 /
/// Table 1 (main models and variants, all but C_std and C_rob) get `fresh_seeds`, every other
/// model one.
pub fn seeds_for(role: ModelRole, fresh_seeds: usize) -> usize {
    match role.paper() {
        Some((ModelKind::Std | ModelKind::Rob, _)) | None => 1,
        Some(_) => fresh_seeds,
    }
}

/// Whether the robustness of a model of role `role` (any of its seeds, `<name>~s<k>`) decides
/// one of the paper's claims: the main models C_std, C_rob and the fresh models on D_R, D_NR and
/// the clean control (Figure 2). Only these get the `[eval] ensemble` and its gradient-masking
/// checks; Table 1's models, the variants and the extras' claims are about test accuracy, so
/// PGD-20 is their robust number.
pub fn claims_robustness(role: ModelRole) -> bool {
    use ModelKind as K;
    matches!(
        role,
        ModelRole::Main(K::Std | K::Rob | K::DR | K::DNR | K::Control)
    )
}

#[cfg(test)]
mod ensemble_scope_tests {
    use super::{claims_robustness, seeds_for};
    use nrf_report::results::{ModelRole, Varies};
    use nrf_report::ModelKind as K;

    #[test]
    fn the_ensemble_runs_on_figure_2s_models_only() {
        for k in [K::Std, K::Rob, K::DR, K::DNR, K::Control] {
            assert!(claims_robustness(ModelRole::Main(k)), "{k:?}");
        }
        for role in [
            ModelRole::Main(K::DDet),
            ModelRole::Main(K::DRand),
            ModelRole::Variant(K::DDet),
            ModelRole::Variant(K::DR),
            ModelRole::Extra {
                set: K::DR,
                varies: Varies::Distance,
            },
            ModelRole::Extra {
                set: K::Std,
                varies: Varies::Architecture,
            },
            ModelRole::Other,
        ] {
            assert!(!claims_robustness(role), "{role:?}");
        }
    }

    #[test]
    fn fresh_seeds_go_to_figure_2_and_table_1s_fresh_models_only() {
        for k in [K::DR, K::DNR, K::Control, K::DRand, K::DDet] {
            assert_eq!(seeds_for(ModelRole::Main(k), 3), 3, "{k:?}");
            assert_eq!(seeds_for(ModelRole::Variant(k), 3), 3, "{k:?}");
            let extra = ModelRole::Extra {
                set: k,
                varies: Varies::Eps,
            };
            assert_eq!(seeds_for(extra, 3), 1, "{k:?}");
        }
        for k in [K::Std, K::Rob] {
            assert_eq!(seeds_for(ModelRole::Main(k), 3), 1, "{k:?}");
        }
        assert_eq!(seeds_for(ModelRole::Other, 3), 1);
    }
}
