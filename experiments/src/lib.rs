//! nrf-experiments: one module per paper artefact, the presets, and the `nrf` binary.
//!
//! - [`figure2`]: C_std, C_rob; D_R, D_NR; fresh models on them and on a clean control.
//! - [`table1`]: D_rand, D_det (and eps variants); fresh models on them.
//! - [`extras`]: Figure 3 and the reviewers' questions (`[extras]` in the preset).
//! - [`theory`]: section 4's Gaussian model (Figure 4) and the make_circles question.
//! - [`pipeline`]: stage caching, training + evaluation, the run record.
//! - [`lock`]: one run per results folder (`<results>/.lock`).
//! - [`shard`]: shard jobs (`--shard k/n`): one slice of every construction and robust
//!   evaluation, merged by the next ordinary run (docs/cluster.md).
//! - [`preset`]: the TOML presets (`smoke`, `fashion-mnist`, `cifar10`, `restricted-imagenet`);
//!   `[sources]` names TorchScript files or nrf checkpoints that stand for C_std / C_rob
//!   ([`preset::SourcesSection`]).
//! - [`construct_cmd`]: `nrf construct` / `nrf eval` of a TorchScript model or nrf checkpoint on
//!   its own; [`fresh_cmd`]: `nrf fresh`, the preset's fresh models on a set given as a file;
//!   [`train_cmd`]: `nrf train`, one source model as a run trains it.
//! - [`workers`]: a run split over worker processes (`workers = N`), sharing the stage cache.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let (preset, text) = nrf_experiments::preset::Preset::load("smoke")?;
//! nrf_experiments::reproduce(preset, text, "results/smoke".into(), None, true)?;
//! # Ok(()) }
//! ```
pub mod bench;
pub mod chaos;
pub mod construct_cmd;
pub mod extras;
pub mod figure2;
pub mod fresh_cmd;
pub mod gpu_check;
pub mod grids;
pub mod lock;
pub mod pipeline;
pub mod plan;
pub mod preset;
pub mod records;
pub mod shard;
pub mod table1;
pub mod theory;
pub mod train_cmd;
pub mod workers;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Runs a whole preset: every stage (cached stages are skipped), then the report. Returns the
/// markdown summary tables. Refused, naming the holder, while another process uses `results`
/// (see [`lock`]). In this process, whatever the preset's `workers` (see
/// [`reproduce_with_workers`]).
pub fn reproduce(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    progress: bool,
) -> Result<String> {
    reproduce_in(preset, text, results, data_dir, progress, None)
}

/// [`reproduce`] with the preset's `workers` processes, each a copy of the `nrf` binary that
/// `launch` names ([`workers`]; CPU only: on a GPU the run stays in this process).
pub fn reproduce_with_workers(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    progress: bool,
    launch: &workers::Launch,
) -> Result<String> {
    reproduce_in(preset, text, results, data_dir, progress, Some(launch))
}

/// [`reproduce`], with the preset's `workers` processes when `launch` says how to start them
/// ([`workers`]; CPU only: on a GPU the run stays in this process).
fn reproduce_in(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    progress: bool,
    launch: Option<&workers::Launch>,
) -> Result<String> {
    // The folder is checked (one preset's results) and locked (one run per results folder,
    // held until the report is written, see [`lock`]) before the data loads.
    preset.check_results_folder(&results)?;
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let _lock = lock::ResultsLock::acquire(&results, "nrf reproduce")?;
    pipeline::warn_if_precision_emulated(&preset);
    let invoked = (std::time::Instant::now(), pipeline::now());
    let parallel = match launch {
        Some(l) if preset.workers > 1 && !tch::Cuda::is_available() => Some(l),
        Some(_) if preset.workers > 1 => {
            tracing::warn!(
                "workers = {}: a CUDA device is used, so one process",
                preset.workers
            );
            None
        }
        _ => None,
    };
    if let Some(l) = parallel {
        workers::run_workers(l, &preset, &text, &results)?;
    }
    let mut ctx = pipeline::Ctx::new(preset, text, results, data_dir, progress)?;
    // run.json dates the invocation (its workers and the data's loading included), not this
    // pass: after workers, the last pass takes seconds.
    ctx.cache.started_at(invoked.0, invoked.1);
    let outcome = match run_stages(&mut ctx) {
        // Nothing ran, so nothing to record: the folder's run.json and report stay as they were.
        Err(e) if ctx.cache.run.stages.is_empty() => return Err(e),
        o => o,
    };
    if parallel.is_some() {
        workers::adopt_worker_stages(&ctx.cache.results, &mut ctx.cache.run.stages);
    }
    let missing: Vec<String> = if outcome.is_ok() {
        vec![]
    } else {
        vec!["the run stopped early: see the failed stage".into()]
    };
    if outcome.is_ok() {
        let moved = ctx.cache.set_aside_stale()?;
        if !moved.is_empty() {
            tracing::warn!(
                "{} result file(s) of an earlier configuration of this folder moved to stale/ \
                 (this run has no such model, set or section): {}",
                moved.len(),
                moved.join(", ")
            );
        }
    }
    ctx.cache.finish(missing)?;
    let report = nrf_report::write_report(&ctx.cache.results);
    outcome?;
    report?;
    nrf_report::summary_markdown(&ctx.cache.results)
}

/// One worker process of a run ([`workers`]): started by `nrf reproduce` itself (`--worker k/n`),
/// which holds the results folder's lock; runs the jobs it can, writes no run.json nor report.
pub fn run_worker(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    worker: workers::Worker,
) -> Result<()> {
    let parent = std::env::var(workers::PARENT_ENV).ok();
    let ppid = std::os::unix::process::parent_id().to_string();
    if parent.as_deref() != Some(ppid.as_str()) {
        anyhow::bail!(
            "--worker {worker}: a worker is started by `nrf reproduce` itself (preset `workers`), \
             not by hand"
        );
    }
    let mode = pipeline::Mode {
        worker: Some(worker),
        ..Default::default()
    };
    let mut ctx = pipeline::Ctx::with_mode(preset, text, results, data_dir, false, mode)?;
    let src = figure2::Sources::new(&ctx)?;
    let jobs = jobs(&ctx);
    workers::run_jobs(&mut ctx, &src, jobs)
}

/// The pipeline as jobs ([`workers::Job`]): an ordinary run does them in this order; workers
/// share them out. The paper's core (the source models, each Figure 2 / Table 1 set with its
/// fresh models), the theory and the D_det study's own source models need nothing but stages
/// (which wait for each other through the cache); each extra reads the core's result files, so
/// it waits for every core job, and the D_det study also for `eps_sensitivity`'s models.
pub fn jobs(ctx: &pipeline::Ctx) -> Vec<workers::Job> {
    use workers::Job;
    let p = &ctx.preset;
    let mut jobs = vec![
        Job::new("C_std", |ctx, src| src.c_std(ctx).map(drop)),
        Job::new("C_rob", |ctx, src| src.c_rob(ctx).map(drop)),
    ];
    for (name, source, kind) in figure2::SETS {
        jobs.push(Job::new(format!("figure2:{name}"), move |ctx, src| {
            figure2::set_job(ctx, src, name, source, kind)
        }));
    }
    jobs.push(Job::new("figure2:control", figure2::control_job));
    for s in table1::sets(&p.relabel) {
        jobs.push(Job::new(format!("table1:{}", s.name), move |ctx, src| {
            table1::set_job(ctx, src, &s)
        }));
    }
    let core: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    if !p.theory.skip {
        jobs.push(Job::new("theory", |ctx, _| theory::run(ctx)));
    }
    for mut job in extras::jobs(ctx) {
        if !job.independent {
            job.job.after.extend(core.iter().cloned());
        }
        jobs.push(job.job);
    }
    jobs
}

/// Part of a run only (`nrf reproduce --only`): training, with every evaluation left to a later
/// run, so that a job array can shard the evaluations (docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// Train the source models C_std and C_rob (what shard jobs need first).
    Sources,
    /// Train C_std, C_rob and every Figure 2 / Table 1 fresh model (merging or building their
    /// sets on the way).
    Train,
}

/// How [`reproduce_with`] runs: the whole run, one shard, or the training only.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Run shard k/n of every construction and robust evaluation ([`shard`]).
    pub shard: Option<nrf_features::chunks::Shard>,
    /// Run only this part.
    pub only: Option<Only>,
}

/// [`reproduce`] with [`RunOptions`]: a shard job (slices only; it shares the results folder
/// with the other shard jobs, never with an ordinary run) or a partial run (training only, no
/// report). Returns what was done, as text.
pub fn reproduce_with(
    preset: preset::Preset,
    text: String,
    results: PathBuf,
    data_dir: Option<&Path>,
    progress: bool,
    opts: RunOptions,
) -> Result<String> {
    let (shard, only) = match (opts.shard, opts.only) {
        (None, None) => return reproduce(preset, text, results, data_dir, progress),
        (Some(s), Some(o)) => anyhow::bail!(
            "--shard {s} and --only {o:?} do not go together: train with --only first, then run \
             the shards"
        ),
        other => other,
    };
    pipeline::warn_if_precision_emulated(&preset);
    preset.check_results_folder(&results)?;
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let _lock = match shard {
        Some(s) => {
            lock::ResultsLock::acquire_shared(&results, &format!("nrf reproduce --shard {s}"))?
        }
        None => lock::ResultsLock::acquire(&results, "nrf reproduce --only")?,
    };
    let mode = pipeline::Mode {
        shard,
        defer_eval: only.is_some(),
        worker: None,
    };
    let mut ctx = pipeline::Ctx::with_mode(preset, text, results, data_dir, progress, mode)?;
    if let Some(s) = shard {
        let report = shard::run(&mut ctx)?;
        return Ok(format!("shard {s}:\n{}", report.summary()));
    }
    let outcome = (|| -> Result<()> {
        let src = figure2::source_models(&mut ctx)?;
        if only == Some(Only::Train) {
            figure2::run(&mut ctx, &src)?;
            table1::run(&mut ctx, &src)?;
        }
        Ok(())
    })();
    let what = match only {
        Some(Only::Sources) => "C_std and C_rob",
        _ => "C_std, C_rob and the Figure 2 / Table 1 fresh models",
    };
    ctx.cache.finish(vec![format!(
        "--only: {what} trained, evaluations and the rest left to the next run"
    )])?;
    outcome?;
    Ok(format!(
        "trained {what}; evaluations left to shard jobs (--shard k/n) and the next ordinary run"
    ))
}

fn run_stages(ctx: &mut pipeline::Ctx) -> Result<()> {
    let src = figure2::Sources::new(ctx)?;
    for job in jobs(ctx) {
        (job.run)(ctx, &src).with_context(|| format!("job {}", job.name))?;
    }
    Ok(())
}
