//! nrf-data: datasets for nrf, with no libtorch dependency.
//!
//! Images are stored as `f32` in `[0, 1]`, layout N x C x H x W (row-major), labels as `i64`.

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
}
