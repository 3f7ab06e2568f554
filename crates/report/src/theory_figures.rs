//! The theory's figures (Figure 4, Theorem 1, Theorem 3, `make_circles`), drawn from
//! [`nrf_theory::TheoryFigures`] with this crate's plotting stack ([`crate::plot::chart`]), and
//! `theory/theory.json`.
use crate::io::write_json_atomic;
use crate::plot::chart::{charts_plot, Chart, Corner, Layer, Marker};
use anyhow::{Context, Result};
use nrf_theory::figures::{
    CirclesFigure, Ellipses, Figure4, LabelledPoint, TheoryFigures, Thm1Figure, Thm3Figure,
};
use nrf_theory::{TheoryOutput, TheorySummary};
use plotters::style::RGBColor;
use std::path::Path;
use std::time::Instant;

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const BLACK: RGBColor = RGBColor(0, 0, 0);
/// Sample points of class +1 / −1 (light blue / light red).
const CLASS_POS: RGBColor = RGBColor(100, 181, 246);
const CLASS_NEG: RGBColor = RGBColor(229, 115, 115);

/// File names of the figures, in the order [`draw_theory_figures`] writes them.
pub const THEORY_FIGURES: [&str; 4] = [
    "figure4.png",
    "thm1_vulnerability.png",
    "thm3_alignment.png",
    "circles_usefulness.png",
];

/// Draws the four figures into `dir` (which must exist), each PNG written atomically; returns
/// their file names ([`THEORY_FIGURES`]).
pub fn draw_theory_figures(dir: &Path, f: &TheoryFigures) -> Result<Vec<String>> {
    figure4(&dir.join(THEORY_FIGURES[0]), &f.figure4)?;
    thm1(&dir.join(THEORY_FIGURES[1]), &f.thm1)?;
    thm3(&dir.join(THEORY_FIGURES[2]), &f.thm3)?;
    circles(&dir.join(THEORY_FIGURES[3]), &f.circles)?;
    Ok(THEORY_FIGURES.iter().map(|s| s.to_string()).collect())
}

/// Writes what [`nrf_theory::run`] computed into `dir` (created if missing): the four figures
/// and `theory.json`, its summary completed with the files written and the drawing time (the
/// `plots` entry of `section_seconds`, added to `elapsed_s`). Returns the summary as written.
pub fn write_theory(dir: &Path, out: TheoryOutput) -> Result<TheorySummary> {
    let start = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = draw_theory_figures(dir, &out.figures)?;
    files.push("theory.json".into());
    let mut summary = out.summary;
    let plots = start.elapsed().as_secs_f64();
    summary.section_seconds.push(("plots".into(), plots));
    summary.elapsed_s += plots;
    summary.files = files;
    write_json_atomic(dir.join("theory.json"), &summary)?;
    Ok(summary)
}

/// The two classes of a sample as translucent dots.
fn class_layers(points: &[LabelledPoint], names: (&str, &str), opacity: f64) -> Vec<Layer> {
    [(1.0, CLASS_POS, names.0), (-1.0, CLASS_NEG, names.1)]
        .into_iter()
        .map(|(y, c, name)| {
            let pts = points
                .iter()
                .filter(|p| p.y == y)
                .map(|p| (p.x1, p.x2))
                .collect();
            Layer::markers(name, pts, c, Marker::Dot).marker_style(2, opacity)
        })
        .collect()
}

/// Both ellipses of a fit under one legend entry.
fn ellipse_layers(e: &Ellipses, name: &str, color: RGBColor, width: u32) -> [Layer; 2] {
    [
        Layer::line(name, e.plus.clone(), color).width(width),
        Layer::line(name, e.minus.clone(), color).width(width),
    ]
}

fn figure4(path: &Path, f: &Figure4) -> Result<()> {
    // Same axes in every panel: the sample and every ellipse, with 4% to spare.
    let mut span = f
        .samples
        .iter()
        .fold(0.0f64, |m, p| m.max(p.x1.abs()).max(p.x2.abs()));
    for p in &f.panels {
        for e in std::iter::once(&p.robust_mle).chain(&p.closed_form) {
            for (a, b) in e.plus.iter() {
                span = span.max(a.abs()).max(b.abs());
            }
        }
    }
    let span = (span * 1.04).max(1e-3);
    let mut charts = Vec::new();
    for (i, p) in f.panels.iter().enumerate() {
        let title = match p.matched_lambda {
            None => "ε = 0: standard MLE".to_string(),
            Some(l) => format!("ε = {}  (matched λ = {l:.3})", p.eps),
        };
        let mut c = Chart::new(title, "x₁", "x₂");
        c.x_range = Some((-span, span));
        c.y_range = Some((-span, span));
        c.layers = class_layers(&f.samples, ("samples, y = +1", "samples, y = −1"), 0.5);
        c.layers.extend(ellipse_layers(
            &p.robust_mle,
            "robust MLE, 1-σ (numerical)",
            BLACK,
            2,
        ));
        // The closed form goes on top, dashed, so that agreement shows as alternating colours.
        if let Some(cf) = &p.closed_form {
            let name = format!(
                "Thm 2 closed form, λ = {:.3}",
                p.matched_lambda.unwrap_or(f64::NAN)
            );
            c.layers.extend(
                ellipse_layers(cf, &name, ORANGE, 3)
                    .into_iter()
                    .map(Layer::dashed),
            );
        }
        let (m0, m1) = p.robust_mle.mu;
        c.layers.push(
            Layer::markers(
                "fitted ±μ",
                vec![(m0, m1), (-m0, -m1)],
                BLACK,
                Marker::Cross,
            )
            .marker_style(7, 1.0),
        );
        // The legend in the first panel and in the first with a closed form.
        if i == 0 || (i == 1 && p.closed_form.is_some()) {
            c.legend = Some(Corner::UpperLeft);
        }
        charts.push(c);
    }
    let mut summary = Chart::new(
        "Σ_ε eigenvalues / (tr Σ_ε / 2) and ‖μ_ε‖ / ‖μ_MLE‖",
        "ε",
        "ratio (1 = isotropic / unchanged)",
    );
    summary.layers = vec![
        Layer::line(
            "largest eigenvalue / mean",
            f.largest_eigenvalue.clone(),
            BLUE,
        )
        .with_marker(Marker::Dot),
        Layer::line(
            "smallest eigenvalue / mean",
            f.smallest_eigenvalue.clone(),
            RED,
        )
        .with_marker(Marker::Dot),
        Layer::line("‖μ_ε‖ / ‖μ_MLE‖", f.mu_norm.clone(), GREEN).with_marker(Marker::Dot),
    ];
    summary.hlines = vec![(1.0, String::new())];
    summary.legend = Some(Corner::UpperRight);
    charts.push(summary);
    charts_plot(
        path,
        "Figure 4: robust MLE in the 2-D Gaussian model — μ stays put, Σ blends toward the identity as ε grows",
        3,
        (560, 560),
        &charts,
    )
}

fn thm1(path: &Path, f: &Thm1Figure) -> Result<()> {
    let charts: Vec<Chart> = f
        .panels
        .iter()
        .map(|p| {
            let mut c = Chart::new(
                format!("d = {}, tr Σ* = {}, λ = {:.2}", f.dim, f.trace, p.lambda),
                "condition number κ(Σ*)",
                "E[NLL(x+δ*) − NLL(x)]",
            );
            c.layers = vec![
                Layer::line(
                    "closed form ½(tr[(I+(λΣ*−I)⁻¹)²] − d)",
                    p.closed_form.clone(),
                    BLUE,
                )
                .with_marker(Marker::Dot),
                Layer::markers(
                    "Monte Carlo, closed-form δ*",
                    p.mc_closed_form.clone(),
                    RED,
                    Marker::Triangle,
                ),
                Layer::markers(
                    "Monte Carlo, gradient-ascent δ",
                    p.mc_gradient_ascent.clone(),
                    GREEN,
                    Marker::Triangle,
                ),
            ];
            c.legend = Some(Corner::UpperLeft);
            c
        })
        .collect();
    charts_plot(
        path,
        "Theorem 1: loss increase under the penalty adversary grows with anisotropy (fixed trace)",
        charts.len().max(1),
        (780, 616),
        &charts,
    )
}

fn thm3(path: &Path, f: &Thm3Figure) -> Result<()> {
    let mut lambda = Chart::new(
        "Theorem 2 closed form Σ_r(λ)",
        "1/λ (more robust →)",
        "cosine(∇ₓf, μ)",
    );
    lambda.log_x = true;
    lambda.layers = vec![
        Layer::line("2-D model, μ = μ*", f.cosine_2d.clone(), BLUE),
        Layer::line("2-D model, worst μ (Kantorovich)", f.worst_2d.clone(), RED),
        Layer::line(
            format!("d = {}, κ = {}, worst μ", f.dim, f.kappa),
            f.worst_high_dim.clone(),
            GREEN,
        ),
    ];
    lambda.legend = Some(Corner::UpperLeft);
    let mut eps = Chart::new(
        "ε-constrained robust MLE (numerical, 2-D sample)",
        "ε",
        "cosine(∇ₓf, μ)",
    );
    eps.layers = vec![
        Layer::line("μ = fitted μ_ε", f.eps_cosine.clone(), BLUE).with_marker(Marker::Dot),
        Layer::line("worst μ (Kantorovich)", f.eps_worst.clone(), RED).with_marker(Marker::Dot),
    ];
    eps.hlines = vec![(1.0, String::new())];
    eps.legend = Some(Corner::LowerRight);
    charts_plot(
        path,
        "Theorem 3: robust input gradients align with the inter-class direction μ",
        2,
        (780, 616),
        &[lambda, eps],
    )
}

fn circles(path: &Path, f: &CirclesFigure) -> Result<()> {
    let m = f
        .samples
        .iter()
        .fold(0.0f64, |m, p| m.max(p.x1.abs()).max(p.x2.abs()))
        .max(1e-3)
        * 1.08;
    let mut scatter = Chart::new(
        format!(
            "make_circles(n = {}, noise = {}, factor = {})",
            f.n, f.noise, f.factor
        ),
        "x₁",
        "x₂",
    );
    scatter.x_range = Some((-m, m));
    scatter.y_range = Some((-m, m));
    scatter.layers = class_layers(
        &f.samples,
        ("outer circle, y = +1", "inner circle, y = −1"),
        0.6,
    );
    scatter.legend = Some(Corner::UpperRight);
    let mut useful = Chart::new(
        "robust usefulness γ(ε) = E[inf‖δ‖≤ε y·f(x+δ)]",
        "ε (L2 radius)",
        "γ(ε)   (ε = 0: usefulness ρ)",
    );
    let colours = [BLUE, RED, GREEN];
    for (i, curve) in f.exact.iter().enumerate() {
        let name = match curve.feature.as_str() {
            "x1" => "f = x₁ (normalised)",
            "x2" => "f = x₂ (normalised)",
            "radius" => "f = ‖x‖ − E‖x‖ (normalised)",
            other => other,
        };
        useful.layers.push(Layer::line(
            format!("{name}, exact"),
            curve.points.clone(),
            colours[i % colours.len()],
        ));
    }
    useful.layers.push(Layer::markers(
        "numerical inner min (PGD), all three",
        f.numerical.clone(),
        PURPLE,
        Marker::Triangle,
    ));
    useful.hlines = vec![(0.0, String::new())];
    useful.legend = Some(Corner::LowerLeft);
    charts_plot(
        path,
        "Reviewer 2: usefulness of x₁, x₂ and the radius on make_circles",
        2,
        (780, 616),
        &[scatter, useful],
    )
}
