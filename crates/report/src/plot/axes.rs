//! Axes: tick values and labels, axis lines and titles, reference lines and error bars.
use super::frame::{de, Area, Chart, Frame, AXIS, GRID, INK};
use crate::text::{draw_text, text_width, HAlign, TextStyle, VAlign};
use anyhow::{bail, Result};
use plotters::prelude::*;

/// Draws a vertical error bar from `lo` to `hi` at `x` (chart coordinates) with 4-pixel caps.
pub(super) fn draw_vbar(
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
pub(super) fn draw_hbar(
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

pub(super) fn tick_label(v: f64, percent: bool) -> String {
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

pub(super) fn value_label(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.1}%", v * 100.0)
    } else {
        crate::paper::fmt_num((v * 1000.0).round() / 1000.0)
    }
}

/// Ticks of the x axis.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum XTicks {
    /// None (categories, labelled by the caller).
    None,
    /// Numeric ticks at "nice" values.
    Linear,
    /// The chart's x is log10 of the data: ticks at the powers of ten, labelled with the value.
    Log10,
}

/// Axis lines, grid lines, tick labels and axis titles.
#[allow(clippy::too_many_arguments)]
pub(super) fn draw_axes(
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
    draw_x_ticks(root, chart, &xticks, yr.0, x_tick_label, &tick_style)?;
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

/// The x axis's tick marks and labels (`label` of each tick) below the plotting area of `chart`
/// on `root`, at `y0` in the chart's coordinates (its bottom).
pub(super) fn draw_x_ticks(
    root: &Area,
    chart: &Chart,
    ticks: &[f64],
    y0: f64,
    label: impl Fn(f64) -> String,
    style: &TextStyle,
) -> Result<()> {
    let base = root.get_base_pixel();
    let y1 = chart.plotting_area().get_pixel_range().1.end - base.1;
    for x in ticks {
        let (xx, _) = chart.backend_coord(&(*x, y0));
        let xx = xx - base.0;
        root.draw(&PathElement::new(
            vec![(xx, y1), (xx, y1 + 5)],
            AXIS.stroke_width(1),
        ))
        .map_err(de)?;
        draw_text(
            root,
            &label(*x),
            (xx, y1 + 8),
            &style.anchor(HAlign::Center, VAlign::Top),
        )?;
    }
    Ok(())
}

/// Reference lines with a label (if not empty) on a white box at the right end.
pub(super) fn draw_hlines(
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
