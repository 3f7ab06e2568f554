//! The Python side of the benchmarks: a subprocess speaking line-delimited JSON ([`JsonWorker`]),
//! the step benchmark's worker ([`PyBench`]), and what a report records of the machine.
use super::{
    BenchConfig, CheckValues, Row, CHECK_BATCH, CHECK_STEPS, PYTHON_ENV, PYTHON_FALLBACK,
    PYTHON_SCRIPT,
};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Environment variable naming the twin's folder (default: `experiments/twin` of the source
/// tree), where the Python sides of `nrf bench` and `nrf bench --pipeline` are.
pub const TWIN_DIR_ENV: &str = "NRF_TWIN_DIR";

/// The twin's folder.
pub fn twin_dir() -> PathBuf {
    std::env::var_os(TWIN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/twin")))
}

/// Sets each of `env` in `cmd`'s environment unless this process's own environment sets the
/// variable: what the user exported wins.
pub(crate) fn set_unless_exported(cmd: &mut Command, env: &[(&str, String)]) {
    for (k, v) in env {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
}

/// The interpreter from [`PYTHON_ENV`], else [`PYTHON_FALLBACK`].
pub fn python_from_env() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PYTHON_FALLBACK))
}

/// A Python subprocess speaking a line-delimited JSON protocol (one request per line on its stdin,
/// one JSON answer per line on its stdout; the first line is a [`Hello`]): `bench_steps.py --serve`
/// here, the twin's `bench_stages.py --serve` for `nrf bench --pipeline`.
pub(crate) struct JsonWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub(crate) what: String,
}

/// The worker's first line: whether torch (and what it needs) imported.
#[derive(Deserialize)]
pub(crate) struct Hello {
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) python: Option<String>,
    pub(crate) torch: Option<String>,
}

impl JsonWorker {
    /// Starts `python ARGS` and reads its hello; `Err` carries a note for the reader (the
    /// Python column is then skipped). `unavailable` says what a failed import means. `env` is
    /// set in the child's environment where this process's own does not set the variable (what
    /// the user exported wins).
    pub(crate) fn start(
        python: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, String)],
        unavailable: &str,
    ) -> std::result::Result<(JsonWorker, Hello), String> {
        let what = python.display().to_string();
        let mut command = Command::new(python);
        set_unless_exported(&mut command, env);
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start the Python interpreter `{what}` ({e}); set {PYTHON_ENV} to a Python with torch (`cargo xtask bench` does); Python column skipped"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| format!("`{what}`: no stdout"))?,
        );
        let mut py = JsonWorker {
            child,
            stdin,
            stdout,
            what,
        };
        let hello: Hello = py.read().map_err(|e| {
            format!(
                "the Python interpreter `{}` did not answer: {e:#}; Python column skipped",
                py.what
            )
        })?;
        if !hello.ok {
            return Err(format!(
                "{}; {unavailable}. Set {PYTHON_ENV} to a Python with torch (`cargo xtask bench` does)",
                hello.error.as_deref().unwrap_or("torch could not be imported")
            ));
        }
        Ok((py, hello))
    }

    pub(crate) fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from `{}`", self.what))?;
        if n == 0 {
            let status = self
                .child
                .try_wait()
                .ok()
                .flatten()
                .map_or("still running".to_string(), |s| s.to_string());
            bail!(
                "`{}` closed its output (exit status: {status}; see its messages above)",
                self.what
            );
        }
        let v: serde_json::Value = serde_json::from_str(line.trim()).with_context(|| {
            format!(
                "`{}` answered something that is not JSON: {:?}",
                self.what,
                line.trim()
            )
        })?;
        if let Some(e) = v
            .get("error")
            .and_then(|e| e.as_str())
            .filter(|_| v.get("ok").is_none())
        {
            bail!("`{}` reported: {e}", self.what);
        }
        serde_json::from_value(v)
            .with_context(|| format!("unexpected answer from `{}`: {}", self.what, line.trim()))
    }

    /// Writes one request line without waiting for the answer ([`JsonWorker::read`] reads it).
    pub(crate) fn send(&mut self, req: &serde_json::Value) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("`{}` is closed", self.what))?;
        writeln!(stdin, "{req}")
            .and_then(|_| stdin.flush())
            .with_context(|| format!("writing to `{}`", self.what))
    }

    /// [`JsonWorker::send`], then [`JsonWorker::read`].
    pub(crate) fn request<T: serde::de::DeserializeOwned>(
        &mut self,
        req: serde_json::Value,
    ) -> Result<T> {
        self.send(&req)?;
        self.read()
    }
}

impl Drop for JsonWorker {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", serde_json::json!({"cmd": "quit"}));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The step benchmark's worker (`bench_steps.py --serve`).
pub(super) struct PyBench(JsonWorker);

impl std::ops::Deref for PyBench {
    type Target = JsonWorker;
    fn deref(&self) -> &JsonWorker {
        &self.0
    }
}

impl std::ops::DerefMut for PyBench {
    fn deref_mut(&mut self) -> &mut JsonWorker {
        &mut self.0
    }
}

impl PyBench {
    /// Starts the interpreter with nrf's allocator settings ([`nrf_models::runtime::malloc_env`],
    /// so that both sides run with the same glibc malloc); `Err` carries a note for the reader.
    pub(super) fn start(python: &Path) -> std::result::Result<(PyBench, Hello), String> {
        let script = twin_dir().join(PYTHON_SCRIPT);
        if !script.exists() {
            return Err(format!(
                "{} does not exist (set {TWIN_DIR_ENV} to the twin's folder); Python column skipped",
                script.display()
            ));
        }
        let args: [&std::ffi::OsStr; 2] = [script.as_os_str(), "--serve".as_ref()];
        let (worker, hello) = JsonWorker::start(
            python,
            &args,
            &nrf_models::runtime::malloc_env(),
            "PyTorch-in-Python was not timed",
        )?;
        Ok((PyBench(worker), hello))
    }

    pub(super) fn time(
        &mut self,
        row: Row,
        threads: i32,
        warmup: usize,
        reps: usize,
        cfg: &BenchConfig,
    ) -> Result<Vec<f64>> {
        #[derive(Deserialize)]
        struct Times {
            times_ms: Vec<f64>,
        }
        let req = serde_json::json!({"cmd": "time", "row": row.name(), "threads": threads, "warmup": warmup, "reps": reps, "batch": cfg.batch, "pgd_steps": cfg.pgd_steps});
        let t: Times = self.request(req)?;
        if t.times_ms.len() != reps || t.times_ms.iter().any(|v| !v.is_finite() || *v < 0.0) {
            bail!(
                "`{}` returned {} timings for {reps} repetitions, or bad values: {:?}",
                self.what,
                t.times_ms.len(),
                t.times_ms
            );
        }
        Ok(t.times_ms)
    }

    pub(super) fn check(&mut self) -> Result<CheckValues> {
        #[derive(Deserialize)]
        struct Check {
            check: CheckValues,
        }
        let c: Check = self.request(serde_json::json!({"cmd": "check", "threads": 1, "batch": CHECK_BATCH, "pgd_steps": CHECK_STEPS}))?;
        Ok(c.check)
    }
}

pub(crate) fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The exported environment variables that change how fast a stage runs: libtorch's threading,
/// glibc's allocator, and nrf's own execution settings (replica workers, rows per pass, memory
/// format).
pub(super) fn relevant_env() -> Vec<(String, String)> {
    let nrf = [
        nrf_models::replicas::WORKERS_ENV,
        nrf_attacks::ROWS_PER_PASS_ENV,
        nrf_models::runtime::MemoryFormat::ENV,
    ];
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            nrf.contains(&k.as_str())
                || k.starts_with("MALLOC_")
                || k == "GLIBC_TUNABLES"
                || k.starts_with("OMP_")
                || k.starts_with("MKL_")
                || k.starts_with("KMP_")
                || k == "LD_PRELOAD"
        })
        .collect();
    v.sort();
    v
}

pub(super) fn torch_base_version(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}
