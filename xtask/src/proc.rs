//! Running subprocesses: every invocation prints a one-line summary first, and failures become
//! errors that name the command.

use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Prints one line of xtask output (to stderr, so that `cargo xtask env` stays `eval`-able).
pub fn say(msg: impl AsRef<str>) {
    eprintln!("xtask: {}", msg.as_ref());
}

/// Prints a warning line.
pub fn warn(msg: impl AsRef<str>) {
    eprintln!("xtask: warning: {}", msg.as_ref());
}

/// Quotes `s` for a POSIX shell when it needs it (for display and for `cargo xtask env`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command to run. Environment variables set through [`Cmd::env_shown`] appear in the summary
/// line; the torch environment (applied by the caller through [`Cmd::env_hidden`]) is summarised
/// by a note instead, to keep the line short.
pub struct Cmd {
    inner: Command,
    shown_env: Vec<String>,
    note: Option<String>,
}

impl Cmd {
    /// A new command running `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            inner: Command::new(program),
            shown_env: Vec::new(),
            note: None,
        }
    }

    /// The cargo that runs us (`$CARGO`), else `cargo` from PATH.
    pub fn cargo() -> Self {
        Cmd::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.inner.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable that is shown in the summary line.
    pub fn env_shown(mut self, key: &str, val: impl AsRef<OsStr>) -> Self {
        self.shown_env.push(format!(
            "{key}={}",
            shell_quote(&val.as_ref().to_string_lossy())
        ));
        self.inner.env(key, val);
        self
    }

    /// Sets an environment variable without showing it.
    pub fn env_hidden(&mut self, key: &str, val: impl AsRef<OsStr>) {
        self.inner.env(key, val);
    }

    /// Removes an environment variable without showing it.
    pub fn env_remove_hidden(&mut self, key: &str) {
        self.inner.env_remove(key);
    }

    /// A note appended to the summary line, e.g. "(torch env: /path)".
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// The command line as a shell would read it (without the hidden environment).
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self.shown_env.clone();
        parts.push(shell_quote(&self.inner.get_program().to_string_lossy()));
        parts.extend(
            self.inner
                .get_args()
                .map(|a| shell_quote(&a.to_string_lossy())),
        );
        parts.join(" ")
    }

    fn summary(&self) -> String {
        match &self.note {
            Some(n) => format!("running: {}   {n}", self.display()),
            None => format!("running: {}", self.display()),
        }
    }

    /// Runs the command with inherited stdio; a non-zero exit is an error.
    pub fn run(mut self) -> Result<()> {
        say(self.summary());
        let shown = self.display();
        let status = self
            .inner
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed ({status})");
        }
        Ok(())
    }

    /// Runs the command and returns its stdout (stderr passes through); a non-zero exit is an
    /// error.
    pub fn output(mut self) -> Result<String> {
        say(self.summary());
        let shown = self.display();
        let out = self
            .inner
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !out.status.success() {
            bail!("`{shown}` failed ({})", out.status);
        }
        String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
    }

    /// Gives the underlying command (for callers that need to spawn it themselves).
    pub fn into_inner(self) -> (Command, String) {
        let s = self.summary();
        (self.inner, s)
    }
}

/// Finds an executable called `name` on PATH, skipping directories inside `skip`.
pub fn find_on_path(name: &str, skip: Option<&Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Some(skip) = skip {
            if dir.starts_with(skip) {
                continue;
            }
        }
        let cand = dir.join(name);
        if is_executable(&cand) {
            return Some(cand);
        }
    }
    None
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(uid) = parse_effective_uid(&status) {
            return uid == 0;
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// nrf's one atomic writer, compiled from nrf-data's own source file. xtask links no workspace
// crate: nrf-data would bring no libtorch, but it would bring image, flate2, safetensors and rand
// into the tool that has to build before anything else. The file depends on `std` only.
#[allow(dead_code)]
#[path = "../../crates/data/src/atomic.rs"]
mod atomic;

/// Writes `contents` to `path` atomically with nrf's one writer (temporary file in the same
/// folder, fsync, rename, fsync the folder); an error names `path`.
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    Ok(atomic::write_atomic(path, contents.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("cargo"), "cargo");
        assert_eq!(shell_quote("--preset=smoke"), "--preset=smoke");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn uid_parsing() {
        let s = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(s), Some(0));
        assert_eq!(parse_effective_uid("Uid:\t5\t7\t7\t7\n"), Some(7));
        assert_eq!(parse_effective_uid("Name: x\n"), None);
    }

    #[test]
    fn summary_shows_env_and_args() {
        let c = Cmd::new("cargo")
            .env_shown("NRF_BIN", "/a b/nrf")
            .args(["test", "--workspace"]);
        assert_eq!(c.display(), "NRF_BIN='/a b/nrf' cargo test --workspace");
    }
}
