//! Standard and robust accuracy, evaluation grids and gradient-masking sanity checks.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nrf_data::batch::spans;
use nrf_models::Classifier;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use tch::{Kind, Tensor};

use crate::attack::{check_images, check_labels};
use crate::objectives::{cross_entropy, margin};
use crate::pgd::{
    check_grad, check_objective, first_iterate, logits_by_rows, map_row_blocks, row_blocks,
    rows_per_pass, value_and_grad_by_rows, PgdConfig, StepSize,
};
use crate::threat::{flat, ThreatModel, Unconstrained};
use nrf_models::replicas::replica_workers_on;

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
/// misclassified. Only clean-correct examples are attacked, and an example is attacked only
/// until it is fooled (see [`robust_evaluation`]). Runs in batches of `batch_size`, with a
/// progress bar (rate, ETA) when `progress` is true. `images` (`[N, ...]` in `[0, 1]`) and
/// `labels` (`[N]`, int64) must be on the model's device.
pub fn robust_accuracy(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch_size: usize,
    progress: bool,
) -> Result<f64> {
    robust_evaluation(model, images, labels, threat, cfg, batch_size, progress).map(|r| r.acc)
}

/// The loss an evaluation attack maximises.
#[derive(Debug, Clone, Copy)]
enum Loss {
    CrossEntropy,
    /// The margin loss does not saturate far from the decision boundary.
    Margin,
}

impl Loss {
    fn of(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        match self {
            Loss::CrossEntropy => cross_entropy(logits, labels),
            Loss::Margin => margin(logits, labels),
        }
    }
}

/// Work done by the attack of a robust evaluation, counted in example rows pushed through the
/// model (one row = one image through one forward, or one backward, pass), next to what the
/// full-batch loop (every clean-correct example attacked for every step of every restart) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackWork {
    /// Clean-correct examples, i.e. the examples attacked.
    pub attacked: u64,
    /// Forward rows of the attack (clean pass excluded).
    pub forward_rows: u64,
    /// Backward (input-gradient) rows of the attack.
    pub backward_rows: u64,
    /// Forward rows the full-batch loop does: `attacked · restarts · (steps + 1)`.
    pub full_forward_rows: u64,
    /// Backward rows the full-batch loop does: `attacked · restarts · steps`.
    pub full_backward_rows: u64,
}

impl AttackWork {
    /// Adds `other`'s counts to `self`.
    pub fn add(&mut self, other: &AttackWork) {
        self.attacked += other.attacked;
        self.forward_rows += other.forward_rows;
        self.backward_rows += other.backward_rows;
        self.full_forward_rows += other.full_forward_rows;
        self.full_backward_rows += other.full_backward_rows;
    }
    /// Forward + backward rows done, as a fraction of the full-batch loop's (1 when nothing was
    /// attacked). A backward row costs about twice a forward row, so the time saved is close to
    /// the saving in `forward_rows + 2 · backward_rows`, which this weights accordingly.
    pub fn fraction_of_full(&self) -> f64 {
        let done = self.forward_rows + 2 * self.backward_rows;
        let full = self.full_forward_rows + 2 * self.full_backward_rows;
        if full == 0 {
            1.0
        } else {
            done as f64 / full as f64
        }
    }
}

/// The result of [`robust_evaluation`].
#[derive(Debug)]
pub struct RobustOutcome {
    /// Robust accuracy in `[0, 1]` (0 for an empty set).
    pub acc: f64,
    /// Per example (`[N]`, bool, on the inputs' device): correct clean and at every iterate.
    pub robust: Tensor,
    /// The attack's work.
    pub work: AttackWork,
}

/// [`robust_accuracy`] with the per-example outcome and the work done.
///
/// Each batch's clean-correct examples are attacked together; after every forward pass the
/// examples misclassified there are fooled for good (the ever-fooled rule) and are dropped from
/// the batch, so later steps run on the still-robust rows only. Every row's iterates are exactly
/// those of the full-batch loop: the threat models' steps, projections and norms are per example,
/// and each restart's random start is drawn for the whole batch (then the surviving rows are
/// kept), so the random number stream is used as before and later batches see the same starts.
/// A NaN or infinite objective or gradient is an error, as in [`pgd`](crate::pgd()), on the rows
/// still attacked.
pub fn robust_evaluation(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch_size: usize,
    progress: bool,
) -> Result<RobustOutcome> {
    robust_accuracy_with(
        model,
        images,
        labels,
        threat,
        cfg,
        batch_size,
        progress,
        Loss::CrossEntropy,
        None,
    )
}

/// Attacks the clean-correct rows `(xa, ya)` until each is fooled; returns the indices (into
/// `xa`, int64) of the rows never fooled, and adds the work to `work`.
///
/// Each restart's start is drawn here for the whole batch; then the rows still alive run their
/// steps in one block per replica worker ([`nrf_models::replicas`]; one block on one worker), a
/// row's iterates depending on its own row only.
#[allow(clippy::too_many_arguments)]
fn attack_until_fooled(
    model: &dyn Classifier,
    xa: &Tensor,
    ya: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    loss: Loss,
    what: &str,
    work: &mut AttackWork,
) -> Result<Tensor> {
    let m = xa.size()[0];
    let (restarts, steps) = (cfg.restarts as u64, cfg.steps as u64);
    work.attacked += m as u64;
    work.full_forward_rows += m as u64 * restarts * (steps + 1);
    work.full_backward_rows += m as u64 * restarts * steps;
    let workers = replica_workers_on(xa.device())?;
    // Indices into xa of the rows not fooled yet.
    let mut alive = Tensor::arange(m, (Kind::Int64, xa.device()));
    for _run in 0..cfg.restarts {
        // As in `pgd`: the (random) start of the whole batch, so the RNG use does not depend on
        // how many rows are left.
        let start = first_iterate(threat, xa, xa, cfg);
        let k = alive.size()[0];
        if k == 0 {
            continue;
        }
        let rows: [Tensor; 3] = if k == m {
            [start, xa.shallow_clone(), ya.shallow_clone()]
        } else {
            [&start, xa, ya].map(|t| t.index_select(0, &alive))
        };
        // One block per worker (no cap on a block's rows: within a block the passes are split
        // into `rows_per_pass` rows anyway, over the rows still alive).
        let spans = row_blocks(k, k, workers);
        let outs = map_row_blocks(model, rows.each_ref(), &spans, workers, |m, [x, c, y]| {
            steps_until_fooled(m, x, c, y, threat, cfg, loss, what)
        })?;
        let mut kept = Vec::with_capacity(outs.len());
        for (&(lo, _), (keep, forward_rows, backward_rows)) in spans.iter().zip(outs) {
            kept.push(keep + lo);
            work.forward_rows += forward_rows;
            work.backward_rows += backward_rows;
        }
        alive = alive.index_select(0, &Tensor::cat(&kept, 0));
    }
    Ok(alive)
}

/// One restart of [`attack_until_fooled`] on rows `x` (the start) around `center` with labels
/// `y`: returns the indices (into these rows) of the rows at no iterate misclassified, and the
/// forward and backward rows computed.
#[allow(clippy::too_many_arguments)]
fn steps_until_fooled(
    model: &dyn Classifier,
    mut x: Tensor,
    mut center: Tensor,
    mut y: Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    loss: Loss,
    what: &str,
) -> Result<(Tensor, u64, u64)> {
    let mut k = x.size()[0];
    let mut alive = Tensor::arange(k, (Kind::Int64, x.device()));
    let (mut forward_rows, mut backward_rows) = (0u64, 0u64);
    for t in 0..=cfg.steps {
        // Forward (and, before the last iterate, the input gradient) on the alive rows; the
        // rows misclassified at this iterate are fooled.
        let mut correct: Option<Tensor> = None;
        let grad = if t < cfg.steps {
            // In blocks of `rows_per_pass` rows: the same values, faster on the CPU.
            let mut parts = Vec::new();
            let mut objective = |lo: i64, z: &Tensor| {
                let yb = y.narrow(0, lo, z.size()[0]);
                let logits = model.logits(z, false);
                parts.push(logits.detach().argmax(-1, false).eq_tensor(&yb));
                loss.of(&logits, &yb)
            };
            let (obj, grad) = value_and_grad_by_rows(&mut objective, &x, rows_per_pass(&x), what)?;
            correct = Some(Tensor::cat(&parts, 0));
            check_objective(&obj, k, what, t)?;
            check_grad(&grad, what, t)?;
            forward_rows += k as u64;
            backward_rows += k as u64;
            Some(grad)
        } else {
            let obj = tch::no_grad(|| {
                let logits = logits_by_rows(model, &x);
                correct = Some(logits.argmax(-1, false).eq_tensor(&y));
                loss.of(&logits, &y)
            });
            check_objective(&obj, k, what, t)?;
            forward_rows += k as u64;
            None
        };
        let correct =
            correct.ok_or_else(|| anyhow!("{what}: the model was not run at iterate {t}"))?;
        let keep = correct.nonzero().squeeze_dim(1);
        let kept = keep.size()[0];
        if kept == 0 {
            alive = alive.narrow(0, 0, 0);
            break;
        }
        let grad = match grad {
            Some(g) if kept < k => {
                alive = alive.index_select(0, &keep);
                x = x.index_select(0, &keep);
                center = center.index_select(0, &keep);
                y = y.index_select(0, &keep);
                k = kept;
                g.index_select(0, &keep)
            }
            Some(g) => g,
            None => {
                if kept < k {
                    alive = alive.index_select(0, &keep);
                }
                break;
            }
        };
        let lr = cfg.step_size.at(t, cfg.steps);
        x = tch::no_grad(|| threat.project(&threat.step(&x, &grad, lr), &center));
    }
    Ok((alive, forward_rows, backward_rows))
}

/// The robust evaluation of every batch of `batch_size` rows, or, with `only`, of the batches
/// `only` (the outcome then covers their rows only; see [`evaluate_grid_slice`]).
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
    only: Option<Range<usize>>,
) -> Result<RobustOutcome> {
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
    let rows = match &only {
        Some(b) => batch_rows(n as usize, batch_size, b.clone()),
        None => 0..n as usize,
    };
    let pb = progress_bar(rows.len() as u64, what.clone(), progress);
    let mut work = AttackWork::default();
    let mut robust_parts = Vec::new();
    let mut robust = 0i64;
    let mut done = 0;
    for (batch, (i, len)) in spans(n, batch_size as i64).enumerate() {
        let attacked = only.as_ref().is_none_or(|b| b.contains(&batch));
        if !attacked && cfg.random_start {
            // Replay: the random starts this batch's attack would draw, so the random-number
            // stream reaches the attacked batches (of this grid point and the next ones) in the
            // state of a whole-set evaluation.
            let xb = images.narrow(0, i, len);
            let yb = labels.narrow(0, i, len);
            let idx = tch::no_grad(|| {
                logits_by_rows(model, &xb)
                    .argmax(-1, false)
                    .eq_tensor(&yb)
                    .nonzero()
                    .squeeze_dim(1)
            });
            if idx.size()[0] > 0 {
                let xa = xb.index_select(0, &idx);
                for _ in 0..cfg.restarts {
                    let _ = tch::no_grad(|| threat.project(&threat.random_start(&xa), &xa));
                }
            }
        }
        if attacked {
            let xb = images.narrow(0, i, len);
            let yb = labels.narrow(0, i, len);
            let clean_ok =
                tch::no_grad(|| logits_by_rows(model, &xb).argmax(-1, false).eq_tensor(&yb));
            let idx = clean_ok.nonzero().squeeze_dim(1);
            let mut mask = clean_ok.zeros_like();
            if idx.size()[0] > 0 {
                let xa = xb.index_select(0, &idx);
                let ya = yb.index_select(0, &idx);
                let alive =
                    attack_until_fooled(model, &xa, &ya, threat, cfg, loss, &what, &mut work)
                        .with_context(|| what.clone())?;
                let survivors = idx.index_select(0, &alive);
                robust += survivors.size()[0];
                let _ = mask.index_fill_(0, &survivors, 1);
            }
            robust_parts.push(mask);
            done += len;
            pb.inc(len as u64);
            pb.set_message(format!("{what} acc {:.4}", robust as f64 / done as f64));
        }
    }
    pb.finish_and_clear();
    let n = done;
    let robust_mask = if robust_parts.is_empty() {
        Tensor::zeros([0], (Kind::Bool, images.device()))
    } else {
        Tensor::cat(&robust_parts, 0)
    };
    Ok(RobustOutcome {
        acc: if n == 0 {
            0.0
        } else {
            robust as f64 / n as f64
        },
        robust: robust_mask,
        work,
    })
}

/// One point of a robustness evaluation: the results schema's type, written to
/// `models/<name>.json` as it is (`attack` is None for PGD).
pub use nrf_results::RobustPoint;

/// The rows `[lo, hi)` of the batches `batches` when `n` rows are cut into batches of
/// `batch_size` (clamped to `n`).
pub fn batch_rows(n: usize, batch_size: usize, batches: Range<usize>) -> Range<usize> {
    let at = |b: usize| b.saturating_mul(batch_size).min(n);
    at(batches.start)..at(batches.end.max(batches.start))
}

/// One shard's part of [`evaluate_grid`]: for every grid point in order, the per-example robust
/// mask (`[rows]`, bool) of the rows of the batches `batches` (batches of `batch_size` rows of
/// `images`; the rows are [`batch_rows`]). The masks equal the same rows of a whole-set
/// evaluation's ([`RobustOutcome::robust`]) bit for bit on CPU: the batches before the slice are
/// not attacked but replayed (one forward pass finds their clean-correct rows, and the random
/// starts their attack would draw are drawn), so torch's random-number stream reaches every
/// attacked batch in the state it has in the whole-set evaluation; the batches after it are
/// replayed too, for the grid points that follow. Seed torch's generator as for the whole-set
/// evaluation first. The robust accuracy of the whole set is the number of robust rows over
/// all slices divided by the number of rows, as [`evaluate_grid`] computes it.
pub fn evaluate_grid_slice(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    grid: &[(Box<dyn ThreatModel>, PgdConfig)],
    batch_size: usize,
    batches: Range<usize>,
    progress: bool,
) -> Result<Vec<Tensor>> {
    grid.iter()
        .map(|(threat, cfg)| {
            let out = robust_accuracy_with(
                model,
                images,
                labels,
                threat.as_ref(),
                cfg,
                batch_size,
                progress,
                Loss::CrossEntropy,
                Some(batches.clone()),
            )?;
            Ok(out.robust)
        })
        .collect()
}

/// [`robust_accuracy`] for every `(threat model, attack)` of `grid`, in order.
pub fn evaluate_grid(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    grid: &[(Box<dyn ThreatModel>, PgdConfig)],
    batch_size: usize,
    progress: bool,
) -> Result<Vec<RobustPoint>> {
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
            Ok(RobustPoint {
                norm: threat.name().to_string(),
                eps: threat.eps(),
                acc,
                steps: cfg.steps,
                n,
                attack: None,
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
pub fn sanity_check(evals: &[RobustPoint]) -> Vec<String> {
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
        let mut group: Vec<&RobustPoint> = evals.iter().filter(|e| e.norm == norm).collect();
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
/// margin loss ([`crate::margin`], which unlike cross-entropy does not saturate far from
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
        None,
    )
    .map(|r| r.acc)
}
