//! The measurements behind docs/performance.md's "doing less work" section (issue 17), on real
//! Fashion-MNIST (/usr/share/datasets/fashion-mnist):
//!
//! ```text
//! cargo run --release -p nrf-features --example perf_study -- train DIR [STD_EPOCHS ROB_EPOCHS]
//!     trains a C_std-like model (standard, default TrainConfig: batch 128, SGD Nesterov, lr 0.05
//!     cosine) and a C_rob-like model (L2 PGD adversarial training, eps 1, 7 steps, as the
//!     presets) on the 60k training images; weights to DIR/C_std, DIR/C_rob.
//! cargo run --release -p nrf-features --example perf_study -- eval-work DIR [N]
//!     robust evaluation of both models on N (1000) random test images at the presets' grid
//!     (L2 0.25/0.5/1/2, Linf 0.1, PGD-20): accuracy, the rows the shrinking evaluation pushes
//!     through the model vs the full-batch loop, and a check that the full-batch loop gives the
//!     same per-example outcome. Writes DIR/eval_work.json.
//! cargo run --release -p nrf-features --example perf_study -- repmatch DIR [N [fake|relu]]
//!     representation matching (D_R from C_rob, D_NR from C_std) of N (128) random training
//!     images from other random training images: the final mean relative representation error
//!     ||g(z) - g(x)|| / ||g(x)|| against the number of steps, for the spec's schedule
//!     (normalised-gradient steps, cosine 0.2 -> 0.002, rescaled to each step count) and for
//!     alternatives (larger steps; Adam on the input), the gradient through the paper's FakeReLU
//!     (`fake`, the pipeline's default) or the plain ReLU (`relu`, before session 40). Writes
//!     DIR/repmatch_steps.{json,csv,png}.
//! cargo run --release -p nrf-features --example perf_study -- channels-last [REPS [BATCH]]
//!     A/B of the convolutions' memory format for the Fashion-MNIST CNN (the same network as
//!     nrf_models' FmnistCnn, written with functional convolutions so that the weights and the
//!     input can be made channels-last), interleaved in one process at 1 and 2 threads: a
//!     training step (forward, cross-entropy, backward, nrf's SGD) and an attack step (forward
//!     and input gradient). Prints the median paired ratio NCHW time / channels-last
//!     time (> 1: channels-last faster). BATCH: 128 (training's) by default; the constructions
//!     and the evaluation run batches of 500.
//! ```
//! cargo run --release -p nrf-features --example perf_study -- eval-time DIR [PAIRS]
//!     wall time of the shrinking robust evaluation against the full-batch loop, runs
//!     alternating (PAIRS pairs, 5 by default) on C_std at L2 0.5 and C_rob at L2 1 (1000 test
//!     images, PGD-20, batch 500), and a forward+backward of the CNN at a fixed batch size
//!     against one whose batch size changes every call (new shapes for libtorch's kernels).
//! cargo run --release -p nrf-features --example perf_study -- sgd-share [REPS]
//!     the share of nrf's SGD update (nrf_models::Sgd::step) in a training step of the CNN
//!     (batch 128): median times of whole steps and of the update alone, alternating.
//! libtorch threads: 2 (NRF_THREADS overrides). Timings printed here are wall times on whatever
//! machine ran it; the counts and errors do not depend on the load.
use anyhow::{bail, Context, Result};
use nrf_attacks::{
    cross_entropy, pgd, rep_distance, rep_match, robust_evaluation, AdvTraining, Distance, Linf,
    PgdConfig, StepSize, ThreatModel, Unconstrained, L2,
};
use nrf_data::{idx::load_fashion_mnist, idx::FASHION_MNIST_DIR, Split};
use nrf_models::{
    dataset_to_tensors, images_to_tensor, load_model, save_model, train, Arch, BatchPerturber,
    Classifier, Model, ModelSpec, TrainConfig,
};
use nrf_report::plot::{line_plot_with, LineSeriesSpec, PlotOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

mod channels_last;

/// Seed of the random image subsets (evaluation subset, targets, starts).
const SEED: u64 = 17;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = std::env::var("NRF_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    tch::set_num_threads(threads);
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, default: usize| -> Result<usize> {
        arg(i).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("argument {}: not a number: {v}", i + 1))
        })
    };
    match (arg(0), arg(1)) {
        (Some("train"), Some(dir)) => train_models(Path::new(dir), num(2, 3)?, num(3, 2)?),
        (Some("eval-work"), Some(dir)) => eval_work(Path::new(dir), num(2, 1000)?),
        (Some("repmatch"), Some(dir)) => {
            let relu = match std::env::args().nth(4).as_deref() {
                None | Some("fake") => nrf_models::RepRelu::Fake,
                Some("relu") => nrf_models::RepRelu::Relu,
                Some(other) => bail!("repmatch: the last argument is fake or relu, not {other}"),
            };
            repmatch_steps(Path::new(dir), num(2, 128)?, relu)
        }
        (Some("channels-last"), _) => channels_last::run(num(1, 30)?, num(2, 128)?),
        (Some("eval-time"), Some(dir)) => eval_time(Path::new(dir), num(2, 5)?),
        (Some("sgd-share"), _) => sgd_share(num(1, 30)?),
        _ => bail!(
            "usage: perf_study train DIR [STD_EPOCHS ROB_EPOCHS] | eval-work DIR [N] | repmatch DIR [N [fake|relu]] | channels-last [REPS [BATCH]] | eval-time DIR [PAIRS] | sgd-share [REPS]"
        ),
    }
}

fn spec() -> ModelSpec {
    ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10)
}

fn train_models(dir: &Path, std_epochs: usize, rob_epochs: usize) -> Result<()> {
    let data = load_fashion_mnist(FASHION_MNIST_DIR, Split::Train)?;
    let test = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
    let (tx, ty) = dataset_to_tensors(&test, Device::Cpu);
    for (name, epochs, adv) in [
        ("C_std", std_epochs, None),
        ("C_rob", rob_epochs, Some(AdvTraining::l2(1.0, 7)?)),
    ] {
        let start = Instant::now();
        let mut model = Model::new(&spec(), Device::Cpu, 1)?;
        let cfg = TrainConfig {
            epochs,
            seed: 2,
            progress: true,
            ..TrainConfig::default()
        };
        let h = train(
            &mut model,
            &data,
            &cfg,
            adv.as_ref().map(|a| a as &dyn BatchPerturber),
            Some((&tx, &ty)),
            None,
        )?;
        save_model(&model, &dir.join(name))?;
        println!(
            "{name}: {epochs} epochs, test accuracy {:.4}, {:.0} s",
            h.last().and_then(|r| r.test_acc).unwrap_or(f64::NAN),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `k` distinct indices of `0..n`, fixed by `seed`.
fn subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut v = nrf_models::train::epoch_order(n, seed, 0);
    v.truncate(k);
    v
}

/// The full-batch loop (every clean-correct example attacked at every step): per-example
/// outcome, for the equality check.
fn full_batch_mask(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    threat: &dyn ThreatModel,
    cfg: &PgdConfig,
    batch: i64,
) -> Result<Tensor> {
    let n = x.size()[0];
    let mut parts = Vec::new();
    for (i, len) in nrf_data::batch::spans(n, batch) {
        let (xb, yb) = (x.narrow(0, i, len), y.narrow(0, i, len));
        let ok = tch::no_grad(|| model.logits(&xb, false).argmax(-1, false).eq_tensor(&yb));
        let idx = ok.nonzero().squeeze_dim(1);
        let mut mask = ok.zeros_like();
        if idx.size()[0] > 0 {
            let (xa, ya) = (xb.index_select(0, &idx), yb.index_select(0, &idx));
            let mut alive = ya.ones_like().to_kind(Kind::Bool);
            {
                let mut objective = |z: &Tensor| {
                    let logits = model.logits(z, false);
                    alive = alive.logical_and(&logits.detach().argmax(-1, false).eq_tensor(&ya));
                    cross_entropy(&logits, &ya)
                };
                pgd(threat, &xa, &xa, cfg, &mut objective, None)?;
            }
            let _ = mask.index_put_(&[Some(idx)], &alive, false);
        }
        parts.push(mask);
    }
    Ok(Tensor::cat(&parts, 0))
}

#[derive(Serialize)]
struct EvalWorkRow {
    model: String,
    threat: String,
    acc: f64,
    attacked: u64,
    forward_rows: u64,
    backward_rows: u64,
    full_forward_rows: u64,
    full_backward_rows: u64,
    /// (forward + 2 backward) rows done / the full-batch loop's.
    work_fraction: f64,
    same_as_full_batch: bool,
    shrinking_s: f64,
    full_batch_s: f64,
}

fn eval_work(dir: &Path, n: usize) -> Result<()> {
    let test = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
    let idx = subset(test.len(), n.min(test.len()), SEED);
    let x = images_to_tensor(&test, &idx, Device::Cpu);
    let y = Tensor::from_slice(&idx.iter().map(|&i| test.labels[i]).collect::<Vec<_>>());
    let mut grid: Vec<(Box<dyn ThreatModel>, PgdConfig)> = Vec::new();
    for eps in [0.25, 0.5, 1.0, 2.0] {
        grid.push((Box::new(L2::new(eps)?), PgdConfig::eval(eps, 20)));
    }
    grid.push((Box::new(Linf::new(0.1)?), PgdConfig::eval(0.1, 20)));
    let mut rows = Vec::new();
    for name in ["C_std", "C_rob"] {
        let model = load_model(&dir.join(name), Device::Cpu)?;
        let mut total = nrf_attacks::AttackWork::default();
        for (threat, cfg) in &grid {
            tch::manual_seed(5);
            let t = Instant::now();
            let out = robust_evaluation(&model, &x, &y, threat.as_ref(), cfg, 500, false)?;
            let shrinking_s = t.elapsed().as_secs_f64();
            tch::manual_seed(5);
            let t = Instant::now();
            let full = full_batch_mask(&model, &x, &y, threat.as_ref(), cfg, 500)?;
            let full_batch_s = t.elapsed().as_secs_f64();
            let same = out.robust.equal(&full);
            let w = out.work;
            total.add(&w);
            println!(
                "{name} {}: acc {:.4}, attacked {}, rows fwd {} / {} bwd {} / {}, work {:.3} of full, same outcome {same}, {shrinking_s:.1} s vs {full_batch_s:.1} s",
                threat.describe(),
                out.acc,
                w.attacked,
                w.forward_rows,
                w.full_forward_rows,
                w.backward_rows,
                w.full_backward_rows,
                w.fraction_of_full()
            );
            rows.push(EvalWorkRow {
                model: name.into(),
                threat: threat.describe(),
                acc: out.acc,
                attacked: w.attacked,
                forward_rows: w.forward_rows,
                backward_rows: w.backward_rows,
                full_forward_rows: w.full_forward_rows,
                full_backward_rows: w.full_backward_rows,
                work_fraction: w.fraction_of_full(),
                same_as_full_batch: same,
                shrinking_s,
                full_batch_s,
            });
        }
        println!(
            "{name} whole grid: work {:.3} of the full-batch loop",
            total.fraction_of_full()
        );
    }
    nrf_data::store::write_json_atomic(dir.join("eval_work.json"), &rows)?;
    Ok(())
}

/// How the input is optimised in a representation-matching run.
#[derive(Debug, Clone, Copy, Serialize)]
enum Optimiser {
    /// nrf's: normalised-gradient (L2) steps of length cosine-decayed `start -> end`, clamp.
    NormGrad { start: f64, end: f64 },
    /// Adam on the pixels, learning rate cosine-decayed `lr -> lr / 100`, clamp to [0, 1].
    Adam { lr: f64 },
}

impl Optimiser {
    fn label(&self) -> String {
        match *self {
            Optimiser::NormGrad { start, end } => format!("norm-grad cos {start}->{end}"),
            Optimiser::Adam { lr } => format!("Adam cos {lr}->{}", lr / 100.0),
        }
    }
}

/// Mean (over images) relative representation error `||g(z) - g(x)|| / ||g(x)||`.
fn mean_rel_err(model: &dyn Classifier, z: &Tensor, target_rep: &Tensor) -> f64 {
    tch::no_grad(|| {
        rep_distance(
            &model.forward_rep(z, false).1,
            target_rep,
            Distance::L2Relative,
        )
        .mean(Kind::Double)
        .double_value(&[])
    })
}

/// Runs `steps` steps of `opt` from `x0` towards `target_rep` on `||g(z) - t||^2` (the presets'
/// distance); returns the final iterate.
fn run_match(
    model: &dyn Classifier,
    x0: &Tensor,
    target_rep: &Tensor,
    opt: Optimiser,
    steps: usize,
    relu: nrf_models::RepRelu,
) -> Result<Tensor> {
    match opt {
        Optimiser::NormGrad { start, end } => {
            // Exactly repmatch::build's attack.
            let cfg = PgdConfig::new(steps, start)
                .with_step_size(StepSize::Cosine { start, end })
                .with_use_best(false);
            let mut obj = rep_match(model, target_rep, Distance::L2Squared, relu);
            Ok(pgd(&Unconstrained, x0, x0, &cfg, &mut obj, None)?.x)
        }
        Optimiser::Adam { lr } => {
            // Adam's defaults (betas 0.9 / 0.999, eps 1e-8), minimising the distance.
            let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
            let schedule = StepSize::Cosine {
                start: lr,
                end: lr / 100.0,
            };
            let mut z = x0.copy();
            let mut m = z.zeros_like();
            let mut v = z.zeros_like();
            for t in 0..steps {
                let grad = tch::with_grad(|| {
                    let zg = z.detach().set_requires_grad(true);
                    let d = rep_distance(
                        &model.forward_rep_with(&zg, false, relu).1,
                        target_rep,
                        Distance::L2Squared,
                    )
                    .sum(Kind::Float);
                    Tensor::run_backward(&[&d], &[&zg], false, false)
                        .pop()
                        .context("no gradient")
                })?;
                tch::no_grad(|| {
                    m = &m * b1 + &grad * (1.0 - b1);
                    v = &v * b2 + grad.square() * (1.0 - b2);
                    let k = (t + 1) as i32;
                    let mhat = &m / (1.0 - b1.powi(k));
                    let vhat = &v / (1.0 - b2.powi(k));
                    let step = mhat / (vhat.sqrt() + eps) * schedule.at(t, steps);
                    z = (&z - step).clamp(0.0, 1.0);
                });
            }
            Ok(z)
        }
    }
}

#[derive(Serialize)]
struct MatchPoint {
    source: String,
    optimiser: String,
    steps: usize,
    mean_rel_err: f64,
    wall_s: f64,
}

fn repmatch_steps(dir: &Path, n: usize, relu: nrf_models::RepRelu) -> Result<()> {
    let data = load_fashion_mnist(FASHION_MNIST_DIR, Split::Train)?;
    let targets = subset(data.len(), n.min(data.len()), SEED);
    let starts = nrf_features::repmatch::choose_starts(&targets, data.len(), SEED + 1);
    let x = images_to_tensor(&data, &targets, Device::Cpu);
    let x0 = images_to_tensor(&data, &starts, Device::Cpu);
    let spec_opt = Optimiser::NormGrad {
        start: 0.2,
        end: 0.002,
    };
    let opts = [
        spec_opt,
        Optimiser::NormGrad {
            start: 0.5,
            end: 0.005,
        },
        Optimiser::NormGrad {
            start: 1.0,
            end: 0.01,
        },
        Optimiser::Adam { lr: 0.01 },
        Optimiser::Adam { lr: 0.03 },
    ];
    let spec_steps = [10, 20, 30, 50, 75, 100, 150, 200, 300, 500];
    let alt_steps = [10, 20, 30, 50, 75, 100, 150, 200, 300];
    let mut points = Vec::new();
    let mut csv = String::from("source,optimiser,steps,mean_rel_err,wall_s\n");
    for (model_name, set) in [("C_rob", "D_R"), ("C_std", "D_NR")] {
        let model = load_model(&dir.join(model_name), Device::Cpu)?;
        let target_rep = tch::no_grad(|| model.forward_rep(&x, false).1);
        println!(
            "{set} (from {model_name}): start error {:.4}",
            mean_rel_err(&model, &x0, &target_rep)
        );
        for (i, &opt) in opts.iter().enumerate() {
            let steps: &[usize] = if i == 0 { &spec_steps } else { &alt_steps };
            for &s in steps {
                let t = Instant::now();
                let z = run_match(&model, &x0, &target_rep, opt, s, relu)?;
                let err = mean_rel_err(&model, &z, &target_rep);
                let wall_s = t.elapsed().as_secs_f64();
                println!("{set} {} {s} steps: {err:.4} ({wall_s:.1} s)", opt.label());
                csv.push_str(&format!("{set},{},{s},{err},{wall_s}\n", opt.label()));
                points.push(MatchPoint {
                    source: set.into(),
                    optimiser: opt.label(),
                    steps: s,
                    mean_rel_err: err,
                    wall_s,
                });
            }
        }
    }
    nrf_data::store::write_json_atomic(dir.join("repmatch_steps.json"), &points)?;
    std::fs::write(dir.join("repmatch_steps.csv"), csv)?;
    // One plot: a colour per optimiser, solid for D_R, dashed for D_NR.
    let mut series = Vec::new();
    for (si, set) in ["D_R", "D_NR"].iter().enumerate() {
        for (oi, opt) in opts.iter().enumerate() {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.source == *set && p.optimiser == opt.label())
                .map(|p| (p.steps as f64, p.mean_rel_err))
                .collect();
            series.push(LineSeriesSpec {
                name: format!("{set}: {}", opt.label()),
                points: pts,
                dashed: si == 1,
                color: Some(oi),
                ..Default::default()
            });
        }
    }
    let png: PathBuf = dir.join("repmatch_steps.png");
    line_plot_with(
        &png,
        &format!("Representation matching: final error vs steps ({n} images)"),
        "steps (schedule rescaled to the step count)",
        "mean ||g(z)-g(x)|| / ||g(x)||",
        &series,
        &PlotOptions {
            width: 1200,
            height: 640,
            ..Default::default()
        },
    )?;
    println!("wrote {}", png.display());
    Ok(())
}

fn eval_time(dir: &Path, pairs: usize) -> Result<()> {
    let test = load_fashion_mnist(FASHION_MNIST_DIR, Split::Test)?;
    let idx = subset(test.len(), 1000, SEED);
    let x = images_to_tensor(&test, &idx, Device::Cpu);
    let y = Tensor::from_slice(&idx.iter().map(|&i| test.labels[i]).collect::<Vec<_>>());
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, eps) in [("C_std", 0.5), ("C_rob", 1.0)] {
        let model = load_model(&dir.join(name), Device::Cpu)?;
        let threat = L2::new(eps)?;
        let cfg = PgdConfig::eval(eps, 20);
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..pairs {
            let mut t = [0.0; 2];
            let order = if p % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                tch::manual_seed(5);
                let start = Instant::now();
                if side == 0 {
                    robust_evaluation(&model, &x, &y, &threat, &cfg, 500, false)?;
                } else {
                    let _ = full_batch_mask(&model, &x, &y, &threat, &cfg, 500)?;
                }
                t[side] = start.elapsed().as_secs_f64();
            }
            a.push(t[0]);
            b.push(t[1]);
            r.push(t[1] / t[0]);
        }
        println!(
            "{name} L2 {eps}: shrinking {:.2} s, full batch {:.2} s, median paired ratio full/shrinking {:.3} ({pairs} pairs)",
            med(&mut a),
            med(&mut b),
            med(&mut r)
        );
    }
    // Fixed vs changing batch size, forward + input gradient, per row.
    let model = load_model(&dir.join("C_std"), Device::Cpu)?;
    let step = |n: i64| -> Result<f64> {
        let xb = x.narrow(0, 0, n);
        let yb = y.narrow(0, 0, n);
        let t = Instant::now();
        let xg = xb.detach().set_requires_grad(true);
        let loss = cross_entropy(&model.logits(&xg, false), &yb).sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&xg], false, false);
        drop(g);
        Ok(t.elapsed().as_secs_f64() / n as f64)
    };
    let (mut fixed, mut varying, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..40 {
        let f = step(400)?;
        let v = step(401 + 2 * i)?;
        fixed.push(f);
        varying.push(v);
        ratio.push(v / f);
    }
    println!(
        "forward+input gradient per row: batch 400 every call {:.3} ms, a new batch size (401..479) every call {:.3} ms, median paired ratio {:.3}",
        1e3 * med(&mut fixed),
        1e3 * med(&mut varying),
        med(&mut ratio)
    );
    Ok(())
}

fn sgd_share(reps: usize) -> Result<()> {
    let data = load_fashion_mnist(FASHION_MNIST_DIR, Split::Train)?;
    let idx: Vec<usize> = (0..128).collect();
    let x = images_to_tensor(&data, &idx, Device::Cpu);
    let y = Tensor::from_slice(&idx.iter().map(|&i| data.labels[i]).collect::<Vec<_>>());
    let model = Model::new(&spec(), Device::Cpu, 0)?;
    let mut sgd = nrf_models::Sgd::new(model.vs.trainable_variables(), 0.9, true, 5e-4);
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        let (mut whole, mut update) = (Vec::new(), Vec::new());
        for r in 0..reps + 3 {
            let t = Instant::now();
            nrf_models::train::train_step(&model, &mut sgd, &x, &y, 0.01, None)?;
            let w = t.elapsed().as_secs_f64();
            // The gradients are still there: time the update alone.
            let t = Instant::now();
            sgd.step(0.01);
            let u = t.elapsed().as_secs_f64();
            if r >= 3 {
                whole.push(w);
                update.push(u);
            }
        }
        let (w, u) = (med(&mut whole), med(&mut update));
        println!(
            "{threads} thread(s): training step {:.2} ms, of which the SGD update {:.2} ms ({:.1}%)",
            1e3 * w,
            1e3 * u,
            100.0 * u / w
        );
    }
    Ok(())
}
