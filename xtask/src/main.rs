//! `cargo xtask`: sets libtorch up without the user's help, then builds, tests and runs nrf.
//!
//! Run `cargo xtask help` for the commands. This crate links no libtorch and depends on anyhow
//! only, so it compiles in seconds on a fresh machine.

mod fuzz;
mod proc;
mod torch;
mod twin;

use anyhow::{bail, Context, Result};
use proc::{find_on_path, is_root, say, warn, write_atomic, Cmd};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use torch::TorchEnv;

const USAGE: &str = "\
cargo xtask <command> [args]

commands:
  setup                 make sure the torch environment (a Python venv with torch 2.13.0) and the
                        Fashion-MNIST data are there; installs what is missing
  test [-- ARGS]        setup, build the nrf binary, then `cargo test --workspace --all-targets`
                        and `cargo test --workspace --doc` (ARGS go to both cargo test calls)
  clippy [-- ARGS]      setup, then `cargo clippy --workspace --all-targets ARGS -- -D warnings`
                        and `cargo doc --no-deps --workspace` with RUSTDOCFLAGS=-D warnings
  reproduce [ARGS]      setup, then `nrf reproduce --preset fashion-mnist ARGS` (release build);
                        e.g. --preset smoke, --results DIR, --set rep_match.n=64 (repeatable)
  nrf -- ARGS           setup, then run the nrf binary (release build) with ARGS
  bench [ARGS]          setup, then `nrf bench ARGS` (release build), with NRF_PYTHON set to the
                        torch environment's python so PyTorch-in-Python is timed in the same run
  twin [ARGS]           setup, then run the PyTorch fidelity twin (experiments/twin/nrf_twin.py)
                        on a preset and compare its Figure 2 / Table 1 numbers with nrf's results
                        (DIR/twin/comparison.md); `cargo xtask twin --help` for ARGS
  chaos [ARGS]          setup, then `nrf chaos ARGS`: the kill/resume harness (--preset P --kills N
                        --seed S [--set K=V] [--work DIR]): the run SIGKILLed N times at seeded
                        moments must end with exactly the results of an uninterrupted run
  gpu-check [ARGS]      setup, then `nrf gpu-check ARGS`: the cifar10 preset at toy sizes on a
                        synthetic CIFAR-10, on CUDA and on the CPU, first numbers compared; on a
                        machine without a GPU it says so and exits 0
  fuzz --target T [--seconds S]
                        build the libFuzzer target T of fuzz/ (idx, cifar, image, constructed,
                        preset, or all) instrumented, run it S seconds (default 20) from
                        fuzz/corpus/T, print executions and crashes (docs/reliability.md)
  screenshot HTML PNG   render HTML to PNG with headless Chromium (installs Debian's chromium
                        package first when missing and running as root)
  env                   print the torch environment and the shell exports that select it
                        (`eval \"$(cargo xtask env)\"`)
  help                  this text

environment:
  NRF_TORCH_ENV         where the torch environment lives (default:
                        ${XDG_CACHE_HOME:-$HOME/.cache}/nrf/torch-2.13.0)
  CARGO_TARGET_DIR      honoured as usual";

/// The file whose presence means the Debian package dataset-fashion-mnist is installed.
const FASHION_MNIST_PROBE: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
const FASHION_MNIST_PACKAGE: &str = "dataset-fashion-mnist";
/// Remembers which torch environment target/ was built against.
const STAMP: &str = ".nrf-torch-env";
const DEFAULT_PRESET: &str = "fashion-mnist";
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(180);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((cmd, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match cmd.as_str() {
        "setup" => {
            let env = setup()?;
            say(format!(
                "ready: torch {} in {} (see `cargo xtask env` for the exports)",
                env.version,
                env.dir.display()
            ));
            Ok(())
        }
        "test" => test(strip_dashdash(rest)),
        "clippy" => clippy(strip_dashdash(rest)),
        "reproduce" => {
            let env = setup()?;
            cargo_nrf(&env, &reproduce_args(strip_dashdash(rest)), &[])
        }
        "nrf" => {
            let env = setup()?;
            cargo_nrf(&env, strip_dashdash(rest), &[])
        }
        "bench" => {
            let env = setup()?;
            let mut a = vec!["bench".to_string()];
            a.extend(strip_dashdash(rest).iter().cloned());
            let python = env.python.clone().into_os_string();
            cargo_nrf(&env, &a, &[("NRF_PYTHON", python)])
        }
        "twin" => {
            let rest = strip_dashdash(rest);
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                println!("{}", twin::USAGE);
                return Ok(());
            }
            let args = twin::parse_args(rest, DEFAULT_PRESET)?;
            let env = setup()?;
            twin::run(&env, &workspace_root(), &args)
        }
        "chaos" => {
            let env = setup()?;
            let mut a = vec!["chaos".to_string()];
            a.extend(strip_dashdash(rest).iter().cloned());
            cargo_nrf(&env, &a, &[])
        }
        "gpu-check" => {
            let env = setup()?;
            let mut a = vec!["gpu-check".to_string()];
            a.extend(strip_dashdash(rest).iter().cloned());
            cargo_nrf(&env, &a, &[])
        }
        "fuzz" => {
            let o = fuzz::parse(strip_dashdash(rest))?;
            // Only the preset target links libtorch.
            let env = if o.targets.iter().any(|t| t == "preset") {
                torch::child_env(&setup()?)
            } else {
                vec![]
            };
            fuzz::run(&workspace_root(), &o, &env)
        }
        "screenshot" => match strip_dashdash(rest) {
            [html, png] => screenshot(Path::new(html), Path::new(png)),
            _ => bail!("usage: cargo xtask screenshot <file.html> <file.png>"),
        },
        "env" => print_env(),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Drops one leading `--` (so both `cargo xtask nrf -- --help` and `cargo xtask nrf --help` work).
fn strip_dashdash(args: &[String]) -> &[String] {
    match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    }
}

/// `reproduce` with `--preset fashion-mnist` added unless a preset was given.
fn reproduce_args(args: &[String]) -> Vec<String> {
    let has_preset = args
        .iter()
        .take_while(|a| a.as_str() != "--")
        .any(|a| a == "--preset" || a.starts_with("--preset="));
    let mut out = vec!["reproduce".to_string()];
    if !has_preset {
        out.push("--preset".into());
        out.push(DEFAULT_PRESET.into());
    }
    out.extend(args.iter().cloned());
    out
}

/// The workspace root (the folder above xtask/).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR` (made absolute against the current directory, as
/// cargo does), else `<workspace>/target`.
fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(d) => torch::absolute(Path::new(&d)),
        None => Ok(workspace_root().join("target")),
    }
}

/// A cargo command in the workspace root with the torch environment applied.
fn cargo(env: &TorchEnv) -> Result<Cmd> {
    let mut cmd = torch::apply(Cmd::cargo().current_dir(workspace_root()), env);
    // Children resolve a relative CARGO_TARGET_DIR from the workspace root; pin it absolute.
    if std::env::var_os("CARGO_TARGET_DIR").is_some_and(|v| !v.is_empty()) {
        cmd.env_hidden("CARGO_TARGET_DIR", target_dir()?);
    }
    Ok(cmd)
}

/// The whole setup: torch environment, target/ stamp, Fashion-MNIST.
fn setup() -> Result<TorchEnv> {
    let env = torch::ensure()?;
    torch::ensure_no_deps_packages(&env)?;
    check_stamp(&env)?;
    ensure_fashion_mnist();
    Ok(env)
}

fn stamp_contents(env: &TorchEnv) -> String {
    format!("env={}\ntorch={}\n", env.dir.display(), env.version)
}

/// Whether target/ must be cleaned of torch-sys: the stamp differs from the current environment
/// and there is a target folder to clean.
fn needs_clean(old_stamp: Option<&str>, new_stamp: &str, target_exists: bool) -> bool {
    target_exists && old_stamp != Some(new_stamp)
}

/// When the torch environment differs from the one target/ was built with, `cargo clean -p
/// torch-sys` so that its build script finds the new libtorch.
fn check_stamp(env: &TorchEnv) -> Result<()> {
    let target = target_dir()?;
    let stamp = target.join(STAMP);
    let want = stamp_contents(env);
    let old = std::fs::read_to_string(&stamp).ok();
    if needs_clean(old.as_deref(), &want, target.exists()) {
        match &old {
            Some(o) => say(format!(
                "{} was built against another torch environment ({}); cleaning torch-sys",
                target.display(),
                o.trim().replace('\n', ", ")
            )),
            None => say(format!(
                "{} has no record of the torch environment it was built with; cleaning torch-sys",
                target.display()
            )),
        }
        cargo(env)?.args(["clean", "-p", "torch-sys"]).run()?;
    }
    if old.as_deref() != Some(want.as_str()) {
        write_atomic(&stamp, &want)?;
    }
    Ok(())
}

/// Installs the Debian package dataset-fashion-mnist when it is missing and we may; otherwise
/// says how. Never fails: tests skip without the data, and `nrf reproduce` reports it clearly.
fn ensure_fashion_mnist() {
    if Path::new(FASHION_MNIST_PROBE).exists() {
        return;
    }
    let cmdline = format!("apt-get update && apt-get install -y {FASHION_MNIST_PACKAGE}");
    if find_on_path("apt-get", None).is_none() {
        warn(format!(
            "Fashion-MNIST is missing ({FASHION_MNIST_PROBE}) and there is no apt-get here. Put \
             the four *-ubyte.gz files of Fashion-MNIST in /usr/share/datasets/fashion-mnist/ \
             (or pass --data-dir to nrf); tests that need them are skipped"
        ));
        return;
    }
    if !is_root() {
        warn(format!(
            "Fashion-MNIST is missing ({FASHION_MNIST_PROBE}). Install it with:\n    sudo sh -c \
             '{cmdline}'\nContinuing: tests that need it are skipped, and `nrf reproduce` on \
             fashion-mnist will stop with an error until it is installed"
        ));
        return;
    }
    say(format!(
        "Fashion-MNIST is missing ({FASHION_MNIST_PROBE}); installing the Debian package \
         {FASHION_MNIST_PACKAGE}"
    ));
    if let Err(e) = apt_install(FASHION_MNIST_PACKAGE) {
        warn(format!(
            "could not install {FASHION_MNIST_PACKAGE}: {e:#}. Run `{cmdline}` yourself; \
             continuing without the data"
        ));
    }
}

fn apt_install(package: &str) -> Result<()> {
    Cmd::new("apt-get")
        .env_shown("DEBIAN_FRONTEND", "noninteractive")
        .arg("update")
        .run()?;
    Cmd::new("apt-get")
        .env_shown("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", package])
        .run()
}

fn test(extra: &[String]) -> Result<()> {
    let env = setup()?;
    cargo(&env)?
        .args(["build", "-p", "nrf-experiments", "--bin", "nrf"])
        .run()?;
    let bin = target_dir()?.join("debug").join("nrf");
    if !bin.is_file() {
        bail!(
            "the nrf binary was built but is not at {} (is CARGO_BUILD_TARGET set?)",
            bin.display()
        );
    }
    // Tests that compare nrf with PyTorch (initialisation, the twin, checkpoints) run this python.
    let python = env.python.clone().into_os_string();
    cargo(&env)?
        .env_shown("NRF_BIN", &bin)
        .env_shown("NRF_PYTHON", &python)
        .args(["test", "--workspace", "--all-targets"])
        .args(extra)
        .run()?;
    cargo(&env)?
        .env_shown("NRF_BIN", &bin)
        .env_shown("NRF_PYTHON", &python)
        .args(["test", "--workspace", "--doc"])
        .args(extra)
        .run()?;
    say("all tests passed");
    Ok(())
}

fn clippy(extra: &[String]) -> Result<()> {
    let env = setup()?;
    cargo(&env)?
        .args(["clippy", "--workspace", "--all-targets"])
        .args(extra)
        .args(["--", "-D", "warnings"])
        .run()?;
    // The API documentation too: broken or ambiguous intra-doc links are errors.
    cargo(&env)?
        .env_shown("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--no-deps", "--workspace"])
        .run()
}

/// `cargo run --release -p nrf-experiments --bin nrf -- <args>`.
fn cargo_nrf(env: &TorchEnv, args: &[String], extra_env: &[(&str, OsString)]) -> Result<()> {
    let mut cmd = cargo(env)?;
    for (k, v) in extra_env {
        cmd = cmd.env_shown(k, v);
    }
    cmd.args([
        "run",
        "--release",
        "-p",
        "nrf-experiments",
        "--bin",
        "nrf",
        "--",
    ])
    .args(args)
    .run()
}

fn print_env() -> Result<()> {
    let env = torch::ensure()?;
    println!("# nrf torch environment (from `cargo xtask env`)");
    println!("# env:    {}", env.dir.display());
    println!("# python: {}", env.python.display());
    println!("# torch:  {}", env.version);
    println!("# lib:    {}", env.lib.display());
    println!(
        "# After switching environments, run `cargo clean -p torch-sys` before building by hand."
    );
    print!("{}", torch::shell_exports(&env));
    Ok(())
}

/// Finds chromium, installing Debian's package when missing and we are root.
fn chromium() -> Result<PathBuf> {
    let find = || find_on_path("chromium", None).or_else(|| find_on_path("chromium-browser", None));
    if let Some(p) = find() {
        return Ok(p);
    }
    let cmdline = "apt-get update && apt-get install -y chromium";
    if !is_root() || find_on_path("apt-get", None).is_none() {
        bail!("chromium is not installed; install it (Debian/Ubuntu: `sudo sh -c '{cmdline}'`)");
    }
    say("chromium is missing; installing the Debian package chromium");
    apt_install("chromium").with_context(|| format!("could not install chromium ({cmdline})"))?;
    find().context("chromium was installed but is not on PATH")
}

fn screenshot(html: &Path, png: &Path) -> Result<()> {
    let html = html
        .canonicalize()
        .with_context(|| format!("cannot read {}", html.display()))?;
    let png = torch::absolute(png)?;
    let out_dir = png
        .parent()
        .with_context(|| format!("{} has no parent folder", png.display()))?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let browser = chromium()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let profile = std::env::temp_dir().join(format!("nrf-chromium-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&profile)
        .with_context(|| format!("could not create {}", profile.display()))?;
    let result = render(&browser, &html, &png, &profile);
    let _ = std::fs::remove_dir_all(&profile);
    result
}

fn render(browser: &Path, html: &Path, png: &Path, profile: &Path) -> Result<()> {
    let name = png.file_name().context("no file name")?.to_string_lossy();
    let tmp = png.with_file_name(format!(".{name}.{}.tmp.png", std::process::id()));
    let log_path = profile.join("chromium.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .context("could not duplicate a file handle")?;
    let mut screenshot_arg = OsString::from("--screenshot=");
    screenshot_arg.push(&tmp);
    let mut user_data = OsString::from("--user-data-dir=");
    user_data.push(profile);
    let url = file_url(html);
    let (mut cmd, summary) = Cmd::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(user_data)
        .arg(screenshot_arg)
        .arg("--window-size=1280,4000")
        .arg(url)
        .into_inner();
    say(summary);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .with_context(|| format!("could not start {}", browser.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().context("waiting for chromium")? {
            break Some(st);
        }
        if start.elapsed() > SCREENSHOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let tail = || {
        let s = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let ok = matches!(status, Some(st) if st.success())
        && std::fs::metadata(&tmp)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        let why = match status {
            None => format!("timed out after {} s", SCREENSHOT_TIMEOUT.as_secs()),
            Some(st) if !st.success() => format!("exited with {st}"),
            Some(_) => "wrote no screenshot".to_string(),
        };
        bail!(
            "chromium {why} rendering {}; its last output:\n{}",
            html.display(),
            tail()
        );
    }
    std::fs::rename(&tmp, png).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("could not move {} to {}", tmp.display(), png.display())
    })?;
    say(format!("wrote {}", png.display()));
    Ok(())
}

/// `file://` URL of an absolute path, percent-encoding everything but unreserved characters and
/// `/`.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.as_os_str().to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            file_url(Path::new("/r/report.html")),
            "file:///r/report.html"
        );
        assert_eq!(
            file_url(Path::new("/a b/#1/é.html")),
            "file:///a%20b/%231/%C3%A9.html"
        );
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn dashdash() {
        assert_eq!(strip_dashdash(&s(&["--", "--help"])), s(&["--help"]));
        assert_eq!(strip_dashdash(&s(&["--help"])), s(&["--help"]));
        assert_eq!(strip_dashdash(&s(&["--", "--"])), s(&["--"]));
        assert!(strip_dashdash(&[]).is_empty());
    }

    #[test]
    fn default_preset() {
        assert_eq!(
            reproduce_args(&[]),
            s(&["reproduce", "--preset", "fashion-mnist"])
        );
        assert_eq!(
            reproduce_args(&s(&["--results", "r"])),
            s(&["reproduce", "--preset", "fashion-mnist", "--results", "r"])
        );
        assert_eq!(
            reproduce_args(&s(&["--preset", "smoke"])),
            s(&["reproduce", "--preset", "smoke"])
        );
        assert_eq!(
            reproduce_args(&s(&["--preset=cifar10", "--data-dir", "d"])),
            s(&["reproduce", "--preset=cifar10", "--data-dir", "d"])
        );
        // `--set KEY=VALUE` overrides go through to `nrf reproduce` as given.
        assert_eq!(
            reproduce_args(&s(&["--set", "rep_match.n=64", "--set", "model.init=tch"])),
            s(&[
                "reproduce",
                "--preset",
                "fashion-mnist",
                "--set",
                "rep_match.n=64",
                "--set",
                "model.init=tch"
            ])
        );
    }

    #[test]
    fn clean_decision() {
        let new = "env=/a\ntorch=2.13.0\n";
        assert!(!needs_clean(Some(new), new, true));
        assert!(needs_clean(Some("env=/b\ntorch=2.13.0\n"), new, true));
        assert!(needs_clean(None, new, true));
        assert!(!needs_clean(None, new, false));
    }

    #[test]
    fn root_is_above_xtask() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
