//! Model stages: training (cached), then evaluation; fresh models on constructed sets; weights.
use super::{seeds_for, Ctx, EvalLevel, Trained};
use crate::construct_cmd::ModelFormat;
use crate::preset::{ModelSection, Preset, TrainSection};
use anyhow::{bail, Result};
use nrf_data::Dataset;
use nrf_models::{
    dataset_to_tensors, load_model, save_model, Arch, Init, Model, ModelSpec, TrainConfig,
};
use nrf_results::{ModelResult, ModelRole, SeedRun};
use std::path::Path;
use std::time::Instant;

/// The images a model is trained on: the set's name in the results (`D`, `D_R`, `D_control`,
/// ...), the images, and the cache key of what made them (the model's training stage keys on it).
#[derive(Clone, Copy)]
pub struct TrainingSet<'a> {
    pub name: &'a str,
    pub data: &'a Dataset,
    pub key: &'a str,
}

/// One model of the experiments as [`Ctx::model_stage`] trains and evaluates it: its name and
/// role, its `[model]` section (architecture, initialisation, normalisation: the preset's unless
/// the job varies it), the set it is trained on, its training settings and how far it is
/// evaluated. An extra experiment that varies the architecture or the initialisation says so in
/// its job; nothing swaps a field of the preset in and out.
#[derive(Clone)]
pub struct ModelJob<'a> {
    pub name: String,
    pub role: ModelRole,
    pub model: ModelSection,
    pub set: TrainingSet<'a>,
    pub train: &'a TrainSection,
    pub level: EvalLevel,
    /// Seeds to train (None: as the role decides, [`Ctx::seeds_for`]).
    pub seeds: Option<usize>,
}

impl<'a> ModelJob<'a> {
    /// Model `name` of role `role` with `preset`'s `[model]`, trained on `set` with `train`,
    /// evaluated fully ([`EvalLevel::Full`]).
    pub fn new(
        preset: &Preset,
        name: impl Into<String>,
        role: ModelRole,
        set: TrainingSet<'a>,
        train: &'a TrainSection,
    ) -> ModelJob<'a> {
        ModelJob {
            name: name.into(),
            role,
            model: preset.model.clone(),
            set,
            train,
            level: EvalLevel::Full,
            seeds: None,
        }
    }

    /// The same job with architecture `arch`.
    pub fn with_arch(mut self, arch: &Arch) -> ModelJob<'a> {
        self.model.arch = arch.clone();
        self
    }

    /// The same job with initialisation `init`.
    pub fn with_init(mut self, init: Init) -> ModelJob<'a> {
        self.model.init = init;
        self
    }

    /// The same job evaluated at `level`.
    pub fn with_level(mut self, level: EvalLevel) -> ModelJob<'a> {
        self.level = level;
        self
    }

    /// The same job trained with `seeds` seeds, whatever its role: for an extra's own models
    /// (never for a Figure 2 / Table 1 model it reuses, whose seeds `[fresh] seeds` decides).
    pub fn with_seeds(mut self, seeds: usize) -> ModelJob<'a> {
        self.seeds = Some(seeds.max(1));
        self
    }

    /// The model's spec for its set's images.
    pub fn spec(&self) -> ModelSpec {
        model_spec(&self.model, self.set.data)
    }

    /// Seed `k`'s job: the model itself for k = 0, `<name>~s<k>` else.
    fn seed(&self, k: usize) -> ModelJob<'a> {
        let mut job = self.clone();
        if k > 0 {
            job.name = format!("{}~s{k}", self.name);
        }
        job
    }
}

/// The spec of a model of `[model]` section `model` for images shaped like `data`, in the
/// section's precision (an extra that varies the architecture of a bf16 preset trains that
/// architecture in bf16 too).
pub fn model_spec(model: &ModelSection, data: &Dataset) -> ModelSpec {
    let [c, h, w] = data.shape;
    let mut spec = ModelSpec::new(
        model.arch.clone(),
        [c as i64, h as i64, w as i64],
        data.num_classes as i64,
    )
    .with_init(model.init)
    .with_precision(model.precision);
    if let (Some(m), Some(s)) = (&model.mean, &model.std) {
        spec = spec.with_normalization(m.clone(), s.clone());
    }
    spec
}

/// One seed's trained model: its name (`<name>`, then `<name>~s<k>`) and its training stage's
/// key, what a stage that loads its weights keys on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainedSeed {
    /// The model's name, as its weights (`weights/<name>`) and stages are named.
    pub name: String,
    /// Its training stage's key.
    pub key: String,
}

/// What [`Ctx::model_stage`] gives: the model's result and every seed's trained model, in seed
/// order (seed 0 first: the model itself).
#[derive(Debug, Clone)]
pub struct StagedModel {
    /// The model's result (every seed's numbers when it has several).
    pub result: ModelResult,
    /// Every seed's trained model, seed 0 first.
    pub trained: Vec<TrainedSeed>,
}

impl StagedModel {
    /// Seed 0's training key: the weights later stages load.
    pub fn key(&self) -> &str {
        &self.trained[0].key
    }
}

impl Ctx {
    /// Trains (or resumes, or loads from cache) the model of `job`, whose role in the
    /// experiments (recorded in its result) decides its seeds ([`Ctx::seeds_for`]; an extra's
    /// own model may set them, [`ModelJob::with_seeds`]) and whether
    /// it gets the ensemble ([`super::claims_robustness`]), and evaluates it at the job's level.
    /// Training and evaluation are two cached stages, `train:<name>` and `eval:<name>`:
    /// changing `[eval]` re-evaluates without retraining. The weights go to `weights/<name>`, the
    /// result to `models/<name>.json`. Returns the result and every seed's trained model (its
    /// name and training key: what depends on the weights keys on it).
    ///
    /// The fresh models of Figure 2 / Table 1 ([`Ctx::seeds_for`]) are trained with every seed
    /// of `[fresh] seeds` (a job with several seeds of its own likewise): seed 0 is the model
    /// itself (its stages and keys are the same as with one seed), seed k ≥ 1 the stages `train:<name>~s<k>` / `eval:<name>~s<k>` (weights
    /// `weights/<name>~s<k>`); `models/<name>.json` then carries every seed's numbers. Seed 0's
    /// weights are what later stages load ([`StagedModel::key`]).
    pub fn model_stage(&mut self, job: &ModelJob) -> Result<StagedModel> {
        let (name, seeds) = (job.name.as_str(), self.job_seeds(job));
        // Seed k's model is `name~s<k>` (seed 0's is `name`); a worker takes them in its order.
        let worker = self.cache.mode.worker;
        let runs = crate::workers::map_in_order(worker, (0..seeds).collect(), |k| {
            let seed_job = job.seed(k);
            let (result, key, seed) = self.train_eval(&seed_job)?;
            let trained = TrainedSeed {
                name: seed_job.name,
                key,
            };
            Ok((result, trained, seed))
        })?;
        let trained = runs.iter().map(|(_, t, _)| t.clone()).collect();
        let mut runs = runs.into_iter();
        let (mut result, _, seed) = runs.next().expect("seed 0 is trained");
        if self.cache.mode.defer_eval {
            // Training only: models/<name>.json is written by the run that evaluates.
            return Ok(StagedModel { result, trained });
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
        self.cache
            .write_result(&format!("models/{name}.json"), &result)?;
        Ok(StagedModel { result, trained })
    }

    /// How many seeds `job`'s model is trained with: the job's own count
    /// ([`ModelJob::with_seeds`]), else its role's ([`Ctx::seeds_for`]).
    pub fn job_seeds(&self, job: &ModelJob) -> usize {
        job.seeds.unwrap_or_else(|| self.seeds_for(job.role))
    }

    /// The training key of `job`'s model (seed 0) if its training stage has completed; runs
    /// nothing.
    pub fn trained_key(&self, job: &ModelJob) -> Option<String> {
        let (spec, cfg, _) = self.training(job);
        let key_input = self.train_key_input(job, &spec, &cfg);
        self.cache
            .cached::<Trained>(&format!("train:{}", job.name), &key_input)
            .map(|(_, _, key)| key)
    }

    /// `job`'s model spec, training configuration and training seed (the seed is the stage's:
    /// each model, each seed of a model, draws its own).
    fn training(&self, job: &ModelJob) -> (ModelSpec, TrainConfig, u64) {
        let seed = self.preset.stage_seed(&format!("train:{}", job.name));
        let mut cfg = job.train.config(seed, self.progress);
        cfg.curve_every =
            crate::preset::EvalSection::curve_every(self.curve_images(job), job.set.data.len());
        (job.spec(), cfg, seed)
    }

    /// What `job`'s training stage keys on: its spec and configuration, its training section, its
    /// set's key and the curve's size (one definition for [`Ctx::trained_key`] and the stage).
    fn train_key_input<'a>(
        &self,
        job: &'a ModelJob,
        spec: &'a ModelSpec,
        cfg: &'a TrainConfig,
    ) -> impl serde::Serialize + 'a {
        (spec, cfg, job.train, job.set.key, self.curve_images(job))
    }

    /// Test images of `job`'s per-epoch accuracy curve: the first this many of the curve subset
    /// ([`crate::preset::EvalSection::curve_images`] for its training set's size).
    pub fn curve_images(&self, job: &ModelJob) -> usize {
        self.preset
            .eval
            .curve_images(self.test.len(), job.set.data.len())
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

    /// [`Ctx::model_stage`] for one seed: trains and evaluates the job's model (cached stages)
    /// without writing `models/<name>.json`. Returns the result, the training key and the
    /// training seed.
    fn train_eval(&mut self, job: &ModelJob) -> Result<(ModelResult, String, u64)> {
        let (name, role, trained_on) = (job.name.as_str(), job.role, job.set.name);
        let (spec, cfg, seed) = self.training(job);
        let key_input = self.train_key_input(job, &spec, &cfg);
        let (trained, train_key) =
            self.stage(&format!("train:{name}"), &key_input, |ctx, work| {
                train_model(ctx, work, job, &spec, &cfg, seed)
            })?;

        // What training gives; the evaluation fills in the rest (NaN / empty when deferred).
        let mut result = ModelResult {
            name: name.into(),
            role,
            arch: trained.arch,
            trained_on: trained_on.into(),
            train_size: trained.train_size,
            adversarial: trained.adversarial,
            epochs: trained.epochs,
            curve_n: Some(self.curve_images(job)),
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
        if self.cache.mode.defer_eval {
            tracing::info!("{name}: trained; its evaluation is left to a later run");
            return Ok((result, train_key, seed));
        }
        self.evaluate_into(&mut result, &train_key, job.level)?;
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

    /// Trains model `model` (role `role`) with the preset's `fresh` settings for `set`
    /// ([`crate::preset::Preset::fresh_for`]) on the stored
    /// constructed set `set` (built by the stage with key `set_key`); see [`Ctx::model_stage`].
    pub fn fresh_model(
        &mut self,
        model: &str,
        role: ModelRole,
        set: &str,
        set_key: &str,
        level: EvalLevel,
    ) -> Result<ModelResult> {
        let data = self.load_constructed(set)?.dataset;
        let fresh = self.preset.fresh_for(set);
        let set = TrainingSet {
            name: set,
            data: &data,
            key: set_key,
        };
        let job = ModelJob::new(&self.preset, model, role, set, &fresh).with_level(level);
        Ok(self.model_stage(&job)?.result)
    }

    /// The spec of the preset's model for images shaped like `data`.
    pub fn model_spec(&self, data: &Dataset) -> ModelSpec {
        model_spec(&self.preset.model, data)
    }

    /// Saves the weights of model `name` (`weights/<name>`), noted as an output of the running
    /// stage (its record checks them: see [`crate::records`]).
    pub fn save_weights(&self, model: &Model, name: &str) -> Result<()> {
        let stem = self.path(&format!("weights/{name}"));
        save_model(model, &stem)?;
        let (st, js) = nrf_models::checkpoint::paths(&stem);
        self.cache.outputs.note(st);
        self.cache.outputs.note(js);
        Ok(())
    }

    /// Loads the weights saved by [`Ctx::model_stage`], or those of the nrf checkpoint the
    /// preset names for `name` (`[sources]`). A TorchScript source has none (see
    /// [`Ctx::load_classifier`]): an error that says so.
    pub fn load_weights(&self, name: &str) -> Result<Model> {
        let stem = match self.external(name) {
            Some(s) if s.model.format() == ModelFormat::Checkpoint => {
                s.model.path.with_extension("")
            }
            Some(s) => bail!(
                "{name} is the TorchScript model {} (preset field `{}`), not a model nrf \
                 trained: this step needs nrf's own weights of {name}",
                s.model.path.display(),
                s.field
            ),
            None => self.path(&format!("weights/{name}")),
        };
        let mut m = load_model(&stem, self.device)?;
        m.vs.freeze();
        Ok(m)
    }
}

/// The training stage of [`Ctx::train_eval`]: trains `job`'s model (`spec`, `cfg`, its
/// section's attack) on its set, saves its weights and returns what its record keeps.
fn train_model(
    ctx: &mut Ctx,
    work: &Path,
    job: &ModelJob,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    seed: u64,
) -> Result<Trained> {
    let (name, trained_on, data, section) = (&job.name, job.set.name, job.set.data, job.train);
    let start = Instant::now();
    let mut model = Model::new(spec, ctx.device, seed as i64)?;
    let adv = section.adversary()?;
    tracing::info!(
        "training {name} ({}) on {trained_on}: {} images, {} epochs{}",
        spec.arch.label(),
        data.len(),
        cfg.epochs,
        adv.as_ref()
            .map(|a| format!(", adversarial: {}", nrf_models::BatchPerturber::describe(a)))
            .unwrap_or_default()
    );
    let perturber = adv.as_ref().map(|a| a as &dyn nrf_models::BatchPerturber);
    let k = ctx.curve_images(job) as i64;
    let (tx, ty) = (ctx.curve_x.narrow(0, 0, k), ctx.curve_y.narrow(0, 0, k));
    let history = nrf_models::train(
        &mut model,
        data,
        cfg,
        perturber,
        Some((&tx, &ty)),
        Some(&work.join("ckpt")),
    )?;
    ctx.save_weights(&model, name)?;
    let final_train_acc = {
        // In host memory, a batch at a time on the device (as training holds it).
        let (x, y) = dataset_to_tensors(data, tch::Device::Cpu);
        let batch = ctx.preset.eval.batch_size as i64;
        nrf_models::accuracy_on(&model, &x, &y, batch, ctx.device)
    };
    let train_wall: f64 = history.iter().map(|h| h.wall_s).sum();
    Ok(Trained {
        arch: spec.arch.label(),
        train_size: data.len(),
        adversarial: adv.as_ref().map(nrf_models::BatchPerturber::describe),
        epochs: history,
        final_train_acc,
        wall_s: start.elapsed().as_secs_f64().max(train_wall),
    })
}
