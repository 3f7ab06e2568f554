use super::*;

#[test]
fn minimises_ill_conditioned_quadratic() {
    let a = [1.0, 100.0, 0.01];
    let f = |x: &[f64]| {
        let v: f64 = x
            .iter()
            .zip(a)
            .map(|(xi, ai)| 0.5 * ai * (xi - 1.0).powi(2))
            .sum();
        let g = x.iter().zip(a).map(|(xi, ai)| ai * (xi - 1.0)).collect();
        Some((v, g))
    };
    let r = minimise(f, vec![0.0; 3], GdOptions::default()).unwrap();
    assert!(r.converged, "{r:?}");
    assert!(r.x.iter().all(|x| (x - 1.0).abs() < 1e-6));
}

#[test]
fn respects_domain() {
    // f(x) = x - ln x has its minimum at 1 and is undefined for x <= 0.
    let f = |x: &[f64]| (x[0] > 0.0).then(|| (x[0] - x[0].ln(), vec![1.0 - 1.0 / x[0]]));
    let r = minimise(
        f,
        vec![5.0],
        GdOptions {
            initial_step: 10.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((r.x[0] - 1.0).abs() < 1e-6);
    assert!(minimise(f, vec![-1.0], GdOptions::default()).is_err());
}

#[test]
fn min_norm_point_of_a_hull() {
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert!(close(&min_norm_in_hull(&[vec![1.0, 0.0]]), &[1.0, 0.0]));
    let segment = [vec![2.0, 1.0], vec![-1.0, 1.0]];
    assert!(close(&min_norm_in_hull(&segment), &[0.0, 1.0]));
    let around_zero = [vec![1.0, 1.0], vec![-1.0, 1.0], vec![0.0, -1.0]];
    assert!(close(&min_norm_in_hull(&around_zero), &[0.0, 0.0]));
    let vertex = [vec![1.0, 2.0], vec![3.0, 2.0], vec![2.0, 5.0]];
    assert!(close(&min_norm_in_hull(&vertex), &[1.0, 2.0]));
    // Random hulls in 5-D: optimality is pᵢ·x ≥ ‖x‖² for every point.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for case in 0..200 {
        let shift: Vec<f64> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let points: Vec<Vec<f64>> = (0..11)
            .map(|_| shift.iter().map(|s| s + rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let x = min_norm_in_hull(&points);
        let xx = dot(&x, &x);
        for p in &points {
            assert!(
                dot(p, &x) >= xx - 1e-12,
                "case {case}: {} < {xx}",
                dot(p, &x)
            );
        }
    }
}

/// `f(x, y) = 5|x − y| + ½((x − 3)² + (y − 1)²)`: its minimum, 1 at (2, 2), lies on the kink
/// `x = y`, where the gradient of either side points across it.
fn kinked(x: &[f64]) -> Option<(f64, Vec<f64>)> {
    let s = if x[0] >= x[1] { 1.0 } else { -1.0 };
    let value = 5.0 * (x[0] - x[1]).abs() + 0.5 * ((x[0] - 3.0).powi(2) + (x[1] - 1.0).powi(2));
    Some((value, vec![5.0 * s + x[0] - 3.0, -5.0 * s + x[1] - 1.0]))
}

#[test]
fn gradient_sampling_reaches_a_minimum_on_a_kink_where_descent_stalls() {
    use rand::SeedableRng;
    let noisy = |x: &[f64]| kinked(x).map(|(v, _)| (v, 4.0 * f64::EPSILON * v.abs()));
    let opts = GdOptions {
        max_iter: 400,
        grad_tol: 1e-7,
        initial_step: 1e-2,
    };
    let gd = minimise(kinked, vec![0.0, 0.5], opts).unwrap();
    assert!(!gd.converged);
    assert!(gd.value > 1.0 + 1e-3, "descent went on: {gd:?}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let probe = |x: &[f64], rng: &mut rand_chacha::ChaCha8Rng| {
        descent_probe(noisy, x, &[1e-3, 1e-4, 1e-5], 24, rng).unwrap()
    };
    // The probe sees that the stalled point is no minimum...
    let stalled = probe(&gd.x, &mut rng);
    assert!(!stalled.is_local_minimum(opts.grad_tol), "{stalled:?}");
    let gs = gradient_sampling(
        kinked,
        gd.x.clone(),
        SamplingOptions {
            initial_radius: 1e-3,
            min_radius: 1e-9,
            stationarity_tol: opts.grad_tol,
            max_iter: 1_000,
        },
        &mut rng,
    )
    .unwrap();
    assert!(gs.stationary, "{gs:?}");
    assert!(
        (gs.x[0] - 2.0).abs() < 1e-6 && (gs.x[1] - 2.0).abs() < 1e-6,
        "{gs:?}"
    );
    assert!((gs.value - 1.0).abs() < 1e-10, "{gs:?}");
    // ...and that the point gradient sampling reached is one, as is the exact minimum.
    let found = probe(&gs.x, &mut rng);
    assert!(found.is_local_minimum(opts.grad_tol), "{found:?}");
    let exact = probe(&[2.0, 2.0], &mut rng);
    assert!(exact.is_local_minimum(0.0), "{exact:?}");
    assert!(exact.largest_decrease < 0.0, "{exact:?}");
}

#[test]
fn descent_probe_takes_round_off_out_and_catches_a_small_descent() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    // A flat function whose evaluations jitter by up to 1e-12, declared as noise: the jitter
    // is a "decrease" but no excess.
    let mut k = 0u32;
    let jitter = |_: &[f64]| {
        k += 1;
        Some((1.0 + 1e-12 * f64::from(k % 3), 1e-12))
    };
    let p = descent_probe(jitter, &[0.0, 0.0], &[1e-3], 8, &mut rng).unwrap();
    assert!(p.largest_decrease > 0.0 && p.largest_excess <= 0.0, "{p:?}");
    assert!(p.is_local_minimum(0.0));
    // A point 1e-4 from the minimum of ½‖x‖² (gradient 1e-4, i.e. 1000 times the tolerance)
    // shows a decrease of about 1e-9 at the probe's steps: caught.
    let bowl = |x: &[f64]| Some((0.5 * dot(x, x), 1e-16));
    let p = descent_probe(bowl, &[1e-4, 0.0, 0.0], &[1e-3, 1e-4, 1e-5], 24, &mut rng).unwrap();
    assert!(p.largest_excess > 1e-9, "{p:?}");
    assert!(!p.is_local_minimum(1e-7), "{p:?}");
    let p = descent_probe(bowl, &[0.0, 0.0, 0.0], &[1e-3, 1e-4, 1e-5], 24, &mut rng).unwrap();
    assert!(p.is_local_minimum(0.0), "{p:?}");
}
