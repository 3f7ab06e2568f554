//! The run-info section: run.json (machine, versions, stages, preset).
use super::common::{dur, stage_seconds};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::paper::fmt_num;
use crate::results::{run_time, RunInfo};

pub(super) fn run_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    let mut b = Vec::new();
    let Some(run) = &r.run else {
        let m = ctx.miss("run.json");
        b.push(Block::Missing(m));
        return DocSection {
            id: "run",
            title: title("run"),
            status: Status::Missing,
            blocks: b,
        };
    };
    let h = run.resolved_headline();
    let (nc, nc_src) = run.resolved_num_classes();
    let kv = |k: &str, v: String| vec![k.to_string(), v];
    b.push(Block::Table(DocTable {
        caption: String::new(),
        headers: vec!["Item".into(), "Value".into()],
        rows: vec![
            kv("Preset", format!("`{}`", run.preset)),
            kv("Seed", run.seed.to_string()),
            kv("Started", run_time(&run.started)),
            kv(
                "Finished",
                run.finished
                    .as_deref()
                    .map_or_else(|| "not finished".into(), run_time),
            ),
            kv("Wall time of this invocation", dur(run.total_wall_s)),
            kv("Compute time of all stages", dur(stage_seconds(run))),
            kv(
                "Headline threat model",
                h.map(|h| format!("{} ε={} ({})", h.norm, fmt_num(h.eps), h.source))
                    .unwrap_or_else(|| "unknown".into()),
            ),
            kv("Classes", format!("{nc} ({nc_src})")),
            kv("nrf version", run.nrf_version.clone()),
            kv("libtorch version", run.torch_version.clone()),
            kv(
                "Machine",
                format!(
                    "{} — {}, {} ({} CPUs)",
                    run.machine.hostname, run.machine.os, run.machine.cpu, run.machine.cpus
                ),
            ),
            kv(
                "Device",
                format!(
                    "{} (torch threads: {})",
                    run.machine.device, run.machine.torch_threads
                ),
            ),
        ],
        verdict_cols: vec![],
        left_align: true,
    }));
    if !run.crate_versions.is_empty() {
        b.push(Block::Table(DocTable {
            caption: "Crate versions.".into(),
            headers: vec!["Crate".into(), "Version".into()],
            rows: run
                .crate_versions
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect(),
            verdict_cols: vec![],
            left_align: false,
        }));
    }
    if run.stages.is_empty() {
        b.push(Block::Missing("run.json lists no stages".into()));
    } else {
        b.push(Block::Table(stages_table(run)));
    }
    if !run.missing.is_empty() {
        b.push(Block::Missing(
            "stages not completed (run.json `missing`):".into(),
        ));
        b.push(Block::List(
            run.missing.iter().map(|m| format!("`{m}`")).collect(),
        ));
    }
    b.push(Block::Details {
        summary: "Preset (configuration as used)".into(),
        body: vec![Block::Pre(run.config_toml.clone())],
    });
    let status = if run.missing.is_empty() && run.finished.is_some() {
        Status::Complete
    } else {
        Status::Partial
    };
    DocSection {
        id: "run",
        title: title("run"),
        status,
        blocks: b,
    }
}

/// The stages of run.json in execution order, with their status, time and cache key.
fn stages_table(run: &RunInfo) -> DocTable {
    DocTable {
        caption: "Stages in execution order (cached: loaded from an earlier run with the same key; wall time is the original computation's).".into(),
        headers: ["Stage", "Status", "Wall time", "Cache key", "Message"].iter().map(|s| s.to_string()).collect(),
        rows: run
            .stages
            .iter()
            .map(|s| {
                let key: String = s.key.chars().take(12).collect();
                vec![
                    format!("`{}`", s.name),
                    match s.status {
                        crate::results::StageStatus::Done => "done".into(),
                        crate::results::StageStatus::Cached => "cached".into(),
                        crate::results::StageStatus::Failed => "**failed**".into(),
                    },
                    dur(s.wall_s),
                    if key.is_empty() { "—".into() } else { format!("`{key}`") },
                    s.message.clone().unwrap_or_default(),
                ]
            })
            .collect(),
        verdict_cols: vec![],
        left_align: false,
    }
}
