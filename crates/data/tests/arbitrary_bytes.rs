//! Every parser on arbitrary bytes (issue 16, item 5): never a panic, always `Ok` or an error
//! naming the file, in bounded time. Two inputs per parser: random bytes, and a valid file with
//! random bytes overwritten, cut or appended (which reaches past the magic numbers and headers).
//! The `fuzz/` workspace runs the same parsers under libFuzzer (`cargo xtask fuzz`).

use nrf_data::cifar::{self, CIFAR_RECORD_BYTES};
use nrf_data::idx::{self, IdxImages};
use nrf_data::store::{constructed_paths, load_constructed, save_constructed};
use nrf_data::{ConstructedDataset, ConstructedMetadata, Dataset};
use proptest::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Time one parse may take (a debug build on a busy machine; they take microseconds).
const BOUND: Duration = Duration::from_secs(2);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < BOUND, "{what} took {:?}", start.elapsed());
    out
}

/// An error must name the file it is about.
fn check<T: std::fmt::Debug>(r: nrf_data::Result<T>, path: &Path) {
    if let Err(e) = r {
        let m = e.to_string();
        assert!(m.contains(&path.display().to_string()), "{m}");
    }
}

/// A mutation of `base`: (position, byte) overwrites, then a cut and an appended tail.
#[derive(Debug, Clone)]
struct Mutation {
    writes: Vec<(prop::sample::Index, u8)>,
    cut: Option<prop::sample::Index>,
    tail: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(writes, cut, tail)| Mutation { writes, cut, tail })
}

fn mutate(base: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = base.to_vec();
    if !b.is_empty() {
        for (i, v) in &m.writes {
            let i = i.index(b.len());
            b[i] = *v;
        }
    }
    if let Some(c) = &m.cut {
        b.truncate(c.index(b.len() + 1));
    }
    b.extend_from_slice(&m.tail);
    b
}

fn idx_file(gzip: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let images = IdxImages {
        count: 3,
        rows: 4,
        cols: 5,
        pixels: (0..60).collect(),
    };
    idx::write_idx_images(&p, &images, gzip).unwrap();
    std::fs::read(&p).unwrap()
}

fn cifar_file() -> Vec<u8> {
    let mut b = vec![3u8];
    b.extend((0..CIFAR_RECORD_BYTES - 1).map(|i| (i % 256) as u8));
    b
}

fn png_file() -> Vec<u8> {
    let img = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg_file() -> Vec<u8> {
    let img = image::RgbImage::from_fn(9, 6, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn constructed_file() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("s");
    let set = ConstructedDataset {
        dataset: Dataset {
            name: "d_r".into(),
            images: (0..2 * 12).map(|i| i as f32 / 24.0).collect(),
            labels: vec![0, 1],
            shape: [1, 3, 4],
            num_classes: 2,
            class_names: vec!["a".into(), "b".into()],
        },
        source_indices: vec![5, 9],
        start_indices: None,
        metadata: ConstructedMetadata {
            method: "d_r".into(),
            epsilon: Some(0.5),
            steps: Some(3),
            step_size: Some(0.1),
            source_model_sha256: None,
            seed: Some(1),
            extra: Default::default(),
        },
    };
    save_constructed(&stem, &set).unwrap();
    std::fs::read(constructed_paths(&stem).0).unwrap()
}

fn parse_idx(bytes: Vec<u8>) {
    let p = Path::new("fuzz/train-images-idx3-ubyte");
    timed("idx images", || {
        check(idx::idx_images_from_bytes(p, bytes.clone()), p)
    });
    timed("idx labels", || {
        check(idx::idx_labels_from_bytes(p, bytes), p)
    });
}

fn parse_cifar(bytes: &[u8]) {
    let p = Path::new("fuzz/data_batch_1.bin");
    timed("cifar", || {
        check(cifar::cifar_batch_from_bytes(p, bytes), p)
    });
}

fn parse_image(bytes: &[u8], name: &str) {
    let p = Path::new(name);
    timed("image", || {
        check(nrf_data::folder::decode_image(p, bytes, 8), p)
    });
}

fn parse_constructed(dir: &Path, bytes: &[u8]) {
    let stem = dir.join("x");
    let st = constructed_paths(&stem).0;
    std::fs::write(&st, bytes).unwrap();
    timed("constructed", || check(load_constructed(&stem), &st));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn idx_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        parse_idx(bytes);
    }

    #[test]
    fn idx_mutated_never_panics(m in mutation(), gzip in any::<bool>()) {
        parse_idx(mutate(&idx_file(gzip), &m));
    }

    #[test]
    fn cifar_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
        parse_cifar(&bytes);
    }

    #[test]
    fn cifar_mutated_never_panics(m in mutation()) {
        parse_cifar(&mutate(&cifar_file(), &m));
    }

    #[test]
    fn image_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                          jpeg_ext in any::<bool>()) {
        parse_image(&bytes, if jpeg_ext { "x.JPEG" } else { "x.png" });
    }

    #[test]
    fn image_mutated_never_panics(m in mutation(), jpeg in any::<bool>()) {
        let (base, name) = if jpeg { (jpeg_file(), "x.jpg") } else { (png_file(), "x.png") };
        parse_image(&mutate(&base, &m), name);
    }

    #[test]
    fn constructed_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        // A plausible safetensors start half the time: an 8-byte header length, then JSON.
        parse_constructed(dir.path(), &bytes);
        let mut framed = (bytes.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        parse_constructed(dir.path(), &framed);
    }

    #[test]
    fn constructed_mutated_never_panics(m in mutation()) {
        let dir = tempfile::tempdir().unwrap();
        parse_constructed(dir.path(), &mutate(&constructed_file(), &m));
    }
}

/// A forged header announcing a huge image is refused quickly, not decoded.
#[test]
fn huge_image_headers_are_refused_quickly() {
    let img = image::RgbImage::new(1, 1);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    let mut png = out.into_inner();
    // IHDR width and height (bytes 16..24) -> 1_000_000 x 1_000_000 (the CRC is then wrong,
    // which the decoder may or may not check first: either way an error, fast).
    png[16..20].copy_from_slice(&1_000_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&1_000_000u32.to_be_bytes());
    let p = Path::new("huge.png");
    let r = timed("huge png", || nrf_data::folder::decode_image(p, &png, 8));
    assert!(r.is_err());
    // A 1x16000 strip (valid) would be resized to 8x128000: allowed; a 1x16384 strip to a
    // 224-pixel shorter side would need 224 x 3.7M pixels: refused, not allocated.
    let strip = image::RgbImage::new(1, 16_384);
    let mut out = std::io::Cursor::new(Vec::new());
    strip.write_to(&mut out, image::ImageFormat::Png).unwrap();
    let e = timed("strip", || {
        nrf_data::folder::decode_image(Path::new("strip.png"), out.get_ref(), 224)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("strip.png") && e.contains("would exceed"), "{e}");
}

/// Writes the fuzz targets' seed corpus (`fuzz/corpus/<target>/`) when `NRF_WRITE_FUZZ_CORPUS`
/// names the corpus folder: `NRF_WRITE_FUZZ_CORPUS=$PWD/fuzz/corpus cargo test -p nrf-data
/// --test arbitrary_bytes write_fuzz_seed_corpus`. Does nothing otherwise.
#[test]
fn write_fuzz_seed_corpus() {
    let Some(root) = std::env::var_os("NRF_WRITE_FUZZ_CORPUS") else {
        return;
    };
    let root = Path::new(&root);
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = root.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    put("idx", "images-3x4x5", &idx_file(false));
    put("idx", "images-3x4x5.gz", &idx_file(true));
    let dir = tempfile::tempdir().unwrap();
    idx::write_idx_labels(dir.path().join("l"), &[1, 2, 3, 9], false).unwrap();
    put(
        "idx",
        "labels-4",
        &std::fs::read(dir.path().join("l")).unwrap(),
    );
    put("cifar", "one-record", &cifar_file());
    let mut two = cifar_file();
    two.extend(cifar_file());
    put("cifar", "two-records", &two);
    // The image target's first byte: bit 0 picks the extension (0 JPEG, 1 PNG), the rest the size.
    let mut png = vec![0x0f];
    png.extend(png_file());
    put("image", "png-5x3", &png);
    let mut jpeg = vec![0x0e];
    jpeg.extend(jpeg_file());
    put("image", "jpeg-9x6", &jpeg);
    put("constructed", "d_r-2", &constructed_file());
}
