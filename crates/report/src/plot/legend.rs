//! Legends: the legend column right of a plot and the marks of its entries.
use super::chart;
use super::frame::{de, Area};
use super::{LegendPlace, PlotOptions};
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::Result;
use plotters::prelude::*;

#[derive(Clone, Copy)]
pub(super) enum Mark {
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

pub(super) fn legend_width(names: &[String]) -> Result<u32> {
    let mut w = 0.0f64;
    for n in names {
        w = w.max(text_width(n, 14.0, false)?);
    }
    Ok((w as u32 + 64).min(420))
}

pub(super) fn draw_marker(area: &Area, (x, y): (i32, i32), c: RGBColor, mark: Mark) -> Result<()> {
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

pub(super) fn draw_legend(area: &Area, items: &[(String, RGBColor, Mark)], top: i32) -> Result<()> {
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
pub(super) fn with_legend<'a>(
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
