//! One run per results folder. `nrf reproduce` and `nrf report` hold an exclusive advisory lock
//! on `<results>/.lock` (`flock` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]) for as long as they use the folder; a second one on the same
//! folder is refused with a message naming the folder and the holder. The operating system drops
//! the lock with the process that holds it, however it ends (SIGKILL, a crash, a power cut), so a
//! lock file left behind never blocks: only a live holder does. The file's content (pid, host,
//! start time, command) is informational, for the message; the lock itself decides.
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a results folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive hold on a results folder: released when dropped, or by the operating system when
/// the process ends.
#[derive(Debug)]
pub struct ResultsLock {
    /// `None` where the filesystem does not support locks (see [`ResultsLock::acquire`]).
    file: Option<File>,
    path: PathBuf,
    /// An exclusive hold (a shared one writes nothing into the file).
    exclusive: bool,
}

impl ResultsLock {
    /// Takes the lock of the existing folder `results` for `command` (e.g. `"nrf reproduce"`),
    /// without waiting. Fails, naming the folder and the holder (pid, host, start time, command),
    /// if another process, or another handle in this one, holds it. On a filesystem without lock
    /// support it warns and returns an unlocked hold: the run goes on unprotected.
    pub fn acquire(results: &Path, command: &str) -> Result<ResultsLock> {
        Self::take(results, command, true)
    }

    /// A shared hold for the shard jobs of a job array (`nrf reproduce --shard k/n`), which use
    /// one results folder together, each writing only its own slices: refused while an ordinary
    /// run holds the folder, and an ordinary run is refused while any shard job holds it. A
    /// shared hold writes nothing into the lock file.
    pub fn acquire_shared(results: &Path, command: &str) -> Result<ResultsLock> {
        Self::take(results, command, false)
    }

    fn take(results: &Path, command: &str, exclusive: bool) -> Result<ResultsLock> {
        if !results.is_dir() {
            bail!("results folder {} does not exist", results.display());
        }
        let path = results.join(LOCK_FILE);
        // Never truncate before holding the lock: the content names the current holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let locked = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // Best effort: the holder may be rewriting it; an unreadable file says "unknown".
                let _ = file.read_to_string(&mut text);
                bail!("{}", busy_message(results, &text));
            }
            Err(TryLockError::Error(e)) => {
                tracing::warn!(
                    "cannot lock {} ({e}): a second run on {} would not be refused",
                    path.display(),
                    results.display()
                );
                return Ok(ResultsLock {
                    file: None,
                    path,
                    exclusive,
                });
            }
        }
        if !exclusive {
            return Ok(ResultsLock {
                file: Some(file),
                path,
                exclusive,
            });
        }
        let info = holder_text(command);
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(info.as_bytes()))
            .with_context(|| format!("writing the lock file {}", path.display()))?;
        // The folder is this process's alone now (shard jobs hold it shared and so never clean):
        // every temporary file of the atomic writer in it is an interrupted run's leftover.
        remove_stale_temps(results);
        Ok(ResultsLock {
            file: Some(file),
            path,
            exclusive,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is really held (false where the filesystem does not support locks).
    pub fn is_locked(&self) -> bool {
        self.file.is_some()
    }
}

impl Drop for ResultsLock {
    fn drop(&mut self) {
        // Empty the file while still holding the lock (so it never names a finished holder);
        // closing the file then releases the lock. The file itself stays: deleting it could let
        // two processes lock two different files of the same name.
        if let (Some(f), true) = (&self.file, self.exclusive) {
            let _ = f.set_len(0);
        }
    }
}

/// Removes the temporary files that interrupted runs left under `results`
/// (`nrf_data::atomic::remove_stale_temps`), saying which; a failure to clean is only a warning.
fn remove_stale_temps(results: &Path) {
    match nrf_data::atomic::remove_stale_temps(results) {
        Ok(removed) => {
            for p in removed {
                tracing::info!(
                    "removed {} (a temporary file left by an interrupted run)",
                    p.display()
                );
            }
        }
        Err(e) => tracing::warn!(
            "could not clean the temporary files under {}: {e}",
            results.display()
        ),
    }
}

/// The lock file's content for this process.
fn holder_text(command: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "pid: {}\nhost: {}\nstarted: {} UTC\nstarted_unix: {secs}\ncommand: {command}\n",
        std::process::id(),
        hostname(),
        nrf_results::utc_string(secs)
    )
}

/// The refusal for a folder whose lock file (content `text`) is held by someone else.
fn busy_message(results: &Path, text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let lock = results.join(LOCK_FILE);
    let holder = match (field("pid"), field("host"), field("started")) {
        (None, None, None) => format!(
            "holder unknown: {} is empty or unreadable: shard jobs (--shard k/n) hold it \
             shared, or the holder is starting up",
            lock.display()
        ),
        (pid, host, started) => {
            let unknown = || "unknown".to_string();
            format!(
                "{}pid {} on host {}, started {}",
                field("command").map(|c| c + ", ").unwrap_or_default(),
                pid.unwrap_or_else(unknown),
                host.unwrap_or_else(unknown),
                started.unwrap_or_else(unknown)
            )
        }
    };
    format!(
        "results folder {} is in use by another nrf process ({holder}; lock file {}). One run \
         per results folder: wait for it to end or stop it (the lock goes with its process), or \
         use another results folder",
        results.display(),
        lock.display()
    )
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok())
        .chain(std::env::var("COMPUTERNAME").ok())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_holder_or_says_it_is_unknown() {
        let dir = Path::new("/r/smoke");
        let m = busy_message(
            dir,
            "pid: 42\nhost: box\nstarted: 2024-03-01 00:00:00 UTC\nstarted_unix: 1709251200\ncommand: nrf reproduce\n",
        );
        assert!(m.contains("/r/smoke"), "{m}");
        assert!(
            m.contains("nrf reproduce, pid 42 on host box, started 2024-03-01 00:00:00 UTC"),
            "{m}"
        );
        let m = busy_message(dir, "");
        assert!(
            m.contains("/r/smoke") && m.contains("holder unknown"),
            "{m}"
        );
        let m = busy_message(dir, "pid: 7\n");
        assert!(m.contains("pid 7 on host unknown"), "{m}");
    }

    #[test]
    fn taking_the_lock_cleans_stale_temp_files_and_a_shared_hold_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir
            .path()
            .join("work/train_C_std-ab/.ckpt.safetensors.tmp-99-0");
        let kept = dir.path().join("work/train_C_std-ab/ckpt.safetensors");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&kept, b"whole").unwrap();
        let shared = ResultsLock::acquire_shared(dir.path(), "nrf test --shard 1/2").unwrap();
        assert!(
            stale.exists(),
            "a shared hold leaves other jobs' files alone"
        );
        drop(shared);
        let lock = ResultsLock::acquire(dir.path(), "nrf test").unwrap();
        assert!(lock.is_locked());
        assert!(!stale.exists(), "the stale temporary file is removed");
        assert!(kept.exists());
    }

    #[test]
    fn the_lock_file_names_this_process() {
        let t = holder_text("nrf test");
        assert!(t.contains(&format!("pid: {}\n", std::process::id())), "{t}");
        assert!(t.contains("command: nrf test\n"), "{t}");
        assert!(t.contains(" UTC\nstarted_unix: "), "{t}");
    }
}
