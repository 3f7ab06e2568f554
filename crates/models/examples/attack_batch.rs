//! Attack-step throughput (forward + input gradient, the unit of PGD, APGD, representation
//! matching and relabelling) of the Fashion-MNIST CNN against the batch size, at 1 and 2
//! threads; each batch size keeps its best of the rounds:
//! `cargo run --release -p nrf-models --example attack_batch [images per measurement] [rounds]`.
use nrf_models::{Arch, Classifier, Model, ModelSpec};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    nrf_models::runtime::tune_allocator();
    let images: i64 = std::env::args().nth(1).map_or(4000, |s| s.parse().unwrap());
    let rounds: usize = std::env::args().nth(2).map_or(3, |s| s.parse().unwrap());
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 0)?;
    // Is a row's input gradient the same whether its batch has 500 rows or 125?
    let x = Tensor::rand([500, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [500], (Kind::Int64, Device::Cpu));
    let grad = |x: &Tensor, y: &Tensor| {
        let xa = x.detach().set_requires_grad(true);
        let loss = model
            .logits(&xa, false)
            .log_softmax(-1, Kind::Float)
            .gather(1, &y.unsqueeze(1), false)
            .sum(Kind::Float);
        Tensor::run_backward(&[&loss], &[&xa], false, false).remove(0)
    };
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        let whole = grad(&x, &y);
        let parts = Tensor::cat(
            &(0..4)
                .map(|i| grad(&x.narrow(0, i * 125, 125), &y.narrow(0, i * 125, 125)))
                .collect::<Vec<_>>(),
            0,
        );
        let diff = (&whole - &parts).abs().max().double_value(&[]);
        println!("threads {threads}: input gradients of 500 rows at once vs 4 x 125: max |difference| {diff:e}");
    }
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        let sizes = [64i64, 128, 250, 500, 1000];
        let mut best = vec![0f64; sizes.len()];
        for _ in 0..rounds {
            for (i, &b) in sizes.iter().enumerate() {
                let x = Tensor::rand([b, 1, 28, 28], (Kind::Float, Device::Cpu));
                let y = Tensor::randint(10, [b], (Kind::Int64, Device::Cpu));
                let steps = (images / b).max(1);
                let t = Instant::now();
                for _ in 0..steps {
                    let xa = x.detach().set_requires_grad(true);
                    let loss = model.logits(&xa, false).cross_entropy_for_logits(&y);
                    let _ = Tensor::run_backward(&[&loss], &[&xa], false, false);
                }
                best[i] = best[i].max((steps * b) as f64 / t.elapsed().as_secs_f64());
            }
        }
        let row: Vec<String> = sizes
            .iter()
            .zip(&best)
            .map(|(b, r)| format!("batch {b}: {r:.0} img/s"))
            .collect();
        println!("threads {threads}: {}", row.join("; "));
    }
    Ok(())
}
