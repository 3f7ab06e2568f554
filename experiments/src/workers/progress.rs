//! The workers' progress line: the share of the cost plan's FLOPs ([`crate::plan`]) done, its
//! rate, and the time left.
//!
//! The time left is priced per stage kind (training, construction, evaluation, ensemble,
//! extras): the plan's FLOPs are a good measure of the work within a kind but not across kinds
//! (it counts robust evaluation as the full attack loop, an upper bound: in the default run from
//! scratch the ensembles ran at 75 planned GFLOP/s of stage time, training at 39, constructions
//! at 31). So once a kind has finished stages, its remaining FLOPs are priced at the seconds per
//! FLOP those stages took (their records' `wall_s`), shared by the running workers; a kind with
//! none finished yet is priced at the run's overall rate so far (planned work done per minute of
//! wall time). Replayed on the log of the default run from scratch (session 13, finished stages
//! only): elapsed + time left within 0.92-0.99 of the true total from minute 20 to the end,
//! where the overall rate alone (the line before) gave 0.77-1.17. Along a real run of the same
//! work (session 14, stopped at minute 41): 0.86-0.91 from minute 20 on, but 0.64-0.77 in minutes
//! 7-13, while C_std's is the only finished training (docs/performance.md).
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One planned stage: the record files of its seeds, its FLOPs per seed and its kind.
pub(super) struct PlannedStage {
    pub(super) files: Vec<PathBuf>,
    pub(super) flops_per_seed: f64,
    pub(super) kind: String,
}

/// The run's progress, measured in the cost plan's FLOPs of the stages whose records are in
/// `stages/`.
pub(super) struct Progress {
    pub(super) stages: Vec<PlannedStage>,
    pub(super) total: f64,
    /// The run's work folder (`work/`): the stages under way, with their checkpoints and chunks.
    pub(super) work: PathBuf,
    /// The `wall_s` of each record read so far (records are written once).
    walls: RefCell<HashMap<PathBuf, Option<f64>>>,
}

/// Where the run is: per seed of a planned stage, whether it is done and what is left of it.
struct Snapshot {
    /// The fraction of the planned FLOPs done (stages under way count by their share).
    done: f64,
    /// Per kind: (seconds, FLOPs) of its finished stages whose records carry a wall time.
    finished: HashMap<String, (f64, f64)>,
    /// Per kind: its FLOPs not done yet.
    left: HashMap<String, f64>,
}

impl Progress {
    pub(super) fn new(
        preset: &crate::preset::Preset,
        results: &Path,
        data_dir: Option<&Path>,
    ) -> Option<Progress> {
        let opts = crate::plan::PlanOptions {
            gflops: Some(1.0), // FLOPs only: no time is computed from it
            data_dir: data_dir.map(Path::to_path_buf),
            // Loading and timing the source model files at every run's start buys no precision
            // a progress line needs.
            untimed_sources: true,
        };
        let plan = crate::plan::plan(preset, &opts).ok()?;
        let file = |name: &str| results.join(format!("stages/{}.json", name.replace(':', "_")));
        let stages: Vec<PlannedStage> = (plan.stages.iter())
            .map(|s| {
                let mut files = vec![file(&s.name)];
                files.extend((1..s.seeds).map(|k| file(&format!("{}~s{k}", s.name))));
                PlannedStage {
                    flops_per_seed: s.flops / files.len() as f64,
                    files,
                    kind: s.kind.clone(),
                }
            })
            .collect();
        Progress::of(stages, results.join("work"))
    }

    /// The progress of `stages` (`None` when they plan no work), whose work folder is `work`.
    pub(super) fn of(stages: Vec<PlannedStage>, work: PathBuf) -> Option<Progress> {
        let total = (stages.iter())
            .map(|s| s.flops_per_seed * s.files.len() as f64)
            .sum::<f64>();
        (total > 0.0).then_some(Progress {
            stages,
            total,
            work,
            walls: RefCell::default(),
        })
    }

    /// The fraction of the planned FLOPs done: the stages that have their records, and of each
    /// stage under way the share its work folder shows (a training's checkpointed epochs, a
    /// construction's stored chunks).
    pub(super) fn done(&self) -> f64 {
        self.snapshot().done
    }

    /// The wall time a stage's record gives (read once per record).
    fn wall_s(&self, record: &Path) -> Option<f64> {
        let mut walls = self.walls.borrow_mut();
        *walls.entry(record.to_path_buf()).or_insert_with(|| {
            let text = std::fs::read_to_string(record).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v.get("wall_s")?
                .as_f64()
                .filter(|w| w.is_finite() && *w > 0.0)
        })
    }

    fn snapshot(&self) -> Snapshot {
        // The work folders `<stage>-<key>` there are now.
        let under_way: Vec<(String, PathBuf)> = std::fs::read_dir(&self.work)
            .map(|entries| {
                (entries.flatten())
                    .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
                    .collect()
            })
            .unwrap_or_default();
        let partial = |record: &Path| -> f64 {
            let Some(stem) = record.file_stem().and_then(|s| s.to_str()) else {
                return 0.0;
            };
            let prefix = format!("{stem}-");
            (under_way.iter())
                .filter(|(name, _)| name.starts_with(&prefix))
                .filter_map(|(_, dir)| {
                    nrf_features::chunks::done_fraction(&dir.join("chunks")).or_else(|| {
                        nrf_models::checkpoint::training_done_fraction(&dir.join("ckpt"))
                    })
                })
                .fold(0.0, f64::max)
        };
        let mut s = Snapshot {
            done: 0.0,
            finished: HashMap::new(),
            left: HashMap::new(),
        };
        for stage in &self.stages {
            let f = stage.flops_per_seed;
            for record in &stage.files {
                let share = if record.exists() {
                    if let Some(w) = self.wall_s(record) {
                        let e = s.finished.entry(stage.kind.clone()).or_default();
                        *e = (e.0 + w, e.1 + f);
                    }
                    1.0
                } else {
                    partial(record)
                };
                s.done += f * share;
                *s.left.entry(stage.kind.clone()).or_default() += f * (1.0 - share);
            }
        }
        s.done /= self.total;
        s
    }

    /// "x% of the planned work done (y% a minute), about z min left" after `mins` minutes with
    /// `workers` workers running, `first` having been done at the start.
    pub(super) fn line(&self, first: f64, mins: f64, workers: usize) -> String {
        let s = self.snapshot();
        let rate = (s.done - first) / mins.max(1e-9);
        let left = match minutes_left(&s, rate * self.total, workers) {
            Some(m) => format!("about {m:.0} min left"),
            None => "time left not known yet".into(),
        };
        format!(
            "{:.0}% of the planned work done ({:.1}% a minute), {left}",
            100.0 * s.done,
            100.0 * rate
        )
    }
}

/// Minutes left: each kind's FLOPs left at the seconds per FLOP of its finished stages, shared
/// by `workers`; a kind without finished stages at `flops_per_min`, the overall rate so far
/// (all workers together). `None` while neither says anything.
fn minutes_left(s: &Snapshot, flops_per_min: f64, workers: usize) -> Option<f64> {
    let mut minutes = 0.0;
    for (kind, &left) in &s.left {
        if left <= 0.0 {
            continue;
        }
        minutes += match s.finished.get(kind) {
            Some(&(secs, flops)) if flops > 0.0 => {
                left * secs / flops / 60.0 / workers.max(1) as f64
            }
            _ if flops_per_min > 0.0 => left / flops_per_min,
            _ => return None,
        };
    }
    Some(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(kind: &str, files: Vec<PathBuf>, flops: f64) -> PlannedStage {
        PlannedStage {
            flops_per_seed: flops / files.len() as f64,
            files,
            kind: kind.into(),
        }
    }

    #[test]
    fn progress_counts_the_stages_under_way_by_their_chunks_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("stages")).unwrap();
        let record = |name: &str| r.join(format!("stages/{name}.json"));
        // Done: its record. Under way: 1 of 4 chunks stored. Not started: nothing.
        std::fs::write(record("train_C_std"), b"{}").unwrap();
        let chunks = r.join("work/construct_D_R-0123abcd/chunks");
        std::fs::create_dir_all(&chunks).unwrap();
        std::fs::write(chunks.join("n_chunks"), b"4").unwrap();
        std::fs::write(chunks.join("chunk_00000.safetensors"), b"x").unwrap();
        // Another stage's folder whose name starts alike is not this one's.
        let other = r.join("work/construct_D_R_cos-0123abcd/chunks");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("n_chunks"), b"1").unwrap();
        std::fs::write(other.join("chunk_00000.safetensors"), b"x").unwrap();
        let seeds = vec![record("train_on_D_R"), record("train_on_D_R~s1")];
        let p = Progress::of(
            vec![
                stage("train", vec![record("train_C_std")], 1.0),
                stage("construct", vec![record("construct_D_R")], 2.0),
                stage("train", seeds, 1.0),
            ],
            r.join("work"),
        )
        .unwrap();
        assert!(
            (p.done() - (1.0 + 2.0 * 0.25) / 4.0).abs() < 1e-12,
            "{}",
            p.done()
        );
        assert!(Progress::of(vec![], r.join("work")).is_none());
    }

    #[test]
    fn time_left_is_priced_per_kind_once_the_kind_has_finished_stages() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("stages")).unwrap();
        let record = |name: &str| r.join(format!("stages/{name}.json"));
        // A finished training: 60 s for 1 GFLOP. A finished evaluation without a wall time
        // prices nothing.
        std::fs::write(record("train_C_std"), br#"{"key": "k", "wall_s": 60.0}"#).unwrap();
        std::fs::write(record("eval_C_std"), b"{}").unwrap();
        let g = 1e9;
        let p = Progress::of(
            vec![
                stage("train", vec![record("train_C_std")], g),
                stage("train", vec![record("train_C_rob")], 2.0 * g),
                stage("construct", vec![record("construct_D_R")], g),
                stage("eval", vec![record("eval_C_std")], g),
                stage("eval", vec![record("eval_C_rob")], g),
            ],
            r.join("work"),
        )
        .unwrap();
        let s = p.snapshot();
        assert!((s.done - 2.0 / 6.0).abs() < 1e-12);
        // Training left: 2 GFLOP at 60 s per GFLOP over 2 workers = 1 min. Construction and
        // evaluation (no priced stage yet): 2 GFLOP at the overall 0.5 GFLOP a minute = 4 min.
        let m = minutes_left(&s, 0.5 * g, 2).unwrap();
        assert!((m - 5.0).abs() < 1e-9, "{m}");
        // One worker left: the training part takes twice as long.
        let m = minutes_left(&s, 0.5 * g, 1).unwrap();
        assert!((m - 6.0).abs() < 1e-9, "{m}");
        // No overall rate yet: the unpriced kinds leave the time unknown.
        assert!(minutes_left(&s, 0.0, 2).is_none());
        let line = p.line(0.0, 4.0, 2);
        assert!(
            line.starts_with("33% of the planned work done (8.3% a minute)"),
            "{line}"
        );
        // 0.5 GFLOP a minute overall: 2 / 6 of 6 GFLOP in 4 minutes.
        assert!(line.ends_with("about 5 min left"), "{line}");
    }
}
