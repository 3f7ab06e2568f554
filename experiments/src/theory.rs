//! Section 4 of the paper (the Gaussian robust-features model, Figure 4) and reviewer 2's
//! make_circles question: computed by nrf-theory, drawn and written into `theory/` by nrf-report.
use crate::pipeline::Ctx;
use anyhow::Result;
use nrf_theory::TheorySummary;
use std::path::Path;

/// The theory stage: theory/theory.json and the figures (cached by seed).
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let seed = ctx.preset.stage_seed("theory");
    ctx.stage("theory", &seed, |ctx, _| {
        write(&ctx.path("theory"), seed)?;
        Ok(())
    })?;
    Ok(())
}

/// Computes every theory experiment with `seed` and writes `out/theory.json` and the figures.
pub fn write(out: &Path, seed: u64) -> Result<TheorySummary> {
    nrf_report::write_theory(out, nrf_theory::run(seed)?)
}
