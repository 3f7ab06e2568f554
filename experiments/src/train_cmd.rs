//! `nrf train`: train one model of the preset on the preset's data, as the pipeline trains its
//! source model C_std (the `train_std` section) or C_rob (`train_rob`, with its attack), print its
//! test accuracy and L2 PGD-20 robust accuracy, and optionally save its weights. Outside the
//! cached pipeline: for a source model's seed-to-seed spread, or a quick check of the models and
//! attacks crates on real data (`--epochs 1`).
use crate::pipeline::{load_data, model_spec};
use crate::preset::Preset;
use anyhow::{bail, Result};
use nrf_attacks::{robust_accuracy, AdvTraining, PgdConfig, L2};
use nrf_models::{dataset_to_tensors, save_model, train, BatchPerturber, Init, Model, Precision};
use std::path::PathBuf;
use tch::Tensor;

/// Which source model's training `nrf train` repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Source {
    /// The preset's `train_std` section.
    #[value(name = "C_std", alias = "c_std")]
    #[serde(rename = "C_std")]
    CStd,
    /// The preset's `train_rob` section (adversarial, its `attack`).
    #[value(name = "C_rob", alias = "c_rob")]
    #[serde(rename = "C_rob")]
    CRob,
}

impl Source {
    /// The model's name in the pipeline, which its seed is derived from.
    pub fn name(self) -> &'static str {
        match self {
            Source::CStd => "C_std",
            Source::CRob => "C_rob",
        }
    }
}

/// What `nrf train` is asked for, beyond the preset.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The source model whose training section and seed are used.
    pub model: Source,
    /// Epochs in place of the section's.
    pub epochs: Option<usize>,
    /// L2 adversarial training at this radius with this many steps, in place of the section's
    /// attack (step 2.5 eps / steps, random start).
    pub adv: Option<(f64, usize)>,
    /// The seed of the model's initialisation and of its training's draws, in place of the one
    /// the pipeline derives from the preset's master seed for the model.
    pub seed: Option<u64>,
    /// L2 radius of the PGD-20 evaluation.
    pub eval_eps: f64,
    /// Test images of the PGD-20 evaluation (the first this many).
    pub robust_n: usize,
    /// Where to save the weights (`<stem>.safetensors` and `<stem>.json`).
    pub save: Option<PathBuf>,
}

/// What `nrf train` measured.
#[derive(Debug, serde::Serialize)]
pub struct TrainCheck {
    pub model: Source,
    pub seed: u64,
    pub epochs: usize,
    pub adversarial: Option<String>,
    pub init: Init,
    pub precision: Precision,
    /// libtorch threads it trained with.
    pub threads: i32,
    pub test_acc: f64,
    pub robust_eps: f64,
    pub robust_acc: f64,
    pub robust_n: usize,
    pub saved: Option<PathBuf>,
    pub wall_s: f64,
}

/// Trains the model `req` asks for and evaluates it with L2 PGD-20 (step 2.5*eps/20, random
/// start) at `eval_eps` on the first `robust_n` test images. With neither `epochs`, `adv` nor
/// `seed`, the model is trained as `nrf reproduce` trains it under the same preset (its spec,
/// its section, its stage seed, and on a CPU the libtorch threads of one of its workers,
/// `threads / workers`): the same weights, as the pipeline's curve evaluation draws nothing.
/// `--set workers=1` gives it all of `threads` (faster, the same model up to the last bits of
/// its floating-point sums).
pub fn run(preset: &Preset, req: &TrainRequest) -> Result<TrainCheck> {
    let start = std::time::Instant::now();
    let device = crate::workers::model_device(preset);
    if req.epochs == Some(0) {
        bail!("--epochs must be at least 1");
    }
    if req.robust_n == 0 {
        bail!("--robust-n must be at least 1");
    }
    let (train_set, test) = load_data(preset, None)?;
    let spec = model_spec(&preset.model, &train_set);
    let seed = req
        .seed
        .unwrap_or_else(|| preset.stage_seed(&format!("train:{}", req.model.name())));
    let mut section = match req.model {
        Source::CStd => preset.train_std.clone(),
        Source::CRob => preset.train_rob.clone(),
    };
    if let Some(e) = req.epochs {
        section.epochs = e;
    }
    let perturber = match req.adv {
        Some((eps, steps)) => Some(AdvTraining::l2(eps, steps)?),
        None => section.adversary()?,
    };
    let mut model = Model::new(&spec, device, seed as i64)?;
    let cfg = section.config(seed, true);
    let (tx, ty) = dataset_to_tensors(&test, device);
    let history = train(
        &mut model,
        &train_set,
        &cfg,
        perturber.as_ref().map(|p| p as &dyn BatchPerturber),
        Some((&tx, &ty)),
        None,
    )?;
    if let Some(stem) = &req.save {
        save_model(&model, stem)?;
    }
    let test_acc = history.last().and_then(|h| h.test_acc).unwrap_or(f64::NAN);
    let n = req.robust_n.min(test.len()) as i64;
    let (rx, ry): (Tensor, Tensor) = (tx.narrow(0, 0, n), ty.narrow(0, 0, n));
    let robust = robust_accuracy(
        &model,
        &rx,
        &ry,
        &L2::new(req.eval_eps)?,
        &PgdConfig::eval(req.eval_eps, 20),
        250,
        true,
    )?;
    Ok(TrainCheck {
        model: req.model,
        seed,
        epochs: section.epochs,
        adversarial: perturber.map(|p| p.describe()),
        init: spec.init,
        precision: spec.precision,
        threads: tch::get_num_threads(),
        test_acc,
        robust_eps: req.eval_eps,
        robust_acc: robust,
        robust_n: n as usize,
        saved: req.save.clone(),
        wall_s: start.elapsed().as_secs_f64(),
    })
}
