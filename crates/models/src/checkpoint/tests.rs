use super::*;
use crate::Arch;

fn flip_last_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

fn truncate(path: &Path) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..b.len() - 5]).unwrap();
}

fn says(e: &anyhow::Error, path: &Path, what: &str) {
    let m = format!("{e:#}");
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(m.contains(what), "{m}");
    assert!(is_damaged(e), "{m}");
}

fn model() -> Model {
    Model::new(
        &ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 4, 4], 3),
        Device::Cpu,
        3,
    )
    .unwrap()
}

#[test]
fn tensors_files_carry_and_check_their_checksum() {
    let _rng = crate::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunk_00000.safetensors");
    let ts = vec![
        ("labels".to_string(), Tensor::from_slice(&[1i64, 2, 3])),
        (
            "images".to_string(),
            Tensor::from_slice(&[0.5f32, 0.25]).view([1, 2]),
        ),
    ];
    write_tensors_atomic(&p, &ts).unwrap();
    let back = read_tensors(&p).unwrap();
    assert_eq!(back[0].0, "images");
    assert_eq!(Vec::<i64>::try_from(&back[1].1).unwrap(), vec![1, 2, 3]);
    let (_, meta) = SafeTensors::read_metadata(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()[SHA256_KEY].len(), 64);
    flip_last_byte(&p);
    says(&read_tensors(&p).unwrap_err(), &p, "checksum mismatch");
    write_tensors_atomic(&p, &ts).unwrap();
    truncate(&p);
    says(&read_tensors(&p).unwrap_err(), &p, "truncated");
    // A file written before the checksum existed (tch's writer, no metadata) is accepted.
    Tensor::write_safetensors(&ts, &p).unwrap();
    assert_eq!(read_tensors(&p).unwrap().len(), 2);
    // No temporary file left behind by any of the writes.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_damaged_or_mismatched_model_is_named() {
    let _rng = crate::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("C_std");
    let (st, js) = paths(&stem);
    let m = model();
    save_model(&m, &stem).unwrap();
    load_model(&stem, Device::Cpu).unwrap();
    flip_last_byte(&st);
    says(
        &load_model(&stem, Device::Cpu).err().unwrap(),
        &st,
        "checksum mismatch",
    );
    save_model(&m, &stem).unwrap();
    truncate(&st);
    says(
        &load_model(&stem, Device::Cpu).err().unwrap(),
        &st,
        "checksum mismatch",
    );
    // Weights from another save than the sidecar (a crash between the two writes).
    save_model(&m, &stem).unwrap();
    let side = std::fs::read(&js).unwrap();
    let other = Model::new(&m.spec, Device::Cpu, 4).unwrap();
    save_model(&other, &stem).unwrap();
    std::fs::write(&js, &side).unwrap();
    says(
        &load_model(&stem, Device::Cpu).err().unwrap(),
        &st,
        "two different saves",
    );
    // A changed value in the sidecar (the spec's content).
    save_model(&m, &stem).unwrap();
    let text = std::fs::read_to_string(&js).unwrap();
    std::fs::write(
        &js,
        text.replace("\"num_classes\": 3", "\"num_classes\": 4"),
    )
    .unwrap();
    says(
        &load_model(&stem, Device::Cpu).err().unwrap(),
        &js,
        "checksum mismatch",
    );
    std::fs::write(&js, &text[..text.len() / 2]).unwrap();
    says(
        &load_model(&stem, Device::Cpu).err().unwrap(),
        &js,
        "invalid JSON",
    );
    // A model saved before the checksums existed: spec-only sidecar, no metadata. Accepted.
    std::fs::write(&js, serde_json::to_string_pretty(&m.spec).unwrap()).unwrap();
    Tensor::write_safetensors(&model_tensors(&m), &st).unwrap();
    load_model(&stem, Device::Cpu).unwrap();
}

#[test]
fn a_damaged_training_checkpoint_is_ignored_with_a_warning() {
    let _rng = crate::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    let (st, _) = paths(&stem);
    let m = model();
    save_training(&stem, &model_tensors(&m), &serde_json::json!({"epoch": 2})).unwrap();
    let (meta, ts) = load_training::<serde_json::Value>(&stem).unwrap().unwrap();
    assert_eq!(meta["epoch"], 2);
    assert_eq!(ts.len(), model_tensors(&m).len());
    flip_last_byte(&st);
    assert!(load_training::<serde_json::Value>(&stem).unwrap().is_none());
    save_training(&stem, &model_tensors(&m), &serde_json::json!({"epoch": 2})).unwrap();
    truncate(&st);
    assert!(load_training::<serde_json::Value>(&stem).unwrap().is_none());
    // Rewritten by the next checkpoint: resumable again.
    save_training(&stem, &model_tensors(&m), &serde_json::json!({"epoch": 3})).unwrap();
    assert_eq!(
        load_training::<serde_json::Value>(&stem)
            .unwrap()
            .unwrap()
            .0["epoch"],
        3
    );
}
