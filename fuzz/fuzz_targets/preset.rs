//! The preset TOML parser and validator, with `--set` overrides taken from a first line
//! `# --set K=V; K=V`: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nrf_experiments::preset::parse_fuzz_input(text);
    }
});
