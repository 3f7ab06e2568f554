//! [`run`]: every theory experiment, as the typed [`TheorySummary`] and the data of the four
//! figures ([`TheoryFigures`]). One function per section, each in its own file under `run/`:
//! the ε-constrained robust fits of Figure 4 (`figure4.rs`), the risk table (`risks.rs`),
//! Theorems 1, 2 and 3 (`theorem1.rs`, `theorem2.rs`, `theorem3.rs`) and `make_circles`
//! (`circles_usefulness.rs`); here, the orchestrator [`run_with`] that calls and times them, and
//! the helpers they share. No file is written here (the theory stage of nrf-experiments draws the
//! figures with nrf-report and writes `theory.json`).

mod circles_usefulness;
mod figure4;
mod risks;
mod theorem1;
mod theorem2;
mod theorem3;

use std::time::Instant;

use ndarray::{array, Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{invalid, Result};
use crate::figures::TheoryFigures;
use crate::gaussian::GaussianModel;
use crate::linalg::{frobenius, rotation2, sym_eig};
use crate::summary::{Model2d, RunConfig, TheorySummary};

use circles_usefulness::circles_usefulness;
use figure4::{figure4, robust_fits};
use risks::risk_table;
use theorem1::theorem1;
use theorem2::theorem2;
use theorem3::theorem3;

/// What [`run`] computes: the summary (written to `theory.json`) and the figures' data.
#[derive(Debug, Clone, PartialEq)]
pub struct TheoryOutput {
    /// Every table and check. `files` is empty: the caller that writes the files fills it.
    pub summary: TheorySummary,
    /// The curves and points of Figure 4 and of the Theorem 1, Theorem 3 and `make_circles` plots.
    pub figures: TheoryFigures,
}

/// Runs every experiment with [`RunConfig::default`].
pub fn run(seed: u64) -> Result<TheoryOutput> {
    run_with(seed, &RunConfig::default())
}

/// [`run`] with explicit sizes.
pub fn run_with(seed: u64, cfg: &RunConfig) -> Result<TheoryOutput> {
    let start = Instant::now();
    validate(cfg)?;
    let mut laps = Laps::default();
    let model = figure4_model()?;
    let fits = robust_fits(seed, cfg, &model)?;
    let figure4 = figure4(&fits)?;
    laps.lap("constrained_robust_fits");
    let (risks, risk_check) = risk_table(seed, cfg, &model, &fits)?;
    laps.lap("risk_table");
    let thm1 = theorem1(seed, cfg)?;
    laps.lap("thm1");
    let (thm2, thm2_check) = theorem2(seed, cfg, fits.rows.clone())?;
    laps.lap("thm2_closed_form_checks");
    let thm3 = theorem3(seed, cfg, &model, &thm1, &fits.fits)?;
    laps.lap("thm3");
    let circles = circles_usefulness(seed, cfg)?;
    laps.lap("make_circles");

    let mut checks = fits.checks;
    checks.push(risk_check);
    checks.extend(thm1.checks);
    checks.push(thm2_check);
    checks.extend(thm3.checks);
    checks.push(circles.check);
    let summary = TheorySummary {
        seed,
        elapsed_s: start.elapsed().as_secs_f64(),
        section_seconds: laps.sections,
        files: Vec::new(),
        config: cfg.clone(),
        model_2d: model_2d(&model)?,
        risks,
        thm1: thm1.results,
        thm2,
        thm3: thm3.results,
        circles: circles.results,
        checks,
    };
    let figures = TheoryFigures {
        figure4,
        thm1: thm1.figure,
        thm3: thm3.figure,
        circles: circles.figure,
    };
    Ok(TheoryOutput { summary, figures })
}

fn validate(cfg: &RunConfig) -> Result<()> {
    if cfg.fig4_eps.first() != Some(&0.0) {
        return Err(invalid("fig4_eps", "must start with 0"));
    }
    if cfg.thm1_condition_numbers.is_empty() || cfg.thm1_dim < 2 {
        return Err(invalid(
            "thm1",
            "need a dimension >= 2 and at least one condition number",
        ));
    }
    Ok(())
}

/// Wall-clock seconds per section.
struct Laps {
    sections: Vec<(String, f64)>,
    since: Instant,
}

impl Default for Laps {
    fn default() -> Self {
        Self {
            sections: Vec::new(),
            since: Instant::now(),
        }
    }
}

impl Laps {
    fn lap(&mut self, name: &str) {
        self.sections
            .push((name.to_string(), self.since.elapsed().as_secs_f64()));
        self.since = Instant::now();
    }
}

fn rows(a: ArrayView2<f64>) -> Vec<Vec<f64>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

fn norm(v: &Array1<f64>) -> f64 {
    frobenius(v.view().insert_axis(Axis(0)))
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// The 2-D model of Figure 4: `Σ* = R(35°) diag(1, 0.05) R(35°)ᵀ`, `μ*` = 0.55 along the
/// high-variance and 0.3 along the low-variance eigenvector.
pub fn figure4_model() -> Result<GaussianModel> {
    let theta = 35f64.to_radians();
    let r = rotation2(theta);
    let sigma = r.dot(&Array2::from_diag(&array![1.0, 0.05])).dot(&r.t());
    let mu = r.dot(&array![0.55, 0.3]);
    GaussianModel::new(mu, sigma)
}

fn model_2d(model: &GaussianModel) -> Result<Model2d> {
    Ok(Model2d {
        mu: model.mu().to_vec(),
        sigma: rows(model.sigma().view()),
        sigma_eigenvalues: sym_eig(model.sigma().view())?.values.to_vec(),
        rotation: 35f64.to_radians(),
    })
}
