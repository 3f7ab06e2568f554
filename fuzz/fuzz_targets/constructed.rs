//! A stored constructed data set (D_R, D_NR, D_rand, D_det: safetensors + JSON header), read
//! from a file as `load_constructed` does: never a panic; what loads is valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // In memory where there is a tmpfs (10x the executions of a disk folder).
    let dir = DIR.get_or_init(|| {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary folder")
    });
    let stem = dir.path().join("set");
    let (st, _) = nrf_data::store::constructed_paths(&stem);
    std::fs::write(&st, data).expect("writing the input");
    if let Ok(set) = nrf_data::load_constructed(&stem) {
        set.dataset.validate("fuzz").expect("a loaded set is valid");
        assert_eq!(set.source_indices.len(), set.dataset.len());
    }
});
