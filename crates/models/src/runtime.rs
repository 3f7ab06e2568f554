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

/// The environment variable that chooses how libgomp's (libtorch's OpenMP) idle threads wait.
pub const OMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";

/// Re-executes the current program with `OMP_WAIT_POLICY=PASSIVE` unless the variable is set
/// already (by the user, or by this function before the re-execution).
///
/// libgomp reads its settings once, when libtorch is loaded at process start, so the variable
/// cannot be set from inside the process. Its default lets idle OpenMP threads spin: fastest on
/// an otherwise idle machine, but when another process wants a core (a compiler, a second run,
/// a browser), every parallel region waits for a thread that is not running, and a run on 2
/// threads became 2-4x slower here (docs/performance.md, "OpenMP under load"). Passive threads
/// sleep instead. Returns only when nothing was re-executed (the variable is set, or `exec`
/// failed: then a warning is printed and the default policy stays).
#[cfg(unix)]
pub fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(OMP_WAIT_POLICY).is_some() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: cannot find this program to set {OMP_WAIT_POLICY}=PASSIVE ({e}); keeping libgomp's default");
            return;
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(OMP_WAIT_POLICY, "PASSIVE")
        .exec();
    eprintln!(
        "warning: re-executing {} with {OMP_WAIT_POLICY}=PASSIVE failed ({err}); keeping libgomp's default",
        exe.display()
    );
}

/// Does nothing off Unix.
#[cfg(not(unix))]
pub fn passive_openmp() {}
