//! Section `train_size`: Table 1 at several training-set sizes. The paper builds D_rand and
//! D_det from the whole CIFAR-10 training set (50k images); a small preset builds them from a
//! few thousand. Non-robust features are many weak, high-dimensional cues, so a model may need
//! more images to pick them up than to pick up the few robust ones. This extra builds D_rand and
//! D_det from C_std at each size of `extras.train_sizes` (the preset's radius, steps and step
//! size; nested random subsets, so the smaller sets' images are the larger ones' first images and
//! Table 1's sets are reused at `relabel.n`), trains a fresh model on each and on the same clean
//! images (the reference a set of that size can reach), and reports their real-test accuracy.

/// The id of this extra's section (`sections/train_size.json`) and job (`extras:train_size`).
pub const ID: &str = "train_size";
use super::eps_sensitivity::FLAT_TOL;
use super::stats::{above_chance, pct, points_verdict, trend_words, Accuracy};
use super::{chance, write_section};
use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel, ModelJob, TrainingSet};
use crate::preset::{RelabelSection, TrainSection};
use crate::table1::{self, construct_at};
use anyhow::{bail, Result};
use nrf_features::relabel::TargetRule;
use nrf_report::plot::{line_plot_with, LineSeriesSpec, PlotOptions};
use nrf_results::ModelKind;
use nrf_results::Verdict;
use nrf_results::{ConstructedInfo, ModelRole, Section, Table, Varies};

/// One row: the sets of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizePoint {
    /// Number of training images.
    pub n: usize,
    /// Real-test accuracy of the model trained on the clean images (with its uncertainty; the
    /// mean over seeds for a Figure 2 / Table 1 model trained with several).
    pub clean: Accuracy,
    /// Real-test accuracy of the model trained on D_rand of this size.
    pub rand: Accuracy,
    /// Real-test accuracy of the model trained on D_det of this size.
    pub det: Accuracy,
    /// Targeted attack success (fraction C_std classifies as t) of D_rand / D_det.
    pub rand_success: f64,
    pub det_success: f64,
}

/// The dataset name for `prefix` ("D_rand" / "D_det") of `n` images when Table 1's sets have
/// `base` images (Table 1's own name at that size).
pub fn set_name(prefix: &str, n: usize, base: usize) -> String {
    if n == base {
        prefix.to_string()
    } else {
        format!("{prefix}_n{n}")
    }
}

/// Finding and verdict from the points (sorted by n) and chance. The verdict is about the
/// paper's claim that models trained on D_rand and D_det are above chance on the real test set,
/// each point decided by the one above-chance rule (the accuracy's 95% interval above chance):
/// [`points_verdict`] over every point.
pub fn finding(points: &[SizePoint], chance: f64) -> (String, Verdict) {
    if points.is_empty() {
        return ("No sizes were run.".into(), Verdict::NotApplicable);
    }
    let mut parts = Vec::new();
    let mut decided = Vec::new();
    let (first, last) = (&points[0], &points[points.len() - 1]);
    for (name, accs) in [
        ("D_rand", points.iter().map(|p| &p.rand).collect::<Vec<_>>()),
        ("D_det", points.iter().map(|p| &p.det).collect::<Vec<_>>()),
    ] {
        let vs: Vec<Verdict> = accs.iter().map(|a| above_chance(a, chance)).collect();
        let k = vs.iter().filter(|v| **v == Verdict::Holds).count();
        let below = vs.iter().filter(|v| **v == Verdict::DoesNotHold).count();
        decided.extend(vs);
        let values: Vec<f64> = accs.iter().map(|a| a.value).collect();
        let mut s = format!(
            "{name}: accuracy {} from {} at n={} to {} at n={}, above chance at {k} of {} sizes",
            trend_words(&values, FLAT_TOL),
            accs[0].short(),
            first.n,
            accs[accs.len() - 1].short(),
            last.n,
            accs.len()
        );
        if below > 0 {
            s += &format!(" (below chance at {below})");
        }
        parts.push(s);
    }
    parts.push(format!(
        "the clean reference {} from {} to {}",
        trend_words(
            &points.iter().map(|p| p.clean.value).collect::<Vec<_>>(),
            FLAT_TOL
        ),
        pct(first.clean.value),
        pct(last.clean.value)
    ));
    let det_above = points
        .iter()
        .position(|p| above_chance(&p.det, chance) == Verdict::Holds);
    let conclusion = match det_above {
        None => format!(
            "D_det stays at or below chance up to n={}: in this range its failure is not a \
             matter of the training-set size",
            last.n
        ),
        Some(0) => "D_det is above chance at every size tried from the smallest on".to_string(),
        Some(i) => format!(
            "D_det rises above chance from n={}: the smaller sets were too small for a model to \
             learn their non-robust features",
            points[i].n
        ),
    };
    let verdict = points_verdict(&decided);
    (
        format!(
            "{}; {conclusion} (chance {}).",
            parts.join("; "),
            pct(chance)
        ),
        verdict,
    )
}

/// The draw the sets of every size are prefixes of: `n_max` training images (at least as many as
/// Figure 2's subset), which must begin with Figure 2's subset.
fn draw(ctx: &Ctx, src: &Sources, n_max: usize) -> Result<Vec<usize>> {
    if n_max > ctx.train.len() {
        bail!(
            "extras.train_sizes: {n_max} is more than the {} training images",
            ctx.train.len()
        );
    }
    // The same seeded draw as Figure 2's subset, longer: a prefix of it (partial Fisher-Yates).
    let all = nrf_data::batch::random_subset(
        ctx.train.len(),
        n_max.max(src.subset.len()),
        ctx.preset.stage_seed("construct-subset"),
    )?;
    if all[..src.subset.len()] != src.subset[..] {
        bail!("extras.train_sizes: the longer draw does not extend Figure 2's subset");
    }
    Ok(all)
}

/// D_rand and D_det of `n` images (`indices`; Table 1's own at Table 1's size `base`) and a fresh
/// model on each: (real-test accuracy, attack success) of D_rand then D_det, and the share of
/// real test images on which the D_det model predicts (y+1) mod C.
fn relabelled_models(
    ctx: &mut Ctx,
    src: &Sources,
    r: &RelabelSection,
    n: usize,
    base: usize,
    indices: &[usize],
) -> Result<(Vec<(Accuracy, f64)>, f64)> {
    let mut accs = Vec::new();
    let mut det_shifted = f64::NAN;
    for (prefix, rule) in [
        ("D_rand", TargetRule::Random),
        ("D_det", TargetRule::Deterministic),
    ] {
        let name = set_name(prefix, n, base);
        let key = construct_at(ctx, &name, src, rule, r.eps, r.step_size, indices)?;
        // Table 1's size keeps Table 1's model; the others are this section's own.
        let (model, role) = if n == base {
            (format!("on_{name}"), ModelRole::Main(table1::kind(rule)))
        } else {
            let role = ModelRole::Extra {
                set: table1::kind(rule),
                varies: Varies::TrainSize,
            };
            (format!("ts_on_{name}"), role)
        };
        let m = ctx.fresh_model(&model, role, &name, &key, EvalLevel::Standard)?;
        let info: ConstructedInfo =
            nrf_data::store::read_json(ctx.path(&format!("datasets/{name}.json")))?;
        info.validate()?;
        accs.push((m.std_accuracy(), info.success_rate.unwrap_or(f64::NAN)));
        if rule == TargetRule::Deterministic {
            det_shifted = super::shifted_agreement(ctx, &model)?;
        }
    }
    Ok((accs, det_shifted))
}

/// The fresh model on the `n` clean images `indices` with their true labels (Table 1's
/// `on_control` when `is_table1`): its real-test accuracy, the reference a set of that size can
/// reach.
fn clean_model(
    ctx: &mut Ctx,
    fresh: &TrainSection,
    n: usize,
    is_table1: bool,
    indices: &[usize],
) -> Result<Accuracy> {
    let (clean_name, clean_role, trained_on) = if is_table1 {
        (
            "on_control".to_string(),
            ModelRole::Main(ModelKind::Control),
            "D_control".to_string(),
        )
    } else {
        let role = ModelRole::Extra {
            set: ModelKind::Control,
            varies: Varies::TrainSize,
        };
        (format!("ts_on_clean_n{n}"), role, format!("D_clean_n{n}"))
    };
    let clean = ctx.train.subset(indices);
    let clean_key = ctx.subset_key(indices);
    let set = TrainingSet {
        name: &trained_on,
        data: &clean,
        key: &clean_key,
    };
    let job = ModelJob::new(&ctx.preset, clean_name, clean_role, set, fresh)
        .with_level(EvalLevel::Standard);
    let m_clean = ctx.model_stage(&job)?.result;
    Ok(m_clean.std_accuracy())
}

/// The section's plot, `plots/train_size.png`: real-test accuracy of the three models against
/// the training-set size, with chance. Returns its path under the results dir.
fn plot(ctx: &Ctx, points: &[SizePoint], chance: f64) -> Result<&'static str> {
    let line = |name: &str, f: &dyn Fn(&SizePoint) -> &Accuracy, color: usize| LineSeriesSpec {
        name: name.into(),
        points: points.iter().map(|p| (p.n as f64, f(p).value)).collect(),
        dashed: false,
        color: Some(color),
        intervals: points
            .iter()
            .map(|p| {
                let i = f(p).interval();
                (i.lo, i.hi)
            })
            .collect(),
    };
    let series = vec![
        line("clean images", &|p| &p.clean, 0),
        line("D_rand", &|p| &p.rand, 1),
        line("D_det", &|p| &p.det, 2),
    ];
    let plot = "plots/train_size.png";
    let opts = PlotOptions {
        hlines: vec![(chance, "chance".into())],
        ..PlotOptions::accuracy()
    };
    line_plot_with(
        ctx.path(plot),
        "Table 1 vs training-set size: real-test accuracy (95% intervals)",
        "training images",
        "real-test accuracy",
        &series,
        &opts,
    )?;
    Ok(plot)
}

/// The section's table: one row per size, with the share of (y+1) predictions of its D_det
/// model (`det_shifted`); `r` and `epochs` are the sets' and the fresh models' settings.
fn table(
    ctx: &Ctx,
    r: &RelabelSection,
    epochs: usize,
    points: &[SizePoint],
    det_shifted: &[f64],
) -> Table {
    Table {
        caption: format!(
            "Fresh standard models ({} epochs) trained on n images: clean (true labels), D_rand \
             and D_det (targeted L2 PGD on C_std, eps {}, {} steps of {}, relabelled t). Success: \
             fraction C_std classifies as the target. Accuracy on the {} real test images, with \
             its 95% interval (several seeds: mean ± sd over seeds).",
            epochs,
            r.eps,
            r.steps,
            r.step_size,
            ctx.test.len()
        ),
        headers: [
            "n",
            "clean test acc",
            "D_rand test acc",
            "D_rand success",
            "D_det test acc",
            "D_det success",
            "D_det model predicts y+1",
        ]
        .map(String::from)
        .to_vec(),
        rows: points
            .iter()
            .zip(det_shifted)
            .map(|(p, &shift)| {
                vec![
                    p.n.to_string(),
                    p.clean.text(),
                    p.rand.text(),
                    pct(p.rand_success),
                    p.det.text(),
                    pct(p.det_success),
                    pct(shift),
                ]
            })
            .collect(),
    }
}

/// Builds the sets, trains on them, writes `sections/train_size.json` and
/// `plots/train_size.png`.
pub fn run(ctx: &mut Ctx, src: &Sources, sizes: &[usize]) -> Result<()> {
    let r = ctx.preset.relabel.clone();
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let all = draw(ctx, src, sizes.last().copied().unwrap_or(0))?;
    let fresh = ctx.preset.fresh.clone();
    let base = r.n.min(src.subset.len());
    let control_is_table1 = ctx.preset.rep_match.n.min(src.subset.len()) == base;
    let mut points = Vec::new();
    let mut det_shifted: Vec<f64> = Vec::new();
    for &n in &sizes {
        let indices = &all[..n];
        let (accs, shifted) = relabelled_models(ctx, src, &r, n, base, indices)?;
        det_shifted.push(shifted);
        let clean = clean_model(ctx, &fresh, n, n == base && control_is_table1, indices)?;
        points.push(SizePoint {
            n,
            clean,
            rand: accs[0].0.clone(),
            det: accs[1].0.clone(),
            rand_success: accs[0].1,
            det_success: accs[1].1,
        });
    }

    let chance = chance(ctx);
    let plot = plot(ctx, &points, chance)?;
    let table = table(ctx, &r, fresh.epochs, &points, &det_shifted);
    let (mut finding, verdict) = finding(&points, chance);
    finding += &super::shifted_sentence(&det_shifted);
    write_section(
        ctx,
        &Section {
            id: ID.into(),
            title: "Table 1 at several training-set sizes".into(),
            claim: "The paper builds D_rand and D_det from the whole training set; models trained \
                    on them are far above chance on the real test set. Does that depend on how \
                    many images the relabelled set has?"
                .into(),
            finding,
            verdict,
            tables: vec![table],
            images: vec![plot.into()],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(n: usize, clean: f64, rand: f64, det: f64) -> SizePoint {
        let a = |v: f64| Accuracy::single(v, 10_000);
        SizePoint {
            n,
            clean: a(clean),
            rand: a(rand),
            det: a(det),
            rand_success: 0.5,
            det_success: 0.5,
        }
    }

    #[test]
    fn names_reuse_table1_at_its_size() {
        assert_eq!(set_name("D_det", 1000, 1000), "D_det");
        assert_eq!(set_name("D_det", 5000, 1000), "D_det_n5000");
    }

    #[test]
    fn det_crossing_chance_is_reported_with_its_size() {
        let pts = [
            pt(1000, 0.8, 0.45, 0.02),
            pt(3000, 0.85, 0.5, 0.05),
            pt(10000, 0.88, 0.6, 0.3),
        ];
        let (f, v) = finding(&pts, 0.1);
        assert!(f.contains("D_det rises above chance from n=10000"), "{f}");
        assert!(f.contains("below chance at 2"), "{f}");
        assert_eq!(v, Verdict::Partly);
    }

    #[test]
    fn det_never_above_chance_says_so() {
        let pts = [pt(1000, 0.8, 0.45, 0.02), pt(3000, 0.85, 0.5, 0.03)];
        let (f, v) = finding(&pts, 0.1);
        assert!(f.contains("not a matter of the training-set size"), "{f}");
        assert_eq!(v, Verdict::Partly);
        let all_above = [pt(1000, 0.8, 0.45, 0.3), pt(3000, 0.85, 0.5, 0.4)];
        assert_eq!(finding(&all_above, 0.1).1, Verdict::Holds);
        assert_eq!(finding(&[], 0.1).1, Verdict::NotApplicable);
    }
}
