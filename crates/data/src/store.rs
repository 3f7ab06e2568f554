//! Storage of constructed datasets (D_R, D_NR, D_rand, D_det...), atomic file writes and
//! SHA-256 checksums.
//!
//! [`save_constructed`] writes two files next to each other:
//!
//! * `<name>.safetensors`: tensors `images` (f32, `[N, C, H, W]`), `labels` (i64, `[N]`) and
//!   `source_indices` (i64, `[N]`), plus the JSON header (see [`StoredHeader`]) as the string
//!   value of the key `"nrf"` in the safetensors `__metadata__`. This file alone is enough to
//!   load the dataset back, from Rust ([`load_constructed`]) or from Python
//!   (`safetensors.numpy.load_file`, `safe_open(...).metadata()["nrf"]`).
//! * `<name>.json`: the same header, pretty-printed, plus the SHA-256 of the safetensors file,
//!   for people and for reports.
//!
//! Both are written atomically (temporary file in the same directory, fsync, rename), so a
//! crash never leaves a half-written artefact under the final name.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::Dataset;

/// The value of [`StoredHeader::format`] written by this version.
pub const CONSTRUCTED_FORMAT: &str = "nrf-constructed-dataset/1";

/// The key of the JSON header in the safetensors `__metadata__`.
pub const METADATA_KEY: &str = "nrf";

/// How a dataset was constructed. Fields that do not apply to a method are `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConstructedMetadata {
    /// The construction, e.g. "d_r", "d_nr", "d_rand", "d_det".
    pub method: String,
    /// Attack radius (for D_rand / D_det), if any.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Number of optimisation steps.
    #[serde(default)]
    pub steps: Option<usize>,
    /// Step size (the initial one when it is scheduled).
    #[serde(default)]
    pub step_size: Option<f64>,
    /// SHA-256 (hex) of the source model's weights file.
    #[serde(default)]
    pub source_model_sha256: Option<String>,
    /// The seed of the construction.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Anything else worth recording (norm, schedule, final losses...).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A constructed dataset: the images and (new) labels, the index in the source dataset each
/// example was made from, and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstructedDataset {
    /// The examples. Must pass [`Dataset::validate`].
    pub dataset: Dataset,
    /// For each example, the index of the source example it was built from (`-1` if none).
    pub source_indices: Vec<i64>,
    /// Representation matching (D_R / D_NR): for each example, the index of the training image
    /// its optimisation started from (`-1` for a start that is not an image, e.g. noise); None
    /// for the other constructions. Stored as the tensor `start_indices`; files written before
    /// it was a field carry it in `metadata.extra["start_indices"]`, read into this field.
    pub start_indices: Option<Vec<i64>>,
    /// How the examples were built.
    pub metadata: ConstructedMetadata,
}

/// The JSON header stored with a constructed dataset (in the safetensors metadata and in the
/// `.json` side file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHeader {
    /// Always [`CONSTRUCTED_FORMAT`].
    pub format: String,
    /// The dataset's name.
    pub name: String,
    /// Number of examples.
    pub len: usize,
    /// (channels, height, width).
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Class names (may be empty).
    pub class_names: Vec<String>,
    /// Examples per class.
    pub class_counts: Vec<usize>,
    /// How the dataset was built.
    pub metadata: ConstructedMetadata,
    /// SHA-256 of the `.safetensors` file (only in the `.json` side file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors_sha256: Option<String>,
}

/// The two file names used for `stem`: `<stem>.safetensors` and `<stem>.json`. A trailing
/// `.safetensors` or `.json` on `stem` is dropped first, so the data file's own path works too.
pub fn constructed_paths(stem: impl AsRef<Path>) -> (PathBuf, PathBuf) {
    let s = stem.as_ref().as_os_str().to_string_lossy().into_owned();
    let base = s
        .strip_suffix(".safetensors")
        .or_else(|| s.strip_suffix(".json"))
        .unwrap_or(&s)
        .to_string();
    (
        PathBuf::from(format!("{base}.safetensors")),
        PathBuf::from(format!("{base}.json")),
    )
}

/// Saves `data` as `<stem>.safetensors` + `<stem>.json` (atomically each) and returns the two
/// paths. The dataset is validated first; the parent directory is created if needed.
pub fn save_constructed(
    stem: impl AsRef<Path>,
    data: &ConstructedDataset,
) -> Result<(PathBuf, PathBuf)> {
    let (st_path, json_path) = constructed_paths(stem);
    let ds = &data.dataset;
    ds.validate(&st_path.to_string_lossy())?;
    if data.source_indices.len() != ds.len() {
        return Err(DataError::bad_shape(
            &st_path,
            format!(
                "{} source indices for {} examples",
                data.source_indices.len(),
                ds.len()
            ),
        ));
    }
    if let Some(starts) = &data.start_indices {
        if starts.len() != ds.len() {
            return Err(DataError::bad_shape(
                &st_path,
                format!("{} start indices for {} examples", starts.len(), ds.len()),
            ));
        }
    }
    let mut header = StoredHeader {
        format: CONSTRUCTED_FORMAT.to_string(),
        name: ds.name.clone(),
        len: ds.len(),
        shape: ds.shape,
        num_classes: ds.num_classes,
        class_names: ds.class_names.clone(),
        class_counts: ds.class_counts(),
        metadata: data.metadata.clone(),
        safetensors_sha256: None,
    };
    let header_json = serde_json::to_string(&header).map_err(|error| DataError::Json {
        path: st_path.clone(),
        error,
    })?;

    let images: Vec<u8> = ds.images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Vec<u8> = ds.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let sources: Vec<u8> = data
        .source_indices
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let starts: Option<Vec<u8>> = data
        .start_indices
        .as_ref()
        .map(|s| s.iter().flat_map(|v| v.to_le_bytes()).collect());
    let [c, h, w] = ds.shape;
    let n = ds.len();
    let st_err = |e: safetensors::SafeTensorError| DataError::format(&st_path, e.to_string());
    let mut tensors = vec![
        (
            "images",
            TensorView::new(Dtype::F32, vec![n, c, h, w], &images).map_err(st_err)?,
        ),
        (
            "labels",
            TensorView::new(Dtype::I64, vec![n], &labels).map_err(st_err)?,
        ),
        (
            "source_indices",
            TensorView::new(Dtype::I64, vec![n], &sources).map_err(st_err)?,
        ),
    ];
    if let Some(starts) = &starts {
        tensors.push((
            "start_indices",
            TensorView::new(Dtype::I64, vec![n], starts).map_err(st_err)?,
        ));
    }
    let meta: HashMap<String, String> = HashMap::from([(METADATA_KEY.to_string(), header_json)]);
    write_atomic_with(&st_path, |tmp| {
        safetensors::tensor::serialize_to_file(tensors, &Some(meta), tmp).map_err(|e| match e {
            safetensors::SafeTensorError::IoError(e) => e,
            e => std::io::Error::other(format!("cannot serialise: {e}")),
        })
    })?;

    header.safetensors_sha256 = Some(sha256_file(&st_path)?);
    write_json_atomic(&json_path, &header)?;
    Ok((st_path, json_path))
}

/// Loads a dataset written by [`save_constructed`] from `<stem>.safetensors` (the `.json` side
/// file is not needed). Checks dtypes, shapes, the header and the data
/// ([`Dataset::validate`]); every error names the file.
pub fn load_constructed(stem: impl AsRef<Path>) -> Result<ConstructedDataset> {
    let (path, json_path) = constructed_paths(stem);
    let bytes = fs::read(&path).map_err(|e| DataError::io(&path, "read file", e))?;
    let fmt = |detail: String| DataError::format(&path, detail);
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| fmt(format!("not a safetensors file ({e})")))?;
    let header_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| {
            fmt(format!(
                "no \"{METADATA_KEY}\" entry in the safetensors metadata"
            ))
        })?;
    let header: StoredHeader =
        serde_json::from_str(header_json).map_err(|error| DataError::Json {
            path: path.clone(),
            error,
        })?;
    if header.format != CONSTRUCTED_FORMAT {
        return Err(fmt(format!(
            "format {:?} is not {CONSTRUCTED_FORMAT:?}",
            header.format
        )));
    }
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| fmt(format!("not a safetensors file ({e})")))?;
    check_recorded_sha256(&path, &bytes, &json_path)?;
    let n = header.len;
    let [c, h, w] = header.shape;
    let get = |name: &str, dtype: Dtype, shape: Vec<usize>| -> Result<Vec<u8>> {
        let t = st
            .tensor(name)
            .map_err(|_| fmt(format!("no tensor {name:?}")))?;
        if t.dtype() != dtype {
            return Err(fmt(format!(
                "tensor {name:?} has dtype {:?}, expected {dtype:?}",
                t.dtype()
            )));
        }
        if t.shape() != shape.as_slice() {
            return Err(DataError::bad_shape(
                &path,
                format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?}",
                    t.shape()
                ),
            ));
        }
        Ok(t.data().to_vec())
    };
    let images: Vec<f32> = get("images", Dtype::F32, vec![n, c, h, w])?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let to_i64 = |b: Vec<u8>| -> Vec<i64> {
        b.chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    };
    let labels = to_i64(get("labels", Dtype::I64, vec![n])?);
    let source_indices = to_i64(get("source_indices", Dtype::I64, vec![n])?);
    let mut metadata = header.metadata;
    let start_indices = if st.names().iter().any(|t| t.as_str() == "start_indices") {
        Some(to_i64(get("start_indices", Dtype::I64, vec![n])?))
    } else {
        legacy_start_indices(&path, &mut metadata, n)?
    };
    let dataset = Dataset {
        name: header.name,
        images,
        labels,
        shape: header.shape,
        num_classes: header.num_classes,
        class_names: header.class_names,
    };
    dataset.validate(&path.to_string_lossy())?;
    Ok(ConstructedDataset {
        dataset,
        source_indices,
        start_indices,
        metadata,
    })
}

/// The start indices of a file written before [`ConstructedDataset::start_indices`] was a field:
/// `metadata.extra["start_indices"]` (taken out of `extra`), checked to be `n` integers.
fn legacy_start_indices(
    path: &Path,
    metadata: &mut ConstructedMetadata,
    n: usize,
) -> Result<Option<Vec<i64>>> {
    let Some(v) = metadata.extra.remove("start_indices") else {
        return Ok(None);
    };
    let starts: Vec<i64> = serde_json::from_value(v).map_err(|e| {
        DataError::format(
            path,
            format!("metadata start_indices is not a list of integers ({e})"),
        )
    })?;
    if starts.len() != n {
        return Err(DataError::bad_shape(
            path,
            format!(
                "{} start indices in its metadata for {n} examples",
                starts.len()
            ),
        ));
    }
    Ok(Some(starts))
}

/// Checks `bytes` (the content of `path`) against the SHA-256 recorded in the side file
/// `json_path` ([`StoredHeader::safetensors_sha256`]). No side file, or one without a checksum
/// (files written by other tools or by older versions of nrf; [`save_constructed`] records it
/// whenever it writes), is accepted: the data file alone is a complete dataset. A side file that
/// cannot be read or parsed, or a different checksum (a damaged file, or the two files from two
/// different writes), is an error naming the data file.
fn check_recorded_sha256(path: &Path, bytes: &[u8], json_path: &Path) -> Result<()> {
    let text = match fs::read(json_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataError::io(json_path, "read file", e)),
    };
    let side: serde_json::Value =
        serde_json::from_slice(&text).map_err(|error| DataError::Json {
            path: json_path.to_path_buf(),
            error,
        })?;
    let Some(want) = side.get("safetensors_sha256").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let found = sha256_bytes(bytes);
    if !found.eq_ignore_ascii_case(want) {
        return Err(DataError::format(
            path,
            format!(
                "checksum mismatch: SHA-256 {found}, {} records {want} (a damaged or \
                 half-replaced file)",
                json_path.display()
            ),
        ));
    }
    Ok(())
}

impl From<crate::atomic::WriteError> for DataError {
    fn from(e: crate::atomic::WriteError) -> Self {
        DataError::Io {
            path: e.path,
            action: e.action,
            error: e.error,
        }
    }
}

/// Writes a file atomically with nrf's one writer, [`crate::atomic::write_atomic_with`]: `write`
/// fills a temporary file in the same folder as `path`, which is then fsynced and renamed onto
/// `path` (and the folder fsynced). On any error the temporary file is removed, `path` is left
/// untouched, and the error names `path`. The parent folder is created if missing.
pub fn write_atomic_with<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> std::io::Result<()>,
{
    Ok(crate::atomic::write_atomic_with(path.as_ref(), write)?)
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    Ok(crate::atomic::write_atomic(path.as_ref(), bytes)?)
}

/// Writes `value` as pretty-printed JSON (with a final newline) to `path`, atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    let path = path.as_ref();
    let mut text = serde_json::to_vec_pretty(value).map_err(|error| DataError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Reads and parses a JSON file; errors name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| DataError::io(path, "read file", e))?;
    serde_json::from_slice(&bytes).map_err(|error| DataError::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// The SHA-256 of a file's content, as 64 lowercase hex digits.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| DataError::io(path, "open file", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| DataError::io(path, "read file", e))?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The SHA-256 of a byte slice, as 64 lowercase hex digits.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 (64 lowercase hex digits) of a JSON value in a canonical form: objects with
/// their keys sorted, no spaces, numbers and strings as serde_json writes them. The same for a
/// value and for that value written (in any layout, with any key order) and read back, so it
/// checks the content of a JSON artefact whatever its formatting.
pub fn canonical_json_sha256(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(&serde_json::Value::String(k.clone()), out);
                    out.push(b':');
                    write(&map[k], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    sha256_bytes(&out)
}
