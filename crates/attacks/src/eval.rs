//! Standard and robust accuracy, evaluation grids and gradient-masking sanity checks.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nrf_models::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{check_images, check_labels};
use crate::objectives::{cross_entropy, margin};
use crate::pgd::{pgd, PgdConfig, StepSize};
use crate::threat::{flat, ThreatModel, Unconstrained};

fn check_batch_size(what: &str, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        bail!("{what}: batch_size must be at least 1");
    }
    Ok(())
}

/// Standard accuracy of `model` on `(images, labels)` in batches (evaluation mode, no gradients).
/// `images` must be in `[0, 1]` and on the model's device; returns 0 for an empty set. This is
/// [`nrf_models::accuracy`] with its inputs checked (clear errors instead of libtorch panics).
pub fn accuracy(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    batch_size: usize,
) -> Result<f64> {
    let what = "accuracy";
    check_batch_size(what, batch_size)?;
    check_images(what, images)?;
    check_labels(what, images, labels, model.num_classes())?;
    Ok(nrf_models::accuracy(
        model,
        images,
        labels,
        batch_size as i64,
    ))
}

fn progress_bar(n: u64, msg: String, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} images ({per_sec}, elapsed {elapsed}, ETA {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// Robust accuracy under untargeted cross-entropy PGD.
///
/// An example counts as robust only if it is classified correctly at the clean input and at
/// **every** PGD iterate (the random start included): it is fooled as soon as any of them is
/// misclassified. Only clean-correct examples are attacked. Runs in batches of `batch_size`,
/// with a progress bar (rate, ETA) when `progress` is true. `images` (`[N, ...]` in `[0, 1]`)
/// and `labels` (`[N]`, int64) must be on the model's device.
pub fn robust_accuracy(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch_size: usize,
    progress: bool,
) -> Result<f64> {
    robust_accuracy_with(
        model,
        images,
        labels,
        threat,
        cfg,
        batch_size,
        progress,
        Loss::CrossEntropy,
    )
}

/// The loss an evaluation attack maximises.
#[derive(Debug, Clone, Copy)]
enum Loss {
    CrossEntropy,
    /// The margin loss does not saturate far from the decision boundary.
    Margin,
}

#[allow(clippy::too_many_arguments)]
fn robust_accuracy_with(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch_size: usize,
    progress: bool,
    loss: Loss,
) -> Result<f64> {
    let what = format!(
        "robust accuracy ({}, PGD {})",
        threat.describe(),
        cfg.describe()
    );
    check_batch_size(&what, batch_size)?;
    check_images(&what, images)?;
    check_labels(&what, images, labels, model.num_classes())?;
    threat.validate().with_context(|| what.clone())?;
    cfg.validate().with_context(|| what.clone())?;
    let n = images.size()[0];
    let pb = progress_bar(n as u64, what.clone(), progress);
    let mut robust = 0i64;
    let mut i = 0;
    while i < n {
        let len = (batch_size as i64).min(n - i);
        let xb = images.narrow(0, i, len);
        let yb = labels.narrow(0, i, len);
        let clean_ok = tch::no_grad(|| model.logits(&xb, false).argmax(-1, false).eq_tensor(&yb));
        let idx = clean_ok.nonzero().squeeze_dim(1);
        if idx.size()[0] > 0 {
            let xa = xb.index_select(0, &idx);
            let ya = yb.index_select(0, &idx);
            // The objective sees every iterate: record misclassification there (no extra forward).
            let mut alive = ya.ones_like().to_kind(Kind::Bool);
            {
                let mut objective = |x: &Tensor| {
                    let logits = model.logits(x, false);
                    let ok = logits.detach().argmax(-1, false).eq_tensor(&ya);
                    alive = alive.logical_and(&ok);
                    match loss {
                        Loss::CrossEntropy => cross_entropy(&logits, &ya),
                        Loss::Margin => margin(&logits, &ya),
                    }
                };
                pgd(threat, &xa, &xa, cfg, &mut objective, None).with_context(|| what.clone())?;
            }
            robust += alive.sum(Kind::Int64).int64_value(&[]);
        }
        i += len;
        pb.inc(len as u64);
        pb.set_message(format!("{what} acc {:.4}", robust as f64 / i as f64));
    }
    pb.finish_and_clear();
    Ok(if n == 0 {
        0.0
    } else {
        robust as f64 / n as f64
    })
}

/// One point of a robustness evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustEval {
    /// Threat model name (`"L2"`, `"Linf"`, ...).
    pub norm: String,
    /// Radius.
    pub eps: f64,
    /// PGD steps.
    pub steps: usize,
    /// Robust accuracy in `[0, 1]`.
    pub acc: f64,
    /// Number of evaluated examples.
    pub n: usize,
}

/// [`robust_accuracy`] for every `(threat model, attack)` of `grid`, in order.
pub fn evaluate_grid(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    grid: &[(Box<dyn ThreatModel>, PgdConfig)],
    batch_size: usize,
    progress: bool,
) -> Result<Vec<RobustEval>> {
    let n = if images.dim() == 0 {
        0
    } else {
        images.size()[0] as usize
    };
    grid.iter()
        .map(|(threat, cfg)| {
            let acc = robust_accuracy(
                model,
                images,
                labels,
                threat.as_ref(),
                cfg,
                batch_size,
                progress,
            )?;
            tracing::info!(
                norm = threat.name(),
                eps = threat.eps(),
                steps = cfg.steps,
                acc,
                "robust accuracy"
            );
            Ok(RobustEval {
                norm: threat.name().to_string(),
                eps: threat.eps(),
                steps: cfg.steps,
                acc,
                n,
            })
        })
        .collect()
}

/// Allowed rise of robust accuracy with eps before [`sanity_check`] warns: one example, and at
/// least half a percentage point.
fn rise_tolerance(n: usize) -> f64 {
    (1.0 / n.max(1) as f64).max(0.005)
}

/// Gradient-masking warnings for a set of evaluations: robust accuracy that rises with eps for
/// the same norm (by more than one example and half a percentage point), and unbounded attacks
/// (`eps = ∞`) that leave more than 5% accuracy. Empty when nothing looks wrong.
pub fn sanity_check(evals: &[RobustEval]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut norms: Vec<&str> = Vec::new();
    for e in evals {
        if !norms.contains(&e.norm.as_str()) {
            norms.push(&e.norm);
        }
        if e.eps.is_infinite() && e.acc > 0.05 {
            warnings.push(format!(
                "{} attack with unbounded eps leaves {:.1}% accuracy ({} steps): gradient masking or a too weak attack",
                e.norm,
                100.0 * e.acc,
                e.steps
            ));
        }
    }
    for norm in norms {
        let mut group: Vec<&RobustEval> = evals.iter().filter(|e| e.norm == norm).collect();
        group.sort_by(|a, b| a.eps.total_cmp(&b.eps));
        for w in group.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            if hi.eps > lo.eps && hi.acc > lo.acc + rise_tolerance(lo.n.min(hi.n)) {
                warnings.push(format!(
                    "{norm}: robust accuracy rises with eps ({:.2}% at eps={} -> {:.2}% at eps={}): gradient masking or a too weak attack",
                    100.0 * lo.acc,
                    lo.eps,
                    100.0 * hi.acc,
                    hi.eps
                ));
            }
        }
    }
    warnings
}

/// Accuracy under an unbounded attack ([`Unconstrained`]: only the `[0, 1]` box): untargeted
/// margin loss ([`margin`](crate::margin), which unlike cross-entropy does not saturate far from
/// the boundary), `steps` normalised-gradient steps cosine-decayed from `0.1·√d` to `0.001·√d`
/// (d = input size; the box diameter is `√d`), no random start. Any classifier that is not
/// constant on the box should end near 0; a clearly positive value points to gradient masking.
pub fn unbounded_attack_accuracy(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    steps: usize,
    batch_size: usize,
) -> Result<f64> {
    if steps == 0 {
        bail!("unbounded attack: steps must be at least 1");
    }
    if images.dim() == 0 {
        bail!("unbounded attack: inputs need a batch dimension, got a scalar");
    }
    let d = if images.size()[0] == 0 {
        1
    } else {
        flat(images).size()[1]
    };
    let diameter = (d as f64).sqrt();
    let cfg = PgdConfig::new(steps, 0.0)
        .with_step_size(StepSize::Cosine {
            start: 0.1 * diameter,
            end: 0.001 * diameter,
        })
        .with_use_best(false);
    robust_accuracy_with(
        model,
        images,
        labels,
        &Unconstrained,
        &cfg,
        batch_size,
        false,
        Loss::Margin,
    )
}
