//! Robust evaluation attacks an example only until it is fooled (the ever-fooled rule makes later
//! steps useless). These tests show that this gives exactly the outcome of the full-batch loop
//! (every clean-correct example attacked for every step), per example, on CPU.

mod common;

use common::{separable_data, Mlp};
use nrf_attacks::{
    cross_entropy, margin, pgd, robust_evaluation, unbounded_attack_accuracy, Linf, PgdConfig,
    StepSize, ThreatModel, Unconstrained, L1, L2,
};
use nrf_data::batch::spans;
use nrf_models::{replicas::WORKERS_ENV, Arch, Classifier, Model, ModelSpec};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// libtorch's random number generator is global: tests that compare random streams must not
/// run at the same time as each other.
static RNG: Mutex<()> = Mutex::new(());

/// The full-batch loop robust evaluation used before (every clean-correct example of a batch
/// attacked for all steps of all restarts by [`pgd`], misclassification recorded at every
/// iterate): per example, correct clean and at every iterate.
fn full_batch_mask(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch_size: i64,
    use_margin: bool,
) -> Tensor {
    let n = images.size()[0];
    let mut parts = Vec::new();
    for (i, len) in spans(n, batch_size) {
        let xb = images.narrow(0, i, len);
        let yb = labels.narrow(0, i, len);
        let clean_ok = tch::no_grad(|| model.logits(&xb, false).argmax(-1, false).eq_tensor(&yb));
        let idx = clean_ok.nonzero().squeeze_dim(1);
        let mut mask = clean_ok.zeros_like();
        if idx.size()[0] > 0 {
            let xa = xb.index_select(0, &idx);
            let ya = yb.index_select(0, &idx);
            let mut alive = ya.ones_like().to_kind(Kind::Bool);
            {
                let mut objective = |x: &Tensor| {
                    let logits = model.logits(x, false);
                    let ok = logits.detach().argmax(-1, false).eq_tensor(&ya);
                    alive = alive.logical_and(&ok);
                    if use_margin {
                        margin(&logits, &ya)
                    } else {
                        cross_entropy(&logits, &ya)
                    }
                };
                pgd(threat, &xa, &xa, cfg, &mut objective, None).unwrap();
            }
            let _ = mask.index_put_(&[Some(idx)], &alive, false);
        }
        parts.push(mask);
    }
    Tensor::cat(&parts, 0)
}

fn mask_vec(t: &Tensor) -> Vec<bool> {
    Vec::<bool>::try_from(&t.to_kind(Kind::Bool).contiguous()).unwrap()
}

/// Shrinking vs full batch for one attack, from the same RNG state; also checks that the RNG
/// is left in the same state (later batches and later attacks see the same random starts).
/// Returns (robust, attacked, work fraction).
fn compare(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch: usize,
) -> (usize, u64, f64) {
    tch::manual_seed(77);
    let old = full_batch_mask(model, x, y, threat, cfg, batch as i64, false);
    let after_old = Tensor::rand([4], (Kind::Float, Device::Cpu));
    // On one worker, and on three (each block of rows on its own replica of the model, where
    // the model has one: nrf's CNN here, not the test MLP).
    let on_workers = |workers: &str| {
        std::env::set_var(WORKERS_ENV, workers);
        tch::manual_seed(77);
        let new = robust_evaluation(model, x, y, threat, cfg, batch, false).unwrap();
        std::env::remove_var(WORKERS_ENV);
        (new, Tensor::rand([4], (Kind::Float, Device::Cpu)))
    };
    let (new, after_new) = on_workers("1");
    let (three, after_three) = on_workers("3");
    let what = format!("{} {}", threat.describe(), cfg.describe());
    assert_eq!(
        mask_vec(&three.robust),
        mask_vec(&old),
        "{what}: per-example outcome differs on three workers"
    );
    assert_eq!(three.work, new.work, "{what}: three workers did other work");
    assert!(
        after_three.equal(&after_new),
        "{what}: the RNG stream differs afterwards on three workers"
    );
    assert_eq!(
        mask_vec(&new.robust),
        mask_vec(&old),
        "{what}: per-example outcome differs"
    );
    let robust = mask_vec(&old).iter().filter(|&&b| b).count();
    assert_eq!(new.acc, robust as f64 / x.size()[0] as f64, "{what}");
    assert!(
        after_old.equal(&after_new),
        "{what}: the RNG stream differs afterwards"
    );
    let w = new.work;
    assert!(
        w.forward_rows <= w.full_forward_rows && w.backward_rows <= w.full_backward_rows,
        "{what}: {w:?}"
    );
    (robust, w.attacked, w.fraction_of_full())
}

#[test]
fn shrinking_equals_full_batch_on_a_trained_mlp() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let d = 8;
    let (x, y) = separable_data(300, d, 0.05, 21);
    let mut model = Mlp::new(d, 32, 2, 22);
    model.train(&x, &y, 300, 0.01);
    let mut mixed = 0;
    for (threat, cfg) in [
        (
            Box::new(L2::new(0.15).unwrap()) as Box<dyn ThreatModel>,
            PgdConfig::eval(0.15, 10),
        ),
        (
            Box::new(L2::new(0.3).unwrap()),
            PgdConfig::eval(0.3, 10).with_restarts(3),
        ),
        (
            Box::new(Linf::new(0.05).unwrap()),
            PgdConfig::eval(0.05, 10),
        ),
        (
            Box::new(L1::with_sparsity(0.3, 0.25).unwrap()),
            PgdConfig::new(10, 0.06).with_use_best(false),
        ),
        // No random start, best iterate kept: the iterates are the same either way.
        (Box::new(L2::new(0.2).unwrap()), PgdConfig::new(8, 0.05)),
    ] {
        // A batch size that leaves a partial last batch.
        let (robust, attacked, frac) = compare(&model, &x, &y, threat.as_ref(), &cfg, 128);
        if robust > 0 && (robust as u64) < attacked {
            mixed += 1;
            assert!(
                frac < 1.0,
                "{}: fooled examples were still attacked",
                cfg.describe()
            );
        }
    }
    assert!(
        mixed >= 3,
        "too few attacks fool some but not all examples: the test says little"
    );
}

#[test]
fn shrinking_equals_full_batch_on_a_cnn() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    // nrf's Fashion-MNIST CNN (convolutions: the kernels that could depend on the batch size),
    // randomly initialised; labels are its own clean predictions with every fifth one changed,
    // so some examples are not attacked at all.
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 3).unwrap();
    tch::manual_seed(5);
    let x = Tensor::rand([150, 1, 28, 28], (Kind::Float, Device::Cpu));
    let pred = tch::no_grad(|| model.logits(&x, false).argmax(-1, false));
    let shift = (Tensor::arange(150, (Kind::Int64, Device::Cpu)).remainder(5)).eq(0);
    let y = pred.where_self(&shift.logical_not(), &((&pred + 1).remainder(10)));
    let mut mixed = 0;
    // Batches of 64, and of all 150 rows: the attack then runs in blocks of
    // `CPU_ROWS_PER_PASS` (128) rows and must still give the full-batch loop's outcome.
    for batch in [64, 150] {
        for eps in [0.02, 0.05, 0.1] {
            let threat = L2::new(eps).unwrap();
            let (robust, attacked, _) =
                compare(&model, &x, &y, &threat, &PgdConfig::eval(eps, 10), batch);
            mixed += usize::from(robust > 0 && (robust as u64) < attacked);
        }
    }
    assert!(
        mixed >= 1,
        "no radius gives a mix of fooled and robust examples"
    );
}

#[test]
fn unbounded_margin_attack_equals_full_batch() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let d = 6;
    let (x, y) = separable_data(200, d, 0.05, 31);
    let mut model = Mlp::new(d, 16, 2, 32);
    model.train(&x, &y, 200, 0.01);
    let steps = 15;
    let diameter = (d as f64).sqrt();
    // The configuration unbounded_attack_accuracy documents.
    let cfg = PgdConfig::new(steps, 0.0)
        .with_step_size(StepSize::Cosine {
            start: 0.1 * diameter,
            end: 0.001 * diameter,
        })
        .with_use_best(false);
    let old = full_batch_mask(&model, &x, &y, &Unconstrained, &cfg, 64, true);
    let old_acc = mask_vec(&old).iter().filter(|&&b| b).count() as f64 / 200.0;
    let new_acc = unbounded_attack_accuracy(&model, &x, &y, steps, 64).unwrap();
    assert_eq!(new_acc, old_acc);
}

/// PGD in blocks of rows (`pgd_by_rows`, used by the constructions) gives every row exactly
/// what one call on all rows gives, for a per-example objective without a random start, on one
/// worker or three (replicas of the model in threads of their own): here representation matching
/// (D_R's objective) and a targeted attack on the CNN, 300 rows.
#[test]
fn pgd_by_rows_equals_one_call_on_all_rows() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 4).unwrap();
    tch::manual_seed(6);
    let n = 300;
    assert!(
        n > nrf_attacks::CPU_ROWS_PER_PASS,
        "the test needs several blocks"
    );
    let x = Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu));
    let x0 = Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu));
    let target_rep = tch::no_grad(|| model.forward_rep(&x, false).1);
    let cfg = PgdConfig::new(5, 0.5).with_use_best(false);
    let whole = {
        let mut obj = nrf_attacks::rep_match(
            &model,
            &target_rep,
            nrf_attacks::Distance::L2Squared,
            nrf_models::RepRelu::Relu,
        );
        nrf_attacks::pgd(&Unconstrained, &x0, &x0, &cfg, &mut obj, None).unwrap()
    };
    for workers in [1, 3] {
        let blocks = nrf_attacks::pgd_by_rows_on(
            &cfg,
            &model,
            [&x0, &target_rep],
            workers,
            |m, [x0b, tb]| {
                let mut obj = nrf_attacks::rep_match(
                    m,
                    &tb,
                    nrf_attacks::Distance::L2Squared,
                    nrf_models::RepRelu::Relu,
                );
                nrf_attacks::pgd(&Unconstrained, &x0b, &x0b, &cfg, &mut obj, None)
            },
        )
        .unwrap();
        assert_eq!(
            mask_bits(&whole.x),
            mask_bits(&blocks.x),
            "rep-matching iterates differ ({workers} workers)"
        );
        assert_eq!(mask_bits(&whole.objective), mask_bits(&blocks.objective));
    }
    // A targeted attack in an L2 ball, best iterate kept.
    let t = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
    let threat = L2::new(1.0).unwrap();
    let cfg = PgdConfig::new(5, 0.1);
    let whole = {
        let mut obj = nrf_attacks::targeted_ce(&model, &t);
        nrf_attacks::pgd(&threat, &x, &x, &cfg, &mut obj, None).unwrap()
    };
    for workers in [1, 3] {
        let blocks = nrf_attacks::pgd_by_rows_on(&cfg, &model, [&x, &t], workers, |m, [xb, tb]| {
            let mut obj = nrf_attacks::targeted_ce(m, &tb);
            nrf_attacks::pgd(&threat, &xb, &xb, &cfg, &mut obj, None)
        })
        .unwrap();
        assert_eq!(
            mask_bits(&whole.x),
            mask_bits(&blocks.x),
            "targeted iterates differ ({workers} workers)"
        );
        assert_eq!(
            Vec::<i64>::try_from(&whole.best_step).unwrap(),
            Vec::<i64>::try_from(&blocks.best_step).unwrap()
        );
    }
    // Rows that do not line up are an error, not a panic.
    let e =
        nrf_attacks::pgd_by_rows_on(&cfg, &model, [&x, &t.narrow(0, 0, 5)], 2, |m, [xb, tb]| {
            let mut obj = nrf_attacks::targeted_ce(m, &tb);
            nrf_attacks::pgd(&threat, &xb, &xb, &cfg, &mut obj, None)
        });
    assert!(e.is_err());
}

/// The bits of a float tensor, to compare exactly.
fn mask_bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1))
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// APGD (cross-entropy and targeted DLR) computes its passes in blocks of rows on the CPU: the
/// adversarial points and the fooled set are the same bit for bit whatever the block size (here
/// one block of all 150 rows against blocks of 128 and of 50, and blocks of 50 on three replica
/// workers), from the same random state.
#[test]
fn apgd_in_blocks_equals_one_block() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 7).unwrap();
    tch::manual_seed(8);
    let x = Tensor::rand([150, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.logits(&x, false).argmax(-1, false));
    let threat = L2::new(0.5).unwrap();
    for cfg in [
        nrf_attacks::ApgdConfig::new(nrf_attacks::ApgdLoss::CrossEntropy, 8),
        nrf_attacks::ApgdConfig::new(nrf_attacks::ApgdLoss::DlrTargeted { targets: 2 }, 6),
    ] {
        let run = |rows: &str, workers: &str| {
            // The block size and the workers are read at every pass; results must not depend on
            // them (the test binary's other tests are indifferent to them for the same reason).
            std::env::set_var("NRF_CPU_ROWS_PER_PASS", rows);
            std::env::set_var(WORKERS_ENV, workers);
            tch::manual_seed(9);
            let out = nrf_attacks::apgd(&model, &x, &y, &threat, &cfg).unwrap();
            std::env::remove_var("NRF_CPU_ROWS_PER_PASS");
            std::env::remove_var(WORKERS_ENV);
            (mask_bits(&out.x), mask_vec(&out.fooled))
        };
        let one = run("1000", "1");
        assert_eq!(
            one,
            run("128", "1"),
            "{}: blocks of 128 differ",
            cfg.describe()
        );
        assert_eq!(
            one,
            run("50", "1"),
            "{}: blocks of 50 differ",
            cfg.describe()
        );
        assert_eq!(
            one,
            run("50", "3"),
            "{}: three workers differ",
            cfg.describe()
        );
        let fooled = one.1.iter().filter(|&&f| f).count();
        assert!(
            fooled > 0 && fooled < 150,
            "{}: {fooled} of 150 fooled: the test says little",
            cfg.describe()
        );
    }
}

/// `pgd_attack` (one restart, random start: adversarial training's attack) in blocks of rows on
/// one or three replica workers: the same adversarial points bit for bit as one call on all rows,
/// untargeted and targeted, and the same random stream afterwards.
#[test]
fn pgd_attack_in_blocks_equals_one_call() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 4).unwrap();
    tch::manual_seed(6);
    let x = Tensor::rand([150, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.logits(&x, false).argmax(-1, false));
    let t = (&y + 3).remainder(10);
    let threat = L2::new(0.5).unwrap();
    let cfg = PgdConfig::new(4, 0.3)
        .with_random_start(true)
        .with_use_best(true);
    for target in [None, Some(&t)] {
        let run = |rows: &str, workers: &str| {
            std::env::set_var("NRF_CPU_ROWS_PER_PASS", rows);
            std::env::set_var(WORKERS_ENV, workers);
            tch::manual_seed(10);
            let adv = nrf_attacks::pgd_attack(&model, &x, &y, &threat, &cfg, target).unwrap();
            let after = Tensor::rand([4], (Kind::Float, Device::Cpu));
            std::env::remove_var("NRF_CPU_ROWS_PER_PASS");
            std::env::remove_var(WORKERS_ENV);
            (mask_bits(&adv), mask_bits(&after))
        };
        let one = run("1000", "1");
        // `assert!` on `==`: a failure prints the message, not 117,600 bit patterns.
        let targeted = target.is_some();
        assert!(one.0 != mask_bits(&x), "the attack moved nothing");
        assert!(
            one == run("50", "1"),
            "blocks of 50 differ (targeted: {targeted})"
        );
        assert!(
            one == run("50", "3"),
            "three workers differ (targeted: {targeted})"
        );
    }
}

/// Square's forward passes in blocks of rows: the same adversarial points and fooled set bit for
/// bit whatever the block size.
#[test]
fn square_in_blocks_equals_one_block() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 10).unwrap();
    tch::manual_seed(11);
    let x = Tensor::rand([150, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.logits(&x, false).argmax(-1, false));
    let threat = L2::new(0.5).unwrap();
    let cfg = nrf_attacks::SquareConfig::new(30);
    let run = |rows: &str| {
        std::env::set_var("NRF_CPU_ROWS_PER_PASS", rows);
        let out = nrf_attacks::square(&model, &x, &y, &threat, &cfg).unwrap();
        std::env::remove_var("NRF_CPU_ROWS_PER_PASS");
        (mask_bits(&out.x), mask_vec(&out.fooled))
    };
    let one = run("1000");
    assert_eq!(one, run("50"), "Square in blocks of 50 differs");
    let fooled = one.1.iter().filter(|&&f| f).count();
    assert!(
        fooled > 0 && fooled < 150,
        "{fooled} of 150 fooled: the test says little"
    );
}
