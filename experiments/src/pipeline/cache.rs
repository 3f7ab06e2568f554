//! The stage cache ([`StageCache`]): keyed stage records, worker claims, and the run record
//! (`run.json`). It knows nothing of data or models: [`Ctx::stage`] opens a stage here, runs the
//! stage's closure on the whole context, and closes it here.
use super::{hash_key, now, Ctx, Mode};
use crate::records;
use anyhow::{bail, Context, Result};
use nrf_data::store::write_json_atomic;
use nrf_features::chunks::{self, Shard};
use nrf_results::{RunInfo, StageInfo, StageStatus};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A run's stage cache: where its records live, how this process takes part in the run, and the
/// run record it keeps up to date.
pub struct StageCache {
    /// The results folder.
    pub results: PathBuf,
    /// How this process takes part in the run ([`Mode`]).
    pub mode: Mode,
    /// The run record (run.json): every stage met so far, with its status.
    pub run: RunInfo,
    /// Salted into every key: the fingerprint of the training and test data.
    salt: String,
    /// The run's `--set KEY=VALUE` strings, written to run.json.
    overrides: Vec<String>,
    started: Instant,
    /// The files the running stages write, for their records ([`records`]).
    pub(crate) outputs: records::Outputs,
    /// The result files (`models/`, `datasets/`, `sections/`) this pass wrote
    /// ([`StageCache::write_result`]): the others are an earlier configuration's
    /// ([`StageCache::set_aside_stale`]).
    written: std::cell::RefCell<std::collections::BTreeSet<PathBuf>>,
}

/// The folders of a results folder whose JSON files the report reads as this run's results.
pub const RESULT_FOLDERS: [&str; 3] = ["models", "datasets", "sections"];

/// A stage [`StageCache::open`]ed.
pub enum Opened<T> {
    /// Found in the cache: its output and key.
    Cached(T, String),
    /// To be computed whole ([`StageCache::close`] records it).
    Run(Running),
    /// To be computed as one slice of a shard job (nothing is recorded).
    Slice {
        name: String,
        shard: Shard,
        work: PathBuf,
    },
}

/// A stage being computed: what [`StageCache::close`] needs to record it, and the worker's
/// claim on it (held until then).
pub struct Running {
    name: String,
    key: String,
    record: PathBuf,
    /// The stage's private work folder (checkpoints, chunks), removed when it completes.
    pub work: PathBuf,
    start: Instant,
    /// `start` as the stage record dates it ([`super::now`]).
    started: String,
    _claim: Option<crate::workers::Claim>,
}

impl StageCache {
    /// The cache of a run in `results` whose data has fingerprint `salt`.
    pub fn new(
        results: PathBuf,
        salt: String,
        mode: Mode,
        run: RunInfo,
        overrides: Vec<String>,
    ) -> Self {
        StageCache {
            results,
            mode,
            run,
            salt,
            overrides,
            started: Instant::now(),
            outputs: records::Outputs::default(),
            written: Default::default(),
        }
    }

    /// Writes the result file `rel` (under one of `RESULT_FOLDERS`) atomically as JSON and
    /// notes it as this pass's.
    pub fn write_result(&self, rel: &str, value: &impl serde::Serialize) -> Result<()> {
        let path = self.path(rel);
        write_json_atomic(&path, value)?;
        self.written.borrow_mut().insert(path);
        Ok(())
    }

    /// After a whole run (every stage met, none failed): moves the JSON files of
    /// `RESULT_FOLDERS` that this pass did not write to `stale/<folder>/`, so that the report
    /// and `nrf combine` read only this configuration's results (a model, set or section an
    /// earlier configuration of the folder had and this one has not, such as an extra switched
    /// off, was read as this run's before). Returns the files moved, relative to the results
    /// folder. A shard job or a deferred evaluation writes only part of them, and moves nothing.
    pub fn set_aside_stale(&self) -> Result<Vec<String>> {
        if self.mode.shard.is_some() || self.mode.defer_eval || self.mode.worker.is_some() {
            return Ok(Vec::new());
        }
        let written = self.written.borrow();
        let mut moved = Vec::new();
        for folder in RESULT_FOLDERS {
            let dir = self.path(folder);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut stale: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json") && !written.contains(p))
                .collect();
            stale.sort();
            for path in stale {
                let name = path.file_name().unwrap_or_default().to_owned();
                let to_dir = self.path("stale").join(folder);
                std::fs::create_dir_all(&to_dir)
                    .with_context(|| format!("creating {}", to_dir.display()))?;
                let to = to_dir.join(&name);
                std::fs::rename(&path, &to)
                    .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
                moved.push(format!("{folder}/{}", name.to_string_lossy()));
            }
        }
        Ok(moved)
    }

    /// A path under the results folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.results.join(rel)
    }

    /// Dates the run record from `started` (`when`: its run.json form, as `now` writes it) instead of
    /// this cache's creation: the invocation's start, so that run.json's `started` and
    /// `total_wall_s` hold the data's loading and, with worker processes, the workers' time
    /// (their last pass alone takes seconds).
    pub fn started_at(&mut self, started: Instant, when: String) {
        self.started = started;
        self.run.started = when;
    }

    /// Writes run.json: [`RunInfo`] and the run's `--set KEY=VALUE` strings
    /// ([`crate::preset::Preset::overrides`]; `config_toml` is the preset text with them applied).
    pub fn save_run(&mut self) -> Result<()> {
        if self.mode.shard.is_some() {
            // n shard jobs at once: run.json is the ordinary run's.
            return Ok(());
        }
        if let Some(w) = self.mode.worker {
            // The parent's last pass writes run.json; it marks the stages listed here as done.
            let file = crate::workers::stages_file(&self.results, w);
            let ran: Vec<&StageInfo> = (self.run.stages.iter())
                .filter(|s| s.status == StageStatus::Done)
                .collect();
            return Ok(write_json_atomic(file, &ran)?);
        }
        #[derive(Serialize)]
        struct RunJson<'a> {
            #[serde(flatten)]
            run: &'a RunInfo,
            overrides: &'a [String],
        }
        self.run.total_wall_s = self.started.elapsed().as_secs_f64();
        let record = RunJson {
            run: &self.run,
            overrides: &self.overrides,
        };
        write_json_atomic(self.path("run.json"), &record)?;
        Ok(())
    }

    /// The key of stage `name` for `key_input` and the path of its record.
    fn stage_key(&self, name: &str, key_input: &impl Serialize) -> (String, PathBuf) {
        let key = hash_key(&(name, key_input, &self.salt));
        let record = self.path(&format!("stages/{}.json", name.replace(':', "_")));
        (key, record)
    }

    /// The cached output of stage `name` if a completed record with the key of `key_input`
    /// exists (see [`Ctx::stage`]); records nothing and runs nothing.
    pub fn cached<T: DeserializeOwned>(
        &self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Option<(T, f64, String)> {
        self.cached_record(name, key_input)
            .map(|(rec, key)| (rec.output, rec.wall_s, key))
    }

    /// [`StageCache::cached`]'s whole record (when and where the stage ran too) and key.
    fn cached_record<T: DeserializeOwned>(
        &self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Option<(records::StageRecord<T>, String)> {
        let (key, record_path) = self.stage_key(name, key_input);
        // A damaged record, or one whose files are damaged, is not used (a warning names it).
        records::read::<T>(&self.results, &record_path, &key, &self.outputs).map(|rec| (rec, key))
    }

    /// Opens stage `name` for `key_input`: its cached output, or the go-ahead to compute it (a
    /// worker only while it holds the stage's claim: one that another worker holds is
    /// [`crate::workers::Deferred`]), or, in a shard job, to compute the shard's slice of it.
    pub fn open<T: DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Result<Opened<T>> {
        let (key, record) = self.stage_key(name, key_input);
        if let Some((output, key)) = self.cached_stage::<T>(name, key_input)? {
            return Ok(Opened::Cached(output, key));
        }
        let claim = match self.mode.worker {
            None => None,
            Some(_) => match crate::workers::try_claim(&self.results, name)? {
                None => return Err(crate::workers::Deferred { stage: name.into() }.into()),
                Some(claim) => {
                    // Finished by another worker between the look into the cache and the claim.
                    if let Some((output, key)) = self.cached_stage::<T>(name, key_input)? {
                        return Ok(Opened::Cached(output, key));
                    }
                    Some(claim)
                }
            },
        };
        let work = self.work_dir(name, &key);
        std::fs::create_dir_all(&work)
            .with_context(|| format!("stage {name}: creating {}", work.display()))?;
        if let Some(shard) = self.mode.shard {
            // A shard job computes its slice of the stage and records nothing: the stage is
            // done when an ordinary run merges the slices.
            if name.starts_with("train:") {
                bail!(
                    "shard {shard}: stage {name} has not run (key {key}); a shard job only \
                     builds slices of constructions and robust evaluations: train first with \
                     `nrf reproduce --only sources` (or `--only train`) on the same preset, \
                     --set values and --results"
                );
            }
            tracing::info!("{name}: shard {shard} ({key})");
            let name = name.to_string();
            return Ok(Opened::Slice { name, shard, work });
        }
        tracing::info!("{name}: running ({key})");
        self.outputs.begin();
        Ok(Opened::Run(Running {
            name: name.into(),
            key,
            record,
            work,
            start: Instant::now(),
            started: super::now(),
            _claim: claim,
        }))
    }

    /// Records the stage `run` with its `result`: on success its output, files and wall time
    /// (and its work folder is removed); on failure the error, in run.json.
    pub fn close<T: Serialize + DeserializeOwned>(
        &mut self,
        run: Running,
        result: Result<T>,
    ) -> Result<(T, String)> {
        let files = self.outputs.end();
        let wall_s = run.start.elapsed().as_secs_f64();
        let name = run.name.as_str();
        let worker = self.mode.worker.map(|w| w.to_string());
        match result {
            Ok(output) => {
                records::write(
                    &self.results,
                    &run.record,
                    &run.key,
                    records::Ran {
                        started: &run.started,
                        wall_s,
                        worker: worker.clone(),
                    },
                    &output,
                    &files,
                    &self.outputs,
                )?;
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Done,
                    wall_s,
                    started: Some(run.started.clone()),
                    worker: worker.clone(),
                    key: run.key.clone(),
                    message: None,
                })?;
                tracing::info!("{name}: done in {wall_s:.1}s");
                let _ = std::fs::remove_dir_all(&run.work);
                Ok((output, run.key))
            }
            // Not a failure: a stage this one needs is another worker's (tried again later).
            Err(e) if crate::workers::is_deferred(&e) => Err(e),
            Err(e) => {
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Failed,
                    wall_s,
                    started: Some(run.started.clone()),
                    worker,
                    key: run.key.clone(),
                    message: Some(format!("{e:#}")),
                })?;
                Err(e.context(format!("stage {name}")))
            }
        }
    }

    /// [`StageCache::cached`], recorded in run.json as cached.
    fn cached_stage<T: DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Result<Option<(T, String)>> {
        let Some((rec, key)) = self.cached_record::<T>(name, key_input) else {
            return Ok(None);
        };
        if self.mode.worker.is_some() {
            // Workers walk cached stages again and again (see crate::workers).
            tracing::debug!("{name}: cached ({key})");
        } else {
            tracing::info!("{name}: cached ({key})");
        }
        self.record(StageInfo {
            name: name.into(),
            status: StageStatus::Cached,
            wall_s: rec.wall_s,
            started: rec.started,
            worker: rec.worker,
            key: key.clone(),
            message: None,
        })?;
        Ok(Some((rec.output, key)))
    }

    /// The work folder of stage `name` with key `key`: unfinished work (checkpoints, chunks,
    /// shard slices), removed when the stage completes.
    pub fn work_dir(&self, name: &str, key: &str) -> PathBuf {
        self.path(&format!("work/{}-{key}", name.replace(':', "_")))
    }

    fn record(&mut self, info: StageInfo) -> Result<()> {
        // A stage computed in this run and met again (another module reusing it, a worker's
        // job walked again) stays recorded as done.
        let computed = |s: &StageInfo| {
            s.name == info.name && s.key == info.key && s.status == StageStatus::Done
        };
        if info.status == StageStatus::Cached && self.run.stages.iter().any(computed) {
            return Ok(());
        }
        // A worker's file lists only the stages it computed: a cached one (met again and again
        // as its jobs are walked) leaves it as it is.
        let unchanged = self.mode.worker.is_some() && info.status != StageStatus::Done;
        self.run.stages.retain(|s| s.name != info.name);
        self.run.stages.push(info);
        if unchanged {
            return Ok(());
        }
        self.save_run()
    }

    /// Marks the run finished (or lists what is missing) and writes run.json.
    pub fn finish(&mut self, missing: Vec<String>) -> Result<()> {
        self.run.missing = missing;
        if self.run.missing.is_empty() {
            self.run.finished = Some(now());
        }
        self.save_run()
    }
}

impl Ctx {
    /// Runs `f` unless a completed record of stage `name` with the same key exists
    /// ([`StageCache::open`]). `key_input` must contain everything the stage's output depends
    /// on (configuration and input keys). `f` gets the whole context and a work directory
    /// private to this key (checkpoints, chunks).
    pub fn stage<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
        f: impl FnOnce(&mut Ctx, &Path) -> Result<T>,
    ) -> Result<(T, String)> {
        match self.cache.open::<T>(name, key_input)? {
            Opened::Cached(output, key) => Ok((output, key)),
            Opened::Run(run) => {
                let result = f(self, &run.work);
                self.cache.close(run, result)
            }
            // The closure ends in `SliceWritten`: the slice is the shard job's whole output.
            Opened::Slice { name, shard, work } => {
                match chunks::with_shard(shard, || f(self, &work)) {
                    Err(e) if chunks::is_slice_written(&e) => Err(e),
                    Err(e) => Err(e.context(format!("stage {name}, shard {shard}"))),
                    Ok(_) => bail!("stage {name} ran whole in shard {shard}: it has no slices"),
                }
            }
        }
    }

    /// The cache key of a set of training images (a clean subset of D), for models trained on
    /// it: the same indices always give the same key, so such models are shared across modules.
    pub fn subset_key(&self, indices: &[usize]) -> String {
        hash_key(&(&self.data_key, indices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a whole run, the result files this pass did not write (an earlier configuration's
    /// model, set or section) go to `stale/`, those it wrote stay, other files are not touched;
    /// a shard job or a deferred evaluation moves nothing.
    #[test]
    fn result_files_this_run_did_not_write_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let put = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "{}").unwrap();
        };
        for rel in [
            "models/on_D_R.json",
            "models/on_D_det_eps2.json",
            "sections/overfitting.json",
            "datasets/D_det_eps2.json",
            "models/notes.txt",
            "weights/on_D_det_eps2.safetensors",
        ] {
            put(rel);
        }
        let cache = |mode: Mode| {
            StageCache::new(
                root.clone(),
                "salt".into(),
                mode,
                RunInfo::default(),
                Vec::new(),
            )
        };
        let deferred = cache(Mode {
            defer_eval: true,
            ..Mode::default()
        });
        assert!(deferred.set_aside_stale().unwrap().is_empty());
        let c = cache(Mode::default());
        c.write_result("models/on_D_R.json", &serde_json::json!({"acc": 0.5}))
            .unwrap();
        let moved = c.set_aside_stale().unwrap();
        assert_eq!(
            moved,
            [
                "models/on_D_det_eps2.json",
                "datasets/D_det_eps2.json",
                "sections/overfitting.json"
            ]
        );
        assert!(root.join("models/on_D_R.json").exists());
        assert!(root.join("stale/models/on_D_det_eps2.json").exists());
        assert!(!root.join("sections/overfitting.json").exists());
        assert!(root.join("models/notes.txt").exists());
        assert!(root.join("weights/on_D_det_eps2.safetensors").exists());
    }
}
