//! Section 4 of the paper (the Gaussian robust-features model, Figure 4) and reviewer 2's
//! make_circles question, computed by nrf-theory into `theory/`.
use crate::pipeline::Ctx;
use anyhow::Result;

/// Writes theory/theory.json and the plots (cached by seed).
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let seed = ctx.preset.stage_seed("theory");
    ctx.stage("theory", &seed, |ctx, _| {
        nrf_theory::run_all(&ctx.path("theory"), seed)?;
        Ok(())
    })?;
    Ok(())
}
