//! SGD with momentum / Nesterov and weight decay, with its state kept as plain tensors so that a
//! checkpoint can store it and a resumed run continues exactly (tch's `nn::Optimizer` cannot
//! export its momentum buffers).
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A learning-rate schedule, evaluated per optimisation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Constant learning rate.
    Constant { lr: f64 },
    /// `lr * gamma^(number of milestones passed)`; milestones in epochs.
    Step {
        lr: f64,
        milestones: Vec<usize>,
        gamma: f64,
    },
    /// Linear warm-up from 0 over `warmup` (fraction of all steps), then cosine decay to 0.
    CosineWarmup { lr: f64, warmup: f64 },
}

impl LrSchedule {
    /// The learning rate at `step` (0-based) of `total` steps, with `steps_per_epoch`.
    pub fn lr_at(&self, step: usize, total: usize, steps_per_epoch: usize) -> f64 {
        match self {
            LrSchedule::Constant { lr } => *lr,
            LrSchedule::Step {
                lr,
                milestones,
                gamma,
            } => {
                let epoch = step / steps_per_epoch.max(1);
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                lr * gamma.powi(passed as i32)
            }
            LrSchedule::CosineWarmup { lr, warmup } => {
                let total = total.max(1) as f64;
                let s = step as f64 + 1.0;
                let w = (warmup * total).max(1.0);
                if s <= w {
                    lr * s / w
                } else {
                    let p = ((s - w) / (total - w).max(1.0)).min(1.0);
                    lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
        }
    }
    /// The base learning rate.
    pub fn base_lr(&self) -> f64 {
        match self {
            LrSchedule::Constant { lr }
            | LrSchedule::Step { lr, .. }
            | LrSchedule::CosineWarmup { lr, .. } => *lr,
        }
    }
}

/// Stochastic gradient descent (PyTorch semantics: weight decay added to the gradient,
/// `buf = momentum * buf + g`, Nesterov uses `g + momentum * buf`).
pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    params: Vec<Tensor>,
    /// Momentum buffers, one per parameter (zero before the first step).
    pub buffers: Vec<Tensor>,
}

impl Sgd {
    /// Optimises `params` (the trainable variables of a `VarStore`).
    pub fn new(params: Vec<Tensor>, momentum: f64, nesterov: bool, weight_decay: f64) -> Sgd {
        let buffers = params.iter().map(|p| p.zeros_like()).collect();
        Sgd {
            momentum,
            nesterov,
            weight_decay,
            params,
            buffers,
        }
    }
    /// Sets every parameter's gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        for (p, buf) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let mut d = if self.weight_decay != 0.0 {
                &g + &*p * self.weight_decay
            } else {
                g.shallow_clone()
            };
            if self.momentum != 0.0 {
                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                d = if self.nesterov {
                    d + &*buf * self.momentum
                } else {
                    buf.shallow_clone()
                };
            }
            let _ = p.g_add_(&(d * (-lr)));
        }
    }
}
