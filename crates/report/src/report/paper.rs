//! The paper-numbers section: every reference number with its source.
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::paper::paper_numbers;

pub(super) fn paper_section(ctx: &mut Ctx) -> DocSection {
    let mut b = vec![Block::Para(
        "Every reference number, from `crates/report/paper_numbers.toml`. Status: **confirmed** = the paper's number as quoted by the authors' dataset release [CD]; **proxy** = the authors' library's model of the same kind [RL], not the figure's own bar; **third-party replication** = Benz et al. [PB]; **unconfirmed** = recollection of the paper (MEM), not checked.".into(),
    )];
    match paper_numbers() {
        Ok(nums) => {
            let table = |sel: Vec<&crate::paper::PaperNumber>| DocTable {
                caption: String::new(),
                headers: [
                    "Table",
                    "Dataset",
                    "Training set",
                    "Metric",
                    "Value",
                    "Source",
                    "Status",
                    "Note",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                rows: sel
                    .iter()
                    .map(|n| {
                        vec![
                            n.table.clone(),
                            n.dataset.clone(),
                            n.training_set.clone(),
                            n.metric_text(),
                            n.value_text(),
                            n.source.clone(),
                            n.status.label().to_string(),
                            n.note.clone(),
                        ]
                    })
                    .collect(),
                verdict_cols: vec![],
                left_align: false,
            };
            let (rep, main): (Vec<_>, Vec<_>) = nums
                .iter()
                .partition(|n| n.status == crate::paper::SourceStatus::Replication);
            b.push(Block::Table(table(main)));
            if !rep.is_empty() {
                b.push(Block::Details {
                    summary: format!("Benz et al. replication [PB]: {} numbers", rep.len()),
                    body: vec![Block::Table(table(rep))],
                });
            }
        }
        Err(e) => {
            ctx.problems.push(format!("{e:#}"));
            b.push(Block::Missing(format!("{e:#}")));
        }
    }
    DocSection {
        id: "paper",
        title: title("paper"),
        status: Status::Complete,
        blocks: b,
    }
}
