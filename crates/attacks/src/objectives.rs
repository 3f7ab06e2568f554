//! Per-example objectives to maximise with [`crate::pgd()`].
//!
//! Each constructor returns a closure `x -> [N]` that runs the model in evaluation mode
//! (`train = false`). Objectives to be minimised are returned negated.

use nrf_models::{Classifier, RepRelu};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// Per-example cross-entropy, shape `[N]`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0)
}

/// Untargeted attack objective: the cross-entropy of the true labels (to maximise).
pub fn untargeted_ce<'a>(
    model: &'a dyn Classifier,
    labels: &'a Tensor,
) -> impl FnMut(&Tensor) -> Tensor + 'a {
    move |x: &Tensor| cross_entropy(&model.logits(x, false), labels)
}

/// Targeted attack objective: minus the cross-entropy of the target labels (maximising it
/// minimises the target loss).
pub fn targeted_ce<'a>(
    model: &'a dyn Classifier,
    target: &'a Tensor,
) -> impl FnMut(&Tensor) -> Tensor + 'a {
    move |x: &Tensor| -cross_entropy(&model.logits(x, false), target)
}

/// Per-example margin `max_{j≠y} z_j − z_y` (positive iff misclassified), shape `[N]`.
pub fn margin(logits: &Tensor, labels: &Tensor) -> Tensor {
    let idx = labels.view([-1, 1]);
    let true_logit = logits.gather(1, &idx, false).squeeze_dim(1);
    let others = logits.scatter_value(1, &idx, f64::NEG_INFINITY);
    others.amax([1i64].as_slice(), false) - true_logit
}

/// Untargeted Carlini–Wagner-style margin objective (to maximise): [`margin`] of the model.
pub fn untargeted_margin<'a>(
    model: &'a dyn Classifier,
    labels: &'a Tensor,
) -> impl FnMut(&Tensor) -> Tensor + 'a {
    move |x: &Tensor| margin(&model.logits(x, false), labels)
}

/// Distance between representations used by [`rep_match`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    /// `‖g − t‖₂ / ‖t‖₂` (the relative error reported for D_R / D_NR).
    L2Relative,
    /// `‖g − t‖₂²`.
    L2Squared,
    /// `1 − cos(g, t)`.
    Cosine,
}

/// Per-example distance between representations `rep` and `target` (both `[N, d]`), shape `[N]`.
pub fn rep_distance(rep: &Tensor, target: &Tensor, distance: Distance) -> Tensor {
    let n = rep.size()[0];
    let r = rep.reshape([n, -1]);
    let t = target.reshape([n, -1]);
    let dims = [1i64];
    let sq = (&r - &t)
        .square()
        .sum_dim_intlist(dims.as_slice(), false, None::<Kind>);
    match distance {
        Distance::L2Squared => sq,
        // The small constant keeps the gradient of the square root finite at zero distance.
        Distance::L2Relative => {
            let tn = t
                .square()
                .sum_dim_intlist(dims.as_slice(), false, None::<Kind>)
                .sqrt();
            (sq + 1e-12).sqrt() / (tn + 1e-12)
        }
        Distance::Cosine => 1.0 - Tensor::cosine_similarity(&r, &t, 1, 1e-8),
    }
}

/// Representation-matching objective: `−distance(g(x), target_rep)` per example, so PGD
/// maximising it drives the representation `g(x)` towards `target_rep` (shape `[N, d]`), the
/// gradient passing `g`'s last ReLU as `relu` says: [`RepRelu::Fake`] is the paper's inversion
/// (the robustness library's `fake_relu=True`), for a model that has it
/// ([`Classifier::has_fake_relu`]; another computes its own ReLU).
///
/// D_R / D_NR are `pgd(&Unconstrained, x0, x0, cfg, &mut rep_match(model, &g_x, ...), None)`.
pub fn rep_match<'a>(
    model: &'a dyn Classifier,
    target_rep: &'a Tensor,
    distance: Distance,
    relu: RepRelu,
) -> impl FnMut(&Tensor) -> Tensor + 'a {
    move |x: &Tensor| {
        let (_, rep) = model.forward_rep_with(x, false, relu);
        -rep_distance(&rep, target_rep, distance)
    }
}
