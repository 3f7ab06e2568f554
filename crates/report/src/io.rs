//! Small file helpers: atomic writes and JSON reading with errors that name the file.
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` atomically with nrf's one writer ([`nrf_data::atomic`]): the data
/// goes to a temporary file in the same directory, which is fsynced and renamed over `path`
/// (and the directory fsynced). Readers never see a half-written file; a failed write names
/// `path` and leaves it untouched. Parent directories are created.
pub fn atomic_write(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    Ok(nrf_data::atomic::write_atomic(path.as_ref(), bytes)?)
}

/// Serialises `value` as pretty JSON and writes it atomically to `path` (see [`atomic_write`]).
///
/// Note that JSON has no NaN or infinity: serde_json writes them as `null`, which cannot be read
/// back into an `f64` field. Store non-finite values as `Option<f64>` = `None` instead.
pub fn write_json_atomic<T: Serialize>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    let path = path.as_ref();
    let mut text = serde_json::to_string_pretty(value)
        .with_context(|| format!("serialising JSON for {}", path.display()))?;
    text.push('\n');
    atomic_write(path, text.as_bytes())
}

/// Reads and parses a JSON file; the error names the file (and serde's line / column / field).
pub fn read_json<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
