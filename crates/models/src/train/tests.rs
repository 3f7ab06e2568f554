use super::*;
use crate::{Arch, ModelSpec};
use tch::Device;

/// The training loop as it was before the per-epoch overhead was cut (one index tensor and
/// two host reads per step, a crop per image, a checkpoint after every epoch): the reference
/// the current loop must match bit for bit on CPU.
fn reference_train(
    model: &mut Model,
    data: &nrf_data::Dataset,
    cfg: &TrainConfig,
    perturber: Option<&dyn BatchPerturber>,
    eval: Option<(&Tensor, &Tensor)>,
) -> Vec<EpochMetrics> {
    fn crop_flip_per_image(x: &Tensor, pad: i64, rng: &mut impl Rng) -> Tensor {
        let s = x.size();
        let (n, h, w) = (s[0], s[2], s[3]);
        let padded = x.constant_pad_nd([pad, pad, pad, pad]);
        let crops: Vec<Tensor> = (0..n)
            .map(|i| {
                let (dy, dx) = (rng.gen_range(0..=2 * pad), rng.gen_range(0..=2 * pad));
                let c = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
                if rng.gen_bool(0.5) {
                    c.flip([2])
                } else {
                    c
                }
            })
            .collect();
        Tensor::stack(&crops, 0)
    }
    let mut sgd = Sgd::new(
        model.vs.trainable_variables(),
        cfg.momentum,
        cfg.nesterov,
        cfg.weight_decay,
    );
    let (x_all, y_all) = dataset_to_tensors(data, model.device());
    let (n, bs) = (data.len(), cfg.batch_size);
    let steps_per_epoch = n.div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs;
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        tch::manual_seed((cfg.seed as i64).wrapping_add(epoch as i64 * 1_000_003));
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64 * 7919));
        let order = epoch_order(n, cfg.seed, epoch);
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0i64, 0usize, 0.0);
        for (b, chunk) in order.chunks(bs).enumerate() {
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let mut xb = x_all.index_select(0, &idx);
            let yb = y_all.index_select(0, &idx);
            if let Augment::CropFlip { pad } = cfg.augment {
                xb = crop_flip_per_image(&xb, pad, &mut rng);
            }
            lr = cfg
                .schedule
                .lr_at((epoch - 1) * steps_per_epoch + b, total, steps_per_epoch);
            let (loss, c) = train_step(model, &mut sgd, &xb, &yb, lr, perturber).unwrap();
            loss_sum += loss * chunk.len() as f64;
            correct += c;
            seen += chunk.len();
        }
        history.push(EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            test_acc: eval.map(|(x, y)| crate::accuracy(model, x, y, 500)),
            wall_s: 0.0,
        });
    }
    history
}

/// A perturbation that draws from libtorch's generator, so the test also sees whether the
/// loop keeps the order of random draws.
struct Noise;
impl BatchPerturber for Noise {
    fn perturb(&self, _model: &dyn Classifier, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok((x + (x.rand_like() - 0.5) * 0.1).clamp(0.0, 1.0))
    }
    fn describe(&self) -> String {
        "uniform noise +-0.05".into()
    }
}

fn data(n: usize) -> nrf_data::Dataset {
    tch::manual_seed(1);
    let shape = [1usize, 10, 10];
    let d = 100;
    let labels: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    let noise = Tensor::rand([n as i64, d], (Kind::Float, Device::Cpu)) * 0.5;
    let mut images = Vec::<f32>::try_from(&noise.view([-1])).unwrap();
    for (i, &y) in labels.iter().enumerate() {
        let lo = i * d as usize + y as usize * 30;
        images[lo..lo + 30].iter_mut().for_each(|v| *v += 0.5);
    }
    nrf_data::Dataset {
        name: "synthetic".into(),
        images,
        labels,
        shape,
        num_classes: 3,
        class_names: vec![],
    }
}

fn weights(model: &Model) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = model
        .vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, Vec::<f32>::try_from(&t.contiguous().view([-1])).unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The loop gives bit-identical histories and weights to the reference loop: standard and
/// adversarial-style (a random perturbation), with crop/flip augmentation, a partial last
/// batch and more steps per epoch than SYNC_EVERY; with a checkpoint stem too.
#[test]
fn history_and_weights_equal_the_reference_loop() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    let data = data(900);
    let (x, y) = dataset_to_tensors(&data, Device::Cpu);
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 10, 10], 3);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 32, // 29 steps per epoch, the last one of 4 examples
        augment: Augment::CropFlip { pad: 2 },
        seed: 11,
        ..TrainConfig::default()
    };
    assert!(900usize.div_ceil(32) > SYNC_EVERY);
    let dir = tempfile::tempdir().unwrap();
    for perturber in [None, Some(&Noise as &dyn BatchPerturber)] {
        let mut old = Model::new(&spec, Device::Cpu, 4).unwrap();
        let h_old = reference_train(&mut old, &data, &cfg, perturber, Some((&x, &y)));
        let mut new = Model::new(&spec, Device::Cpu, 4).unwrap();
        let stem = dir.path().join(format!("ckpt-{}", perturber.is_some()));
        let h_new = train(
            &mut new,
            &data,
            &cfg,
            perturber,
            Some((&x, &y)),
            Some(&stem),
        )
        .unwrap();
        let strip = |h: &[EpochMetrics]| -> Vec<EpochMetrics> {
            h.iter()
                .map(|r| EpochMetrics {
                    wall_s: 0.0,
                    ..r.clone()
                })
                .collect()
        };
        assert_eq!(strip(&h_new), strip(&h_old));
        assert!(weights(&new) == weights(&old), "weights differ");
        assert!(h_new[2].train_acc > 0.5, "{h_new:?}");
    }
}

/// With `curve_every = 2` the curve is measured after epochs 2, 4 and the last (5) only, and
/// training is the same bits: the curve reads the model, nothing else.
#[test]
fn the_curve_every_other_epoch_skips_only_the_curve() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    let data = data(200);
    let (x, y) = dataset_to_tensors(&data, Device::Cpu);
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 10, 10], 3);
    let every = TrainConfig {
        epochs: 5,
        batch_size: 32,
        seed: 5,
        ..TrainConfig::default()
    };
    let sparse = TrainConfig {
        curve_every: 2,
        ..every.clone()
    };
    let run = |cfg: &TrainConfig| {
        let mut m = Model::new(&spec, Device::Cpu, 4).unwrap();
        let h = train(&mut m, &data, cfg, None, Some((&x, &y)), None).unwrap();
        (h, weights(&m))
    };
    let ((h1, w1), (h2, w2)) = (run(&every), run(&sparse));
    assert!(w1 == w2, "weights differ");
    let measured: Vec<usize> = h2
        .iter()
        .filter(|e| e.test_acc.is_some())
        .map(|e| e.epoch)
        .collect();
    assert_eq!(measured, [2, 4, 5]);
    for (a, b) in h1.iter().zip(&h2) {
        assert_eq!(
            (a.train_loss, a.train_acc, a.lr),
            (b.train_loss, b.train_acc, b.lr)
        );
        if b.test_acc.is_some() {
            assert_eq!(a.test_acc, b.test_acc, "epoch {}", a.epoch);
        }
    }
    // Written into the configuration only when it is not every epoch.
    let json = |c: &TrainConfig| serde_json::to_string(c).unwrap();
    assert!(!json(&every).contains("curve_every"), "{}", json(&every));
    assert!(
        json(&sparse).contains("\"curve_every\":2"),
        "{}",
        json(&sparse)
    );
    let back: TrainConfig = serde_json::from_str(&json(&every)).unwrap();
    assert_eq!(back.curve_every, 1);
    let zero = TrainConfig {
        curve_every: 0,
        ..every
    };
    assert!(zero
        .validate()
        .unwrap_err()
        .to_string()
        .contains("curve_every"));
}

#[test]
fn crop_flip_draws_and_copies_as_per_image_crops() {
    let _rng = crate::rng_lock();
    let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut rng2 = rng.clone();
    let out = crop_flip(&x, 2, &mut rng);
    assert_eq!(out.size(), vec![2, 3, 4, 5]);
    let padded = x.constant_pad_nd([2, 2, 2, 2]);
    for i in 0..2 {
        let (dy, dx) = (rng2.gen_range(0..=4), rng2.gen_range(0..=4));
        let mut c = padded.get(i).narrow(1, dy, 4).narrow(2, dx, 5);
        if rng2.gen_bool(0.5) {
            c = c.flip([2]);
        }
        assert!(out.get(i).equal(&c), "image {i}");
    }
    assert_eq!(rng.gen::<u64>(), rng2.gen::<u64>());
}

/// A checkpoint whose optimiser buffer has another shape than the model's parameter (a
/// hand-edited or foreign file with a valid checksum) is an error naming it, not a libtorch
/// abort in the copy.
#[test]
fn a_checkpoint_with_a_wrong_optimiser_buffer_is_an_error() {
    let _rng = crate::rng_lock();
    let data = data(64);
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 10, 10], 3);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    train(&mut model, &data, &cfg, None, None, Some(&stem)).unwrap();
    let (meta, mut tensors) = load_training::<CheckpointMeta>(&stem).unwrap().unwrap();
    let sgd0 = tensors.iter_mut().find(|(n, _)| n == "sgd.0").unwrap();
    sgd0.1 = Tensor::zeros([7], (Kind::Float, Device::Cpu));
    save_training(&stem, &tensors, &meta).unwrap();
    let mut again = Model::new(&spec, Device::Cpu, 0).unwrap();
    let e = train(&mut again, &data, &cfg, None, None, Some(&stem))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sgd.0") && e.contains("[7]"), "{e}");
}
