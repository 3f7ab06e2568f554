//! Shape tests for every architecture, checkpoint round trip, exact resume, NaN detection.
use nrf_models::train::Augment;
use nrf_models::*;
use tch::{Device, Kind, Tensor};

fn synthetic(n: usize, shape: [usize; 3], classes: usize, seed: u64) -> nrf_data::Dataset {
    // Class-dependent mean brightness pattern plus noise: learnable.
    tch::manual_seed(seed as i64);
    let d: usize = shape.iter().product();
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let noise = Tensor::rand([n as i64, d as i64], (Kind::Float, Device::Cpu)) * 0.5;
    let mut images = Vec::<f32>::try_from(&noise.view([-1])).unwrap();
    for (i, &y) in labels.iter().enumerate() {
        let lo = (y as usize) * d / classes;
        let hi = (y as usize + 1) * d / classes;
        for v in &mut images[i * d + lo..i * d + hi] {
            *v += 0.5;
        }
    }
    nrf_data::Dataset {
        name: "synthetic".into(),
        images,
        labels,
        shape,
        num_classes: classes,
        class_names: vec![],
    }
}

#[test]
fn every_architecture_has_the_right_shapes() {
    let cases: Vec<(Arch, [i64; 3], i64)> = vec![
        (Arch::FmnistCnn, [1, 28, 28], 256),
        (
            Arch::Mlp {
                hidden: vec![64, 32],
            },
            [1, 28, 28],
            32,
        ),
        (Arch::ResNet18 { width: 8 }, [3, 32, 32], 64),
        (Arch::ResNet50 { width: 4 }, [3, 32, 32], 128),
        (Arch::ResNet50ImageNet { width: 4 }, [3, 32, 32], 128),
        (Arch::ResNet50ImageNet { width: 4 }, [3, 64, 48], 128),
        (Arch::Vgg16 { width: 4 }, [3, 32, 32], 32),
        (Arch::Vgg16 { width: 4 }, [1, 28, 28], 32),
        (
            Arch::DenseNet {
                growth: 4,
                blocks: vec![2, 2, 2],
            },
            [3, 32, 32],
            0,
        ),
    ];
    for (arch, shape, rep_dim) in cases {
        let spec = ModelSpec::new(arch.clone(), shape, 10);
        let model = Model::new(&spec, Device::Cpu, 0).unwrap();
        let x = Tensor::rand(
            [2, shape[0], shape[1], shape[2]],
            (Kind::Float, Device::Cpu),
        );
        let (logits, rep) = model.forward_rep(&x, false);
        assert_eq!(logits.size(), vec![2, 10], "{arch:?}");
        assert_eq!(rep.size()[0], 2, "{arch:?}");
        if rep_dim > 0 {
            assert_eq!(rep.size()[1], rep_dim, "{arch:?}");
        }
        let (l2, _) = model.forward_rep(&x, true);
        assert_eq!(l2.size(), vec![2, 10]);
    }
}

#[test]
fn bad_spec_is_an_error() {
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10)
        .with_normalization(vec![0.5, 0.5], vec![1.0, 1.0]);
    let err = Model::new(&spec, Device::Cpu, 0).err().unwrap().to_string();
    assert!(err.contains("mean/std"), "{err}");
    let spec =
        ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10).with_normalization(vec![0.5], vec![0.0]);
    assert!(Model::new(&spec, Device::Cpu, 0).is_err());
    // A size libtorch would abort on is an error before anything is built.
    let spec = ModelSpec::new(Arch::ResNet18 { width: -8 }, [3, 32, 32], 10);
    let err = Model::new(&spec, Device::Cpu, 0).err().unwrap().to_string();
    assert!(err.contains("width -8"), "{err}");
}

#[test]
fn a_crop_pad_larger_than_the_images_is_an_error() {
    let data = synthetic(16, [1, 4, 4], 2, 1);
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 4, 4], 2);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    let mut c = cfg(1);
    c.augment = Augment::CropFlip { pad: 1_000_000 };
    let err = train(&mut model, &data, &c, None, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("crop_pad 1000000") && err.contains("4 px"),
        "{err}"
    );
    c.augment = Augment::CropFlip { pad: 4 };
    train(&mut model, &data, &c, None, None, None).unwrap();
}

#[test]
fn normalisation_is_inside_the_model() {
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 2, 2], 2);
    let a = Model::new(&spec, Device::Cpu, 3).unwrap();
    let mut b = Model::new(
        &spec.clone().with_normalization(vec![0.5], vec![0.25]),
        Device::Cpu,
        3,
    )
    .unwrap();
    // The same weights: copied, not drawn again from the seed (tests in other threads draw from
    // torch's global generator between two draws).
    b.vs.copy(&a.vs).unwrap();
    let x = Tensor::rand([4, 1, 2, 2], (Kind::Float, Device::Cpu));
    let xa = (&x - 0.5) / 0.25;
    let diff = (a.logits(&xa, false) - b.logits(&x, false))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
}

/// The identity normalisation is skipped: the logits, representation and input gradient equal,
/// bit for bit, those of the same model with `(x - 0) / 1` computed in front of it.
#[test]
fn identity_normalisation_is_skipped_without_changing_a_bit() {
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    assert!(spec.is_identity_normalization());
    assert!(!spec
        .clone()
        .with_normalization(vec![0.0], vec![0.5])
        .is_identity_normalization());
    let m = Model::new(&spec, Device::Cpu, 5).unwrap();
    tch::manual_seed(1);
    let x = Tensor::rand([6, 1, 28, 28], (Kind::Float, Device::Cpu));
    let zeros = Tensor::zeros([1, 1, 1, 1], (Kind::Float, Device::Cpu));
    let ones = Tensor::ones([1, 1, 1, 1], (Kind::Float, Device::Cpu));
    let pass = |explicit: bool| {
        let xg = x.copy().set_requires_grad(true);
        let input = if explicit {
            (&xg - &zeros) / &ones
        } else {
            xg.shallow_clone()
        };
        let (logits, rep) = m.forward_rep(&input, false);
        let loss = logits.log_softmax(-1, Kind::Float).sum(Kind::Float) + rep.sum(Kind::Float);
        let grad = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
        (logits.detach(), rep.detach(), grad)
    };
    let (a, b) = (pass(false), pass(true));
    assert!(a.0.equal(&b.0) && a.1.equal(&b.1) && a.2.equal(&b.2));
}
/// `Precision::Bf16`: the same weights give f32 logits, representation and input gradient close
/// to f32's (bfloat16 keeps 8 bits of mantissa), the gradient reaches the f32 weights, the
/// precision survives a checkpoint and a clone, an f32 spec's JSON has no `precision` (cache
/// keys unchanged), and an architecture without a bf16 path is refused.
#[test]
fn bf16_precision_is_close_to_f32_and_kept_by_checkpoints() {
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    assert!(serde_json::to_value(&spec)
        .unwrap()
        .get("precision")
        .is_none());
    let f32_model = Model::new(&spec, Device::Cpu, 4).unwrap();
    let bf16_spec = spec.clone().with_precision(Precision::Bf16);
    assert_eq!(
        serde_json::to_value(&bf16_spec).unwrap()["precision"],
        "bf16"
    );
    // The same weights, copied (another test thread may draw from torch's generator between a
    // seed and a build).
    let mut bf16 = Model::new(&bf16_spec, Device::Cpu, 4).unwrap();
    bf16.vs.copy(&f32_model.vs).unwrap();
    tch::manual_seed(2);
    let x = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7]);
    let pass = |m: &Model| {
        let xg = x.copy().set_requires_grad(true);
        let (logits, rep) = m.forward_rep(&xg, false);
        assert_eq!((logits.kind(), rep.kind()), (Kind::Float, Kind::Float));
        let loss = logits.cross_entropy_for_logits(&y);
        let grad = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
        (logits.detach(), rep.detach(), grad)
    };
    let rel = |a: &Tensor, b: &Tensor| ((a - b).abs().max() / b.abs().max()).double_value(&[]);
    let (a, b) = (pass(&bf16), pass(&f32_model));
    assert!(!a.0.equal(&b.0), "bf16 computed in f32");
    assert!(rel(&a.0, &b.0) < 3e-2, "logits {}", rel(&a.0, &b.0));
    assert!(rel(&a.1, &b.1) < 3e-2, "representation {}", rel(&a.1, &b.1));
    let cos =
        a.2.flatten(0, -1)
            .dot(&b.2.flatten(0, -1))
            .double_value(&[])
            / (a.2.norm().double_value(&[]) * b.2.norm().double_value(&[]));
    assert!(cos > 0.98, "input-gradient cosine {cos}");
    // Training reaches the f32 weights.
    let loss = bf16.logits(&x, true).cross_entropy_for_logits(&y);
    loss.backward();
    for (name, v) in bf16.vs.variables() {
        assert_eq!(v.kind(), Kind::Float, "{name}");
        assert!(v.grad().defined() && v.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
    // A checkpoint and a clone keep the precision.
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("m");
    save_model(&bf16, &stem).unwrap();
    let back = load_model(&stem, Device::Cpu).unwrap();
    assert_eq!(back.spec.precision, Precision::Bf16);
    assert!(back.logits(&x, false).equal(&a.0));
    assert!(bf16.try_clone().unwrap().logits(&x, false).equal(&a.0));
}

#[test]
fn checkpoint_round_trip_and_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 1).unwrap();
    let stem = dir.path().join("m");
    save_model(&model, &stem).unwrap();
    let back = load_model(&stem, Device::Cpu).unwrap();
    let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let d = (model.logits(&x, false) - back.logits(&x, false))
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(d, 0.0);
    std::fs::write(dir.path().join("m.safetensors"), b"garbage").unwrap();
    let err = format!("{:#}", load_model(&stem, Device::Cpu).err().unwrap());
    assert!(err.contains("m.safetensors"), "{err}");
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        schedule: LrSchedule::CosineWarmup {
            lr: 0.2,
            warmup: 0.1,
        },
        augment: Augment::CropFlip { pad: 1 },
        seed: 7,
        ..TrainConfig::default()
    }
}

#[test]
fn training_learns_and_resume_is_exact() {
    tch::set_num_threads(1);
    let data = synthetic(256, [1, 8, 8], 4, 0);
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![32] }, [1, 8, 8], 4);
    let (x, y) = dataset_to_tensors(&data, Device::Cpu);

    // Uninterrupted run; `first` (below) starts from the same weights, copied (tests in other
    // threads draw from torch's global generator between two draws from one seed).
    let mut full = Model::new(&spec, Device::Cpu, 5).unwrap();
    let mut first = Model::new(&spec, Device::Cpu, 5).unwrap();
    first.vs.copy(&full.vs).unwrap();
    let hist = train(&mut full, &data, &cfg(6), None, Some((&x, &y)), None).unwrap();
    assert_eq!(hist.len(), 6);
    assert!(hist[5].test_acc.unwrap() > 0.9, "{hist:?}");

    // Interrupted after 2 epochs, then resumed from the checkpoint by a new model.
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    let mut two = cfg(6);
    two.stop_after = Some(2);
    assert_eq!(nrf_models::checkpoint::training_done_fraction(&stem), None);
    let h2 = train(&mut first, &data, &two, None, None, Some(&stem)).unwrap();
    assert_eq!(h2.len(), 2);
    // What a progress line reads from the checkpoint: 2 of 6 epochs.
    let f = nrf_models::checkpoint::training_done_fraction(&stem).unwrap();
    assert!((f - 2.0 / 6.0).abs() < 1e-12, "{f}");
    // Steps noted between checkpoints count (a long epoch before its checkpoint); an unreadable
    // note is ignored.
    use nrf_models::checkpoint::{note_training_progress, progress_path, training_done_fraction};
    note_training_progress(&stem, 3, 6);
    assert_eq!(training_done_fraction(&stem), Some(0.5));
    std::fs::write(progress_path(&stem), "garbage").unwrap();
    let f = training_done_fraction(&stem).unwrap();
    assert!((f - 2.0 / 6.0).abs() < 1e-12, "{f}");
    let fresh = dir.path().join("fresh");
    note_training_progress(&fresh, 1, 4);
    assert_eq!(training_done_fraction(&fresh), Some(0.25));
    let mut resumed = Model::new(&spec, Device::Cpu, 99).unwrap();
    let again = train(&mut resumed, &data, &cfg(6), None, None, Some(&stem)).unwrap();
    assert_eq!(again.len(), 6);
    let d = (full.logits(&x, false) - resumed.logits(&x, false))
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(d, 0.0, "resumed weights differ from an uninterrupted run");
}

#[test]
fn nan_loss_stops_training() {
    let mut data = synthetic(64, [1, 4, 4], 2, 1);
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 4, 4], 2);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    let mut c = cfg(1);
    c.augment = Augment::None;
    c.schedule = LrSchedule::Constant { lr: 1e30 };
    data.images.iter_mut().for_each(|v| *v *= 1e10);
    let err = train(&mut model, &data, &c, None, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("diverged"), "{err}");
}

/// A last batch of one image reaches VGG-16's 1x1 feature maps with one value per channel:
/// ATen turns the batch norms' running variance into NaN (PyTorch refuses such a batch), which
/// would leave every later evaluation garbage. It is an error that says so, after that epoch.
#[test]
fn a_batch_norm_statistic_turned_nan_is_an_error_that_names_the_batch() {
    let data = synthetic(33, [1, 28, 28], 2, 1);
    let spec = ModelSpec::new(Arch::Vgg16 { width: 1 }, [1, 28, 28], 2);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    let mut c = cfg(1);
    c.augment = Augment::None;
    c.batch_size = 32;
    let err = train(&mut model, &data, &c, None, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("running_var") && err.contains("last batch of 1"),
        "{err}"
    );
    // 34 images leave a last batch of two: trained without complaint.
    let data = synthetic(34, [1, 28, 28], 2, 1);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    train(&mut model, &data, &c, None, None, None).unwrap();
}
