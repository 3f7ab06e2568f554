//! The pipeline's machinery: loaded data, stage caching keyed by a hash of each stage's
//! configuration and inputs, model training + evaluation, constructed-dataset stages, and the
//! run record (`run.json`). Every artefact is written atomically; an interrupted run resumes.
mod cache;
mod data;
mod eval;
mod model;
mod sources;

pub use cache::{Opened, Running, StageCache};
pub use data::load_data;
pub use eval::{attack_ensemble, robust_points};
pub use model::{model_spec, ModelJob, StagedModel, TrainedSeed, TrainingSet};
pub use sources::ExternalSource;

pub(crate) use data::dataset_fingerprint;
use sources::source_files;

use crate::construct_cmd::ModelFormat;
use crate::preset::Preset;
use anyhow::{Context, Result};
use nrf_data::Dataset;
use nrf_features::chunks::Shard;
use nrf_models::dataset_to_tensors;
use nrf_results::ModelKind;
use nrf_results::{EpochMetrics, EvalChecks, MachineInfo, ModelRole, RobustPoint, RunInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::{Device, Tensor};

/// The state of one reproduction run.
pub struct Ctx {
    pub preset: Preset,
    pub device: Device,
    pub progress: bool,
    pub train: Dataset,
    pub test: Dataset,
    pub test_x: Tensor,
    pub test_y: Tensor,
    /// The fixed evaluation subset for robust accuracy.
    pub robust_x: Tensor,
    pub robust_y: Tensor,
    /// The fixed test subset of the per-epoch accuracy curves (`eval.curve_n`, in a random
    /// order): a model's curve uses its first [`Ctx::curve_images`].
    pub curve_x: Tensor,
    pub curve_y: Tensor,
    /// Fingerprint of the training and test data: the training key of D, and salted into every
    /// stage key.
    pub data_key: String,
    /// The source models the preset names (`[sources]`): TorchScript files or nrf checkpoints
    /// in place of the trained C_std / C_rob, loaded and checked when the context is made.
    pub sources: Vec<ExternalSource>,
    /// The stage cache, the run record and how this process takes part in the run.
    pub cache: StageCache,
}

/// How a process takes part in a run: the whole run (the default), one shard of every
/// construction and robust evaluation (`--shard k/n`), or training only (evaluations deferred).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// A shard job: stages that are not cached are not run; every construction and robust
    /// evaluation computes only the shard's slice ([`nrf_features::chunks`]); nothing else is
    /// written (no run.json, no stage records, no models/ or data/ files).
    pub shard: Option<Shard>,
    /// Train models but leave their evaluation (and `models/<name>.json`) to a later run, whose
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

/// What [`attack_ensemble`] measured: the output of an `ensemble:<name>` stage, and the
/// ensemble part of `nrf eval`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ensembled {
    /// Robust accuracy under the whole ensemble (worst case per example), with the attacks'
    /// names in `attack`.
    pub point: RobustPoint,
    /// Per attack in order: its description and the robust accuracy after it.
    pub after: Vec<(String, f64)>,
    /// The gradient-masking checks ([`EvalChecks::flags`] says which are raised).
    pub checks: EvalChecks,
    /// Seconds.
    pub wall_s: f64,
}

/// The seed name of the fixed random test subset on which robust accuracy is measured
/// ([`Ctx::robust_x`]; `nrf eval` measures an external model on the same images).
pub const EVAL_SUBSET: &str = "eval-subset";

/// A fixed random subset of `k` of the test images `test_x` / `test_y` (all of them, in a random
/// order, when `k` is at least their number), drawn with the preset's seed for `stage`.
pub fn test_subset(
    preset: &Preset,
    test_x: &Tensor,
    test_y: &Tensor,
    k: usize,
    stage: &str,
) -> Result<(Tensor, Tensor)> {
    let n = test_y.size()[0] as usize;
    let sub = nrf_data::batch::random_subset(n, k.min(n), preset.stage_seed(stage))?;
    let idx = Tensor::from_slice(&sub.iter().map(|&i| i as i64).collect::<Vec<_>>())
        .to_device(test_x.device());
    Ok((test_x.index_select(0, &idx), test_y.index_select(0, &idx)))
}

/// SHA-256 (hex, 16 chars) of the JSON of `v`.
///
/// # Panics
///
/// When `v` cannot be written as JSON (a map with non-string keys): a programming error, which
/// must not become the key of every such stage (the empty input's).
pub fn hash_key(v: &impl Serialize) -> String {
    let json = serde_json::to_vec(v).expect("a stage key's inputs are plain data");
    hex::encode(&Sha256::digest(&json)[..8])
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

pub(crate) fn now() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix:{s}")
}

/// Warns, once per invocation (not in each worker), when `model.precision` asks for bfloat16 on
/// a CPU without bfloat16 arithmetic: libtorch then emulates it, slower than f32.
pub(crate) fn warn_if_precision_emulated(preset: &Preset) {
    if !preset.model.precision.is_f32()
        && !tch::Cuda::is_available()
        && nrf_models::runtime::cpu_has_bf16() == Some(false)
    {
        tracing::warn!(
            "model.precision = {}: this CPU has no bfloat16 arithmetic (no avx512_bf16 or \
             amx_bf16 in /proc/cpuinfo), so libtorch emulates it, slower than f32",
            preset.model.precision.label()
        );
    }
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
        for (name, field, model, (sha256, fingerprint)) in files {
            let how = format!("as `{field}.mean` / `{field}.std`");
            let (classifier, check) =
                crate::construct_cmd::load_checked_with(&model, &test, device, &how)
                    .with_context(|| format!("preset field `{field}` ({name})"))?;
            tracing::info!(
                "{name}: {} (sha256 {sha256}), accuracy {:.1}% on the first {} test images \
                 (chance {:.1}%)",
                model.describe(),
                100.0 * check.acc,
                check.n,
                100.0 * check.chance
            );
            // The master seed too: the evaluation subset and the attacks' starts of the stages
            // keyed on it derive from it (a trained model's key has it through its training
            // seed), so another `seed` evaluates the file again instead of reusing seed 0's.
            let key = match model.format() {
                ModelFormat::TorchScript => hash_key(&(
                    "torchscript",
                    &sha256,
                    model.rep.spelling(),
                    &model.mean,
                    &model.std,
                    preset.seed,
                )),
                // Weights and spec (the architecture, its normalisation) together.
                ModelFormat::Checkpoint => hash_key(&("checkpoint", &fingerprint, preset.seed)),
            };
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
        let subset = |k: usize, stage: &str| test_subset(&preset, &test_x, &test_y, k, stage);
        let (robust_x, robust_y) = subset(preset.eval.robust_n, EVAL_SUBSET)?;
        // In a random order even when it is the whole test set (`curve_n = 0`): a model trained
        // on few images measures the first images of it (`EvalSection::curve_images`), which
        // must not be the first classes of a test set stored class by class.
        let (curve_x, curve_y) = subset(preset.eval.curve_subset(test.len()), "curve-subset")?;
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
        let overrides = preset.overrides.clone();
        let cache = StageCache::new(results, data_key.clone(), mode, run, overrides);
        let ctx = Ctx {
            preset,
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
            sources,
            cache,
        };
        // run.json is written with the first stage's record (see [`StageCache::open`]), not here: a
        // run that fails before any stage leaves the folder's run.json as it was.
        Ok(ctx)
    }

    /// A path under the results directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.cache.path(rel)
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
    use nrf_results::ModelKind as K;
    use nrf_results::{ModelRole, Varies};

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
