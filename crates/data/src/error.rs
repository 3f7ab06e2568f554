//! The error type of nrf-data. Every message names the file (or, for in-memory input, the
//! argument) it is about, and says what is wrong with it.

use std::path::{Path, PathBuf};

/// An error from reading, checking or writing data. The `Display` form always starts with the
/// path of the file concerned (or the name of the argument, for [`DataError::InvalidArgument`]).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused an operation (missing file, permissions, disk full...).
    ///
    /// The OS error is part of the message and not also the error's `source()`, so that a
    /// report of the whole chain (`{:#}` of an `anyhow::Error`) says it once.
    #[error("{}: cannot {action}: {error}", .path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done, e.g. "read file".
        action: &'static str,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file ends before the data its header (or format) promises.
    #[error("{}: truncated file: {detail}", .path.display())]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
    /// The file does not start with the expected magic number.
    #[error(
        "{}: wrong magic number 0x{found:08x} (expected 0x{expected:08x}, {kind})",
        .path.display()
    )]
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// The magic number found.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What kind of file was expected, e.g. "IDX3 u8 images".
        kind: &'static str,
    },
    /// An image file and its label file disagree on the number of examples.
    #[error(
        "{}: holds {images} images but {} holds {labels} labels",
        .images_path.display(),
        .labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images in it.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels in it.
        labels: usize,
    },
    /// A label is not in `0..num_classes`.
    #[error(
        "{}: label {label} of example {index} is out of range 0..{num_classes}",
        .path.display()
    )]
    LabelOutOfRange {
        /// The file (or dataset name) concerned.
        path: PathBuf,
        /// Index of the example.
        index: usize,
        /// The offending label.
        label: i64,
        /// The number of classes.
        num_classes: usize,
    },
    /// An image file could not be decoded.
    #[error("{}: unreadable image: {reason}", .path.display())]
    UnreadableImage {
        /// The image file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// Sizes or shapes are inconsistent (e.g. a pixel buffer of the wrong length).
    #[error("{}: bad shape: {detail}", .path.display())]
    BadShape {
        /// The file (or dataset name) concerned.
        path: PathBuf,
        /// What is inconsistent.
        detail: String,
    },
    /// A pixel is NaN or infinite.
    #[error(
        "{}: non-finite pixel value {value} (NaN or infinity) in image {example} (flat index {index})",
        .path.display()
    )]
    NonFinite {
        /// The file (or dataset name) concerned.
        path: PathBuf,
        /// Index of the image holding the pixel.
        example: usize,
        /// Flat index of the pixel.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A pixel is finite but outside `[0, 1]`.
    #[error("{}: pixel value {value} at flat index {index} is outside [0, 1]", .path.display())]
    PixelOutOfRange {
        /// The file (or dataset name) concerned.
        path: PathBuf,
        /// Flat index of the pixel.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A data directory is a regular file (or something else that is not a directory).
    #[error("{}: is a file, not a directory: give the folder that holds the data set's files", .path.display())]
    NotADirectory {
        /// The path given as the data directory.
        path: PathBuf,
    },
    /// The training and test splits of a data set disagree (image shape, channels, number of
    /// classes), or one of them is empty.
    #[error("{}: {detail}", .path.display())]
    SplitMismatch {
        /// The data directory (or the file) concerned.
        path: PathBuf,
        /// What disagrees, naming both splits.
        detail: String,
    },
    /// The file's content is malformed in some other way (corrupt gzip stream, unsupported
    /// IDX type, bad safetensors header, wrong tensor dtype...).
    #[error("{}: malformed file: {detail}", .path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A JSON file (or JSON metadata inside a file) could not be parsed or written.
    /// (The parser's error is in the message, not also the `source()`, as for [`DataError::Io`].)
    #[error("{}: bad JSON: {error}", .path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The parser's error.
        error: serde_json::Error,
    },
    /// An in-memory argument is invalid (e.g. `k > n` for a subset, a non-positive-definite
    /// covariance, an image slice whose length does not match its shape).
    #[error("{what}: {detail}")]
    InvalidArgument {
        /// The function and argument, e.g. "random_subset: k".
        what: String,
        /// What is wrong.
        detail: String,
    },
}

impl DataError {
    /// The file this error is about, if it is about a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::LabelOutOfRange { path, .. }
            | DataError::UnreadableImage { path, .. }
            | DataError::BadShape { path, .. }
            | DataError::NonFinite { path, .. }
            | DataError::PixelOutOfRange { path, .. }
            | DataError::Format { path, .. }
            | DataError::Json { path, .. }
            | DataError::NotADirectory { path }
            | DataError::SplitMismatch { path, .. } => Some(path),
            DataError::CountMismatch { images_path, .. } => Some(images_path),
            DataError::InvalidArgument { .. } => None,
        }
    }

    /// Whether this error is about a file or directory that does not exist (as opposed to one
    /// that exists but is damaged or unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DataError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            error: source,
        }
    }

    pub(crate) fn truncated(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DataError::Truncated {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_shape(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DataError::BadShape {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        DataError::InvalidArgument {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The result type of nrf-data.
pub type Result<T> = std::result::Result<T, DataError>;
