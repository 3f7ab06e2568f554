//! A run split over worker processes: `workers = N` in the preset (or `--set workers=N`).
//!
//! On a CPU, two processes of one libtorch thread each do more work than one process of two
//! threads (measured on a 2-core machine: 1.43x the training steps, 1.83x the attack steps;
//! docs/performance.md). `nrf reproduce` with `workers = N > 1` (CPU only) therefore starts N
//! copies of itself (`--worker k/N`, each with `threads / N` libtorch threads) on the same results
//! folder, waits for them, and then runs the pipeline once more itself: every stage is cached by
//! then, so this last pass writes run.json and the report as an ordinary run does (and computes
//! whatever a worker that failed left undone).
//!
//! The workers share the stage cache. A stage is computed by the worker that claims it first
//! (an exclusive `flock` on `work/claims/<stage>.lock`, dropped by the operating system however
//! the worker ends); a worker that meets a stage claimed by another does not wait for it: the
//! job it was in is put back at the end of its queue ([`Deferred`]) and it goes on with the next
//! one. Jobs are the pipeline's independent pieces ([`crate::jobs`]): the source models, each
//! constructed set with its fresh models, each extra, the theory. Each worker takes them in its
//! own order ([`order`]: worker k starts with the jobs k, k+N, ...), and the seeds of a model and
//! the independent models of a job too ([`map_in_order`]: a model the other worker holds is
//! passed over, the rest trained, then the job put back), so that they meet as rarely as
//! possible and both work inside one long job (Figure 3's twelve models were the whole run's
//! last, one-worker minutes before).
//!
//! The results are the sequential run's, file for file: every stage seeds torch's generator
//! from its own name and reads its inputs from the cache, so neither the order nor the process
//! that computes a stage changes what it computes (on a CPU at a fixed thread count: a run with
//! `threads = 2, workers = 2` equals one with `threads = 1, workers = 1`; tested on the smoke
//! preset). Killing the run kills its workers (PR_SET_PDEATHSIG); the next run resumes from the
//! stages and the checkpoints they left.
use crate::figure2::Sources;
use crate::pipeline::Ctx;
use anyhow::{bail, Context, Result};
use nrf_results::{StageInfo, StageStatus};
use progress::Progress;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Worker k of n (`--worker k/n`, 1-based on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    /// 0-based.
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl std::str::FromStr for Worker {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Worker> {
        let bad = || anyhow::anyhow!("--worker {s:?}: expected K/N with 1 <= K <= N, e.g. 1/2");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || k > n {
            return Err(bad());
        }
        Ok(Worker {
            index: k - 1,
            count: n,
        })
    }
}

/// The environment variable through which `nrf reproduce` tells its workers its pid: a worker
/// runs only as the child of the run that holds the results folder's lock.
pub const PARENT_ENV: &str = "NRF_WORKER_PARENT";

/// The error of a stage that another worker is computing: the job is tried again later.
#[derive(Debug)]
pub struct Deferred {
    pub stage: String,
}

impl std::fmt::Display for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {} is being computed by another worker",
            self.stage
        )
    }
}

impl std::error::Error for Deferred {}

/// Whether `e` is (or wraps) a [`Deferred`].
pub fn is_deferred(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Deferred>())
}

/// A worker's hold on a stage, released when dropped (or by the operating system when the
/// process ends).
#[derive(Debug)]
pub struct Claim {
    _file: File,
}

/// The claim files' folder inside a results folder.
pub fn claims_dir(results: &Path) -> PathBuf {
    results.join("work/claims")
}

/// Claims stage `name` in `results` for this process; `None` when another process holds it.
pub fn try_claim(results: &Path, name: &str) -> Result<Option<Claim>> {
    let dir = claims_dir(results);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.lock", name.replace(':', "_")));
    // Claim files are never removed while workers run (removing one another process has open
    // would let two processes hold "the same" claim); the run's end removes the folder.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the claim file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Claim { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking the claim file {}", path.display()))
        }
    }
}

/// `items` in the order worker `worker` takes them: those at positions k, k+n, k+2n, ...
/// first, then the others in their order. Without a worker (an ordinary run), `items` as they
/// are.
pub fn order<T>(worker: Option<Worker>, items: Vec<T>) -> Vec<T> {
    let Some(w) = worker else { return items };
    let (mut mine, mut rest) = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        if i % w.count == w.index {
            mine.push(item);
        } else {
            rest.push(item);
        }
    }
    mine.append(&mut rest);
    mine
}

/// `f` on each of `items`, taken in `worker`'s [`order`], the results in `items`' order: the
/// independent models of one job, so that two workers in the same job train different models
/// instead of one waiting for the other. An item whose stage another worker holds
/// ([`Deferred`]) is passed over and the others are done; the job is then deferred (the first
/// such error), to find that item cached later. Any other error stops it at once.
pub fn map_in_order<T, R>(
    worker: Option<Worker>,
    items: Vec<T>,
    mut f: impl FnMut(T) -> Result<R>,
) -> Result<Vec<R>> {
    let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let mut deferred = None;
    for (i, item) in order(worker, items.into_iter().enumerate().collect()) {
        match f(item) {
            Ok(r) => out[i] = Some(r),
            Err(e) if is_deferred(&e) => {
                deferred.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match deferred {
        Some(e) => Err(e),
        None => Ok(out.into_iter().flatten().collect()),
    }
}

/// A piece of the pipeline that does not depend on the others' order: it asks the stage cache
/// (and so the other workers) for what it needs.
pub struct Job {
    pub name: String,
    /// Jobs that must have finished in this run before this one starts in a worker: it reads
    /// their result files, which no stage guards (an ordinary run keeps the list's order).
    pub after: Vec<String>,
    #[allow(clippy::type_complexity)]
    pub run: Box<dyn Fn(&mut Ctx, &Sources) -> Result<()>>,
}

impl Job {
    pub fn new(
        name: impl Into<String>,
        run: impl Fn(&mut Ctx, &Sources) -> Result<()> + 'static,
    ) -> Job {
        Job {
            name: name.into(),
            after: Vec::new(),
            run: Box::new(run),
        }
    }

    /// This job, started only after `jobs` have finished.
    pub fn after(mut self, jobs: impl IntoIterator<Item = String>) -> Job {
        self.after.extend(jobs);
        self
    }
}

/// The marker of job `name` finished in this run (by any worker).
fn done_marker(results: &Path, name: &str) -> PathBuf {
    results.join(format!("work/workers/done/{}", name.replace(':', "_")))
}

/// A worker's loop: every job not yet finished by another, in the worker's order; a job that
/// meets a stage claimed by another worker (or whose `after` jobs have not finished) goes to the
/// back of the queue. When every job left is waiting on others, the worker waits
/// (`wait_for_others`) and tries again.
pub fn run_jobs(ctx: &mut Ctx, src: &Sources, jobs: Vec<Job>) -> Result<()> {
    let mut queue: VecDeque<Job> = order(ctx.cache.mode.worker, jobs).into();
    let mut waiting = 0;
    // Fruitless rounds in a row, and the stages this round's jobs met claimed.
    let (mut idle_rounds, mut blocked) = (0u32, Vec::new());
    while let Some(job) = queue.pop_front() {
        if done_marker(&ctx.cache.results, &job.name).exists() {
            // Finished by another worker: every stage of it is in the cache.
            continue;
        }
        let ready = job
            .after
            .iter()
            .all(|a| done_marker(&ctx.cache.results, a).exists());
        let outcome = if ready {
            (job.run)(ctx, src)
        } else {
            Err(Deferred {
                stage: format!("(a job before {})", job.name),
            }
            .into())
        };
        match outcome {
            Ok(()) => {
                let marker = done_marker(&ctx.cache.results, &job.name);
                nrf_data::store::write_atomic(&marker, b"")?;
                tracing::info!("job {}: done", job.name);
                waiting = 0;
                idle_rounds = 0;
                blocked.clear();
            }
            Err(e) if is_deferred(&e) => {
                tracing::debug!("job {}: {e:#}; later", job.name);
                blocked.extend(deferred_stage(&e));
                queue.push_back(job);
                waiting += 1;
                if waiting >= queue.len() {
                    wait_for_others(&ctx.cache.results, &queue, &blocked, idle_rounds)?;
                    idle_rounds = idle_rounds.saturating_add(1);
                    waiting = 0;
                    blocked.clear();
                }
            }
            Err(e) => return Err(e.context(format!("job {}", job.name))),
        }
    }
    Ok(())
}

/// The stage a deferred job met claimed by another worker (the [`Deferred`] in `e`'s chain).
fn deferred_stage(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| c.downcast_ref::<Deferred>())
        .map(|d| d.stage.clone())
}

/// Waits while every job left waits on another worker. Trying the jobs again walks their cached
/// stages (each stage's files read and checked: seconds of CPU), so a worker left with a job that
/// another is running (one long serial job at the end of a run) would spin: the wait doubles with
/// each fruitless round, from 1.5 s up to a minute, and ends early, checked every half second,
/// when a stage in `blocked` is released or a queued job, or one it waits for, is finished.
fn wait_for_others(
    results: &Path,
    queue: &VecDeque<Job>,
    blocked: &[String],
    round: u32,
) -> Result<()> {
    let limit = (Duration::from_millis(1500) * 2u32.pow(round.min(6))).min(Duration::from_secs(60));
    let finished = || {
        queue
            .iter()
            .flat_map(|j| std::iter::once(&j.name).chain(&j.after))
            .filter(|n| done_marker(results, n).exists())
            .count()
    };
    let before = finished();
    let start = Instant::now();
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(500));
        if finished() != before {
            return Ok(());
        }
        // A job waiting for `after` jobs names no stage ("(a job before ...)").
        for stage in blocked.iter().filter(|s| !s.starts_with('(')) {
            // Free now: its worker finished (or died); the claim taken here is dropped at once.
            if try_claim(results, stage)?.is_some() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Each worker's libtorch threads: the preset's `threads` (0: the machine's cores) split
/// between `workers`, at least one each.
pub fn threads_per_worker(threads: i32, workers: usize) -> i32 {
    let total = if threads > 0 {
        threads as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    (total / workers.max(1)).max(1) as i32
}

/// The libtorch threads one model trains with in a run of `preset` on `device`: on a CPU with
/// several workers one worker's share of `threads` ([`threads_per_worker`]), else `threads`.
/// What `nrf train` / `nrf fresh` use to train a model as a run does.
pub fn model_threads(preset: &crate::preset::Preset, device: tch::Device) -> i32 {
    if device.is_cuda() || preset.workers <= 1 {
        preset.threads
    } else {
        threads_per_worker(preset.threads, preset.workers)
    }
}

/// The device a command outside a run trains on (CUDA when there is one), with libtorch set to
/// the threads one model of a run trains with there ([`model_threads`]; 0 leaves libtorch's).
pub fn model_device(preset: &crate::preset::Preset) -> tch::Device {
    let device = tch::Device::cuda_if_available();
    let threads = model_threads(preset, device);
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    device
}

/// The file a worker records the stages it ran in (the last pass marks them done in run.json).
pub fn stages_file(results: &Path, worker: Worker) -> PathBuf {
    results.join(format!("work/workers/stages-{}.json", worker.index + 1))
}

/// How the parent run starts its workers.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `nrf` binary.
    pub bin: PathBuf,
    /// `--data-dir`, passed on.
    pub data_dir: Option<PathBuf>,
    /// `--log`, passed on.
    pub log: String,
}

/// Starts `preset.workers` workers on `results` with the preset `text` (the preset with the
/// command line's overrides applied), waits for all of them and reports how each ended. A
/// worker that fails does not fail the run: the last pass computes what it left (and reports
/// the failure where the failing stage runs again). Progress: a line per minute with the share
/// of the planned work done (in FLOPs, [`crate::plan`]), its rate and the time left (priced per
/// stage kind: the private `workers::progress` module).
pub fn run_workers(
    launch: &Launch,
    preset: &crate::preset::Preset,
    text: &str,
    results: &Path,
) -> Result<()> {
    let (n, threads) = (preset.workers, preset.threads);
    let dir = results.join("work/workers");
    // What an earlier, interrupted run's workers left (their job markers, their stage lists)
    // is not this run's.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("done"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let preset_file = dir.join("preset.toml");
    nrf_data::store::write_atomic(&preset_file, text.as_bytes())?;
    let per = threads_per_worker(threads, n);
    tracing::info!(
        "{n} workers of {per} libtorch thread(s) each on {}",
        results.display()
    );
    let start = Instant::now();
    let mut children: Vec<(Worker, Child)> = Vec::new();
    for index in 0..n {
        let w = Worker { index, count: n };
        let mut cmd = Command::new(&launch.bin);
        cmd.args(["--log", &launch.log, "reproduce", "--quiet", "--preset"])
            .arg(&preset_file)
            .arg("--results")
            .arg(results)
            .args([
                "--set",
                &format!("threads={per}"),
                "--worker",
                &w.to_string(),
            ])
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(d) = &launch.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        crate::chaos::die_with_the_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting worker {w} ({})", launch.bin.display()))?;
        children.push((w, child));
    }
    let progress = Progress::new(preset, results, launch.data_dir.as_deref());
    let first = progress.as_ref().map_or(0.0, Progress::done);
    let mut last_note = Instant::now();
    let mut failed = Vec::new();
    while !children.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (w, _) = children.remove(i);
                    if status.success() {
                        tracing::info!("worker {w}: finished");
                    } else {
                        tracing::warn!(
                            "worker {w}: ended with {status}; the last pass runs what it left"
                        );
                        failed.push(w);
                    }
                }
                Ok(None) => i += 1,
                Err(e) => bail!("waiting for worker {}: {e}", children[i].0),
            }
        }
        if last_note.elapsed() >= Duration::from_secs(60) {
            last_note = Instant::now();
            let mins = start.elapsed().as_secs_f64() / 60.0;
            let done = match &progress {
                Some(p) => p.line(first, mins, children.len()),
                None => "progress unknown (no cost plan)".into(),
            };
            tracing::info!(
                "workers: {mins:.1} min, {done}; {} of {n} workers running",
                children.len()
            );
        }
    }
    if !failed.is_empty() {
        tracing::warn!(
            "{} worker(s) failed; the last pass goes on alone",
            failed.len()
        );
    }
    Ok(())
}

/// After the last pass: the stages a worker ran during this run are recorded as done (with the
/// worker's wall time), not as cached; then the workers' files are removed.
pub fn adopt_worker_stages(results: &Path, stages: &mut [StageInfo]) {
    let dir = results.join("work/workers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_stages = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("stages-") && n.ends_with(".json"));
        if !is_stages {
            continue;
        }
        match nrf_data::store::read_json::<Vec<StageInfo>>(&path) {
            Ok(ran) => mark_done(stages, &ran),
            Err(e) => tracing::warn!("{}: {e:#} (its stages stay marked cached)", path.display()),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(claims_dir(results));
}

/// Marks the stages of `stages` that a worker computed (`ran`, status done) as done. Their wall
/// time, start and worker are already there: the last pass met them cached and took those from
/// their records, which the worker wrote with the same values as its list.
fn mark_done(stages: &mut [StageInfo], ran: &[StageInfo]) {
    let computed = |s: &StageInfo| {
        ran.iter()
            .any(|r| r.name == s.name && r.key == s.key && r.status == StageStatus::Done)
    };
    for s in stages.iter_mut() {
        if s.status == StageStatus::Cached && computed(s) {
            s.status = StageStatus::Done;
        }
    }
}

mod progress;
#[cfg(test)]
mod tests;
