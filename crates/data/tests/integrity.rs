//! Artefact integrity and failed writes: a damaged constructed dataset is named, never used; the
//! one atomic writer names the file it could not write, keeps what was written before, and works
//! again once the problem is gone.
use nrf_data::atomic::{self, remove_stale_temps};
use nrf_data::store::{self, constructed_paths, ConstructedDataset, ConstructedMetadata};
use nrf_data::{load_constructed, save_constructed, Dataset};
use std::path::Path;
use std::process::Command;

fn constructed(n: usize) -> ConstructedDataset {
    ConstructedDataset {
        dataset: Dataset {
            name: "d_r".into(),
            images: (0..n * 4).map(|i| (i % 5) as f32 / 4.0).collect(),
            labels: (0..n as i64).map(|i| i % 2).collect(),
            shape: [1, 2, 2],
            num_classes: 2,
            class_names: vec![],
        },
        source_indices: (0..n as i64).collect(),
        start_indices: None,
        metadata: ConstructedMetadata {
            method: "d_r".into(),
            ..Default::default()
        },
    }
}

fn names(msg: &str, path: &Path, what: &str) {
    assert!(
        msg.contains(&path.display().to_string()),
        "does not name {}: {msg}",
        path.display()
    );
    assert!(msg.contains(what), "does not say {what:?}: {msg}");
}

#[test]
fn a_corrupted_constructed_dataset_is_named_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("D_R");
    let (st, js) = constructed_paths(&stem);
    save_constructed(&stem, &constructed(3)).unwrap();
    // One pixel changed, the file still parses: only the checksum sees it.
    let mut bytes = std::fs::read(&st).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&st, &bytes).unwrap();
    let err = load_constructed(&stem).unwrap_err().to_string();
    names(&err, &st, "checksum mismatch");
    names(&err, &js, "records");
    // Truncated: named too.
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    names(
        &load_constructed(&stem).unwrap_err().to_string(),
        &st,
        "malformed",
    );
    // Rewritten: fine again.
    save_constructed(&stem, &constructed(3)).unwrap();
    assert_eq!(load_constructed(&stem).unwrap(), constructed(3));
    // A side file from another write (the data replaced, the side file not yet): named.
    let old_side = std::fs::read(&js).unwrap();
    save_constructed(&stem, &constructed(4)).unwrap();
    std::fs::write(&js, &old_side).unwrap();
    names(
        &load_constructed(&stem).unwrap_err().to_string(),
        &st,
        "checksum mismatch",
    );
    // A damaged side file is named.
    std::fs::write(&js, b"{").unwrap();
    names(
        &load_constructed(&stem).unwrap_err().to_string(),
        &js,
        "bad JSON",
    );
    // Old (or foreign) files without a side file or without a checksum are accepted.
    let mut side: serde_json::Value = serde_json::from_slice(&old_side).unwrap();
    side.as_object_mut().unwrap().remove("safetensors_sha256");
    store::write_json_atomic(&js, &side).unwrap();
    assert_eq!(load_constructed(&stem).unwrap(), constructed(4));
    std::fs::remove_file(&js).unwrap();
    assert_eq!(load_constructed(&stem).unwrap(), constructed(4));
}

#[test]
fn a_stale_temp_file_is_cleaned_and_a_fresh_write_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("data/.D_R.safetensors.tmp-4242-7");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"half a file").unwrap();
    save_constructed(dir.path().join("data/D_R"), &constructed(2)).unwrap();
    assert_eq!(remove_stale_temps(dir.path()).unwrap(), vec![stale.clone()]);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// The parent of the target is a regular file: the error names the folder that cannot be made;
/// nothing else changes.
#[test]
fn a_write_under_a_regular_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("stages");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let target = blocker.join("train_C_std.json");
    let err = store::write_atomic(&target, b"{}").unwrap_err().to_string();
    names(&err, &blocker, "cannot create folder");
    // The OS error once, not twice.
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    std::fs::remove_file(&blocker).unwrap();
    store::write_atomic(&target, b"{}").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"{}");
}

/// Unmounts a tmpfs when dropped (also when an assertion fails).
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// A full disk (a 1 MiB tmpfs; root ignores read-only folders): the failed write names the file
/// and the OS error once, leaves no temporary file and no target, keeps the files written before,
/// and the same write succeeds once space is freed. Skipped, saying so, where mounting is not
/// permitted.
#[test]
fn a_full_disk_names_the_file_keeps_what_was_written_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output();
    match &mounted {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!(
                "skipped: cannot mount a 1 MiB tmpfs at {} ({}); the parent-is-a-file test \
                 covers the failed write",
                mnt.display(),
                match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                }
            );
            return;
        }
    }
    let _guard = Mounted(&mnt);
    let first = mnt.join("stages/first.json");
    store::write_atomic(&first, b"kept").unwrap();
    let ballast = mnt.join("ballast.bin");
    store::write_atomic(&ballast, &vec![7u8; 600 << 10]).unwrap();
    let big = mnt.join("data/D_R.safetensors");
    let err = atomic::write_atomic(&big, &vec![1u8; 700 << 10]).unwrap_err();
    let msg = err.to_string();
    names(&msg, &big, "cannot write file");
    assert!(
        msg.contains("No space left on device") || msg.contains("os error 28"),
        "{msg}"
    );
    assert_eq!(msg.matches("os error").count(), 1, "{msg}");
    assert!(!big.exists(), "a failed write leaves no target");
    assert!(
        remove_stale_temps(&mnt).unwrap().is_empty(),
        "a failed write leaves no temporary file"
    );
    assert_eq!(std::fs::read(&first).unwrap(), b"kept");
    // The problem goes away: the same write succeeds.
    std::fs::remove_file(&ballast).unwrap();
    atomic::write_atomic(&big, &vec![1u8; 700 << 10]).unwrap();
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 700 << 10);
}

#[test]
fn the_canonical_json_checksum_ignores_layout_and_sees_content() {
    use nrf_data::store::canonical_json_sha256;
    let a =
        serde_json::json!({"key": "ab12", "wall_s": 1.5, "output": {"acc": [0.25, 1e-9], "n": 3}});
    let text = serde_json::to_string_pretty(&a).unwrap();
    let b: serde_json::Value = serde_json::from_str(&text).unwrap();
    let c: serde_json::Value =
        serde_json::from_str(r#"{"output":{"n":3,"acc":[0.25,1e-9]},"wall_s":1.5,"key":"ab12"}"#)
            .unwrap();
    assert_eq!(canonical_json_sha256(&a), canonical_json_sha256(&b));
    assert_eq!(canonical_json_sha256(&a), canonical_json_sha256(&c));
    let d =
        serde_json::json!({"key": "ab12", "wall_s": 1.5, "output": {"acc": [0.25, 1e-8], "n": 3}});
    assert_ne!(canonical_json_sha256(&a), canonical_json_sha256(&d));
}
