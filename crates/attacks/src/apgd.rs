//! APGD, the step-size-free PGD of AutoAttack (Croce & Hein, ICML 2020, "Reliable evaluation of
//! adversarial robustness with an ensemble of diverse parameter-free attacks"), with the
//! cross-entropy loss (APGD-CE), the difference-of-logits-ratio loss (APGD-DLR) and the targeted
//! DLR loss (APGD-T), for L2 and L∞ threat models; and an ensemble robust evaluation that keeps,
//! per example, the worst case over several attacks.
//!
//! [`apgd`] follows the reference implementations (fra31/auto-attack `autopgd_base.py`,
//! torchattacks `APGD` / `APGDT`) step for step:
//! - the start is a random point on the ball's boundary (L2: a Gaussian direction scaled to eps;
//!   L∞: uniform noise scaled so its largest entry is eps), clamped to `[0, 1]`;
//! - the step size starts at `2 · eps` per example; each step is a steepest-ascent step of that
//!   length, projected, then mixed with the previous displacement (momentum 0.75; none on the
//!   first step) and projected again;
//! - checkpoints after `0.22 · steps` steps, then every `k` steps with `k` shrinking by
//!   `0.03 · steps` down to `0.06 · steps`: where the loss rose in at most `rho · k` of the last
//!   `k` steps, or where neither the step size was halved at the last checkpoint nor the best
//!   loss improved since, the step size is halved and the iterate restarts from the best point;
//! - an example counts as fooled when any iterate (the start included) is misclassified; a
//!   restart (and, for APGD-T, each target class: the 2nd … (targets+1)-th most likely class of
//!   the clean input) attacks only the examples not fooled yet.
//!
//! The threat models supply the steepest-ascent direction and the projection, as for
//! [`crate::pgd()`]; nothing here knows a norm except the boundary start.
use anyhow::{anyhow, bail, Context, Result};
use nrf_data::batch::spans;
use nrf_models::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::eval::robust_evaluation;
use crate::objectives::cross_entropy;
use crate::pgd::{check_objective, map_row_blocks, row_blocks, rows_per_pass, PgdConfig};
use crate::threat::{per_example_norm, per_example_shape, ThreatModel};
use nrf_models::replicas::replica_workers_on;

/// The loss APGD maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApgdLoss {
    /// Per-example cross-entropy of the true label (APGD-CE).
    CrossEntropy,
    /// The difference-of-logits-ratio loss [`dlr_loss`] (APGD-DLR): invariant to a shift and a
    /// positive rescaling of the logits, so a model cannot hide behind their scale.
    Dlr,
    /// The targeted DLR loss [`dlr_loss_targeted`] towards each of the `targets` most likely
    /// wrong classes of the clean input in turn (APGD-T; AutoAttack uses 9).
    DlrTargeted {
        /// Number of target classes (at most the number of classes minus 1).
        targets: usize,
    },
}

impl ApgdLoss {
    fn name(&self) -> String {
        match self {
            ApgdLoss::CrossEntropy => "APGD-CE".into(),
            ApgdLoss::Dlr => "APGD-DLR".into(),
            ApgdLoss::DlrTargeted { targets } => format!("APGD-T({targets} targets)"),
        }
    }
}

/// Configuration of an APGD run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ApgdConfig {
    /// Gradient steps per run (AutoAttack: 100).
    pub steps: usize,
    /// Runs from fresh random starts (per target class for APGD-T), each on the examples not
    /// fooled yet.
    pub restarts: usize,
    /// The loss.
    pub loss: ApgdLoss,
    /// Oscillation threshold of the checkpoints (AutoAttack: 0.75).
    pub rho: f64,
    /// Seed of the random starts (torch's generator is seeded with it, as the references do).
    pub seed: u64,
}

impl ApgdConfig {
    /// `steps` steps of `loss`, one restart, rho 0.75, seed 0.
    pub fn new(loss: ApgdLoss, steps: usize) -> ApgdConfig {
        ApgdConfig {
            steps,
            restarts: 1,
            loss,
            rho: 0.75,
            seed: 0,
        }
    }
    /// The same with `restarts` runs.
    pub fn with_restarts(mut self, restarts: usize) -> ApgdConfig {
        self.restarts = restarts;
        self
    }
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("APGD config: steps must be at least 1");
        }
        if self.restarts == 0 {
            bail!("APGD config: restarts must be at least 1");
        }
        if !(self.rho > 0.0 && self.rho <= 1.0) {
            bail!("APGD config: rho must be in (0, 1], got {}", self.rho);
        }
        if let ApgdLoss::DlrTargeted { targets: 0 } = self.loss {
            bail!("APGD config: targets must be at least 1");
        }
        Ok(())
    }
    /// One-line description, e.g. `"APGD-CE 100 steps x1"`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} steps x{}",
            self.loss.name(),
            self.steps,
            self.restarts
        )
    }
}

/// The result of [`apgd`].
#[derive(Debug)]
pub struct ApgdOutput {
    /// Per example: a misclassified iterate where the attack succeeded (the input itself where
    /// the input is misclassified), else the input.
    pub x: Tensor,
    /// `[N]` bool: misclassified clean or at some iterate of some run.
    pub fooled: Tensor,
}

/// The DLR loss of Croce & Hein: `−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)`, with `z_π1 ≥ z_π2 ≥ …`
/// the sorted logits (+1e-12 in the denominator), shape `[N]`. Needs at least 3 classes.
pub fn dlr_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let c = logits.size()[1];
    let (sorted, ind) = logits.sort(1, false);
    let top = sorted.select(1, c - 1);
    let second = sorted.select(1, c - 2);
    let third = sorted.select(1, c - 3);
    let top_is_y = ind
        .select(1, c - 1)
        .eq_tensor(labels)
        .to_kind(logits.kind());
    let zy = logits
        .gather(1, &labels.view([-1, 1]), false)
        .squeeze_dim(1);
    let best_other = &second * &top_is_y + &top * (top_is_y.neg() + 1.0);
    -(zy - best_other) / (&top - &third + 1e-12)
}

/// The targeted DLR loss: `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)` (+1e-12), shape `[N]`.
/// Needs at least 4 classes.
pub fn dlr_loss_targeted(logits: &Tensor, labels: &Tensor, targets: &Tensor) -> Tensor {
    let c = logits.size()[1];
    let (sorted, _) = logits.sort(1, false);
    let zy = logits
        .gather(1, &labels.view([-1, 1]), false)
        .squeeze_dim(1);
    let zt = logits
        .gather(1, &targets.view([-1, 1]), false)
        .squeeze_dim(1);
    let denom =
        sorted.select(1, c - 1) - sorted.select(1, c - 3) * 0.5 - sorted.select(1, c - 4) * 0.5
            + 1e-12;
    -(zy - zt) / denom
}

/// The random start of the references: a point on the ball's boundary, clamped to `[0, 1]`.
fn boundary_start(threat: &dyn ThreatModel, x: &Tensor) -> Result<Tensor> {
    let eps = threat.eps();
    let shape = per_example_shape(x);
    let start = match threat.name() {
        "L2" => {
            let t = x.randn_like();
            let norm = per_example_norm(&t, 2.0).view(shape.as_slice());
            x + t * eps / (norm + 1e-12)
        }
        "Linf" => {
            let t = x.rand_like() * 2.0 - 1.0;
            let max = per_example_norm(&t, f64::INFINITY).view(shape.as_slice());
            x + t * eps / max
        }
        other => bail!("APGD: {other} threat models are not supported (L2 and Linf are)"),
    };
    Ok(start.clamp(0.0, 1.0))
}

/// Loss `[N]`, its gradient w.r.t. the input, and the logits, all detached. `loss(logits, lo)`
/// gets the logits of rows `lo..lo + len`: the passes run in blocks of [`rows_per_pass`] rows
/// (faster on the CPU; every row's values are the same bit for bit, the loss being per row).
fn loss_and_grad(
    model: &dyn Classifier,
    x: &Tensor,
    loss: &dyn Fn(&Tensor, i64) -> Tensor,
    what: &str,
    step: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = x.size()[0];
    let (mut ls, mut gs, mut zs) = (Vec::new(), Vec::new(), Vec::new());
    for (lo, len) in spans(n, rows_per_pass(x)) {
        let (l, g, z) = tch::with_grad(|| -> Result<(Tensor, Tensor, Tensor)> {
            let xg = x.narrow(0, lo, len).detach().set_requires_grad(true);
            let logits = model.logits(&xg, false);
            let l = loss(&logits, lo);
            check_objective(&l, len, what, step)?;
            let grads = Tensor::f_run_backward(&[&l.sum(Kind::Float)], &[&xg], false, false)
                .map_err(|e| {
                    anyhow!("{what}: the loss is not differentiable w.r.t. the input: {e}")
                })?;
            let grad = grads
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{what}: no gradient returned"))?;
            Ok((l.detach(), grad, logits.detach()))
        })?;
        ls.push(l);
        gs.push(g);
        zs.push(z);
    }
    if ls.len() == 1 {
        return Ok((ls.remove(0), gs.remove(0), zs.remove(0)));
    }
    Ok((
        Tensor::cat(&ls, 0),
        Tensor::cat(&gs, 0),
        Tensor::cat(&zs, 0),
    ))
}

/// One APGD run on `(x, y)` (every row attacked): the start is drawn for all rows here (one
/// random stream, whatever the blocks), then the rows run in blocks ([`row_blocks`]) on the
/// replica workers ([`nrf_models::replicas`]); every row's run is independent of the others.
/// Returns `(x_adv, fooled)` as [`ApgdOutput`] but with the last misclassified iterate (the start
/// where none) for every row.
fn single_run(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &ApgdConfig,
    target_rank: Option<i64>,
    what: &str,
) -> Result<(Tensor, Tensor)> {
    let start = tch::no_grad(|| boundary_start(threat, x))?;
    let workers = replica_workers_on(x.device())?;
    let spans = row_blocks(x.size()[0], rows_per_pass(x), workers);
    if spans.len() <= 1 {
        return block_run(model, x, y, start, threat, cfg, target_rank, what);
    }
    let outs = map_row_blocks(model, [x, y, &start], &spans, workers, |m, [xb, yb, sb]| {
        block_run(m, &xb, &yb, sb, threat, cfg, target_rank, what)
    })?;
    let (advs, fooled): (Vec<Tensor>, Vec<Tensor>) = outs.into_iter().unzip();
    Ok((Tensor::cat(&advs, 0), Tensor::cat(&fooled, 0)))
}

/// [`single_run`] on one block of rows from its drawn `start`.
#[allow(clippy::too_many_arguments)] // single_run's arguments plus the start
fn block_run(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    start: Tensor,
    threat: &dyn ThreatModel,
    cfg: &ApgdConfig,
    target_rank: Option<i64>,
    what: &str,
) -> Result<(Tensor, Tensor)> {
    let steps = cfg.steps;
    let frac = |f: f64| ((f * steps as f64) as usize).max(1);
    let (steps_2, steps_min, size_decr) = (frac(0.22), frac(0.06), frac(0.03));
    let shape = per_example_shape(x);
    let shape = shape.as_slice();
    let targets = match target_rank {
        Some(k) => {
            let c = model.num_classes();
            let clean = tch::no_grad(|| model.logits(x, false));
            Some(clean.argsort(1, false).select(1, c - k))
        }
        None => None,
    };
    let loss = |logits: &Tensor, lo: i64| {
        let len = logits.size()[0];
        let yb = y.narrow(0, lo, len);
        match (cfg.loss, &targets) {
            (ApgdLoss::CrossEntropy, _) => cross_entropy(logits, &yb),
            (ApgdLoss::Dlr, _) => dlr_loss(logits, &yb),
            (ApgdLoss::DlrTargeted { .. }, Some(t)) => {
                dlr_loss_targeted(logits, &yb, &t.narrow(0, lo, len))
            }
            (ApgdLoss::DlrTargeted { .. }, None) => dlr_loss(logits, &yb),
        }
    };

    let mut x_adv = start;
    let mut x_best = x_adv.copy();
    let mut x_best_adv = x_adv.copy();
    let (mut cur, mut grad, logits) = loss_and_grad(model, &x_adv, &loss, what, 0)?;
    let mut robust = logits.argmax(-1, false).eq_tensor(y);
    let mut grad_best = grad.copy();
    let mut loss_best = cur.copy();
    let mut step_size = x.new_full(shape, 2.0 * threat.eps(), (x.kind(), x.device()));
    let mut x_old = x_adv.copy();
    let (mut k, mut since_check) = (steps_2, 0usize);
    let mut loss_best_last_check = loss_best.copy();
    // True at the start, as in the references: the first checkpoint's "no improvement without a
    // reduction" test is then false for every row.
    let mut reduced_last_check = robust.ones_like();
    // The loss after each step; the references read the row before the first one from a
    // zero-initialised history (index -1), so a zero stands in for it.
    let mut history: Vec<Tensor> = Vec::with_capacity(steps);
    for i in 0..steps {
        let a = if i > 0 { 0.75 } else { 1.0 };
        let next = tch::no_grad(|| {
            let momentum = &x_adv - &x_old;
            let direction = threat.step(&x_adv, &grad, 1.0) - &x_adv;
            let z = threat.project(&(&x_adv + &step_size * direction), x);
            threat.project(&(&x_adv + (z - &x_adv) * a + momentum * (1.0 - a)), x)
        });
        x_old = std::mem::replace(&mut x_adv, next);
        let (l, g, logits) = loss_and_grad(model, &x_adv, &loss, what, i + 1)?;
        cur = l;
        grad = g;
        tch::no_grad(|| {
            let correct = logits.argmax(-1, false).eq_tensor(y);
            robust = robust.logical_and(&correct);
            x_best_adv = x_adv.where_self(&correct.logical_not().view(shape), &x_best_adv);
            history.push(cur.copy());
            let improved = cur.gt_tensor(&loss_best);
            let improved_b = improved.view(shape);
            x_best = x_adv.where_self(&improved_b, &x_best);
            grad_best = grad.where_self(&improved_b, &grad_best);
            loss_best = cur.where_self(&improved, &loss_best);
        });
        since_check += 1;
        if since_check == k {
            tch::no_grad(|| {
                let mut rises = cur.zeros_like();
                for back in 0..k {
                    let j = i - back;
                    let prev = if j >= 1 {
                        history[j - 1].shallow_clone()
                    } else {
                        cur.zeros_like()
                    };
                    rises += history[j].gt_tensor(&prev).to_kind(rises.kind());
                }
                let oscillating = rises.le(k as f64 * cfg.rho);
                let no_improvement = reduced_last_check
                    .logical_not()
                    .logical_and(&loss_best_last_check.ge_tensor(&loss_best));
                let reduce = oscillating.logical_or(&no_improvement);
                reduced_last_check = reduce.copy();
                loss_best_last_check = loss_best.copy();
                let reduce_b = reduce.view(shape);
                step_size = (&step_size * 0.5).where_self(&reduce_b, &step_size);
                x_adv = x_best.where_self(&reduce_b, &x_adv);
                grad = grad_best.where_self(&reduce_b, &grad);
            });
            since_check = 0;
            k = k.saturating_sub(size_decr).max(steps_min);
        }
    }
    Ok((x_best_adv, robust.logical_not()))
}

/// APGD on the examples `(x, y)`: see the module documentation. Examples misclassified clean are
/// fooled from the start and not attacked. Errors for unsupported threat models (L2 and L∞ are
/// supported), too few classes for the DLR losses, bad configurations, and a NaN or infinite
/// loss.
pub fn apgd(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &ApgdConfig,
) -> Result<ApgdOutput> {
    let what = format!("{} ({})", cfg.describe(), threat.describe());
    cfg.validate().with_context(|| what.clone())?;
    threat.validate().with_context(|| what.clone())?;
    if !matches!(threat.name(), "L2" | "Linf") {
        bail!(
            "{what}: {} threat models are not supported (L2 and Linf are)",
            threat.name()
        );
    }
    let c = model.num_classes();
    let need = match cfg.loss {
        ApgdLoss::CrossEntropy => 2,
        ApgdLoss::Dlr => 3,
        ApgdLoss::DlrTargeted { targets } => 4.max(targets as i64 + 1),
    };
    if c < need {
        bail!("{what}: needs at least {need} classes, the model has {c}");
    }
    if x.dim() == 0 || x.size()[0] != y.size().first().copied().unwrap_or(-1) {
        bail!(
            "{what}: inputs {:?} and labels {:?} do not match",
            x.size(),
            y.size()
        );
    }
    tch::manual_seed(cfg.seed as i64);
    let x = x.detach();
    let clean_correct = tch::no_grad(|| model.logits(&x, false))
        .argmax(-1, false)
        .eq_tensor(y);
    let mut fooled = clean_correct.logical_not();
    let mut adv = x.copy();
    let runs: Vec<Option<i64>> = match cfg.loss {
        ApgdLoss::DlrTargeted { targets } => (2..targets as i64 + 2)
            .flat_map(|k| std::iter::repeat_n(Some(k), cfg.restarts))
            .collect(),
        _ => vec![None; cfg.restarts],
    };
    for target_rank in runs {
        let todo = fooled.logical_not().nonzero().squeeze_dim(1);
        if todo.numel() == 0 {
            break;
        }
        let xs = x.index_select(0, &todo);
        let ys = y.index_select(0, &todo);
        let (adv_run, fooled_run) = single_run(model, &xs, &ys, threat, cfg, target_rank, &what)?;
        let hit = fooled_run.nonzero().squeeze_dim(1);
        if hit.numel() == 0 {
            continue;
        }
        let idx = todo.index_select(0, &hit);
        fooled = fooled.index_fill(0, &idx, 1i64);
        adv = adv.index_copy(0, &idx, &adv_run.index_select(0, &hit));
    }
    Ok(ApgdOutput { x: adv, fooled })
}

/// One attack of an ensemble evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "attack", rename_all = "snake_case")]
pub enum EnsembleAttack {
    /// Untargeted cross-entropy PGD with the ever-fooled rule ([`robust_evaluation`]).
    Pgd(PgdConfig),
    /// APGD with its loss.
    Apgd(ApgdConfig),
    /// The Square attack (black-box).
    Square(crate::square::SquareConfig),
}

impl EnsembleAttack {
    /// One-line description.
    pub fn describe(&self) -> String {
        match self {
            EnsembleAttack::Pgd(c) => format!("PGD {} steps x{}", c.steps, c.restarts),
            EnsembleAttack::Apgd(c) => c.describe(),
            EnsembleAttack::Square(c) => c.describe(),
        }
    }
}

/// The result of [`ensemble_evaluation`].
#[derive(Debug)]
pub struct EnsembleEval {
    /// Clean accuracy (the share of examples the attacks start from), in `[0, 1]`.
    pub clean_acc: f64,
    /// Robust accuracy under the ensemble (worst case per example), in `[0, 1]`.
    pub acc: f64,
    /// Per example (`[N]`, bool): correct clean and not fooled by any attack.
    pub robust: Tensor,
    /// Per attack, in order: its description and the robust accuracy after it (the running
    /// worst case), so the last entry equals `acc`.
    pub after: Vec<(String, f64)>,
    /// Per attack: its own robust accuracy would need it to see every example; it only sees
    /// those the earlier attacks left, so this is the number it fooled among them.
    pub fooled_by: Vec<usize>,
}

/// Robust accuracy of `model` under the worst case over `attacks`, each run (in order, in
/// batches of `batch_size`) on the examples still robust after the ones before it: an example
/// counts as robust only when it is correct clean and no attack fools it.
pub fn ensemble_evaluation(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    attacks: &[EnsembleAttack],
    batch_size: usize,
) -> Result<EnsembleEval> {
    if attacks.is_empty() {
        bail!("ensemble evaluation: no attacks");
    }
    if batch_size == 0 {
        bail!("ensemble evaluation: batch_size must be at least 1");
    }
    let n = images.size()[0];
    let mut robust = Tensor::zeros([n], (Kind::Bool, images.device()));
    for (lo, len) in spans(n, batch_size as i64) {
        let xb = images.narrow(0, lo, len);
        let yb = labels.narrow(0, lo, len);
        let pred = tch::no_grad(|| model.logits(&xb, false)).argmax(-1, false);
        let ok = pred.eq_tensor(&yb);
        robust = robust.slice_scatter(&ok, 0, lo, lo + len, 1);
    }
    let rate = |r: &Tensor| {
        if n == 0 {
            0.0
        } else {
            r.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
        }
    };
    let clean_acc = rate(&robust);
    let (mut after, mut fooled_by) = (Vec::new(), Vec::new());
    for (k, attack) in attacks.iter().enumerate() {
        let started = std::time::Instant::now();
        let alive = robust.nonzero().squeeze_dim(1);
        let m = alive.numel() as i64;
        let mut still = Vec::new();
        for (lo, len) in spans(m, batch_size as i64) {
            let idx = alive.narrow(0, lo, len);
            let xb = images.index_select(0, &idx);
            let yb = labels.index_select(0, &idx);
            let ok = match attack {
                EnsembleAttack::Pgd(cfg) => {
                    robust_evaluation(model, &xb, &yb, threat, cfg, len as usize, false)?.robust
                }
                EnsembleAttack::Apgd(cfg) => {
                    apgd(model, &xb, &yb, threat, cfg)?.fooled.logical_not()
                }
                EnsembleAttack::Square(cfg) => crate::square::square(model, &xb, &yb, threat, cfg)?
                    .fooled
                    .logical_not(),
            };
            still.push(ok);
        }
        if m > 0 {
            let ok = Tensor::cat(&still, 0);
            let lost = alive.masked_select(&ok.logical_not());
            fooled_by.push(lost.numel());
            robust = robust.index_fill(0, &lost, 0i64);
        } else {
            fooled_by.push(0);
        }
        after.push((attack.describe(), rate(&robust)));
        // Progress: an attack on a large model can take minutes.
        tracing::info!(
            "ensemble attack {}/{}: {} on the {m} examples still robust: {} fooled, {:.4} left, \
             {:.1} s",
            k + 1,
            attacks.len(),
            attack.describe(),
            fooled_by[k],
            rate(&robust),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(EnsembleEval {
        clean_acc,
        acc: rate(&robust),
        robust,
        after,
        fooled_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlr_losses_match_their_definitions() {
        // Logits of two examples over 4 classes.
        let z = Tensor::from_slice(&[3.0f32, 1.0, 0.5, -1.0, 0.0, 2.0, 1.0, 4.0]).view([2, 4]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let d = Vec::<f32>::try_from(dlr_loss(&z, &y)).unwrap();
        // Example 0: y is the top class; -(3 - 1) / (3 - 0.5). Example 1: -(2 - 4) / (4 - 1).
        assert!((d[0] - (-(3.0 - 1.0) / (3.0 - 0.5))).abs() < 1e-5, "{d:?}");
        assert!((d[1] - (2.0 / 3.0)).abs() < 1e-5, "{d:?}");
        let t = Tensor::from_slice(&[2i64, 3]);
        let dt = Vec::<f32>::try_from(dlr_loss_targeted(&z, &y, &t)).unwrap();
        // Example 0: -(3 - 0.5) / (3 - (0.5 - 1) / 2). Example 1: -(2 - 4) / (4 - (1 + 0) / 2).
        assert!((dt[0] - (-(2.5) / (3.0 + 0.25))).abs() < 1e-5, "{dt:?}");
        assert!((dt[1] - (2.0 / 3.5)).abs() < 1e-5, "{dt:?}");
        // Invariant to shifting and positively scaling the logits.
        let d2 = Vec::<f32>::try_from(dlr_loss(&(&z * 7.0 + 3.0), &y)).unwrap();
        assert!(d.iter().zip(&d2).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn configs_are_validated_by_field() {
        let bad = |c: ApgdConfig| format!("{:#}", c.validate().unwrap_err());
        assert!(bad(ApgdConfig::new(ApgdLoss::CrossEntropy, 0)).contains("steps"));
        assert!(bad(ApgdConfig::new(ApgdLoss::Dlr, 10).with_restarts(0)).contains("restarts"));
        assert!(bad(ApgdConfig::new(ApgdLoss::DlrTargeted { targets: 0 }, 10)).contains("targets"));
        let mut c = ApgdConfig::new(ApgdLoss::Dlr, 10);
        c.rho = 1.5;
        assert!(bad(c).contains("rho"));
    }
}
