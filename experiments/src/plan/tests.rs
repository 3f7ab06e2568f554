use super::*;
use crate::preset::Preset;
use nrf_models::flops::cost;
use std::path::Path;

fn preset(name: &str, sets: &[&str]) -> Preset {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Preset::load_with_overrides(name, &sets).unwrap().0
}

fn given(g: f64) -> PlanOptions {
    PlanOptions {
        gflops: Some(g),
        data_dir: None,
        untimed_sources: false,
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
fn figure3_own_models_take_its_seeds_and_reused_ones_keep_fresh_seeds() {
    let seeds = |sets: &[&str], name: &str| {
        let plan = plan(&preset("fashion-mnist", sets), &given(1000.0)).unwrap();
        let s = plan.stages.iter().find(|s| s.name == name);
        s.unwrap_or_else(|| panic!("{name} not planned")).seeds
    };
    // The default: `[fresh] seeds` (3) for every model of Figure 3.
    assert_eq!(seeds(&[], "train:f3_resnet18_w8_on_D_det_eps4"), 3);
    assert_eq!(seeds(&[], "train:f3_vgg16_w8_on_control"), 3);
    // Its own count for its own models; Table 1's models it reuses (at Table 1's eps 2, with
    // figure3_n = relabel.n) keep theirs.
    let own = [
        "extras.figure3_seeds=2",
        "extras.figure3_n=10000",
        "extras.figure3_eps=2.0",
    ];
    assert_eq!(seeds(&own, "train:f3_mlp_512_256_on_D_rand_eps2"), 2);
    assert_eq!(seeds(&own, "train:f3_vgg16_w8_on_control"), 2);
    assert_eq!(seeds(&own, "train:on_D_det_eps2"), 3);
    assert_eq!(seeds(&own, "train:on_control"), 3);
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
    // The stages on the source are marked; a file not here is priced as the preset's model.
    let on = |name: &str| plan.stages.iter().find(|s| s.name == name).unwrap();
    for n in ["eval:C_rob", "construct:D_R"] {
        assert_eq!(on(n).source.as_deref(), Some("C_rob"), "{n}");
    }
    for n in [
        "eval:C_std",
        "construct:D_NR",
        "construct:D_det",
        "train:on_D_R",
    ] {
        assert_eq!(on(n).source, None, "{n}");
    }
    assert_eq!(plan.sources.len(), 1);
    assert_eq!(plan.sources[0].relative_cost, 1.0);
    assert!(plan.sources[0].detail.contains("not on this machine"));
    assert_eq!(
        on("construct:D_R").flops,
        trained
            .stages
            .iter()
            .find(|s| s.name == "construct:D_R")
            .unwrap()
            .flops
    );
}

#[test]
fn extras_share_stages_with_table1() {
    // fashion-mnist: eps_sensitivity 1.0 / 2.0 and train_sizes 10000 reuse Table 1's sets
    // and models, Figure 3 eps_sensitivity's eps-4 sets; each stage is listed once.
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
        "train:f3_resnet18_w8_on_D_det_eps4",
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
fn every_stage_belongs_to_the_part_that_needs_it_first() {
    let p = preset("fashion-mnist", &[]);
    let plan = plan(&p, &given(100.0)).unwrap();
    let part = |n: &str| {
        plan.stages
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .part
            .as_str()
    };
    // Figure 2 / Table 1's stages are the core, also where an extra reuses them (eps_sensitivity
    // at eps 2, train_size at 10000); an extra's own stages are its part.
    for n in [
        "train:C_rob",
        "ensemble:on_D_R",
        "construct:D_det_eps2",
        "train:on_D_det_eps2",
    ] {
        assert_eq!(part(n), CORE_PART, "{n}");
    }
    assert_eq!(part("construct:D_det_eps4"), "eps_sensitivity");
    assert_eq!(part("train:C_indep"), INDEPENDENT_MODEL_PART);
    assert_eq!(part("construct:D_R_cos"), "cosine_ablation");
    assert_eq!(part("train:init_tch_on_D_R"), "init_ablation");
    assert_eq!(part("extras:figure3_transfer"), "figure3");
    assert_eq!(part("construct:D_rand_n1000"), "train_size");
    assert_eq!(part("construct:D_det_dd_all"), "d_det_study");
    // The parts add up to the whole, the core first; their upper-bounded share is the robust
    // evaluations'.
    assert_eq!(plan.by_part[0].part, CORE_PART);
    let sum = |f: fn(&PartTotal) -> f64| plan.by_part.iter().map(f).sum::<f64>();
    assert!((sum(|t| t.sums.flops) - plan.total_flops).abs() < 1e-6 * plan.total_flops);
    let stages: usize = plan.by_part.iter().map(|t| t.sums.stages).sum();
    assert_eq!(stages, plan.stages.len());
    let evals: f64 = plan
        .stages
        .iter()
        .filter(|s| s.kind == "eval" || s.kind == "ensemble")
        .map(|s| s.flops)
        .sum();
    assert!((sum(|t| t.bounded_flops) - evals).abs() < 1e-6 * evals);
    let core = &plan.by_part[0];
    assert!(core.bounded_flops > 0.0 && core.bounded_flops < core.sums.flops);
    // The plan's JSON keeps each total's fields in one object (the sums flattened in).
    let json = serde_json::to_value(&plan).unwrap();
    for key in ["part", "stages", "flops", "seconds", "bounded_flops"] {
        assert!(
            json["by_part"][0].get(key).is_some(),
            "{key}: {}",
            json["by_part"][0]
        );
    }
    for key in ["kind", "stages", "flops", "seconds"] {
        assert!(
            json["by_kind"][0].get(key).is_some(),
            "{key}: {}",
            json["by_kind"][0]
        );
    }
    assert!(plan.to_text().contains("core: Figure 2 + Table 1"));
    // Without extras everything is the core.
    let bare = super::plan(
        &preset("fashion-mnist", &["extras.enabled=false"]),
        &given(100.0),
    )
    .unwrap();
    assert_eq!(bare.by_part.len(), 1);
    assert_eq!(bare.by_part[0].part, CORE_PART);
}

#[test]
fn the_ensemble_is_planned_where_the_pipeline_runs_it() {
    // Only the models whose robustness a claim uses (Figure 2's) get the ensemble; Table 1's
    // models and the extras' fully evaluated ones (cosine, init ablation) get PGD only.
    let p = preset("fashion-mnist", &[]);
    let plan = plan(&p, &given(100.0)).unwrap();
    let ensembles: Vec<&str> = plan
        .stages
        .iter()
        .filter(|s| s.kind == "ensemble")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        ensembles,
        [
            "ensemble:C_std",
            "ensemble:C_rob",
            "ensemble:on_D_R",
            "ensemble:on_D_NR",
            "ensemble:on_control"
        ]
    );
    for s in [
        "eval:on_D_det",
        "eval:cos_on_D_R_cos",
        "eval:init_tch_on_D_R",
    ] {
        let e = plan.stages.iter().find(|x| x.name == s).unwrap();
        assert!(e.work.contains("PGD"), "{s}: {}", e.work);
    }
}

#[test]
fn the_d_det_study_is_planned() {
    let p = preset("fashion-mnist", &[]);
    let study = p.extras.d_det_study.clone().unwrap();
    let plan = plan(&p, &given(100.0)).unwrap();
    let get = |n: &str| {
        plan.stages
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    // Its source models: a ResNet-18 for `source_epochs`, C_rob's recipe at a small eps.
    let big = get("train:dd_C_std_resnet18_w8");
    assert_eq!(big.arch, study.source_arch.label());
    assert_eq!(big.train_backward, 60_000.0 * study.source_epochs as f64);
    assert!(get("train:dd_C_rob_eps0p25").input_backward > 0.0);
    // Six sets of `n` images; EOT multiplies an attack step's passes by its copies, the margin
    // variant has its own steps, the larger-source variant attacks the ResNet-18.
    let n = study.n as f64;
    let paper = get(&format!("construct:D_det_n{}", study.n));
    assert_eq!(paper.input_backward, n * p.relabel.steps as f64);
    let eot = get("construct:D_det_dd_eot");
    assert_eq!(
        eot.input_backward,
        paper.input_backward * study.eot.samples as f64
    );
    let margin = get("construct:D_det_dd_margin");
    assert_eq!(margin.input_backward, n * study.margin_steps as f64);
    assert_eq!(get("construct:D_det_dd_resnet18_w8").arch, big.arch);
    // Fresh models on each, one stage per seed, standard evaluation only.
    let seeds = study.seeds.unwrap_or_else(|| p.fresh_seeds());
    for set in ["D_det_dd_all", "D_det_dd_rob0p25"] {
        get(&format!("train:dd_on_{set}"));
        for k in 1..seeds {
            get(&format!("train:dd_on_{set}_s{k}"));
        }
        assert!(!get(&format!("eval:dd_on_{set}")).work.contains("PGD"));
    }
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
