//! PNG plots with plotters: a small reusable API (line, scatter, grouped-bar plots, panels of
//! line plots) used by the report and by the experiments for their own sections.
//!
//! All text is drawn with an embedded subset of DejaVu Sans (see [`crate::text`]), so plots need
//! no system fonts or fontconfig and look the same on every machine. plotters draws the shapes;
//! axes, ticks and labels are drawn here. Every PNG is rendered in memory and written atomically.
use crate::io::atomic_write;
use crate::text::{draw_lines, draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

pub use crate::text::{FONT_BOLD, FONT_REGULAR};

pub mod chart;

/// Colours for series (the "tab10" palette).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const AXIS: RGBColor = RGBColor(90, 90, 90);
const GRID: RGBColor = RGBColor(226, 226, 226);
const INK: RGBColor = RGBColor(30, 30, 30);

/// Colour `i` of [`PALETTE`] (cycling).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Registers the embedded fonts with plotters under "sans-serif", "serif" and "monospace", for
/// code that draws text through plotters itself (this crate does not need it). Idempotent.
pub fn register_fonts() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            plotters::style::register_font(family, FontStyle::Normal, FONT_REGULAR)
                .map_err(|_| "embedded regular font is invalid".to_string())?;
            plotters::style::register_font(family, FontStyle::Bold, FONT_BOLD)
                .map_err(|_| "embedded bold font is invalid".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Width in pixels of `text` at `px` pixels per em in the embedded font.
pub fn text_size(text: &str, px: f64, bold: bool) -> Result<u32> {
    Ok(text_width(text, px, bold)?.ceil() as u32)
}

fn de<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

/// The drawing area every drawing closure receives.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Renders `w`×`h` pixels with `draw` (on a white background) and writes a PNG atomically.
pub fn render_png(
    path: impl AsRef<Path>,
    w: u32,
    h: u32,
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    if w == 0 || h == 0 || (w as u64) * (h as u64) > 100_000_000 {
        bail!("{}: image size {w}x{h} is out of range", path.display());
    }
    let mut buf = vec![255u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        draw(&root).with_context(|| format!("drawing {}", path.display()))?;
        root.present().map_err(de)?;
    }
    save_rgb_png(path, w, h, buf)
}

/// Encodes an RGB8 buffer as PNG and writes it atomically.
pub(crate) fn save_rgb_png(path: &Path, w: u32, h: u32, buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| anyhow!("{}: buffer size does not match {w}x{h}", path.display()))?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .with_context(|| format!("encoding PNG {}", path.display()))?;
    atomic_write(path, &bytes)
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegendPlace {
    /// A column right of the plot (never covers data). The default.
    #[default]
    Right,
    /// No legend.
    None,
}

/// Options shared by the plot functions. `Default`: 960×560 px, ranges from the data, plain
/// numeric tick labels, legend on the right, values written above bars.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Fixed x range (else from the data, padded 5%).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (else from the data, padded 5%).
    pub y_range: Option<(f64, f64)>,
    /// Format y tick labels (and bar values) as percentages of fractions.
    pub percent_y: bool,
    /// Horizontal reference lines (y, label), drawn dashed.
    pub hlines: Vec<(f64, String)>,
    /// Legend placement.
    pub legend: LegendPlace,
    /// Write the value above each bar (bar plots).
    pub bar_values: bool,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: 960,
            height: 560,
            x_range: None,
            y_range: None,
            percent_y: false,
            hlines: Vec::new(),
            legend: LegendPlace::Right,
            bar_values: true,
        }
    }
}

impl PlotOptions {
    /// Options for accuracies: y fixed to [0, 1], shown in percent.
    pub fn accuracy() -> Self {
        PlotOptions {
            y_range: Some((0.0, 1.0)),
            percent_y: true,
            ..Default::default()
        }
    }
}

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

/// Checks that `intervals` is empty or has one entry per value.
fn check_intervals(what: &str, n: usize, intervals: &[(f64, f64)]) -> Result<()> {
    if !intervals.is_empty() && intervals.len() != n {
        bail!(
            "{what}: {} error bars for {n} points (need none or one per point)",
            intervals.len()
        );
    }
    Ok(())
}

/// The finite error bars of `intervals` (lo ≤ hi), for ranges.
fn finite_bars(intervals: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    intervals
        .iter()
        .copied()
        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
}

/// Draws a vertical error bar from `lo` to `hi` at `x` (chart coordinates) with 4-pixel caps.
fn draw_vbar(
    chart: &mut Chart,
    x: f64,
    (lo, hi): (f64, f64),
    c: RGBColor,
    width: u32,
) -> Result<()> {
    if !(x.is_finite() && lo.is_finite() && hi.is_finite()) || lo > hi {
        return Ok(());
    }
    let (px, plo) = chart.backend_coord(&(x, lo));
    let (_, phi) = chart.backend_coord(&(x, hi));
    let area = chart.plotting_area().strip_coord_spec();
    let base = area.get_base_pixel();
    let (px, plo, phi) = (px - base.0, plo - base.1, phi - base.1);
    let style = c.stroke_width(width);
    for seg in [
        vec![(px, plo), (px, phi)],
        vec![(px - 4, plo), (px + 4, plo)],
        vec![(px - 4, phi), (px + 4, phi)],
    ] {
        area.draw(&PathElement::new(seg, style)).map_err(de)?;
    }
    Ok(())
}

/// Draws a horizontal error bar from `lo` to `hi` at `y` (chart coordinates) with 4-pixel caps.
fn draw_hbar(
    chart: &mut Chart,
    y: f64,
    (lo, hi): (f64, f64),
    c: RGBColor,
    width: u32,
) -> Result<()> {
    if !(y.is_finite() && lo.is_finite() && hi.is_finite()) || lo > hi {
        return Ok(());
    }
    let (plo, py) = chart.backend_coord(&(lo, y));
    let (phi, _) = chart.backend_coord(&(hi, y));
    let area = chart.plotting_area().strip_coord_spec();
    let base = area.get_base_pixel();
    let (py, plo, phi) = (py - base.1, plo - base.0, phi - base.0);
    let style = c.stroke_width(width);
    for seg in [
        vec![(plo, py), (phi, py)],
        vec![(plo, py - 4), (plo, py + 4)],
        vec![(phi, py - 4), (phi, py + 4)],
    ] {
        area.draw(&PathElement::new(seg, style)).map_err(de)?;
    }
    Ok(())
}

fn check_points(what: &str, pts: &[(f64, f64)]) -> Result<()> {
    for (i, (x, y)) in pts.iter().enumerate() {
        if !x.is_finite() || !y.is_finite() {
            bail!("{what}: point {i} = ({x}, {y}) is not finite");
        }
    }
    Ok(())
}

fn padded_range(vals: impl Iterator<Item = f64>, fixed: Option<(f64, f64)>) -> Result<(f64, f64)> {
    if let Some((a, b)) = fixed {
        if !(a.is_finite() && b.is_finite() && a < b) {
            bail!("invalid axis range ({a}, {b})");
        }
        return Ok((a, b));
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        bail!("no data to plot");
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            0.5
        };
        return Ok((lo - d, hi + d));
    }
    let pad = (hi - lo) * 0.05;
    Ok((lo - pad, hi + pad))
}

/// "Nice" tick values (steps of 1, 2 or 5 × 10^k) inside [lo, hi], at most about `max_n`.
pub fn nice_ticks(lo: f64, hi: f64, max_n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![];
    }
    let raw = (hi - lo) / max_n.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|i| i as f64 * step)
        .map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v })
        .collect()
}

fn tick_label(v: f64, percent: bool) -> String {
    if percent {
        let p = v * 100.0;
        if (p - p.round()).abs() < 1e-6 {
            format!("{:.0}%", p)
        } else {
            format!("{p:.1}%")
        }
    } else {
        let a = v.abs();
        if a != 0.0 && !(1e-3..1e6).contains(&a) {
            format!("{v:.1e}")
        } else {
            crate::paper::fmt_num((v * 1e6).round() / 1e6)
        }
    }
}

fn value_label(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.1}%", v * 100.0)
    } else {
        crate::paper::fmt_num((v * 1000.0).round() / 1000.0)
    }
}

/// Pixel layout of one chart: the plotting rectangle inside `area`.
struct Frame {
    left: u32,
    right: u32,
    top: u32,
    bottom: u32,
    font: f64,
}

impl Frame {
    fn big() -> Self {
        Frame {
            left: 84,
            right: 24,
            top: 56,
            bottom: 62,
            font: 14.0,
        }
    }
    fn small() -> Self {
        Frame {
            left: 64,
            right: 14,
            top: 34,
            bottom: 46,
            font: 12.0,
        }
    }
}

/// Draws the title and builds the chart inside the frame's margins of `area`.
fn chart_on<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    xr: (f64, f64),
    yr: (f64, f64),
    f: &Frame,
) -> Result<Chart<'a, 'b>>
where
    'b: 'a,
{
    let (w, _) = area.dim_in_pixel();
    let title_px = if f.font > 13.0 { 20.0 } else { 15.0 };
    let avail = (w.saturating_sub(20)) as f64;
    for (i, line) in wrap_to(title, title_px, true, avail)?
        .iter()
        .enumerate()
        .take(2)
    {
        draw_text(
            area,
            line,
            (w as i32 / 2, 8 + i as i32 * (title_px as i32 + 6)),
            &TextStyle::new(title_px)
                .bold()
                .anchor(HAlign::Center, VAlign::Top),
        )?;
    }
    // No label areas: the plotting area is `area` minus the frame's margins.
    let chart = ChartBuilder::on(area)
        .margin_top(f.top)
        .margin_bottom(f.bottom)
        .margin_left(f.left)
        .margin_right(f.right)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(de)?;
    Ok(chart)
}

/// Ticks of the x axis.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XTicks {
    /// None (categories, labelled by the caller).
    None,
    /// Numeric ticks at "nice" values.
    Linear,
    /// The chart's x is log10 of the data: ticks at the powers of ten, labelled with the value.
    Log10,
}

/// Axis lines, grid lines, tick labels and axis titles.
#[allow(clippy::too_many_arguments)]
fn draw_axes(
    root: &Area,
    chart: &mut Chart,
    xr: (f64, f64),
    yr: (f64, f64),
    x_label: &str,
    y_label: &str,
    percent_y: bool,
    x_ticks: XTicks,
    f: &Frame,
) -> Result<()> {
    let (px, py) = chart.plotting_area().get_pixel_range();
    let base = root.get_base_pixel();
    let (x0, x1, y0, y1) = (
        px.start - base.0,
        px.end - base.0,
        py.start - base.1,
        py.end - base.1,
    );
    let yticks = nice_ticks(yr.0, yr.1, if f.font > 13.0 { 10 } else { 6 });
    let xticks = match x_ticks {
        XTicks::Linear => nice_ticks(xr.0, xr.1, if f.font > 13.0 { 10 } else { 6 }),
        XTicks::Log10 => ((xr.0 - 1e-9).ceil() as i64..=(xr.1 + 1e-9).floor() as i64)
            .map(|k| k as f64)
            .collect(),
        XTicks::None => vec![],
    };
    let x_tick_label = |x: f64| match x_ticks {
        XTicks::Log10 => tick_label(10f64.powf(x), false),
        _ => tick_label(x, false),
    };
    for y in &yticks {
        chart
            .draw_series(LineSeries::new(
                vec![(xr.0, *y), (xr.1, *y)],
                GRID.stroke_width(1),
            ))
            .map_err(de)?;
    }
    for x in &xticks {
        chart
            .draw_series(LineSeries::new(
                vec![(*x, yr.0), (*x, yr.1)],
                GRID.stroke_width(1),
            ))
            .map_err(de)?;
    }
    // Axis lines (left and bottom).
    root.draw(&PathElement::new(
        vec![(x0, y0), (x0, y1), (x1, y1)],
        AXIS.stroke_width(1),
    ))
    .map_err(de)?;
    let tick_style = TextStyle::new(f.font).color(RGBColor(60, 60, 60));
    for y in &yticks {
        let (_, yy) = chart.backend_coord(&(xr.0, *y));
        let yy = yy - base.1;
        root.draw(&PathElement::new(
            vec![(x0 - 5, yy), (x0, yy)],
            AXIS.stroke_width(1),
        ))
        .map_err(de)?;
        draw_text(
            root,
            &tick_label(*y, percent_y),
            (x0 - 8, yy),
            &tick_style.anchor(HAlign::Right, VAlign::Center),
        )?;
    }
    for x in &xticks {
        let (xx, _) = chart.backend_coord(&(*x, yr.0));
        let xx = xx - base.0;
        root.draw(&PathElement::new(
            vec![(xx, y1), (xx, y1 + 5)],
            AXIS.stroke_width(1),
        ))
        .map_err(de)?;
        draw_text(
            root,
            &x_tick_label(*x),
            (xx, y1 + 8),
            &tick_style.anchor(HAlign::Center, VAlign::Top),
        )?;
    }
    let desc = TextStyle::new(f.font + 2.0).color(INK);
    if !x_label.is_empty() {
        draw_text(
            root,
            x_label,
            ((x0 + x1) / 2, y1 + 8 + (f.font * 1.6) as i32),
            &desc.anchor(HAlign::Center, VAlign::Top),
        )?;
    }
    if !y_label.is_empty() {
        let ymax_w = yticks
            .iter()
            .map(|y| text_width(&tick_label(*y, percent_y), f.font, false).unwrap_or(0.0))
            .fold(0.0, f64::max);
        let x = (x0 - 12 - ymax_w as i32 - (f.font * 0.8) as i32).max(4);
        draw_text(
            root,
            y_label,
            (x, (y0 + y1) / 2),
            &desc.anchor(HAlign::Center, VAlign::Center).rotated(),
        )?;
    }
    Ok(())
}

/// Reference lines with a label (if not empty) on a white box at the right end.
fn draw_hlines(
    root: &Area,
    chart: &mut Chart,
    xr: (f64, f64),
    hlines: &[(f64, String)],
) -> Result<()> {
    let base = root.get_base_pixel();
    for (y, label) in hlines {
        if !y.is_finite() {
            bail!("reference line {label:?} at non-finite y");
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(xr.0, *y), (xr.1, *y)],
                8,
                5,
                RGBColor(40, 40, 40).stroke_width(2),
            ))
            .map_err(de)?;
        if label.is_empty() {
            continue;
        }
        let (xx, yy) = chart.backend_coord(&(xr.1, *y));
        let (xx, yy) = (xx - base.0 - 6, yy - base.1 - 4);
        let w = text_width(label, 13.0, false)? as i32;
        root.draw(&Rectangle::new(
            [(xx - w - 4, yy - 17), (xx + 3, yy)],
            WHITE.mix(0.85).filled(),
        ))
        .map_err(de)?;
        draw_text(
            root,
            label,
            (xx, yy - 2),
            &TextStyle::new(13.0).anchor(HAlign::Right, VAlign::Bottom),
        )?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Mark {
    Line {
        dashed: bool,
    },
    Box,
    /// A marker alone (markers-only layers of a [`chart::Chart`]).
    Symbol(chart::Marker),
    /// A line with a marker on it.
    LineSymbol {
        dashed: bool,
        marker: chart::Marker,
    },
}

fn legend_width(names: &[String]) -> Result<u32> {
    let mut w = 0.0f64;
    for n in names {
        w = w.max(text_width(n, 14.0, false)?);
    }
    Ok((w as u32 + 64).min(420))
}

fn draw_marker(area: &Area, (x, y): (i32, i32), c: RGBColor, mark: Mark) -> Result<()> {
    match mark {
        Mark::Line { dashed: false } => area
            .draw(&PathElement::new(
                vec![(x, y), (x + 30, y)],
                c.stroke_width(3),
            ))
            .map_err(de),
        Mark::Line { dashed: true } => {
            for s in [x, x + 12, x + 24] {
                area.draw(&PathElement::new(
                    vec![(s, y), (s + 7, y)],
                    c.stroke_width(3),
                ))
                .map_err(de)?;
            }
            Ok(())
        }
        Mark::Box => area
            .draw(&Rectangle::new(
                [(x + 6, y - 7), (x + 24, y + 7)],
                c.filled(),
            ))
            .map_err(de),
        Mark::Symbol(m) => chart::draw_symbol(area, (x + 15, y), c, m, 5),
        Mark::LineSymbol { dashed, marker } => {
            draw_marker(area, (x, y), c, Mark::Line { dashed })?;
            chart::draw_symbol(area, (x + 15, y), c, marker, 5)
        }
    }
}

fn draw_legend(area: &Area, items: &[(String, RGBColor, Mark)], top: i32) -> Result<()> {
    for (i, (name, c, mark)) in items.iter().enumerate() {
        let y = top + 12 + 24 * i as i32;
        draw_marker(area, (6, y), *c, *mark)?;
        draw_text(
            area,
            name,
            (44, y),
            &TextStyle::new(14.0).anchor(HAlign::Left, VAlign::Center),
        )?;
    }
    Ok(())
}

/// Splits off the legend column (if any): (plot area, legend area).
fn with_legend<'a>(
    root: &Area<'a>,
    opts: &PlotOptions,
    names: &[String],
) -> Result<(Area<'a>, Option<Area<'a>>)> {
    if opts.legend == LegendPlace::None || names.is_empty() {
        return Ok((root.clone(), None));
    }
    let (w, _) = root.dim_in_pixel();
    let lw = legend_width(names)?.min(w / 2);
    let (a, b) = root.split_horizontally(w - lw);
    Ok((a, Some(b)))
}

/// Greedy word wrap to lines at most `width` px wide.
fn wrap_to(text: &str, px: f64, bold: bool, width: f64) -> Result<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let cand = if cur.is_empty() {
            word.to_string()
        } else {
            format!("{cur} {word}")
        };
        if !cur.is_empty() && text_width(&cand, px, bold)? > width {
            lines.push(std::mem::take(&mut cur));
            cur = word.to_string();
        } else {
            cur = cand;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    Ok(lines)
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
            let c = color(s.color.unwrap_or(i));
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
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(de)?;
            for (p, iv) in s.points.iter().zip(&s.intervals) {
                draw_vbar(&mut chart, p.0, *iv, c, 1)?;
            }
            items.push((s.name.clone(), c, Mark::Line { dashed: s.dashed }));
        }
        if let Some(l) = legend {
            draw_legend(&l, &items, 56)?;
        }
        Ok(())
    })
}

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
    let bar = |j: usize, i: usize| -> Option<(f64, f64)> {
        errors
            .get(j)
            .and_then(|e| e.get(i))
            .copied()
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
    };
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
    let yr = match opts.y_range {
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
    };
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
                &main,
                &text,
                (px - base.0, py - base.1 - 3),
                &TextStyle::new(size).anchor(HAlign::Center, VAlign::Bottom),
            )?;
        }
        // Category labels under the axis, wrapped to their slot.
        let slot = (chart.backend_coord(&(1.0, 0.0)).0 - chart.backend_coord(&(0.0, 0.0)).0).max(40)
            as f64;
        let (_, y_axis) = chart.backend_coord(&(0.0, yr.0));
        for (i, cat) in categories.iter().enumerate() {
            let (px, _) = chart.backend_coord(&(i as f64, yr.0));
            let lines = wrap_to(cat, 14.0, false, slot - 6.0)?;
            draw_lines(
                &main,
                &lines.join("\n"),
                (px - base.0, y_axis - base.1 + 8),
                18,
                &TextStyle::new(14.0).anchor(HAlign::Center, VAlign::Top),
            )?;
        }
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
            draw_marker(root, (x, y), color(*ci), Mark::Line { dashed: *dashed })?;
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
                    chart
                        .draw_series(s.points.iter().map(|&q| Circle::new(q, 2, c.filled())))
                        .map_err(de)?;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(p: &Path) -> image::DynamicImage {
        image::open(p).unwrap()
    }

    #[test]
    fn plots_render_and_decode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("line.png");
        line_plot(
            &p,
            "Robust accuracy vs ε",
            "ε",
            "accuracy",
            &[
                ("C_std".into(), vec![(0.0, 0.9), (0.5, 0.1), (1.0, 0.0)]),
                ("C_rob".into(), vec![(0.0, 0.8), (0.5, 0.6), (1.0, 0.4)]),
            ],
        )
        .unwrap();
        let img = decode(&p);
        assert_eq!((img.width(), img.height()), (960, 560));
        let rgb = img.to_rgb8();
        // Both series colours appear.
        for c in [PALETTE[0], PALETTE[1]] {
            assert!(
                rgb.pixels().any(|px| px.0 == [c.0, c.1, c.2]),
                "colour {c:?} missing"
            );
        }

        let s = dir.path().join("scatter.png");
        scatter_plot(
            &s,
            "Fig 3",
            "acc",
            "transfer",
            &[(0.5, 0.4, "VGG".into()), (0.7, 0.6, "ResNet-18".into())],
        )
        .unwrap();
        decode(&s);

        let b = dir.path().join("bars.png");
        bar_plot(
            &b,
            "Figure 2",
            "accuracy",
            &[
                "D".into(),
                "D_R".into(),
                "a long category name that wraps".into(),
            ],
            &[
                ("std".into(), vec![0.9, 0.8, f64::NAN]),
                ("robust".into(), vec![0.0, 0.5, 0.1]),
            ],
            Some((0.1, "chance".into())),
        )
        .unwrap();
        decode(&b);
    }

    #[test]
    fn error_bars_are_drawn_where_the_intervals_are() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bars.png");
        let opts = PlotOptions {
            bar_values: false,
            ..PlotOptions::accuracy()
        };
        // One bar at 50% with a 95% interval [40%, 60%].
        bar_plot_with_errors(
            &p,
            "",
            "",
            &["a".into()],
            &[("s".into(), vec![0.5])],
            &[vec![(0.4, 0.6)]],
            &opts,
        )
        .unwrap();
        let img = decode(&p).to_rgb8();
        // The plotting area spans x 84..936 (categories -0.5..0.5) and y 56..490 (Frame::big with
        // the bars' bottom). The bar covers x -0.4..0.32, so its centre is pixel column
        // 84 + 0.46 * 852 ≈ 476; y = 55% is pixel row 490 - 0.55 * 434 ≈ 251, above the bar's
        // top (row 273): only the error bar is drawn there, and nothing above 60% (row 230).
        let ink = |x: u32, y: u32| (x - 3..=x + 3).any(|xx| img.get_pixel(xx, y).0 == [30, 30, 30]);
        assert!(ink(476, 251), "no error bar above the bar");
        assert!(!ink(476, 200), "error bar drawn beyond its interval");
        // Line plots: an interval per point or none; a wrong count is an error naming the series.
        let e = line_plot_with(
            &p,
            "t",
            "x",
            "y",
            &[LineSeriesSpec {
                name: "s".into(),
                points: vec![(0.0, 0.5), (1.0, 0.4)],
                intervals: vec![(0.4, 0.6)],
                ..Default::default()
            }],
            &PlotOptions::default(),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("1 error bars for 2 points"),
            "{e:#}"
        );
        let s = dir.path().join("scatter.png");
        scatter_points_plot(
            &s,
            "t",
            "x",
            "y",
            &[ScatterPoint {
                x: 0.5,
                y: 0.2,
                label: "a".into(),
                x_interval: Some((0.4, 0.6)),
                y_interval: Some((0.1, 0.3)),
            }],
            &PlotOptions::default(),
        )
        .unwrap();
        decode(&s);
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        let e = line_plot(&p, "t", "x", "y", &[("s".into(), vec![(0.0, f64::NAN)])]).unwrap_err();
        assert!(format!("{e:#}").contains("not finite"), "{e:#}");
        assert!(line_plot(&p, "t", "x", "y", &[]).is_err());
        let e = bar_plot(
            &p,
            "t",
            "y",
            &["a".into()],
            &[("s".into(), vec![1.0, 2.0])],
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("2 values for 1 categories"));
        assert!(!p.exists());
    }

    #[test]
    fn ticks_and_text() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 10),
            (0..=10).map(|i| i as f64 * 0.1).collect::<Vec<_>>()
        );
        assert_eq!(nice_ticks(-0.1, 2.1, 5), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
        let w1 = text_size("ε = 0.5", 15.0, false).unwrap();
        let w2 = text_size("ε = 0.5 and more", 15.0, false).unwrap();
        assert!(w1 > 10 && w2 > w1);
        assert!(register_fonts().is_ok());
    }
}
