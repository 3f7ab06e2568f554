//! APGD and the ensemble evaluation on a small trained model (4 classes, so that every loss,
//! the targeted DLR included, applies). The agreement with torchattacks' reference
//! implementation is tested in tests/apgd_reference.rs at the workspace root.

mod common;

use common::Mlp;
use nrf_attacks::{
    apgd, ensemble_evaluation, robust_accuracy, square, ApgdConfig, ApgdLoss, EnsembleAttack, Linf,
    PgdConfig, SquareConfig, ThreatModel, L1, L2,
};
use nrf_models::Classifier;
use tch::{Device, Kind, Tensor};

/// Inputs are 6 x 6 single-channel images (flattened by the MLP), so that Square's windows fit.
const D: i64 = 36;

/// Four classes in `[0, 1]^D`: the signs of two random directions through the centre.
fn quadrant_data(n: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let w = Tensor::randn([D, 2], (Kind::Float, Device::Cpu));
    let x = Tensor::rand([n, D], (Kind::Float, Device::Cpu));
    let s = (&x - 0.5).matmul(&w).gt(0.0).to_kind(Kind::Int64);
    let y = s.select(1, 0) * 2 + s.select(1, 1);
    (x, y)
}

fn trained() -> (Mlp, Tensor, Tensor) {
    common::init();
    let (x, y) = quadrant_data(600, 3);
    let mut model = Mlp::new(D, 64, 4, 5);
    model.train(&x, &y, 400, 0.01);
    (model, x, y)
}

fn rate(mask: &Tensor) -> f64 {
    mask.to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

fn losses() -> [ApgdLoss; 3] {
    [
        ApgdLoss::CrossEntropy,
        ApgdLoss::Dlr,
        ApgdLoss::DlrTargeted { targets: 3 },
    ]
}

#[test]
fn apgd_stays_in_the_ball_and_its_fooled_examples_are_misclassified() {
    let (model, x, y) = trained();
    let clean_ok = model.logits(&x, false).argmax(-1, false).eq_tensor(&y);
    assert!(
        rate(&clean_ok) > 0.9,
        "training failed: {}",
        rate(&clean_ok)
    );
    let threats: Vec<Box<dyn ThreatModel>> = vec![
        Box::new(L2::new(0.3).unwrap()),
        Box::new(Linf::new(0.08).unwrap()),
    ];
    for threat in &threats {
        for loss in losses() {
            let out = apgd(&model, &x, &y, threat.as_ref(), &ApgdConfig::new(loss, 30)).unwrap();
            let what = format!("{} {loss:?}", threat.describe());
            let dist = threat.distance(&out.x, &x).max().double_value(&[]);
            assert!(
                dist <= threat.eps() + 1e-5,
                "{what}: left the ball ({dist})"
            );
            assert!(out.x.min().double_value(&[]) >= 0.0 && out.x.max().double_value(&[]) <= 1.0);
            // Every clean-wrong example counts as fooled; every fooled example's x is wrong.
            let wrong_clean = clean_ok.logical_not();
            assert!(
                out.fooled
                    .logical_and(&wrong_clean)
                    .eq_tensor(&wrong_clean)
                    .all()
                    .int64_value(&[])
                    == 1,
                "{what}: a clean-wrong example is not counted as fooled"
            );
            let pred_ok = model.logits(&out.x, false).argmax(-1, false).eq_tensor(&y);
            let fooled_but_right = out
                .fooled
                .logical_and(&pred_ok)
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert_eq!(
                fooled_but_right, 0,
                "{what}: a fooled example's adversarial x is correct"
            );
            // The attack works: it fools a good share of the correct examples at this radius.
            let robust = 1.0 - rate(&out.fooled);
            assert!(
                robust < rate(&clean_ok) - 0.1,
                "{what}: robust {robust} barely below clean"
            );
        }
    }
}

#[test]
fn apgd_is_no_weaker_than_pgd_20() {
    let (model, x, y) = trained();
    let n = x.size()[0] as f64;
    for (threat, pgd) in [
        (
            Box::new(L2::new(0.2).unwrap()) as Box<dyn ThreatModel>,
            PgdConfig::eval(0.2, 20),
        ),
        (
            Box::new(Linf::new(0.05).unwrap()),
            PgdConfig::eval(0.05, 20),
        ),
    ] {
        let pgd_acc = robust_accuracy(&model, &x, &y, threat.as_ref(), &pgd, 600, false).unwrap();
        let out = apgd(
            &model,
            &x,
            &y,
            threat.as_ref(),
            &ApgdConfig::new(ApgdLoss::CrossEntropy, 50),
        )
        .unwrap();
        let apgd_acc = 1.0 - rate(&out.fooled);
        // Different random starts: allow 2% of the examples.
        assert!(
            apgd_acc <= pgd_acc + 0.02 + 1.0 / n,
            "{}: APGD-CE {apgd_acc} vs PGD-20 {pgd_acc}",
            threat.describe()
        );
    }
}

#[test]
fn ensemble_keeps_the_worst_case_per_example() {
    let (model, x, y) = trained();
    let threat = L2::new(0.25).unwrap();
    let attacks = [
        EnsembleAttack::Pgd(PgdConfig::eval(0.25, 10)),
        EnsembleAttack::Apgd(ApgdConfig::new(ApgdLoss::CrossEntropy, 20)),
        EnsembleAttack::Apgd(ApgdConfig::new(ApgdLoss::DlrTargeted { targets: 3 }, 20)),
    ];
    let r = ensemble_evaluation(&model, &x, &y, &threat, &attacks, 256).unwrap();
    assert_eq!(r.after.len(), 3);
    assert_eq!(r.fooled_by.len(), 3);
    for w in r.after.windows(2) {
        assert!(w[1].1 <= w[0].1, "the worst case rose: {:?}", r.after);
    }
    assert_eq!(r.after[2].1, r.acc);
    let clean_ok = model.logits(&x, false).argmax(-1, false).eq_tensor(&y);
    let n_clean = clean_ok.sum(Kind::Int64).int64_value(&[]) as usize;
    let n_robust = r.robust.sum(Kind::Int64).int64_value(&[]) as usize;
    assert_eq!(n_clean - n_robust, r.fooled_by.iter().sum::<usize>());
    assert!((r.clean_acc - n_clean as f64 / x.size()[0] as f64).abs() < 1e-12);
    assert!(
        r.after[0].1 <= r.clean_acc,
        "{} > {}",
        r.after[0].1,
        r.clean_acc
    );
    // Robust implies correct clean.
    assert_eq!(
        r.robust
            .logical_and(&clean_ok.logical_not())
            .sum(Kind::Int64)
            .int64_value(&[]),
        0
    );
    assert!((rate(&r.robust) - r.acc).abs() < 1e-12);
}

#[test]
fn unsupported_settings_are_errors_that_say_why() {
    let (model, x, y) = trained();
    let l1 = L1::with_sparsity(1.0, 0.2).unwrap();
    let e = apgd(
        &model,
        &x,
        &y,
        &l1,
        &ApgdConfig::new(ApgdLoss::CrossEntropy, 5),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("L1"), "{e:#}");
    let l2 = L2::new(0.1).unwrap();
    let e = apgd(
        &model,
        &x,
        &y,
        &l2,
        &ApgdConfig::new(ApgdLoss::DlrTargeted { targets: 5 }, 5),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("classes"), "{e:#}");
    let e = ensemble_evaluation(&model, &x, &y, &l2, &[], 10).unwrap_err();
    assert!(format!("{e:#}").contains("no attacks"), "{e:#}");
}

#[test]
fn square_fools_without_gradients_and_stays_in_the_ball() {
    let (model, x, y) = trained();
    let img = x.view([-1, 1, 6, 6]);
    let clean_ok = model.logits(&img, false).argmax(-1, false).eq_tensor(&y);
    let threats: Vec<Box<dyn ThreatModel>> = vec![
        Box::new(L2::new(0.5).unwrap()),
        Box::new(Linf::new(0.1).unwrap()),
    ];
    for threat in &threats {
        let what = threat.describe();
        let out = square(&model, &img, &y, threat.as_ref(), &SquareConfig::new(300)).unwrap();
        let dist = threat.distance(&out.x, &img).max().double_value(&[]);
        assert!(
            dist <= threat.eps() + 1e-4,
            "{what}: left the ball ({dist})"
        );
        let pred_ok = model.logits(&out.x, false).argmax(-1, false).eq_tensor(&y);
        assert_eq!(
            out.fooled
                .logical_and(&pred_ok)
                .sum(Kind::Int64)
                .int64_value(&[]),
            0,
            "{what}: a fooled example's image is classified correctly"
        );
        let sq = 1.0 - rate(&out.fooled);
        assert!(
            sq < rate(&clean_ok) - 0.05,
            "{what}: Square barely works ({sq})"
        );
        // On a smooth MLP the white-box attack is at least as strong (no gradient masking).
        let ap = apgd(
            &model,
            &img,
            &y,
            threat.as_ref(),
            &ApgdConfig::new(ApgdLoss::CrossEntropy, 50),
        )
        .unwrap();
        let ap = 1.0 - rate(&ap.fooled);
        assert!(ap <= sq + 0.03, "{what}: Square {sq} beats APGD {ap}");
    }
}
