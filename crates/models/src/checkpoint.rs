//! Checkpoints as safetensors (+ a JSON sidecar), written atomically with nrf's one writer
//! (`nrf_data::atomic`: temporary file, fsync, rename).
//!
//! `<stem>.safetensors` holds the model's variables under `model.<name>` and, for training
//! checkpoints, SGD's momentum buffers under `sgd.<index>`. `<stem>.json` holds the
//! [`ModelSpec`] and, for training checkpoints, the epoch, the history and the configuration.
//!
//! Integrity: every safetensors file written by [`write_tensors_atomic`] carries the SHA-256 of
//! its tensors ([`tensors_sha256`]) in its `__metadata__` under [`SHA256_KEY`]; a model's sidecar
//! carries the SHA-256 of its own content (`sha256`) and of the weights file
//! (`safetensors_sha256`). Both are checked on load: a truncated, corrupted or mismatched file is
//! a [`Damaged`] error naming the file. Files written before the checksums existed have none and
//! are accepted as they are (they get one when they are next written).
use crate::{Model, ModelSpec};
use anyhow::{bail, Context, Result};
use nrf_data::store::{canonical_json_sha256, sha256_bytes};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Named tensors, as stored in a safetensors file.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The key, in a safetensors file's `__metadata__`, of the SHA-256 of its tensors.
pub const SHA256_KEY: &str = "nrf_sha256";

/// An artefact that is there but cannot be trusted: truncated, corrupted, not what its checksum
/// says, or not of the expected format. Callers that can recompute what the file holds
/// (construction chunks, training checkpoints) look for it with `downcast_ref` and do so; the
/// message names the file and what is wrong.
#[derive(Debug)]
pub struct Damaged {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub detail: String,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: damaged: {}", self.path.display(), self.detail)
    }
}

impl std::error::Error for Damaged {}

fn damaged(path: &Path, detail: impl Into<String>) -> anyhow::Error {
    Damaged {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
    .into()
}

/// Whether `e` (or an error it wraps) is [`Damaged`].
pub fn is_damaged(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Damaged>())
}

/// `<stem>.safetensors` and `<stem>.json`.
pub fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    let s = stem.as_os_str().to_string_lossy().to_string();
    (
        PathBuf::from(format!("{s}.safetensors")),
        PathBuf::from(format!("{s}.json")),
    )
}

/// Writes `bytes` to `path` atomically (nrf's one writer: temp file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(nrf_data::store::write_atomic(path, bytes)?)
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        k => bail!("tensors of kind {k:?} cannot be stored in safetensors"),
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// A CPU, contiguous tensor as safetensors sees it (its bytes are copied out one tensor at a
/// time, while the file is written, as tch's own writer does).
struct CpuView {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl CpuView {
    fn new(t: &Tensor) -> Result<CpuView> {
        let tensor = t.detach().to_device(Device::Cpu).contiguous();
        Ok(CpuView {
            dtype: dtype_of(tensor.kind())?,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            tensor,
        })
    }

    fn bytes(&self) -> Vec<u8> {
        let numel = self.tensor.numel();
        let mut data = vec![0u8; numel * self.tensor.kind().elt_size_in_bytes()];
        if numel > 0 {
            self.tensor.copy_data_u8(&mut data, numel);
        }
        data
    }
}

impl View for &CpuView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.bytes())
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

/// The SHA-256 of named tensors, whatever their order and the file's layout: over the tensors
/// sorted by name, each one's name, dtype, shape and bytes (little-endian, row-major), with
/// lengths in front so that no two different sets hash the same stream.
pub fn tensors_sha256<'a>(
    tensors: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], Cow<'a, [u8]>)>,
) -> String {
    let mut all: Vec<_> = tensors.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    sha256_sorted(all.len(), all)
}

/// [`tensors_sha256`] of `n` tensors already sorted by name, consumed one at a time (so that
/// only one tensor's bytes need to be in memory at once).
fn sha256_sorted<'a>(
    n: usize,
    sorted: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], Cow<'a, [u8]>)>,
) -> String {
    let mut h = Sha256::new();
    h.update((n as u64).to_le_bytes());
    for (name, dtype, shape, data) in sorted {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        let dtype = format!("{dtype:?}");
        h.update((dtype.len() as u64).to_le_bytes());
        h.update(dtype.as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for &d in shape {
            h.update((d as u64).to_le_bytes());
        }
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    hex::encode(h.finalize())
}

/// Writes named tensors to a safetensors file atomically, with their SHA-256
/// ([`tensors_sha256`]) in the file's metadata under [`SHA256_KEY`]. An error names `path`.
pub fn write_tensors_atomic(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut views: Vec<(String, CpuView)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), CpuView::new(t)?)))
        .collect::<Result<_>>()
        .with_context(|| format!("writing {}", path.display()))?;
    // The file's layout does not depend on the order given (safetensors sorts the tensors).
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let sha = sha256_sorted(
        views.len(),
        views.iter().map(|(n, v)| {
            (
                n.as_str(),
                v.dtype,
                v.shape.as_slice(),
                Cow::Owned(v.bytes()),
            )
        }),
    );
    let meta = HashMap::from([(SHA256_KEY.to_string(), sha)]);
    nrf_data::store::write_atomic_with(path, |tmp| {
        let items = views.iter().map(|(n, v)| (n.as_str(), v));
        safetensors::tensor::serialize_to_file(items, &Some(meta), tmp).map_err(|e| match e {
            safetensors::SafeTensorError::IoError(e) => e,
            e => std::io::Error::other(format!("cannot serialise: {e}")),
        })
    })?;
    Ok(())
}

/// Reads all tensors of a safetensors file, sorted by name, checking the SHA-256 its metadata
/// records (files without one, written before nrf recorded it, are read unchecked). A missing
/// file or an unreadable one is an I/O error; a truncated, corrupted or checksum-mismatched one
/// is [`Damaged`]. Every error names the file.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| damaged(path, format!("truncated or not a safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| damaged(path, format!("unreadable safetensors header ({e})")))?;
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(want) = header.metadata().as_ref().and_then(|m| m.get(SHA256_KEY)) {
        let found = sha256_sorted(
            views.len(),
            views
                .iter()
                .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), Cow::Borrowed(v.data()))),
        );
        if &found != want {
            return Err(damaged(
                path,
                format!(
                    "checksum mismatch: its tensors hash to {found}, its header records {want}"
                ),
            ));
        }
    }
    views
        .into_iter()
        .map(|(name, v)| {
            let kind = kind_of(v.dtype())
                .ok_or_else(|| damaged(path, format!("tensor {name} has dtype {:?}", v.dtype())))?;
            let size: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(v.data(), &size, kind)
                .map_err(|e| damaged(path, format!("tensor {name}: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| damaged(path, format!("invalid JSON ({e})")))
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

/// What a model file is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// A TorchScript module (`torch.jit.trace` / `torch.jit.script`): any other name.
    TorchScript,
    /// An nrf checkpoint: `<stem>.safetensors` with its spec `<stem>.json` ([`save_model`]:
    /// `nrf train --save`, a run's `weights/`). An nrf model: the paper's FakeReLU applies to
    /// it, its normalisation and representation are its spec's.
    Checkpoint,
}

impl ModelFormat {
    /// Of the file `path`: a checkpoint when it ends in `.safetensors`.
    pub fn of(path: &Path) -> ModelFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => ModelFormat::Checkpoint,
            _ => ModelFormat::TorchScript,
        }
    }

    /// "TorchScript" / "nrf checkpoint", for tables.
    pub fn label(self) -> &'static str {
        match self {
            ModelFormat::TorchScript => "TorchScript",
            ModelFormat::Checkpoint => "nrf checkpoint",
        }
    }

    /// "TorchScript model" / "nrf checkpoint", for messages.
    pub fn noun(self) -> &'static str {
        match self {
            ModelFormat::TorchScript => "TorchScript model",
            ModelFormat::Checkpoint => "nrf checkpoint",
        }
    }
}

/// The keys of a model sidecar's checksums: of its own content, and of the weights file.
const SIDECAR_SHA256: &str = "sha256";
const SIDECAR_WEIGHTS_SHA256: &str = "safetensors_sha256";

/// Saves a model (weights + spec) to `<stem>.safetensors` / `<stem>.json`. The sidecar is the
/// spec's JSON plus `safetensors_sha256` (the weights file's SHA-256) and `sha256` (its own
/// content's, [`canonical_json_sha256`] of the rest), written after the weights: a crash between
/// the two leaves a pair that [`load_model`] reports as mismatched.
pub fn save_model(model: &Model, stem: &Path) -> Result<()> {
    let (st, js) = paths(stem);
    write_tensors_atomic(&st, &model_tensors(model))?;
    let weights = std::fs::read(&st).with_context(|| format!("reading {}", st.display()))?;
    let mut side = serde_json::to_value(&model.spec)?;
    let Some(map) = side.as_object_mut() else {
        bail!("{}: the model spec is not a JSON object", js.display());
    };
    map.insert(SIDECAR_WEIGHTS_SHA256.into(), sha256_bytes(&weights).into());
    let own = canonical_json_sha256(&side);
    if let Some(map) = side.as_object_mut() {
        map.insert(SIDECAR_SHA256.into(), own.into());
    }
    write_atomic(&js, serde_json::to_string_pretty(&side)?.as_bytes())
}

/// Checks a model sidecar's checksums (those it has: sidecars written before they existed have
/// none) against its content and the weights file `st`; removes them from `side`.
fn check_sidecar(side: &mut serde_json::Value, js: &Path, st: &Path) -> Result<()> {
    let Some(map) = side.as_object_mut() else {
        return Ok(());
    };
    let own = map.remove(SIDECAR_SHA256);
    if let Some(want) = own.as_ref().and_then(|v| v.as_str()) {
        let found = canonical_json_sha256(side);
        if found != want {
            return Err(damaged(
                js,
                format!("checksum mismatch: its content hashes to {found}, it records {want}"),
            ));
        }
    }
    let Some(map) = side.as_object_mut() else {
        return Ok(());
    };
    if let Some(want) = map.remove(SIDECAR_WEIGHTS_SHA256) {
        let want = want.as_str().unwrap_or_default().to_string();
        let found = nrf_data::store::sha256_file(st)?;
        if found != want {
            return Err(damaged(
                st,
                format!(
                    "checksum mismatch: SHA-256 {found}, {} records {want} (a damaged file, or \
                     weights and sidecar from two different saves)",
                    js.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Loads a model saved by [`save_model`] (or a training checkpoint) onto `device`, checking the
/// checksums (see the module's documentation): a damaged or mismatched file is [`Damaged`],
/// named. Nothing is drawn from libtorch's global generator (the model is a
/// [`Model::placeholder`] until its weights are read), so a seeded stream is left as it was.
pub fn load_model(stem: &Path, device: Device) -> Result<Model> {
    let (st, js) = paths(stem);
    let mut side = read_json::<serde_json::Value>(&js)?;
    check_sidecar(&mut side, &js, &st)?;
    let spec: ModelSpec = match side {
        v if v.get("spec").is_some() => serde_json::from_value(v["spec"].clone())
            .map_err(|e| damaged(&js, format!("field `spec` is not a model spec ({e})")))?,
        v => serde_json::from_value(v)
            .map_err(|e| damaged(&js, format!("not a model spec ({e})")))?,
    };
    let mut model = Model::placeholder(&spec, device)?;
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

/// `<stem>.progress`: the steps a training checkpointed at `stem` has taken, noted by
/// [`note_training_progress`] between its checkpoints, for progress lines only.
pub fn progress_path(stem: &Path) -> PathBuf {
    let mut p = stem.as_os_str().to_owned();
    p.push(".progress");
    PathBuf::from(p)
}

/// Notes in [`progress_path`] that the training checkpointed at `stem` has taken `step` of its
/// `total` steps (as text, `"<step>/<total>"`). Advisory: read only by
/// [`training_done_fraction`], so a failed write is ignored and nothing is synced.
pub fn note_training_progress(stem: &Path, step: usize, total: usize) {
    let _ = std::fs::write(progress_path(stem), format!("{step}/{total}"));
}

/// The share of its work that the training checkpointed at `stem` ([`save_training`] by
/// [`crate::train::train`]) has done: the larger of its checkpointed epochs' share and the steps
/// noted in [`progress_path`] (a long epoch counts before its checkpoint), if either is there
/// and readable. For progress lines only (nothing is checked). Only the safetensors header and
/// the metadata tensor are read, not the weights (a ResNet-50's checkpoint is hundreds of MB).
pub fn training_done_fraction(stem: &Path) -> Option<f64> {
    let noted = std::fs::read_to_string(progress_path(stem))
        .ok()
        .and_then(|t| {
            let (a, b) = t.trim().split_once('/')?;
            let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
            (b > 0.0 && a >= 0.0).then(|| (a / b).min(1.0))
        });
    match (checkpointed_fraction(stem), noted) {
        (Some(c), Some(n)) => Some(c.max(n)),
        (c, n) => c.or(n),
    }
}

/// The share of its epochs a readable checkpoint at `stem` records.
fn checkpointed_fraction(stem: &Path) -> Option<f64> {
    use std::io::{Read, Seek, SeekFrom};
    const LIMIT: u64 = 64 << 20;
    let (st, _) = paths(stem);
    let mut f = std::fs::File::open(&st).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > LIMIT {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let offsets = header["meta.json"]["data_offsets"].as_array()?;
    let (a, b) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
    if b < a || b - a > LIMIT {
        return None;
    }
    f.seek(SeekFrom::Start(8 + n + a)).ok()?;
    let mut bytes = vec![0u8; (b - a) as usize];
    f.read_exact(&mut bytes).ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let epochs = meta["config"]["epochs"].as_f64()?;
    let done = meta["history"].as_array()?.len() as f64;
    (epochs > 0.0).then(|| (done / epochs).min(1.0))
}

/// Reads a training checkpoint written by [`save_training`], if it exists. A damaged one
/// (truncated, corrupted, checksum mismatch, unreadable metadata) is reported with a warning
/// naming the file and treated as missing: training starts afresh and overwrites it.
pub fn load_training<T: DeserializeOwned>(stem: &Path) -> Result<Option<(T, NamedTensors)>> {
    let (st, _) = paths(stem);
    if !st.exists() {
        return Ok(None);
    }
    match read_training(&st) {
        Err(e) if is_damaged(&e) => {
            tracing::warn!("{e:#}; ignoring this checkpoint, training again from the start");
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn read_training<T: DeserializeOwned>(st: &Path) -> Result<(T, NamedTensors)> {
    let mut tensors = read_tensors(st)?;
    let pos = tensors
        .iter()
        .position(|(n, _)| n == "meta.json")
        .ok_or_else(|| damaged(st, "not a training checkpoint (no meta.json)"))?;
    let (_, meta) = tensors.remove(pos);
    let bytes = Vec::<u8>::try_from(&meta)
        .map_err(|e| damaged(st, format!("unreadable meta.json ({e})")))?;
    let meta = serde_json::from_slice(&bytes)
        .map_err(|e| damaged(st, format!("invalid checkpoint metadata ({e})")))?;
    Ok((meta, tensors))
}

#[cfg(test)]
mod tests;
