//! The arithmetic cost of an architecture, computed from its definition (no tensors): for every
//! convolution and fully connected layer of [`crate::arch::build`]'s network, its multiply-adds
//! per image at the input size given, and every layer's parameters.
//!
//! Only convolutions and linear layers are counted (BatchNorm, ReLU, pooling and the residual
//! additions are a few element-wise operations per activation, well under 1% of a ResNet's
//! multiply-adds). A multiply-add is two FLOPs. The walk mirrors the constructors in
//! [`crate::arch`] layer by layer; a test checks that its parameter count equals the built
//! model's, for every architecture, so the two cannot drift apart unnoticed.
use crate::arch::Arch;

/// Cost of one forward pass of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Multiply-adds of every convolution and linear layer.
    pub macs: i64,
    /// Multiply-adds of the first layer (whose input gradient training does not need).
    pub first_layer_macs: i64,
    /// Trainable parameters (weights, biases, BatchNorm scales and shifts).
    pub params: i64,
    /// Convolution and linear layers.
    pub layers: usize,
}

impl Cost {
    /// Forward FLOPs per image (2 per multiply-add).
    pub fn forward_flops(&self) -> f64 {
        2.0 * self.macs as f64
    }

    /// FLOPs per image of a training step's backward pass: the weight gradients (F) and the
    /// input gradients of every layer but the first (F − first layer), F = [`Self::forward_flops`].
    pub fn train_backward_flops(&self) -> f64 {
        2.0 * self.forward_flops() - 2.0 * self.first_layer_macs as f64
    }

    /// FLOPs per image of an input-gradient backward pass (an attack step; frozen weights, so
    /// no weight gradients): F.
    pub fn input_backward_flops(&self) -> f64 {
        self.forward_flops()
    }

    fn conv(&mut self, cin: i64, cout: i64, k: i64, out_hw: (i64, i64), bias: bool) {
        self.layer(cin * k * k * cout * out_hw.0 * out_hw.1);
        self.params += cout * cin * k * k + if bias { cout } else { 0 };
    }

    fn linear(&mut self, din: i64, dout: i64) {
        self.layer(din * dout);
        self.params += din * dout + dout;
    }

    fn bn(&mut self, c: i64) {
        self.params += 2 * c;
    }

    fn layer(&mut self, macs: i64) {
        if self.layers == 0 {
            self.first_layer_macs = macs;
        }
        self.macs += macs;
        self.layers += 1;
    }
}

/// Output side of a convolution (or pooling) with kernel `k`, `stride` and `padding`.
fn out(size: i64, k: i64, stride: i64, padding: i64) -> i64 {
    (size + 2 * padding - k) / stride + 1
}

/// The cost of `arch` for inputs `[c, h, w]` and `classes` outputs.
pub fn cost(arch: &Arch, in_shape: [i64; 3], classes: i64) -> Cost {
    let mut c = Cost::default();
    let [cin, h, w] = in_shape;
    match arch {
        Arch::FmnistCnn => {
            c.conv(cin, 16, 3, (h, w), true);
            let (h2, w2) = (out(h, 3, 2, 1), out(w, 3, 2, 1));
            c.conv(16, 32, 3, (h2, w2), true);
            let (h3, w3) = (out(h2, 3, 2, 1), out(w2, 3, 2, 1));
            c.conv(32, 64, 3, (h3, w3), true);
            c.linear(64 * h3 * w3, 256);
            c.linear(256, classes);
        }
        Arch::Mlp { hidden } => {
            let mut d = cin * h * w;
            for &n in hidden {
                c.linear(d, n);
                d = n;
            }
            c.linear(d, classes);
        }
        Arch::ResNet18 { width } => resnet(
            &mut c,
            in_shape,
            *width,
            false,
            &[2, 2, 2, 2],
            classes,
            false,
        ),
        Arch::ResNet50 { width } => resnet(
            &mut c,
            in_shape,
            *width,
            true,
            &[3, 4, 6, 3],
            classes,
            false,
        ),
        Arch::ResNet50ImageNet { width } => {
            resnet(&mut c, in_shape, *width, true, &[3, 4, 6, 3], classes, true)
        }
        Arch::Vgg16 { width } => {
            let cfg: [i64; 18] = [1, 1, 0, 2, 2, 0, 4, 4, 4, 0, 8, 8, 8, 0, 8, 8, 8, 0];
            let (mut ch, mut size, mut hw) = (cin, h.min(w), (h, w));
            for &m in &cfg {
                if m == 0 {
                    if size >= 2 {
                        size /= 2;
                        hw = (hw.0 / 2, hw.1 / 2);
                    }
                } else {
                    c.conv(ch, m * width, 3, hw, false);
                    c.bn(m * width);
                    ch = m * width;
                }
            }
            c.linear(ch, classes);
        }
        Arch::DenseNet { growth, blocks } => {
            let g = *growth;
            let mut ch = 2 * g;
            let mut hw = (h, w);
            c.conv(cin, ch, 3, hw, false);
            for (b, &count) in blocks.iter().enumerate() {
                for _ in 0..count {
                    c.bn(ch);
                    c.conv(ch, 4 * g, 1, hw, false);
                    c.bn(4 * g);
                    c.conv(4 * g, g, 3, hw, false);
                    ch += g;
                }
                if b + 1 < blocks.len() {
                    c.bn(ch);
                    c.conv(ch, ch / 2, 1, hw, false);
                    ch /= 2;
                    if hw.0 >= 2 {
                        hw = (hw.0 / 2, hw.1 / 2);
                    }
                }
            }
            c.bn(ch);
            c.linear(ch, classes);
        }
    }
    c
}

/// The ResNets of [`crate::arch`]: CIFAR variant (3x3 stem at stride 1, no max-pool) or, with
/// `imagenet_stem`, the ImageNet one (7x7 stem at stride 2, 3x3 max-pool at stride 2).
fn resnet(
    c: &mut Cost,
    s: [i64; 3],
    width: i64,
    bottleneck: bool,
    counts: &[i64],
    classes: i64,
    imagenet_stem: bool,
) {
    let mut hw = (s[1], s[2]);
    if imagenet_stem {
        hw = (out(hw.0, 7, 2, 3), out(hw.1, 7, 2, 3));
        c.conv(s[0], width, 7, hw, false);
        c.bn(width);
        hw = (out(hw.0, 3, 2, 1), out(hw.1, 3, 2, 1));
    } else {
        c.conv(s[0], width, 3, hw, false);
        c.bn(width);
    }
    let expansion = if bottleneck { 4 } else { 1 };
    let mut cur = width;
    for (stage, &count) in counts.iter().enumerate() {
        let planes = width << stage;
        for b in 0..count {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let o = planes * expansion;
            let next = (out(hw.0, 3, stride, 1), out(hw.1, 3, stride, 1));
            if bottleneck {
                c.conv(cur, planes, 1, hw, false);
                c.bn(planes);
                c.conv(planes, planes, 3, next, false);
                c.bn(planes);
                c.conv(planes, o, 1, next, false);
                c.bn(o);
            } else {
                c.conv(cur, planes, 3, next, false);
                c.bn(planes);
                c.conv(planes, planes, 3, next, false);
                c.bn(planes);
            }
            if stride != 1 || cur != o {
                // 1x1 at the block's stride: the same output size as the 3x3 with padding 1.
                c.conv(cur, o, 1, next, false);
                c.bn(o);
            }
            hw = next;
            cur = o;
        }
    }
    c.linear(cur, classes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Init, Model, ModelSpec};
    use tch::Device;

    #[test]
    fn fmnist_cnn_by_hand() {
        let _rng = crate::rng_lock();
        let c = cost(&Arch::FmnistCnn, [1, 28, 28], 10);
        // conv 1->16 at 28x28: 28*28*16*9 = 112,896; conv 16->32 s2 at 14x14: 14*14*32*9*16 =
        // 903,168; conv 32->64 s2 at 7x7: 7*7*64*9*32 = 903,168; fc 3136->256: 802,816;
        // fc 256->10: 2,560.
        assert_eq!(c.macs, 112_896 + 903_168 + 903_168 + 802_816 + 2_560);
        assert_eq!(c.first_layer_macs, 112_896);
        assert_eq!(c.layers, 5);
        assert_eq!(c.forward_flops(), 5_449_216.0);
        // Weights + biases: 160 + 4,640 + 18,496 + 803,072 + 2,570.
        assert_eq!(c.params, 160 + 4_640 + 18_496 + 803_072 + 2_570);
        // Odd sides round up at stride 2 (padding 1): 29 -> 15 -> 8.
        let odd = cost(&Arch::FmnistCnn, [1, 29, 29], 10);
        assert_eq!(
            odd.macs - 2_560,
            29 * 29 * 144 + 15 * 15 * 4608 + 8 * 8 * 18432 + 64 * 64 * 256
        );
    }

    #[test]
    fn resnet18_by_hand() {
        let _rng = crate::rng_lock();
        // ResNet-18 of width 64 on 32x32 CIFAR images, counted layer by layer:
        // stem 3->64 3x3 at 32x32: 1,769,472.
        // stage 0: 4 convs 64->64 3x3 at 32x32: 4 * 37,748,736.
        // stage 1: 64->128 3x3 s2 at 16x16 (18,874,368), 3 convs 128->128 at 16x16
        //          (3 * 37,748,736), shortcut 1x1 64->128 at 16x16 (2,097,152).
        // stages 2 and 3 likewise: the same 18,874,368 + 3 * 37,748,736 + 2,097,152 each.
        // fc 512->10: 5,120.
        let stage0 = 4 * 37_748_736;
        let later = 18_874_368 + 3 * 37_748_736 + 2_097_152;
        let c = cost(&Arch::ResNet18 { width: 64 }, [3, 32, 32], 10);
        assert_eq!(c.macs, 1_769_472 + stage0 + 3 * later + 5_120);
        // 555.4 M multiply-adds, the well-known ~0.56 GMAC of CIFAR ResNet-18.
        assert_eq!(c.macs, 555_422_720);
        assert_eq!(c.first_layer_macs, 1_769_472);
        // 11,173,962 parameters, as torchvision-style CIFAR ResNet-18 implementations report.
        assert_eq!(c.params, 11_173_962);
    }

    #[test]
    fn resnet50_cifar_and_imagenet_sizes() {
        let _rng = crate::rng_lock();
        // ResNet-50 (CIFAR variant: 3x3 stem at stride 1, no max-pool) at 32x32: the published
        // 23,520,842 parameters and ~1.30 G multiply-adds of this network.
        let c = cost(&Arch::ResNet50 { width: 64 }, [3, 32, 32], 10);
        assert_eq!(c.params, 23_520_842);
        assert!((1.29e9..1.32e9).contains(&(c.macs as f64)), "{}", c.macs);
        // Every multiply-add scales with the image area (no max-pool, no stride in the stem):
        // at 224x224 the same network costs 49x as much.
        let big = cost(&Arch::ResNet50 { width: 64 }, [3, 224, 224], 9);
        let small = cost(&Arch::ResNet50 { width: 64 }, [3, 32, 32], 9);
        assert_eq!(big.macs - 2048 * 9, 49 * (small.macs - 2048 * 9));
        // The ImageNet variant (7x7 stem at stride 2, max-pool) is torchvision's resnet50: its
        // published 25,557,032 parameters and 4.09 G multiply-adds at 224x224 with 1000 classes;
        // a sixteenth of the CIFAR variant's cost at that size.
        let imagenet = cost(&Arch::ResNet50ImageNet { width: 64 }, [3, 224, 224], 1000);
        assert_eq!(imagenet.params, 25_557_032);
        assert!(
            (4.08e9..4.10e9).contains(&(imagenet.macs as f64)),
            "{}",
            imagenet.macs
        );
        let imagenet9 = cost(&Arch::ResNet50ImageNet { width: 64 }, [3, 224, 224], 9);
        assert!(
            big.macs > 15 * imagenet9.macs,
            "{} {}",
            big.macs,
            imagenet9.macs
        );
    }

    /// The walk's parameter count equals the built network's, for every architecture and odd
    /// input sizes: the walk has every layer with its shape.
    #[test]
    fn parameters_match_the_built_models() {
        let _rng = crate::rng_lock();
        let archs = crate::small_archs();
        for arch in &archs {
            for (shape, classes) in [([1, 28, 28], 10), ([3, 32, 32], 9), ([3, 17, 23], 4)] {
                let spec = ModelSpec::new(arch.clone(), shape, classes).with_init(Init::Pytorch);
                let m = Model::new(&spec, Device::Cpu, 0).unwrap();
                let c = cost(arch, shape, classes);
                assert_eq!(c.params, m.num_parameters(), "{arch:?} {shape:?}");
                assert!(c.macs > 0 && c.first_layer_macs > 0 && c.first_layer_macs < c.macs);
            }
        }
    }
}
