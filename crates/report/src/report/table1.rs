//! The Table 1 section: non-robust features suffice (D_rand, D_det).
use super::common::{
    bar_of, claims_table, headline_text, models_of, pct, rob_cell, section_status, verdict_cell,
};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable};
use crate::paper::{cell_text, paper_numbers, select};
use crate::plot::{bar_plot_with_errors, PlotOptions};
use crate::verdict::{ClaimVerdict, ModelKind};

pub(super) fn table1_section(ctx: &mut Ctx, t1: &[ClaimVerdict]) -> DocSection {
    let mut b = vec![Block::Para(
        "The paper (Table 1) relabels adversarial examples of a standard model with their target class t: D_rand (t uniform) and D_det (t = y+1 mod C). To a human every label is wrong; a model trained on them still scores well above chance on the real test set, so the non-robust features the attack put in generalise.".into(),
    )];
    let missing_before = ctx.missing.len();
    let table = table1_table(ctx, t1);
    let present = [
        ModelKind::Std,
        ModelKind::DRand,
        ModelKind::DDet,
        ModelKind::Control,
    ]
    .iter()
    .filter(|k| ctx.r.main_model(**k).is_some())
    .count();
    b.push(Block::Table(table));
    let (nc, _) = ctx.r.num_classes();
    let mut cats = Vec::new();
    let mut vals = Vec::new();
    let mut errs = Vec::new();
    for (k, m, _) in models_of(
        ctx.r,
        &[
            ModelKind::Std,
            ModelKind::DRand,
            ModelKind::DDet,
            ModelKind::Control,
        ],
    ) {
        if let Some(m) = m {
            cats.push(match k {
                ModelKind::Std => "D".to_string(),
                ModelKind::Control => "control".to_string(),
                _ => m.trained_on.clone(),
            });
            let a = m.std_accuracy();
            vals.push(a.value);
            errs.push(bar_of(Some(&a)));
        }
    }
    if !cats.is_empty() {
        let caption = "Table 1 as bars: accuracy on the real test set (mean over seeds where there are several); error bars: 95% intervals; dashed line = chance.";
        if let Some(img) = ctx.plot("table1.png", caption, |p| {
            bar_plot_with_errors(
                p,
                "Table 1: test accuracy on D by training set",
                "Test accuracy",
                &cats,
                &[("Test accuracy".into(), vals.clone())],
                &[errs.clone()],
                &PlotOptions {
                    hlines: vec![(
                        1.0 / nc as f64,
                        format!("chance ({})", pct(1.0 / nc as f64)),
                    )],
                    legend: crate::plot::LegendPlace::None,
                    ..PlotOptions::accuracy()
                },
            )
        }) {
            b.push(img);
        }
    }
    b.push(Block::Table(claims_table(
        "Table 1 claims and how they are decided.",
        t1,
    )));
    let status = section_status(present, 4, ctx.missing.len() > missing_before);
    DocSection {
        id: "table1",
        title: title("table1"),
        status,
        blocks: b,
    }
}

pub(super) fn table1_table(ctx: &mut Ctx, verdicts: &[ClaimVerdict]) -> DocTable {
    let h = ctx.r.headline();
    let (nc, _) = ctx.r.num_classes();
    let chance = 1.0 / nc as f64;
    let numbers = paper_numbers().unwrap_or(&[]);
    let kinds = [
        ModelKind::Std,
        ModelKind::DRand,
        ModelKind::DDet,
        ModelKind::Control,
    ];
    let mut rows = Vec::new();
    for (k, m, variant) in models_of(ctx.r, &kinds) {
        let paper = |ds: &str| match k.paper_key() {
            Some(key) if !variant => {
                let sel: Vec<_> = select(numbers, "Table 1", ds, key)
                    .into_iter()
                    .filter(|n| n.metric == "std_acc")
                    .collect();
                cell_text(&sel)
            }
            Some(_) => "(variant)".into(),
            None => "— (not in the paper)".into(),
        };
        let verdict = match (k, m) {
            (ModelKind::DRand | ModelKind::DDet, Some(m)) => {
                let id = if k == ModelKind::DRand { "T1a" } else { "T1b" };
                let id = if variant {
                    format!("{id}[{}]", m.name)
                } else {
                    id.to_string()
                };
                verdict_cell(verdicts, &[id.as_str()])
            }
            (ModelKind::DRand | ModelKind::DDet, None) => "undetermined".into(),
            _ => "reference".into(),
        };
        let (cifar, rin) = (paper("CIFAR-10"), paper("Restricted ImageNet"));
        match m {
            Some(m) => rows.push(vec![
                if variant {
                    m.trained_on.clone()
                } else {
                    k.label().replace(", standard training", "")
                },
                format!("`{}`", m.name),
                m.std_accuracy().text(),
                rob_cell(m, h.as_ref()),
                cifar,
                rin,
                pct(chance),
                verdict,
            ]),
            None => {
                let miss = ctx.miss(&format!("models/{}.json", k.base_name()));
                rows.push(vec![
                    k.label().replace(", standard training", "").to_string(),
                    format!("`{}`", k.base_name()),
                    miss,
                    "—".into(),
                    cifar,
                    rin,
                    pct(chance),
                    verdict,
                ])
            }
        }
    }
    DocTable {
        caption:
            "Accuracy on the real test set (true labels) of models trained on D, D_rand and D_det, with 95% intervals [lo, hi] (several seeds: mean ± sd over seeds). A claim is above chance when the interval lies above it; verdicts show m = acc − chance ± its standard error."
                .into(),
        headers: vec![
            "Training set".into(),
            "Model".into(),
            "Test acc".into(),
            format!("Robust acc ({})", headline_text(h.as_ref())),
            "Paper (CIFAR-10)".into(),
            "Paper (Restricted ImageNet)".into(),
            "Chance".into(),
            "Verdict".into(),
        ],
        rows,
        verdict_cols: vec![7],
        left_align: false,
    }
}
