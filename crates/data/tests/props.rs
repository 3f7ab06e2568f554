//! Property tests: IDX and CIFAR round trips, and truncated files give errors naming the file.

use nrf_data::cifar::{self, CIFAR_IMAGE_BYTES, CIFAR_RECORD_BYTES};
use nrf_data::idx::{self, IdxImages};
use proptest::prelude::*;

fn images_strategy() -> impl Strategy<Value = IdxImages> {
    (0usize..5, 1usize..6, 1usize..6).prop_flat_map(|(count, rows, cols)| {
        proptest::collection::vec(any::<u8>(), count * rows * cols).prop_map(move |pixels| {
            IdxImages {
                count,
                rows,
                cols,
                pixels,
            }
        })
    })
}

fn cifar_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (1usize..4).prop_flat_map(|n| {
        (
            proptest::collection::vec(any::<u8>(), n * CIFAR_IMAGE_BYTES),
            proptest::collection::vec(0u8..10, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn idx_round_trip(images in images_strategy(),
                      labels in proptest::collection::vec(any::<u8>(), 0..20),
                      gzip in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let ip = dir.path().join("images");
        let lp = dir.path().join("labels");
        idx::write_idx_images(&ip, &images, gzip).unwrap();
        idx::write_idx_labels(&lp, &labels, gzip).unwrap();
        prop_assert_eq!(idx::read_idx_images(&ip).unwrap(), images);
        prop_assert_eq!(idx::read_idx_labels(&lp).unwrap(), labels);
    }

    #[test]
    fn idx_truncation_is_an_error_naming_the_file(images in images_strategy(),
                                                  gzip in any::<bool>(),
                                                  cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut-idx3-ubyte");
        idx::write_idx_images(&p, &images, gzip).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let len = cut.index(bytes.len()); // 0..bytes.len(): always shorter than the file
        std::fs::write(&p, &bytes[..len]).unwrap();
        let err = idx::read_idx_images(&p).unwrap_err().to_string();
        prop_assert!(err.contains(&p.display().to_string()), "{}", err);
    }

    #[test]
    fn idx_label_truncation_is_an_error(labels in proptest::collection::vec(any::<u8>(), 0..30),
                                        gzip in any::<bool>(),
                                        cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut-idx1-ubyte");
        idx::write_idx_labels(&p, &labels, gzip).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..cut.index(bytes.len())]).unwrap();
        let err = idx::read_idx_labels(&p).unwrap_err().to_string();
        prop_assert!(err.contains(&p.display().to_string()), "{}", err);
    }

    #[test]
    fn cifar_round_trip((images, labels) in cifar_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test_batch.bin");
        cifar::write_cifar_batch(&p, &images, &labels).unwrap();
        let b = cifar::read_cifar_batch(&p).unwrap();
        prop_assert_eq!(&b.images, &images);
        prop_assert_eq!(&b.labels, &labels);
        let ds = nrf_data::load_cifar10(dir.path(), nrf_data::Split::Test).unwrap();
        prop_assert_eq!(ds.len(), labels.len());
        prop_assert_eq!(ds.images[0], images[0] as f32 / 255.0);
    }

    /// A CIFAR batch has no header, so a cut at a record boundary is a valid, shorter file;
    /// every other cut (and the empty file) must be an error naming the file.
    #[test]
    fn cifar_truncation((images, labels) in cifar_strategy(),
                        cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data_batch_1.bin");
        cifar::write_cifar_batch(&p, &images, &labels).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let len = cut.index(bytes.len());
        std::fs::write(&p, &bytes[..len]).unwrap();
        match cifar::read_cifar_batch(&p) {
            Ok(b) => {
                prop_assert!(len > 0 && len % CIFAR_RECORD_BYTES == 0, "accepted {} bytes", len);
                prop_assert_eq!(b.labels.len(), len / CIFAR_RECORD_BYTES);
                prop_assert_eq!(&b.labels[..], &labels[..b.labels.len()]);
            }
            Err(e) => {
                prop_assert!(len == 0 || len % CIFAR_RECORD_BYTES != 0);
                let msg = e.to_string();
                prop_assert!(msg.contains(&p.display().to_string()), "{}", msg);
            }
        }
    }
}

#[test]
fn cifar_cut_inside_a_record_always_fails() {
    // The deterministic complement of the property above: every non-boundary cut of a
    // 2-record file fails (sampled every 97 bytes, plus the edges).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bin");
    let images = vec![7u8; 2 * CIFAR_IMAGE_BYTES];
    cifar::write_cifar_batch(&p, &images, &[1, 2]).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let mut cuts: Vec<usize> = (1..bytes.len()).step_by(97).collect();
    cuts.extend([
        1,
        CIFAR_RECORD_BYTES - 1,
        CIFAR_RECORD_BYTES + 1,
        bytes.len() - 1,
    ]);
    for len in cuts.into_iter().filter(|l| l % CIFAR_RECORD_BYTES != 0) {
        std::fs::write(&p, &bytes[..len]).unwrap();
        let msg = cifar::read_cifar_batch(&p).unwrap_err().to_string();
        assert!(
            msg.contains("truncated") && msg.contains(&p.display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn every_cut_of_a_small_idx_file_fails() {
    // Exhaustive over cut points, including inside the gzip trailer (CRC and length).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small-idx3-ubyte");
    let images = IdxImages {
        count: 3,
        rows: 4,
        cols: 5,
        pixels: (0..60u8).map(|i| i.wrapping_mul(41)).collect(),
    };
    for gzip in [false, true] {
        idx::write_idx_images(&p, &images, gzip).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for len in 0..bytes.len() {
            std::fs::write(&p, &bytes[..len]).unwrap();
            let msg = match idx::read_idx_images(&p) {
                Ok(_) => panic!("cut at {len} of {} (gzip {gzip}) was accepted", bytes.len()),
                Err(e) => e.to_string(),
            };
            assert!(msg.contains(&p.display().to_string()), "{msg}");
        }
    }
}
