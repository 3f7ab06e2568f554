//! Projected gradient ascent on an arbitrary differentiable per-example objective.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::threat::{per_example_shape, ThreatModel};

/// A per-example objective to maximise: inputs `[N, ...]` to values `[N]`.
pub type Objective<'a> = dyn FnMut(&Tensor) -> Tensor + 'a;

/// Called with `(iterate index, iterate)` for every PGD iterate.
pub type IterateHook<'a> = dyn FnMut(usize, &Tensor) + 'a;

/// Step size schedule of a PGD run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepSize {
    /// The same step size at every step.
    Constant(f64),
    /// Cosine decay from `start` (first step) to `end` (last step).
    Cosine {
        /// Step size of the first step.
        start: f64,
        /// Step size of the last step.
        end: f64,
    },
}

impl StepSize {
    /// Step size of step `step` (0-based) out of `steps`.
    pub fn at(&self, step: usize, steps: usize) -> f64 {
        match *self {
            StepSize::Constant(s) => s,
            StepSize::Cosine { start, end } => {
                if steps <= 1 {
                    return start;
                }
                let t = step.min(steps - 1) as f64 / (steps - 1) as f64;
                end + (start - end) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
    /// Checks that all step sizes are finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        let ok = |s: f64| s.is_finite() && s >= 0.0;
        match *self {
            StepSize::Constant(s) if !ok(s) => {
                bail!("PGD config: step size must be finite and non-negative, got {s}")
            }
            StepSize::Cosine { start, end } if !ok(start) || !ok(end) => bail!(
                "PGD config: cosine step sizes must be finite and non-negative, got {start} -> {end}"
            ),
            _ => Ok(()),
        }
    }
    fn describe(&self) -> String {
        match *self {
            StepSize::Constant(s) => short(s),
            StepSize::Cosine { start, end } => format!("cos({}->{})", short(start), short(end)),
        }
    }
}

/// `v` with at most four decimals and no trailing zeros, e.g. 0.357142… -> "0.3571", 1.0 -> "1".
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.4}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Configuration of a PGD run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PgdConfig {
    /// Number of gradient steps per restart.
    pub steps: usize,
    /// Step size schedule.
    pub step_size: StepSize,
    /// Start each restart from [`ThreatModel::random_start`] around the start point (otherwise
    /// from the start point itself).
    pub random_start: bool,
    /// Number of independent runs (at least 1); the per-example best final point is kept.
    pub restarts: usize,
    /// Return the per-example best iterate (the start point included) instead of the last one.
    pub use_best: bool,
}

impl PgdConfig {
    /// `steps` constant steps of `step_size`, no random start, one run, best iterate kept.
    pub fn new(steps: usize, step_size: f64) -> PgdConfig {
        PgdConfig {
            steps,
            step_size: StepSize::Constant(step_size),
            random_start: false,
            restarts: 1,
            use_best: true,
        }
    }
    /// The usual evaluation attack (MadryLab/robustness README): `steps` steps of
    /// `2.5 · eps / steps`, random start, last iterate.
    pub fn eval(eps: f64, steps: usize) -> PgdConfig {
        PgdConfig {
            steps,
            step_size: StepSize::Constant(if steps == 0 {
                0.0
            } else {
                2.5 * eps / steps as f64
            }),
            random_start: true,
            restarts: 1,
            use_best: false,
        }
    }
    /// Sets the step size schedule.
    pub fn with_step_size(mut self, step_size: StepSize) -> Self {
        self.step_size = step_size;
        self
    }
    /// Sets `random_start`.
    pub fn with_random_start(mut self, random_start: bool) -> Self {
        self.random_start = random_start;
        self
    }
    /// Sets `restarts`.
    pub fn with_restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }
    /// Sets `use_best`.
    pub fn with_use_best(mut self, use_best: bool) -> Self {
        self.use_best = use_best;
        self
    }
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.restarts == 0 {
            bail!("PGD config: restarts must be at least 1");
        }
        if self.steps == 0 && !self.use_best && !self.random_start {
            bail!("PGD config: steps = 0 without random start returns the start point unchanged; use steps >= 1");
        }
        self.step_size.validate()
    }
    /// One-line description, e.g. `"20x0.125 rand-start last"`.
    pub fn describe(&self) -> String {
        format!(
            "{}x{}{}{}{}",
            self.steps,
            self.step_size.describe(),
            if self.random_start { " rand-start" } else { "" },
            if self.restarts > 1 {
                format!(" {} restarts", self.restarts)
            } else {
                String::new()
            },
            if self.use_best { " best" } else { " last" },
        )
    }
}

/// Result of [`pgd`].
#[derive(Debug)]
pub struct PgdOutput {
    /// The returned points, same shape as the centre.
    pub x: Tensor,
    /// The objective at `x`, shape `[N]`.
    pub objective: Tensor,
    /// The objective at the first iterate of the first run (the start point, or the random start),
    /// shape `[N]`.
    pub start_objective: Tensor,
    /// For each example, the iterate index (0 = start point) within its run at which `x` was found,
    /// shape `[N]`, int64.
    pub best_step: Tensor,
}

/// Runs the objective on a leaf copy of `x` and returns `(objective [N], d objective / d x)`.
/// Only the gradient w.r.t. the input is computed: no parameter gradient accumulates.
pub(crate) fn value_and_grad(
    objective: &mut Objective<'_>,
    x: &Tensor,
    what: &str,
) -> Result<(Tensor, Tensor)> {
    tch::with_grad(|| {
        let xg = x.detach().set_requires_grad(true);
        let obj = objective(&xg);
        let total = obj
            .f_sum(obj.kind())
            .with_context(|| format!("{what}: summing the objective"))?;
        let grads = Tensor::f_run_backward(&[&total], &[&xg], false, false).map_err(|e| {
            anyhow!("{what}: the objective is not differentiable w.r.t. the input: {e}")
        })?;
        let grad = grads
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{what}: no gradient returned"))?;
        Ok((obj.detach(), grad))
    })
}

/// Rows an attack takes per forward / backward pass on the CPU. With the Fashion-MNIST CNN in
/// NCHW, the per-image rate of an attack step fell for large batches (at 500 rows ~0.6x the rate
/// at 64-250 rows, `cargo run --release -p nrf-models --example attack_batch`); channels-last
/// (nrf's layout for it since session 19) removed most of that: 128- and 500-row passes were
/// level in whole stages (docs/performance.md, "Rows per pass" and "Memory format"), and 128
/// stays.
pub const CPU_ROWS_PER_PASS: i64 = 128;

/// The environment variable that overrides [`CPU_ROWS_PER_PASS`] ([`rows_per_pass`]).
pub const ROWS_PER_PASS_ENV: &str = "NRF_CPU_ROWS_PER_PASS";

/// The most input values (rows x values per row) one pass takes on an accelerator: 2^26, a
/// 256 MB f32 input: 445 Restricted ImageNet images at 224 px, 21,845 CIFAR-10 images. Callers
/// that attack in batches stay below it (a preset's `batch_size`); the passes over a whole
/// evaluation subset (the Square check, the two-pass output check) are split by it, so that 1,000
/// ImageNet images through a ResNet-50 do not need their activations at once.
pub const ACCELERATOR_VALUES_PER_PASS: i64 = 1 << 26;

/// The rows one pass of an attack on `x` should take: [`CPU_ROWS_PER_PASS`] on the CPU; on an
/// accelerator (which wants large batches) all of them, up to [`ACCELERATOR_VALUES_PER_PASS`]
/// input values ([`accelerator_rows_per_pass`]).
/// [`ROWS_PER_PASS_ENV`] overrides [`CPU_ROWS_PER_PASS`] (results do not depend on it).
pub fn rows_per_pass(x: &Tensor) -> i64 {
    if x.device() == tch::Device::Cpu {
        std::env::var(ROWS_PER_PASS_ENV)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&r| r >= 1)
            .unwrap_or(CPU_ROWS_PER_PASS)
    } else {
        let size = x.size();
        let rows = size.first().copied().unwrap_or(1);
        accelerator_rows_per_pass(rows, size.iter().skip(1).product())
    }
}

/// The rows one accelerator pass takes of `rows` rows of `per_row` values each: all of them
/// while they hold at most [`ACCELERATOR_VALUES_PER_PASS`] values, else as many as fit (at least
/// one).
pub fn accelerator_rows_per_pass(rows: i64, per_row: i64) -> i64 {
    let fit = ACCELERATOR_VALUES_PER_PASS / per_row.max(1);
    rows.min(fit).max(1)
}

/// The fewest rows a block gets when an attack's rows are split among workers: below that,
/// copying the model for a second worker costs more than the second core saves.
pub const MIN_ROWS_PER_WORKER: i64 = 16;

/// The blocks `(lo, len)` an attack on `n` rows runs in, in order: at most `per_pass` rows each
/// ([`rows_per_pass`]), and at least one per worker while each keeps [`MIN_ROWS_PER_WORKER`]
/// rows; their sizes differ by at most one row, so that the workers finish together.
pub fn row_blocks(n: i64, per_pass: i64, workers: usize) -> Vec<(i64, i64)> {
    if n <= 0 {
        return Vec::new();
    }
    let by_size = (n + per_pass.max(1) - 1) / per_pass.max(1);
    let by_workers = (workers as i64).min(n / MIN_ROWS_PER_WORKER);
    let k = by_size.max(by_workers).max(1);
    (0..k)
        .map(|b| {
            let (lo, hi) = (b * n / k, (b + 1) * n / k);
            (lo, hi - lo)
        })
        .collect()
}

/// `f(model, block)` for each span `(lo, len)` of `spans`, `block[i]` being rows `lo..lo + len`
/// of `rows[i]`, on `workers` replica workers ([`nrf_models::replicas::map_on_replicas`]); the
/// results in span order.
pub(crate) fn map_row_blocks<const K: usize, T: Send>(
    model: &dyn nrf_models::Classifier,
    rows: [&Tensor; K],
    spans: &[(i64, i64)],
    workers: usize,
    f: impl Fn(&dyn nrf_models::Classifier, [Tensor; K]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let blocks: Vec<[Tensor; K]> = spans
        .iter()
        .map(|&(lo, len)| rows.map(|t| t.narrow(0, lo, len)))
        .collect();
    nrf_models::replicas::map_on_replicas(model, blocks, workers, f)
}

/// `model`'s logits of `x` without autograd, in blocks of [`rows_per_pass`] rows (the same
/// values as one pass, faster on the CPU for large batches).
pub fn logits_by_rows(model: &dyn nrf_models::Classifier, x: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let n = x.size()[0];
        let rows = rows_per_pass(x);
        if n <= rows {
            return model.logits(x, false);
        }
        let parts: Vec<Tensor> = nrf_data::batch::spans(n, rows)
            .map(|(lo, len)| model.logits(&x.narrow(0, lo, len), false))
            .collect();
        Tensor::cat(&parts, 0)
    })
}

/// [`value_and_grad`] over row blocks of at most `rows` rows of `x`: `objective(lo, xb)` gets
/// block `xb = x[lo..lo + len]` and returns its `[len]` values. For an objective computed per
/// example this is the whole-batch value and gradient bit for bit (a row's forward pass and
/// input gradient do not depend on the other rows of its batch: tested), at the per-row speed of
/// small batches.
pub(crate) fn value_and_grad_by_rows(
    objective: &mut dyn FnMut(i64, &Tensor) -> Tensor,
    x: &Tensor,
    rows: i64,
    what: &str,
) -> Result<(Tensor, Tensor)> {
    let n = x.size()[0];
    if n <= rows {
        return value_and_grad(&mut |z: &Tensor| objective(0, z), x, what);
    }
    let (mut objs, mut grads) = (Vec::new(), Vec::new());
    for (lo, len) in nrf_data::batch::spans(n, rows) {
        let (o, g) = value_and_grad(
            &mut |z: &Tensor| objective(lo, z),
            &x.narrow(0, lo, len),
            what,
        )?;
        objs.push(o);
        grads.push(g);
    }
    Ok((Tensor::cat(&objs, 0), Tensor::cat(&grads, 0)))
}

/// [`pgd`] run block by block: `run(model, block)` runs it on one block of rows — `block[i]` is
/// rows `lo..lo + len` of `rows[i]` (the start, its targets, ...) — for consecutive blocks
/// ([`row_blocks`]), and the outputs are concatenated. The blocks run on
/// [`replica_workers_on`](nrf_models::replicas::replica_workers_on) workers (on the CPU one per
/// libtorch thread the stage was given, each with a replica of `model`:
/// [`nrf_models::replicas`]; one on an accelerator). Without a
/// random start (nothing is drawn at random) and with an objective computed per example, every
/// row's result is the one a single call on all rows gives, bit for bit on CPU at one thread,
/// whichever worker computes it; with a random start `run` gets all rows at once, so that the
/// random stream is the whole batch's.
pub fn pgd_by_rows<const K: usize>(
    cfg: &PgdConfig,
    model: &dyn nrf_models::Classifier,
    rows: [&Tensor; K],
    run: impl Fn(&dyn nrf_models::Classifier, [Tensor; K]) -> Result<PgdOutput> + Sync,
) -> Result<PgdOutput> {
    let device = rows.first().map_or(tch::Device::Cpu, |x| x.device());
    let workers = nrf_models::replicas::replica_workers_on(device)?;
    pgd_by_rows_on(cfg, model, rows, workers, run)
}

/// [`pgd_by_rows`] on `workers` workers.
pub fn pgd_by_rows_on<const K: usize>(
    cfg: &PgdConfig,
    model: &dyn nrf_models::Classifier,
    rows: [&Tensor; K],
    workers: usize,
    run: impl Fn(&dyn nrf_models::Classifier, [Tensor; K]) -> Result<PgdOutput> + Sync,
) -> Result<PgdOutput> {
    let first = rows
        .first()
        .ok_or_else(|| anyhow!("pgd_by_rows: no rows given"))?;
    let n = first.size().first().copied().unwrap_or(0);
    if let Some(t) = rows.iter().find(|t| t.size().first() != Some(&n)) {
        bail!(
            "pgd_by_rows: every tensor needs {n} rows, one has shape {:?}",
            t.size()
        );
    }
    let spans = row_blocks(n, rows_per_pass(first), workers);
    if cfg.random_start || spans.len() <= 1 {
        return run(model, rows.map(|t| t.shallow_clone()));
    }
    let outs = map_row_blocks(model, rows, &spans, workers, run)?;
    let cat =
        |f: fn(&PgdOutput) -> &Tensor| Tensor::cat(&outs.iter().map(f).collect::<Vec<_>>(), 0);
    Ok(PgdOutput {
        x: cat(|o| &o.x),
        objective: cat(|o| &o.objective),
        start_objective: cat(|o| &o.start_objective),
        best_step: cat(|o| &o.best_step),
    })
}

pub(crate) fn check_objective(obj: &Tensor, n: i64, what: &str, step: usize) -> Result<()> {
    if obj.size() != [n] {
        bail!(
            "{what}: the objective must return one value per example (shape [{n}]), got {:?}",
            obj.size()
        );
    }
    let bad = obj
        .isfinite()
        .logical_not()
        .sum(Kind::Int64)
        .int64_value(&[]);
    if bad > 0 {
        bail!("{what}: objective is NaN or infinite at iterate {step} for {bad} of {n} example(s)");
    }
    Ok(())
}

pub(crate) fn check_grad(grad: &Tensor, what: &str, step: usize) -> Result<()> {
    let bad = grad.isfinite().logical_not().any().int64_value(&[]);
    if bad != 0 {
        bail!("{what}: gradient of the objective is NaN or infinite at iterate {step}");
    }
    Ok(())
}

struct Best {
    x: Tensor,
    obj: Tensor,
    step: Tensor,
}

impl Best {
    fn update(slot: &mut Option<Best>, x: &Tensor, obj: &Tensor, step: usize) {
        match slot {
            None => {
                *slot = Some(Best {
                    x: x.copy(),
                    obj: obj.copy(),
                    step: obj.full_like(step as i64).to_kind(Kind::Int64),
                })
            }
            Some(b) => {
                let better = obj.gt_tensor(&b.obj);
                b.obj = obj.where_self(&better, &b.obj);
                b.step = b.step.where_scalarother(&better.logical_not(), step as i64);
                b.x = x.where_self(&better.view(per_example_shape(x).as_slice()), &b.x);
            }
        }
    }
}

/// Projected gradient **ascent**: maximises `objective` (one value per example, shape `[N]`) over
/// the ball of `threat` around `center`, starting from `start` (projected into the ball first).
///
/// - `center` and `start` have the same shape `[N, ...]`; they may differ (D_R is built with an
///   [`Unconstrained`](crate::Unconstrained) ball and a start that is another image).
/// - Each step: gradient of `objective` w.r.t. the input only, `threat.step`, `threat.project`.
///   The step and projection run without autograd.
/// - With `cfg.use_best` the per-example best iterate (the first iterate included) is returned,
///   otherwise the last one; over `cfg.restarts` runs the per-example best is kept.
/// - `on_iterate(t, x)` is called for every iterate of every run, `t = 0..=steps` (0 = the first
///   iterate of the run, i.e. the projected start or random start).
/// - To minimise (a targeted attack), negate the objective.
///
/// Errors for bad configurations, shape mismatches, and a NaN or infinite objective or gradient
/// (the message names the attack).
pub fn pgd(
    threat: &dyn ThreatModel,
    center: &Tensor,
    start: &Tensor,
    cfg: &PgdConfig,
    objective: &mut Objective<'_>,
    on_iterate: Option<&mut IterateHook<'_>>,
) -> Result<PgdOutput> {
    pgd_runs(threat, center, start, None, cfg, objective, on_iterate)
}

/// A run's first iterate, as [`pgd`] draws it: `start` projected into the ball around `center`,
/// or with `cfg.random_start` a random point of the ball around `start`, projected. Draws from
/// torch's generator in the second case.
pub fn first_iterate(
    threat: &dyn ThreatModel,
    center: &Tensor,
    start: &Tensor,
    cfg: &PgdConfig,
) -> Tensor {
    tch::no_grad(|| {
        if cfg.random_start {
            threat.project(&threat.random_start(start), center)
        } else {
            threat.project(start, center)
        }
    })
}

/// [`pgd`] whose first run starts at `first` as given — a [`first_iterate`] drawn beforehand,
/// e.g. for a whole batch before its rows are split into blocks — instead of drawing it; later
/// restarts draw theirs as [`pgd`] does. `first` has `center`'s shape.
pub fn pgd_from_first(
    threat: &dyn ThreatModel,
    center: &Tensor,
    first: &Tensor,
    cfg: &PgdConfig,
    objective: &mut Objective<'_>,
    on_iterate: Option<&mut IterateHook<'_>>,
) -> Result<PgdOutput> {
    // `first` is also the start, whose shape `pgd_runs` checks against `center`'s.
    pgd_runs(
        threat,
        center,
        first,
        Some(first),
        cfg,
        objective,
        on_iterate,
    )
}

/// [`pgd`], the first run starting at `first` where given.
fn pgd_runs(
    threat: &dyn ThreatModel,
    center: &Tensor,
    start: &Tensor,
    first: Option<&Tensor>,
    cfg: &PgdConfig,
    objective: &mut Objective<'_>,
    mut on_iterate: Option<&mut IterateHook<'_>>,
) -> Result<PgdOutput> {
    let what = format!("PGD ({}, {})", threat.describe(), cfg.describe());
    threat.validate().with_context(|| what.clone())?;
    cfg.validate().with_context(|| what.clone())?;
    if center.size() != start.size() {
        bail!(
            "{what}: center shape {:?} differs from start shape {:?}",
            center.size(),
            start.size()
        );
    }
    if center.dim() == 0 {
        bail!("{what}: inputs need a batch dimension, got a scalar");
    }
    if !matches!(
        center.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        bail!(
            "{what}: inputs must be floating point, got {:?}",
            center.kind()
        );
    }
    let n = center.size()[0];
    let center = center.detach();
    let mut best: Option<Best> = None;
    let mut start_objective: Option<Tensor> = None;

    let mut first = first;
    for _run in 0..cfg.restarts {
        let mut x = match first.take() {
            Some(f) => f.detach(),
            None => first_iterate(threat, &center, start, cfg),
        };
        for t in 0..cfg.steps {
            let (obj, grad) = value_and_grad(objective, &x, &what)?;
            check_objective(&obj, n, &what, t)?;
            check_grad(&grad, &what, t)?;
            if start_objective.is_none() {
                start_objective = Some(obj.copy());
            }
            if cfg.use_best {
                Best::update(&mut best, &x, &obj, t);
            }
            if let Some(f) = on_iterate.as_mut() {
                f(t, &x);
            }
            let lr = cfg.step_size.at(t, cfg.steps);
            x = tch::no_grad(|| threat.project(&threat.step(&x, &grad, lr), &center));
        }
        let obj = tch::no_grad(|| objective(&x)).detach();
        check_objective(&obj, n, &what, cfg.steps)?;
        if start_objective.is_none() {
            start_objective = Some(obj.copy());
        }
        if let Some(f) = on_iterate.as_mut() {
            f(cfg.steps, &x);
        }
        Best::update(&mut best, &x, &obj, cfg.steps);
    }
    let best = best.ok_or_else(|| anyhow!("{what}: no iterate evaluated"))?;
    Ok(PgdOutput {
        x: best.x,
        objective: best.obj,
        start_objective: start_objective.ok_or_else(|| anyhow!("{what}: no iterate evaluated"))?,
        best_step: best.step,
    })
}
