//! A [`Classifier`] backed by a TorchScript module (`torch.jit.trace` / `torch.jit.script` in
//! Python, loaded with tch's `CModule`): bring your own PyTorch model to nrf's constructions and
//! evaluations.
//!
//! nrf needs the logits and the representation g(x) (the penultimate layer, for D_R / D_NR). Two
//! shapes of module are supported ([`RepSource`]):
//! - `Tuple`: `forward(x)` returns `(logits, representation)`;
//! - `Method(name)`: `forward(x)` returns the logits and the method `name` (exported with
//!   `@torch.jit.export`) returns the representation.
//!
//! Inputs are images in `[0, 1]`. When the module expects normalised inputs and does not
//! normalise itself, give the per-channel `mean` / `std` and nrf applies `(x - mean) / std` before
//! calling it (the classic silent bug of this field is a mismatch here, which is why a model is
//! checked on real test images before anything is built from it: see
//! `nrf construct` / `nrf eval`).
use crate::Classifier;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// Where the representation comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepSource {
    /// `forward(x)` returns `(logits, representation)`.
    Tuple,
    /// `forward(x)` returns the logits; this method returns the representation.
    Method(String),
}

impl RepSource {
    /// Parses `"tuple"` or `"method:<name>"`.
    pub fn parse(s: &str) -> Result<RepSource> {
        match s.split_once(':') {
            None if s == "tuple" => Ok(RepSource::Tuple),
            Some(("method", name)) if !name.is_empty() => Ok(RepSource::Method(name.into())),
            _ => bail!("representation source {s:?}: expected \"tuple\" or \"method:<name>\""),
        }
    }

    /// As [`RepSource::parse`] reads it: `"tuple"` or `"method:<name>"`.
    pub fn spelling(&self) -> String {
        match self {
            RepSource::Tuple => "tuple".into(),
            RepSource::Method(name) => format!("method:{name}"),
        }
    }
}

/// A TorchScript classifier; see the module documentation.
pub struct TorchScriptClassifier {
    module: CModule,
    rep: RepSource,
    /// `[1, C, 1, 1]` tensors, or None for inputs passed as they are.
    norm: Option<(Tensor, Tensor)>,
    num_classes: i64,
    rep_dim: i64,
    path: PathBuf,
}

impl std::fmt::Debug for TorchScriptClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TorchScriptClassifier({}, {:?}, {} classes, g(x) of {} dims)",
            self.path.display(),
            self.rep,
            self.num_classes,
            self.rep_dim
        )
    }
}

impl TorchScriptClassifier {
    /// Loads the module at `path` onto `device` in evaluation mode and probes it with a zero
    /// batch of shape `[2, in_shape...]`: the outputs must be a `[2, K]` logits tensor (K ≥ 2)
    /// and a `[2, ...]` representation. `mean` / `std` (one value per channel, or empty for
    /// none) normalise the inputs before the module sees them. Errors name the file and what
    /// did not fit.
    pub fn load(
        path: &Path,
        rep: RepSource,
        in_shape: [i64; 3],
        mean: &[f64],
        std: &[f64],
        device: Device,
    ) -> Result<TorchScriptClassifier> {
        let shown = path.display().to_string();
        if !path.is_file() {
            bail!("TorchScript model {shown}: no such file");
        }
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| anyhow!("TorchScript model {shown}: cannot load it ({e})"))?;
        module.set_eval();
        let c = in_shape[0];
        let norm = match (mean.len(), std.len()) {
            (0, 0) => None,
            (m, s) if m == c as usize && s == c as usize => {
                if std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                    bail!("TorchScript model {shown}: std must be positive, got {std:?}");
                }
                let t = |v: &[f64]| {
                    Tensor::from_slice(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())
                        .view([1, c, 1, 1])
                        .to_device(device)
                };
                Some((t(mean), t(std)))
            }
            (m, s) => bail!(
                "TorchScript model {shown}: mean ({m} values) and std ({s} values) need one value \
                 per input channel ({c})"
            ),
        };
        let mut model = TorchScriptClassifier {
            module,
            rep,
            norm,
            num_classes: 0,
            rep_dim: 0,
            path: path.to_path_buf(),
        };
        let probe = Tensor::zeros(
            [2, in_shape[0], in_shape[1], in_shape[2]],
            (Kind::Float, device),
        );
        let (logits, rep) = tch::no_grad(|| model.try_forward(&probe)).with_context(|| {
            format!(
                "TorchScript model {shown}: probing it with a [2, {c}, {}, {}] batch",
                in_shape[1], in_shape[2]
            )
        })?;
        if logits.dim() != 2 || logits.size()[0] != 2 || logits.size()[1] < 2 {
            bail!(
                "TorchScript model {shown}: the logits have shape {:?} for a batch of 2; expected \
                 [2, classes]",
                logits.size()
            );
        }
        if rep.dim() < 2 || rep.size()[0] != 2 {
            bail!(
                "TorchScript model {shown}: the representation has shape {:?} for a batch of 2; \
                 expected [2, ...]",
                rep.size()
            );
        }
        model.num_classes = logits.size()[1];
        model.rep_dim = rep.size()[1..].iter().product();
        model.probe_attack(in_shape, device).with_context(|| {
            format!(
                "TorchScript model {shown}: it runs without gradients but fails as the attacks \
                 run it (a batch of 3 whose input gradient is taken). A model that normalises its \
                 input in place (`x.sub_(...)`) or fixes the batch size (`view(2, -1)`) cannot be \
                 attacked: normalise out of place, or export the model without its normalisation \
                 and give --mean / --std"
            )
        })?;
        Ok(model)
    }

    /// Runs the module as the attacks do, once: a forward pass on a batch of 3 (another size than
    /// the first probe's) whose input requires its gradient, and that gradient, so that a module
    /// that fails under attack does so here, with an error, not in the middle of a run.
    fn probe_attack(&self, in_shape: [i64; 3], device: Device) -> Result<()> {
        let x = Tensor::zeros(
            [3, in_shape[0], in_shape[1], in_shape[2]],
            (Kind::Float, device),
        )
        .set_requires_grad(true);
        let (logits, rep) = self.try_forward(&x)?;
        if logits.size().first() != Some(&3) || rep.size().first() != Some(&3) {
            bail!(
                "for a batch of 3 the logits have shape {:?} and the representation {:?}",
                logits.size(),
                rep.size()
            );
        }
        let total = logits.sum(Kind::Float) + rep.sum(Kind::Float);
        let grads = Tensor::f_run_backward(&[total], &[&x], false, false)
            .map_err(|e| anyhow!("the input gradient: {e}"))?;
        if grads.first().map(|g| g.size()) != Some(x.size()) {
            bail!("the input gradient has the wrong shape");
        }
        Ok(())
    }

    /// The representation's size (product of its non-batch dimensions).
    pub fn rep_dim(&self) -> i64 {
        self.rep_dim
    }

    /// The number of parameters of the module (its `named_parameters`, submodules included).
    pub fn num_params(&self) -> Result<i64> {
        let params = self.module.named_parameters().map_err(|e| {
            anyhow!(
                "TorchScript model {}: cannot list its parameters ({e})",
                self.path.display()
            )
        })?;
        Ok(params.iter().map(|(_, t)| t.numel() as i64).sum())
    }

    /// `(logits, representation)` or an error saying what the module returned instead.
    pub fn try_forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = match &self.norm {
            Some((m, s)) => (x - m) / s,
            None => x.shallow_clone(),
        };
        let shown = self.path.display();
        match &self.rep {
            RepSource::Tuple => {
                let out = self
                    .module
                    .forward_is(&[IValue::Tensor(x)])
                    .map_err(|e| anyhow!("{shown}: forward failed: {e}"))?;
                match out {
                    IValue::TensorList(v) if v.len() == 2 => {
                        let mut it = v.into_iter();
                        match (it.next(), it.next()) {
                            (Some(l), Some(r)) => Ok((l, r)),
                            _ => bail!("{shown}: forward returned fewer than two tensors"),
                        }
                    }
                    IValue::Tuple(v) | IValue::GenericList(v) if v.len() == 2 => {
                        let mut it = v.into_iter();
                        match (it.next(), it.next()) {
                            (Some(IValue::Tensor(l)), Some(IValue::Tensor(r))) => Ok((l, r)),
                            _ => bail!("{shown}: forward returned a pair that is not two tensors"),
                        }
                    }
                    other => bail!(
                        "{shown}: forward must return (logits, representation) with rep = \
                         \"tuple\"; it returned {}",
                        describe(&other)
                    ),
                }
            }
            RepSource::Method(name) => {
                let logits = self
                    .module
                    .forward_ts(&[&x])
                    .map_err(|e| anyhow!("{shown}: forward must return the logits tensor: {e}"))?;
                let rep = self.module.method_ts(name, &[&x]).map_err(|e| {
                    anyhow!("{shown}: method `{name}` (the representation) failed: {e}")
                })?;
                Ok((logits, rep))
            }
        }
    }
}

fn describe(v: &IValue) -> String {
    match v {
        IValue::Tensor(t) => format!("one tensor of shape {:?}", t.size()),
        IValue::Tuple(v) => format!("a tuple of {}", v.len()),
        IValue::GenericList(v) => format!("a list of {}", v.len()),
        IValue::TensorList(v) => format!("a list of {} tensors", v.len()),
        IValue::GenericDict(_) => "a dict".into(),
        _ => "something else".into(),
    }
}

impl Classifier for TorchScriptClassifier {
    /// Panics only if the module fails on an input it accepted when probed at load time (a
    /// different batch size or device); the message names the file.
    fn forward_rep(&self, x: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let (logits, rep) = self
            .try_forward(x)
            .unwrap_or_else(|e| panic!("TorchScript model: {e:#}"));
        let n = rep.size()[0];
        (logits, rep.reshape([n, -1]))
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rep_sources_parse() {
        assert_eq!(RepSource::parse("tuple").unwrap(), RepSource::Tuple);
        assert_eq!(
            RepSource::parse("method:features").unwrap(),
            RepSource::Method("features".into())
        );
        for s in ["tuple", "method:features"] {
            assert_eq!(RepSource::parse(s).unwrap().spelling(), s);
        }
        for bad in ["", "method:", "tupel", "layer:x"] {
            assert!(RepSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_or_corrupt_file_is_an_error_naming_it() {
        let _rng = crate::rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.pt");
        let e =
            TorchScriptClassifier::load(&p, RepSource::Tuple, [1, 28, 28], &[], &[], Device::Cpu)
                .unwrap_err();
        assert!(format!("{e:#}").contains("nope.pt"), "{e:#}");
        std::fs::write(&p, b"not a torchscript archive").unwrap();
        let e =
            TorchScriptClassifier::load(&p, RepSource::Tuple, [1, 28, 28], &[], &[], Device::Cpu)
                .unwrap_err();
        assert!(format!("{e:#}").contains("cannot load"), "{e:#}");
    }
}
