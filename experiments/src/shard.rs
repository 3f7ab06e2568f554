//! Shard jobs: `nrf reproduce --shard k/n` runs shard k of every construction (D_NR, D_R,
//! D_rand, D_det and Table 1's eps variants) and of every robust evaluation whose model is
//! trained (C_std, C_rob, and the Figure 2 / Table 1 fresh models with all their seeds), and
//! writes only its slices (`work/<stage>-<key>/…/slices/slice-<k>of<n>.safetensors`); the next
//! ordinary run merges them, checking that every shard's slice is there, once. A job array runs
//! the n shards at once, on n machines or GPUs; see docs/cluster.md.
//!
//! Slices are deterministic: a construction's chunk k and an evaluation's batch b are computed
//! exactly as in an unsharded run (per-image randomness is drawn for the whole set up front or
//! per chunk; an evaluation replays the random starts of the batches it skips, see
//! [`nrf_attacks::evaluate_grid_slice`]), so the merged results equal an unsharded run's byte for
//! byte on CPU.
use crate::figure2::{self, Sources};
use crate::pipeline::{Ctx, ModelJob, TrainingSet};
use crate::table1;
use anyhow::{anyhow, Result};
use nrf_features::chunks::is_slice_written;
use nrf_results::ModelKind;
use nrf_results::ModelRole;

/// What a shard job did.
#[derive(Debug, Default)]
pub struct ShardReport {
    /// Stages whose slice this job stored (or found stored).
    pub slices: Vec<String>,
    /// Stages already complete (merged by an ordinary run): nothing to do.
    pub complete: Vec<String>,
    /// Evaluations that wait for their model's training (an ordinary run, or `--only train`).
    pub waiting: Vec<String>,
}

impl ShardReport {
    /// The outcome of stage `stage`: its value when complete, `None` when this job stored its
    /// slice; other errors pass.
    fn step<T>(&mut self, stage: String, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => {
                self.complete.push(stage);
                Ok(Some(v))
            }
            Err(e) if is_slice_written(&e) => {
                tracing::info!("{stage}: {e}");
                self.slices.push(stage);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A plain-text summary.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "slices stored: {}\nalready complete: {}\nwaiting for training: {}",
            list(&self.slices),
            list(&self.complete),
            list(&self.waiting)
        )
    }
}

/// Runs the shard of the context's [`crate::pipeline::Mode`] (see the module's documentation).
/// The source models must be trained (`nrf reproduce --only sources`).
pub fn run(ctx: &mut Ctx) -> Result<ShardReport> {
    let shard = ctx
        .cache
        .mode
        .shard
        .ok_or_else(|| anyhow!("shard::run needs a shard job's context"))?;
    let mut rep = ShardReport::default();
    let mut source_keys = Vec::new();
    for (name, section) in [
        ("C_std", ctx.preset.train_std.clone()),
        ("C_rob", ctx.preset.train_rob.clone()),
    ] {
        // A source model file ([sources]) is not trained: its key is the file's.
        let key = ctx.source_key(name, &section).ok_or_else(|| {
            anyhow!(
                "shard {shard}: the source model {name} is not trained with these settings \
                 in {}: run `nrf reproduce --only sources` first, with the same --preset, \
                 --set values and --results",
                ctx.cache.results.display()
            )
        })?;
        let r = ctx.evaluate_stage(name, &key);
        rep.step(format!("eval:{name}"), r)?;
        source_keys.push(key);
    }
    let src = Sources::with_keys(
        source_keys[0].clone(),
        source_keys[1].clone(),
        figure2::construction_subset(ctx)?,
    );
    // Constructions; the sets already merged give the fresh models' data.
    let mut sets: Vec<(String, ModelRole, Option<String>)> = Vec::new();
    for (name, source, kind) in figure2::SETS {
        let r = figure2::construct_set(ctx, &src, name, source);
        let key = rep.step(format!("construct:{name}"), r)?;
        sets.push((name.to_string(), ModelRole::Main(kind), key));
    }
    for s in table1::sets(&ctx.preset.relabel) {
        let r = table1::construct(ctx, &s.name, &src, s.rule, s.eps, s.step);
        let key = rep.step(format!("construct:{}", s.name), r)?;
        sets.push((s.name, s.role, key));
    }
    // Evaluations of the trained fresh models (every seed).
    let mut models = Vec::new();
    for (set, role, key) in sets {
        match key {
            Some(key) => models.push((
                format!("on_{set}"),
                role,
                set.clone(),
                ctx.load_constructed(&set)?.dataset,
                key,
            )),
            None => rep
                .waiting
                .push(format!("eval:on_{set} (construct:{set} is not merged yet)")),
        }
    }
    let (control, control_key) = figure2::control_set(ctx, &src);
    models.push((
        "on_control".to_string(),
        ModelRole::Main(ModelKind::Control),
        "D_control".to_string(),
        control,
        control_key,
    ));
    let fresh = ctx.preset.fresh.clone();
    for (model, role, set_name, data, data_key) in models {
        for k in 0..ctx.seeds_for(role) {
            let name = match k {
                0 => model.clone(),
                k => format!("{model}~s{k}"),
            };
            let set = TrainingSet {
                name: &set_name,
                data: &data,
                key: &data_key,
            };
            match ctx.trained_key(&ModelJob::new(
                &ctx.preset,
                name.as_str(),
                role,
                set,
                &fresh,
            )) {
                Some(train_key) => {
                    let r = ctx.evaluate_stage(&name, &train_key);
                    rep.step(format!("eval:{name}"), r)?;
                }
                None => rep
                    .waiting
                    .push(format!("eval:{name} (train:{name} has not run)")),
            }
        }
    }
    Ok(rep)
}

/// `nrf shards`: every sharded stage's slices in `results/work/` checked from their headers
/// (nothing is loaded): one line per stage; an error listing every stage whose slices are
/// missing, duplicated or damaged, naming the shard and the file.
pub fn check_results(results: &std::path::Path) -> Result<String> {
    let work = results.join("work");
    let mut dirs = Vec::new();
    if work.is_dir() {
        for e in std::fs::read_dir(&work)? {
            let stage = e?.path();
            for dir in [stage.clone(), stage.join("chunks")] {
                if nrf_features::chunks::slices_dir(&dir).is_dir() {
                    dirs.push((stage.clone(), dir));
                }
            }
        }
    }
    dirs.sort();
    let mut out = String::new();
    let mut problems = Vec::new();
    for (stage, dir) in &dirs {
        let name = stage
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match nrf_features::chunks::check_slices(dir, &name) {
            Ok(Some((slices, units))) => out.push_str(&format!(
                "{name}: complete, {slices} slices over {units} units (merged by the next ordinary run)\n"
            )),
            Ok(None) => {}
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if dirs.is_empty() {
        out.push_str(&format!("no shard slices in {}\n", work.display()));
    }
    if !problems.is_empty() {
        anyhow::bail!("{out}{}", problems.join("\n"));
    }
    Ok(out)
}
