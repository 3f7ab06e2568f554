//! nrf-experiments: one module per paper artefact, the presets, and the `nrf` binary.
//!
//! - [`figure2`]: C_std, C_rob; D_R, D_NR; fresh models on them and on a clean control.
//! - [`table1`]: D_rand, D_det (and eps variants); fresh models on them.
//! - [`extras`]: Figure 3 and the reviewers' questions (`[extras]` in the preset).
//! - [`theory`]: section 4's Gaussian model (Figure 4) and the make_circles question.
//! - [`pipeline`]: stage caching, training + evaluation, the run record.
//! - [`lock`]: one run per results folder (`<results>/.lock`).
//! - [`preset`]: the TOML presets (`smoke`, `fashion-mnist`, `cifar10`, `restricted-imagenet`).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let (preset, text) = nrf_experiments::preset::Preset::load("smoke")?;
//! nrf_experiments::reproduce(preset, text, "results/smoke".into(), None, true)?;
//! # Ok(()) }
//! ```
pub mod bench;
pub mod construct_cmd;
pub mod extras;
pub mod figure2;
pub mod gpu_check;
pub mod grids;
pub mod lock;
pub mod pipeline;
pub mod plan;
pub mod preset;
pub mod table1;
pub mod theory;
pub mod train_cmd;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Runs a whole preset: every stage (cached stages are skipped), then the report. Returns the
/// markdown summary tables. Refused, naming the holder, while another process uses `results`
/// (see [`lock`]).
pub fn reproduce(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    progress: bool,
) -> Result<String> {
    // One run per results folder, held until the report is written (see [`lock`]). Taken before
    // [`pipeline::Ctx::new`], which writes run.json.
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let _lock = lock::ResultsLock::acquire(&results, "nrf reproduce")?;
    let mut ctx = pipeline::Ctx::new(preset, text, results, data_dir, progress)?;
    let outcome = run_stages(&mut ctx);
    let missing: Vec<String> = if outcome.is_ok() {
        vec![]
    } else {
        vec!["the run stopped early: see the failed stage".into()]
    };
    ctx.finish(missing)?;
    let report = nrf_report::write_report(&ctx.results);
    outcome?;
    report?;
    nrf_report::summary_markdown(&ctx.results)
}

fn run_stages(ctx: &mut pipeline::Ctx) -> Result<()> {
    let src = figure2::source_models(ctx)?;
    figure2::run(ctx, &src)?;
    table1::run(ctx, &src)?;
    extras::run(ctx, &src)?;
    if !ctx.preset.theory.skip {
        theory::run(ctx)?;
    }
    Ok(())
}
