//! `nrf plan`: what a preset's `nrf reproduce` will cost, before anything runs.
//!
//! Every stage the run would execute (the same names as `stages/<name>.json`: `train:C_std`,
//! `construct:D_R`, `eval:on_D_R`, ...) with its work — images × passes, as forward passes,
//! training backward passes (weight and input gradients) and input-gradient backward passes
//! (attack steps, frozen weights) — its FLOPs from the architecture ([`nrf_models::flops`]), and
//! its time at a throughput that is either measured here in a few seconds (a training step of the
//! preset's own architecture on the device `nrf reproduce` would use, see [`measure`]) or given
//! as a device's sustained GFLOP/s (`--gflops`).
//!
//! The stage list follows the pipeline's own modules ([`crate::figure2`], [`crate::table1`],
//! [`crate::extras`]) and the helpers they name their sets and models with; stages the run would
//! share (a set an extra reuses from Table 1, a model evaluated once) are counted once, as the
//! stage cache runs them once.
//!
//! Costs per image, with F the forward FLOPs of the model: a training step is F forward plus
//! 2F − (first layer) backward ([`Cost::train_backward_flops`]); an attack step is F forward plus
//! F backward ([`Cost::input_backward_flops`]). PGD adversarial training with k steps is k + 1
//! forward passes and k input-gradient backward passes, then the training step. Representation
//! matching adds 3 forward passes per image (target representation, errors at start and end),
//! targeted PGD 2 (final objective, success check). Robust evaluation is counted as the full-batch
//! loop (every example attacked for every step), an upper bound: nrf stops attacking examples once
//! they are fooled. Only convolutions and linear layers are counted; theory (section 4, ndarray)
//! and the report are not network work and are left out.
use crate::extras::arch_slug;
use crate::preset::{DatasetName, IndependentModel, Preset, TrainSection};
use crate::table1::{self, set_name};
use anyhow::{bail, Context, Result};
use nrf_features::relabel::TargetRule;
use nrf_models::flops::{cost, Cost};
use nrf_models::{Arch, Model, ModelSpec};
use nrf_report::results::{ModelRole, Varies};
use nrf_report::ModelKind as K;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Training images per ImageNet class on average (1,281,167 over 1,000 classes) and validation
/// images per class: Restricted ImageNet's sizes when its folders are not at hand.
const IMAGENET_TRAIN_PER_CLASS: usize = 1281;
const IMAGENET_VAL_PER_CLASS: usize = 50;

/// What `nrf plan` was asked.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// A device's sustained GFLOP/s; None = measure this machine.
    pub gflops: Option<f64>,
    /// The data folder (else the preset's `data.dir`): counts the images when it is there.
    pub data_dir: Option<PathBuf>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub preset: String,
    pub overrides: Vec<String>,
    pub dataset: String,
    pub train_images: usize,
    pub test_images: usize,
    /// Where the image counts come from.
    pub sizes_from: String,
    pub image_shape: [i64; 3],
    pub classes: i64,
    pub throughput: Throughput,
    /// Every architecture the plan uses, with its per-image cost.
    pub models: Vec<ModelCost>,
    pub stages: Vec<StagePlan>,
    /// Sums per kind of stage ("train", "eval", "construct", "ensemble", "extras").
    pub by_kind: Vec<KindTotal>,
    pub total_flops: f64,
    pub total_seconds: f64,
    pub total_hours: f64,
}

/// The rate the times are computed at.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Effective GFLOP/s used for every stage.
    pub gflops: f64,
    /// "--gflops" or "measured".
    pub source: String,
    /// The device (measured) or "given".
    pub device: String,
    /// How it was measured.
    pub detail: String,
    /// libtorch's f32 matmul rate on the device, for reference (measured only).
    pub matmul_gflops: Option<f64>,
}

/// One architecture's cost per image.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub arch: String,
    pub params: i64,
    pub forward_mflop: f64,
    pub train_backward_mflop: f64,
    pub input_backward_mflop: f64,
}

/// One stage of the run.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    /// The stage's name in `stages/` (seeds ≥ 1 of a fresh model: `<name>~s<k>`, one row).
    pub name: String,
    /// "train", "eval", "construct", "ensemble" or "extras".
    pub kind: String,
    /// The architecture whose passes these are.
    pub arch: String,
    /// Distinct images the stage works on.
    pub images: usize,
    /// The passes per image, in words.
    pub work: String,
    /// How many times the stage runs (the seeds of a fresh model; 1 otherwise).
    pub seeds: usize,
    /// Image-passes over all seeds: forward, training backward, input-gradient backward.
    pub forward: f64,
    pub train_backward: f64,
    pub input_backward: f64,
    pub flops: f64,
    pub seconds: f64,
}

/// A kind's total.
#[derive(Debug, Clone, Serialize)]
pub struct KindTotal {
    pub kind: String,
    pub stages: usize,
    pub flops: f64,
    pub seconds: f64,
}

/// Image-passes of a stage.
#[derive(Debug, Clone, Copy, Default)]
struct Passes {
    fwd: f64,
    train_bwd: f64,
    input_bwd: f64,
}

impl Passes {
    fn scaled(self, k: f64) -> Passes {
        Passes {
            fwd: self.fwd * k,
            train_bwd: self.train_bwd * k,
            input_bwd: self.input_bwd * k,
        }
    }
    fn plus(self, o: Passes) -> Passes {
        Passes {
            fwd: self.fwd + o.fwd,
            train_bwd: self.train_bwd + o.train_bwd,
            input_bwd: self.input_bwd + o.input_bwd,
        }
    }
    fn flops(&self, c: &Cost) -> f64 {
        self.fwd * c.forward_flops()
            + self.train_bwd * c.train_backward_flops()
            + self.input_bwd * c.input_backward_flops()
    }
    /// `n` images × `steps` attack steps (forward + input gradient each).
    fn attack(n: usize, steps: usize) -> Passes {
        let k = (n * steps) as f64;
        Passes {
            fwd: k,
            train_bwd: 0.0,
            input_bwd: k,
        }
    }
    fn forward(n: usize) -> Passes {
        Passes {
            fwd: n as f64,
            ..Passes::default()
        }
    }
}

/// The stages as the pipeline would run them, each once.
struct Builder<'a> {
    p: &'a Preset,
    test_n: usize,
    /// Models whose `eval:` stage is a full one (robust accuracy too).
    full_evals: std::collections::BTreeSet<String>,
    stages: Vec<(StagePlan, Passes, Arch)>,
    /// Stage name -> index (a stage the run shares is counted once).
    seen: BTreeMap<String, usize>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)] // one stage's row: name, kind, model, size, words, seeds, passes
    fn push(
        &mut self,
        name: String,
        kind: &str,
        arch: &Arch,
        images: usize,
        work: String,
        seeds: usize,
        per_seed: Passes,
    ) {
        if self.seen.contains_key(&name) {
            return;
        }
        self.seen.insert(name.clone(), self.stages.len());
        let total = per_seed.scaled(seeds as f64);
        let plan = StagePlan {
            name,
            kind: kind.into(),
            arch: arch.label(),
            images,
            work,
            seeds,
            forward: total.fwd,
            train_backward: total.train_bwd,
            input_backward: total.input_bwd,
            flops: 0.0,
            seconds: 0.0,
        };
        self.stages.push((plan, total, arch.clone()));
    }

    /// `train:<name>` and `eval:<name>` (and `ensemble:<name>` for a full evaluation), as
    /// [`crate::pipeline::Ctx::model_stage`] runs them for a model of role `role` (which decides
    /// its seeds: [`crate::pipeline::seeds_for`]).
    fn model(
        &mut self,
        name: &str,
        role: ModelRole,
        arch: &Arch,
        n: usize,
        section: &TrainSection,
        full: bool,
    ) {
        let seeds = crate::pipeline::seeds_for(role, self.p.fresh_seeds());
        let curve = match self.p.eval.curve_n {
            0 => self.test_n,
            k => k.min(self.test_n),
        };
        let e = section.epochs;
        let step = Passes {
            fwd: 1.0,
            train_bwd: 1.0,
            input_bwd: 0.0,
        };
        let (per_image, words) = match &section.attack {
            Some(a) => (
                // k attack steps, the best iterate's forward, then the training step.
                Passes::attack(1, a.steps)
                    .plus(Passes::forward(1))
                    .plus(step),
                format!(
                    "{e} ep x (PGD-{}: {} fwd + {} bwd_x, then fwd + bwd)",
                    a.steps,
                    a.steps + 1,
                    a.steps
                ),
            ),
            None => (step, format!("{e} ep x (fwd + bwd)")),
        };
        // Per epoch: the images and the curve's test images; then the final training accuracy.
        let passes = per_image
            .scaled((n * e) as f64)
            .plus(Passes::forward(curve * e))
            .plus(Passes::forward(n));
        let words = format!("{words}; curve {curve} fwd/ep");
        self.push(
            format!("train:{name}"),
            "train",
            arch,
            n,
            words,
            seeds,
            passes,
        );
        self.eval(name, arch, full, seeds);
    }

    fn eval(&mut self, name: &str, arch: &Arch, full: bool, seeds: usize) {
        let stage = format!("eval:{name}");
        // A standard-only request after a full evaluation is met by it; a full one after a
        // standard-only one replaces it (the pipeline runs the full evaluation then).
        if let Some(&i) = self.seen.get(&stage) {
            if !full || self.full_evals.contains(name) {
                return;
            }
            self.seen.remove(&stage);
            self.stages.remove(i);
            for v in self.seen.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
        let e = &self.p.eval;
        if full {
            self.full_evals.insert(name.to_string());
        }
        let mut passes = Passes::forward(self.test_n);
        let mut words = format!("{} test fwd", self.test_n);
        let mut images = self.test_n;
        if full {
            let points = e
                .grid()
                .map(|g| g.len())
                .unwrap_or(e.l2_eps.len() + e.linf_eps.len());
            let r = e.robust_n.min(self.test_n);
            // Per grid point: the clean check, the steps, the final check.
            passes = passes.plus(
                Passes::forward(2 * r)
                    .plus(Passes::attack(r, e.steps))
                    .scaled(points as f64),
            );
            words = format!(
                "{words}; {points} eps x {r} img x PGD-{} (upper bound)",
                e.steps
            );
            images = self.test_n.max(r);
        }
        self.push(stage, "eval", arch, images, words, seeds, passes);
        if full {
            self.ensemble(name, arch, seeds);
        }
    }

    /// `ensemble:<name>` ([`crate::pipeline`]'s ensemble stage and its gradient-masking checks).
    fn ensemble(&mut self, name: &str, arch: &Arch, seeds: usize) {
        let Some(ens) = self.p.eval.ensemble.clone() else {
            return;
        };
        let e = &self.p.eval;
        let r = e.robust_n.min(self.test_n);
        let mut steps = e.steps; // PGD first
        for m in &ens.attacks {
            steps += match m {
                crate::preset::EnsembleMember::ApgdCe | crate::preset::EnsembleMember::ApgdDlr => {
                    ens.steps * ens.restarts
                }
                crate::preset::EnsembleMember::ApgdT => ens.steps * ens.restarts * ens.targets,
                crate::preset::EnsembleMember::Square => 0,
            };
        }
        // Checks: PGD with 5x the steps, an unbounded attack of 100 steps, two forward passes.
        steps += 5 * e.steps + 100;
        let square = if ens.attacks.contains(&crate::preset::EnsembleMember::Square) {
            2 * ens.square_queries
        } else {
            ens.square_queries
        };
        let passes = Passes::attack(r, steps).plus(Passes::forward(r * (square + 2)));
        let words =
            format!("{r} img x {steps} attack steps + {square} Square queries (upper bound)");
        self.push(
            format!("ensemble:{name}"),
            "ensemble",
            arch,
            r,
            words,
            seeds,
            passes,
        );
    }

    /// `construct:<name>` by representation matching ([`crate::figure2::construct_rep`]).
    fn rep(&mut self, name: &str, n: usize) {
        let r = &self.p.rep_match;
        let passes = Passes::attack(n, r.steps).plus(Passes::forward(3 * n));
        let words = format!("{} steps x (fwd + bwd_x) + 3 fwd", r.steps);
        let arch = self.p.model.arch.clone();
        self.push(
            format!("construct:{name}"),
            "construct",
            &arch,
            n,
            words,
            1,
            passes,
        );
    }

    /// `construct:<name>` by targeted PGD ([`crate::table1::construct_spec`]).
    fn relabel(&mut self, name: &str, n: usize) {
        let steps = self.p.relabel.steps;
        let passes = Passes::attack(n, steps).plus(Passes::forward(2 * n));
        let words = format!("{steps} steps x (fwd + bwd_x) + 2 fwd");
        let arch = self.p.model.arch.clone();
        self.push(
            format!("construct:{name}"),
            "construct",
            &arch,
            n,
            words,
            1,
            passes,
        );
    }
}

/// The images of the preset's data set: counted in the data folder when it is there, else the
/// data set's published sizes; `data.train_limit` / `test_limit` applied. Returns (train, test,
/// where from).
pub fn data_sizes(p: &Preset, data_dir: Option<&Path>) -> Result<(usize, usize, String)> {
    let dir = data_dir
        .map(Path::to_path_buf)
        .or_else(|| p.data.dir.clone());
    let (train, test, from) = match p.data.dataset {
        DatasetName::FashionMnist | DatasetName::Mnist => {
            (60_000, 10_000, "the data set's published size".to_string())
        }
        DatasetName::Cifar10 => match dir.as_deref().and_then(|d| cifar_counts(d).ok()) {
            Some((tr, te)) => (
                tr,
                te,
                format!("counted in {}", dir.unwrap_or_default().display()),
            ),
            None => (50_000, 10_000, "the data set's published size".into()),
        },
        DatasetName::RestrictedImagenet => {
            let cap = p.data.max_per_class;
            match dir.as_deref().and_then(|d| imagenet_counts(d, cap).ok()) {
                Some((tr, te)) => (
                    tr,
                    te,
                    format!("counted in {}", dir.unwrap_or_default().display()),
                ),
                None => {
                    let per_super = |per_wnid: usize| -> usize {
                        nrf_data::folder::RESTRICTED_IMAGENET_RANGES
                            .iter()
                            .map(|&(lo, hi)| {
                                let all = (hi - lo + 1) * per_wnid;
                                cap.map_or(all, |k| k.min(all))
                            })
                            .sum()
                    };
                    (
                        per_super(IMAGENET_TRAIN_PER_CLASS),
                        per_super(IMAGENET_VAL_PER_CLASS),
                        "ImageNet's average class size (1,281 train / 50 val images per WordNet id; \
                         give --data-dir to count)"
                            .into(),
                    )
                }
            }
        }
    };
    let limit = |n: usize, l: usize| if l > 0 { n.min(l) } else { n };
    Ok((
        limit(train, p.data.train_limit),
        limit(test, p.data.test_limit),
        from,
    ))
}

/// CIFAR-10 binary version: records in data_batch_1..5.bin and test_batch.bin.
fn cifar_counts(dir: &Path) -> Result<(usize, usize)> {
    let count = |split| -> Result<usize> {
        let mut n = 0;
        for f in nrf_data::cifar::cifar10_file_names(split) {
            let len = std::fs::metadata(dir.join(&f))
                .with_context(|| f.clone())?
                .len() as usize;
            n += len / nrf_data::cifar::CIFAR_RECORD_BYTES;
        }
        Ok(n)
    };
    Ok((
        count(nrf_data::Split::Train)?,
        count(nrf_data::Split::Test)?,
    ))
}

/// Restricted ImageNet: image files in the WordNet folders of the nine ranges (capped per
/// super-class as the loader caps them).
fn imagenet_counts(dir: &Path, cap: Option<usize>) -> Result<(usize, usize)> {
    let count = |sub: &str| -> Result<usize> {
        let root = dir.join(sub);
        let mut per = vec![0usize; nrf_data::folder::RESTRICTED_IMAGENET_RANGES.len()];
        for (i, class) in nrf_data::folder::class_folders(&root)?.iter().enumerate() {
            if let Some(label) = nrf_data::folder::restricted_imagenet_label(i) {
                per[label] += nrf_data::folder::image_files(root.join(class))?.len();
            }
        }
        Ok(per.iter().map(|&n| cap.map_or(n, |k| k.min(n))).sum())
    };
    Ok((count("train")?, count("val")?))
}

/// The image shape and class count of the preset's data set.
pub fn data_shape(p: &Preset) -> ([i64; 3], i64) {
    match p.data.dataset {
        DatasetName::Cifar10 => ([3, 32, 32], 10),
        DatasetName::RestrictedImagenet => {
            let s = p.data.image_size.unwrap_or(224) as i64;
            (
                [3, s, s],
                nrf_data::folder::RESTRICTED_IMAGENET_CLASSES.len() as i64,
            )
        }
        DatasetName::FashionMnist | DatasetName::Mnist => ([1, 28, 28], 10),
    }
}

/// The stages of `p`'s reproduce run on `train_n` / `test_n` images, with their passes.
fn stages(p: &Preset, train_n: usize, test_n: usize) -> Vec<(StagePlan, Passes, Arch)> {
    let mut b = Builder {
        p,
        test_n,
        full_evals: Default::default(),
        stages: Vec::new(),
        seen: BTreeMap::new(),
    };
    let arch = p.model.arch.clone();
    // Figure 2's sources ([`crate::figure2::source_models`]) and the construction subset.
    let main = ModelRole::Main;
    // A TorchScript source (`[sources]`) is not trained, only evaluated (its cost counted as
    // the preset's architecture's: the file's is not known here).
    for (name, kind, section) in [
        ("C_std", K::Std, &p.train_std),
        ("C_rob", K::Rob, &p.train_rob),
    ] {
        if p.sources.of(name).is_some() {
            b.eval(name, &arch, true, 1);
        } else {
            b.model(name, main(kind), &arch, train_n, section, true);
        }
    }
    let subset = p.rep_match.n.max(p.relabel.n).min(train_n);
    let rep_n = p.rep_match.n.min(subset);
    let rel_n = p.relabel.n.min(subset);
    // Figure 2 ([`crate::figure2::run`]).
    b.rep("D_NR", rep_n);
    b.rep("D_R", rep_n);
    b.model("on_D_R", main(K::DR), &arch, rep_n, &p.fresh, true);
    b.model("on_D_NR", main(K::DNR), &arch, rep_n, &p.fresh, true);
    b.model("on_control", main(K::Control), &arch, rep_n, &p.fresh, true);
    // Table 1 ([`crate::table1::run`]).
    let sets = crate::table1::sets(&p.relabel);
    for s in &sets {
        b.relabel(&s.name, rel_n);
    }
    for s in &sets {
        b.model(
            &format!("on_{}", s.name),
            s.role,
            &arch,
            rel_n,
            &p.fresh,
            true,
        );
    }
    if p.extras.enabled {
        extras(&mut b, train_n, subset, rep_n, rel_n);
    }
    b.stages
}

/// The extras of [`crate::extras::run`], in its order.
fn extras(b: &mut Builder, train_n: usize, subset: usize, rep_n: usize, rel_n: usize) {
    let p = b.p;
    let e = &p.extras;
    let arch = p.model.arch.clone();
    let r = &p.relabel;
    let main = ModelRole::Main;
    if (e.diversity || e.source_vs_target) && e.independent_model == IndependentModel::CIndep {
        // Held-out images: neither a target nor a start of D_R / D_NR (at most one start per
        // image of each): at least this many are free.
        let free = train_n.saturating_sub(subset + 2 * rep_n);
        let role = ModelRole::Extra {
            set: K::Control,
            varies: Varies::HeldOutImages,
        };
        b.model(
            "C_indep",
            role,
            &arch,
            rep_n.min(free).max(1),
            &p.fresh,
            false,
        );
    }
    if e.cosine_ablation {
        let (_, alt) = crate::extras::cosine::alternative(p.rep_match.distance);
        b.rep(alt, rep_n);
        let role = ModelRole::Extra {
            set: K::DR,
            varies: Varies::Distance,
        };
        b.model(&format!("cos_on_{alt}"), role, &arch, rep_n, &p.fresh, true);
    }
    if e.init_ablation {
        let alt = crate::extras::init_ablation::other(p.model.init);
        for (set, kind) in [("D_R", K::DR), ("D_NR", K::DNR), ("control", K::Control)] {
            let name = crate::extras::init_ablation::model_name(alt, set);
            let role = ModelRole::Extra {
                set: kind,
                varies: Varies::Init,
            };
            b.model(&name, role, &arch, rep_n, &p.fresh, true);
        }
    }
    for (prefix, rule) in [
        ("D_rand", TargetRule::Random),
        ("D_det", TargetRule::Deterministic),
    ] {
        for &eps in &e.eps_sensitivity {
            let name = set_name(prefix, eps, r.eps);
            b.relabel(&name, rel_n);
            let (model, role) = if r.is_table1_radius(eps) {
                (format!("on_{name}"), table1::role(rule, eps, r.eps))
            } else {
                let role = ModelRole::Extra {
                    set: table1::kind(rule),
                    varies: Varies::Eps,
                };
                (format!("es_on_{name}"), role)
            };
            b.model(&model, role, &arch, rel_n, &p.fresh, false);
        }
    }
    if e.figure3 {
        let eps = e.figure3_eps.unwrap_or(r.eps);
        let table1 = r.is_table1_radius(eps);
        let det = set_name("D_det", eps, r.eps);
        let rand = set_name("D_rand", eps, r.eps);
        b.relabel(&det, rel_n);
        b.relabel(&rand, rel_n);
        let n = e.figure3_n.unwrap_or(rel_n).min(rel_n);
        let table1 = table1 && n == rel_n;
        let same_control = rep_n == n;
        for a in &e.figure3_archs {
            let own = *a == arch;
            let slug = arch_slug(a);
            let extra_role = |set| ModelRole::Extra {
                set,
                varies: Varies::Architecture,
            };
            for (set, rule) in [
                (&det, TargetRule::Deterministic),
                (&rand, TargetRule::Random),
            ] {
                let (name, role) = if own && table1 {
                    (format!("on_{set}"), table1::role(rule, eps, r.eps))
                } else {
                    (
                        format!("f3_{slug}_on_{set}"),
                        extra_role(table1::kind(rule)),
                    )
                };
                b.model(&name, role, a, n, &p.fresh, false);
            }
            let (std_name, std_role) = if own && same_control {
                ("on_control".to_string(), main(K::Control))
            } else {
                (format!("f3_{slug}_on_control"), extra_role(K::Control))
            };
            b.model(&std_name, std_role, a, n, &p.fresh, false);
        }
        // Targeted attacks on C_std (robust_n images), then every standard model's predictions.
        let rn = p.eval.robust_n.min(b.test_n);
        let passes = Passes::attack(rn, r.steps).plus(Passes::forward(2 * rn));
        let words = format!(
            "{rn} img x targeted PGD-{} on C_std, then predictions",
            r.steps
        );
        b.push(
            "extras:figure3_transfer".into(),
            "extras",
            &arch,
            rn,
            words,
            1,
            passes,
        );
    }
    if !e.train_sizes.is_empty() {
        let base = rel_n;
        let control_is_table1 = rep_n == base;
        for &n in &e.train_sizes {
            let n = n.min(train_n);
            let extra_role = |set| ModelRole::Extra {
                set,
                varies: Varies::TrainSize,
            };
            for (prefix, rule) in [
                ("D_rand", TargetRule::Random),
                ("D_det", TargetRule::Deterministic),
            ] {
                let name = crate::extras::train_size::set_name(prefix, n, base);
                b.relabel(&name, n);
                let (model, role) = if n == base {
                    (format!("on_{name}"), main(table1::kind(rule)))
                } else {
                    (format!("ts_on_{name}"), extra_role(table1::kind(rule)))
                };
                b.model(&model, role, &arch, n, &p.fresh, false);
            }
            let (clean, role) = if n == base && control_is_table1 {
                ("on_control".to_string(), main(K::Control))
            } else {
                (format!("ts_on_clean_n{n}"), extra_role(K::Control))
            };
            b.model(&clean, role, &arch, n, &p.fresh, false);
        }
    }
    // diversity, source_vs_target, overfitting: distances and reads of results, seconds.
}

/// The f32 matmul rate of libtorch on `device` (GFLOP/s, the best of 3 products of 2048²).
pub fn matmul_gflops(device: Device) -> f64 {
    let n = 2048i64;
    let opts = (Kind::Float, device);
    let a = Tensor::randn([n, n], opts);
    let b = Tensor::randn([n, n], opts);
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let _ = a.matmul(&b);
    sync();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b);
            sync();
            let s = t.elapsed().as_secs_f64();
            drop(c);
            2.0 * (n as f64).powi(3) / s / 1e9
        })
        .fold(0.0, f64::max)
}

/// The effective rate of the preset's architecture on `device`: training steps (forward, loss,
/// backward) on random images, timed for about `budget_s` seconds after one warm-up step,
/// counted as [`Cost::forward_flops`] + [`Cost::train_backward_flops`] per image; the fastest
/// step counts (what the device does when nothing else competes for it, as the best of the
/// matmul products; the median is reported too). The batch is
/// the preset's training batch size or smaller, so that a step takes about a quarter of a second
/// at the matmul rate; an architecture too large for that at the preset's image size is timed
/// at 32x32 (the same layers, a smaller image) and the rate carried over.
pub fn measure(
    p: &Preset,
    shape: [i64; 3],
    classes: i64,
    device: Device,
    budget_s: f64,
) -> Result<Throughput> {
    if p.threads > 0 {
        tch::set_num_threads(p.threads);
    }
    let matmul = matmul_gflops(device);
    let target = matmul * 1e9 * 0.25;
    let per_image = |s: [i64; 3]| {
        let c = cost(&p.model.arch, s, classes);
        c.forward_flops() + c.train_backward_flops()
    };
    let mut s = shape;
    if per_image(s) > target && s[1] > 32 {
        s = [s[0], 32, 32];
    }
    let batch = ((target / per_image(s)).floor() as i64).clamp(1, p.train_std.batch_size as i64);
    let spec = ModelSpec::new(p.model.arch.clone(), s, classes).with_init(p.model.init);
    let model = Model::new(&spec, device, 0)?;
    let x = Tensor::rand([batch, s[0], s[1], s[2]], (Kind::Float, device));
    let y = Tensor::randint(classes, [batch], (Kind::Int64, device));
    let step = || {
        let (logits, _) = nrf_models::Classifier::forward_rep(&model, &x, true);
        let loss = logits.cross_entropy_for_logits(&y);
        loss.backward();
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    step();
    let t = Instant::now();
    let mut times: Vec<f64> = Vec::new();
    while times.len() < 3 || (t.elapsed().as_secs_f64() < budget_s && times.len() < 50) {
        let s0 = Instant::now();
        step();
        times.push(s0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[times.len() / 2]);
    let flops = batch as f64 * per_image(s);
    Ok(Throughput {
        gflops: flops / best / 1e9,
        source: "measured".into(),
        device: device_name(device),
        detail: format!(
            "the fastest of {} training steps of {} on {batch} x {}x{}x{} random images, {:.1} ms \
             (median {:.1} ms = {:.1} GFLOP/s), {} thread(s)",
            times.len(),
            p.model.arch.label(),
            s[0],
            s[1],
            s[2],
            best * 1e3,
            median * 1e3,
            flops / median / 1e9,
            tch::get_num_threads()
        ),
        matmul_gflops: Some(matmul),
    })
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// Plans `p`: its stages, their work and FLOPs, and their times at the measured or given rate.
pub fn plan(p: &Preset, opts: &PlanOptions) -> Result<Plan> {
    if let Some(g) = opts.gflops {
        if !(g > 0.0 && g.is_finite()) {
            bail!("--gflops: must be a positive number of GFLOP/s (a device's sustained rate), got {g}");
        }
    }
    let (shape, classes) = data_shape(p);
    let (train_n, test_n, sizes_from) = data_sizes(p, opts.data_dir.as_deref())?;
    if train_n == 0 || test_n == 0 {
        bail!(
            "preset {}: {train_n} training / {test_n} test images ({sizes_from})",
            p.name
        );
    }
    let throughput = match opts.gflops {
        Some(g) => Throughput {
            gflops: g,
            source: "--gflops".into(),
            device: "given".into(),
            detail: format!("{g} GFLOP/s sustained, as given"),
            matmul_gflops: None,
        },
        None => measure(p, shape, classes, Device::cuda_if_available(), 2.0)?,
    };
    let rate = throughput.gflops * 1e9;
    let mut models: Vec<ModelCost> = Vec::new();
    let mut out = Vec::new();
    for (mut s, passes, arch) in stages(p, train_n, test_n) {
        let c = cost(&arch, shape, classes);
        if !models.iter().any(|m| m.arch == s.arch) {
            models.push(ModelCost {
                arch: s.arch.clone(),
                params: c.params,
                forward_mflop: c.forward_flops() / 1e6,
                train_backward_mflop: c.train_backward_flops() / 1e6,
                input_backward_mflop: c.input_backward_flops() / 1e6,
            });
        }
        s.flops = passes.flops(&c);
        s.seconds = s.flops / rate;
        out.push(s);
    }
    let mut by_kind: Vec<KindTotal> = Vec::new();
    for s in &out {
        match by_kind.iter_mut().find(|k| k.kind == s.kind) {
            Some(k) => {
                k.stages += 1;
                k.flops += s.flops;
                k.seconds += s.seconds;
            }
            None => by_kind.push(KindTotal {
                kind: s.kind.clone(),
                stages: 1,
                flops: s.flops,
                seconds: s.seconds,
            }),
        }
    }
    let total_flops: f64 = out.iter().map(|s| s.flops).sum();
    let total_seconds = total_flops / rate;
    Ok(Plan {
        preset: p.name.clone(),
        overrides: p.overrides.clone(),
        dataset: p.data.dataset.to_string(),
        train_images: train_n,
        test_images: test_n,
        sizes_from,
        image_shape: shape,
        classes,
        throughput,
        models,
        stages: out,
        by_kind,
        total_flops,
        total_seconds,
        total_hours: total_seconds / 3600.0,
    })
}

/// FLOPs with a unit: "3.2 TFLOP".
pub fn flops_text(f: f64) -> String {
    let units = [
        (1e18, "EFLOP"),
        (1e15, "PFLOP"),
        (1e12, "TFLOP"),
        (1e9, "GFLOP"),
        (1e6, "MFLOP"),
    ];
    for (scale, unit) in units {
        if f >= scale {
            return format!("{:.1} {unit}", f / scale);
        }
    }
    format!("{f:.0} FLOP")
}

/// A duration: "42 s", "3.5 min", "2.1 h", "4.0 d".
pub fn time_text(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// Image-passes: "1.2M".
fn count_text(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

impl Plan {
    /// The plan as a readable table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "nrf plan: preset {}{} — {} ({} train / {} test images of {}x{}x{}, {} classes; sizes: {})\n",
            self.preset,
            if self.overrides.is_empty() {
                String::new()
            } else {
                format!(" with --set {}", self.overrides.join(" --set "))
            },
            self.dataset,
            self.train_images,
            self.test_images,
            self.image_shape[0],
            self.image_shape[1],
            self.image_shape[2],
            self.classes,
            self.sizes_from
        );
        let t = &self.throughput;
        s += &format!(
            "throughput: {:.1} GFLOP/s ({}{}{})\n\n",
            t.gflops,
            if t.source == "measured" {
                format!("measured on {}: ", t.device)
            } else {
                String::new()
            },
            t.detail,
            t.matmul_gflops
                .map(|m| format!("; f32 matmul {m:.1} GFLOP/s"))
                .unwrap_or_default()
        );
        s += "per image (convolutions and linear layers; a multiply-add = 2 FLOP):\n";
        for m in &self.models {
            s += &format!(
                "  {:<26} {:>7.2} M params   forward {:>10.1} MFLOP   training backward {:>10.1} MFLOP   input-gradient backward {:>10.1} MFLOP\n",
                m.arch,
                m.params as f64 / 1e6,
                m.forward_mflop,
                m.train_backward_mflop,
                m.input_backward_mflop
            );
        }
        s += "\npasses: fwd = forward, bwd = training backward (weights + input), bwd_x = input-gradient backward (attack step)\n";
        let w_name = self
            .stages
            .iter()
            .map(|x| x.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let w_arch = self
            .stages
            .iter()
            .map(|x| x.arch.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s += &format!(
            "{:<w_name$}  {:<w_arch$}  {:>7}  {:>5}  {:>8}  {:>8}  {:>8}  {:>12}  {:>9}  work per image\n",
            "stage", "model", "images", "seeds", "fwd", "bwd", "bwd_x", "FLOPs", "time"
        );
        for x in &self.stages {
            s += &format!(
                "{:<w_name$}  {:<w_arch$}  {:>7}  {:>5}  {:>8}  {:>8}  {:>8}  {:>12}  {:>9}  {}\n",
                x.name,
                x.arch,
                x.images,
                x.seeds,
                count_text(x.forward),
                count_text(x.train_backward),
                count_text(x.input_backward),
                flops_text(x.flops),
                time_text(x.seconds),
                x.work
            );
        }
        s += "\nby kind:\n";
        for k in &self.by_kind {
            s += &format!(
                "  {:<10} {:>3} stages  {:>12}  {:>9}  ({:.0}%)\n",
                k.kind,
                k.stages,
                flops_text(k.flops),
                time_text(k.seconds),
                100.0 * k.flops / self.total_flops.max(f64::MIN_POSITIVE)
            );
        }
        s += &format!(
            "\ntotal: {} stages, {}, {:.2} hours at {:.1} GFLOP/s ({})\n",
            self.stages.len(),
            flops_text(self.total_flops),
            self.total_hours,
            self.throughput.gflops,
            if self.throughput.source == "measured" {
                format!("measured on {}", self.throughput.device)
            } else {
                "--gflops".into()
            }
        );
        s += "not counted: theory (section 4, ndarray), the report, data loading; robust evaluation counted as if no example were ever fooled (an upper bound).\n";
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str, sets: &[&str]) -> Preset {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Preset::load_with_overrides(name, &sets).unwrap().0
    }

    fn given(g: f64) -> PlanOptions {
        PlanOptions {
            gflops: Some(g),
            data_dir: None,
        }
    }

    #[test]
    fn cifar10_stages_and_work() {
        let p = preset("cifar10", &[]);
        let plan = plan(&p, &given(1000.0)).unwrap();
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        for n in [
            "train:C_std",
            "eval:C_std",
            "train:C_rob",
            "construct:D_R",
            "construct:D_NR",
            "construct:D_rand",
            "construct:D_det",
            "train:on_D_R",
            "train:on_control",
            "eval:on_D_det",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("extras")), "{names:?}");
        let get = |n: &str| plan.stages.iter().find(|s| s.name == n).unwrap();
        let c = cost(&p.model.arch, [3, 32, 32], 10);
        // C_std: 50k images x 150 epochs, one forward and one training backward each, plus the
        // per-epoch curve (2000 test images) and the final training accuracy.
        let s = get("train:C_std");
        assert_eq!(s.train_backward, 50_000.0 * 150.0);
        assert_eq!(s.forward, 50_000.0 * 150.0 + 2000.0 * 150.0 + 50_000.0);
        // C_rob: PGD-7 = 8 forward passes and 7 input-gradient passes before the training step.
        let s = get("train:C_rob");
        assert_eq!(s.input_backward, 50_000.0 * 150.0 * 7.0);
        assert_eq!(
            s.forward,
            50_000.0 * 150.0 * 9.0 + 2000.0 * 150.0 + 50_000.0
        );
        // D_R: 50k images x 1000 steps.
        let s = get("construct:D_R");
        assert_eq!(s.input_backward, 50_000.0 * 1000.0);
        let f = c.forward_flops();
        assert_eq!(s.flops, 50_000.0 * (1000.0 * 2.0 * f + 3.0 * f));
        // The times follow the rate.
        let total: f64 = plan.stages.iter().map(|s| s.seconds).sum();
        assert!((total - plan.total_seconds).abs() < 1e-6 * total);
        assert!((plan.total_flops / 1e12 - plan.total_seconds).abs() < 1e-6 * plan.total_seconds);
        let half = super::plan(&p, &given(500.0)).unwrap();
        assert!((half.total_hours / plan.total_hours - 2.0).abs() < 1e-9);
    }

    #[test]
    fn seeds_and_overrides_follow_the_preset() {
        let p = preset("cifar10", &["fresh.seeds=3", "relabel.extra_eps=[1.0]"]);
        let plan = plan(&p, &given(1000.0)).unwrap();
        let get = |n: &str| plan.stages.iter().find(|s| s.name == n);
        assert_eq!(get("train:on_D_R").unwrap().seeds, 3);
        assert_eq!(get("train:C_std").unwrap().seeds, 1);
        assert!(get("construct:D_det_eps1").is_some());
        assert!(get("train:on_D_rand_eps1").is_some());
        let one = super::plan(&preset("cifar10", &[]), &given(1000.0)).unwrap();
        let a = get("train:on_D_R").unwrap().flops;
        let b = one
            .stages
            .iter()
            .find(|s| s.name == "train:on_D_R")
            .unwrap()
            .flops;
        assert!((a / b - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_torchscript_source_is_evaluated_not_trained() {
        let p = preset("cifar10", &["sources.c_rob.model=robust.pt"]);
        let plan = plan(&p, &given(1000.0)).unwrap();
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.contains(&"train:C_rob"), "{names:?}");
        for n in ["eval:C_rob", "train:C_std", "eval:C_std", "construct:D_R"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let trained = super::plan(&preset("cifar10", &[]), &given(1000.0)).unwrap();
        assert!(plan.total_flops < trained.total_flops);
    }

    #[test]
    fn extras_share_stages_with_table1() {
        // fashion-mnist: eps_sensitivity 1.0 / 2.0 and train_sizes 10000 reuse Table 1's sets
        // and models; each stage is listed once.
        let p = preset("fashion-mnist", &[]);
        let plan = plan(&p, &given(100.0)).unwrap();
        let mut names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a stage listed twice");
        for s in [
            "construct:D_det_eps4",
            "train:es_on_D_det_eps4",
            "construct:D_rand_n1000",
            "train:ts_on_clean_n3000",
            "train:C_indep",
            "construct:D_R_cos",
            "train:init_tch_on_D_R",
            "train:f3_resnet18_w8_on_D_det_eps2",
            "extras:figure3_transfer",
        ] {
            assert!(names.contains(&s), "{s} missing");
        }
        assert!(!names.contains(&"construct:D_det_eps1"));
        // on_D_det is evaluated fully (Table 1) although eps_sensitivity asks for standard only.
        let e = plan
            .stages
            .iter()
            .find(|s| s.name == "eval:on_D_det")
            .unwrap();
        assert!(e.work.contains("PGD"), "{}", e.work);
    }

    #[test]
    fn bad_gflops_is_an_error_naming_it() {
        let p = preset("smoke", &[]);
        for g in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = format!("{:#}", plan(&p, &given(g)).unwrap_err());
            assert!(e.contains("--gflops"), "{e}");
        }
    }

    #[test]
    fn restricted_imagenet_sizes() {
        let p = preset("restricted-imagenet", &[]);
        let (tr, te, from) = data_sizes(&p, Some(Path::new("/nonexistent"))).unwrap();
        // 203 WordNet ids.
        assert_eq!(tr, 203 * 1281);
        assert_eq!(te, 203 * 50);
        assert!(from.contains("average"), "{from}");
        let p = preset("restricted-imagenet", &["data.max_per_class=100"]);
        assert_eq!(data_sizes(&p, None).unwrap().0, 900);
        assert_eq!(data_shape(&p), ([3, 224, 224], 9));
    }
}
