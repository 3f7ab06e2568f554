//! Grouped bar plots, with optional error bars and the values written above the bars.
use super::axes::{draw_axes, draw_hlines, draw_vbar, value_label, XTicks};
use super::frame::{
    chart_on, check_intervals, de, finite_bars, padded_range, render_png, wrap_to, Area, Chart,
    Frame, INK,
};
use super::legend::{draw_legend, with_legend, Mark};
use super::{color, LegendPlace, PlotOptions};
use crate::text::{draw_lines, draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// Grouped bar plot: one group per category, one bar per series, e.g. Figure 2 (standard and
/// robust accuracy per training set). `series` holds (name, one value per category); a NaN
/// leaves its bar out (e.g. not measured). `hline`: an optional labelled reference line (chance).
pub fn bar_plot(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    hline: Option<(f64, String)>,
) -> Result<()> {
    let opts = PlotOptions {
        hlines: hline.into_iter().collect(),
        ..Default::default()
    };
    bar_plot_with(path, title, y_label, categories, series, &opts)
}

/// [`bar_plot`] with [`PlotOptions`].
pub fn bar_plot_with(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    opts: &PlotOptions,
) -> Result<()> {
    bar_plot_with_errors(path, title, y_label, categories, series, &[], opts)
}

/// [`bar_plot_with`] with error bars: `errors[j][i]` = (lo, hi) of series j's bar i (e.g. a 95%
/// interval; a non-finite pair draws none). `errors` is empty (no error bars) or has one entry
/// per series, each empty or one pair per category. Bar values are written above the bars'
/// error bars.
pub fn bar_plot_with_errors(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    errors: &[Vec<(f64, f64)>],
    opts: &PlotOptions,
) -> Result<()> {
    check_bars(title, categories, series, errors)?;
    let bar = |j: usize, i: usize| -> Option<(f64, f64)> {
        errors
            .get(j)
            .and_then(|e| e.get(i))
            .copied()
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
    };
    let yr = bar_y_range(series, errors, opts)?;
    let n = categories.len();
    let k = series.len();
    let xr = (-0.5, n as f64 - 0.5);
    render_png(path, opts.width, opts.height, |root| {
        let names: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
        let show_legend = if k > 1 {
            opts.legend
        } else {
            LegendPlace::None
        };
        let (main, legend) = with_legend(
            root,
            &PlotOptions {
                legend: show_legend,
                ..opts.clone()
            },
            &names,
        )?;
        let f = Frame {
            bottom: 70,
            ..Frame::big()
        };
        let mut chart = chart_on(&main, title, xr, yr, &f)?;
        draw_axes(
            &main,
            &mut chart,
            xr,
            yr,
            "",
            y_label,
            opts.percent_y,
            XTicks::None,
            &f,
        )?;
        let bw = 0.8 / k as f64;
        let mut labels = Vec::new();
        for (j, (_, vals)) in series.iter().enumerate() {
            let c = color(j);
            for (i, v) in vals.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let x0 = i as f64 - 0.4 + j as f64 * bw;
                let x1 = x0 + bw * 0.9;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0f64.max(yr.0)), (x1, *v)],
                        c.filled(),
                    )))
                    .map_err(de)?;
                let top = match bar(j, i) {
                    Some(iv) => {
                        draw_vbar(&mut chart, (x0 + x1) / 2.0, iv, INK, 2)?;
                        v.max(iv.1)
                    }
                    None => *v,
                };
                if opts.bar_values {
                    labels.push((
                        chart.backend_coord(&((x0 + x1) / 2.0, top)),
                        value_label(*v, opts.percent_y),
                    ));
                }
            }
        }
        draw_hlines(&main, &mut chart, xr, &opts.hlines)?;
        draw_value_labels(&main, &chart, bw, labels)?;
        draw_categories(&main, &chart, categories, yr)?;
        if let Some(l) = legend {
            let items: Vec<(String, RGBColor, Mark)> = names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.clone(), color(j), Mark::Box))
                .collect();
            draw_legend(&l, &items, 56)?;
        }
        Ok(())
    })
}

/// Checks the bar plot's input: categories and series present, one value per category in each
/// series (NaN allowed, infinity not), error bars for every series or none.
fn check_bars(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    errors: &[Vec<(f64, f64)>],
) -> Result<()> {
    if categories.is_empty() || series.is_empty() {
        bail!("bar plot {title:?}: no categories or no series");
    }
    if !errors.is_empty() && errors.len() != series.len() {
        bail!(
            "bar plot {title:?}: error bars for {} series, but {} series",
            errors.len(),
            series.len()
        );
    }
    for (j, e) in errors.iter().enumerate() {
        check_intervals(
            &format!("bar plot {title:?} series {:?}", series[j].0),
            categories.len(),
            e,
        )?;
    }
    for (name, vals) in series {
        if vals.len() != categories.len() {
            bail!(
                "bar plot {title:?}: series {name:?} has {} values for {} categories",
                vals.len(),
                categories.len()
            );
        }
        if let Some(v) = vals.iter().find(|v| v.is_infinite()) {
            bail!("bar plot {title:?}: series {name:?} has an infinite value {v}");
        }
    }
    Ok(())
}

/// The y range: fixed, or from 0 (or the lowest value) to the highest value, error bar or
/// reference line, with room above for the value labels.
fn bar_y_range(
    series: &[(String, Vec<f64>)],
    errors: &[Vec<(f64, f64)>],
    opts: &PlotOptions,
) -> Result<(f64, f64)> {
    Ok(match opts.y_range {
        Some(r) => padded_range(std::iter::empty(), Some(r))?,
        None => {
            let vals: Vec<f64> = series
                .iter()
                .flat_map(|s| s.1.iter().copied())
                .chain(errors.iter().flat_map(|e| finite_bars(e).map(|b| b.1)))
                .filter(|v| v.is_finite())
                .chain(opts.hlines.iter().map(|h| h.0))
                .collect();
            let lo = vals.iter().copied().fold(0.0, f64::min);
            let hi = vals.iter().copied().fold(0.0, f64::max);
            let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
            (
                lo - if lo < 0.0 { span * 0.05 } else { 0.0 },
                hi + span * 0.1,
            )
        }
    })
}

/// Writes each bar's value above it (and above its error bar).
fn draw_value_labels(
    main: &Area,
    chart: &Chart,
    bw: f64,
    labels: Vec<((i32, i32), String)>,
) -> Result<()> {
    let base = main.get_base_pixel();
    // Value labels at 12.5 px, smaller where the bars are too narrow for them (three or
    // more series), so that neighbours never overlap: each label fits its bar's slot.
    let bar_px =
        (chart.backend_coord(&(bw, 0.0)).0 - chart.backend_coord(&(0.0, 0.0)).0).max(1) as f64;
    let mut size: f64 = 12.5;
    for (_, text) in &labels {
        while size > 8.0 && text_width(text, size, false)? > bar_px - 2.0 {
            size -= 0.5;
        }
    }
    for ((px, py), text) in labels {
        draw_text(
            main,
            &text,
            (px - base.0, py - base.1 - 3),
            &TextStyle::new(size).anchor(HAlign::Center, VAlign::Bottom),
        )?;
    }
    Ok(())
}

/// Writes the category labels under the x axis.
fn draw_categories(
    main: &Area,
    chart: &Chart,
    categories: &[String],
    yr: (f64, f64),
) -> Result<()> {
    let base = main.get_base_pixel();
    // Category labels under the axis, wrapped to their slot.
    let slot =
        (chart.backend_coord(&(1.0, 0.0)).0 - chart.backend_coord(&(0.0, 0.0)).0).max(40) as f64;
    let (_, y_axis) = chart.backend_coord(&(0.0, yr.0));
    for (i, cat) in categories.iter().enumerate() {
        let (px, _) = chart.backend_coord(&(i as f64, yr.0));
        let lines = wrap_to(cat, 14.0, false, slot - 6.0)?;
        draw_lines(
            main,
            &lines.join("\n"),
            (px - base.0, y_axis - base.1 + 8),
            18,
            &TextStyle::new(14.0).anchor(HAlign::Center, VAlign::Top),
        )?;
    }
    Ok(())
}
