//! What `nrf bench --pipeline` writes ([`PipelineReport`]), and the FLOPs, matmul rate and peak
//! memory its numbers are measured against.
use super::{PipelineConfig, Stage};
use nrf_attacks::AttackWork;
use nrf_results::uncertainty::{ratio_interval, Interval};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Side of the square f32 matrices of the matmul-rate measurement (2·n³ FLOPs per product).
const MATMUL_N: i64 = 2048;
/// Timed matrix products per thread count (the best one counts).
const MATMUL_REPS: usize = 3;

/// Forward FLOPs per image of nrf's Fashion-MNIST CNN for input `[c, h, w]`, and those of its
/// first convolution (whose input gradient training does not need). Multiply-adds count 2.
pub fn fmnist_cnn_flops(in_shape: [i64; 3], classes: i64) -> (f64, f64) {
    let [c, h, w] = in_shape;
    // conv3x3 with padding 1: stride 1 keeps the size, stride 2 gives ceil(size / 2).
    let (h2, w2) = ((h + 1) / 2, (w + 1) / 2);
    let (h3, w3) = ((h2 + 1) / 2, (w2 + 1) / 2);
    let c1 = h * w * 16 * 9 * c;
    let macs =
        c1 + h2 * w2 * 32 * 9 * 16 + h3 * w3 * 64 * 9 * 32 + 64 * h3 * w3 * 256 + 256 * classes;
    (2.0 * macs as f64, 2.0 * c1 as f64)
}

/// Nominal FLOPs of a stage: forward = F per image; a training step adds the weight gradients
/// (F) and the input gradients except the first layer's (F − c1); an attack step is a forward and
/// an input-gradient backward (2F). `attacked` is what the attack stages' rows depend on:
/// - robust evaluation: the clean-correct examples over the grid; it counts the full-batch loop
///   (every one attacked for every step), what the twin computes; nrf's shrinking evaluation
///   does less for the same result;
/// - the ensemble: the APGD runs' rows (APGD-CE's examples, plus APGD-T's survivors once per
///   target class: an upper bound, as a later target attacks only those the earlier ones left),
///   each a start and `ens_steps` attack steps and a clean forward.
pub(super) fn stage_flops(cfg: &PipelineConfig, stage: Stage, f: (f64, f64), attacked: u64) -> f64 {
    let (fwd, c1) = f;
    let train_row = 3.0 * fwd - c1;
    let curve = cfg.curve_n as f64 * fwd;
    match stage {
        Stage::TrainStd => cfg.std_epochs as f64 * (cfg.std_images as f64 * train_row + curve),
        Stage::TrainRob => {
            // The attack's steps, its final forward (best iterate), then the training step.
            let row = cfg.rob_steps as f64 * 2.0 * fwd + fwd + train_row;
            cfg.rob_epochs as f64 * (cfg.rob_images as f64 * row + curve)
        }
        // Steps, plus the target representation and the errors at the start and the end.
        Stage::RepMatch => cfg.rep_images as f64 * (cfg.rep_steps as f64 * 2.0 * fwd + 3.0 * fwd),
        // Steps, plus the final objective and the success check.
        Stage::Relabel => {
            cfg.relabel_images as f64 * (cfg.relabel_steps as f64 * 2.0 * fwd + 2.0 * fwd)
        }
        Stage::RobustEval => {
            let points = cfg.grid().len() as f64;
            points * cfg.eval_images as f64 * fwd
                + attacked as f64 * (cfg.eval_steps as f64 * 2.0 * fwd + fwd)
        }
        Stage::Ensemble => {
            cfg.ens_images as f64 * fwd
                + attacked as f64 * ((cfg.ens_steps + 1) as f64 * 2.0 * fwd + fwd)
        }
    }
}

/// Best f32 matmul rate (GFLOP/s) of libtorch at the current thread count.
pub fn matmul_gflops() -> f64 {
    let opts = (Kind::Float, Device::Cpu);
    let a = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let b = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let _ = a.matmul(&b);
    let flops = 2.0 * (MATMUL_N as f64).powi(3);
    (0..MATMUL_REPS)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b);
            let s = t.elapsed().as_secs_f64();
            drop(c);
            flops / s / 1e9
        })
        .fold(0.0, f64::max)
}

/// Resets this process's peak-RSS mark (Linux `/proc/self/clear_refs`); false if impossible.
pub(super) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak RSS (`VmHWM`) in KiB.
pub(super) fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One timed run of a stage on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    /// Wall seconds.
    pub wall_s: f64,
    /// Peak RSS of the process during the stage, KiB (the process's peak so far when the mark
    /// could not be reset, see `rss_reset`).
    pub peak_rss_kb: Option<u64>,
    /// Whether the peak-RSS mark was reset before the stage.
    pub rss_reset: bool,
    /// A few result values (to compare the two sides: they must be similar, not equal).
    pub result: serde_json::Value,
}

/// One line of the table: a stage at a thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRow {
    /// The stage.
    pub stage: Stage,
    /// libtorch CPU threads.
    pub threads: i32,
    /// Both sides ran at once, one per core ([`PipelineConfig::side_by_side`]); otherwise one
    /// side at a time (absent in older reports: false).
    #[serde(default)]
    pub side_by_side: bool,
    /// Images processed (see [`PipelineConfig::images`]).
    pub images: usize,
    /// Nominal FLOPs (see the module documentation).
    pub nominal_gflop: f64,
    /// Median Rust wall seconds.
    pub rust_s: f64,
    /// Median Python wall seconds.
    pub python_s: Option<f64>,
    /// `python_s / rust_s` (>= 1: Rust at least as fast).
    pub ratio: Option<f64>,
    /// The smallest and largest ratio of one Rust run to the Python run beside it (run `i` of
    /// each side, back to back): the run-to-run spread of `ratio`; `None` with fewer than two
    /// pairs, and in older reports.
    #[serde(default)]
    pub ratio_range: Option<(f64, f64)>,
    /// The 95% interval of the geometric-mean ratio over the run pairs (Student's t on the
    /// logarithms: `nrf_results::uncertainty::ratio_interval`), what [`SpeedVerdict::of`] decides
    /// on; `None` with fewer than two pairs, and in older reports.
    #[serde(default)]
    pub ratio_interval: Option<Interval>,
    /// Nominal GFLOP/s of the Rust side as a share of the matmul rate at this thread count.
    pub rust_share: f64,
    /// The same for Python.
    pub python_share: Option<f64>,
    /// Largest peak RSS of the Rust runs, MiB.
    pub rust_rss_mib: Option<f64>,
    /// Largest peak RSS of the Python runs, MiB.
    pub python_rss_mib: Option<f64>,
    /// Every Rust run.
    pub rust_runs: Vec<StageRun>,
    /// Every Python run.
    pub python_runs: Vec<StageRun>,
    /// Robust evaluation only: the work nrf's shrinking evaluation did (Rust side).
    pub attack_work: Option<AttackWork>,
}

/// The training loop's cost beyond its steps: the standard-training stage against the same
/// number of bare `train_step`s on one fixed batch (Rust only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopOverhead {
    /// libtorch CPU threads.
    pub threads: i32,
    /// Median wall seconds of the standard-training stage.
    pub stage_s: f64,
    /// Seconds of the same number of steps on a fixed batch, without the loop.
    pub steps_s: f64,
    /// `stage_s / steps_s − 1`.
    pub overhead: f64,
}

/// The whole pipeline at one thread count (or side by side): every stage both sides ran.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineTotal {
    /// libtorch CPU threads.
    pub threads: i32,
    /// The side-by-side round ([`PipelineRow::side_by_side`]).
    pub side_by_side: bool,
    /// Sum of the stages' median Rust seconds.
    pub rust_s: f64,
    /// Sum of the stages' median Python seconds (`None` when a stage has none).
    pub python_s: Option<f64>,
    /// `python_s / rust_s`.
    pub ratio: Option<f64>,
    /// 95% interval of the geometric-mean ratio of the run pairs' sums over the stages.
    pub ratio_interval: Option<Interval>,
}

/// nrf's pipeline schedule on two cores against the twin's ([`PipelineReport::as_run`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AsRun {
    /// nrf's seconds per stage-set with two 1-thread workers: half the side-by-side round's
    /// summed medians.
    pub rust_s: f64,
    /// The twin's summed 2-thread medians over the same stages.
    pub python_s: f64,
    /// `python_s / rust_s`.
    pub ratio: f64,
    /// 95% interval of the geometric-mean ratio of run `i`'s sums (run `i` of each round: not
    /// side by side in time, so the machine's drift between the rounds is in it).
    pub ratio_interval: Option<Interval>,
}

/// Per run index `i` (up to the fewest runs of any row): the sum over `num` of their `i`-th
/// run's seconds over the same sum over `den`.
fn pair_sum_ratios(
    num: &[&PipelineRow],
    den: &[&PipelineRow],
    num_runs: fn(&PipelineRow) -> &[StageRun],
    den_runs: fn(&PipelineRow) -> &[StageRun],
) -> Vec<f64> {
    let pairs = num
        .iter()
        .map(|r| num_runs(r).len())
        .chain(den.iter().map(|r| den_runs(r).len()))
        .min()
        .unwrap_or(0);
    (0..pairs)
        .map(|i| {
            let n: f64 = num.iter().map(|r| num_runs(r)[i].wall_s).sum();
            let d: f64 = den.iter().map(|r| den_runs(r)[i].wall_s).sum();
            n / d
        })
        .collect()
}

/// What a 95% ratio interval (Python s / Rust s) says about nrf against the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeedVerdict {
    /// The whole interval lies above 1.
    Faster,
    /// The whole interval lies below 1.
    Slower,
    /// The interval contains 1: no difference resolved at this run-to-run spread.
    Level,
    /// Fewer than two run pairs: nothing decided.
    Undecided,
}

impl SpeedVerdict {
    /// The verdict of a ratio interval (`None`: fewer than two pairs).
    pub fn of(interval: Option<Interval>) -> SpeedVerdict {
        match interval {
            Some(iv) if iv.lo > 1.0 => SpeedVerdict::Faster,
            Some(iv) if iv.hi < 1.0 => SpeedVerdict::Slower,
            Some(_) => SpeedVerdict::Level,
            None => SpeedVerdict::Undecided,
        }
    }
}

impl std::fmt::Display for SpeedVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpeedVerdict::Faster => "faster",
            SpeedVerdict::Slower => "slower",
            SpeedVerdict::Level => "level",
            SpeedVerdict::Undecided => "n/a",
        })
    }
}

/// Everything `nrf bench --pipeline` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The configuration.
    pub config: PipelineConfig,
    /// The data: "fashion-mnist" or "synthetic".
    pub data: String,
    /// Whether the Rust side was an optimised build.
    pub release_build: bool,
    /// Python and torch versions of the twin (`None`: not run).
    pub python_version: Option<String>,
    /// See `python_version`.
    pub torch_version: Option<String>,
    /// libtorch version nrf was built against.
    pub libtorch_version: Option<String>,
    /// Forward FLOPs per image of the model.
    pub forward_flops: f64,
    /// Best f32 matmul GFLOP/s per thread count (`[threads, GFLOP/s]`).
    pub matmul_gflops: Vec<(i32, f64)>,
    /// The table.
    pub rows: Vec<PipelineRow>,
    /// The standard-training loop against its bare steps.
    pub loop_overhead: Vec<LoopOverhead>,
    /// Logical CPUs.
    pub cpus: usize,
    /// `/proc/loadavg` before and after.
    pub load_before: Option<String>,
    /// See `load_before`.
    pub load_after: Option<String>,
    /// Wall seconds of the whole benchmark.
    pub wall_s: f64,
    /// What the reader must know.
    pub notes: Vec<String>,
    /// Environment variables that change libtorch's threading, glibc's allocator or nrf's own
    /// execution (`NRF_REPLICA_WORKERS`, `NRF_CPU_ROWS_PER_PASS`, `NRF_MEMORY_FORMAT`), as
    /// exported when the benchmark ran (the twin inherits them; an exported `MALLOC_*` wins over
    /// [`PipelineConfig::python_malloc_as_nrf`]). Absent in older reports: empty.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

impl PipelineReport {
    /// Whole-pipeline totals per thread count over the stages both sides ran: the sums of the
    /// medians, their ratio, and the 95% interval of the ratio from each run pair's sums over the
    /// stages (run `i` of every stage on each side); then the same for the side-by-side round,
    /// when there is one.
    pub fn totals(&self) -> Vec<PipelineTotal> {
        let rounds = self.config.threads.iter().map(|&t| (t, false));
        let side = self
            .rows
            .iter()
            .any(|r| r.side_by_side)
            .then_some((1, true));
        rounds
            .chain(side)
            .map(|(t, side_by_side)| {
                let rows: Vec<&PipelineRow> = self
                    .rows
                    .iter()
                    .filter(|r| r.threads == t && r.side_by_side == side_by_side)
                    .collect();
                let rust: f64 = rows.iter().map(|r| r.rust_s).sum();
                let py: Option<f64> = rows.iter().map(|r| r.python_s).sum();
                let ratios = pair_sum_ratios(&rows, &rows, |r| &r.python_runs, |r| &r.rust_runs);
                PipelineTotal {
                    threads: t,
                    side_by_side,
                    rust_s: rust,
                    python_s: py,
                    ratio: py.map(|p| p / rust),
                    ratio_interval: ratio_interval(&ratios).map(|(_, iv)| iv),
                }
            })
            .collect()
    }

    /// nrf as its pipeline runs on two cores — two 1-thread workers, each beside another busy
    /// process (the side-by-side round: two stages done per side-by-side stage time) — against
    /// the twin as it runs, one process at 2 threads: over the side-by-side round's stages, the
    /// twin's 2-thread seconds over half nrf's side-by-side seconds. `None` without a
    /// side-by-side round, or when one of its stages has no 2-thread row with the twin's time.
    pub fn as_run(&self) -> Option<AsRun> {
        let side: Vec<&PipelineRow> = self.rows.iter().filter(|r| r.side_by_side).collect();
        let (mut nrf, mut twin) = (Vec::new(), Vec::new());
        for r in &side {
            let alone = self
                .rows
                .iter()
                .find(|a| !a.side_by_side && a.threads == 2 && a.stage == r.stage)?;
            alone.python_s?;
            nrf.push(*r);
            twin.push(alone);
        }
        if nrf.is_empty() {
            return None;
        }
        let rust_s = nrf.iter().map(|r| r.rust_s).sum::<f64>() / 2.0;
        let python_s: f64 = twin.iter().filter_map(|r| r.python_s).sum();
        let ratios: Vec<f64> = pair_sum_ratios(&twin, &nrf, |r| &r.python_runs, |r| &r.rust_runs)
            .into_iter()
            .map(|q| 2.0 * q)
            .collect();
        Some(AsRun {
            rust_s,
            python_s,
            ratio: python_s / rust_s,
            ratio_interval: ratio_interval(&ratios).map(|(_, iv)| iv),
        })
    }

    /// The markdown table with its header line and notes.
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
        };
        let mut s = format!(
            "nrf bench --pipeline: Fashion-MNIST CNN on {} data; median of {} run(s) per side (Rust and Python alternating); {} build, libtorch {}, Python {} with torch {} (channels-last: {}; malloc: {}); {} CPUs{}\n\n",
            self.data,
            c.reps,
            if self.release_build { "release" } else { "DEBUG" },
            self.libtorch_version.as_deref().unwrap_or("?"),
            self.python_version.as_deref().unwrap_or("-"),
            self.torch_version.as_deref().unwrap_or("-"),
            c.python_channels_last,
            if c.python_malloc_as_nrf {
                "nrf's settings"
            } else {
                "glibc's defaults"
            },
            self.cpus,
            if self.env.is_empty() {
                String::new()
            } else {
                let kv: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("; exported: {}", kv.join(" "))
            },
        );
        let interval = |iv: Option<Interval>| {
            iv.map_or("n/a".to_string(), |iv| format!("{:.2}-{:.2}", iv.lo, iv.hi))
        };
        s.push_str("| stage | work | threads | Rust s | Python s | ratio | 95% interval | Rust | Rust img/s | Python img/s | Rust % matmul | Python % matmul | Rust peak RSS MiB | Python peak RSS MiB |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let img = r.images as f64;
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.0} | {} | {:.1} | {} | {} | {} |\n",
                r.stage.name(),
                work_label(c, r.stage),
                threads_label(r.threads, r.side_by_side),
                r.rust_s,
                opt(r.python_s, 2),
                match (r.ratio, r.ratio_range) {
                    (Some(m), Some((lo, hi))) => {
                        format!("{m:.2} ({lo:.2}-{hi:.2})")
                    }
                    (m, _) => opt(m, 2),
                },
                interval(r.ratio_interval),
                SpeedVerdict::of(r.ratio_interval),
                img / r.rust_s,
                opt(r.python_s.map(|p| img / p), 0),
                100.0 * r.rust_share,
                opt(r.python_share.map(|v| 100.0 * v), 1),
                opt(r.rust_rss_mib, 0),
                opt(r.python_rss_mib, 0),
            ));
        }
        for t in self.totals() {
            s.push_str(&format!(
                "| **whole pipeline** | all stages above | {} | {:.2} | {} | {} | {} | {} | | | | | | |\n",
                threads_label(t.threads, t.side_by_side),
                t.rust_s,
                opt(t.python_s, 2),
                opt(t.ratio, 2),
                interval(t.ratio_interval),
                SpeedVerdict::of(t.ratio_interval),
            ));
        }
        s.push_str("\nratio = Python s / Rust s (>= 1: Rust at least as fast), of the medians; in brackets the smallest and largest ratio of one Rust run to the Python run beside it. 95% interval: of the geometric-mean ratio over the run pairs (Student's t on the logarithms of the paired ratios; for the whole pipeline, of each pair's sums over the stages). Rust: faster or slower than the twin where the whole interval lies above or below 1, level where it contains 1 (no difference resolved at this run-to-run spread), n/a with a single pair. % matmul = the stage's nominal FLOPs per second as a share of the best f32 matmul rate measured at that thread count (");
        let m: Vec<String> = self
            .matmul_gflops
            .iter()
            .map(|(t, g)| format!("{t} thread(s): {g:.1} GFLOP/s"))
            .collect();
        s.push_str(&m.join(", "));
        s.push_str(&format!(
            "); forward pass {:.2} MFLOP per image. Robust evaluation's nominal FLOPs are the full-batch loop's; the ensemble's count APGD-T's survivors once per target class (an upper bound).\n",
            self.forward_flops / 1e6
        ));
        if self.rows.iter().any(|r| r.side_by_side) {
            s.push_str("Side by side: both sides at once, one libtorch thread each (one per core), so that each runs beside another busy process, as each of nrf's two 1-thread workers does in its pipeline; the side that finishes first leaves the other alone for the rest, which favours the slower side.\n");
        }
        if let Some(a) = self.as_run() {
            s.push_str(&format!(
                "As run on 2 cores: nrf's pipeline (two 1-thread workers: half the side-by-side Rust seconds, {:.2} s) against the twin's (one process at 2 threads, {:.2} s), over the same stages: {:.2}x ({}; run i of each round, not side by side in time). An estimate that flatters nrf (the twin beside it may finish first and leave it alone): `nrf bench --end-to-end` times the pipeline as each side runs it.\n",
                a.rust_s,
                a.python_s,
                a.ratio,
                interval(a.ratio_interval),
            ));
        }
        for r in self.rows.iter().filter(|r| r.attack_work.is_some()) {
            if let Some(w) = &r.attack_work {
                s.push_str(&format!(
                    "Robust evaluation ({}): nrf attacks an example only until it is fooled: {:.1}% of the full-batch loop's forward + 2 x backward rows.\n",
                    round_text(r.threads, r.side_by_side),
                    100.0 * w.fraction_of_full()
                ));
            }
        }
        for o in &self.loop_overhead {
            s.push_str(&format!(
                "Training loop overhead ({}): standard-training stage {:.2} s vs {:.2} s for its steps on one fixed batch ({:+.1}%; includes the per-epoch curve and checkpoint).\n",
                round_text(o.threads, false),
                o.stage_s,
                o.steps_s,
                100.0 * o.overhead
            ));
        }
        for r in &self.rows {
            let first = |runs: &[StageRun]| runs.first().map(|x| x.result.to_string());
            if let (Some(a), Some(b)) = (first(&r.rust_runs), first(&r.python_runs)) {
                s.push_str(&format!(
                    "Results {} ({}): Rust {a}, Python {b}.\n",
                    r.stage.name(),
                    round_text(r.threads, r.side_by_side)
                ));
            }
        }
        if let (Some(a), Some(b)) = (&self.load_before, &self.load_after) {
            s.push_str(&format!("Load average before: {a}; after: {b}.\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("Note: {n}\n"));
        }
        s
    }
}

/// The threads column: the count, and "side by side" for that round.
fn threads_label(threads: i32, side_by_side: bool) -> String {
    if side_by_side {
        format!("{threads} side by side")
    } else {
        threads.to_string()
    }
}

/// The round in prose: "1 thread", "2 threads", "side by side, 1 thread each".
fn round_text(threads: i32, side_by_side: bool) -> String {
    match (side_by_side, threads) {
        (true, t) => format!(
            "side by side, {t} thread{} each",
            if t == 1 { "" } else { "s" }
        ),
        (false, 1) => "1 thread".into(),
        (false, t) => format!("{t} threads"),
    }
}

fn work_label(c: &PipelineConfig, stage: Stage) -> String {
    match stage {
        Stage::TrainStd => format!("{} img x {} ep", c.std_images, c.std_epochs),
        Stage::TrainRob => format!(
            "{} img x {} ep, PGD-{}",
            c.rob_images, c.rob_epochs, c.rob_steps
        ),
        Stage::RepMatch => format!("{} img x {} steps", c.rep_images, c.rep_steps),
        Stage::Relabel => format!("{} img x {} steps", c.relabel_images, c.relabel_steps),
        Stage::RobustEval => format!(
            "{} img x {} eps, PGD-{}",
            c.eval_images,
            c.grid().len(),
            c.eval_steps
        ),
        Stage::Ensemble => format!(
            "{} img, APGD-CE + APGD-T {} steps, L2 {}",
            c.ens_images, c.ens_steps, c.ens_eps
        ),
    }
}
