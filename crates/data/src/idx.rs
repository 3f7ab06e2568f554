//! IDX files (the format of MNIST and Fashion-MNIST), gzipped or not.
//!
//! An IDX file starts with the magic number `0x0000TTDD` (big-endian; `TT` the element type,
//! `0x08` for unsigned bytes, `DD` the number of dimensions), then one big-endian `u32` per
//! dimension, then the elements, row-major. Images are `0x00000803` (count, rows, cols), labels
//! `0x00000801` (count). Gzipped files are recognised by their first two bytes (`1f 8b`),
//! whatever their name. Only unsigned-byte files are supported.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{DataError, Result};
use crate::store::write_atomic;
use crate::{Dataset, Split};

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The class names of Fashion-MNIST, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Magic number of an IDX file of u8 images (3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels (1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The images of an IDX3 file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes (0 = black... for MNIST, 0 = background).
    pub pixels: Vec<u8>,
}

/// Reads a whole file, un-gzipping it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, "read file", e))?;
    gunzip_if_gzipped(path, raw)
}

/// `raw` un-gzipped when it starts with the gzip magic bytes, else `raw`; `path` names it in
/// errors.
fn gunzip_if_gzipped(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    DataError::truncated(path, format!("gzip stream ends early ({e})"))
                } else {
                    DataError::format(path, format!("corrupt gzip stream ({e})"))
                }
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX u8 file with the given magic; returns the dimensions and the data.
fn parse_idx<'a>(
    path: &Path,
    bytes: &'a [u8],
    expected_magic: u32,
    kind: &'static str,
) -> Result<(Vec<usize>, &'a [u8])> {
    if bytes.len() < 4 {
        return Err(DataError::truncated(
            path,
            format!(
                "{} bytes, too short for the 4-byte IDX magic number",
                bytes.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        let elem = (magic >> 8) & 0xff;
        if magic >> 16 == 0 && elem != 0x08 && [0x09, 0x0b, 0x0c, 0x0d, 0x0e].contains(&elem) {
            return Err(DataError::format(
                path,
                format!(
                    "IDX element type 0x{elem:02x} is not supported (only unsigned bytes, 0x08; expected {kind})"
                ),
            ));
        }
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: expected_magic,
            kind,
        });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::truncated(
            path,
            format!(
                "{} bytes, too short for the {header}-byte header of a {ndims}-dimensional IDX file",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::bad_shape(path, format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header..];
    if data.len() < total {
        return Err(DataError::truncated(
            path,
            format!(
                "header declares dimensions {dims:?} ({total} bytes of data) but only {} bytes follow",
                data.len()
            ),
        ));
    }
    if data.len() > total {
        return Err(DataError::format(
            path,
            format!(
                "header declares dimensions {dims:?} ({total} bytes of data) but {} bytes follow",
                data.len()
            ),
        ));
    }
    Ok((dims, data))
}

/// Reads an IDX3 u8 image file (gzipped or not).
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    idx_images_from_bytes(path, bytes)
}

/// Parses the content of an IDX3 u8 image file (gzipped or not); `path` names it in errors.
/// Never panics: any byte string gives the images or an error.
pub fn idx_images_from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<IdxImages> {
    let path = path.as_ref();
    let bytes = gunzip_if_gzipped(path, bytes)?;
    let (dims, data) = parse_idx(path, &bytes, IDX_IMAGES_MAGIC, "IDX3 u8 images")?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: data.to_vec(),
    })
}

/// Reads an IDX1 u8 label file (gzipped or not).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    idx_labels_from_bytes(path, bytes)
}

/// Parses the content of an IDX1 u8 label file (gzipped or not); `path` names it in errors.
/// Never panics: any byte string gives the labels or an error.
pub fn idx_labels_from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = gunzip_if_gzipped(path, bytes)?;
    let (_, data) = parse_idx(path, &bytes, IDX_LABELS_MAGIC, "IDX1 u8 labels")?;
    Ok(data.to_vec())
}

fn encode(path: &Path, magic: u32, dims: &[usize], data: &[u8], gzip: bool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DataError::bad_shape(path, format!("dimension {d} does not fit an IDX u32"))
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    if !gzip {
        return Ok(out);
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&out)
        .and_then(|_| enc.finish())
        .map_err(|e| DataError::io(path, "gzip data for", e))
}

/// Writes an IDX3 u8 image file (gzipped when `gzip`), atomically.
pub fn write_idx_images(path: impl AsRef<Path>, images: &IdxImages, gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let expected = images.count * images.rows * images.cols;
    if images.pixels.len() != expected {
        return Err(DataError::bad_shape(
            path,
            format!(
                "{} pixel bytes for {} images of {}x{}",
                images.pixels.len(),
                images.count,
                images.rows,
                images.cols
            ),
        ));
    }
    let bytes = encode(
        path,
        IDX_IMAGES_MAGIC,
        &[images.count, images.rows, images.cols],
        &images.pixels,
        gzip,
    )?;
    write_atomic(path, &bytes)
}

/// Writes an IDX1 u8 label file (gzipped when `gzip`), atomically.
pub fn write_idx_labels(path: impl AsRef<Path>, labels: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode(path, IDX_LABELS_MAGIC, &[labels.len()], labels, gzip)?;
    write_atomic(path, &bytes)
}

/// The standard file names of an MNIST-style split: (images, labels), without `.gz`.
pub fn idx_file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

/// `dir/name.gz` if it exists, else `dir/name` if it exists, else an error naming both.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    // A missing folder falls through to the error below, which names the files expected.
    if let Err(e @ DataError::NotADirectory { .. }) = crate::check_data_dir(dir) {
        return Err(e);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(DataError::io(
        gz,
        "find file (nor its uncompressed version) to read",
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name}.gz nor {name} exists in {}", dir.display()),
        ),
    ))
}

/// Builds a [`Dataset`] from an IDX image file and an IDX label file, checking that they
/// agree on the number of examples and that labels are in `0..num_classes`.
pub fn load_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    name: &str,
    num_classes: usize,
    class_names: Vec<String>,
) -> Result<Dataset> {
    let images_path = images_path.as_ref();
    let labels_path = labels_path.as_ref();
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    if images.rows == 0 || images.cols == 0 {
        return Err(DataError::bad_shape(
            images_path,
            format!("images of {}x{} pixels", images.rows, images.cols),
        ));
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            index,
            label: label as i64,
            num_classes,
        });
    }
    Ok(Dataset {
        name: name.to_string(),
        images: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels.iter().map(|&l| l as i64).collect(),
        shape: [1, images.rows, images.cols],
        num_classes,
        class_names,
    })
}

fn load_mnist_like(
    dir: &Path,
    split: Split,
    name: &str,
    class_names: Vec<String>,
) -> Result<Dataset> {
    let (img, lab) = idx_file_names(split);
    let images_path = find_file(dir, img)?;
    let labels_path = find_file(dir, lab)?;
    load_idx_pair(
        images_path,
        labels_path,
        &format!("{name}/{split}"),
        10,
        class_names,
    )
}

/// Loads a Fashion-MNIST split from `dir` (e.g. [`FASHION_MNIST_DIR`]), which holds the four
/// standard files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, preferred) or not.
/// The dataset is named `fashion-mnist/train` or `fashion-mnist/test`, shape `[1, 28, 28]`
/// for the real data, pixels scaled to `[0, 1]` by `/ 255`.
pub fn load_fashion_mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    load_mnist_like(
        dir.as_ref(),
        split,
        "fashion-mnist",
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

/// Loads an MNIST split from `dir` (same file names as [`load_fashion_mnist`]); class names
/// are the digits "0".."9".
pub fn load_mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    load_mnist_like(
        dir.as_ref(),
        split,
        "mnist",
        (0..10).map(|d| d.to_string()).collect(),
    )
}
