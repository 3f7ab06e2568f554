//! Criterion benchmarks of the three steps timed by `nrf bench` (Rust side only), at batch 128
//! and 1 and 2 libtorch threads. `cargo bench -p nrf-experiments --bench steps` measures them;
//! `cargo test --all-targets` runs each once.
//!
//! A PGD / representation-matching iteration here is a one-step run: the step plus the final
//! objective evaluation that every `nrf_attacks::pgd` run ends with (`nrf bench` amortises that
//! over 10 steps).
use criterion::{criterion_group, criterion_main, Criterion};
use nrf_experiments::bench::{Row, Steps};
use std::time::Duration;

fn steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("steps");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut s = Steps::new(128, 1).expect("building the benchmark models");
    for threads in [1, 2] {
        for row in Row::ALL {
            group.bench_function(format!("{}/threads={threads}", row.name()), |b| {
                tch::set_num_threads(threads);
                b.iter(|| s.run(row).expect("benchmark step"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
