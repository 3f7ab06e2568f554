//! A shard's output: one slice file per shard (`slices/slice-<k>of<n>.safetensors`), checked and
//! merged into the whole construction by the next ordinary [`super::run_chunks`].
use super::Shard;
use anyhow::{anyhow, bail, Context, Result};
use nrf_models::checkpoint::{is_damaged, read_tensors, write_tensors_atomic};
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::Tensor;

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
    check_coverage(dir, &slices, &nonempty, total, what)?;
    let unit_rows = rows_per_unit(&slices, total, what)?;
    check_same_tensors(&slices, &nonempty, what)?;
    let tensors = if load {
        cat_slices(&slices, &nonempty, total, what)?
    } else {
        Vec::new()
    };
    Ok(Merged {
        tensors,
        unit_rows,
        computed: slices.iter().map(|s| s.computed).sum(),
        shards: slices.len(),
    })
}

/// The slices (sorted by their units; `nonempty` those with units) cover the `total` units once:
/// no two overlap, no shard of their shard count is missing, no unit is left out.
fn check_coverage(
    dir: &Path,
    slices: &[Slice],
    nonempty: &[usize],
    total: usize,
    what: &str,
) -> Result<()> {
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
    for &i in nonempty {
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
    Ok(())
}

/// The rows of every unit, in order; every unit but the last has the same size (the batch size),
/// the last at most that.
fn rows_per_unit(slices: &[Slice], total: usize, what: &str) -> Result<Vec<i64>> {
    let mut unit_rows = Vec::with_capacity(total);
    for s in slices {
        unit_rows.extend_from_slice(&s.rows);
    }
    if let Some((&last, body)) = unit_rows.split_last() {
        let size = body.first().copied().unwrap_or(last);
        if body.iter().any(|&r| r != size) || last > size || last < 1 {
            bail!("{what}: the slices' units have unequal sizes {unit_rows:?}");
        }
    }
    Ok(unit_rows)
}

/// The same tensors, dtypes and trailing shapes in every slice with units.
fn check_same_tensors(slices: &[Slice], nonempty: &[usize], what: &str) -> Result<()> {
    if let Some(&first) = nonempty.first() {
        let f = &slices[first];
        let sig = |s: &Slice| -> Vec<(String, String, Vec<i64>)> {
            s.shapes
                .iter()
                .map(|(n, d, sh)| (n.clone(), d.clone(), sh[1..].to_vec()))
                .collect()
        };
        for &i in nonempty {
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
    Ok(())
}

/// Every tensor of the slices with units, concatenated along the rows in unit order.
fn cat_slices(
    slices: &[Slice],
    nonempty: &[usize],
    total: usize,
    what: &str,
) -> Result<Vec<(String, Tensor)>> {
    let mut tensors = Vec::new();
    let mut parts: Vec<Vec<(String, Tensor)>> = Vec::new();
    for &i in nonempty {
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
    Ok(tensors)
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
