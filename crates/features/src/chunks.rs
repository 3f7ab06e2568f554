//! Resumable, chunked construction: every chunk of examples is computed once and stored as its
//! own safetensors file (atomically); a run stopped half way continues at the first missing chunk.
use anyhow::{bail, Result};
use nrf_models::checkpoint::{read_tensors, write_tensors_atomic};
use nrf_models::train::progress_bar;
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
pub fn run_chunks(
    dir: &Path,
    n_chunks: usize,
    label: &str,
    progress: bool,
    mut f: impl FnMut(usize) -> Result<ChunkOut>,
) -> Result<(ChunkOut, usize)> {
    std::fs::create_dir_all(dir)?;
    let todo: Vec<usize> = (0..n_chunks)
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
        let out = f(k)?;
        write_tensors_atomic(
            &chunk_path(dir, k),
            &[
                ("images".into(), out.images),
                ("labels".into(), out.labels),
                ("stats".into(), out.stats),
            ],
        )?;
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
    let (mut images, mut labels, mut stats) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..n_chunks {
        let path = chunk_path(dir, k);
        let t = read_tensors(&path)?;
        let get = |name: &str| -> Result<Tensor> {
            match t.iter().find(|(n, _)| n == name) {
                Some((_, t)) => Ok(t.shallow_clone()),
                None => bail!("{}: lacks tensor {name}", path.display()),
            }
        };
        images.push(get("images")?);
        labels.push(get("labels")?);
        stats.push(get("stats")?);
    }
    let out = ChunkOut {
        images: Tensor::cat(&images, 0),
        labels: Tensor::cat(&labels, 0),
        stats: Tensor::cat(&stats, 0),
    };
    Ok((out, todo.len()))
}

/// Removes the chunk directory once its result is stored elsewhere.
pub fn clear_chunks(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
