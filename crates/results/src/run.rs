//! `run.json`: the run's configuration, machine, versions and stages ([`RunInfo`]), and the
//! headline threat model and number of classes it resolves.
use super::check_nonneg;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC): how run.json's `unix:` times and
/// the results lock's start times are shown.
pub fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The seconds since the Unix epoch of a run.json time in its `unix:<seconds>` form (`None` for
/// another form).
pub fn unix_seconds(t: &str) -> Option<u64> {
    t.strip_prefix("unix:").and_then(|n| n.parse::<u64>().ok())
}

/// A run.json time (`started`, `finished`: "unix:1796332126", or already a date) as
/// "2026-12-03 21:08 UTC", as the reports show it.
pub fn run_time(t: &str) -> String {
    match unix_seconds(t) {
        Some(secs) => format!("{} UTC", &utc_string(secs)[..16]),
        None => t.to_string(),
    }
}

/// Machine description recorded with every run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// Host name of the machine.
    pub hostname: String,
    /// Operating system (e.g. "linux x86_64").
    pub os: String,
    /// CPU model name.
    pub cpu: String,
    /// Number of logical CPUs.
    pub cpus: usize,
    /// Threads libtorch was allowed to use.
    pub torch_threads: i64,
    /// `"cpu"` or `"cuda:0 (<name>)"`.
    pub device: String,
}

/// Status of one pipeline stage.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Computed in this run.
    Done,
    /// Loaded from the cache of an earlier run (same configuration hash).
    Cached,
    /// Failed; see `message`.
    Failed,
}

/// One pipeline stage (e.g. "train:C_std", "construct:D_R").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageInfo {
    /// Stage name, e.g. "train:C_std".
    pub name: String,
    /// Whether the stage was computed, loaded from cache, or failed.
    pub status: StageStatus,
    /// Wall time of the computation in seconds (for cached stages: the original computation's).
    pub wall_s: f64,
    /// When the computation started (`unix:<seconds>`; cached stages: the original
    /// computation's). Absent in results of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// The worker process that computed it (`k/n`, [`RunInfo`] of a run with several worker
    /// processes); absent when the run's own process did, and in results of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Hash of the stage's configuration and inputs (cache key).
    pub key: String,
    /// Error or note (failed stages).
    #[serde(default)]
    pub message: Option<String>,
}

/// `run.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Preset name, e.g. "fmnist".
    pub preset: String,
    /// The preset file's full text, as used.
    pub config_toml: String,
    /// Master seed of the run.
    pub seed: u64,
    /// The machine the run used.
    pub machine: MachineInfo,
    /// libtorch version.
    pub torch_version: String,
    /// Version of nrf.
    pub nrf_version: String,
    /// Versions of key crates (tch, ...).
    pub crate_versions: BTreeMap<String, String>,
    /// RFC 3339 or unix-seconds strings.
    pub started: String,
    /// When the run finished (None while running or after a crash).
    pub finished: Option<String>,
    /// Every stage, in execution order.
    pub stages: Vec<StageInfo>,
    /// Wall time of the whole run in seconds.
    pub total_wall_s: f64,
    /// Stages the preset asks for that have not completed (empty when finished).
    #[serde(default)]
    pub missing: Vec<String>,
    /// The ε of the headline robust-accuracy number (Figure 2's "robust accuracy" column and the
    /// verdicts). Added by nrf-report; when absent the report falls back to the preset's
    /// `[eval] headline_eps` (see [`RunInfo::resolved_headline`]).
    #[serde(default)]
    pub headline_eps: Option<f64>,
    /// Number of classes of the dataset (chance level = 1 / num_classes). Added by nrf-report; when
    /// absent the preset's `[data] num_classes`, then 10, is used (see [`RunInfo::resolved_num_classes`]).
    #[serde(default)]
    pub num_classes: Option<usize>,
}

/// The threat model of the headline robust-accuracy number.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// "L2" or "Linf".
    pub norm: String,
    /// Perturbation budget.
    pub eps: f64,
    /// Where the value came from, e.g. "run.json headline_eps".
    pub source: String,
}

fn config_value<'a>(config: &'a toml::Value, table: &str, key: &str) -> Option<&'a toml::Value> {
    config.get(table)?.get(key)
}

impl RunInfo {
    /// The preset text parsed as TOML (None when empty or not valid TOML).
    pub fn config(&self) -> Option<toml::Value> {
        if self.config_toml.trim().is_empty() {
            return None;
        }
        toml::from_str(&self.config_toml).ok()
    }

    /// The headline threat model: `headline_eps` from run.json, else `[eval] headline_eps` of the
    /// preset text. The norm is `[eval] headline_norm` of the preset, else "L2" (the paper's
    /// Figure 2 uses ℓ2). None when neither source gives an ε.
    pub fn resolved_headline(&self) -> Option<Headline> {
        let config = self.config();
        let norm = config
            .as_ref()
            .and_then(|c| config_value(c, "eval", "headline_norm"))
            .and_then(|v| v.as_str())
            .unwrap_or("L2")
            .to_string();
        if let Some(eps) = self.headline_eps.filter(|e| e.is_finite() && *e >= 0.0) {
            return Some(Headline {
                norm,
                eps,
                source: "run.json headline_eps".into(),
            });
        }
        let v = config_value(config.as_ref()?, "eval", "headline_eps")?;
        let eps = v.as_float().or_else(|| v.as_integer().map(|i| i as f64))?;
        (eps.is_finite() && eps >= 0.0).then(|| Headline {
            norm,
            eps,
            source: "preset [eval] headline_eps".into(),
        })
    }

    /// Number of classes and where it came from: `num_classes` from run.json, else
    /// `[data] num_classes` of the preset, else 10 (Fashion-MNIST and CIFAR-10 both have 10).
    pub fn resolved_num_classes(&self) -> (usize, &'static str) {
        if let Some(n) = self.num_classes.filter(|n| *n >= 2) {
            return (n, "run.json num_classes");
        }
        let from_config = self
            .config()
            .as_ref()
            .and_then(|c| config_value(c, "data", "num_classes"))
            .and_then(|v| v.as_integer())
            .filter(|n| *n >= 2);
        match from_config {
            Some(n) => (n as usize, "preset [data] num_classes"),
            None => (10, "assumed (run.json has no num_classes)"),
        }
    }

    /// Checks values a report relies on (finite, non-negative wall times).
    pub fn validate(&self) -> Result<()> {
        check_nonneg("total_wall_s", self.total_wall_s)?;
        for (i, s) in self.stages.iter().enumerate() {
            check_nonneg(&format!("stages[{i}] ({}).wall_s", s.name), s.wall_s)?;
        }
        if let Some(e) = self.headline_eps {
            check_nonneg("headline_eps", e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00");
        assert_eq!(utc_string(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_string(1_709_251_199), "2024-02-29 23:59:59");
        assert_eq!(utc_string(1_709_251_200), "2024-03-01 00:00:00");
    }

    #[test]
    fn run_times_read_as_dates() {
        assert_eq!(run_time("unix:0"), "1970-01-01 00:00 UTC");
        assert_eq!(unix_seconds("unix:1796332126"), Some(1796332126));
        assert_eq!(unix_seconds("2025-01-01T00:00:00Z"), None);
        assert_eq!(run_time("unix:1796332126"), "2026-12-03 21:08 UTC");
        assert_eq!(run_time("unix:951782400"), "2000-02-29 00:00 UTC");
        assert_eq!(run_time("2026-12-03T21:08:00Z"), "2026-12-03T21:08:00Z");
    }

    use super::*;

    #[test]
    fn headline_and_classes_resolution() {
        let mut run = RunInfo::default();
        assert_eq!(run.resolved_headline(), None);
        assert_eq!(run.resolved_num_classes().0, 10);
        run.config_toml =
            "[eval]\nheadline_eps = 0.25\nheadline_norm = \"Linf\"\n[data]\nnum_classes = 9\n"
                .into();
        let h = run.resolved_headline().unwrap();
        assert_eq!((h.norm.as_str(), h.eps), ("Linf", 0.25));
        assert!(h.source.contains("preset"));
        assert_eq!(run.resolved_num_classes(), (9, "preset [data] num_classes"));
        run.headline_eps = Some(0.5);
        run.num_classes = Some(10);
        assert_eq!(run.resolved_headline().unwrap().eps, 0.5);
        assert_eq!(run.resolved_num_classes().0, 10);
        // Integer eps in the preset, and an unparsable preset.
        run.headline_eps = None;
        run.config_toml = "[eval]\nheadline_eps = 1\n".into();
        assert_eq!(run.resolved_headline().unwrap().eps, 1.0);
        run.config_toml = "not toml [".into();
        assert_eq!(run.resolved_headline(), None);
    }

    #[test]
    fn old_run_json_without_new_fields_parses() {
        let mut v = serde_json::to_value(RunInfo::default()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("headline_eps");
        o.remove("num_classes");
        o.remove("missing");
        let run: RunInfo = serde_json::from_value(v).unwrap();
        assert_eq!(run.headline_eps, None);
    }
}
