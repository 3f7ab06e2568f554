use super::*;
use crate::results::{RobustPoint, SeedRun, Varies};
use ModelKind::{Control, DDet, DRand, Rob, Std, DNR, DR};

/// A model with `std_acc` on 10,000 test images and robust accuracy `rob` at L2 0.5 on 500.
fn model(name: &str, role: ModelRole, std_acc: f64, rob: f64) -> ModelResult {
    ModelResult {
        name: name.into(),
        role,
        arch: "a".into(),
        trained_on: "D".into(),
        train_size: 1,
        adversarial: None,
        epochs: vec![],
        curve_n: None,
        std_acc,
        test_size: 10_000,
        ensemble: Vec::new(),
        checks: None,
        robust: vec![RobustPoint {
            norm: "L2".into(),
            eps: 0.5,
            acc: rob,
            steps: 20,
            n: 500,
            attack: None,
        }],
        final_train_acc: None,
        wall_s: 0.0,
        seeds: vec![],
        seed_summary: None,
    }
}

/// The main model of set `k`, named as the pipeline names it.
fn main(k: ModelKind, std_acc: f64, rob: f64) -> ModelResult {
    model(k.base_name(), ModelRole::Main(k), std_acc, rob)
}

/// `main(k, ..)` trained with one seed per (std, rob) pair; seed 0's numbers are the model's.
fn seeded(k: ModelKind, runs: &[(f64, f64)]) -> ModelResult {
    let mut m = main(k, runs[0].0, runs[0].1);
    let point = m.robust[0].clone();
    m.set_seeds(
        runs.iter()
            .enumerate()
            .map(|(i, &(s, r))| SeedRun {
                seed: i,
                train_seed: i as u64,
                std_acc: s,
                ensemble: Vec::new(),
                robust: vec![RobustPoint {
                    acc: r,
                    ..point.clone()
                }],
            })
            .collect(),
    );
    m
}

#[test]
fn robustness_is_decided_on_the_ensemble_when_present() {
    let h = headline();
    let plain = main(DR, 0.8, 0.6);
    assert!((rob_at(&plain, Some(&h)).unwrap().value - 0.6).abs() < 1e-12);
    let mut hard = main(DR, 0.8, 0.6);
    hard.ensemble = vec![RobustPoint {
        norm: "L2".into(),
        eps: 0.5,
        acc: 0.1,
        steps: 100,
        n: 500,
        attack: Some("PGD-20 + APGD-CE 100 steps x1".into()),
    }];
    assert!((rob_at(&hard, Some(&h)).unwrap().value - 0.1).abs() < 1e-12);
}

fn headline() -> Headline {
    Headline {
        norm: "L2".into(),
        eps: 0.5,
        source: "test".into(),
    }
}

fn a(v: f64, n: usize) -> Accuracy {
    Accuracy::single(v, n)
}

/// Models are found by their role: a paper model under any name is used, an extra's model
/// named like a paper model is not.
#[test]
fn models_are_found_by_role_not_by_name() {
    let h = headline();
    let paper = vec![
        model("baseline", ModelRole::Main(Std), 0.9525, 0.0866),
        model("robust_src", ModelRole::Main(Rob), 0.9083, 0.8234),
        model("fresh_r", ModelRole::Main(DR), 0.84, 0.48),
        model("fresh_nr", ModelRole::Main(DNR), 0.88, 0.0),
        model("rand", ModelRole::Main(DRand), 0.63, 0.0),
        model("det", ModelRole::Main(DDet), 0.44, 0.0),
        model("det_far", ModelRole::Variant(DDet), 0.50, 0.0),
    ];
    let f2 = figure2_verdicts(&paper, Some(&h), 10);
    assert_eq!(f2.len(), 3);
    assert!(f2.iter().all(|c| c.verdict == Verdict::Holds), "{f2:#?}");
    let t1 = table1_verdicts(&paper, Some(&h), 10);
    assert!(t1.iter().any(|c| c.id == "T1b[det_far]"), "{t1:#?}");
    assert!(t1.iter().all(|c| c.verdict == Verdict::Holds), "{t1:#?}");
    // Extras' models with the paper's names (and a variant's): none is a paper model.
    let extra = |name: &str, set, varies| model(name, ModelRole::Extra { set, varies }, 0.84, 0.48);
    let extras = vec![
        extra("on_D_R", DR, Varies::Distance),
        extra("on_D_NR", DNR, Varies::Init),
        extra("C_std", Std, Varies::Architecture),
        extra("on_D_det", DDet, Varies::Construction),
        extra("on_D_det_eps2", DDet, Varies::Eps),
        extra("on_D_R_xyz", DR, Varies::TrainSize),
    ];
    let f2 = figure2_verdicts(&extras, Some(&h), 10);
    assert!(
        f2.iter().all(|c| c.verdict == Verdict::Undetermined),
        "{f2:#?}"
    );
    let t1 = table1_verdicts(&extras, Some(&h), 10);
    assert_eq!(t1.len(), 3, "no variant claims: {t1:#?}");
    assert!(t1.iter().all(|c| c.verdict == Verdict::Undetermined));
    // Next to the paper's models they change nothing.
    let both: Vec<ModelResult> = extras.iter().chain(&paper).cloned().collect();
    assert_eq!(figure2_verdicts(&both, Some(&h), 10), f2_of(&paper));
    assert_eq!(table1_verdicts(&both, Some(&h), 10), t1_of(&paper));
}

fn f2_of(ms: &[ModelResult]) -> Vec<ClaimVerdict> {
    figure2_verdicts(ms, Some(&headline()), 10)
}

fn t1_of(ms: &[ModelResult]) -> Vec<ClaimVerdict> {
    table1_verdicts(ms, Some(&headline()), 10)
}

#[test]
fn number_rules() {
    // More robust than every reference, by more than 2 SE of each difference.
    let (v, m) = more_robust(&a(0.48, 500), &[&a(0.0, 500), &a(0.0866, 500)]);
    assert_eq!(v, Verdict::Holds);
    assert_eq!(m.len(), 2);
    // Within noise of one reference: inconclusive; clearly below one: does not hold.
    assert_eq!(
        more_robust(&a(0.15, 500), &[&a(0.02, 500), &a(0.13, 500)]).0,
        Verdict::Inconclusive
    );
    assert_eq!(
        more_robust(&a(0.05, 500), &[&a(0.02, 500), &a(0.15, 500)]).0,
        Verdict::DoesNotHold
    );
    let (s, r) = (10_000, 500);
    assert_eq!(
        fig2b(&a(0.88, s), &a(0.0, r), &a(0.95, s), 0.1).0,
        Verdict::Holds
    );
    // Far below the reference but not robust: one part of two.
    assert_eq!(
        fig2b(&a(0.60, s), &a(0.0, r), &a(0.95, s), 0.1).0,
        Verdict::Partly
    );
    // At chance: no credit for near-zero robustness.
    assert_eq!(
        fig2b(&a(0.10, s), &a(0.0, r), &a(0.95, s), 0.1).0,
        Verdict::DoesNotHold
    );
    assert_eq!(
        fig2b(&a(0.60, s), &a(0.4, r), &a(0.95, s), 0.1).0,
        Verdict::DoesNotHold
    );
    // Robust accuracy within noise of 10%: that part is inconclusive.
    assert_eq!(
        fig2b(&a(0.88, s), &a(0.10, r), &a(0.95, s), 0.1).0,
        Verdict::Partly
    );
    assert_eq!(fig2c(&a(0.84, s), &a(0.95, s), 0.1).0, Verdict::Holds);
    assert_eq!(fig2c(&a(0.50, s), &a(0.95, s), 0.1).0, Verdict::DoesNotHold);
    // 15 points below on 200 images each: inside the noise.
    assert_eq!(
        fig2c(&a(0.80, 200), &a(0.95, 200), 0.1).0,
        Verdict::Inconclusive
    );
    // Everything at chance (a reference at chance too): the gate, not the 15-point rule.
    let (v, m) = fig2c(&a(0.108, 1000), &a(0.148, 1000), 0.1);
    assert_eq!(v, Verdict::Inconclusive);
    assert!((m.m - 0.008).abs() < 1e-12);
    assert_eq!(
        fig2b(&a(0.111, 1000), &a(0.13, 100), &a(0.148, 1000), 0.1).0,
        Verdict::Inconclusive
    );
    let at_chance = vec![
        main(Std, 0.56, 0.6),
        main(DR, 0.1, 0.13),
        main(DNR, 0.1, 0.13),
        main(Control, 0.12, 0.13),
    ];
    let f2 = figure2_verdicts(&at_chance, Some(&headline()), 10);
    for c in &f2[1..3] {
        assert_eq!(c.verdict, Verdict::Inconclusive, "{c:?}");
        assert!(
            c.evidence
                .contains("not above chance (acc − chance = +0.0 ± "),
            "{c:?}"
        );
    }
    assert_eq!(fig2c(&a(0.05, s), &a(0.15, s), 0.1).0, Verdict::DoesNotHold);
    for s in [
        "holds",
        "partly",
        "does not hold",
        "inconclusive",
        "undetermined",
        "n/a",
    ] {
        assert_eq!(Verdict::parse(s).unwrap().as_str(), s);
    }
}

/// The paper's own CIFAR numbers satisfy every claim under these rules (a case that holds).
#[test]
fn paper_numbers_hold() {
    let ms = vec![
        main(Std, 0.9525, 0.0866),
        main(Rob, 0.9083, 0.8234),
        main(DR, 0.84, 0.48),
        main(DNR, 0.88, 0.0),
        main(DRand, 0.63, 0.0),
        main(DDet, 0.44, 0.0),
        model("on_D_det_eps2", ModelRole::Variant(DDet), 0.50, 0.0),
    ];
    let h = headline();
    let f2 = figure2_verdicts(&ms, Some(&h), 10);
    assert_eq!(f2.len(), 3);
    assert!(f2.iter().all(|c| c.verdict == Verdict::Holds), "{f2:#?}");
    assert!(
        f2[0].evidence.contains("on_D_R 48.0% [43.7, 52.4]"),
        "{}",
        f2[0].evidence
    );
    assert!(
        f2[0].verdict_text().starts_with("holds (m = +39.3 ± "),
        "{}",
        f2[0].verdict_text()
    );
    let t1 = table1_verdicts(&ms, Some(&h), 10);
    assert!(t1.iter().any(|c| c.id == "T1b[on_D_det_eps2]"));
    assert!(t1.iter().all(|c| c.verdict == Verdict::Holds), "{t1:#?}");
}

/// A run where the robust-features story fails (a case that does not hold).
#[test]
fn contradicting_numbers_do_not_hold() {
    let ms = vec![
        main(Std, 0.91, 0.02),
        main(DR, 0.25, 0.01),
        main(DNR, 0.85, 0.40),
        main(DRand, 0.09, 0.3),
        main(DDet, 0.05, 0.3),
        main(Control, 0.88, 0.01),
    ];
    let h = headline();
    let f2 = figure2_verdicts(&ms, Some(&h), 10);
    assert_eq!(f2[0].verdict, Verdict::DoesNotHold, "{:?}", f2[0]);
    assert_eq!(f2[1].verdict, Verdict::Partly, "{:?}", f2[1]);
    assert!(f2[1].evidence.contains("ref on_control"));
    assert_eq!(f2[2].verdict, Verdict::DoesNotHold);
    // F2d (with on_control present) comes last: 1% vs 1% is no margin, inside the noise.
    assert_eq!(f2[3].id, "F2d");
    assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
    assert!(f2[3].evidence.contains("m = +0.0 ± "), "{}", f2[3].evidence);
    let t1 = table1_verdicts(&ms, Some(&h), 10);
    assert!(
        t1.iter().all(|c| c.verdict == Verdict::DoesNotHold),
        "{t1:#?}"
    );
}

/// The F2d: 49.0% vs 49.6% (and 51.0% vs 50.0%) on 500 images is inconclusive,
/// and two seeds that disagree keep a borderline margin inconclusive.
#[test]
fn noise_sized_margins_are_inconclusive() {
    let h = headline();
    for (r, c) in [(0.490, 0.496), (0.510, 0.500)] {
        let ms = vec![
            main(Std, 0.919, 0.376),
            main(DR, 0.778, r),
            main(DNR, 0.677, 0.094),
            main(Control, 0.806, c),
        ];
        let f2 = figure2_verdicts(&ms, Some(&h), 10);
        assert_eq!(f2[3].id, "F2d");
        assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
        // F2a: 49% vs 37.6% on 500 images each is 11.4 ± 3.1 points: holds.
        assert_eq!(f2[0].verdict, Verdict::Holds, "{:?}", f2[0]);
    }
    // Clear on one seed (60% vs 50% on 500), but the second seed lands at 48%.
    let one = vec![
        main(Std, 0.9, 0.3),
        main(DR, 0.8, 0.60),
        main(DNR, 0.7, 0.05),
        main(Control, 0.8, 0.50),
    ];
    assert_eq!(
        figure2_verdicts(&one, Some(&h), 10)[3].verdict,
        Verdict::Holds
    );
    let mut two = one.clone();
    two[1] = seeded(DR, &[(0.8, 0.60), (0.8, 0.48)]);
    let f2 = figure2_verdicts(&two, Some(&h), 10);
    assert_eq!(f2[3].verdict, Verdict::Inconclusive, "{:?}", f2[3]);
    assert!(
        f2[3].evidence.contains("(seeds 60.0, 48.0)"),
        "{}",
        f2[3].evidence
    );
}

#[test]
fn missing_inputs_are_undetermined() {
    let ms = vec![main(Std, 0.91, 0.02), main(DR, 0.8, 0.5)];
    let f2 = figure2_verdicts(&ms, Some(&headline()), 10);
    assert_eq!(f2[0].verdict, Verdict::Undetermined);
    assert!(f2[0].margin.is_none());
    assert!(f2[0].evidence.contains("models/on_D_NR.json"));
    let mut ms2 = ms.clone();
    ms2.push(main(DNR, 0.8, 0.0));
    let f2 = figure2_verdicts(&ms2, None, 10);
    assert_eq!(f2[0].verdict, Verdict::Undetermined);
    assert!(f2[0].evidence.contains("headline"));
    let other = Headline {
        eps: 0.25,
        ..headline()
    };
    let f2 = figure2_verdicts(&ms2, Some(&other), 10);
    assert!(
        f2[0].evidence.contains("no L2 ε=0.25"),
        "{}",
        f2[0].evidence
    );
    assert_eq!(f2[2].verdict, Verdict::Holds);
}

/// The margin a verdict shows is the one nearest its decision in units of what it needs: a
/// 3.0-SE margin that needs t ≈ 4.3 (three seeds) binds before a 2.5-SE margin that needs 2.
#[test]
fn the_binding_margin_counts_what_each_needs() {
    let seeded = Margin::between(
        &Accuracy::with_seeds(&[0.52, 0.56, 0.60], 100_000),
        &Accuracy::single(0.4904, 100_000),
    );
    assert!(seeded.z() > 2.9 && seeded.critical() > 4.0, "{seeded:?}");
    let known = Margin::known(0.05, 0.02);
    assert_eq!(binding(&[known, seeded]), Some(seeded));
    assert_eq!(binding(&[seeded, known]), Some(seeded));
}
