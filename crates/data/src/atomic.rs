//! The one atomic file writer of nrf (standard library only).
//!
//! Every artefact nrf writes (checkpoints, construction chunks, constructed datasets, stage
//! records, results JSON, figures, the report) goes through [`write_atomic_with`]: the content is
//! written to a temporary file in the target's own folder (named by [`temp_path`]:
//! `.<name>.tmp-<pid>-<n>`), the temporary file is fsynced, renamed onto the target, and the
//! folder is fsynced. A reader, or a run resumed after a crash or a power cut, sees the old file
//! or the new one, never a half-written one. A crash can leave a temporary file behind;
//! [`remove_stale_temps`] deletes them (nrf does so when a run takes a results folder's lock).
//!
//! A failed write (full disk, read-only folder, a parent that is a regular file) is a
//! [`WriteError`] naming the target file, what failed and the OS error (once); the temporary file
//! is removed and the target, and everything else already written, is left as it was.
//!
//! This file depends on nothing but `std` so that `xtask` (which links no workspace crate) can
//! include the same source with `#[path]` instead of keeping its own copy.
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What the temporary files' names contain: `.<name>` + `TEMP_TAG` + `<pid>-<n>`.
pub const TEMP_TAG: &str = ".tmp-";

/// A failed atomic write: the file concerned (the target, or the folder that could not be
/// created), what was being done, and the OS error.
#[derive(Debug)]
pub struct WriteError {
    /// The target file (or its folder, when creating the folder failed).
    pub path: PathBuf,
    /// What failed, e.g. "write file".
    pub action: &'static str,
    /// The operating system's error.
    pub error: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot {}: {}",
            self.path.display(),
            self.action,
            self.error
        )
    }
}

// No `source()`: the OS error is part of the message, so a report of the whole chain
// (`{:#}` of an `anyhow::Error`) says it once.
impl std::error::Error for WriteError {}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary file name next to `path`: `.<name>.tmp-<pid>-<n>` (see [`is_temp_name`]).
pub fn temp_path(path: &Path) -> Result<PathBuf, WriteError> {
    let name = path.file_name().ok_or_else(|| WriteError {
        path: path.to_path_buf(),
        action: "write a file without a file name",
        error: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    Ok(parent_dir(path).join(format!(
        ".{}{TEMP_TAG}{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `name` is the name of a temporary file of [`write_atomic_with`]
/// (`.<name>.tmp-<pid>-<n>`), or of one of the writers it replaced (their files may still be in
/// results folders written by older versions): `.<name>.tmp-<pid>` (nrf-report's) and
/// `<name>.safetensors.tmp<pid>` (nrf-models' checkpoints').
pub fn is_temp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix('.') {
        if let Some((base, tail)) = rest.rsplit_once(TEMP_TAG) {
            let ids_ok = match tail.split_once('-') {
                Some((pid, n)) => digits(pid) && digits(n),
                None => digits(tail),
            };
            if !base.is_empty() && ids_ok {
                return true;
            }
        }
    }
    matches!(name.rsplit_once(".safetensors.tmp"), Some((base, pid)) if !base.is_empty() && digits(pid))
}

/// Writes `path` atomically: `write` fills the temporary file it is given (a path in the same
/// folder as `path`, not yet created), which is then fsynced and renamed onto `path`; the folder
/// is fsynced last. The folder is created if needed. On error the temporary file is removed and
/// `path` is untouched; the error names `path` (not the temporary file).
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<(), WriteError>
where
    F: FnOnce(&Path) -> io::Result<()>,
{
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|error| WriteError {
        path: dir.clone(),
        action: "create folder",
        error,
    })?;
    let tmp = temp_path(path)?;
    let fail = |action: &'static str| {
        let target = path.to_path_buf();
        let tmp = tmp.clone();
        move |error: io::Error| {
            let _ = fs::remove_file(&tmp);
            WriteError {
                path: target,
                action,
                error,
            }
        }
    };
    write(&tmp).map_err(fail("write file"))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail("fsync file"))?;
    fs::rename(&tmp, path).map_err(fail("move the written file into place"))?;
    // Makes the rename durable. Not every platform can open a folder: best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, |tmp| fs::write(tmp, bytes))
}

/// Removes every temporary file of [`write_atomic_with`] ([`is_temp_name`]) under `dir`, at any
/// depth (symbolic links are not followed), and returns their paths. A crash between writing a
/// temporary file and renaming it leaves one behind. Call it only while no other process writes
/// under `dir` (nrf holds the results folder's lock): another writer's temporary file in flight
/// would be removed. A missing `dir` has none.
pub fn remove_stale_temps(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let p = entry.path();
            if kind.is_dir() {
                todo.push(p);
            } else if kind.is_file() && is_temp_name(&entry.file_name().to_string_lossy()) {
                fs::remove_file(&p)?;
                removed.push(p);
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        let t = temp_path(Path::new("/r/stages/train_C_std.json")).unwrap();
        assert_eq!(t.parent(), Some(Path::new("/r/stages")));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".train_C_std.json.tmp-"), "{name}");
        assert!(is_temp_name(&name), "{name}");
        for old in [".report.html.tmp-123", "chunk_00001.safetensors.tmp42"] {
            assert!(is_temp_name(old), "{old}");
        }
        for keep in [
            "run.json",
            ".lock",
            "chunk_00001.safetensors",
            ".tmp-1-2",
            ".x.tmp-",
            ".x.tmp-1-",
            ".x.tmp-a-1",
            "x.tmp-1-2",
            "notes.tmp",
            ".safetensors.tmp1",
        ] {
            assert!(!is_temp_name(keep), "{keep}");
        }
    }

    #[test]
    fn stale_temps_are_removed_at_any_depth_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("nrf-atomic-clean-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let deep = dir.join("work/construct_D_R-ab");
        fs::create_dir_all(&deep).unwrap();
        let keep = [dir.join("run.json"), deep.join("chunk_00000.safetensors")];
        let stale = [
            dir.join(".run.json.tmp-77-0"),
            deep.join(".chunk_00001.safetensors.tmp-77-3"),
            deep.join("ckpt.safetensors.tmp77"),
        ];
        for p in keep.iter().chain(&stale) {
            fs::write(p, b"x").unwrap();
        }
        let removed = remove_stale_temps(&dir).unwrap();
        let mut want = stale.to_vec();
        want.sort();
        assert_eq!(removed, want);
        assert!(keep.iter().all(|p| p.exists()));
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(remove_stale_temps(&dir.join("missing")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
