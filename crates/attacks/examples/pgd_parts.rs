//! Where a PGD step's time goes beyond the model's forward + input gradient, for the
//! Fashion-MNIST CNN at batch 128 (adversarial training's batch), L2, 1 and 2 threads: the raw
//! attack step, a whole `pgd` run per step (random start, best iterate, checks), the same without
//! best iterate / random start, and the threat model's step + projection alone. Variants
//! alternate in rounds, each keeps its fastest round:
//! `cargo run --release -p nrf-attacks --example pgd_parts [reps] [rounds]`.
use nrf_attacks::{pgd, untargeted_ce, PgdConfig, ThreatModel, L2};
use nrf_models::{Arch, Classifier, Model, ModelSpec};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn time(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn main() -> anyhow::Result<()> {
    nrf_models::runtime::tune_allocator();
    let reps: usize = std::env::args().nth(1).map_or(3, |s| s.parse().unwrap());
    let rounds: usize = std::env::args().nth(2).map_or(3, |s| s.parse().unwrap());
    let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10);
    let model = Model::new(&spec, Device::Cpu, 0)?;
    tch::manual_seed(0);
    let x = Tensor::rand([128, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [128], (Kind::Int64, Device::Cpu));
    let l2 = L2::new(1.0)?;
    let steps = 7;
    let full = PgdConfig::new(steps, 2.5 / steps as f64)
        .with_random_start(true)
        .with_use_best(true);
    let bare = PgdConfig::new(steps, 2.5 / steps as f64)
        .with_random_start(false)
        .with_use_best(false);
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        let mut best = [f64::INFINITY; 5];
        for _ in 0..rounds {
            let m = [
                time(reps * steps, &mut || {
                    let xa = x.detach().set_requires_grad(true);
                    let loss = model.logits(&xa, false).cross_entropy_for_logits(&y);
                    let _ = Tensor::run_backward(&[&loss], &[&xa], false, false);
                }),
                time(reps, &mut || {
                    let _ = pgd(&l2, &x, &x, &full, &mut untargeted_ce(&model, &y), None).unwrap();
                }) / steps as f64,
                time(reps, &mut || {
                    let _ = pgd(&l2, &x, &x, &bare, &mut untargeted_ce(&model, &y), None).unwrap();
                }) / steps as f64,
                time(reps * steps, &mut || {
                    let g = x.randn_like();
                    let _ = tch::no_grad(|| l2.project(&l2.step(&x, &g, 0.1), &x));
                }),
                time(reps * steps, &mut || {
                    let _ = tch::no_grad(|| model.logits(&x, false));
                }),
            ];
            for (b, v) in best.iter_mut().zip(m) {
                *b = b.min(v);
            }
        }
        let [raw, full, bare, proj, fwd] = best;
        println!(
            "threads {threads}: raw attack step {raw:6.2} ms | pgd per step: full {full:6.2}, \
             bare {bare:6.2} | L2 step+project {proj:5.2} | forward {fwd:5.2}"
        );
    }
    Ok(())
}
