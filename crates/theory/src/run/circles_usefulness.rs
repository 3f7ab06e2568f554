//! `make_circles` (section `make_circles`): (robust) usefulness of simple features.

use crate::circles::{make_circles, CircleFeature, NormalisedFeature};
use crate::error::Result;
use crate::figures::{CirclesFigure, FeatureCurve, LabelledPoint};
use crate::summary::{Check, CirclesResults, CirclesRow, RunConfig};

use super::rng_for;

/// `make_circles`' results, check and figure.
pub(super) struct Circles {
    pub(super) results: CirclesResults,
    pub(super) check: Check,
    pub(super) figure: CirclesFigure,
}

/// Reviewer 2: (robust) usefulness of x₁, x₂ and the radius on `make_circles`, exact and by a
/// numerical inner minimisation at every other ε.
pub(super) fn circles_usefulness(seed: u64, cfg: &RunConfig) -> Result<Circles> {
    let mut rng = rng_for(seed, 6);
    let data = make_circles(
        cfg.circles_samples,
        cfg.circles_noise,
        cfg.circles_factor,
        true,
        &mut rng,
    )?;
    let mut crow = Vec::new();
    let mut normalisation = Vec::new();
    let mut max_diff = 0.0f64;
    let feats: Vec<NormalisedFeature> = CircleFeature::ALL
        .iter()
        .map(|&k| NormalisedFeature::fit(k, &data))
        .collect::<Result<_>>()?;
    for f in &feats {
        normalisation.push((f.kind.name().to_string(), f.mean, f.std));
        for (i, &eps) in cfg.circles_eps.iter().enumerate() {
            let ex = f.robust_usefulness(&data, eps)?;
            let num = if i % 2 == 0 {
                let n = f.robust_usefulness_numerical(&data, eps, 80)?;
                max_diff = max_diff.max((n - ex).abs());
                Some(n)
            } else {
                None
            };
            crow.push(CirclesRow {
                feature: f.kind.name().to_string(),
                eps,
                robust_usefulness: ex,
                robust_usefulness_numerical: num,
            });
        }
    }
    let check = Check {
        name: "circles_exact_matches_numerical_inner_min".into(),
        passed: max_diff < 1e-3,
        detail: format!("largest |exact − PGD| = {max_diff:.2e}"),
    };
    let y = data.signed_labels();
    let figure = CirclesFigure {
        n: data.len(),
        noise: cfg.circles_noise,
        factor: cfg.circles_factor,
        samples: data
            .x
            .rows()
            .into_iter()
            .zip(y.iter())
            .take(1500)
            .map(|(r, &y)| LabelledPoint {
                x1: r[0],
                x2: r[1],
                y,
            })
            .collect(),
        exact: feats
            .iter()
            .map(|f| FeatureCurve {
                feature: f.kind.name().to_string(),
                points: crow
                    .iter()
                    .filter(|r| r.feature == f.kind.name())
                    .map(|r| (r.eps, r.robust_usefulness))
                    .collect(),
            })
            .collect(),
        numerical: crow
            .iter()
            .filter_map(|r| r.robust_usefulness_numerical.map(|v| (r.eps, v)))
            .collect(),
    };
    let results = CirclesResults {
        n: data.len(),
        noise: cfg.circles_noise,
        factor: cfg.circles_factor,
        normalisation,
        rows: crow,
        max_abs_numerical_diff: max_diff,
    };
    Ok(Circles {
        results,
        check,
        figure,
    })
}
