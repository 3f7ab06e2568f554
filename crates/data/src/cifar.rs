//! CIFAR-10, binary version (`cifar-10-binary.tar.gz`, unpacked).
//!
//! Each batch file is a sequence of 3073-byte records: one label byte (`0..10`) then 3072
//! pixel bytes, the 32x32 red plane, then green, then blue, each row-major — exactly the
//! `[C, H, W]` layout of [`Dataset`]. The training set is `data_batch_1.bin` ..
//! `data_batch_5.bin`, the test set `test_batch.bin`; `batches.meta.txt` holds the class names,
//! one per line.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::store::write_atomic;
use crate::{Dataset, Split};

/// Pixel bytes per CIFAR image (3 x 32 x 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes per record (label byte + image).
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// The class names used when `batches.meta.txt` is absent.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The content of one batch file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarBatch {
    /// `labels.len() * 3072` pixel bytes, each image as R, G, B planes of 32x32.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Reads one CIFAR-10 batch file. Fails (naming the file) when it is empty, its length is not a
/// whole number of 3073-byte records, or a label is not in `0..10`.
pub fn read_cifar_batch(path: impl AsRef<Path>) -> Result<CifarBatch> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read file", e))?;
    cifar_batch_from_bytes(path, &bytes)
}

/// Parses the content of one CIFAR-10 batch file; `path` names it in errors. Never panics:
/// any byte string gives the batch or an error.
pub fn cifar_batch_from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<CifarBatch> {
    let path = path.as_ref();
    if bytes.is_empty() {
        return Err(DataError::truncated(path, "empty file (no CIFAR record)"));
    }
    if !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(DataError::truncated(
            path,
            format!(
                "{} bytes is not a whole number of {CIFAR_RECORD_BYTES}-byte records ({} full records and {} bytes more)",
                bytes.len(),
                bytes.len() / CIFAR_RECORD_BYTES,
                bytes.len() % CIFAR_RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut images = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (index, rec) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        if rec[0] >= 10 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index,
                label: rec[0] as i64,
                num_classes: 10,
            });
        }
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok(CifarBatch { images, labels })
}

/// Writes a CIFAR-10 batch file (atomically) from pixel bytes (`[N, 3, 32, 32]`) and labels.
pub fn write_cifar_batch(path: impl AsRef<Path>, images: &[u8], labels: &[u8]) -> Result<()> {
    let path = path.as_ref();
    if images.len() != labels.len() * CIFAR_IMAGE_BYTES {
        return Err(DataError::bad_shape(
            path,
            format!(
                "{} pixel bytes for {} labels (expected {} x {CIFAR_IMAGE_BYTES})",
                images.len(),
                labels.len(),
                labels.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(labels.len() * CIFAR_RECORD_BYTES);
    for (l, img) in labels.iter().zip(images.chunks_exact(CIFAR_IMAGE_BYTES)) {
        out.push(*l);
        out.extend_from_slice(img);
    }
    write_atomic(path, &out)
}

/// The batch file names of a split.
pub fn cifar10_file_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// `dir/cifar-10-batches-bin` when it exists (the folder the archive unpacks to), else `dir`.
fn resolve_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("cifar-10-batches-bin");
    if sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Reads the class names from `batches.meta.txt` (non-empty lines, trimmed); the defaults
/// ([`CIFAR10_CLASSES`]) when the file is absent; an error when it does not list 10 names.
pub fn cifar10_class_names(dir: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = resolve_dir(dir.as_ref()).join("batches.meta.txt");
    if !path.exists() {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read(&path).map_err(|e| DataError::io(&path, "read file", e))?;
    let text = String::from_utf8(text)
        .map_err(|_| DataError::format(&path, "class names are not UTF-8 text"))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != 10 {
        return Err(DataError::format(
            &path,
            format!("{} class names, expected 10", names.len()),
        ));
    }
    Ok(names)
}

/// Loads a CIFAR-10 split from `dir` (the folder holding the `.bin` files, or its parent
/// holding `cifar-10-batches-bin/`). Named `cifar10/train` or `cifar10/test`, shape
/// `[3, 32, 32]`, pixels scaled to `[0, 1]` by `/ 255`.
pub fn load_cifar10(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    crate::check_data_dir(dir.as_ref())?;
    let dir = resolve_dir(dir.as_ref());
    let class_names = cifar10_class_names(&dir)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in cifar10_file_names(split) {
        let batch = read_cifar_batch(dir.join(name))?;
        images.extend(batch.images.iter().map(|&p| p as f32 / 255.0));
        labels.extend(batch.labels.iter().map(|&l| l as i64));
    }
    Ok(Dataset {
        name: format!("cifar10/{split}"),
        images,
        labels,
        shape: [3, 32, 32],
        num_classes: 10,
        class_names,
    })
}
