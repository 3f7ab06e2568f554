//! What `nrf_models::train` costs beyond its training steps, taken apart: the same `n` (10,000)
//! Fashion-MNIST training images (79 steps of batch 128) as
//! - `bare`: one fixed batch, stepped 79 times (what `nrf bench --pipeline` compares the stage
//!   with);
//! - `batches`: 79 different batches gathered before the clock starts;
//! - `gather`: each batch gathered in the loop (a slice of the epoch's order, `index_select`);
//! - `train`: `nrf_models::train` for one epoch, no curve, no checkpoint;
//! - `train+curve`: the same with the per-epoch accuracy on `curve` (2,000) test images;
//! - `train+curve+ckpt`: and the checkpoint written after the epoch;
//! - `new model`: building the model (its initialisation) alone.
//!
//! The variants alternate in rounds, each keeps its fastest round (ms):
//! `cargo run --release -p nrf-models --example loop_overhead [rounds] [threads] [arch] [n]
//! [curve] [every]`, `arch` one of `cnn` (the preset's Fashion-MNIST CNN, the default) or `mlp`
//! (Figure 3's MLP, hidden 512 and 256); with `every` = k > 1 every variant runs k epochs and
//! the curve is measured after the k-th only (`TrainConfig::curve_every`), so the ratios are the
//! per-epoch average. E.g. `5 1 mlp 3000 900 2` for Figure 3's MLP on its 3,000 images with the
//! curve the pipeline gives it (`EvalSection::curve_images`, `EvalSection::curve_every`).
use nrf_data::idx::{load_fashion_mnist, FASHION_MNIST_DIR};
use nrf_data::Split;
use nrf_models::train::step_on_device;
use nrf_models::{dataset_to_tensors, train, Arch, Model, ModelSpec, Sgd, TrainConfig};
use std::time::Instant;
use tch::{Device, Tensor};

const BS: i64 = 128;

fn model(arch: &Arch) -> anyhow::Result<Model> {
    Model::new(
        &ModelSpec::new(arch.clone(), [1, 28, 28], 10),
        Device::Cpu,
        0,
    )
}

fn sgd(m: &Model) -> Sgd {
    Sgd::new(m.vs.trainable_variables(), 0.9, true, 5e-4)
}

fn ms(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    nrf_models::runtime::tune_allocator();
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(Ok(d), |s| s.parse());
    let (rounds, threads) = (arg(1, 3)?, arg(2, 1)?);
    let arch = match std::env::args().nth(3).as_deref() {
        None | Some("cnn") => Arch::FmnistCnn,
        Some("mlp") => Arch::Mlp {
            hidden: vec![512, 256],
        },
        Some(other) => anyhow::bail!("arch: expected cnn or mlp, got {other:?}"),
    };
    let (n, curve_n, every) = (arg(4, 10_000)?, arg(5, 2_000)?, arg(6, 1)?.max(1));
    let model = || model(&arch);
    tch::set_num_threads(threads as i32);
    let train_set = load_fashion_mnist(FASHION_MNIST_DIR, Split::Train)?;
    let test_set = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
    let data = train_set.subset(&(0..n).collect::<Vec<_>>());
    let (x_all, y_all) = dataset_to_tensors(&data, Device::Cpu);
    let (tx, ty) = dataset_to_tensors(
        &test_set.subset(&(0..curve_n).collect::<Vec<_>>()),
        Device::Cpu,
    );
    let steps = (n as i64 + BS - 1) / BS;
    let order = Tensor::randperm(n as i64, (tch::Kind::Int64, Device::Cpu));
    let batch = |b: i64| {
        let len = BS.min(n as i64 - b * BS);
        let idx = order.narrow(0, b * BS, len);
        (x_all.index_select(0, &idx), y_all.index_select(0, &idx))
    };
    let pre: Vec<(Tensor, Tensor)> = (0..steps).map(batch).collect();
    let (fx, fy) = (pre[0].0.shallow_clone(), pre[0].1.shallow_clone());
    let cfg = TrainConfig {
        epochs: every,
        curve_every: every,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir()?;
    let names = [
        "bare",
        "batches",
        "gather",
        "train",
        "train+curve",
        "train+curve+ckpt",
        "new model",
    ];
    let mut best = [f64::INFINITY; 7];
    for round in 0..rounds + 1 {
        let m = model()?;
        let o = &mut sgd(&m);
        let t = [
            ms(|| {
                for _ in 0..steps * every as i64 {
                    drop(step_on_device(&m, o, &fx, &fy, 0.01, None)?);
                }
                Ok(())
            })?,
            ms(|| {
                for (x, y) in (0..every).flat_map(|_| &pre) {
                    drop(step_on_device(&m, o, x, y, 0.01, None)?);
                }
                Ok(())
            })?,
            ms(|| {
                for b in (0..every as i64).flat_map(|_| 0..steps) {
                    let (x, y) = batch(b);
                    drop(step_on_device(&m, o, &x, &y, 0.01, None)?);
                }
                Ok(())
            })?,
            ms(|| train(&mut model()?, &data, &cfg, None, None, None).map(drop))?,
            ms(|| train(&mut model()?, &data, &cfg, None, Some((&tx, &ty)), None).map(drop))?,
            ms(|| {
                let stem = dir.path().join(format!("ckpt{round}"));
                train(
                    &mut model()?,
                    &data,
                    &cfg,
                    None,
                    Some((&tx, &ty)),
                    Some(&stem),
                )
                .map(drop)
            })?,
            ms(|| model().map(drop))?,
        ];
        if round > 0 {
            for (b, v) in best.iter_mut().zip(t) {
                *b = b.min(v);
            }
        }
    }
    // The curve alone: accuracy on the curve's test images at several batch sizes.
    let m = model()?;
    let sizes = [64i64, 128, 250, 500, curve_n.max(1) as i64];
    let mut curve = [f64::INFINITY; 5];
    for _ in 0..rounds + 1 {
        for (c, &b) in curve.iter_mut().zip(&sizes) {
            *c = c.min(ms(|| {
                nrf_models::accuracy(&m, &tx, &ty, b);
                Ok(())
            })?);
        }
    }
    println!("accuracy on {curve_n} test images (forward only), by batch size:");
    for (b, c) in sizes.iter().zip(curve) {
        println!("  batch {b:<5} {c:8.1} ms");
    }
    println!(
        "{} on {n} images: {every} epoch(s) of {steps} steps of batch {BS}, the curve after the \
         last, {threads} thread(s), fastest of {rounds} rounds:",
        arch.label()
    );
    for (name, v) in names.iter().zip(best) {
        println!(
            "  {name:<18} {v:8.1} ms  ({:+.1}% vs bare)",
            100.0 * (v / best[0] - 1.0)
        );
    }
    Ok(())
}
