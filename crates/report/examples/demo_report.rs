//! Writes a fake results directory with invented numbers and its report.
//!
//! `cargo run -p nrf-report --example demo_report -- /tmp/nrf-demo` then open
//! `/tmp/nrf-demo/report.html`.
fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nrf-demo-results".into());
    nrf_report::demo::write_demo_results(&dir)?;
    let s = nrf_report::write_report(&dir)?;
    println!("{}", nrf_report::summary_markdown(&dir)?);
    println!("wrote {} and {}", s.html.display(), s.markdown.display());
    Ok(())
}
