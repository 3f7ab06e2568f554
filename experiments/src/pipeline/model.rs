//! Model stages: training (cached), then evaluation; fresh models on constructed sets; weights.
use super::{claims_robustness, seeds_for, Ctx, EvalLevel, Trained};
use crate::preset::TrainSection;
use anyhow::{bail, Result};
use nrf_attacks::{AdvTraining, PgdConfig};
use nrf_data::store::write_json_atomic;
use nrf_data::Dataset;
use nrf_models::{dataset_to_tensors, load_model, save_model, Model, ModelSpec, TrainConfig};
use nrf_report::results::{EpochMetrics, ModelResult, ModelRole, SeedRun};
use std::path::Path;
use std::time::Instant;

impl Ctx {
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
                train_model(
                    ctx, work, name, trained_on, data, &spec, &cfg, section, seed,
                )
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
}

/// The training stage of [`Ctx::train_eval`]: trains `name` (`spec`, `cfg`, `section`'s attack)
/// on `data`, saves its weights and returns what its record keeps.
#[allow(clippy::too_many_arguments)] // Ctx::train_eval's values
fn train_model(
    ctx: &mut Ctx,
    work: &Path,
    name: &str,
    trained_on: &str,
    data: &Dataset,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    section: &TrainSection,
    seed: u64,
) -> Result<Trained> {
    let start = Instant::now();
    let mut model = Model::new(spec, ctx.device, seed as i64)?;
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
            .map(|a| format!(", adversarial: {}", nrf_models::BatchPerturber::describe(a)))
            .unwrap_or_default()
    );
    let perturber = adv.as_ref().map(|a| a as &dyn nrf_models::BatchPerturber);
    let (tx, ty) = (ctx.curve_x.shallow_clone(), ctx.curve_y.shallow_clone());
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
}
