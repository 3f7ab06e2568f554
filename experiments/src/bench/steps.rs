//! The Rust side of `nrf bench`: the three timed steps on deterministic weights and inputs
//! ([`Steps`]), and the values both sides compute to show they run the same computation
//! ([`CheckValues`]).
use super::{
    Row, CLASSES, IN_SHAPE, LR, MOMENTUM, PGD_EPS, PGD_STEP_FACTOR, REP_STEPS, WEIGHT_DECAY,
};
use anyhow::{anyhow, bail, Result};
use nrf_attacks::{
    pgd, rep_match, untargeted_ce, Distance, PgdConfig, PgdOutput, StepSize, Unconstrained, L2,
};
use nrf_models::{Arch, Model, ModelSpec, Sgd};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Deterministic pseudo-random numbers in `[0, 1)`: `frac(43758.5453 · sin(12.9898 · (j + 1) +
/// 78.233 · seed))` for `j = 0..n`, computed in `f64` and returned as `f32`. The Python script
/// uses the same formula and libtorch ops, so both sides get bit-identical weights and inputs.
pub fn det_uniform(n: i64, seed: f64) -> Tensor {
    let v = ((Tensor::arange(n, (Kind::Double, Device::Cpu)) + 1.0) * 12.9898 + seed * 78.233)
        .sin()
        * 43758.5453;
    (&v - v.floor()).to_kind(Kind::Float)
}

/// Overwrites every parameter as PyTorch's default initialisation would, but deterministically:
/// uniform in `±1/sqrt(fan_in)` (fan-in of the layer's weight), parameters sorted by name.
fn det_init(model: &mut Model) -> Result<()> {
    let vars = model.vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let _g = tch::no_grad_guard();
    for (k, name) in names.into_iter().enumerate() {
        let mut p = vars[name].shallow_clone();
        let weight_name = match name.strip_suffix("bias") {
            Some(stem) => format!("{stem}weight"),
            None => name.clone(),
        };
        let w = vars
            .get(&weight_name)
            .ok_or_else(|| anyhow!("bench: no weight {weight_name} for {name}"))?;
        let fan_in = w.numel() as i64 / w.size()[0];
        let n = p.numel() as i64;
        let v = (det_uniform(n, 10.0 + k as f64) * 2.0 - 1.0) * (1.0 / (fan_in as f64).sqrt());
        p.copy_(&v.view(p.size().as_slice()));
    }
    Ok(())
}

/// The three computations on one batch. Used by `nrf bench` and by the criterion benches.
pub struct Steps {
    train_model: Model,
    sgd: Sgd,
    attack_model: Model,
    x: Tensor,
    y: Tensor,
    x0: Tensor,
    target_rep: Tensor,
    /// PGD / representation-matching steps per call of [`Steps::run`].
    pub pgd_steps: usize,
}

impl Steps {
    /// Builds the model (deterministic weights, see [`det_uniform`]; the same for training and
    /// for the attacks) and a batch of `batch` deterministic pseudo-random images in `[0, 1]`
    /// with labels, plus start images for representation matching; `pgd_steps` steps per PGD /
    /// representation-matching call. The Python script builds exactly the same tensors.
    pub fn new(batch: i64, pgd_steps: usize) -> Result<Steps> {
        if batch < 1 || pgd_steps < 1 {
            bail!("bench: batch ({batch}) and pgd_steps ({pgd_steps}) must be at least 1");
        }
        let spec = ModelSpec::new(Arch::FmnistCnn, IN_SHAPE, CLASSES);
        let mut train_model = Model::new(&spec, Device::Cpu, 0)?;
        let mut attack_model = Model::new(&spec, Device::Cpu, 0)?;
        det_init(&mut train_model)?;
        det_init(&mut attack_model)?;
        let shape = [batch, IN_SHAPE[0], IN_SHAPE[1], IN_SHAPE[2]];
        let n = shape.iter().product::<i64>();
        let x = det_uniform(n, 1.0).view(shape);
        let x0 = det_uniform(n, 2.0).view(shape);
        let y = (det_uniform(batch, 3.0) * CLASSES as f64)
            .floor()
            .to_kind(Kind::Int64);
        let sgd = Sgd::new(
            train_model.vs.trainable_variables(),
            MOMENTUM,
            true,
            WEIGHT_DECAY,
        );
        let target_rep =
            tch::no_grad(|| nrf_models::Classifier::forward_rep(&attack_model, &x, false).1);
        Ok(Steps {
            train_model,
            sgd,
            attack_model,
            x,
            y,
            x0,
            target_rep,
            pgd_steps,
        })
    }

    /// One training step; returns `(loss, correct)` (computed before the update).
    pub fn train_step(&mut self) -> Result<(f64, i64)> {
        nrf_models::train::train_step(&self.train_model, &mut self.sgd, &self.x, &self.y, LR, None)
    }

    /// An L2 PGD run of [`Steps::pgd_steps`] steps (last iterate, no random start).
    pub fn pgd_l2(&self) -> Result<PgdOutput> {
        let threat = L2::new(PGD_EPS)?;
        let cfg = PgdConfig::new(
            self.pgd_steps,
            PGD_STEP_FACTOR * PGD_EPS / self.pgd_steps as f64,
        )
        .with_use_best(false);
        let mut obj = untargeted_ce(&self.attack_model, &self.y);
        pgd(&threat, &self.x, &self.x, &cfg, &mut obj, None)
    }

    /// A representation-matching run of [`Steps::pgd_steps`] steps from the start images towards
    /// the representation of the batch (as `nrf_features::repmatch::build` does per chunk).
    pub fn rep_match(&self) -> Result<PgdOutput> {
        let cfg = PgdConfig::new(self.pgd_steps, REP_STEPS.0)
            .with_step_size(StepSize::Cosine {
                start: REP_STEPS.0,
                end: REP_STEPS.1,
            })
            .with_use_best(false);
        let mut obj = rep_match(
            &self.attack_model,
            &self.target_rep,
            Distance::L2Squared,
            nrf_models::RepRelu::Relu,
        );
        pgd(&Unconstrained, &self.x0, &self.x0, &cfg, &mut obj, None)
    }

    /// Runs `row` once.
    pub fn run(&mut self, row: Row) -> Result<()> {
        match row {
            Row::TrainStep => self.train_step().map(|_| ()),
            Row::PgdL2Step => self.pgd_l2().map(|_| ()),
            Row::RepMatchStep => self.rep_match().map(|_| ()),
        }
    }

    /// Steps done by one call of [`Steps::run`] for `row`.
    pub fn steps_per_call(&self, row: Row) -> usize {
        match row {
            Row::TrainStep => 1,
            _ => self.pgd_steps,
        }
    }

    /// Milliseconds per step of `row` for `reps` repetitions after `warmup` untimed ones.
    pub fn time(&mut self, row: Row, warmup: usize, reps: usize) -> Result<Vec<f64>> {
        for _ in 0..warmup {
            self.run(row)?;
        }
        let per = self.steps_per_call(row) as f64;
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                self.run(row)?;
                Ok(t.elapsed().as_secs_f64() * 1e3 / per)
            })
            .collect()
    }
}

/// Values both sides compute on deterministic weights and inputs; equal values show that the
/// Rust and Python steps are the same computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckValues {
    /// Loss of the first training step.
    pub train_loss_1: f64,
    /// Correct predictions of the first training step.
    pub train_correct_1: i64,
    /// Loss of the second training step (after one SGD update).
    pub train_loss_2: f64,
    /// Mean final objective of the PGD run.
    pub pgd_objective_mean: f64,
    /// Mean final objective of the representation-matching run.
    pub rep_match_objective_mean: f64,
}

impl CheckValues {
    /// The check values of the Rust steps (batch and steps as given; one thread recommended).
    pub fn rust(batch: i64, pgd_steps: usize) -> Result<CheckValues> {
        let mut s = Steps::new(batch, pgd_steps)?;
        let (train_loss_1, train_correct_1) = s.train_step()?;
        let (train_loss_2, _) = s.train_step()?;
        let mean = |o: PgdOutput| {
            o.objective
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[])
        };
        Ok(CheckValues {
            train_loss_1,
            train_correct_1,
            train_loss_2,
            pgd_objective_mean: mean(s.pgd_l2()?),
            rep_match_objective_mean: mean(s.rep_match()?),
        })
    }

    /// Largest relative difference over the float values, and whether the correct counts agree.
    pub fn compare(&self, other: &CheckValues) -> (f64, bool) {
        let pairs = [
            (self.train_loss_1, other.train_loss_1),
            (self.train_loss_2, other.train_loss_2),
            (self.pgd_objective_mean, other.pgd_objective_mean),
            (
                self.rep_match_objective_mean,
                other.rep_match_objective_mean,
            ),
        ];
        let worst = pairs
            .iter()
            .map(|&(a, b)| rel_diff(a, b))
            .fold(0.0, f64::max);
        (worst, self.train_correct_1 == other.train_correct_1)
    }
}

fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else if !(a.is_finite() && b.is_finite()) {
        f64::INFINITY
    } else {
        (a - b).abs() / a.abs().max(b.abs()).max(1e-6)
    }
}
