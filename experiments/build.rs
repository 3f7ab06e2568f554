//! Writes an rpath to libtorch's `lib/` into the `nrf` binary so users never set LD_LIBRARY_PATH,
//! links libtorch_cuda explicitly (the linker would drop it as unneeded, and CUDA would then
//! silently never be found), and records the torch and rustc versions for the run record.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let dir = std::path::Path::new(&lib);
        if dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-search=native={lib}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        // <site-packages>/torch/lib -> <site-packages>/torch/version.py
        if let Some(torch) = dir.parent() {
            if let Ok(text) = std::fs::read_to_string(torch.join("version.py")) {
                if let Some(v) = text.lines().find_map(|l| l.strip_prefix("__version__ = ")) {
                    println!(
                        "cargo:rustc-env=NRF_TORCH_VERSION={}",
                        v.trim_matches(|c| c == '\'' || c == '"')
                    );
                }
            }
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("--version").output() {
        println!(
            "cargo:rustc-env=NRF_RUSTC_VERSION={}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}
