//! Unit tests: configuration errors, schedules, gradients, representation matching, checks.

mod common;

use common::{LinearModel, Mlp};
use nrf_attacks::{
    accelerator_rows_per_pass, accuracy, fgsm, pgd, pgd_attack, rep_distance, rep_match,
    robust_accuracy, sanity_check, untargeted_ce, AdvTraining, Distance, Linf, Norm, PgdConfig,
    RobustPoint, StepSize, ThreatModel, ThreatSpec, Unconstrained, L1, L2,
};
use nrf_models::{BatchPerturber, Classifier};
use tch::{Device, Kind, Tensor};

fn rand(shape: &[i64]) -> Tensor {
    Tensor::rand(shape, (Kind::Float, Device::Cpu))
}

fn err_msg<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn bad_threat_models_are_rejected() {
    common::init();
    assert!(err_msg(L2::new(-0.1)).contains("eps"));
    assert!(err_msg(Linf::new(f64::NAN)).contains("eps"));
    assert!(err_msg(L1::with_sparsity(1.0, 0.0)).contains("sparsity"));
    // A hand-built struct with a bad eps is caught by pgd itself.
    let model = LinearModel::from_vecs(&[1.0, -1.0], &[0.0, 0.0], 1, 2);
    let x = rand(&[2, 1]);
    let y = Tensor::from_slice(&[0i64, 1]);
    let msg = err_msg(pgd_attack(
        &model,
        &x,
        &y,
        &L2 { eps: -1.0 },
        &PgdConfig::new(3, 0.1),
        None,
    ));
    assert!(msg.contains("eps must be a non-negative number"), "{msg}");
    assert!(msg.contains("PGD"), "{msg}");
}

#[test]
fn bad_configs_are_rejected() {
    common::init();
    let model = LinearModel::from_vecs(&[1.0, -1.0], &[0.0, 0.0], 1, 2);
    let x = rand(&[2, 1]);
    let y = Tensor::from_slice(&[0i64, 1]);
    let t = L2::new(0.5).unwrap();
    let msg = err_msg(pgd_attack(
        &model,
        &x,
        &y,
        &t,
        &PgdConfig::new(0, 0.1).with_use_best(false),
        None,
    ));
    assert!(msg.contains("steps"), "{msg}");
    let msg = err_msg(pgd_attack(
        &model,
        &x,
        &y,
        &t,
        &PgdConfig::new(3, 0.1).with_restarts(0),
        None,
    ));
    assert!(msg.contains("restarts"), "{msg}");
    let msg = err_msg(pgd_attack(
        &model,
        &x,
        &y,
        &t,
        &PgdConfig::new(3, -0.1),
        None,
    ));
    assert!(msg.contains("step size"), "{msg}");
    let cos = PgdConfig::new(3, 0.1).with_step_size(StepSize::Cosine {
        start: 0.1,
        end: f64::NAN,
    });
    assert!(err_msg(pgd_attack(&model, &x, &y, &t, &cos, None)).contains("cosine"));
    // steps = 0 with use_best is allowed: it evaluates and returns the start point.
    let out = pgd_attack(&model, &x, &y, &t, &PgdConfig::new(0, 0.1), None).unwrap();
    assert!(out.allclose(&x, 0.0, 0.0, false));
}

#[test]
fn bad_inputs_are_rejected() {
    common::init();
    let model = LinearModel::from_vecs(&[1.0, -1.0], &[0.0, 0.0], 1, 2);
    let t = L2::new(0.5).unwrap();
    let cfg = PgdConfig::new(2, 0.1);
    let x = rand(&[2, 1]);
    let y = Tensor::from_slice(&[0i64, 1]);
    assert!(err_msg(pgd_attack(
        &model,
        &x,
        &Tensor::from_slice(&[0i64]),
        &t,
        &cfg,
        None
    ))
    .contains("labels"));
    assert!(err_msg(pgd_attack(
        &model,
        &x,
        &Tensor::from_slice(&[0i64, 2]),
        &t,
        &cfg,
        None
    ))
    .contains("0..2"));
    assert!(err_msg(pgd_attack(
        &model,
        &x,
        &Tensor::from_slice(&[0.0f32, 1.0]),
        &t,
        &cfg,
        None
    ))
    .contains("int64"));
    assert!(err_msg(pgd_attack(&model, &(&x + 2.0), &y, &t, &cfg, None)).contains("[0, 1]"));
    let nan = Tensor::from_slice(&[f32::NAN, 0.5]).view([2, 1]);
    assert!(err_msg(pgd_attack(&model, &nan, &y, &t, &cfg, None)).contains("NaN"));
    let msg = err_msg(pgd(
        &t,
        &x,
        &rand(&[3, 1]),
        &cfg,
        &mut untargeted_ce(&model, &y),
        None,
    ));
    assert!(msg.contains("shape"), "{msg}");
    // The objective must return one value per example.
    let msg = err_msg(pgd(
        &t,
        &x,
        &x,
        &cfg,
        &mut |x: &Tensor| x.sum(Kind::Float),
        None,
    ));
    assert!(msg.contains("one value per example"), "{msg}");
    assert!(err_msg(accuracy(&model, &x, &y, 0)).contains("batch_size"));
    assert!(err_msg(fgsm(&model, &x, &y, &Unconstrained)).contains("finite eps"));
}

#[test]
fn nan_objective_names_the_attack() {
    common::init();
    let x = rand(&[3, 4]);
    let t = Linf::new(0.1).unwrap();
    let mut calls = 0;
    let mut objective = |x: &Tensor| {
        calls += 1;
        let v = x.sum_dim_intlist([1i64].as_slice(), false, None::<Kind>);
        if calls == 2 {
            v * f64::NAN
        } else {
            v
        }
    };
    let msg = err_msg(pgd(
        &t,
        &x,
        &x,
        &PgdConfig::new(5, 0.01),
        &mut objective,
        None,
    ));
    assert!(
        msg.contains("PGD (Linf eps=0.1") && msg.contains("NaN") && msg.contains("iterate 1"),
        "{msg}"
    );
}

#[test]
fn accelerator_passes_are_bounded_by_input_size() {
    // Restricted ImageNet at 224 px: 1,000 images go in passes of 445, never all at once.
    let imagenet = 3 * 224 * 224;
    assert_eq!(accelerator_rows_per_pass(1000, imagenet), 445);
    assert_eq!(accelerator_rows_per_pass(100, imagenet), 100);
    // Small images: a whole evaluation subset in one pass, as before.
    assert_eq!(accelerator_rows_per_pass(1000, 28 * 28), 1000);
    assert_eq!(accelerator_rows_per_pass(10_000, 3 * 32 * 32), 10_000);
    // A row larger than the budget still goes, alone; no rows and no values are not errors.
    assert_eq!(accelerator_rows_per_pass(8, 1 << 27), 1);
    assert_eq!(accelerator_rows_per_pass(0, 10), 1);
    assert_eq!(accelerator_rows_per_pass(5, 0), 5);
}

#[test]
fn cosine_schedule_endpoints() {
    common::init();
    let s = StepSize::Cosine {
        start: 0.2,
        end: 0.002,
    };
    assert!((s.at(0, 300) - 0.2).abs() < 1e-12);
    assert!((s.at(299, 300) - 0.002).abs() < 1e-12);
    assert!((s.at(150, 301) - 0.101).abs() < 1e-9);
    assert!((1..300).all(|t| s.at(t, 300) <= s.at(t - 1, 300)));
    assert_eq!(s.at(0, 1), 0.2);
    assert_eq!(StepSize::Constant(0.3).at(7, 10), 0.3);
}

#[test]
fn no_parameter_gradients_accumulate() {
    common::init();
    let model = Mlp::new(6, 8, 3, 1);
    let x = rand(&[4, 6]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
    let _ = pgd_attack(
        &model,
        &x,
        &y,
        &L2::new(0.5).unwrap(),
        &PgdConfig::new(5, 0.2),
        None,
    )
    .unwrap();
    for (name, p) in model.vs.variables() {
        let g = p.grad();
        assert!(
            !g.defined() || g.abs().sum(Kind::Float).double_value(&[]) == 0.0,
            "{name} got a gradient"
        );
    }
}

#[test]
fn pgd_works_under_no_grad() {
    common::init();
    let model = Mlp::new(6, 8, 3, 2);
    let x = rand(&[4, 6]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
    let _g = tch::no_grad_guard();
    let adv = pgd_attack(
        &model,
        &x,
        &y,
        &L2::new(0.5).unwrap(),
        &PgdConfig::new(5, 0.2),
        None,
    )
    .unwrap();
    assert!(!adv.allclose(&x, 1e-6, 1e-6, false));
}

#[test]
fn restarts_keep_the_best_run() {
    common::init();
    let model = Mlp::new(5, 8, 3, 3);
    let x = rand(&[4, 5]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
    let t = Linf::new(0.3).unwrap();
    let cfg = PgdConfig::new(3, 0.05)
        .with_random_start(true)
        .with_use_best(false);
    let mut finals: Vec<Tensor> = Vec::new();
    let mut record = |i: usize, x: &Tensor| {
        if i == 3 {
            finals.push(nrf_attacks::cross_entropy(&model.logits(x, false), &y));
        }
    };
    let out = pgd(
        &t,
        &x,
        &x,
        &cfg.with_restarts(4),
        &mut untargeted_ce(&model, &y),
        Some(&mut record),
    )
    .unwrap();
    assert_eq!(finals.len(), 4);
    let best = Tensor::stack(&finals, 0).amax([0i64].as_slice(), false);
    assert!(best.allclose(&out.objective, 1e-5, 1e-6, false));
}

#[test]
fn rep_match_with_unconstrained_pulls_representations_together() {
    common::init();
    // D_R construction in miniature: start from another input x0, match g(x).
    let model = Mlp::new(10, 16, 4, 4);
    let x = rand(&[3, 10]);
    let x0 = rand(&[3, 10]);
    let target = tch::no_grad(|| model.forward_rep(&x, false).1);
    let cfg = PgdConfig::new(200, 0.0)
        .with_step_size(StepSize::Cosine {
            start: 0.2,
            end: 0.002,
        })
        .with_use_best(false);
    for dist in [Distance::L2Squared, Distance::L2Relative, Distance::Cosine] {
        let out = pgd(
            &Unconstrained,
            &x0,
            &x0,
            &cfg,
            &mut rep_match(&model, &target, dist, nrf_models::RepRelu::Relu),
            None,
        )
        .unwrap();
        let dist_to_target =
            |z: &Tensor| rep_distance(&model.forward_rep(z, false).1, &target, dist);
        let (before, after) = tch::no_grad(|| (dist_to_target(&x0), dist_to_target(&out.x)));
        let ratio = (&after / &before).max().double_value(&[]);
        assert!(ratio < 0.25, "{dist:?}: distance {before:?} -> {after:?}");
        // The returned objective is minus the distance at the returned point.
        assert!(out.objective.allclose(&(-after), 1e-5, 1e-6, false));
        assert!(out.x.min().double_value(&[]) >= 0.0 && out.x.max().double_value(&[]) <= 1.0);
    }
}

#[test]
fn robust_accuracy_of_a_linear_model_matches_the_margin() {
    common::init();
    // Binary linear model with unit-norm w: an example is L2-robust at eps iff its margin
    // |w·x + b| exceeds eps (when the box does not interfere: points near the centre, small eps).
    // Without a random start PGD walks straight along w and reaches the optimum exactly.
    let model = LinearModel::from_vecs(&[0.6, -0.6, 0.8, -0.8], &[-0.7, 0.7], 2, 2);
    // logits difference z0 - z1 = 1.2 x0 + 1.6 x1 - 1.4 → ‖w‖ = 2.
    tch::manual_seed(5);
    let x = rand(&[200, 2]) * 0.4 + 0.3;
    let s = (x.select(1, 0) * 1.2 + x.select(1, 1) * 1.6 - 1.4) / 2.0;
    let y = s.lt(0.0).to_kind(Kind::Int64);
    let eps = 0.05;
    let expected = s.abs().gt(eps).sum(Kind::Int64).int64_value(&[]) as f64 / 200.0;
    let acc = robust_accuracy(
        &model,
        &x,
        &y,
        &L2::new(eps).unwrap(),
        &PgdConfig::new(10, 0.25 * eps),
        64,
        false,
    )
    .unwrap();
    assert!(
        (acc - expected).abs() < 1e-9,
        "robust acc {acc} vs exact {expected}"
    );
    assert_eq!(accuracy(&model, &x, &y, 64).unwrap(), 1.0);
}

#[test]
fn sanity_check_flags_rising_accuracy() {
    common::init();
    let e = |norm: &str, eps: f64, acc: f64| RobustPoint {
        norm: norm.into(),
        eps,
        steps: 20,
        acc,
        n: 1000,
        attack: None,
    };
    let good = [
        e("L2", 0.25, 0.6),
        e("L2", 0.5, 0.4),
        e("Linf", 0.1, 0.2),
        e("L2", 1.0, 0.1),
    ];
    assert!(sanity_check(&good).is_empty());
    let bad = [
        e("L2", 0.25, 0.6),
        e("L2", 1.0, 0.3),
        e("L2", 0.5, 0.2),
        e("unconstrained", f64::INFINITY, 0.3),
    ];
    let w = sanity_check(&bad);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w
        .iter()
        .any(|s| s.contains("eps=0.5") && s.contains("eps=1")));
    assert!(w.iter().any(|s| s.contains("unbounded")));
}

#[test]
fn adv_training_perturbs_within_the_ball() {
    common::init();
    let model = Mlp::new(6, 8, 3, 6);
    let x = rand(&[5, 6]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1]);
    let hook = AdvTraining::l2(0.5, 7).unwrap();
    let adv = hook.perturb(&model, &x, &y).unwrap();
    assert!(hook.threat.distance(&adv, &x).max().double_value(&[]) <= 0.5 + 1e-5);
    let loss = |z: &Tensor| {
        nrf_attacks::cross_entropy(&model.logits(z, false), &y)
            .mean(Kind::Float)
            .double_value(&[])
    };
    assert!(loss(&adv) > loss(&x));
    assert!(
        hook.describe().contains("L2 eps=0.5"),
        "{}",
        hook.describe()
    );
    assert!(AdvTraining::l2(-1.0, 7).is_err());
}

#[test]
fn threat_spec_round_trips_and_builds() {
    common::init();
    let specs = [
        ThreatSpec::L2 { eps: 0.5 },
        ThreatSpec::Linf { eps: 0.1 },
        ThreatSpec::L1 {
            eps: 5.0,
            sparsity: 0.05,
        },
        ThreatSpec::Unconstrained,
    ];
    for s in specs {
        let json = serde_json::to_string(&s).unwrap();
        let back: ThreatSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        s.build().unwrap();
    }
    let l1: ThreatSpec = serde_json::from_str(r#"{"norm":"l1","eps":2.0}"#).unwrap();
    assert_eq!(
        l1.build().unwrap().describe(),
        format!("L1 eps=2 sparsity={}", L1::DEFAULT_SPARSITY)
    );
    assert!(ThreatSpec::L2 { eps: -1.0 }.build().is_err());
    let cfg = PgdConfig::eval(0.5, 20);
    let back: PgdConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn l1_step_skips_stuck_coordinates_and_is_sparse() {
    common::init();
    let t = L1::with_sparsity(1.0, 0.5).unwrap();
    // Coordinate 0 sits at 1 with the gradient pushing up: skipped.
    let x = Tensor::from_slice(&[1.0f32, 0.5, 0.5, 0.5]).view([1, 4]);
    let g = Tensor::from_slice(&[10.0f32, -3.0, 2.0, 0.1]).view([1, 4]);
    let s = t.step(&x, &g, 0.2) - &x;
    let expected = Tensor::from_slice(&[0.0f32, -0.1, 0.1, 0.0]).view([1, 4]);
    assert!(s.allclose(&expected, 1e-6, 1e-6, false), "{s:?}");
}

/// `Norm` as presets spell it ("l2", "linf"), and the ball it builds (validated).
#[test]
fn norm_spellings_and_balls() {
    for (norm, text, name) in [(Norm::L2, "\"l2\"", "L2"), (Norm::Linf, "\"linf\"", "Linf")] {
        assert_eq!(serde_json::to_string(&norm).unwrap(), text);
        assert_eq!(serde_json::from_str::<Norm>(text).unwrap(), norm);
        let ball = norm.ball(0.5).unwrap();
        assert_eq!((ball.name(), ball.eps()), (name, 0.5));
    }
    assert!(Norm::L2.ball(-1.0).is_err());
    let e = serde_json::from_str::<Norm>("\"l1\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`l2`") && e.contains("`linf`"), "{e}");
}
