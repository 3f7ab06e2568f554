//! Stage records (`stages/<name>.json`) that check themselves and the files their stage wrote.
//!
//! A finished stage's record holds its key, start, worker, wall time and output, the SHA-256 of
//! every file the stage wrote for later stages to read (`files`: weights and their sidecars,
//! constructed data sets, relative to the results folder), and `sha256`, the checksum of the
//! record's own content (`nrf_data::store::canonical_json_sha256` of every other field). `read` uses a record only
//! when it parses, its checksum matches, its key is the stage's, and every file it lists is there
//! with the same checksum; otherwise it says why, naming the file, in a warning, and the stage is
//! treated as not cached (it runs again and rewrites its files and its record).
//!
//! Records written before the checksums existed have neither `sha256` nor `files`: they are used
//! as they are (nothing to check), so existing results folders keep working; a stage that runs
//! again writes both.
use anyhow::Result;
use nrf_data::store::{canonical_json_sha256, sha256_file, write_json_atomic};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The record of a finished stage, as stored in `stages/<name>.json`.
#[derive(Serialize, Deserialize)]
pub(crate) struct StageRecord<T> {
    pub key: String,
    /// When the stage started (`unix:<seconds>`, as run.json's `started`; absent in records of
    /// older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// The worker process that ran it (`k/n`; absent for a run's own process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub wall_s: f64,
    pub output: T,
    /// SHA-256 of each file the stage wrote, by path relative to the results folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// SHA-256 of the rest of the record (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The files the running stages write (a stack: a stage may run inside another, whose record
/// then lists the inner stage's files too), and the files already checked in this run.
#[derive(Default)]
pub struct Outputs {
    stack: RefCell<Vec<Vec<PathBuf>>>,
    verified: RefCell<HashSet<(PathBuf, String)>>,
}

impl Outputs {
    /// A stage starts.
    pub fn begin(&self) {
        self.stack.borrow_mut().push(Vec::new());
    }

    /// The stage that began last ends: the files it wrote (also counted as its parent's).
    pub fn end(&self) -> Vec<PathBuf> {
        let mut stack = self.stack.borrow_mut();
        let files = stack.pop().unwrap_or_default();
        if let Some(parent) = stack.last_mut() {
            parent.extend(files.iter().cloned());
        }
        files
    }

    /// The running stage wrote `path` (a file later stages read). Outside any stage: ignored.
    pub fn note(&self, path: PathBuf) {
        if let Some(top) = self.stack.borrow_mut().last_mut() {
            if !top.contains(&path) {
                top.push(path);
            }
        }
    }

    /// Whether `path` has SHA-256 `sha` (computed once per run and file).
    fn check(&self, path: &Path, sha: &str) -> Result<bool> {
        let k = (path.to_path_buf(), sha.to_string());
        if self.verified.borrow().contains(&k) {
            return Ok(true);
        }
        let ok = sha256_file(path)? == sha;
        if ok {
            self.verified.borrow_mut().insert(k);
        }
        Ok(ok)
    }
}

fn relative(results: &Path, file: &Path) -> String {
    file.strip_prefix(results)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// When and where a stage ran: its start (`unix:<seconds>`), its wall time in seconds and the
/// worker process that ran it (`k/n`; `None`: the run's own process).
pub(crate) struct Ran<'a> {
    pub started: &'a str,
    pub wall_s: f64,
    pub worker: Option<String>,
}

/// Writes the record of a finished stage (atomically), with the SHA-256 of `files` and its own.
/// Fails, naming the record, when the output would not read back (JSON writes a NaN or infinite
/// number as `null`): such a record would be refused by every later run, which would then run
/// the stage again each time.
pub(crate) fn write<T: Serialize + DeserializeOwned>(
    results: &Path,
    record_path: &Path,
    key: &str,
    ran: Ran,
    output: &T,
    files: &[PathBuf],
    outputs: &Outputs,
) -> Result<()> {
    let value = serde_json::to_value(output)?;
    if let Err(e) = serde_json::from_value::<T>(value) {
        anyhow::bail!(
            "{}: the stage's result cannot be recorded, it would not read back ({e}): a NaN or \
             infinite number where a number belongs",
            record_path.display()
        );
    }
    let mut sums = BTreeMap::new();
    for f in files {
        let sha = sha256_file(f)?;
        outputs
            .verified
            .borrow_mut()
            .insert((f.to_path_buf(), sha.clone()));
        sums.insert(relative(results, f), sha);
    }
    let mut record = StageRecord {
        key: key.to_string(),
        started: Some(ran.started.to_string()),
        worker: ran.worker,
        wall_s: ran.wall_s,
        output,
        files: sums,
        sha256: None,
    };
    record.sha256 = Some(canonical_json_sha256(&serde_json::to_value(&record)?));
    write_json_atomic(record_path, &record)?;
    Ok(())
}

/// The record at `record_path` if it is usable for a stage with key `key` (see the module's
/// documentation); `None` when there is none, when it is another key's, or, with a warning
/// naming the file and what is wrong, when it or a file it lists is damaged.
pub(crate) fn read<T: DeserializeOwned>(
    results: &Path,
    record_path: &Path,
    key: &str,
    outputs: &Outputs,
) -> Option<StageRecord<T>> {
    let what = record_path.display();
    let text = match std::fs::read(record_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{what}: cannot read: {e}; running the stage again");
            return None;
        }
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("{what}: damaged (invalid JSON: {e}); running the stage again");
            return None;
        }
    };
    let recorded = value.as_object_mut().and_then(|m| m.remove("sha256"));
    if let Some(want) = recorded {
        let found = canonical_json_sha256(&value);
        if want.as_str() != Some(found.as_str()) {
            tracing::warn!(
                "{what}: damaged (checksum mismatch: its content hashes to {found}, it records \
                 {want}); running the stage again"
            );
            return None;
        }
    }
    if value.get("key").and_then(|k| k.as_str()) != Some(key) {
        return None;
    }
    let record: StageRecord<T> = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!("{what}: not this version's record ({e}); running the stage again");
            return None;
        }
    };
    for (file, want) in &record.files {
        let path = results.join(file);
        match outputs.check(&path, want) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "{}: damaged (its SHA-256 is not the one {what} records); running the stage \
                     again",
                    path.display()
                );
                return None;
            }
            Err(e) => {
                tracing::warn!("{e:#} (a file {what} lists); running the stage again");
                return None;
            }
        }
    }
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Out {
        acc: f64,
        n: usize,
    }

    /// A results folder with one finished stage that wrote `weights/m.safetensors`.
    fn folder() -> (tempfile::TempDir, PathBuf, PathBuf, Outputs) {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("weights/m.safetensors");
        nrf_data::store::write_atomic(&weights, b"weights").unwrap();
        let record = dir.path().join("stages/train_m.json");
        let outputs = Outputs::default();
        outputs.begin();
        outputs.note(weights.clone());
        let files = outputs.end();
        let out = Out { acc: 0.8125, n: 3 };
        let ran = Ran {
            started: "unix:1764547200",
            wall_s: 1.5,
            worker: Some("2/2".into()),
        };
        write(dir.path(), &record, "k1", ran, &out, &files, &outputs).unwrap();
        (dir, record, weights, outputs)
    }

    fn get(dir: &Path, record: &Path, key: &str) -> Option<Out> {
        // A fresh run: nothing verified yet.
        read::<Out>(dir, record, key, &Outputs::default()).map(|r| r.output)
    }

    /// Found by the kill/resume harness: records whose numbers have 17 significant digits (wall
    /// times, accuracies as f32 widened to f64) hashed differently once read back, so every
    /// resumed run took each record for damaged and ran every stage again. A record must read
    /// back as written, whatever its floats.
    #[test]
    fn records_with_any_floats_read_back_sound() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Floats {
            xs: Vec<f64>,
        }
        let dir = tempfile::tempdir().unwrap();
        let mut x = 0.1f64;
        let xs: Vec<f64> = (0..2000)
            .map(|i| {
                x = (x * 3.7 + 0.123456789).fract();
                match i % 4 {
                    0 => x,
                    1 => (x as f32) as f64,
                    2 => x * 1e-7,
                    _ => x * 1234.5678,
                }
            })
            .collect();
        let out = Floats { xs };
        let record = dir.path().join("stages/floats.json");
        write(
            dir.path(),
            &record,
            "k",
            Ran {
                started: "unix:1764547200",
                wall_s: 0.981268065,
                worker: None,
            },
            &out,
            &[],
            &Outputs::default(),
        )
        .unwrap();
        let back = read::<Floats>(dir.path(), &record, "k", &Outputs::default())
            .expect("a record just written reads back as sound");
        assert_eq!(back.output, out);
    }

    #[test]
    fn a_sound_record_is_used_and_lists_its_files() {
        let (dir, record, _, outputs) = folder();
        let r = read::<Out>(dir.path(), &record, "k1", &outputs).unwrap();
        assert_eq!(r.output, Out { acc: 0.8125, n: 3 });
        assert_eq!(r.started.as_deref(), Some("unix:1764547200"));
        assert_eq!(r.wall_s, 1.5);
        assert_eq!(r.worker.as_deref(), Some("2/2"));
        assert_eq!(
            r.files.keys().collect::<Vec<_>>(),
            ["weights/m.safetensors"]
        );
        assert!(get(dir.path(), &record, "k1").is_some());
        assert!(get(dir.path(), &record, "other key").is_none());
        assert!(get(dir.path(), &dir.path().join("stages/none.json"), "k1").is_none());
    }

    #[test]
    fn a_corrupted_or_truncated_record_is_not_used() {
        let (dir, record, _, _) = folder();
        let text = std::fs::read_to_string(&record).unwrap();
        assert!(text.contains("\"acc\": 0.8125"), "{text}");
        std::fs::write(&record, text.replace("0.8125", "0.9125")).unwrap();
        assert!(get(dir.path(), &record, "k1").is_none());
        std::fs::write(&record, &text[..text.len() / 2]).unwrap();
        assert!(get(dir.path(), &record, "k1").is_none());
        std::fs::write(&record, &text).unwrap();
        assert!(get(dir.path(), &record, "k1").is_some());
    }

    #[test]
    fn a_damaged_or_missing_output_file_makes_the_stage_run_again() {
        let (dir, record, weights, _) = folder();
        std::fs::write(&weights, b"weighty").unwrap();
        assert!(get(dir.path(), &record, "k1").is_none());
        std::fs::write(&weights, b"weig").unwrap();
        assert!(get(dir.path(), &record, "k1").is_none());
        std::fs::remove_file(&weights).unwrap();
        assert!(get(dir.path(), &record, "k1").is_none());
        std::fs::write(&weights, b"weights").unwrap();
        assert!(get(dir.path(), &record, "k1").is_some());
    }

    #[test]
    fn an_old_record_without_checksums_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("stages/eval_m.json");
        nrf_data::store::write_json_atomic(
            &record,
            &serde_json::json!({"key": "k1", "wall_s": 2.0, "output": {"acc": 0.5, "n": 1}}),
        )
        .unwrap();
        assert_eq!(get(dir.path(), &record, "k1"), Some(Out { acc: 0.5, n: 1 }));
    }

    #[test]
    fn nested_stages_count_their_files_for_the_outer_one() {
        let o = Outputs::default();
        o.note(PathBuf::from("ignored"));
        o.begin();
        o.note(PathBuf::from("a"));
        o.begin();
        o.note(PathBuf::from("b"));
        assert_eq!(o.end(), [PathBuf::from("b")]);
        assert_eq!(o.end(), [PathBuf::from("a"), PathBuf::from("b")]);
        assert!(o.end().is_empty());
    }
}
