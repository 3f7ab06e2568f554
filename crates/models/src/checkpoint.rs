//! Checkpoints as safetensors (+ a JSON sidecar), written atomically (temp file + rename).
//!
//! `<stem>.safetensors` holds the model's variables under `model.<name>` and, for training
//! checkpoints, SGD's momentum buffers under `sgd.<index>`. `<stem>.json` holds the
//! [`ModelSpec`] and, for training checkpoints, the epoch, the history and the configuration.
use crate::{Model, ModelSpec};
use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Named tensors, as stored in a safetensors file.
pub type NamedTensors = Vec<(String, Tensor)>;

/// `<stem>.safetensors` and `<stem>.json`.
pub fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    let s = stem.as_os_str().to_string_lossy().to_string();
    (
        PathBuf::from(format!("{s}.safetensors")),
        PathBuf::from(format!("{s}.json")),
    )
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (nrf-data's temp file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(nrf_data::store::write_atomic(path, bytes)?)
}

/// Writes named tensors to a safetensors file atomically.
pub fn write_tensors_atomic(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = tmp_path(path);
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Reads all tensors of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    Tensor::read_safetensors(path)
        .with_context(|| format!("{}: not a readable safetensors file", path.display()))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// The model's variables, named `model.<var>`, sorted by name.
pub fn model_tensors(model: &Model) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Copies `model.<var>` tensors of `tensors` into `model`, checking names and shapes.
pub fn load_into(model: &mut Model, tensors: &[(String, Tensor)], source: &Path) -> Result<()> {
    let map: std::collections::HashMap<&str, &Tensor> = tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("model.").map(|n| (n, t)))
        .collect();
    let _g = tch::no_grad_guard();
    for (name, mut var) in model.vs.variables() {
        let Some(src) = map.get(name.as_str()) else {
            bail!("{}: checkpoint lacks variable {name}", source.display());
        };
        if src.size() != var.size() {
            bail!(
                "{}: variable {name} has shape {:?}, the model expects {:?}",
                source.display(),
                src.size(),
                var.size()
            );
        }
        var.copy_(src);
    }
    Ok(())
}

/// Saves a model (weights + spec) to `<stem>.safetensors` / `<stem>.json`.
pub fn save_model(model: &Model, stem: &Path) -> Result<()> {
    let (st, js) = paths(stem);
    write_tensors_atomic(&st, &model_tensors(model))?;
    write_atomic(&js, serde_json::to_string_pretty(&model.spec)?.as_bytes())
}

/// Loads a model saved by [`save_model`] (or a training checkpoint) onto `device`.
pub fn load_model(stem: &Path, device: Device) -> Result<Model> {
    let (st, js) = paths(stem);
    let spec: ModelSpec = match read_json::<serde_json::Value>(&js)? {
        v if v.get("spec").is_some() => serde_json::from_value(v["spec"].clone())
            .with_context(|| format!("{}: field `spec` is not a model spec", js.display()))?,
        v => serde_json::from_value(v)
            .with_context(|| format!("{}: not a model spec", js.display()))?,
    };
    let mut model = Model::new(&spec, device, 0)?;
    let tensors = read_tensors(&st)?;
    load_into(&mut model, &tensors, &st)?;
    Ok(model)
}

/// Saves a training checkpoint as ONE safetensors file (so it is atomic as a whole): the
/// tensors plus the JSON metadata stored as a `uint8` tensor named `meta.json`.
pub fn save_training<T: Serialize>(
    stem: &Path,
    tensors: &[(String, Tensor)],
    meta: &T,
) -> Result<()> {
    let (st, _) = paths(stem);
    let json = serde_json::to_vec(meta)?;
    let mut all: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    all.push(("meta.json".into(), Tensor::from_slice(&json)));
    write_tensors_atomic(&st, &all)
}

/// Reads a training checkpoint written by [`save_training`], if it exists.
pub fn load_training<T: DeserializeOwned>(stem: &Path) -> Result<Option<(T, NamedTensors)>> {
    let (st, _) = paths(stem);
    if !st.exists() {
        return Ok(None);
    }
    let mut tensors = read_tensors(&st)?;
    let pos = tensors
        .iter()
        .position(|(n, _)| n == "meta.json")
        .with_context(|| format!("{}: not a training checkpoint (no meta.json)", st.display()))?;
    let (_, meta) = tensors.remove(pos);
    let bytes = Vec::<u8>::try_from(&meta)?;
    let meta = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: invalid checkpoint metadata", st.display()))?;
    Ok(Some((meta, tensors)))
}
