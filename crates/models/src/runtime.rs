//! Process-wide settings for libtorch on the CPU, applied by the `nrf` binary at its start and by
//! the examples that time its work (so that they measure what `nrf` runs).

/// Allocations at least this large (bytes) are served by `mmap` and unmapped when freed; nrf raises
/// glibc's threshold to 32 MiB (its dynamic maximum) so that a step's activations stay in the heap.
pub const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;

/// Free memory at the top of the heap beyond this (bytes) is returned to the OS; nrf keeps up to
/// 1 GiB.
pub const TRIM_THRESHOLD_BYTES: i32 = 1 << 30;

/// glibc returns libtorch's large per-step activation buffers to the OS after every step and
/// page-faults them back in on the next one; keeping them mapped ([`MMAP_THRESHOLD_BYTES`],
/// [`TRIM_THRESHOLD_BYTES`]) made a training step ~1.5x faster on CPU in `nrf bench`. The price:
/// the process keeps its peak memory. Call it first thing in `main`, before any thread starts.
/// Another process (a PyTorch twin) gets the same settings from [`malloc_env`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc malloc tuning parameters; called before any threads start.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

/// Does nothing off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// The environment variables that give a new process on glibc the allocator settings of
/// [`tune_allocator`] (glibc reads them at start-up), for a child such as a PyTorch twin that
/// should run as nrf runs.
///
/// ```
/// let env = nrf_models::runtime::malloc_env();
/// assert_eq!(env[0], ("MALLOC_MMAP_THRESHOLD_", "33554432".to_string()));
/// ```
pub fn malloc_env() -> [(&'static str, String); 2] {
    [
        ("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD_BYTES.to_string()),
        ("MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD_BYTES.to_string()),
    ]
}
