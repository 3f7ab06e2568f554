//! nrf's default initialisation is PyTorch's: for every trainable tensor of every architecture,
//! the initial mean and standard deviation match those of the same layer (same shape) built by
//! PyTorch 2.13 from the torch environment, and no weight lies outside PyTorch's bound. The
//! tch scheme (kept for the ablation) must fail the same check, so the check can tell them apart.
//! The ImageNet ResNet-50's convolutions are compared with the paper's code's own `__init__`
//! (torchvision's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
//!
//! Needs PyTorch: `cargo xtask test` sets NRF_PYTHON to the torch environment's python; without
//! it the test prints that it is skipped.
use nrf_models::{Arch, Init, Model, ModelSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use tch::{Device, Kind, Tensor};

/// What PyTorch is asked to build: one layer of the given kind and weight shape.
#[derive(Serialize)]
struct LayerQuery {
    /// "conv", "conv_fan_out" (a conv drawn by `kaiming_normal_` with `mode="fan_out"`),
    /// "linear" or "batchnorm".
    kind: &'static str,
    /// The layer's weight shape (PyTorch's layout: [out, in, k, k] / [out, in] / [c]).
    weight_shape: Vec<i64>,
    has_bias: bool,
}

/// PyTorch's statistics of one parameter, pooled over many independently built layers.
#[derive(Deserialize, Debug)]
struct TorchStats {
    mean: f64,
    std: f64,
}

#[derive(Debug)]
struct Param {
    name: String,
    layer: String,
    numel: i64,
    mean: f64,
    std: f64,
    max_abs: f64,
    /// Drawn uniformly (PyTorch's layer defaults), so bounded by sqrt(3) x its std.
    uniform: bool,
}

/// Draws per layer on the PyTorch side: its pooled statistics then carry ~1/sqrt(DRAWS) of the
/// sampling error of nrf's single draw.
const DRAWS: usize = 32;

const TORCH_SCRIPT: &str = r#"
import json, sys, torch
queries = json.load(sys.stdin)
draws = int(sys.argv[1])
out = []
for q in queries:
    ws, bs = [], []
    for d in range(draws):
        torch.manual_seed(1000 + d)
        s = q["weight_shape"]
        if q["kind"] in ("conv", "conv_fan_out"):
            layer = torch.nn.Conv2d(s[1], s[0], (s[2], s[3]), bias=q["has_bias"])
            if q["kind"] == "conv_fan_out":
                torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif q["kind"] == "linear":
            layer = torch.nn.Linear(s[1], s[0], bias=q["has_bias"])
        else:
            layer = torch.nn.BatchNorm2d(s[0])
        ws.append(layer.weight.detach().double().flatten())
        if layer.bias is not None:
            bs.append(layer.bias.detach().double().flatten())
    def stats(ts):
        t = torch.cat(ts)
        return {"mean": t.mean().item(), "std": t.std(unbiased=False).item()}
    out.append({"weight": stats(ws), "bias": stats(bs) if bs else None})
json.dump(out, sys.stdout)
"#;

fn python() -> Option<String> {
    std::env::var("NRF_PYTHON").ok().filter(|p| !p.is_empty())
}

/// The trainable tensors of `arch` built with `init`, grouped by layer.
fn params(arch: &Arch, in_shape: [i64; 3], init: Init) -> BTreeMap<String, Vec<(String, Tensor)>> {
    let spec = ModelSpec::new(arch.clone(), in_shape, 10).with_init(init);
    let model = Model::new(&spec, Device::Cpu, 7).expect("model builds");
    let mut layers: BTreeMap<String, Vec<(String, Tensor)>> = BTreeMap::new();
    for (name, t) in model.vs.variables() {
        if !t.requires_grad() {
            continue; // BatchNorm running statistics: buffers, not parameters
        }
        let (layer, leaf) = name
            .rsplit_once('.')
            .expect("variables are named layer.leaf");
        layers
            .entry(layer.to_string())
            .or_default()
            .push((leaf.to_string(), t.detach().to_kind(Kind::Double)));
    }
    layers
}

fn stats(name: String, layer: &str, t: &Tensor) -> Param {
    Param {
        name,
        layer: layer.to_string(),
        numel: t.numel() as i64,
        mean: t.mean(Kind::Double).double_value(&[]),
        std: t.std(false).double_value(&[]),
        max_abs: t.abs().max().double_value(&[]),
        uniform: true,
    }
}

/// Compares nrf's `init` with PyTorch on `arch`; returns one message per mismatching tensor.
fn mismatches(py: &str, arch: &Arch, in_shape: [i64; 3], init: Init) -> Vec<String> {
    let layers = params(arch, in_shape, init);
    let mut queries = Vec::new();
    let mut ours = Vec::new();
    for (layer, leaves) in &layers {
        let weight = &leaves
            .iter()
            .find(|(l, _)| l == "weight")
            .unwrap_or_else(|| panic!("{layer}: no weight"))
            .1;
        let shape = weight.size();
        let fan_out = matches!(arch, Arch::ResNet50ImageNet { .. });
        let kind = match (shape.len(), layer.contains("bn")) {
            (4, _) if fan_out => "conv_fan_out",
            (4, _) => "conv",
            (2, _) => "linear",
            (1, true) => "batchnorm",
            other => panic!("{layer}: unexpected weight shape {shape:?} ({other:?})"),
        };
        let bias = leaves.iter().find(|(l, _)| l == "bias");
        queries.push(LayerQuery {
            kind,
            weight_shape: shape,
            has_bias: bias.is_some(),
        });
        let mut w = stats(format!("{layer}.weight"), layer, weight);
        w.uniform = kind != "conv_fan_out";
        ours.push((
            w,
            bias.map(|(_, b)| stats(format!("{layer}.bias"), layer, b)),
        ));
    }
    let mut child = Command::new(py)
        .args(["-c", TORCH_SCRIPT, &DRAWS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&queries).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python runs");
    assert!(out.status.success(), "the PyTorch side failed");
    #[derive(Deserialize)]
    struct Layer {
        weight: TorchStats,
        bias: Option<TorchStats>,
    }
    let theirs: Vec<Layer> = serde_json::from_slice(&out.stdout).expect("PyTorch's JSON");
    let mut bad = Vec::new();
    for ((w, b), t) in ours.iter().zip(&theirs) {
        let pairs = [(Some(w), Some(&t.weight)), (b.as_ref(), t.bias.as_ref())];
        for (p, q) in pairs {
            match (p, q) {
                (Some(p), Some(q)) => {
                    if let Some(msg) = compare(p, q) {
                        bad.push(msg);
                    }
                }
                (None, None) => {}
                _ => bad.push(format!("{}: bias present on one side only", w.layer)),
            }
        }
    }
    bad
}

/// One tensor: nrf's single draw against PyTorch's pooled statistics.
///
/// Tolerances (6 standard errors, so a correct scheme fails with negligible probability): the
/// sample std of n uniform values has relative standard error sqrt(0.8 / n) / 2 ~ 0.45 / sqrt(n);
/// the sample mean has standard error std / sqrt(n). Every value of a uniform(-b, b) tensor
/// lies within b = sqrt(3) * std; PyTorch's std is known to ~0.45 / sqrt(DRAWS * n), so the
/// bound is checked with that margin (plus float rounding, 1e-6 relative).
fn compare(p: &Param, q: &TorchStats) -> Option<String> {
    let n = p.numel as f64;
    // A normal sample's std has relative standard error 1 / sqrt(2n) ~ 0.71 / sqrt(n).
    let rel_se = if p.uniform { 0.45 } else { 0.71 };
    let std_tol = 6.0 * rel_se * q.std / n.sqrt() + 1e-12;
    let mean_tol = 6.0 * q.std / n.sqrt() + 1e-12;
    let bound = 3f64.sqrt() * q.std * (1.0 + 6.0 * 0.45 / (DRAWS as f64 * n).sqrt() + 1e-6);
    let mut why = Vec::new();
    if (p.std - q.std).abs() > std_tol {
        why.push(format!(
            "std {:.5} vs PyTorch {:.5} (tolerance {std_tol:.1e})",
            p.std, q.std
        ));
    }
    if (p.mean - q.mean).abs() > mean_tol {
        why.push(format!(
            "mean {:.5} vs PyTorch {:.5} (tolerance {mean_tol:.1e})",
            p.mean, q.mean
        ));
    }
    // A constant tensor (BatchNorm) has std 0: the bound test applies to uniform random ones.
    if p.uniform && q.std > 0.0 && p.max_abs > bound {
        why.push(format!(
            "max |w| {:.5} beyond PyTorch's bound {bound:.5}",
            p.max_abs
        ));
    }
    (!why.is_empty()).then(|| format!("{} ({} values): {}", p.name, p.numel, why.join("; ")))
}

fn architectures() -> Vec<(Arch, [i64; 3])> {
    vec![
        (Arch::FmnistCnn, [1, 28, 28]),
        (
            Arch::Mlp {
                hidden: vec![64, 32],
            },
            [1, 28, 28],
        ),
        (Arch::ResNet18 { width: 8 }, [3, 32, 32]),
        (Arch::ResNet50 { width: 4 }, [3, 32, 32]),
        (Arch::ResNet50ImageNet { width: 4 }, [3, 64, 64]),
        (Arch::Vgg16 { width: 4 }, [3, 32, 32]),
        (
            Arch::DenseNet {
                growth: 4,
                blocks: vec![2, 2],
            },
            [3, 32, 32],
        ),
    ]
}

#[test]
fn default_initialisation_is_pytorchs() {
    let Some(py) = python() else {
        eprintln!("skipped: NRF_PYTHON is not set (cargo xtask test sets it)");
        return;
    };
    assert_eq!(Init::default(), Init::Pytorch);
    let mut bad = Vec::new();
    for (arch, shape) in architectures() {
        for m in mismatches(&py, &arch, shape, Init::Pytorch) {
            bad.push(format!("{}: {m}", arch.label()));
        }
    }
    assert!(
        bad.is_empty(),
        "nrf's init differs from PyTorch's:\n{}",
        bad.join("\n")
    );
}

#[test]
fn tch_initialisation_is_told_apart() {
    let Some(py) = python() else {
        eprintln!("skipped: NRF_PYTHON is not set (cargo xtask test sets it)");
        return;
    };
    let bad = mismatches(&py, &Arch::FmnistCnn, [1, 28, 28], Init::Tch);
    // Every conv / linear weight is sqrt(6) ~ 2.45x too wide, and the conv biases are zero.
    for layer in [
        "c1.weight",
        "c2.weight",
        "c3.weight",
        "fc1.weight",
        "fc2.weight",
    ] {
        assert!(
            bad.iter().any(|m| m.starts_with(layer)),
            "{layer} under tch's init passed the PyTorch check: {bad:?}"
        );
    }
    assert!(bad.iter().any(|m| m.starts_with("c1.bias")), "{bad:?}");
}

#[test]
fn tch_weights_are_sqrt6_wider() {
    let py_like = params(&Arch::FmnistCnn, [1, 28, 28], Init::Pytorch);
    let tch_like = params(&Arch::FmnistCnn, [1, 28, 28], Init::Tch);
    let std = |m: &BTreeMap<String, Vec<(String, Tensor)>>, layer: &str| {
        let t = &m[layer].iter().find(|(l, _)| l == "weight").unwrap().1;
        t.std(false).double_value(&[])
    };
    // fc1: 3136 x 256 values, so the sample std is within ~0.1% of its expectation.
    let ratio = std(&tch_like, "fc1") / std(&py_like, "fc1");
    assert!((ratio - 6f64.sqrt()).abs() < 0.01, "ratio {ratio}");
}
