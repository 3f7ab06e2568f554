//! Section `diversity` (reviewer 3): is D_R less diverse than D? For D (the very training
//! images D_R and D_NR were made for), D_R and D_NR: the mean pairwise L2 distance between the
//! images of each class, in pixel space and in the representation of an independent standard
//! model; with the accuracy a fresh model trained on each set reaches.

/// The id of this extra's section (`sections/diversity.json`) and job (`extras:diversity`).
pub const ID: &str = "diversity";
use super::stats::{mean, mean_pairwise_l2, num, pct, ratio_words};
use super::{class_name, headline_robust, read_model, representations, write_section, Independent};
use crate::figure2::Sources;
use crate::pipeline::Ctx;
use anyhow::{bail, Result};
use nrf_data::Dataset;
use nrf_report::plot::{bar_plot_with, PlotOptions};
use nrf_results::{Section, Table, Verdict};
use tch::Tensor;

/// Relative tolerance under which two diversities count as "about the same".
pub const TOL: f64 = 0.02;

/// Mean-over-classes diversities of one set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDiversity {
    /// "D", "D_R" or "D_NR".
    pub set: String,
    /// Mean over classes of the mean pairwise pixel-space distance.
    pub pixel: f64,
    /// The same in the independent model's representation.
    pub rep: f64,
    /// Number of classes where this set's pixel / representation diversity is below D's.
    pub classes_below_d_pixel: usize,
    /// See `classes_below_d_pixel`.
    pub classes_below_d_rep: usize,
}

fn relation(ratio: f64) -> &'static str {
    match ratio_words(ratio, TOL) {
        "lower" => "below",
        "higher" => "above",
        "about the same" => "about the same as",
        _ => "not comparable with",
    }
}

/// The finding from the per-set diversities (`d` is D itself) and the number of classes.
pub fn finding(d: &SetDiversity, others: &[SetDiversity], classes: usize) -> String {
    let mut parts = Vec::new();
    for o in others {
        let rp = o.pixel / d.pixel;
        let rr = o.rep / d.rep;
        parts.push(format!(
            "{}'s per-class diversity is {} D's in pixel space ({} vs {}, ratio {:.2}; below D in {}/{} classes) and {} D's in the independent model's representation ({} vs {}, ratio {:.2}; below D in {}/{} classes)",
            o.set,
            relation(rp),
            num(o.pixel),
            num(d.pixel),
            rp,
            o.classes_below_d_pixel,
            classes,
            relation(rr),
            num(o.rep),
            num(d.rep),
            rr,
            o.classes_below_d_rep,
            classes,
        ));
    }
    let answer = match others.iter().find(|o| o.set == "D_R") {
        Some(r) => {
            let lp = ratio_words(r.pixel / d.pixel, TOL) == "lower";
            let lr = ratio_words(r.rep / d.rep, TOL) == "lower";
            match (lp, lr) {
                (true, true) => "So D_R is less diverse than D, in both spaces.",
                (true, false) => {
                    "So D_R is less diverse than D in pixel space only, not in the representation."
                }
                (false, true) => {
                    "So D_R is less diverse than D in the representation only, not in pixel space."
                }
                (false, false) => "So D_R is not less diverse than D.",
            }
        }
        None => "",
    };
    format!("{}. {answer}", parts.join("; ")).trim().to_string()
}

fn class_indices(data: &Dataset, class: i64, cap: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels[i] == class)
        .collect();
    if cap > 0 {
        v.truncate(cap);
    }
    v
}

fn index(t: &Tensor, idx: &[usize]) -> Tensor {
    let i = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
    t.index_select(0, &i.to_device(t.device()))
}

/// Per class of a set: (images, mean pairwise pixel-space distance, the same in the
/// representation).
type ClassRows = Vec<(usize, f64, f64)>;

/// The sets compared: D (the first `n` images of Figure 2's subset), D_R and D_NR, whose labels
/// must be D's.
fn sets(ctx: &Ctx, src: &Sources, n: usize) -> Result<[(&'static str, Dataset); 3]> {
    let d = ctx.train.subset(&src.subset[..n]);
    let sets = [
        ("D", d),
        ("D_R", ctx.load_constructed("D_R")?.dataset),
        ("D_NR", ctx.load_constructed("D_NR")?.dataset),
    ];
    for (name, s) in &sets[1..] {
        if s.labels != sets[0].1.labels {
            bail!("{name}: its labels differ from those of the D subset it was built for");
        }
    }
    Ok(sets)
}

/// Per class of `s` (at most `cap` images of each, 0 = all): (images, mean pairwise distance in
/// pixel space, the same in `indep`'s representation); NaN for a class of fewer than 2 images.
fn per_class(ctx: &Ctx, s: &Dataset, indep: &Independent, cap: usize) -> Result<ClassRows> {
    let batch = ctx.preset.eval.batch_size as i64;
    let all: Vec<usize> = (0..s.len()).collect();
    let x = nrf_models::images_to_tensor(s, &all, ctx.device);
    let reps = representations(&indep.model, &x, batch)?;
    let x = x.to_device(tch::Device::Cpu);
    let mut rows = Vec::new();
    for c in 0..ctx.train.num_classes {
        let idx = class_indices(s, c as i64, cap);
        if idx.len() < 2 {
            rows.push((idx.len(), f64::NAN, f64::NAN));
            continue;
        }
        let pixel = mean_pairwise_l2(&index(&x, &idx))?;
        let rep = mean_pairwise_l2(&index(&reps, &idx))?;
        rows.push((idx.len(), pixel, rep));
    }
    Ok(rows)
}

/// Each set's mean-over-classes diversities, with the number of classes where they are below
/// D's (`per[0]`).
fn summary(sets: &[(&str, Dataset)], per: &[ClassRows], classes: usize) -> Vec<SetDiversity> {
    sets.iter()
        .enumerate()
        .map(|(k, (name, _))| {
            let below = |f: fn(&(usize, f64, f64)) -> f64| {
                (0..classes)
                    .filter(|&c| f(&per[k][c]) < f(&per[0][c]))
                    .count()
            };
            SetDiversity {
                set: name.to_string(),
                pixel: mean(&per[k].iter().map(|r| r.1).collect::<Vec<_>>()),
                rep: mean(&per[k].iter().map(|r| r.2).collect::<Vec<_>>()),
                classes_below_d_pixel: below(|r| r.1),
                classes_below_d_rep: below(|r| r.2),
            }
        })
        .collect()
}

/// The distance table: one row per class (its images in D, each set's pixel-space then
/// representation distance), then the means over classes (`n` images).
fn distance_table(
    ctx: &Ctx,
    per: &[ClassRows],
    summary: &[SetDiversity],
    n: usize,
    cap: usize,
    indep: &Independent,
) -> Table {
    let mut rows: Vec<Vec<String>> = (0..ctx.train.num_classes)
        .map(|c| {
            let mut r = vec![class_name(ctx, c), per[0][c].0.to_string()];
            r.extend(per.iter().map(|p| num(p[c].1)));
            r.extend(per.iter().map(|p| num(p[c].2)));
            r
        })
        .collect();
    let mut last = vec!["mean over classes".to_string(), n.to_string()];
    last.extend(summary.iter().map(|s| num(s.pixel)));
    last.extend(summary.iter().map(|s| num(s.rep)));
    rows.push(last);
    Table {
        caption: format!(
            "Mean pairwise L2 distance between images of the same class{}. Pixel space: images in \
             [0, 1]. Representation: g(x) of the independent model, {}.",
            if cap > 0 {
                format!(" (at most {cap} images per class)")
            } else {
                String::new()
            },
            indep.description
        ),
        headers: [
            "class",
            "n",
            "pixel: D",
            "pixel: D_R",
            "pixel: D_NR",
            "rep: D",
            "rep: D_R",
            "rep: D_NR",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The accuracy table: Figure 2's fresh model on each set, its test and headline robust
/// accuracy.
fn accuracy_table(ctx: &Ctx) -> Result<Table> {
    let eps = ctx.preset.eval.headline_eps;
    let mut acc_rows = Vec::new();
    for (set, model) in [("D", "on_control"), ("D_R", "on_D_R"), ("D_NR", "on_D_NR")] {
        let m = read_model(ctx, model)?;
        acc_rows.push(vec![
            set.to_string(),
            model.to_string(),
            pct(m.std_acc),
            pct(headline_robust(ctx, &m)),
        ]);
    }
    Ok(Table {
        caption: "Real-test accuracy of a fresh standard model trained on each set (the same \
                  models as Figure 2; D = the clean control subset)."
            .into(),
        headers: vec![
            "set".into(),
            "model".into(),
            "test acc".into(),
            format!("robust acc (L2 eps={eps})"),
        ],
        rows: acc_rows,
    })
}

/// The section's plots, `plots/diversity_{pixel,rep}.png`: each set's distance per class in
/// pixel space, then in the representation. Returns their paths under the results dir.
fn plots(ctx: &Ctx, sets: &[(&str, Dataset)], per: &[ClassRows]) -> Result<Vec<String>> {
    let cats: Vec<String> = (0..ctx.train.num_classes)
        .map(|c| class_name(ctx, c))
        .collect();
    let mut images = Vec::new();
    for (k, (file, what)) in [
        ("plots/diversity_pixel.png", "pixel space"),
        (
            "plots/diversity_rep.png",
            "independent model's representation",
        ),
    ]
    .iter()
    .enumerate()
    {
        let series: Vec<(String, Vec<f64>)> = sets
            .iter()
            .zip(per)
            .map(|((name, _), p)| {
                (
                    name.to_string(),
                    p.iter().map(|r| if k == 0 { r.1 } else { r.2 }).collect(),
                )
            })
            .collect();
        let opts = PlotOptions {
            width: 1100,
            bar_values: false,
            ..Default::default()
        };
        bar_plot_with(
            ctx.path(file),
            &format!("Mean pairwise distance within each class, {what}"),
            "mean pairwise L2 distance",
            &cats,
            &series,
            &opts,
        )?;
        images.push(file.to_string());
    }
    Ok(images)
}

/// Writes `sections/diversity.json` and `plots/diversity_{pixel,rep}.png`.
pub fn run(ctx: &mut Ctx, src: &Sources, indep: &Independent) -> Result<()> {
    let n = ctx.preset.rep_match.n.min(src.subset.len());
    let cap = ctx.preset.extras.diversity_max_per_class;
    let sets = sets(ctx, src, n)?;
    let classes = ctx.train.num_classes;
    // per set: per class (n, pixel, rep)
    let mut per: Vec<ClassRows> = Vec::new();
    for (_, s) in &sets {
        per.push(per_class(ctx, s, indep, cap)?);
    }
    let summary = summary(&sets, &per, classes);
    let counted = (0..classes).filter(|&c| per[0][c].0 >= 2).count();
    let dist_table = distance_table(ctx, &per, &summary, n, cap, indep);
    let acc_table = accuracy_table(ctx)?;
    let images = plots(ctx, &sets, &per)?;
    let section = Section {
        id: ID.into(),
        title: "Diversity of D_R and D_NR (reviewer 3)".into(),
        claim: "Reviewer 3 asks whether D_R is simply less diverse than D (which could explain a \
                model trained on it being different), measured by distances between images of a \
                class."
            .into(),
        finding: finding(&summary[0], &summary[1..], counted),
        verdict: Verdict::NotApplicable,
        tables: vec![dist_table, acc_table],
        images,
    };
    write_section(ctx, &section)
}
