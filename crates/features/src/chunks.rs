//! Resumable, chunked construction: every chunk of examples is computed once and stored as its
//! own safetensors file (atomically); a run stopped half way continues at the first missing chunk.
//!
//! Sharding ([`Shard`], [`with_shard`]): a job array splits the chunks of a construction into n
//! contiguous ranges; shard k computes only its range (resumable, in `shard-<k>of<n>/`) and stores
//! it as one slice file `slices/slice-<k>of<n>.safetensors`. Chunk k is computed the same way
//! whichever process computes it, so the merged slices ([`merge_slices`], done by the next
//! ordinary [`run_chunks`]) equal an unsharded construction byte for byte.
use anyhow::{anyhow, bail, Context, Result};
use nrf_models::checkpoint::{is_damaged, read_tensors, write_tensors_atomic, Damaged};
use nrf_models::train::progress_bar;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// The output of one chunk: images `[b,C,H,W]`, labels `[b]`, per-example statistics `[b, m]`.
pub struct ChunkOut {
    pub images: Tensor,
    pub labels: Tensor,
    pub stats: Tensor,
}

fn chunk_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("chunk_{k:05}.safetensors"))
}

/// Runs `f` on each chunk `k` in `0..n_chunks` whose file is not yet in `dir`, then loads and
/// concatenates every chunk. `label` names the progress bar. Returns the concatenated output and
/// how many chunks were computed now (vs. reloaded).
///
/// Inside [`with_shard`] it computes only the shard's chunks, stores them as the shard's slice and
/// returns the error [`SliceWritten`]. Otherwise, when `dir` holds shard slices, it merges them
/// instead of computing anything: every shard's slice must be there, none twice
/// ([`merge_slices`]).
pub fn run_chunks(
    dir: &Path,
    n_chunks: usize,
    label: &str,
    progress: bool,
    mut f: impl FnMut(usize) -> Result<ChunkOut>,
) -> Result<(ChunkOut, usize)> {
    if let Some(shard) = current_shard() {
        return Err(shard_chunks(dir, n_chunks, shard, label, progress, f)?.into());
    }
    if let Some(m) = merge_slices(dir, n_chunks, label)? {
        tracing::info!(
            "{label}: merged {} shard slices ({} chunks computed by the shards)",
            m.shards,
            m.computed
        );
        let out = ChunkOut {
            images: m.get("images")?,
            labels: m.get("labels")?,
            stats: m.get("stats")?,
        };
        return Ok((out, m.computed));
    }
    let (outs, computed) = compute_chunks(dir, 0..n_chunks, label, progress, &mut f)?;
    Ok((cat_chunks(&outs), computed))
}

fn cat_chunks(outs: &[ChunkOut]) -> ChunkOut {
    let cat = |g: fn(&ChunkOut) -> &Tensor| {
        Tensor::cat(
            &outs
                .iter()
                .map(|o| g(o).shallow_clone())
                .collect::<Vec<_>>(),
            0,
        )
    };
    ChunkOut {
        images: cat(|o| &o.images),
        labels: cat(|o| &o.labels),
        stats: cat(|o| &o.stats),
    }
}

/// Shard mode of [`run_chunks`]: the chunks of `shard` (resumable, in `dir/shard-<k>of<n>/`),
/// stored as one slice; a slice already stored is checked and kept.
fn shard_chunks(
    dir: &Path,
    n_chunks: usize,
    shard: Shard,
    label: &str,
    progress: bool,
    mut f: impl FnMut(usize) -> Result<ChunkOut>,
) -> Result<SliceWritten> {
    if let Some(path) = check_existing_slice(dir, shard, n_chunks)? {
        tracing::info!(
            "{label}: shard {shard} already stored in {}",
            path.display()
        );
        return Ok(SliceWritten {
            shard,
            path,
            computed: 0,
        });
    }
    let units = shard.range(n_chunks);
    let work = dir.join(format!("shard-{}", shard.tag()));
    tracing::info!(
        "{label}: shard {shard}, chunks {}..{} of {n_chunks}",
        units.start,
        units.end
    );
    let (outs, computed) = compute_chunks(
        &work,
        units.clone(),
        &format!("{label} {shard}"),
        progress,
        &mut f,
    )?;
    let rows: Vec<i64> = outs.iter().map(|o| o.labels.size()[0]).collect();
    let tensors = if outs.is_empty() {
        Vec::new()
    } else {
        let out = cat_chunks(&outs);
        vec![
            ("images".to_string(), out.images),
            ("labels".to_string(), out.labels),
            ("stats".to_string(), out.stats),
        ]
    };
    let path = write_slice(dir, shard, units, n_chunks, &rows, computed, tensors)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(SliceWritten {
        shard,
        path,
        computed,
    })
}

/// Computes the chunks of `ks` missing in `dir` (each stored atomically as it is done), then
/// loads all of them in order. Returns them and how many were computed now.
fn compute_chunks(
    dir: &Path,
    ks: Range<usize>,
    label: &str,
    progress: bool,
    f: &mut impl FnMut(usize) -> Result<ChunkOut>,
) -> Result<(Vec<ChunkOut>, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let n_chunks = ks.len();
    let todo: Vec<usize> = ks
        .clone()
        .filter(|&k| !chunk_path(dir, k).exists())
        .collect();
    if todo.len() < n_chunks {
        tracing::info!(
            "{label}: resuming, {} of {n_chunks} chunks already done",
            n_chunks - todo.len()
        );
    }
    let pb = progress_bar(n_chunks as u64, label, progress);
    pb.set_position((n_chunks - todo.len()) as u64);
    pb.reset_eta();
    let start = Instant::now();
    for &k in &todo {
        write_chunk(&chunk_path(dir, k), f(k)?)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    if !todo.is_empty() {
        tracing::info!(
            "{label}: {} chunks in {:.1}s",
            todo.len(),
            start.elapsed().as_secs_f64()
        );
    }
    // Read every chunk back. A damaged one (truncated, corrupted, checksum mismatch: see
    // `nrf_models::checkpoint::read_tensors`) is named in a warning and computed again.
    let mut outs = Vec::with_capacity(n_chunks);
    let mut redone = 0;
    for k in ks {
        let path = chunk_path(dir, k);
        let out = match read_chunk(&path) {
            Err(e) if is_damaged(&e) => {
                tracing::warn!("{label}: {e:#}; computing chunk {k} again");
                write_chunk(&path, f(k)?)?;
                redone += 1;
                read_chunk(&path)?
            }
            other => other?,
        };
        outs.push(out);
    }
    Ok((outs, todo.len() + redone))
}

fn write_chunk(path: &Path, out: ChunkOut) -> Result<()> {
    write_tensors_atomic(
        path,
        &[
            ("images".into(), out.images),
            ("labels".into(), out.labels),
            ("stats".into(), out.stats),
        ],
    )
}

/// Reads one chunk file; a file that lacks one of the tensors is [`Damaged`].
fn read_chunk(path: &Path) -> Result<ChunkOut> {
    let t = read_tensors(path)?;
    let get = |name: &str| -> Result<Tensor> {
        match t.iter().find(|(n, _)| n == name) {
            Some((_, t)) => Ok(t.shallow_clone()),
            None => Err(Damaged {
                path: path.to_path_buf(),
                detail: format!("lacks tensor {name}"),
            }
            .into()),
        }
    };
    Ok(ChunkOut {
        images: get("images")?,
        labels: get("labels")?,
        stats: get("stats")?,
    })
}

/// Removes the chunk directory once its result is stored elsewhere.
pub fn clear_chunks(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sharding: one job of a job array computes only its slice of the chunks (`--shard k/n`).
// ---------------------------------------------------------------------------------------------

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

/// Runs `f` with [`run_chunks`] in shard mode: every `run_chunks` inside computes only the
/// chunks of `shard`, writes them as one slice file and returns the error [`SliceWritten`]
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

/// What a shard job returns instead of a result: its slice is stored (or was already).
#[derive(Debug)]
pub struct SliceWritten {
    pub shard: Shard,
    pub path: PathBuf,
    /// Units (chunks, batches) computed now; 0 when the slice already existed.
    pub computed: usize,
}

impl std::fmt::Display for SliceWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {}: slice stored in {} ({} units computed now); the stage completes when an \
             ordinary run merges every shard's slice",
            self.shard,
            self.path.display(),
            self.computed
        )
    }
}

impl std::error::Error for SliceWritten {}

/// Whether `e` (or an error in its chain) is [`SliceWritten`].
pub fn is_slice_written(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<SliceWritten>())
}

/// The folder of the slice files of a stage's folder `dir`.
pub fn slices_dir(dir: &Path) -> PathBuf {
    dir.join("slices")
}

/// The slice file of `shard` in `dir`.
pub fn slice_path(dir: &Path, shard: Shard) -> PathBuf {
    slices_dir(dir).join(format!("slice-{}.safetensors", shard.tag()))
}

/// The name of the bookkeeping tensor of a slice file: `[k, n, lo, hi, total, computed]`.
const SLICE_META: &str = "slice_meta";
/// Rows of each unit of the slice (`[hi - lo]`, int64).
const SLICE_ROWS: &str = "slice_unit_rows";

/// Stores the slice of `shard`, units `units` of `0..total`, `unit_rows[i]` rows in unit
/// `units.start + i`; `tensors` hold the slice's rows (all with `sum(unit_rows)` rows; none when
/// the slice is empty). Written atomically.
pub fn write_slice(
    dir: &Path,
    shard: Shard,
    units: Range<usize>,
    total: usize,
    unit_rows: &[i64],
    computed: usize,
    tensors: Vec<(String, Tensor)>,
) -> Result<PathBuf> {
    if unit_rows.len() != units.len() || units != shard.range(total) {
        bail!(
            "slice of shard {shard}: units {units:?} with {} row counts, expected {:?}",
            unit_rows.len(),
            shard.range(total)
        );
    }
    let meta = [
        shard.index as i64,
        shard.count as i64,
        units.start as i64,
        units.end as i64,
        total as i64,
        computed as i64,
    ];
    let mut all = vec![
        (SLICE_META.to_string(), Tensor::from_slice(&meta)),
        (SLICE_ROWS.to_string(), Tensor::from_slice(unit_rows)),
    ];
    all.extend(tensors);
    let path = slice_path(dir, shard);
    write_tensors_atomic(&path, &all)?;
    Ok(path)
}

/// One slice file as read back and checked.
struct Slice {
    path: PathBuf,
    shard: Shard,
    units: Range<usize>,
    rows: Vec<i64>,
    computed: usize,
    /// The units of the whole stage.
    total: usize,
    /// Name, dtype and shape of each data tensor (from the file's header).
    shapes: Vec<(String, String, Vec<i64>)>,
    /// The data tensors (empty unless loaded).
    tensors: Vec<(String, Tensor)>,
}

/// The tensors' names, dtypes and shapes in a safetensors file's header, and the int64 values
/// of the bookkeeping tensors, without reading the rest of the file.
type Header = (Vec<(String, String, Vec<i64>)>, Vec<i64>, Vec<i64>);

fn read_header(path: &Path) -> Result<Header> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!(
            "{}: not a safetensors file (header of {len} bytes)",
            path.display()
        );
    }
    let mut text = vec![0u8; len as usize];
    f.read_exact(&mut text)
        .with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text)
        .with_context(|| format!("{}: unreadable safetensors header", path.display()))?;
    let mut shapes = Vec::new();
    let (mut meta, mut rows) = (None, None);
    for (name, v) in &header {
        if name == "__metadata__" {
            continue;
        }
        let bad = || anyhow!("{}: bad header entry for tensor {name}", path.display());
        let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(bad)?;
        let shape: Vec<i64> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_i64().ok_or_else(bad))
            .collect::<Result<_>>()?;
        if name == SLICE_META || name == SLICE_ROWS {
            let off = v
                .get("data_offsets")
                .and_then(|o| o.as_array())
                .filter(|o| o.len() == 2)
                .ok_or_else(bad)?;
            let (a, b) = (
                off[0].as_u64().ok_or_else(bad)?,
                off[1].as_u64().ok_or_else(bad)?,
            );
            if dtype != "I64" || b < a || (b - a) % 8 != 0 || b - a > 1 << 30 {
                return Err(bad());
            }
            let mut bytes = vec![0u8; (b - a) as usize];
            f.seek(SeekFrom::Start(8 + len + a))?;
            f.read_exact(&mut bytes)
                .with_context(|| format!("{}: truncated", path.display()))?;
            let vals: Vec<i64> = bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            if name == SLICE_META {
                meta = Some(vals);
            } else {
                rows = Some(vals);
            }
        } else {
            shapes.push((name.clone(), dtype.to_string(), shape));
        }
    }
    shapes.sort();
    let lacks = |t: &str| anyhow!("{}: lacks tensor {t}", path.display());
    Ok((
        shapes,
        meta.ok_or_else(|| lacks(SLICE_META))?,
        rows.ok_or_else(|| lacks(SLICE_ROWS))?,
    ))
}

/// The shard a slice file's name says it holds.
fn shard_of_name(path: &Path) -> Result<Shard> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.strip_prefix("slice-")
        .and_then(|n| n.strip_suffix(".safetensors"))
        .and_then(|t| t.split_once("of"))
        .and_then(|(k, n)| Shard::new(k.parse().ok()?, n.parse().ok()?).ok())
        .ok_or_else(|| {
            anyhow!(
                "{}: not a slice file name (slice-<k>of<n>.safetensors)",
                path.display()
            )
        })
}

/// Reads one slice file's header (and its tensors when `load`) and checks it against its name
/// and `total` units (`None`: the total it records).
fn read_slice(path: &Path, total: Option<usize>, load: bool) -> Result<Slice> {
    let tag = shard_of_name(path)?;
    let (shapes, meta, rows) = read_header(path)?;
    let bad = |why: String| {
        anyhow!(
            "{}: {why}; delete it and run shard {tag} again",
            path.display()
        )
    };
    let [k, n, lo, hi, tot, computed] = meta[..] else {
        return Err(bad(format!(
            "bookkeeping tensor of {} values, not 6",
            meta.len()
        )));
    };
    if (k as usize, n as usize) != (tag.index, tag.count) {
        return Err(bad(format!("holds shard {k}/{n}, its name says {tag}")));
    }
    let total = total.unwrap_or(tot.max(0) as usize);
    if tot as usize != total {
        return Err(bad(format!(
            "made for {tot} units, this stage has {total} (another configuration)"
        )));
    }
    let units = lo.max(0) as usize..hi.max(0) as usize;
    if units != tag.range(total) {
        return Err(bad(format!(
            "covers units {units:?}, shard {tag} of {total} units is {:?}",
            tag.range(total)
        )));
    }
    if rows.len() != units.len() {
        return Err(bad(format!(
            "{} row counts for {} units",
            rows.len(),
            units.len()
        )));
    }
    let n_rows: i64 = rows.iter().sum();
    for (name, _, shape) in &shapes {
        if shape.first() != Some(&n_rows) {
            return Err(bad(format!(
                "tensor {name} has shape {shape:?}, the slice has {n_rows} rows"
            )));
        }
    }
    let tensors = if load {
        read_tensors(path)?
            .into_iter()
            .filter(|(n, _)| n != SLICE_META && n != SLICE_ROWS)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Slice {
        path: path.to_path_buf(),
        shard: tag,
        units,
        rows,
        computed: computed.max(0) as usize,
        total,
        shapes,
        tensors,
    })
}

/// The slices of a stage assembled: each named tensor concatenated in unit order.
pub struct Merged {
    pub tensors: Vec<(String, Tensor)>,
    /// Rows per unit over `0..total`.
    pub unit_rows: Vec<i64>,
    /// Units the shards computed (vs. found done when they started).
    pub computed: usize,
    pub shards: usize,
}

impl Merged {
    /// The merged tensor `name`.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .ok_or_else(|| anyhow!("the merged slices lack tensor {name}"))
    }
}

/// The slice files in `dir`'s slice folder (no temporary files), sorted by name.
pub fn slice_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let sdir = slices_dir(dir);
    if !sdir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sdir)
        .with_context(|| format!("listing {}", sdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and checks every slice of `dir` (a stage of `total` units, named `what` in errors):
/// `None` when there are none; an error naming the file(s) when a slice is unreadable or does not
/// match its name, when two slices cover the same units (duplicate), or when units are covered by
/// none (a missing shard); otherwise the concatenation, in unit order.
pub fn merge_slices(dir: &Path, total: usize, what: &str) -> Result<Option<Merged>> {
    let files = slice_files(dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    check_slice_set(dir, &files, Some(total), what, true).map(Some)
}

/// [`merge_slices`] without loading the data (headers only), for a stage whose unit count is
/// the one its slices record: `None` when `dir` has no slices, else the number of slices and
/// the units they cover, or the error naming the missing / duplicate / damaged shard and file.
pub fn check_slices(dir: &Path, what: &str) -> Result<Option<(usize, usize)>> {
    let files = slice_files(dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let m = check_slice_set(dir, &files, None, what, false)?;
    Ok(Some((m.shards, m.unit_rows.len())))
}

fn check_slice_set(
    dir: &Path,
    files: &[PathBuf],
    total: Option<usize>,
    what: &str,
    load: bool,
) -> Result<Merged> {
    let mut slices: Vec<Slice> = Vec::with_capacity(files.len());
    let mut total = total;
    for p in files {
        let s = read_slice(p, total, false).with_context(|| format!("{what}: shard slices"))?;
        total = Some(s.total);
        slices.push(s);
    }
    let total = total.unwrap_or(0);
    slices.sort_by_key(|s| (s.units.start, s.units.end));
    let nonempty: Vec<usize> = (0..slices.len())
        .filter(|&i| !slices[i].units.is_empty())
        .collect();
    // Duplicates: two slices (of different shard counts) over the same units.
    for w in nonempty.windows(2) {
        let (a, b) = (&slices[w[0]], &slices[w[1]]);
        if b.units.start < a.units.end {
            bail!(
                "{what}: shard {} ({}) and shard {} ({}) both cover units {}..{} (duplicate \
                 slices, from runs with different shard counts?); delete the slices of the shard \
                 count you do not use",
                a.shard,
                a.path.display(),
                b.shard,
                b.path.display(),
                b.units.start,
                a.units.end.min(b.units.end)
            );
        }
    }
    // Missing: shards of the same count absent, or units no slice covers.
    let counts: std::collections::BTreeSet<usize> = slices.iter().map(|s| s.shard.count).collect();
    if counts.len() == 1 {
        let n = slices[0].shard.count;
        let missing: Vec<String> = (1..=n)
            .filter(|&k| !slices.iter().any(|s| s.shard.index == k))
            .map(|k| {
                let sh = Shard { index: k, count: n };
                format!("shard {sh} ({})", slice_path(dir, sh).display())
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "{what}: {} of {n} shard slices missing: {}; run those shards (--shard k/{n}, \
                 same preset, --set values and --results) and merge again",
                missing.len(),
                missing.join(", ")
            );
        }
    }
    let mut at = 0;
    for &i in &nonempty {
        let s = &slices[i];
        if s.units.start > at {
            break;
        }
        at = s.units.end;
    }
    if at < total {
        bail!(
            "{what}: units {at}.. of {total} are in no slice (slices of shard counts {counts:?} \
             in {})",
            slices_dir(dir).display()
        );
    }
    let mut unit_rows = Vec::with_capacity(total);
    for s in &slices {
        unit_rows.extend_from_slice(&s.rows);
    }
    // Every unit but the last has the same size (the batch size), the last at most that.
    if let Some((&last, body)) = unit_rows.split_last() {
        let size = body.first().copied().unwrap_or(last);
        if body.iter().any(|&r| r != size) || last > size || last < 1 {
            bail!("{what}: the slices' units have unequal sizes {unit_rows:?}");
        }
    }
    // The same tensors, dtypes and trailing shapes in every slice.
    if let Some(&first) = nonempty.first() {
        let f = &slices[first];
        let sig = |s: &Slice| -> Vec<(String, String, Vec<i64>)> {
            s.shapes
                .iter()
                .map(|(n, d, sh)| (n.clone(), d.clone(), sh[1..].to_vec()))
                .collect()
        };
        for &i in &nonempty {
            if sig(&slices[i]) != sig(f) {
                bail!(
                    "{what}: {} holds tensors {:?}, {} holds {:?}",
                    slices[i].path.display(),
                    slices[i].shapes,
                    f.path.display(),
                    f.shapes
                );
            }
        }
    }
    let mut tensors = Vec::new();
    if load {
        let mut parts: Vec<Vec<(String, Tensor)>> = Vec::new();
        for &i in &nonempty {
            parts.push(read_slice(&slices[i].path, Some(total), true)?.tensors);
        }
        let names: Vec<String> = slices
            .get(nonempty.first().copied().unwrap_or(usize::MAX))
            .map(|s| s.shapes.iter().map(|(n, ..)| n.clone()).collect())
            .unwrap_or_default();
        for name in names {
            let ts = parts
                .iter()
                .map(|p| {
                    p.iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, t)| t.shallow_clone())
                        .ok_or_else(|| anyhow!("{what}: a slice lacks tensor {name}"))
                })
                .collect::<Result<Vec<_>>>()?;
            tensors.push((name, Tensor::cat(&ts, 0)));
        }
    }
    Ok(Merged {
        tensors,
        unit_rows,
        computed: slices.iter().map(|s| s.computed).sum(),
        shards: slices.len(),
    })
}

/// Checks the slice file of `shard` that a job found already written (before it skips the work);
/// `None` (with a warning naming it) when its data is damaged, so that the shard is recomputed.
pub fn check_existing_slice(dir: &Path, shard: Shard, total: usize) -> Result<Option<PathBuf>> {
    let path = slice_path(dir, shard);
    if !path.exists() {
        return Ok(None);
    }
    read_slice(&path, Some(total), false)?;
    // The header is right; the data must match its checksum too, else the shard computes it again.
    if let Err(e) = read_tensors(&path) {
        if is_damaged(&e) {
            tracing::warn!("{e:#}; computing shard {shard} again");
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(path))
}

#[cfg(test)]
mod integrity_tests {
    use super::*;
    use tch::{Device, Kind};

    fn chunk(k: usize) -> ChunkOut {
        ChunkOut {
            images: Tensor::full([2, 1, 2, 2], k as f64 / 10.0, (Kind::Float, Device::Cpu)),
            labels: Tensor::full([2], k as i64, (Kind::Int64, Device::Cpu)),
            stats: Tensor::full([2, 1], k as f64, (Kind::Float, Device::Cpu)),
        }
    }

    /// Runs 3 chunks in `dir`; returns the labels and the chunks computed.
    fn run(dir: &Path) -> Result<(Vec<i64>, Vec<usize>)> {
        let mut called = Vec::new();
        let (out, n) = run_chunks(dir, 3, "test", false, |k| {
            called.push(k);
            Ok(chunk(k))
        })?;
        assert_eq!(n, called.len());
        Ok((Vec::<i64>::try_from(&out.labels)?, called))
    }

    #[test]
    fn damaged_chunks_are_computed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (labels, called) = run(dir.path()).unwrap();
        assert_eq!(labels, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(called, vec![0, 1, 2]);
        // Chunk 1 corrupted (one byte of its data), chunk 2 truncated.
        let p1 = chunk_path(dir.path(), 1);
        let mut b = std::fs::read(&p1).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x01;
        std::fs::write(&p1, b).unwrap();
        let p2 = chunk_path(dir.path(), 2);
        let b = std::fs::read(&p2).unwrap();
        std::fs::write(&p2, &b[..b.len() / 2]).unwrap();
        // A stale temporary file of chunk 0 is no chunk.
        std::fs::write(dir.path().join(".chunk_00000.safetensors.tmp-1-1"), b"x").unwrap();
        let (labels, called) = run(dir.path()).unwrap();
        assert_eq!(labels, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(called, vec![1, 2]);
        let (_, called) = run(dir.path()).unwrap();
        assert!(called.is_empty(), "{called:?}");
    }

    #[test]
    fn a_failed_chunk_write_names_the_file_and_the_run_resumes() {
        let dir = tempfile::tempdir().unwrap();
        // While chunk 1 is computed, its file name gets taken by a folder: its write fails.
        let p1 = chunk_path(dir.path(), 1);
        let mut called = Vec::new();
        let e = run_chunks(dir.path(), 3, "test", false, |k| {
            called.push(k);
            if k == 1 {
                std::fs::create_dir_all(p1.join("x")).unwrap();
            }
            Ok(chunk(k))
        })
        .err()
        .unwrap();
        let e = format!("{e:#}");
        assert!(e.contains(&p1.display().to_string()), "{e}");
        assert!(e.contains("cannot move the written file into place"), "{e}");
        assert_eq!(e.matches("os error").count(), 1, "{e}");
        assert_eq!(called, vec![0, 1], "the run stops at the failed write");
        assert!(chunk_path(dir.path(), 0).exists(), "chunk 0 is kept");
        assert!(
            nrf_data::atomic::remove_stale_temps(dir.path())
                .unwrap()
                .is_empty(),
            "no temporary file left"
        );
        // The problem goes away: the run resumes at chunk 1.
        std::fs::remove_dir_all(&p1).unwrap();
        let (labels, called) = run(dir.path()).unwrap();
        assert_eq!(called, vec![1, 2]);
        assert_eq!(labels, vec![0, 0, 1, 1, 2, 2]);
    }
}
