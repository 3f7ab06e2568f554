//! The stage walk: the stages of a preset's reproduce run, in the pipeline's order.
use super::work::{Builder, Passes};
use super::{StagePlan, INDEPENDENT_MODEL_PART};
use crate::extras::arch_slug;
use crate::extras::d_det::SourceModel;
use crate::preset::{DDetStudy, IndependentModel, Preset, TrainSection};
use crate::table1::{self, set_name};
use nrf_features::relabel::TargetRule;
use nrf_models::Arch;
use nrf_results::ModelKind as K;
use nrf_results::{ModelRole, Varies};

/// The stages of `p`'s reproduce run on `train_n` / `test_n` images, with their passes.
pub(super) fn stages(p: &Preset, train_n: usize, test_n: usize) -> Vec<(StagePlan, Passes, Arch)> {
    let mut b = Builder::new(p, test_n);
    let arch = p.model.arch.clone();
    // Figure 2's sources ([`crate::figure2::source_models`]) and the construction subset.
    let main = ModelRole::Main;
    // A source model file (`[sources]`) is not trained, only evaluated (at the file's own cost,
    // measured by [`crate::plan`], as every stage that runs on it).
    for (name, kind, section) in [
        ("C_std", K::Std, &p.train_std),
        ("C_rob", K::Rob, &p.train_rob),
    ] {
        if p.sources.of(name).is_some() {
            b.on_source(name, |b| b.eval(name, main(kind), &arch, true, 1));
        } else {
            b.model(name, main(kind), &arch, train_n, section, true);
        }
    }
    let subset = p.rep_match.n.max(p.relabel.n).min(train_n);
    let rep_n = p.rep_match.n.min(subset);
    let rel_n = p.relabel.n.min(subset);
    // Figure 2 ([`crate::figure2::run`]).
    b.rep("D_NR", rep_n, "C_std");
    b.rep("D_R", rep_n, "C_rob");
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

/// The extras of [`crate::extras::jobs`], in its order.
fn extras(b: &mut Builder, train_n: usize, subset: usize, rep_n: usize, rel_n: usize) {
    use crate::extras::{cosine, d_det, eps_sensitivity, figure3, init_ablation, train_size};
    let e = &b.p.extras;
    if (e.diversity || e.source_vs_target) && e.independent_model == IndependentModel::CIndep {
        b.in_part(INDEPENDENT_MODEL_PART, |b| {
            c_indep(b, train_n, subset, rep_n)
        });
    }
    if e.cosine_ablation {
        b.in_part(cosine::ID, |b| cosine_ablation(b, rep_n));
    }
    if e.init_ablation {
        b.in_part(init_ablation::ID, |b| init_ablation(b, rep_n));
    }
    b.in_part(eps_sensitivity::ID, |b| eps_sensitivity(b, rel_n));
    if e.figure3 {
        b.in_part(figure3::ID, |b| figure3(b, rep_n, rel_n));
    }
    if !e.train_sizes.is_empty() {
        b.in_part(train_size::ID, |b| train_sizes(b, train_n, rep_n, rel_n));
    }
    if let Some(study) = &e.d_det_study {
        b.in_part(d_det::ID, |b| d_det_study(b, study, train_n, rel_n));
    }
    // diversity, source_vs_target, overfitting: distances and reads of results, seconds.
}

/// `C_indep`, the independent model of `diversity` and `source_vs_target`.
fn c_indep(b: &mut Builder, train_n: usize, subset: usize, rep_n: usize) {
    let p = b.p;
    let arch = p.model.arch.clone();
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

/// `cosine_ablation`: D_R built with the other distance, and a model trained on it.
fn cosine_ablation(b: &mut Builder, rep_n: usize) {
    let p = b.p;
    let arch = p.model.arch.clone();
    let (_, alt) = crate::extras::cosine::alternative(p.rep_match.distance);
    b.rep(alt, rep_n, "C_rob");
    let role = ModelRole::Extra {
        set: K::DR,
        varies: Varies::Distance,
    };
    b.model(&format!("cos_on_{alt}"), role, &arch, rep_n, &p.fresh, true);
}

/// `init_ablation`: Figure 2's models with the other initialisation.
fn init_ablation(b: &mut Builder, rep_n: usize) {
    let p = b.p;
    let arch = p.model.arch.clone();
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

/// `eps_sensitivity`: D_rand / D_det at every radius, and a model trained on each.
fn eps_sensitivity(b: &mut Builder, rel_n: usize) {
    let p = b.p;
    let e = &p.extras;
    let arch = p.model.arch.clone();
    let r = &p.relabel;
    for (prefix, rule) in [
        ("D_rand", TargetRule::Random),
        ("D_det", TargetRule::Deterministic),
    ] {
        for &eps in &e.eps_sensitivity {
            let name = set_name(prefix, eps, r.eps);
            b.relabel(&name, rel_n);
            let (model, role) = table1::radius_model(r, rule, eps, &name);
            b.model(&model, role, &arch, rel_n, &p.fresh, false);
        }
    }
}

/// `figure3`: per architecture, models on D_det, D_rand and the clean control; then the
/// transfer stage.
fn figure3(b: &mut Builder, rep_n: usize, rel_n: usize) {
    let p = b.p;
    let e = &p.extras;
    let arch = p.model.arch.clone();
    let r = &p.relabel;
    let main = ModelRole::Main;
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
            let seeds = crate::extras::figure3::model_seeds(p, role);
            b.model_seeds(&name, role, a, n, &p.fresh, false, seeds);
        }
        let (std_name, std_role) = if own && same_control {
            ("on_control".to_string(), main(K::Control))
        } else {
            (format!("f3_{slug}_on_control"), extra_role(K::Control))
        };
        let seeds = crate::extras::figure3::model_seeds(p, std_role);
        b.model_seeds(&std_name, std_role, a, n, &p.fresh, false, seeds);
    }
    // Targeted attacks on C_std (robust_n images), then every standard model's predictions.
    let rn = p.eval.robust_n.min(b.test_n);
    let passes = Passes::attack(rn, r.steps).plus(Passes::forward(2 * rn));
    let words = format!(
        "{rn} img x targeted PGD-{} on C_std, then predictions",
        r.steps
    );
    b.on_source("C_std", |b| {
        b.push(
            "extras:figure3_transfer".into(),
            "extras",
            &arch,
            rn,
            words,
            1,
            passes,
        )
    });
}

/// `train_sizes`: D_rand / D_det and a clean control at every size, and a model on each.
fn train_sizes(b: &mut Builder, train_n: usize, rep_n: usize, rel_n: usize) {
    let p = b.p;
    let arch = p.model.arch.clone();
    let main = ModelRole::Main;
    let base = rel_n;
    let control_is_table1 = rep_n == base;
    for &n in &p.extras.train_sizes {
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

/// `d_det_study` ([`crate::extras::d_det`]): its two source models on D, six rebuilt D_det of
/// `n` images (one of them the paper's recipe, shared with `train_sizes` when it has that size)
/// and `seeds` fresh models on each, evaluated for test accuracy only.
fn d_det_study(b: &mut Builder, study: &DDetStudy, train_n: usize, rel_n: usize) {
    let p = b.p;
    let arch = p.model.arch.clone();
    let r = &p.relabel;
    let n = study.n.min(rel_n);
    let seeds = study.seeds.unwrap_or_else(|| p.fresh_seeds());
    let source_role = |set, varies| ModelRole::Extra { set, varies };
    let (big, rob) = crate::extras::d_det::source_names(study);
    let std_section = TrainSection {
        epochs: study.source_epochs,
        ..p.train_std.clone()
    };
    b.model(
        &big,
        source_role(K::Std, Varies::Architecture),
        &study.source_arch,
        train_n,
        &std_section,
        true,
    );
    let rob_section = TrainSection {
        epochs: study.robust_source_epochs,
        ..p.train_rob.clone()
    };
    b.model(
        &rob,
        source_role(K::Rob, Varies::Eps),
        &arch,
        train_n,
        &rob_section,
        true,
    );
    // The study's own list of variants: a `[sources]` file for C_std prices the ones built on
    // it; the other two sources are the study's own models.
    let variants = crate::extras::d_det::recipes(r, study, n);
    for v in &variants {
        let (source, on_c_std) = match v.source {
            SourceModel::CStd => (&arch, true),
            SourceModel::Larger => (&study.source_arch, false),
            SourceModel::Robust => (&arch, false),
        };
        let copies = v.attack.eot.map_or(1, |e| e.samples);
        let push = |b: &mut Builder| b.targeted(&v.name, n, source, v.steps, copies);
        if on_c_std {
            b.on_source("C_std", push);
        } else {
            push(b);
        }
    }
    let role = ModelRole::Extra {
        set: K::DDet,
        varies: Varies::Construction,
    };
    for set in variants.iter().map(|v| &v.name) {
        for s in 0..seeds {
            let name = match s {
                0 => format!("dd_on_{set}"),
                s => format!("dd_on_{set}_s{s}"),
            };
            b.model(&name, role, &arch, n, &p.fresh, false);
        }
    }
}
