//! Line plots: series of points against x, and panels of line plots (small multiples).
use super::axes::{draw_axes, draw_hlines, draw_vbar, XTicks};
use super::chart::draw_markers;
use super::frame::{
    chart_on, check_intervals, check_points, de, finite_bars, padded_range, render_png, text_size,
    Area, Frame,
};
use super::legend::{draw_legend, draw_marker, with_legend, Mark};
use super::{color, marker, PlotOptions};
use crate::text::{draw_text, HAlign, TextStyle, VAlign};
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// One line of a line plot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineSeriesSpec {
    /// Legend entry.
    pub name: String,
    /// Points (x, y), drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// Draw dashed.
    pub dashed: bool,
    /// Palette index (None: the series' position).
    pub color: Option<usize>,
    /// Error bars: one (lo, hi) per point (e.g. a 95% interval), drawn as vertical bars with
    /// caps; empty = none. Must be empty or as long as `points`; a non-finite pair is skipped.
    pub intervals: Vec<(f64, f64)>,
}

/// Line plot with several series, e.g. robust accuracy vs ε with one line per model.
/// `series` holds (name, points); non-finite points are an error naming the series.
pub fn line_plot(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let specs: Vec<LineSeriesSpec> = series
        .iter()
        .map(|(n, p)| LineSeriesSpec {
            name: n.clone(),
            points: p.clone(),
            ..Default::default()
        })
        .collect();
    line_plot_with(
        path,
        title,
        x_label,
        y_label,
        &specs,
        &PlotOptions::default(),
    )
}

/// [`line_plot`] with per-series style and [`PlotOptions`].
pub fn line_plot_with(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[LineSeriesSpec],
    opts: &PlotOptions,
) -> Result<()> {
    for s in series {
        check_points(&format!("series {:?}", s.name), &s.points)?;
        check_intervals(
            &format!("series {:?}", s.name),
            s.points.len(),
            &s.intervals,
        )?;
    }
    let xr = padded_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        opts.x_range,
    )?;
    let yr = padded_range(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(
                series
                    .iter()
                    .flat_map(|s| finite_bars(&s.intervals).flat_map(|(a, b)| [a, b])),
            )
            .chain(opts.hlines.iter().map(|h| h.0)),
        opts.y_range,
    )?;
    render_png(path, opts.width, opts.height, |root| {
        let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
        let (main, legend) = with_legend(root, opts, &names)?;
        let f = Frame::big();
        let mut chart = chart_on(&main, title, xr, yr, &f)?;
        draw_axes(
            &main,
            &mut chart,
            xr,
            yr,
            x_label,
            y_label,
            opts.percent_y,
            XTicks::Linear,
            &f,
        )?;
        draw_hlines(&main, &mut chart, xr, &opts.hlines)?;
        let mut items = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let ci = s.color.unwrap_or(i);
            let c = color(ci);
            let style = c.stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 9, 6, style))
                    .map_err(de)?;
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(de)?;
            }
            draw_markers(&mut chart, &s.points, marker(ci), c.to_rgba(), 4)?;
            for (p, iv) in s.points.iter().zip(&s.intervals) {
                draw_vbar(&mut chart, p.0, *iv, c, 1)?;
            }
            let mark = Mark::LineSymbol {
                dashed: s.dashed,
                marker: marker(ci),
            };
            items.push((s.name.clone(), c, mark));
        }
        if let Some(l) = legend {
            draw_legend(&l, &items, 56)?;
        }
        Ok(())
    })
}

/// One panel of [`panel_line_plot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// Lines of the panel.
    pub series: Vec<LineSeriesSpec>,
}

/// Small multiples: a grid of line-plot panels (3 per row) with one shared legend (series
/// matched by name), e.g. training curves with one panel per model.
pub fn panel_line_plot(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    panels: &[Panel],
    opts: &PlotOptions,
) -> Result<()> {
    if panels.is_empty() {
        bail!("panel plot {title:?}: no panels");
    }
    for p in panels {
        for s in &p.series {
            check_points(
                &format!("panel {:?} series {:?}", p.title, s.name),
                &s.points,
            )?;
        }
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let (pw, ph) = (420u32, 300u32);
    let mut names: Vec<(String, usize, bool)> = Vec::new();
    for p in panels {
        for (i, s) in p.series.iter().enumerate() {
            if !names.iter().any(|n| n.0 == s.name) {
                names.push((s.name.clone(), s.color.unwrap_or(i), s.dashed));
            }
        }
    }
    let width = pw * cols as u32;
    let head = 84u32;
    let height = head + ph * rows as u32;
    render_png(path, width, height, |root| {
        draw_text(
            root,
            title,
            (width as i32 / 2, 10),
            &TextStyle::new(20.0)
                .bold()
                .anchor(HAlign::Center, VAlign::Top),
        )?;
        let mut x = 24;
        let y = 56;
        for (name, ci, dashed) in &names {
            let mark = Mark::LineSymbol {
                dashed: *dashed,
                marker: marker(*ci),
            };
            draw_marker(root, (x, y), color(*ci), mark)?;
            draw_text(
                root,
                name,
                (x + 38, y),
                &TextStyle::new(14.0).anchor(HAlign::Left, VAlign::Center),
            )?;
            x += 38 + text_size(name, 14.0, false)? as i32 + 30;
        }
        let body = root.margin(head, 0, 0, 0);
        let areas = body.split_evenly((rows, cols));
        for (p, area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, p, &names, x_label, y_label, opts)?;
        }
        Ok(())
    })
}

/// Draws one panel of [`panel_line_plot`] into its `area`; `names` gives each series' colour.
fn draw_panel(
    area: &Area,
    p: &Panel,
    names: &[(String, usize, bool)],
    x_label: &str,
    y_label: &str,
    opts: &PlotOptions,
) -> Result<()> {
    let xr = padded_range(
        p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)),
        opts.x_range,
    )
    .unwrap_or((0.0, 1.0));
    let yr = padded_range(
        p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)),
        opts.y_range,
    )
    .unwrap_or((0.0, 1.0));
    let f = Frame::small();
    let mut chart = chart_on(area, &p.title, xr, yr, &f)?;
    draw_axes(
        area,
        &mut chart,
        xr,
        yr,
        x_label,
        y_label,
        opts.percent_y,
        XTicks::Linear,
        &f,
    )?;
    if p.series.iter().all(|s| s.points.is_empty()) {
        let (cx, cy) = chart.backend_coord(&((xr.0 + xr.1) / 2.0, (yr.0 + yr.1) / 2.0));
        let b = area.get_base_pixel();
        draw_text(
            area,
            "no data",
            (cx - b.0, cy - b.1),
            &TextStyle::new(14.0).anchor(HAlign::Center, VAlign::Center),
        )?;
    }
    for s in &p.series {
        let ci = names
            .iter()
            .find(|n| n.0 == s.name)
            .map(|n| n.1)
            .unwrap_or(0);
        let c = color(ci);
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(
                    s.points.iter().copied(),
                    8,
                    5,
                    c.stroke_width(2),
                ))
                .map_err(de)?;
        } else {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(de)?;
        }
        if s.points.len() <= 40 {
            draw_markers(&mut chart, &s.points, marker(ci), c.to_rgba(), 3)?;
        }
    }
    Ok(())
}
