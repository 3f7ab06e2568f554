//! The training loop: SGD, per-step learning-rate schedule, optional augmentation and optional
//! adversarial training through a [`BatchPerturber`], a checkpoint after every epoch, and exact
//! resume (same final weights as an uninterrupted run on CPU with a fixed thread count).
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

/// Data augmentation applied to training batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Augment {
    /// No augmentation.
    #[default]
    None,
    /// Random crop after zero padding by `pad` pixels, and random horizontal flip.
    CropFlip { pad: i64 },
}

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
            progress: false,
            stop_after: None,
        }
    }
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

/// Metrics of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss (on the perturbed batches when training adversarially).
    pub train_loss: f64,
    /// Training accuracy on the batches seen (perturbed when adversarial).
    pub train_acc: f64,
    /// Accuracy on the evaluation set, when one was given.
    pub test_acc: Option<f64>,
    /// Seconds.
    pub wall_s: f64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: TrainConfig,
    spec: crate::ModelSpec,
    train_size: usize,
    perturber: Option<String>,
    history: Vec<EpochReport>,
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

/// Applies random crop (zero padding `pad`) and horizontal flip to a batch `[N,C,H,W]`.
pub fn crop_flip(x: &Tensor, pad: i64, rng: &mut impl Rng) -> Tensor {
    let s = x.size();
    let (n, h, w) = (s[0], s[2], s[3]);
    let padded = x.constant_pad_nd([pad, pad, pad, pad]);
    let crops: Vec<Tensor> = (0..n)
        .map(|i| {
            let (dy, dx) = (rng.gen_range(0..=2 * pad), rng.gen_range(0..=2 * pad));
            let c = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
            if rng.gen_bool(0.5) {
                c.flip([2])
            } else {
                c
            }
        })
        .collect();
    Tensor::stack(&crops, 0)
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
    let x = match perturber {
        Some(p) => p.perturb(model, x, y)?.detach(),
        None => x.shallow_clone(),
    };
    let logits = model.logits(&x, true);
    let loss = logits.cross_entropy_for_logits(y);
    sgd.zero_grad();
    loss.backward();
    sgd.step(lr);
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(y)
        .sum(Kind::Int64)
        .int64_value(&[]);
    Ok((loss.double_value(&[]), correct))
}

/// Trains `model` on `data`. With `eval = Some((x, y))` the accuracy on it is measured after
/// every epoch. With `checkpoint = Some(stem)` a checkpoint is written after every epoch and an
/// existing one (same configuration) is resumed from. Stops with an error if the loss becomes
/// NaN or infinite.
pub fn train(
    model: &mut Model,
    data: &nrf_data::Dataset,
    cfg: &TrainConfig,
    perturber: Option<&dyn BatchPerturber>,
    eval: Option<(&Tensor, &Tensor)>,
    checkpoint: Option<&Path>,
) -> Result<Vec<EpochReport>> {
    cfg.validate()?;
    if data.is_empty() {
        bail!("training set {} is empty", data.name);
    }
    let device = model.device();
    let mut sgd = Sgd::new(
        model.vs.trainable_variables(),
        cfg.momentum,
        cfg.nesterov,
        cfg.weight_decay,
    );
    let mut history: Vec<EpochReport> = Vec::new();
    let describe = perturber.map(|p| p.describe());
    if let Some(stem) = checkpoint {
        if let Some((meta, tensors)) = load_training::<CheckpointMeta>(stem)? {
            let same = serde_json::to_value(&meta.config)? == serde_json::to_value(cfg)?
                && meta.spec == model.spec
                && meta.train_size == data.len()
                && meta.perturber == describe;
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
                    buf.copy_(src);
                }
                history = meta.history;
                tracing::info!("resuming {} from epoch {}", st.display(), history.len());
            } else {
                tracing::warn!(
                    "checkpoint {} has another configuration; starting afresh",
                    stem.display()
                );
            }
        }
    }
    let (x_all, y_all) = dataset_to_tensors(data, device);
    let n = data.len();
    let bs = cfg.batch_size;
    let steps_per_epoch = n.div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs;
    for epoch in history.len() + 1..=cfg.epochs {
        let start = Instant::now();
        tch::manual_seed((cfg.seed as i64).wrapping_add(epoch as i64 * 1_000_003));
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64 * 7919));
        let order = epoch_order(n, cfg.seed, epoch);
        let pb = progress_bar(
            steps_per_epoch as u64,
            &format!("epoch {epoch}/{}", cfg.epochs),
            cfg.progress,
        );
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0i64, 0usize, 0.0);
        for (b, chunk) in order.chunks(bs).enumerate() {
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device);
            let mut xb = x_all.index_select(0, &idx);
            let yb = y_all.index_select(0, &idx);
            if let Augment::CropFlip { pad } = cfg.augment {
                xb = crop_flip(&xb, pad, &mut rng);
            }
            let step = (epoch - 1) * steps_per_epoch + b;
            lr = cfg.schedule.lr_at(step, total, steps_per_epoch);
            let (loss, c) = train_step(model, &mut sgd, &xb, &yb, lr, perturber)?;
            if !loss.is_finite() {
                bail!("training diverged: loss is {loss} at epoch {epoch}, step {b} (learning rate {lr}); lower the learning rate");
            }
            loss_sum += loss * chunk.len() as f64;
            correct += c;
            seen += chunk.len();
            pb.inc(1);
            if b % 20 == 0 {
                pb.set_message(format!(
                    "loss {:.3} acc {:.3}",
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64
                ));
            }
        }
        pb.finish_and_clear();
        let test_acc = eval.map(|(x, y)| crate::accuracy(model, x, y, 500));
        let report = EpochReport {
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
        history.push(report);
        if let Some(stem) = checkpoint {
            let mut tensors = model_tensors(model);
            tensors.extend(
                sgd.buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (format!("sgd.{i}"), b.shallow_clone())),
            );
            let meta = CheckpointMeta {
                config: cfg.clone(),
                spec: model.spec.clone(),
                train_size: data.len(),
                perturber: describe.clone(),
                history: history.clone(),
            };
            save_training(stem, &tensors, &meta)?;
        }
        if cfg.stop_after.is_some_and(|s| epoch >= s) {
            break;
        }
    }
    Ok(history)
}
