//! Runs every theory experiment: `cargo run -p nrf-theory --release --example run_all -- OUT_DIR [SEED]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "results/theory".into());
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let summary = nrf_theory::run_all(std::path::Path::new(&out), seed)?;
    for c in &summary.checks {
        println!(
            "[{}] {}: {}",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!(
        "elapsed {:.2} s, files {:?}",
        summary.elapsed_s, summary.files
    );
    Ok(())
}
