//! Cross-entropy attacks on classifiers and the adversarial-training hook.

use anyhow::{bail, Context, Result};
use nrf_models::{BatchPerturber, Classifier};
use tch::{Kind, Tensor};

use crate::objectives::{targeted_ce, untargeted_ce};
use crate::pgd::{
    first_iterate, map_row_blocks, pgd, pgd_from_first, row_blocks, rows_per_pass, PgdConfig,
    StepSize,
};
use crate::threat::{ThreatModel, L2};
use nrf_models::replicas::replica_workers_on;

/// Checks that `labels` are int64 class indices `[N]` in `0..num_classes` matching `x`'s batch.
pub(crate) fn check_labels(
    what: &str,
    x: &Tensor,
    labels: &Tensor,
    num_classes: i64,
) -> Result<()> {
    if x.dim() == 0 {
        bail!("{what}: inputs need a batch dimension, got a scalar");
    }
    let n = x.size()[0];
    if labels.size() != [n] {
        bail!(
            "{what}: expected {n} labels (shape [{n}]), got shape {:?}",
            labels.size()
        );
    }
    if labels.kind() != Kind::Int64 {
        bail!("{what}: labels must be int64, got {:?}", labels.kind());
    }
    if n > 0 {
        let (lo, hi) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
        if lo < 0 || hi >= num_classes {
            bail!("{what}: labels must be in 0..{num_classes}, found values in {lo}..={hi}");
        }
    }
    Ok(())
}

/// Checks that `x` is a floating-point batch in `[0, 1]` without NaNs.
pub(crate) fn check_images(what: &str, x: &Tensor) -> Result<()> {
    if !matches!(
        x.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        bail!("{what}: inputs must be floating point, got {:?}", x.kind());
    }
    if x.numel() == 0 {
        return Ok(());
    }
    if x.isnan().any().int64_value(&[]) != 0 {
        bail!("{what}: inputs contain NaN");
    }
    let (lo, hi) = (x.min().double_value(&[]), x.max().double_value(&[]));
    if lo < 0.0 || hi > 1.0 {
        bail!("{what}: inputs must lie in [0, 1], found values in [{lo}, {hi}]");
    }
    Ok(())
}

/// Cross-entropy PGD attack on `model` around `x` (true labels `y`).
///
/// Untargeted (`target = None`): maximises the cross-entropy of `y`. Targeted: minimises the
/// cross-entropy of `target`. Returns the adversarial inputs (same shape as `x`), detached.
///
/// With one restart the rows run in blocks ([`row_blocks`]) on the replica workers
/// ([`nrf_models::replicas`]), the first iterate (the random start) drawn for all rows first:
/// every row's result is the one a single call on all rows gives (bit for bit on CPU at one
/// thread per worker), and the random stream is used as by one call.
pub fn pgd_attack(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    target: Option<&Tensor>,
) -> Result<Tensor> {
    let what = format!(
        "{} PGD attack ({}, {})",
        if target.is_some() {
            "targeted"
        } else {
            "untargeted"
        },
        threat.describe(),
        cfg.describe()
    );
    check_images(&what, x)?;
    check_labels(&what, x, y, model.num_classes())?;
    if x.size()[0] == 0 {
        return Ok(x.detach());
    }
    if let Some(t) = target {
        check_labels(&format!("{what} target"), x, t, model.num_classes())?;
    }
    let workers = replica_workers_on(x.device())?;
    let spans = row_blocks(x.size()[0], rows_per_pass(x), workers);
    if spans.len() <= 1 || cfg.restarts != 1 {
        let out = match target {
            None => pgd(threat, x, x, cfg, &mut untargeted_ce(model, y), None),
            Some(t) => pgd(threat, x, x, cfg, &mut targeted_ce(model, t), None),
        }?;
        return Ok(out.x);
    }
    threat.validate().with_context(|| what.clone())?;
    cfg.validate().with_context(|| what.clone())?;
    let first = first_iterate(threat, x, x, cfg);
    let (labels, targeted) = (target.unwrap_or(y), target.is_some());
    let outs = map_row_blocks(
        model,
        [x, labels, &first],
        &spans,
        workers,
        |m, [xb, lb, fb]| {
            let out = if targeted {
                pgd_from_first(threat, &xb, &fb, cfg, &mut targeted_ce(m, &lb), None)
            } else {
                pgd_from_first(threat, &xb, &fb, cfg, &mut untargeted_ce(m, &lb), None)
            }?;
            Ok(out.x)
        },
    )?;
    Ok(Tensor::cat(&outs, 0))
}

/// Fast gradient (sign) method: one untargeted cross-entropy step of size `eps` in the threat
/// model's steepest-ascent direction, from `x` itself (FGSM for [`Linf`](crate::Linf), the fast
/// gradient L2 method for [`L2`]). Errors for an infinite `eps`.
pub fn fgsm(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
) -> Result<Tensor> {
    let eps = threat.eps();
    if !eps.is_finite() {
        bail!("FGSM ({}): needs a finite eps", threat.describe());
    }
    let cfg = PgdConfig::new(1, eps).with_use_best(false);
    pgd_attack(model, x, y, threat, &cfg, None).context("FGSM")
}

/// Adversarial training hook: replaces each training batch by untargeted cross-entropy PGD
/// examples (the model is attacked in evaluation mode, `train = false`).
#[derive(Debug)]
pub struct AdvTraining {
    /// The threat model.
    pub threat: Box<dyn ThreatModel>,
    /// The attack.
    pub cfg: PgdConfig,
}

impl AdvTraining {
    /// An adversarial-training hook; errors for invalid threat models or configurations.
    pub fn new(threat: Box<dyn ThreatModel>, cfg: PgdConfig) -> Result<AdvTraining> {
        threat.validate()?;
        cfg.validate()?;
        Ok(AdvTraining { threat, cfg })
    }
    /// Madry-style L2 adversarial training: `steps` steps of `2.5 · eps / steps`, random start,
    /// highest-loss iterate kept.
    pub fn l2(eps: f64, steps: usize) -> Result<AdvTraining> {
        if steps == 0 {
            bail!("L2 adversarial training: steps must be at least 1");
        }
        let cfg = PgdConfig::new(steps, 2.5 * eps / steps as f64)
            .with_step_size(StepSize::Constant(2.5 * eps / steps as f64))
            .with_random_start(true)
            .with_use_best(true);
        AdvTraining::new(Box::new(L2::new(eps)?), cfg)
    }
}

impl BatchPerturber for AdvTraining {
    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        pgd_attack(model, x, y, self.threat.as_ref(), &self.cfg, None)
            .context("adversarial training")
    }
    fn describe(&self) -> String {
        format!("{} PGD {}", self.threat.describe(), self.cfg.describe())
    }
}
