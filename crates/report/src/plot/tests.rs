//! Tests of the plots: they render, decode, draw error bars where the intervals are, and
//! reject bad input.
use super::*;
use std::path::Path;

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
