//! Figures of several [`Chart`]s under one title (e.g. the theory's Figure 4): each chart holds
//! layers of points drawn as lines (solid or dashed), markers or both, a linear or log x axis,
//! reference lines, and an optional legend inside one of its corners. Same frame, axes, fonts and
//! palette as the other plots of this module.

use super::axes::{draw_axes, draw_hlines, XTicks};
use super::frame::{chart_on, de, padded_range, render_png, Area, Chart as PlotChart, Frame, AXIS};
use super::legend::{draw_marker, Mark};
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// A marker drawn at each point of a [`Layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Filled circle.
    Dot,
    /// Filled triangle.
    Triangle,
    /// Cross (×).
    Cross,
}

/// The line through the points of a [`Layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    /// Solid line.
    Solid,
    /// Dashed line.
    Dashed,
    /// No line (markers only).
    None,
}

/// One set of points of a [`Chart`] and how it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Legend entry; empty: not in the legend. Layers with the same name share one entry.
    pub name: String,
    /// Points (x, y), in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Line through the points.
    pub stroke: Stroke,
    /// Marker at each point.
    pub marker: Option<Marker>,
    /// Line width in pixels.
    pub width: u32,
    /// Marker radius in pixels.
    pub size: u32,
    /// Opacity of the markers (1: opaque).
    pub opacity: f64,
}

impl Layer {
    /// A solid line, 3 px wide.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Layer {
            name: name.into(),
            points,
            color,
            stroke: Stroke::Solid,
            marker: None,
            width: 3,
            size: 5,
            opacity: 1.0,
        }
    }

    /// Markers only, radius 6 px.
    pub fn markers(
        name: impl Into<String>,
        points: Vec<(f64, f64)>,
        color: RGBColor,
        marker: Marker,
    ) -> Self {
        Layer {
            stroke: Stroke::None,
            marker: Some(marker),
            size: 6,
            ..Layer::line(name, points, color)
        }
    }

    /// The same layer with `marker` at each point.
    pub fn with_marker(mut self, marker: Marker) -> Self {
        self.marker = Some(marker);
        self
    }

    /// The same layer with a dashed line.
    pub fn dashed(mut self) -> Self {
        self.stroke = Stroke::Dashed;
        self
    }

    /// The same layer with lines `width` px wide.
    pub fn width(mut self, width: u32) -> Self {
        self.width = width;
        self
    }

    /// The same layer with markers of radius `size` px and opacity `opacity`.
    pub fn marker_style(mut self, size: u32, opacity: f64) -> Self {
        self.size = size;
        self.opacity = opacity;
        self
    }

    fn mark(&self) -> Mark {
        let dashed = self.stroke == Stroke::Dashed;
        match (self.stroke, self.marker) {
            (Stroke::None, Some(m)) => Mark::Symbol(m),
            (_, Some(m)) => Mark::LineSymbol { dashed, marker: m },
            _ => Mark::Line { dashed },
        }
    }
}

/// Where a chart's legend goes (inside the plotting area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Upper left.
    UpperLeft,
    /// Upper right.
    UpperRight,
    /// Lower left.
    LowerLeft,
    /// Lower right.
    LowerRight,
}

/// One chart of [`charts_plot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the chart.
    pub title: String,
    /// x-axis title.
    pub x_label: String,
    /// y-axis title.
    pub y_label: String,
    /// What is drawn, in order (later layers on top).
    pub layers: Vec<Layer>,
    /// Fixed x range (else from the data, padded 5%).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (else from the data and the reference lines, padded 5%).
    pub y_range: Option<(f64, f64)>,
    /// Logarithmic x axis (every x must be > 0).
    pub log_x: bool,
    /// Horizontal reference lines (y, label; an empty label is not written), drawn dashed.
    pub hlines: Vec<(f64, String)>,
    /// Legend position; None: no legend.
    pub legend: Option<Corner>,
}

impl Chart {
    /// A chart with no layers, linear axes, ranges from the data and no legend.
    pub fn new(title: impl Into<String>, x_label: &str, y_label: &str) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            layers: Vec::new(),
            x_range: None,
            y_range: None,
            log_x: false,
            hlines: Vec::new(),
            legend: None,
        }
    }
}

/// Draws `marker` centred at pixel `(x, y)` of `area`.
pub(super) fn draw_symbol(
    area: &Area,
    (x, y): (i32, i32),
    c: RGBColor,
    marker: Marker,
    size: u32,
) -> Result<()> {
    let s = size as i32;
    match marker {
        Marker::Dot => area.draw(&Circle::new((x, y), s, c.filled())),
        Marker::Triangle => area.draw(&TriangleMarker::new((x, y), s, c.filled())),
        Marker::Cross => area.draw(&Cross::new((x, y), s, c.stroke_width(3))),
    }
    .map_err(de)
}

/// Draws `marker` (`size` pixels, in `color`) at each of `points` (data coordinates of `chart`).
pub(super) fn draw_markers(
    chart: &mut PlotChart<'_, '_>,
    points: &[(f64, f64)],
    marker: Marker,
    color: RGBAColor,
    size: i32,
) -> Result<()> {
    match marker {
        Marker::Dot => chart
            .draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled())))
            .map(|_| ()),
        Marker::Triangle => chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| TriangleMarker::new(p, size, color.filled())),
            )
            .map(|_| ()),
        Marker::Cross => chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Cross::new(p, size, color.stroke_width(3))),
            )
            .map(|_| ()),
    }
    .map_err(de)
}

/// Draws `charts` in a grid of `cols` columns, each chart `size` pixels, under `title`.
pub fn charts_plot(
    path: impl AsRef<Path>,
    title: &str,
    cols: usize,
    size: (u32, u32),
    charts: &[Chart],
) -> Result<()> {
    if charts.is_empty() || cols == 0 {
        bail!("figure {title:?}: no charts");
    }
    for c in charts {
        for l in &c.layers {
            for (i, (x, y)) in l.points.iter().enumerate() {
                if !x.is_finite() || !y.is_finite() || (c.log_x && *x <= 0.0) {
                    bail!(
                        "chart {:?} layer {:?}: point {i} = ({x}, {y}) cannot be drawn",
                        c.title,
                        l.name
                    );
                }
            }
        }
    }
    let cols = cols.min(charts.len());
    let rows = charts.len().div_ceil(cols);
    let head = 44u32;
    let (w, h) = (size.0 * cols as u32, head + size.1 * rows as u32);
    render_png(path, w, h, |root| {
        draw_text(
            root,
            title,
            (w as i32 / 2, 10),
            &TextStyle::new(22.0)
                .bold()
                .anchor(HAlign::Center, VAlign::Top),
        )?;
        let body = root.margin(head, 0, 0, 0);
        for (c, area) in charts.iter().zip(body.split_evenly((rows, cols)).iter()) {
            draw_chart(area, c)?;
        }
        Ok(())
    })
}

fn draw_chart(area: &Area, c: &Chart) -> Result<()> {
    let tx = |x: f64| if c.log_x { x.log10() } else { x };
    let xr = padded_range(
        c.layers
            .iter()
            .flat_map(|l| l.points.iter().map(|p| tx(p.0))),
        c.x_range.map(|(a, b)| (tx(a), tx(b))),
    )?;
    let yr = padded_range(
        c.layers
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(c.hlines.iter().map(|h| h.0)),
        c.y_range,
    )?;
    let f = Frame::big();
    let mut chart = chart_on(area, &c.title, xr, yr, &f)?;
    let ticks = if c.log_x {
        XTicks::Log10
    } else {
        XTicks::Linear
    };
    draw_axes(
        area, &mut chart, xr, yr, &c.x_label, &c.y_label, false, ticks, &f,
    )?;
    draw_hlines(area, &mut chart, xr, &c.hlines)?;
    for l in &c.layers {
        let pts: Vec<(f64, f64)> = l.points.iter().map(|&(x, y)| (tx(x), y)).collect();
        let style = l.color.stroke_width(l.width);
        match l.stroke {
            Stroke::Solid => {
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), style))
                    .map_err(de)?;
            }
            Stroke::Dashed => {
                chart
                    .draw_series(DashedLineSeries::new(pts.iter().copied(), 9, 7, style))
                    .map_err(de)?;
            }
            Stroke::None => {}
        }
        if let Some(m) = l.marker {
            draw_markers(&mut chart, &pts, m, l.color.mix(l.opacity), l.size as i32)?;
        }
    }
    if let Some(corner) = c.legend {
        let mut items: Vec<(String, RGBColor, Mark)> = Vec::new();
        for l in &c.layers {
            if !l.name.is_empty() && !items.iter().any(|i| i.0 == l.name) {
                items.push((l.name.clone(), l.color, l.mark()));
            }
        }
        let (px, py) = chart.plotting_area().get_pixel_range();
        let b = area.get_base_pixel();
        let plot = (px.start - b.0, px.end - b.0, py.start - b.1, py.end - b.1);
        draw_inside_legend(area, plot, corner, &items)?;
    }
    Ok(())
}

/// A legend on a white box with a border, in `corner` of the plotting rectangle
/// `(x0, x1, y0, y1)` (pixels of `area`).
fn draw_inside_legend(
    area: &Area,
    (x0, x1, y0, y1): (i32, i32, i32, i32),
    corner: Corner,
    items: &[(String, RGBColor, Mark)],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let px = 14.0;
    let row = 22;
    let mut tw = 0.0f64;
    for (name, _, _) in items {
        tw = tw.max(text_width(name, px, false)?);
    }
    let (bw, bh) = (tw.ceil() as i32 + 54, row * items.len() as i32 + 10);
    let inset = 10;
    let left = match corner {
        Corner::UpperLeft | Corner::LowerLeft => x0 + inset,
        Corner::UpperRight | Corner::LowerRight => x1 - inset - bw,
    };
    let top = match corner {
        Corner::UpperLeft | Corner::UpperRight => y0 + inset,
        Corner::LowerLeft | Corner::LowerRight => y1 - inset - bh,
    };
    area.draw(&Rectangle::new(
        [(left, top), (left + bw, top + bh)],
        WHITE.mix(0.9).filled(),
    ))
    .map_err(de)?;
    area.draw(&Rectangle::new(
        [(left, top), (left + bw, top + bh)],
        AXIS.stroke_width(1),
    ))
    .map_err(de)?;
    for (i, (name, c, mark)) in items.iter().enumerate() {
        let y = top + 5 + row / 2 + row * i as i32;
        draw_marker(area, (left + 8, y), *c, *mark)?;
        draw_text(
            area,
            name,
            (left + 46, y),
            &TextStyle::new(px).anchor(HAlign::Left, VAlign::Center),
        )?;
    }
    Ok(())
}
