//! Section `eps_sensitivity` (reviewer 3): how does Table 1 depend on the attack radius? D_rand
//! and D_det are built from C_std at each L2 eps of `extras.eps_sensitivity` (steps as in the
//! preset, step size scaled with eps as for `relabel.extra_eps`; the sets of Table 1 are reused
//! where the radius matches) and a fresh model is trained on each.

/// The id of this extra's section (`sections/eps_sensitivity.json`) and job (`extras:eps_sensitivity`).
pub const ID: &str = "eps_sensitivity";
use super::stats::{above_chance, num, pct, points_verdict, trend_words, Accuracy};
use super::{chance, write_section};
use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel};
use crate::preset::RelabelSection;
use crate::table1::{self, construct};
use anyhow::Result;
use nrf_features::relabel::TargetRule;
use nrf_report::plot::{line_plot_with, LineSeriesSpec, PlotOptions};
use nrf_results::Verdict;
use nrf_results::{ConstructedInfo, Section, Table};

/// Changes of at most this much (a fraction) count as flat.
pub const FLAT_TOL: f64 = 0.02;

pub use crate::table1::set_name;

/// One row: a set at one radius.
#[derive(Debug, Clone, PartialEq)]
pub struct EpsPoint {
    /// L2 radius.
    pub eps: f64,
    /// Real-test accuracy of the fresh model trained on the set (the mean over seeds for a
    /// Table 1 model trained with several), with its uncertainty.
    pub acc: Accuracy,
    /// Fraction of the set C_std classifies as the target.
    pub success: f64,
}

/// Finding and verdict from the points of D_rand and D_det (sorted by eps) and the chance
/// level. The verdict is about the paper's claim that the relabelled sets give above-chance test
/// accuracy, each point decided by the one above-chance rule (the accuracy's 95% interval above
/// chance): [`points_verdict`] over every point.
pub fn finding(sets: &[(&str, Vec<EpsPoint>)], chance: f64) -> (String, Verdict) {
    let mut parts = Vec::new();
    let mut decided = Vec::new();
    for (name, pts) in sets {
        if pts.is_empty() {
            continue;
        }
        let accs: Vec<f64> = pts.iter().map(|p| p.acc.value).collect();
        let vs: Vec<Verdict> = pts.iter().map(|p| above_chance(&p.acc, chance)).collect();
        let k = vs.iter().filter(|v| **v == Verdict::Holds).count();
        let below = vs.iter().filter(|v| **v == Verdict::DoesNotHold).count();
        decided.extend(vs);
        let (first, last) = (&pts[0], &pts[pts.len() - 1]);
        parts.push(format!(
            "{name}: accuracy {} from {} at eps={} to {} at eps={} (attack success {} to {}), \
             above chance at {k} of {} radii{}",
            trend_words(&accs, FLAT_TOL),
            first.acc.short(),
            first.eps,
            last.acc.short(),
            last.eps,
            pct(first.success),
            pct(last.success),
            pts.len(),
            if below > 0 {
                format!(" (below chance at {below})")
            } else {
                String::new()
            }
        ));
    }
    let verdict = points_verdict(&decided);
    (
        format!("{} (chance {}).", parts.join("; "), pct(chance)),
        verdict,
    )
}

/// One set (D_rand or D_det) at every radius, with a fresh model on each.
struct Sweep {
    /// One point per radius.
    pts: Vec<EpsPoint>,
    /// Mean L2 distance of the set's images to the originals, per radius.
    dists: Vec<f64>,
    /// Share of the real test images on which each model predicts (y+1) mod C (D_det; empty for
    /// D_rand).
    shifted: Vec<f64>,
}

/// Builds the set `prefix` of target rule `rule` at each radius of `radii` and trains a fresh
/// model on each.
fn sweep(
    ctx: &mut Ctx,
    src: &Sources,
    r: &RelabelSection,
    prefix: &str,
    rule: TargetRule,
    radii: &[f64],
) -> Result<Sweep> {
    let mut pts = Vec::new();
    let mut d = Vec::new();
    let mut det_shifted = Vec::new();
    for &eps in radii {
        let name = set_name(prefix, eps, r.eps);
        let step = r.step_at(eps);
        let key = construct(ctx, &name, src, rule, eps, step)?;
        // Table 1's sets keep Table 1's models; the others are this section's own.
        let (model, role) = table1::radius_model(r, rule, eps, &name);
        let m = ctx.fresh_model(&model, role, &name, &key, EvalLevel::Standard)?;
        if rule == TargetRule::Deterministic {
            det_shifted.push(super::shifted_agreement(ctx, &model)?);
        }
        let info: ConstructedInfo =
            nrf_data::store::read_json(ctx.path(&format!("datasets/{name}.json")))?;
        info.validate()?;
        pts.push(EpsPoint {
            eps,
            acc: m.std_accuracy(),
            success: info.success_rate.unwrap_or(f64::NAN),
        });
        d.push(info.mean_dist_to_x.unwrap_or(f64::NAN));
    }
    Ok(Sweep {
        pts,
        dists: d,
        shifted: det_shifted,
    })
}

/// The section's plot, `plots/eps_sensitivity.png`: each set's real-test accuracy (95%
/// intervals) and attack success against the radius, with chance. Returns its path under the
/// results dir.
fn plot(ctx: &Ctx, sets: &[(&str, Vec<EpsPoint>)], chance: f64) -> Result<&'static str> {
    let mut series = Vec::new();
    for (i, (name, pts)) in sets.iter().enumerate() {
        series.push(LineSeriesSpec {
            name: format!("{name}: test accuracy"),
            points: pts.iter().map(|p| (p.eps, p.acc.value)).collect(),
            dashed: false,
            color: Some(i),
            intervals: pts
                .iter()
                .map(|p| {
                    let i = p.acc.interval();
                    (i.lo, i.hi)
                })
                .collect(),
        });
        series.push(LineSeriesSpec {
            name: format!("{name}: attack success on C_std"),
            points: pts
                .iter()
                .filter(|p| p.success.is_finite())
                .map(|p| (p.eps, p.success))
                .collect(),
            dashed: true,
            color: Some(i),
            intervals: Vec::new(),
        });
    }
    let plot = "plots/eps_sensitivity.png";
    let opts = PlotOptions {
        hlines: vec![(chance, "chance".into())],
        width: 1100,
        ..PlotOptions::accuracy()
    };
    line_plot_with(
        ctx.path(plot),
        "D_rand / D_det: real-test accuracy and attack success vs L2 eps",
        "L2 eps of the targeted attack",
        "fraction (error bars: 95% intervals)",
        &series,
        &opts,
    )?;
    Ok(plot)
}

/// The section's table: one row per radius, each set's accuracy, attack success and distance
/// (`dists`, per set then radius), and the D_det model's share of (y+1) predictions.
fn table(
    r: &RelabelSection,
    radii: &[f64],
    sets: &[(&str, Vec<EpsPoint>)],
    dists: &[Vec<f64>],
    det_shifted: &[f64],
) -> Table {
    let rows = radii
        .iter()
        .enumerate()
        .map(|(k, eps)| {
            let mut row = vec![format!("{eps}")];
            for (j, (_, pts)) in sets.iter().enumerate() {
                row.push(pts[k].acc.text());
                row.push(pct(pts[k].success));
                row.push(num(dists[j][k]));
            }
            row.push(pct(det_shifted[k]));
            row
        })
        .collect();
    Table {
        caption: format!(
            "Fresh standard models trained on D_rand / D_det built with each L2 radius ({} steps, \
             step size {} x eps / {}). Success: fraction C_std classifies as the target. Dist: \
             mean L2 distance to the original image. Predicts y+1: fraction of the real test \
             images on which the D_det model predicts (y+1) mod C. Test accuracies with their 95% \
             intervals (several seeds: mean ± sd over seeds).",
            r.steps, r.step_size, r.eps
        ),
        headers: [
            "eps",
            "D_rand test acc",
            "D_rand success",
            "D_rand dist",
            "D_det test acc",
            "D_det success",
            "D_det dist",
            "D_det model predicts y+1",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Builds the sets, trains on them, writes `sections/eps_sensitivity.json` and
/// `plots/eps_sensitivity.png`.
pub fn run(ctx: &mut Ctx, src: &Sources, radii: &[f64]) -> Result<()> {
    let r = ctx.preset.relabel.clone();
    let mut radii = radii.to_vec();
    radii.sort_by(f64::total_cmp);
    let mut sets: Vec<(&str, Vec<EpsPoint>)> = Vec::new();
    let mut dists: Vec<Vec<f64>> = Vec::new();
    let mut det_shifted: Vec<f64> = Vec::new();
    for (prefix, rule) in [
        ("D_rand", TargetRule::Random),
        ("D_det", TargetRule::Deterministic),
    ] {
        let swept = sweep(ctx, src, &r, prefix, rule, &radii)?;
        det_shifted.extend(swept.shifted);
        sets.push((prefix, swept.pts));
        dists.push(swept.dists);
    }
    let chance = chance(ctx);
    let plot = plot(ctx, &sets, chance)?;
    let table = table(&r, &radii, &sets, &dists, &det_shifted);
    let (mut finding, verdict) = finding(&sets, chance);
    finding += &super::shifted_sentence(&det_shifted);
    let section = Section {
        id: ID.into(),
        title: "Table 1 at several attack radii (reviewer 3)".into(),
        claim: "Reviewer 3 asks how sensitive Table 1 is to the attack radius eps. The paper's \
                claim is that D_rand and D_det, although every label looks wrong, train models \
                well above chance on the real test set."
            .into(),
        finding,
        verdict,
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}
