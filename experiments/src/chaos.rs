//! The kill/resume harness (`nrf chaos`, `cargo xtask chaos`): a run killed with SIGKILL at
//! seeded random moments, any number of times, must end with exactly the results of a run never
//! interrupted.
//!
//! 1. A reference run of the preset (1 libtorch thread: bit-for-bit reproducible on a CPU) in
//!    `<work>/reference`; its `run.json` gives the timeline of its stages (each stage's wall
//!    time), `T` seconds in all. An existing finished reference is reused.
//! 2. `kills` moments drawn from the seed, uniformly on `[0.02, 0.9] x T` and sorted: points on
//!    the reference's timeline. The same run in `<work>/chaos` is started, and SIGKILLed when
//!    its position on that timeline reaches the next moment, then started again: its position
//!    is the reference time of the stages whose records it has written, plus the seconds since
//!    the last one appeared (or since its start). So kills spread over the whole run, stage by
//!    stage, whatever a restart costs: in data loading, training, constructions, in the middle
//!    of a write, in the report, as chance has it, sometimes twice in the same stage.
//! 3. The chaos run once more to its end, then every results file compared with the reference:
//!    every JSON (models/, sections/, datasets/, weights/ sidecars, stage records, run.json's
//!    preset and overrides) after removing what measures time or the machine (keys in
//!    [`VOLATILE_KEYS`]), and every weight and data-set safetensors file byte for byte.
//!
//! The harness itself can be interrupted (a session's end, a scheduler's limit on a preset that
//! runs for hours) and started again with the same arguments: the reference run resumes (its
//! stages are reused as any run's are), and the killed run keeps its folder and goes on with
//! the next kill, since `<work>/chaos-state.json` records the kills made (written after each).
//! Other arguments start the killed run afresh.
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// JSON keys whose values measure time, the machine or which process computed a stage, not the
/// results (left out of the comparison). `sha256` is a stage record's checksum of its own content, wall time included;
/// the files it lists are compared byte for byte.
pub const VOLATILE_KEYS: &[&str] = &[
    "sha256",
    "section_seconds",
    "wall_s",
    "elapsed_s",
    "total_wall_s",
    "started",
    "worker",
    "finished",
    "machine",
    "status",
    "message",
];

/// What to run and how often to kill it.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `nrf` binary.
    pub bin: PathBuf,
    /// Built-in preset name or TOML file.
    pub preset: String,
    /// Preset overrides (`KEY=VALUE`), as `nrf reproduce --set`. `threads=1` is added.
    pub set: Vec<String>,
    /// SIGKILLs before the run is allowed to finish.
    pub kills: usize,
    /// Seed of the kill moments.
    pub seed: u64,
    /// Folder of the two runs (`reference/`, `chaos/`) and their logs.
    pub work: PathBuf,
}

/// One kill: where on the reference's timeline, when after its restart, and what the run was
/// doing (its last log line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Kill {
    /// The moment, in seconds of the reference's stage timeline.
    pub at_s: f64,
    /// The moment as a fraction of the reference's stage time.
    pub at_fraction: f64,
    /// Seconds since this restart of the run.
    pub after_s: f64,
    pub doing: String,
}

/// The harness's result.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub preset: String,
    pub seed: u64,
    /// Wall time of the uninterrupted run (None when a finished one was reused).
    pub reference_s: Option<f64>,
    pub kills: Vec<Kill>,
    /// Kills already made by an earlier, interrupted invocation of the harness (the first
    /// `resumed_after` of `kills`), or 0.
    #[serde(default)]
    pub resumed_after: usize,
    /// Wall time of the final, uninterrupted part of the chaos run.
    pub final_run_s: f64,
    /// Files compared (JSON and safetensors).
    pub compared: usize,
    /// Every difference found, `path: what` (empty: identical).
    pub differences: Vec<String>,
    /// Warnings of the killed run that an artefact it had written was damaged (a stage record,
    /// weights, a chunk): with atomic writes a kill never leaves one, so each is a failure.
    pub damaged: Vec<String>,
}

impl ChaosReport {
    /// True when the killed run ended with exactly the reference's results.
    pub fn identical(&self) -> bool {
        self.differences.is_empty() && self.compared > 0
    }

    /// True when the results are identical and no kill left a damaged artefact behind.
    pub fn passed(&self) -> bool {
        self.identical() && self.damaged.is_empty()
    }

    /// A short account for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "chaos: preset {}, seed {}, {} kills (SIGKILL)\n",
            self.preset,
            self.seed,
            self.kills.len()
        );
        if let Some(t) = self.reference_s {
            s += &format!("  reference run (uninterrupted): {t:.1} s\n");
        }
        if self.resumed_after > 0 {
            s += &format!(
                "  the harness was interrupted and resumed after kill {}\n",
                self.resumed_after
            );
        }
        for (i, k) in self.kills.iter().enumerate() {
            s += &format!(
                "  kill {:>2} at {:>3.0}% of the run ({:.1} s into this restart): {}\n",
                i + 1,
                k.at_fraction * 100.0,
                k.after_s,
                k.doing
            );
        }
        s += &format!("  final run to the end: {:.1} s\n", self.final_run_s);
        if self.identical() {
            s += &format!(
                "  identical: {} result files equal to the reference's\n",
                self.compared
            );
        } else {
            s += &format!(
                "  NOT identical: {} of {} files differ\n",
                self.differences.len(),
                self.compared
            );
            for d in &self.differences {
                s += &format!("    {d}\n");
            }
        }
        if self.damaged.is_empty() {
            s += "  no artefact found damaged after a kill\n";
        } else {
            s += &format!(
                "  {} warning(s) of a damaged artefact after a kill:\n",
                self.damaged.len()
            );
            for d in &self.damaged {
                s += &format!("    {d}\n");
            }
        }
        s
    }
}

fn reproduce_cmd(cfg: &ChaosConfig, results: &Path, log: &Path) -> Result<Command> {
    let mut cmd = Command::new(&cfg.bin);
    cmd.args(["reproduce", "--quiet", "--preset", &cfg.preset, "--results"])
        .arg(results);
    for s in cfg
        .set
        .iter()
        .chain(std::iter::once(&"threads=1".to_string()))
    {
        cmd.args(["--set", s]);
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the log {}", log.display()))?;
    cmd.stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null());
    die_with_the_parent(&mut cmd);
    Ok(cmd)
}

/// On Linux the process `cmd` starts is SIGKILLed when this one dies (PR_SET_PDEATHSIG): a
/// harness interrupted and started again never finds its previous run still holding the results
/// folder, and a run's workers ([`crate::workers`]) end with it.
pub(crate) fn die_with_the_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// `line` without ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut clean = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            clean.push(c);
        }
    }
    clean
}

/// The last non-empty line of `log`, without its timestamp and ANSI colours (what the run was
/// doing).
fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let clean = strip_ansi(line);
    let clean = clean.trim();
    // Drop "2026-...Z  INFO target: " when present.
    match clean.split_once(": ") {
        Some((head, rest)) if head.contains("INFO") || head.contains("WARN") => rest.to_string(),
        _ => clean.to_string(),
    }
    .chars()
    .take(120)
    .collect()
}

fn run_to_end(cfg: &ChaosConfig, results: &Path, log: &Path) -> Result<f64> {
    let t = Instant::now();
    let status = reproduce_cmd(cfg, results, log)?
        .status()
        .with_context(|| format!("starting {}", cfg.bin.display()))?;
    if !status.success() {
        bail!(
            "chaos: `nrf reproduce` into {} failed ({status}); its log: {}",
            results.display(),
            log.display()
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The reference run's stages as a timeline: each stage's record file and wall time.
struct Timeline {
    stages: Vec<(PathBuf, f64)>,
    total_s: f64,
}

impl Timeline {
    /// From `<reference>/run.json` (stage `train:C_std` writes `stages/train_C_std.json`).
    fn of(reference: &Path) -> Result<Timeline> {
        let run: Value = nrf_data::store::read_json(reference.join("run.json"))?;
        let stages: Vec<(PathBuf, f64)> = run["stages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let name = s["name"].as_str()?.replace(':', "_");
                        Some((
                            PathBuf::from("stages").join(format!("{name}.json")),
                            s["wall_s"].as_f64()?.max(0.0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total_s: f64 = stages.iter().map(|s| s.1).sum();
        if stages.is_empty() || total_s <= 0.0 {
            bail!(
                "chaos: the reference run's {} lists no timed stages",
                reference.join("run.json").display()
            );
        }
        Ok(Timeline { stages, total_s })
    }

    /// Reference seconds of the stages whose records `dir` holds.
    fn done_s(&self, dir: &Path) -> f64 {
        self.stages
            .iter()
            .filter(|(p, _)| dir.join(p).exists())
            .map(|s| s.1)
            .sum()
    }
}

/// Runs the harness (see the module documentation).
/// What `<work>/chaos-state.json` records: the arguments that decide the killed run and the
/// kills made so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ChaosState {
    preset: String,
    set: Vec<String>,
    seed: u64,
    kills: usize,
    done: Vec<Kill>,
}

impl ChaosState {
    fn same_run(&self, cfg: &ChaosConfig) -> bool {
        self.preset == cfg.preset
            && self.set == cfg.set
            && self.seed == cfg.seed
            && self.kills == cfg.kills
    }
}

/// The kills an earlier, interrupted invocation with the same arguments made (the killed run's
/// folder is then kept), or none (the folder and log are removed: a fresh killed run).
fn resume_or_reset(cfg: &ChaosConfig, chaos: &Path, log: &Path, state: &Path) -> Result<Vec<Kill>> {
    if chaos.exists() && state.exists() {
        match nrf_data::store::read_json::<ChaosState>(state) {
            Ok(s) if s.same_run(cfg) && s.done.len() <= cfg.kills => {
                eprintln!(
                    "chaos: resuming the killed run in {} after its kill {} of {}",
                    chaos.display(),
                    s.done.len(),
                    cfg.kills
                );
                return Ok(s.done);
            }
            Ok(_) => eprintln!(
                "chaos: {} is from other arguments: starting the killed run afresh",
                state.display()
            ),
            Err(e) => eprintln!("chaos: {e:#}: starting the killed run afresh"),
        }
    }
    if chaos.exists() {
        std::fs::remove_dir_all(chaos)
            .with_context(|| format!("removing the previous chaos run {}", chaos.display()))?;
    }
    let _ = std::fs::remove_file(log);
    let _ = std::fs::remove_file(state);
    Ok(Vec::new())
}

pub fn run(cfg: &ChaosConfig) -> Result<ChaosReport> {
    if cfg.kills == 0 {
        bail!("chaos: --kills must be at least 1");
    }
    std::fs::create_dir_all(&cfg.work)
        .with_context(|| format!("creating the chaos folder {}", cfg.work.display()))?;
    let reference = cfg.work.join("reference");
    let chaos = cfg.work.join("chaos");
    let reference_s = if reference.join("report.md").exists() {
        None
    } else {
        Some(run_to_end(
            cfg,
            &reference,
            &cfg.work.join("reference.log"),
        )?)
    };
    let timeline = Timeline::of(&reference)?;
    let log = cfg.work.join("chaos.log");
    let state_path = cfg.work.join("chaos-state.json");
    let mut kills = resume_or_reset(cfg, &chaos, &log, &state_path)?;
    let resumed_after = kills.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut moments: Vec<f64> = (0..cfg.kills)
        .map(|_| rng.gen_range(0.02..0.9) * timeline.total_s)
        .collect();
    moments.sort_by(f64::total_cmp);
    for (i, &moment) in moments.iter().enumerate().skip(resumed_after) {
        let mut child = reproduce_cmd(cfg, &chaos, &log)?
            .spawn()
            .with_context(|| format!("starting {}", cfg.bin.display()))?;
        let t = Instant::now();
        let mut done = timeline.done_s(&chaos);
        let mut since = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "chaos: run {} ended ({status}) {:.1} s after its start, before its kill at \
                     {moment:.1} s of the reference's timeline (a resumed run should never \
                     finish sooner than the work left); log: {}",
                    i + 1,
                    t.elapsed().as_secs_f64(),
                    log.display()
                );
            }
            let now_done = timeline.done_s(&chaos);
            if now_done != done {
                done = now_done;
                since = Instant::now();
            }
            // At least a moment after the start: a kill before the process has run is no test.
            if done + since.elapsed().as_secs_f64() >= moment
                && t.elapsed() >= Duration::from_millis(300)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().context("sending SIGKILL")?;
        child.wait()?;
        let doing = last_line(&log);
        eprintln!(
            "chaos: kill {}/{} at {:.0}% of the run, {:.1} s after its restart: {doing}",
            i + 1,
            cfg.kills,
            100.0 * moment / timeline.total_s,
            t.elapsed().as_secs_f64()
        );
        kills.push(Kill {
            at_s: moment,
            at_fraction: moment / timeline.total_s,
            after_s: t.elapsed().as_secs_f64(),
            doing,
        });
        let state = ChaosState {
            preset: cfg.preset.clone(),
            set: cfg.set.clone(),
            seed: cfg.seed,
            kills: cfg.kills,
            done: kills.clone(),
        };
        nrf_data::store::write_json_atomic(&state_path, &state)?;
    }
    let final_run_s = run_to_end(cfg, &chaos, &log)?;
    let (compared, differences) = compare_results(&reference, &chaos)?;
    let damaged = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("damaged"))
        .map(|l| strip_ansi(l).chars().take(300).collect())
        .collect();
    Ok(ChaosReport {
        preset: cfg.preset.clone(),
        seed: cfg.seed,
        reference_s,
        kills,
        resumed_after,
        final_run_s,
        compared,
        differences,
        damaged,
    })
}

/// `value` without the [`VOLATILE_KEYS`] (at any depth).
pub fn strip_volatile(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !VOLATILE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), strip_volatile(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_volatile).collect()),
        other => other.clone(),
    }
}

/// The first place where `a` and `b` differ, as a JSON pointer-like path.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, &format!("{at}/{k}")) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => return Some(format!("{at}/{k} only in the reference")),
                    (None, Some(_)) => return Some(format!("{at}/{k} only in the killed run")),
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(format!(
            "{at}: reference {} vs killed run {}",
            short(a),
            short(b)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

/// Results files below `dir` (relative paths): every `.json` and `.safetensors` outside `work/`
/// (the runs' scratch: chunks, checkpoints) and `twin/`.
fn result_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_path_buf();
            if p.is_dir() {
                if !matches!(rel.to_str(), Some("work" | "twin")) {
                    stack.push(p);
                }
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("json" | "safetensors")
            ) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Compares every result file of `reference` with `other`: returns the number compared and the
/// differences (a file missing on either side is one).
pub fn compare_results(reference: &Path, other: &Path) -> Result<(usize, Vec<String>)> {
    let ours = result_files(reference);
    let theirs = result_files(other);
    let mut diffs = Vec::new();
    for f in &theirs {
        if !ours.contains(f) {
            diffs.push(format!("{}: only in the killed run", f.display()));
        }
    }
    for f in &ours {
        let (a, b) = (reference.join(f), other.join(f));
        if !b.exists() {
            diffs.push(format!("{}: missing in the killed run", f.display()));
            continue;
        }
        if f.extension().and_then(|x| x.to_str()) == Some("json") {
            let (mut x, mut y): (Value, Value) = (
                nrf_data::store::read_json(&a)?,
                nrf_data::store::read_json(&b)?,
            );
            if f.as_os_str() == "run.json" {
                // The run's record: its preset and overrides must agree; its stage list says
                // which stages were cached, which differs by design.
                for v in [&mut x, &mut y] {
                    if let Value::Object(m) = v {
                        m.remove("stages");
                    }
                }
            }
            if let Some(d) = first_difference(&strip_volatile(&x), &strip_volatile(&y), "") {
                diffs.push(format!("{}: {d}", f.display()));
            }
        } else {
            let (x, y) = (
                std::fs::read(&a).with_context(|| format!("reading {}", a.display()))?,
                std::fs::read(&b).with_context(|| format!("reading {}", b.display()))?,
            );
            if x != y {
                diffs.push(format!("{}: bytes differ", f.display()));
            }
        }
    }
    Ok((ours.len(), diffs))
}

#[cfg(test)]
mod tests;
