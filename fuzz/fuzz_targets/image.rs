//! An image-folder file (JPEG or PNG, as `load_image` decodes it for Restricted ImageNet):
//! never a panic, a bounded allocation. The first byte picks the extension and the output size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let name = if first & 1 == 0 { "x.JPEG" } else { "x.png" };
    let size = 1 + (first as usize >> 1) % 64;
    if let Ok(px) = nrf_data::folder::decode_image(std::path::Path::new(name), bytes, size) {
        assert_eq!(px.len(), 3 * size * size);
        assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
