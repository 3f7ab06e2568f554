//! Scatter plots of labelled points, with optional error bars.
use super::axes::{draw_axes, draw_hbar, draw_hlines, draw_vbar, XTicks};
use super::frame::{chart_on, check_points, de, finite_bars, padded_range, render_png, Frame};
use super::{color, PlotOptions};
use crate::text::{draw_text, HAlign, TextStyle, VAlign};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// Scatter plot of labelled points (e.g. Figure 3: one point per architecture).
pub fn scatter_plot(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, String)],
) -> Result<()> {
    scatter_plot_with(
        path,
        title,
        x_label,
        y_label,
        points,
        &PlotOptions::default(),
    )
}

/// One labelled point of [`scatter_points_plot`], with optional error bars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScatterPoint {
    /// x value.
    pub x: f64,
    /// y value.
    pub y: f64,
    /// Label written right of the point (and of its horizontal error bar).
    pub label: String,
    /// Horizontal error bar (lo, hi) in x units, e.g. a 95% interval.
    pub x_interval: Option<(f64, f64)>,
    /// Vertical error bar (lo, hi) in y units.
    pub y_interval: Option<(f64, f64)>,
}

/// [`scatter_plot`] with [`PlotOptions`] (the legend option is ignored: labels sit at the points).
pub fn scatter_plot_with(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, String)],
    opts: &PlotOptions,
) -> Result<()> {
    let pts: Vec<ScatterPoint> = points
        .iter()
        .map(|(x, y, label)| ScatterPoint {
            x: *x,
            y: *y,
            label: label.clone(),
            ..Default::default()
        })
        .collect();
    scatter_points_plot(path, title, x_label, y_label, &pts, opts)
}

/// Scatter plot of [`ScatterPoint`]s with their error bars (the legend option is ignored:
/// labels sit at the points). Automatic ranges include the error bars.
pub fn scatter_points_plot(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[ScatterPoint],
    opts: &PlotOptions,
) -> Result<()> {
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.y)).collect();
    check_points("scatter", &xy)?;
    let xbars: Vec<(f64, f64)> = points.iter().filter_map(|p| p.x_interval).collect();
    let ybars: Vec<(f64, f64)> = points.iter().filter_map(|p| p.y_interval).collect();
    let mut xr = padded_range(
        xy.iter()
            .map(|p| p.0)
            .chain(finite_bars(&xbars).flat_map(|(a, b)| [a, b])),
        opts.x_range,
    )?;
    if opts.x_range.is_none() {
        // Room for the labels right of the points.
        xr.1 += (xr.1 - xr.0) * 0.15;
    }
    let yr = padded_range(
        xy.iter()
            .map(|p| p.1)
            .chain(finite_bars(&ybars).flat_map(|(a, b)| [a, b]))
            .chain(opts.hlines.iter().map(|h| h.0)),
        opts.y_range,
    )?;
    render_png(path, opts.width, opts.height, |root| {
        let f = Frame::big();
        let mut chart = chart_on(root, title, xr, yr, &f)?;
        draw_axes(
            root,
            &mut chart,
            xr,
            yr,
            x_label,
            y_label,
            opts.percent_y,
            XTicks::Linear,
            &f,
        )?;
        draw_hlines(root, &mut chart, xr, &opts.hlines)?;
        for (i, p) in points.iter().enumerate() {
            let c = color(i);
            if let Some(iv) = p.x_interval {
                draw_hbar(&mut chart, p.y, iv, c, 2)?;
            }
            if let Some(iv) = p.y_interval {
                draw_vbar(&mut chart, p.x, iv, c, 2)?;
            }
            chart
                .draw_series(std::iter::once(Circle::new((p.x, p.y), 6, c.filled())))
                .map_err(de)?;
            // The label starts right of the point and of its horizontal error bar, a little
            // above the point so that a vertical bar does not run through it.
            let right = p
                .x_interval
                .map(|(_, hi)| hi)
                .filter(|hi| hi.is_finite() && *hi > p.x)
                .unwrap_or(p.x);
            let (px, py) = chart.backend_coord(&(right, p.y));
            let (cx, _) = chart.backend_coord(&(p.x, p.y));
            draw_text(
                root,
                &p.label,
                (px.max(cx + 6) + 8, py - 10),
                &TextStyle::new(14.0).anchor(HAlign::Left, VAlign::Center),
            )?;
        }
        Ok(())
    })
}
