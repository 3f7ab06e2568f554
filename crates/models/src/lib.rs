//! nrf-models: classifiers with a representation output (penultimate layer g(x)), input
//! normalisation inside the model, the training loop and checkpoints.
use tch::{nn, Tensor};

/// A classifier over images in `[0, 1]` (NCHW). Normalisation happens inside `forward`, so
/// attacks always work in pixel space.
pub trait Classifier {
    /// Returns `(logits [N, classes], representation g(x) [N, d])`.
    fn forward_rep(&self, x: &Tensor, train: bool) -> (Tensor, Tensor);
    /// Logits only.
    fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_rep(x, train).0
    }
    /// Number of classes.
    fn num_classes(&self) -> i64;
}
