//! Architectures. Every network returns `(logits, representation)`, the representation being the
//! penultimate layer g(x) (after its ReLU, before the final linear layer), as in the paper.
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

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
            Arch::Vgg16 { width } => format!("vgg16_bn(w={width})"),
            Arch::DenseNet { growth, blocks } => format!("densenet(k={growth},{blocks:?})"),
        }
    }
}

/// A network body: `(logits, representation)` from *normalised* input.
pub trait Net: Send {
    /// Forward pass.
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor);
}

/// Builds `arch` under `p` for inputs of shape `[c, h, w]` and `classes` outputs.
pub fn build(p: &nn::Path, arch: &Arch, in_shape: [i64; 3], classes: i64) -> Box<dyn Net> {
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
        )),
        Arch::ResNet50 { width } => Box::new(ResNet::new(
            p,
            in_shape[0],
            *width,
            true,
            &[3, 4, 6, 3],
            classes,
        )),
        Arch::Vgg16 { width } => Box::new(Vgg::new(p, in_shape, *width, classes)),
        Arch::DenseNet { growth, blocks } => {
            Box::new(DenseNet::new(p, in_shape[0], *growth, blocks, classes))
        }
    }
}

fn conv(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

struct FmnistCnn {
    c1: nn::Conv2D,
    c2: nn::Conv2D,
    c3: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl FmnistCnn {
    fn new(p: &nn::Path, s: [i64; 3], classes: i64) -> Self {
        let h = (s[1] + 1) / 2;
        let h = (h + 1) / 2;
        let w = (s[2] + 1) / 2;
        let w = (w + 1) / 2;
        FmnistCnn {
            c1: conv(p / "c1", s[0], 16, 3, 1, 1, true),
            c2: conv(p / "c2", 16, 32, 3, 2, 1, true),
            c3: conv(p / "c3", 32, 64, 3, 2, 1, true),
            fc1: nn::linear(p / "fc1", 64 * h * w, 256, Default::default()),
            fc2: nn::linear(p / "fc2", 256, classes, Default::default()),
        }
    }
}

impl Net for FmnistCnn {
    fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let h = x
            .apply(&self.c1)
            .relu()
            .apply(&self.c2)
            .relu()
            .apply(&self.c3)
            .relu();
        let rep = h.flatten(1, -1).apply(&self.fc1).relu();
        (rep.apply(&self.fc2), rep)
    }
}

struct Mlp {
    layers: Vec<nn::Linear>,
    out: nn::Linear,
}

impl Mlp {
    fn new(p: &nn::Path, s: [i64; 3], hidden: &[i64], classes: i64) -> Self {
        let mut d = s.iter().product::<i64>();
        let mut layers = Vec::new();
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(nn::linear(p / format!("fc{i}"), d, h, Default::default()));
            d = h;
        }
        Mlp {
            layers,
            out: nn::linear(p / "out", d, classes, Default::default()),
        }
    }
}

impl Net for Mlp {
    fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let mut h = x.flatten(1, -1);
        for l in &self.layers {
            h = h.apply(l).relu();
        }
        (h.apply(&self.out), h)
    }
}

struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        let n = self.convs.len();
        for (i, (c, bn)) in self.convs.iter().enumerate() {
            h = h.apply(c).apply_t(bn, train);
            if i + 1 < n {
                h = h.relu();
            }
        }
        let s = match &self.shortcut {
            Some((c, bn)) => x.apply(c).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        (h + s).relu()
    }
}

struct ResNet {
    stem: (nn::Conv2D, nn::BatchNorm),
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet {
    fn new(
        p: &nn::Path,
        cin: i64,
        width: i64,
        bottleneck: bool,
        counts: &[i64],
        classes: i64,
    ) -> Self {
        let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, Default::default());
        let stem = (
            conv(p / "stem", cin, width, 3, 1, 1, false),
            bn(p / "stem_bn", width),
        );
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
                            conv(&q / "c1", cur, planes, 1, 1, 0, false),
                            bn(&q / "bn1", planes),
                        ),
                        (
                            conv(&q / "c2", planes, planes, 3, stride, 1, false),
                            bn(&q / "bn2", planes),
                        ),
                        (
                            conv(&q / "c3", planes, out, 1, 1, 0, false),
                            bn(&q / "bn3", out),
                        ),
                    ]
                } else {
                    vec![
                        (
                            conv(&q / "c1", cur, planes, 3, stride, 1, false),
                            bn(&q / "bn1", planes),
                        ),
                        (
                            conv(&q / "c2", planes, planes, 3, 1, 1, false),
                            bn(&q / "bn2", planes),
                        ),
                    ]
                };
                let shortcut = (stride != 1 || cur != out).then(|| {
                    (
                        conv(&q / "sc", cur, out, 1, stride, 0, false),
                        bn(&q / "sc_bn", out),
                    )
                });
                blocks.push(Block { convs, shortcut });
                cur = out;
            }
        }
        ResNet {
            stem,
            blocks,
            fc: nn::linear(p / "fc", cur, classes, Default::default()),
        }
    }
}

impl Net for ResNet {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut h = x.apply(&self.stem.0).apply_t(&self.stem.1, train).relu();
        for b in &self.blocks {
            h = b.forward(&h, train);
        }
        let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        (rep.apply(&self.fc), rep)
    }
}

struct Vgg {
    layers: Vec<VggLayer>,
    fc: nn::Linear,
}

enum VggLayer {
    Conv(Box<(nn::Conv2D, nn::BatchNorm)>),
    Pool,
}

impl Vgg {
    fn new(p: &nn::Path, s: [i64; 3], width: i64, classes: i64) -> Self {
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
                    conv(p / format!("c{i}"), c, out, 3, 1, 1, false),
                    nn::batch_norm2d(p / format!("bn{i}"), out, Default::default()),
                ))));
                c = out;
            }
        }
        Vgg {
            layers,
            fc: nn::linear(p / "fc", c, classes, Default::default()),
        }
    }
}

impl Net for Vgg {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = match l {
                VggLayer::Conv(cb) => h.apply(&cb.0).apply_t(&cb.1, train).relu(),
                VggLayer::Pool => h.max_pool2d_default(2),
            };
        }
        let rep = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        (rep.apply(&self.fc), rep)
    }
}

struct DenseLayer {
    bn1: nn::BatchNorm,
    c1: nn::Conv2D,
    bn2: nn::BatchNorm,
    c2: nn::Conv2D,
}

struct DenseNet {
    stem: nn::Conv2D,
    blocks: Vec<Vec<DenseLayer>>,
    transitions: Vec<(nn::BatchNorm, nn::Conv2D)>,
    bn: nn::BatchNorm,
    fc: nn::Linear,
}

impl DenseNet {
    fn new(p: &nn::Path, cin: i64, growth: i64, counts: &[i64], classes: i64) -> Self {
        let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, Default::default());
        let mut c = 2 * growth;
        let stem = conv(p / "stem", cin, c, 3, 1, 1, false);
        let (mut blocks, mut transitions) = (Vec::new(), Vec::new());
        for (b, &count) in counts.iter().enumerate() {
            let mut layers = Vec::new();
            for l in 0..count {
                let q = p / format!("b{b}l{l}");
                layers.push(DenseLayer {
                    bn1: bn(&q / "bn1", c),
                    c1: conv(&q / "c1", c, 4 * growth, 1, 1, 0, false),
                    bn2: bn(&q / "bn2", 4 * growth),
                    c2: conv(&q / "c2", 4 * growth, growth, 3, 1, 1, false),
                });
                c += growth;
            }
            blocks.push(layers);
            if b + 1 < counts.len() {
                let q = p / format!("t{b}");
                transitions.push((bn(&q / "bn", c), conv(&q / "c", c, c / 2, 1, 1, 0, false)));
                c /= 2;
            }
        }
        DenseNet {
            stem,
            blocks,
            transitions,
            bn: bn(p / "bn", c),
            fc: nn::linear(p / "fc", c, classes, Default::default()),
        }
    }
}

impl Net for DenseNet {
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut h = x.apply(&self.stem);
        for (b, layers) in self.blocks.iter().enumerate() {
            for l in layers {
                let y = h
                    .apply_t(&l.bn1, train)
                    .relu()
                    .apply(&l.c1)
                    .apply_t(&l.bn2, train)
                    .relu()
                    .apply(&l.c2);
                h = Tensor::cat(&[h, y], 1);
            }
            if let Some((bn, c)) = self.transitions.get(b) {
                h = h.apply_t(bn, train).relu().apply(c);
                if h.size()[2] >= 2 {
                    h = h.avg_pool2d_default(2);
                }
            }
        }
        let rep = h
            .apply_t(&self.bn, train)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1);
        (rep.apply(&self.fc), rep)
    }
}
