//! Section `cosine_ablation` (reviewer 1: why the L2 distance in representation space?).
//! D_R is rebuilt from C_rob with the other distance — cosine when the preset uses an L2
//! distance (the set is then called `D_R_cos`), squared L2 when it uses cosine (`D_R_l2`) —
//! from the same start images and targets, and a fresh model is trained on it. Both D_R models
//! are compared with the D_NR model: does "D_R gives robustness" survive the change?

/// The id of this extra's section (`sections/cosine_ablation.json`) and job (`extras:cosine_ablation`).
pub const ID: &str = "cosine_ablation";
use super::stats::{num, Accuracy, Margin};
use super::{read_model, write_section};
use crate::figure2::{construct_rep, rep_config, Sources};
use crate::pipeline::{Ctx, EvalLevel};
use anyhow::Result;
use nrf_attacks::Distance;
use nrf_report::plot::{bar_plot_with_errors, PlotOptions};
use nrf_results::ModelKind;
use nrf_results::Verdict;
use nrf_results::{ConstructedInfo, ModelResult, ModelRole, Section, Table, Varies};

/// Name of a distance for tables.
pub fn distance_name(d: Distance) -> &'static str {
    match d {
        Distance::L2Squared => "squared L2",
        Distance::L2Relative => "relative L2",
        Distance::Cosine => "cosine",
    }
}

/// The ablation's distance and dataset name for the preset's `distance`.
pub fn alternative(d: Distance) -> (Distance, &'static str) {
    match d {
        Distance::Cosine => (Distance::L2Squared, "D_R_l2"),
        _ => (Distance::Cosine, "D_R_cos"),
    }
}

/// One D_R model of the ablation: its distance's name, standard and robust accuracy (headline
/// eps), each with its uncertainty.
pub type Entry<'a> = (&'a str, &'a Accuracy, &'a Accuracy);

/// Finding and verdict from the D_R model built with the preset's distance (`base`), the one
/// built with the other distance (`alt`) and the D_NR model's robust accuracy at the headline
/// `eps`. "More robust" is the margin rule m = rob(D_R model) − rob(D_NR model) > c SE. "holds"
/// when both D_R models are more robust than the D_NR model; "does not hold" when only the
/// preset's distance is and the other is clearly not; "inconclusive" when only the preset's
/// distance is and the other is within noise; "partly" when only the alternative is; "n/a" when
/// neither is (the base result itself is then not reproduced).
pub fn finding(base: Entry, alt: Entry, nr_robust: &Accuracy, eps: f64) -> (String, Verdict) {
    let mb = Margin::between(base.2, nr_robust);
    let ma = Margin::between(alt.2, nr_robust);
    let numbers = format!(
        "with {} distance the D_R model reaches {} standard / {} robust accuracy (L2 eps={eps}), \
         with {} distance {} / {}; the D_NR model's robust accuracy is {} (margins over it: \
         m = {} and {})",
        base.0,
        base.1.short(),
        base.2.text(),
        alt.0,
        alt.1.short(),
        alt.2.text(),
        nr_robust.text(),
        mb.text(),
        ma.text()
    );
    let (conclusion, verdict) = match (mb.verdict(), ma.verdict()) {
        (Verdict::Holds, Verdict::Holds) => (
            "the D_R model is clearly more robust than the D_NR model with either distance, so \
             the robust-features result does not hinge on the L2 distance",
            Verdict::Holds,
        ),
        (Verdict::Holds, Verdict::DoesNotHold) => (
            "only the preset's distance gives a D_R model clearly more robust than the D_NR \
             model, so the result depends on the choice of distance",
            Verdict::DoesNotHold,
        ),
        (Verdict::Holds, _) => (
            "the preset's distance gives a D_R model clearly more robust than the D_NR model; \
             with the other distance the difference is within noise, so this run cannot say \
             whether the distance matters",
            Verdict::Inconclusive,
        ),
        (_, Verdict::Holds) => (
            "only the alternative distance gives a D_R model clearly more robust than the D_NR \
             model; with the preset's distance the robust-features result is not reproduced here",
            Verdict::Partly,
        ),
        _ => (
            "neither D_R model is clearly more robust than the D_NR model, so this run cannot \
             say whether the distance matters",
            Verdict::NotApplicable,
        ),
    };
    let mut s = format!("{}: {conclusion}.", numbers);
    if let Some(c) = s.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    (s, verdict)
}

/// One model of the ablation's table and plot: its set, its distance, its result and (for a set
/// built here or in Figure 2) the set's record.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a ModelResult,
    Option<&'a ConstructedInfo>,
);

/// The section's table: one row per model, its set's final representation error and distance
/// to x, its test accuracy and its robust accuracy at each radius of `l2_eps`.
fn table(entries: &[Row<'_>], l2_eps: &[f64]) -> Table {
    let mut headers: Vec<String> = [
        "set",
        "distance",
        "final rel. rep error",
        "dist to x",
        "test acc",
    ]
    .map(String::from)
    .to_vec();
    headers.extend(l2_eps.iter().map(|e| format!("robust L2 eps={e}")));
    let rows = entries
        .iter()
        .map(|(set, dist, m, inf)| {
            let mut r = vec![
                set.to_string(),
                dist.to_string(),
                inf.and_then(|i| i.final_rel_err)
                    .map(num)
                    .unwrap_or("—".into()),
                inf.and_then(|i| i.mean_dist_to_x)
                    .map(num)
                    .unwrap_or("—".into()),
                m.std_accuracy().text(),
            ];
            r.extend(l2_eps.iter().map(|&e| {
                m.robust_accuracy("L2", e)
                    .map(|a| a.text())
                    .unwrap_or("—".into())
            }));
            r
        })
        .collect();
    Table {
        caption: "Fresh standard models on D_R built with each distance (same targets, same start \
                  images, same steps), and on D_NR for reference. Final rel. rep error = \
                  ||g(x_r) - g(x)|| / ||g(x)|| under C_rob. Accuracies with their 95% intervals \
                  (several seeds: mean ± sd over seeds)."
            .into(),
        headers,
        rows,
    }
}

/// The section's plot, `plots/cosine_ablation.png`: each model's test accuracy and robust
/// accuracy at each radius of `l2_eps`, with 95% intervals. Returns its path under the results
/// dir.
fn plot(ctx: &Ctx, entries: &[Row<'_>], l2_eps: &[f64]) -> Result<&'static str> {
    let plot = "plots/cosine_ablation.png";
    let mut cats = vec!["standard".to_string()];
    cats.extend(l2_eps.iter().map(|e| format!("L2 eps={e}")));
    let bar = |a: Option<Accuracy>| match a {
        Some(a) => {
            let i = a.interval();
            (a.value, (i.lo, i.hi))
        }
        None => (f64::NAN, (f64::NAN, f64::NAN)),
    };
    let errors: Vec<Vec<(f64, f64)>> = entries
        .iter()
        .map(|(_, _, m, _)| {
            std::iter::once(bar(Some(m.std_accuracy())).1)
                .chain(l2_eps.iter().map(|&e| bar(m.robust_accuracy("L2", e)).1))
                .collect()
        })
        .collect();
    let series: Vec<(String, Vec<f64>)> = entries
        .iter()
        .map(|(set, dist, m, _)| {
            let mut v = vec![m.std_accuracy().value];
            v.extend(l2_eps.iter().map(|&e| bar(m.robust_accuracy("L2", e)).0));
            let label = if *set == "D_NR" {
                "D_NR (reference)".to_string()
            } else {
                format!("{set} ({dist})")
            };
            (label, v)
        })
        .collect();
    bar_plot_with_errors(
        ctx.path(plot),
        "Real-test accuracy of models trained on D_R with each distance",
        "accuracy (error bars: 95% intervals)",
        &cats,
        &series,
        &errors,
        &PlotOptions::accuracy(),
    )?;
    Ok(plot)
}

/// Builds the ablation set, trains on it, writes `sections/cosine_ablation.json` and
/// `plots/cosine_ablation.png`.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    let mut cfg = rep_config(ctx, "rep-match-starts");
    let base_distance = cfg.distance;
    let (alt_distance, alt_name) = alternative(base_distance);
    cfg.distance = alt_distance;
    let c_rob = src.c_rob(ctx)?;
    let key = construct_rep(ctx, alt_name, "C_rob", &c_rob, &src.subset, &cfg)?;
    let alt_model = ctx.fresh_model(
        &format!("cos_on_{alt_name}"),
        ModelRole::Extra {
            set: ModelKind::DR,
            varies: Varies::Distance,
        },
        alt_name,
        &key,
        EvalLevel::Full,
    )?;
    let base_model = read_model(ctx, "on_D_R")?;
    let nr_model = read_model(ctx, "on_D_NR")?;
    let info = |name: &str| -> Result<ConstructedInfo> {
        Ok(nrf_data::store::read_json(
            ctx.path(&format!("datasets/{name}.json")),
        )?)
    };
    let (base_info, alt_info) = (info("D_R")?, info(alt_name)?);
    let eps = ctx.preset.eval.headline_eps;
    let l2_eps: Vec<f64> = ctx.preset.eval.l2_eps.clone();
    let entries: [Row; 3] = [
        (
            "D_R",
            distance_name(base_distance),
            &base_model,
            Some(&base_info),
        ),
        (
            alt_name,
            distance_name(alt_distance),
            &alt_model,
            Some(&alt_info),
        ),
        ("D_NR", distance_name(base_distance), &nr_model, None),
    ];
    let table = table(&entries, &l2_eps);
    let plot = plot(ctx, &entries, &l2_eps)?;
    let rob = |m: &ModelResult| {
        m.robust_accuracy("L2", eps)
            .unwrap_or_else(|| Accuracy::single(f64::NAN, 0))
    };
    let (base_std, base_rob) = (base_model.std_accuracy(), rob(&base_model));
    let (alt_std, alt_rob) = (alt_model.std_accuracy(), rob(&alt_model));
    let (finding, verdict) = finding(
        (distance_name(base_distance), &base_std, &base_rob),
        (distance_name(alt_distance), &alt_std, &alt_rob),
        &rob(&nr_model),
        eps,
    );
    let section = Section {
        id: ID.into(),
        title: "Distance in representation space: L2 vs cosine (reviewer 1)".into(),
        claim: "Reviewer 1 asks why D_R matches representations in L2 distance. The paper's claim \
                — a standard model trained on D_R is robust, one trained on D_NR is not — should \
                not depend on that choice."
            .into(),
        finding,
        verdict,
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}
