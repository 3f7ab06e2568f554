//! NaN / inf during training (issue 16, item 6): training stops with an error naming the data
//! set, the epoch and the step, and the last good checkpoint is kept (never overwritten with
//! non-finite weights).
use nrf_models::train::Augment;
use nrf_models::*;
use tch::{Device, Kind, Tensor};

fn data(n: usize) -> nrf_data::Dataset {
    tch::manual_seed(3);
    let d = 16usize;
    let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    let noise = Tensor::rand([n as i64, d as i64], (Kind::Float, Device::Cpu)) * 0.5;
    let mut images = Vec::<f32>::try_from(&noise.view([-1])).unwrap();
    for (i, &y) in labels.iter().enumerate() {
        let lo = y as usize * 8;
        images[i * d + lo..i * d + lo + 8]
            .iter_mut()
            .for_each(|v| *v += 0.5);
    }
    nrf_data::Dataset {
        name: "probe/train".into(),
        images,
        labels,
        shape: [1, 4, 4],
        num_classes: 2,
        class_names: vec![],
    }
}

/// Epoch 1 at a sane rate, then the rate times `gamma` from epoch 2 on.
fn cfg(batch_size: usize, gamma: f64) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size,
        schedule: LrSchedule::Step {
            lr: 0.05,
            milestones: vec![1],
            gamma,
        },
        augment: Augment::None,
        seed: 5,
        ..TrainConfig::default()
    }
}

/// The epochs recorded in the checkpoint at `stem`, and whether all its tensors are finite.
fn checkpoint_state(stem: &std::path::Path) -> (usize, bool) {
    let (meta, tensors) = checkpoint::load_training::<serde_json::Value>(stem)
        .unwrap()
        .expect("a checkpoint");
    let epochs = meta["history"].as_array().unwrap().len();
    let finite = tensors
        .iter()
        .all(|(_, t)| t.isfinite().all().int64_value(&[]) != 0);
    (epochs, finite)
}

fn run(c: &TrainConfig, stem: &std::path::Path) -> anyhow::Result<Vec<EpochMetrics>> {
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 4, 4], 2);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    train::train(&mut model, &data(64), c, None, None, Some(stem))
}

#[test]
fn a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    // 8 steps per epoch; epoch 2's rate is 1e30: the loss becomes inf / NaN.
    let mut c = cfg(8, 1e31);
    c.stop_after = Some(1);
    assert_eq!(run(&c, &stem).unwrap().len(), 1);
    assert_eq!(checkpoint_state(&stem), (1, true));
    c.stop_after = None;
    let e = format!("{:#}", run(&c, &stem).unwrap_err());
    assert!(e.contains("training on probe/train diverged"), "{e}");
    assert!(e.contains("at epoch 2, between steps"), "{e}");
    assert!(e.contains("overall; learning rate"), "{e}");
    assert!(
        e.contains("the last good checkpoint") && e.contains("(after epoch 1), is kept"),
        "{e}"
    );
    assert_eq!(checkpoint_state(&stem), (1, true), "the checkpoint changed");
}

#[test]
fn weights_made_non_finite_by_an_epochs_last_step_are_never_checkpointed() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    // One step per epoch: epoch 2's loss is computed with epoch 1's (good) weights and is
    // finite; its update (rate 5e43, infinite in f32) makes the weights non-finite, and the
    // checkpoint due after the last epoch would have saved them.
    let mut c = cfg(64, 1e45);
    c.stop_after = Some(1);
    run(&c, &stem).unwrap();
    c.stop_after = None;
    let e = format!("{:#}", run(&c, &stem).unwrap_err());
    assert!(e.contains("training on probe/train diverged"), "{e}");
    assert!(e.contains("became NaN or infinite in epoch 2"), "{e}");
    assert!(e.contains("(after epoch 1), is kept"), "{e}");
    assert_eq!(
        checkpoint_state(&stem),
        (1, true),
        "non-finite weights were saved"
    );
}

#[test]
fn nan_in_the_inputs_stops_training_naming_the_data() {
    let mut d = data(64);
    d.images[5] = f32::NAN;
    let spec = ModelSpec::new(Arch::Mlp { hidden: vec![8] }, [1, 4, 4], 2);
    let mut model = Model::new(&spec, Device::Cpu, 0).unwrap();
    let c = TrainConfig {
        epochs: 1,
        schedule: LrSchedule::Constant { lr: 0.01 },
        ..cfg(8, 1.0)
    };
    let e = format!(
        "{:#}",
        train::train(&mut model, &d, &c, None, None, None).unwrap_err()
    );
    assert!(e.contains("training on probe/train diverged"), "{e}");
    assert!(e.contains("epoch 1"), "{e}");
}
