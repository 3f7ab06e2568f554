//! Text rendering with the embedded DejaVu Sans subset through ab_glyph.
//!
//! plotters' own `ab_glyph` text backend ignores each glyph's side bearing and rounds the
//! baseline per glyph (underscores and periods land visibly off), so every label of this crate's
//! images is rasterised here instead and blended into the plotters drawing area pixel by pixel.
//! Sizes are in CSS-like pixels per em.
use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::OnceLock;

/// DejaVu Sans (regular), subset to Latin, Greek and common math symbols. Licence:
/// `assets/DejaVu-LICENSE.txt`.
pub const FONT_REGULAR: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
/// DejaVu Sans Bold, same subset.
pub const FONT_BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold-subset.ttf");

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn fonts() -> Result<&'static Fonts> {
    static F: OnceLock<std::result::Result<Fonts, String>> = OnceLock::new();
    F.get_or_init(|| {
        Ok(Fonts {
            regular: FontRef::try_from_slice(FONT_REGULAR)
                .map_err(|e| format!("embedded regular font: {e}"))?,
            bold: FontRef::try_from_slice(FONT_BOLD)
                .map_err(|e| format!("embedded bold font: {e}"))?,
        })
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

fn font(bold: bool) -> Result<&'static FontRef<'static>> {
    let f = fonts()?;
    Ok(if bold { &f.bold } else { &f.regular })
}

/// ab_glyph scales by ascent − descent; convert from pixels per em.
fn scale(f: &FontRef<'static>, px: f64) -> PxScale {
    let upem = f.units_per_em().unwrap_or(2048.0);
    PxScale::from(px as f32 * f.height_unscaled() / upem)
}

/// Horizontal anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HAlign {
    /// x is the left edge.
    Left,
    /// x is the centre.
    Center,
    /// x is the right edge.
    Right,
}

/// Vertical anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VAlign {
    /// y is the top of the line box (ascent).
    Top,
    /// y is the middle of the line box.
    Center,
    /// y is the bottom of the line box (descent).
    Bottom,
}

/// How to draw a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextStyle {
    /// Size in pixels per em.
    pub px: f64,
    /// Bold face.
    pub bold: bool,
    /// Colour.
    pub color: RGBColor,
    /// Horizontal anchor.
    pub h: HAlign,
    /// Vertical anchor.
    pub v: VAlign,
    /// Rotate 90° counter-clockwise (reads bottom to top), e.g. a y-axis label.
    pub rotated: bool,
}

impl TextStyle {
    /// Regular black text of `px` pixels, anchored top-left.
    pub fn new(px: f64) -> Self {
        TextStyle {
            px,
            bold: false,
            color: RGBColor(30, 30, 30),
            h: HAlign::Left,
            v: VAlign::Top,
            rotated: false,
        }
    }
    /// Bold variant.
    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    /// With anchors.
    pub fn anchor(mut self, h: HAlign, v: VAlign) -> Self {
        self.h = h;
        self.v = v;
        self
    }
    /// With colour.
    pub fn color(mut self, c: RGBColor) -> Self {
        self.color = c;
        self
    }
    /// Rotated 90° counter-clockwise.
    pub fn rotated(mut self) -> Self {
        self.rotated = true;
        self
    }
}

/// Advance width of `text` in pixels (one line).
pub fn text_width(text: &str, px: f64, bold: bool) -> Result<f64> {
    let f = font(bold)?;
    let sf = f.as_scaled(scale(f, px));
    let mut w = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            w += sf.kern(p, id);
        }
        w += sf.h_advance(id);
        prev = Some(id);
    }
    Ok(w as f64)
}

/// Height of a line box (ascent − descent) in pixels.
pub fn line_height(px: f64, bold: bool) -> Result<f64> {
    let f = font(bold)?;
    let sf = f.as_scaled(scale(f, px));
    Ok((sf.ascent() - sf.descent()) as f64)
}

/// Draws one line of `text` at pixel `pos` of `area` (coordinates relative to the area).
pub fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    pos: (i32, i32),
    style: &TextStyle,
) -> Result<()> {
    let f = font(style.bold)?;
    let sf = f.as_scaled(scale(f, style.px));
    let width = text_width(text, style.px, style.bold)? as f32;
    let (asc, desc) = (sf.ascent(), sf.descent());
    // Layout coordinates: u along the text, w down from the baseline.
    let u0 = match style.h {
        HAlign::Left => 0.0,
        HAlign::Center => -width / 2.0,
        HAlign::Right => -width,
    };
    let base = match style.v {
        VAlign::Top => asc,
        VAlign::Center => (asc + desc) / 2.0,
        VAlign::Bottom => desc,
    };
    let mut pen = u0;
    let mut prev = None;
    let (px0, py0) = (pos.0 as f32, pos.1 as f32);
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            pen += sf.kern(p, id);
        }
        prev = Some(id);
        let glyph = id.with_scale_and_position(sf.scale(), point(pen, base));
        pen += sf.h_advance(id);
        let Some(outline) = f.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        let mut err = None;
        outline.draw(|gx, gy, cov| {
            if cov <= 0.003 || err.is_some() {
                return;
            }
            let (u, w) = (b.min.x + gx as f32, b.min.y + gy as f32);
            let (x, y) = if style.rotated {
                (px0 + w, py0 - u)
            } else {
                (px0 + u, py0 + w)
            };
            let color = style.color.mix(cov.min(1.0) as f64);
            if let Err(e) = area.draw_pixel((x.round() as i32, y.round() as i32), &color) {
                err = Some(format!("{e:?}"));
            }
        });
        if let Some(e) = err {
            return Err(anyhow!("drawing text {text:?}: {e}"));
        }
    }
    Ok(())
}

/// Draws several lines (split at `\n`), `line_px` apart, anchored like [`draw_text`] as a block.
pub fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    pos: (i32, i32),
    line_px: i32,
    style: &TextStyle,
) -> Result<()> {
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len() as i32;
    let top = match style.v {
        VAlign::Top => pos.1,
        VAlign::Center => pos.1 - (n - 1) * line_px / 2,
        VAlign::Bottom => pos.1 - (n - 1) * line_px,
    };
    for (i, l) in lines.iter().enumerate() {
        draw_text(area, l, (pos.0, top + i as i32 * line_px), style)?;
    }
    Ok(())
}
