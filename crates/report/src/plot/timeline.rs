//! Timelines: intervals on horizontal lanes, e.g. a run's stages on the processes that computed
//! them, coloured by kind.
use super::axes::{draw_x_ticks, nice_ticks, tick_label};
use super::frame::{chart_on, de, render_png, Frame, AXIS, GRID, INK};
use super::legend::{draw_legend, legend_width, Mark};
use super::{color, PlotOptions};
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// One interval of a [`timeline_plot`]: on lane `lane` (an index into its lanes) from `start`
/// to `end` (x units), coloured by its kind (an index into its kinds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// The lane it sits on.
    pub lane: usize,
    /// Where it starts.
    pub start: f64,
    /// Where it ends (at or after `start`).
    pub end: f64,
    /// Its kind, which gives its colour (the legend names the kinds).
    pub kind: usize,
}

/// Timeline: `lanes` top to bottom (named at the left), each [`Span`] a bar on its lane from
/// its start to its end, coloured by kind (`kinds`, named in the legend; `opts.legend`). The x
/// range is from 0 (or the earliest start, if negative) to the latest end unless
/// `opts.x_range` fixes it; `opts.width` and `opts.height` size the image. Fails naming the
/// span whose lane or kind is out of range or whose ends are not finite or out of order.
pub fn timeline_plot(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    lanes: &[String],
    kinds: &[String],
    spans: &[Span],
    opts: &PlotOptions,
) -> Result<()> {
    if lanes.is_empty() || spans.is_empty() {
        bail!("timeline {title:?}: no lanes or no spans to plot");
    }
    for (i, s) in spans.iter().enumerate() {
        if s.lane >= lanes.len() || s.kind >= kinds.len() {
            bail!(
                "timeline {title:?}: span {i} is on lane {} of {} and of kind {} of {}",
                s.lane,
                lanes.len(),
                s.kind,
                kinds.len()
            );
        }
        if !(s.start.is_finite() && s.end.is_finite() && s.start <= s.end) {
            bail!(
                "timeline {title:?}: span {i} runs from {} to {}, not a finite interval",
                s.start,
                s.end
            );
        }
    }
    let xr = match opts.x_range {
        Some(r) => r,
        None => {
            let lo = spans.iter().map(|s| s.start).fold(0.0, f64::min);
            let hi = spans.iter().map(|s| s.end).fold(f64::MIN, f64::max);
            (lo, if hi > lo { hi } else { lo + 1.0 })
        }
    };
    let n = lanes.len();
    let yr = (0.0, n as f64);
    let mut f = Frame::big();
    let label_w = lanes
        .iter()
        .map(|l| text_width(l, f.font, false))
        .collect::<Result<Vec<f64>>>()?
        .into_iter()
        .fold(0.0, f64::max);
    f.left = (label_w as u32 + 20).max(f.left);
    render_png(path, opts.width, opts.height, |root| {
        let (w, _) = root.dim_in_pixel();
        let (area, legend) = if opts.legend == super::LegendPlace::None {
            (root.clone(), None)
        } else {
            let lw = legend_width(kinds)?.min(w / 2);
            let (a, b) = root.split_horizontally(w - lw);
            (a, Some(b))
        };
        let chart = chart_on(&area, title, xr, yr, &f)?;
        let base = area.get_base_pixel();
        let ticks = nice_ticks(xr.0, xr.1, 10);
        for x in &ticks {
            chart
                .plotting_area()
                .draw(&PathElement::new(
                    vec![(*x, yr.0), (*x, yr.1)],
                    GRID.stroke_width(1),
                ))
                .map_err(de)?;
        }
        // Lane i (from the top) is the band [n - 1 - i, n - i], its bar the middle 70%.
        for s in spans {
            let top = (n - s.lane) as f64 - 0.15;
            let bottom = (n - 1 - s.lane) as f64 + 0.15;
            let c = color(s.kind);
            chart
                .plotting_area()
                .draw(&Rectangle::new(
                    [(s.start, top), (s.end, bottom)],
                    c.filled(),
                ))
                .map_err(de)?;
            // A thin white edge keeps neighbouring bars of one kind apart.
            chart
                .plotting_area()
                .draw(&Rectangle::new(
                    [(s.start, top), (s.end, bottom)],
                    WHITE.stroke_width(1),
                ))
                .map_err(de)?;
        }
        let (px, py) = chart.plotting_area().get_pixel_range();
        let (x0, x1, y0, y1) = (
            px.start - base.0,
            px.end - base.0,
            py.start - base.1,
            py.end - base.1,
        );
        area.draw(&PathElement::new(
            vec![(x0, y0), (x0, y1), (x1, y1)],
            AXIS.stroke_width(1),
        ))
        .map_err(de)?;
        let tick_style = TextStyle::new(f.font).color(RGBColor(60, 60, 60));
        draw_x_ticks(
            &area,
            &chart,
            &ticks,
            yr.0,
            |x| tick_label(x, false),
            &tick_style,
        )?;
        for (i, lane) in lanes.iter().enumerate() {
            let (_, yy) = chart.backend_coord(&(xr.0, (n - i) as f64 - 0.5));
            draw_text(
                &area,
                lane,
                (x0 - 8, yy - base.1),
                &tick_style.anchor(HAlign::Right, VAlign::Center),
            )?;
        }
        if !x_label.is_empty() {
            draw_text(
                &area,
                x_label,
                ((x0 + x1) / 2, y1 + 8 + (f.font * 1.6) as i32),
                &TextStyle::new(f.font + 2.0)
                    .color(INK)
                    .anchor(HAlign::Center, VAlign::Top),
            )?;
        }
        if let Some(l) = legend {
            let items: Vec<_> = kinds
                .iter()
                .enumerate()
                .map(|(k, name)| (name.clone(), color(k), Mark::Box))
                .collect();
            draw_legend(&l, &items, f.top as i32)?;
        }
        Ok(())
    })
}
