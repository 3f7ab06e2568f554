//! Architectures. Every network returns `(logits, representation)`, the representation being the
//! penultimate layer g(x) (after its ReLU, before the final linear layer), as in the paper.
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

/// Which architecture to build; part of every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Arch {
    /// The default preset's CNN: conv3x3(C->16) - ReLU - conv3x3(16->32, s2) - ReLU -
    /// conv3x3(32->64, s2) - ReLU - fc(->256) - ReLU = g(x) - fc(256->K).
    FmnistCnn,
    /// Fully connected network; the last hidden layer is g(x).
    Mlp { hidden: Vec<i64> },
    /// ResNet-18, CIFAR variant (3x3 stem, no max-pool); `width` = first stage channels (64 in the paper).
    #[serde(rename = "resnet18")]
    ResNet18 { width: i64 },
    /// ResNet-50, CIFAR variant (bottleneck blocks); `width` = first stage channels (64 in the paper).
    #[serde(rename = "resnet50")]
    ResNet50 { width: i64 },
    /// ResNet-50, ImageNet variant (torchvision's `resnet50`, the robustness library's model for
    /// ImageNet and Restricted ImageNet): 7x7 stem at stride 2 and a 3x3 max-pool at stride 2,
    /// so the first stage works at a quarter of the input side (56x56 at 224 px); then the same
    /// bottleneck stages as [`Arch::ResNet50`]. `width` = first stage channels (64).
    #[serde(rename = "resnet50_imagenet")]
    ResNet50ImageNet { width: i64 },
    /// VGG-16 with batch norm; `width` = first block channels (64 in the paper). Max-pools are
    /// skipped once the feature map is 1x1, so small inputs work.
    #[serde(rename = "vgg16")]
    Vgg16 { width: i64 },
    /// DenseNet-BC; DenseNet-121 is `growth: 32, blocks: [6, 12, 24, 16]`.
    #[serde(rename = "densenet")]
    DenseNet { growth: i64, blocks: Vec<i64> },
}

impl Arch {
    /// Short name for tables, e.g. "resnet18(w=16)".
    pub fn label(&self) -> String {
        match self {
            Arch::FmnistCnn => "fmnist_cnn".into(),
            Arch::Mlp { hidden } => format!("mlp({hidden:?})"),
            Arch::ResNet18 { width } => format!("resnet18(w={width})"),
            Arch::ResNet50 { width } => format!("resnet50(w={width})"),
            Arch::ResNet50ImageNet { width } => format!("resnet50_imagenet(w={width})"),
            Arch::Vgg16 { width } => format!("vgg16_bn(w={width})"),
            Arch::DenseNet { growth, blocks } => format!("densenet(k={growth},{blocks:?})"),
        }
    }

    /// Checks the sizes before anything is built (libtorch would abort on a negative or absurd
    /// one): widths in 1..=[`MAX_WIDTH`], MLP hidden layers in 1..=[`MAX_HIDDEN`], DenseNet's
    /// growth in 1..=[`MAX_GROWTH`] and at least one block of 1..=[`MAX_BLOCK_LAYERS`] layers.
    /// The error says which size is wrong, e.g. "width -8 is not in 1..=1024".
    pub fn validate(&self) -> anyhow::Result<()> {
        let within = |what: &str, v: i64, max: i64| -> anyhow::Result<()> {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                anyhow::bail!("{}: {what} {v} is not in 1..={max}", self.label())
            }
        };
        match self {
            Arch::FmnistCnn => Ok(()),
            Arch::Mlp { hidden } => hidden
                .iter()
                .try_for_each(|&h| within("hidden size", h, MAX_HIDDEN)),
            Arch::ResNet18 { width }
            | Arch::ResNet50 { width }
            | Arch::ResNet50ImageNet { width }
            | Arch::Vgg16 { width } => within("width", *width, MAX_WIDTH),
            Arch::DenseNet { growth, blocks } => {
                within("growth", *growth, MAX_GROWTH)?;
                if blocks.is_empty() {
                    anyhow::bail!("{}: needs at least one dense block", self.label());
                }
                blocks
                    .iter()
                    .try_for_each(|&b| within("block length", b, MAX_BLOCK_LAYERS))
            }
        }
    }
}

/// The largest `width` [`Arch::validate`] accepts (the paper's networks use 64).
pub const MAX_WIDTH: i64 = 1024;
/// The largest MLP hidden layer [`Arch::validate`] accepts.
pub const MAX_HIDDEN: i64 = 1 << 16;
/// The largest DenseNet growth rate [`Arch::validate`] accepts (DenseNet-121: 32).
pub const MAX_GROWTH: i64 = 256;
/// The most layers in one DenseNet block [`Arch::validate`] accepts (DenseNet-121's largest: 24).
pub const MAX_BLOCK_LAYERS: i64 = 128;

/// How a freshly built network's weights are drawn; part of every checkpoint's spec.
///
/// The paper's code is PyTorch with its default initialisations, so that is nrf's default. tch's
/// own defaults differ and change what a model learns (the Kaiming-uniform bound with the ReLU
/// gain is sqrt(6) = 2.45x PyTorch's; conv biases start at 0; BatchNorm weights start uniform in
/// [0, 1]), so they are kept only as a named alternative for ablations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's defaults (`reset_parameters` of each layer in torch 2.x): Conv2d and Linear
    /// weights `kaiming_uniform_(a = sqrt(5))`, i.e. uniform in +-1/sqrt(fan_in), biases uniform
    /// in +-1/sqrt(fan_in); BatchNorm weight 1, bias 0. Where the paper's code overrides them in
    /// the architecture's `__init__`, as it does: the ImageNet ResNet-50's convolution weights
    /// are `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, normal with std
    /// sqrt(2 / (out channels x k x k)) (torchvision's ResNet, copied by the robustness
    /// library); its CIFAR ResNets, VGG and DenseNet keep the layer defaults.
    #[default]
    Pytorch,
    /// tch 0.26's defaults: conv and linear weights Kaiming-uniform with the ReLU gain (uniform in
    /// +-sqrt(6/fan_in)), conv biases 0, linear biases uniform in +-1/sqrt(fan_in), BatchNorm
    /// weight uniform in [0, 1], bias 0.
    Tch,
}

impl Init {
    /// Short name for tables: "pytorch" or "tch".
    pub fn label(&self) -> &'static str {
        match self {
            Init::Pytorch => "pytorch",
            Init::Tch => "tch",
        }
    }
}

/// The arithmetic of a network's convolutions and linear layers; part of every checkpoint's
/// spec.
///
/// The paper's code computes in f32, and so does nrf by default. `Bf16` is mixed precision as
/// PyTorch's `torch.autocast("cpu", torch.bfloat16)` does it: the weights (and what an optimiser
/// updates) stay f32, and each convolution and linear layer casts its input, weights and bias to
/// bfloat16 on the way in (differentiably: gradients reach the f32 weights and the f32 input);
/// batch norms (their weights and running statistics f32), ReLUs, pools and residual sums run on
/// bfloat16, the logits and representation come back as f32. On CPUs with bfloat16 arithmetic
/// (`avx512_bf16` or `amx_bf16`: AMD Zen 4, Intel Sapphire Rapids and later) a training step of
/// the Fashion-MNIST CNN took 0.61x and an attack step 0.38-0.48x of f32's time
/// (experiments/twin/probe_bf16.py), ResNet-18 and VGG-16 at width 8 0.67-0.76x and 0.58-0.67x
/// under autocast; in nrf (`step_parts`, 1 thread, an Intel Xeon with `amx_bf16`) the MLP
/// 0.82-0.83x and 0.66-0.68x, DenseNet (k = 8) 0.61-0.67x and 0.63-0.65x, ResNet-50 at width 8
/// 0.59-0.67x and 0.70-0.77x; elsewhere libtorch emulates it and it is slower. Every
/// architecture runs in it. Its
/// input gradients point where f32's do (cosine 0.997 per image) but are not the same: a run in
/// bf16 is another run, compared with f32's by its results (docs/performance.md, "bfloat16").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 throughout, as the paper's code.
    #[default]
    F32,
    /// bfloat16 convolutions and linear layers, f32 weights and outputs (every architecture).
    Bf16,
}

impl Precision {
    /// Whether this is the default, f32 (a spec in f32 serialises as it did before the field).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
    /// Short name for tables: "f32" or "bf16".
    pub fn label(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// PyTorch's bound 1/sqrt(fan_in) for a layer's weights and biases (`fan_in` > 0).
fn pytorch_bound(fan_in: i64) -> f64 {
    1.0 / (fan_in.max(1) as f64).sqrt()
}

fn uniform(bound: f64) -> nn::Init {
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// How gradients pass the ReLU that ends the representation `g(x)` (for a ResNet the last
/// block's, for a DenseNet the one after its final batch norm).
///
/// The paper's code inverts representations (D_R, D_NR) with the robustness library's
/// `fake_relu=True`: that ReLU computes `max(h, 0)` forward and passes the gradient unchanged
/// backward, so that a unit dead at the current image (`h < 0`) still pulls towards a target
/// that is positive there ("otherwise maximizing a ReLU which is dead is impossible"). The
/// forward values are the same bits either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RepRelu {
    /// The ReLU's own gradient (zero where `h < 0`): every forward pass but an inversion's.
    #[default]
    Relu,
    /// FakeReLU: ReLU forward, identity backward.
    Fake,
}

impl RepRelu {
    /// The ReLU of `h` with this gradient: `h + (relu(h) - h).detach()` for [`RepRelu::Fake`],
    /// whose value is `relu(h)` exactly (`h + (-h)` is 0 and `h + 0` is `h` in floating point).
    pub fn apply(self, h: &Tensor) -> Tensor {
        match self {
            RepRelu::Relu => h.relu(),
            RepRelu::Fake => h + (h.relu() - h).detach(),
        }
    }
}

/// A network body: `(logits, representation)` from *normalised* input.
pub trait Net: Send {
    /// Forward pass, the ReLU that ends the representation passing gradients as `relu` says.
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor);
    /// Forward pass.
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        self.forward_rep_with(x, train, RepRelu::Relu)
    }
}

/// A 2-d convolution and the stride and padding its forward pass uses (tch keeps them private).
struct Conv {
    m: nn::Conv2D,
    stride: i64,
    padding: i64,
}

/// The kind a network's convolutions and linear layers compute in when it is not their
/// weights' (f32): bfloat16 for [`Precision::Bf16`], as `torch.autocast("cpu")` does it. Batch
/// norms, ReLUs, pools and residual sums run on what they are given (bfloat16 then; a batch
/// norm keeps its f32 weights and running statistics, as under autocast).
#[derive(Debug, Clone, Copy)]
struct Compute(Option<Kind>);

impl Compute {
    fn of(p: Precision) -> Compute {
        match p {
            Precision::F32 => Compute(None),
            Precision::Bf16 => Compute(Some(Kind::BFloat16)),
        }
    }

    /// `t` in the compute kind (differentiably); itself in f32.
    fn cast(self, t: &Tensor) -> Tensor {
        match self.0 {
            Some(kind) => t.to_kind(kind),
            None => t.shallow_clone(),
        }
    }

    /// `c` on `h`: in f32 the ATen call tch's `Conv2D` makes; else on `h`, weights and bias
    /// cast to the compute kind.
    fn conv(self, h: &Tensor, c: &Conv) -> Tensor {
        self.cast(h).conv2d(
            &self.cast(&c.m.ws),
            c.m.bs.as_ref().map(|b| self.cast(b)),
            [c.stride, c.stride],
            [c.padding, c.padding],
            [1, 1],
            1,
        )
    }

    /// `l` on `h`, as [`Compute::conv`].
    fn linear(self, h: &Tensor, l: &nn::Linear) -> Tensor {
        self.cast(h)
            .linear(&self.cast(&l.ws), l.bs.as_ref().map(|b| self.cast(b)))
    }

    /// A network's output (logits, representation) in f32.
    fn output(self, t: Tensor) -> Tensor {
        match self.0 {
            Some(_) => t.to_kind(Kind::Float),
            None => t,
        }
    }
}

/// Builds `arch` under `p` for inputs of shape `[c, h, w]` and `classes` outputs, its weights
/// drawn as `init` says (from torch's global generator: seed it first), computing in `precision`.
pub fn build(
    p: &nn::Path,
    arch: &Arch,
    in_shape: [i64; 3],
    classes: i64,
    init: Init,
    precision: Precision,
) -> Box<dyn Net> {
    build_layers(
        &Layers {
            path: p,
            init: Some(init),
            fan_out_convs: false,
            precision,
        },
        arch,
        in_shape,
        classes,
    )
}

/// [`build`] with every weight 0 and nothing drawn from torch's global generator: the
/// skeleton of a copy whose weights are copied in next ([`crate::Model::replica`]).
pub(crate) fn build_placeholder(
    p: &nn::Path,
    arch: &Arch,
    in_shape: [i64; 3],
    classes: i64,
    precision: Precision,
) -> Box<dyn Net> {
    build_layers(
        &Layers {
            path: p,
            init: None,
            fan_out_convs: false,
            precision,
        },
        arch,
        in_shape,
        classes,
    )
}

fn build_layers(p: &Layers, arch: &Arch, in_shape: [i64; 3], classes: i64) -> Box<dyn Net> {
    match arch {
        Arch::FmnistCnn => Box::new(FmnistCnn::new(p, in_shape, classes)),
        Arch::Mlp { hidden } => Box::new(Mlp::new(p, in_shape, hidden, classes)),
        Arch::ResNet18 { width } => Box::new(ResNet::new(
            p,
            in_shape[0],
            *width,
            false,
            &[2, 2, 2, 2],
            classes,
            false,
        )),
        Arch::ResNet50 { width } => Box::new(ResNet::new(
            p,
            in_shape[0],
            *width,
            true,
            &[3, 4, 6, 3],
            classes,
            false,
        )),
        Arch::ResNet50ImageNet { width } => Box::new(ResNet::new(
            &Layers {
                fan_out_convs: true,
                ..*p
            },
            in_shape[0],
            *width,
            true,
            &[3, 4, 6, 3],
            classes,
            true,
        )),
        Arch::Vgg16 { width } => Box::new(Vgg::new(p, in_shape, *width, classes)),
        Arch::DenseNet { growth, blocks } => {
            Box::new(DenseNet::new(p, in_shape[0], *growth, blocks, classes))
        }
    }
}

/// Where layers are created, and how their weights are drawn (`None`: all 0, nothing drawn).
#[derive(Clone, Copy)]
struct Layers<'a> {
    path: &'a nn::Path<'a>,
    init: Option<Init>,
    /// Under [`Init::Pytorch`], convolution weights as the architecture's own reference
    /// `__init__` draws them, `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: the ImageNet
    /// ResNet-50 (torchvision's, which the robustness library's `imagenet_models/resnet.py`
    /// copies). False: PyTorch's `Conv2d` default.
    fan_out_convs: bool,
    /// The arithmetic of the network built.
    precision: Precision,
}

/// Weights and biases of 0: a placeholder layer draws nothing.
const ZERO: nn::Init = nn::Init::Const(0.0);

impl Layers<'_> {
    /// A convolution with a square kernel `k`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        p: nn::Path,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> Conv {
        let mut cfg = nn::ConvConfig {
            stride,
            padding,
            bias,
            ..Default::default()
        };
        match self.init {
            Some(Init::Pytorch) => {
                let bound = pytorch_bound(cin * k * k);
                cfg.ws_init = if self.fan_out_convs {
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: (2.0 / (cout * k * k) as f64).sqrt(),
                    }
                } else {
                    uniform(bound)
                };
                cfg.bs_init = uniform(bound);
            }
            Some(Init::Tch) => {}
            None => (cfg.ws_init, cfg.bs_init) = (ZERO, ZERO),
        }
        Conv {
            m: nn::conv2d(p, cin, cout, k, cfg),
            stride,
            padding,
        }
    }

    /// A fully connected layer with bias.
    fn linear(&self, p: nn::Path, din: i64, dout: i64) -> nn::Linear {
        let cfg = match self.init {
            Some(Init::Pytorch) => nn::LinearConfig {
                ws_init: uniform(pytorch_bound(din)),
                bs_init: Some(uniform(pytorch_bound(din))),
                bias: true,
            },
            Some(Init::Tch) => Default::default(),
            None => nn::LinearConfig {
                ws_init: ZERO,
                bs_init: Some(ZERO),
                bias: true,
            },
        };
        nn::linear(p, din, dout, cfg)
    }

    /// 2-d batch norm over `c` channels.
    fn bn(&self, p: nn::Path, c: i64) -> nn::BatchNorm {
        let mut cfg = nn::BatchNormConfig::default();
        match self.init {
            Some(Init::Pytorch) => {
                cfg.ws_init = nn::Init::Const(1.0);
                cfg.bs_init = ZERO;
            }
            Some(Init::Tch) => {}
            None => (cfg.ws_init, cfg.bs_init) = (ZERO, ZERO),
        }
        nn::batch_norm2d(p, c, cfg)
    }
}

struct FmnistCnn {
    c1: Conv,
    c2: Conv,
    c3: Conv,
    fc1: nn::Linear,
    fc2: nn::Linear,
    compute: Compute,
}

impl FmnistCnn {
    fn new(l: &Layers, s: [i64; 3], classes: i64) -> Self {
        let p = l.path;
        let h = (s[1] + 1) / 2;
        let h = (h + 1) / 2;
        let w = (s[2] + 1) / 2;
        let w = (w + 1) / 2;
        FmnistCnn {
            c1: l.conv(p / "c1", s[0], 16, 3, 1, 1, true),
            c2: l.conv(p / "c2", 16, 32, 3, 2, 1, true),
            c3: l.conv(p / "c3", 32, 64, 3, 2, 1, true),
            fc1: l.linear(p / "fc1", 64 * h * w, 256),
            fc2: l.linear(p / "fc2", 256, classes),
            compute: Compute::of(l.precision),
        }
    }
}

impl Net for FmnistCnn {
    /// In f32 (`compute` unset) the ATen calls tch's `Conv2D` and `Linear` modules make, on the
    /// same tensors (the test below holds it to the bit). With `compute` every layer computes in
    /// that kind: its input, weights and bias cast on the way in (autograd through the casts),
    /// logits and representation returned in f32.
    fn forward_rep_with(&self, x: &Tensor, _train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let c = self.compute;
        let h = c.conv(x, &self.c1).relu();
        // The last feature map is made contiguous before its ReLU, not by the flatten after it
        // (the same copy of the same values): channels-last, the flatten's gradient would come
        // back contiguous to a ReLU whose saved output is channels-last, and ATen's backward of
        // a ReLU over two layouts is several times slower than over one (docs/performance.md,
        // "Memory format").
        let h = c.conv(&c.conv(&h, &self.c2).relu(), &self.c3);
        let h = h.contiguous().relu();
        let rep = relu.apply(&c.linear(&h.flatten(1, -1), &self.fc1));
        let logits = c.linear(&rep, &self.fc2);
        (c.output(logits), c.output(rep))
    }
}

struct Mlp {
    layers: Vec<nn::Linear>,
    out: nn::Linear,
    compute: Compute,
}

impl Mlp {
    fn new(l: &Layers, s: [i64; 3], hidden: &[i64], classes: i64) -> Self {
        let p = l.path;
        let mut d = s.iter().product::<i64>();
        let mut layers = Vec::new();
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(l.linear(p / format!("fc{i}"), d, h));
            d = h;
        }
        Mlp {
            layers,
            out: l.linear(p / "out", d, classes),
            compute: Compute::of(l.precision),
        }
    }
}

impl Net for Mlp {
    fn forward_rep_with(&self, x: &Tensor, _train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let c = self.compute;
        let mut h = x.flatten(1, -1);
        let last = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            h = c.linear(&h, l);
            h = if i + 1 == last {
                relu.apply(&h)
            } else {
                h.relu()
            };
        }
        (c.output(c.linear(&h, &self.out)), c.output(h))
    }
}

struct Block {
    convs: Vec<(Conv, nn::BatchNorm)>,
    shortcut: Option<(Conv, nn::BatchNorm)>,
}

impl Block {
    /// The block's output, its final ReLU as `relu` says.
    fn forward(&self, x: &Tensor, train: bool, c: Compute, relu: RepRelu) -> Tensor {
        let mut h = x.shallow_clone();
        let n = self.convs.len();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            h = c.conv(&h, conv).apply_t(bn, train);
            if i + 1 < n {
                h = h.relu();
            }
        }
        let s = match &self.shortcut {
            Some((conv, bn)) => c.conv(x, conv).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        relu.apply(&(h + s))
    }
}

struct ResNet {
    stem: (Conv, nn::BatchNorm),
    /// ImageNet stem (7x7 at stride 2, then a 3x3 max-pool at stride 2) instead of CIFAR's 3x3.
    imagenet_stem: bool,
    blocks: Vec<Block>,
    fc: nn::Linear,
    compute: Compute,
}

impl ResNet {
    fn new(
        l: &Layers,
        cin: i64,
        width: i64,
        bottleneck: bool,
        counts: &[i64],
        classes: i64,
        imagenet_stem: bool,
    ) -> Self {
        let p = l.path;
        let bn = |p: nn::Path, c| l.bn(p, c);
        let stem_conv = if imagenet_stem {
            l.conv(p / "stem", cin, width, 7, 2, 3, false)
        } else {
            l.conv(p / "stem", cin, width, 3, 1, 1, false)
        };
        let stem = (stem_conv, bn(p / "stem_bn", width));
        let expansion = if bottleneck { 4 } else { 1 };
        let mut blocks = Vec::new();
        let mut cur = width;
        for (stage, &count) in counts.iter().enumerate() {
            let planes = width << stage;
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let q = p / format!("s{stage}b{b}");
                let out = planes * expansion;
                let convs = if bottleneck {
                    vec![
                        (
                            l.conv(&q / "c1", cur, planes, 1, 1, 0, false),
                            bn(&q / "bn1", planes),
                        ),
                        (
                            l.conv(&q / "c2", planes, planes, 3, stride, 1, false),
                            bn(&q / "bn2", planes),
                        ),
                        (
                            l.conv(&q / "c3", planes, out, 1, 1, 0, false),
                            bn(&q / "bn3", out),
                        ),
                    ]
                } else {
                    vec![
                        (
                            l.conv(&q / "c1", cur, planes, 3, stride, 1, false),
                            bn(&q / "bn1", planes),
                        ),
                        (
                            l.conv(&q / "c2", planes, planes, 3, 1, 1, false),
                            bn(&q / "bn2", planes),
                        ),
                    ]
                };
                let shortcut = (stride != 1 || cur != out).then(|| {
                    (
                        l.conv(&q / "sc", cur, out, 1, stride, 0, false),
                        bn(&q / "sc_bn", out),
                    )
                });
                blocks.push(Block { convs, shortcut });
                cur = out;
            }
        }
        ResNet {
            stem,
            imagenet_stem,
            blocks,
            fc: l.linear(p / "fc", cur, classes),
            compute: Compute::of(l.precision),
        }
    }
}

impl Net for ResNet {
    /// The representation's ReLU is the last block's (the robustness library's `fake_relu`).
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let c = self.compute;
        let mut h = c.conv(x, &self.stem.0).apply_t(&self.stem.1, train).relu();
        if self.imagenet_stem {
            h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        let last = self.blocks.len();
        for (i, b) in self.blocks.iter().enumerate() {
            let r = if i + 1 == last { relu } else { RepRelu::Relu };
            h = b.forward(&h, train, c, r);
        }
        let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = c.linear(&rep, &self.fc);
        (c.output(logits), c.output(rep))
    }
}

struct Vgg {
    layers: Vec<VggLayer>,
    fc: nn::Linear,
    compute: Compute,
}

enum VggLayer {
    Conv(Box<(Conv, nn::BatchNorm)>),
    Pool,
}

impl Vgg {
    fn new(l: &Layers, s: [i64; 3], width: i64, classes: i64) -> Self {
        let p = l.path;
        // VGG-16 configuration, in units of `width` (64 in the original).
        let cfg: [i64; 18] = [1, 1, 0, 2, 2, 0, 4, 4, 4, 0, 8, 8, 8, 0, 8, 8, 8, 0];
        let mut layers = Vec::new();
        let (mut c, mut size) = (s[0], s[1].min(s[2]));
        for (i, &m) in cfg.iter().enumerate() {
            if m == 0 {
                if size >= 2 {
                    layers.push(VggLayer::Pool);
                    size /= 2;
                }
            } else {
                let out = m * width;
                layers.push(VggLayer::Conv(Box::new((
                    l.conv(p / format!("c{i}"), c, out, 3, 1, 1, false),
                    l.bn(p / format!("bn{i}"), out),
                ))));
                c = out;
            }
        }
        Vgg {
            layers,
            fc: l.linear(p / "fc", c, classes),
            compute: Compute::of(l.precision),
        }
    }
}

impl Net for Vgg {
    /// The representation's ReLU is the last convolution's (the robustness library's VGG has no
    /// `fake_relu`; this is the same rule as its ResNets').
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let c = self.compute;
        let mut h = x.shallow_clone();
        let last_conv = self
            .layers
            .iter()
            .rposition(|l| matches!(l, VggLayer::Conv(_)));
        for (i, l) in self.layers.iter().enumerate() {
            h = match l {
                VggLayer::Conv(cb) => {
                    let h = c.conv(&h, &cb.0).apply_t(&cb.1, train);
                    if Some(i) == last_conv {
                        relu.apply(&h)
                    } else {
                        h.relu()
                    }
                }
                VggLayer::Pool => h.max_pool2d_default(2),
            };
        }
        let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = c.linear(&rep, &self.fc);
        (c.output(logits), c.output(rep))
    }
}

struct DenseLayer {
    bn1: nn::BatchNorm,
    c1: Conv,
    bn2: nn::BatchNorm,
    c2: Conv,
}

struct DenseNet {
    stem: Conv,
    blocks: Vec<Vec<DenseLayer>>,
    transitions: Vec<(nn::BatchNorm, Conv)>,
    bn: nn::BatchNorm,
    fc: nn::Linear,
    compute: Compute,
}

impl DenseNet {
    fn new(l: &Layers, cin: i64, growth: i64, counts: &[i64], classes: i64) -> Self {
        let p = l.path;
        let bn = |p: nn::Path, c| l.bn(p, c);
        let mut c = 2 * growth;
        let stem = l.conv(p / "stem", cin, c, 3, 1, 1, false);
        let (mut blocks, mut transitions) = (Vec::new(), Vec::new());
        for (b, &count) in counts.iter().enumerate() {
            let mut layers = Vec::new();
            for i in 0..count {
                let q = p / format!("b{b}l{i}");
                layers.push(DenseLayer {
                    bn1: bn(&q / "bn1", c),
                    c1: l.conv(&q / "c1", c, 4 * growth, 1, 1, 0, false),
                    bn2: bn(&q / "bn2", 4 * growth),
                    c2: l.conv(&q / "c2", 4 * growth, growth, 3, 1, 1, false),
                });
                c += growth;
            }
            blocks.push(layers);
            if b + 1 < counts.len() {
                let q = p / format!("t{b}");
                transitions.push((bn(&q / "bn", c), l.conv(&q / "c", c, c / 2, 1, 1, 0, false)));
                c /= 2;
            }
        }
        DenseNet {
            stem,
            blocks,
            transitions,
            bn: bn(p / "bn", c),
            fc: l.linear(p / "fc", c, classes),
            compute: Compute::of(l.precision),
        }
    }
}

impl Net for DenseNet {
    /// The representation's ReLU is the one after the final batch norm (as the robustness
    /// library's DenseNet applies `fake_relu`).
    fn forward_rep_with(&self, x: &Tensor, train: bool, relu: RepRelu) -> (Tensor, Tensor) {
        let c = self.compute;
        let mut h = c.conv(x, &self.stem);
        for (b, layers) in self.blocks.iter().enumerate() {
            for l in layers {
                let y = c.conv(&h.apply_t(&l.bn1, train).relu(), &l.c1);
                let y = c.conv(&y.apply_t(&l.bn2, train).relu(), &l.c2);
                h = Tensor::cat(&[h, y], 1);
            }
            if let Some((bn, conv)) = self.transitions.get(b) {
                h = c.conv(&h.apply_t(bn, train).relu(), conv);
                if h.size()[2] >= 2 {
                    h = h.avg_pool2d_default(2);
                }
            }
        }
        let rep = relu
            .apply(&h.apply_t(&self.bn, train))
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1);
        let logits = c.linear(&rep, &self.fc);
        (c.output(logits), c.output(rep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CNN's f32 forward pass is, to the bit, what tch's `Conv2D` and `Linear` modules
    /// compute with the same weights (the path nrf took before `model.precision` existed).
    #[test]
    fn fmnist_cnn_f32_forward_is_tchs_modules_bit_for_bit() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let l = Layers {
            path: &vs.root(),
            init: Some(Init::Pytorch),
            fan_out_convs: false,
            precision: Precision::F32,
        };
        let mut net = FmnistCnn::new(&l, [1, 28, 28], 10);
        let x = Tensor::rand([5, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        let (logits, rep) = net.forward_rep(&x, false);
        // tch's modules: the representation.
        let modules = |net: &FmnistCnn, x: &Tensor| {
            x.apply(&net.c1.m)
                .relu()
                .apply(&net.c2.m)
                .relu()
                .apply(&net.c3.m)
                .relu()
                .flatten(1, -1)
                .apply(&net.fc1)
                .relu()
        };
        let want_rep = modules(&net, &x);
        let want_logits = want_rep.apply(&net.fc2);
        assert_eq!(logits.kind(), Kind::Float);
        assert!(rep.equal(&want_rep), "representation differs");
        assert!(logits.equal(&want_logits), "logits differ");
        // Channels-last too, and the weights' and the input's gradients as well.
        let cl = crate::runtime::MemoryFormat::ChannelsLast;
        for v in [&mut net.c1.m.ws, &mut net.c2.m.ws, &mut net.c3.m.ws] {
            let d = cl.apply(v);
            tch::no_grad(|| v.set_data(&d));
        }
        let x = cl.apply(&x).set_requires_grad(true);
        let grads = |out: Tensor| {
            let vars = [&net.c1.m.ws, &net.c3.m.ws, &net.fc1.ws, &x];
            Tensor::run_backward(&[out.sum(Kind::Float)], &vars, false, false)
        };
        let got = grads(net.forward_rep(&x, true).0);
        let want = grads(modules(&net, &x).apply(&net.fc2));
        for (g, w) in got.iter().zip(&want) {
            assert!(g.equal(w), "a gradient differs");
        }
        // ... and bf16 computes something else, returned in f32 (the models test bounds how
        // close it stays).
        let bf16 = FmnistCnn {
            compute: Compute::of(Precision::Bf16),
            ..net
        };
        let (bf16_logits, bf16_rep) = bf16.forward_rep(&x, false);
        assert_eq!(
            (bf16_logits.kind(), bf16_rep.kind()),
            (Kind::Float, Kind::Float)
        );
        assert!(!bf16_logits.equal(&want_logits));
    }

    /// ResNet-18's, VGG-16's, the MLP's and DenseNet's f32 forward passes (training mode too)
    /// are, to the bit, tch's `Conv2D` / `Linear` modules' with the same weights; in bf16 they
    /// return f32, near f32's, and train: the weights' gradients and the batch norms' running
    /// statistics stay f32.
    #[test]
    fn f32_networks_are_tchs_modules_and_bf16_trains() {
        let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        // The forward passes as they were written with tch's modules.
        fn resnet_modules(net: &ResNet, x: &Tensor, train: bool) -> (Tensor, Tensor) {
            let mut h = x.apply(&net.stem.0.m).apply_t(&net.stem.1, train).relu();
            for b in &net.blocks {
                let mut y = h.shallow_clone();
                for (i, (c, bn)) in b.convs.iter().enumerate() {
                    y = y.apply(&c.m).apply_t(bn, train);
                    if i + 1 < b.convs.len() {
                        y = y.relu();
                    }
                }
                let s = match &b.shortcut {
                    Some((c, bn)) => h.apply(&c.m).apply_t(bn, train),
                    None => h.shallow_clone(),
                };
                h = (y + s).relu();
            }
            let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
            (rep.apply(&net.fc), rep)
        }
        fn vgg_modules(net: &Vgg, x: &Tensor, train: bool) -> (Tensor, Tensor) {
            let mut h = x.shallow_clone();
            for l in &net.layers {
                h = match l {
                    VggLayer::Conv(cb) => h.apply(&cb.0.m).apply_t(&cb.1, train).relu(),
                    VggLayer::Pool => h.max_pool2d_default(2),
                };
            }
            let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
            (rep.apply(&net.fc), rep)
        }
        fn mlp_modules(net: &Mlp, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
            let mut h = x.flatten(1, -1);
            for l in &net.layers {
                h = h.apply(l).relu();
            }
            (h.apply(&net.out), h)
        }
        fn densenet_modules(net: &DenseNet, x: &Tensor, train: bool) -> (Tensor, Tensor) {
            let mut h = x.apply(&net.stem.m);
            for (b, layers) in net.blocks.iter().enumerate() {
                for l in layers {
                    let y = (h.apply_t(&l.bn1, train).relu().apply(&l.c1.m))
                        .apply_t(&l.bn2, train)
                        .relu()
                        .apply(&l.c2.m);
                    h = Tensor::cat(&[h, y], 1);
                }
                if let Some((bn, c)) = net.transitions.get(b) {
                    h = h.apply_t(bn, train).relu().apply(&c.m);
                    if h.size()[2] >= 2 {
                        h = h.avg_pool2d_default(2);
                    }
                }
            }
            let rep = (h.apply_t(&net.bn, train).relu())
                .adaptive_avg_pool2d([1, 1])
                .flatten(1, -1);
            (rep.apply(&net.fc), rep)
        }
        /// The f32 network built with `build` equals `modules` bit for bit, in evaluation and
        /// in training mode (the batch norms' batch statistics).
        fn f32_is_modules<N: Net>(
            x: &Tensor,
            build: impl Fn(&Layers) -> N,
            modules: impl Fn(&N, &Tensor, bool) -> (Tensor, Tensor),
        ) {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let l = Layers {
                path: &vs.root(),
                init: Some(Init::Pytorch),
                fan_out_convs: false,
                precision: Precision::F32,
            };
            let net = build(&l);
            for train in [false, true] {
                let ((logits, rep), (want_logits, want_rep)) =
                    (net.forward_rep(x, train), modules(&net, x, train));
                assert!(logits.equal(&want_logits), "train={train}: logits");
                assert!(rep.equal(&want_rep), "train={train}: representation");
            }
        }
        let resnet = |l: &Layers| ResNet::new(l, 1, 4, false, &[2, 2, 2, 2], 10, false);
        let vgg = |l: &Layers| Vgg::new(l, [1, 28, 28], 4, 10);
        let mlp = |l: &Layers| Mlp::new(l, [1, 28, 28], &[16, 8], 10);
        let densenet = |l: &Layers| DenseNet::new(l, 1, 4, &[2, 2], 10);
        f32_is_modules(&x, resnet, resnet_modules);
        f32_is_modules(&x, vgg, vgg_modules);
        f32_is_modules(&x, mlp, mlp_modules);
        f32_is_modules(&x, densenet, densenet_modules);

        for arch in [
            Arch::ResNet18 { width: 4 },
            Arch::Vgg16 { width: 4 },
            Arch::Mlp {
                hidden: vec![16, 8],
            },
            Arch::DenseNet {
                growth: 4,
                blocks: vec![2, 2],
            },
        ] {
            let build_in = |precision| {
                let vs = nn::VarStore::new(tch::Device::Cpu);
                let l = Layers {
                    path: &vs.root(),
                    init: Some(Init::Pytorch),
                    fan_out_convs: false,
                    precision,
                };
                let net = build_layers(&l, &arch, [1, 28, 28], 10);
                (vs, net)
            };
            let (vs32, f32_net) = build_in(Precision::F32);
            let (mut vs16, bf16_net) = build_in(Precision::Bf16);
            // The same weights in both precisions: copied (tests in other threads draw from
            // torch's global generator, so a seed drawn twice need not give them twice).
            vs16.copy(&vs32).unwrap();
            let (want, _) = f32_net.forward_rep(&x, false);
            let (got, rep) = bf16_net.forward_rep(&x, false);
            assert_eq!((got.kind(), rep.kind()), (Kind::Float, Kind::Float));
            let scale = want.abs().max().double_value(&[]);
            let err = (&got - &want).abs().max().double_value(&[]);
            assert!(
                err > 0.0 && err < 0.05 * scale,
                "{arch:?}: {err} of {scale}"
            );
            // A training step's backward: f32 gradients on f32 weights, f32 running statistics.
            let (logits, _) = bf16_net.forward_rep(&x, true);
            let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
            logits.cross_entropy_for_logits(&y).backward();
            for (name, t) in vs16.variables() {
                assert_eq!(t.kind(), Kind::Float, "{arch:?} {name}");
                if t.requires_grad() {
                    let g = t.grad();
                    assert!(g.defined() && g.kind() == Kind::Float, "{arch:?} {name}");
                    assert_eq!(g.isfinite().all().int64_value(&[]), 1, "{arch:?} {name}");
                }
            }
        }
    }

    /// FakeReLU (the paper's inversion) changes only the representation's gradient: for every
    /// architecture the logits and g(x) are the same bits as the plain ReLU's, in both modes;
    /// and the input gradient of g differs where units are dead, which the plain ReLU's cannot
    /// see. For the MLP, whose g is one linear layer and a ReLU, the gradient through FakeReLU is
    /// exactly the linear layer's: d(v . g(x))/dx = W^T v at every x, dead units included.
    #[test]
    fn fake_relu_changes_the_gradient_of_g_and_nothing_else() {
        use crate::{Classifier, Model, ModelSpec};
        let _rng = crate::rng_lock();
        for arch in crate::small_archs() {
            let spec = ModelSpec::new(arch.clone(), [3, 32, 32], 10);
            let model = Model::new(&spec, tch::Device::Cpu, 3).unwrap();
            let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
            for train in [false, true] {
                let (l1, r1) = tch::no_grad(|| model.forward_rep(&x, train));
                let (l2, r2) = tch::no_grad(|| model.forward_rep_with(&x, train, RepRelu::Fake));
                assert!(l1.equal(&l2) && r1.equal(&r2), "{arch:?}: outputs differ");
            }
            let grad = |relu: RepRelu| {
                let xg = x.copy().set_requires_grad(true);
                let (_, rep) = model.forward_rep_with(&xg, false, relu);
                // A target above every unit: a dead unit would want to rise.
                let loss = (rep - 1.0).square().sum(Kind::Float);
                Tensor::run_backward(&[loss], &[&xg], false, false)
                    .pop()
                    .unwrap()
            };
            let (g_relu, g_fake) = (grad(RepRelu::Relu), grad(RepRelu::Fake));
            let dead = tch::no_grad(|| model.forward_rep(&x, false).1.eq(0.0).any());
            if bool::try_from(dead).unwrap() {
                assert!(!g_relu.allclose(&g_fake, 1e-6, 1e-7, false), "{arch:?}");
            }
        }
        // The MLP: g = fake_relu(W x + b), so d(v . g)/dx = W^T v exactly.
        let spec = ModelSpec::new(Arch::Mlp { hidden: vec![16] }, [1, 4, 4], 3);
        let model = Model::new(&spec, tch::Device::Cpu, 5).unwrap();
        let w = model
            .vs
            .variables()
            .into_iter()
            .find(|(n, _)| n.ends_with("fc0.weight"))
            .expect("the MLP's first layer")
            .1;
        let x = Tensor::rand([2, 1, 4, 4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let v = Tensor::randn([2, 16], (Kind::Float, tch::Device::Cpu));
        let (_, rep) = model.forward_rep_with(&x, false, RepRelu::Fake);
        assert!(
            bool::try_from(rep.eq(0.0).any()).unwrap(),
            "no dead unit to test"
        );
        let loss = (rep * &v).sum(Kind::Float);
        let g = Tensor::run_backward(&[loss], &[&x], false, false)
            .pop()
            .unwrap()
            .view([2, 16]);
        let want = v.matmul(&w);
        assert!(g.allclose(&want, 1e-5, 1e-6, false), "{g} vs {want}");
    }
}
