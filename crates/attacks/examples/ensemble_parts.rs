//! Where an `ensemble:<model>` stage's time goes: the default preset's ensemble (PGD-20, then
//! APGD-CE and APGD-T with 9 targets, 100 steps, on the survivors) and its gradient-masking checks
//! (PGD-100, the unbounded attack, Square with 1000 queries), each timed alone on the same 1,000
//! random Fashion-MNIST test images at L2 0.5, 1 thread:
//! `cargo run --release -p nrf-attacks --example ensemble_parts -- <weights stem> [n] [threads]`
//! (the stem is a results folder's `weights/<model>`).
use anyhow::{Context, Result};
use nrf_attacks::{
    apgd, robust_evaluation, square, unbounded_attack_accuracy, ApgdConfig, ApgdLoss, PgdConfig,
    SquareConfig, L2,
};
use nrf_data::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
use nrf_models::checkpoint::load_model;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    nrf_models::runtime::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stem = args
        .first()
        .context("usage: ensemble_parts <weights stem> [n] [threads]")?;
    let n: i64 = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let threads: i32 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    tch::set_num_threads(threads);
    let model = load_model(Path::new(stem), Device::Cpu)?;
    let test = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
    let all = Tensor::from_slice(&test.images).view([-1, 1, 28, 28]);
    let labels = Tensor::from_slice(&test.labels);
    tch::manual_seed(0);
    let pick = Tensor::randperm(all.size()[0], (Kind::Int64, Device::Cpu)).narrow(0, 0, n);
    let (x, y) = (all.index_select(0, &pick), labels.index_select(0, &pick));
    let eps = 0.5;
    let threat = L2::new(eps)?;
    let timed = |what: &str, f: &mut dyn FnMut() -> Result<String>| -> Result<()> {
        let t = Instant::now();
        let out = f()?;
        println!("{what:>10}: {:7.1} s  {out}", t.elapsed().as_secs_f64());
        Ok(())
    };
    // The preset's evaluation PGD (random start, ever-fooled rule) on all n images, batch 500.
    let pgd_eval = |steps: usize| {
        robust_evaluation(
            &model,
            &x,
            &y,
            &threat,
            &PgdConfig::eval(eps, steps),
            500,
            false,
        )
    };
    let mut survivors = Tensor::new();
    timed("PGD-20", &mut || {
        let r = pgd_eval(20)?;
        survivors = r.robust.nonzero().squeeze_dim(1);
        Ok(format!("acc {:.3}", r.acc))
    })?;
    let (xs, ys) = (x.index_select(0, &survivors), y.index_select(0, &survivors));
    let mut after_ce = Tensor::new();
    timed("APGD-CE", &mut || {
        let o = apgd(
            &model,
            &xs,
            &ys,
            &threat,
            &ApgdConfig::new(ApgdLoss::CrossEntropy, 100),
        )?;
        after_ce = o.fooled.logical_not().nonzero().squeeze_dim(1);
        Ok(format!(
            "{} of {} left",
            after_ce.numel(),
            survivors.numel()
        ))
    })?;
    let (xt, yt) = (xs.index_select(0, &after_ce), ys.index_select(0, &after_ce));
    timed("APGD-T", &mut || {
        let cfg = ApgdConfig::new(ApgdLoss::DlrTargeted { targets: 9 }, 100);
        let o = apgd(&model, &xt, &yt, &threat, &cfg)?;
        let left = o.fooled.logical_not().sum(Kind::Int64).int64_value(&[]);
        Ok(format!("{left} of {} left", after_ce.numel()))
    })?;
    timed("PGD-100", &mut || {
        let r = pgd_eval(100)?;
        Ok(format!("acc {:.3}", r.acc))
    })?;
    timed("unbounded", &mut || {
        Ok(format!(
            "acc {:.3}",
            unbounded_attack_accuracy(&model, &x, &y, 100, 500)?
        ))
    })?;
    timed("Square", &mut || {
        let o = square(&model, &x, &y, &threat, &SquareConfig::new(1000))?;
        let acc = 1.0
            - o.fooled
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
        Ok(format!("acc {acc:.3}"))
    })?;
    Ok(())
}
