//! The constructed-datasets section: how D_R, D_NR, D_rand and D_det were made, and their
//! image grids.
use super::common::{dur, opt_num, opt_pct};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use std::collections::BTreeSet;

pub(super) fn datasets_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let mut partial = false;
    let expected = ["D_R", "D_NR", "D_rand", "D_det"];
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| r.dataset(n).is_none())
        .map(|n| format!("datasets/{n}.json"))
        .collect();
    for m in &missing {
        let s = ctx.miss(m);
        b.push(Block::Missing(s));
        partial = true;
    }
    if r.datasets.is_empty() && r.grid_images.is_empty() {
        return DocSection {
            id: "datasets",
            title: title("datasets"),
            status: Status::Missing,
            blocks: b,
        };
    }
    if !r.datasets.is_empty() {
        let rows = r
            .datasets
            .iter()
            .map(|d| {
                vec![
                    format!("`{}`", d.name),
                    d.method.clone(),
                    format!("`{}`", d.source_model),
                    d.n.to_string(),
                    opt_num(d.epsilon),
                    d.steps.to_string(),
                    opt_num(Some(d.step_size)),
                    opt_pct(d.success_rate),
                    match (d.init_rel_err, d.final_rel_err) {
                        (None, None) => "—".into(),
                        (a, b) => format!("{} → {}", opt_num(a), opt_num(b)),
                    },
                    opt_num(d.mean_dist_to_x),
                    opt_num(d.mean_dist_to_x0),
                    dur(d.wall_s),
                ]
            })
            .collect();
        b.push(Block::Table(DocTable {
            caption: "Constructed training sets. Success rate: share of targeted examples the source model classifies as the target. Rel. error: mean ‖g(x_r) − g(x)‖ / ‖g(x)‖ at the start and the end of representation matching. Distances: mean ℓ2 pixel distance of the result to the target image x and to the start x0.".into(),
            headers: ["Dataset", "Method", "Source model", "n", "ε", "Steps", "Step size", "Success rate", "Rel. error start → end", "Dist. to x", "Dist. to x0", "Wall time"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
            verdict_cols: vec![],
            left_align: false,
        }));
    }
    let mut shown = BTreeSet::new();
    for d in &r.datasets {
        b.push(Block::Heading(format!("{} examples", d.name)));
        match &d.grid {
            Some(g) => {
                shown.insert(g.clone());
                b.push(Block::Image {
                    rel: g.clone(),
                    caption: format!(
                        "Samples of {} ({}, from {}).",
                        d.name, d.method, d.source_model
                    ),
                });
                if !r.dir.join(g).exists() {
                    ctx.miss(g);
                    partial = true;
                }
            }
            None => {
                let guess = format!("grids/{}.png", d.name);
                if r.grid_images.contains(&guess) {
                    shown.insert(guess.clone());
                    b.push(Block::Image {
                        rel: guess,
                        caption: format!("Samples of {}.", d.name),
                    });
                } else {
                    b.push(Block::Missing(format!(
                        "no image grid for {} (datasets/{}.json has no `grid`)",
                        d.name, d.name
                    )));
                }
            }
        }
    }
    let others: Vec<&String> = r
        .grid_images
        .iter()
        .filter(|g| !shown.contains(*g))
        .collect();
    if !others.is_empty() {
        b.push(Block::Heading("Other image grids".into()));
        for g in others {
            b.push(Block::Image {
                rel: g.clone(),
                caption: g.trim_start_matches("grids/").to_string(),
            });
        }
    }
    let status = if partial {
        Status::Partial
    } else {
        Status::Complete
    };
    DocSection {
        id: "datasets",
        title: title("datasets"),
        status,
        blocks: b,
    }
}
