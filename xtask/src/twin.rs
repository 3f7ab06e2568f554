//! `cargo xtask twin`: runs nrf's PyTorch fidelity twin (`experiments/twin/nrf_twin.py`) on a
//! preset with the torch environment's python, then puts its Figure 2 / Table 1 numbers next to
//! nrf's results for the same preset (`<results>/twin/comparison.md` and `comparison.json`).
//! The comparison itself is done by the script (`nrf_twin.py compare`), so this crate stays
//! free of JSON parsing.

use crate::proc::{say, Cmd};
use crate::torch::TorchEnv;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The twin, relative to the workspace root.
pub const SCRIPT: &str = "experiments/twin/nrf_twin.py";

/// What `cargo xtask twin` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinArgs {
    /// Built-in preset name or preset file.
    pub preset: String,
    /// nrf's results folder (default `results/<preset name>`).
    pub results: Option<PathBuf>,
    /// Seeds per fresh model (default: the twin's, i.e. the preset's `[fresh] seeds`, else 3).
    pub seeds: Option<usize>,
    /// Seeds for C_std and C_rob.
    pub source_seeds: usize,
    /// torch threads (default: the preset's `threads`).
    pub threads: Option<usize>,
    /// `--set KEY=VALUE` overrides passed to the twin.
    pub sets: Vec<String>,
    /// Only redo the comparison from an existing `twin.json`.
    pub compare_only: bool,
}

/// Usage of `cargo xtask twin`.
pub const USAGE: &str = "\
cargo xtask twin [--preset P] [--results DIR] [--seeds N] [--source-seeds K] [--threads T]
                 [--set KEY=VALUE]... [--compare-only]
  runs experiments/twin/nrf_twin.py (PyTorch) on preset P (default fashion-mnist) into
  DIR/twin/twin.json, then compares it with nrf's results in DIR (default results/<preset name>,
  made by `cargo xtask reproduce --preset P`): DIR/twin/comparison.md and comparison.json.
  --seeds: seeds per fresh model (default: the preset's `[fresh] seeds`, else 3);
  --source-seeds: seeds for C_std / C_rob (default 1); --compare-only: reuse
  DIR/twin/twin.json. A relative DIR is taken from the workspace root, as for
  `cargo xtask reproduce --results`.";

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a String> {
    it.next()
        .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
}

fn count(flag: &str, v: &str) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("{flag} must be a whole number >= 1, got {v:?}"),
    }
}

/// Parses the arguments of `cargo xtask twin` (`--flag value` or `--flag=value`).
pub fn parse_args(args: &[String], default_preset: &str) -> Result<TwinArgs> {
    let mut out = TwinArgs {
        preset: default_preset.to_string(),
        results: None,
        seeds: None,
        source_seeds: 1,
        threads: None,
        sets: Vec::new(),
        compare_only: false,
    };
    let split: Vec<String> = args
        .iter()
        .flat_map(|a| match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => vec![f.to_string(), v.to_string()],
            _ => vec![a.clone()],
        })
        .collect();
    let mut it = split.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--preset" => out.preset = value(a, &mut it)?.clone(),
            "--results" => out.results = Some(PathBuf::from(value(a, &mut it)?)),
            "--seeds" => out.seeds = Some(count(a, value(a, &mut it)?)?),
            "--source-seeds" => out.source_seeds = count(a, value(a, &mut it)?)?,
            "--threads" => out.threads = Some(count(a, value(a, &mut it)?)?),
            "--set" => out.sets.push(value(a, &mut it)?.clone()),
            "--compare-only" => out.compare_only = true,
            other => bail!("twin: unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    Ok(out)
}

/// The environment's python on `args`, with PYTHONPATH / PYTHONHOME removed (so no other torch
/// can be picked up), in the workspace root.
fn python(env: &TorchEnv, root: &Path) -> Cmd {
    let mut cmd = Cmd::new(&env.python)
        .current_dir(root)
        .note(format!("(torch env: {})", env.dir.display()));
    cmd.env_remove_hidden("PYTHONPATH");
    cmd.env_remove_hidden("PYTHONHOME");
    cmd
}

/// Runs the twin and the comparison (see [`USAGE`]).
pub fn run(env: &TorchEnv, root: &Path, args: &TwinArgs) -> Result<()> {
    let script = root.join(SCRIPT);
    if !script.is_file() {
        bail!("the twin is missing: {} does not exist", script.display());
    }
    let resolved = python(env, root)
        .arg(&script)
        .args(["resolve", "--preset", &args.preset])
        .output()
        .with_context(|| format!("reading preset {:?}", args.preset))?;
    let mut lines = resolved.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(name), Some(preset_path)) = (lines.next(), lines.next()) else {
        bail!("`{SCRIPT} resolve` printed {resolved:?}, expected the preset's name and file");
    };
    let results = match &args.results {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => root.join(d),
        None => root.join("results").join(name),
    };
    if !results.join("models").join("C_std.json").is_file() {
        let flag = match &args.results {
            Some(d) => format!(" --results {}", d.display()),
            None => String::new(),
        };
        bail!(
            "nrf's results for preset {name} are not in {} (no models/C_std.json); make them \
             first with `cargo xtask reproduce --preset {}{flag}`",
            results.display(),
            args.preset
        );
    }
    let twin_dir = results.join("twin");
    if !args.compare_only {
        let mut cmd = python(env, root)
            .arg(&script)
            .args(["--preset", preset_path])
            .arg("--out")
            .arg(&twin_dir)
            .args(["--source-seeds", &args.source_seeds.to_string()]);
        if let Some(n) = args.seeds {
            cmd = cmd.args(["--seeds", &n.to_string()]);
        }
        if let Some(t) = args.threads {
            cmd = cmd.args(["--threads", &t.to_string()]);
        }
        for s in &args.sets {
            cmd = cmd.args(["--set", s]);
        }
        cmd.run()?;
    }
    python(env, root)
        .arg(&script)
        .arg("compare")
        .arg("--nrf")
        .arg(&results)
        .arg("--twin")
        .arg(&twin_dir)
        .run()?;
    say(format!(
        "nrf vs twin: {}",
        twin_dir.join("comparison.md").display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse_args(&[], "fashion-mnist").unwrap();
        assert_eq!(a.preset, "fashion-mnist");
        assert_eq!((a.seeds, a.source_seeds, a.threads), (None, 1, None));
        assert!(a.results.is_none() && a.sets.is_empty() && !a.compare_only);
        let a = parse_args(
            &s(&[
                "--preset=smoke",
                "--results",
                "r/x",
                "--seeds",
                "2",
                "--threads=2",
                "--set",
                "rep_match.n=10",
                "--set=model.init=tch",
                "--compare-only",
            ]),
            "fashion-mnist",
        )
        .unwrap();
        assert_eq!(a.preset, "smoke");
        assert_eq!(a.results, Some(PathBuf::from("r/x")));
        assert_eq!((a.seeds, a.threads), (Some(2), Some(2)));
        assert_eq!(a.sets, s(&["rep_match.n=10", "model.init=tch"]));
        assert!(a.compare_only);
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = parse_args(&s(&["--seeds", "0"]), "p").unwrap_err();
        assert!(format!("{e:#}").contains("--seeds"), "{e:#}");
        let e = parse_args(&s(&["--results"]), "p").unwrap_err();
        assert!(
            format!("{e:#}").contains("--results needs a value"),
            "{e:#}"
        );
        let e = parse_args(&s(&["--frobnicate"]), "p").unwrap_err();
        assert!(format!("{e:#}").contains("--frobnicate"), "{e:#}");
    }
}
