//! Tiny test models implementing `Classifier` (independent of nrf-models' architectures).
#![allow(dead_code)]

use nrf_models::Classifier;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// One intra-op thread: tiny tensors gain nothing from more, and the thread pool thrashes on a
/// loaded machine.
pub fn init() {
    tch::set_num_threads(1);
}

/// logits = flatten(x) · W + b, representation = flatten(x).
pub struct LinearModel {
    pub w: Tensor,
    pub b: Tensor,
}

impl LinearModel {
    pub fn from_vecs(w: &[f32], b: &[f32], d: i64, k: i64) -> LinearModel {
        LinearModel {
            w: Tensor::from_slice(w).view([d, k]),
            b: Tensor::from_slice(b).view([k]),
        }
    }
}

impl Classifier for LinearModel {
    fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let rep = x.reshape([x.size()[0], -1]);
        (rep.matmul(&self.w) + &self.b, rep)
    }
    fn num_classes(&self) -> i64 {
        self.w.size()[1]
    }
}

/// A two-layer ReLU MLP; the representation is the hidden layer.
pub struct Mlp {
    pub vs: nn::VarStore,
    l1: nn::Linear,
    l2: nn::Linear,
    k: i64,
}

impl Mlp {
    pub fn new(d: i64, hidden: i64, k: i64, seed: i64) -> Mlp {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let l1 = nn::linear(&root / "l1", d, hidden, Default::default());
        let l2 = nn::linear(&root / "l2", hidden, k, Default::default());
        Mlp { vs, l1, l2, k }
    }

    /// Full-batch Adam on cross-entropy for `steps` steps.
    pub fn train(&mut self, x: &Tensor, y: &Tensor, steps: usize, lr: f64) {
        let mut opt = nn::Adam::default().build(&self.vs, lr).unwrap();
        for _ in 0..steps {
            let loss = self.logits(x, true).cross_entropy_for_logits(y);
            opt.backward_step(&loss);
        }
    }
}

impl Classifier for Mlp {
    fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let h = self.l1.forward(&x.reshape([x.size()[0], -1])).relu();
        (self.l2.forward(&h), h)
    }
    fn num_classes(&self) -> i64 {
        self.k
    }
}

/// Synthetic separable problem in `[0,1]^d`: label = which side of a fixed hyperplane through the
/// centre, points within `margin` of it removed. Deterministic in `seed`.
pub fn separable_data(n: i64, d: i64, margin: f64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let w = Tensor::randn([d], (Kind::Float, Device::Cpu));
    let w = &w / w.norm();
    let x = Tensor::rand([4 * n, d], (Kind::Float, Device::Cpu));
    let s = (&x - 0.5).matmul(&w);
    let keep = s.abs().gt(margin).nonzero().squeeze_dim(1).narrow(0, 0, n);
    let x = x.index_select(0, &keep);
    let y = s.index_select(0, &keep).gt(0.0).to_kind(Kind::Int64);
    (x, y)
}
