//! What `nrf bench` writes: the table of Rust and Python timings ([`BenchReport`]).
use super::{BenchConfig, CheckValues, Row, CHECK_BATCH, CHECK_STEPS};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Row identifier (`train_step`, `pgd_l2_step`, `rep_match_step`).
    pub row: Row,
    /// Description.
    pub label: String,
    /// libtorch CPU threads.
    pub threads: i32,
    /// Median milliseconds per step in Rust.
    pub rust_ms: f64,
    /// Median milliseconds per step in Python (`None` when Python was not available).
    pub python_ms: Option<f64>,
    /// `python_ms / rust_ms`: at least 1 means Rust is at least as fast.
    pub ratio: Option<f64>,
    /// Median over the repetitions of Python time / Rust time of the same pair (robust to
    /// load changes during the run).
    pub ratio_paired: Option<f64>,
    /// All Rust samples (ms per step).
    pub rust_samples_ms: Vec<f64>,
    /// All Python samples (ms per step).
    pub python_samples_ms: Vec<f64>,
}

/// The Python side of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonInfo {
    /// The interpreter asked for.
    pub interpreter: String,
    /// Python version, when it started.
    pub python_version: Option<String>,
    /// torch version, when it could be imported.
    pub torch_version: Option<String>,
}

/// The result of the Rust-vs-Python agreement check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Rust values.
    pub rust: CheckValues,
    /// Python values.
    pub python: CheckValues,
    /// Largest relative difference of the float values.
    pub max_rel_diff: f64,
    /// Whether all values agree (relative tolerance 1e-3, equal correct counts).
    pub agree: bool,
}

/// Everything `nrf bench` measured; written to `results/bench.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The configuration.
    pub config: BenchConfig,
    /// Whether the Rust side was an optimised build (timings of a debug build mean little).
    pub release_build: bool,
    /// libtorch version the binary was built against.
    pub libtorch_version: Option<String>,
    /// rustc version.
    pub rustc_version: Option<String>,
    /// The Python side.
    pub python: PythonInfo,
    /// Rust-vs-Python agreement on deterministic inputs (absent without Python).
    pub check: Option<CheckResult>,
    /// The table.
    pub rows: Vec<BenchRow>,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Environment variables that change libtorch's threading or glibc's allocator (inherited by
    /// the Python side too), e.g. `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`, `OMP_NUM_THREADS`.
    pub env: Vec<(String, String)>,
    /// `/proc/loadavg` before and after the run (Linux only).
    pub load_before: Option<String>,
    /// See `load_before`.
    pub load_after: Option<String>,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Wall time of the whole run in seconds.
    pub wall_s: f64,
    /// Anything the reader of the table must know (missing Python, version mismatch, ...).
    pub notes: Vec<String>,
}

impl BenchReport {
    /// The markdown table (with a header line and the notes).
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "nrf bench: Fashion-MNIST CNN, batch {}, median of {} reps after {} warm-up (Rust and Python reps alternating), PGD runs of {} steps; {} build, libtorch {}, Python {} with torch {}; {} CPUs\n\n",
            c.batch,
            c.reps,
            c.warmup,
            c.pgd_steps,
            if self.release_build { "release" } else { "DEBUG" },
            self.libtorch_version.as_deref().unwrap_or("?"),
            self.python.python_version.as_deref().unwrap_or("-"),
            self.python.torch_version.as_deref().unwrap_or("-"),
            self.cpus,
        );
        s.push_str("| row | threads | Rust ms | Python ms | ratio |\n|---|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let py = r.python_ms.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            let ratio = r.ratio.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            s.push_str(&format!(
                "| {} | {} | {:.2} | {} | {} |\n",
                r.label, r.threads, r.rust_ms, py, ratio
            ));
        }
        s.push_str("\nratio = Python ms / Rust ms (>= 1: Rust at least as fast). ms per step; PGD and rep-matching runs divided by their steps.\n");
        if let Some(ch) = &self.check {
            s.push_str(&format!(
                "Same computation check (deterministic weights, batch {CHECK_BATCH}, {CHECK_STEPS} steps): {} (max relative difference {:.1e}).\n",
                if ch.agree { "Rust and Python agree" } else { "MISMATCH" },
                ch.max_rel_diff
            ));
        }
        if !self.env.is_empty() {
            let e: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("Environment (both sides): {}.\n", e.join(" ")));
        }
        if let (Some(a), Some(b)) = (&self.load_before, &self.load_after) {
            s.push_str(&format!("Load average before: {a}; after: {b}.\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("Note: {n}\n"));
        }
        s
    }
}

/// Median of `v` (NaN for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// Where a whole-run benchmark (`--pipeline`, `--end-to-end`) works: `out` names its JSON report
/// (an `.md` path is refused: the markdown goes next to it), its folder is created, and the
/// returned scratch folder is `.<stem>-work` beside it (`default_stem` when `out` has none).
pub(crate) fn scratch_beside(out: &Path, default_stem: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    if out.extension().is_some_and(|e| e == "md") {
        anyhow::bail!(
            "--out {}: names the JSON report, and the markdown table goes next to it with the extension .md (the table would overwrite the report); give a .json path",
            out.display()
        );
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = out
        .file_stem()
        .map_or(default_stem.into(), |s| s.to_string_lossy().into_owned());
    Ok(dir.join(format!(".{stem}-work")))
}

/// Writes `report` to `out` (JSON) and `markdown` next to it (`.md`), each atomically.
pub(crate) fn write_report<T: serde::Serialize>(
    out: &Path,
    report: &T,
    markdown: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    nrf_data::store::write_json_atomic(out, report)
        .with_context(|| format!("writing {}", out.display()))?;
    let md = out.with_extension("md");
    nrf_data::store::write_atomic(&md, markdown.as_bytes())
        .with_context(|| format!("writing {}", md.display()))
}
