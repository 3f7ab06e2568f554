//! nrf-models: classifiers with a representation output (the penultimate layer g(x)), input
//! normalisation inside the model, the training loop (standard or adversarial), and checkpoints.
//!
//! ```no_run
//! use nrf_models::{Arch, Model, ModelSpec, TrainConfig, train, Classifier};
//! # fn main() -> anyhow::Result<()> {
//! let train_set = nrf_data::idx::load_fashion_mnist(nrf_data::idx::FASHION_MNIST_DIR, nrf_data::Split::Train)?;
//! let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
//! let mut model = Model::new(&spec, tch::Device::cuda_if_available(), 0)?;
//! let cfg = TrainConfig { epochs: 2, ..TrainConfig::default() };
//! let history = train(&mut model, &train_set, &cfg, None, None, None)?;
//! println!("final train accuracy {:.3}", history.last().unwrap().train_acc);
//! let x = nrf_models::images_to_tensor(&train_set, &[0, 1, 2], model.device());
//! let (logits, rep) = model.forward_rep(&x, false);
//! assert_eq!(logits.size(), vec![3, 10]);
//! assert_eq!(rep.size(), vec![3, 256]);
//! # Ok(()) }
//! ```
pub mod arch;
pub mod augment;
pub mod checkpoint;
pub mod flops;
pub mod optim;
pub mod replicas;
pub mod runtime;
pub mod torchscript;
pub mod train;

pub use arch::{Arch, Init, Precision, RepRelu};
pub use checkpoint::{load_model, save_model, ModelFormat};
pub use optim::{LrSchedule, Sgd};
pub use torchscript::{RepSource, TorchScriptClassifier};
pub use train::{train, EpochMetrics, TrainConfig};

use anyhow::{bail, Result};
use nrf_data::batch::spans;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// A classifier over images in `[0, 1]` (NCHW). Normalisation happens inside `forward_rep`, so
/// attacks always work in pixel space.
pub trait Classifier {
    /// Returns `(logits [N, classes], representation g(x) [N, d])`.
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor);
    /// [`Classifier::forward_rep`] with the ReLU that ends `g(x)` passing gradients as `relu`
    /// says ([`RepRelu`], the paper's FakeReLU for inverting representations). The default
    /// cannot reach inside the model and computes [`Classifier::forward_rep`] whatever `relu`
    /// is; [`Classifier::has_fake_relu`] says which one a classifier does.
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let _ = relu;
        self.forward_rep(x, train)
    }
    /// Whether [`Classifier::forward_rep_with`] applies [`RepRelu::Fake`] (false by default: a
    /// TorchScript model's ReLUs are its own).
    fn has_fake_relu(&self) -> bool {
        false
    }
    /// Logits only.
    fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_rep(x, train).0
    }
    /// Number of classes.
    fn num_classes(&self) -> i64;
    /// An independent copy (the same outputs) that another thread may own, so that independent
    /// work, such as the row blocks of an attack, runs on several CPU cores at once
    /// ([`replicas::map_on_replicas`]). `None` (the default) where there is none to make: the
    /// work then runs on this classifier, one job after another.
    fn replica(&self) -> Option<Box<dyn Classifier + Send>> {
        None
    }
}

/// A per-batch perturbation applied during training (adversarial training). nrf-attacks
/// implements it for PGD; models know nothing about norms.
pub trait BatchPerturber {
    /// Returns the inputs to train on for clean inputs `x` (in `[0,1]`) with labels `y`.
    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// One-line description, e.g. "L2 PGD eps=1 7x0.357 random start".
    fn describe(&self) -> String;
}

/// Everything needed to rebuild a model: stored in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Input shape (channels, height, width).
    pub in_shape: [i64; 3],
    pub num_classes: i64,
    /// Per-channel normalisation applied inside the model.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// How the weights were initialised (PyTorch's defaults unless a preset says otherwise).
    /// Checkpoints written before this field existed read as the default.
    #[serde(default)]
    pub init: Init,
    /// The arithmetic of its layers (f32, as the paper's code, unless a preset says otherwise).
    /// Left out of the JSON when f32, so an f32 spec serialises (and keys the stage cache) as it
    /// did before the field existed.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

impl ModelSpec {
    /// A spec with identity normalisation (mean 0, std 1).
    pub fn new(arch: Arch, in_shape: [i64; 3], num_classes: i64) -> Self {
        let c = in_shape[0] as usize;
        ModelSpec {
            arch,
            in_shape,
            num_classes,
            mean: vec![0.0; c],
            std: vec![1.0; c],
            init: Init::default(),
            precision: Precision::default(),
        }
    }
    /// Sets the initialisation scheme.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// Sets the arithmetic of its layers.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Sets the per-channel normalisation.
    pub fn with_normalization(mut self, mean: Vec<f64>, std: Vec<f64>) -> Self {
        self.mean = mean;
        self.std = std;
        self
    }
    /// Whether the normalisation is the identity (every mean 0, every std 1).
    pub fn is_identity_normalization(&self) -> bool {
        self.mean.iter().all(|&m| m == 0.0) && self.std.iter().all(|&s| s == 1.0)
    }
    /// Checks the spec for inconsistent values.
    pub fn validate(&self) -> Result<()> {
        self.arch
            .validate()
            .map_err(|e| anyhow::anyhow!("model spec: {e}"))?;
        let c = self.in_shape[0] as usize;
        if self.in_shape.iter().any(|&d| d <= 0) {
            bail!("model spec: in_shape {:?} must be positive", self.in_shape);
        }
        if self.num_classes < 2 {
            bail!(
                "model spec: num_classes {} must be at least 2",
                self.num_classes
            );
        }
        if self.mean.len() != c || self.std.len() != c {
            bail!(
                "model spec: mean/std need {c} values (one per channel), got {}/{}",
                self.mean.len(),
                self.std.len()
            );
        }
        if self.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            bail!(
                "model spec: std values must be positive and finite, got {:?}",
                self.std
            );
        }
        Ok(())
    }
}

/// A classifier: its variables, its network and its spec.
pub struct Model {
    pub vs: nn::VarStore,
    pub spec: ModelSpec,
    net: Box<dyn arch::Net>,
    /// `(mean, std)` as `[1, C, 1, 1]` tensors; `None` for the identity (mean 0, std 1), which
    /// would change no value or gradient (`(x - 0) / 1 == x` in floating point) and is skipped,
    /// as the twin skips it.
    norm: Option<(Tensor, Tensor)>,
    /// The layout of its convolution weights and of the images it is given.
    memory_format: runtime::MemoryFormat,
}

impl Model {
    /// Builds a freshly initialised model; `seed` fixes the initialisation.
    pub fn new(spec: &ModelSpec, device: Device, seed: i64) -> Result<Model> {
        spec.validate()?;
        tch::manual_seed(seed);
        Model::assemble(spec, device, |root| {
            arch::build(
                root,
                &spec.arch,
                spec.in_shape,
                spec.num_classes,
                spec.init,
                spec.precision,
            )
        })
    }
    /// The model of `spec` with every weight 0, built without drawing from torch's global
    /// generator (a seeded stream in progress is left as it is): the skeleton that a copy
    /// ([`Model::try_clone`]) or a load ([`checkpoint::load_model`]) fills in.
    pub fn placeholder(spec: &ModelSpec, device: Device) -> Result<Model> {
        spec.validate()?;
        Model::assemble(spec, device, |root| {
            arch::build_placeholder(
                root,
                &spec.arch,
                spec.in_shape,
                spec.num_classes,
                spec.precision,
            )
        })
    }
    /// A model of `spec` whose network `build` creates under a new variable store on `device`,
    /// with its input normalisation and [`runtime::MemoryFormat::for_model`]'s layout.
    fn assemble(
        spec: &ModelSpec,
        device: Device,
        build: impl FnOnce(&nn::Path) -> Box<dyn arch::Net>,
    ) -> Result<Model> {
        let vs = nn::VarStore::new(device);
        let net = build(&vs.root());
        let c = spec.in_shape[0];
        let per_channel = |v: &[f64]| {
            Tensor::from_slice(v)
                .to_kind(Kind::Float)
                .view([1, c, 1, 1])
                .to_device(device)
        };
        let norm = (!spec.is_identity_normalization())
            .then(|| (per_channel(&spec.mean), per_channel(&spec.std)));
        let mut model = Model {
            vs,
            spec: spec.clone(),
            net,
            norm,
            memory_format: runtime::MemoryFormat::Contiguous,
        };
        model.set_memory_format(runtime::MemoryFormat::for_model(&spec.arch, device)?);
        Ok(model)
    }
    /// The layout of its convolution weights and of the images it is given
    /// ([`runtime::MemoryFormat::for_model`] when built). Values are the same in either; the
    /// floating-point sums of a convolution may differ in their last bits.
    pub fn memory_format(&self) -> runtime::MemoryFormat {
        self.memory_format
    }
    /// Lays out its 4-d variables (convolution weights) in `format`, and the images it is given
    /// from now on. Values are unchanged; optimiser state made before the switch keeps its old
    /// layout (correct, a little slower), so switch before training.
    pub fn set_memory_format(&mut self, format: runtime::MemoryFormat) {
        let _g = tch::no_grad_guard();
        for (_, mut v) in self.vs.variables() {
            if v.dim() == 4 {
                let laid_out = format.apply(&v);
                v.set_data(&laid_out);
            }
        }
        self.memory_format = format;
    }
    /// A copy that owns its weights: the same values (batch-norm statistics included), layout and
    /// outputs, built without drawing from torch's global generator (so a seeded stream in
    /// progress, such as an evaluation's random starts, is left as it is).
    pub fn try_clone(&self) -> Result<Model> {
        let mut model = Model::placeholder(&self.spec, self.device())?;
        model.vs.copy(&self.vs)?;
        model.set_memory_format(self.memory_format);
        Ok(model)
    }
    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }
    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}

impl Classifier for Model {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        self.forward_rep_with(x, train, RepRelu::Relu)
    }
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let x = if x.dim() == 4 {
            x.shallow_clone()
        } else {
            x.view([
                -1,
                self.spec.in_shape[0],
                self.spec.in_shape[1],
                self.spec.in_shape[2],
            ])
        };
        let x = match self.memory_format {
            runtime::MemoryFormat::Contiguous => x,
            cl => cl.apply(&x),
        };
        match &self.norm {
            Some((mean, std)) => self.net.forward_rep_with(&((x - mean) / std), train, relu),
            None => self.net.forward_rep_with(&x, train, relu),
        }
    }
    fn has_fake_relu(&self) -> bool {
        true
    }
    fn num_classes(&self) -> i64 {
        self.spec.num_classes
    }
    /// On the CPU, a [`Model::try_clone`]; none on an accelerator (its threads would share one
    /// device).
    fn replica(&self) -> Option<Box<dyn Classifier + Send>> {
        if self.device() != Device::Cpu {
            return None;
        }
        match self.try_clone() {
            Ok(m) => Some(Box::new(m)),
            Err(e) => {
                tracing::warn!("could not copy the model for a second worker: {e:#}");
                None
            }
        }
    }
}

/// Copies the images at `indices` of `data` into a float tensor `[n, C, H, W]` on `device`.
pub fn images_to_tensor(data: &nrf_data::Dataset, indices: &[usize], device: Device) -> Tensor {
    let s = data.example_size();
    let mut buf = Vec::with_capacity(indices.len() * s);
    for &i in indices {
        buf.extend_from_slice(data.image(i));
    }
    let [c, h, w] = data.shape;
    Tensor::from_slice(&buf)
        .view([indices.len() as i64, c as i64, h as i64, w as i64])
        .to_device(device)
}

/// The whole dataset as `(images [N,C,H,W] float, labels [N] int64)` on `device`.
pub fn dataset_to_tensors(data: &nrf_data::Dataset, device: Device) -> (Tensor, Tensor) {
    let [c, h, w] = data.shape;
    let x = Tensor::from_slice(&data.images)
        .view([data.len() as i64, c as i64, h as i64, w as i64])
        .to_device(device);
    let y = Tensor::from_slice(&data.labels).to_device(device);
    (x, y)
}

/// Accuracy of `model` on `(x, y)` in batches (evaluation mode, no gradients); 0 for an empty set.
///
/// # Panics
///
/// When `batch_size` is not positive ([`nrf_data::batch::spans`]; `nrf_attacks::accuracy`
/// rejects it with an error first).
pub fn accuracy(model: &dyn Classifier, x: &Tensor, y: &Tensor, batch_size: i64) -> f64 {
    accuracy_on(model, x, y, batch_size, x.device())
}

/// [`accuracy`] of a model on `device` over `(x, y)` held elsewhere (e.g. a whole training set
/// in host memory): each batch is moved to `device` on its own.
pub fn accuracy_on(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    batch_size: i64,
    device: Device,
) -> f64 {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut correct = 0i64;
    for (lo, len) in spans(n, batch_size) {
        let xb = x.narrow(0, lo, len).to_device(device);
        let yb = y.narrow(0, lo, len).to_device(device);
        let pred = model.logits(&xb, false).argmax(-1, false);
        correct += pred.eq_tensor(&yb).sum(Kind::Int64).int64_value(&[]);
    }
    if n == 0 {
        0.0
    } else {
        correct as f64 / n as f64
    }
}

/// Converts a tensor of images `[N,C,H,W]` (float, `[0,1]`) back to flat `f32` pixels.
pub fn tensor_to_vec(x: &Tensor) -> Result<Vec<f32>> {
    let x = x
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    Ok(Vec::<f32>::try_from(&x)?)
}

/// Tests that draw from (or seed) torch's process-wide random generator hold this lock, so that
/// the test harness's threads never interleave their draws (a seeded test then sees its own
/// stream).
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every architecture nrf builds, each small (width 4, a few blocks): for tests that check a
/// property of all of them.
#[cfg(test)]
pub(crate) fn small_archs() -> Vec<Arch> {
    vec![
        Arch::FmnistCnn,
        Arch::Mlp {
            hidden: vec![32, 16],
        },
        Arch::ResNet18 { width: 4 },
        Arch::ResNet50 { width: 4 },
        Arch::ResNet50ImageNet { width: 4 },
        Arch::Vgg16 { width: 4 },
        Arch::DenseNet {
            growth: 4,
            blocks: vec![2, 3, 2],
        },
    ]
}
