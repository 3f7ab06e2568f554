//! `cargo xtask fuzz --target T --seconds S`: builds a libFuzzer target of `fuzz/` with coverage
//! instrumentation and runs it for S seconds from its seed corpus, then prints the executions
//! and the crashes. The instrumentation is cargo-fuzz's (SanitizerCoverage with 8-bit counters,
//! PC table and comparison tracing, `--cfg fuzzing`, debug assertions and overflow checks)
//! without its AddressSanitizer, so the stable toolchain builds it and cargo-fuzz need not be
//! installed. The flags go to the target only (`--target <host>`), not to build scripts.
//!
//! Seeds: `fuzz/corpus/<T>/` (in the repository, read only); what libFuzzer finds goes to
//! `fuzz/target/corpus/<T>/`; crashes, hangs and out-of-memory inputs to
//! `fuzz/artifacts/<T>/` (run the target binary on one to reproduce it).
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The targets; `preset` needs the experiments crate and so libtorch.
pub const TARGETS: [&str; 5] = ["idx", "cifar", "image", "constructed", "preset"];

/// cargo-fuzz's instrumentation, without `-Zsanitizer=address` (nightly only).
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// What to run.
#[derive(Debug, PartialEq)]
pub struct Opts {
    pub targets: Vec<String>,
    pub seconds: u64,
    /// Seconds one input may take before libFuzzer calls it a hang.
    pub timeout: u64,
    /// Build only.
    pub build_only: bool,
}

pub const USAGE: &str = "usage: cargo xtask fuzz --target T|all [--seconds S] [--timeout S] \
    [--build-only]\n  targets: idx, cifar, image, constructed, preset (all = every one, in turn)";

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        targets: vec![],
        seconds: 20,
        timeout: 10,
        build_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--target" => {
                let t = value("--target")?;
                if t == "all" {
                    o.targets = TARGETS.iter().map(|s| s.to_string()).collect();
                } else if TARGETS.contains(&t.as_str()) {
                    o.targets.push(t);
                } else {
                    bail!("unknown fuzz target {t:?}\n{USAGE}");
                }
            }
            "--seconds" => o.seconds = value("--seconds")?.parse().context("--seconds")?,
            "--timeout" => o.timeout = value("--timeout")?.parse().context("--timeout")?,
            "--build-only" => o.build_only = true,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.targets.is_empty() {
        bail!("no --target\n{USAGE}");
    }
    Ok(o)
}

/// The host's target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host line")
}

/// Parses libFuzzer's closing lines (`Done N runs in S second(s)`, `stat::number_of_executed_units:
/// N`, the last `cov:`/`corp:` status line).
pub fn parse_output(text: &str) -> (u64, Option<u64>, Option<u64>) {
    let mut runs = 0;
    let mut secs = None;
    let mut corpus = None;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("Done ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(n), Some(s)) = (w.first(), w.get(3)) {
                runs = n.parse().unwrap_or(runs);
                secs = s.parse().ok();
            }
        } else if let Some(n) = l.strip_prefix("stat::number_of_executed_units:") {
            runs = runs.max(n.trim().parse().unwrap_or(0));
        }
        if let Some(i) = l.find("corp: ") {
            corpus = l[i + 6..]
                .split('/')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .or(corpus);
        }
    }
    (runs, secs, corpus)
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Builds and runs every target of `o`; `env` are the variables for libtorch (the preset
/// target). Fails when a target crashed.
pub fn run(root: &Path, o: &Opts, env: &[(&'static str, Option<String>)]) -> Result<()> {
    let fuzz = root.join("fuzz");
    let triple = host_triple()?;
    let mut failed = vec![];
    let mut lines = vec![];
    for t in &o.targets {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .current_dir(&fuzz)
            .args(["build", "--release", "--bin", t, "--target", &triple])
            .env("RUSTFLAGS", RUSTFLAGS)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET");
        if t == "preset" {
            build.args(["--features", "preset"]);
            for (k, v) in env {
                match v {
                    Some(v) => build.env(k, v),
                    None => build.env_remove(k),
                };
            }
        }
        eprintln!(
            "xtask: fuzz {t}: building (instrumented, release) in {}",
            fuzz.display()
        );
        let st = build.status().context("running cargo build in fuzz/")?;
        if !st.success() {
            bail!("building fuzz target {t} failed ({st})");
        }
        if o.build_only {
            continue;
        }
        let bin = fuzz.join("target").join(&triple).join("release").join(t);
        let seeds = fuzz.join("corpus").join(t);
        let work = fuzz.join("target").join("corpus").join(t);
        let artifacts = fuzz.join("artifacts").join(t);
        for d in [&work, &artifacts] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let before = files(&artifacts);
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("-max_total_time={}", o.seconds))
            .arg(format!("-timeout={}", o.timeout))
            .arg("-rss_limit_mb=4096")
            .arg("-max_len=65536")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&work)
            .arg(&seeds)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        eprintln!(
            "xtask: fuzz {t}: running {} for {} s",
            bin.display(),
            o.seconds
        );
        let start = std::time::Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = fuzz.join("target").join(format!("fuzz-{t}.log"));
        let _ = std::fs::write(&log, &text);
        let (executions, secs, corpus) = parse_output(&text);
        let crashes: Vec<PathBuf> = files(&artifacts).difference(&before).cloned().collect();
        let secs = secs.unwrap_or_else(|| start.elapsed().as_secs());
        let line = format!(
            "fuzz {t}: {executions} executions in {secs} s ({}/s), corpus {}, {} crash{} \
             (log {})",
            executions / secs.max(1),
            corpus.map_or_else(|| "?".into(), |c| c.to_string()),
            crashes.len(),
            if crashes.len() == 1 { "" } else { "es" },
            log.display()
        );
        println!("{line}");
        lines.push(line);
        if !crashes.is_empty() || !out.status.success() {
            for c in &crashes {
                println!(
                    "  crash input: {} (reproduce: {} {})",
                    c.display(),
                    bin.display(),
                    c.display()
                );
            }
            if crashes.is_empty() {
                println!(
                    "  {} exited with {}: see the log",
                    bin.display(),
                    out.status
                );
            }
            failed.push(t.clone());
        }
    }
    if lines.len() > 1 {
        println!("\nsummary:\n{}", lines.join("\n"));
    }
    if !failed.is_empty() {
        bail!("fuzz targets with crashes: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let o = parse(&s(&["--target", "idx", "--seconds", "600"])).unwrap();
        assert_eq!(o.targets, vec!["idx"]);
        assert_eq!(o.seconds, 600);
        assert_eq!(parse(&s(&["--target", "all"])).unwrap().targets.len(), 5);
        assert!(parse(&s(&["--target", "nope"])).is_err());
        assert!(parse(&s(&["--seconds", "5"])).is_err());
    }

    #[test]
    fn libfuzzer_output() {
        let text = "#2\tINITED cov: 10 ft: 11 corp: 3/40b exec/s: 0 rss: 30Mb\n\
                    #4096\tpulse  cov: 20 ft: 30 corp: 9/200b lim: 43 exec/s: 2048 rss: 31Mb\n\
                    Done 123456 runs in 21 second(s)\n\
                    stat::number_of_executed_units: 123456\n";
        assert_eq!(parse_output(text), (123456, Some(21), Some(9)));
    }
}
