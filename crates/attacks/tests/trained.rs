//! Attacks on a small trained model: the unbounded attack reaches ~0% and robust accuracy falls
//! with eps.

mod common;

use common::{separable_data, Mlp};
use nrf_attacks::{
    accuracy, evaluate_grid, robust_accuracy, sanity_check, unbounded_attack_accuracy, Linf,
    PgdConfig, ThreatModel, L1, L2,
};

#[test]
fn trained_mlp_unbounded_attack_and_monotone_grid() {
    common::init();
    let d = 8;
    let (x, y) = separable_data(400, d, 0.05, 11);
    let mut model = Mlp::new(d, 32, 2, 12);
    model.train(&x, &y, 300, 0.01);
    let clean = accuracy(&model, &x, &y, 128).unwrap();
    assert!(clean > 0.95, "training failed: clean accuracy {clean}");

    let unbounded = unbounded_attack_accuracy(&model, &x, &y, 100, 128).unwrap();
    assert!(unbounded <= 0.01, "unbounded attack leaves {unbounded}");

    let mut grid: Vec<(Box<dyn ThreatModel>, PgdConfig)> = Vec::new();
    for eps in [0.0, 0.05, 0.1, 0.2, 0.4, 0.8] {
        grid.push((Box::new(L2::new(eps).unwrap()), PgdConfig::eval(eps, 20)));
        grid.push((
            Box::new(Linf::new(eps / 4.0).unwrap()),
            PgdConfig::eval(eps / 4.0, 20),
        ));
        grid.push((
            Box::new(L1::with_sparsity(eps, 0.2).unwrap()),
            PgdConfig::new(20, eps / 5.0),
        ));
    }
    let evals = evaluate_grid(&model, &x, &y, &grid, 128, false).unwrap();
    for norm in ["L2", "Linf", "L1"] {
        let accs: Vec<f64> = evals
            .iter()
            .filter(|e| e.norm == norm)
            .map(|e| e.acc)
            .collect();
        assert_eq!(accs.len(), 6);
        // eps = 0: robust accuracy is the clean accuracy.
        assert!(
            (accs[0] - clean).abs() < 1e-9,
            "{norm}: {accs:?} vs clean {clean}"
        );
        for w in accs.windows(2) {
            assert!(
                w[1] <= w[0] + 1.0 / 400.0,
                "{norm}: robust accuracy rises with eps: {accs:?}"
            );
        }
        assert!(
            accs[5] < accs[0] - 0.2,
            "{norm}: the attack barely hurts: {accs:?}"
        );
    }
    assert!(
        sanity_check(&evals).is_empty(),
        "{:?}",
        sanity_check(&evals)
    );
    // Restarts can only lower robust accuracy (each example stays fooled once fooled), and more
    // steps find at least as much as the one-step attack here.
    let t = L2::new(0.2).unwrap();
    let one = robust_accuracy(&model, &x, &y, &t, &PgdConfig::new(1, 0.2), 128, false).unwrap();
    let many = robust_accuracy(
        &model,
        &x,
        &y,
        &t,
        &PgdConfig::eval(0.2, 20).with_restarts(3),
        128,
        false,
    )
    .unwrap();
    assert!(
        many <= one + 1e-9,
        "20-step x3 restarts {many} > one-step {one}"
    );
}
