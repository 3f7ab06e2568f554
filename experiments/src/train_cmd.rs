//! `nrf train`: train one model of the preset's architecture on the preset's data, standard or
//! L2-adversarial, and print its test accuracy and PGD robust accuracy. A quick check of the
//! models and attacks crates on real data, outside the cached pipeline.
use crate::pipeline::load_data;
use crate::preset::Preset;
use anyhow::Result;
use nrf_attacks::{robust_accuracy, AdvTraining, PgdConfig, L2};
use nrf_models::{dataset_to_tensors, train, BatchPerturber, Classifier, Model, ModelSpec};
use tch::{Device, Tensor};

/// What `nrf train` measured.
#[derive(Debug, serde::Serialize)]
pub struct TrainCheck {
    pub epochs: usize,
    pub adversarial: Option<String>,
    pub test_acc: f64,
    pub robust_eps: f64,
    pub robust_acc: f64,
    pub robust_n: usize,
    pub wall_s: f64,
}

/// Trains for `epochs` (adversarially at L2 `adv_eps` with `adv_steps` when given) and evaluates
/// with L2 PGD-20 (step 2.5*eps/20, random start) at `eval_eps` on the first `robust_n` test images.
pub fn run(
    preset: &Preset,
    epochs: usize,
    adv: Option<(f64, usize)>,
    eval_eps: f64,
    robust_n: usize,
) -> Result<TrainCheck> {
    let start = std::time::Instant::now();
    if preset.threads > 0 {
        tch::set_num_threads(preset.threads);
    }
    let device = Device::cuda_if_available();
    let (train_set, test) = load_data(preset, None)?;
    let [c, h, w] = train_set.shape;
    let spec = ModelSpec::new(
        preset.model.arch.clone(),
        [c as i64, h as i64, w as i64],
        train_set.num_classes as i64,
    );
    let mut model = Model::new(&spec, device, preset.seed as i64)?;
    let mut section = preset.train_std.clone();
    section.epochs = epochs;
    let cfg = section.config(preset.seed, true);
    let perturber = adv
        .map(|(eps, steps)| AdvTraining::l2(eps, steps))
        .transpose()?;
    let (tx, ty) = dataset_to_tensors(&test, device);
    let history = train(
        &mut model,
        &train_set,
        &cfg,
        perturber.as_ref().map(|p| p as &dyn BatchPerturber),
        Some((&tx, &ty)),
        None,
    )?;
    let test_acc = history.last().and_then(|h| h.test_acc).unwrap_or(0.0);
    let n = robust_n.min(test.len()) as i64;
    let (rx, ry): (Tensor, Tensor) = (tx.narrow(0, 0, n), ty.narrow(0, 0, n));
    let robust = robust_accuracy(
        &model,
        &rx,
        &ry,
        &L2::new(eval_eps)?,
        &PgdConfig::eval(eval_eps, 20),
        250,
        true,
    )?;
    let _ = model.num_classes();
    Ok(TrainCheck {
        epochs,
        adversarial: perturber.map(|p| p.describe()),
        test_acc,
        robust_eps: eval_eps,
        robust_acc: robust,
        robust_n: n as usize,
        wall_s: start.elapsed().as_secs_f64(),
    })
}
