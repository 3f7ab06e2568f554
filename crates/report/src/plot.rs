//! PNG plots with plotters: a small reusable API (line, scatter, grouped-bar plots, panels of
//! line plots) used by the report and by the experiments for their own sections.
//!
//! All text is drawn with an embedded subset of DejaVu Sans (see [`crate::text`]), so plots need
//! no system fonts or fontconfig and look the same on every machine. plotters draws the shapes;
//! axes, ticks and labels are drawn here. Every PNG is rendered in memory and written atomically.
//!
//! One file per plot kind: `lines` (line plots and panels), `scatter`, `bars`, `timeline`, [`chart`]
//! (figures of several charts); shared by them: `frame` (rendering, ranges, a chart's frame),
//! `axes` (ticks, axis lines, reference lines, error bars) and `legend`.
use plotters::prelude::*;

pub use crate::text::{FONT_BOLD, FONT_REGULAR};

mod axes;
mod bars;
pub mod chart;
mod frame;
mod legend;
mod lines;
mod scatter;
#[cfg(test)]
mod tests;
mod timeline;

pub use axes::nice_ticks;
pub use bars::{bar_plot, bar_plot_with, bar_plot_with_errors};
pub(crate) use frame::save_rgb_png;
pub use frame::{register_fonts, render_png, text_size, Area};
pub use lines::{line_plot, line_plot_with, panel_line_plot, LineSeriesSpec, Panel};
pub use scatter::{scatter_plot, scatter_plot_with, scatter_points_plot, ScatterPoint};
pub use timeline::{timeline_plot, Span};

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

/// Colour `i` of [`PALETTE`] (cycling).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The point marker of series `i` of a line plot: a dot for the palette's first ten series, then
/// triangles, then crosses, so that series that share a colour ([`color`] cycles) still differ.
pub fn marker(i: usize) -> chart::Marker {
    use chart::Marker::*;
    [Dot, Triangle, Cross][(i / PALETTE.len()) % 3]
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
