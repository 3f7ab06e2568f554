//! What the paper's code's training transforms cost per batch next to the training step they
//! feed: CIFAR-10's (`Transforms::CIFAR`: crop, flip, ColorJitter, RandomRotation) and the crop
//! and flip alone on a batch of 128 images of 3x32x32, against one training step of the
//! `cifar10` preset's ResNet-50 at width `width` (default 16), 1 libtorch thread. The variants
//! alternate in rounds and each keeps its fastest round:
//! `cargo run --release -p nrf-models --example augment_cost [reps] [rounds] [width]`.
use nrf_models::augment::{augment_batch, Augment, Transforms};
use nrf_models::{train::step_on_device, Arch, Model, ModelSpec, Sgd};
use rand::SeedableRng;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (reps, rounds, width) = (arg(1, 20), arg(2, 3), arg(3, 16) as i64);
    tch::set_num_threads(1);
    nrf_models::runtime::tune_allocator();
    tch::manual_seed(0);
    let x = Tensor::rand([128, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [128], (Kind::Int64, Device::Cpu));
    let spec = ModelSpec::new(Arch::ResNet50 { width }, [3, 32, 32], 10);
    let model = Model::new(&spec, Device::Cpu, 0)?;
    let mut sgd = Sgd::new(model.vs.trainable_variables(), 0.9, false, 5e-4);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cases = [
        ("crop + flip", Augment::CropFlip { pad: 4 }),
        ("CIFAR transforms", Augment::Transforms(Transforms::CIFAR)),
    ];
    let mut best = [f64::INFINITY; 3];
    for _ in 0..rounds {
        for (i, (_, aug)) in cases.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..reps {
                let _ = augment_batch(&x, aug, &mut rng);
            }
            best[i] = best[i].min(t.elapsed().as_secs_f64() / reps as f64);
        }
        let t = Instant::now();
        for _ in 0..reps.div_ceil(10) {
            let _ = step_on_device(&model, &mut sgd, &x, &y, 0.01, None)?;
        }
        best[2] = best[2].min(t.elapsed().as_secs_f64() / reps.div_ceil(10) as f64);
    }
    println!("batch 128 x 3x32x32, 1 thread, fastest of {rounds} rounds:");
    for (i, (name, _)) in cases.iter().enumerate() {
        println!(
            "  {name:<17} {:8.2} ms  ({:.1}% of a training step)",
            1e3 * best[i],
            100.0 * best[i] / best[2]
        );
    }
    println!(
        "  ResNet-50 (width {width}) training step {:8.2} ms",
        1e3 * best[2]
    );
    Ok(())
}
