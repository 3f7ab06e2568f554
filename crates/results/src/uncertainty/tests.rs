use super::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn wilson_known_values() {
    // 50 of 100: [0.4038, 0.5962] (textbook value).
    let w = wilson(0.5, 100);
    assert!(
        close(w.lo, 0.4038, 1e-4) && close(w.hi, 0.5962, 1e-4),
        "{w:?}"
    );
    // 0 of 10: [0, 0.2775]; 10 of 10: [0.7225, 1].
    let w = wilson(0.0, 10);
    assert!(
        close(w.lo, 0.0, 1e-12) && close(w.hi, 0.2775, 1e-4),
        "{w:?}"
    );
    let w = wilson(1.0, 10);
    assert!(
        close(w.lo, 0.7225, 1e-4) && close(w.hi, 1.0, 1e-12),
        "{w:?}"
    );
    // 49% of 500 (the README's on_D_R): [44.6, 53.4].
    let w = wilson(0.49, 500);
    assert!(
        close(w.lo, 0.4464, 1e-4) && close(w.hi, 0.5337, 1e-4),
        "{w:?}"
    );
    // 1 of 4 (small n, asymmetric): [0.0456, 0.6994].
    let w = wilson(0.25, 4);
    assert!(
        close(w.lo, 0.0456, 1e-4) && close(w.hi, 0.6994, 1e-4),
        "{w:?}"
    );
}

#[test]
fn wilson_edge_cases_do_not_panic() {
    assert_eq!(wilson(0.3, 0), Interval { lo: 0.0, hi: 1.0 });
    assert_eq!(wilson(f64::NAN, 10), Interval { lo: 0.0, hi: 1.0 });
    let w = wilson(1.7, 10); // clamped to 1
    assert!(w.hi <= 1.0 && w.lo > 0.5);
    assert!(close(binomial_se(0.3, 0), 0.5 / Z95, 1e-12));
    // Close to the Wald SE in the middle, positive at the edges.
    assert!(close(binomial_se(0.5, 10_000), 0.005, 1e-5));
    assert!(binomial_se(0.0, 500) > 0.0);
    let a = Accuracy::single(0.3, 0);
    assert_eq!(a.short(), "30.0% [0.0, 100.0]");
    assert_eq!(Accuracy::single(f64::NAN, 10).short(), "—");
    assert_eq!(Accuracy::with_seeds(&[], 10).short(), "—");
}

#[test]
fn seeds_add_their_spread() {
    let one = Accuracy::single(0.49, 500);
    let two = Accuracy::with_seeds(&[0.47, 0.51], 500);
    assert!(close(two.value, 0.49, 1e-12));
    let sd = two.seed_sd().unwrap();
    assert!(close(sd, 0.04f64.hypot(0.0) / 2f64.sqrt(), 1e-12));
    // SE² = binomial² + s²/k.
    let want = (one.se().powi(2) + sd * sd / 2.0).sqrt();
    assert!(close(two.se(), want, 1e-12));
    let (i1, i2) = (one.interval(), two.interval());
    assert!(i2.lo < i1.lo && i2.hi > i1.hi);
    assert_eq!(one.text(), "49.0% [44.6, 53.4]");
    assert!(
        two.text().starts_with("49.0% ± 2.8 [") && two.text().ends_with("(seeds 47.0, 51.0)"),
        "{}",
        two.text()
    );
    // One seed is a single measurement.
    assert_eq!(Accuracy::with_seeds(&[0.49], 500), one);
    assert_eq!(one.n_seeds(), 1);
    assert_eq!(two.n_seeds(), 2);
}

#[test]
fn margins_inside_noise_are_inconclusive() {
    // The issue's F2d: 49.0% vs 49.6% on 500 images each, and 51.0% vs 50.0%.
    let m = Margin::between(&Accuracy::single(0.490, 500), &Accuracy::single(0.496, 500));
    assert!(close(m.m, -0.006, 1e-12));
    assert!(close(m.se, 0.0316, 5e-4), "{m:?}");
    assert_eq!(m.verdict(), Verdict::Inconclusive);
    let m = Margin::between(&Accuracy::single(0.51, 500), &Accuracy::single(0.50, 500));
    assert_eq!(m.verdict(), Verdict::Inconclusive);
    assert_eq!(m.text(), "+1.0 ± 3.1 points");
    // Outside the noise: holds / does not hold.
    let m = Margin::between(&Accuracy::single(0.49, 500), &Accuracy::single(0.376, 500));
    assert_eq!(m.verdict(), Verdict::Holds, "{m:?}");
    let m = Margin::between(&Accuracy::single(0.30, 500), &Accuracy::single(0.45, 500));
    assert_eq!(m.verdict(), Verdict::DoesNotHold, "{m:?}");
    // Just past two SE on either side.
    let a = Accuracy::single(0.5, 10_000);
    let se = a.se();
    assert_eq!(Margin::above(&a, 0.5 - 2.01 * se).verdict(), Verdict::Holds);
    assert_eq!(
        Margin::above(&a, 0.5 - 1.99 * se).verdict(),
        Verdict::Inconclusive
    );
    assert_eq!(
        Margin::below(&a, 0.5 - 2.01 * se).verdict(),
        Verdict::DoesNotHold
    );
    // A seed spread can turn a decided margin inconclusive.
    let m = Margin::between(
        &Accuracy::with_seeds(&[0.40, 0.60], 10_000),
        &Accuracy::single(0.45, 10_000),
    );
    assert_eq!(m.verdict(), Verdict::Inconclusive, "{m:?}");
    assert_eq!(
        Margin::known(f64::NAN, 0.1).verdict(),
        Verdict::Undetermined
    );
}

#[test]
fn one_rule_for_above_chance() {
    // 10% chance, 10,000 images.
    assert_eq!(
        above_chance(&Accuracy::single(0.42, 10_000), 0.1),
        Verdict::Holds
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.011, 10_000), 0.1),
        Verdict::DoesNotHold
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.102, 10_000), 0.1),
        Verdict::Inconclusive
    );
    // On 100 images 14% is not distinguishable from 10%; 20% is.
    assert_eq!(
        above_chance(&Accuracy::single(0.14, 100), 0.1),
        Verdict::Inconclusive
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.20, 100), 0.1),
        Verdict::Holds
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.5, 0), 0.1),
        Verdict::Inconclusive
    );
}

#[test]
fn parts_combine() {
    use Verdict::*;
    assert_eq!(combine_parts(&[Holds, Holds]), Holds);
    assert_eq!(combine_parts(&[Holds, Inconclusive]), Partly);
    assert_eq!(combine_parts(&[DoesNotHold, Holds]), Partly);
    assert_eq!(combine_parts(&[DoesNotHold, Inconclusive]), DoesNotHold);
    assert_eq!(combine_parts(&[Inconclusive, Inconclusive]), Inconclusive);
    assert_eq!(combine_parts(&[Holds, Undetermined]), Undetermined);
    assert_eq!(combine_parts(&[]), Undetermined);
    assert_eq!(combine_parts(&[DoesNotHold]), DoesNotHold);
}

#[test]
fn correlation_needs_points_and_precision() {
    let acc = |v: &[f64], n: usize| -> Vec<Accuracy> {
        v.iter().map(|&x| Accuracy::single(x, n)).collect()
    };
    // Four points: even a perfect correlation of precise values stays inside 1/(k-3) = 1.
    let c = correlation(
        &acc(&[0.2, 0.3, 0.4, 0.5], 100_000),
        &acc(&[0.1, 0.2, 0.3, 0.4], 100_000),
    )
    .unwrap();
    assert!(close(c.r, 1.0, 1e-9));
    assert_eq!(c.verdict(), Verdict::Holds, "{c:?}");
    // The issue's Figure 3: r = -0.51 over four architectures is inconclusive.
    let x = acc(&[0.554, 0.489, 0.370, 0.300], 10_000);
    let y = acc(&[0.024, 0.016, 0.016, 0.038], 500);
    let c = correlation(&x, &y).unwrap();
    assert!(close(c.r, -0.51, 0.02), "{c:?}");
    assert_eq!(c.verdict(), Verdict::Inconclusive, "{c:?}");
    assert!(c.text().starts_with("r = -0.5"), "{}", c.text());
    // Three points: never decided.
    let c = correlation(&acc(&[0.1, 0.2, 0.3], 1000), &acc(&[0.1, 0.2, 0.3], 1000)).unwrap();
    assert_eq!(c.verdict(), Verdict::Inconclusive);
    // Many precise points with a clear negative trend: does not hold.
    let xs: Vec<f64> = (0..20).map(|i| 0.2 + 0.02 * i as f64).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 0.8 - x).collect();
    let c = correlation(&acc(&xs, 100_000), &acc(&ys, 100_000)).unwrap();
    assert_eq!(c.verdict(), Verdict::DoesNotHold, "{c:?}");
    // Measurement error widens the interval: the same trend (r = 0.97) on 12 points is
    // decided when each point is measured on 100,000 images and inconclusive on 20.
    let xs: Vec<f64> = (0..12).map(|i| 0.2 + 0.05 * i as f64).collect();
    let ys: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| 0.3 + 0.5 * x + if i % 2 == 0 { 0.02 } else { -0.02 })
        .collect();
    let precise = correlation(&acc(&xs, 100_000), &acc(&ys, 100_000)).unwrap();
    let noisy = correlation(&acc(&xs, 20), &acc(&ys, 20)).unwrap();
    assert!((precise.r - noisy.r).abs() < 1e-12);
    assert!(noisy.se_z > 2.0 * precise.se_z, "{precise:?} {noisy:?}");
    assert_eq!(precise.verdict(), Verdict::Holds, "{precise:?}");
    assert_eq!(noisy.verdict(), Verdict::Inconclusive, "{noisy:?}");
    assert!(correlation(&acc(&[0.1, 0.1], 10), &acc(&[0.2, 0.3], 10)).is_none());
}

#[test]
fn pearson_by_hand() {
    let x = [1.0, 2.0, 3.0, 4.0];
    assert!(close(
        pearson(&x, &[1.0, 3.0, 2.0, 4.0]).unwrap(),
        0.8,
        1e-12
    ));
    assert_eq!(pearson(&x, &[1.0; 4]), None);
    assert_eq!(pearson(&[1.0], &[1.0]), None);
}

#[test]
fn student_t_quantiles_and_the_ratio_interval() {
    // Known quantiles (two-sided 95%), the expansion joined to the table, and the normal limit.
    assert!(student_t95(0).is_nan());
    assert!(close(student_t95(1), 12.706, 1e-9) && close(student_t95(4), 2.776, 1e-9));
    assert!(close(student_t95(40), 2.021, 1e-3) && close(student_t95(120), 1.980, 1e-3));
    assert!(student_t95(31) < student_t95(30) && student_t95(31) > Z95);
    assert!(close(student_t95(1_000_000), Z95, 1e-5));
    // Ratios 0.5, 1, 2: geometric mean 1; log sd ln 2; half-width t(2) * ln 2 / sqrt 3.
    let (g, iv) = ratio_interval(&[0.5, 1.0, 2.0]).unwrap();
    let half = 4.303 * 2f64.ln() / 3f64.sqrt();
    assert!(close(g, 1.0, 1e-12) && close(iv.lo, (-half).exp(), 1e-12));
    assert!(close(iv.hi, half.exp(), 1e-12) && iv.contains(1.0));
    // Consistent pairs decide; one pair, or a bad ratio, decides nothing.
    let (g, iv) = ratio_interval(&[1.20, 1.25, 1.22, 1.18]).unwrap();
    assert!(iv.lo > 1.1 && iv.hi < 1.3 && iv.contains(g));
    assert!(ratio_interval(&[1.2]).is_none());
    assert!(ratio_interval(&[1.2, 0.0]).is_none() && ratio_interval(&[1.2, f64::NAN]).is_none());
}

#[test]
fn margins_resting_on_few_seeds_need_student_t() {
    // Binomial errors only: known, c = 2, no degrees of freedom.
    let m = Margin::between(&Accuracy::single(0.49, 500), &Accuracy::single(0.376, 500));
    assert_eq!((m.df, m.critical()), (None, 2.0));
    // Three seeds whose spread dominates SE (100,000 images: binomial errors ~0.16 points):
    // df ≈ 2 (k − 1), c = t95(2) = 4.303, and a margin of 2.6 SE is inconclusive.
    let three = Accuracy::with_seeds(&[0.52, 0.56, 0.60], 100_000);
    let m = Margin::between(&three, &Accuracy::single(0.50, 100_000));
    let df = m.df.unwrap();
    assert!((2.0..2.1).contains(&df), "{m:?}");
    assert!(close(m.critical(), 4.303, 0.1), "{m:?}");
    assert!(m.m > 2.5 * m.se);
    assert_eq!(m.verdict(), Verdict::Inconclusive);
    assert!(m.text().contains("points, needs 4."), "{}", m.text());
    // The same spread on 500 images: the binomial errors dominate, df is large, c = 2.
    let three = Accuracy::with_seeds(&[0.555, 0.56, 0.565], 500);
    let m = Margin::between(&three, &Accuracy::single(0.45, 500));
    assert!(m.df.unwrap() > 1000.0 && m.critical() == 2.0, "{m:?}");
    assert_eq!(
        m.text(),
        format!("{:+.1} ± {:.1} points", m.m * 100.0, m.se * 100.0)
    );
    // Two seed-spread terms pool their degrees of freedom (Welch-Satterthwaite): two models of
    // three seeds with equal spreads give ~4.
    let a = Accuracy::with_seeds(&[0.52, 0.56, 0.60], 100_000);
    let b = Accuracy::with_seeds(&[0.42, 0.46, 0.50], 100_000);
    let df = Margin::between(&a, &b).df.unwrap();
    assert!((4.0..4.2).contains(&df), "{df}");
    // Files from before the field read as known margins.
    let old: Margin = serde_json::from_str(r#"{"m": 0.1, "se": 0.02}"#).unwrap();
    assert_eq!(old, Margin::known(0.1, 0.02));
}

#[test]
fn t_between_whole_degrees_of_freedom() {
    assert!(close(t95_at(2.0), 4.303, 1e-12) && close(t95_at(0.3), 12.706, 1e-12));
    let (a, b, c) = (t95_at(2.0), t95_at(2.5), t95_at(3.0));
    assert!(a > b && b > c, "{a} {b} {c}");
    assert!(close(t95_at(1e12), Z95, 1e-6));
}

#[test]
fn a_seeded_interval_uses_student_t() {
    // One seed: exactly the Wilson interval.
    assert_eq!(Accuracy::single(0.49, 500).interval(), wilson(0.49, 500));
    // Three seeds on 100,000 images (the spread dominates): about ± t95(2)·s/√3.
    let a = Accuracy::with_seeds(&[0.52, 0.56, 0.60], 100_000);
    let i = a.interval();
    let half = 4.303 * 0.04 / 3f64.sqrt();
    assert!(
        close(i.hi - 0.56, half, 2e-3) && close(0.56 - i.lo, half, 2e-3),
        "{i:?}"
    );
}

/// The rule's one-sided error when the claim is false at its boundary (true margin 0), for
/// three seeds a side whose spread dominates: 1.7% with Student's t (2.5% meant; Welch-
/// Satterthwaite errs on the safe side at so few seeds), where c = 2 gave 5.8% (simulated).
#[test]
fn the_margin_rule_is_calibrated_for_three_seeds() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let rows = 20_000;
    let mut holds = 0;
    for _ in 0..rows {
        let mut draw = || -> Vec<f64> {
            (0..3)
                .map(|_| 0.5 + 0.02 * rng.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        };
        let (a, b) = (draw(), draw());
        let m = Margin::between(
            &Accuracy::with_seeds(&a, 1_000_000),
            &Accuracy::with_seeds(&b, 1_000_000),
        );
        holds += usize::from(m.verdict() == Verdict::Holds);
    }
    let rate = holds as f64 / rows as f64;
    // 20,000 rows: the rate's standard error is ~0.11 points.
    assert!(
        (0.012..=0.035).contains(&rate),
        "{:.2}% hold by chance",
        100.0 * rate
    );
}

#[test]
fn f_tail_matches_tables() {
    // 95% points of F (tables), of t² (F(1, d)) and of χ²(d1)/d1 (d2 = ∞).
    for (f, d1, d2) in [
        (4.2565, 2.0, 9.0),
        (4.9646, 1.0, 10.0),
        (3.0984, 3.0, 20.0),
        (3.2592, 4.0, 12.0),
        (2.776f64.powi(2), 1.0, 4.0),
        (2.9957, 2.0, f64::INFINITY),
        (3.8415, 1.0, f64::INFINITY),
        (1.8307, 10.0, f64::INFINITY),
    ] {
        let p = f_upper_tail(f, d1, d2);
        assert!(close(p, 0.05, 2e-4), "F({d1}, {d2}) > {f}: {p}");
    }
    // 99% points, fractional df between whole ones, and the χ² limit.
    assert!(close(f_upper_tail(8.0215, 2.0, 9.0), 0.01, 1e-4));
    let (a, b, c) = (
        f_upper_tail(4.0, 2.0, 9.0),
        f_upper_tail(4.0, 2.0, 9.5),
        f_upper_tail(4.0, 2.0, 10.0),
    );
    assert!(a > b && b > c, "{a} {b} {c}");
    assert!(close(
        f_upper_tail(3.0, 2.0, 1e7),
        f_upper_tail(3.0, 2.0, f64::INFINITY),
        1e-5
    ));
    // Edges.
    assert_eq!(f_upper_tail(0.0, 2.0, 9.0), 1.0);
    assert_eq!(f_upper_tail(f64::INFINITY, 2.0, 9.0), 0.0);
    assert!(f_upper_tail(f64::NAN, 2.0, 9.0).is_nan() && f_upper_tail(1.0, 0.0, 9.0).is_nan());
    // Tails are monotone in f and stay in [0, 1].
    let mut last = 1.0;
    for i in 1..200 {
        let p = f_upper_tail(i as f64 * 0.1, 3.0, 7.0);
        assert!((0.0..=last).contains(&p), "{p} after {last}");
        last = p;
    }
}
