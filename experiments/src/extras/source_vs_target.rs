//! Section `source_vs_target` (reviewer 1): each x_r of D_R / D_NR starts at an image x0 and is
//! optimised until its representation matches that of a target image x (whose label y it gets).
//! Is x_r closer to x0 or to x? In pixel space, in the representation of an independent
//! standard model, and by the label that model gives x_r (y, or the start's label y0).

/// The id of this extra's section (`sections/source_vs_target.json`) and job (`extras:source_vs_target`).
pub const ID: &str = "source_vs_target";
use super::stats::{num, pct};
use super::{predictions, representations, start_indices, write_section, Independent};
use crate::pipeline::Ctx;
use anyhow::Result;
use nrf_attacks::per_example_norm;
use nrf_features::repmatch::StartMode;
use nrf_report::plot::{bar_plot_with, PlotOptions};
use nrf_results::{Section, Table, Verdict};
use tch::{Kind, Tensor};

/// The measurements for one constructed set.
#[derive(Debug, Clone, PartialEq)]
pub struct Closeness {
    /// "D_R" or "D_NR".
    pub set: String,
    /// Examples with an image start (noise starts are left out).
    pub n: usize,
    /// Mean pixel L2 distance of x_r to its start x0 and to its target x.
    pub pixel_to_x0: f64,
    /// See `pixel_to_x0`.
    pub pixel_to_x: f64,
    /// Fraction of examples with x_r closer (pixel L2) to x than to x0.
    pub pixel_closer_to_x: f64,
    /// Mean representation distance ||g(x_r) - g(x0)|| and ||g(x_r) - g(x)|| (independent model).
    pub rep_to_x0: f64,
    /// See `rep_to_x0`.
    pub rep_to_x: f64,
    /// Fraction with g(x_r) closer to g(x) than to g(x0).
    pub rep_closer_to_x: f64,
    /// Examples whose start and target classes differ (the label comparison uses only these).
    pub n_diff: usize,
    /// Among those: fraction the independent model labels y (the target's class) ...
    pub label_y: f64,
    /// ... and y0 (the start's class).
    pub label_y0: f64,
}

fn side(frac_closer_to_x: f64) -> &'static str {
    if frac_closer_to_x > 0.5 {
        "the target x"
    } else if frac_closer_to_x < 0.5 {
        "the start x0"
    } else {
        "neither (a tie)"
    }
}

/// One sentence per set, from the measurements.
pub fn finding(rows: &[Closeness]) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|c| {
            let label = if c.label_y > c.label_y0 {
                "more often the target's class"
            } else if c.label_y < c.label_y0 {
                "more often the start's class"
            } else {
                "as often the target's as the start's class"
            };
            format!(
                "{}: x_r is mostly closer to {} in pixel space ({} of {} closer to x; mean distance \
                 {} to x0 vs {} to x) and to {} in the independent model's representation ({} \
                 closer to x), which labels it {} ({} y vs {} y0, over the {} pairs with different \
                 classes)",
                c.set,
                side(c.pixel_closer_to_x),
                pct(c.pixel_closer_to_x),
                c.n,
                num(c.pixel_to_x0),
                num(c.pixel_to_x),
                side(c.rep_closer_to_x),
                pct(c.rep_closer_to_x),
                label,
                pct(c.label_y),
                pct(c.label_y0),
                c.n_diff
            )
        })
        .collect();
    format!("{}.", parts.join(". "))
}

fn frac(mask: &Tensor) -> f64 {
    if mask.numel() == 0 {
        return f64::NAN;
    }
    mask.to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

fn mean_of(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// Measures one constructed set.
pub fn measure(ctx: &Ctx, set: &str, indep: &Independent) -> Result<Closeness> {
    let cd = ctx.load_constructed(set)?;
    let starts = start_indices(&cd, set)?;
    let keep: Vec<usize> = (0..starts.len())
        .filter(|&i| starts[i] >= 0 && (starts[i] as usize) < ctx.train.len())
        .filter(|&i| cd.source_indices[i] >= 0 && (cd.source_indices[i] as usize) < ctx.train.len())
        .collect();
    if keep.is_empty() {
        anyhow::bail!("{set}: no example has an image start and a valid target index");
    }
    let xi: Vec<usize> = keep
        .iter()
        .map(|&i| cd.source_indices[i] as usize)
        .collect();
    let x0i: Vec<usize> = keep.iter().map(|&i| starts[i] as usize).collect();
    let dev = ctx.device;
    let xr = nrf_models::images_to_tensor(&cd.dataset, &keep, dev);
    let x = nrf_models::images_to_tensor(&ctx.train, &xi, dev);
    let x0 = nrf_models::images_to_tensor(&ctx.train, &x0i, dev);
    let dx = per_example_norm(&(&xr - &x), 2.0).to_device(tch::Device::Cpu);
    let dx0 = per_example_norm(&(&xr - &x0), 2.0).to_device(tch::Device::Cpu);
    let batch = ctx.preset.eval.batch_size as i64;
    let (gr, gx, gx0) = (
        representations(&indep.model, &xr, batch)?,
        representations(&indep.model, &x, batch)?,
        representations(&indep.model, &x0, batch)?,
    );
    let rx = per_example_norm(&(&gr - &gx), 2.0);
    let rx0 = per_example_norm(&(&gr - &gx0), 2.0);
    let pred = predictions(&indep.model, &xr, batch)?;
    let y = Tensor::from_slice(&xi.iter().map(|&i| ctx.train.labels[i]).collect::<Vec<_>>());
    let y0 = Tensor::from_slice(&x0i.iter().map(|&i| ctx.train.labels[i]).collect::<Vec<_>>());
    let diff = y.ne_tensor(&y0);
    let n_diff = diff.sum(Kind::Int64).int64_value(&[]) as usize;
    let (label_y, label_y0) = if n_diff == 0 {
        (f64::NAN, f64::NAN)
    } else {
        (
            frac(&pred.eq_tensor(&y).masked_select(&diff)),
            frac(&pred.eq_tensor(&y0).masked_select(&diff)),
        )
    };
    Ok(Closeness {
        set: set.into(),
        n: keep.len(),
        pixel_to_x0: mean_of(&dx0),
        pixel_to_x: mean_of(&dx),
        pixel_closer_to_x: frac(&dx.lt_tensor(&dx0)),
        rep_to_x0: mean_of(&rx0),
        rep_to_x: mean_of(&rx),
        rep_closer_to_x: frac(&rx.lt_tensor(&rx0)),
        n_diff,
        label_y,
        label_y0,
    })
}

/// Writes `sections/source_vs_target.json` and `plots/source_vs_target.png`.
pub fn run(ctx: &mut Ctx, indep: &Independent) -> Result<()> {
    if ctx.preset.rep_match.start == StartMode::Noise {
        let section = Section {
            id: ID.into(),
            title: "Are x_r closer to the start or the target? (reviewer 1)".into(),
            claim: "Reviewer 1 asks whether the images of D_R / D_NR resemble the image they \
                    start from (x0) or the image whose representation they match (x)."
                .into(),
            finding: "Not measured: this preset starts D_R / D_NR from noise \
                      (rep_match.start = \"noise\"), so there is no start image to compare with."
                .into(),
            verdict: Verdict::NotApplicable,
            tables: vec![],
            images: vec![],
        };
        return write_section(ctx, &section);
    }
    let rows = vec![measure(ctx, "D_R", indep)?, measure(ctx, "D_NR", indep)?];
    let table = Table {
        caption: format!(
            "x_r vs its start x0 and its target x. Pixel: L2 in [0, 1] pixel space. Rep: L2 \
             between representations of the independent model, {}. Labels: that model's \
             prediction on x_r, over the pairs whose start and target classes differ.",
            indep.description
        ),
        headers: [
            "set",
            "n",
            "pixel d(x_r, x0)",
            "pixel d(x_r, x)",
            "closer to x (pixel)",
            "rep d(x_r, x0)",
            "rep d(x_r, x)",
            "closer to x (rep)",
            "pairs y != y0",
            "labelled y",
            "labelled y0",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|c| {
                vec![
                    c.set.clone(),
                    c.n.to_string(),
                    num(c.pixel_to_x0),
                    num(c.pixel_to_x),
                    pct(c.pixel_closer_to_x),
                    num(c.rep_to_x0),
                    num(c.rep_to_x),
                    pct(c.rep_closer_to_x),
                    c.n_diff.to_string(),
                    pct(c.label_y),
                    pct(c.label_y0),
                ]
            })
            .collect(),
    };
    let plot = "plots/source_vs_target.png";
    let cats: Vec<String> = rows.iter().map(|c| c.set.clone()).collect();
    let series: Vec<(String, Vec<f64>)> = vec![
        (
            "closer to x (pixel)".into(),
            rows.iter().map(|c| c.pixel_closer_to_x).collect(),
        ),
        (
            "closer to x (representation)".into(),
            rows.iter().map(|c| c.rep_closer_to_x).collect(),
        ),
        (
            "labelled y (target's class)".into(),
            rows.iter().map(|c| c.label_y).collect(),
        ),
        (
            "labelled y0 (start's class)".into(),
            rows.iter().map(|c| c.label_y0).collect(),
        ),
    ];
    let opts = PlotOptions {
        hlines: vec![(0.5, "half".into())],
        ..PlotOptions::accuracy()
    };
    bar_plot_with(
        ctx.path(plot),
        "Is x_r closer to its start x0 or its target x?",
        "fraction of examples",
        &cats,
        &series,
        &opts,
    )?;
    let mut images = vec![plot.to_string()];
    for g in ["grids/D_R.png", "grids/D_NR.png"] {
        if ctx.path(g).exists() {
            images.push(g.into());
        }
    }
    let section = Section {
        id: ID.into(),
        title: "Are x_r closer to the start or the target? (reviewer 1)".into(),
        claim: "Reviewer 1 asks whether the images of D_R / D_NR resemble the image they start \
                from (x0) or the image whose representation they match (x, whose label they get). \
                The grids show rows of (x0, x_r, x)."
            .into(),
        finding: finding(&rows),
        verdict: Verdict::NotApplicable,
        tables: vec![table],
        images,
    };
    write_section(ctx, &section)
}
