//! Figure 2 of the paper: models trained on D (standard and adversarial), and fresh standard
//! models trained on D_R (robust features, from C_rob) and D_NR (non-robust features, from
//! C_std), plus a clean control of the same size. The paper: the D_R model is robust, the D_NR
//! model is accurate but not robust. The fresh models (on_D_R, on_D_NR, on_control) are trained
//! with every seed of `[fresh] seeds` ([`Ctx::seeds_for`]); their verdicts use the seed spread.
use crate::pipeline::{Ctx, EvalLevel};
use anyhow::Result;
use nrf_data::store::{ConstructedDataset, ConstructedMetadata};
use nrf_features::repmatch::{build, RepMatchConfig};
use nrf_report::results::{ConstructedInfo, ModelRole};
use nrf_report::ModelKind;

/// Keys of the stages other modules build on.
pub struct Sources {
    pub c_std: String,
    pub c_rob: String,
    /// Indices of the training images D_R / D_NR (and the control) are made from.
    pub subset: Vec<usize>,
}

/// Trains C_std and C_rob on D (cached); a model the preset names in `[sources]` is that
/// TorchScript file instead, evaluated but not trained ([`Ctx::external_model_stage`]).
pub fn source_models(ctx: &mut Ctx) -> Result<Sources> {
    let train = ctx.train.clone();
    let data_key = ctx.data_key.clone();
    let source = |ctx: &mut Ctx,
                  name: &str,
                  kind: ModelKind,
                  section: &crate::preset::TrainSection|
     -> Result<String> {
        let role = ModelRole::Main(kind);
        if ctx.external(name).is_some() {
            return Ok(ctx.external_model_stage(name, role)?.1);
        }
        let (_, key) =
            ctx.model_stage(name, role, "D", &train, &data_key, section, EvalLevel::Full)?;
        Ok(key)
    };
    let std_section = ctx.preset.train_std.clone();
    let c_std = source(ctx, "C_std", ModelKind::Std, &std_section)?;
    let rob_section = ctx.preset.train_rob.clone();
    let c_rob = source(ctx, "C_rob", ModelKind::Rob, &rob_section)?;
    Ok(Sources {
        c_std,
        c_rob,
        subset: construction_subset(ctx)?,
    })
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
    let key = if source == "C_rob" {
        &src.c_rob
    } else {
        &src.c_std
    };
    construct_rep(ctx, name, source, key, &src.subset, &cfg)
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
    let method = if source == "C_rob" {
        "robust_features"
    } else {
        "non_robust_features"
    };
    let (_, key) = ctx.stage(&format!("construct:{name}"), &(source_key, cfg, &targets), |ctx, work| {
        let t0 = std::time::Instant::now();
        let model = ctx.load_classifier(source)?;
        let out = build(model.as_ref(), &ctx.train, &targets, cfg, ctx.device, &work.join("chunks"), ctx.progress)?;
        let ds = nrf_features::to_dataset(name, &out.images, &out.labels, &ctx.train)?;
        let s = &out.summary;
        tracing::info!("{name}: relative representation error {:.3} -> {:.3}; distance to x {:.2}, to x0 {:.2}", s.init_rel_err, s.final_rel_err, s.mean_dist_to_x, s.mean_dist_to_x0);
        let (sha256, provenance) = ctx.source_file(source)?;
        let mut meta = ConstructedMetadata {
            method: method.into(),
            steps: Some(cfg.steps),
            step_size: Some(cfg.step_start),
            source_model_sha256: Some(sha256),
            seed: Some(cfg.seed),
            ..Default::default()
        };
        if let Some(p) = provenance {
            meta.extra.insert("source_model".into(), p);
        }
        meta.extra.insert("config".into(), serde_json::to_value(cfg)?);
        meta.extra.insert("summary".into(), serde_json::to_value(s)?);
        meta.extra.insert("start_indices".into(), serde_json::to_value(&out.start_indices)?);
        let stored = ConstructedDataset { dataset: ds, source_indices: targets.iter().map(|&i| i as i64).collect(), metadata: meta };
        let grid = crate::grids::rep_grid(ctx, name, &stored, &out.start_indices)?;
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
            grid,
            file: Some(format!("data/{name}.safetensors")),
            wall_s: t0.elapsed().as_secs_f64(),
        };
        ctx.store_constructed(&stored, &info)?;
        Ok(info)
    })?;
    Ok(key)
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
    }
}

/// Figure 2: D_NR, D_R, the control, and fresh models on each.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    let k_nr = construct_set(ctx, src, "D_NR", "C_std")?;
    let k_r = construct_set(ctx, src, "D_R", "C_rob")?;
    for (name, kind, key) in [("D_R", ModelKind::DR, k_r), ("D_NR", ModelKind::DNR, k_nr)] {
        let role = ModelRole::Main(kind);
        ctx.fresh_model(&format!("on_{name}"), role, name, &key, EvalLevel::Full)?;
    }
    let fresh = ctx.preset.fresh.clone();
    let (control, key) = control_set(ctx, src);
    ctx.model_stage(
        "on_control",
        ModelRole::Main(ModelKind::Control),
        "D_control",
        &control,
        &key,
        &fresh,
        EvalLevel::Full,
    )?;
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
