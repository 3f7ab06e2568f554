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
    /// One update with learning rate `lr`. On the CPU, for contiguous f32 parameters, the whole
    /// update is one pass over each parameter (`fused_update`) instead of eight tensor
    /// operations with five temporaries; the result is bit for bit the same (the same f32
    /// operations in the same order, each rounded as libtorch rounds it).
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        for (p, buf) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let u = Update {
                lr,
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
            };
            if !fused_update(p, &g, buf, u) {
                tensor_update(p, &g, buf, u);
            }
        }
    }
}

/// The hyper-parameters of one SGD update.
#[derive(Debug, Clone, Copy)]
struct Update {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
}

/// The SGD update of one parameter `p` with gradient `g` and momentum buffer `buf`, as tensor
/// operations (any device and kind).
fn tensor_update(p: &mut Tensor, g: &Tensor, buf: &mut Tensor, u: Update) {
    let mut d = if u.weight_decay != 0.0 {
        g + &*p * u.weight_decay
    } else {
        g.shallow_clone()
    };
    if u.momentum != 0.0 {
        let _ = buf.g_mul_scalar_(u.momentum).g_add_(&d);
        d = if u.nesterov {
            d + &*buf * u.momentum
        } else {
            buf.shallow_clone()
        };
    }
    let _ = p.g_add_(&(d * (-u.lr)));
}

/// Whether a tensor of `size` with `stride` covers its memory exactly once with no gaps (as a
/// contiguous or a channels-last tensor does): then an element-wise operation can run over the
/// memory in its order, whatever the order of the dimensions.
fn dense(size: &[i64], stride: &[i64]) -> bool {
    let mut dims: Vec<(i64, i64)> = size
        .iter()
        .zip(stride)
        .filter(|(&n, _)| n != 1)
        .map(|(&n, &s)| (s, n))
        .collect();
    dims.sort_unstable();
    let mut expected = 1;
    for (s, n) in dims {
        if s != expected {
            return false;
        }
        expected *= n;
    }
    true
}

/// The update of [`tensor_update`] in one pass over the memory of `p`, `g` and `buf`, when all
/// three are f32 tensors on the CPU of the same size and the same dense layout (contiguous, or
/// channels-last as a convolution's weights are then); returns false (and changes nothing)
/// otherwise. libtorch computes a tensor times a scalar in f32 with the scalar rounded to f32,
/// and each operation rounds once; so does this loop (Rust never contracts `a * b + c` into a
/// fused multiply-add), hence the same bits.
fn fused_update(p: &mut Tensor, g: &Tensor, buf: &mut Tensor, u: Update) -> bool {
    let Update {
        lr,
        momentum,
        nesterov,
        weight_decay,
    } = u;
    let n = p.numel();
    let (size, stride) = (p.size(), p.stride());
    let plain = |t: &Tensor| {
        t.device() == tch::Device::Cpu
            && t.kind() == tch::Kind::Float
            && t.size() == size
            && t.stride() == stride
    };
    if !(plain(p) && plain(g) && plain(buf) && dense(&size, &stride)) {
        return false;
    }
    let (pp, gp, bp) = (
        p.data_ptr() as *mut f32,
        g.data_ptr() as *const f32,
        buf.data_ptr() as *mut f32,
    );
    if n == 0 || pp.is_null() || gp.is_null() || bp.is_null() {
        return n == 0;
    }
    if std::ptr::eq(pp as *const f32, gp) || pp == bp || std::ptr::eq(gp, bp as *const f32) {
        return false; // aliased storage: leave it to the tensor operations
    }
    // SAFETY: three distinct contiguous f32 CPU tensors of `n` elements each (checked above),
    // alive for this call and not accessed elsewhere meanwhile (no other thread runs tensor
    // operations on the optimiser's parameters during a step).
    let (p, g, b) = unsafe {
        (
            std::slice::from_raw_parts_mut(pp, n),
            std::slice::from_raw_parts(gp, n),
            std::slice::from_raw_parts_mut(bp, n),
        )
    };
    let (wd, m, step) = (weight_decay as f32, momentum as f32, (-lr) as f32);
    let decay = weight_decay != 0.0;
    let with_momentum = momentum != 0.0;
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        let d = if decay { g + *p * wd } else { g };
        let u = if with_momentum {
            *b = *b * m + d;
            if nesterov {
                d + *b * m
            } else {
                *b
            }
        } else {
            d
        };
        *p += u * step;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A convolution's weights laid out channels-last (with their gradient and momentum buffer,
    /// as training makes them) take the fused update too, with the same bits as the tensor
    /// operations; layouts that differ or leave gaps do not.
    #[test]
    fn fused_update_takes_channels_last_weights_bit_for_bit() {
        let _rng = crate::rng_lock();
        tch::manual_seed(4);
        let cl = |t: Tensor| crate::runtime::MemoryFormat::ChannelsLast.apply(&t);
        let p0 = cl(Tensor::randn([8, 3, 3, 3], (Kind::Float, Device::Cpu)));
        assert_eq!(p0.stride(), vec![27, 1, 9, 3]);
        let (mut pa, mut pb) = (p0.copy(), p0.copy());
        let (mut ba, mut bb) = (p0.zeros_like(), p0.zeros_like());
        assert_eq!(ba.stride(), p0.stride());
        let u = Update {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        };
        for _ in 0..3 {
            let g = cl(Tensor::randn([8, 3, 3, 3], (Kind::Float, Device::Cpu)));
            assert!(fused_update(&mut pa, &g, &mut ba, u));
            tensor_update(&mut pb, &g, &mut bb, u);
            let bits = |t: &Tensor| {
                let v = Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap();
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&pa), bits(&pb));
            assert_eq!(bits(&ba), bits(&bb));
        }
        // A contiguous gradient for channels-last weights: the tensor operations.
        let g = Tensor::randn([8, 3, 3, 3], (Kind::Float, Device::Cpu));
        assert!(!fused_update(&mut pa, &g, &mut ba, u));
        // Every other column of a matrix: not dense.
        let m = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let (mut q, gq, mut bq) = (
            m.slice(1, 0, 6, 2),
            m.slice(1, 1, 6, 2),
            m.slice(1, 0, 6, 2),
        );
        assert!(!fused_update(&mut q, &gq, &mut bq, u));
    }

    #[test]
    fn dense_layouts() {
        assert!(dense(&[8, 3, 3, 3], &[27, 9, 3, 1]));
        assert!(dense(&[8, 3, 3, 3], &[27, 1, 9, 3]));
        assert!(
            dense(&[8, 1, 3, 3], &[9, 1, 3, 1]),
            "size-1 dimensions: any stride"
        );
        assert!(dense(&[5], &[1]) && dense(&[], &[]));
        assert!(!dense(&[4, 3], &[6, 2]), "gaps");
        assert!(!dense(&[4, 3], &[1, 1]), "overlap");
    }

    /// The fused CPU update gives exactly the tensor operations' bits, for every combination of
    /// momentum, Nesterov and weight decay, over several steps (the buffers carry over).
    #[test]
    fn fused_update_matches_the_tensor_operations_bit_for_bit() {
        let _rng = crate::rng_lock();
        for &(momentum, nesterov, wd) in &[
            (0.9, true, 5e-4),
            (0.9, false, 5e-4),
            (0.0, false, 5e-4),
            (0.9, true, 0.0),
            (0.0, false, 0.0),
        ] {
            tch::manual_seed(3);
            let p0 = Tensor::randn([1000], (Kind::Float, Device::Cpu));
            let (mut pa, mut pb) = (p0.copy(), p0.copy());
            let (mut ba, mut bb) = (p0.zeros_like(), p0.zeros_like());
            for step in 0..5 {
                let g = Tensor::randn([1000], (Kind::Float, Device::Cpu)) * (step as f64 + 0.5);
                let lr = 0.05 / (step as f64 + 1.0);
                let u = Update {
                    lr,
                    momentum,
                    nesterov,
                    weight_decay: wd,
                };
                assert!(fused_update(&mut pa, &g, &mut ba, u));
                tensor_update(&mut pb, &g, &mut bb, u);
                let (a, b) = (
                    Vec::<f32>::try_from(&pa).unwrap(),
                    Vec::<f32>::try_from(&pb).unwrap(),
                );
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "momentum {momentum} nesterov {nesterov} wd {wd} step {step}"
                );
                assert_eq!(
                    Vec::<f32>::try_from(&ba).unwrap(),
                    Vec::<f32>::try_from(&bb).unwrap()
                );
            }
        }
    }

    /// Tensors the fused loop cannot take (non-contiguous, f64) fall back to the tensor path.
    #[test]
    fn fused_update_declines_what_it_cannot_take() {
        let _rng = crate::rng_lock();
        let mut p = Tensor::ones([4, 4], (Kind::Float, Device::Cpu)).transpose(0, 1);
        let g = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let mut b = g.zeros_like();
        let u = Update {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        assert!(!fused_update(&mut p, &g, &mut b, u));
        let mut p = Tensor::ones([4], (Kind::Double, Device::Cpu));
        let g = p.ones_like();
        let mut b = g.zeros_like();
        assert!(!fused_update(&mut p, &g, &mut b, u));
    }
}
