//! Writes an rpath to libtorch's `lib/` into the `nrf` binary so users never set LD_LIBRARY_PATH,
//! and links libtorch_cuda explicitly (the linker would drop it as unneeded, and CUDA would then
//! silently never be found).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let dir = std::path::Path::new(&lib);
        if dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-search=native={lib}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
