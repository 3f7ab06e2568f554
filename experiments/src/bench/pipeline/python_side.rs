//! The twin's side of `nrf bench --pipeline`: its stage worker (`bench_stages.py --serve`).
use super::rust_side::Inputs;
use super::{PipelineConfig, Stage, StageRun, SEED};
use crate::bench::{twin_dir, Hello, JsonWorker, TWIN_DIR_ENV};
use anyhow::{bail, Result};
use std::path::Path;

/// The twin's stage worker (`bench_stages.py --serve`).
pub(super) struct PyStages(JsonWorker);

impl std::ops::Deref for PyStages {
    type Target = JsonWorker;
    fn deref(&self) -> &JsonWorker {
        &self.0
    }
}

impl std::ops::DerefMut for PyStages {
    fn deref_mut(&mut self) -> &mut JsonWorker {
        &mut self.0
    }
}

impl PyStages {
    /// Starts the worker, with nrf's allocator settings when `malloc_as_nrf`
    /// ([`PipelineConfig::python_malloc_as_nrf`]).
    pub(super) fn start(
        python: &Path,
        malloc_as_nrf: bool,
    ) -> std::result::Result<(PyStages, Hello), String> {
        let script = twin_dir().join("bench_stages.py");
        if !script.exists() {
            return Err(format!(
                "{} does not exist (set {TWIN_DIR_ENV} to the twin's folder); Python column skipped",
                script.display()
            ));
        }
        let args: [&std::ffi::OsStr; 2] = [script.as_os_str(), "--serve".as_ref()];
        let env = if malloc_as_nrf {
            nrf_models::runtime::malloc_env().to_vec()
        } else {
            Vec::new()
        };
        let (worker, hello) =
            JsonWorker::start(python, &args, &env, "the twin could not be imported")?;
        Ok((PyStages(worker), hello))
    }

    /// Runs `stage` at `threads` and waits for it.
    pub(super) fn stage(
        &mut self,
        stage: Stage,
        threads: i32,
        cfg: &PipelineConfig,
        inp: &Inputs,
    ) -> Result<StageRun> {
        self.start_stage(stage, threads, cfg, inp)?;
        self.finish_stage()
    }

    /// Starts `stage` at `threads` and returns at once ([`PyStages::finish_stage`] waits for
    /// it), so that a Rust stage can run meanwhile.
    pub(super) fn start_stage(
        &mut self,
        stage: Stage,
        threads: i32,
        cfg: &PipelineConfig,
        inp: &Inputs,
    ) -> Result<()> {
        let section = |epochs: usize, attack: Option<serde_json::Value>| {
            let t = cfg.train_config(epochs);
            let (lr, warmup) = match t.schedule {
                nrf_models::LrSchedule::CosineWarmup { lr, warmup } => (lr, warmup),
                _ => (0.05, 0.05),
            };
            serde_json::json!({
                "epochs": epochs, "batch_size": t.batch_size, "lr": lr, "schedule": "cosine",
                "warmup": warmup, "momentum": t.momentum, "nesterov": t.nesterov,
                "weight_decay": t.weight_decay, "crop_pad": 0, "milestones": [], "gamma": 0.1,
                "attack": attack,
            })
        };
        let params = match stage {
            Stage::TrainStd => serde_json::json!({
                "n": cfg.std_images, "curve_n": cfg.curve_n, "seed": SEED,
                "section": section(cfg.std_epochs, None),
            }),
            Stage::TrainRob => serde_json::json!({
                "n": cfg.rob_images, "curve_n": cfg.curve_n, "seed": SEED,
                "section": section(cfg.rob_epochs, Some(serde_json::json!({
                    "norm": "l2", "eps": cfg.rob_eps, "steps": cfg.rob_steps,
                    "step_factor": 2.5, "random_start": true,
                }))),
            }),
            Stage::RepMatch => {
                let r = inp.rep_config(cfg);
                serde_json::json!({"n": inp.rep_targets.len(), "section": {
                    "steps": r.steps, "step_start": r.step_start, "step_end": r.step_end,
                    "batch_size": r.batch_size, "distance": "l2_squared", "start": "other_image",
                    "fake_relu": r.relu == nrf_models::RepRelu::Fake,
                }})
            }
            Stage::Relabel => serde_json::json!({
                "n": inp.relabel_indices.len(), "eps": cfg.relabel_eps,
                "steps": cfg.relabel_steps, "step_size": cfg.relabel_step,
                "batch_size": cfg.relabel_batch,
            }),
            Stage::RobustEval => serde_json::json!({
                "n": cfg.eval_images, "grid": cfg.grid(), "steps": cfg.eval_steps,
                "step_factor": 2.5, "batch_size": cfg.eval_batch, "seed": SEED,
            }),
            Stage::Ensemble => serde_json::json!({
                "n": cfg.ens_images, "eps": cfg.ens_eps, "steps": cfg.ens_steps, "seed": SEED,
            }),
        };
        self.send(&serde_json::json!({
            "cmd": "stage", "stage": stage.name(), "threads": threads,
            "channels_last": cfg.python_channels_last, "params": params,
        }))
    }

    /// Waits for the stage [`PyStages::start_stage`] started.
    pub(super) fn finish_stage(&mut self) -> Result<StageRun> {
        let run: StageRun = self.read()?;
        if !(run.wall_s.is_finite() && run.wall_s >= 0.0) {
            bail!("`{}` returned a bad wall time {}", self.what, run.wall_s);
        }
        Ok(run)
    }
}
