//! nrf-features: the constructed datasets of Ilyas et al. 2019.
//!
//! - [`repmatch`]: D_R (robust model) and D_NR (standard model), by matching the penultimate
//!   representation g of a real image, starting from another image, with the same PGD machinery
//!   as the attacks (nrf-attacks' `pgd` with the unconstrained threat model).
//! - [`relabel`]: D_rand and D_det, targeted L2 PGD towards t and relabelling to t.
//! - [`targeted`]: the targeted attack of D_rand / D_det and its stronger variants (margin loss,
//!   expectation over transformations).
//! - [`chunks`]: the chunked, resumable runner both use.
//! - [`to_dataset`]: turns a construction into an `nrf_data::Dataset` for training.
//!
//! ```no_run
//! use nrf_features::relabel::{build, RelabelConfig, TargetRule};
//! # fn main() -> anyhow::Result<()> {
//! let train = nrf_data::idx::load_fashion_mnist(nrf_data::idx::FASHION_MNIST_DIR, nrf_data::Split::Train)?;
//! let model = nrf_models::load_model("results/fashion-mnist/models/C_std".as_ref(), tch::Device::Cpu)?;
//! let cfg = RelabelConfig { rule: TargetRule::Deterministic, eps: 1.0, steps: 100, step_size: 0.1, batch_size: 500, seed: 0 };
//! let d_det = build(&model, &train, &(0..1000).collect::<Vec<_>>(), &cfg, tch::Device::Cpu, "work/d_det".as_ref(), true)?;
//! println!("attack success rate {:.3}", d_det.summary.success_rate);
//! let ds = nrf_features::to_dataset("D_det", &d_det.images, &d_det.labels, &train)?;
//! # let _ = ds; Ok(()) }
//! ```
pub mod chunks;
pub mod relabel;
pub mod repmatch;
pub mod targeted;

use anyhow::Result;
use tch::Tensor;

/// A dataset from constructed images `[N,C,H,W]` and labels `[N]`, with `like`'s shape and classes.
pub fn to_dataset(
    name: &str,
    images: &Tensor,
    labels: &Tensor,
    like: &nrf_data::Dataset,
) -> Result<nrf_data::Dataset> {
    let ds = nrf_data::Dataset {
        name: name.to_string(),
        images: nrf_models::tensor_to_vec(images)?,
        labels: Vec::<i64>::try_from(
            &labels
                .to_device(tch::Device::Cpu)
                .to_kind(tch::Kind::Int64)
                .contiguous(),
        )?,
        shape: like.shape,
        num_classes: like.num_classes,
        class_names: like.class_names.clone(),
    };
    ds.validate(name)?;
    Ok(ds)
}
