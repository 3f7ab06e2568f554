//! File-format tests: IDX (Fashion-MNIST / MNIST), CIFAR-10 binary, validation.

use std::path::Path;

use nrf_data::cifar::{self, CIFAR_IMAGE_BYTES};
use nrf_data::idx::{self, IdxImages};
use nrf_data::{load_cifar10, load_fashion_mnist, load_mnist, Dataset, Split, FASHION_MNIST_DIR};

fn assert_names(err: &nrf_data::DataError, path: &Path, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
    assert!(msg.contains(needle), "error does not say {needle:?}: {msg}");
}

fn toy_images(count: usize, rows: usize, cols: usize) -> IdxImages {
    IdxImages {
        count,
        rows,
        cols,
        pixels: (0..count * rows * cols)
            .map(|i| (i * 37 % 256) as u8)
            .collect(),
    }
}

/// Writes a toy Fashion-MNIST directory (train: 6 images, test: 4 images, 3x2 pixels).
fn write_toy_mnist(dir: &Path, gzip: bool) {
    let ext = if gzip { ".gz" } else { "" };
    for (split, n) in [(Split::Train, 6), (Split::Test, 4)] {
        let (img, lab) = idx::idx_file_names(split);
        idx::write_idx_images(dir.join(format!("{img}{ext}")), &toy_images(n, 3, 2), gzip).unwrap();
        let labels: Vec<u8> = (0..n as u8).map(|i| (i * 3) % 10).collect();
        idx::write_idx_labels(dir.join(format!("{lab}{ext}")), &labels, gzip).unwrap();
    }
}

#[test]
fn idx_loads_gzipped_and_plain_directories() {
    for gzip in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_toy_mnist(dir.path(), gzip);
        let train = load_fashion_mnist(dir.path(), Split::Train).unwrap();
        assert_eq!(train.name, "fashion-mnist/train");
        assert_eq!(train.shape, [1, 3, 2]);
        assert_eq!(train.len(), 6);
        assert_eq!(train.labels, vec![0, 3, 6, 9, 2, 5]);
        assert_eq!(train.images.len(), 36);
        assert_eq!(train.images[1], 37.0 / 255.0);
        assert_eq!(train.class_names[0], "T-shirt/top");
        assert_eq!(train.class_names[9], "Ankle boot");
        train.validate("toy").unwrap();
        let test = load_mnist(dir.path(), Split::Test).unwrap();
        assert_eq!((test.name.as_str(), test.len()), ("mnist/test", 4));
        assert_eq!(test.class_names[7], "7");
    }
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = toy_images(2, 2, 2);
    // Gzipped content under a plain name, and plain content under a .gz name.
    let a = dir.path().join("a-idx3-ubyte");
    let b = dir.path().join("b-idx3-ubyte.gz");
    idx::write_idx_images(&a, &imgs, true).unwrap();
    idx::write_idx_images(&b, &imgs, false).unwrap();
    assert_eq!(&std::fs::read(&a).unwrap()[..2], &[0x1f, 0x8b]);
    assert_eq!(idx::read_idx_images(&a).unwrap(), imgs);
    assert_eq!(idx::read_idx_images(&b).unwrap(), imgs);
}

#[test]
fn idx_truncated_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("imgs-idx3-ubyte");
    idx::write_idx_images(&p, &toy_images(3, 4, 4), false).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    assert_names(&idx::read_idx_images(&p).unwrap_err(), &p, "truncated");
    std::fs::write(&p, &bytes[..10]).unwrap();
    assert_names(&idx::read_idx_images(&p).unwrap_err(), &p, "truncated");
    // A gzipped file cut in the middle.
    let g = dir.path().join("imgs-idx3-ubyte.gz");
    idx::write_idx_images(&g, &toy_images(30, 8, 8), true).unwrap();
    let bytes = std::fs::read(&g).unwrap();
    std::fs::write(&g, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(&idx::read_idx_images(&g).unwrap_err(), &g, "truncated");
    // Trailing garbage is also rejected.
    idx::write_idx_images(&p, &toy_images(3, 4, 4), false).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.push(0);
    std::fs::write(&p, &bytes).unwrap();
    assert_names(&idx::read_idx_images(&p).unwrap_err(), &p, "bytes follow");
}

#[test]
fn idx_wrong_magic_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels-idx1-ubyte");
    idx::write_idx_labels(&labels, &[1, 2, 3], false).unwrap();
    let err = idx::read_idx_images(&labels).unwrap_err();
    assert_names(&err, &labels, "wrong magic number 0x00000801");
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello world, not an IDX file").unwrap();
    assert_names(
        &idx::read_idx_labels(&junk).unwrap_err(),
        &junk,
        "wrong magic",
    );
    // An IDX file of f32 elements: a clear "not supported" message.
    let f = dir.path().join("floats-idx1");
    std::fs::write(&f, [0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    assert_names(&idx::read_idx_labels(&f).unwrap_err(), &f, "not supported");
}

#[test]
fn idx_count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), true);
    let (_, lab) = idx::idx_file_names(Split::Train);
    let lab = dir.path().join(format!("{lab}.gz"));
    idx::write_idx_labels(&lab, &[1, 2, 3, 4, 5], true).unwrap();
    let err = load_fashion_mnist(dir.path(), Split::Train).unwrap_err();
    assert_names(&err, &lab, "5 labels");
    let (img, _) = idx::idx_file_names(Split::Train);
    assert_names(&err, &dir.path().join(format!("{img}.gz")), "6 images");
}

#[test]
fn idx_label_out_of_range_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), false);
    let (_, lab) = idx::idx_file_names(Split::Test);
    let lab = dir.path().join(lab);
    idx::write_idx_labels(&lab, &[1, 2, 10, 4], false).unwrap();
    let err = load_fashion_mnist(dir.path(), Split::Test).unwrap_err();
    assert_names(&err, &lab, "label 10 of example 2 is out of range 0..10");
}

#[test]
fn idx_missing_directory_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_fashion_mnist(dir.path().join("nowhere"), Split::Train).unwrap_err();
    assert_names(&err, &dir.path().join("nowhere"), "train-images-idx3-ubyte");
}

#[test]
fn real_fashion_mnist() {
    if !Path::new(FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("skipped: Fashion-MNIST is not installed in {FASHION_MNIST_DIR}");
        return;
    }
    for (split, n, per_class) in [(Split::Train, 60000, 6000), (Split::Test, 10000, 1000)] {
        let ds = load_fashion_mnist(FASHION_MNIST_DIR, split).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!(ds.shape, [1, 28, 28]);
        assert_eq!(ds.num_classes, 10);
        assert_eq!(ds.class_counts(), vec![per_class; 10]);
        ds.validate(FASHION_MNIST_DIR).unwrap();
        let info = nrf_data::data_info(&ds);
        assert_eq!((info.min, info.max), (0.0, 1.0));
        // Mostly dark background: the mean is well below 1/2 but not near 0.
        assert!(info.mean > 0.2 && info.mean < 0.4, "mean {}", info.mean);
    }
}

fn toy_cifar(n: usize, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let images = (0..n * CIFAR_IMAGE_BYTES)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect();
    let labels = (0..n).map(|i| ((i + seed as usize) % 10) as u8).collect();
    (images, labels)
}

#[test]
fn cifar_round_trip_with_and_without_meta() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    let mut all_train = (Vec::new(), Vec::new());
    for (i, name) in cifar::cifar10_file_names(Split::Train).iter().enumerate() {
        let (im, la) = toy_cifar(2 + i, i as u8);
        cifar::write_cifar_batch(dir.join(name), &im, &la).unwrap();
        all_train.0.extend(im);
        all_train.1.extend(la);
    }
    let (test_im, test_la) = toy_cifar(3, 9);
    cifar::write_cifar_batch(dir.join("test_batch.bin"), &test_im, &test_la).unwrap();
    // The parent of cifar-10-batches-bin works too.
    let train = load_cifar10(root.path(), Split::Train).unwrap();
    assert_eq!(train.name, "cifar10/train");
    assert_eq!(train.len(), 2 + 3 + 4 + 5 + 6);
    assert_eq!(train.shape, [3, 32, 32]);
    let labels: Vec<i64> = all_train.1.iter().map(|&l| l as i64).collect();
    assert_eq!(train.labels, labels);
    let pixels: Vec<f32> = all_train.0.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(train.images, pixels);
    assert_eq!(train.class_names[0], "airplane");
    train.validate("cifar").unwrap();

    let names = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
    std::fs::write(dir.join("batches.meta.txt"), names).unwrap();
    let test = load_cifar10(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.class_names[9], "j");
    assert_eq!(test.image(1)[0], test_im[CIFAR_IMAGE_BYTES] as f32 / 255.0);

    std::fs::write(dir.join("batches.meta.txt"), "a\nb\n").unwrap();
    let err = load_cifar10(&dir, Split::Test).unwrap_err();
    assert_names(&err, &dir.join("batches.meta.txt"), "2 class names");
}

#[test]
fn cifar_bad_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("test_batch.bin");
    let (im, mut la) = toy_cifar(2, 0);
    cifar::write_cifar_batch(&p, &im, &la).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    assert_names(
        &load_cifar10(dir.path(), Split::Test).unwrap_err(),
        &p,
        "truncated",
    );
    std::fs::write(&p, b"").unwrap();
    assert_names(&cifar::read_cifar_batch(&p).unwrap_err(), &p, "empty");
    la[1] = 10;
    cifar::write_cifar_batch(&p, &im, &la).unwrap();
    assert_names(
        &cifar::read_cifar_batch(&p).unwrap_err(),
        &p,
        "label 10 of example 1",
    );
    // Missing training batches.
    let err = load_cifar10(dir.path(), Split::Train).unwrap_err();
    assert_names(&err, &dir.path().join("data_batch_1.bin"), "cannot read");
    // Writer checks its input.
    assert!(cifar::write_cifar_batch(&p, &im[1..], &la).is_err());
}

fn toy_dataset() -> Dataset {
    Dataset {
        name: "toy".into(),
        images: vec![0.0, 0.5, 1.0, 0.25],
        labels: vec![0, 1],
        shape: [1, 1, 2],
        num_classes: 2,
        class_names: vec![],
    }
}

#[test]
fn validate_catches_each_problem() {
    toy_dataset().validate("toy.bin").unwrap();
    type Mutation = Box<dyn Fn(&mut Dataset)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|d| d.images.push(0.0)), "5 pixels for 2 examples"),
        (
            Box::new(|d| d.labels[1] = 2),
            "label 2 of example 1 is out of range",
        ),
        (Box::new(|d| d.labels[0] = -1), "label -1"),
        (Box::new(|d| d.images[2] = f32::NAN), "non-finite"),
        (Box::new(|d| d.images[2] = f32::INFINITY), "non-finite"),
        (Box::new(|d| d.images[3] = 1.5), "outside [0, 1]"),
        (Box::new(|d| d.images[3] = -0.1), "outside [0, 1]"),
        (
            Box::new(|d| d.class_names = vec!["x".into()]),
            "1 class names for 2 classes",
        ),
        (Box::new(|d| d.shape = [1, 0, 2]), "zero dimension"),
    ];
    for (mutate, needle) in cases {
        let mut d = toy_dataset();
        mutate(&mut d);
        let err = d.validate("toy.bin").unwrap_err();
        assert_names(&err, Path::new("toy.bin"), needle);
    }
}
