//! Plots (PNG via the bitmap backend, SVG via the SVG backend), written atomically.
//!
//! Text is rendered with an embedded DejaVu Sans subset (Latin, Greek and common math symbols;
//! licence in `assets/DejaVu-LICENSE.txt`), registered with plotters' `ab_glyph` font registry as
//! `sans-serif`, so rendering does not depend on system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ndarray::{Array1, Array2};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::full_palette::{BLUE_300, GREY, RED_300};

use crate::error::{Result, TheoryError};
use crate::io::{atomic_write, temp_sibling};
use crate::linalg::sym_eig;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

/// Registers the embedded font with plotters (idempotent).
pub fn ensure_font() {
    REGISTER.call_once(|| {
        // The embedded font is known-good; a failure here would only mean a corrupt build.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// A Gaussian fit drawn as 1-σ ellipses around `±μ`.
#[derive(Debug, Clone, PartialEq)]
pub struct EllipseFit {
    /// Legend text.
    pub label: String,
    /// Class mean `μ` (the other class is at `-μ`).
    pub mu: Array1<f64>,
    /// 2×2 covariance.
    pub sigma: Array2<f64>,
}

/// One panel of the Figure 4 reproduction.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure4Panel {
    /// Caption.
    pub title: String,
    /// Numerically fitted ε-constrained robust MLE (solid ellipses, crosses at `±μ`).
    pub numerical: EllipseFit,
    /// Theorem 2 closed form at the matched λ (dashed ellipses), if any.
    pub closed_form: Option<EllipseFit>,
}

/// Data of the Figure 4 reproduction: one panel per ε plus a summary chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure4Data {
    /// Points (`n×2`).
    pub x: Array2<f64>,
    /// Labels `±1`.
    pub y: Array1<f64>,
    /// Ellipse panels (same axes in all).
    pub panels: Vec<Figure4Panel>,
    /// Last panel: summary line chart.
    pub summary: LineChart,
}

/// How a curve is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveStyle {
    /// Solid line.
    Line,
    /// Markers only (e.g. Monte-Carlo estimates).
    Markers,
    /// Solid line with markers.
    LineMarkers,
}

/// A named curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Drawing style.
    pub style: CurveStyle,
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegendCorner {
    /// Upper left.
    UpperLeft,
    /// Upper right.
    UpperRight,
    /// Lower left.
    LowerLeft,
    /// Lower right.
    LowerRight,
}

impl LegendCorner {
    fn position(self) -> SeriesLabelPosition {
        match self {
            LegendCorner::UpperLeft => SeriesLabelPosition::UpperLeft,
            LegendCorner::UpperRight => SeriesLabelPosition::UpperRight,
            LegendCorner::LowerLeft => SeriesLabelPosition::LowerLeft,
            LegendCorner::LowerRight => SeriesLabelPosition::LowerRight,
        }
    }
}

/// A line chart specification.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Caption.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Curves.
    pub curves: Vec<Curve>,
    /// Log-scale x axis?
    pub log_x: bool,
    /// Draw a horizontal reference line at this y, if any.
    pub reference_y: Option<f64>,
    /// Legend position.
    pub legend: LegendCorner,
}

/// A two-class scatter plot specification.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterChart {
    /// Caption.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Points `(x, y, class)` with class `+1` / `-1`.
    pub points: Vec<(f64, f64, f64)>,
    /// Legend names of class `+1` and class `-1`.
    pub class_names: (String, String),
}

/// One panel of a multi-panel figure.
#[derive(Debug, Clone, PartialEq)]
pub enum Panel {
    /// Line chart.
    Lines(LineChart),
    /// Two-class scatter plot with equal axis spans.
    Scatter(ScatterChart),
}

fn palette(i: usize) -> RGBColor {
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
        RGBColor(0, 0, 0),
    ];
    colours[i % colours.len()]
}

fn ellipse_points(mu: &Array1<f64>, sigma: &Array2<f64>, sign: f64) -> Vec<(f64, f64)> {
    let e = match sym_eig(sigma.view()) {
        Ok(e) => e,
        Err(_) => return Vec::new(),
    };
    (0..=240)
        .map(|k| {
            let t = std::f64::consts::TAU * k as f64 / 240.0;
            let a = e.values[0].max(0.0).sqrt() * t.cos();
            let b = e.values[1].max(0.0).sqrt() * t.sin();
            let q = &e.vectors;
            (
                sign * mu[0] + q[[0, 0]] * a + q[[0, 1]] * b,
                sign * mu[1] + q[[1, 0]] * a + q[[1, 1]] * b,
            )
        })
        .collect()
}

type DrawResult = std::result::Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Splits a polyline into dashes of `on` points separated by gaps of `off` points.
fn dashes(points: &[(f64, f64)], on: usize, off: usize) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let end = (i + on + 1).min(points.len());
        out.push(points[i..end].to_vec());
        i += on + off;
    }
    out
}

fn draw_ellipse_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &Figure4Data,
    panel: &Figure4Panel,
    half_span: f64,
    legend: bool,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title.as_str(), (FONT, 19))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(50)
        .build_cartesian_2d(-half_span..half_span, -half_span..half_span)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("x₁")
        .y_desc("x₂")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for (cls, colour, name) in [
        (1.0, BLUE_300, "samples, y = +1"),
        (-1.0, RED_300, "samples, y = −1"),
    ] {
        let pts: Vec<(f64, f64)> = data
            .x
            .rows()
            .into_iter()
            .zip(data.y.iter())
            .filter(|(_, &y)| y == cls)
            .map(|(r, _)| (r[0], r[1]))
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 2, colour.mix(0.5).filled())),
            )
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
    }
    let solid = ShapeStyle::from(&BLACK).stroke_width(2);
    let orange = palette(4);
    let dashed = ShapeStyle::from(&orange).stroke_width(3);
    let fit = &panel.numerical;
    for sign in [1.0, -1.0] {
        chart
            .draw_series(LineSeries::new(
                ellipse_points(&fit.mu, &fit.sigma, sign),
                solid,
            ))
            .map_err(err)?;
    }
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
        .map_err(err)?
        .label(fit.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], solid));
    // The closed form goes on top, dashed, so that agreement shows as alternating colours.
    if let Some(cf) = &panel.closed_form {
        for sign in [1.0, -1.0] {
            for seg in dashes(&ellipse_points(&cf.mu, &cf.sigma, sign), 5, 5) {
                chart
                    .draw_series(LineSeries::new(seg, dashed))
                    .map_err(err)?;
            }
        }
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err)?
            .label(cf.label.clone())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], dashed)
                    + PathElement::new(vec![(13, 0), (20, 0)], dashed)
            });
    }
    chart
        .draw_series([1.0, -1.0].into_iter().map(|sign| {
            Cross::new(
                (sign * fit.mu[0], sign * fit.mu[1]),
                7,
                ShapeStyle::from(&BLACK).stroke_width(3),
            )
        }))
        .map_err(err)?
        .label("fitted ±μ")
        .legend(|(x, y)| Cross::new((x + 10, y), 5, ShapeStyle::from(&BLACK).stroke_width(2)));
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

fn figure4_span(data: &Figure4Data) -> f64 {
    let mut m = 0.0f64;
    for v in data.x.iter() {
        m = m.max(v.abs());
    }
    for p in &data.panels {
        for fit in std::iter::once(&p.numerical).chain(&p.closed_form) {
            for (a, b) in ellipse_points(&fit.mu, &fit.sigma, 1.0) {
                m = m.max(a.abs()).max(b.abs());
            }
        }
    }
    (m * 1.04).max(1e-3)
}

fn draw_figure4<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    data: &Figure4Data,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "Figure 4: robust MLE in the 2-D Gaussian model — μ stays put, Σ blends toward the identity as ε grows",
            (FONT, 24),
        )
        .map_err(err)?;
    let n = data.panels.len() + 1;
    let cols = 3usize;
    let rows_n = n.div_ceil(cols);
    let areas = root.split_evenly((rows_n, cols));
    let span = figure4_span(data);
    for (i, (area, panel)) in areas.iter().zip(&data.panels).enumerate() {
        draw_ellipse_panel(
            area,
            data,
            panel,
            span,
            i == 0 || panel.closed_form.is_some() && i == 1,
        )?;
    }
    if let Some(area) = areas.get(data.panels.len()) {
        draw_line_panel(area, &data.summary)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn bounds(spec: &LineChart) -> (f64, f64, f64, f64) {
    let mut x0 = f64::INFINITY;
    let mut x1 = f64::NEG_INFINITY;
    let mut y0 = f64::INFINITY;
    let mut y1 = f64::NEG_INFINITY;
    for c in &spec.curves {
        for &(x, y) in &c.points {
            if !x.is_finite() || !y.is_finite() || (spec.log_x && x <= 0.0) {
                continue;
            }
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if !x0.is_finite() {
        return (0.1, 1.0, 0.0, 1.0);
    }
    if let Some(r) = spec.reference_y {
        y0 = y0.min(r);
        y1 = y1.max(r);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = 0.06 * (y1 - y0).max(1e-6);
    let xpad = if spec.log_x { 0.0 } else { 0.02 * (x1 - x0) };
    (x0 - xpad, x1 + xpad, y0 - pad, y1 + pad)
}

fn draw_line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &LineChart,
) -> DrawResult {
    let (x0, x1, y0, y1) = bounds(spec);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(spec.x_label.as_str())
                .y_desc(spec.y_label.as_str())
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 17))
                .x_labels(8)
                .draw()
                .map_err(err)?;
            if let Some(r) = spec.reference_y {
                chart
                    .draw_series(LineSeries::new(
                        vec![(x0, r), (x1, r)],
                        GREY.stroke_width(2),
                    ))
                    .map_err(err)?;
            }
            for (i, c) in spec.curves.iter().enumerate() {
                let colour = palette(i);
                let style = ShapeStyle::from(&colour).stroke_width(3);
                let pts: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .cloned()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!spec.log_x || *x > 0.0))
                    .collect();
                match c.style {
                    CurveStyle::Line => {
                        chart
                            .draw_series(LineSeries::new(pts, style))
                            .map_err(err)?
                            .label(c.label.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], style)
                            });
                    }
                    CurveStyle::Markers => {
                        chart
                            .draw_series(
                                pts.iter()
                                    .map(|&p| TriangleMarker::new(p, 7, colour.filled())),
                            )
                            .map_err(err)?
                            .label(c.label.clone())
                            .legend(move |(x, y)| {
                                TriangleMarker::new((x + 10, y), 6, colour.filled())
                            });
                    }
                    CurveStyle::LineMarkers => {
                        chart
                            .draw_series(LineSeries::new(pts.clone(), style))
                            .map_err(err)?;
                        chart
                            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, colour.filled())))
                            .map_err(err)?
                            .label(c.label.clone())
                            .legend(move |(x, y)| {
                                EmptyElement::at((x, y))
                                    + PathElement::new(vec![(0, 0), (20, 0)], style)
                                    + Circle::new((10, 0), 4, colour.filled())
                            });
                    }
                }
            }
            chart
                .configure_series_labels()
                .position(spec.legend.position())
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .draw()
                .map_err(err)?;
        }};
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(spec.title.as_str(), (FONT, 19))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(66);
    if spec.log_x {
        body!(builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(err)?);
    } else {
        body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    Ok(())
}

fn draw_scatter_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &ScatterChart,
) -> DrawResult {
    let m = spec
        .points
        .iter()
        .fold(0.0f64, |m, p| m.max(p.0.abs()).max(p.1.abs()))
        .max(1e-3)
        * 1.08;
    let mut chart = ChartBuilder::on(area)
        .caption(spec.title.as_str(), (FONT, 19))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(66)
        .build_cartesian_2d(-m..m, -m..m)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label.as_str())
        .y_desc(spec.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(err)?;
    for (cls, colour, name) in [
        (1.0, BLUE_300, spec.class_names.0.clone()),
        (-1.0, RED_300, spec.class_names.1.clone()),
    ] {
        chart
            .draw_series(
                spec.points
                    .iter()
                    .filter(|p| p.2 == cls)
                    .map(|p| Circle::new((p.0, p.1), 2, colour.mix(0.6).filled())),
            )
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 24)).map_err(err)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (a, p) in areas.iter().zip(panels) {
        match p {
            Panel::Lines(c) => draw_line_panel(a, c)?,
            Panel::Scatter(c) => draw_scatter_panel(a, c)?,
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Renders with `$body` once into a PNG (temporary sibling, then rename) and, if an SVG path is
/// given, once more into an in-memory SVG written atomically.
macro_rules! render_both {
    ($png:expr, $svg:expr, $size:expr, |$root:ident| $body:expr) => {{
        ensure_font();
        let png: &Path = $png;
        let mut written = Vec::new();
        let tmp = temp_sibling(png, "png");
        {
            let $root = BitMapBackend::new(&tmp, $size).into_drawing_area();
            let res: DrawResult = $body;
            if let Err(reason) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(TheoryError::Plot {
                    path: png.to_path_buf(),
                    reason,
                });
            }
        }
        std::fs::rename(&tmp, png).map_err(|source| TheoryError::Io {
            path: png.to_path_buf(),
            source,
        })?;
        written.push(png.to_path_buf());
        if let Some(svg) = $svg {
            let svg: &Path = svg;
            let mut text = String::new();
            {
                let $root = SVGBackend::with_string(&mut text, $size).into_drawing_area();
                let res: DrawResult = $body;
                res.map_err(|reason| TheoryError::Plot {
                    path: svg.to_path_buf(),
                    reason,
                })?;
            }
            atomic_write(svg, text.as_bytes())?;
            written.push(svg.to_path_buf());
        }
        Ok(written)
    }};
}

/// Draws the Figure 4 reproduction to `png` (and `svg` if given). Returns the files written.
pub fn plot_figure4(png: &Path, svg: Option<&Path>, data: &Figure4Data) -> Result<Vec<PathBuf>> {
    let rows = (data.panels.len() + 1).div_ceil(3) as u32;
    render_both!(png, svg, (1680, 40 + 560 * rows), |root| draw_figure4(
        root, data
    ))
}

/// Draws panels side by side under a common title. Returns the files written.
pub fn plot_panels(
    png: &Path,
    svg: Option<&Path>,
    title: &str,
    panels: &[Panel],
) -> Result<Vec<PathBuf>> {
    let width = 780 * panels.len().max(1) as u32;
    render_both!(png, svg, (width, 660), |root| draw_panels(
        root, title, panels
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_png_and_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.png");
        let svg = dir.path().join("a.svg");
        let chart = LineChart {
            title: "εμλΣ test".into(),
            x_label: "x₁".into(),
            y_label: "y".into(),
            curves: vec![Curve {
                label: "line".into(),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                style: CurveStyle::LineMarkers,
            }],
            log_x: false,
            reference_y: Some(0.5),
            legend: LegendCorner::UpperLeft,
        };
        let files = plot_panels(&png, Some(&svg), "title", &[Panel::Lines(chart)]).unwrap();
        assert_eq!(files.len(), 2);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("εμλΣ test"));
        // Only the two outputs remain (no temporaries).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A missing directory is an error naming the file.
        let bad = dir.path().join("nope").join("b.png");
        assert!(plot_panels(&bad, None, "t", &[]).is_err());
    }
}
