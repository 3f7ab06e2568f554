//! Process-wide settings for libtorch on the CPU, applied by the `nrf` binary at its start and by
//! the examples that time its work (so that they measure what `nrf` runs).

/// glibc returns libtorch's large per-step activation buffers to the OS after every step and
/// page-faults them back in on the next one; keeping them mapped made a training step ~1.5x faster
/// on CPU in `nrf bench`. The price: the process keeps its peak memory. Call it first thing in
/// `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc malloc tuning parameters; called before any threads start.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Does nothing off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
