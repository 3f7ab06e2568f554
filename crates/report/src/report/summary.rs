//! The summary section: the run's state, the methods and every claim's verdict.
use super::common::{dur, headline_text, pct, stage_seconds, METHODS};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::results::{run_time, Section};
use crate::verdict::{ClaimVerdict, Verdict};

pub(super) fn summary_section(
    ctx: &mut Ctx,
    f2: &[ClaimVerdict],
    t1: &[ClaimVerdict],
) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    match &r.run {
        Some(run) => {
            let state = match &run.finished {
                Some(f) => format!("finished {}", run_time(f)),
                None => "**not finished**".into(),
            };
            b.push(Block::Para(format!(
                "Preset `{}`, seed {}, started {}, {state}; wall time of this invocation {}, compute time of all stages {} (the sum of their stage times, whichever invocation ran them).",
                run.preset,
                run.seed,
                run_time(&run.started),
                dur(run.total_wall_s),
                dur(stage_seconds(run))
            )));
            if !run.missing.is_empty() {
                b.push(Block::Missing(format!(
                    "the run has not completed {} stage(s) the preset asks for (run.json `missing`): {}",
                    run.missing.len(),
                    run.missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                )));
            }
            let failed: Vec<String> = run
                .stages
                .iter()
                .filter(|s| s.status == crate::results::StageStatus::Failed)
                .map(|s| format!("`{}`: {}", s.name, s.message.clone().unwrap_or_default()))
                .collect();
            if !failed.is_empty() {
                b.push(Block::Problem(format!(
                    "failed stages: {}",
                    failed.join("; ")
                )));
            }
        }
        None => {
            let m = ctx.miss("run.json");
            b.push(Block::Missing(m));
        }
    }
    let h = r.headline();
    let (nc, nc_src) = r.num_classes();
    b.push(Block::Para(format!(
        "Robust accuracies in the verdicts are at **{}** ({}); chance is 1/{nc} = {} ({nc_src}). The rules are fixed in advance and listed with each claim; \"undetermined\" means an input is missing, \"inconclusive\" that the margin is within c standard errors of zero (c = 2, more for a margin resting on few seeds).",
        headline_text(h.as_ref()),
        h.as_ref().map(|h| h.source.as_str()).unwrap_or("no headline_eps in run.json or the preset"),
        pct(1.0 / nc as f64)
    )));
    b.push(Block::Para(format!("**Uncertainty.** {METHODS}")));
    let mut rows: Vec<Vec<String>> = f2
        .iter()
        .chain(t1.iter())
        .map(|v| {
            vec![
                v.id.clone(),
                v.claim.clone(),
                v.evidence.clone(),
                v.verdict_text(),
            ]
        })
        .collect();
    for s in &r.sections {
        let v = s.verdict.as_str().to_string();
        rows.push(vec![
            format!("`{}`", s.id),
            s.claim.clone(),
            s.finding.clone(),
            v,
        ]);
    }
    b.push(tally(f2, t1, &r.sections));
    b.push(Block::Table(DocTable {
        caption: "Every claim checked in this run.".into(),
        headers: vec![
            "Claim".into(),
            "Statement".into(),
            "Our numbers / finding".into(),
            "Verdict".into(),
        ],
        rows,
        verdict_cols: vec![3],
        left_align: false,
    }));
    if !r.problems.is_empty() {
        b.push(Block::Problem("some files could not be used:".into()));
        b.push(Block::List(r.problems.clone()));
    }
    DocSection {
        id: "summary",
        title: title("summary"),
        status: Status::Complete,
        blocks: b,
    }
}

/// The count of claims by verdict (the paper's claims and the extras').
fn tally(f2: &[ClaimVerdict], t1: &[ClaimVerdict], sections: &[Section]) -> Block {
    let all: Vec<Verdict> = f2
        .iter()
        .chain(t1.iter())
        .map(|v| v.verdict)
        .chain(sections.iter().map(|s| s.verdict))
        .collect();
    let n = |v: Verdict| all.iter().filter(|x| **x == v).count();
    Block::Para(format!(
        "**{} claims checked: {} hold, {} partly, {} do not hold, {} inconclusive, {} undetermined**{}.",
        all.iter().filter(|v| **v != Verdict::NotApplicable).count(),
        n(Verdict::Holds),
        n(Verdict::Partly),
        n(Verdict::DoesNotHold),
        n(Verdict::Inconclusive),
        n(Verdict::Undetermined),
        match n(Verdict::NotApplicable) {
            0 => String::new(),
            k => format!(" (and {k} question(s) without a verdict)"),
        }
    ))
}
