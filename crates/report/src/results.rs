//! The results schema the report reads: [`nrf_results`] (shared with the producers, no
//! libtorch), and nrf-theory's typed summary beside it (`theory/theory.json`).
pub use nrf_results::*;
pub use nrf_theory::summary::{self as theory, TheorySummary};
