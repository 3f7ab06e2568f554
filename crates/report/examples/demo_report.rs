//! Writes a fake results directory with invented numbers and its report.
//!
//! `cargo run -p nrf-report --example demo_report -- /tmp/nrf-demo` then open
//! `/tmp/nrf-demo/report.html`. With `--report-only`, only (re)writes the report of an existing
//! results directory, e.g. `results/fashion-mnist`.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "nrf-demo-results".into());
    if !args.iter().any(|a| a == "--report-only") {
        nrf_report::demo::write_demo_results(&dir)?;
    }
    let s = nrf_report::write_report(&dir)?;
    println!("{}", nrf_report::summary_markdown(&dir)?);
    println!("wrote {} and {}", s.html.display(), s.markdown.display());
    if !s.missing.is_empty() {
        println!("missing: {}", s.missing.join(", "));
    }
    for p in &s.problems {
        println!("problem: {p}");
    }
    Ok(())
}
