//! Table 1 of the paper: D_rand and D_det, built from C_std by targeted L2 PGD towards t and
//! relabelled t; a fresh standard model trained on each is evaluated on the real test set. The
//! paper: both are far above chance, although every label looks wrong to a human. The fresh
//! models (and their eps variants) are trained with every seed of `[fresh] seeds`
//! ([`Ctx::seeds_for`]); above chance is the one rule of `nrf_results::uncertainty`.
use crate::figure2::Sources;
use crate::pipeline::{Ctx, EvalLevel};
use crate::preset::RelabelSection;
use anyhow::Result;
use nrf_data::store::{ConstructedDataset, ConstructedMetadata};
use nrf_features::relabel::{build_with, RelabelConfig, Relabelled, TargetRule};
use nrf_features::targeted::TargetedAttack;
use nrf_results::ModelKind;
use nrf_results::{eps_eq, ConstructedInfo, ModelRole};

/// The tag of radius `eps` in set names: 2.0 -> "2", 0.25 -> "0p25".
pub fn eps_tag(eps: f64) -> String {
    format!("{eps}").replace('.', "p")
}

/// The dataset name Table 1 uses for `prefix` ("D_rand" / "D_det") at radius `eps` when the
/// preset's own radius is `base`.
pub fn set_name(prefix: &str, eps: f64, base: f64) -> String {
    if eps_eq(eps, base) {
        prefix.to_string()
    } else {
        format!("{prefix}_eps{}", eps_tag(eps))
    }
}

/// Builds a relabelled dataset from the first `relabel.n` images of Figure 2's subset (cached,
/// resumable); returns its stage key.
pub fn construct(
    ctx: &mut Ctx,
    name: &str,
    src: &Sources,
    rule: TargetRule,
    eps: f64,
    step_size: f64,
) -> Result<String> {
    let n = ctx.preset.relabel.n.min(src.subset.len());
    construct_at(ctx, name, src, rule, eps, step_size, &src.subset[..n])
}

/// [`construct`] from the training images at `indices`.
pub fn construct_at(
    ctx: &mut Ctx,
    name: &str,
    src: &Sources,
    rule: TargetRule,
    eps: f64,
    step_size: f64,
    indices: &[usize],
) -> Result<String> {
    let spec = RelabelSpec {
        name: name.to_string(),
        rule,
        eps,
        steps: ctx.preset.relabel.steps,
        step_size,
        source: "C_std".into(),
        source_key: src.c_std(ctx)?,
        attack: TargetedAttack::default(),
    };
    construct_spec(ctx, &spec, indices)
}

/// A relabelled set: its name, target rule, radius, steps, source model and targeted attack.
#[derive(Debug, Clone)]
pub struct RelabelSpec {
    /// The set's name (`data/<name>`, `datasets/<name>.json`).
    pub name: String,
    pub rule: TargetRule,
    /// L2 radius.
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    /// The source model's name (`weights/<source>`) and its training stage's key.
    pub source: String,
    pub source_key: String,
    /// The targeted attack (the paper's: [`TargetedAttack::default`]).
    pub attack: TargetedAttack,
}

/// Builds the relabelled set `spec` from the training images at `indices` (cached, resumable);
/// returns its stage key. With the paper's attack the key is the one Table 1 always had.
pub fn construct_spec(ctx: &mut Ctx, spec: &RelabelSpec, indices: &[usize]) -> Result<String> {
    let r = ctx.preset.relabel.clone();
    let indices: Vec<usize> = indices.to_vec();
    let name = spec.name.as_str();
    let (rule, eps, step_size) = (spec.rule, spec.eps, spec.step_size);
    let cfg = RelabelConfig {
        rule,
        eps,
        steps: spec.steps,
        step_size,
        batch_size: r.batch_size,
        seed: ctx.preset.stage_seed(&format!("targets:{name}")),
    };
    let method = relabel_method(rule);
    let attack = spec.attack;
    let source = spec.source.clone();
    let stage = format!("construct:{name}");
    let build_stage = |ctx: &mut Ctx, work: &std::path::Path| -> Result<ConstructedInfo> {
        let t0 = std::time::Instant::now();
        let model = ctx.load_classifier(&source)?;
        let out = build_with(
            model.as_ref(),
            &ctx.train,
            &indices,
            &cfg,
            &attack,
            ctx.device,
            &work.join("chunks"),
            ctx.progress,
        )?;
        let s = &out.summary;
        tracing::info!(
            "{name}: attack success {:.3}, mean L2 distance {:.3}, t = y for {:.3}",
            s.success_rate,
            s.mean_dist_to_x,
            s.target_equals_label
        );
        let mut stored = relabel_stored(name, &ctx.train, &indices, &out, &cfg, &attack)?;
        let (sha256, provenance) = ctx.source_file(&source)?;
        stored.metadata.source_model_sha256 = Some(sha256);
        if let Some(p) = provenance {
            stored.metadata.extra.insert("source_model".into(), p);
        }
        let info = ConstructedInfo {
            name: name.into(),
            method: method.into(),
            source_model: source.clone(),
            n: indices.len(),
            epsilon: Some(eps),
            steps: cfg.steps,
            step_size,
            success_rate: Some(s.success_rate),
            init_rel_err: None,
            final_rel_err: None,
            mean_dist_to_x: Some(s.mean_dist_to_x),
            mean_dist_to_x0: None,
            grid: Some(crate::grids::grid_path(name)),
            file: Some(format!("data/{name}.safetensors")),
            wall_s: t0.elapsed().as_secs_f64(),
        };
        ctx.store_constructed(&stored, &info)?;
        // Drawn once the data are stored: a build that fails before that leaves the grid of
        // the set there is (its record still valid) as it was.
        crate::grids::relabel_grid(ctx, name, &stored)?;
        Ok(info)
    };
    let (info, key) = if attack.is_paper() && spec.source == "C_std" {
        ctx.stage(&stage, &(&spec.source_key, &cfg, &indices), build_stage)?
    } else {
        let inputs = (&spec.source, &spec.source_key, &cfg, &indices, &attack);
        ctx.stage(&stage, &inputs, build_stage)?
    };
    ctx.write_dataset_info(&info)?;
    Ok(key)
}

/// The `method` recorded with a relabelled set: "random_target" (D_rand) or
/// "deterministic_target" (D_det).
pub fn relabel_method(rule: TargetRule) -> &'static str {
    match rule {
        TargetRule::Random => "random_target",
        TargetRule::Deterministic => "deterministic_target",
    }
}

/// D_rand / D_det as stored, the one construction path of the pipeline and of `nrf construct`:
/// the images and new labels of `out` (built from the training images `indices` of `train` with
/// `cfg` and `attack`), their source indices, and the method, settings, summary and (when it is
/// not the paper's) attack in the metadata. The caller records the source model.
pub fn relabel_stored(
    name: &str,
    train: &nrf_data::Dataset,
    indices: &[usize],
    out: &Relabelled,
    cfg: &RelabelConfig,
    attack: &TargetedAttack,
) -> Result<ConstructedDataset> {
    let mut metadata = ConstructedMetadata {
        method: relabel_method(cfg.rule).into(),
        epsilon: Some(cfg.eps),
        steps: Some(cfg.steps),
        step_size: Some(cfg.step_size),
        seed: Some(cfg.seed),
        ..Default::default()
    };
    let extra = &mut metadata.extra;
    extra.insert("config".into(), serde_json::to_value(cfg)?);
    extra.insert("summary".into(), serde_json::to_value(&out.summary)?);
    if !attack.is_paper() {
        extra.insert("attack".into(), serde_json::to_value(attack)?);
    }
    Ok(ConstructedDataset {
        dataset: nrf_features::to_dataset(name, &out.images, &out.labels, train)?,
        source_indices: indices.iter().map(|&i| i as i64).collect(),
        start_indices: None,
        metadata,
    })
}

/// The paper's set a relabelled set with target rule `rule` stands for: D_rand or D_det.
pub fn kind(rule: TargetRule) -> ModelKind {
    match rule {
        TargetRule::Random => ModelKind::DRand,
        TargetRule::Deterministic => ModelKind::DDet,
    }
}

/// The role of Table 1's model on its set of target rule `rule` at radius `eps` (the name
/// [`set_name`] gives it) when the preset's own radius is `base`: the main model of D_rand /
/// D_det at `base`, a variant at any other radius (`relabel.extra_eps`).
pub fn role(rule: TargetRule, eps: f64, base: f64) -> ModelRole {
    if eps_eq(eps, base) {
        ModelRole::Main(kind(rule))
    } else {
        ModelRole::Variant(kind(rule))
    }
}

/// The model `eps_sensitivity` trains on the set `set` (rule `rule`, radius `eps`): Table 1's
/// own (`on_<set>`, its role) at a radius Table 1 trains, else the section's (`es_on_<set>`).
pub fn radius_model(
    r: &RelabelSection,
    rule: TargetRule,
    eps: f64,
    set: &str,
) -> (String, ModelRole) {
    if r.is_table1_radius(eps) {
        (format!("on_{set}"), role(rule, eps, r.eps))
    } else {
        let role = ModelRole::Extra {
            set: kind(rule),
            varies: nrf_results::Varies::Eps,
        };
        (format!("es_on_{set}"), role)
    }
}

/// One of Table 1's sets ([`sets`]).
pub struct Table1Set {
    /// Its name, e.g. "D_det_eps2".
    pub name: String,
    pub rule: TargetRule,
    /// L2 radius and step size of the targeted attack.
    pub eps: f64,
    pub step: f64,
    /// The role of its model `on_<name>`.
    pub role: ModelRole,
}

/// Table 1's sets: D_rand and D_det at `relabel.eps` (main models) and their variants at
/// `relabel.extra_eps`.
pub fn sets(r: &crate::preset::RelabelSection) -> Vec<Table1Set> {
    let set = |name: String, rule, eps, step, role| Table1Set {
        name,
        rule,
        eps,
        step,
        role,
    };
    let mut sets = vec![
        set(
            "D_rand".to_string(),
            TargetRule::Random,
            r.eps,
            r.step_size,
            ModelRole::Main(ModelKind::DRand),
        ),
        set(
            "D_det".to_string(),
            TargetRule::Deterministic,
            r.eps,
            r.step_size,
            ModelRole::Main(ModelKind::DDet),
        ),
    ];
    for &eps in &r.extra_eps {
        let step = r.step_at(eps);
        let tag = eps_tag(eps);
        sets.push(set(
            format!("D_rand_eps{tag}"),
            TargetRule::Random,
            eps,
            step,
            ModelRole::Variant(ModelKind::DRand),
        ));
        sets.push(set(
            format!("D_det_eps{tag}"),
            TargetRule::Deterministic,
            eps,
            step,
            ModelRole::Variant(ModelKind::DDet),
        ));
    }
    sets
}

/// Table 1: D_rand and D_det (and their eps variants) and fresh models on each.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    for s in sets(&ctx.preset.relabel) {
        set_job(ctx, src, &s)?;
    }
    Ok(())
}

/// One row of Table 1: the set `s` (cached, resumable) and the fresh models trained on it. D_det
/// is trained without augmentation in the paper's setting (\[PB\], \[IS#3\]); the preset's `fresh`
/// section is used for every set so that the comparison is like for like.
pub fn set_job(ctx: &mut Ctx, src: &Sources, s: &Table1Set) -> Result<()> {
    let key = construct(ctx, &s.name, src, s.rule, s.eps, s.step)?;
    let model = format!("on_{}", s.name);
    ctx.fresh_model(&model, s.role, &s.name, &key, EvalLevel::Full)?;
    Ok(())
}
