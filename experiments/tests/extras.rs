//! Unit tests of the extras' pure computations (no data, no trained model): distances,
//! correlation, the rules behind findings and verdicts, and names. The `[extras]` preset fields
//! are tested beside the preset (experiments/src/preset/extras/tests.rs).
//! The experiments themselves run in the end-to-end smoke test (tests/smoke.rs at the root).
use nrf_experiments::extras::stats::*;
use nrf_experiments::extras::{
    arch_slug, cosine, diversity, eps_sensitivity, figure3, overfitting, source_vs_target,
};
use nrf_models::Arch;
use tch::Tensor;

fn brute_mean_pairwise(rows: &[Vec<f32>]) -> f64 {
    let mut s = 0.0;
    let mut k = 0;
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            s += l2(&rows[i], &rows[j]);
            k += 1;
        }
    }
    s / k as f64
}

fn pseudo_random_rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) as f64 / (1u64 << 31) as f64) as f32
                })
                .collect()
        })
        .collect()
}

fn to_tensor(rows: &[Vec<f32>]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

#[test]
fn l2_distance_by_hand() {
    assert_eq!(l2(&[0.0, 0.0], &[3.0, 4.0]), 5.0);
    assert_eq!(l2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
}

#[test]
fn mean_pairwise_matches_brute_force() {
    // Three points on a line: distances 1, 2, 3 -> mean 2.
    let line = vec![vec![0.0f32], vec![1.0], vec![3.0]];
    assert!((mean_pairwise_l2(&to_tensor(&line)).unwrap() - 2.0).abs() < 1e-9);
    // Random rows, small and larger than one chunk (512 rows), and image-shaped input.
    for (n, d) in [(7, 5), (600, 3)] {
        let rows = pseudo_random_rows(n, d, n as u64);
        let got = mean_pairwise_l2(&to_tensor(&rows)).unwrap();
        let want = brute_mean_pairwise(&rows);
        assert!(
            (got - want).abs() < 1e-6 * want.max(1.0),
            "n={n}: {got} vs {want}"
        );
    }
    let rows = pseudo_random_rows(6, 12, 3);
    let img = to_tensor(&rows).view([6, 1, 3, 4]);
    assert!((mean_pairwise_l2(&img).unwrap() - brute_mean_pairwise(&rows)).abs() < 1e-6);
    // Identical rows: no diversity.
    let same = vec![vec![0.5f32; 4]; 5];
    assert!(mean_pairwise_l2(&to_tensor(&same)).unwrap().abs() < 1e-9);
}

#[test]
fn mean_pairwise_rejects_bad_input() {
    let one = to_tensor(&[vec![1.0f32, 2.0]]);
    assert!(format!("{:#}", mean_pairwise_l2(&one).unwrap_err()).contains("at least two"));
    let nan = to_tensor(&[vec![1.0f32, f32::NAN], vec![0.0, 0.0]]);
    assert!(format!("{:#}", mean_pairwise_l2(&nan).unwrap_err()).contains("NaN"));
}

#[test]
fn pearson_known_values_and_degenerate_cases() {
    let x = [1.0, 2.0, 3.0, 4.0];
    assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
    assert!((pearson(&x, &[8.0, 6.0, 4.0, 2.0]).unwrap() + 1.0).abs() < 1e-12);
    // By hand: x = 1..4, y = (1, 3, 2, 4): sxy = 4, sxx = syy = 5 -> r = 0.8.
    assert!((pearson(&x, &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(pearson(&x, &[1.0, 1.0, 1.0, 1.0]), None);
    assert_eq!(pearson(&[1.0], &[2.0]), None);
    assert_eq!(pearson(&x, &[1.0, 2.0]), None);
    assert_eq!(pearson(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
}

fn accs(values: &[f64], n: usize) -> Vec<Accuracy> {
    values.iter().map(|&v| Accuracy::single(v, n)).collect()
}

#[test]
fn significance_rules() {
    use nrf_results::Verdict;
    // Chance 10% on 1000 examples: the Wilson interval of 13% is [11.0, 15.2], of 11.5% [9.7, 13.6].
    assert_eq!(
        above_chance(&Accuracy::single(0.13, 1000), 0.1),
        Verdict::Holds
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.115, 1000), 0.1),
        Verdict::Inconclusive
    );
    assert_eq!(
        above_chance(&Accuracy::single(0.02, 1000), 0.1),
        Verdict::DoesNotHold
    );
    let m = |a: f64, b: f64, n: usize| {
        Margin::between(&Accuracy::single(a, n), &Accuracy::single(b, n)).verdict()
    };
    assert_eq!(m(0.5, 0.1, 500), Verdict::Holds);
    assert_eq!(m(0.14, 0.13, 100), Verdict::Inconclusive);
    assert_eq!(m(0.1, 0.5, 500), Verdict::DoesNotHold);
    // Precise points over many architectures decide; four points rarely do.
    let xs: Vec<f64> = (0..12).map(|i| 0.2 + 0.05 * i as f64).collect();
    let up: Vec<f64> = xs.iter().map(|x| 0.1 + 0.5 * x).collect();
    let down: Vec<f64> = xs.iter().map(|x| 0.5 - 0.5 * x).collect();
    let c = correlation(&accs(&xs, 100_000), &accs(&up, 100_000));
    assert_eq!(correlation_verdict(c.as_ref()), Verdict::Holds);
    let c = correlation(&accs(&xs, 100_000), &accs(&down, 100_000));
    assert_eq!(correlation_verdict(c.as_ref()), Verdict::DoesNotHold);
    let c = correlation(&accs(&xs[..4], 1000), &accs(&[0.3, 0.2, 0.4, 0.35], 1000));
    assert_eq!(correlation_verdict(c.as_ref()), Verdict::Inconclusive);
    let c = correlation(&accs(&xs[..2], 1000), &accs(&up[..2], 1000));
    assert_eq!(correlation_verdict(c.as_ref()), Verdict::NotApplicable);
    assert_eq!(correlation_verdict(None), Verdict::NotApplicable);
    assert_eq!(points_verdict(&[]), Verdict::NotApplicable);
    assert_eq!(
        points_verdict(&[Verdict::Holds, Verdict::Inconclusive]),
        Verdict::Partly
    );
    assert_eq!(
        points_verdict(&[Verdict::Inconclusive]),
        Verdict::Inconclusive
    );
}

#[test]
fn words_follow_the_numbers() {
    assert_eq!(trend_words(&[0.2, 0.3, 0.4], 0.02), "rises");
    assert_eq!(trend_words(&[0.4, 0.3, 0.2], 0.02), "falls");
    assert_eq!(trend_words(&[0.3, 0.31, 0.3], 0.02), "is flat");
    assert_eq!(
        trend_words(&[0.2, 0.5, 0.3], 0.02),
        "rises (non-monotonically)"
    );
    assert_eq!(
        trend_words(&[0.3, 0.5, 0.3], 0.02),
        "ends where it starts (non-monotonically)"
    );
    assert_eq!(ratio_words(0.9, 0.02), "lower");
    assert_eq!(ratio_words(1.01, 0.02), "about the same");
    assert_eq!(ratio_words(1.1, 0.02), "higher");
    assert_eq!(correlation_words(0.8), "a strong positive");
    assert_eq!(correlation_words(-0.5), "a moderate negative");
    assert_eq!(correlation_words(0.05), "no clear");
    assert_eq!(pct(0.4211), "42.1%");
    assert_eq!(pct(f64::NAN), "—");
    assert_eq!(points(0.125), "12.5");
}

/// An architecture's point: accuracies on 10,000 test images, transfer on `n_transfer` images.
fn arch_point(name: &str, acc_det: f64, transfer: f64, n_transfer: usize) -> figure3::ArchPoint {
    figure3::ArchPoint {
        arch: name.into(),
        acc_det: Accuracy::single(acc_det, 10_000),
        acc_rand: None,
        acc_std: Accuracy::single(0.9, 10_000),
        transfer: Accuracy::single(transfer, n_transfer),
    }
}

/// `k` architectures with accuracy and transfer rising (or, with `down`, falling) together.
fn line_of_points(k: usize, down: bool) -> Vec<figure3::ArchPoint> {
    (0..k)
        .map(|i| {
            let x = 0.2 + 0.3 * i as f64 / (k - 1) as f64;
            let y = if down { 0.6 - x } else { x - 0.1 };
            arch_point(&format!("a{i}"), x, y, 100_000)
        })
        .collect()
}

#[test]
fn figure3_finding_follows_the_correlation() {
    // Twelve precise architectures on a line decide; the text names the extremes.
    let up = line_of_points(12, false);
    let (text, verdict) = figure3::finding(&up, 0.1);
    assert_eq!(verdict, Verdict::Holds, "{text}");
    assert!(
        text.contains("strong positive") && text.contains("r = 1.00 ["),
        "{text}"
    );
    assert!(text.contains("a11 learns most") && text.contains("a11 is the most susceptible"));
    let (text, verdict) = figure3::finding(&line_of_points(12, true), 0.1);
    assert_eq!(verdict, Verdict::DoesNotHold, "{text}");
    assert!(text.contains("negative"), "{text}");
    // Four architectures (the default preset): r = 0.95 is still inside the sampling noise.
    let four = [
        arch_point("a", 0.2, 0.1, 1000),
        arch_point("b", 0.3, 0.2, 1000),
        arch_point("c", 0.4, 0.35, 1000),
        arch_point("d", 0.5, 0.3, 1000),
    ];
    let (text, verdict) = figure3::finding(&four, 0.1);
    assert_eq!(verdict, Verdict::Inconclusive, "{text}");
    assert!(text.contains("d learns most") && text.contains("c is the most susceptible"));
    // A model at chance is named; no spread -> n/a.
    let flat = [
        arch_point("a", 0.1, 0.2, 1000),
        arch_point("b", 0.3, 0.2, 1000),
        arch_point("c", 0.4, 0.2, 1000),
    ];
    let (text, verdict) = figure3::finding(&flat, 0.1);
    assert_eq!(verdict, Verdict::NotApplicable, "{text}");
    assert!(
        text.contains("undefined") && text.contains("a is not clearly above chance"),
        "{text}"
    );
    // A perfect correlation among models that all stayed at chance tests nothing.
    let void = [
        arch_point("a", 0.095, 0.01, 1000),
        arch_point("b", 0.1, 0.02, 1000),
        arch_point("c", 0.103, 0.03, 1000),
    ];
    let (text, verdict) = figure3::finding(&void, 0.1);
    assert_eq!(verdict, Verdict::NotApplicable);
    assert!(
        text.contains("D_det cannot test the claim") && !text.contains("correlation"),
        "{text}"
    );
    // Then D_rand, when every architecture has it, decides (and the text says so).
    let with_rand = |points: &[figure3::ArchPoint], rand: &[f64]| -> Vec<figure3::ArchPoint> {
        points
            .iter()
            .zip(rand)
            .map(|(p, &r)| figure3::ArchPoint {
                acc_rand: Some(Accuracy::single(r, 10_000)),
                ..p.clone()
            })
            .collect()
    };
    let (text, verdict) = figure3::finding(&with_rand(&void, &[0.3, 0.4, 0.5]), 0.1);
    assert_eq!(verdict, Verdict::Inconclusive, "{text}");
    assert!(
        text.contains("With D_rand") && text.contains("The verdict is D_rand's"),
        "{text}"
    );
    // D_det's verdict stands when it can test the claim, whatever D_rand shows.
    let rand: Vec<f64> = (0..12).map(|i| 0.5 - 0.02 * i as f64).collect();
    assert_eq!(
        figure3::finding(&with_rand(&up, &rand), 0.1).1,
        Verdict::Holds
    );
    // Transfer rates that noise could produce (1-2% on 500 images) test nothing, whatever r is.
    let noise: Vec<_> = up
        .iter()
        .enumerate()
        .map(|(i, p)| figure3::ArchPoint {
            transfer: Accuracy::single(0.008 + 0.001 * i as f64, 500),
            ..p.clone()
        })
        .collect();
    let (text, verdict) = figure3::finding(&noise, 0.1);
    assert_eq!(verdict, Verdict::Inconclusive, "{text}");
    assert!(text.contains("within sampling noise"), "{text}");
}

/// Figure 3's points as two runs of the default preset measured them with one model per point
/// (f32 and bf16, 2026-12-05: VGG-16 on D_det at 5.0% and 14.6%, ResNet-18's transfer at 17.5%
/// and 10.3%): one such run decides the claim; the same means with a seed spread smaller than
/// the two runs' differences are inconclusive, and the text says the spread is in the interval.
#[test]
fn figure3_seed_spread_widens_the_correlation() {
    let single = [
        arch_point("cnn", 0.039, 0.045, 1000),
        arch_point("mlp", 0.037, 0.025, 1000),
        arch_point("resnet", 0.110, 0.103, 1000),
        arch_point("vgg", 0.146, 0.125, 1000),
    ];
    let (text, verdict) = figure3::finding(&single, 0.1);
    assert_eq!(verdict, Verdict::Holds, "{text}");
    assert!(!text.contains("seed spreads"), "{text}");
    // Three seeds per point around the same means: on the larger architectures an sd of 1
    // point in accuracy (VGG-16 stays above chance) and 3 points in transfer.
    let spread = |v: f64, sd: f64| [v - sd, v, v + sd];
    let seeded: Vec<_> = single
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (sd_x, sd_y) = if i >= 2 { (0.01, 0.03) } else { (0.002, 0.002) };
            figure3::ArchPoint {
                acc_det: Accuracy::with_seeds(&spread(p.acc_det.value, sd_x), 10_000),
                transfer: Accuracy::with_seeds(&spread(p.transfer.value, sd_y), 1000),
                ..p.clone()
            }
        })
        .collect();
    let (text, verdict) = figure3::finding(&seeded, 0.1);
    assert_eq!(verdict, Verdict::Inconclusive, "{text}");
    assert!(text.contains("and seed spreads"), "{text}");
}

fn eps_pts(accs: &[f64]) -> Vec<eps_sensitivity::EpsPoint> {
    accs.iter()
        .enumerate()
        .map(|(i, &acc)| eps_sensitivity::EpsPoint {
            eps: 0.5 * (i + 1) as f64,
            acc: Accuracy::single(acc, 10_000),
            success: 0.9,
        })
        .collect()
}

#[test]
fn eps_sensitivity_verdict_counts_above_chance_points() {
    let (text, v) = eps_sensitivity::finding(
        &[
            ("D_rand", eps_pts(&[0.5, 0.6])),
            ("D_det", eps_pts(&[0.3, 0.4])),
        ],
        0.1,
    );
    assert_eq!(v, Verdict::Holds);
    assert!(
        text.contains(
            "D_rand: accuracy rises from 50.0% [49.0, 51.0] at eps=0.5 to 60.0% [59.0, 61.0] at eps=1"
        ),
        "{text}"
    );
    let (text, v) = eps_sensitivity::finding(
        &[
            ("D_rand", eps_pts(&[0.5, 0.6])),
            ("D_det", eps_pts(&[0.1, 0.05])),
        ],
        0.1,
    );
    assert_eq!(v, Verdict::Partly);
    assert!(
        text.contains("above chance at 0 of 2 radii (below chance at 1)"),
        "{text}"
    );
    // 10% is chance itself (inconclusive), 9% on 10,000 images is clearly below it.
    let (_, v) = eps_sensitivity::finding(&[("D_det", eps_pts(&[0.1, 0.09]))], 0.1);
    assert_eq!(v, Verdict::DoesNotHold);
    let (_, v) = eps_sensitivity::finding(&[("D_det", eps_pts(&[0.1, 0.101]))], 0.1);
    assert_eq!(v, Verdict::Inconclusive);
    assert_eq!(eps_sensitivity::finding(&[], 0.1).1, Verdict::NotApplicable);
}

#[test]
fn eps_set_names_match_table1() {
    assert_eq!(eps_sensitivity::set_name("D_det", 1.0, 1.0), "D_det");
    assert_eq!(eps_sensitivity::set_name("D_det", 2.0, 1.0), "D_det_eps2");
    assert_eq!(
        eps_sensitivity::set_name("D_rand", 0.25, 1.0),
        "D_rand_eps0p25"
    );
}

#[test]
fn cosine_verdicts() {
    let f = |b: f64, a: f64, nr: f64| {
        let std = Accuracy::single(0.8, 10_000);
        let (b, a, nr) = (
            Accuracy::single(b, 1000),
            Accuracy::single(a, 1000),
            Accuracy::single(nr, 1000),
        );
        cosine::finding(("L2", &std, &b), ("cosine", &std, &a), &nr, 0.5)
    };
    assert_eq!(f(0.4, 0.4, 0.05).1, Verdict::Holds);
    assert_eq!(f(0.4, 0.01, 0.05).1, Verdict::DoesNotHold);
    assert_eq!(f(0.4, 0.06, 0.05).1, Verdict::Inconclusive);
    assert_eq!(f(0.06, 0.4, 0.05).1, Verdict::Partly);
    assert!(f(0.4, 0.4, 0.05).0.contains("m = +35.0 ± "));
    let (text, v) = f(0.05, 0.05, 0.05);
    assert_eq!(v, Verdict::NotApplicable);
    assert!(
        text.starts_with("With L2 distance") && text.contains("neither"),
        "{text}"
    );
    assert_eq!(
        cosine::alternative(nrf_attacks::Distance::L2Squared).1,
        "D_R_cos"
    );
    assert_eq!(
        cosine::alternative(nrf_attacks::Distance::Cosine).1,
        "D_R_l2"
    );
}

fn div(set: &str, pixel: f64, rep: f64) -> diversity::SetDiversity {
    diversity::SetDiversity {
        set: set.into(),
        pixel,
        rep,
        classes_below_d_pixel: 0,
        classes_below_d_rep: 0,
    }
}

#[test]
fn diversity_answer_follows_the_ratios() {
    let d = div("D", 10.0, 5.0);
    let t = diversity::finding(&d, &[div("D_R", 8.0, 4.0), div("D_NR", 10.0, 5.0)], 10);
    assert!(
        t.contains("D_R is less diverse than D, in both spaces"),
        "{t}"
    );
    assert!(
        t.contains("D_NR's per-class diversity is about the same as D's in pixel"),
        "{t}"
    );
    assert!(
        t.contains("D_R's per-class diversity is below D's in pixel space (8.000 vs 10.000"),
        "{t}"
    );
    let t = diversity::finding(&d, &[div("D_R", 8.0, 6.0)], 10);
    assert!(t.contains("in pixel space only"), "{t}");
    let t = diversity::finding(&d, &[div("D_R", 11.0, 6.0)], 10);
    assert!(t.contains("D_R is not less diverse"), "{t}");
}

#[test]
fn source_vs_target_sides() {
    let c = |set: &str, pix: f64, rep: f64, y: f64, y0: f64| source_vs_target::Closeness {
        set: set.into(),
        n: 100,
        pixel_to_x0: 2.0,
        pixel_to_x: 8.0,
        pixel_closer_to_x: pix,
        rep_to_x0: 1.0,
        rep_to_x: 2.0,
        rep_closer_to_x: rep,
        n_diff: 90,
        label_y: y,
        label_y0: y0,
    };
    let t =
        source_vs_target::finding(&[c("D_R", 0.1, 0.9, 0.7, 0.2), c("D_NR", 0.0, 0.2, 0.1, 0.8)]);
    assert!(
        t.contains("D_R: x_r is mostly closer to the start x0 in pixel space"),
        "{t}"
    );
    assert!(
        t.contains("and to the target x in the independent model's representation"),
        "{t}"
    );
    assert!(t.contains("labels it more often the target's class"), "{t}");
    assert!(
        t.contains("D_NR: x_r is mostly closer to the start x0 in pixel space"),
        "{t}"
    );
    assert!(
        t.contains("labels it more often the start's class (10.0% y vs 80.0% y0"),
        "{t}"
    );
}

fn gap(model: &str, on: &str, train: f64, test: f64, best: f64) -> overfitting::GapRow {
    overfitting::GapRow {
        model: model.into(),
        trained_on: on.into(),
        train_acc: train,
        test_acc: test,
        best_test: best,
        best_epoch: 3,
        last_test: test,
        train_n: 1000,
        test_n: 10_000,
        curve_n: 2000,
    }
}

#[test]
fn overfitting_finding() {
    let rows = [
        gap("on_control", "D (control)", 0.95, 0.85, 0.85),
        gap("on_D_R", "D_R", 0.9, 0.8, 0.8),
        gap("on_D_NR", "D_NR", 0.99, 0.6, 0.7),
        gap("on_D_det", "D_det", 0.99, 0.3, 0.3),
    ];
    let t = overfitting::finding(&rows);
    assert!(
        t.starts_with("The largest generalisation gap is the D_det model's"),
        "{t}"
    );
    assert!(t.contains("gap is 10.0 points"), "{t}");
    assert!(
        t.contains("D_R (m = +0.0 ± ")
            && t.contains("is no larger")
            && t.contains("D_NR over-fits more"),
        "{t}"
    );
    assert!(
        t.contains("falls after its best epoch for D_NR (best 70.0% at epoch 3"),
        "{t}"
    );
    let calm = overfitting::finding(&rows[..2]);
    assert!(calm.contains("no sign of classical over-fitting"), "{calm}");
    // A 1-point drop on a 2000-image curve is within noise; a 10-point one is not.
    let small = [gap("on_D_R", "D_R", 0.9, 0.8, 0.81)];
    assert!(overfitting::finding(&small).contains("no sign"));
    let big = [gap("on_D_R", "D_R", 0.9, 0.8, 0.9)];
    assert!(overfitting::finding(&big).contains("falls after its best epoch for D_R"));
}

#[test]
fn overfitting_says_relabelled_sets_are_fitted_better_only_when_they_are() {
    let ctl = gap("on_control", "D (control)", 0.95, 0.85, 0.85);
    let fitted = [ctl.clone(), gap("on_D_rand", "D_rand", 0.99, 0.4, 0.4)];
    let t = overfitting::finding(&fitted);
    assert!(
        t.contains("fitted better than they generalise (beyond noise)"),
        "{t}"
    );
    // Train accuracy on the relabelled set no higher than its real-test accuracy: not claimed.
    let not = [ctl, gap("on_D_rand", "D_rand", 0.5, 0.52, 0.52)];
    let t = overfitting::finding(&not);
    assert!(
        !t.contains("(beyond noise)") && t.contains("beyond noise for 0 of 1"),
        "{t}"
    );
}

#[test]
fn arch_slugs_are_file_name_safe() {
    assert_eq!(arch_slug(&Arch::FmnistCnn), "fmnist_cnn");
    assert_eq!(
        arch_slug(&Arch::Mlp {
            hidden: vec![512, 256]
        }),
        "mlp_512_256"
    );
    assert_eq!(arch_slug(&Arch::ResNet18 { width: 8 }), "resnet18_w8");
    assert_eq!(arch_slug(&Arch::Vgg16 { width: 4 }), "vgg16_w4");
}

#[test]
fn shifted_sentence_reads_the_numbers() {
    use nrf_experiments::extras::shifted_sentence;
    assert_eq!(shifted_sentence(&[]), "");
    let s = shifted_sentence(&[0.7, 0.9]);
    assert!(
        s.contains("70.0% to 90.0%") && s.contains("robust features"),
        "{s}"
    );
    let weak = shifted_sentence(&[0.2, 0.6]);
    assert!(
        weak.contains("20.0% to 60.0%") && !weak.contains("robust features"),
        "{weak}"
    );
}
