//! `nrf`: a reproduction of "Adversarial Examples Are Not Bugs, They Are Features"
//! (Ilyas et al., NeurIPS 2019). This umbrella crate re-exports the workspace's crates.
pub use nrf_attacks as attacks;
pub use nrf_data as data;
pub use nrf_experiments as experiments;
pub use nrf_features as features;
pub use nrf_models as models;
pub use nrf_report as report;
pub use nrf_results as results;
pub use nrf_theory as theory;
