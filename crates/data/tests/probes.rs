//! Bad-input probes (issue 16, items 6 and 7): each failed before its fix.
//! Split agreement (shape, channels, classes, empty sets), a data dir that is a file, NaN in a
//! constructed data set named by file and image.

use nrf_data::idx::{self, IdxImages};
use nrf_data::store::{constructed_paths, load_constructed, save_constructed};
use nrf_data::{
    check_data_dir, check_splits, ConstructedDataset, ConstructedMetadata, DataError, Dataset,
    Split,
};
use std::path::Path;

fn write_idx_split(dir: &Path, split: Split, count: usize, side: usize) {
    let (img, lab) = idx::idx_file_names(split);
    let images = IdxImages {
        count,
        rows: side,
        cols: side,
        pixels: (0..count * side * side).map(|i| (i % 251) as u8).collect(),
    };
    idx::write_idx_images(dir.join(img), &images, false).unwrap();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    idx::write_idx_labels(dir.join(lab), &labels, false).unwrap();
}

fn load_both(dir: &Path) -> nrf_data::Result<()> {
    let train = idx::load_fashion_mnist(dir, Split::Train)?;
    let test = idx::load_fashion_mnist(dir, Split::Test)?;
    check_splits(&train, dir, &test, dir)
}

#[test]
fn a_28x28_training_set_with_a_32x32_test_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_split(dir.path(), Split::Train, 4, 28);
    write_idx_split(dir.path(), Split::Test, 4, 32);
    let e = load_both(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    assert!(e.contains("1 channel of 28x28"), "{e}");
    assert!(e.contains("32x32"), "{e}");
    assert!(
        e.contains("fashion-mnist/train") && e.contains("fashion-mnist/test"),
        "{e}"
    );
    // Same shapes: accepted.
    write_idx_split(dir.path(), Split::Test, 4, 28);
    load_both(dir.path()).unwrap();
}

#[test]
fn an_empty_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_split(dir.path(), Split::Train, 0, 28);
    write_idx_split(dir.path(), Split::Test, 4, 28);
    let e = load_both(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("training set fashion-mnist/train holds no image"),
        "{e}"
    );
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    write_idx_split(dir.path(), Split::Train, 4, 28);
    write_idx_split(dir.path(), Split::Test, 0, 28);
    let e = load_both(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("test set fashion-mnist/test holds no image"),
        "{e}"
    );
}

fn toy(name: &str, shape: [usize; 3], classes: usize) -> Dataset {
    Dataset {
        name: name.into(),
        images: vec![0.5; 2 * shape.iter().product::<usize>()],
        labels: vec![0, 1],
        shape,
        num_classes: classes,
        class_names: vec![],
    }
}

#[test]
fn channels_and_class_counts_must_agree() {
    let (a, b) = (Path::new("/data/train"), Path::new("/data/val"));
    let e = check_splits(
        &toy("x/train", [3, 8, 8], 10),
        a,
        &toy("x/test", [1, 8, 8], 10),
        b,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("/data/train:"), "{e}");
    assert!(
        e.contains("3 channels of 8x8") && e.contains("1 channel of 8x8"),
        "{e}"
    );
    assert!(e.contains("/data/val"), "{e}");
    let e = check_splits(
        &toy("x/train", [3, 8, 8], 10),
        a,
        &toy("x/test", [3, 8, 8], 9),
        b,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("10 classes") && e.contains("has 9"), "{e}");
    check_splits(
        &toy("x/train", [3, 8, 8], 10),
        a,
        &toy("x/test", [3, 8, 8], 10),
        b,
    )
    .unwrap();
}

#[test]
fn a_data_dir_that_is_a_file_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fashion.tar");
    std::fs::write(&file, b"not a folder").unwrap();
    for e in [
        idx::load_fashion_mnist(&file, Split::Train).unwrap_err(),
        nrf_data::load_cifar10(&file, Split::Train).unwrap_err(),
        nrf_data::load_image_folder(&file, 8, None).unwrap_err(),
        nrf_data::load_restricted_imagenet(&file, Split::Train, 8, None).unwrap_err(),
    ] {
        assert!(matches!(e, DataError::NotADirectory { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.starts_with(&file.display().to_string()), "{m}");
        assert!(m.contains("is a file, not a directory"), "{m}");
        assert!(!e.is_not_found(), "{m}");
    }
    // A missing folder is "not found" (what the install hint is for); a file is not.
    let missing = dir.path().join("nowhere");
    let e = idx::load_fashion_mnist(&missing, Split::Train).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("nowhere"), "{e}");
    check_data_dir(dir.path()).unwrap();
    // A missing file in an existing folder is "not found" too; a corrupt one is not.
    let e = idx::load_fashion_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    write_idx_split(dir.path(), Split::Train, 2, 4);
    let (img, _) = idx::idx_file_names(Split::Train);
    std::fs::write(dir.path().join(img), b"\0\0\x08\x03garbage").unwrap();
    let e = idx::load_fashion_mnist(dir.path(), Split::Train).unwrap_err();
    assert!(!e.is_not_found(), "{e}");
}

#[test]
fn nan_in_a_stored_constructed_set_names_the_file_and_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("d_r");
    let size = 2 * 3 * 3;
    let mut images: Vec<f32> = vec![0.25; 4 * size];
    // A marker value, unique in the file, in image 2.
    let at = 2 * size + 5;
    images[at] = 0.123_456_79;
    let set = ConstructedDataset {
        dataset: Dataset {
            name: "d_r".into(),
            images,
            labels: vec![0, 1, 0, 1],
            shape: [2, 3, 3],
            num_classes: 2,
            class_names: vec![],
        },
        source_indices: vec![0, 1, 2, 3],
        start_indices: None,
        metadata: ConstructedMetadata {
            method: "d_r".into(),
            epsilon: None,
            steps: None,
            step_size: None,
            source_model_sha256: None,
            seed: None,
            extra: Default::default(),
        },
    };
    save_constructed(&stem, &set).unwrap();
    let (st, _) = constructed_paths(&stem);
    for bad in [f32::NAN, f32::INFINITY] {
        let mut bytes = std::fs::read(&st).unwrap();
        let marker = 0.123_456_79f32.to_le_bytes();
        let pos = bytes
            .windows(4)
            .position(|w| w == marker)
            .expect("marker in the file");
        bytes[pos..pos + 4].copy_from_slice(&bad.to_le_bytes());
        let bad_file = dir.path().join("bad.safetensors");
        std::fs::write(&bad_file, &bytes).unwrap();
        let e = load_constructed(dir.path().join("bad")).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&bad_file.display().to_string()), "{m}");
        assert!(m.contains("non-finite"), "{m}");
        assert!(m.contains(&format!("image 2 (flat index {at})")), "{m}");
    }
}
