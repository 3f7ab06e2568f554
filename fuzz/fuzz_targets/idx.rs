//! IDX (MNIST / Fashion-MNIST) images and labels, gzipped or not: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz/train-images-idx3-ubyte");
    if let Ok(images) = nrf_data::idx::idx_images_from_bytes(p, data.to_vec()) {
        assert_eq!(
            images.pixels.len(),
            images.count * images.rows * images.cols
        );
    }
    let _ = nrf_data::idx::idx_labels_from_bytes(p, data.to_vec());
});
