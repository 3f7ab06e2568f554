//! Runs every theory experiment and prints its checks:
//! `cargo run -p nrf-theory --release --example run_all -- [SEED] [OUT_DIR]`. With `OUT_DIR`,
//! also writes the typed output there as `summary.json` and `figures.json` (the tables and checks,
//! and every curve and point of the figures), e.g. to compare two versions of the code. The
//! figures themselves and `theory.json` are written by `nrf theory --out DIR` (nrf-experiments).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
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
    if let Some(dir) = args.next() {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&out.summary)?,
        )?;
        std::fs::write(
            dir.join("figures.json"),
            serde_json::to_string_pretty(&out.figures)?,
        )?;
        println!("wrote {}", dir.display());
    }
    Ok(())
}
