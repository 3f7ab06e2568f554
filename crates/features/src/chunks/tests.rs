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
