//! The run-info section: run.json (machine, versions, stages, preset).
use super::common::{dur, stage_seconds};
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::paper::fmt_num;
use crate::plot::{timeline_plot, PlotOptions, Span};
use crate::results::{run_time, unix_seconds, RunInfo, StageInfo, StageStatus};

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
        if let Some(t) = Timeline::of(run) {
            let caption = format!(
                "Where this invocation's time went: each of the {} stages computed in it (cached ones are not), from its start to its end, on the process that computed it, coloured by the part of its name before `:`; the invocation took {}. A gap in a lane is time that process spent on no stage (loading, waiting for a stage another process held).",
                t.spans.len(),
                dur(run.total_wall_s)
            );
            let width = 1200;
            let height = (150 + 60 * t.lanes.len() as u32).max(260);
            if let Some(img) = ctx.plot("run_timeline.png", &caption, |p| {
                let opts = PlotOptions {
                    width,
                    height,
                    ..Default::default()
                };
                timeline_plot(
                    p,
                    "Stages over time",
                    "minutes since the run started",
                    &t.lanes,
                    &t.kinds,
                    &t.spans,
                    &opts,
                )
            }) {
                b.push(img);
            }
        }
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
                        StageStatus::Done => "done".into(),
                        StageStatus::Cached => "cached".into(),
                        StageStatus::Failed => "**failed**".into(),
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

/// The stages a run computed (status done, with a start time) as a timeline: one lane per
/// process ("worker k/n", or "main process"), minutes since the run's start, one kind per prefix
/// of the stage names (`train` of `train:C_std`; a name without `:` is its own kind). Spans are
/// ordered longest first, so that a stage run inside another is drawn over it. `None` when the
/// run's start or no stage's start is known (results of older versions).
struct Timeline {
    lanes: Vec<String>,
    kinds: Vec<String>,
    spans: Vec<Span>,
}

impl Timeline {
    fn of(run: &RunInfo) -> Option<Timeline> {
        let t0 = unix_seconds(&run.started)? as f64;
        let done: Vec<(&StageInfo, f64)> = (run.stages.iter())
            .filter(|s| s.status == StageStatus::Done)
            .filter_map(|s| Some((s, unix_seconds(s.started.as_deref()?)? as f64)))
            .collect();
        // The main process (no worker) first, then the workers by number ("2/12" before "10/12"),
        // then by name (so that equal names end up side by side for `dedup`, numbers or not).
        let number = |w: &Option<String>| {
            (w.as_deref()).map(|w| w.split('/').next().and_then(|k| k.parse::<usize>().ok()))
        };
        let mut procs: Vec<&Option<String>> = done.iter().map(|(s, _)| &s.worker).collect();
        procs.sort_by(|a, b| number(a).cmp(&number(b)).then_with(|| a.cmp(b)));
        procs.dedup();
        let mut kinds: Vec<String> = Vec::new();
        let mut spans = Vec::new();
        for (s, start) in &done {
            let kind = s.name.split(':').next().unwrap_or(&s.name);
            if !kinds.iter().any(|k| k == kind) {
                kinds.push(kind.to_string());
            }
            let start = (start - t0) / 60.0;
            spans.push(Span {
                lane: procs.iter().position(|w| **w == s.worker)?,
                start,
                end: start + s.wall_s.max(0.0) / 60.0,
                kind: kinds.iter().position(|k| k == kind)?,
            });
        }
        if spans.is_empty() {
            return None;
        }
        let lanes = (procs.iter())
            .map(|w| {
                w.as_ref()
                    .map_or("main process".into(), |w| format!("worker {w}"))
            })
            .collect();
        spans.sort_by(|a, b| (b.end - b.start).total_cmp(&(a.end - a.start)));
        Some(Timeline {
            lanes,
            kinds,
            spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Timeline;
    use crate::results::{RunInfo, StageInfo, StageStatus};

    fn stage(
        name: &str,
        status: StageStatus,
        started: Option<u64>,
        wall_s: f64,
        worker: Option<&str>,
    ) -> StageInfo {
        StageInfo {
            name: name.into(),
            status,
            wall_s,
            started: started.map(|s| format!("unix:{s}")),
            worker: worker.map(String::from),
            key: "k".into(),
            message: None,
        }
    }

    #[test]
    fn the_timeline_holds_the_stages_computed_on_their_processes() {
        let run = RunInfo {
            started: "unix:1000".into(),
            stages: vec![
                stage("data", StageStatus::Done, Some(1000), 6.0, None),
                stage(
                    "train:C_std",
                    StageStatus::Done,
                    Some(1060),
                    120.0,
                    Some("2/2"),
                ),
                stage(
                    "train:C_rob",
                    StageStatus::Done,
                    Some(1030),
                    600.0,
                    Some("1/2"),
                ),
                // Computed by an earlier run, or by a version that kept no start: left out.
                stage(
                    "eval:C_std",
                    StageStatus::Cached,
                    Some(10),
                    30.0,
                    Some("1/2"),
                ),
                stage("construct:D_R", StageStatus::Done, None, 30.0, Some("1/2")),
            ],
            ..Default::default()
        };
        let t = Timeline::of(&run).unwrap();
        assert_eq!(t.lanes, ["main process", "worker 1/2", "worker 2/2"]);
        assert_eq!(t.kinds, ["data", "train"]);
        // Longest first; minutes since the run's start.
        let got: Vec<(usize, f64, f64, usize)> = t
            .spans
            .iter()
            .map(|s| (s.lane, s.start, s.end, s.kind))
            .collect();
        assert_eq!(got, [(1, 0.5, 10.5, 1), (2, 1.0, 3.0, 1), (0, 0.0, 0.1, 0)]);
        // Workers by number, not by name.
        let many = RunInfo {
            started: "unix:1000".into(),
            stages: vec![
                stage("train:a", StageStatus::Done, Some(1000), 6.0, Some("10/12")),
                stage("train:b", StageStatus::Done, Some(1000), 6.0, Some("2/12")),
            ],
            ..Default::default()
        };
        assert_eq!(
            Timeline::of(&many).unwrap().lanes,
            ["worker 2/12", "worker 10/12"]
        );
        // Names without a number: one lane each, however the stages interleave.
        let odd = RunInfo {
            started: "unix:1000".into(),
            stages: vec![
                stage("train:a", StageStatus::Done, Some(1000), 6.0, Some("x")),
                stage("train:b", StageStatus::Done, Some(1000), 6.0, Some("y")),
                stage("train:c", StageStatus::Done, Some(1000), 6.0, Some("x")),
            ],
            ..Default::default()
        };
        assert_eq!(Timeline::of(&odd).unwrap().lanes, ["worker x", "worker y"]);
        // Nothing to draw without start times.
        let old = RunInfo {
            started: "unix:1000".into(),
            stages: vec![stage("data", StageStatus::Done, None, 6.0, None)],
            ..Default::default()
        };
        assert!(Timeline::of(&old).is_none());
    }
}
