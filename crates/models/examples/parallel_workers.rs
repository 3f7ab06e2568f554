//! Two ways to use two cores for independent work (two models training, or two halves of a
//! construction): one worker with libtorch's 2 intra-op threads, or two workers (OS threads) with
//! 1 intra-op thread each. Prints the images per second of both, and of one worker with one
//! thread (what either way is measured against), for training steps and attack steps (forward +
//! input gradient) of the Fashion-MNIST CNN at batch 128; the ways alternate in rounds and each
//! keeps its best round:
//! `cargo run --release -p nrf-models --example parallel_workers [steps] [rounds]`.
use nrf_models::{train::step_on_device, Arch, Classifier, Model, ModelSpec, Sgd};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// `steps` training (or attack) steps on one model of its own; returns the images processed.
fn work(steps: usize, attack: bool, seed: i64) -> usize {
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, seed).unwrap();
    let mut sgd = Sgd::new(model.vs.trainable_variables(), 0.9, true, 5e-4);
    let x = Tensor::rand([128, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [128], (Kind::Int64, Device::Cpu));
    for _ in 0..steps {
        if attack {
            let xa = x.detach().set_requires_grad(true);
            let loss = model.logits(&xa, false).cross_entropy_for_logits(&y);
            let _ = Tensor::run_backward(&[&loss], &[&xa], false, false);
        } else {
            let _ = step_on_device(&model, &mut sgd, &x, &y, 0.01, None).unwrap();
        }
    }
    steps * 128
}

fn main() {
    nrf_models::runtime::tune_allocator();
    let steps: usize = std::env::args().nth(1).map_or(30, |s| s.parse().unwrap());
    let rounds: usize = std::env::args().nth(2).map_or(3, |s| s.parse().unwrap());
    for attack in [false, true] {
        let (mut single, mut one, mut two) = (0f64, 0f64, 0f64);
        for _ in 0..rounds {
            tch::set_num_threads(1);
            let t = Instant::now();
            let n = work(steps, attack, 0) + work(steps, attack, 1);
            single = single.max(n as f64 / t.elapsed().as_secs_f64());
            tch::set_num_threads(2);
            let t = Instant::now();
            let n = work(steps, attack, 0) + work(steps, attack, 1);
            one = one.max(n as f64 / t.elapsed().as_secs_f64());
            tch::set_num_threads(1);
            let t = Instant::now();
            let n: usize = std::thread::scope(|s| {
                let h: Vec<_> = (0..2)
                    .map(|i| s.spawn(move || work(steps, attack, i)))
                    .collect();
                h.into_iter().map(|h| h.join().unwrap()).sum()
            });
            two = two.max(n as f64 / t.elapsed().as_secs_f64());
        }
        let what = if attack {
            "attack steps"
        } else {
            "training steps"
        };
        println!(
            "{what:15}: 1 worker x 1 thread {single:7.0} img/s; 1 worker x 2 threads {one:7.0} img/s \
             ({:.2}x); 2 workers x 1 thread {two:7.0} img/s ({:.2}x); ratio {:.2}",
            one / single,
            two / single,
            two / one
        );
    }
}
