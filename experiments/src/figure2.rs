//! Figure 2 of the paper: models trained on D (standard and adversarial), and fresh standard
//! models trained on D_R (robust features, from C_rob) and D_NR (non-robust features, from
//! C_std), plus a clean control of the same size. The paper: the D_R model is robust, the D_NR
//! model is accurate but not robust. The fresh models (on_D_R, on_D_NR, on_control) are trained
//! with every seed of `[fresh] seeds` ([`Ctx::seeds_for`]); their verdicts use the seed spread.
use crate::pipeline::{Ctx, EvalLevel, ModelJob, TrainingSet};
use anyhow::Result;
use nrf_data::store::{ConstructedDataset, ConstructedMetadata};
use nrf_features::repmatch::{build, RepMatchConfig, RepMatched};
use nrf_results::ModelKind;
use nrf_results::{ConstructedInfo, ModelRole};

/// The source models other modules build on, trained (or loaded from the stage cache) when
/// first asked for: a module that needs only C_std does not wait for C_rob (which matters to a
/// run split over worker processes, [`crate::workers`]).
pub struct Sources {
    c_std: std::cell::OnceCell<String>,
    c_rob: std::cell::OnceCell<String>,
    /// Indices of the training images D_R / D_NR (and the control) are made from.
    pub subset: Vec<usize>,
}

impl Sources {
    /// The sources of `ctx`'s preset, none trained yet.
    pub fn new(ctx: &Ctx) -> Result<Sources> {
        Ok(Sources {
            c_std: Default::default(),
            c_rob: Default::default(),
            subset: construction_subset(ctx)?,
        })
    }

    /// Sources whose training keys are known (a shard job's, read from the stage cache).
    pub fn with_keys(c_std: String, c_rob: String, subset: Vec<usize>) -> Sources {
        Sources {
            c_std: c_std.into(),
            c_rob: c_rob.into(),
            subset,
        }
    }

    /// The key of C_std (standard training on D), trained and evaluated first if needed.
    pub fn c_std(&self, ctx: &mut Ctx) -> Result<String> {
        self.key(ctx, "C_std")
    }

    /// The key of C_rob (adversarial training on D), trained and evaluated first if needed.
    pub fn c_rob(&self, ctx: &mut Ctx) -> Result<String> {
        self.key(ctx, "C_rob")
    }

    /// The key of the source model `name` ("C_std" or "C_rob").
    pub fn key(&self, ctx: &mut Ctx, name: &str) -> Result<String> {
        let (cell, kind) = match name {
            "C_std" => (&self.c_std, ModelKind::Std),
            "C_rob" => (&self.c_rob, ModelKind::Rob),
            other => anyhow::bail!("no source model {other:?} (C_std or C_rob)"),
        };
        if let Some(key) = cell.get() {
            return Ok(key.clone());
        }
        let section = match kind {
            ModelKind::Rob => ctx.preset.train_rob.clone(),
            _ => ctx.preset.train_std.clone(),
        };
        let role = ModelRole::Main(kind);
        let key = if ctx.external(name).is_some() {
            ctx.external_model_stage(name, role)?.1
        } else {
            let (train, data_key) = (ctx.train.clone(), ctx.data_key.clone());
            let set = TrainingSet {
                name: "D",
                data: &train,
                key: &data_key,
            };
            ctx.model_stage(&ModelJob::new(&ctx.preset, name, role, set, &section))?
                .key()
                .to_string()
        };
        Ok(cell.get_or_init(|| key).clone())
    }
}

/// Trains C_std and C_rob on D (cached), in that order; a model the preset names in `[sources]`
/// is that file instead, evaluated but not trained ([`Ctx::external_model_stage`]).
pub fn source_models(ctx: &mut Ctx) -> Result<Sources> {
    let src = Sources::new(ctx)?;
    src.c_std(ctx)?;
    src.c_rob(ctx)?;
    Ok(src)
}

/// Indices of the training images the constructed sets are made from ([`Sources::subset`]).
pub fn construction_subset(ctx: &Ctx) -> Result<Vec<usize>> {
    let len = ctx.train.len();
    let n = ctx.preset.rep_match.n.max(ctx.preset.relabel.n).min(len);
    Ok(nrf_data::batch::random_subset(
        len,
        n,
        ctx.preset.stage_seed("construct-subset"),
    )?)
}

/// Figure 2's constructed sets and the model each is built from.
/// The third element is the set's [`ModelKind`]: its fresh model `on_<set>` has role
/// `ModelRole::Main(kind)`.
pub const SETS: [(&str, &str, ModelKind); 2] = [
    ("D_NR", "C_std", ModelKind::DNR),
    ("D_R", "C_rob", ModelKind::DR),
];

/// Builds the Figure 2 set `name` (one of [`SETS`]) from `source` (cached, resumable); returns
/// its stage key.
pub fn construct_set(ctx: &mut Ctx, src: &Sources, name: &str, source: &str) -> Result<String> {
    let cfg = rep_config(ctx, "rep-match-starts");
    let key = src.key(ctx, source)?;
    construct_rep(ctx, name, source, &key, &src.subset, &cfg)
}

/// Builds D_R or D_NR from the model `source` (cached, resumable); returns the stage key.
pub fn construct_rep(
    ctx: &mut Ctx,
    name: &str,
    source: &str,
    source_key: &str,
    subset: &[usize],
    cfg: &RepMatchConfig,
) -> Result<String> {
    let targets: Vec<usize> = subset[..ctx.preset.rep_match.n.min(subset.len())].to_vec();
    let inputs = (source_key, cfg, &targets);
    let (info, key) = ctx.stage(&format!("construct:{name}"), &inputs, |ctx, work| {
        rep_stage(ctx, work, name, source, &targets, cfg)
    })?;
    ctx.write_dataset_info(&info)?;
    Ok(key)
}

/// The work of the stage `construct:<name>`: D_R or D_NR built from `source` on the training
/// images `targets` (chunks under `work`, so an interrupted build resumes), stored with its grid;
/// returns its summary.
fn rep_stage(
    ctx: &mut Ctx,
    work: &std::path::Path,
    name: &str,
    source: &str,
    targets: &[usize],
    cfg: &RepMatchConfig,
) -> Result<ConstructedInfo> {
    let t0 = std::time::Instant::now();
    let method = rep_method(source == "C_rob");
    let model = ctx.load_classifier(source)?;
    let chunks = work.join("chunks");
    let out = build(
        model.as_ref(),
        &ctx.train,
        targets,
        cfg,
        ctx.device,
        &chunks,
        ctx.progress,
    )?;
    let s = &out.summary;
    tracing::info!(
        "{name}: relative representation error {:.3} -> {:.3}; distance to x {:.2}, to x0 {:.2}",
        s.init_rel_err,
        s.final_rel_err,
        s.mean_dist_to_x,
        s.mean_dist_to_x0
    );
    let mut stored = rep_stored(name, method, &ctx.train, targets, &out, cfg)?;
    let (sha256, provenance) = ctx.source_file(source)?;
    stored.metadata.source_model_sha256 = Some(sha256);
    if let Some(p) = provenance {
        stored.metadata.extra.insert("source_model".into(), p);
    }
    let info = ConstructedInfo {
        name: name.into(),
        method: method.into(),
        source_model: source.into(),
        n: targets.len(),
        epsilon: None,
        steps: cfg.steps,
        step_size: cfg.step_start,
        success_rate: None,
        init_rel_err: Some(s.init_rel_err),
        final_rel_err: Some(s.final_rel_err),
        mean_dist_to_x: Some(s.mean_dist_to_x),
        mean_dist_to_x0: Some(s.mean_dist_to_x0),
        grid: Some(crate::grids::grid_path(name)),
        file: Some(format!("data/{name}.safetensors")),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    ctx.store_constructed(&stored, &info)?;
    // Drawn once the data are stored: a build that fails before that leaves the grid of
    // the set there is (its record still valid) as it was.
    crate::grids::rep_grid(ctx, name, &stored, &out.start_indices)?;
    Ok(info)
}

/// The `method` recorded with a representation-matching set: "robust_features" (D_R, from a
/// robust model) or "non_robust_features" (D_NR, from a standard one).
pub fn rep_method(robust: bool) -> &'static str {
    if robust {
        "robust_features"
    } else {
        "non_robust_features"
    }
}

/// D_R / D_NR as stored, the one construction path of the pipeline and of `nrf construct`: the
/// images and labels of `out` (built from the training images `targets` of `train` with `cfg`),
/// their source and start indices, and `method`, the settings and the summary in the metadata.
/// The caller records the source model (its checksum, and where it came from).
pub fn rep_stored(
    name: &str,
    method: &str,
    train: &nrf_data::Dataset,
    targets: &[usize],
    out: &RepMatched,
    cfg: &RepMatchConfig,
) -> Result<ConstructedDataset> {
    let mut metadata = ConstructedMetadata {
        method: method.into(),
        steps: Some(cfg.steps),
        step_size: Some(cfg.step_start),
        seed: Some(cfg.seed),
        ..Default::default()
    };
    metadata
        .extra
        .insert("config".into(), serde_json::to_value(cfg)?);
    metadata
        .extra
        .insert("summary".into(), serde_json::to_value(&out.summary)?);
    Ok(ConstructedDataset {
        dataset: nrf_features::to_dataset(name, &out.images, &out.labels, train)?,
        source_indices: targets.iter().map(|&i| i as i64).collect(),
        start_indices: Some(out.start_indices.clone()),
        metadata,
    })
}

/// The representation-matching configuration of the preset.
pub fn rep_config(ctx: &Ctx, stage: &str) -> RepMatchConfig {
    rep_config_of(&ctx.preset, stage)
}

/// [`rep_config`] from a preset alone (also `nrf construct`'s).
pub fn rep_config_of(preset: &crate::preset::Preset, stage: &str) -> RepMatchConfig {
    let r = &preset.rep_match;
    RepMatchConfig {
        steps: r.steps,
        step_start: r.step_start,
        step_end: r.step_end,
        batch_size: r.batch_size,
        distance: r.distance,
        start: r.start,
        seed: preset.stage_seed(stage),
        relu: if r.fake_relu {
            nrf_models::RepRelu::Fake
        } else {
            nrf_models::RepRelu::Relu
        },
    }
}

/// Figure 2: D_NR, D_R, the control, and fresh models on each.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    for (name, source, kind) in SETS {
        set_job(ctx, src, name, source, kind)?;
    }
    control_job(ctx, src)
}

/// The set `name` of [`SETS`] built from `source` (cached, resumable) and the fresh models
/// `on_<name>` trained on it.
pub fn set_job(
    ctx: &mut Ctx,
    src: &Sources,
    name: &str,
    source: &str,
    kind: ModelKind,
) -> Result<()> {
    let key = construct_set(ctx, src, name, source)?;
    let role = ModelRole::Main(kind);
    ctx.fresh_model(&format!("on_{name}"), role, name, &key, EvalLevel::Full)?;
    Ok(())
}

/// The fresh models on Figure 2's clean control ([`control_set`]).
pub fn control_job(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    let fresh = ctx.preset.fresh.clone();
    let (control, key) = control_set(ctx, src);
    let set = TrainingSet {
        name: "D_control",
        data: &control,
        key: &key,
    };
    let role = ModelRole::Main(ModelKind::Control);
    ctx.model_stage(&ModelJob::new(&ctx.preset, "on_control", role, set, &fresh))?;
    Ok(())
}

/// The clean control of Figure 2: the first `rep_match.n` images of the construction subset (the
/// targets x of D_R / D_NR), and its cache key.
pub fn control_set(ctx: &Ctx, src: &Sources) -> (nrf_data::Dataset, String) {
    let n = ctx.preset.rep_match.n.min(src.subset.len());
    (
        ctx.train.subset(&src.subset[..n]),
        ctx.subset_key(&src.subset[..n]),
    )
}
