//! Shared by every plot: rendering a PNG, the embedded fonts, checks of points and error bars,
//! axis ranges, a chart's frame (margins and title) and word wrapping.
use crate::io::atomic_write;
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign, FONT_BOLD, FONT_REGULAR};
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

pub(super) const AXIS: RGBColor = RGBColor(90, 90, 90);

pub(super) const GRID: RGBColor = RGBColor(226, 226, 226);

pub(super) const INK: RGBColor = RGBColor(30, 30, 30);

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

pub(super) fn de<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

/// The drawing area every drawing closure receives.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(super) type Chart<'a, 'b> =
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

/// Checks that `intervals` is empty or has one entry per value.
pub(super) fn check_intervals(what: &str, n: usize, intervals: &[(f64, f64)]) -> Result<()> {
    if !intervals.is_empty() && intervals.len() != n {
        bail!(
            "{what}: {} error bars for {n} points (need none or one per point)",
            intervals.len()
        );
    }
    Ok(())
}

/// The finite error bars of `intervals` (lo ≤ hi), for ranges.
pub(super) fn finite_bars(intervals: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    intervals
        .iter()
        .copied()
        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
}

pub(super) fn check_points(what: &str, pts: &[(f64, f64)]) -> Result<()> {
    for (i, (x, y)) in pts.iter().enumerate() {
        if !x.is_finite() || !y.is_finite() {
            bail!("{what}: point {i} = ({x}, {y}) is not finite");
        }
    }
    Ok(())
}

pub(super) fn padded_range(
    vals: impl Iterator<Item = f64>,
    fixed: Option<(f64, f64)>,
) -> Result<(f64, f64)> {
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

/// Pixel layout of one chart: the plotting rectangle inside `area`.
pub(super) struct Frame {
    pub(super) left: u32,
    pub(super) right: u32,
    pub(super) top: u32,
    pub(super) bottom: u32,
    pub(super) font: f64,
}

impl Frame {
    pub(super) fn big() -> Self {
        Frame {
            left: 84,
            right: 24,
            top: 56,
            bottom: 62,
            font: 14.0,
        }
    }
    pub(super) fn small() -> Self {
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
pub(super) fn chart_on<'a, 'b>(
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

/// Greedy word wrap to lines at most `width` px wide.
pub(super) fn wrap_to(text: &str, px: f64, bold: bool, width: f64) -> Result<Vec<String>> {
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
