//! Resumable, chunked construction: every chunk of examples is computed once and stored as its
//! own safetensors file (atomically); a run stopped half way continues at the first missing chunk.
//!
//! Sharding ([`Shard`], [`with_shard`]): a job array splits the chunks of a construction into n
//! contiguous ranges; shard k computes only its range (resumable, in `shard-<k>of<n>/`) and stores
//! it as one slice file `slices/slice-<k>of<n>.safetensors`. Chunk k is computed the same way
//! whichever process computes it, so the merged slices ([`merge_slices`], done by the next
//! ordinary [`run_chunks`]) equal an unsharded construction byte for byte.
use anyhow::{Context, Result};
use nrf_models::checkpoint::{is_damaged, read_tensors, write_tensors_atomic, Damaged};
use nrf_models::train::progress_bar;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

mod shard;
mod slices;
#[cfg(test)]
mod tests;

pub use shard::{current_shard, with_shard, Shard};
pub use slices::{
    check_existing_slice, check_slices, is_slice_written, merge_slices, slice_files, slice_path,
    slices_dir, write_slice, Merged, SliceWritten,
};

/// The output of one chunk: images `[b,C,H,W]`, labels `[b]`, per-example statistics `[b, m]`.
pub struct ChunkOut {
    pub images: Tensor,
    pub labels: Tensor,
    pub stats: Tensor,
}

fn chunk_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("chunk_{k:05}.safetensors"))
}

/// The file in a chunk folder that holds its number of chunks, written when [`run_chunks`]
/// starts: a hint for progress lines ([`done_fraction`]), never read to decide anything.
const TOTAL_FILE: &str = "n_chunks";

/// The share of its chunks that a construction running in `dir` (its chunk folder) has stored,
/// if it has started there: for progress lines only.
pub fn done_fraction(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(TOTAL_FILE)).ok()?;
    let total: usize = text.trim().parse().ok()?;
    let done = (0..total).filter(|&k| chunk_path(dir, k).exists()).count();
    (total > 0).then(|| done as f64 / total as f64)
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A hint for progress lines: a failed write costs nothing but the hint.
    let _ = std::fs::write(dir.join(TOTAL_FILE), n_chunks.to_string());
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
