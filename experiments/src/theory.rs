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
        let dir = ctx.path("theory");
        let summary = write(&dir, seed)?;
        // The record lists the figures (the same bytes for the same seed): one missing or
        // changed later runs the stage again (seconds) instead of leaving the report without
        // it. Not theory.json, which records the run's timings.
        for f in summary.files.iter().filter(|f| *f != "theory.json") {
            ctx.cache.outputs.note(dir.join(f));
        }
        Ok(())
    })?;
    // ... which is written again when it is missing (its record cannot check it).
    if !ctx.path("theory/theory.json").is_file() {
        write(&ctx.path("theory"), seed)?;
    }
    Ok(())
}

/// Computes every theory experiment with `seed` and writes `out/theory.json` and the figures.
pub fn write(out: &Path, seed: u64) -> Result<TheorySummary> {
    nrf_report::write_theory(out, nrf_theory::run(seed)?)
}
