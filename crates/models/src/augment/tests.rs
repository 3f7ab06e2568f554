use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

fn close(a: &Tensor, b: &Tensor, tol: f64) -> bool {
    a.size() == b.size() && (a - b).abs().max().double_value(&[]) <= tol
}

fn images(n: i64, c: i64, h: i64, w: i64) -> Tensor {
    let _g = crate::rng_lock();
    tch::manual_seed(7);
    Tensor::rand([n, c, h, w], (Kind::Float, Device::Cpu))
}

/// The transforms with only a padded crop and a flip are [`crop_flip`]: the same draws, the
/// same images.
#[test]
fn a_padded_crop_and_flip_alone_are_crop_flip() {
    let x = images(5, 3, 8, 8);
    let t = Transforms {
        crop: Crop::Pad { pad: 2 },
        flip: true,
        color_jitter: 0.0,
        rotate_deg: 0.0,
        lighting: 0.0,
    };
    let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(1), ChaCha8Rng::seed_from_u64(1));
    let out = augment_batch(&x, &Augment::Transforms(t), &mut a);
    assert!(out.equal(&crop_flip(&x, 2, &mut b)));
    assert_eq!(a.gen::<u64>(), b.gen::<u64>());
}

/// A rotation by 90 degrees is `rot90` (counter-clockwise as shown: the top-right corner goes
/// to the top left), by 0 the identity, and a small one moves few pixels.
#[test]
fn rotation_turns_counter_clockwise_about_the_centre() {
    let x = images(2, 3, 6, 6);
    assert!(close(&rotate(&x, &[90.0, 90.0]), &x.rot90(1, [2, 3]), 1e-6));
    assert!(close(
        &rotate(&x, &[-90.0, -90.0]),
        &x.rot90(-1, [2, 3]),
        1e-6
    ));
    assert!(close(&rotate(&x, &[0.0, 0.0]), &x, 1e-6));
    let big = images(1, 1, 32, 32);
    let moved = rotate(&big, &[2.0])
        .ne_tensor(&big)
        .sum(Kind::Int64)
        .int64_value(&[]);
    assert!(
        moved > 0 && moved < 32 * 32 / 4,
        "{moved} of 1024 pixels moved"
    );
}

/// ColorJitter follows torchvision's formulas in each image's own order.
#[test]
fn color_jitter_applies_the_factors_in_each_images_order() {
    let x = images(2, 3, 4, 4) * 0.4;
    let id = color_jitter(&x, &[([0, 1, 2], [1.0; 3]), ([2, 1, 0], [1.0; 3])]);
    assert!(close(&id, &x, 1e-6));
    // Brightness 2 (values stay below 1), contrast 0: every pixel is the gray mean of 2x.
    let gray_mean = |v: &Tensor| {
        let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([1, 3, 1, 1]);
        (v * w)
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            .mean(Kind::Float)
    };
    let a = color_jitter(&x.narrow(0, 0, 1), &[([0, 1, 2], [2.0, 0.0, 1.0])]);
    let m = gray_mean(&(x.narrow(0, 0, 1) * 2.0));
    assert!(close(&a, &m.expand_as(&a), 1e-5));
    // Contrast 0 first, then brightness 2: twice the gray mean of x.
    let b = color_jitter(&x.narrow(0, 0, 1), &[([1, 0, 2], [2.0, 0.0, 1.0])]);
    let m = gray_mean(&x.narrow(0, 0, 1)) * 2.0;
    assert!(close(&b, &m.expand_as(&b), 1e-5));
    // Saturation 0: each channel is the pixel's gray value; brightness clamps at 1.
    let s = color_jitter(&x.narrow(0, 1, 1), &[([2, 0, 1], [10.0, 1.0, 0.0])]);
    let g = (x.narrow(0, 1, 1) * Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([1, 3, 1, 1]))
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    assert!(close(&s, &(g * 10.0).clamp(0.0, 1.0).expand_as(&s), 1e-5));
    // A gray image keeps its saturation; its contrast blends with its mean.
    let one = images(1, 1, 4, 4);
    let k = color_jitter(&one, &[([2, 1, 0], [1.0, 0.5, 0.0])]);
    let want = (&one * 0.5 + one.mean(Kind::Float) * 0.5).clamp(0.0, 1.0);
    assert!(close(&k, &want, 1e-6));
}

/// Lighting adds `V (alpha * lambda)` to the channels, the library's formula, and keeps the
/// images in [0, 1].
#[test]
fn lighting_shifts_each_channel_by_the_pca_combination() {
    let x = images(1, 3, 2, 2) * 0.5 + 0.25;
    let alpha = [0.1, -0.2, 0.3];
    let out = lighting(&x, &[alpha]);
    for (i, row) in IMAGENET_PCA_EIGVEC.iter().enumerate() {
        let want: f64 = (0..3)
            .map(|j| row[j] * alpha[j] * IMAGENET_PCA_EIGVAL[j])
            .sum();
        let got = (out.get(0).get(i as i64) - x.get(0).get(i as i64)).mean(Kind::Double);
        assert!((got.double_value(&[]) - want).abs() < 1e-6, "channel {i}");
    }
    let edge = lighting(
        &Tensor::ones([1, 3, 2, 2], (Kind::Float, Device::Cpu)),
        &[[-5.0; 3]],
    );
    assert_eq!(edge.max().double_value(&[]), 1.0);
}

/// A resized window of the whole image is the image; half of it is the bilinear 2x upsampling
/// of that half (align_corners false, as PIL's resize), mirrored when flipped.
#[test]
fn a_resized_window_is_the_bilinear_resize_of_that_window() {
    let x = images(1, 3, 8, 8);
    assert!(close(
        &resize_windows(&x, &[(0, 0, 8, 8)], &[false]),
        &x,
        1e-5
    ));
    assert!(close(
        &resize_windows(&x, &[(0, 0, 8, 8)], &[true]),
        &x.flip([3]),
        1e-5
    ));
    let half = x.narrow(2, 2, 4).narrow(3, 4, 4);
    let up = half.upsample_bilinear2d([8, 8], false, None, None);
    let got = resize_windows(&x, &[(2, 4, 4, 4)], &[false]);
    // The border rows sample between the window and its neighbours, as the resize of the
    // crop alone would not: compare the inside.
    let inner = |t: &Tensor| t.narrow(2, 1, 6).narrow(3, 1, 6);
    assert!(close(&inner(&got), &inner(&up), 1e-5));
}

/// RandomResizedCrop's windows lie inside the image with torchvision's area and ratio ranges
/// (up to rounding), and an image no allowed window fits falls back to the centre.
#[test]
fn resized_crop_windows_follow_torchvisions_ranges() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut small, mut large) = (1.0f64, 0.0f64);
    for _ in 0..2000 {
        let (top, left, h, w) = resized_crop_window(64, 64, &mut rng);
        assert!(top >= 0 && left >= 0 && top + h <= 64 && left + w <= 64);
        let area = (h * w) as f64 / 4096.0;
        let ratio = w as f64 / h as f64;
        assert!((0.06..=1.0).contains(&area), "area {area}");
        assert!((0.7..=1.45).contains(&ratio), "ratio {ratio}");
        (small, large) = (small.min(area), large.max(area));
    }
    assert!(small < 0.12 && large > 0.9, "areas {small}..{large}");
    assert_eq!(resized_crop_window(1, 100, &mut rng), (0, 49, 1, 1));
    assert_eq!(resized_crop_window(100, 1, &mut rng), (49, 0, 1, 1));
}

/// The CIFAR transforms change the images, keep them in [0, 1], and are a function of the seed.
#[test]
fn the_cifar_transforms_are_seeded_and_stay_in_range() {
    let x = images(16, 3, 32, 32);
    let aug = Augment::Transforms(Transforms::CIFAR);
    let run = |seed| augment_batch(&x, &aug, &mut ChaCha8Rng::seed_from_u64(seed));
    let (a, b, c) = (run(3), run(3), run(4));
    assert!(a.equal(&b) && !a.equal(&c) && !a.equal(&x));
    assert!(a.min().double_value(&[]) >= 0.0 && a.max().double_value(&[]) <= 1.0);
    let imagenet = Augment::Transforms(Transforms::IMAGENET);
    let d = augment_batch(&x, &imagenet, &mut ChaCha8Rng::seed_from_u64(3));
    assert_eq!(d.size(), x.size());
    assert!(!d.equal(&x));
}

/// Bad values and lighting on gray images are errors naming the field or the data.
#[test]
fn bad_augmentations_are_named_errors() {
    let with = |f: fn(&mut Transforms)| {
        let mut t = Transforms::CIFAR;
        f(&mut t);
        Augment::Transforms(t)
    };
    let err = |a: Augment, shape: &[usize]| a.check(shape, "D_R").unwrap_err().to_string();
    assert!(err(with(|t| t.color_jitter = -0.1), &[3, 32, 32]).contains("color_jitter"));
    assert!(err(with(|t| t.rotate_deg = f64::NAN), &[3, 32, 32]).contains("rotate_deg"));
    assert!(err(with(|t| t.lighting = 0.05), &[1, 28, 28]).contains("D_R"));
    assert!(err(with(|t| t.crop = Crop::Pad { pad: 40 }), &[3, 32, 32]).contains("crop_pad"));
    assert!(err(Augment::CropFlip { pad: 33 }, &[3, 32, 32]).contains("crop_pad"));
    Augment::Transforms(Transforms::IMAGENET)
        .check(&[3, 32, 32], "x")
        .unwrap();
}

/// The crop-and-flip augmentation keeps its serialised form (and so the cache keys of every
/// model trained with it); the transforms read back as written.
#[test]
fn augment_serialises_as_before() {
    let old = serde_json::to_string(&Augment::CropFlip { pad: 4 }).unwrap();
    assert_eq!(old, r#"{"type":"crop_flip","pad":4}"#);
    assert_eq!(
        serde_json::to_string(&Augment::None).unwrap(),
        r#"{"type":"none"}"#
    );
    for t in [Transforms::CIFAR, Transforms::IMAGENET] {
        let a = Augment::Transforms(t);
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Augment>(&s).unwrap(), a, "{s}");
    }
}

/// Values `check` refuses do not panic when the batch function is called without it.
#[test]
fn unchecked_bad_values_count_as_zero() {
    let x = images(2, 3, 8, 8);
    let t = Transforms {
        crop: Crop::Pad { pad: -3 },
        flip: false,
        color_jitter: f64::INFINITY,
        rotate_deg: f64::NAN,
        lighting: -1.0,
    };
    let out = augment_batch(
        &x,
        &Augment::Transforms(t),
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    assert!(out.equal(&x));
}
