//! Process-wide settings for libtorch on the CPU, applied by the `nrf` binary at its start and by
//! the examples that time its work (so that they measure what `nrf` runs).

/// Allocations at least this large (bytes) are served by `mmap` and unmapped when freed; nrf raises
/// glibc's threshold to 32 MiB (its dynamic maximum) so that a step's activations stay in the heap.
pub const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;

/// Free memory at the top of the heap beyond this (bytes) is returned to the OS; nrf keeps up to
/// 1 GiB.
pub const TRIM_THRESHOLD_BYTES: i32 = 1 << 30;

/// glibc returns libtorch's large per-step activation buffers to the OS after every step and
/// page-faults them back in on the next one; keeping them mapped ([`MMAP_THRESHOLD_BYTES`],
/// [`TRIM_THRESHOLD_BYTES`]) made a training step ~1.5x faster on CPU in `nrf bench`. The price:
/// the process keeps its peak memory. Call it first thing in `main`, before any thread starts.
/// Another process (a PyTorch twin) gets the same settings from [`malloc_env`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc malloc tuning parameters; called before any threads start.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

/// Does nothing off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// The environment variables that give a new process on glibc the allocator settings of
/// [`tune_allocator`] (glibc reads them at start-up), for a child such as a PyTorch twin that
/// should run as nrf runs.
///
/// ```
/// let env = nrf_models::runtime::malloc_env();
/// assert_eq!(env[0], ("MALLOC_MMAP_THRESHOLD_", "33554432".to_string()));
/// ```
pub fn malloc_env() -> [(&'static str, String); 2] {
    [
        ("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD_BYTES.to_string()),
        ("MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD_BYTES.to_string()),
    ]
}

/// Whether this CPU does bfloat16 arithmetic in hardware (`avx512_bf16` or `amx_bf16` among
/// /proc/cpuinfo's flags), which [`crate::Precision::Bf16`] needs to be faster than f32; `None`
/// where that cannot be read (not Linux, or no flags line).
pub fn cpu_has_bf16() -> Option<bool> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags"))?;
    let flags = flags.split(':').nth(1)?;
    Some(
        flags
            .split_whitespace()
            .any(|f| f == "avx512_bf16" || f == "amx_bf16"),
    )
}

/// How a model lays out its 4-d tensors (convolution weights, and the images it is given) in
/// memory. Channels-last puts a pixel's channels next to each other, the layout oneDNN's CPU
/// convolutions work in: libtorch then skips the reorders it makes around every NCHW
/// convolution (and its backward pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormat {
    /// NCHW, libtorch's default.
    Contiguous,
    /// NHWC strides on an NCHW-shaped tensor (PyTorch's `torch.channels_last`).
    ChannelsLast,
}

impl MemoryFormat {
    /// The environment variable that overrides [`MemoryFormat::for_model`]'s choice:
    /// `contiguous` or `channels_last`.
    pub const ENV: &'static str = "NRF_MEMORY_FORMAT";

    /// The layout a model of `arch` uses on `device`: [`MemoryFormat::ENV`] when set, else
    /// channels-last for every convolutional network on the CPU (as the twin runs them; measured
    /// faster: the Fashion-MNIST CNN in whole pipeline stages and in attack steps at batch 500,
    /// level at batch 128; ResNet-18, ResNet-50, VGG-16 and DenseNet: training and attack steps
    /// 0.62-0.91x of the contiguous layout's time at 1 thread, 0.85-0.97x at 2:
    /// docs/performance.md, "Memory format") and contiguous for the MLP (no convolutions) and on
    /// CUDA (not measured). A bad value of the variable is an error that names it.
    pub fn for_model(arch: &crate::Arch, device: tch::Device) -> anyhow::Result<MemoryFormat> {
        match std::env::var(Self::ENV) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(
                if device == tch::Device::Cpu && !matches!(arch, crate::Arch::Mlp { .. }) {
                    MemoryFormat::ChannelsLast
                } else {
                    MemoryFormat::Contiguous
                },
            ),
            Err(e) => anyhow::bail!("{}: {e}", Self::ENV),
        }
    }

    /// `contiguous` or `channels_last`.
    pub fn parse(v: &str) -> anyhow::Result<MemoryFormat> {
        match v.trim() {
            "contiguous" => Ok(MemoryFormat::Contiguous),
            "channels_last" => Ok(MemoryFormat::ChannelsLast),
            other => anyhow::bail!(
                "{}={other:?}: expected `contiguous` or `channels_last`",
                Self::ENV
            ),
        }
    }

    /// `t` in this layout: itself (a shallow clone) when it already is, or when it is not 4-d;
    /// otherwise a copy, which autograd sees (the gradient flows back in `t`'s own layout).
    /// A model in the contiguous layout leaves its inputs as they come (libtorch takes any
    /// strides); this is for converting weights and for callers that want the layout.
    ///
    /// ```
    /// use nrf_models::runtime::MemoryFormat;
    /// let x = tch::Tensor::rand([2, 1, 4, 4], (tch::Kind::Float, tch::Device::Cpu));
    /// let y = MemoryFormat::ChannelsLast.apply(&x);
    /// assert_eq!(y.stride(), vec![16, 1, 4, 1]); // even with one channel
    /// assert!(y.equal(&x));
    /// ```
    pub fn apply(self, t: &tch::Tensor) -> tch::Tensor {
        let size = t.size();
        if size.len() != 4 {
            return t.shallow_clone();
        }
        let (c, h, w) = (size[1], size[2], size[3]);
        let strides = match self {
            MemoryFormat::Contiguous => vec![c * h * w, h * w, w, 1],
            MemoryFormat::ChannelsLast => vec![h * w * c, 1, w * c, c],
        };
        if t.stride() == strides {
            return t.shallow_clone();
        }
        // Built from explicit strides: permute-contiguous-permute (or `contiguous()`) leaves a
        // tensor with one channel (the Fashion-MNIST images, the first convolution's weight) in
        // the other layout's strides, since a size-1 dimension's stride is never looked at, and
        // libtorch then mixes the two layouts.
        let mut out = tch::Tensor::empty_strided(&size, &strides, (t.kind(), t.device()));
        out.copy_(t);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryFormat;
    use crate::{Arch, Classifier, Model, ModelSpec};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn channels_last_strides_even_with_one_channel() {
        let _g = crate::rng_lock();
        for c in [1, 3] {
            let x = Tensor::rand([2, c, 5, 4], (Kind::Float, Device::Cpu));
            let y = MemoryFormat::ChannelsLast.apply(&x);
            assert_eq!(y.stride(), vec![20 * c, 1, 4 * c, c]);
            assert!(y.equal(&x));
            let back = MemoryFormat::Contiguous.apply(&y);
            assert_eq!(back.stride(), vec![20 * c, 20, 4, 1]);
            assert!(back.equal(&x));
        }
        // Not 4-d: unchanged.
        let v = Tensor::rand([3, 4], (Kind::Float, Device::Cpu));
        assert_eq!(MemoryFormat::ChannelsLast.apply(&v).stride(), vec![4, 1]);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            MemoryFormat::parse("channels_last").unwrap(),
            MemoryFormat::ChannelsLast
        );
        assert_eq!(
            MemoryFormat::parse(" contiguous").unwrap(),
            MemoryFormat::Contiguous
        );
        let e = MemoryFormat::parse("nhwc").unwrap_err().to_string();
        assert!(e.contains(MemoryFormat::ENV) && e.contains("nhwc"), "{e}");
        if std::env::var_os(MemoryFormat::ENV).is_none() {
            for arch in convolutional_archs() {
                let f = MemoryFormat::for_model(&arch, Device::Cpu).unwrap();
                assert_eq!(f, MemoryFormat::ChannelsLast, "{}", arch.label());
            }
            let mlp = Arch::Mlp { hidden: vec![8] };
            let mlp = MemoryFormat::for_model(&mlp, Device::Cpu).unwrap();
            assert_eq!(mlp, MemoryFormat::Contiguous);
        }
    }

    /// The same weights give the same logits and input gradients in either layout (to float
    /// rounding), and the weights are laid out as asked.
    #[test]
    fn both_layouts_compute_the_same_function() {
        let _g = crate::rng_lock();
        let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
        let mut a = Model::new(&spec, Device::Cpu, 3).unwrap();
        let mut b = Model::new(&spec, Device::Cpu, 3).unwrap();
        a.set_memory_format(MemoryFormat::Contiguous);
        b.set_memory_format(MemoryFormat::ChannelsLast);
        let wa = &a.vs.variables()["c2.weight"];
        let wb = &b.vs.variables()["c2.weight"];
        assert_eq!(wa.stride(), vec![144, 9, 3, 1]);
        assert_eq!(wb.stride(), vec![144, 1, 48, 16]);
        // One input channel: channels-last strides all the same (not left NCHW).
        assert_eq!(b.vs.variables()["c1.weight"].stride(), vec![9, 1, 3, 1]);
        let vb = b.vs.variables();
        for (name, v) in a.vs.variables() {
            assert!(
                v.equal(&vb[&name]),
                "{name}: the same weights in both layouts"
            );
        }
        tch::manual_seed(5);
        let x = Tensor::rand([6, 1, 28, 28], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
        let grad = |m: &Model| {
            let xg = x.detach().set_requires_grad(true);
            let logits = m.logits(&xg, false);
            let loss = logits.cross_entropy_for_logits(&y);
            let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
            (logits.detach(), g)
        };
        let (la, ga) = grad(&a);
        let (lb, gb) = grad(&b);
        assert_eq!(gb.size(), vec![6, 1, 28, 28]);
        let close = |p: &Tensor, q: &Tensor| {
            let d = (p - q).abs().max().double_value(&[]);
            let s = p.abs().max().double_value(&[]);
            assert!(d <= 1e-5 * s.max(1e-6), "max difference {d} at scale {s}");
        };
        close(&la, &lb);
        close(&ga, &gb);
    }

    /// Every convolutional architecture nrf builds, small.
    fn convolutional_archs() -> Vec<Arch> {
        let mut archs = crate::small_archs();
        archs.retain(|a| !matches!(a, Arch::Mlp { .. }));
        archs
    }

    /// The networks with batch norms and residual or dense connections compute the same function
    /// in either layout, measured against the same network in f64 (32 random images of 32x32,
    /// at initialisation). In f32: logits and input gradients in evaluation mode within 1e-5 of
    /// f64's in both layouts (measured: at most 5e-7), the logits of a training-mode pass (batch
    /// statistics) within 1e-3 (measured: 1.3e-5 contiguous, 1.9e-4 channels-last), and that
    /// pass's weight gradients within 4x the contiguous layout's deviation from f64 plus 1e-2
    /// for all of them together, plus 5e-2 for each tensor. libtorch's CPU batch norm is less
    /// exact channels-last in training mode, in the first stage of a ResNet on unnormalised
    /// pixels (why there is not measured): ResNet-18's first-stage gradients come within 8.8e-3
    /// of f64's against the contiguous layout's 3.4e-6 (all of them together: 1.3e-3 against
    /// 1.8e-6); ResNet-50 (CIFAR) at width 4 is far from f64 in both (together 5.0e-2
    /// channels-last, 1.8e-2 contiguous); VGG-16, ResNet-50 (ImageNet) and DenseNet match. Errors of 1e-2 in a
    /// gradient are far below SGD's own noise; a layout mistake gives errors of order one. In
    /// bf16 (every layer rounds its input to 8 bits of mantissa): channels-last's logits and
    /// input gradients are as close to f64's as the contiguous layout's (within 1.5x their
    /// deviation, plus 1%).
    #[test]
    fn every_architecture_computes_the_same_function_in_both_layouts() {
        let _g = crate::rng_lock();
        use crate::Precision::{Bf16, F32};
        use MemoryFormat::{ChannelsLast, Contiguous};
        // The norm of the difference relative to the norm of `p`.
        let rel = |p: &Tensor, q: &Tensor| {
            let q = q.to_kind(p.kind());
            (p - q).norm().double_value(&[]) / p.norm().double_value(&[]).max(1e-12)
        };
        tch::manual_seed(5);
        let x = Tensor::rand([32, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::arange(32, (Kind::Int64, Device::Cpu)).remainder(10);
        // Logits and input gradient in evaluation mode and the logits of a training-mode pass;
        // the weight gradients of that pass, by name; computed in f64 when `f64`.
        let outputs = |arch: &Arch, precision, format, f64: bool| {
            let spec = ModelSpec::new(arch.clone(), [3, 32, 32], 10).with_precision(precision);
            let mut m = Model::new(&spec, Device::Cpu, 3).unwrap();
            if f64 {
                m.vs.double();
            }
            m.set_memory_format(format);
            let x = if f64 {
                x.to_kind(Kind::Double)
            } else {
                x.shallow_clone()
            };
            let xg = x.detach().set_requires_grad(true);
            let logits = m.logits(&xg, false);
            let loss = logits.cross_entropy_for_logits(&y);
            let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
            let mut out = vec![logits.detach(), g];
            let logits = m.logits(&x, true);
            out.push(logits.detach());
            logits.cross_entropy_for_logits(&y).backward();
            let mut grads: Vec<(String, Tensor)> =
                m.vs.variables()
                    .into_iter()
                    .filter(|(_, v)| v.requires_grad())
                    .map(|(name, v)| (name, v.grad().copy()))
                    .collect();
            grads.sort_by(|a, b| a.0.cmp(&b.0));
            (out, grads)
        };
        let what = ["logits", "input gradient", "training logits"];
        let flat = |g: &[(String, Tensor)]| {
            Tensor::cat(
                &g.iter().map(|(_, t)| t.flatten(0, -1)).collect::<Vec<_>>(),
                0,
            )
        };
        for arch in convolutional_archs() {
            let name = arch.label();
            let (exact, exact_grads) = outputs(&arch, F32, Contiguous, true);
            let mut deviations = Vec::new();
            for format in [Contiguous, ChannelsLast] {
                let (out, grads) = outputs(&arch, F32, format, false);
                for (i, tol) in [(0, 1e-5), (1, 1e-5), (2, 1e-3)] {
                    let d = rel(&exact[i], &out[i]);
                    assert!(d <= tol, "{name} f32 {format:?} {}: {d} from f64", what[i]);
                }
                let each: Vec<f64> = exact_grads
                    .iter()
                    .zip(&grads)
                    .map(|((_, p), (_, q))| rel(p, q))
                    .collect();
                deviations.push((each, rel(&flat(&exact_grads), &flat(&grads))));
            }
            let [(contiguous_each, contiguous_all), (cl_each, cl_all)] =
                <[_; 2]>::try_from(deviations).unwrap();
            assert!(
                cl_all <= 4.0 * contiguous_all + 1e-2,
                "{name} f32 weight gradients: channels-last {cl_all} from f64, contiguous \
                 {contiguous_all}"
            );
            for (i, (c, l)) in contiguous_each.iter().zip(&cl_each).enumerate() {
                assert!(
                    *l <= 4.0 * c + 5e-2,
                    "{name} f32 gradient of {}: channels-last {l} from f64, contiguous {c}",
                    exact_grads[i].0
                );
            }
            let (contiguous, _) = outputs(&arch, Bf16, Contiguous, false);
            let (cl, _) = outputs(&arch, Bf16, ChannelsLast, false);
            for i in 0..3 {
                let (dc, dl) = (rel(&exact[i], &contiguous[i]), rel(&exact[i], &cl[i]));
                assert!(
                    dl <= 1.5 * dc + 0.01,
                    "{name} bf16 {}: channels-last {dl} from f64, contiguous {dc}",
                    what[i]
                );
            }
        }
    }
}
