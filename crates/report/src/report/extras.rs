//! The further-experiments section: one part per `sections/*.json` of the extras.
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};

pub(super) fn sections_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    if r.sections.is_empty() {
        b.push(Block::Missing(
            "no further experiments yet (sections/*.json)".into(),
        ));
        return DocSection {
            id: "sections",
            title: title("sections"),
            status: Status::Missing,
            blocks: b,
        };
    }
    for s in &r.sections {
        let v = s.verdict.as_str().to_string();
        b.push(Block::Heading(if s.title.is_empty() {
            s.id.clone()
        } else {
            s.title.clone()
        }));
        b.push(Block::Table(DocTable {
            caption: String::new(),
            headers: vec![
                "Claim / question".into(),
                "Finding".into(),
                "Verdict".into(),
            ],
            rows: vec![vec![s.claim.clone(), s.finding.clone(), v]],
            verdict_cols: vec![2],
            left_align: false,
        }));
        for t in &s.tables {
            b.push(Block::Table(DocTable {
                caption: t.caption.clone(),
                headers: t.headers.clone(),
                rows: t.rows.clone(),
                verdict_cols: t
                    .headers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.eq_ignore_ascii_case("verdict"))
                    .map(|(i, _)| i)
                    .collect(),
                left_align: false,
            }));
        }
        for img in &s.images {
            b.push(Block::Image {
                rel: img.clone(),
                caption: format!("{}: {}", s.id, img),
            });
            if !r.dir.join(img).exists() {
                ctx.miss(img);
            }
        }
    }
    DocSection {
        id: "sections",
        title: title("sections"),
        status: Status::Complete,
        blocks: b,
    }
}
