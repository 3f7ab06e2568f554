//! The `nrf` command line. Run it through `cargo xtask nrf -- <args>` (which sets libtorch up).
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use nrf_experiments::preset::{DatasetName, Preset, BUILTIN};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "nrf",
    version,
    about = "Reproduce \"Adversarial Examples Are Not Bugs, They Are Features\" (Ilyas et al. 2019)"
)]
struct Cli {
    /// Log level filter (e.g. info, debug).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

// The arguments of `nrf reproduce` (no doc comment: the variant's is the subcommand's help).
#[derive(clap::Args)]
struct ReproduceArgs {
    /// Built-in preset name (smoke, fashion-mnist, cifar10, restricted-imagenet) or a TOML file.
    #[arg(long, default_value = "fashion-mnist")]
    preset: String,
    /// Results directory (default `results/<preset name>`).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Dataset directory (overrides the preset's data.dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Override a preset value (repeatable): a dotted key and a TOML value, e.g.
    /// `--set rep_match.n=64 --set model.init=tch` (a bare word is a string). Checked as
    /// the same value in the preset file; run.json records the overrides and the
    /// preset text with them applied, and the stage keys follow the overridden values.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run shard K of N of every construction (D_R, D_NR, D_rand, D_det) and of every robust
    /// evaluation whose model is trained, writing only this shard's slices; the next
    /// ordinary run merges them (every slice must be there, once). The source models must be
    /// trained first (--only sources). For job arrays: see docs/cluster.md.
    #[arg(long, value_name = "K/N")]
    shard: Option<nrf_features::chunks::Shard>,
    /// Run only the training: `sources` (C_std, C_rob: what shard jobs need first) or
    /// `train` (also every Figure 2 / Table 1 fresh model); evaluations are left to shard
    /// jobs and the next ordinary run.
    #[arg(long, value_enum)]
    only: Option<nrf_experiments::Only>,
    /// Internal: worker K of N of a run with `workers = N` (started by the run itself).
    #[arg(long, value_name = "K/N", hide = true)]
    worker: Option<nrf_experiments::workers::Worker>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a preset end to end (cached stages are skipped; an interrupted run resumes).
    Reproduce(ReproduceArgs),
    /// Check the shard slices in a results folder: per sharded stage, which shards are there;
    /// fails, naming the shard and file, when one is missing, duplicated or damaged.
    Shards {
        #[arg(long)]
        results: PathBuf,
    },
    /// What `nrf reproduce` would cost, before anything runs: each stage's work (images x
    /// forward / backward passes), its FLOPs from the architecture, its time at a throughput
    /// measured here in a few seconds (or --gflops), and the total in hours.
    Plan {
        /// Built-in preset name or a TOML file, as for `nrf reproduce`.
        #[arg(long, default_value = "fashion-mnist")]
        preset: String,
        /// Override a preset value (repeatable), as for `nrf reproduce`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A device's sustained GFLOP/s (e.g. 100000 for a large GPU in mixed precision)
        /// instead of measuring this machine.
        #[arg(long, value_name = "GFLOP/S")]
        gflops: Option<f64>,
        /// Dataset directory (else the preset's data.dir): the images are counted there when
        /// it holds the data set, else its published size is used.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the `cifar10` preset at toy sizes on a synthetic CIFAR-10 (binary layout) on CUDA and
    /// on the CPU and compare their first numbers; says so and exits 0 when libtorch sees no
    /// CUDA device. `cargo xtask gpu-check` runs it.
    GpuCheck {
        /// Work folder (data, cuda/ and cpu/ results).
        #[arg(long, default_value = "target/gpu-check")]
        work: PathBuf,
        /// Run both sides even without a GPU (both then on the CPU): tests the check itself.
        #[arg(long, hide = true)]
        without_gpu: bool,
    },
    /// Print a dataset's shapes, value range and class counts.
    DataInfo {
        /// fashion-mnist, mnist, cifar10 or restricted-imagenet.
        #[arg(long, default_value = "fashion-mnist")]
        dataset: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// (Re)write report.html and report.md of a results directory (refused while a run uses it).
    Report {
        #[arg(long)]
        results: PathBuf,
    },
    /// Figure 2 and Table 1 across independent runs of one preset (master seeds differ, e.g.
    /// `nrf reproduce --set seed=1 --results R1`): each run's numbers and verdicts, every claim
    /// decided with the run-to-run spread (source models and subsets included, which one run's
    /// error bars cannot see), and an F test of that spread against what one run predicts.
    /// Writes replicates.md, replicates.json and replicates.png into --out.
    Combine {
        /// A run's results folder (two or more: --results R0 --results R1 ...).
        #[arg(long = "results", required = true, value_name = "DIR")]
        results: Vec<PathBuf>,
        /// Where to write the combined report.
        #[arg(long)]
        out: PathBuf,
    },
    /// Two `nrf combine` outputs side by side, e.g. the same preset with and without an option:
    /// every number's change (other − base) with its 95% interval, paired by master seed when
    /// both ran the same seeds (or on the seeds both ran, when they share at least three), and
    /// every claim's verdict in both. Writes comparison.md,
    /// comparison.json and comparison.png into --out.
    Compare {
        /// The reference set (an `nrf combine --out` folder).
        #[arg(long)]
        base: PathBuf,
        /// The set compared with it.
        #[arg(long)]
        other: PathBuf,
        /// Where to write the comparison.
        #[arg(long)]
        out: PathBuf,
    },
    /// Section 4's theory only: tables and plots into a directory.
    Theory {
        #[arg(long, default_value = "results/theory")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train one source model as `nrf reproduce` trains it (C_std from the preset's train_std,
    /// C_rob from train_rob, the seed the pipeline derives from the master seed), print its test
    /// accuracy and L2 PGD-20 robust accuracy, and save its weights with --save. `--set seed=K`
    /// gives master seed K's model; --seed, --epochs and --adv-eps depart from the pipeline's.
    Train {
        #[arg(long, default_value = "fashion-mnist")]
        preset: String,
        /// Override a preset value (repeatable), as for `nrf reproduce`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Which source model's training section and seed.
        #[arg(long, value_enum, default_value = "C_std")]
        model: nrf_experiments::train_cmd::Source,
        /// Epochs (default the section's).
        #[arg(long)]
        epochs: Option<usize>,
        /// L2 adversarial training at this radius, in place of the section's attack.
        #[arg(long)]
        adv_eps: Option<f64>,
        #[arg(long, default_value_t = 7)]
        adv_steps: usize,
        /// The seed of the initialisation and the training's draws (default the pipeline's).
        #[arg(long)]
        seed: Option<u64>,
        /// L2 radius of the PGD-20 evaluation.
        #[arg(long, default_value_t = 1.0)]
        eval_eps: f64,
        #[arg(long, default_value_t = 1000)]
        robust_n: usize,
        /// Save the weights to STEM.safetensors and STEM.json (what `load_model` and
        /// experiments/python/nrf_torch.py read).
        #[arg(long, value_name = "STEM")]
        save: Option<PathBuf>,
    },
    /// Train the preset's fresh models on a constructed data set given as a file (a run's
    /// data/D_R.safetensors, `nrf construct`'s output, a set imported with
    /// experiments/python/import_released.py) and evaluate every seed as a run does (`nrf eval`'s
    /// numbers, seeded by the models' names). JSON on stdout, a table on stderr. See
    /// docs/pytorch.md.
    Fresh {
        /// The set: STEM.safetensors (with STEM.json beside it when there is one).
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// The set's name for the `[fresh_by_set]` entry (default: the name stored in the file).
        #[arg(long = "as", value_name = "SET")]
        set_name: Option<String>,
        /// The models' name, from which their seeds derive as in a run (default on_<SET>).
        #[arg(long)]
        name: Option<String>,
        /// Seeds (default the preset's `[fresh] seeds`).
        #[arg(long)]
        seeds: Option<usize>,
        /// Skip the `[eval] ensemble` and its checks (PGD grid only).
        #[arg(long)]
        no_ensemble: bool,
        /// Save every seed's weights into this folder (NAME, NAME~s1, ...).
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
        #[command(flatten)]
        preset: PresetArgs,
    },
    /// List the built-in presets, or print one.
    Presets { name: Option<String> },
    /// Time a training step, a PGD step and a rep-matching step in Rust and in PyTorch-in-Python
    /// (interpreter from NRF_PYTHON, else python3); print the ratios, write a JSON report. With
    /// --pipeline: whole stages against the PyTorch twin.
    Bench {
        /// Timed repetitions per row (default 10; 3 with --quick; with --pipeline: runs per
        /// stage and side, default 5, 1 with --quick).
        #[arg(long)]
        reps: Option<usize>,
        /// Fewer repetitions and shorter PGD runs (with --pipeline: a fifth of the work).
        #[arg(long)]
        quick: bool,
        /// Time whole pipeline stages (training epochs, adversarial training, representation
        /// matching, targeted PGD, robust evaluation, the APGD ensemble) against the PyTorch twin
        /// (experiments/twin), at 1 and 2 threads; the markdown table goes next to --out (.md).
        #[arg(long)]
        pipeline: bool,
        /// With --pipeline: only these stages, comma-separated (train_std, train_rob, rep_match,
        /// relabel, robust_eval, ensemble; default all).
        #[arg(long, value_delimiter = ',')]
        stages: Vec<String>,
        /// With --pipeline: these libtorch thread counts, comma-separated (default 1,2).
        #[arg(long, value_delimiter = ',')]
        threads: Vec<i32>,
        /// With --pipeline: skip the last round, where both sides run at once with one thread
        /// each (each beside another busy process, as nrf's two 1-thread workers run).
        #[arg(long)]
        no_side_by_side: bool,
        /// With --pipeline: run the twin with glibc's default malloc instead of nrf's settings
        /// (nrf keeps its activation buffers mapped between steps; by default the twin does too).
        #[arg(long)]
        python_default_malloc: bool,
        /// The whole Figure 2 / Table 1 pipeline as each side runs it (nrf's `reproduce` with
        /// its workers, the twin's `nrf_twin.py` in one process), alternating, on one preset
        /// file both read (--preset and --set; extras, theory and the ensemble off: what the
        /// twin computes). Runs per side: --reps (default 3).
        #[arg(long, conflicts_with = "pipeline")]
        end_to_end: bool,
        /// With --end-to-end: the preset (default fashion-mnist).
        #[arg(long, requires = "end_to_end")]
        preset: Option<String>,
        /// With --end-to-end: KEY=VALUE overrides, repeatable (default, for the default preset
        /// only: its core at reduced sizes, ~5.5-12 min a side on a 2-core VM: rep_match.n=2000 relabel.n=2000
        /// train_rob.epochs=1 fresh.epochs=5 fresh.seeds=2 eval.robust_n=300).
        #[arg(long = "set", requires = "end_to_end")]
        sets: Vec<String>,
        /// Where to write the JSON report (default results/bench.json, with --pipeline
        /// results/bench-pipeline.json, with --end-to-end results/bench-end-to-end.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build one constructed data set (D_R, D_NR, D_rand or D_det) from your own PyTorch model
    /// exported with TorchScript, or from an nrf checkpoint, with the preset's settings
    /// (resumable; the model is first checked on real test images). See docs/pytorch.md.
    Construct {
        #[command(flatten)]
        model: ModelArgs,
        /// Which data set.
        #[arg(long, value_enum)]
        kind: nrf_experiments::construct_cmd::Kind,
        /// Output folder: NAME.safetensors / NAME.json (NAME: the data set), chunks under work/.
        #[arg(long)]
        out: PathBuf,
        /// Images to build (default: the preset's rep_match.n or relabel.n).
        #[arg(long)]
        n: Option<usize>,
    },
    /// Standard accuracy, the preset's PGD robust-accuracy grid and its attack ensemble (APGD,
    /// with the gradient-masking checks) of your own TorchScript model or nrf checkpoint, each
    /// with its 95% interval, on the test images a run of the preset evaluates its models on.
    /// JSON on stdout, a table on stderr.
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// Seed the random draws as a run seeds its model of this name (e.g. C_std: the same
        /// numbers as a run whose `[sources]` C_std is this file); default the file's stem.
        #[arg(long)]
        name: Option<String>,
        /// Skip the `[eval] ensemble` and its checks (PGD grid only).
        #[arg(long)]
        no_ensemble: bool,
    },
    /// The kill/resume harness: run the preset once uninterrupted, then again killed with
    /// SIGKILL at --kills seeded random moments and resumed, and compare every result file (1
    /// libtorch thread, so both are bit-for-bit reproducible). Exit 1 when they differ.
    Chaos {
        /// Built-in preset name or a TOML file.
        #[arg(long, default_value = "smoke")]
        preset: String,
        /// Override a preset value (repeatable), as for `nrf reproduce`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value_t = 10)]
        kills: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder of the reference and killed runs (a finished reference there is reused).
        #[arg(long, default_value = "results/chaos")]
        work: PathBuf,
    },
}

/// A model file and the preset whose data and settings it is used with.
#[derive(clap::Args)]
struct ModelArgs {
    /// The TorchScript file (torch.jit.trace / torch.jit.script), or an nrf checkpoint
    /// (STEM.safetensors with its spec STEM.json: `nrf train --save`, a run's weights/; no
    /// --rep / --mean / --std, its spec has them).
    #[arg(long)]
    model: PathBuf,
    /// Where g(x) comes from: "tuple" (forward returns (logits, representation)) or
    /// "method:NAME" (forward returns logits; the exported method NAME returns g(x)).
    #[arg(long, default_value = "tuple")]
    rep: String,
    /// Per-channel mean applied before the model (comma-separated); leave out when the model
    /// takes images in [0, 1] as they are.
    #[arg(long, value_delimiter = ',')]
    mean: Vec<f64>,
    /// Per-channel std applied before the model (comma-separated).
    #[arg(long, value_delimiter = ',')]
    std: Vec<f64>,
    #[command(flatten)]
    preset: PresetArgs,
}

/// The preset a command that works outside a run takes its data set and settings from.
#[derive(clap::Args)]
struct PresetArgs {
    /// Preset for the data set and the settings (construction, fresh models, evaluation).
    #[arg(long, default_value = "fashion-mnist")]
    preset: String,
    /// Override a preset value (repeatable), as for `nrf reproduce`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Dataset directory (overrides the preset's data.dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl PresetArgs {
    fn load(&self) -> Result<Preset> {
        Ok(Preset::load_with_overrides(&self.preset, &self.set)?.0)
    }
}

impl ModelArgs {
    fn load(&self) -> Result<(Preset, nrf_experiments::construct_cmd::ExternalModel)> {
        let p = self.preset.load()?;
        let m = nrf_experiments::construct_cmd::ExternalModel {
            path: self.model.clone(),
            rep: nrf_models::RepSource::parse(&self.rep)?,
            mean: self.mean.clone(),
            std: self.std.clone(),
        };
        Ok((p, m))
    }
}

fn main() {
    nrf_models::runtime::tune_allocator();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Reproduce(args) => run_reproduce(args, &cli.log)?,
        Cmd::Chaos {
            preset,
            set,
            kills,
            seed,
            work,
        } => run_chaos(preset, set, kills, seed, work)?,
        Cmd::Shards { results } => {
            let report = nrf_experiments::shard::check_results(&results)?;
            print!("{report}");
        }
        Cmd::Plan {
            preset,
            set,
            gflops,
            data_dir,
            json,
        } => {
            let (p, _) = Preset::load_with_overrides(&preset, &set)?;
            let opts = nrf_experiments::plan::PlanOptions {
                gflops,
                data_dir,
                untimed_sources: false,
            };
            let plan = nrf_experiments::plan::plan(&p, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_text());
            }
        }
        Cmd::GpuCheck { work, without_gpu } => run_gpu_check(&work, without_gpu)?,
        Cmd::DataInfo { dataset, data_dir } => {
            let (mut p, _) = Preset::load("fashion-mnist")?;
            p.data.dataset = dataset.parse().context("--dataset")?;
            p.data.dir = None;
            let dir = data_dir.or_else(|| {
                matches!(
                    p.data.dataset,
                    DatasetName::FashionMnist | DatasetName::Mnist
                )
                .then(|| PathBuf::from(nrf_data::idx::FASHION_MNIST_DIR))
            });
            let (train, test) = nrf_experiments::pipeline::load_data(&p, dir.as_deref())?;
            println!("{}", nrf_data::data_info(&train));
            println!("{}", nrf_data::data_info(&test));
        }
        Cmd::Report { results } => {
            // Not while a run writes the folder (nor a run while this writes the report).
            let _lock = nrf_experiments::lock::ResultsLock::acquire(&results, "nrf report")?;
            let s = nrf_report::write_report(&results)
                .with_context(|| format!("writing the report of {}", results.display()))?;
            println!("{s:?}");
            println!("{}", nrf_report::summary_markdown(&results)?);
        }
        Cmd::Compare { base, other, out } => {
            let c = nrf_report::replicates::compare::Comparison::load(&base, &other)?;
            c.write(&out)
                .with_context(|| format!("writing the comparison into {}", out.display()))?;
            println!("{}", c.markdown());
        }
        Cmd::Combine { results, out } => {
            // Not while a run writes one of the folders.
            let _locks = results
                .iter()
                .map(|r| nrf_experiments::lock::ResultsLock::acquire(r, "nrf combine"))
                .collect::<Result<Vec<_>>>()?;
            let r = nrf_report::replicates::Replicates::load(&results)?;
            r.write(&out)
                .with_context(|| format!("writing the combined report into {}", out.display()))?;
            println!("{}", r.markdown());
            let unstable = r.unstable_claims();
            if !unstable.is_empty() {
                println!(
                    "Claims whose verdict differs between the runs: {}",
                    unstable.join(", ")
                );
            }
            println!("Written: {}", out.join("replicates.md").display());
        }
        Cmd::Theory { out, seed } => {
            let s = nrf_experiments::theory::write(&out, seed)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        Cmd::Train {
            preset,
            set,
            model,
            epochs,
            adv_eps,
            adv_steps,
            seed,
            eval_eps,
            robust_n,
            save,
        } => {
            let (p, _) = Preset::load_with_overrides(&preset, &set)?;
            let req = nrf_experiments::train_cmd::TrainRequest {
                model,
                epochs,
                adv: adv_eps.map(|e| (e, adv_steps)),
                seed,
                eval_eps,
                robust_n,
                save,
            };
            let r = nrf_experiments::train_cmd::run(&p, &req)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Fresh {
            data,
            set_name,
            name,
            seeds,
            no_ensemble,
            save,
            preset,
        } => {
            let p = preset.load()?;
            let req = nrf_experiments::fresh_cmd::FreshRequest {
                data,
                set_name,
                name,
                seeds,
                ensemble: !no_ensemble,
                save,
                data_dir: preset.data_dir,
            };
            let r = nrf_experiments::fresh_cmd::run(&p, &req)?;
            eprint!("{}", r.markdown());
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Presets { name } => match name {
            Some(n) => println!("{}", Preset::load(&n)?.1),
            None => BUILTIN.iter().for_each(|(n, _)| println!("{n}")),
        },
        Cmd::Bench {
            reps,
            quick,
            pipeline,
            stages,
            threads,
            no_side_by_side,
            python_default_malloc,
            end_to_end,
            preset,
            sets,
            out,
        } => {
            if end_to_end {
                if !stages.is_empty()
                    || !threads.is_empty()
                    || no_side_by_side
                    || python_default_malloc
                    || quick
                {
                    bail!("--stages, --threads, --no-side-by-side, --python-default-malloc and --quick go with --pipeline, not --end-to-end");
                }
                use nrf_experiments::bench::end_to_end;
                let mut args = end_to_end::EndToEndArgs::default();
                if let Some(p) = preset {
                    args.with_preset(p);
                }
                if !sets.is_empty() {
                    args.sets = sets;
                }
                if let Some(r) = reps {
                    args.reps = r;
                }
                let out = out.unwrap_or_else(|| PathBuf::from(end_to_end::DEFAULT_OUT));
                let report = end_to_end::run(&args, &out)?;
                println!("{}", report.to_markdown());
                println!(
                    "written {} and {}",
                    out.display(),
                    out.with_extension("md").display()
                );
                return Ok(());
            }
            let args = nrf_experiments::bench::pipeline::PipelineArgs {
                reps,
                quick,
                stages,
                threads,
                side_by_side: !no_side_by_side,
                python_default_malloc,
            };
            run_bench(args, pipeline, out)?
        }
        Cmd::Construct {
            model,
            kind,
            out,
            n,
        } => {
            let (p, m) = model.load()?;
            let r = nrf_experiments::construct_cmd::construct(
                &p,
                &m,
                kind,
                model.preset.data_dir.as_deref(),
                &out,
                n,
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Eval {
            model,
            name,
            no_ensemble,
        } => {
            let (p, m) = model.load()?;
            let opts = nrf_experiments::construct_cmd::EvalOptions {
                name,
                ensemble: !no_ensemble,
            };
            let r = nrf_experiments::construct_cmd::eval(
                &p,
                &m,
                model.preset.data_dir.as_deref(),
                &opts,
            )?;
            eprintln!("{}", r.markdown());
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}

/// `nrf reproduce`: the whole run (with `workers = N`, N copies of this binary), or one shard of
/// it, or its training only.
fn run_reproduce(a: ReproduceArgs, log: &str) -> Result<()> {
    let (p, text) = Preset::load_with_overrides(&a.preset, &a.set)?;
    let results = a
        .results
        .unwrap_or_else(|| PathBuf::from("results").join(&p.name));
    let data_dir = a.data_dir.as_deref();
    if let Some(w) = a.worker {
        return nrf_experiments::run_worker(p, text, results, data_dir, w);
    }
    let start = std::time::Instant::now();
    if a.shard.is_some() || a.only.is_some() {
        let opts = nrf_experiments::RunOptions {
            shard: a.shard,
            only: a.only,
        };
        let done = nrf_experiments::reproduce_with(p, text, results, data_dir, !a.quiet, opts)?;
        println!("{done}");
        println!("wall time {:.1} min", start.elapsed().as_secs_f64() / 60.0);
        return Ok(());
    }
    // With `workers = N`, the run starts N copies of this binary.
    let launch = nrf_experiments::workers::Launch {
        bin: std::env::current_exe().context("locating the nrf binary")?,
        data_dir: a.data_dir.clone(),
        log: log.to_string(),
    };
    let summary = nrf_experiments::reproduce_with_workers(
        p,
        text,
        results.clone(),
        data_dir,
        !a.quiet,
        &launch,
    )?;
    println!("{summary}");
    println!(
        "wall time {:.1} min; report: {}",
        start.elapsed().as_secs_f64() / 60.0,
        results.join("report.html").display()
    );
    Ok(())
}

/// `nrf chaos`: the kill/resume harness; fails when the results differ or an artefact was damaged.
fn run_chaos(
    preset: String,
    set: Vec<String>,
    kills: usize,
    seed: u64,
    work: PathBuf,
) -> Result<()> {
    use nrf_experiments::chaos;
    let bin = std::env::current_exe().context("locating the nrf binary")?;
    let cfg = chaos::ChaosConfig {
        bin,
        preset,
        set,
        kills,
        seed,
        work: work.clone(),
    };
    let report = chaos::run(&cfg)?;
    print!("{}", report.to_text());
    nrf_data::store::write_json_atomic(work.join("chaos.json"), &report)?;
    if !report.identical() {
        anyhow::bail!("chaos: the killed run's results differ from the reference's");
    }
    if !report.passed() {
        anyhow::bail!("chaos: a kill left a damaged artefact (see the warnings above)");
    }
    Ok(())
}

/// `nrf gpu-check`: the toy CIFAR-10 path on CUDA against the CPU (says so when there is no GPU).
fn run_gpu_check(work: &std::path::Path, without_gpu: bool) -> Result<()> {
    use nrf_experiments::gpu_check;
    let (_, status) = gpu_check::cuda_status();
    let exe = std::env::current_exe().context("locating the nrf binary")?;
    match gpu_check::run(&exe, work, without_gpu)? {
        gpu_check::Outcome::NoGpu => {
            println!("gpu-check: no GPU here ({status}): nothing to check, skipped (exit 0).")
        }
        gpu_check::Outcome::Compared { table, ok } => {
            println!("gpu-check ({status}): toy cifar10 run, CUDA vs CPU\n\n{table}");
            if !ok {
                anyhow::bail!(
                    "gpu-check: CUDA and CPU disagree beyond the tolerance ({}); results in {}",
                    gpu_check::TOLERANCE,
                    work.display()
                );
            }
            println!(
                "gpu-check: CUDA agrees with the CPU (tolerance {}).",
                gpu_check::TOLERANCE
            );
        }
    }
    Ok(())
}

/// `nrf bench`: one step on fixed tensors against PyTorch, or whole stages (`--pipeline`).
fn run_bench(
    args: nrf_experiments::bench::pipeline::PipelineArgs,
    pipeline: bool,
    out: Option<PathBuf>,
) -> Result<()> {
    if pipeline {
        use nrf_experiments::bench::pipeline;
        let out = out.unwrap_or_else(|| PathBuf::from(pipeline::DEFAULT_OUT));
        let report = pipeline::run(&args, &out)?;
        println!("{}", report.to_markdown());
        println!(
            "written {} and {}",
            out.display(),
            out.with_extension("md").display()
        );
    } else {
        let out = out.unwrap_or_else(|| PathBuf::from(nrf_experiments::bench::DEFAULT_OUT));
        if !args.stages.is_empty()
            || !args.threads.is_empty()
            || !args.side_by_side
            || args.python_default_malloc
        {
            bail!("--stages, --threads, --no-side-by-side and --python-default-malloc go with --pipeline");
        }
        let report = nrf_experiments::bench::run(args.reps, args.quick, &out)?;
        println!("{}", report.to_markdown());
        println!("written {}", out.display());
    }
    Ok(())
}
