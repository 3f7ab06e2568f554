//! Runs every theory experiment and prints its checks:
//! `cargo run -p nrf-theory --release --example run_all -- [SEED]`. The figures and
//! `theory.json` are written by `nrf theory --out DIR` (nrf-experiments).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let out = nrf_theory::run(seed)?;
    for c in &out.summary.checks {
        println!(
            "[{}] {}: {}",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!("elapsed {:.2} s", out.summary.elapsed_s);
    Ok(())
}
