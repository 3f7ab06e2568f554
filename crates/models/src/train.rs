//! The training loop: SGD, per-step learning-rate schedule, optional augmentation and optional
//! adversarial training through a [`BatchPerturber`], checkpoints between epochs (at most one
//! per [`CHECKPOINT_INTERVAL_S`], and after the last epoch), and exact resume (same final weights
//! as an uninterrupted run on CPU with a fixed thread count). The loop reads nothing back from the
//! device between steps except every [`SYNC_EVERY`] steps.
use crate::checkpoint::{load_into, load_training, model_tensors, save_training};
use crate::optim::{LrSchedule, Sgd};
use crate::{dataset_to_tensors, BatchPerturber, Classifier, Model};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{Kind, Tensor};

pub use crate::augment::{crop_flip, Augment};

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Learning rate per step.
    pub schedule: LrSchedule,
    /// SGD momentum (0 = none).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Augmentation of training batches.
    pub augment: Augment,
    /// Seed of shuffling, augmentation and the attack's random starts.
    pub seed: u64,
    /// The accuracy curve ([`train`]'s `eval` set) is measured after epochs `curve_every`,
    /// `2 * curve_every`, ... and after the last one; 1 (the default): after every epoch. Written
    /// into the configuration (and so into keys built from it) only when above 1.
    #[serde(default = "every_epoch", skip_serializing_if = "is_every_epoch")]
    pub curve_every: usize,
    /// Show a progress bar.
    #[serde(skip)]
    pub progress: bool,
    /// Return after this many completed epochs (counting resumed ones), leaving the checkpoint
    /// to continue from: an interruption on purpose. Not part of the configuration.
    #[serde(skip)]
    pub stop_after: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            schedule: LrSchedule::CosineWarmup {
                lr: 0.05,
                warmup: 0.05,
            },
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            augment: Augment::None,
            seed: 0,
            curve_every: 1,
            progress: false,
            stop_after: None,
        }
    }
}

fn every_epoch() -> usize {
    1
}

fn is_every_epoch(k: &usize) -> bool {
    *k == 1
}

impl TrainConfig {
    /// Checks for values that would make training meaningless.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("train config: epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("train config: batch_size must be at least 1");
        }
        if self.curve_every == 0 {
            bail!("train config: curve_every must be at least 1");
        }
        let lr = self.schedule.base_lr();
        if !(lr > 0.0 && lr.is_finite()) {
            bail!("train config: learning rate must be positive and finite, got {lr}");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!(
                "train config: momentum must be in [0, 1), got {}",
                self.momentum
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!(
                "train config: weight_decay must be >= 0, got {}",
                self.weight_decay
            );
        }
        Ok(())
    }
}

/// Metrics of one epoch: the results schema's type (`models/<name>.json` holds them as they are).
pub use nrf_results::EpochMetrics;

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: TrainConfig,
    spec: crate::ModelSpec,
    train_size: usize,
    perturber: Option<String>,
    history: Vec<EpochMetrics>,
}

/// The order of examples in `epoch` (deterministic in `seed` and `epoch`).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, rng.gen_range(0..=i));
    }
    idx
}

/// A progress bar with rate and ETA, hidden when `show` is false.
pub fn progress_bar(len: u64, prefix: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// One optimisation step on `(x, y)`; returns `(loss, correct)`.
pub fn train_step(
    model: &Model,
    sgd: &mut Sgd,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
    perturber: Option<&dyn BatchPerturber>,
) -> Result<(f64, i64)> {
    let (loss, correct) = step_on_device(model, sgd, x, y, lr, perturber)?;
    Ok((loss.double_value(&[]), correct.int64_value(&[])))
}

/// [`train_step`] without reading anything back to the host: returns the batch's mean loss
/// (`[]`, the logits' kind) and its number of correct predictions (`[]`, int64), both detached
/// and on the model's device, so a loop can accumulate them there.
pub fn step_on_device(
    model: &Model,
    sgd: &mut Sgd,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
    perturber: Option<&dyn BatchPerturber>,
) -> Result<(Tensor, Tensor)> {
    let x = match perturber {
        Some(p) => p.perturb(model, x, y)?.detach(),
        None => x.shallow_clone(),
    };
    let logits = model.logits(&x, true);
    let loss = logits.cross_entropy_for_logits(y);
    sgd.zero_grad();
    loss.backward();
    sgd.step(lr);
    let correct = logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64);
    Ok((loss.detach(), correct))
}

/// The error of a training run whose tensor `name` (a weight, a batch-norm statistic or an
/// optimiser buffer) became NaN or infinite `at` (epoch, step, learning rate). A batch-norm
/// running statistic does so when a layer sees one value per channel in training, a batch of
/// one image on a 1x1 feature map: ATen then updates the running variance with 0/0 where PyTorch
/// refuses the batch ("Expected more than 1 value per channel when training"), so the error says
/// that, with the batch sizes that lead to it; anything else diverged ([`diverged`]).
fn non_finite(
    data: &nrf_data::Dataset,
    cfg: &TrainConfig,
    checkpoint: Option<&Path>,
    last_saved: Option<usize>,
    name: &str,
    at: &str,
) -> anyhow::Error {
    if name.ends_with("running_var") || name.ends_with("running_mean") {
        let (n, bs) = (data.len(), cfg.batch_size);
        let last = match n % bs {
            0 => bs,
            r => r,
        };
        anyhow::anyhow!(
            "training on {}: the batch-norm statistic {name} became NaN in {at}: a layer saw one \
             value per channel (a batch of one image on a 1x1 feature map), which PyTorch refuses; \
             {n} images at batch size {bs} leave a last batch of {last}: choose a batch size that \
             does not leave one image",
            data.name
        )
    } else {
        diverged(
            &data.name,
            checkpoint,
            last_saved,
            format!("{name} became NaN or infinite in {at}"),
        )
    }
}

/// The error of a training run whose loss or weights became NaN or infinite: names the data
/// set, says `what` happened (epoch, step, learning rate) and which checkpoint is kept (the last
/// one written holds finite weights: none is written after the divergence).
fn diverged(
    data: &str,
    checkpoint: Option<&Path>,
    last_saved: Option<usize>,
    what: String,
) -> anyhow::Error {
    let kept = match (checkpoint, last_saved) {
        (Some(stem), Some(e)) => format!(
            "; the last good checkpoint, {} (after epoch {e}), is kept",
            crate::checkpoint::paths(stem).0.display()
        ),
        (Some(_), None) => "; no checkpoint had been written yet".to_string(),
        (None, _) => String::new(),
    };
    anyhow::anyhow!("training on {data} diverged: {what}{kept}; lower the learning rate")
}

/// Steps between two reads of the running loss (the divergence check, and the progress
/// message when shown): one host synchronisation per this many steps instead of two per step.
pub const SYNC_EVERY: usize = 25;

/// Least time between two notes of a training's steps for progress lines
/// ([`crate::checkpoint::note_training_progress`], at a [`SYNC_EVERY`] step): a long epoch
/// counts before its checkpoint, and a fast one writes no file every few milliseconds.
const NOTE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds of training between two checkpoints: a checkpoint is written after an epoch when at
/// least this long has passed since the last one (and always after the last epoch and at
/// `stop_after`), so that many short epochs do not each pay for a checkpoint file. Killing a run
/// loses at most one epoch or this long, whichever is more.
pub const CHECKPOINT_INTERVAL_S: f64 = 30.0;

/// Trains `model` on `data`. With `eval = Some((x, y))` the accuracy on it is measured after
/// every `cfg.curve_every`-th epoch and the last (every epoch by default). With `checkpoint = Some(stem)` a checkpoint is written after an epoch when
/// [`CHECKPOINT_INTERVAL_S`] have passed since the last one, after the last epoch and at
/// `cfg.stop_after`, and an existing one (same configuration) is resumed from. Stops with an
/// error if the loss becomes NaN or infinite (checked every [`SYNC_EVERY`] steps).
pub fn train(
    model: &mut Model,
    data: &nrf_data::Dataset,
    cfg: &TrainConfig,
    perturber: Option<&dyn BatchPerturber>,
    eval: Option<(&Tensor, &Tensor)>,
    checkpoint: Option<&Path>,
) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    if data.is_empty() {
        bail!("training set {} is empty", data.name);
    }
    cfg.augment.check(&data.shape, &data.name)?;
    let device = model.device();
    let mut sgd = Sgd::new(
        model.vs.trainable_variables(),
        cfg.momentum,
        cfg.nesterov,
        cfg.weight_decay,
    );
    let mut history: Vec<EpochMetrics> = Vec::new();
    let describe = perturber.map(|p| p.describe());
    // The epoch of the last checkpoint this training has (written or resumed from).
    let mut last_saved: Option<usize> = None;
    if let Some(stem) = checkpoint {
        if let Some(resumed) = resume_from_checkpoint(stem, model, &mut sgd, data, cfg, &describe)?
        {
            history = resumed;
            last_saved = Some(history.len());
        }
    }
    // Held in host memory: only each batch goes to the device (a GPU need not hold the set).
    let (x_all, y_all) = dataset_to_tensors(data, tch::Device::Cpu);
    let n = data.len();
    let bs = cfg.batch_size;
    let steps_per_epoch = n.div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs;
    let run = EpochInputs {
        data,
        cfg,
        perturber,
        eval,
        checkpoint,
        device,
        x_all,
        y_all,
        steps_per_epoch,
        total,
    };
    let mut last_checkpoint = Instant::now();
    for epoch in history.len() + 1..=cfg.epochs {
        let (report, step, lr) = train_epoch(&run, model, &mut sgd, epoch, last_saved)?;
        history.push(report);
        // Every epoch, not only when a checkpoint is due: the loss is read before each step's
        // update, so the epoch's last update can make the weights non-finite unseen, and a
        // batch-norm statistic turned NaN leaves the loss finite while every later evaluation
        // is garbage.
        if let Some((name, _)) = model
            .vs
            .variables()
            .into_iter()
            .find(|(_, t)| t.isfinite().all().int64_value(&[]) == 0)
        {
            let at = format!("epoch {epoch} (up to step {step} overall; learning rate {lr})");
            return Err(non_finite(data, cfg, checkpoint, last_saved, &name, &at));
        }
        let stop = cfg.stop_after.is_some_and(|s| epoch >= s);
        let due = epoch == cfg.epochs
            || stop
            || last_checkpoint.elapsed().as_secs_f64() >= CHECKPOINT_INTERVAL_S;
        if let (Some(stem), true) = (checkpoint, due) {
            last_checkpoint = Instant::now();
            let tensors = checkpoint_tensors(model, &sgd);
            // Never checkpoint non-finite tensors: the model's were checked after the epoch
            // above; the optimiser's buffers are checked here.
            if let Some((name, _)) = tensors
                .iter()
                .filter(|(n, _)| n.starts_with("sgd."))
                .find(|(_, t)| t.isfinite().all().int64_value(&[]) == 0)
            {
                let at = format!(
                    "epoch {epoch} (by its last steps, up to step {step} overall; learning rate \
                     {lr})"
                );
                return Err(non_finite(data, cfg, checkpoint, last_saved, name, &at));
            }
            let meta = CheckpointMeta {
                config: cfg.clone(),
                spec: model.spec.clone(),
                train_size: data.len(),
                perturber: describe.clone(),
                history: history.clone(),
            };
            save_training(stem, &tensors, &meta)?;
            last_saved = Some(epoch);
        }
        if stop {
            break;
        }
    }
    Ok(history)
}

/// Loads the checkpoint at `stem` into `model` and `sgd`'s momentum buffers when it was written
/// with the same configuration, model, training-set size and perturber (`describe`), and returns
/// its history; returns `None` when there is no checkpoint or it has another configuration.
fn resume_from_checkpoint(
    stem: &Path,
    model: &mut Model,
    sgd: &mut Sgd,
    data: &nrf_data::Dataset,
    cfg: &TrainConfig,
    describe: &Option<String>,
) -> Result<Option<Vec<EpochMetrics>>> {
    if let Some((meta, tensors)) = load_training::<CheckpointMeta>(stem)? {
        let same = serde_json::to_value(&meta.config)? == serde_json::to_value(cfg)?
            && meta.spec == model.spec
            && meta.train_size == data.len()
            && meta.perturber == *describe;
        if same {
            let st = crate::checkpoint::paths(stem).0;
            load_into(model, &tensors, &st)?;
            let map: std::collections::HashMap<&str, &Tensor> =
                tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let _g = tch::no_grad_guard();
            for (i, buf) in sgd.buffers.iter_mut().enumerate() {
                let src = map
                    .get(format!("sgd.{i}").as_str())
                    .with_context(|| format!("{}: lacks sgd.{i}", st.display()))?;
                if src.size() != buf.size() || src.kind() != buf.kind() {
                    bail!(
                        "{}: sgd.{i} is {:?} {:?}, the optimiser's buffer {:?} {:?} (a damaged or \
                         hand-edited checkpoint: remove it to train afresh)",
                        st.display(),
                        src.kind(),
                        src.size(),
                        buf.kind(),
                        buf.size()
                    );
                }
                buf.copy_(src);
            }
            let history = meta.history;
            tracing::info!("resuming {} from epoch {}", st.display(), history.len());
            return Ok(Some(history));
        } else {
            tracing::warn!(
                "checkpoint {} has another configuration; starting afresh",
                stem.display()
            );
        }
    }
    Ok(None)
}

/// The tensors of a checkpoint: the model's, then `sgd`'s momentum buffers as `sgd.{i}`.
fn checkpoint_tensors(model: &Model, sgd: &Sgd) -> Vec<(String, Tensor)> {
    let mut tensors = model_tensors(model);
    tensors.extend(
        sgd.buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("sgd.{i}"), b.shallow_clone())),
    );
    tensors
}

/// What every epoch of one [`train`] run reads: its arguments, the training set on the device
/// and the step counts.
struct EpochInputs<'a> {
    /// The training set (its name and size).
    data: &'a nrf_data::Dataset,
    /// The run's configuration.
    cfg: &'a TrainConfig,
    /// The adversary of adversarial training, if any.
    perturber: Option<&'a dyn BatchPerturber>,
    /// The evaluation set, measured after every `cfg.curve_every`-th epoch and the last.
    eval: Option<(&'a Tensor, &'a Tensor)>,
    /// The checkpoint stem (named in a divergence error).
    checkpoint: Option<&'a Path>,
    /// The model's device.
    device: tch::Device,
    /// The whole training set's images, in host memory (each batch is moved to `device`).
    x_all: Tensor,
    /// The whole training set's labels, in host memory.
    y_all: Tensor,
    /// Steps per epoch (the last batch may be partial).
    steps_per_epoch: usize,
    /// Steps of the whole run.
    total: usize,
}

/// The epoch's order as one index tensor on `device`; each batch is a slice of it.
fn epoch_order_tensor(n: usize, seed: u64, epoch: usize, device: tch::Device) -> Tensor {
    let order: Vec<i64> = epoch_order(n, seed, epoch)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    Tensor::from_slice(&order).to_device(device)
}

/// Trains one epoch (1-based `epoch`) and logs its metrics; returns its report, its last step
/// overall and that step's learning rate. `last_saved` is named in a divergence error.
fn train_epoch(
    run: &EpochInputs<'_>,
    model: &Model,
    sgd: &mut Sgd,
    epoch: usize,
    last_saved: Option<usize>,
) -> Result<(EpochMetrics, usize, f64)> {
    let (cfg, device, steps_per_epoch) = (run.cfg, run.device, run.steps_per_epoch);
    let n = run.data.len();
    let bs = cfg.batch_size;
    let start = Instant::now();
    // When the steps were last noted for progress lines (at most every NOTE_INTERVAL).
    let mut noted = start;
    tch::manual_seed((cfg.seed as i64).wrapping_add(epoch as i64 * 1_000_003));
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64 * 7919));
    let order = epoch_order_tensor(n, cfg.seed, epoch, tch::Device::Cpu);
    let pb = progress_bar(
        steps_per_epoch as u64,
        &format!("epoch {epoch}/{}", cfg.epochs),
        cfg.progress,
    );
    // Running sums on the device, in f64 as before (the loss times the batch length, added
    // in batch order), read every SYNC_EVERY steps and at the end of the epoch.
    let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
    let mut correct = Tensor::zeros([], (Kind::Int64, device));
    let (mut seen, mut lr, mut checked, mut step) = (0usize, 0.0, 0usize, 0usize);
    for b in 0..steps_per_epoch {
        let len = bs.min(n - b * bs);
        let idx = order.narrow(0, (b * bs) as i64, len as i64);
        let mut xb = run.x_all.index_select(0, &idx).to_device(device);
        let yb = run.y_all.index_select(0, &idx).to_device(device);
        if cfg.augment != Augment::None {
            xb = crate::augment::augment_batch(&xb, &cfg.augment, &mut rng);
        }
        step = (epoch - 1) * steps_per_epoch + b;
        lr = cfg.schedule.lr_at(step, run.total, steps_per_epoch);
        let (loss, c) = step_on_device(model, sgd, &xb, &yb, lr, run.perturber)?;
        {
            let _g = tch::no_grad_guard();
            let _ = loss_sum.g_add_(&(loss.to_kind(Kind::Double) * len as f64));
            let _ = correct.g_add_(&c);
        }
        seen += len;
        pb.inc(1);
        if (b + 1) % SYNC_EVERY == 0 || b + 1 == steps_per_epoch {
            let sum = loss_sum.double_value(&[]);
            if !sum.is_finite() {
                return Err(diverged(
                    &run.data.name,
                    run.checkpoint,
                    last_saved,
                    format!(
                        "the loss became {sum} at epoch {epoch}, between steps {checked} and \
                         {b} of the epoch (step {step} overall; learning rate {lr})"
                    ),
                ));
            }
            checked = b + 1;
            if let (Some(stem), true) = (run.checkpoint, noted.elapsed() >= NOTE_INTERVAL) {
                crate::checkpoint::note_training_progress(stem, step + 1, run.total);
                noted = Instant::now();
            }
            if !pb.is_hidden() {
                pb.set_message(format!(
                    "loss {:.3} acc {:.3}",
                    sum / seen as f64,
                    correct.int64_value(&[]) as f64 / seen as f64
                ));
            }
        }
    }
    let (loss_sum, correct) = (loss_sum.double_value(&[]), correct.int64_value(&[]));
    pb.finish_and_clear();
    let curve_due = epoch.is_multiple_of(run.cfg.curve_every) || epoch == run.cfg.epochs;
    let test_acc = run
        .eval
        .filter(|_| curve_due)
        .map(|(x, y)| crate::accuracy(model, x, y, 500));
    let report = EpochMetrics {
        epoch,
        lr,
        train_loss: loss_sum / seen as f64,
        train_acc: correct as f64 / seen as f64,
        test_acc,
        wall_s: start.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "epoch {epoch}/{}: loss {:.4} train acc {:.4} test acc {} ({:.1}s)",
        cfg.epochs,
        report.train_loss,
        report.train_acc,
        test_acc
            .map(|a| format!("{a:.4}"))
            .unwrap_or_else(|| "-".into()),
        report.wall_s
    );
    Ok((report, step, lr))
}

#[cfg(test)]
mod tests;
