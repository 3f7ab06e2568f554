//! Section `overfitting` (reviewer 1): do the models trained on the constructed datasets just
//! over-fit them? Train / test accuracy per epoch and the generalisation gap (accuracy on the
//! model's own training set minus accuracy on the real test set) of the models trained on D
//! (C_std, and the same-size clean control), D_R, D_NR, D_rand and D_det. Reads
//! `models/*.json` only.

/// The id of this extra's section (`sections/overfitting.json`) and job (`extras:overfitting`).
pub const ID: &str = "overfitting";
use super::stats::{pct, points, Accuracy, Margin};
use super::{read_model, write_section};
use crate::pipeline::Ctx;
use anyhow::Result;
use nrf_report::plot::{line_plot_with, LineSeriesSpec, PlotOptions};
use nrf_results::Verdict;
use nrf_results::{ModelResult, Section, Table};

/// The models compared, with a description of their training set.
pub const MODELS: [(&str, &str); 6] = [
    ("C_std", "D (all)"),
    ("on_control", "D (clean control subset)"),
    ("on_D_R", "D_R"),
    ("on_D_NR", "D_NR"),
    ("on_D_rand", "D_rand"),
    ("on_D_det", "D_det"),
];

/// One model's generalisation numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// Model name, e.g. "on_D_det".
    pub model: String,
    /// Training set, e.g. "D_det".
    pub trained_on: String,
    /// Accuracy on its own training set (with that set's labels).
    pub train_acc: f64,
    /// Accuracy on the real test set after training.
    pub test_acc: f64,
    /// Best per-epoch test accuracy and its (1-based) epoch (NaN / 0 when not recorded). The
    /// per-epoch curve may use a test subset (`eval.curve_n`).
    pub best_test: f64,
    /// See `best_test`.
    pub best_epoch: usize,
    /// The last epoch's test accuracy on the same curve (NaN when not recorded).
    pub last_test: f64,
    /// Images behind `train_acc` (the training set), `test_acc` (the test set) and the
    /// per-epoch curve (`best_test`, `last_test`), for their uncertainty.
    pub train_n: usize,
    /// See `train_n`.
    pub test_n: usize,
    /// See `train_n`.
    pub curve_n: usize,
}

impl GapRow {
    /// Train minus test accuracy.
    pub fn gap(&self) -> f64 {
        self.train_acc - self.test_acc
    }
    /// [`GapRow::gap`] with its standard error (binomial errors of both accuracies).
    pub fn gap_margin(&self) -> Margin {
        Margin::of(
            &[
                (1.0, &Accuracy::single(self.train_acc, self.train_n)),
                (-1.0, &Accuracy::single(self.test_acc, self.test_n)),
            ],
            0.0,
        )
    }
    /// Best per-epoch test accuracy minus the last epoch's, on the same curve (>= 0 when
    /// recorded).
    pub fn drop(&self) -> f64 {
        self.best_test - self.last_test
    }
    /// This model's gap minus `other`'s, with its standard error (the one margin rule of
    /// [`nrf_results::uncertainty`]: binomial errors of the four accuracies).
    pub fn gap_over(&self, other: &GapRow) -> Margin {
        let a = |v: f64, n: usize| Accuracy::single(v, n);
        Margin::of(
            &[
                (1.0, &a(self.train_acc, self.train_n)),
                (-1.0, &a(self.test_acc, self.test_n)),
                (-1.0, &a(other.train_acc, other.train_n)),
                (1.0, &a(other.test_acc, other.test_n)),
            ],
            0.0,
        )
    }
    /// [`GapRow::drop`] with its standard error (both accuracies on `curve_n` images).
    pub fn drop_margin(&self) -> Margin {
        Margin::between(
            &Accuracy::single(self.best_test, self.curve_n),
            &Accuracy::single(self.last_test, self.curve_n),
        )
    }
}

/// The finding's part on the same-size clean control `c`: its gap, and whether the D_R / D_NR
/// models among `rows` over-fit more than it.
fn control_part(rows: &[GapRow], c: &GapRow) -> String {
    let get = |m: &str| rows.iter().find(|r| r.model == m);
    // "Larger" by the margin rule: the difference of the gaps exceeds c SE (binomial only: 2).
    let larger = |r: &&GapRow| r.gap_over(c).verdict() == Verdict::Holds;
    let bigger: Vec<&str> = ["on_D_R", "on_D_NR"]
        .iter()
        .filter_map(|m| get(m))
        .filter(larger)
        .map(|r| r.trained_on.as_str())
        .collect();
    let smaller: Vec<String> = ["on_D_R", "on_D_NR"]
        .iter()
        .filter_map(|m| get(m))
        .filter(|r| !larger(r))
        .map(|r| format!("{} (m = {})", r.trained_on, r.gap_over(c).text()))
        .collect();
    let mut s = format!(
        "the same-size clean control's gap is {} points",
        points(c.gap())
    );
    if !smaller.is_empty() {
        s += &format!(
            "; {} {} no larger (not beyond twice the standard error)",
            smaller.join(" and "),
            if smaller.len() == 1 { "is" } else { "are" },
        );
    }
    if !bigger.is_empty() {
        s += &format!(
            "; {} over-{} more than the control",
            bigger.join(" and "),
            if bigger.len() == 1 { "fits" } else { "fit" }
        );
    }
    s
}

/// The finding, from the rows (any subset of [`MODELS`], by `model` name).
pub fn finding(rows: &[GapRow]) -> String {
    let get = |m: &str| rows.iter().find(|r| r.model == m);
    let mut parts = Vec::new();
    if let Some(largest) = rows.iter().max_by(|a, b| a.gap().total_cmp(&b.gap())) {
        parts.push(format!(
            "The largest generalisation gap is the {} model's ({} train vs {} test)",
            largest.trained_on,
            pct(largest.train_acc),
            pct(largest.test_acc)
        ));
    }
    if let Some(c) = get("on_control") {
        parts.push(control_part(rows, c));
    }
    let relabelled: Vec<&GapRow> = ["on_D_rand", "on_D_det"]
        .iter()
        .filter_map(|m| get(m))
        .collect();
    if !relabelled.is_empty() {
        let descr: Vec<String> = relabelled
            .iter()
            .map(|r| {
                format!(
                    "{} {} on its (wrong-looking) labels vs {} on the real test set",
                    r.trained_on,
                    pct(r.train_acc),
                    pct(r.test_acc)
                )
            })
            .collect();
        // Said only when the numbers show it: train above test accuracy beyond noise.
        let fitted = relabelled
            .iter()
            .filter(|r| r.gap_margin().verdict() == Verdict::Holds)
            .count();
        parts.push(if fitted == relabelled.len() {
            format!(
                "the relabelled sets are fitted better than they generalise (beyond noise), as \
                 expected since their labels are the attack targets ({})",
                descr.join("; ")
            )
        } else {
            format!(
                "the relabelled sets are fitted better than they generalise beyond noise for {} \
                 of {} ({})",
                fitted,
                relabelled.len(),
                descr.join("; ")
            )
        });
    }
    let dropped: Vec<String> = rows
        .iter()
        .filter(|r| r.drop().is_finite() && r.drop_margin().verdict() == Verdict::Holds)
        .map(|r| {
            format!(
                "{} (best {} at epoch {}, last epoch {})",
                r.trained_on,
                pct(r.best_test),
                r.best_epoch,
                pct(r.last_test)
            )
        })
        .collect();
    if dropped.is_empty() {
        parts.push(
            "no model's test accuracy falls from its best epoch by more than twice the standard \
             error, so there is no sign of classical over-fitting during training"
                .to_string(),
        );
    } else {
        parts.push(format!(
            "test accuracy falls after its best epoch for {}",
            dropped.join(", ")
        ));
    }
    let mut text = parts.join("; ");
    text.push('.');
    text
}

/// The generalisation numbers of model `name` (result `m`), trained on `on`.
fn gap_row(ctx: &Ctx, name: &str, on: &str, m: &ModelResult) -> GapRow {
    let (train_acc, _) = m.train_acc().unwrap_or((f64::NAN, true));
    let (best_epoch, best_test) = m
        .epochs
        .iter()
        .filter_map(|e| e.test_acc.map(|a| (e.epoch, a)))
        .fold((0, f64::NAN), |b, (e, a)| {
            if b.1.is_nan() || a > b.1 {
                (e, a)
            } else {
                b
            }
        });
    GapRow {
        model: name.to_string(),
        trained_on: on.to_string(),
        train_acc,
        test_acc: m.std_acc,
        best_test,
        best_epoch,
        last_test: m
            .epochs
            .iter()
            .rev()
            .find_map(|e| e.test_acc)
            .unwrap_or(f64::NAN),
        train_n: m.train_size,
        test_n: m.test_size,
        // Files written before the model recorded its curve's size used the preset's.
        curve_n: m
            .curve_n
            .unwrap_or_else(|| ctx.preset.eval.curve_subset(ctx.test.len())),
    }
}

/// What the rows' per-epoch curves were measured on, for the table's caption.
fn curve_words(ctx: &Ctx, rows: &[GapRow]) -> String {
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.curve_n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    match sizes.as_slice() {
        [k] if *k >= ctx.test.len() => "the whole test set".into(),
        [k] => format!("a fixed random subset of {k} test images"),
        ks => format!(
            "the first {} images of a fixed random subset of the test set (per model: a model \
             trained on few images measures fewer)",
            ks.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    }
}

/// The per-epoch curves of model `m` (trained on `on`) in palette colour `color`: train
/// accuracy (solid) and test accuracy (dashed), each where recorded.
fn curves(on: &str, color: usize, m: &ModelResult) -> Vec<LineSeriesSpec> {
    let mut series = Vec::new();
    let train: Vec<(f64, f64)> = m
        .epochs
        .iter()
        .map(|e| (e.epoch as f64, e.train_acc))
        .collect();
    let test: Vec<(f64, f64)> = m
        .epochs
        .iter()
        .filter_map(|e| e.test_acc.map(|a| (e.epoch as f64, a)))
        .collect();
    if !train.is_empty() {
        series.push(LineSeriesSpec {
            name: format!("{on}: train"),
            points: train,
            dashed: false,
            color: Some(color),
            intervals: Vec::new(),
        });
    }
    if !test.is_empty() {
        series.push(LineSeriesSpec {
            name: format!("{on}: test"),
            points: test,
            dashed: true,
            color: Some(color),
            intervals: Vec::new(),
        });
    }
    series
}

/// The section's plot, `plots/overfitting_curves.png`, of every model's curves. Returns its path
/// under the results dir.
fn plot(ctx: &Ctx, series: &[LineSeriesSpec]) -> Result<&'static str> {
    let plot = "plots/overfitting_curves.png";
    let opts = PlotOptions {
        width: 1100,
        ..PlotOptions::accuracy()
    };
    line_plot_with(
        ctx.path(plot),
        "Training (solid) and real-test (dashed) accuracy per epoch",
        "epoch",
        "accuracy",
        series,
        &opts,
    )?;
    Ok(plot)
}

/// The section's table: one row per model.
fn table(ctx: &Ctx, rows: &[GapRow]) -> Table {
    Table {
        caption: format!(
            "Generalisation gap = accuracy on the model's own training set (with that set's \
             labels, measured after training) minus accuracy on the whole real test set. Best test \
             = best per-epoch test accuracy and last = the last epoch's, on {}.",
            curve_words(ctx, rows)
        ),
        headers: [
            "model",
            "trained on",
            "train acc",
            "test acc",
            "gap (points)",
            "best test (epoch)",
            "last test",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.trained_on.clone(),
                    pct(r.train_acc),
                    pct(r.test_acc),
                    points(r.gap()),
                    if r.best_epoch > 0 {
                        format!("{} ({})", pct(r.best_test), r.best_epoch)
                    } else {
                        "—".into()
                    },
                    pct(r.last_test),
                ]
            })
            .collect(),
    }
}

/// Writes `sections/overfitting.json` and `plots/overfitting_curves.png`.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let mut rows = Vec::new();
    let mut series = Vec::new();
    let mut external = Vec::new();
    for (i, (name, on)) in MODELS.iter().enumerate() {
        if ctx.external(name).is_some() {
            // A model file (`[sources]`): this run did not train it, so it has no curves.
            external.push(*name);
            continue;
        }
        let m = read_model(ctx, name)?;
        rows.push(gap_row(ctx, name, on, &m));
        series.extend(curves(on, i, &m));
    }
    let plot = plot(ctx, &series)?;
    let table = table(ctx, &rows);
    let section = Section {
        id: ID.into(),
        title: "Over-fitting: train vs test accuracy (reviewer 1)".into(),
        claim: "Reviewer 1 asks whether the models trained on the constructed datasets simply \
                over-fit them, so that their test accuracy reflects memorisation rather than \
                learned features."
            .into(),
        finding: match external.as_slice() {
            [] => finding(&rows),
            names => format!(
                "{} Not listed: {}, a source model from a file (the preset's [sources]) that \
                 this run did not train.",
                finding(&rows),
                names.join(", ")
            ),
        },
        verdict: Verdict::NotApplicable,
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}
