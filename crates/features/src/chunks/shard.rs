//! Sharding: one job of a job array computes only its slice of the chunks (`--shard k/n`).
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::ops::Range;

/// Shard `index` (1-based) of `count`: the `index`-th of `count` contiguous, balanced ranges of a
/// stage's units (construction chunks, evaluation batches). Parsed from `"k/n"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`; an error unless `1 <= index <= count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index == 0 || index > count {
            bail!("a shard is k/n with 1 <= k <= n (e.g. 2/3), got {index}/{count}");
        }
        Ok(Shard { index, count })
    }

    /// The units `[lo, hi)` of `0..total` this shard owns: `[(k-1)·total/n, k·total/n)`. Empty
    /// when there are fewer units than shards.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |k: usize| (k as u128 * total as u128 / self.count as u128) as usize;
        at(self.index - 1)..at(self.index)
    }

    /// `"2of3"`, as in file names.
    pub fn tag(&self) -> String {
        format!("{}of{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || anyhow!("a shard is k/n with 1 <= k <= n (e.g. 2/3), got {s:?}");
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n).map_err(|_| bad())
    }
}

thread_local! {
    static SHARD: Cell<Option<Shard>> = const { Cell::new(None) };
}

/// Runs `f` with [`run_chunks`](super::run_chunks) in shard mode: every `run_chunks` inside computes only the
/// chunks of `shard`, writes them as one slice file and returns the error [`SliceWritten`](super::SliceWritten)
/// instead of the whole output (which no single shard has).
pub fn with_shard<T>(shard: Shard, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Shard>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SHARD.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SHARD.with(|s| s.replace(Some(shard))));
    f()
}

/// The shard [`with_shard`] set on this thread, if any.
pub fn current_shard() -> Option<Shard> {
    SHARD.with(|s| s.get())
}
