//! The training section: every model's training summary and the training curves.
use super::common::{dur, pct};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::plot::{panel_line_plot, LineSeriesSpec, Panel, PlotOptions};
use crate::results::ModelResult;

pub(super) fn training_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    if r.models.is_empty() {
        let m = ctx.miss("models/*.json");
        b.push(Block::Missing(m));
        return DocSection {
            id: "training",
            title: title("training"),
            status: Status::Missing,
            blocks: b,
        };
    }
    let mut running = false;
    let rows = r
        .models
        .iter()
        .map(|m| {
            let train = match m.train_acc() {
                Some((a, true)) => {
                    running = true;
                    format!("{}*", pct(a))
                }
                Some((a, false)) => pct(a),
                None => "—".into(),
            };
            vec![
                format!("`{}`", m.name),
                m.trained_on.clone(),
                m.arch.clone(),
                m.train_size.to_string(),
                m.adversarial.clone().unwrap_or_else(|| "—".into()),
                m.epochs.len().to_string(),
                train,
                pct(m.std_acc),
                m.gap()
                    .map(|g| format!("{:+.1}", g * 100.0))
                    .unwrap_or_else(|| "—".into()),
                dur(m.wall_s),
            ]
        })
        .collect();
    b.push(Block::Table(DocTable {
        caption: "Training summary. Gap = training accuracy − test accuracy, in points; a large gap means over-fitting (expected for small constructed sets).".into(),
        headers: ["Model", "Trained on", "Arch", "Train size", "Adversarial training", "Epochs", "Final train acc", "Test acc", "Gap (points)", "Wall time"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows,
        verdict_cols: vec![],
        left_align: false,
    }));
    if running {
        b.push(Block::Para("\\* no `final_train_acc` recorded: last epoch's running accuracy on the training batches (for adversarial training: on adversarial batches).".into()));
    }
    // One panel per Figure 2 / Table 1 model (the extras' own models are in the table above and
    // in their sections); all models when none is one of those.
    let paper: Vec<&ModelResult> = r
        .models
        .iter()
        .filter(|m| m.role.paper().is_some())
        .collect();
    let shown: Vec<&ModelResult> = if paper.is_empty() {
        r.models.iter().collect()
    } else {
        paper
    };
    let panels: Vec<Panel> = shown
        .iter()
        .map(|m| Panel {
            title: m.name.clone(),
            series: vec![
                LineSeriesSpec {
                    name: "train acc (running)".into(),
                    points: m
                        .epochs
                        .iter()
                        .map(|e| (e.epoch as f64, e.train_acc))
                        .collect(),
                    dashed: true,
                    color: Some(0),
                    intervals: Vec::new(),
                },
                LineSeriesSpec {
                    name: "test acc".into(),
                    points: m
                        .epochs
                        .iter()
                        .filter_map(|e| e.test_acc.map(|t| (e.epoch as f64, t)))
                        .collect(),
                    dashed: false,
                    color: Some(3),
                    intervals: Vec::new(),
                },
            ],
        })
        .collect();
    if r.models.iter().any(|m| !m.epochs.is_empty()) {
        if let Some(img) = ctx.plot("training_curves.png", "Training curves: accuracy per epoch (dashed: running train accuracy; solid: test accuracy).", |p| {
            panel_line_plot(p, "Training curves", "epoch", "accuracy", &panels, &PlotOptions { y_range: Some((0.0, 1.0)), percent_y: true, ..Default::default() })
        }) {
            b.push(img);
        }
    } else {
        b.push(Block::Missing("no model has per-epoch metrics".into()));
    }
    DocSection {
        id: "training",
        title: title("training"),
        status: Status::Complete,
        blocks: b,
    }
}
