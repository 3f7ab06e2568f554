//! nrf-data: datasets for nrf, with no libtorch dependency.
//!
//! Images are stored as `f32` in `[0, 1]`, layout N x C x H x W (row-major), labels as `i64`.
//!
//! * [`idx`]: IDX files (MNIST, Fashion-MNIST), gzipped or not; [`load_fashion_mnist`].
//! * [`cifar`]: the CIFAR-10 binary version; [`load_cifar10`].
//! * [`folder`]: image folders (one sub-folder per class) and Restricted ImageNet.
//! * [`batch`]: seeded shuffling, batching and fixed random subsets.
//! * [`atomic`]: the one atomic file writer of nrf (temporary file, fsync, rename) and the
//!   removal of the temporary files a crash leaves behind.
//! * [`store`]: constructed datasets (D_R, D_NR, D_rand, D_det) as safetensors + JSON,
//!   atomic writes and SHA-256 checksums.
//!
//! Every fallible function returns [`Result`], whose [`DataError`] names the file it is about.
//!
//! # Example
//!
//! Load the Fashion-MNIST test split, take a fixed random subset and iterate over it in
//! shuffled mini-batches:
//!
//! ```rust
//! use nrf_data::{batch, data_info, load_fashion_mnist, Split, FASHION_MNIST_DIR};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     if !std::path::Path::new(FASHION_MNIST_DIR).exists() {
//!         eprintln!("Fashion-MNIST not installed in {FASHION_MNIST_DIR}; nothing to show");
//!         return Ok(());
//!     }
//!     let test = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
//!     test.validate("fashion-mnist/test")?;
//!     assert_eq!(test.shape, [1, 28, 28]);
//!
//!     // A fixed subset of 1000 examples, the same for every run with this seed.
//!     let subset = test.subset(&batch::random_subset(test.len(), 1000, 7)?);
//!     println!("{}", data_info(&subset));
//!
//!     // One epoch of shuffled mini-batches of 128 (the last one holds 1000 - 7 * 128 = 104).
//!     let order = batch::shuffled_indices(subset.len(), 42, 0);
//!     let mut seen = 0;
//!     for indices in batch::batches(&order, 128) {
//!         let mini = subset.subset(indices);
//!         seen += mini.len();
//!     }
//!     assert_eq!(seen, 1000);
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]

pub mod atomic;
pub mod batch;
pub mod cifar;
pub mod error;
pub mod folder;
pub mod idx;
mod info;
mod rng;
pub mod store;

use std::path::{Path, PathBuf};

pub use cifar::load_cifar10;
pub use error::{DataError, Result};
pub use folder::{imagenet_test_resize, load_image_folder, load_restricted_imagenet};
pub use idx::{load_fashion_mnist, load_mnist, FASHION_MNIST_DIR};
pub use info::{data_info, DataInfo};
pub use store::{load_constructed, save_constructed, ConstructedDataset, ConstructedMetadata};

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training set.
    Train,
    /// The test set (for ImageNet: the `val` folder).
    Test,
}

impl Split {
    /// "train" or "test".
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => Err(DataError::invalid(
                "split",
                format!("unknown split {other:?} (expected \"train\" or \"test\")"),
            )),
        }
    }
}

/// An in-memory labelled image dataset. Pixels are `f32` in `[0, 1]`, NCHW row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Short name, e.g. "fashion-mnist/train".
    pub name: String,
    /// `len() * channels * height * width` pixels in `[0, 1]`.
    pub images: Vec<f32>,
    /// One label per image, in `0..num_classes`.
    pub labels: Vec<i64>,
    /// (channels, height, width).
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Human-readable class names (may be empty).
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when the dataset has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels per example (C*H*W).
    pub fn example_size(&self) -> usize {
        self.shape.iter().product()
    }
    /// The pixels of example `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let s = self.example_size();
        &self.images[i * s..(i + 1) * s]
    }
    /// A new dataset holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let s = self.example_size();
        let mut images = Vec::with_capacity(indices.len() * s);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: self.name.clone(),
            images,
            labels,
            shape: self.shape,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Number of examples of each class (`num_classes` entries). Labels outside
    /// `0..num_classes` are not counted (see [`Dataset::validate`]).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &l in &self.labels {
            if l >= 0 && (l as usize) < self.num_classes {
                counts[l as usize] += 1;
            }
        }
        counts
    }

    /// Checks the invariants of a dataset: a non-degenerate shape, `images.len() == len() *
    /// example_size()`, `class_names` empty or one per class, every label in
    /// `0..num_classes`, and every pixel finite and in `[0, 1]`. `source` (a file path or a
    /// dataset name) is what the error message names.
    pub fn validate(&self, source: &str) -> Result<()> {
        let path = PathBuf::from(source);
        if self.shape.contains(&0) {
            return Err(DataError::bad_shape(
                path,
                format!("shape {:?} has a zero dimension", self.shape),
            ));
        }
        let expected = self.len().checked_mul(self.example_size());
        if expected != Some(self.images.len()) {
            return Err(DataError::bad_shape(
                path,
                format!(
                    "{} pixels for {} examples of shape {:?} (expected {})",
                    self.images.len(),
                    self.len(),
                    self.shape,
                    expected.map_or_else(|| "an overflowing count".to_string(), |e| e.to_string())
                ),
            ));
        }
        if self.num_classes == 0 && !self.is_empty() {
            return Err(DataError::bad_shape(
                path,
                "num_classes is 0 but there are examples",
            ));
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.num_classes {
            return Err(DataError::bad_shape(
                path,
                format!(
                    "{} class names for {} classes",
                    self.class_names.len(),
                    self.num_classes
                ),
            ));
        }
        for (index, &label) in self.labels.iter().enumerate() {
            if label < 0 || label as u64 >= self.num_classes as u64 {
                return Err(DataError::LabelOutOfRange {
                    path,
                    index,
                    label,
                    num_classes: self.num_classes,
                });
            }
        }
        let size = self.example_size();
        for (index, &value) in self.images.iter().enumerate() {
            if !value.is_finite() {
                let example = index / size;
                return Err(DataError::NonFinite {
                    path,
                    example,
                    index,
                    value,
                });
            }
            if !(0.0..=1.0).contains(&value) {
                return Err(DataError::PixelOutOfRange { path, index, value });
            }
        }
        Ok(())
    }
}

/// Checks that `dir` is a directory: an error naming it when it does not exist (an I/O error of
/// kind `NotFound`, see [`DataError::is_not_found`]) or is a regular file
/// ([`DataError::NotADirectory`]).
pub fn check_data_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DataError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(DataError::io(dir, "read the data directory", e)),
    }
}

/// Checks that the two splits of a data set go together, when the data is read: neither is
/// empty, their images have the same shape (channels, height, width) and they have the same
/// number of classes. `train_src` / `test_src` (files or folders) are what the error names.
pub fn check_splits(
    train: &Dataset,
    train_src: &Path,
    test: &Dataset,
    test_src: &Path,
) -> Result<()> {
    let shape = |s: [usize; 3]| {
        format!(
            "{} channel{} of {}x{}",
            s[0],
            if s[0] == 1 { "" } else { "s" },
            s[1],
            s[2]
        )
    };
    for (d, src, what) in [(train, train_src, "training"), (test, test_src, "test")] {
        if d.is_empty() {
            return Err(DataError::SplitMismatch {
                path: src.to_path_buf(),
                detail: format!("the {what} set {} holds no image", d.name),
            });
        }
    }
    if train.shape != test.shape {
        return Err(DataError::SplitMismatch {
            path: train_src.to_path_buf(),
            detail: format!(
                "the training set {} has images of {} pixels but the test set {} ({}) has {}; \
                 both splits must have the same image shape and channels",
                train.name,
                shape(train.shape),
                test.name,
                test_src.display(),
                shape(test.shape)
            ),
        });
    }
    if train.num_classes != test.num_classes {
        return Err(DataError::SplitMismatch {
            path: train_src.to_path_buf(),
            detail: format!(
                "the training set {} has {} classes but the test set {} ({}) has {}",
                train.name,
                train.num_classes,
                test.name,
                test_src.display(),
                test.num_classes
            ),
        });
    }
    Ok(())
}
