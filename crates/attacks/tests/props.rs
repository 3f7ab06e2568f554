//! Property tests of the threat models and the PGD loop on tiny CPU tensors.

mod common;

use common::{LinearModel, Mlp};
use nrf_attacks::{
    cross_entropy, fgsm, pgd, targeted_ce, untargeted_ce, Linf, PgdConfig, ThreatModel, L1, L2,
};
use nrf_models::Classifier;
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-5;

fn shape() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        (1i64..=4, 1i64..=20).prop_map(|(n, d)| vec![n, d]),
        (1i64..=4, 1i64..=3, 1i64..=5, 1i64..=5).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
    ]
}

/// 0 = L2, 1 = Linf, 2 = L1 (with the given sparsity).
fn threat(kind: u8, eps: f64, sparsity: f64) -> Box<dyn ThreatModel> {
    match kind {
        0 => Box::new(L2::new(eps).unwrap()),
        1 => Box::new(Linf::new(eps).unwrap()),
        _ => Box::new(L1::with_sparsity(eps, sparsity).unwrap()),
    }
}

fn rand(shape: &[i64]) -> Tensor {
    Tensor::rand(shape, (Kind::Float, Device::Cpu))
}

fn max(t: &Tensor) -> f64 {
    t.max().double_value(&[])
}
fn min(t: &Tensor) -> f64 {
    t.min().double_value(&[])
}
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    max(&(a - b).abs())
}

/// A random linear model on inputs of `shape` with `k` classes; weights scaled by 1/√d so the
/// logits stay O(1) and the softmax never saturates (a saturated cross-entropy has a zero gradient).
fn linear_model(shape: &[i64], k: i64) -> LinearModel {
    let d: i64 = shape[1..].iter().product();
    let opts = (Kind::Float, Device::Cpu);
    LinearModel {
        w: Tensor::randn([d, k], opts) / (d as f64).sqrt(),
        b: Tensor::randn([k], opts) * 0.1,
    }
}

fn random_labels(n: i64, k: i64) -> Tensor {
    Tensor::randint(k, [n], (Kind::Int64, Device::Cpu))
}

fn assert_in_ball(t: &dyn ThreatModel, x: &Tensor, center: &Tensor) -> Result<(), TestCaseError> {
    let dist = max(&t.distance(x, center));
    prop_assert!(
        dist <= t.eps() * (1.0 + TOL) + TOL,
        "{}: distance {dist} > eps",
        t.describe()
    );
    prop_assert!(
        min(x) >= 0.0 && max(x) <= 1.0,
        "{}: outside [0,1]: [{}, {}]",
        t.describe(),
        min(x),
        max(x)
    );
    prop_assert_eq!(x.size(), center.size());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// PGD output lies in the eps-ball around the centre and in [0,1], for any start point,
    /// step size, random start and best-iterate setting.
    #[test]
    fn pgd_output_in_ball_and_box(
        shape in shape(), kind in 0u8..3, eps in 0.0f64..2.0, sparsity in 0.01f64..1.0,
        steps in 1usize..5, step in 0.0f64..3.0, random_start: bool, use_best: bool,
        restarts in 1usize..3, seed in 0i64..1_000_000,
    ) {
        common::init();
        tch::manual_seed(seed);
        let t = threat(kind, eps, sparsity);
        let center = rand(&shape);
        let start = rand(&shape); // the start may differ from the centre
        let model = linear_model(&shape, 3);
        let y = random_labels(shape[0], 3);
        let cfg = PgdConfig::new(steps, step).with_random_start(random_start).with_use_best(use_best).with_restarts(restarts);
        let mut visited = Vec::new();
        let mut record = |_: usize, x: &Tensor| visited.push(x.copy());
        let out = pgd(t.as_ref(), &center, &start, &cfg, &mut untargeted_ce(&model, &y), Some(&mut record)).unwrap();
        assert_in_ball(t.as_ref(), &out.x, &center)?;
        prop_assert_eq!(visited.len(), restarts * (steps + 1));
        for x in &visited {
            assert_in_ball(t.as_ref(), x, &center)?;
        }
        // The reported objective is the objective at the returned point.
        let obj = cross_entropy(&tch::no_grad(|| model.logits(&out.x, false)), &y);
        prop_assert!(max_abs_diff(&obj, &out.objective) < 1e-4);
    }

    /// Projection lands in the ball and the box, keeps points already inside, and is idempotent.
    #[test]
    fn projection_in_ball_and_idempotent(
        shape in shape(), kind in 0u8..3, eps in 0.0f64..2.0, scale in 0.0f64..5.0,
        seed in 0i64..1_000_000,
    ) {
        common::init();
        tch::manual_seed(seed);
        let t = threat(kind, eps, 0.1);
        let center = rand(&shape);
        let x = &center + Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * scale;
        let p = t.project(&x, &center);
        assert_in_ball(t.as_ref(), &p, &center)?;
        let pp = t.project(&p, &center);
        prop_assert!(max_abs_diff(&p, &pp) < 1e-5, "{}: not idempotent, diff {}", t.describe(), max_abs_diff(&p, &pp));
        // A random start is already inside, so projection leaves it (almost) unchanged.
        let r = t.random_start(&center);
        assert_in_ball(t.as_ref(), &r, &center)?;
        prop_assert!(max_abs_diff(&r, &t.project(&r, &center)) < 1e-5);
    }

    /// eps = 0 returns the centre, whatever the start, steps and random start.
    #[test]
    fn eps_zero_returns_center(
        shape in shape(), kind in 0u8..3, steps in 1usize..4, step in 0.0f64..2.0,
        random_start: bool, use_best: bool, seed in 0i64..1_000_000,
    ) {
        common::init();
        tch::manual_seed(seed);
        let t = threat(kind, 0.0, 0.1);
        let center = rand(&shape);
        let start = rand(&shape);
        let model = linear_model(&shape, 4);
        let y = random_labels(shape[0], 4);
        let cfg = PgdConfig::new(steps, step).with_random_start(random_start).with_use_best(use_best);
        let out = pgd(t.as_ref(), &center, &start, &cfg, &mut untargeted_ce(&model, &y), None).unwrap();
        prop_assert!(max_abs_diff(&out.x, &center) < 1e-7);
    }

    /// One step of size eps on a linear margin objective w·x (clamp inactive) reaches the analytic
    /// optimum: eps·w/‖w‖₂ (L2), eps·sign(w) (Linf), eps·sign(w_j)·e_j at j = argmax|w_j| (L1, k = 1);
    /// the objective rises by eps times the dual norm of w.
    #[test]
    fn one_step_linear_optimum(
        shape in shape(), kind in 0u8..3, eps in 0.001f64..0.2, k in 2i64..5, seed in 0i64..1_000_000,
    ) {
        common::init();
        tch::manual_seed(seed);
        let n = shape[0];
        let d: i64 = shape[1..].iter().product();
        let model = linear_model(&shape, k);
        let x = rand(&shape) * 0.4 + 0.3;
        // Margin between two distinct classes a and b: objective (W[:,a] − W[:,b])·x + const.
        let a = random_labels(n, k);
        let b = (&a + Tensor::randint_low(1, k, [n], (Kind::Int64, Device::Cpu))).remainder(k);
        let (ai, bi) = (a.view([n, 1]), b.view([n, 1]));
        let mut objective = |x: &Tensor| {
            let z = model.logits(x, false);
            (z.gather(1, &ai, false) - z.gather(1, &bi, false)).squeeze_dim(1)
        };
        let t = threat(kind, eps, 1e-9); // L1: k = 1 coordinate per step
        let cfg = PgdConfig::new(1, eps).with_use_best(false);
        let out = pgd(t.as_ref(), &x, &x, &cfg, &mut objective, None).unwrap();
        // Per-example w = W[:, a] − W[:, b], shape [n, d].
        let w = model.w.transpose(0, 1).index_select(0, &a) - model.w.transpose(0, 1).index_select(0, &b);
        let expected = match kind {
            0 => &w / w.norm_scalaropt_dim(2.0, [1i64].as_slice(), true) * eps,
            1 => w.sign() * eps,
            _ => {
                let j = w.abs().argmax(1, true);
                w.zeros_like().scatter(1, &j, &(w.gather(1, &j, false).sign() * eps))
            }
        };
        let delta = (&out.x - &x).reshape([n, d]);
        prop_assert!(max_abs_diff(&delta, &expected) < 1e-4, "{}: step {:?} vs optimum {:?}", t.describe(), delta, expected);
        let dual = match kind {
            0 => w.norm_scalaropt_dim(2.0, [1i64].as_slice(), false),
            1 => w.abs().sum_dim_intlist([1i64].as_slice(), false, None::<Kind>),
            _ => w.abs().amax([1i64].as_slice(), false),
        };
        let gain = &out.objective - &out.start_objective;
        prop_assert!(max_abs_diff(&gain, &(dual * eps)) < 1e-3 * (1.0 + max(&gain.abs())));
    }

    /// FGSM on a binary linear model moves along ±(w_other − w_true), the analytic optimum.
    #[test]
    fn fgsm_linear_binary(shape in shape(), l2: bool, eps in 0.001f64..0.2, seed in 0i64..1_000_000) {
        common::init();
        tch::manual_seed(seed);
        let n = shape[0];
        let d: i64 = shape[1..].iter().product();
        let model = linear_model(&shape, 2);
        let x = rand(&shape) * 0.4 + 0.3;
        let y = random_labels(n, 2);
        let t: Box<dyn ThreatModel> = if l2 { Box::new(L2::new(eps).unwrap()) } else { Box::new(Linf::new(eps).unwrap()) };
        let adv = fgsm(&model, &x, &y, t.as_ref()).unwrap();
        let wt = model.w.transpose(0, 1);
        let w = wt.index_select(0, &(y.ones_like() - &y)) - wt.index_select(0, &y);
        let expected = if l2 { &w / w.norm_scalaropt_dim(2.0, [1i64].as_slice(), true) * eps } else { w.sign() * eps };
        prop_assert!(max_abs_diff(&(&adv - &x).reshape([n, d]), &expected) < 1e-4);
    }

    /// A targeted attack with use_best never ends with a higher target loss than at its start,
    /// however bad the step size.
    #[test]
    fn targeted_use_best_never_worse(
        shape in shape(), kind in 0u8..3, eps in 0.0f64..3.0, steps in 1usize..6, step in 0.0f64..5.0,
        restarts in 1usize..3, seed in 0i64..1_000_000,
    ) {
        common::init();
        let d: i64 = shape[1..].iter().product();
        let model = Mlp::new(d, 8, 3, seed);
        let x = rand(&shape);
        let target = random_labels(shape[0], 3);
        let t = threat(kind, eps, 0.2);
        let cfg = PgdConfig::new(steps, step).with_restarts(restarts);
        let out = pgd(t.as_ref(), &x, &x, &cfg, &mut targeted_ce(&model, &target), None).unwrap();
        let _g = tch::no_grad_guard();
        let before = cross_entropy(&model.logits(&x, false), &target);
        let after = cross_entropy(&model.logits(&out.x, false), &target);
        prop_assert!(max(&(&after - &before)) <= 1e-5, "target loss rose: {:?} -> {:?}", before, after);
    }

    /// Untargeted attacks with use_best never return a point with lower loss than the clean input
    /// (no random start), nor lower than their random start.
    #[test]
    fn untargeted_use_best_never_worse(
        shape in shape(), kind in 0u8..3, eps in 0.0f64..3.0, steps in 0usize..6, step in 0.0f64..5.0,
        random_start: bool, seed in 0i64..1_000_000,
    ) {
        common::init();
        let d: i64 = shape[1..].iter().product();
        let model = Mlp::new(d, 8, 3, seed);
        let x = rand(&shape);
        let y = random_labels(shape[0], 3);
        let t = threat(kind, eps, 0.2);
        let cfg = PgdConfig::new(steps, step).with_random_start(random_start);
        let out = pgd(t.as_ref(), &x, &x, &cfg, &mut untargeted_ce(&model, &y), None).unwrap();
        prop_assert!(min(&(&out.objective - &out.start_objective)) >= -1e-6);
        if !random_start {
            let _g = tch::no_grad_guard();
            let clean = cross_entropy(&model.logits(&x, false), &y);
            let adv = cross_entropy(&model.logits(&out.x, false), &y);
            prop_assert!(min(&(&adv - &clean)) >= -1e-5, "loss fell: {:?} -> {:?}", clean, adv);
        }
    }
}
