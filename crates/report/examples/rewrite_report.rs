//! Rewrites the report of an existing results directory (report.html, report.md, plots/).
//!
//! `cargo run -p nrf-report --example rewrite_report -- results/<preset>`
fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: rewrite_report <results dir>"))?;
    let s = nrf_report::write_report(&dir)?;
    println!("wrote {} and {}", s.html.display(), s.markdown.display());
    println!("plots: {}", s.plots.len());
    for p in &s.problems {
        println!("problem: {p}");
    }
    Ok(())
}
