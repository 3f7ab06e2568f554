//! Section `cosine_ablation` (reviewer 1: why the L2 distance in representation space?).
//! D_R is rebuilt from C_rob with the other distance — cosine when the preset uses an L2
//! distance (the set is then called `D_R_cos`), squared L2 when it uses cosine (`D_R_l2`) —
//! from the same start images and targets, and a fresh model is trained on it. Both D_R models
//! are compared with the D_NR model: does "D_R gives robustness" survive the change?
use super::stats::{clearly_above, num, pct};
use super::{headline_robust, read_model, write_section};
use crate::figure2::{construct_rep, rep_config, Sources};
use crate::pipeline::{Ctx, EvalLevel};
use anyhow::Result;
use nrf_attacks::Distance;
use nrf_report::plot::{bar_plot_with, PlotOptions};
use nrf_report::results::{ModelResult, Section, Table};

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

/// Finding and verdict from (distance name, standard accuracy, robust accuracy at the headline
/// eps) of the D_R model (preset distance) and of the ablation model, the D_NR model's robust
/// accuracy and the robust evaluation's size `n`. "Clearly more robust" is
/// [`clearly_above`]: "holds" when both D_R models are clearly more robust than the D_NR model,
/// "does not hold" when only the preset's distance is, "partly" when only the alternative is,
/// "n/a" when neither is (the base result itself is then not reproduced).
pub fn finding(
    base: (&str, f64, f64),
    alt: (&str, f64, f64),
    nr_robust: f64,
    n: usize,
    eps: f64,
) -> (String, &'static str) {
    let b = clearly_above(base.2, nr_robust, n);
    let a = clearly_above(alt.2, nr_robust, n);
    let numbers = format!(
        "with {} distance the D_R model reaches {} standard / {} robust accuracy (L2 eps={eps}), \
         with {} distance {} / {}; the D_NR model's robust accuracy is {}",
        base.0,
        pct(base.1),
        pct(base.2),
        alt.0,
        pct(alt.1),
        pct(alt.2),
        pct(nr_robust)
    );
    let (conclusion, verdict) = match (b, a) {
        (true, true) => (
            "the D_R model is clearly more robust than the D_NR model with either distance, so \
             the robust-features result does not hinge on the L2 distance",
            "holds",
        ),
        (true, false) => (
            "only the preset's distance gives a D_R model clearly more robust than the D_NR \
             model, so the result depends on the choice of distance",
            "does not hold",
        ),
        (false, true) => (
            "only the alternative distance gives a D_R model clearly more robust than the D_NR \
             model; with the preset's distance the robust-features result is not reproduced here",
            "partly",
        ),
        (false, false) => (
            "neither D_R model is clearly more robust than the D_NR model, so this run cannot \
             say whether the distance matters",
            "n/a",
        ),
    };
    let mut s = format!("{}: {conclusion}.", numbers);
    if let Some(c) = s.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    (s, verdict)
}

/// Builds the ablation set, trains on it, writes `sections/cosine_ablation.json` and
/// `plots/cosine_ablation.png`.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    let mut cfg = rep_config(ctx, "rep-match-starts");
    let base_distance = cfg.distance;
    let (alt_distance, alt_name) = alternative(base_distance);
    cfg.distance = alt_distance;
    let key = construct_rep(ctx, alt_name, "C_rob", &src.c_rob, &src.subset, &cfg)?;
    let (alt_model, _) = ctx.fresh_model(
        &format!("cos_on_{alt_name}"),
        alt_name,
        &key,
        EvalLevel::Full,
    )?;
    let base_model = read_model(ctx, "on_D_R")?;
    let nr_model = read_model(ctx, "on_D_NR")?;
    let info = |name: &str| -> Result<nrf_report::results::ConstructedInfo> {
        Ok(nrf_data::store::read_json(
            ctx.path(&format!("datasets/{name}.json")),
        )?)
    };
    let (base_info, alt_info) = (info("D_R")?, info(alt_name)?);
    let eps = ctx.preset.eval.headline_eps;
    let l2_eps: Vec<f64> = ctx.preset.eval.l2_eps.clone();
    let entries: [(
        &str,
        &str,
        &ModelResult,
        Option<&nrf_report::results::ConstructedInfo>,
    ); 3] = [
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
                pct(m.std_acc),
            ];
            r.extend(l2_eps.iter().map(|&e| {
                m.robust_at("L2", e)
                    .map(|p| pct(p.acc))
                    .unwrap_or("—".into())
            }));
            r
        })
        .collect();
    let table = Table {
        caption: "Fresh standard models on D_R built with each distance (same targets, same start \
                  images, same steps), and on D_NR for reference. Final rel. rep error = \
                  ||g(x_r) - g(x)|| / ||g(x)|| under C_rob."
            .into(),
        headers,
        rows,
    };
    let plot = "plots/cosine_ablation.png";
    let mut cats = vec!["standard".to_string()];
    cats.extend(l2_eps.iter().map(|e| format!("L2 eps={e}")));
    let series: Vec<(String, Vec<f64>)> = entries
        .iter()
        .map(|(set, dist, m, _)| {
            let mut v = vec![m.std_acc];
            v.extend(
                l2_eps
                    .iter()
                    .map(|&e| m.robust_at("L2", e).map(|p| p.acc).unwrap_or(f64::NAN)),
            );
            let label = if *set == "D_NR" {
                "D_NR (reference)".to_string()
            } else {
                format!("{set} ({dist})")
            };
            (label, v)
        })
        .collect();
    bar_plot_with(
        ctx.path(plot),
        "Real-test accuracy of models trained on D_R with each distance",
        "accuracy",
        &cats,
        &series,
        &PlotOptions::accuracy(),
    )?;
    let n = ctx.preset.eval.robust_n.min(ctx.test.len());
    let (finding, verdict) = finding(
        (
            distance_name(base_distance),
            base_model.std_acc,
            headline_robust(ctx, &base_model),
        ),
        (
            distance_name(alt_distance),
            alt_model.std_acc,
            headline_robust(ctx, &alt_model),
        ),
        headline_robust(ctx, &nr_model),
        n,
        eps,
    );
    let section = Section {
        id: "cosine_ablation".into(),
        title: "Distance in representation space: L2 vs cosine (reviewer 1)".into(),
        claim: "Reviewer 1 asks why D_R matches representations in L2 distance. The paper's claim \
                — a standard model trained on D_R is robust, one trained on D_NR is not — should \
                not depend on that choice."
            .into(),
        finding,
        verdict: verdict.into(),
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}
