//! One CIFAR-10 binary batch file: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz/data_batch_1.bin");
    if let Ok(b) = nrf_data::cifar::cifar_batch_from_bytes(p, data) {
        assert_eq!(
            b.images.len(),
            b.labels.len() * nrf_data::cifar::CIFAR_IMAGE_BYTES
        );
    }
});
