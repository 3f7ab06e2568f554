//! The stage cache: keyed stage records, worker claims, and the run record (`run.json`).
use super::{hash_key, now, Ctx};
use crate::records;
use anyhow::{bail, Context, Result};
use nrf_data::store::write_json_atomic;
use nrf_features::chunks;
use nrf_report::results::{RunInfo, StageInfo, StageStatus};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

impl Ctx {
    /// Writes run.json: [`RunInfo`] and `overrides`, the run's `--set KEY=VALUE` strings
    /// ([`Preset::overrides`]; `config_toml` is the preset text with them applied).
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
            overrides: &self.preset.overrides,
        };
        write_json_atomic(self.path("run.json"), &record)?;
        Ok(())
    }

    /// The key of stage `name` for `key_input` and the path of its record.
    fn stage_key(&self, name: &str, key_input: &impl Serialize) -> (String, PathBuf) {
        let key = hash_key(&(name, key_input, &self.data_key));
        let record = self.path(&format!("stages/{}.json", name.replace(':', "_")));
        (key, record)
    }

    /// The cache key of a set of training images (a clean subset of D), for models trained on
    /// it: the same indices always give the same key, so such models are shared across modules.
    pub fn subset_key(&self, indices: &[usize]) -> String {
        hash_key(&(&self.data_key, indices))
    }

    /// The cached output of stage `name` if a completed record with the key of `key_input`
    /// exists (see [`Ctx::stage`]); records nothing and runs nothing.
    pub fn cached<T: DeserializeOwned>(
        &self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Option<(T, f64, String)> {
        let (key, record_path) = self.stage_key(name, key_input);
        // A damaged record, or one whose files are damaged, is not used (a warning names it).
        records::read::<T>(&self.results, &record_path, &key, &self.outputs)
            .map(|rec| (rec.output, rec.wall_s, key))
    }

    /// Runs `f` unless a completed record of stage `name` with the same key exists. `key_input`
    /// must contain everything the stage's output depends on (configuration and input keys).
    /// `f` gets a work directory private to this key (checkpoints, chunks).
    pub fn stage<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
        f: impl FnOnce(&mut Ctx, &Path) -> Result<T>,
    ) -> Result<(T, String)> {
        let (key, record_path) = self.stage_key(name, key_input);
        if let Some(found) = self.cached_stage::<T>(name, key_input)? {
            return Ok(found);
        }
        // A worker computes a stage only while it holds the stage's claim; one that another
        // worker holds is left to it (the job is tried again later).
        let _claim = match self.mode.worker {
            None => None,
            Some(_) => match crate::workers::try_claim(&self.results, name)? {
                None => return Err(crate::workers::Deferred { stage: name.into() }.into()),
                Some(claim) => {
                    // Finished by another worker between the look into the cache and the claim.
                    if let Some(found) = self.cached_stage::<T>(name, key_input)? {
                        return Ok(found);
                    }
                    Some(claim)
                }
            },
        };
        let work = self.work_dir(name, &key);
        if let Some(shard) = self.mode.shard {
            // A shard job computes its slice of the stage (the closure ends in `SliceWritten`)
            // and records nothing: the stage is done when an ordinary run merges the slices.
            if name.starts_with("train:") {
                bail!(
                    "shard {shard}: stage {name} has not run (key {key}); a shard job only \
                     builds slices of constructions and robust evaluations: train first with \
                     `nrf reproduce --only sources` (or `--only train`) on the same preset, \
                     --set values and --results"
                );
            }
            tracing::info!("{name}: shard {shard} ({key})");
            std::fs::create_dir_all(&work)
                .with_context(|| format!("stage {name}: creating {}", work.display()))?;
            return match chunks::with_shard(shard, || f(self, &work)) {
                Err(e) if chunks::is_slice_written(&e) => Err(e),
                Err(e) => Err(e.context(format!("stage {name}, shard {shard}"))),
                Ok(_) => bail!("stage {name} ran whole in shard {shard}: it has no slices"),
            };
        }
        tracing::info!("{name}: running ({key})");
        std::fs::create_dir_all(&work)
            .with_context(|| format!("stage {name}: creating {}", work.display()))?;
        let start = Instant::now();
        self.outputs.begin();
        let result = f(self, &work);
        let files = self.outputs.end();
        match result {
            Ok(output) => {
                let wall_s = start.elapsed().as_secs_f64();
                records::write(
                    &self.results,
                    &record_path,
                    &key,
                    wall_s,
                    &output,
                    &files,
                    &self.outputs,
                )?;
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Done,
                    wall_s,
                    key: key.clone(),
                    message: None,
                })?;
                tracing::info!("{name}: done in {wall_s:.1}s");
                let _ = std::fs::remove_dir_all(&work);
                Ok((output, key))
            }
            // Not a failure: a stage this one needs is another worker's (tried again later).
            Err(e) if crate::workers::is_deferred(&e) => Err(e),
            Err(e) => {
                let wall_s = start.elapsed().as_secs_f64();
                self.record(StageInfo {
                    name: name.into(),
                    status: StageStatus::Failed,
                    wall_s,
                    key,
                    message: Some(format!("{e:#}")),
                })?;
                Err(e.context(format!("stage {name}")))
            }
        }
    }

    /// [`Ctx::cached`], recorded in run.json as cached.
    fn cached_stage<T: DeserializeOwned>(
        &mut self,
        name: &str,
        key_input: &impl Serialize,
    ) -> Result<Option<(T, String)>> {
        let Some((output, wall_s, key)) = self.cached::<T>(name, key_input) else {
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
            wall_s,
            key: key.clone(),
            message: None,
        })?;
        Ok(Some((output, key)))
    }

    /// `items` in the order this process takes them: as they are in an ordinary run, in the
    /// worker's own order in a worker ([`crate::workers::order`]).
    pub fn worker_order<T>(&self, items: Vec<T>) -> Vec<T> {
        crate::workers::order(self.mode.worker, items)
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
