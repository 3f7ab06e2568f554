//! Scatter plots of labelled points, with optional error bars.
use super::axes::{draw_axes, draw_hbar, draw_hlines, draw_vbar, XTicks};
use super::frame::{chart_on, check_points, de, finite_bars, padded_range, render_png, Frame};
use super::{color, PlotOptions};
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
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

/// The points' labels' size in pixels.
const LABEL_PX: f64 = 14.0;

/// Where a point's label of `width` pixels goes: starting at `right` (right of the point) when it
/// fits in an image `image_w` pixels wide, else ending at `left` (left of it) when
/// it stays right of the plot's left edge `plot_left`, else ending at the image's right edge.
fn label_x(left: i32, right: i32, width: f64, plot_left: i32, image_w: u32) -> (i32, HAlign) {
    let edge = f64::from(image_w) - 4.0;
    if f64::from(right) + width <= edge {
        (right, HAlign::Left)
    } else if f64::from(left) - width >= f64::from(plot_left) {
        (left, HAlign::Right)
    } else {
        (edge as i32, HAlign::Right)
    }
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
        }
        // The labels after every point and bar, so that none is drawn over a label.
        for (i, p) in points.iter().enumerate() {
            let c = color(i);
            // The label sits next to its point, in its colour, a little above it so that the
            // horizontal error bar runs under it and the vertical one beside it: right of the
            // point, or left of it where it would run past the image's right edge. (Past the
            // error bar, a wide bar put a label next to another point.)
            let (cx, py) = chart.backend_coord(&(p.x, p.y));
            let (plot_left, _) = chart.backend_coord(&(xr.0, p.y));
            let width = text_width(&p.label, LABEL_PX, false)?;
            let (x, align) = label_x(cx - 10, cx + 10, width, plot_left, root.dim_in_pixel().0);
            // A light box behind it, so that another point's bar does not cut through it.
            let x0 = match align {
                HAlign::Left => x,
                _ => x - width.ceil() as i32,
            };
            let top = py - 12 - LABEL_PX.ceil() as i32;
            root.draw(&Rectangle::new(
                [(x0 - 2, top), (x0 + width.ceil() as i32 + 2, py - 10)],
                WHITE.mix(0.85).filled(),
            ))
            .map_err(de)?;
            draw_text(
                root,
                &p.label,
                (x, py - 12),
                &TextStyle::new(LABEL_PX)
                    .color(c)
                    .anchor(align, VAlign::Bottom),
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::{label_x, HAlign};

    #[test]
    fn a_label_that_would_leave_the_image_goes_left_of_its_point() {
        // 100 px of label from x = 800 fits in 960 px; from x = 900 it does not, and goes left
        // of the point when that stays right of the plot's left edge (at 80 px) ...
        assert_eq!(label_x(500, 800, 100.0, 80, 960), (800, HAlign::Left));
        assert_eq!(label_x(500, 900, 100.0, 80, 960), (500, HAlign::Right));
        // ... else it ends at the image's right edge.
        assert_eq!(label_x(150, 900, 100.0, 80, 960), (956, HAlign::Right));
    }
}
